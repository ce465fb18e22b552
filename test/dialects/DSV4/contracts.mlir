// RUN: compressa-opt %s -split-input-file -verify-diagnostics
// The dispatch and memory contracts (dsv4.dispatch, dsv4.buffers,
// dsv4.buffer, dsv4.max_tokens, dsv4.arena_bytes, dsv4.state, dsv4.input)
// are verified by the dialect: one case per split block.

// A well-formed plan.
func.func @ok(%ids: tensor<?xi64> {dsv4.buffer = array<i64: 0, 32>, dsv4.input = "input_ids"},
              %w: !dsv4.weight<tensor<16x8xf32>>)
    -> tensor<?x8xf32> attributes {dsv4.max_tokens = 4 : i64, dsv4.arena_bytes = 192 : i64} {
  %0 = dsv4.embed %w[%ids] {dsv4.dispatch = 0 : i64, dsv4.buffers = [array<i64: 64, 128>]}
      : (!dsv4.weight<tensor<16x8xf32>>, tensor<?xi64>) -> tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// -----

func.func @f(%w: !dsv4.weight<tensor<16x8xf32>>, %ids: tensor<1xi64>) -> tensor<1x8xf32> {
  // expected-error @+1 {{dsv4.dispatch must be an i64 >= 0, got -1 : i64}}
  %0 = dsv4.embed %w[%ids] {dsv4.dispatch = -1 : i64} : (!dsv4.weight<tensor<16x8xf32>>, tensor<1xi64>) -> tensor<1x8xf32>
  return %0 : tensor<1x8xf32>
}

// -----

func.func @f(%w: !dsv4.weight<tensor<16x8xf32>>, %ids: tensor<1xi64>) -> tensor<1x8xf32> {
  // expected-error @+1 {{dsv4.buffers must hold one slot per result (1), got []}}
  %0 = dsv4.embed %w[%ids] {dsv4.buffers = []} : (!dsv4.weight<tensor<16x8xf32>>, tensor<1xi64>) -> tensor<1x8xf32>
  return %0 : tensor<1x8xf32>
}

// -----

func.func @f(%w: !dsv4.weight<tensor<16x8xf32>>, %ids: tensor<1xi64>) -> tensor<1x8xf32> {
  // expected-error @+1 {{dsv4.buffers entry #0 offset 32 is not 64-byte aligned}}
  %0 = dsv4.embed %w[%ids] {dsv4.buffers = [array<i64: 32, 32>]} : (!dsv4.weight<tensor<16x8xf32>>, tensor<1xi64>) -> tensor<1x8xf32>
  return %0 : tensor<1x8xf32>
}

// -----

func.func @f(%w: !dsv4.weight<tensor<16x8xf32>>, %ids: tensor<?xi64>) -> tensor<?x8xf32> attributes {dsv4.max_tokens = 4 : i64} {
  // expected-error @+1 {{dsv4.buffers entry #0 has 32 bytes, but result #0 ('tensor<?x8xf32>') needs 128 at dsv4.max_tokens = 4}}
  %0 = dsv4.embed %w[%ids] {dsv4.buffers = [array<i64: 0, 32>]} : (!dsv4.weight<tensor<16x8xf32>>, tensor<?xi64>) -> tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// -----

func.func @f(%w: !dsv4.weight<tensor<16x8xf32>>, %ids: tensor<?xi64>) -> tensor<?x8xf32> attributes {dsv4.max_tokens = 4 : i64, dsv4.arena_bytes = 100 : i64} {
  // expected-error @+1 {{dsv4.buffers entry #0 [64, 128] ends past dsv4.arena_bytes = 100}}
  %0 = dsv4.embed %w[%ids] {dsv4.buffers = [array<i64: 64, 128>]} : (!dsv4.weight<tensor<16x8xf32>>, tensor<?xi64>) -> tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// -----

// expected-error @+1 {{dsv4.max_tokens must be an i64 >= 1, got 0 : i64}}
func.func @f() attributes {dsv4.max_tokens = 0 : i64} {
  return
}

// -----

// expected-error @+1 {{dsv4.state of argument #0 names decode state, but the argument is a 'tensor<4xf32>'}}
func.func @f(%s: tensor<4xf32> {dsv4.state = "layers.0.attn.window"}) {
  return
}

// -----

// expected-error @+1 {{dsv4.buffer of argument #0 has 8 bytes, but 'tensor<4xi64>' needs 32}}
func.func @f(%ids: tensor<4xi64> {dsv4.buffer = array<i64: 0, 8>}) {
  return
}

// -----

// expected-error @+1 {{unknown dsv4 attribute 'dsv4.dispach'}}
func.func @f() attributes {dsv4.dispach = 0 : i64} {
  return
}
