#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Splits an Nsight Compute per-instruction export of one fused kernel into
the phases between its block barriers (each grid-wide barrier ends with a
BAR.SYNC) and prints each phase's share of the warp-stall samples, its warp
instructions, its top stall reasons and its most executed opcodes.

  ncu -i REPORT.ncu-rep --page source --csv --print-source sass > k.csv
  scripts/ncu-phases.py k.csv [--min-share 1]     (.csv or .csv.gz)
"""
import argparse
import collections
import csv
import gzip
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="ncu --page source --csv --print-source sass output")
    ap.add_argument("--min-share", type=float, default=1.0,
                    help="print phases with at least this %% of the samples (default 1)")
    args = ap.parse_args()
    opener = gzip.open if args.csv.endswith(".gz") else open
    try:
        with opener(args.csv, "rt") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        sys.exit(f"{args.csv}: {e.strerror or e}")
    header = next((i for i, r in enumerate(rows) if r and r[0] == "Address"), None)
    if header is None:
        sys.exit(f"{args.csv}: no 'Address' header row (expected ncu's --page source "
                 "--csv --print-source sass output)")
    hdr, data = rows[header], rows[header + 1:]
    ix = {h: i for i, h in enumerate(hdr)}
    for need in ("Source", "Warp Stall Sampling (All Samples)", "Instructions Executed"):
        if need not in ix:
            sys.exit(f"{args.csv}: no column '{need}'")
    stalls = [h for h in hdr if h.startswith("stall_") and "Not Issued" not in h]

    def phase():
        return {"samples": 0, "inst": 0, "sass": 0,
                "stalls": collections.Counter(), "ops": collections.Counter()}

    phases, cur = [], phase()
    for r in data:
        if len(r) < len(hdr):
            continue
        src = r[ix["Source"]].strip()
        try:
            samples = int(r[ix["Warp Stall Sampling (All Samples)"]])
            inst = int(r[ix["Instructions Executed"]])
        except ValueError:
            continue
        cur["samples"] += samples
        cur["inst"] += inst
        cur["sass"] += 1
        for h in stalls:
            v = r[ix[h]]
            if v and v != "0":
                cur["stalls"][h] += int(v)
        words = src.split()
        op = words[1] if words and words[0].startswith("@") and len(words) > 1 else (
            words[0] if words else "")
        cur["ops"][op.split(".")[0]] += inst
        if "BAR.SYNC" in src:
            phases.append(cur)
            cur = phase()
    phases.append(cur)
    total = sum(p["samples"] for p in phases) or 1
    print(f"{total} samples, {sum(p['inst'] for p in phases)} warp instructions, "
          f"{len(phases)} phases")
    for k, p in enumerate(phases):
        share = 100 * p["samples"] / total
        if share < args.min_share:
            continue
        top = ", ".join(f"{h[6:]} {100 * v / max(1, p['samples']):.0f}%"
                        for h, v in p["stalls"].most_common(4))
        ops = ", ".join(f"{o} {v}" for o, v in p["ops"].most_common(5))
        print(f"phase {k:3d}: {share:5.1f}% samples, {p['inst'] / 1e6:6.2f}M inst, "
              f"{p['sass']} sass | {top} | {ops}")


if __name__ == "__main__":
    main()
