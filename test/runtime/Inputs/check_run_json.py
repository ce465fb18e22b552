#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the --json output of compressa-run's text modes.

    check_run_json.py JSON_FILE --mode completion|chat --turns N
                      --max-tokens G [--reasoning] [--text FILE]

Every line must be one JSON object with the documented members and
consistent values: `ids` holds `generated_tokens` ids (at most G), `stop` is
"eos" exactly when the last id is the end-of-sequence token 1, "reasoning"
is present exactly with --reasoning, chat turns are numbered 1..N. With
--text, the objects' texts, each followed by a newline, must make up FILE
(what the same run printed without --json). Prints one summary line.
"""
import argparse
import json
import sys

NUMBERS = ["time_to_first_token_s", "prefill_s", "prefill_tokens_per_s",
           "decode_s", "decode_tokens_per_s", "load_s"]


def fail(message):
    sys.exit("check_run_json: error: " + message)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("json_file")
    parser.add_argument("--mode", required=True)
    parser.add_argument("--turns", type=int, required=True)
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--reasoning", action="store_true")
    parser.add_argument("--text")
    args = parser.parse_args()

    with open(args.json_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if len(lines) != args.turns:
        fail("%d lines, expected %d" % (len(lines), args.turns))
    texts = []
    total = 0
    for number, line in enumerate(lines, 1):
        obj = json.loads(line)
        where = "object %d: " % number
        if obj.get("mode") != args.mode:
            fail(where + "mode %r" % obj.get("mode"))
        if args.mode == "chat" and obj.get("turn") != number:
            fail(where + "turn %r" % obj.get("turn"))
        if ("reasoning" in obj) != args.reasoning:
            fail(where + "reasoning present: %s" % ("reasoning" in obj))
        ids = obj["ids"]
        if obj["generated_tokens"] != len(ids) or len(ids) > args.max_tokens:
            fail(where + "%d ids, generated_tokens %d, limit %d" %
                 (len(ids), obj["generated_tokens"], args.max_tokens))
        if not all(isinstance(i, int) and 0 <= i < 768 for i in ids):
            fail(where + "ids outside the vocabulary: %r" % ids)
        ends_at_eos = bool(ids) and ids[-1] == 1
        expected_stop = "eos" if ends_at_eos else "limit"
        if len(ids) < args.max_tokens and not ends_at_eos:
            expected_stop = "context"
        if obj["stop"] != expected_stop:
            fail(where + "stop %r, expected %r" % (obj["stop"], expected_stop))
        if obj["prompt_tokens"] < 2:
            fail(where + "prompt_tokens %r" % obj["prompt_tokens"])
        for key in NUMBERS:
            value = obj[key]
            if value is not None and (not isinstance(value, (int, float))
                                      or value < 0):
                fail(where + "%s is %r" % (key, value))
        if obj["weight_bytes"] <= 0 or obj["peak_rss_bytes"] <= 0:
            fail(where + "weight_bytes %r, peak_rss_bytes %r" %
                 (obj["weight_bytes"], obj["peak_rss_bytes"]))
        if not isinstance(obj["text"], str):
            fail(where + "text is not a string")
        texts.append(obj["text"] + "\n")
        total += len(ids)
    if args.text is not None:
        with open(args.text, encoding="utf-8") as f:
            streamed = f.read()
        if streamed != "".join(texts):
            fail("the streamed text %r differs from the JSON texts %r" %
                 (streamed, "".join(texts)))
    print("json ok: %d %s object%s, %d generated tokens" %
          (len(lines), args.mode, "" if len(lines) == 1 else "s", total))


if __name__ == "__main__":
    main()
