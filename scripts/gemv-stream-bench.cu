// SPDX-License-Identifier: Apache-2.0
// An experiment for issue 11 (not part of the product): does a decode GEMV
// over FP4 rows reach more of the device's bandwidth when each warp stages
// its rows in shared memory through bulk copies (cp.async.bulk with an
// mbarrier a stage, several rows ahead) instead of loading them into
// registers (the generated dotRows: 4-byte segments a lane, a few rounds in
// flight)? Both variants compute the same f32 operations in the same order
// as the exact dots (FP4 through f16 times 2^-14, products summed in column
// order, times the block's UE8M0 scale), so their outputs must be
// bit-identical; a plain read kernel and a device-to-device copy give the
// ceilings. Variants with other bits measure the issue rate: the sums as
// fused multiply-adds, products summed in f16 pairs, and the fast numerics'
// warp-MMA form (fast-decode's experts: FP4 placed in f16 pairs, two
// mma.sync m16n8k16 a 32-column block, x in f16), whose distance from the
// exact outputs it prints; that form with K split in parts so that every
// warp has work (`gemvMma`'s P), and a form that reads whole sectors (a
// lane loads a whole 32-column block, the blocks' sums kept apart in the
// MMA's N columns: `gemvMmaWide`, the compiler's COMPRESSA_FP8_EXPERTS_WIDE).
//
//   nvcc -O3 -arch=sm_90a -o gemv-stream-bench scripts/gemv-stream-bench.cu
//   ./gemv-stream-bench [rows] [cols]      (default 24576 x 4096: the gate
//                                           and up rows of 6 V4-Flash experts)
#include <cuda_fp16.h>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <vector>
#include <algorithm>
#include <cmath>

#define CK(x)                                                                  \
  do {                                                                         \
    cudaError_t e_ = (x);                                                      \
    if (e_ != cudaSuccess) {                                                   \
      fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

constexpr int kThreads = 256, kWarps = kThreads / 32;

__device__ __forceinline__ float e8m0(uint32_t raw) {
  // 2^(raw - 127) times 2^14 (the FP4 decode's offset); raw 0 and 255 do not occur here.
  return __uint_as_float((raw + 14) << 23);
}

// The 8 FP4 codes of `w` as f32 (value times 2^-14), in column order.
__device__ __forceinline__ void decode8(uint32_t w, float v[8]) {
  uint32_t even = ((w << 4) & 0x80808080u) | ((w << 1) & 0x0E0E0E0Eu);
  uint32_t odd = (w & 0x80808080u) | ((w >> 3) & 0x0E0E0E0Eu);
  uint32_t q[4] = {__byte_perm(0, even, 0x6040), __byte_perm(0, odd, 0x6040),
                   __byte_perm(0, even, 0x7050), __byte_perm(0, odd, 0x7050)};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    __half2 h = *reinterpret_cast<__half2 *>(&q[j]);
    v[j] = __low2float(h);
    v[j + 4] = __high2float(h);
  }
}

// Segment g (8 columns, one word) of a row against x, unscaled.
__device__ __forceinline__ float segPart(uint32_t w, const float *__restrict__ x, int g) {
  float v[8];
  decode8(w, v);
  float4 a = __ldg(reinterpret_cast<const float4 *>(x) + 2 * g);
  float4 b = __ldg(reinterpret_cast<const float4 *>(x) + 2 * g + 1);
  float xs[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
  float p = __fmul_rn(xs[0], v[0]);
#pragma unroll
  for (int i = 1; i < 8; ++i) p = __fadd_rn(p, __fmul_rn(xs[i], v[i]));
  return p;
}

__device__ __forceinline__ float warpSum(float s) {
#pragma unroll
  for (int o = 16; o; o >>= 1) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, o));
  return s;
}

__device__ __forceinline__ uint32_t ldStream(const uint32_t *p) {
  uint32_t v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.b32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

// Variant A: registers. Warp per row (grid-stride), lane l takes segments
// l, l + 32, ...; U rounds' loads issued before their math.
template <int U>
__global__ void __launch_bounds__(kThreads) gemvRegs(const uint32_t *__restrict__ w,
                                                     const uint8_t *__restrict__ sc,
                                                     const float *__restrict__ x,
                                                     float *__restrict__ y, int rows, int cols) {
  int lane = threadIdx.x & 31;
  int warp = blockIdx.x * kWarps + (threadIdx.x >> 5), nw = gridDim.x * kWarps;
  int segs = cols / 8;  // words a row
  for (int r = warp; r < rows; r += nw) {
    const uint32_t *row = w + (size_t)r * segs;
    const uint8_t *rs = sc + (size_t)r * (cols / 32);
    float acc = 0.f;
    for (int g0 = 0; g0 < segs; g0 += 32 * U) {
      uint32_t ws[U];
      uint8_t ss[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        ws[u] = ldStream(row + g0 + 32 * u + lane);
        ss[u] = __ldg(rs + (g0 + 32 * u + lane) / 4);
      }
#pragma unroll
      for (int u = 0; u < U; ++u)
        acc = __fadd_rn(acc, __fmul_rn(segPart(ws[u], x, g0 + 32 * u + lane), e8m0(ss[u])));
    }
    acc = warpSum(acc);
    if (lane == 0) y[r] = acc;
  }
}

__device__ __forceinline__ uint32_t smemAddr(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Variant B: each warp streams its rows (and their scales) into S stages of
// shared memory with one bulk copy each, S rows ahead; the lanes read the
// stage's words (lane l: l, l + 32, ...) and compute as variant A.
template <int S>
__global__ void __launch_bounds__(kThreads) gemvBulk(const uint32_t *__restrict__ w,
                                                     const uint8_t *__restrict__ sc,
                                                     const float *__restrict__ x,
                                                     float *__restrict__ y, int rows, int cols) {
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ __align__(8) uint64_t bars[kWarps][S];
  int lane = threadIdx.x & 31, wib = threadIdx.x >> 5;
  int warp = blockIdx.x * kWarps + wib, nw = gridDim.x * kWarps;
  int rowBytes = cols / 2, scBytes = cols / 32, stageBytes = rowBytes + scBytes;
  uint8_t *mine = smem + (size_t)wib * S * stageBytes;
  int segs = cols / 8;
  if (lane == 0)
    for (int s = 0; s < S; ++s)
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smemAddr(&bars[wib][s])));
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  __syncwarp();
  auto issue = [&](int r, int s) {
    uint32_t bar = smemAddr(&bars[wib][s]);
    uint8_t *dst = mine + (size_t)s * stageBytes;
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar),
                 "r"(stageBytes)
                 : "memory");
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
            smemAddr(dst)),
        "l"(w + (size_t)r * segs), "r"(rowBytes), "r"(bar)
        : "memory");
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
            smemAddr(dst + rowBytes)),
        "l"(sc + (size_t)r * scBytes), "r"(scBytes), "r"(bar)
        : "memory");
  };
  if (lane == 0)
    for (int s = 0; s < S; ++s) {
      int r = warp + s * nw;
      if (r < rows) issue(r, s);
    }
  int i = 0;
  for (int r = warp; r < rows; r += nw, ++i) {
    int s = i % S;
    uint32_t phase = (i / S) & 1;
    uint32_t bar = smemAddr(&bars[wib][s]);
    asm volatile(
        "{\n .reg .pred p;\n WAIT_%=:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
        " @!p bra WAIT_%=;\n}" ::"r"(bar),
        "r"(phase)
        : "memory");
    const uint32_t *rw = reinterpret_cast<const uint32_t *>(mine + (size_t)s * stageBytes);
    const uint8_t *rs = mine + (size_t)s * stageBytes + rowBytes;
    float acc = 0.f;
    for (int g0 = 0; g0 < segs; g0 += 32 * 8) {
      uint32_t ws[8];
      uint8_t ss[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        int g = g0 + 32 * u + lane;
        ws[u] = g < segs ? rw[g] : 0;
        ss[u] = g < segs ? rs[g / 4] : 127;
      }
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        int g = g0 + 32 * u + lane;
        if (g < segs) acc = __fadd_rn(acc, __fmul_rn(segPart(ws[u], x, g), e8m0(ss[u])));
      }
    }
    __syncwarp();
    if (lane == 0) {
      int next = r + S * nw;
      if (next < rows) issue(next, s);
    }
    acc = warpSum(acc);
    if (lane == 0) y[r] = acc;
  }
}

// Variant C: the generated code's shape: a warp item of R rows sharing the
// loads of x, U rounds a trip (R * U words a lane in flight); with PIPE the
// next trip's words (of the same item) are loaded before this trip's math.
// MODE 0: the exact operations; 1: the products and sums as fused
// multiply-adds (other bits); 2: products summed in f16 pairs (__hfma2 on x
// in f16, `xh`: x[8g + j], x[8g + j + 4] a pair), then f32: about a third of
// the instructions a weight (other bits; a measure of the issue rate only).
template <int R, int U, bool PIPE, int MODE = 0>
__global__ void __launch_bounds__(kThreads) gemvItems(const uint32_t *__restrict__ w,
                                                      const uint8_t *__restrict__ sc,
                                                      const float *__restrict__ x,
                                                      float *__restrict__ y, int rows, int cols,
                                                      const uint4 *__restrict__ xh = nullptr) {
  int lane = threadIdx.x & 31;
  int warp = blockIdx.x * kWarps + (threadIdx.x >> 5), nw = gridDim.x * kWarps;
  int segs = cols / 8, trips = segs / (32 * U), items = rows / R;
  for (int it = warp; it < items; it += nw) {
    const uint32_t *row = w + (size_t)it * R * segs;
    const uint8_t *rs = sc + (size_t)it * R * (cols / 32);
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.f;
    uint32_t ws[U][R];
    uint8_t ss[U][R];
    auto load = [&](int t, uint32_t (&dw)[U][R], uint8_t (&ds)[U][R]) {
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < R; ++r) {
          int g = t * 32 * U + 32 * u + lane;
          dw[u][r] = ldStream(row + (size_t)r * segs + g);
          ds[u][r] = __ldg(rs + (size_t)r * (cols / 32) + g / 4);
        }
    };
    if (PIPE) load(0, ws, ss);
    for (int t = 0; t < trips; ++t) {
      uint32_t cw[U][R];
      uint8_t cs[U][R];
      if (PIPE) {
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
          for (int r = 0; r < R; ++r) cw[u][r] = ws[u][r], cs[u][r] = ss[u][r];
        load(t + 1 < trips ? t + 1 : t, ws, ss);
      } else {
        load(t, cw, cs);
      }
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < R; ++r) {
          int g = t * 32 * U + 32 * u + lane;
          float part;
          if (MODE == 0) {
            part = segPart(cw[u][r], x, g);
          } else if (MODE == 1) {
            float v[8];
            decode8(cw[u][r], v);
            float4 a = __ldg(reinterpret_cast<const float4 *>(x) + 2 * g);
            float4 b = __ldg(reinterpret_cast<const float4 *>(x) + 2 * g + 1);
            part = a.x * v[0];
            part = fmaf(a.y, v[1], part); part = fmaf(a.z, v[2], part); part = fmaf(a.w, v[3], part);
            part = fmaf(b.x, v[4], part); part = fmaf(b.y, v[5], part); part = fmaf(b.z, v[6], part);
            part = fmaf(b.w, v[7], part);
          } else {
            uint32_t wd = cw[u][r];
            uint32_t even = ((wd << 4) & 0x80808080u) | ((wd << 1) & 0x0E0E0E0Eu);
            uint32_t odd = (wd & 0x80808080u) | ((wd >> 3) & 0x0E0E0E0Eu);
            uint32_t q[4] = {__byte_perm(0, even, 0x6040), __byte_perm(0, odd, 0x6040),
                             __byte_perm(0, even, 0x7050), __byte_perm(0, odd, 0x7050)};
            uint4 xv = __ldg(xh + g);
            uint32_t xs[4] = {xv.x, xv.y, xv.z, xv.w};
            __half2 h2 = __hmul2(*reinterpret_cast<__half2 *>(&q[0]), *reinterpret_cast<__half2 *>(&xs[0]));
#pragma unroll
            for (int j = 1; j < 4; ++j)
              h2 = __hfma2(*reinterpret_cast<__half2 *>(&q[j]), *reinterpret_cast<__half2 *>(&xs[j]), h2);
            part = __low2float(h2) + __high2float(h2);
          }
          acc[r] = MODE == 0 ? __fadd_rn(acc[r], __fmul_rn(part, e8m0(cs[u][r])))
                             : fmaf(part, e8m0(cs[u][r]), acc[r]);
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float v = warpSum(acc[r]);
      if (lane == 0) y[(size_t)it * R + r] = v;
    }
  }
}

// An output: stored, or added by an atomic where K parts share it (y zeroed before).
__device__ __forceinline__ void store(float *p, float v, bool add) {
  if (add)
    atomicAdd(p, v);
  else
    *p = v;
}

__device__ __forceinline__ uint4 ldStream4(const uint4 *p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// Variant D: the fast numerics' form (fast-decode's experts): a warp item of
// T tiles of 16 rows; lane (g, t) reads word t (columns 8t .. 8t + 7) of a
// 32-column block of rows g and g + 8, places its codes in f16 pairs
// (columns j, j + 4) and runs two mma.sync m16n8k16 (f16, f32 sums) against
// x in f16 pairs of the same columns (`xh`), every B column holding x; a
// block's sums times its scale, U blocks' loads in flight. With P > 1 a warp
// item is the T tiles and one of P parts of the row's blocks, so that every
// warp has work (24576 rows are 1536 tiles, fewer than the 2112 warps of 132
// SMs), the parts' sums added into y by atomics. Other bits (x in f16, times
// 2^8).
__device__ __forceinline__ void mma16816(float d[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void placeF16(uint32_t w, uint32_t q[4]) {
  uint32_t even = ((w << 4) & 0x80808080u) | ((w << 1) & 0x0E0E0E0Eu);
  uint32_t odd = (w & 0x80808080u) | ((w >> 3) & 0x0E0E0E0Eu);
  q[0] = __byte_perm(0, even, 0x6040);
  q[1] = __byte_perm(0, odd, 0x6040);
  q[2] = __byte_perm(0, even, 0x7050);
  q[3] = __byte_perm(0, odd, 0x7050);
}

template <int T, int U, int P = 1>
__global__ void __launch_bounds__(kThreads) gemvMma(const uint32_t *__restrict__ w,
                                                    const uint8_t *__restrict__ sc,
                                                    const uint4 *__restrict__ xh,
                                                    float *__restrict__ y, int rows, int cols) {
  int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  int warp = blockIdx.x * kWarps + (threadIdx.x >> 5), nw = gridDim.x * kWarps;
  int words = cols / 8, blocks = cols / 32, per = blocks / P, items = rows / (16 * T) * P;
  for (int item = warp; item < items; item += nw) {
    int it = item / P, part = item % P;
    float acc[T][2];
#pragma unroll
    for (int tt = 0; tt < T; ++tt) acc[tt][0] = acc[tt][1] = 0.f;
    for (int b0 = part * per; b0 < (part + 1) * per; b0 += U) {
      uint32_t wa[U][T][2];
      uint8_t sa[U][T][2];
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int tt = 0; tt < T; ++tt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            size_t row = (size_t)it * 16 * T + tt * 16 + g + 8 * h;
            wa[u][tt][h] = ldStream(w + row * words + (b0 + u) * 4 + t);
            sa[u][tt][h] = __ldg(sc + row * blocks + b0 + u);
          }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        uint4 xv = __ldg(xh + (b0 + u) * 4 + t);
#pragma unroll
        for (int tt = 0; tt < T; ++tt) {
          uint32_t q[4], p[4];
          placeF16(wa[u][tt][0], q);
          placeF16(wa[u][tt][1], p);
          float d[4] = {0.f, 0.f, 0.f, 0.f};
          mma16816(d, q[0], p[0], q[1], p[1], xv.x, xv.y);
          mma16816(d, q[2], p[2], q[3], p[3], xv.z, xv.w);
          acc[tt][0] = fmaf(d[0], e8m0(sa[u][tt][0]), acc[tt][0]);
          acc[tt][1] = fmaf(d[2], e8m0(sa[u][tt][1]), acc[tt][1]);
        }
      }
    }
    if (t == 0)
#pragma unroll
      for (int tt = 0; tt < T; ++tt) {
        size_t row = (size_t)it * 16 * T + tt * 16 + g;
        store(y + row, acc[tt][0], P > 1);
        store(y + row + 8, acc[tt][1], P > 1);
      }
  }
}

// Variant E: the MMA form with whole sectors. A lane reads a whole 32-column
// block (16 bytes, one load) of rows g and g + 8: lane t block 4s + t of a
// span of 4 blocks, so a warp's load covers 64 contiguous bytes a row. The
// blocks keep their own sums by the MMA's N: B column n holds x of block
// 4s + n in the k slots of lane t = n and zeros elsewhere, so D column n is
// block 4s + n's sum (columns 4..7 unused). Eight MMAs a span, one
// accumulator; lanes t = 0, 1 then scale columns 2t, 2t + 1. U spans' loads
// in flight, K split in P parts as in gemvMma.
template <int U, int P>
__global__ void __launch_bounds__(kThreads) gemvMmaWide(const uint32_t *__restrict__ w32,
                                                        const uint8_t *__restrict__ sc,
                                                        const uint4 *__restrict__ xh,
                                                        float *__restrict__ y, int rows, int cols) {
  int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  int warp = blockIdx.x * kWarps + (threadIdx.x >> 5), nw = gridDim.x * kWarps;
  int blocks = cols / 32, spans = blocks / 4, per = spans / P, items = rows / 16 * P;
  bool on = g == t;
  const uint4 *w = reinterpret_cast<const uint4 *>(w32);
  for (int it = warp; it < items; it += nw) {
    int tile = it / P, part = it % P;
    float acc0 = 0.f, acc1 = 0.f;
    size_t r0 = (size_t)tile * 16 + g, r1 = r0 + 8;
    for (int s0 = part * per; s0 < (part + 1) * per; s0 += U) {
      uint4 wa[U][2];
      uint32_t sa[U][2];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        int blk = (s0 + u) * 4 + t;
        wa[u][0] = ldStream4(w + r0 * blocks + blk);
        wa[u][1] = ldStream4(w + r1 * blocks + blk);
        sa[u][0] = __ldg(reinterpret_cast<const uint32_t *>(sc + r0 * blocks) + s0 + u);
        sa[u][1] = __ldg(reinterpret_cast<const uint32_t *>(sc + r1 * blocks) + s0 + u);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const uint4 *xb = xh + ((s0 + u) * 4 + t) * 4;
        float d[4] = {0.f, 0.f, 0.f, 0.f};
        uint32_t a[4] = {wa[u][0].x, wa[u][0].y, wa[u][0].z, wa[u][0].w};
        uint32_t b[4] = {wa[u][1].x, wa[u][1].y, wa[u][1].z, wa[u][1].w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          uint4 xv = on ? __ldg(xb + i) : make_uint4(0, 0, 0, 0);
          uint32_t q[4], p[4];
          placeF16(a[i], q);
          placeF16(b[i], p);
          mma16816(d, q[0], p[0], q[1], p[1], xv.x, xv.y);
          mma16816(d, q[2], p[2], q[3], p[3], xv.z, xv.w);
        }
        if (t < 2) {
          int sh0 = 16 * t, sh1 = 16 * t + 8;
          acc0 = fmaf(d[0], e8m0((sa[u][0] >> sh0) & 255u), acc0);
          acc0 = fmaf(d[1], e8m0((sa[u][0] >> sh1) & 255u), acc0);
          acc1 = fmaf(d[2], e8m0((sa[u][1] >> sh0) & 255u), acc1);
          acc1 = fmaf(d[3], e8m0((sa[u][1] >> sh1) & 255u), acc1);
        }
      }
    }
    acc0 += __shfl_xor_sync(0xffffffffu, acc0, 1);
    acc1 += __shfl_xor_sync(0xffffffffu, acc1, 1);
    if (t == 0) {
      store(y + r0, acc0, P > 1);
      store(y + r1, acc1, P > 1);
    }
  }
}

// The ceiling: every byte of w read once (16 bytes a thread a trip).
__global__ void readAll(const uint4 *__restrict__ p, size_t n, uint32_t *sink) {
  uint32_t a = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    uint4 v = __ldcs(p + i);
    a ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (a == 0x12345678u) *sink = a;
}

__global__ void fillRandom(uint32_t *p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
    p[i] = h;
  }
}

template <typename F>
static float medianMs(F launch, int reps = 30) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) launch();
  std::vector<float> t;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a));
    launch();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  CK(cudaGetLastError());
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main(int argc, char **argv) {
  int rows = argc > 1 ? atoi(argv[1]) : 24576, cols = argc > 2 ? atoi(argv[2]) : 4096;
  if (rows <= 0 || cols <= 0 || cols % 256) {
    fprintf(stderr, "usage: %s [rows] [cols, a multiple of 256]\n", argv[0]);
    return 2;
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  int sms = prop.multiProcessorCount;
  size_t wBytes = (size_t)rows * cols / 2, sBytes = (size_t)rows * cols / 32;
  uint32_t *w, *sink;
  uint8_t *sc;
  float *x, *y0, *y1;
  CK(cudaMalloc(&w, wBytes));
  CK(cudaMalloc(&sc, sBytes));
  CK(cudaMalloc(&x, cols * sizeof(float)));
  CK(cudaMalloc(&y0, rows * sizeof(float)));
  CK(cudaMalloc(&y1, rows * sizeof(float)));
  CK(cudaMalloc(&sink, 4));
  fillRandom<<<1024, 256>>>(w, wBytes / 4, 1);
  // Scales 2^-3 .. 2^3 (bytes 124 .. 130), x in [-1, 1).
  std::vector<uint8_t> hs(sBytes);
  for (size_t i = 0; i < sBytes; ++i) hs[i] = uint8_t(124 + (i * 7919) % 7);
  CK(cudaMemcpy(sc, hs.data(), sBytes, cudaMemcpyHostToDevice));
  std::vector<float> hx(cols);
  for (int i = 0; i < cols; ++i) hx[i] = float((i * 37) % 201 - 100) / 100.f;
  CK(cudaMemcpy(x, hx.data(), cols * sizeof(float), cudaMemcpyHostToDevice));
  // A buffer larger than L2 to flush between launches.
  size_t flushBytes = 256u << 20;
  uint8_t *flush;
  CK(cudaMalloc(&flush, flushBytes));
  CK(cudaDeviceSynchronize());
  double bytes = double(wBytes + sBytes);
  printf("device %s, %d SMs; %d rows x %d FP4 columns: %.1f MB of weights and scales\n",
         prop.name, sms, rows, cols, bytes / 1e6);

  // Device copy (read + write counted, as compressa-bench's device_copy_GBps).
  float copyMs = medianMs([&] { CK(cudaMemcpyAsync(flush, flush + flushBytes / 2, flushBytes / 2, cudaMemcpyDeviceToDevice)); });
  printf("device copy: %.1f GB/s (read + write of %zu MB)\n", 2.0 * (flushBytes / 2) / copyMs / 1e6,
         flushBytes / 2 >> 20);
  auto flushL2 = [&] { CK(cudaMemsetAsync(flush, 0, 64u << 20)); };
  auto report = [&](const char *name, float ms) {
    printf("%-28s %9.2f us  %7.1f GB/s\n", name, ms * 1e3, bytes / ms / 1e6);
  };
  // The timed launch alone (the flush before it, outside the events).
  auto timed = [&](auto launch) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> t;
    for (int i = 0; i < 33; ++i) {
      flushL2();
      CK(cudaEventRecord(a));
      launch();
      CK(cudaEventRecord(b));
      CK(cudaEventSynchronize(b));
      float ms;
      CK(cudaEventElapsedTime(&ms, a, b));
      if (i >= 3) t.push_back(ms);
    }
    CK(cudaGetLastError());
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  int grid2 = 2 * sms;
  report("read-all (ceiling)", timed([&] { readAll<<<4 * sms, 512>>>(reinterpret_cast<const uint4 *>(w), wBytes / 16, sink); }));
  int segs = cols / 8;  // a U-round trip must divide a row
  report("regs U=4, 2 blocks/SM", timed([&] { gemvRegs<4><<<grid2, kThreads>>>(w, sc, x, y0, rows, cols); }));
  if (segs % 512 == 0)
    report("regs U=16, 2 blocks/SM", timed([&] { gemvRegs<16><<<grid2, kThreads>>>(w, sc, x, y0, rows, cols); }));
  report("regs U=8, 4 blocks/SM", timed([&] { gemvRegs<8><<<4 * sms, kThreads>>>(w, sc, x, y0, rows, cols); }));
  report("regs U=8, 2 blocks/SM", timed([&] { gemvRegs<8><<<grid2, kThreads>>>(w, sc, x, y0, rows, cols); }));
  auto items = [&](auto kernel, int r, int u, const char *name) {
    if (rows % r || segs % (32 * u)) return;
    CK(cudaMemset(y1, 0, rows * 4));
    report(name, timed([&] { kernel<<<grid2, kThreads>>>(w, sc, x, y1, rows, cols, nullptr); }));
  };
  std::vector<float> refA(rows), gotA(rows);
  CK(cudaMemcpy(refA.data(), y0, rows * 4, cudaMemcpyDeviceToHost));
  auto same = [&](const char *what) {
    CK(cudaMemcpy(gotA.data(), y1, rows * 4, cudaMemcpyDeviceToHost));
    if (memcmp(refA.data(), gotA.data(), rows * 4)) printf("  MISMATCH (%s)\n", what);
  };
  items(gemvItems<8, 2, false>, 8, 2, "item 8 rows U=2 (the code)"); same("8x2");
  items(gemvItems<8, 2, true>, 8, 2, "item 8 rows U=2 pipelined"); same("8x2p");
  items(gemvItems<8, 1, true>, 8, 1, "item 8 rows U=1 pipelined"); same("8x1p");
  items(gemvItems<4, 2, false>, 4, 2, "item 4 rows U=2"); same("4x2");
  items(gemvItems<4, 2, true>, 4, 2, "item 4 rows U=2 pipelined"); same("4x2p");
  items(gemvItems<2, 4, true>, 2, 4, "item 2 rows U=4 pipelined"); same("2x4p");
  items(gemvItems<1, 8, true>, 1, 8, "item 1 row U=8 pipelined"); same("1x8p");
  items(gemvItems<1, 4, true>, 1, 4, "item 1 row U=4 pipelined"); same("1x4p");
  // x in f16 pairs (times 2^8, so that the f16 products stay normal).
  std::vector<__half> hxh(cols);
  for (int g = 0; g < cols / 8; ++g)
    for (int j = 0; j < 4; ++j) {
      hxh[8 * g + 2 * j] = __float2half(hx[8 * g + j] * 256.f);
      hxh[8 * g + 2 * j + 1] = __float2half(hx[8 * g + j + 4] * 256.f);
    }
  uint4 *xh;
  CK(cudaMalloc(&xh, cols * 2));
  CK(cudaMemcpy(xh, hxh.data(), cols * 2, cudaMemcpyHostToDevice));
  auto itemsX = [&](auto kernel, int r, int u, const char *name) {
    if (rows % r || segs % (32 * u)) return;
    report(name, timed([&] { kernel<<<grid2, kThreads>>>(w, sc, x, y1, rows, cols, xh); }));
  };
  itemsX(gemvItems<8, 2, false, 1>, 8, 2, "item 8x2, FMA (other bits)");
  itemsX(gemvItems<4, 2, true, 1>, 4, 2, "item 4x2 pipelined, FMA");
  itemsX(gemvItems<8, 2, false, 2>, 8, 2, "item 8x2, f16 pairs (other bits)");
  itemsX(gemvItems<4, 2, true, 2>, 4, 2, "item 4x2 pipelined, f16 pairs");
  itemsX(gemvItems<2, 4, true, 2>, 2, 4, "item 2x4 pipelined, f16 pairs");
  // The MMA form; its outputs against the exact ones (x was scaled by 2^8).
  auto mmaRun = [&](auto kernel, int t, int u, const char *name) {
    if (rows % (16 * t) || (cols / 32) % u) return;
    CK(cudaMemset(y1, 0, rows * 4));
    report(name, timed([&] { kernel<<<grid2, kThreads>>>(w, sc, xh, y1, rows, cols); }));
    CK(cudaMemcpy(gotA.data(), y1, rows * 4, cudaMemcpyDeviceToHost));
    double worst = 0, scale = 0;
    for (int i = 0; i < rows; ++i) {
      worst = std::max(worst, std::abs(double(gotA[i]) / 256.0 - refA[i]));
      scale = std::max(scale, std::abs(double(refA[i])));
    }
    printf("  max |mma / 2^8 - exact| = %.3e (max |exact| %.3e)\n", worst, scale);
  };
  mmaRun(gemvMma<1, 4>, 1, 4, "mma 16 rows, 4 blocks");
  mmaRun(gemvMma<1, 8>, 1, 8, "mma 16 rows, 8 blocks");
  mmaRun(gemvMma<2, 2>, 2, 2, "mma 32 rows, 2 blocks");
  mmaRun(gemvMma<2, 4>, 2, 4, "mma 32 rows, 4 blocks");
  mmaRun(gemvMma<4, 2>, 4, 2, "mma 64 rows, 2 blocks");
  auto mmaSplit = [&](auto kernel, int u, int parts, int wide, const char *name) {
    int unitsPerRow = wide ? cols / 128 : cols / 32;
    if (rows % 16 || unitsPerRow % (u * parts)) return;
    report(name, timed([&] {
      CK(cudaMemsetAsync(y1, 0, rows * 4));
      kernel<<<grid2, kThreads>>>(w, sc, xh, y1, rows, cols);
    }));
    CK(cudaMemcpy(gotA.data(), y1, rows * 4, cudaMemcpyDeviceToHost));
    double worst = 0;
    for (int i = 0; i < rows; ++i) worst = std::max(worst, std::abs(double(gotA[i]) / 256.0 - refA[i]));
    printf("  max |mma / 2^8 - exact| = %.3e\n", worst);
  };
  // (the zeroing of y is inside the timed span: a memset of rows floats)
  mmaSplit(gemvMma<1, 4, 2>, 4, 2, 0, "mma split 4 blk, 2 parts");
  mmaSplit(gemvMma<1, 8, 2>, 8, 2, 0, "mma split 8 blk, 2 parts");
  mmaSplit(gemvMma<1, 8, 4>, 8, 4, 0, "mma split 8 blk, 4 parts");
  mmaSplit(gemvMma<1, 4, 8>, 4, 8, 0, "mma split 4 blk, 8 parts");
  mmaSplit(gemvMmaWide<1, 2>, 1, 2, 1, "mma wide 1 span, 2 parts");
  mmaSplit(gemvMmaWide<2, 2>, 2, 2, 1, "mma wide 2 spans, 2 parts");
  mmaSplit(gemvMmaWide<2, 4>, 2, 4, 1, "mma wide 2 spans, 4 parts");
  mmaSplit(gemvMmaWide<4, 2>, 4, 2, 1, "mma wide 4 spans, 2 parts");
  mmaSplit(gemvMmaWide<4, 4>, 4, 4, 1, "mma wide 4 spans, 4 parts");
  mmaSplit(gemvMmaWide<2, 8>, 2, 8, 1, "mma wide 2 spans, 8 parts");
  std::vector<float> ref(rows), got(rows);
  CK(cudaMemcpy(ref.data(), y0, rows * 4, cudaMemcpyDeviceToHost));
  int stageBytes = cols / 2 + cols / 32;
  auto bulk = [&](auto kernel, int stages, int blocksPerSm, const char *name) {
    int smemBytes = kWarps * stages * stageBytes;
    if (smemBytes * blocksPerSm > 220 * 1024) {
      printf("%-28s (skipped: %d bytes of shared memory a block)\n", name, smemBytes);
      return;
    }
    CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smemBytes));
    CK(cudaMemset(y1, 0, rows * 4));
    report(name, timed([&] { kernel<<<blocksPerSm * sms, kThreads, smemBytes>>>(w, sc, x, y1, rows, cols); }));
    CK(cudaMemcpy(got.data(), y1, rows * 4, cudaMemcpyDeviceToHost));
    if (memcmp(ref.data(), got.data(), rows * 4)) {
      int bad = 0;
      for (int i = 0; i < rows; ++i) bad += memcmp(&ref[i], &got[i], 4) != 0;
      printf("  MISMATCH: %d of %d outputs differ from the register variant\n", bad, rows);
    }
  };
  bulk(gemvBulk<2>, 2, 2, "bulk S=2, 2 blocks/SM");
  bulk(gemvBulk<3>, 3, 2, "bulk S=3, 2 blocks/SM");
  bulk(gemvBulk<4>, 4, 2, "bulk S=4, 2 blocks/SM");
  bulk(gemvBulk<6>, 6, 2, "bulk S=6, 2 blocks/SM");
  bulk(gemvBulk<2>, 2, 1, "bulk S=2, 1 block/SM");
  bulk(gemvBulk<4>, 4, 1, "bulk S=4, 1 block/SM");
  bulk(gemvBulk<8>, 8, 1, "bulk S=8, 1 block/SM");
  double sum = 0;
  for (float v : ref) sum += v;
  printf("checksum %.6e (outputs of the register variant)\n", sum);
  return 0;
}
