// rootseal::sync — JSON that carries secret values, kept in locked memory.
//
// SecureJson parses into a boost::json tree whose every allocation (the
// parser's temporaries included) comes from a kms::SecureBytes arena, so
// secret strings never land in ordinary heap memory. Helpers serialize JSON
// and extract ESO `property` references into SecureBytes.
#pragma once

#include <boost/json/value.hpp>

#include <memory>
#include <vector>
#include <span>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/kms/secure_json.hpp"
#include "rootseal/sync/provider.hpp"
#include "secure_buffer.hpp"

namespace rootseal::sync {

class SecureJson {
 public:
  // invalid_argument "not valid JSON" (the text is never quoted back).
  static kms::Result<std::shared_ptr<SecureJson>> parse(std::span<const std::uint8_t> text);
  static kms::Result<std::shared_ptr<SecureJson>> parse(std::string_view text);
  [[nodiscard]] const boost::json::value& root() const noexcept { return root_; }
  SecureJson(const SecureJson&) = delete;
  SecureJson& operator=(const SecureJson&) = delete;
  ~SecureJson();

 private:
  explicit SecureJson(std::size_t text_bytes);
  kms::SecureJsonResource arena_;
  boost::json::value root_;
};

// A fresh reference-counted locked arena for building objects that carry
// secret values (e.g. a Secret body); values built with it keep it alive.
inline boost::json::storage_ptr make_secure_storage() { return kms::secure_json_storage(4096); }

// Appends the JSON text of v.
void serialize_json(const boost::json::value& v, SecureBuffer& out);
// Appends a JSON string literal of `bytes` (quotes and escapes; bytes >= 0x80 as is).
void json_quote(std::span<const std::uint8_t> bytes, SecureBuffer& out);
// Appends a JSON object of the map's entries, each value a string.
void json_object_of(const SecretMap& map, SecureBuffer& out);
// A value as ESO hands it out: strings as their bytes, everything else as JSON.
kms::SecureBytes json_value_bytes(const boost::json::value& v);

// ESO `property` on a whole remote value, read as the provider's `format`
// says (see ValueFormat): a key or a path of keys and array indexes. Empty
// property = the whole value unchanged. not_found "property '<p>' not found"
// (for the reconcilers an error, not a missing secret, as in ESO);
// invalid_argument when the value is not JSON or the path uses gjson syntax
// rootseal does not implement.
kms::Result<kms::SecureBytes> extract_property(const kms::SecureBytes& whole, std::string_view property,
                                               ValueFormat format);
// dataFrom.extract: the whole value must be a JSON object; each top-level
// entry becomes a key, its value as the provider's `format` says.
kms::Result<SecretMap> extract_map(const kms::SecureBytes& whole, ValueFormat format);

// ESO's remoteRef.property and decodingStrategy on the whole value a Provider
// returned — the one place they are applied, for every provider and both
// reconcilers: `property` selected (if any), then `decoding` applied (to each
// entry, for a map; a decoding error names the entry: `key "<k>": ...`).
// Errors: not_found (property), invalid_argument (not JSON, path syntax), bad_base64.
kms::Result<kms::SecureBytes> select_value(kms::SecureBytes whole, std::string_view property, DecodingStrategy decoding,
                                           ValueFormat format);
kms::Result<SecretMap> select_map(kms::SecureBytes whole, std::string_view property, DecodingStrategy decoding,
                                  ValueFormat format);
// dataFrom.extract with metadataPolicy Fetch of remote key `key`: the
// metadata a provider's fetch_metadata answered, as a map. As select_map
// (no decoding) for every format but azure_tags, where it is ESO's Azure
// GetSecretMap: `property`, if any, must name a tag (as for data[]); the map
// is every tag as "<name>_<tag>" (a tag whose value is a JSON object of
// strings: "<name>_<tag>_<k>" for each k) and attribute as
// "<name>_attribute.<a>", <name> the key without "secret/"; with a property,
// only "<key>_<property>" (looked up as a tag of that map; empty when absent).
kms::Result<SecretMap> metadata_map(kms::SecureBytes whole, std::string_view key, std::string_view property,
                                    ValueFormat format);

}  // namespace rootseal::sync
