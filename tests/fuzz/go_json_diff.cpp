// go_json_diff: the Secret bytes rootseal makes of a remote JSON value
// (sync/src/go_json.cpp through extract_property / extract_map, as the
// reconcilers call them) against the reference, ESO's Vault and AWS provider
// code on Go's encoding/json and gjson (go_json_ref/main.go).
//
//   go_json_diff <go_json_ref binary> <generated documents>
//
// Cases: documents covering what changes bytes (numbers in every JSON form,
// floats Go formats differently, integers beyond float64 precision, strings
// with escapes, HTML characters, U+2028, invalid UTF-8 and unpaired
// surrogates, nested objects and arrays, duplicate keys, whitespace, keys
// with dots), each through the six ops (Vault: whole value, property,
// extract; AWS (and GCP): property, extract; Azure: property) with properties that exist, nest, index
// arrays, contain dots, or do not exist; then fixed-seed random documents.
// Also ESO's RewriteMerge (dataFrom.rewrite.merge) over random inputs and
// options, through rewrite_map. Outcomes must be identical. Refusals ("E") must agree too, and rootseal
// must answer (a value or "not found") at least kMinAnsweredShare of the
// cases, so that the test cannot pass by refusing.
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include <algorithm>

#include "go_json.hpp"
#include "reference_process.hpp"
#include "rewrite.hpp"
#include "rootseal/kms/encoding.hpp"
#include "secure_json.hpp"

using namespace rootseal;
using sync::ValueFormat;

namespace {

constexpr double kMinAnsweredShare = 0.9;

std::string hex(std::string_view s) {
  if (s.empty()) return "-";
  return kms::hex_encode({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}
std::string hex(const kms::SecureBytes& b) {
  return hex(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

kms::SecureBytes bytes(std::string_view s) { return kms::SecureBytes::copy_of(s); }

std::string entries(const sync::SecretMap& m) {
  if (m.empty()) return "{}";
  std::string out;
  for (const auto& [k, v] : m) {
    if (!out.empty()) out += ' ';
    out += hex(k) + "=" + hex(v);
  }
  return out;
}

// "U": a path rootseal refuses as gjson syntax it does not implement (not compared).
std::string property_answer(const kms::Result<kms::SecureBytes>& r) {
  if (r) return hex(*r);
  if (r.error().message.find("gjson syntax") != std::string::npos) return "U";
  return r.error().code == kms::Errc::not_found ? "N" : "E";
}

// Vault's fetch: Go's Marshal of the data object, numbers as written.
kms::Result<kms::SecureBytes> vault_whole(const std::string& doc) {
  auto d = sync::gojson::Document::parse(doc);
  if (!d || d->kind(d->root()) != sync::gojson::Kind::object) return kms::fail(kms::Errc::invalid_argument, "E");
  sync::SecureBuffer out(doc.size());
  if (auto m = sync::gojson::marshal(*d, d->root(), sync::gojson::Numbers::as_written, out); !m) {
    return std::unexpected(m.error());
  }
  return out.take();
}

// dataFrom.rewrite.merge: the document is the input map (a JSON object of
// strings), the property the options; a conflict is "C" and the keys sorted.
std::string mine_merge(const std::string& options, const std::string& doc) {
  const auto o = boost::json::parse(options).as_object();
  sync::model::RewriteMerge m;
  m.into = std::string(o.at("into").as_string());
  for (const auto& p : o.at("priority").as_array()) m.priority.emplace_back(p.as_string());
  m.ignore_not_found = o.at("ignoreNotFound").as_bool();
  m.ignore_conflicts = o.at("ignoreConflicts").as_bool();
  m.json = o.at("json").as_bool();
  sync::SecretMap in;  // values travel hex-encoded: Go would decode invalid UTF-8 in them
  for (const auto& kv : boost::json::parse(doc).as_object()) {
    const auto raw = kms::hex_decode(std::string_view(kv.value().as_string()));
    in.emplace(std::string(kv.key()), raw ? kms::SecureBytes::copy_of(std::span<const std::uint8_t>(*raw)) : bytes(""));
  }
  auto r = sync::rewrite_map({m}, std::move(in));
  if (r) return entries(*r);
  const std::string marker = "merge failed with conflicts: ";
  const auto at = r.error().message.find(marker);
  if (at == std::string::npos) return "E";
  std::vector<std::string> keys;
  std::string_view list = std::string_view(r.error().message).substr(at + marker.size());
  for (std::size_t from = 0;;) {  // strings.Join(conflicts, ", "): a key may be empty
    const auto comma = list.find(", ", from);
    keys.emplace_back(list.substr(from, comma == std::string_view::npos ? std::string_view::npos : comma - from));
    if (comma == std::string_view::npos) break;
    from = comma + 2;
  }
  std::sort(keys.begin(), keys.end());
  std::string out = "C";
  for (const auto& k : keys) out += " " + hex(k);
  return out;
}

std::string mine(const std::string& op, const std::string& property, const std::string& doc) {
  if (op == "merge") return mine_merge(property, doc);
  if (op == "vault_whole") {
    auto w = vault_whole(doc);
    return w ? hex(*w) : "E";
  }
  if (op == "vault_property" || op == "vault_extract") {
    auto w = vault_whole(doc);
    if (!w) return "E";
    if (op == "vault_property") return property_answer(sync::extract_property(*w, property, ValueFormat::go_map));
    auto m = sync::extract_map(*w, ValueFormat::go_map);
    return m ? entries(*m) : "E";
  }
  if (op == "aws_property") return property_answer(sync::extract_property(bytes(doc), property, ValueFormat::text));
  if (op == "azure_property") {
    return property_answer(sync::extract_property(bytes(doc), property, ValueFormat::gjson_path_first));
  }
  auto m = sync::extract_map(bytes(doc), ValueFormat::text);
  return m ? entries(*m) : "E";
}

const std::vector<std::string> kNumbers = {"0",
                                           "-0",
                                           "1",
                                           "1.0",
                                           "1.50",
                                           "1e3",
                                           "1E+3",
                                           "1e-3",
                                           "-2.5e-7",
                                           "0.1",
                                           "1e21",
                                           "1e20",
                                           "1e-6",
                                           "1e-7",
                                           "123456789012345678901234567890",
                                           "9007199254740993",
                                           "1e308",
                                           "1e309",
                                           "-1e400",
                                           "1e-400",
                                           "5e-324",
                                           "0.000001",
                                           "100",
                                           "3.14159265358979323846",
                                           "-0.0",
                                           "2e0",
                                           "12.340e1",
                                           "1.7976931348623157e308"};

const std::vector<std::string> kStrings = {R"("plain")",
                                           R"("")",
                                           R"("<a href=\"x\">&amp;</a>")",
                                           R"("\u003c\u003e\u0026")",
                                           R"("tab\there")",
                                           R"("\b\f\n\r\t\/\\\"")",
                                           R"("\u0000\u001f\u007f")",
                                           "\"\xE2\x80\xA8\xE2\x80\xA9\"",
                                           R"("\u2028")",
                                           "\"\xFF\xFE"
                                           "bad\"",
                                           "\"\xC3\"",
                                           "\"\xED\xA0\x80\"",
                                           R"("\ud83d\ude00")",
                                           R"("\ud83d")",
                                           R"("\ude00x")",
                                           R"("\ud83dx\ude00")",
                                           R"("\uD83D\uDE00")",
                                           "\"日本語 é\"",
                                           R"("a.b")",
                                           R"("{\"inner\":1}")",
                                           R"("aGVsbG8=")"};

const std::vector<std::string> kKeys = {"a", "b", "user", "a.b", "n", "", "<k>", "é", "0", "x y", "arr"};

std::string key(std::string_view k) { return "\"" + std::string(k) + "\""; }

const std::vector<std::string> kDocuments = {
    R"({})",
    R"({"user":"alice","pass":"s3cret"})",
    R"({"port":5432,"ratio":1.50,"big":123456789012345678901234567890,"neg":-0,"exp":1e3,"tiny":1e-7,"huge":1e21})",
    R"({"nested":{"z":1.0,"a":[1,2.50,{"y":"<&>","b":true}],"n":null},"flag":false,"nothing":null})",
    R"({"a.b":"literal","a":{"b":"path"}})",
    R"({"a":{"b":"path"},"a.b":"literal"})",
    R"({"dup":"first","dup":"second","dup":3})",
    R"({ "spaced" : { "x" : 1 , "y" : [ 1 , 2 ] } , "s" : "v" })",
    "{\n  \"pretty\": {\n    \"k\": 1.50\n  }\n}",
    R"({"arr":["zero",{"one":1},[2,2.0]],"0":"key zero"})",
    R"({"html":"<script>alert(1)</script> & more","ls":"\u2028"})",
    R"({"deep":{"a":{"b":{"c":{"d":{"e":"end"}}}}}})",
    R"({"over":1e400})",
    R"({"esc\"key":"v","back\\slash":"w"})",
    R"([1,2,3])",
    R"("just a string")",
    R"(42)",
    R"(null)",
    R"({"a":1,})",
    R"({"a":01})",
    R"({"a":.5})",
    R"({"a":"unterminated})",
    R"({"a":1} trailing)",
    "{\"raw\":\"new\nline\"}",
    R"({"a":NaN})",
    "",
    " \t\r\n{\"ws\":1} \n",
};

const std::vector<std::string> kProperties = {
    "user",       "port",     "ratio",    "big",  "nested",  "nested.a", "nested.a.1", "nested.a.2.y",
    "nested.a.9", "nested.z", "a.b",      "a",    "dup",     "arr.0",    "arr.1.one",  "arr.2.1",
    "0",          "missing",  "nested.n", "flag", "nothing", "html",     "a\\.b",      "deep.a.b.c.d.e",
    "spaced.y",   "pretty.k", "tiny",     "huge", "exp"};

std::string random_value(std::mt19937& rng, int depth) {
  const auto pick = rng() % (depth > 3 ? 4 : 7);
  switch (pick) {
    case 0:
      return kNumbers[rng() % kNumbers.size()];
    case 1:
      return kStrings[rng() % kStrings.size()];
    case 2:
      return std::vector<std::string>{"true", "false", "null"}[rng() % 3];
    case 3:
      return kNumbers[rng() % kNumbers.size()];
    case 4:
    case 5: {
      std::string o = "{";
      const auto n = rng() % 4;
      for (std::size_t i = 0; i < n; ++i) {
        if (i != 0) o += rng() % 4 == 0 ? " , " : ",";
        o += key(kKeys[rng() % kKeys.size()]) + (rng() % 4 == 0 ? " : " : ":") + random_value(rng, depth + 1);
      }
      return o + "}";
    }
    default: {
      std::string a = "[";
      const auto n = rng() % 4;
      for (std::size_t i = 0; i < n; ++i) {
        if (i != 0) a += ",";
        a += random_value(rng, depth + 1);
      }
      return a + "]";
    }
  }
}

std::string random_document(std::mt19937& rng) {
  std::string o = "{";
  const auto n = 1 + rng() % 5;
  for (std::size_t i = 0; i < n; ++i) {
    if (i != 0) o += ",";
    o += key(kKeys[rng() % kKeys.size()]) + ":" + random_value(rng, 1);
  }
  return o + "}";
}

std::string random_property(std::mt19937& rng) {
  std::string p = kKeys[rng() % kKeys.size()];
  const auto more = rng() % 3;
  for (std::size_t i = 0; i < more; ++i) {
    p += ".";
    p += rng() % 3 == 0 ? std::to_string(rng() % 3) : kKeys[rng() % kKeys.size()];
  }
  return p.empty() ? "user" : p;  // an empty property means the whole value
}

struct Case {
  std::string op, property, doc;
};

// A merge case: 1-4 inputs (JSON objects mostly; also null, a list, a string
// and text that is not JSON) and random options.
Case random_merge(std::mt19937& rng) {
  static const std::vector<std::string> kInputs = {"a", "b", "mongo", "redis", "zz"};
  boost::json::object in;
  const auto n = 1 + rng() % 4;
  for (std::size_t i = 0; i < n; ++i) {
    std::string value;
    switch (rng() % 10) {
      case 0:
        value = "null";
        break;
      case 1:
        value = "[1,2]";
        break;
      case 2:
        value = R"("text")";
        break;
      case 3:
        value = "{not json";
        break;
      default:
        value = random_document(rng);
    }
    in[kInputs[rng() % kInputs.size()]] = value.empty() ? "" : hex(value);
  }
  boost::json::object o;
  o["into"] = rng() % 4 == 0 ? "" : (rng() % 4 == 0 ? "a" : "all");
  boost::json::array prio;
  for (std::size_t i = 0, k = rng() % 3; i < k; ++i) prio.emplace_back(kInputs[rng() % kInputs.size()]);
  o["priority"] = prio;
  o["ignoreNotFound"] = rng() % 2 == 0;
  o["ignoreConflicts"] = rng() % 2 == 0;
  o["json"] = rng() % 2 == 0;
  return {"merge", boost::json::serialize(o), boost::json::serialize(in)};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: go_json_diff <go_json_ref binary> <generated documents>\n";
    return 2;
  }
  std::vector<std::string> docs = kDocuments;
  for (const auto& n : kNumbers) docs.push_back("{\"n\":" + n + ",\"arr\":[" + n + "],\"nested\":{\"z\":" + n + "}}");
  for (const auto& s : kStrings) docs.push_back("{\"user\":" + s + ",\"nested\":{\"a\":[" + s + "]}," + s + ":1}");
  std::mt19937 rng(20261207);
  const int generated = std::stoi(argv[2]);
  for (int i = 0; i < generated; ++i) docs.push_back(random_document(rng));

  std::vector<Case> cases;
  for (const auto& d : docs) {
    cases.push_back({"vault_whole", "", d});
    cases.push_back({"vault_extract", "", d});
    cases.push_back({"aws_extract", "", d});
    for (int k = 0; k < 4; ++k) {
      const std::string p = k < 2 ? kProperties[rng() % kProperties.size()] : random_property(rng);
      cases.push_back({"vault_property", p, d});
      cases.push_back({"aws_property", p, d});
      cases.push_back({"azure_property", p, d});
    }
  }
  for (int i = 0; i < generated; ++i) cases.push_back(random_merge(rng));
  for (const auto& p : kProperties) {
    for (std::size_t d = 0; d < 14; ++d) {
      cases.push_back({"vault_property", p, kDocuments[d]});
      cases.push_back({"aws_property", p, kDocuments[d]});
      cases.push_back({"azure_property", p, kDocuments[d]});
    }
  }

  std::vector<std::string> requests;
  requests.reserve(cases.size());
  for (const auto& c : cases) requests.push_back(c.op + " " + hex(c.property) + " " + hex(c.doc));
  const auto reference = fuzz::run_reference(argv[1], requests);
  if (!reference) return 2;
  std::size_t failures = 0;
  std::size_t values = 0;
  std::size_t refused = 0;
  std::size_t unsupported = 0;
  std::size_t answered = 0;  // by rootseal with a value or "not found"
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string ours = mine(c.op, c.property, c.doc);
    const std::string& theirs = (*reference)[i];
    if (theirs == "E") ++refused;
    if (ours == "U") {
      ++unsupported;
      continue;
    }
    if (theirs != "E" && theirs != "N") ++values;
    if (ours != "E") ++answered;
    if (ours == theirs) continue;
    if (++failures <= 25) {
      std::cerr << "go_json_diff: " << c.op << " property " << hex(c.property) << " document " << hex(c.doc)
                << ": rootseal " << ours << ", Go " << theirs << "\n";
    }
  }
  std::cout << "go_json_diff: " << cases.size() << " cases (" << values << " values, " << refused << " refused by Go, "
            << unsupported << " paths rootseal does not read), " << failures << " differences\n";
  if (static_cast<double>(answered) < kMinAnsweredShare * static_cast<double>(cases.size())) {
    std::cerr << "go_json_diff: rootseal answered only " << answered << " of " << cases.size() << " cases\n";
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
