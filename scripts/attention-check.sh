#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The HCA attention's tensor-core kernels (lowering/TensorCore/WgmmaAttention.h,
# issue 12) at V4-Flash dimensions, in one device call: scripts/experts-check.sh
# with WGMMA_CHECK=attention -- the real-dims case compiled with
# --numerics=fast twice, the HCA layer's attention as the two wgmma kernels
# (the default on sm_90a) and as warp MMA tiles (COMPRESSA_ATTENTION_WGMMA=0),
# both run over the same 2200-token prompt, their logits compared with each
# other and with the float64 reference.
#
#   scripts/attention-check.sh prepare [DIR]   (here; default .attention-check)
#   scripts/attention-check.sh run [DIR]       (on the GPU machine, DIR carried)
#
# COMPRESSA_ATTENTION_WGMMA=topk in prepare's environment also gives the CSA
# layer (the top-512) the tensor-core kernels in the first artifact.
#
# The op itself against a float64 reference of its semantics: gemm-bench
# --attention (tools/compressa-gemm), in scripts/gemm-check.sh.
WGMMA_CHECK=attention exec bash "$(dirname "$0")"/experts-check.sh "$@"
