#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes mixed text for `compressa-tokenize --bench` (not used by tests):
Python standard-library sources (code, English comments), the UTF-8 CJK test
texts Python ships (when present), and seeded multilingual text and hard
strings from tokref.py, interleaved in chunks, about SIZE_MB megabytes.
With --train VOCAB it also trains a DeepSeek-pre-tokenizer byte-level BPE of
VOCAB ids on that text (a larger vocabulary than the test tokenizers).

    python3 test/tokenizer/Inputs/make_bench_text.py OUT.txt [SIZE_MB] [--train VOCAB OUT.json]
    compressa-tokenize OUT.json --bench < OUT.txt
"""
import glob
import os
import random
import sys
import sysconfig

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokref  # noqa: E402


def main():
    args = sys.argv[1:]
    train = None
    if "--train" in args:
        i = args.index("--train")
        train = (int(args[i + 1]), args[i + 2])
        del args[i:i + 3]
    out = args[0]
    size = int(float(args[1]) * 1e6) if len(args) > 1 else 10 ** 7
    stdlib = sysconfig.get_paths()["stdlib"]
    code = []
    for path in sorted(glob.glob(os.path.join(stdlib, "*.py"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            code.append(f.read())
    cjk = []
    for path in sorted(glob.glob(os.path.join(stdlib, "test", "cjkencodings", "*-utf8.txt"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            cjk.append(f.read())
    multilingual = "".join(tokref.training_corpus(seed=5, lines=20000))
    hard = "\n".join(tokref.random_strings(seed=3, count=5000))
    sources = ["".join(code), "".join(cjk) * 20, multilingual, hard]
    rng = random.Random(0)
    parts, total = [], 0
    offsets = [0] * len(sources)
    weights = [0.55, 0.1, 0.25, 0.1]
    while total < size:
        k = rng.choices(range(len(sources)), weights)[0]
        src = sources[k]
        if not src:
            continue
        n = rng.randint(2000, 20000)
        start = offsets[k] % len(src)
        chunk = src[start:start + n]
        offsets[k] = start + n
        parts.append(chunk)
        total += len(chunk.encode("utf-8"))
    text = "".join(parts)
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    print("%s: %d bytes" % (out, len(text.encode("utf-8"))))
    if train:
        vocab, path = train
        lines = text.splitlines(keepends=True)
        tok = tokref.train(lines, vocab, tokref.CHAT_TOKENS)
        tok.save(path, pretty=False)
        print("%s: %d ids" % (path, tok.get_vocab_size()))


if __name__ == "__main__":
    main()
