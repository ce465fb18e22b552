// RUN: compressa-opt %s --pass-pipeline="builtin.module(func.func(dsv4-plan-memory))" | FileCheck %s
// RUN: compressa-opt %s --pass-pipeline="builtin.module(func.func(dsv4-plan-memory{reuse=false}))" | FileCheck %s --check-prefix=NOREUSE
// Values that cross dispatches get 64-byte aligned arena slots sized for
// dsv4.max_tokens tokens; a slot is reused once its value is dead.
// The input's slot is reused too once the first norm has read it.
// CHECK-LABEL: func.func @p(%arg0: tensor<?x16xf32> {dsv4.buffer = array<i64: 0, 128>}) -> tensor<?x16xf32> attributes {dsv4.arena_bytes = 256 : i64
// NOREUSE-LABEL: func.func @p(%arg0: tensor<?x16xf32> {dsv4.buffer = array<i64: 0, 128>}) -> tensor<?x16xf32> attributes {dsv4.arena_bytes = 512 : i64
func.func @p(%x: tensor<?x16xf32>) -> tensor<?x16xf32> attributes {dsv4.max_tokens = 2 : i64} {
  // CHECK: dsv4.rms_norm {{.*}}dsv4.buffers = [array<i64: [[A:[0-9]+]], 128>]
  // NOREUSE: dsv4.rms_norm {{.*}}dsv4.buffers = [array<i64: [[A:[0-9]+]], 128>]
  %a = dsv4.rms_norm %x {dsv4.dispatch = 0 : i64, eps = 1.0e-06 : f64} : tensor<?x16xf32>
  // CHECK: dsv4.rms_norm {{.*}}dsv4.buffers = [array<i64: [[B:[0-9]+]], 128>]
  // NOREUSE: dsv4.rms_norm {{.*}}dsv4.buffers = [array<i64: [[B:[0-9]+]], 128>]
  %b = dsv4.rms_norm %a {dsv4.dispatch = 1 : i64, eps = 1.0e-06 : f64} : tensor<?x16xf32>
  // %a is dead here: its slot serves %c.
  // CHECK: dsv4.rms_norm {{.*}}dsv4.buffers = [array<i64: [[A]], 128>]
  // NOREUSE-NOT: array<i64: [[A]], 128>
  // NOREUSE-NOT: array<i64: [[B]], 128>
  %c = dsv4.rms_norm %b {dsv4.dispatch = 2 : i64, eps = 1.0e-06 : f64} : tensor<?x16xf32>
  return %c : tensor<?x16xf32>
}
