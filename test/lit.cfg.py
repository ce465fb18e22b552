# SPDX-License-Identifier: Apache-2.0
# lit configuration of the Compressa tests.
import os
import shutil
import sys

import lit.formats
from lit.llvm import llvm_config

config.name = "COMPRESSA"


# A test that cannot run fails instead of being skipped (compressa_lit.py);
# missing_features maps a feature to what is missing and how to get it.
sys.path.insert(0, os.path.dirname(__file__))
from compressa_lit import NoSilentSkips  # noqa: E402

missing_features = {}
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.compressa_obj_root, "test")
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py",
                   "compressa_lit.py", "cached_compile.py", "__pycache__"]

config.environment["FILECHECK_OPTS"] = "--enable-var-scope --dump-input=fail"
# Model names resolve against the source tree's models/ in tests.
config.environment["COMPRESSA_MODELS_DIR"] = os.path.join(
    config.compressa_src_root, "models")

llvm_config.use_default_substitutions()
# FileCheck, not, count, split-file from LLVM 22 (Debian keeps them off PATH).
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.add_tool_substitutions(
    ["compressa-opt", "compressa-run",
     "make-random-model", "compressa-tokenize", "compressa-bench",
     "compressa-gemm"],
    [config.compressa_tools_dir, config.llvm_tools_dir])
# compressa-compile through cached_compile.py: a model name compiled to a
# file with the same flags is compiled once per lit run (the golden tiny
# models are compiled alike by many tests), its stderr replayed. The cache is
# emptied here, when the run loads this configuration.
from lit.llvm.subst import ToolSubst  # noqa: E402
_compile_cache = os.path.join(config.test_exec_root, "compile-cache")
shutil.rmtree(_compile_cache, ignore_errors=True)
llvm_config.add_tool_substitutions(
    [ToolSubst("compressa-compile", command=sys.executable,
               extra_args=[os.path.join(os.path.dirname(__file__), "cached_compile.py"),
                           "--cache", _compile_cache, "--compiler",
                           os.path.join(config.compressa_tools_dir, "compressa-compile"),
                           "--"])],
    [config.compressa_tools_dir])
config.substitutions.append(("%python", sys.executable))
config.substitutions.append(("%models", os.path.join(config.compressa_src_root, "models")))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))
config.substitutions.append(("%scripts", os.path.join(config.compressa_src_root, "scripts")))
# The compiler binary itself (not the caching wrapper), for scripts that run it.
config.substitutions.append(("%compressa_compile_bin",
                             os.path.join(config.compressa_tools_dir, "compressa-compile")))

# The CUDA toolkit (libdevice and ptxas) for the PTX/cubin tests; no GPU is
# needed. The golden models live in the repository (models/tiny-a, tiny-c).
_cuda = os.environ.get("CUDA_HOME", "/usr/local/cuda")
if os.path.exists(os.path.join(_cuda, "bin", "ptxas")) and os.path.exists(
        os.path.join(_cuda, "nvvm", "libdevice", "libdevice.10.bc")):
    config.available_features.add("cuda-toolkit")
    config.substitutions.append(("%ptxas", os.path.join(_cuda, "bin", "ptxas")))
else:
    missing_features["cuda-toolkit"] = (
        f"the CUDA 13 toolkit: no {_cuda}/bin/ptxas or "
        f"{_cuda}/nvvm/libdevice/libdevice.10.bc (install CUDA 13 at "
        "/usr/local/cuda or set CUDA_HOME)")

# The Hugging Face `tokenizers` library, the tokenizer tests' reference
# (test-only; scripts/install-deps.sh installs it for the python3 on PATH,
# which need not be the one running lit). Tests that regenerate expectations
# live say `REQUIRES: hf-tokenizers` and run %hf_python.
import subprocess
for _python in (sys.executable, shutil.which("python3")):
    if _python and subprocess.run([_python, "-c", "import tokenizers"],
                                  capture_output=True).returncode == 0:
        config.available_features.add("hf-tokenizers")
        config.substitutions.append(("%hf_python", _python))
        break
else:
    missing_features["hf-tokenizers"] = (
        "the Hugging Face `tokenizers` Python package, the tokenizer tests' "
        "reference: no python3 here imports it (scripts/install-deps.sh "
        "installs it: python3 -m pip install tokenizers==0.23.3)")

config.test_format = NoSilentSkips(not llvm_config.use_lit_shell,
                                  missing_features)
