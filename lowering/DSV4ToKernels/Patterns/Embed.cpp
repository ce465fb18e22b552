//===- Embed.cpp - embedding and LM head kernels -===//
// SPDX-License-Identifier: Apache-2.0
//
// dsv4.embed (a row of the table per token) and dsv4.lm_head (one dot
// product per vocabulary row and token).
//
//===----------------------------------------------------------------------===//

#include "lowering/DSV4ToKernels/Emitter.h"
#include "lowering/DSV4ToKernels/Patterns.h"

#include <cmath>

using namespace mlir;
using namespace mlir::compressa;
using namespace mlir::compressa::cpu;
using namespace mlir::dsv4;

void Emitter::embed(EmbedOp op) {
  View ids = view(op.getIds()), out = view(op.getResult());
  WeightView table = w(op.getTable());
  int64_t d = table.cols;
  kb.parallelLoop(c(0), kb.mul(S(), c(d)), [&](Value e) {
    Value s = kb.div(e, c(d)), i = kb.rem(e, c(d));
    kb.storeF(out, e, kb.weight(table, kb.loadF(ids, s), i));
  });
}

void Emitter::lmHead(LmHeadOp op) {
  WeightView head = w(op.getHead());
  linearTokens(view(op.getY()), head.cols, head, view(op.getLogits()));
}

void mlir::compressa::cpu::populateEmbedPatterns(KernelPatternSet &patterns) {
  patterns.add(&Emitter::embed);
  patterns.add(&Emitter::lmHead);
}
