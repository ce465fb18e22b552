# SPDX-License-Identifier: Apache-2.0
# lit configuration of the Compressa tests.
import os
import sys

import lit.formats
from lit.llvm import llvm_config

config.name = "COMPRESSA"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.compressa_obj_root, "test")
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]

config.environment["FILECHECK_OPTS"] = "--enable-var-scope --dump-input=fail"
# Model names resolve against the source tree's models/ in tests.
config.environment["COMPRESSA_MODELS_DIR"] = os.path.join(
    config.compressa_src_root, "models")

llvm_config.use_default_substitutions()
# FileCheck, not, count, split-file from LLVM 22 (Debian keeps them off PATH).
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.add_tool_substitutions(
    ["compressa-opt", "compressa-compile", "compressa-run",
     "make-random-model", "compressa-tokenize", "compressa-bench"],
    [config.compressa_tools_dir, config.llvm_tools_dir])
config.substitutions.append(("%python", sys.executable))
config.substitutions.append(("%models", os.path.join(config.compressa_src_root, "models")))
config.substitutions.append(("%golden", os.path.join(config.compressa_shared_dir, "golden")))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))

# The golden data lives beside the checkout (../shared); tests that read it
# say `REQUIRES: golden`.
if os.path.isdir(os.path.join(config.compressa_shared_dir, "golden")):
    config.available_features.add("golden")

# The CUDA toolkit (libdevice and ptxas) for the PTX/cubin tests.
if os.path.exists("/usr/local/cuda/bin/ptxas") or os.environ.get("CUDA_HOME"):
    config.available_features.add("cuda-toolkit")

# The Hugging Face `tokenizers` library, the tokenizer tests' reference
# (test-only; scripts/install-deps.sh installs it for the python3 on PATH,
# which need not be the one running lit). Tests that regenerate expectations
# live say `REQUIRES: hf-tokenizers` and run %hf_python.
import shutil
import subprocess
for _python in (sys.executable, shutil.which("python3")):
    if _python and subprocess.run([_python, "-c", "import tokenizers"],
                                  capture_output=True).returncode == 0:
        config.available_features.add("hf-tokenizers")
        config.substitutions.append(("%hf_python", _python))
        break
