#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The grid-wide barriers each launch of a program meets on a CUDA target.

  count-barriers.py [--program decode] [--tokens 1] [--compiler PATH]
                    -- MODEL [compressa-compile options]

Compiles MODEL twice with the given options (which must include a cuda
--target): --emit=dispatch names the dsv4 ops of each dispatch, and
--emit=kernels gives the kernels the program launches, in dispatch order.
In each kernel it counts the grid barriers (CudaTarget::barrier: a block
barrier, then an scf.if over gridDim > 1 whose thread 0 arrives on
the sync word and spins) that a call of `--tokens` tokens runs through: it
folds the integer arithmetic on constants and on the call's token count
(argument slot 0, KernelABI.h), takes the branch of every scf.if whose
condition folds (Emitter::branch on manyTokens, static row counts) and
multiplies an scf.for's barriers by its trip count where that folds. A
condition or trip count that depends on anything else (the position, the
data) gives a range, MIN-MAX, or '?' for a loop of unknown trips.

Programs: prefill, decode, decode_batch (with --max-batch > 1; --tokens
then the sequences of a step), mtp. Prints a line per launch (index, kernel, barriers, the dispatch's ops),
then per kernel the barriers of one launch and the launches, and the
program's total. Example (the V4-Flash 4-layer slice's decode step):

  scripts/count-barriers.py -- deepseek-v4-flash --layers 2:6 \
      --target=cuda:sm_90a --max-context 8192 --max-batch 1
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

INT_OPS = {
    "addi": lambda a, b: a + b,
    "subi": lambda a, b: a - b,
    "muli": lambda a, b: a * b,
    "divsi": lambda a, b: int(a / b) if b else None,
    "divui": lambda a, b: a // b if b else None,
    "remsi": lambda a, b: a - b * int(a / b) if b else None,
    "remui": lambda a, b: a % b if b else None,
    "andi": lambda a, b: a & b,
    "ori": lambda a, b: a | b,
    "xori": lambda a, b: a ^ b,
    "maxsi": max,
    "minsi": min,
}
CMP = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "slt": lambda a, b: a < b, "sle": lambda a, b: a <= b,
    "sgt": lambda a, b: a > b, "sge": lambda a, b: a >= b,
    "ult": lambda a, b: a < b, "ule": lambda a, b: a <= b,
    "ugt": lambda a, b: a > b, "uge": lambda a, b: a >= b,
}


class Node:
    """An op line and its regions (lists of Nodes)."""

    def __init__(self, line):
        self.line = line
        self.regions = []


def parse(lines):
    """The op tree of a function's body lines (`{` opens a region)."""
    root = Node("")
    root.regions.append([])
    stack = [root]
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line == "}":
            stack.pop()
            continue
        if line.startswith("}") and line.endswith("{"):  # } else {, } do {
            stack[-1].regions.append([])
            continue
        node = Node(line)
        stack[-1].regions[-1].append(node)
        if line.endswith("{"):
            node.regions.append([])
            stack.append(node)
    return root.regions[0]


def is_grid_barrier(node):
    """scf.if (gridDim > 1) { scf.if (thread 0) { ... the arrival ... } }: the
    arrival is a release atomic (inline PTX atom.release.gpu), or, compiled
    with COMPRESSA_GRID_BARRIER=fence, a fence first."""
    if not node.line.startswith("scf.if") or not node.regions:
        return False
    for inner in node.regions[0]:
        if not (inner.line.startswith("scf.if") and inner.regions and inner.regions[0]):
            continue
        body = inner.regions[0]
        if body[0].line.startswith("llvm.fence") or \
                any("atom.release.gpu" in n.line for n in body):
            return True
    return False


def add(x, y):
    return (x[0] + y[0], None if x[1] is None or y[1] is None else x[1] + y[1])


def count(region, env, tokens):
    """(min, max) grid barriers of a region; max None: unbounded."""
    total = (0, 0)
    for node in region:
        line = node.line
        if is_grid_barrier(node):
            total = add(total, (1, 1))
            continue
        m = re.match(r"(%[\w-]+) = (.*)", line)
        if m:
            fold(m.group(1), m.group(2), env, tokens)
        if "scf.if" in line and node.regions:
            cond = env.get(re.search(r"scf\.if (%[\w-]+)", line).group(1))
            then = count(node.regions[0], env, tokens)
            other = count(node.regions[1], env, tokens) if len(node.regions) > 1 else (0, 0)
            if cond is None:
                hi = None if then[1] is None or other[1] is None else max(then[1], other[1])
                total = add(total, (min(then[0], other[0]), hi))
            else:
                total = add(total, then if cond else other)
        elif "scf.for" in line and node.regions:
            f = re.search(r"scf\.for %[\w-]+ = (%[\w-]+) to (%[\w-]+) step (%[\w-]+)", line)
            lb, ub, st = (env.get(v) for v in f.groups())
            body = count(node.regions[0], env, tokens)
            if body != (0, 0):
                if None in (lb, ub, st):
                    total = add(total, (0, None))
                else:
                    trips = max(0, -(-(ub - lb) // st))
                    total = add(total, (body[0] * trips,
                                        None if body[1] is None else body[1] * trips))
        else:
            for r in node.regions:
                total = add(total, count(r, env, tokens))
    return total


def fold(name, rhs, env, tokens):
    """Records the value of `name = rhs` where it folds."""
    m = re.match(r"arith\.constant (-?\d+|true|false) : i\d+", rhs)
    if m:
        v = m.group(1)
        env[name] = {"true": 1, "false": 0}.get(v, None) if v in ("true", "false") else int(v)
        return
    m = re.match(r"arith\.cmpi (\w+), (%[\w-]+), (%[\w-]+)", rhs)
    if m:
        a, b = env.get(m.group(2)), env.get(m.group(3))
        if a is not None and b is not None:
            env[name] = int(CMP[m.group(1)](a, b))
        return
    m = re.match(r"arith\.(\w+) (%[\w-]+), (%[\w-]+) :", rhs)
    if m and m.group(1) in INT_OPS:
        a, b = env.get(m.group(2)), env.get(m.group(3))
        if a is not None and b is not None:
            env[name] = INT_OPS[m.group(1)](a, b)
        return
    m = re.match(r"arith\.select (%[\w-]+), (%[\w-]+), (%[\w-]+)", rhs)
    if m:
        c = env.get(m.group(1))
        if c is not None:
            v = env.get(m.group(2) if c else m.group(3))
            if v is not None:
                env[name] = v
        return
    m = re.match(r"arith\.(?:extsi|extui|trunci|index_cast|index_castui) (%[\w-]+)", rhs)
    if m:
        if env.get(m.group(1)) is not None:
            env[name] = env[m.group(1)]
        return
    # The token count: load(load(argv[0])) (KernelABI.h, slot 0).
    m = re.match(r"llvm\.getelementptr %arg0\[(%[\w-]+)\]", rhs)
    if m and env.get(m.group(1)) == 0:
        env[name] = "slot0"
        return
    m = re.match(r"llvm\.load (%[\w-]+) invariant", rhs)
    if m and env.get(m.group(1)) == "slot0":
        env[name] = "tokens*"
        return
    m = re.match(r"llvm\.load (%[\w-]+) .*-> i64", rhs)
    if m and env.get(m.group(1)) == "tokens*":
        env[name] = tokens


def show(r):
    lo, hi = r
    if hi is None:
        return f"{lo}-?"
    return str(lo) if lo == hi else f"{lo}-{hi}"


def function_lines(text, header):
    """The body lines of the function whose first line matches `header`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(header, line.strip()):
            indent = len(line) - len(line.lstrip())
            for j in range(i + 1, len(lines)):
                if lines[j].strip() == "}" and len(lines[j]) - len(lines[j].lstrip()) == indent:
                    return lines[i + 1:j]
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--program", default="decode")
    p.add_argument("--tokens", type=int, default=1)
    p.add_argument("--compiler", default=os.path.join(ROOT, "build/bin/compressa-compile"))
    p.add_argument("compile_args", nargs="+")
    a = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        for emit in ("dispatch", "kernels"):
            path = os.path.join(tmp, emit + ".mlir")
            subprocess.run([a.compiler, *a.compile_args, f"--emit={emit}", "-o", path],
                           check=True)
            with open(path) as f:
                out[emit] = f.read()

    body = function_lines(out["kernels"], rf"func\.func @{a.program}\(")
    if body is None:
        sys.exit(f"count-barriers: no function @{a.program} in the kernels")
    launches = re.findall(r"dsv4\.launch @\w+::@(\w+)\(", "\n".join(body))
    ops = {}
    for line in function_lines(out["dispatch"], rf"func\.func @{a.program}\(") or []:
        m = re.search(r"dsv4\.dispatch = (\d+)", line)
        op = re.match(r"\s*(?:%[^=]*= )?([a-z_0-9]+\.[a-z_.]+)", line)
        if m and op:
            ops.setdefault(int(m.group(1)), []).append(op.group(1).removeprefix("dsv4."))
    if len(ops) != len(launches):
        sys.exit(f"count-barriers: {len(launches)} launches but {len(ops)} dispatches")

    per_kernel = {}
    for m in re.finditer(r"^\s*gpu\.func @(\w+)\(", out["kernels"], re.M):
        name = m.group(1)
        per_kernel[name] = count(parse(function_lines(out["kernels"], rf"gpu\.func @{name}\(")),
                                 {}, a.tokens)

    print(f"# {a.program}, {a.tokens} token(s): grid barriers per launch")
    total = (0, 0)
    for i, k in enumerate(launches):
        print(f"{i:3d}  {k:22s} {show(per_kernel[k]):>6s}  {' '.join(ops[i])}")
        total = add(total, per_kernel[k])
    print(f"# per kernel (one launch) x launches")
    for k in sorted(set(launches), key=lambda n: int(re.sub(r"\D", "", n) or 0)):
        print(f"     {k:22s} {show(per_kernel[k]):>6s}  x{launches.count(k)}")
    print(f"# total: {show(total)} grid barriers in {len(launches)} launches")


if __name__ == "__main__":
    main()
