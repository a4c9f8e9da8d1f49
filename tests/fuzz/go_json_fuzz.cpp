// fuzz_go_json: remote JSON values read and written as ESO's Go code does
// (sync/src/go_json.cpp): Vault and AWS answers, secret values with
// properties, dataFrom.extract.
// Input: the first line is a property path, the rest a JSON document.
// Properties: a refusal is invalid_argument; Go's Marshal of a document is
// valid JSON that reads back to the same Marshal (a fixed point), whatever
// the numbers; every byte_value / gjson_string / extract runs clean; a
// property that exists is found again in the marshalled form (Vault); ESO's
// Azure metadata map (metadataPolicy Fetch, extract) has only "<name>_..."
// keys.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "go_json.hpp"
#include "secure_json.hpp"

using namespace rootseal;
using sync::gojson::Document;
using sync::gojson::Numbers;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto nl = in.find('\n');
  const std::string_view property = nl == std::string_view::npos ? std::string_view() : in.substr(0, nl);
  const std::string_view text = nl == std::string_view::npos ? in : in.substr(nl + 1);

  auto doc = Document::parse(text);
  if (!doc) {
    fuzz::require_clean_error(doc.error(), {kms::Errc::invalid_argument}, "parse refusal");
    return 0;
  }
  for (const auto numbers : {Numbers::as_written, Numbers::float64}) {
    sync::SecureBuffer once(64);
    auto m = sync::gojson::marshal(*doc, Document::root(), numbers, once);
    if (!m) {
      fuzz::require(numbers == Numbers::float64, "marshal as written never fails");
      fuzz::require_clean_error(m.error(), {kms::Errc::invalid_argument}, "a number beyond float64");
      continue;
    }
    auto again = Document::parse(once.view());
    fuzz::require(again.has_value(), "Marshal writes valid JSON");
    sync::SecureBuffer twice(64);
    fuzz::require(sync::gojson::marshal(*again, Document::root(), numbers, twice).has_value(), "marshal again");
    fuzz::require(once.view() == twice.view(), "Marshal is a fixed point");
    sync::SecureBuffer value(16);
    (void)sync::gojson::byte_value(*doc, Document::root(), numbers, value);
  }
  sync::SecureBuffer g(16);
  sync::gojson::gjson_string(*doc, Document::root(), g);

  const auto whole = kms::SecureBytes::copy_of(text);
  for (const auto format : {sync::ValueFormat::text, sync::ValueFormat::go_map, sync::ValueFormat::gjson_path_first,
                            sync::ValueFormat::azure_tags}) {
    if (auto m = sync::extract_map(whole, format); !m) {
      fuzz::require_clean_error(m.error(), {kms::Errc::invalid_argument}, "extract refusal");
    }
    if (property.empty()) continue;
    auto p = sync::extract_property(whole, property, format);
    if (!p)
      fuzz::require_clean_error(p.error(), {kms::Errc::invalid_argument, kms::Errc::not_found}, "property refusal");
  }
  for (const std::string_view key : {std::string_view("db"), std::string_view("secret/db")}) {
    auto md = sync::metadata_map(whole.clone(), key, property, sync::ValueFormat::azure_tags);
    if (!md) {
      fuzz::require_clean_error(md.error(), {kms::Errc::invalid_argument, kms::Errc::not_found}, "metadata refusal");
      continue;
    }
    const std::string one = std::string(key) + "_" + std::string(property);
    for (const auto& [k, v] : *md) {
      fuzz::require(property.empty() ? k.starts_with("db_") : k == one, "metadata keys are <name>_<tag>");
    }
  }
  if (!property.empty() && doc->kind(Document::root()) == sync::gojson::Kind::object &&
      sync::gojson::is_plain_gjson_path(property) && sync::gojson::gjson_get(*doc, Document::root(), property)) {
    sync::SecureBuffer canonical(64);
    fuzz::require(sync::gojson::marshal(*doc, Document::root(), Numbers::as_written, canonical).has_value(), "marshal");
    auto p = sync::extract_property(kms::SecureBytes::copy_of(canonical.view()), property, sync::ValueFormat::go_map);
    if (!p)
      fuzz::require(p.error().code != kms::Errc::invalid_argument, "a found path is found in the marshalled form");
  }
  return 0;
}
