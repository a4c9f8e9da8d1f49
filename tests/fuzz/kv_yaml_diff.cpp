// kv_yaml_diff: the reading of a `templateAs: KeysAndValues` template's
// output (sync::parse_yaml_string_map) against the reference, sigs.k8s.io/yaml
// Unmarshal into map[string]string as ESO does (kv_yaml_ref/main.go).
//
//   kv_yaml_diff <kv_yaml_ref binary> <generated documents>
//
// Cases: documents of one line for every value and key form that matters
// (YAML 1.1 booleans and nulls, integers in every base, floats and their
// float32 formatting, quoted scalars and their escapes, comments), documents
// of several lines (indentation, comments, blank lines, duplicates, CRLF),
// shapes rootseal does not read (nested mappings, sequences, block and flow
// collections, anchors, tags), and fixed-seed random documents built from
// those pieces. Where both read a document, the maps must be identical;
// where Go refuses one, rootseal must refuse it too. rootseal may refuse a
// shape it does not read ("unsupported YAML") that Go reads: those are
// counted, never compared as equal. So that the test cannot pass by refusing
// everything, every one-line document is read by rootseal wherever Go reads
// it, unless its value is one of the shapes rootseal refuses by design (flow
// collections, block scalars, anchors, aliases, tags: must_read()), and the
// documents read by both must be at least kMinComparedShare of all.
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "reference_process.hpp"
#include "rootseal/kms/encoding.hpp"
#include "yaml_string_map.hpp"

using namespace rootseal;

namespace {

std::string hex(std::string_view s) {
  if (s.empty()) return "-";
  return kms::hex_encode({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}

// "E", "U", "{}" or the sorted entries, as the reference prints them.
std::string mine(const std::string& doc) {
  auto m = sync::parse_yaml_string_map(doc);
  if (!m) return m.error().message.starts_with("unsupported YAML") ? "U" : "E";
  if (m->empty()) return "{}";
  std::string out;
  for (const auto& [k, v] : *m) {
    if (!out.empty()) out += ' ';
    out += hex(k) + "=" + hex({reinterpret_cast<const char*>(v.data()), v.size()});
  }
  return out;
}

const std::vector<std::string> kValues = {"yes",
                                          "no",
                                          "on",
                                          "off",
                                          "y",
                                          "n",
                                          "Y",
                                          "N",
                                          "true",
                                          "True",
                                          "TRUE",
                                          "false",
                                          "FALSE",
                                          "tRue",
                                          "~",
                                          "null",
                                          "NULL",
                                          "nul",
                                          "",
                                          "0x1F",
                                          "0X1f",
                                          "0o17",
                                          "0O17",
                                          "017",
                                          "08",
                                          "0b101",
                                          "0B101",
                                          "-0b11",
                                          "0b-1",
                                          "0b+1",
                                          "-0b-1",
                                          "0b",
                                          "0x",
                                          "1_000",
                                          "+5",
                                          "-0",
                                          "+0",
                                          "0",
                                          "00",
                                          "1.50",
                                          "1.",
                                          "1e6",
                                          "1e5",
                                          "1E+5",
                                          "100000.0",
                                          "123456789",
                                          "9223372036854775807",
                                          "9223372036854775808",
                                          "-9223372036854775808",
                                          "-9223372036854775809",
                                          "18446744073709551615",
                                          "18446744073709551616",
                                          ".5",
                                          ".5e3",
                                          "._5",
                                          ".",
                                          "-.5",
                                          "+.5",
                                          ".inf",
                                          ".Inf",
                                          "-.inf",
                                          "+.INF",
                                          ".nan",
                                          ".NaN",
                                          "1e400",
                                          "-1e400",
                                          "1e-400",
                                          "3.14159265358979",
                                          "0.0001",
                                          "0.00001",
                                          "1.5e-5",
                                          "16777217",
                                          "1e21",
                                          "2001-12-14",
                                          "2001-12-14T21:59:43.10Z",
                                          "12:30",
                                          "<<",
                                          "a b",
                                          "http://x:1/a",
                                          "a #b",
                                          "a# b",
                                          "a:b",
                                          "a: b",
                                          "x:",
                                          "'quoted'",
                                          "'it''s'",
                                          "''",
                                          "\"\"",
                                          "\"a\\tb\"",
                                          "\"\\x41\\u00e9\\U0001F600\"",
                                          "\"\\N\\_\\L\\P\\e\\0\"",
                                          "\"\\/\"",
                                          "\"\\q\"",
                                          "\"\\x4\"",
                                          "\"\\uD800\"",
                                          "\"unterminated",
                                          "'unterminated",
                                          "\"a\" # c",
                                          "\"a\" b",
                                          "- a",
                                          "-a",
                                          "[a, b]",
                                          "{a: b}",
                                          "|",
                                          ">",
                                          "&anchor a",
                                          "*ref",
                                          "!!str 1",
                                          "!tag x",
                                          "@x",
                                          "`x",
                                          "%x",
                                          "?x",
                                          "? x",
                                          ":x",
                                          "é",
                                          "日本",
                                          "a\tb",
                                          "trailing  ",
                                          "#comment",
                                          "1_",
                                          "_1",
                                          "0x_1F",
                                          "1__0",
                                          "-_1",
                                          "0.1",
                                          "5e-324",
                                          "3.4028235e38",
                                          "3.5e38",
                                          "1e-46",
                                          "-0.0",
                                          "0e0",
                                          "6.02e23",
                                          "999999",
                                          "1000000",
                                          "0.000123",
                                          "1.0e-4"};

const std::vector<std::string> kKeys = {"a",     "my-key", "my.key",  "1",   "1.5",  "true", "yes",   "~",    "null",
                                        "\"q\"", "'s'",    "\"a b\"", "a b", "0x10", ".inf", "-.inf", ".nan", "<<",
                                        "é",     "-k",     "?k",      "k#",  "\"\"", "1e6",  "0.1"};

// Of all documents, at least this share must be read by both and compared.
constexpr double kMinComparedShare = 0.45;

// A one-line document rootseal must read wherever Go reads it.
bool must_read(std::string_view value) {
  return value.empty() || std::string_view("[{|>&*!").find(value.front()) == std::string_view::npos;
}

void one_liners(std::vector<std::string>& docs) {
  for (const auto& v : kValues) {
    docs.push_back("k: " + v);
    docs.push_back("k:  " + v + "  # c");
    docs.push_back("k: " + v + "\n");
  }
  for (const auto& k : kKeys) {
    docs.push_back(k + ": v");
    docs.push_back(k + ":");
  }
}

void documents(std::vector<std::string>& docs) {
  for (std::string d : {"",
                        "\n",
                        "# only a comment",
                        "---",
                        "---\na: b",
                        "a: b\n---\nc: d",
                        "a: b\n...",
                        "a: 1\nb: 2\n\n# c\nc: 3",
                        "  a: 1\n  b: 2",
                        "a: 1\n  b: 2",
                        "  a: 1\nb: 2",
                        "a: 1\n\tb: 2",
                        "a:\n  b: c",
                        "a:\n- b",
                        "- a\n- b",
                        "a: |\n  text",
                        "a: >\n  text",
                        "{a: b}",
                        "[a]",
                        "a: b\na: c",
                        "a: 1\r\nb: 2\r\n",
                        "a: b c\n  d",
                        "a:\tb",
                        "a :b",
                        "a : b",
                        "a: b:c",
                        "a: &x 1\nb: *x",
                        "a: !!str 1",
                        "a: !!int 1",
                        "\"a\": 1\n'b': 2",
                        "plain",
                        "1",
                        "a: 'x'y'",
                        "a: \"x\"\"",
                        "a: 'multi\n  line'",
                        "a: \"multi\n  line\"",
                        "a: b\x01",
                        "a: \xff",
                        "my-application-alice: c2VjcmV0\nenableOCI: true\napplication-type: grafana",
                        "last-synced-for-user/alice: 2026-12-06 23:59:00.000000001 +0000 UTC m=+0.01",
                        "auth: \"alice:$2y$10$abc\\nbob:$2y$10$def\""}) {
    docs.push_back(d);
  }
}

void generated(std::vector<std::string>& docs, int n) {
  std::mt19937 rng(20261207);
  for (int i = 0; i < n; ++i) {
    std::string d;
    const auto lines = 1 + rng() % 4;
    const std::string indent = rng() % 8 == 0 ? "  " : "";
    for (std::size_t l = 0; l < lines; ++l) {
      if (rng() % 10 == 0) d += indent + "# note\n";
      d += indent + kKeys[rng() % kKeys.size()] + ":";
      if (rng() % 12 != 0) d += " " + kValues[rng() % kValues.size()];
      if (rng() % 8 == 0) d += " # tail";
      d += rng() % 16 == 0 ? "\r\n" : "\n";
    }
    docs.push_back(std::move(d));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: kv_yaml_diff <kv_yaml_ref binary> <generated documents>\n";
    return 2;
  }
  std::vector<std::string> docs;
  one_liners(docs);
  // The `k: <value>` documents of one_liners(), by index: those rootseal must read.
  std::vector<bool> must(docs.size(), false);
  for (std::size_t v = 0; v < kValues.size(); ++v) {
    must[3 * v] = must[3 * v + 1] = must[3 * v + 2] = must_read(kValues[v]);
  }
  documents(docs);
  generated(docs, std::stoi(argv[2]));

  std::vector<std::string> requests;
  requests.reserve(docs.size());
  for (const auto& d : docs) requests.push_back(hex(d) == "-" ? "" : hex(d));
  const auto reference = fuzz::run_reference(argv[1], requests);
  if (!reference) return 2;
  std::size_t failures = 0;
  std::size_t unsupported = 0;
  std::size_t refused = 0;
  std::size_t compared = 0;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    const std::string ours = mine(docs[i]);
    const std::string& theirs = (*reference)[i];
    if (theirs == "E") ++refused;
    if (ours == "U" && !(i < must.size() && must[i] && theirs != "E")) {  // a shape rootseal does not read
      ++unsupported;
      continue;
    }
    if (theirs != "E") ++compared;
    if (ours == theirs) continue;
    if (++failures <= 25) {
      std::cerr << "kv_yaml_diff: document " << hex(docs[i]) << ": rootseal " << ours << ", Go " << theirs << "\n";
    }
  }
  std::cout << "kv_yaml_diff: " << docs.size() << " documents (" << refused << " refused by Go, " << unsupported
            << " shapes rootseal does not read, " << compared << " maps compared), " << failures << " differences\n";
  if (static_cast<double>(compared) < kMinComparedShare * static_cast<double>(docs.size())) {
    std::cerr << "kv_yaml_diff: only " << compared << " of " << docs.size()
              << " documents were read by both: the comparison says too little\n";
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
