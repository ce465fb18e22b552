#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The decode state an artifact plans, against the analytic bytes per token.

  state-bytes.py ARTIFACT.cpa [--flatc FLATC]

Reads the artifact's states (through `flatc --json` and
runtime/format/artifact.fbs) and prints: the total bytes at max_context,
split into bytes per token of context and fixed bytes; and the analytic
bytes per token of spec section 7.2 for the layers the artifact holds
(from its config.json): per CSA layer (compress ratio 4) a head_dim-wide
compressed entry and an index_head_dim-wide indexer key every 4 tokens,
per HCA layer (ratio 128) a head_dim-wide entry every 128 tokens. The
section's table counts bf16 storage; the artifact stores f32, so the
planned bytes must be exactly twice its bf16 figure, and the FP8 layout
(584 B entries, 132 B indexer keys) is printed beside it. Exits 1 when the
planned bytes per token differ from the analytic f32 figure or the total
is not per-token bytes x max_context + fixed bytes.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def artifact_json(path, flatc):
    with open(path, "rb") as f:
        data = f.read()
    # The FlatBuffer is followed by a 40-byte trailer (artifact.fbs).
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "artifact.bin")
        with open(raw, "wb") as f:
            f.write(data[:-40])
        subprocess.run([flatc, "--json", "--raw-binary", "--strict-json",
                        "--defaults-json", "-o", tmp,
                        os.path.join(ROOT, "runtime", "format", "artifact.fbs"),
                        "--", raw], check=True)
        with open(os.path.join(tmp, "artifact.json")) as f:
            return json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifact")
    p.add_argument("--flatc", default=shutil.which("flatc") or "flatc")
    a = p.parse_args()
    art = artifact_json(a.artifact, a.flatc)
    context = int(art["model"]["max_context"])
    per_token, fixed, total, expected = Fraction(0), 0, 0, 0
    layers = set()
    for s in art.get("states", []):
        size, row, rows = int(s["bytes"]), int(s["row_bytes"]), int(s.get("rows", 0))
        ratio = int(s.get("context_ratio", 0))
        total += size
        fixed += rows * row
        if ratio:
            per_token += Fraction(row, ratio)
        # A row per `ratio` positions of the context, after the fixed rows.
        expected += (rows + (context // ratio if ratio else 0)) * row
        m = re.match(r"layers\.(\d+)\.", s["name"])
        if m:
            layers.add(int(m.group(1)))
    cfg = json.loads(art["config_json"])
    ratios = cfg["compress_ratios"]
    d, di = cfg["head_dim"], cfg["index_head_dim"]
    bf16, fp8 = Fraction(0), Fraction(0)
    kinds = []
    for i in sorted(layers):
        r = ratios[i]
        if r == 4:
            bf16 += Fraction(2 * d, 4) + Fraction(2 * di, 4)
            fp8 += Fraction(584, 4) + Fraction(132, 4)
            kinds.append("CSA")
        elif r:
            bf16 += Fraction(2 * d, r)
            fp8 += Fraction(584, r)
            kinds.append("HCA")
        else:
            kinds.append("SWA")
    f32 = 2 * bf16
    print(f"layers {sorted(layers)} ({', '.join(kinds)}), max_context {context}")
    print(f"planned state: {total} bytes = {float(per_token):g} B/token x {context} "
          f"+ {fixed} fixed ({total / 2**30:.3f} GiB)")
    print(f"analytic (spec 7.2): {float(f32):g} B/token in f32 (the artifact's "
          f"storage) = 2 x {float(bf16):g} B/token bf16; FP8 layout "
          f"{float(fp8):g} B/token")
    ok = True
    if per_token != f32:
        print(f"FAIL: planned {float(per_token):g} B/token != analytic {float(f32):g}")
        ok = False
    if total != expected:
        print(f"FAIL: total {total} != {expected}, the rows of max_context")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
