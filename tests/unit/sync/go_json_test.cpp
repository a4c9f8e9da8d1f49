// Remote JSON values as ESO's Go code turns them into Secret bytes
// (sync/src/go_json.cpp, through extract_property / extract_map). The
// expected bytes are what tests/fuzz/go_json_ref (ESO's provider code on
// encoding/json and gjson) printed for the same inputs; fuzz.go_json_diff
// compares tens of thousands more.
#include <catch2/catch.hpp>

#include <string>

#include "go_json.hpp"
#include "secure_json.hpp"

using namespace rootseal;
using namespace rootseal::sync;

namespace {

std::string text(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }
kms::SecureBytes bytes(std::string_view s) { return kms::SecureBytes::copy_of(s); }

std::string vault_whole(std::string_view doc) {
  auto d = gojson::Document::parse(doc);
  REQUIRE(d);
  SecureBuffer out(64);
  REQUIRE(gojson::marshal(*d, gojson::Document::root(), gojson::Numbers::as_written, out));
  return std::string(out.view());
}

std::string property(std::string_view whole, std::string_view p, ValueFormat f) {
  auto v = extract_property(bytes(whole), p, f);
  REQUIRE(v);
  return text(*v);
}

}  // namespace

TEST_CASE("go_json: Vault's whole value is Go's Marshal: keys sorted, HTML escaped, numbers as written",
          "[sync][gojson]") {
  CHECK(vault_whole(R"({"b":1.50,"a":"<x>&","n":{"z":1e3,"y":[1,2.0]}})") ==
        R"({"a":"\u003cx\u003e\u0026","b":1.50,"n":{"y":[1,2.0],"z":1e3}})");
  CHECK(vault_whole(R"({"dup":1,"dup":2, "ws" : [ 1 , 2 ] })") == R"({"dup":2,"ws":[1,2]})");
  CHECK(vault_whole("{\"ls\":\"\xE2\x80\xA8\",\"bad\":\"\xFF\",\"c\":\"\\b\\f\\u0001\"}") ==
        R"({"bad":"�","c":"\b\f\u0001","ls":"\u2028"})");
}

TEST_CASE("go_json: Vault property and extract, AWS property and extract, as ESO writes them", "[sync][gojson]") {
  CHECK(property(R"({"ratio":1.50})", "ratio", ValueFormat::go_map) == "1.50");  // json.Number
  CHECK(property(R"({"n":{"y":[1,2.50]}})", "n.y", ValueFormat::go_map) == "[1,2.50]");
  CHECK(property(R"({"n":{"y":[1,2.50]}})", "n.y.1", ValueFormat::go_map) == "2.5");  // gjson: float64
  CHECK(property(R"({"a.b":"literal","a":{"b":"path"}})", "a.b", ValueFormat::text) == "literal");
  CHECK(property(R"({"a":{"c":1.50}})", "a.c", ValueFormat::text) == "1.5");
  CHECK(property(R"({"a":{"c":15}})", "a.c", ValueFormat::text) == "15");

  auto vault = extract_map(
      bytes(R"({"big":123456789012345678901234567890,"n":{"y":[1,2.0e1]},"ratio":1.50,"s":"<&>","t":true,"z":null})"),
      ValueFormat::go_map);
  REQUIRE(vault);
  CHECK(text(vault->at("big")) == "123456789012345680000000000000");  // through float64, as Go
  CHECK(text(vault->at("n")) == R"({"y":[1,20]})");
  CHECK(text(vault->at("ratio")) == "1.5");
  CHECK(text(vault->at("s")) == "<&>");
  CHECK(text(vault->at("t")) == "true");
  CHECK(text(vault->at("z")).empty());

  auto aws = extract_map(bytes(R"({"n":1.50,"o":{ "x" : 1 },"s":"v","z":null})"), ValueFormat::text);
  REQUIRE(aws);
  CHECK(text(aws->at("n")) == "1.50");  // json.RawMessage: as written
  CHECK(text(aws->at("o")) == R"({ "x" : 1 })");
  CHECK(text(aws->at("s")) == "v");
  CHECK(text(aws->at("z")).empty());
}

TEST_CASE("go_json: refusals", "[sync][gojson]") {
  for (const char* bad : {"", "{", R"({"a":01})", R"({"a":.5})", R"({"a":1,})", "{\"a\":\"new\nline\"}", "[1] 2"}) {
    INFO(bad);
    auto d = gojson::Document::parse(std::string_view(bad));
    REQUIRE_FALSE(d);
    CHECK(d.error().code == kms::Errc::invalid_argument);
    CHECK(d.error().message.starts_with("not valid JSON (at byte "));
  }
  std::string deep(gojson::Document::kMaxDepth + 1, '[');
  deep += std::string(gojson::Document::kMaxDepth + 1, ']');
  CHECK_FALSE(gojson::Document::parse(deep));
  // A number beyond float64: Go's Unmarshal refuses it, so does extract.
  CHECK_FALSE(extract_map(bytes(R"({"over":1e400})"), ValueFormat::go_map));
  CHECK(extract_map(bytes(R"({"over":1e400})"), ValueFormat::text));  // RawMessage keeps it
  auto wild = extract_property(bytes(R"({"a":[{"b":1}]})"), "a.#.b", ValueFormat::text);
  REQUIRE_FALSE(wild);
  CHECK(wild.error().message.find("gjson syntax rootseal does not support") != std::string::npos);
  auto missing = extract_property(bytes(R"({"a":1})"), "b", ValueFormat::go_map);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == kms::Errc::not_found);
  CHECK(missing.error().message == "property 'b' not found");
}

TEST_CASE("go_json: the one string escaper in its two styles", "[sync][gojson]") {
  const std::string in = std::string("a\"\\\n\r\t\b\f\x01<>&") + "\xC3\xA9" + "\xE2\x80\xA8" + "\xFF";
  const auto quoted = [&](gojson::JsonStringStyle style) {
    SecureBuffer out(16);
    gojson::append_json_string(out, in, style);
    return std::string(out.view());
  };
  // encoding/json's Marshal: HTML escaped, invalid UTF-8 as U+FFFD, U+2028 escaped.
  CHECK(quoted({}) == "\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u003c\\u003e\\u0026\xC3\xA9\\u2028\\ufffd\"");
  CHECK(quoted({.escape_html = false, .go_utf8 = true}) ==
        "\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001<>&\xC3\xA9\\u2028\\ufffd\"");
  // json_quote (request bodies of the providers): bytes >= 0x80 as they are.
  SecureBuffer raw(16);
  json_quote(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(in.data()), in.size()), raw);
  CHECK(std::string(raw.view()) == "\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001<>&\xC3\xA9\xE2\x80\xA8\xFF\"");
}
