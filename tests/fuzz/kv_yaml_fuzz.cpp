// fuzz_kv_yaml: the reading of a `templateAs: KeysAndValues` template's
// output (sync/src/yaml_string_map.cpp), text the template engine renders
// from tenant templates and remote values.
// Properties: a refusal is invalid_argument with a line number; a map read
// is read again, identically, from its own re-serialization as
// double-quoted `"key": "value"` lines.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "yaml_string_map.hpp"

using namespace rootseal;

namespace {

void quote(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u == 0x7F) {
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto m = sync::parse_yaml_string_map(text);
  if (!m) {
    fuzz::require_clean_error(m.error(), {kms::Errc::invalid_argument}, "refusal");
    fuzz::require(m.error().message.starts_with("line ") || m.error().message.starts_with("unsupported YAML at line "),
                  "a refusal names the line");
    return 0;
  }
  std::string again;
  for (const auto& [k, v] : *m) {
    quote(again, k);
    again += ": ";
    quote(again, std::string_view(reinterpret_cast<const char*>(v.data()), v.size()));
    again += "\n";
  }
  auto m2 = sync::parse_yaml_string_map(again);
  fuzz::require(m2.has_value(), "the re-serialization is read");
  fuzz::require(m2->size() == m->size(), "same number of entries");
  for (const auto& [k, v] : *m) {
    auto it = m2->find(k);
    fuzz::require(it != m2->end() && it->second.span().size() == v.span().size() &&
                      std::equal(v.span().begin(), v.span().end(), it->second.span().begin()),
                  "same entries");
  }
  return 0;
}
