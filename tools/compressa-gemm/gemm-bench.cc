// SPDX-License-Identifier: Apache-2.0
// gemm-bench: runs the compiler's tensor-core FP8 GEMM (compressa-gemm
// --emit=ptx) and its act_quant kernel (compressa-gemm --kernel=act-quant) on
// a GPU, checks them against references written here from the spec
// (section 3: act_quant with 1x128 blocks and UE8M0 scales; the FP8 GEMM with
// f32 accumulation per 128-K block), and times the GEMM.
//
//   gemm-bench --gemm GEMM.ptx --m M --n N --k K [--act ACT.ptx] [--iters I]
//              [--stages S] [--cluster 1|2] [--persistent [--group-m G]]
//              [--groups G]
//              (compressa-gemm's options; with G groups the activations are
//              [M, G K] and --act takes the act_quant kernel of G K)
//   gemm-bench --indexer INDEXER.ptx --heads H --dim DI --ratio R --capacity C
//              --tokens S --start P [--iters I] [--check-rows N]
//   gemm-bench --topk TOPK.ptx --selected K --ratio R --capacity C --tokens S
//              --start P [--iters I] [--check-rows N]
//   gemm-bench --attention MAX.ptx --sums SUMS.ptx --heads H --dim D
//              --window W --ratio R --capacity C --scale X --tokens S
//              --start P [--iters I] [--check-rows N]
//
// --indexer runs the lightning indexer's tensor-core scores (compressa-gemm
// --kernel=indexer-scores, lowering/TensorCore/WgmmaIndexer.h) over S tokens
// from position P against a float64 reference of the same semantics (q and
// keys rounded to bf16, exact products): every score a sampled token sees
// within 1e-4 of the sum of its terms' magnitudes, every other entry of its
// row untouched; then times it (TFLOP/s: 2 H DI per visible key a token).
//
// --attention runs the HCA attention's two kernels (compressa-gemm
// --kernel=attention-max and attention-sums, WgmmaAttention.h) over S
// tokens from position P against a float64 reference (bf16 inputs, exact
// products; the maxima within 1e-5 relative, the outputs within the bound
// bf16(p) allows: 2^-8 of sum p |v| / den), then times both (TFLOP/s: 2 H D
// per key a token for the maxima, twice that for the sums).
//
// Prints one line per run: shape, act_quant bytes that differ from the
// reference, the GEMM's error against a float64 reference (max |diff| / max
// |ref| and ||diff|| / ||ref|| over the checked rows), the median time of
// one launch and TFLOP/s (2 M N K flops). Exits 1 on a mismatch or error.
// Links the runtime only (no MLIR): the driver through runtime/cuda.
#include "lowering/TensorCore/ActQuantReference.h"
#include "runtime/cuda/cuda_driver.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using compressa::CudaDriver;

const CudaDriver *cu = nullptr;

[[noreturn]] void die(const std::string &message) {
  std::fprintf(stderr, "gemm-bench: error: %s\n", message.c_str());
  std::exit(1);
}

void check(CUresult r, const char *what) {
  if (r != CUDA_SUCCESS)
    die(std::string(what) + ": " + compressa::cudaErrorText(r));
}

std::string readFile(const std::string &path) {
  FILE *f = std::fopen(path.c_str(), "rb");
  if (!f)
    die("cannot open " + path);
  std::string s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    s.append(buf, n);
  std::fclose(f);
  return s;
}

/// The kernel of a PTX module (the driver compiles the PTX for the device).
CUfunction loadKernel(const std::string &ptxPath, const char *name) {
  std::string ptx = readFile(ptxPath);
  CUmodule module;
  check(cu->cuModuleLoadData(&module, ptx.c_str()), "cuModuleLoadData");
  CUfunction fn;
  check(cu->cuModuleGetFunction(&fn, module, name), "cuModuleGetFunction");
  return fn;
}

/// xorshift: deterministic inputs from a seed.
struct Rng {
  uint64_t s;
  uint32_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return uint32_t(s >> 16);
  }
  double uniform() { return (next() & 0xFFFFFF) / double(1 << 24); }
};

namespace ref = compressa::reference;
using compressa::reference::actQuantRow;
using compressa::reference::fp8GemmOutput;

struct Options {
  std::string gemm, act;
  int64_t m = 0, n = 0, k = 0, iters = 20, checkRows = 48, stages = 4, cluster = 1, groups = 1,
          groupM = 0;
  bool persistent = false;
  uint64_t seed = 1;
};

Options parse(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--gemm") o.gemm = value();
    else if (a == "--act") o.act = value();
    else if (a == "--m") o.m = std::atoll(value().c_str());
    else if (a == "--n") o.n = std::atoll(value().c_str());
    else if (a == "--k") o.k = std::atoll(value().c_str());
    else if (a == "--iters") o.iters = std::atoll(value().c_str());
    else if (a == "--check-rows") o.checkRows = std::atoll(value().c_str());
    else if (a == "--stages") o.stages = std::atoll(value().c_str());
    else if (a == "--seed") o.seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--cluster") o.cluster = std::atoll(value().c_str());
    else if (a == "--persistent") o.persistent = true;
    else if (a == "--groups") o.groups = std::atoll(value().c_str());
    else if (a == "--group-m") o.groupM = std::atoll(value().c_str());
    else die("unknown argument " + a + " (usage: gemm-bench --gemm GEMM.ptx "
             "--m M --n N --k K [--act ACT.ptx] [--stages S] [--cluster 1|2] [--persistent] "
             "[--group-m G] [--groups G] [--iters I] [--check-rows R])");
  }
  if (o.cluster != 1 && o.cluster != 2)
    die("--cluster must be 1 or 2 (compressa-gemm --cluster)");
  if (o.gemm.empty() || o.m < 1 || o.n < 128 || o.k < 128 || o.n % 128 || o.k % 128)
    die("need --gemm PTX, --m >= 1 and --n, --k positive multiples of 128");
  if (o.groups < 1 || o.n % (128 * o.groups))
    die("--groups G needs --n a multiple of 128 G");
  return o;
}

CUdeviceptr alloc(size_t bytes) {
  CUdeviceptr p;
  check(cu->cuMemAlloc(&p, bytes), "cuMemAlloc");
  return p;
}

/// The maps' L2 promotion: 256 bytes, as the runtime's maps
/// (runtime/cuda); GEMM_BENCH_L2_PROMOTION=none|64|128|256 for experiments.
CUtensorMapL2promotion l2Promotion() {
  const char *e = std::getenv("GEMM_BENCH_L2_PROMOTION");
  std::string v = e ? e : "256";
  if (v == "none")
    return CU_TENSOR_MAP_L2_PROMOTION_NONE;
  if (v == "64")
    return CU_TENSOR_MAP_L2_PROMOTION_L2_64B;
  if (v == "128")
    return CU_TENSOR_MAP_L2_PROMOTION_L2_128B;
  if (v != "256")
    die("GEMM_BENCH_L2_PROMOTION must be none, 64, 128 or 256, got '" + v + "'");
  return CU_TENSOR_MAP_L2_PROMOTION_L2_256B;
}

/// A tensor map of a row-major [rows, cols] byte matrix in 128-byte x boxRows boxes
/// with the 128-byte swizzle, rows past the end read as zero.
CUtensorMap tileMap(CUdeviceptr base, int64_t rows, int64_t cols, unsigned boxRows = 128) {
  CUtensorMap map;
  cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  cuuint64_t strides[1] = {cuuint64_t(cols)};
  cuuint32_t box[2] = {128, boxRows}, elementStrides[2] = {1, 1};
  check(cu->cuTensorMapEncodeTiled(
            &map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, reinterpret_cast<void *>(base),
            dims, strides, box, elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE,
            CU_TENSOR_MAP_SWIZZLE_128B, l2Promotion(), CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
        "cuTensorMapEncodeTiled");
  return map;
}

/// Loads the driver (it must encode tensor maps), makes device 0's primary
/// context current and returns the device and a new stream.
CUdevice setUp(CUstream &stream) {
  auto driver = compressa::loadCudaDriver();
  if (!driver.ok())
    die(driver.status().message());
  cu = *driver;
  if (!cu->cuTensorMapEncodeTiled)
    die("the driver has no cuTensorMapEncodeTiled (CUDA 12 or newer needed)");
  CUdevice dev;
  check(cu->cuDeviceGet(&dev, 0), "cuDeviceGet");
  CUcontext ctx;
  check(cu->cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
  check(cu->cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  check(cu->cuStreamCreate(&stream, 0), "cuStreamCreate");
  return dev;
}

/// The median time in ms of `iters` launches (CUDA events around each),
/// after `warmups` untimed ones.
template <class Launch>
double medianMs(CUstream stream, int64_t iters, int warmups, Launch launch) {
  CUevent start, stop;
  check(cu->cuEventCreate(&start, 0), "cuEventCreate");
  check(cu->cuEventCreate(&stop, 0), "cuEventCreate");
  for (int i = 0; i < warmups; ++i)
    launch();
  std::vector<float> ms;
  for (int64_t i = 0; i < iters; ++i) {
    check(cu->cuEventRecord(start, stream), "cuEventRecord");
    launch();
    check(cu->cuEventRecord(stop, stream), "cuEventRecord");
    check(cu->cuStreamSynchronize(stream), "timing");
    float t = 0;
    check(cu->cuEventElapsedTime(&t, start, stop), "cuEventElapsedTime");
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return ms.empty() ? 0 : ms[ms.size() / 2];
}

float bf16Round(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  u &= 0xFFFF0000u;
  std::memcpy(&v, &u, 4);
  return v;
}

int indexerMain(int argc, char **argv) {
  std::string ptxPath;
  int64_t heads = 64, dim = 128, ratio = 4, capacity = 0, tokens = 0, startPos = 0,
          iters = 10, checkRows = 24;
  bool fp8 = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--indexer") ptxPath = value();
    else if (a == "--fp8") fp8 = true;
    else if (a == "--heads") heads = std::atoll(value().c_str());
    else if (a == "--dim") dim = std::atoll(value().c_str());
    else if (a == "--ratio") ratio = std::atoll(value().c_str());
    else if (a == "--capacity") capacity = std::atoll(value().c_str());
    else if (a == "--tokens") tokens = std::atoll(value().c_str());
    else if (a == "--start") startPos = std::atoll(value().c_str());
    else if (a == "--iters") iters = std::atoll(value().c_str());
    else if (a == "--check-rows") checkRows = std::atoll(value().c_str());
    else die("unknown argument " + a + " (usage: gemm-bench --indexer PTX --heads H "
             "--dim DI --ratio R --capacity C --tokens S --start P [--fp8] [--iters I])");
  }
  if (ptxPath.empty() || heads < 8 || 64 % heads || dim % 64 || ratio < 1 || tokens < 1 ||
      startPos < 0 || (startPos + tokens) / ratio > capacity || dim > 128)
    die("--indexer needs a PTX, heads dividing 64 (at least 8), DI 64 or 128, and "
        "(start + tokens) / ratio <= capacity");
  CUstream stream;
  CUdevice dev = setUp(stream);
  int sms = 0;
  check(cu->cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev),
        "cuDeviceGetAttribute");

  Rng rng{0x5EED1234ull};
  auto uni = [&] { return float(rng.uniform() * 2 - 1); };
  // q: bf16 values, or (--fp8) e4m3 codes (any finite one) as the part
  // before writes them; qf their values.
  std::vector<uint16_t> q(size_t(tokens) * heads * dim);
  // (--fp8: rows of 128 bytes, WgmmaIndexerShape::rowBytes; a pad of
  // NaN codes after di = 64, never to be read.)
  std::vector<uint8_t> q8(fp8 ? size_t(tokens) * heads * 128 : 0, 0x7F);
  std::vector<float> qf(q.size());
  for (size_t i = 0; i < q.size(); ++i) {
    if (fp8) {
      uint8_t c;
      do
        c = uint8_t(rng.next() >> 24);
      while ((c & 0x7F) == 0x7F);
      q8[i / dim * 128 + i % dim] = c;
      qf[i] = float(ref::e4m3Value(c));
      continue;
    }
    float v = bf16Round(uni());
    qf[i] = v;
    uint32_t u;
    std::memcpy(&u, &v, 4);
    q[i] = uint16_t(u >> 16);
  }
  // The keys: f32 state rows (the kernel rounds or quantises them; with
  // --fp8 rows of magnitudes 2^-6 .. 2^6, for their scales); the rows past
  // the visible ones hold garbage that must not matter.
  std::vector<float> keys(size_t(capacity) * dim);
  for (size_t i = 0; i < keys.size(); ++i)
    keys[i] = fp8 ? std::ldexp(uni(), int((i / dim) % 13) - 6) : uni();
  int64_t most = (startPos + tokens) / ratio;
  for (size_t i = size_t(most) * dim; i < keys.size(); ++i)
    keys[i] = (i % 7 == 0) ? NAN : 1e30f;
  std::vector<float> hw(size_t(tokens) * heads);
  for (auto &w : hw)
    w = uni();

  CUdeviceptr dq = alloc(q.size() * 2), dk = alloc(keys.size() * 4), dhw = alloc(hw.size() * 4),
              ds = alloc(size_t(tokens) * capacity * 4), dtok = alloc(8), dstart = alloc(8),
              dstage = alloc(64), dargv = alloc(4 * 8), dmap = alloc(128);
  if (fp8)
    check(cu->cuMemcpyHtoDAsync(dq, q8.data(), q8.size(), stream), "copy q");
  else
    check(cu->cuMemcpyHtoDAsync(dq, q.data(), q.size() * 2, stream), "copy q");
  check(cu->cuMemcpyHtoDAsync(dk, keys.data(), keys.size() * 4, stream), "copy keys");
  check(cu->cuMemcpyHtoDAsync(dhw, hw.data(), hw.size() * 4, stream), "copy hw");
  check(cu->cuMemcpyHtoDAsync(dtok, &tokens, 8, stream), "copy S");
  check(cu->cuMemcpyHtoDAsync(dstart, &startPos, 8, stream), "copy start");
  // The staging header (WgmmaIndexer.h): keys, hw, scores at bytes 16..39;
  // q's rows through a tensor map (bytes [S heads, 2 di], 128 x 128 boxes).
  CUdeviceptr header[8] = {0, 0, dk, dhw, ds, 0, 0, 0};
  check(cu->cuMemcpyHtoDAsync(dstage, header, sizeof header, stream), "copy header");
  CUtensorMap qmap = tileMap(dq, tokens * heads, fp8 ? 128 : dim * 2);
  check(cu->cuMemcpyHtoDAsync(dmap, &qmap, sizeof qmap, stream), "copy q map");
  CUdeviceptr argv4[4] = {dtok, dstart, dstage, dmap};
  check(cu->cuMemcpyHtoDAsync(dargv, argv4, sizeof argv4, stream), "copy argv");
  check(cu->cuMemsetD8Async(ds, 0xFF, size_t(tokens) * capacity * 4, stream), "poison scores");

  const int64_t stages = 4, kTiles = fp8 ? 1 : dim / 64;
  std::string name = "compressa_tc_indexer_h" + std::to_string(heads) + "_d" +
                     std::to_string(dim) + "_r" + std::to_string(ratio) + "_c" +
                     std::to_string(capacity) + "_s" + std::to_string(stages) +
                     (fp8 ? "_f8" : "");
  CUfunction fn = loadKernel(ptxPath, name.c_str());
  // WgmmaIndexerShape::sharedBytes(): 256 keys, q stages, (FP8) the keys'
  // scales, alignment.
  const int shared = int((2 + stages) * kTiles * 16384 + (fp8 ? 1024 : 0) + 1024);
  check(cu->cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared),
        "cuFuncSetAttribute(shared)");
  void *params[] = {&dargv};
  auto launch = [&] {
    check(cu->cuLaunchKernel(fn, unsigned(sms), 1, 1, 384, 1, 1, unsigned(shared), stream,
                             params, nullptr),
          "launch indexer");
  };
  launch();
  check(cu->cuStreamSynchronize(stream), "indexer");

  std::vector<int64_t> rows;
  for (int64_t i = 0; i < std::min(tokens, checkRows); ++i)
    rows.push_back(tokens <= checkRows ? i : (i * 7919) % tokens);
  rows.push_back(tokens - 1);
  double worst = 0;
  long long unwritten = 0, stray = 0, checked = 0;
  std::vector<float> got(capacity);
  // The keys as the kernel multiplies them: bf16, or act_quant'ed (codes
  // times scale: ActQuantReference.h).
  std::vector<float> kb(size_t(most) * dim);
  if (fp8) {
    std::vector<uint8_t> codes(dim);
    uint8_t scale;
    for (int64_t j = 0; j < most; ++j) {
      ref::actQuantRow(&keys[size_t(j) * dim], dim, codes.data(), &scale);
      for (int64_t d = 0; d < dim; ++d)
        kb[size_t(j) * dim + d] = float(ref::e4m3Value(codes[d]) * ref::ue8m0Value(scale));
    }
  } else {
    for (size_t i = 0; i < kb.size(); ++i)
      kb[i] = bf16Round(keys[i]);
  }
  for (int64_t s : rows) {
    check(cu->cuMemcpyDtoHAsync(got.data(), ds + size_t(s) * capacity * 4, capacity * 4, stream),
          "copy scores");
    check(cu->cuStreamSynchronize(stream), "copy scores");
    int64_t avail = (startPos + s + 1) / ratio;
    // Every visible key of a short row; of a long one, a stride and the last.
    int64_t stride = std::max<int64_t>(1, avail / 2048);
    for (int64_t j = 0; j < capacity; ++j) {
      if (j >= avail) {
        stray += !std::isnan(got[j]);
        continue;
      }
      if (j % stride && j + 1 != avail)
        continue;
      double ref = 0, mag = 0;
      for (int64_t h = 0; h < heads; ++h) {
        const float *qh = &qf[(size_t(s) * heads + h) * dim];
        const float *kj = &kb[size_t(j) * dim];
        double dot = 0, abs = 0;
        for (int64_t d = 0; d < dim; ++d) {
          dot += double(qh[d]) * kj[d];
          abs += std::fabs(double(qh[d]) * kj[d]);
        }
        double w = hw[size_t(s) * heads + h];
        ref += w * std::max(dot, 0.0);
        mag += std::fabs(w) * abs;
      }
      ++checked;
      if (!std::isfinite(got[j])) {
        ++unwritten;
        continue;
      }
      worst = std::max(worst, std::fabs(got[j] - ref) / std::max(mag, 1e-30));
    }
  }
  double median = medianMs(stream, iters, 1, launch);
  double pairs = 0;
  for (int64_t s = 0; s < tokens; ++s)
    pairs += double((startPos + s + 1) / ratio);
  double tflops = median > 0 ? pairs * heads * dim * 2 / (median * 1e-3) / 1e12 : 0;
  // FP8: the tensor cores' e4m3 products are summed with fewer bits than
  // f32 within the 128 of a key (DeepGEMM promotes every 128 for it);
  // the bound is that of the FP8 GEMM's check.
  const double bound = fp8 ? 1e-3 : 1e-4, peak = fp8 ? 1979 : 989;
  bool ok = worst < bound && unwritten == 0 && stray == 0 && checked > 0;
  std::printf("indexer%s H=%lld DI=%lld ratio=%lld capacity=%lld S=%lld start=%lld  "
              "checked %lld scores of %zu rows: max |d|/sum|terms| %.3g (bound %.0e), "
              "unwritten %lld, stray writes %lld  %s  %.4f ms  %.1f TFLOP/s (%.1f%% of %.0f "
              "%s) on %d SMs\n",
              fp8 ? " fp8" : "", (long long)heads, (long long)dim, (long long)ratio,
              (long long)capacity, (long long)tokens, (long long)startPos, checked,
              rows.size(), worst, bound, unwritten, stray, ok ? "ok" : "FAIL", median, tflops,
              100 * tflops / peak, peak, fp8 ? "e4m3" : "bf16", sms);
  return ok ? 0 : 1;
}


/// bf16 bits of a value already on the bf16 grid.
uint16_t bf16Bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return uint16_t(u >> 16);
}

int attentionMain(int argc, char **argv) {
  std::string maxPath, sumsPath;
  int64_t heads = 64, dim = 512, window = 128, ratio = 128, capacity = 0, tokens = 0,
          startPos = 0, iters = 10, checkRows = 12, topk = 0;
  double scale = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--attention") maxPath = value();
    else if (a == "--sums") sumsPath = value();
    else if (a == "--heads") heads = std::atoll(value().c_str());
    else if (a == "--dim") dim = std::atoll(value().c_str());
    else if (a == "--window") window = std::atoll(value().c_str());
    else if (a == "--ratio") ratio = std::atoll(value().c_str());
    else if (a == "--capacity") capacity = std::atoll(value().c_str());
    else if (a == "--tokens") tokens = std::atoll(value().c_str());
    else if (a == "--start") startPos = std::atoll(value().c_str());
    else if (a == "--scale") scale = std::atof(value().c_str());
    else if (a == "--selected") topk = std::atoll(value().c_str());
    else if (a == "--iters") iters = std::atoll(value().c_str());
    else if (a == "--check-rows") checkRows = std::atoll(value().c_str());
    else die("unknown argument " + a + " (usage: gemm-bench --attention MAX.ptx --sums "
             "SUMS.ptx --heads H --dim D --window W --ratio R --capacity C --scale X "
             "--tokens S --start P [--iters I])");
  }
  if (maxPath.empty() || sumsPath.empty() || heads < 64 || heads % 64 || dim % 128 ||
      dim > 512 || window < 1 || ratio < 1 || tokens < 1 || startPos < 0 || !(scale > 0) ||
      (startPos + tokens) / ratio > capacity || topk < 0 ||
      (topk && (topk % 64 || window % 64)))
    die("--attention needs the two PTX files, heads a multiple of 64, D 128..512, a "
        "positive window, ratio and scale, (start + tokens) / ratio <= capacity, and a "
        "--selected and window that are multiples of 64");
  CUstream stream;
  CUdevice dev = setUp(stream);
  int sms = 0;
  check(cu->cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev),
        "cuDeviceGetAttribute");
  Rng rng{0xA77E7710ull};
  auto uni = [&] { return float(rng.uniform() * 2 - 1); };
  auto bf16Vector = [&](size_t n, std::vector<float> &f) {
    std::vector<uint16_t> b(n);
    f.resize(n);
    for (size_t i = 0; i < n; ++i) {
      f[i] = bf16Round(uni());
      b[i] = bf16Bits(f[i]);
    }
    return b;
  };
  // q [S heads, D]; the window copy: positions wBase .. start + S - 1, then
  // 128 zero rows (the padding the part before writes); the entries' copy:
  // the visible ones, zeros to the next 64, NaN past them (never read).
  int64_t wBase = std::max<int64_t>(0, startPos - window + 1);
  int64_t wCount = startPos + tokens - wBase, most = (startPos + tokens) / ratio;
  std::vector<float> qf, wf, ef;
  // q in f32 (the kernel rounds it; values on the bf16 grid plus a small
  // part below it, which the rounding must drop).
  bf16Vector(size_t(tokens) * heads * dim, qf);
  std::vector<float> q(qf);
  for (float &x : q)
    x = x + x * float(std::ldexp(uni(), -10));
  for (size_t i = 0; i < q.size(); ++i)
    qf[i] = bf16Round(q[i]);
  std::vector<uint16_t> w = bf16Vector(size_t(wCount + 128) * dim, wf);
  std::vector<uint16_t> e = bf16Vector(size_t(capacity) * dim, ef);
  for (size_t i = size_t(wCount) * dim; i < w.size(); ++i)
    w[i] = 0, wf[i] = 0;
  int64_t padded = std::min(capacity, (most + 63) / 64 * 64);
  for (size_t i = size_t(most) * dim; i < e.size(); ++i) {
    bool pad = int64_t(i / dim) < padded;
    e[i] = pad ? 0 : 0x7FC0;
    ef[i] = pad ? 0 : NAN;
  }
  std::vector<float> sink(heads);
  for (auto &x : sink)
    x = uni();
  // --selected K: each token's K slots pick random visible entries (a few
  // slots -1, and all of them past the visible count), and its keys are
  // rows of a copy of its own: the window's (zeros past the token's), then
  // the selected entries' (zeros for -1).
  int64_t keysPer = (window + 63) / 64 * 64 + topk;
  std::vector<int32_t> ids(size_t(tokens) * topk, -1);
  std::vector<uint16_t> own;
  if (topk) {
    own.assign(size_t(tokens) * keysPer * dim, 0);
    for (int64_t s = 0; s < tokens; ++s) {
      int64_t pos = startPos + s, first = std::max<int64_t>(0, pos - window + 1);
      int64_t ne = (pos + 1) / ratio;
      for (int64_t j = 0; j <= pos - first; ++j)
        std::memcpy(&own[(size_t(s) * keysPer + j) * dim], &w[size_t(first + j - wBase) * dim],
                    dim * 2);
      for (int64_t slot = 0; slot < topk; ++slot) {
        int32_t id = (slot < ne && rng.next() % 8) ? int32_t(rng.next() % ne) : -1;
        ids[size_t(s) * topk + slot] = id;
        if (id >= 0)
          std::memcpy(&own[(size_t(s) * keysPer + keysPer - topk + slot) * dim],
                      &e[size_t(id) * dim], dim * 2);
      }
    }
  }
  CUdeviceptr dq = alloc(q.size() * 4), dw = alloc(w.size() * 2), de = alloc(e.size() * 2),
              dsink = alloc(heads * 4), dm = alloc(size_t(tokens) * heads * 4),
              dout = alloc(size_t(tokens) * heads * dim * 4), dtok = alloc(8), dstart = alloc(8),
              dstage = alloc(64), dargv = alloc(5 * 8), dmaps = alloc(2 * 128),
              down = alloc(std::max<size_t>(own.size() * 2, 16)),
              dids = alloc(std::max<size_t>(ids.size() * 4, 16));
  if (topk) {
    check(cu->cuMemcpyHtoDAsync(down, own.data(), own.size() * 2, stream), "copy own keys");
    check(cu->cuMemcpyHtoDAsync(dids, ids.data(), ids.size() * 4, stream), "copy ids");
  }
  check(cu->cuMemcpyHtoDAsync(dq, q.data(), q.size() * 4, stream), "copy q");
  check(cu->cuMemcpyHtoDAsync(dw, w.data(), w.size() * 2, stream), "copy window");
  check(cu->cuMemcpyHtoDAsync(de, e.data(), e.size() * 2, stream), "copy entries");
  check(cu->cuMemcpyHtoDAsync(dsink, sink.data(), heads * 4, stream), "copy sink");
  check(cu->cuMemcpyHtoDAsync(dtok, &tokens, 8, stream), "copy S");
  check(cu->cuMemcpyHtoDAsync(dstart, &startPos, 8, stream), "copy start");
  // The staging header (WgmmaAttention.h): sink, maxima, output, wBase, q.
  uint64_t header[8] = {0, 0, dsink, dm, dout, uint64_t(wBase), dq, topk ? dids : 0};
  check(cu->cuMemcpyHtoDAsync(dstage, header, sizeof header, stream), "copy header");
  CUtensorMap maps[2] = {tileMap(dw, wCount + 128, dim * 2, 64),
                         tileMap(de, capacity, dim * 2, 64)};
  if (topk) // Both maps over the tokens' own rows.
    maps[0] = maps[1] = tileMap(down, tokens * keysPer, dim * 2, 64);
  check(cu->cuMemcpyHtoDAsync(dmaps, maps, sizeof maps, stream), "copy maps");
  CUdeviceptr argv5[5] = {dtok, dstart, dstage, dmaps, dmaps + 128};
  check(cu->cuMemcpyHtoDAsync(dargv, argv5, sizeof argv5, stream), "copy argv");
  check(cu->cuMemsetD8Async(dout, 0xFF, size_t(tokens) * heads * dim * 4, stream), "poison out");
  check(cu->cuMemsetD8Async(dm, 0xFF, size_t(tokens) * heads * 4, stream), "poison maxima");

  // WgmmaAttentionShape::name(): the scale as its f32 bits in hex.
  float scale32 = float(scale);
  uint32_t scaleBits;
  std::memcpy(&scaleBits, &scale32, 4);
  char scaleHex[16];
  std::snprintf(scaleHex, sizeof scaleHex, "%x", scaleBits);
  std::string suffix = "_h" + std::to_string(heads) + "_d" + std::to_string(dim) + "_w" +
                       std::to_string(window) + "_r" + std::to_string(ratio) + "_c" +
                       std::to_string(capacity) + "_s2_x" + scaleHex +
                       (topk ? "_k" + std::to_string(topk) : "");
  CUfunction fmax = loadKernel(maxPath, ("compressa_tc_attention_max" + suffix).c_str());
  CUfunction fsums = loadKernel(sumsPath, ("compressa_tc_attention_sums" + suffix).c_str());
  // WgmmaAttentionShape::sharedBytes(): q, 2 stages, (weights), exchange.
  const int boxes = int(dim / 64), box = 8192;
  const int sharedMax = boxes * box * 3 + 1024 + 1024;
  const int sharedSums = boxes * box * 3 + 2 * box + 1024 + 1024;
  check(cu->cuFuncSetAttribute(fmax, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, sharedMax),
        "cuFuncSetAttribute(shared)");
  check(cu->cuFuncSetAttribute(fsums, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                               sharedSums),
        "cuFuncSetAttribute(shared)");
  void *params[] = {&dargv};
  auto launchMax = [&] {
    check(cu->cuLaunchKernel(fmax, unsigned(sms), 1, 1, 384, 1, 1, unsigned(sharedMax), stream,
                             params, nullptr),
          "launch attention max");
  };
  auto launchSums = [&] {
    check(cu->cuLaunchKernel(fsums, unsigned(sms), 1, 1, 384, 1, 1, unsigned(sharedSums),
                             stream, params, nullptr),
          "launch attention sums");
  };
  launchMax();
  launchSums();
  check(cu->cuStreamSynchronize(stream), "attention");

  std::vector<int64_t> rows;
  for (int64_t i = 0; i < std::min(tokens, checkRows); ++i)
    rows.push_back(tokens <= checkRows ? i : (i * 7919) % tokens);
  rows.push_back(tokens - 1);
  double worstM = 0, worstOut = 0;
  long long unwritten = 0, checked = 0;
  std::vector<float> gotM(heads), gotOut(size_t(heads) * dim);
  for (int64_t s : rows) {
    check(cu->cuMemcpyDtoHAsync(gotM.data(), dm + size_t(s) * heads * 4, heads * 4, stream),
          "copy maxima");
    check(cu->cuMemcpyDtoHAsync(gotOut.data(), dout + size_t(s) * heads * dim * 4,
                                size_t(heads) * dim * 4, stream),
          "copy out");
    check(cu->cuStreamSynchronize(stream), "copy back");
    int64_t pos = startPos + s, first = std::max<int64_t>(0, pos - window + 1);
    int64_t ne = (pos + 1) / ratio;
    std::vector<const float *> keys;
    for (int64_t u = first; u <= pos; ++u)
      keys.push_back(&wf[size_t(u - wBase) * dim]);
    for (int64_t j = 0; j < ne && !topk; ++j)
      keys.push_back(&ef[size_t(j) * dim]);
    for (int64_t slot = 0; slot < topk; ++slot)
      if (ids[size_t(s) * topk + slot] >= 0)
        keys.push_back(&ef[size_t(ids[size_t(s) * topk + slot]) * dim]);
    for (int64_t h = 0; h < heads; ++h) {
      const float *qh = &qf[(size_t(s) * heads + h) * dim];
      std::vector<double> sc(keys.size());
      double m = sink[h];
      for (size_t j = 0; j < keys.size(); ++j) {
        double dot = 0;
        for (int64_t c = 0; c < dim; ++c)
          dot += double(qh[c]) * keys[j][c];
        sc[j] = float(float(dot) * float(scale));
        m = std::max(m, sc[j]);
      }
      ++checked;
      if (!std::isfinite(gotM[h])) {
        ++unwritten;
        continue;
      }
      worstM = std::max(worstM, std::fabs(gotM[h] - m) / (1 + std::fabs(m)));
      double den = std::exp(double(sink[h]) - m);
      std::vector<double> p(keys.size());
      for (size_t j = 0; j < keys.size(); ++j)
        den += p[j] = std::exp(sc[j] - m);
      for (int64_t c = 0; c < dim; ++c) {
        double sum = 0, mag = 0;
        for (size_t j = 0; j < keys.size(); ++j) {
          sum += p[j] * keys[j][c];
          mag += p[j] * std::fabs(keys[j][c]);
        }
        double got = gotOut[size_t(h) * dim + c];
        if (!std::isfinite(got)) {
          ++unwritten;
          continue;
        }
        // bf16(p) is within 2^-9 of p: the bound 2^-8 of sum p |v| / den.
        double err = std::fabs(got - sum / den) / (std::ldexp(mag / den, -8) + 1e-6);
        worstOut = std::max(worstOut, err);
      }
    }
  }
  double msMax = medianMs(stream, iters, 1, launchMax);
  double msSums = medianMs(stream, iters, 1, launchSums);
  double pairs = 0;
  for (int64_t s = 0; s < tokens; ++s) {
    int64_t pos = startPos + s;
    double selected = 0;
    for (int64_t slot = 0; slot < topk; ++slot)
      selected += ids[size_t(s) * topk + slot] >= 0;
    pairs += double(pos - std::max<int64_t>(0, pos - window + 1) + 1) +
             (topk ? selected : double((pos + 1) / ratio));
  }
  double flop = pairs * heads * dim * 2;
  double tMax = msMax > 0 ? flop / (msMax * 1e-3) / 1e12 : 0;
  double tSums = msSums > 0 ? 2 * flop / (msSums * 1e-3) / 1e12 : 0;
  bool ok = worstM < 1e-5 && worstOut <= 1 && unwritten == 0 && checked > 0;
  std::printf("attention H=%lld D=%lld window=%lld ratio=%lld capacity=%lld S=%lld start=%lld  "
              "checked %lld (token, head) rows of %zu tokens: max |dm|/(1+|m|) %.3g, out "
              "error / bound %.3g, unwritten %lld  %s  max %.4f ms (%.1f TFLOP/s), sums %.4f ms "
              "(%.1f TFLOP/s), both %.1f TFLOP/s (%.1f%% of 989 bf16) on %d SMs\n",
              (long long)heads, (long long)dim, (long long)window, (long long)ratio,
              (long long)capacity, (long long)tokens, (long long)startPos, checked, rows.size(),
              worstM, worstOut, unwritten, ok ? "ok" : "FAIL", msMax, tMax, msSums, tSums,
              3 * flop / ((msMax + msSums) * 1e-3) / 1e12,
              100 * 3 * flop / ((msMax + msSums) * 1e-3) / 1e12 / 989, sms);
  return ok ? 0 : 1;
}

/// --topk: the indexer's top-k selection (TopkSelect.h) against the same
/// selection computed here: the k largest of each token's n visible scores
/// by their u32 keys (Emitter::radixTopk's order), ties to the lower index,
/// in index order; -1 in the slots past min(k, n) (the picks' clearing
/// before it). Rows cycle through kinds of scores: random, few distinct
/// values (many ties at the threshold), all equal, negative and positive
/// zeros, a threshold whose bin is taken whole.
int topkMain(int argc, char **argv) {
  std::string ptxPath;
  int64_t topk = 512, ratio = 4, capacity = 0, tokens = 0, startPos = 0, iters = 10,
          checkRows = 64;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--topk") ptxPath = value();
    else if (a == "--selected") topk = std::atoll(value().c_str());
    else if (a == "--ratio") ratio = std::atoll(value().c_str());
    else if (a == "--capacity") capacity = std::atoll(value().c_str());
    else if (a == "--tokens") tokens = std::atoll(value().c_str());
    else if (a == "--start") startPos = std::atoll(value().c_str());
    else if (a == "--iters") iters = std::atoll(value().c_str());
    else if (a == "--check-rows") checkRows = std::atoll(value().c_str());
    else die("unknown argument " + a + " (usage: gemm-bench --topk PTX --selected K "
             "--ratio R --capacity C --tokens S --start P [--iters I] [--check-rows N])");
  }
  if (ptxPath.empty() || topk < 1 || ratio < 1 || tokens < 1 || startPos < 0 ||
      (startPos + tokens) / ratio > capacity)
    die("--topk needs a PTX, --selected >= 1, --ratio >= 1, --tokens >= 1 and "
        "(start + tokens) / ratio <= capacity");
  CUstream stream;
  CUdevice dev = setUp(stream);
  int sms = 0;
  check(cu->cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev),
        "cuDeviceGetAttribute");
  Rng rng{0x70B5E1EC7ull};
  std::vector<float> scores(size_t(tokens) * capacity);
  auto visible = [&](int64_t s) { return (startPos + s + 1) / ratio; };
  for (int64_t s = 0; s < tokens; ++s) {
    float *row = &scores[size_t(s) * capacity];
    int kind = int(s % 6);
    for (int64_t j = 0; j < capacity; ++j) {
      float x;
      switch (kind) {
      case 0: x = float(rng.uniform() * 2 - 1) * 8; break;            // random
      case 1: x = float(int(rng.next() % 9) - 4) * 0.25f; break;        // few values
      case 2: x = 0.5f; break;                                          // all equal
      case 3: x = (rng.next() & 1) ? 0.0f : -0.0f; break;               // signed zeros
      case 4: x = float(rng.uniform()) * 1e-3f + float(rng.next() % 3); break;
      default: x = std::ldexp(float(rng.uniform()), int(rng.next() % 60) - 30) *
                   ((rng.next() & 1) ? 1 : -1);
      }
      // Past the visible keys: garbage the kernel must not use.
      row[j] = j < visible(s) ? x : (j % 3 ? NAN : 1e30f);
    }
  }
  auto key = [](float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  };
  CUdeviceptr ds = alloc(scores.size() * 4), dp = alloc(size_t(tokens) * topk * 4),
              dtok = alloc(8), dstart = alloc(8), dstage = alloc(64), dargv = alloc(3 * 8);
  check(cu->cuMemcpyHtoDAsync(ds, scores.data(), scores.size() * 4, stream), "copy scores");
  check(cu->cuMemcpyHtoDAsync(dtok, &tokens, 8, stream), "copy S");
  check(cu->cuMemcpyHtoDAsync(dstart, &startPos, 8, stream), "copy start");
  // The staging header (TopkSelect.h): the scores at byte 32, the picks at 40.
  CUdeviceptr header[8] = {0, 0, 0, 0, ds, dp, 0, 0};
  check(cu->cuMemcpyHtoDAsync(dstage, header, sizeof header, stream), "copy header");
  CUdeviceptr argv3[3] = {dtok, dstart, dstage};
  check(cu->cuMemcpyHtoDAsync(dargv, argv3, sizeof argv3, stream), "copy argv");
  check(cu->cuMemsetD32Async(dp, 0xFFFFFFFFu, size_t(tokens) * topk, stream), "clear picks");
  std::string name = "compressa_tc_topk_c" + std::to_string(capacity) + "_k" +
                     std::to_string(topk) + "_r" + std::to_string(ratio);
  CUfunction fn = loadKernel(ptxPath, name.c_str());
  int perSM = 1;
  if (cu->cuOccupancyMaxActiveBlocksPerMultiprocessor)
    check(cu->cuOccupancyMaxActiveBlocksPerMultiprocessor(&perSM, fn, 512, 0),
          "cuOccupancyMaxActiveBlocksPerMultiprocessor");
  perSM = std::clamp(perSM, 1, 4);
  void *params[] = {&dargv};
  auto launch = [&] {
    check(cu->cuLaunchKernel(fn, unsigned(sms * perSM), 1, 1, 512, 1, 1, 0, stream, params,
                             nullptr),
          "launch topk");
  };
  launch();
  check(cu->cuStreamSynchronize(stream), "topk");
  std::vector<int32_t> picks(size_t(tokens) * topk);
  check(cu->cuMemcpyDtoHAsync(picks.data(), dp, picks.size() * 4, stream), "copy picks");
  check(cu->cuStreamSynchronize(stream), "copy picks");
  // Rows checked: spread over the call, the last one, every kind.
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < std::min(tokens, checkRows); ++i)
    rows.push_back(tokens <= checkRows ? i : (i * 7919) % tokens);
  rows.push_back(tokens - 1);
  int64_t wrong = 0, checked = 0;
  std::vector<int64_t> order;
  for (int64_t s : rows) {
    int64_t n = visible(s), k = std::min(topk, n);
    const float *row = &scores[size_t(s) * capacity];
    order.resize(size_t(n));
    for (int64_t j = 0; j < n; ++j)
      order[size_t(j)] = j;
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return key(row[a]) > key(row[b]); });
    order.resize(size_t(k));
    std::sort(order.begin(), order.end());
    for (int64_t slot = 0; slot < topk; ++slot) {
      int64_t want = slot < k ? order[size_t(slot)] : -1;
      wrong += picks[size_t(s) * topk + slot] != want;
    }
    ++checked;
  }
  // Timing: the picks are rewritten with the same values each launch.
  double median = medianMs(stream, iters, 1, launch);
  double bytes = 0;
  for (int64_t s = 0; s < tokens; ++s)
    bytes += 4.0 * double(visible(s));
  std::printf("topk K=%lld ratio=%lld capacity=%lld S=%lld start=%lld  checked %lld rows: "
              "%lld picks wrong  %s  %.4f ms (%.1f GB/s of scores, one read) on %d SMs x %d\n",
              (long long)topk, (long long)ratio, (long long)capacity, (long long)tokens,
              (long long)startPos, (long long)checked, (long long)wrong,
              wrong == 0 ? "ok" : "FAIL", median, bytes / (median * 1e-3) / 1e9, sms, perSM);
  return wrong == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--indexer")
      return indexerMain(argc, argv);
    if (std::string(argv[i]) == "--attention")
      return attentionMain(argc, argv);
    if (std::string(argv[i]) == "--topk")
      return topkMain(argc, argv);
  }
  Options o = parse(argc, argv);
  CUstream stream;
  CUdevice dev = setUp(stream);

  const int64_t m = o.m, n = o.n, k = o.k, kb = k / 128;
  // The activations' row: the groups' inputs side by side (--groups).
  const int64_t ka = k * o.groups, kba = ka / 128;
  Rng rng{o.seed * 0x9E3779B97F4A7C15ull + 1};
  // Activations: each 128-block at its own magnitude (2^-20 .. 2^12), a few
  // blocks of zeros (the 1e-4 floor) and values on rounding ties.
  std::vector<float> x(size_t(m) * ka);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t b = 0; b < kba; ++b) {
      int mode = int(rng.next() % 16);
      double mag = std::ldexp(1.0, int(rng.next() % 33) - 20);
      for (int64_t j = 0; j < 128; ++j) {
        float v = float((rng.uniform() * 2 - 1) * mag);
        if (mode == 0)
          v = 0;
        else if (mode == 1) // a tie between two e4m3 values at scale 1
          v = float((rng.next() & 1 ? -1 : 1) * std::ldexp(17 + 2 * (rng.next() % 7), -4));
        x[size_t(r) * ka + b * 128 + j] = v;
      }
    }
  // Weights: finite e4m3 codes, UE8M0 block scales around 1.
  std::vector<uint8_t> w(size_t(n) * k), sw(size_t(n / 128) * kb);
  for (auto &c : w) {
    c = uint8_t(rng.next());
    if ((c & 0x7F) == 0x7F)
      c ^= 1;
  }
  for (auto &s : sw)
    s = uint8_t(120 + rng.next() % 14);
  // The reference act_quant.
  std::vector<uint8_t> q(size_t(m) * ka), sa(size_t(m) * kba);
  for (int64_t r = 0; r < m; ++r)
    actQuantRow(&x[size_t(r) * ka], ka, &q[size_t(r) * ka], &sa[size_t(r) * kba]);

  CUdeviceptr dq = alloc(q.size()), dsa = alloc(sa.size()), dw = alloc(w.size()),
              dsw = alloc(sw.size()), dy = alloc(size_t(m) * n * 4),
              dmaps = alloc(256);
  check(cu->cuMemcpyHtoDAsync(dw, w.data(), w.size(), stream), "copy w");
  check(cu->cuMemcpyHtoDAsync(dsw, sw.data(), sw.size(), stream), "copy sw");

  // act_quant on the GPU (the compiler's kernel): bytes against the reference.
  long long actMismatch = -1;
  if (!o.act.empty()) {
    CUfunction act = loadKernel(o.act, ("compressa_act_quant_k" + std::to_string(ka)).c_str());
    CUdeviceptr dx = alloc(x.size() * 4), drows = alloc(8), dargv = alloc(4 * 8);
    int64_t rows = m;
    check(cu->cuMemcpyHtoDAsync(dx, x.data(), x.size() * 4, stream), "copy x");
    check(cu->cuMemcpyHtoDAsync(drows, &rows, 8, stream), "copy rows");
    check(cu->cuMemsetD8Async(dq, 0xEE, q.size(), stream), "poison q");
    check(cu->cuMemsetD8Async(dsa, 0xEE, sa.size(), stream), "poison sa");
    CUdeviceptr argv4[4] = {drows, dx, dq, dsa};
    check(cu->cuMemcpyHtoDAsync(dargv, argv4, sizeof argv4, stream), "copy argv");
    void *params[] = {&dargv};
    int threads = 0;
    check(cu->cuFuncGetAttribute(&threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, act),
          "cuFuncGetAttribute");
    // One parallel loop and no grid-wide barrier: any number of blocks of
    // the target's 256 threads (CudaTarget) share the rows' blocks.
    if (threads < 256)
      die("the act_quant kernel cannot run 256 threads per block");
    check(cu->cuLaunchKernel(act, 528, 1, 1, 256, 1, 1, 0, stream, params, nullptr),
          "launch act_quant");
    check(cu->cuStreamSynchronize(stream), "act_quant");
    std::vector<uint8_t> gq(q.size()), gsa(sa.size());
    check(cu->cuMemcpyDtoHAsync(gq.data(), dq, gq.size(), stream), "copy q back");
    check(cu->cuMemcpyDtoHAsync(gsa.data(), dsa, gsa.size(), stream), "copy sa back");
    check(cu->cuStreamSynchronize(stream), "copy back");
    actMismatch = 0;
    for (size_t i = 0; i < q.size(); ++i)
      actMismatch += gq[i] != q[i];
    for (size_t i = 0; i < sa.size(); ++i)
      actMismatch += gsa[i] != sa[i];
  }
  check(cu->cuMemcpyHtoDAsync(dq, q.data(), q.size(), stream), "copy q");
  check(cu->cuMemcpyHtoDAsync(dsa, sa.data(), sa.size(), stream), "copy sa");

  // The GEMM.
  // compressa-gemm --cluster 2 / --persistent / --groups / --group-m: the
  // name's _c2 / _p / _g / _m.
  std::string options = std::string(o.cluster == 2 ? "_c2" : "") + (o.persistent ? "_p" : "") +
                        (o.groups > 1 ? "_g" + std::to_string(o.groups) : "") +
                        (o.persistent && o.groupM > 0 ? "_m" + std::to_string(o.groupM) : "");
  CUfunction gemm = loadKernel(o.gemm, ("compressa_fp8_gemm_n" + std::to_string(n) + "_k" +
                                        std::to_string(k) + options)
                                           .c_str());
  // compressa-gemm --stages: the kernel's shared memory (WgmmaGemm.h).
  const int shared = int(o.stages) * 32768 + 1024;
  check(cu->cuFuncSetAttribute(gemm, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                               shared),
        "cuFuncSetAttribute(shared)");
  // With --cluster 2 each block of a pair loads 64 of a's 128 rows.
  CUtensorMap maps[2] = {tileMap(dq, m, ka, unsigned(128 / o.cluster)), tileMap(dw, n, k)};
  check(cu->cuMemcpyHtoDAsync(dmaps, maps, sizeof maps, stream), "copy tensor maps");
  CUdeviceptr amap = dmaps, wmap = dmaps + sizeof(CUtensorMap);
  int32_t m32 = int32_t(m);
  void *params[] = {&amap, &wmap, &dsa, &dsw, &dy, &m32};
  // Pairs of N tiles with --cluster 2 (the count padded to even); a
  // persistent kernel: one block an SM (pairs of them), walking the tiles.
  unsigned gx = unsigned((n / 128 + o.cluster - 1) / o.cluster * o.cluster),
           gy = unsigned((m + 127) / 128);
  if (o.persistent) {
    int sms = 0;
    check(cu->cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev),
          "cuDeviceGetAttribute(SMs)");
    gx = unsigned(sms / o.cluster * o.cluster);
    gy = 1;
  }
  auto launch = [&] {
    // 3 warpgroups: the TMA producer and 2 consumers (WgmmaGemm.h).
    check(cu->cuLaunchKernel(gemm, gx, gy, 1, 384, 1, 1, shared, stream, params, nullptr),
          "launch gemm");
  };
  check(cu->cuMemsetD8Async(dy, 0xFF, size_t(m) * n * 4, stream), "poison y"); // NaN
  launch();
  check(cu->cuStreamSynchronize(stream), "gemm");
  std::vector<float> y(size_t(m) * n);
  check(cu->cuMemcpyDtoHAsync(y.data(), dy, y.size() * 4, stream), "copy y");
  check(cu->cuStreamSynchronize(stream), "copy y");

  // Check rows spread over M (every row when few), all columns.
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < std::min(m, o.checkRows); ++i)
    rows.push_back(m <= o.checkRows ? i : (i * 7919) % m);
  rows.push_back(m - 1);
  double maxDiff = 0, maxRef = 0, sumDiff2 = 0, sumRef2 = 0;
  bool bad = false;
  for (int64_t r : rows) {
    for (int64_t c = 0; c < n; ++c) {
      int64_t g = c / (n / o.groups); // the column's group
      double ref = fp8GemmOutput(&q[size_t(r) * ka + g * k], &sa[size_t(r) * kba + g * kb],
                                 &w[size_t(c) * k], &sw[size_t(c / 128) * kb], k);
      double got = y[size_t(r) * n + c];
      if (!std::isfinite(got))
        bad = true;
      double d = std::fabs(got - ref);
      maxDiff = std::max(maxDiff, d);
      maxRef = std::max(maxRef, std::fabs(ref));
      sumDiff2 += d * d;
      sumRef2 += ref * ref;
    }
  }
  double relMax = maxDiff / std::max(maxRef, 1e-30);
  double relNorm = std::sqrt(sumDiff2 / std::max(sumRef2, 1e-300));

  // Timing: launches between events, median of `iters`.
  double median = medianMs(stream, o.iters, 3, launch);
  double tflops = median > 0 ? 2.0 * m * n * k / (median * 1e-3) / 1e12 : 0;
  // Tolerance: f32 accumulation of 128-term blocks (the tensor cores round
  // each block's partial sums) against float64.
  bool ok = !bad && relNorm < 1e-3 && actMismatch <= 0;
  std::printf("gemm M=%lld N=%lld K=%lld groups=%lld  act_quant bytes differing: %s  "
              "max|d|/max|ref| %.3g  ||d||/||ref|| %.3g  %s  %.4f ms  %.1f TFLOP/s "
              "(%.1f%% of 1979)\n",
              (long long)m, (long long)n, (long long)k, (long long)o.groups,
              actMismatch < 0 ? "not run" : std::to_string(actMismatch).c_str(),
              relMax, relNorm, bad ? "NON-FINITE" : (ok ? "ok" : "FAIL"), median,
              tflops, 100 * tflops / 1979);
  return ok ? 0 : 1;
}
