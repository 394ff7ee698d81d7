// Unit tests of the multipart/form-data parser and the header-parameter parser.
#include <gtest/gtest.h>

#include <string>

#include "sluice/serve/header_params.hpp"
#include "sluice/serve/multipart.hpp"

namespace {

using sluice::errc;
using sluice::Error;
using namespace sluice::serve;

// Builds a body the way curl does: "--B\r\n" headers "\r\n\r\n" content "\r\n" ... "--B--\r\n".
struct Field {
  std::string disposition;
  std::string content_type;  // empty: no header
  std::string content;
};
std::string build(const std::string& boundary, const std::vector<Field>& fields, const std::string& epilogue = "\r\n") {
  std::string body;
  for (const auto& f : fields) {
    body += "--" + boundary + "\r\n";
    body += "Content-Disposition: " + f.disposition + "\r\n";
    if (!f.content_type.empty()) body += "Content-Type: " + f.content_type + "\r\n";
    body += "\r\n" + f.content + "\r\n";
  }
  body += "--" + boundary + "--" + epilogue;
  return body;
}

errc code_of(const std::function<void()>& f, std::string* what = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (what) *what = e.what();
    return static_cast<errc>(e.code().value());
  }
  return errc{};
}

TEST(Multipart, BoundaryFromContentType) {
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=------------------------abc123"),
            "------------------------abc123");
  EXPECT_EQ(multipart_boundary("Multipart/Form-Data;boundary=\"a b'c\""), "a b'c");
  EXPECT_EQ(multipart_boundary("multipart/form-data; charset=utf-8; boundary=xyz;"), "xyz");
  EXPECT_EQ(code_of([] { multipart_boundary("application/json"); }), errc::invalid_argument);
  EXPECT_EQ(code_of([] { multipart_boundary("multipart/form-data"); }), errc::invalid_argument);
  EXPECT_EQ(code_of([] { multipart_boundary("multipart/form-data; boundary=\"\""); }), errc::invalid_argument);
  EXPECT_EQ(code_of([] { multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'a')); }),
            errc::invalid_argument);
  EXPECT_EQ(code_of([] { multipart_boundary("multipart/form-data; boundary=\"abc"); }), errc::invalid_argument);
  EXPECT_EQ(code_of([] { multipart_boundary("multipart; boundary=abc"); }), errc::invalid_argument);
}

TEST(Multipart, ParsesFieldsAndFilesAsCurlSendsThem) {
  const std::string png("\x89PNG\r\n\x1a\n\0\0\r\n--not-the-boundary", 26);
  const std::string body = build("XyZ", {{"form-data; name=\"file\"; filename=\"cells.png\"", "image/png", png},
                                         {"form-data; name=\"model\"", "", "hrnet"},
                                         {"form-data; name=\"threshold\"", "", "0.35"},
                                         {"form-data; name=\"empty\"", "", ""}});
  const auto parts = parse_multipart(body, "XyZ");
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[0].name, "file");
  ASSERT_TRUE(parts[0].filename);
  EXPECT_EQ(*parts[0].filename, "cells.png");
  EXPECT_EQ(parts[0].content_type, "image/png");
  EXPECT_EQ(std::string(parts[0].content), png);  // binary, CRLF and "--" inside are kept
  EXPECT_EQ(parts[1].name, "model");
  EXPECT_FALSE(parts[1].filename);
  EXPECT_EQ(parts[1].content_type, "text/plain");
  EXPECT_EQ(parts[1].content, "hrnet");
  EXPECT_EQ(parts[2].content, "0.35");
  EXPECT_EQ(parts[3].content, "");
  // Contents are views into the body, not copies.
  EXPECT_GE(parts[0].content.data(), body.data());
  EXPECT_LE(parts[0].content.data() + parts[0].content.size(), body.data() + body.size());
}

TEST(Multipart, PreambleEpilogueAndPaddingAreAccepted) {
  std::string body = "this is a preamble\r\n--b1 \t\r\nContent-Disposition: form-data; name=a\r\n\r\nA\r\n--b1--";
  body += " and an epilogue";
  const auto parts = parse_multipart(body, "b1");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].name, "a");
  EXPECT_EQ(parts[0].content, "A");
}

TEST(Multipart, RepeatedFieldsKeepTheirOrder) {
  std::vector<Field> fields;
  for (int i = 0; i < 5; ++i)
    fields.push_back({"form-data; name=\"files\"; filename=\"f" + std::to_string(i) + ".png\"", "image/png",
                      std::string(static_cast<std::size_t>(i), 'x')});
  const auto parts = parse_multipart(build("bb", fields), "bb");
  ASSERT_EQ(parts.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(*parts[i].filename, "f" + std::to_string(i) + ".png");
    EXPECT_EQ(parts[i].content.size(), static_cast<std::size_t>(i));
  }
}

TEST(Multipart, QuotedFilenameEscapesAndExtendedFilename) {
  auto parts = parse_multipart(build("b", {{R"(form-data; name="f"; filename="a \"q\" \\ b.png")", "", "x"}}), "b");
  EXPECT_EQ(*parts[0].filename, R"(a "q" \ b.png)");
  parts = parse_multipart(build("b", {{"form-data; name=\"f\"; filename=\"plain.png\"; filename*=UTF-8''%C3%A9t%C3%A9.png", "", "x"}}), "b");
  EXPECT_EQ(*parts[0].filename, "\xC3\xA9t\xC3\xA9.png");
}

TEST(Multipart, MalformedBodiesAreClearErrors) {
  const std::string ok_part = "Content-Disposition: form-data; name=\"a\"\r\n\r\nA\r\n";
  struct Case {
    std::string body;
    std::string expect_in_message;
  };
  const std::vector<Case> cases = {
      {"", "no boundary delimiter"},
      {"garbage without delimiter", "no boundary delimiter"},
      {"--b--\r\n", "no parts"},
      {"--b\r\n" + ok_part, "missing closing boundary"},               // no close delimiter
      {"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nA", "missing closing boundary"},
      {"--bX\r\n" + ok_part + "--b--", "expected CRLF"},              // delimiter followed by junk
      {"--b\n" + ok_part + "--b--", "expected CRLF"},                 // bare LF
      {"--b\r\nContent-Disposition: form-data; name=\"a\"", "not terminated"},
      {"--b\r\nContent-Disposition: form-data; name=\"a\"\r\nA\r\n--b--", "without a name and ':'"},
      {"--b\r\nContent-Type: text/plain\r\n\r\nA\r\n--b--", "without Content-Disposition"},
      {"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nA\r\n--b--", "not form-data"},
      {"--b\r\nContent-Disposition: form-data\r\n\r\nA\r\n--b--", "without a name"},
      {"--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nA\r\n--b--", "unterminated quoted string"},
      {"--b\r\nContent-Disposition: form-data; name=a\r\nContent-Disposition: form-data; name=b\r\n\r\nA\r\n--b--",
       "duplicate Content-Disposition"},
      {"--b\r\nContent-Disposition: form-data; name=a\r\n folded\r\n\r\nA\r\n--b--", "folded"},
      {"--b\r\nno colon here\r\n\r\nA\r\n--b--", "without a name and ':'"},
      {"--b\r\nContent-Disposition: form-data; name=a\r\nContent-Type: nonsense\r\n\r\nA\r\n--b--", "bad Content-Type"},
      {"--b\r\nContent-Disposition: form-data; name=a; filename*=bad\r\n\r\nA\r\n--b--", "filename*"},
  };
  for (const auto& c : cases) {
    std::string what;
    EXPECT_EQ(code_of([&] { parse_multipart(c.body, "b"); }, &what), errc::invalid_argument) << c.body;
    EXPECT_NE(what.find(c.expect_in_message), std::string::npos) << "body: " << c.body << "\nmessage: " << what;
  }
}

TEST(Multipart, LimitsAreEnforced) {
  std::vector<Field> fields(10, Field{"form-data; name=\"a\"", "", "x"});
  const std::string body = build("b", fields);
  MultipartLimits limits;
  limits.max_parts = 10;
  EXPECT_EQ(parse_multipart(body, "b", limits).size(), 10u);
  limits.max_parts = 9;
  std::string what;
  EXPECT_EQ(code_of([&] { parse_multipart(body, "b", limits); }, &what), errc::invalid_argument);
  EXPECT_NE(what.find("more than 9 parts"), std::string::npos) << what;

  limits = {};
  limits.max_header_bytes = 64;
  const std::string long_header = build("b", {{"form-data; name=\"" + std::string(100, 'n') + "\"", "", "x"}});
  EXPECT_EQ(code_of([&] { parse_multipart(long_header, "b", limits); }, &what), errc::invalid_argument);
  EXPECT_NE(what.find("longer than 64 bytes"), std::string::npos) << what;

  limits = {};
  limits.max_headers = 2;
  std::string many = "--b\r\nContent-Disposition: form-data; name=a\r\nX-A: 1\r\nX-B: 2\r\n\r\nA\r\n--b--";
  EXPECT_EQ(code_of([&] { parse_multipart(many, "b", limits); }, &what), errc::invalid_argument);
  EXPECT_NE(what.find("more than 2 headers"), std::string::npos) << what;
  limits.max_headers = 3;
  EXPECT_EQ(parse_multipart(many, "b", limits).size(), 1u);
}

TEST(Multipart, EveryTruncationOfAValidBodyFailsCleanly) {
  const std::string body = build("bnd", {{"form-data; name=\"file\"; filename=\"x.png\"", "image/png", "abc\r\ndef"},
                                         {"form-data; name=\"threshold\"", "", "0.5"}},
                                 "");
  ASSERT_EQ(parse_multipart(body, "bnd").size(), 2u);
  // Removing the final "--" (or more) must never parse as a complete body.
  for (std::size_t n = 0; n + 2 <= body.size(); ++n) {
    const std::string cut = body.substr(0, n);
    EXPECT_EQ(code_of([&] { parse_multipart(cut, "bnd"); }), errc::invalid_argument) << "length " << n;
  }
}

TEST(HeaderParams, ParsesParametersAndRejectsJunk) {
  const auto v = parse_header_value("form-data; name=\"file\"; FileName=a.png", false);
  EXPECT_EQ(v.value, "form-data");
  EXPECT_EQ(*v.param("name"), "file");
  EXPECT_EQ(*v.param("filename"), "a.png");
  EXPECT_FALSE(v.param("other"));
  EXPECT_EQ(code_of([] { parse_header_value("", false); }), errc::invalid_argument);
  EXPECT_EQ(code_of([] { parse_header_value("form-data name=a", false); }), errc::invalid_argument);
  EXPECT_EQ(code_of([] { parse_header_value("form-data; =a", false); }), errc::invalid_argument);
  EXPECT_EQ(code_of([] { parse_header_value("form-data; a=", false); }), errc::invalid_argument);
  EXPECT_EQ(code_of([] { parse_header_value("image/", true); }), errc::invalid_argument);
  std::string many = "x";
  for (int i = 0; i < 40; ++i) many += "; p" + std::to_string(i) + "=v";
  EXPECT_EQ(code_of([&] { parse_header_value(many, false); }), errc::invalid_argument);
}

}  // namespace
