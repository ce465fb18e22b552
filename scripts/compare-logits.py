#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Compares two [T, V] logits tensors of safetensors files at chosen positions.

  compare-logits.py GOT KEY_GOT REF KEY_REF TOL [--positions SPEC]
                    [--group NAME:FROM:TO]...

SPEC: "all" (default) or a comma list of single positions, ranges A-B
(inclusive), "every:N" (0, N, 2N, ...) and "last:N" (the last N positions).
Prints max |GOT - REF| over the compared positions (where it is, and the
reference's largest |logit| for scale), the same for each --group (positions
FROM..TO-1 among the compared ones), and exits 1 when the maximum exceeds TOL.
Standard library only (numpy is used when present, for speed); F32 and F64.
"""
import array
import json
import struct
import sys

FORMATS = {"F64": "d", "F32": "f"}


def read_tensor(path, key):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        if key not in header:
            sys.exit(f"{path}: no tensor '{key}' (has {sorted(k for k in header if k != '__metadata__')})")
        entry = header[key]
        if entry["dtype"] not in FORMATS or len(entry["shape"]) != 2:
            sys.exit(f"{path}: '{key}' is {entry['dtype']} {entry['shape']}, expected F32/F64 [T, V]")
        begin, end = entry["data_offsets"]
        f.seek(8 + n + begin)
        values = array.array(FORMATS[entry["dtype"]])
        values.frombytes(f.read(end - begin))
    if sys.byteorder != "little":
        values.byteswap()
    return entry["shape"], values


def parse_positions(spec, count):
    if spec == "all":
        return list(range(count))
    picked = set()
    for part in spec.split(","):
        if part.startswith("every:"):
            picked.update(range(0, count, int(part[6:])))
        elif part.startswith("last:"):
            picked.update(range(max(0, count - int(part[5:])), count))
        elif "-" in part:
            a, b = part.split("-")
            picked.update(range(int(a), int(b) + 1))
        else:
            picked.add(int(part))
    bad = [p for p in picked if p < 0 or p >= count]
    if bad:
        sys.exit(f"positions {sorted(bad)[:5]} outside 0..{count - 1}")
    return sorted(picked)


def row_stats(got, ref, v, positions):
    """Per position: (max |diff|, its column, max |ref|)."""
    try:
        import numpy as np
        g = np.frombuffer(got, dtype=np.float32 if got.typecode == "f" else np.float64).reshape(-1, v)
        r = np.frombuffer(ref, dtype=np.float32 if ref.typecode == "f" else np.float64).reshape(-1, v)
        idx = np.array(positions, dtype=np.int64)
        d = np.abs(g[idx].astype(np.float64) - r[idx].astype(np.float64))
        cols = d.argmax(axis=1)
        return [(float(d[i, c]), int(c), float(np.abs(r[p]).max()))
                for i, (p, c) in enumerate(zip(positions, cols))]
    except ImportError:
        out = []
        for p in positions:
            gr = got[p * v:(p + 1) * v]
            rr = ref[p * v:(p + 1) * v]
            worst, col = max((abs(x - y), j) for j, (x, y) in enumerate(zip(gr, rr)))
            out.append((worst, col, max(abs(y) for y in rr)))
        return out


def main(argv):
    args = argv[1:]
    spec, groups = "all", []
    rest = []
    i = 0
    while i < len(args):
        if args[i] == "--positions":
            spec = args[i + 1]
            i += 2
        elif args[i] == "--group":
            name, a, b = args[i + 1].split(":")
            groups.append((name, int(a), int(b)))
            i += 2
        else:
            rest.append(args[i])
            i += 1
    if len(rest) != 5:
        sys.exit(__doc__)
    got_path, got_key, ref_path, ref_key, tol = rest
    tol = float(tol)
    shape_g, got = read_tensor(got_path, got_key)
    shape_r, ref = read_tensor(ref_path, ref_key)
    if shape_g != shape_r:
        sys.exit(f"shapes differ: {got_path} {shape_g} vs {ref_path} {shape_r}")
    t, v = shape_r
    positions = parse_positions(spec, t)
    stats = dict(zip(positions, row_stats(got, ref, v, positions)))

    def summary(name, ps):
        if not ps:
            return f"{name}: no compared positions"
        p = max(ps, key=lambda q: stats[q][0])
        worst, col, _ = stats[p]
        scale = max(stats[q][2] for q in ps)
        return (f"{name}: {len(ps)} positions, max |diff| = {worst:.3e} "
                f"(position {p}, vocab {col}); max |ref logit| = {scale:.3f}")

    print(f"logits [{t}, {v}]; compared positions: {spec} ({len(positions)})")
    for name, a, b in groups:
        print("  " + summary(f"{name} [{a}, {b})", [p for p in positions if a <= p < b]))
    line = summary("all compared", positions)
    worst = max(s[0] for s in stats.values())
    print(line)
    print(f"max |diff| = {worst:.3e} (tolerance {tol:g}): {'PASS' if worst <= tol else 'FAIL'}")
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
