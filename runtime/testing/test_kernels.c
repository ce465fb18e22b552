/* SPDX-License-Identifier: Apache-2.0
 *
 * Kernels of the synthetic "toy" artifact that the runtime tests build
 * (runtime/testing/toy_artifact.h describes the model and its reference).
 * Built as a shared object; the tests embed its bytes as cpu.shared_object.
 * Each kernel is `void symbol(void **argv)`, arguments as in artifact.fbs.
 * Plain C with no library calls (__builtin_memcpy is inlined), so the object
 * needs nothing but itself.
 */
#include <stdint.h>

#define TOY_VOCAB 768
#define TOY_HIDDEN 4
#define TOY_SCRATCH_PER_TOKEN 16
#define TOY_SCRATCH_FIXED 64

/* FP8 e4m3fn -> float (no NaN handling: the test data has none). */
static float toy_e4m3(unsigned char bits) {
  unsigned exponent = (bits >> 3) & 15u, mantissa = bits & 7u;
  float value;
  int shift;
  if (exponent == 0) {
    value = (float)mantissa / 512.0f;
  } else {
    value = (float)(8u + mantissa) / 8.0f;
    for (shift = (int)exponent - 7; shift > 0; --shift)
      value *= 2.0f;
    for (shift = (int)exponent - 7; shift < 0; ++shift)
      value *= 0.5f;
  }
  return (bits & 0x80u) ? -value : value;
}

/* UE8M0 -> float: 2^(bits - 127). */
static float toy_e8m0(unsigned char bits) {
  float value = 1.0f;
  int shift;
  for (shift = (int)bits - 127; shift > 0; --shift)
    value *= 2.0f;
  for (shift = (int)bits - 127; shift < 0; ++shift)
    value *= 0.5f;
  return value;
}

/* argv: [0] Buffer input_ids (int64 [S]), [1] Tokens S, [2] StartPos,
 *       [3] State "toy.state" (int64 {sum of ids, count of ids}),
 *       [4] Buffer hidden (int64 [S, 4]).
 * hidden[i] = {id, absolute position, running id sum including this token,
 *              running token count including this token}. */
void toy_embed(void **argv) {
  const int64_t *ids = (const int64_t *)argv[0];
  int64_t tokens = (int64_t)(intptr_t)argv[1];
  int64_t start = (int64_t)(intptr_t)argv[2];
  int64_t *state = (int64_t *)argv[3];
  int64_t *hidden = (int64_t *)argv[4];
  int64_t i;
  for (i = 0; i < tokens; ++i) {
    state[0] += ids[i];
    state[1] += 1;
    hidden[i * TOY_HIDDEN + 0] = ids[i];
    hidden[i * TOY_HIDDEN + 1] = start + i;
    hidden[i * TOY_HIDDEN + 2] = state[0];
    hidden[i * TOY_HIDDEN + 3] = state[1];
  }
}

/* argv: [0] Buffer hidden, [1] Tokens S, [2] Weight "toy.bias" (F32 [V]),
 *       [3] Weight "toy.proj.weight" (F8_E4M3 [2, 4]),
 *       [4] WeightScale of it (F8_E8M0 [1, 1]),
 *       [5] ExpertTable "toy.experts.*.weight" (2 experts, F8_E4M3 [4],
 *           scales F8_E8M0 [1]),
 *       [6] Scratch (16 bytes per token + 64),
 *       [7] Buffer logits (f32 [S, V]).
 * For token (id, p, sum, count), target = (7 id + 3 p + sum) mod V:
 *   logits[v] = bias[v] + (v == target ? 16 : 0)
 *             + proj[p % 2][id % 4] * scale
 *             + expert[id % 2][p % 4] * expert_scale[id % 2]
 *             + count / 4 */
void toy_head(void **argv) {
  const int64_t *hidden = (const int64_t *)argv[0];
  int64_t tokens = (int64_t)(intptr_t)argv[1];
  const unsigned char *bias = (const unsigned char *)argv[2];
  const unsigned char *proj = (const unsigned char *)argv[3];
  const unsigned char *projScale = (const unsigned char *)argv[4];
  void *const *experts = (void *const *)argv[5];
  unsigned char *scratch = (unsigned char *)argv[6];
  float *logits = (float *)argv[7];
  int64_t i, v, b;
  /* Touch all the scratch this call may use. */
  for (b = 0; b < tokens * TOY_SCRATCH_PER_TOKEN + TOY_SCRATCH_FIXED; ++b)
    scratch[b] = (unsigned char)b;
  for (i = 0; i < tokens; ++i) {
    int64_t id = hidden[i * TOY_HIDDEN + 0];
    int64_t pos = hidden[i * TOY_HIDDEN + 1];
    int64_t sum = hidden[i * TOY_HIDDEN + 2];
    int64_t count = hidden[i * TOY_HIDDEN + 3];
    int64_t target = (7 * id + 3 * pos + sum) % TOY_VOCAB;
    int64_t expert = id % 2;
    const unsigned char *expertData = (const unsigned char *)experts[expert];
    const unsigned char *expertScale =
        (const unsigned char *)experts[2 + expert];
    float projValue =
        toy_e4m3(proj[(pos % 2) * 4 + id % 4]) * toy_e8m0(projScale[0]);
    float expertValue =
        toy_e4m3(expertData[pos % 4]) * toy_e8m0(expertScale[0]);
    float countValue = (float)count * 0.25f;
    for (v = 0; v < TOY_VOCAB; ++v) {
      /* Checkpoint data carries no alignment guarantee. */
      float value;
      __builtin_memcpy(&value, bias + 4 * v, sizeof(value));
      value += v == target ? 16.0f : 0.0f;
      value += projValue;
      value += expertValue;
      value += countValue;
      logits[i * TOY_VOCAB + v] = value;
    }
  }
}

/* Not a kernel of the artifact: lets a test name a symbol that resolves
 * into libc instead (see CpuModule::lookup). */
int toy_unused_helper(void) { return 7; }
