//===- compressa-opt.cpp - The mlir-opt of Compressa ---------------------===//
// SPDX-License-Identifier: Apache-2.0
//
// Runs any registered pass or pipeline on .mlir files: the tool for
// experimenting with fusion and lowering, and the driver of the lit tests.
//
//===----------------------------------------------------------------------===//

#include "passes/RegisterAll.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::compressa::registerAllDSV4Dialects(registry);
  mlir::compressa::registerAllDSV4Passes();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "Compressa optimizer driver\n", registry));
}
