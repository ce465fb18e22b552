#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Compares two arena dumps (COMPRESSA_DUMP_ARENA) buffer by buffer as f32.

  compare-arena.py DUMP REFERENCE [--first N] [--bound NAME REL]...

Each dump has an index DUMP.index ("name offset bytes" per buffer, as the
runtime writes it); buffers are matched by name. Prints, in the reference's
order, max |diff| and max |ref| of each buffer's f32 values (NaNs skipped),
the first N buffers (default all). Each --bound: exits 1 unless buffer NAME
is present and its max |diff| / max |ref| is at most REL. Standard library
only.
"""
import argparse
import array
import math


def read(path):
    data = open(path, "rb").read()
    index, seen = [], {}
    for line in open(path + ".index"):
        name, offset, size = line.rsplit(" ", 2)
        # A name may come twice (two buffers of one dispatch name).
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name += f" ({seen[name]})"
        index.append((name, int(offset), int(size)))
    return data, index


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dump")
    p.add_argument("reference")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--bound", nargs=2, action="append", default=[],
                   metavar=("NAME", "REL"))
    a = p.parse_args()
    relative = {}
    data, index = read(a.dump)
    ref, refIndex = read(a.reference)
    where = {name: (offset, size) for name, offset, size in index}
    shown = 0
    for name, offset, size in refIndex:
        if name not in where or where[name][1] != size or size % 4 or name == "input_ids":
            continue
        x = array.array("f", data[where[name][0]:where[name][0] + size])
        y = array.array("f", ref[offset:offset + size])
        d = m = 0.0
        for u, v in zip(x, y):
            if math.isnan(u) or math.isnan(v):
                continue
            d = max(d, abs(u - v))
            m = max(m, abs(v))
        relative[name] = d / m if m else 0.0
        if not a.first or shown < a.first:
            print(f"{name}: max |diff| {d:.3e}, max |ref| {m:.3e}, "
                  f"relative {relative[name]:.2e}")
        shown += 1
    failed = 0
    for name, bound in a.bound:
        if name not in relative or relative[name] > float(bound):
            print(f"FAIL: {name}: relative "
                  f"{relative.get(name, float('nan')):.2e}, bound {bound}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
