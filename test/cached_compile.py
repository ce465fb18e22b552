#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""compressa-compile for the lit suite, with one compile per set of inputs.

  cached_compile.py --cache DIR --compiler PATH -- ARGS...

The suite compiles the golden tiny models with the same flags in many tests
(tiny-c --target=cpu in six, about 50 s each on a CI core). lit.cfg.py makes
`compressa-compile` in RUN lines this script: a call that writes an artifact
to a file (`-o FILE`) from a model *name* (resolved in COMPRESSA_MODELS_DIR,
the repository's models/) and reads no other file is compiled once per lit
run and copied to FILE afterwards, with the compiler's stderr replayed (its
temporary output path replaced by FILE). The key is the arguments, every
COMPRESSA_* environment variable and the compiler's size and modification
time; lit.cfg.py empties DIR when a lit run starts, so no artifact outlives
the compiler or the models it came from. Anything else (a config or .mlir
path, --weights, --dump-intermediates-to, output on stdout, a failing
compile) runs the compiler itself, unchanged.
"""
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

PLACEHOLDER = "\0OUTPUT\0"


def cacheable(args):
    """The output path when the call may be cached, else None: the model
    name first, then options (`--name=value`, `--name value`, `-o FILE`)."""
    if not args or args[0].startswith("-"):
        return None
    model, out = args[0], None
    # Only a model name (a directory of COMPRESSA_MODELS_DIR): a path is a
    # test's own file, which the test may rewrite between compiles.
    if os.sep in model or os.path.exists(model) or model.endswith((".json", ".mlir")):
        return None
    i = 1
    while i < len(args):
        a = args[i]
        if not a.startswith("-"):
            return None  # a second positional argument
        value = None
        if "=" in a:
            a, value = a.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            value = args[i + 1]
            i += 1
        i += 1
        if a == "-o":
            out = value
        elif a in ("--dump-intermediates-to", "--weights"):
            return None
        elif value and (os.sep in value or os.path.exists(value)):
            return None  # an option that reads a file
    if not out or out == "-":
        return None
    return out


def main():
    argv = sys.argv[1:]
    sep = argv.index("--")
    opts, args = argv[:sep], argv[sep + 1:]
    cache = opts[opts.index("--cache") + 1]
    compiler = opts[opts.index("--compiler") + 1]
    out = cacheable(args)
    if out is None:
        os.execv(compiler, [compiler] + args)

    stat = os.stat(compiler)
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("COMPRESSA_")}
    key_args = [PLACEHOLDER if a == out else a for a in args]
    key = hashlib.sha256(json.dumps(
        [key_args, env, stat.st_size, stat.st_mtime_ns]).encode()).hexdigest()[:32]
    os.makedirs(cache, exist_ok=True)
    artifact = os.path.join(cache, key + ".cpa")
    log = os.path.join(cache, key + ".stderr")
    with open(os.path.join(cache, key + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (os.path.exists(artifact) and os.path.exists(log)):
            tmp = artifact + ".tmp%d" % os.getpid()
            run = subprocess.run([compiler] + [tmp if a == out else a for a in args],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if run.returncode != 0 or run.stdout:
                # Not cached: passed through as the compiler gave it.
                sys.stdout.buffer.write(run.stdout)
                sys.stderr.buffer.write(run.stderr.replace(tmp.encode(), out.encode()))
                if os.path.exists(tmp):
                    if run.returncode == 0:
                        shutil.copyfile(tmp, out)
                    os.remove(tmp)
                if run.returncode < 0:  # a crash stays a crash (for `not`)
                    sys.stdout.flush()
                    sys.stderr.flush()
                    signal.signal(-run.returncode, signal.SIG_DFL)
                    os.kill(os.getpid(), -run.returncode)
                return run.returncode
            with open(log + ".tmp", "wb") as f:
                f.write(run.stderr.replace(tmp.encode(), PLACEHOLDER.encode()))
            os.replace(tmp, artifact)
            os.replace(log + ".tmp", log)
        try:
            shutil.copyfile(artifact, out)
            with open(log, "rb") as f:
                replay = f.read()
        except FileNotFoundError:
            # Another lit run on this build tree emptied the cache.
            os.execv(compiler, [compiler] + args)
    sys.stderr.buffer.write(replay.replace(PLACEHOLDER.encode(), out.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
