// WeightBinder: strict binding by name. Every missing, unexpected and wrongly shaped tensor appears
// in one error; a checkpoint that matches binds the stored values.
#include <gtest/gtest.h>

#include <string>

#include "sluice/weights/safetensors.hpp"
#include "sluice/weights/weight_binder.hpp"

namespace {

using sluice::Error;
using sluice::errc;
using namespace sluice::weights;

HostTensor filled(std::vector<std::int64_t> shape, float start) {
  HostTensor t;
  t.shape = std::move(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data.push_back(start + static_cast<float>(i));
  return t;
}

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

TEST(WeightBinder, MatchingCheckpointBindsTheStoredValues) {
  const TensorDict dict{{"conv.weight", filled({2, 1, 1, 1}, 1.0f)}, {"norm.bias", filled({2}, 10.0f)}};
  WeightBinder binder(dict);
  EXPECT_TRUE(binder.has("conv.weight"));
  EXPECT_FALSE(binder.has("conv.bias"));
  EXPECT_EQ(binder.shape_of("norm.bias"), std::vector<std::int64_t>{2});
  const HostTensor& w = binder.take("conv.weight", {2, 1, 1, 1});
  const HostTensor& b = binder.take("norm.bias", {2});
  EXPECT_EQ(w.data, (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(b.data, (std::vector<float>{10.0f, 11.0f}));
  EXPECT_NO_THROW(binder.finish());
}

TEST(WeightBinder, ListsEveryProblemInOneError) {
  const TensorDict dict{
      {"a.weight", filled({4, 3, 3, 3}, 0.0f)},        // wrong shape
      {"b.weight", filled({8}, 0.0f)},                 // fine
      {"stray.weight", filled({5}, 0.0f)},             // unexpected
      {"num_batches_tracked", filled({1}, 0.0f)},      // unexpected
      {"relative_position_bias_table", filled({169, 8}, 0.0f)},  // ignored explicitly
  };
  WeightBinder binder(dict);
  const HostTensor& a = binder.take("a.weight", {4, 3, 7, 7});
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{4, 3, 7, 7}));  // a placeholder, binding goes on
  EXPECT_EQ(a.data.size(), 4u * 3 * 7 * 7);
  binder.take("b.weight", {8});
  binder.take("c.weight", {2, 2});
  binder.take("d.bias", {3});
  binder.ignore("relative_position_bias_table");
  try {
    binder.finish();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), errc::invalid_argument);
    const std::string what = e.what();
    EXPECT_NE(what.find("missing (2)"), std::string::npos) << what;
    EXPECT_NE(what.find("c.weight [2, 2]"), std::string::npos) << what;
    EXPECT_NE(what.find("d.bias [3]"), std::string::npos) << what;
    EXPECT_NE(what.find("wrong shape (1)"), std::string::npos) << what;
    EXPECT_NE(what.find("a.weight is [4, 3, 3, 3], expected [4, 3, 7, 7]"), std::string::npos) << what;
    EXPECT_NE(what.find("unexpected (2)"), std::string::npos) << what;
    EXPECT_NE(what.find("stray.weight [5]"), std::string::npos) << what;
    EXPECT_NE(what.find("num_batches_tracked [1]"), std::string::npos) << what;
    EXPECT_EQ(what.find("relative_position_bias_table"), std::string::npos) << what;
    EXPECT_EQ(what.find("b.weight"), std::string::npos) << what;
    EXPECT_EQ(count(what, "\n    "), 5u) << what;  // exactly the five problems
  }
}

TEST(WeightBinder, ShapeOfAMissingTensorIsAnError) {
  const TensorDict dict;
  WeightBinder binder(dict);
  EXPECT_THROW(binder.shape_of("encoder1.0.conv1.weight"), Error);
}

TEST(WeightBinder, BindsAFileReadFromDisk) {
  // The path a network takes: safetensors image -> TensorDict -> binder.
  const TensorDict dict{{"x.weight", filled({3, 2}, -1.0f)}};
  const auto data = parse_safetensors(serialize_safetensors(dict, {}, DType::BF16));
  WeightBinder binder(data.tensors);
  EXPECT_EQ(binder.take("x.weight", {3, 2}).data, dict.at("x.weight").data);  // small ints: exact in BF16
  EXPECT_NO_THROW(binder.finish());
}

}  // namespace
