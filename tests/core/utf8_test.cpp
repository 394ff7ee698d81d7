#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "sluice/core/utf8.hpp"

namespace {

const std::string kReplacement = "\xEF\xBF\xBD";

TEST(Utf8, ValidTextIsKeptAsItIs) {
  const std::string text = "spheroid_\xC3\xA9t\xC3\xA9_\xE6\x97\xA5\xE6\x9C\xAC_\xF0\x9F\x94\xAC.png";
  EXPECT_TRUE(sluice::is_valid_utf8(text));
  EXPECT_EQ(sluice::sanitize_utf8(text), text);
}

TEST(Utf8, EveryKindOfMalformedSequenceIsReplaced) {
  // Latin-1 e-acute, a lone continuation byte, an overlong '/', a surrogate, above U+10FFFF, a cut
  // three-byte sequence at the end, and 0xFF.
  const std::string bad[] = {"caf\xE9", "\x80", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "ab\xE6\x97", "%\xFF"};
  for (const std::string& s : bad) {
    EXPECT_FALSE(sluice::is_valid_utf8(s)) << s;
    const std::string clean = sluice::sanitize_utf8(s);
    EXPECT_TRUE(sluice::is_valid_utf8(clean)) << s;
    EXPECT_NE(clean.find(kReplacement), std::string::npos) << s;
    // What the server does with it: serialising must not throw.
    EXPECT_NO_THROW((void)nlohmann::json(clean).dump());
  }
  EXPECT_EQ(sluice::sanitize_utf8("caf\xE9!"), "caf" + kReplacement + "!");
}

TEST(Utf8, ClippingNeverSplitsACharacter) {
  const std::string snowmen = "\xE2\x98\x83\xE2\x98\x83\xE2\x98\x83";  // three 3-byte characters
  for (std::size_t max = 0; max <= snowmen.size() + 1; ++max) {
    const std::string clipped = sluice::clip_utf8(snowmen, max);
    EXPECT_TRUE(sluice::is_valid_utf8(clipped)) << max;
    if (max >= snowmen.size()) EXPECT_EQ(clipped, snowmen);
    else EXPECT_EQ(clipped, snowmen.substr(0, max / 3 * 3) + "...") << max;
  }
}

}  // namespace
