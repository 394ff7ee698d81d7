// The vectorisable sigmoid against the logistic function in double precision.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "sluice/vision/sigmoid.hpp"

TEST(Sigmoid, WithinOneTenMillionthOfTheExactValueEverywhere) {
  std::vector<float> x;
  for (float v = -120.0f; v <= 120.0f; v += 0.00731f) x.push_back(v);
  for (const float v : {0.0f, -0.0f, 1e-8f, -1e-8f, 87.0f, -87.0f, 88.0f, -88.0f, 89.0f, -104.0f, 1e30f, -1e30f})
    x.push_back(v);
  x.push_back(std::numeric_limits<float>::infinity());
  x.push_back(-std::numeric_limits<float>::infinity());
  std::vector<float> y(x.size());
  sluice::vision::sigmoid(x.data(), y.data(), x.size());
  double worst_abs = 0.0, worst_rel = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double exact = 1.0 / (1.0 + std::exp(-static_cast<double>(x[i])));
    const double err = std::abs(static_cast<double>(y[i]) - exact);
    ASSERT_LE(err, 1e-7) << "x = " << x[i];
    worst_abs = std::max(worst_abs, err);
    // Relative where the value is a normal float the clamp does not touch (e^-87 = 1.6e-38).
    if (exact > 1e-37) worst_rel = std::max(worst_rel, err / exact);
    ASSERT_GE(y[i], 0.0f);
    ASSERT_LE(y[i], 1.0f);
  }
  EXPECT_LE(worst_rel, 5e-7);
  char text[64];
  std::snprintf(text, sizeof text, "%.2e / %.2e", worst_abs, worst_rel);
  RecordProperty("worst_abs_rel", text);
}

TEST(Sigmoid, KeepsNaNAndWorksInPlace) {
  std::vector<float> v = {std::numeric_limits<float>::quiet_NaN(), 0.0f, 2.0f};
  sluice::vision::sigmoid(v.data(), v.data(), v.size());
  EXPECT_TRUE(std::isnan(v[0]));
  EXPECT_FLOAT_EQ(v[1], 0.5f);
  EXPECT_NEAR(v[2], 1.0 / (1.0 + std::exp(-2.0)), 1e-7);
}
