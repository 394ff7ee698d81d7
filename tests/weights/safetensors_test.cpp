// The safetensors reader and writer: round trips in every float dtype, a file written by PyTorch,
// and every malformed input the reader must refuse with a clear sluice::Error (these tests run
// under ASan/UBSan in CI, so "refuse" also means "without undefined behaviour").
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "sluice/weights/regular_file.hpp"
#include "sluice/weights/safetensors.hpp"

namespace {

namespace fs = std::filesystem;
using sluice::Error;
using sluice::errc;
using namespace sluice::weights;

// A safetensors image from a header text and a data buffer of `data_bytes` bytes (value i % 251).
std::vector<std::byte> image(const std::string& header, std::size_t data_bytes, std::uint64_t length = ~0ull) {
  if (length == ~0ull) length = header.size();
  std::vector<std::byte> out(8);
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::byte>((length >> (8 * i)) & 0xFF);
  for (char c : header) out.push_back(static_cast<std::byte>(c));
  for (std::size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<std::byte>(i % 251));
  return out;
}

// Parses `bytes` expecting an invalid_argument error whose message names the source and contains
// `needle`; returns the message.
std::string expect_error(const std::vector<std::byte>& bytes, const std::string& needle,
                         const SafetensorsOptions& options = {}) {
  try {
    parse_safetensors(bytes, "bad.safetensors", options);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), errc::invalid_argument);
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("bad.safetensors: ", 0), 0u) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << "message: " << what << "\nexpected to contain: " << needle;
    return what;
  }
  ADD_FAILURE() << "no error; expected one containing: " << needle;
  return {};
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  std::uint64_t b, std::uint64_t e) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(b) + "," + std::to_string(e) + "]}";
}

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("sluice_io_test_" + std::to_string(::getpid()) + "_" + name);
}

TensorDict sample_tensors() {
  TensorDict d;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  auto make = [&](const std::string& name, std::vector<std::int64_t> shape) {
    HostTensor t;
    t.shape = std::move(shape);
    t.data.resize(static_cast<std::size_t>(t.numel()));
    for (auto& v : t.data) v = normal(rng);
    d.emplace(name, std::move(t));
  };
  make("conv1.weight", {4, 3, 3, 3});
  make("bn1.weight", {4});
  make("fc.bias", {5});
  make("scalar", {});
  make("empty", {0, 3});
  return d;
}

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(Safetensors, F32RoundTripIsBitExactWithMetadata) {
  const TensorDict tensors = sample_tensors();
  const Metadata meta{{"format", "pt"}, {"config", "{\"widths\":[8,16]}"}};
  const fs::path path = temp_path("f32.safetensors");
  write_safetensors(path, tensors, meta);
  const SafetensorsData back = read_safetensors(path);
  fs::remove(path);
  EXPECT_EQ(back.metadata, meta);
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    const auto it = back.tensors.find(name);
    ASSERT_NE(it, back.tensors.end()) << name;
    EXPECT_EQ(it->second.shape, t.shape) << name;
    ASSERT_EQ(it->second.data.size(), t.data.size());
    if (!t.data.empty()) {  // memcmp on an empty vector's null data() would be UB
      EXPECT_EQ(std::memcmp(it->second.data.data(), t.data.data(), t.data.size() * 4), 0) << name;
    }
  }
  EXPECT_EQ(back.tensors.at("scalar").data.size(), 1u);
  EXPECT_EQ(back.tensors.at("empty").data.size(), 0u);
}

// Values chosen on each format's grid (integers times a power of two within the mantissa): they
// must survive the narrow formats exactly; off-grid values must come back within half a unit in
// the last place of the format.
TEST(Safetensors, F16AndBF16RoundTrip) {
  HostTensor exact{{2, 8}, {}};
  for (int i = 0; i < 16; ++i) exact.data.push_back(static_cast<float>(i - 8) * 0.125f);  // on both grids
  HostTensor off{{100}, {}};
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-100.0f, 100.0f);
  for (int i = 0; i < 100; ++i) off.data.push_back(u(rng));
  const TensorDict tensors{{"exact", exact}, {"off", off}};

  struct Case {
    DType dtype;
    int mantissa_bits;
  };
  for (const Case c : {Case{DType::F16, 10}, Case{DType::BF16, 7}, Case{DType::F64, 52}}) {
    const auto bytes = serialize_safetensors(tensors, {}, c.dtype);
    const SafetensorsHeader header = parse_safetensors_header(bytes);
    for (const auto& info : header.tensors) EXPECT_EQ(info.dtype, c.dtype);
    const SafetensorsData back = parse_safetensors(bytes);
    EXPECT_EQ(back.tensors.at("exact").data, exact.data) << dtype_name(c.dtype);
    const auto& got = back.tensors.at("off").data;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const float x = off.data[i];
      const double ulp = std::ldexp(1.0, std::ilogb(x) - c.mantissa_bits);
      EXPECT_LE(std::fabs(static_cast<double>(got[i]) - x), ulp / 2) << dtype_name(c.dtype) << " " << x;
    }
  }
}

TEST(Safetensors, UnalignedDataIsReadWithoutMisalignedAccess) {
  // A header of odd length puts the data at an odd address (UBSan would flag a direct load).
  const std::string header = "{" + entry("a", "F32", "[3]", 0, 12) + "," + entry("h", "F16", "[1]", 12, 14) + "}";
  ASSERT_NE((8 + header.size()) % 4, 0u);
  auto bytes = image(header, 0);
  const float a[3] = {1.5f, -2.25f, 1e-30f};
  const std::uint16_t h = 0x3C00;  // 1.0
  for (std::size_t i = 0; i < 12; ++i) bytes.push_back(reinterpret_cast<const std::byte*>(a)[i]);
  for (std::size_t i = 0; i < 2; ++i) bytes.push_back(reinterpret_cast<const std::byte*>(&h)[i]);
  const SafetensorsData d = parse_safetensors(bytes);
  EXPECT_EQ(d.tensors.at("a").data, std::vector<float>(a, a + 3));
  EXPECT_EQ(d.tensors.at("h").data, std::vector<float>{1.0f});
}

TEST(Safetensors, HeaderPaddingWithSpacesIsAccepted) {
  const std::string header = "{" + entry("x", "F32", "[1]", 0, 4) + "}     ";
  const auto d = parse_safetensors(image(header, 4));
  EXPECT_EQ(d.tensors.at("x").shape, std::vector<std::int64_t>{1});
}

// A file written by PyTorch (tools/reference/make_io_fixtures.py): the same values stored as F32,
// F16 and BF16 by torch's own conversions, next to torch's float32 view of the narrowed values.
TEST(Safetensors, ReadsTorchWrittenDtypes) {
  const fs::path path = fs::path(SLUICE_TEST_DATA_DIR) / "io" / "torch_dtypes.safetensors";
  const SafetensorsData d = read_safetensors(path);
  EXPECT_EQ(d.metadata.at("writer"), "torch");
  for (const std::string kind : {"f16", "bf16"}) {
    const auto& narrow = d.tensors.at("values_" + kind).data;
    const auto& expected = d.tensors.at("values_" + kind + "_as_f32").data;
    ASSERT_EQ(narrow.size(), expected.size());
    ASSERT_GT(narrow.size(), 10u);
    for (std::size_t i = 0; i < narrow.size(); ++i) {
      if (std::isnan(expected[i])) {
        EXPECT_TRUE(std::isnan(narrow[i])) << kind << " " << i;
      } else {
        EXPECT_EQ(narrow[i], expected[i]) << kind << " " << i;
      }
    }
    // and our writer rounds float32 the way torch does
    const auto& f32 = d.tensors.at("values_f32").data;
    for (std::size_t i = 0; i < f32.size(); ++i) {
      const float ours = kind == "f16" ? half_to_float(float_to_half(f32[i])) : bfloat16_to_float(float_to_bfloat16(f32[i]));
      if (std::isnan(expected[i])) {
        EXPECT_TRUE(std::isnan(ours));
      } else {
        EXPECT_EQ(ours, expected[i]) << kind << " value " << f32[i];
      }
    }
  }
  EXPECT_EQ(d.tensors.at("matrix_f16").shape, (std::vector<std::int64_t>{3, 4}));
}

// ---------------------------------------------------------------------------------------------
// Malformed files

TEST(SafetensorsErrors, TooShortForTheLengthField) {
  expect_error({std::byte{1}, std::byte{0}}, "too short for the 8-byte header length");
  expect_error({}, "file is 0 bytes");
}

TEST(SafetensorsErrors, HeaderLengthBeyondLimitOrFile) {
  const std::string header = "{" + entry("x", "F32", "[1]", 0, 4) + "}";
  SafetensorsOptions small;
  small.max_header_bytes = 16;
  expect_error(image(header, 4), "exceeds the limit of 16 bytes", small);
  expect_error(image(header, 4, 1ull << 62), "exceeds the limit");
  expect_error(image(header, 4, header.size() + 5), "runs past the end of the file");
  expect_error(image(header, 0, ~1ull), "exceeds the limit");
}

TEST(SafetensorsErrors, InvalidJson) {
  expect_error(image("{\"x\": {\"dtype\": \"F32\",", 0), "not valid JSON");
  expect_error(image("", 0), "not valid JSON");
  expect_error(image("{} trailing", 0), "not valid JSON");
  expect_error(image(std::string("{\"\xff\": 1}"), 0), "not valid JSON");  // not UTF-8
  expect_error(image("[1, 2]", 0), "must be a JSON object");
  expect_error(image("\"text\"", 0), "must be a JSON object");
}

TEST(SafetensorsErrors, NestingAndDuplicates) {
  expect_error(image("{\"x\": {\"shape\": [[1]]}}", 0), "nested deeper");
  expect_error(image("{\"x\": [[[[[[[[[[[[]]]]]]]]]]]]}", 0), "nested deeper");
  expect_error(image(std::string(100000, '[') + std::string(100000, ']'), 0), "nested deeper");
  expect_error(image("{" + entry("x", "F32", "[1]", 0, 4) + "," + entry("x", "F32", "[1]", 4, 8) + "}", 8),
               "key 'x' twice");
  expect_error(image("{\"x\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
               "key 'dtype' twice");
}

TEST(SafetensorsErrors, BadEntries) {
  expect_error(image("{\"x\": 5}", 0), "tensor 'x': entry must be a JSON object");
  expect_error(image("{\"\": {\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4), "empty name");
  expect_error(image("{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "tensor 'x': no 'dtype'");
  expect_error(image("{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), "tensor 'x': no 'shape'");
  expect_error(image("{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), "tensor 'x': no 'data_offsets'");
  expect_error(image("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4),
               "unknown field 'extra'");
  expect_error(image("{" + entry("x", "F17", "[1]", 0, 4) + "}", 4), "tensor 'x': unknown dtype \"F17\"");
  expect_error(image("{\"x\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "'dtype' must be a string");
  expect_error(image("{" + entry("x", "F32", "5", 0, 4) + "}", 4), "'shape' must be an array");
}

TEST(SafetensorsErrors, BadShapes) {
  expect_error(image("{" + entry("x", "F32", "[-1, 4]", 0, 4) + "}", 4), "shape[0] is negative");
  expect_error(image("{" + entry("x", "F32", "[2, 1.5]", 0, 4) + "}", 4), "shape[1] must be a non-negative integer");
  expect_error(image("{" + entry("x", "F32", "[\"2\"]", 0, 4) + "}", 4), "shape[0] must be a non-negative integer");
  expect_error(image("{" + entry("x", "F32", "[18446744073709551616]", 0, 4) + "}", 4),
               "shape[0] must be a non-negative integer");  // 2^64 does not fit
  expect_error(image("{" + entry("x", "F32", "[9223372036854775808]", 0, 4) + "}", 4), "more elements than");
  expect_error(image("{" + entry("x", "F32", "[4294967296, 4294967296]", 0, 4) + "}", 4), "more elements than");
  expect_error(image("{" + entry("x", "F32", "[4294967296, 2147483648, 0]", 0, 0) + "}", 0), "more elements than");
  // numel fits in 64 bits but numel * 8 does not
  expect_error(image("{" + entry("x", "F64", "[4611686018427387904]", 0, 4) + "}", 4), "too large to address");
  expect_error(image("{" + entry("x", "F32", "[2, 3]", 0, 20) + "}", 20), "needs 24 bytes");
  expect_error(image("{" + entry("x", "BF16", "[3]", 0, 4) + "}", 4), "needs 6 bytes");
}

TEST(SafetensorsErrors, BadOffsets) {
  expect_error(image("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4), "must be an array [begin, end]");
  expect_error(image("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4), "must be an array [begin, end]");
  expect_error(image("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4), "data_offsets[0] is negative");
  expect_error(image("{" + entry("x", "F32", "[0]", 8, 4) + "}", 8), "end before they begin");
  expect_error(image("{" + entry("x", "F32", "[2]", 0, 8) + "}", 4), "run past the end of the data buffer (4 bytes)");
  expect_error(image("{" + entry("x", "F32", "[1]", 18446744073709551611ull, 18446744073709551615ull) + "}", 4),
               "run past the end");
}

TEST(SafetensorsErrors, OverlapsHolesAndTrailingBytes) {
  expect_error(image("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 4, 12) + "}", 12),
               "tensor 'b' [4, 12) overlaps tensor 'a' [0, 8)");
  expect_error(image("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 0, 8) + "}", 8),
               "overlaps");
  expect_error(image("{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 8, 12) + "}", 12),
               "bytes [4, 8) of the data buffer belong to no tensor");
  expect_error(image("{" + entry("a", "F32", "[1]", 4, 8) + "}", 8), "bytes [0, 4)");
  expect_error(image("{" + entry("a", "F32", "[1]", 0, 4) + "}", 9), "5 bytes after the last tensor");
  expect_error(image("{}", 3), "3 bytes after the last tensor");
  // empty tensors may share an offset: they own no bytes
  const auto d = parse_safetensors(
      image("{" + entry("a", "F32", "[0]", 0, 0) + "," + entry("b", "F32", "[1]", 0, 4) + "," +
                entry("c", "F32", "[2,0]", 4, 4) + "}",
            4));
  EXPECT_EQ(d.tensors.size(), 3u);
}

TEST(SafetensorsErrors, BadMetadata) {
  expect_error(image("{\"__metadata__\": {\"a\": 1}}", 0), "__metadata__ value of 'a' must be a string");
  expect_error(image("{\"__metadata__\": [\"a\"]}", 0), "__metadata__ must be an object");
  const auto d = parse_safetensors(image("{\"__metadata__\": {\"a\": \"b\"}}", 0));
  EXPECT_EQ(d.metadata.at("a"), "b");
  EXPECT_TRUE(d.tensors.empty());
}

TEST(SafetensorsErrors, NonFloatDtypeValidatesButDoesNotLoad) {
  const auto bytes = image("{" + entry("steps", "I64", "[1]", 0, 8) + "}", 8);
  const SafetensorsHeader h = parse_safetensors_header(bytes);
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].dtype, DType::I64);
  expect_error(bytes, "tensor 'steps' has dtype I64, which does not load as float");
}

TEST(SafetensorsErrors, EveryTruncationOfAValidFileIsRefused) {
  const auto good = serialize_safetensors(sample_tensors(), {{"k", "v"}}, DType::F16);
  ASSERT_NO_THROW(parse_safetensors(good));
  for (std::size_t n = 0; n < good.size(); ++n) {
    const std::vector<std::byte> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW(parse_safetensors(cut), Error) << "truncated to " << n << " bytes";
  }
}

TEST(SafetensorsErrors, CorruptedBytesGiveAnErrorOrAValidResultNeverAnotherException) {
  const auto good = serialize_safetensors(sample_tensors(), {{"k", "v"}}, DType::BF16);
  std::mt19937 rng(11);
  int refused = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    auto bad = good;
    const int flips = 1 + trial % 4;
    for (int f = 0; f < flips; ++f) {
      // bias towards the length field and header, where the structure lives
      const std::size_t limit = trial % 2 ? bad.size() : std::min<std::size_t>(bad.size(), 64);
      bad[rng() % limit] = static_cast<std::byte>(rng() & 0xFF);
    }
    try {
      const auto d = parse_safetensors(bad);
      for (const auto& [name, t] : d.tensors) EXPECT_EQ(static_cast<std::size_t>(t.numel()), t.data.size());
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), errc::invalid_argument);
      ++refused;
    }
  }
  EXPECT_GT(refused, 100);  // the corruption did hit the structure
}

// ---------------------------------------------------------------------------------------------
// Files

TEST(SafetensorsFiles, MissingFileAndDirectory) {
  try {
    read_safetensors("/nonexistent/dir/w.safetensors");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/w.safetensors: cannot open"), std::string::npos) << e.what();
  }
  try {
    read_safetensors(fs::temp_directory_path());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsFiles, EmptyAndTruncatedFilesOnDisk) {
  const fs::path path = temp_path("trunc.safetensors");
  write_safetensors(path, sample_tensors());
  const auto full = fs::file_size(path);
  fs::resize_file(path, full - 3);
  EXPECT_THROW(load_checkpoint(path), Error);
  fs::resize_file(path, 0);
  try {
    load_checkpoint(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string() + ": file is 0 bytes"), std::string::npos) << e.what();
  }
  fs::remove(path);
}

TEST(SafetensorsFiles, LoadCheckpointExplainsAPytorchFile) {
  const fs::path path = temp_path("model.pth");
  {
    std::ofstream out(path, std::ios::binary);
    out << "PK\x03\x04" << std::string(60, 'z');  // the zip container of torch.save
  }
  try {
    load_checkpoint(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tools/convert_checkpoint.py"), std::string::npos) << e.what();
  }
  fs::remove(path);
}

// A weights path that is no regular file is refused at once, naming the path and what it is. A
// FIFO used to block in open() until a writer came: the load runs on a thread, and a writer is
// opened after the deadline so that a regression fails instead of hanging.
/// What `load` throws for a FIFO, within 10 s: a load that blocks waiting for a writer fails the test.
template <class Load>
std::string fifo_refusal(const fs::path& path, Load load) {
  EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0) << std::strerror(errno);
  auto result = std::async(std::launch::async, [&] {
    try {
      load(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  });
  if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "blocked on a FIFO";
    const int writer = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);  // lets the blocked open return
    if (writer >= 0) ::close(writer);
  }
  std::string what = result.get();
  fs::remove(path);
  return what;
}

TEST(SafetensorsFiles, AFifoIsRefusedWithoutBlocking) {
  const fs::path path = temp_path("weights.fifo");
  const std::string what = fifo_refusal(path, [](const fs::path& p) { load_checkpoint(p); });
  EXPECT_NE(what.find(path.string() + ": not a regular file"), std::string::npos) << what;
  EXPECT_NE(what.find("FIFO"), std::string::npos) << what;
}

// Configuration files (model.json, batch_sizes.json, the server's --config) are read the same way.
TEST(RegularFiles, ConfigurationTextIsReadAndAFifoRefused) {
  const fs::path text = temp_path("config.json");
  {
    std::ofstream out(text);
    out << "{\"network\": \"hrnet\"}";
  }
  EXPECT_EQ(read_regular_file(text), "{\"network\": \"hrnet\"}");
  fs::remove(text);
  const fs::path fifo = temp_path("config.fifo");
  const std::string what = fifo_refusal(fifo, [](const fs::path& p) { read_regular_file(p); });
  EXPECT_NE(what.find(fifo.string() + ": not a regular file (a FIFO)"), std::string::npos) << what;
  EXPECT_THROW(read_regular_file("/nonexistent/sluice/config.json"), Error);
}

TEST(SafetensorsFiles, ACharacterDeviceIsRefused) {
  try {
    load_checkpoint("/dev/null");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("/dev/null: not a regular file (a character device)"), std::string::npos)
        << e.what();
  }
}

// Weights holding NaN or an infinity are refused at load, naming the tensor, in every float dtype
// (F16 and BF16 hold both; F64 infinities also arise from values beyond float's range).
TEST(SafetensorsFiles, NonFiniteWeightsAreRefusedNamingTheTensor) {
  struct Case {
    float bad;
    DType dtype;
    const char* says;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const Case& c : {Case{nan, DType::F32, "NaN"}, Case{inf, DType::F32, "+Inf"}, Case{-inf, DType::F16, "-Inf"},
                        Case{nan, DType::BF16, "NaN"}, Case{inf, DType::F64, "+Inf"}}) {
    SCOPED_TRACE(std::string(dtype_name(c.dtype)) + " " + c.says);
    TensorDict tensors = sample_tensors();
    tensors.at("bn1.weight").data[2] = c.bad;
    const fs::path path = temp_path("nonfinite.safetensors");
    write_safetensors(path, tensors, {}, c.dtype);
    try {
      load_checkpoint(path);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), errc::invalid_argument);
      const std::string what = e.what();
      EXPECT_EQ(what.rfind(path.string() + ": ", 0), 0u) << what;
      EXPECT_NE(what.find("'bn1.weight'"), std::string::npos) << what;
      EXPECT_NE(what.find(std::string(c.says) + " at index 2"), std::string::npos) << what;
    }
    fs::remove(path);
  }
  // A finite checkpoint loads.
  const fs::path path = temp_path("finite.safetensors");
  write_safetensors(path, sample_tensors());
  EXPECT_EQ(load_checkpoint(path).size(), sample_tensors().size());
  fs::remove(path);
}

TEST(SafetensorsFiles, WriterRefusesInconsistentTensors) {
  TensorDict bad{{"x", HostTensor{{2, 2}, {1.0f, 2.0f, 3.0f}}}};
  EXPECT_THROW(serialize_safetensors(bad), Error);
  TensorDict negative{{"x", HostTensor{{-1}, {}}}};
  EXPECT_THROW(serialize_safetensors(negative), Error);
  TensorDict reserved{{"__metadata__", HostTensor{{1}, {1.0f}}}};
  EXPECT_THROW(serialize_safetensors(reserved), Error);
  EXPECT_THROW(serialize_safetensors(sample_tensors(), {}, DType::I32), Error);
  EXPECT_THROW(write_safetensors("/nonexistent/dir/out.safetensors", sample_tensors()), Error);
}

}  // namespace
