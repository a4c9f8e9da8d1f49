#include "secure_json.hpp"

#include "go_json.hpp"

#include <boost/json/parser.hpp>
#include <boost/json/serializer.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <new>
#include <optional>
#include <vector>

namespace rootseal::sync {

namespace json = boost::json;
using kms::Errc;
using kms::fail;

namespace {
constexpr std::size_t kMaxText = 64u << 20;
}  // namespace

// A DOM costs a few times its text (values, object tables, strings): start at
// 4x the text plus room for the parser's stack, grow as needed, up to 16x.
// root_ uses the arena from the start: a value assigned to one of another
// storage is copied into that storage (the default one: the heap).
SecureJson::SecureJson(std::size_t text_bytes)
    : arena_(text_bytes * 4 + 8192, text_bytes * 16 + 64 * 1024), root_(arena_.storage()) {}

SecureJson::~SecureJson() {
  // The tree lives in arena_ (wiped when it goes); release it first.
  root_ = json::value();
}

kms::Result<std::shared_ptr<SecureJson>> SecureJson::parse(std::string_view text) {
  return parse(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

kms::Result<std::shared_ptr<SecureJson>> SecureJson::parse(std::span<const std::uint8_t> text) {
  if (text.size() > kMaxText) return fail(Errc::invalid_argument, "JSON value larger than 64 MiB");
  std::shared_ptr<SecureJson> doc(new SecureJson(text.size()));
  try {
    json::parse_options opt;
    opt.max_depth = 64;
    json::error_code ec;
    const std::string_view chars(reinterpret_cast<const char*>(text.data()), text.size());
    doc->root_ = kms::parse_into(chars, doc->arena_.storage(), ec, opt);  // same storage: moved, not copied
    if (ec) return fail(Errc::invalid_argument, "not valid JSON");
    return doc;
  } catch (const std::bad_alloc&) {
    return fail(Errc::invalid_argument, "JSON value too large to parse");
  }
}

void serialize_json(const json::value& v, SecureBuffer& out) { kms::serialize_into(v, out); }

void json_quote(std::span<const std::uint8_t> bytes, SecureBuffer& out) {
  gojson::append_json_string(out, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                             {.escape_html = false, .go_utf8 = false});
}

kms::SecureBytes json_value_bytes(const json::value& v) {
  if (v.is_string()) return kms::SecureBytes::copy_of(std::string_view(v.as_string()));
  SecureBuffer out(64);
  serialize_json(v, out);
  return out.take();
}

namespace {

using gojson::Document;
using gojson::Kind;
using gojson::Numbers;

kms::Result<Document> parse_remote(const kms::SecureBytes& whole, std::string_view what) {
  auto doc = Document::parse(whole.span());
  if (!doc) return fail(Errc::invalid_argument, std::string(what) + ": the remote value is not JSON");
  return doc;
}

std::unexpected<kms::Error> property_not_found(std::string_view property) {
  return fail(Errc::not_found, "property '" + std::string(property) + "' not found");
}

}  // namespace

kms::Result<kms::SecureBytes> extract_property(const kms::SecureBytes& whole, std::string_view property,
                                               ValueFormat format) {
  if (property.empty() || format == ValueFormat::whole) return whole.clone();
  const std::string what = "property '" + std::string(property) + "'";
  ROOTSEAL_LET(doc, parse_remote(whole, what));
  const auto root = Document::root();
  SecureBuffer out(64);
  if (format == ValueFormat::azure_tags) {
    // ESO's Azure getSecretTag: the tag of that name, else "<tag>.<path>"
    // read in the tag's value (getProperty); else the tag does not exist.
    if (doc.kind(root) != Kind::object) return fail(Errc::invalid_argument, what + ": the metadata is not an object");
    if (const auto v = doc.last_member(root, property); v && doc.kind(*v) == Kind::string) {
      out.append(doc.string(*v));
      return out.take();
    }
    const auto dot = property.find('.');
    if (dot != std::string_view::npos && dot > 0) {
      if (const auto tag = doc.last_member(root, property.substr(0, dot)); tag && doc.kind(*tag) == Kind::string) {
        out.append(doc.string(*tag));
        return extract_property(out.take(), property.substr(dot + 1), ValueFormat::gjson_path_first);
      }
    }
    return fail(Errc::not_found, "tag " + std::string(property) + " does not exist");
  }
  if (format == ValueFormat::go_map && doc.kind(root) == Kind::object) {
    // Vault: data[property] first, its number as written (UseNumber).
    if (const auto v = doc.last_member(root, property)) {
      ROOTSEAL_TRY(gojson::byte_value(doc, *v, Numbers::as_written, out));
      return out.take();
    }
  }
  if (format == ValueFormat::text && property.find('.') != std::string_view::npos && doc.kind(root) == Kind::object) {
    // AWS, GCP: a key with dots in it wins over the path (escapeDotsIfRequired).
    if (const auto v = doc.first_member(root, property)) {
      gojson::gjson_string(doc, *v, out);
      return out.take();
    }
  }
  if (!gojson::is_plain_gjson_path(property)) {
    return fail(Errc::invalid_argument, what +
                                            " uses gjson syntax rootseal does not support (wildcards, queries, "
                                            "modifiers, pipes): name a key or a path of keys and indexes");
  }
  auto v = gojson::gjson_get(doc, root, property);
  if (!v && format == ValueFormat::gjson_path_first && property.find('.') != std::string_view::npos &&
      doc.kind(root) == Kind::object) {
    v = doc.first_member(root, property);  // Azure: the path first, then a key with dots in it (getProperty)
  }
  if (!v) return property_not_found(property);
  gojson::gjson_string(doc, *v, out);
  return out.take();
}

kms::Result<SecretMap> extract_map(const kms::SecureBytes& whole, ValueFormat format) {
  if (format == ValueFormat::whole)
    return fail(Errc::invalid_argument, "extract: the remote value is not a JSON object");
  auto doc = Document::parse(whole.span());
  SecretMap out;
  // AWS: Unmarshal of `null` into a map leaves it empty, without an error.
  if (doc && format == ValueFormat::text && doc->kind(Document::root()) == Kind::null) return out;
  if (!doc || doc->kind(Document::root()) != Kind::object) {
    return fail(Errc::invalid_argument, "extract: the remote value is not a JSON object");
  }
  for (const auto& m : doc->members(Document::root())) {  // the last of duplicates wins, as in a Go map
    SecureBuffer value(32);
    if (format == ValueFormat::go_map) {
      // Vault: Unmarshal into map[string]any (numbers become float64), then GetByteValue.
      ROOTSEAL_TRY(gojson::byte_value(*doc, m.value, Numbers::float64, value));
    } else if (doc->kind(m.value) == Kind::string) {
      value.append(doc->string(m.value));  // AWS: map[string]RawMessage, strings unquoted
    } else if (doc->kind(m.value) != Kind::null) {
      value.append(doc->raw(m.value));  // ... and everything else as written (null: "")
    }
    out.insert_or_assign(std::string(doc->string(m.key)), value.take());
  }
  return out;
}

void json_object_of(const SecretMap& map, SecureBuffer& out) {
  out.push_back('{');
  bool first = true;
  for (const auto& [k, v] : map) {
    if (!first) out.push_back(',');
    first = false;
    json_quote(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(k.data()), k.size()), out);
    out.push_back(':');
    json_quote(v.span(), out);
  }
  out.push_back('}');
}

kms::Result<kms::SecureBytes> select_value(kms::SecureBytes whole, std::string_view property, DecodingStrategy decoding,
                                           ValueFormat format) {
  if (!property.empty()) {
    auto prop = extract_property(whole, property, format);
    if (!prop) return std::unexpected(prop.error());
    whole = std::move(*prop);
  }
  return apply_decoding(decoding, std::move(whole));
}

kms::Result<SecretMap> select_map(kms::SecureBytes whole, std::string_view property, DecodingStrategy decoding,
                                  ValueFormat format) {
  if (!property.empty()) {
    auto prop = extract_property(whole, property, format);
    if (!prop) return std::unexpected(prop.error());
    whole = std::move(*prop);
  }
  auto map = extract_map(whole, format);
  if (!map && !property.empty()) {
    return fail(map.error().code, "extract: property '" + std::string(property) + "' is not a JSON object");
  }
  if (!map) return std::unexpected(map.error());
  SecretMap out;
  for (auto& [k, v] : *map) {
    auto dec = apply_decoding(decoding, std::move(v));
    if (!dec) return fail(dec.error().code, "key \"" + k + "\": " + dec.error().message);
    out.emplace(k, std::move(*dec));
  }
  return out;
}

namespace {

// Go's json.Unmarshal of `text` into a map[string]string: nullopt when it
// fails (not JSON, not an object, a value not a string or null); `null` is
// an empty map.
std::optional<std::vector<std::pair<std::string, kms::SecureBytes>>> string_map_of(const kms::SecureBytes& text) {
  auto doc = Document::parse(text.span());
  if (!doc) return std::nullopt;
  const auto root = Document::root();
  std::vector<std::pair<std::string, kms::SecureBytes>> out;
  if (doc->kind(root) == Kind::null) return out;
  if (doc->kind(root) != Kind::object) return std::nullopt;
  for (const auto& m : doc->members(root)) {
    const auto kind = doc->kind(m.value);
    if (kind != Kind::string && kind != Kind::null) return std::nullopt;
    SecureBuffer v(16);
    if (kind == Kind::string) v.append(doc->string(m.value));
    out.emplace_back(std::string(doc->string(m.key)), v.take());
  }
  return out;
}

}  // namespace

kms::Result<SecretMap> metadata_map(kms::SecureBytes whole, std::string_view key, std::string_view property,
                                    ValueFormat format) {
  if (format != ValueFormat::azure_tags) return select_map(std::move(whole), property, DecodingStrategy::none, format);
  // GetSecretMap reads the secret first (GetSecret with Fetch: the property must be a tag).
  if (!property.empty()) ROOTSEAL_TRY(extract_property(whole, property, format));
  auto doc = Document::parse(whole.span());
  if (!doc || doc->kind(Document::root()) != Kind::object) {
    return fail(Errc::invalid_argument, "extract: the metadata is not a JSON object");
  }
  std::string_view name = key;
  if (name.starts_with("secret/")) name.remove_prefix(7);
  // getSecretTagsWithLegacySDK: "<name>_<tag>", a JSON object of strings spread as "<name>_<tag>_<k>".
  SecretMap tags;
  for (const auto& m : doc->members(Document::root())) {
    if (doc->kind(m.value) != Kind::string) continue;
    const std::string tag = std::string(name) + "_" + std::string(doc->string(m.key));
    SecureBuffer v(32);
    v.append(doc->string(m.value));
    kms::SecureBytes value = v.take();
    if (auto spread = string_map_of(value)) {
      for (auto& [k, sub] : *spread) tags.insert_or_assign(tag + "_" + k, std::move(sub));
    } else {
      tags.insert_or_assign(tag, std::move(value));
    }
  }
  if (property.empty()) return tags;
  // getSecretMapProperties: "<key>_<property>" looked up as a tag (getSecretTag); absent: empty.
  const std::string wanted = std::string(key) + "_" + std::string(property);
  SecureBuffer as_json(64);
  json_object_of(tags, as_json);
  auto one = extract_property(as_json.take(), wanted, format);
  SecretMap out;
  out.emplace(wanted, one ? std::move(*one) : kms::SecureBytes());
  return out;
}

}  // namespace rootseal::sync
