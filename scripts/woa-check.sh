#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# wo_a of --numerics=fast in the FP8 GEMM semantics (act_quant of o, each
# group's block-scaled FP8 GEMM; on sm_90a one grouped wgmma GEMM,
# lowering/TensorCore/WgmmaGemm.h's groups; issue 12) at V4-Flash
# dimensions, in one device call: scripts/experts-check.sh with
# WGMMA_CHECK=woa -- the real-dims case compiled with --numerics=fast twice,
# wo_a as the grouped FP8 GEMM (the default) and as bf16 tiles of o over the
# dequantised weight (COMPRESSA_WOA_FP8=0, the code before), both run over
# the same 2200-token prompt, their logits compared with each other and
# with the float64 reference (f32 activations).
#
#   scripts/woa-check.sh prepare [DIR]   (here; default .woa-check)
#   scripts/woa-check.sh run [DIR]       (on the GPU machine, DIR carried)
#
# The two are different numerics (FP8 activations against bf16), so the
# bounds (EXPERTS_CHECK_BOUNDS, EXPERTS_CHECK_RELATIVE) hold what was
# measured when the option was written, with some margin.
#
# The op itself against a float64 reference of its semantics: gemm-bench
# --groups (tools/compressa-gemm), in scripts/gemm-check.sh.
export EXPERTS_CHECK_BOUNDS=${EXPERTS_CHECK_BOUNDS:-1.5 0.03 0.85}
export EXPERTS_CHECK_RELATIVE=${EXPERTS_CHECK_RELATIVE:-1.5 0.05}
WGMMA_CHECK=woa exec bash "$(dirname "$0")"/experts-check.sh "$@"
