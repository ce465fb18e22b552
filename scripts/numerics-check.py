#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Agreement of an artifact's logits with golden logits (issue 12, numerics).

  numerics-check.py LOGITS KEY GOLDEN GOLDEN_KEY [--max-abs B] [--median-abs B]
                    [--top1 F] [--label TEXT]

LOGITS / GOLDEN are safetensors files holding [positions, vocab] logits (as
compressa-run --dump-logits writes them and as models/*/golden.safetensors
holds them). Prints one line: max and median |diff| over every logit, and
the share of positions whose argmax (top-1 token) agrees. With bounds given,
exits 1 when a figure is past its bound. Standard library only.
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "test", "e2e", "Inputs"))
from safetensors_tool import read_tensor  # noqa: E402


def argmax(row):
    best, where = row[0], 0
    for i, v in enumerate(row):
        if v > best:
            best, where = v, i
    return where


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("logits")
    p.add_argument("key")
    p.add_argument("golden")
    p.add_argument("golden_key")
    p.add_argument("--max-abs", type=float)
    p.add_argument("--median-abs", type=float)
    p.add_argument("--top1", type=float, help="least share of positions whose "
                   "top-1 token agrees (0..1)")
    p.add_argument("--label", default="")
    a = p.parse_args()
    shape_a, x = read_tensor(a.logits, a.key)
    shape_b, y = read_tensor(a.golden, a.golden_key)
    if shape_a != shape_b:
        sys.exit(f"shapes differ: {shape_a} vs {shape_b}")
    vocab = shape_a[-1]
    positions = len(x) // vocab
    diffs = [abs(u - v) for u, v in zip(x, y)]
    worst = max(diffs)
    median = statistics.median(diffs)
    agree = sum(argmax(x[i * vocab:(i + 1) * vocab]) == argmax(y[i * vocab:(i + 1) * vocab])
                for i in range(positions))
    share = agree / positions
    print(f"{a.label + ': ' if a.label else ''}max |diff| {worst:.4g}, median |diff| "
          f"{median:.4g}, top-1 agreement {agree}/{positions} ({100 * share:.1f}%)")
    failed = []
    if a.max_abs is not None and worst > a.max_abs:
        failed.append(f"max |diff| {worst:.4g} > {a.max_abs:g}")
    if a.median_abs is not None and median > a.median_abs:
        failed.append(f"median |diff| {median:.4g} > {a.median_abs:g}")
    if a.top1 is not None and share < a.top1:
        failed.append(f"top-1 agreement {share:.3f} < {a.top1:g}")
    if failed:
        print("FAIL: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
