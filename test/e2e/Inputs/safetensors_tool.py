#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Test helper for the end-to-end tests; standard library only.

  safetensors_tool.py compare A KEY_A B KEY_B TOL   max |A - B| <= TOL, else exit 1
  safetensors_tool.py ids FILE KEY IDS_TXT          the ids in IDS_TXT equal tensor KEY
  safetensors_tool.py write-ids OUT ID...           writes input_ids (I64 [n]) to OUT
  safetensors_tool.py rename IN OUT OLD NEW          copies IN, renaming tensors whose
                                                     names contain OLD (OLD -> NEW)
"""
import array
import json
import struct
import sys

FORMATS = {"F64": "d", "F32": "f", "I64": "q"}


def read_tensor(path, key):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    if key not in header:
        sys.exit(f"{path}: no tensor '{key}'")
    entry = header[key]
    begin, end = entry["data_offsets"]
    values = array.array(FORMATS[entry["dtype"]])
    values.frombytes(data[8 + n + begin:8 + n + end])
    if sys.byteorder != "little":
        values.byteswap()
    return entry["shape"], values


def main(argv):
    cmd = argv[1]
    if cmd == "compare":
        shape_a, a = read_tensor(argv[2], argv[3])
        shape_b, b = read_tensor(argv[4], argv[5])
        tol = float(argv[6])
        if shape_a != shape_b:
            sys.exit(f"shapes differ: {shape_a} vs {shape_b}")
        worst, where = max((abs(x - y), i) for i, (x, y) in enumerate(zip(a, b)))
        row = where // shape_a[-1]
        print(f"max |diff| = {worst:.3e} (position {row}, tolerance {tol:g})")
        return 0 if worst <= tol else 1
    if cmd == "ids":
        _, expected = read_tensor(argv[2], argv[3])
        with open(argv[4]) as f:
            got = [int(t) for t in f.read().split()]
        if got != list(expected):
            print(f"generated {got}\nexpected  {list(expected)}")
            return 1
        print(f"{len(got)} generated ids equal")
        return 0
    if cmd == "write-ids":
        ids = array.array("q", [int(t) for t in argv[3:]])
        payload = ids.tobytes()
        header = json.dumps({"input_ids": {"dtype": "I64", "shape": [len(ids)],
                                           "data_offsets": [0, len(payload)]}}).encode()
        header += b" " * (-len(header) % 8)
        with open(argv[2], "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header + payload)
        return 0
    if cmd == "rename":
        with open(argv[2], "rb") as f:
            data = f.read()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        renamed = {k.replace(argv[4], argv[5]): v for k, v in header.items()}
        text = json.dumps(renamed).encode()
        text += b" " * (-len(text) % 8)
        with open(argv[3], "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + data[8 + n:])
        return 0
    sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
