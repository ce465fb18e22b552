//===- make-random-model.cpp - Random DeepSeek-V4 checkpoints for tests ---===//
// SPDX-License-Identifier: Apache-2.0
//
//   make-random-model CONFIG.json OUTDIR --seed S --tokens T
//                     [--format quant|float|config] [--threads N]
//                     [--progress]
//
// Writes a self-contained test case for any valid DeepSeek-V4 config:
//   OUTDIR/config.json            a byte copy of CONFIG.json
//   OUTDIR/model.safetensors      every non-optional tensor of the weight
//                                 manifest, filled with random values of a
//                                 scale that keeps activations O(1)
//   OUTDIR/inputs.safetensors     input_ids, I64 [T], random ids in [2, V)
//   OUTDIR/reference.safetensors  logits, F64 [T, V]: the plain C++
//                                 reference (test/reference) run over the T
//                                 ids, from the checkpoint exactly as written
//
// Formats (the manifest's dtypes are built for them):
//   quant   the official ones, as `compressa-compile --weight-format=official`
//           sees them: FP8 e4m3 dense weights with UE8M0 128x128 block
//           scales, FP4 e2m1 routed experts with UE8M0 1x32 scales, BF16
//           float tensors, F32 where the official checkpoint keeps F32.
//   float   every float tensor F32 (`--weight-format=f32`).
//   config  whatever the config itself says (`--weight-format=config`).
// Quantization follows the spec's act_quant: per block, scale =
// 2^ceil(log2(amax / max)) (max = 448 for e4m3, 6 for e2m1), values rounded
// to nearest, ties to even. The output depends only on the config, the seed,
// T and the format: every tensor draws from its own generator seeded by
// (seed, name).
//
// --threads N: tensors are generated, and the reference's large loops run,
// on N threads (default: the hardware threads; OpenMP). Every tensor and
// every reference output is still computed by one thread in the serial
// order, so the files are the same for any N. --progress prints each
// phase's wall time (and the reference's progress) to stderr.
//
//===----------------------------------------------------------------------===//

#include "frontend/Config/ModelConfig.h"
#include "frontend/Manifest/WeightManifest.h"
#include "runtime/weights/dtype.h"
#include "runtime/weights/safetensors_writer.h"
#include "test/reference/Reference.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace mlir::compressa;

namespace {

const char kUsage[] =
    "USAGE: make-random-model CONFIG.json OUTDIR --seed S --tokens T "
    "[--format quant|float|config] [--threads N] [--progress]\n";

[[noreturn]] void die(const std::string &message) {
  std::fprintf(stderr, "make-random-model: error: %s\n", message.c_str());
  std::exit(1);
}

//===----------------------------------------------------------------------===//
// Randomness: splitmix64, so that the values are the same on every platform
// (std:: distributions are implementation-defined).
//===----------------------------------------------------------------------===//

class Rng {
public:
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * unit(); }
  /// Uniform integer in [0, n).
  int64_t below(int64_t n) {
    return static_cast<int64_t>(next() % static_cast<uint64_t>(n));
  }

private:
  uint64_t state;
};

/// The generator of one tensor: FNV-1a of its name mixed with the seed.
Rng tensorRng(uint64_t seed, const std::string &name) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 0x100000001B3ull;
  }
  Rng mix(seed ^ (h * 0x9E3779B97F4A7C15ull));
  mix.next();
  return Rng(mix.next());
}

//===----------------------------------------------------------------------===//
// Encoders
//===----------------------------------------------------------------------===//

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// float -> bfloat16 bits, round to nearest even (no NaNs occur here).
uint16_t floatToBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

/// The non-negative finite values of a small float format in code order
/// (increasing), for round-to-nearest-even by search.
struct MagnitudeTable {
  std::vector<double> values; ///< values[code]

  /// The code of the value nearest to `magnitude` (>= 0, <= the largest
  /// value); ties go to the even code (= even mantissa).
  uint8_t nearest(double magnitude) const {
    auto it = std::lower_bound(values.begin(), values.end(), magnitude);
    if (it == values.end())
      return static_cast<uint8_t>(values.size() - 1);
    size_t hi = static_cast<size_t>(it - values.begin());
    if (hi == 0 || values[hi] == magnitude)
      return static_cast<uint8_t>(hi);
    size_t lo = hi - 1;
    double dLo = magnitude - values[lo], dHi = values[hi] - magnitude;
    if (dLo < dHi)
      return static_cast<uint8_t>(lo);
    if (dHi < dLo)
      return static_cast<uint8_t>(hi);
    return static_cast<uint8_t>(lo % 2 == 0 ? lo : hi);
  }
};

const MagnitudeTable &e4m3Table() {
  static const MagnitudeTable table = [] {
    MagnitudeTable t;
    for (unsigned code = 0; code < 0x7F; ++code) // 0x7F is NaN
      t.values.push_back(compressa::f8e4m3ToFloat(static_cast<uint8_t>(code)));
    return t;
  }();
  return table;
}

const MagnitudeTable &e2m1Table() {
  static const MagnitudeTable table = [] {
    MagnitudeTable t;
    for (unsigned code = 0; code < 8; ++code)
      t.values.push_back(compressa::fp4e2m1ToFloat(static_cast<uint8_t>(code)));
    return t;
  }();
  return table;
}

/// The exponent e of the power-of-two scale 2^e = 2^ceil(log2(amax / max)),
/// so that amax / 2^e <= max.
int blockExponent(double amax, double maxValue) {
  if (!(amax > 0.0))
    return 0;
  int k;
  double m = std::frexp(amax / maxValue, &k); // amax/max = m * 2^k, m in [.5,1)
  int e = m == 0.5 ? k - 1 : k;
  while (std::ldexp(amax, -e) > maxValue)
    ++e;
  return e;
}

/// UE8M0 code of 2^e.
uint8_t ue8m0Code(int e) {
  int code = e + 127;
  if (code < 0 || code > 254)
    die("block scale 2^" + std::to_string(e) + " is outside UE8M0's range");
  return static_cast<uint8_t>(code);
}

/// Sign-magnitude code of `value / 2^e` in a table whose sign bit is `signBit`.
uint8_t encodeScaled(double value, int e, const MagnitudeTable &table,
                     uint8_t signBit) {
  uint8_t code = table.nearest(std::fabs(std::ldexp(value, -e)));
  return std::signbit(value) ? static_cast<uint8_t>(code | signBit) : code;
}

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

/// Random values for the weight `name` of logical shape `shape`, at a scale
/// that keeps activations O(1).
std::vector<double> randomValues(const std::string &name,
                                 const std::vector<int64_t> &shape,
                                 uint64_t seed) {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  Rng rng = tensorRng(seed, name);
  std::vector<double> v(count);
  auto fill = [&](double lo, double hi) {
    for (double &x : v)
      x = rng.uniform(lo, hi);
  };
  // Order matters: "attn_norm.weight" is a norm, "hc_attn_fn" is mHC, ...
  if (name == "embed.weight") {
    fill(-1.0, 1.0);
  } else if (endsWith(name, "norm.weight")) {
    fill(0.9, 1.1); // every RMSNorm weight (attn/ffn/q/kv/compressor/final)
  } else if (endsWith(name, "_fn")) {
    fill(-0.05, 0.05); // mHC projections hc_{attn,ffn,head}_fn
  } else if (endsWith(name, "_base")) {
    fill(-0.3, 0.3); // mHC biases
  } else if (endsWith(name, "_scale")) {
    fill(0.3, 1.0); // mHC scales s0, s1, s2
  } else if (endsWith(name, "attn_sink")) {
    fill(0.0, 1.0);
  } else if (endsWith(name, ".ape")) {
    fill(-0.5, 0.5); // compressor positional gate bias
  } else if (endsWith(name, "gate.bias")) {
    // Large enough to change the top-k selection now and then.
    fill(-0.2, 0.2);
  } else if (shape.size() == 2) {
    // A linear weight [out, in]: uniform +-sqrt(3/in) * f, f in [0.5, 1)
    // per tensor (unit variance outputs for unit inputs, times f).
    double f = rng.uniform(0.5, 1.0);
    double a = std::sqrt(3.0 / static_cast<double>(shape[1])) * f;
    fill(-a, a);
  } else {
    die("no value rule for tensor '" + name + "'");
  }
  return v;
}

/// One tensor's bytes, kept alive until the file is written.
struct Encoded {
  std::string name;
  compressa::DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

template <class T> void appendValue(std::vector<uint8_t> &bytes, T value) {
  size_t at = bytes.size();
  bytes.resize(at + sizeof(T));
  std::memcpy(bytes.data() + at, &value, sizeof(T));
}

compressa::DType dtypeOf(const TensorEntry &entry) {
  std::optional<compressa::DType> dtype = compressa::parseDType(entry.dtype);
  if (!dtype)
    die("manifest dtype '" + entry.dtype + "' of '" + entry.name +
        "' is unknown");
  return *dtype;
}

/// Encodes the weight `entry` (not a scale) and, for a block-scaled format,
/// its scale tensor `scaleEntry`.
void encodeWeight(const TensorEntry &entry, const TensorEntry *scaleEntry,
                  const ModelConfig &config, uint64_t seed,
                  std::vector<Encoded> &out) {
  Encoded w{entry.name, dtypeOf(entry), entry.shape, {}};

  if (entry.dtype == "I64") {
    // gate.tid2eid [V, K]: K distinct experts per token (partial
    // Fisher-Yates over 0..E-1).
    const int64_t rows = entry.shape[0], k = entry.shape[1];
    const int64_t experts = config.numRoutedExperts;
    Rng rng = tensorRng(seed, entry.name);
    std::vector<int64_t> perm(experts);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t e = 0; e < experts; ++e)
        perm[e] = e;
      for (int64_t j = 0; j < k; ++j) {
        int64_t pick = j + rng.below(experts - j);
        std::swap(perm[j], perm[pick]);
        appendValue<int64_t>(w.bytes, perm[j]);
      }
    }
    out.push_back(std::move(w));
    return;
  }

  const std::vector<int64_t> &shape = entry.logicalShape;
  std::vector<double> values = randomValues(entry.name, shape, seed);

  switch (entry.format) {
  case WeightFormat::F32:
    for (double x : values)
      appendValue<float>(w.bytes, static_cast<float>(x));
    break;
  case WeightFormat::BF16:
    for (double x : values)
      appendValue<uint16_t>(w.bytes, floatToBf16(static_cast<float>(x)));
    break;
  case WeightFormat::I64:
    die("'" + entry.name + "': I64 format without I64 dtype");
  case WeightFormat::FP8E4M3Block128:
  case WeightFormat::FP4E2M1Block32: {
    if (!scaleEntry || shape.size() != 2)
      die("'" + entry.name + "': block-scaled weight without a scale tensor");
    const bool fp8 = entry.format == WeightFormat::FP8E4M3Block128;
    const int64_t rows = shape[0], cols = shape[1];
    const int64_t blockRows = fp8 ? 128 : 1, blockCols = fp8 ? 128 : 32;
    const int64_t scaleRows = (rows + blockRows - 1) / blockRows;
    const int64_t scaleCols = (cols + blockCols - 1) / blockCols;
    if (scaleEntry->shape != std::vector<int64_t>{scaleRows, scaleCols})
      die("'" + scaleEntry->name + "': unexpected scale shape");
    const MagnitudeTable &table = fp8 ? e4m3Table() : e2m1Table();
    const double maxValue = table.values.back(); // 448 or 6
    const uint8_t signBit = fp8 ? 0x80 : 0x8;
    std::vector<int> exponent(scaleRows * scaleCols);
    for (int64_t br = 0; br < scaleRows; ++br)
      for (int64_t bc = 0; bc < scaleCols; ++bc) {
        double amax = 0.0;
        for (int64_t r = br * blockRows; r < std::min(rows, (br + 1) * blockRows);
             ++r)
          for (int64_t c = bc * blockCols;
               c < std::min(cols, (bc + 1) * blockCols); ++c)
            amax = std::max(amax, std::fabs(values[r * cols + c]));
        exponent[br * scaleCols + bc] = blockExponent(amax, maxValue);
      }
    auto codeAt = [&](int64_t r, int64_t c) {
      int e = exponent[(r / blockRows) * scaleCols + c / blockCols];
      return encodeScaled(values[r * cols + c], e, table, signBit);
    };
    if (fp8) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
          w.bytes.push_back(codeAt(r, c));
    } else {
      // Two e2m1 codes per byte: low nibble = even column.
      if (cols % 2 != 0)
        die("'" + entry.name + "': FP4 weight with an odd row width");
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; c += 2)
          w.bytes.push_back(
              static_cast<uint8_t>(codeAt(r, c) | (codeAt(r, c + 1) << 4)));
    }
    Encoded s{scaleEntry->name, dtypeOf(*scaleEntry), scaleEntry->shape, {}};
    for (int e : exponent)
      s.bytes.push_back(ue8m0Code(e));
    out.push_back(std::move(w));
    out.push_back(std::move(s));
    return;
  }
  }
  out.push_back(std::move(w));
}

//===----------------------------------------------------------------------===//
// Files
//===----------------------------------------------------------------------===//

void writeFile(const std::string &path,
               const std::vector<compressa::TensorToWrite> &tensors) {
  compressa::Status status = compressa::writeSafetensors(path, tensors);
  if (!status.ok())
    die(path + ": " + status.toString());
}

std::string joinPath(const std::string &dir, const char *file) {
  llvm::SmallString<256> p(dir);
  llvm::sys::path::append(p, file);
  return std::string(p);
}

bool parseInt(const char *text, int64_t &out) {
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0')
    return false;
  out = v;
  return true;
}

} // namespace

int main(int argc, char **argv) {
  std::vector<std::string> positional;
  int64_t seed = -1, tokens = -1, threads = 0;
  bool progress = false;
  std::string format = "quant";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char * {
      if (i + 1 >= argc)
        die("option " + arg + " needs a value\n" + kUsage);
      return argv[++i];
    };
    if (arg == "--seed") {
      if (!parseInt(value(), seed) || seed < 0)
        die("--seed needs a non-negative integer");
    } else if (arg == "--tokens") {
      if (!parseInt(value(), tokens) || tokens < 1)
        die("--tokens needs a positive integer");
    } else if (arg == "--format") {
      format = value();
      if (format != "quant" && format != "float" && format != "config")
        die("unknown --format '" + format + "' (expected quant, float or "
            "config)");
    } else if (arg == "--threads") {
      if (!parseInt(value(), threads) || threads < 1 || threads > 4096)
        die("--threads needs an integer in 1..4096");
    } else if (arg == "--progress") {
      progress = true;
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (!arg.empty() && arg[0] == '-') {
      die("unknown option '" + arg + "'\n" + kUsage);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2 || seed < 0 || tokens < 1)
    die(std::string("expected CONFIG.json OUTDIR --seed S --tokens T\n") +
        kUsage);
  const std::string configPath = positional[0], outDir = positional[1];
  compressa::reference::setThreads(static_cast<int>(threads));
  const int numThreads = compressa::reference::threads();
  const auto start = std::chrono::steady_clock::now();
  auto note = [&](const std::string &what) {
    if (!progress)
      return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                             start)
                   .count();
    std::fprintf(stderr, "make-random-model: [%7.1f s] %s\n", s, what.c_str());
  };
  note("start, " + std::to_string(numThreads) + " threads");

  llvm::Expected<ModelConfig> parsed = parseModelConfig(configPath);
  if (!parsed)
    die(llvm::toString(parsed.takeError()));
  ModelConfig config = std::move(*parsed);
  if (format == "quant") {
    config.quantized = true;
    config.denseFormat = WeightFormat::FP8E4M3Block128;
    config.expertFormat = WeightFormat::FP4E2M1Block32;
    config.floatFormat = WeightFormat::BF16;
    if (config.hiddenSize % 32 != 0 || config.moeIntermediateSize % 32 != 0)
      die("FP4 experts need hidden_size and moe_intermediate_size multiples "
          "of 32");
  } else if (format == "float") {
    config.quantized = false;
    config.denseFormat = config.expertFormat = config.floatFormat =
        WeightFormat::F32;
  }

  if (std::error_code ec = llvm::sys::fs::create_directories(outDir))
    die(outDir + ": cannot create: " + ec.message());

  // config.json: a byte copy.
  {
    llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> text =
        llvm::MemoryBuffer::getFile(configPath);
    if (!text)
      die(configPath + ": cannot read: " + text.getError().message());
    std::string path = joinPath(outDir, "config.json");
    std::error_code ec;
    llvm::raw_fd_ostream os(path, ec);
    if (ec)
      die(path + ": cannot write: " + ec.message());
    os << (*text)->getBuffer();
    os.close();
    if (os.has_error())
      die(path + ": write failed: " + os.error().message());
  }

  // model.safetensors: every non-optional manifest tensor.
  {
    std::vector<TensorEntry> manifest = buildWeightManifest(config);
    std::map<std::string, const TensorEntry *> byName;
    for (const TensorEntry &entry : manifest)
      byName[entry.name] = &entry;
    std::vector<const TensorEntry *> weights;
    std::vector<const TensorEntry *> scales;
    for (const TensorEntry &entry : manifest) {
      if (entry.optional || entry.isScale)
        continue;
      const TensorEntry *scale = nullptr;
      if (!entry.scaleName.empty()) {
        auto it = byName.find(entry.scaleName);
        if (it == byName.end())
          die("manifest lists no '" + entry.scaleName + "'");
        scale = it->second;
      }
      weights.push_back(&entry);
      scales.push_back(scale);
    }
    // Each tensor on one thread from its own generator; written in manifest
    // order whatever thread made it.
    std::vector<std::vector<Encoded>> perTensor(weights.size());
    const int64_t numWeights = static_cast<int64_t>(weights.size());
#pragma omp parallel for schedule(dynamic) num_threads(numThreads)
    for (int64_t i = 0; i < numWeights; ++i)
      encodeWeight(*weights[i], scales[i], config, static_cast<uint64_t>(seed),
                   perTensor[i]);
    std::vector<compressa::TensorToWrite> tensors;
    for (const std::vector<Encoded> &group : perTensor)
      for (const Encoded &e : group)
        tensors.push_back({e.name, e.dtype, e.shape, e.bytes.data()});
    note("weights generated (" + std::to_string(tensors.size()) + " tensors)");
    writeFile(joinPath(outDir, "model.safetensors"), tensors);
    note("model.safetensors written");
  }

  // inputs.safetensors: T random ids in [2, V).
  std::vector<int64_t> ids(tokens);
  {
    if (config.vocabSize <= 2)
      die("the vocabulary is too small for ids in [2, V)");
    Rng rng = tensorRng(static_cast<uint64_t>(seed), "input_ids");
    for (int64_t &id : ids)
      id = 2 + rng.below(config.vocabSize - 2);
    writeFile(joinPath(outDir, "inputs.safetensors"),
              {{"input_ids", compressa::DType::I64, {tokens}, ids.data()}});
  }

  // reference.safetensors: the reference forward over the weights as stored.
  {
    compressa::StatusOr<compressa::reference::Model> model =
        compressa::reference::loadModel(config, outDir);
    if (!model.ok())
      die("reference: " + model.status().toString());
    note("reference model loaded");
    compressa::reference::Session session(*model);
    // In chunks, only to report progress: the session is token-at-a-time.
    std::vector<double> logits;
    logits.reserve(static_cast<size_t>(tokens * config.vocabSize));
    const int64_t chunk = 256;
    for (int64_t at = 0; at < tokens; at += chunk) {
      std::vector<int64_t> part(ids.begin() + at,
                                ids.begin() + std::min(tokens, at + chunk));
      std::vector<double> rows = session.forward(part, at);
      logits.insert(logits.end(), rows.begin(), rows.end());
      note("reference: " + std::to_string(at + part.size()) + " of " +
           std::to_string(tokens) + " tokens");
    }
    writeFile(joinPath(outDir, "reference.safetensors"),
              {{"logits",
                compressa::DType::F64,
                {tokens, config.vocabSize},
                logits.data()}});
  }
  return 0;
}
