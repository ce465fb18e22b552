// RUN: compressa-opt %s --dsv4-specialize-shapes="prefill-max-tokens=16 max-context=256" | FileCheck %s
// The programs get their token bounds, the module the context the decode
// state is sized for.
// CHECK: module attributes {dsv4.max_context = 256 : i64}
// CHECK: func.func @prefill({{.*}}) attributes {dsv4.max_tokens = 16 : i64}
// CHECK: func.func @decode({{.*}}) attributes {dsv4.max_tokens = 1 : i64}
module {
  func.func @prefill(%ids: tensor<?xi64>) {
    return
  }
  func.func @decode(%ids: tensor<1xi64>) {
    return
  }
}
