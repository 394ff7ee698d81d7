#include <gtest/gtest.h>

#include <set>
#include <string>
#include <system_error>

#include "sluice/core/error.hpp"

namespace {

TEST(Error, CodesConvertAndCarryTheirMessage) {
  std::error_code ec = sluice::errc::queue_full;
  EXPECT_EQ(ec.category().name(), std::string("sluice"));
  EXPECT_EQ(ec.message(), "queue full");
  EXPECT_TRUE(ec);
  EXPECT_EQ(ec, sluice::errc::queue_full);
  EXPECT_NE(ec, sluice::errc::cancelled);
}

TEST(Error, EveryCodeHasItsOwnMessage) {
  std::set<std::string> messages;
  for (int v = 1; v <= static_cast<int>(sluice::errc::model_failed); ++v)
    messages.insert(sluice::make_error_code(static_cast<sluice::errc>(v)).message());
  EXPECT_EQ(messages.size(), static_cast<std::size_t>(sluice::errc::model_failed));
  EXPECT_NE(messages.count("unknown sluice error 99"), 1u);
}

TEST(Error, ExceptionKeepsCodeAndWhat) {
  try {
    throw sluice::Error(sluice::errc::out_of_memory, "arena exhausted");
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), sluice::errc::out_of_memory);
    EXPECT_NE(std::string(e.what()).find("arena exhausted"), std::string::npos);
  }
}

}  // namespace
