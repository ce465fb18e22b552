#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks compressa-tokenize against the Hugging Face `tokenizers` library
live, on tokenizers and strings that the checked-in expectations do not cover
(test/tokenizer/live-reference.test; needs `tokenizers`, test-only):

  B  a tokenizer trained on another corpus with another vocabulary size
     (2000), ignore_merges=true plus whole-word vocabulary entries that no
     merge makes, added tokens of every special/normalized combination;
  C  a GPT-2-style one: ByteLevel(use_regex=true) alone, merges written in
     the legacy "a b" string form;
  ref-a and the tiny-768/tiny-512 model tokenizers (checked in);

on held-out strings (seeded, different from hard-strings.jsonl) and, for the
pre-tokenizers, on every Unicode code point. Compares encode, decode (of the
library's ids and of random ids) and pre-tokens.

    live_check.py --tool compressa-tokenize --inputs DIR --models DIR --workdir DIR
"""
import argparse
import json
import os
import random
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokref  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers  # noqa: E402

HELD_OUT = [
    "",
    "Held-out: the tokenizer has never seen this sentence, has it?",
    "supercalifragilistic DeepSeek supercalifragilistic!",
    " DeepSeek-V4 数据模型 数据模型数据模型",
    "<s>start</s> <mask>mask<mask> [SEP]x[SEP] [sep]",
    "<s><s></s></s>",
    "mask<mask>",
    "x [SEP] y",
    "It's we'll they've I'd you're he's 'S 'LL",
    "  multiple   spaces   between   words  ",
    "\n\n  \n\t\n",
    "ñandú pingüino Ærøskøbing",
    "日本語のテキストと English mixed 123456789",
    "𝕳𝖊𝖑𝖑𝖔 𝔀𝓸𝓻𝓵𝓭 math alphanumerics",
    "ｈａｌｆ ｗｉｄｔｈ ＦＵＬＬ",
    "\u200e\u200f bidi marks \u202a\u202c",
    "🧑‍🤝‍🧑 👩🏿‍🦱 🫱🏼‍🫲🏾",
    "a" + "\u0301" * 20,
    "end with CR\r",
    "\r",
    "\u2028\u2029",
    "9" * 31,
    "x" * 500,
    " " * 300,
]


def run_tool(tool, tokenizer, lines, extra, workdir, name):
    src = os.path.join(workdir, name + ".in.jsonl")
    tokref.dump_lines(src, lines)
    with open(src, "rb") as f:
        proc = subprocess.run([tool, tokenizer, "--jsonl"] + extra, stdin=f,
                              capture_output=True)
    if proc.returncode != 0:
        raise SystemExit("%s failed (%s): %s" % (name, proc.returncode,
                                                 proc.stderr.decode(errors="replace")))
    # Split on "\n" only: U+2028 and friends stay raw inside JSON strings.
    return [json.loads(line) for line in proc.stdout.decode("utf-8").split("\n")[:-1]]


class Checker:
    def __init__(self, args):
        self.args = args
        self.compared = 0
        self.failures = 0

    def compare(self, what, inputs, expected, actual):
        if len(expected) != len(actual):
            print("MISMATCH %s: %d results, expected %d" % (what, len(actual), len(expected)))
            self.failures += 1
            return
        bad = [i for i in range(len(expected)) if expected[i] != actual[i]]
        self.compared += len(expected)
        def short(x):
            r = repr(x)
            return r if len(r) <= 400 else r[:400] + "..."
        for i in bad[:5]:
            print("MISMATCH %s #%d: input %s\n  expected %s\n  actual   %s"
                  % (what, i, short(inputs[i]), short(expected[i]), short(actual[i])))
        if bad:
            print("%s: %d of %d differ" % (what, len(bad), len(expected)))
            self.failures += 1

    def check(self, name, path, strings, rng):
        tok = Tokenizer.from_file(path)
        tool, work = self.args.tool, self.args.workdir
        ids = [tok.encode(s, add_special_tokens=False).ids for s in strings]
        self.compare(name + " encode", strings, ids,
                     run_tool(tool, path, strings, [], work, name + "-enc"))
        self.compare(name + " pretokens", strings,
                     [tokref.pretokens(tok, s) for s in strings],
                     run_tool(tool, path, strings, ["--pretokens"], work, name + "-pre"))
        size = tok.get_vocab_size()
        seqs = ids + [[rng.randrange(size) for _ in range(rng.choice([1, 3, 10, 40]))]
                      for _ in range(200)]
        self.compare(name + " decode", seqs,
                     [tok.decode(s, skip_special_tokens=False) for s in seqs],
                     run_tool(tool, path, seqs, ["--decode"], work, name + "-dec"))

    def check_code_points(self, name, path):
        """Pre-tokens of every code point, alone in runs and between
        separators (Unicode class membership as the library sees it)."""
        tok = Tokenizer.from_file(path)
        cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
        lines = []
        for i in range(0, len(cps), 256):
            chunk = [chr(c) for c in cps[i:i + 256]]
            lines.append("".join(chunk))
            lines.append(" ".join(chunk))
            lines.append("a".join(chunk) + "a")
        self.compare(name + " pretokens of all code points", lines,
                     [tokref.pretokens(tok, s) for s in lines],
                     run_tool(self.args.tool, path, lines, ["--pretokens"],
                              self.args.workdir, name + "-cps"))


def build_b(path):
    corpus = tokref.training_corpus(seed=2, lines=3000) + tokref.random_strings(seed=21, count=800)
    tok = tokref.train(corpus, 2000, ["<s>", "</s>", "<unk>"])
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    table = tokref.bytes_to_unicode()
    for word in [" supercalifragilistic", " DeepSeek", "DeepSeek", "数据模型", " multiple",
                 "supercalifragilistic", "ñandú"]:
        mapped = "".join(table[b] for b in word.encode("utf-8"))
        if mapped not in vocab:
            vocab[mapped] = len(vocab)
    data["model"]["ignore_merges"] = True
    tok = Tokenizer.from_str(json.dumps(data))
    tok.add_special_tokens([AddedToken("<mask>", special=True, normalized=True),
                            AddedToken("[SEP]", special=True, normalized=False)])
    tok.add_tokens([AddedToken("[sep]", special=False, normalized=False),
                    AddedToken("ask<m", special=False, normalized=True),
                    AddedToken(" between ", special=False, normalized=True)])
    tok.save(path, pretty=True)


def build_c(path):
    corpus = tokref.training_corpus(seed=3, lines=2000)
    tok = tokref.train(corpus, 600, ["<|endoftext|>"],
                       pre_tokenizer=pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                              use_regex=True))
    tok.decoder = decoders.ByteLevel()
    data = json.loads(tok.to_str())
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--models", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)

    b_path = os.path.join(args.workdir, "tok-b.json")
    c_path = os.path.join(args.workdir, "tok-c.json")
    build_b(b_path)
    build_c(c_path)
    specials = ["<s>", "</s>", "<mask>", "[SEP]", "[sep]", "<think>", "</think>",
                "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>", "hello world"]
    strings = (HELD_OUT + tokref.random_strings(seed=12345, count=300, specials=specials)
               + tokref.training_corpus(seed=77, lines=100)[-100:])

    checker = Checker(args)
    rng = random.Random(99)
    checker.check("tok-b", b_path, strings, rng)
    checker.check("tok-c", c_path, strings, rng)
    checker.check("ref-a", os.path.join(args.inputs, "ref-a.json"), strings, rng)
    for size in (768, 512):
        checker.check("tiny-%d" % size,
                      os.path.join(args.models, "tokenizers", "tiny-%d.json" % size),
                      strings, rng)
    checker.check_code_points("deepseek", os.path.join(args.inputs, "ref-a.json"))
    checker.check_code_points("gpt2", c_path)
    if checker.failures:
        print("live-check: %d comparison groups FAILED" % checker.failures)
        return 1
    print("live-check: %d results equal to the reference library" % checker.compared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
