#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Edits a compiled Compressa artifact (.cpa) or checkpoint the way a mutation
run does, for test/e2e/tampered-artifacts.test.

Artifact edits change one field in place (the FlatBuffer layout of
runtime/format/artifact.fbs, read here by hand: the packaged FlatBuffers has no
Python module) and then recompute the SHA-256 trailer, so that only the
runtime's invariant checks can catch them; `flip-code` leaves the digest as it
was, so the digest check must.

  tamper.py set-max-context IN OUT VALUE
  tamper.py set-state-bytes IN OUT STATE VALUE
  tamper.py set-expert-count IN OUT TABLE VALUE
  tamper.py drop-arg IN OUT PROGRAM LAUNCH        (the launch's last argument)
  tamper.py flip-code IN OUT                      (one bit of the shared object)
  tamper.py set-i64 IN_DIR OUT_DIR TENSOR ROW COL VALUE   (a checkpoint)
"""
import hashlib
import json
import os
import shutil
import struct
import sys

TRAILER = 40
TAG = b"CPASHA2\0"

# Field numbers (declaration order in artifact.fbs).
ARTIFACT_MODEL, ARTIFACT_PROGRAMS, ARTIFACT_STATES = 1, 4, 6
ARTIFACT_EXPERT_TABLES, ARTIFACT_CPU = 8, 9
MODEL_MAX_CONTEXT = 5
PROGRAM_NAME, PROGRAM_LAUNCHES = 0, 6
LAUNCH_ARGS = 1
STATE_BYTES = 1
EXPERT_TABLE_COUNT = 1
CPU_SHARED_OBJECT = 1


def u32(buf, at):
    return struct.unpack_from("<I", buf, at)[0]


def field(buf, table, number):
    """Position of field `number` of the table at `table`; error if absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vsize = struct.unpack_from("<H", buf, vtable)[0]
    slot = 4 + 2 * number
    offset = struct.unpack_from("<H", buf, vtable + slot)[0] if slot < vsize else 0
    if offset == 0:
        sys.exit("tamper.py: field %d is absent (a default value)" % number)
    return table + offset


def ref(buf, at):
    return at + u32(buf, at)


def vector(buf, table, number):
    """(position of the length, element count) of a vector field."""
    at = ref(buf, field(buf, table, number))
    return at, u32(buf, at)


def element(buf, table, number, index):
    """The table at `index` of a vector-of-tables field."""
    at, count = vector(buf, table, number)
    if index >= count:
        sys.exit("tamper.py: index %d out of range (%d)" % (index, count))
    return ref(buf, at + 4 + 4 * index)


def string(buf, table, number):
    at = ref(buf, field(buf, table, number))
    return bytes(buf[at + 4:at + 4 + u32(buf, at)]).decode()


def reseal(buf):
    body = len(buf) - TRAILER
    assert bytes(buf[-8:]) == TAG, "no digest trailer"
    buf[body:body + 32] = hashlib.sha256(bytes(buf[:body])).digest()


def edit_artifact(argv):
    cmd, src, dst = argv[1], argv[2], argv[3]
    with open(src, "rb") as f:
        buf = bytearray(f.read())
    root = ref(buf, 0)
    if cmd == "set-max-context":
        model = ref(buf, field(buf, root, ARTIFACT_MODEL))
        struct.pack_into("<I", buf, field(buf, model, MODEL_MAX_CONTEXT), int(argv[4]))
    elif cmd == "set-state-bytes":
        state = element(buf, root, ARTIFACT_STATES, int(argv[4]))
        struct.pack_into("<Q", buf, field(buf, state, STATE_BYTES), int(argv[5]))
    elif cmd == "set-expert-count":
        table = element(buf, root, ARTIFACT_EXPERT_TABLES, int(argv[4]))
        struct.pack_into("<I", buf, field(buf, table, EXPERT_TABLE_COUNT), int(argv[5]))
    elif cmd == "drop-arg":
        at, count = vector(buf, root, ARTIFACT_PROGRAMS)
        program = next(p for p in (ref(buf, at + 4 + 4 * i) for i in range(count))
                       if string(buf, p, PROGRAM_NAME) == argv[4])
        launch = element(buf, program, PROGRAM_LAUNCHES, int(argv[5]))
        args, n = vector(buf, launch, LAUNCH_ARGS)
        struct.pack_into("<I", buf, args, n - 1)
    elif cmd == "flip-code":
        cpu = ref(buf, field(buf, root, ARTIFACT_CPU))
        at, size = vector(buf, cpu, CPU_SHARED_OBJECT)
        buf[at + 4 + size // 2] ^= 0x10
    else:
        sys.exit("tamper.py: unknown command " + cmd)
    if cmd != "flip-code":
        reseal(buf)
    with open(dst, "wb") as f:
        f.write(buf)


def set_i64(argv):
    src, dst, name, row, col, value = argv[2], argv[3], argv[4], int(argv[5]), int(argv[6]), int(argv[7])
    os.makedirs(dst, exist_ok=True)
    path = os.path.join(dst, "model.safetensors")
    shutil.copyfile(os.path.join(src, "model.safetensors"), path)
    with open(path, "r+b") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        entry = header[name]
        assert entry["dtype"] == "I64", entry
        cols = entry["shape"][1]
        f.seek(8 + size + entry["data_offsets"][0] + 8 * (row * cols + col))
        f.write(struct.pack("<q", value))


def main(argv):
    if argv[1] == "set-i64":
        set_i64(argv)
    else:
        edit_artifact(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
