#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The indexer's tensor-core scores (lowering/TensorCore/WgmmaIndexer.h,
# issue 12) at V4-Flash dimensions, in one device call: scripts/experts-check.sh
# with WGMMA_CHECK=indexer -- the real-dims case compiled with
# --numerics=fast twice, the scores as the wgmma kernel (the default on
# sm_90a) and as warp MMA tiles (COMPRESSA_INDEXER_WGMMA=0), both run over
# the same 2200-token prompt (the CSA layer's top-512 truncates), their
# logits compared with each other and with the float64 reference.
#
#   scripts/indexer-check.sh prepare [DIR]   (here; default .indexer-check)
#   scripts/indexer-check.sh run [DIR]       (on the GPU machine, DIR carried)
#
# The op itself against a float64 reference of its semantics: gemm-bench
# --indexer (tools/compressa-gemm), e.g. in scripts/gpu-check.sh.
WGMMA_CHECK=indexer exec bash "$(dirname "$0")"/experts-check.sh "$@"
