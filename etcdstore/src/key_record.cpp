#include "key_record.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/keyring.hpp"

namespace rootseal::etcdstore::detail {
namespace {

namespace json = boost::json;
using kms::Errc;
using kms::fail;
using kms::Result;

json::object config_json(const kms::KeyConfig& c) {
  json::object o;
  o["min_decryption_version"] = c.min_decryption_version;
  o["min_encryption_version"] = c.min_encryption_version;
  o["deletion_allowed"] = c.deletion_allowed;
  o["auto_rotate_period"] = c.auto_rotate_period_s;
  return o;
}

// Reads the fields of one record; `bad` builds the error.
class Reader {
 public:
  explicit Reader(std::string_view name) : name_(name) {}

  [[nodiscard]] kms::Error bad(std::string_view what) const {
    return {Errc::storage_failure, "etcd store: key record '" + std::string(name_) + "' " + std::string(what)};
  }

  Result<const json::value*> field(const json::object& o, std::string_view key) const {
    const auto* v = o.if_contains(key);
    if (v == nullptr) return std::unexpected(bad("has no '" + std::string(key) + "'"));
    return v;
  }
  Result<std::int64_t> integer(const json::object& o, std::string_view key, std::int64_t lo, std::int64_t hi) const {
    const json::value* v = nullptr;
    ROOTSEAL_TRY_ASSIGN(v, field(o, key));
    std::int64_t n = 0;
    if (v->is_int64()) {
      n = v->get_int64();
    } else if (v->is_uint64() &&
               v->get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      n = static_cast<std::int64_t>(v->get_uint64());
    } else {
      return std::unexpected(bad("has a '" + std::string(key) + "' that is not an integer"));
    }
    if (n < lo || n > hi) return std::unexpected(bad("has '" + std::string(key) + "' out of range"));
    return n;
  }
  Result<bool> boolean(const json::object& o, std::string_view key) const {
    const json::value* v = nullptr;
    ROOTSEAL_TRY_ASSIGN(v, field(o, key));
    if (!v->is_bool()) return std::unexpected(bad("has a '" + std::string(key) + "' that is not a boolean"));
    return v->get_bool();
  }
  Result<std::string_view> string(const json::object& o, std::string_view key) const {
    const json::value* v = nullptr;
    ROOTSEAL_TRY_ASSIGN(v, field(o, key));
    if (!v->is_string()) return std::unexpected(bad("has a '" + std::string(key) + "' that is not a string"));
    return std::string_view(v->get_string());
  }
  Result<const json::object*> object(const json::object& o, std::string_view key) const {
    const json::value* v = nullptr;
    ROOTSEAL_TRY_ASSIGN(v, field(o, key));
    if (!v->is_object()) return std::unexpected(bad("has a '" + std::string(key) + "' that is not an object"));
    return &v->get_object();
  }

 private:
  std::string_view name_;
};

constexpr std::int64_t kMaxTime = std::int64_t{1} << 40;
constexpr std::int64_t kMaxVersion = kms::kMaxKeyVersion;

Result<kms::KeyVersionRecord> parse_version(const Reader& r, const json::value& item, std::uint32_t expected) {
  if (!item.is_object()) return std::unexpected(r.bad("has a version that is not an object"));
  const auto& o = item.get_object();
  if (o.size() != 4) return std::unexpected(r.bad("has a version with unknown or missing fields"));
  kms::KeyVersionRecord v;
  std::int64_t n = 0;
  ROOTSEAL_TRY_ASSIGN(n, r.integer(o, "version", 1, kMaxVersion));
  if (n != expected) return std::unexpected(r.bad("has a gap or disorder in its versions"));
  v.version = static_cast<std::uint32_t>(n);
  ROOTSEAL_TRY_ASSIGN(v.created_unix, r.integer(o, "created", 0, kMaxTime));
  std::string_view wrapped;
  ROOTSEAL_TRY_ASSIGN(wrapped, r.string(o, "wrapped"));
  auto bytes = kms::base64_decode(wrapped);
  if (!bytes || bytes->empty() || bytes->size() > kMaxWrappedBytes) {
    return std::unexpected(r.bad("version " + std::to_string(n) + " has a bad wrapped key"));
  }
  v.wrapped_key = std::move(*bytes);
  std::string_view kcv;
  ROOTSEAL_TRY_ASSIGN(kcv, r.string(o, "kcv"));
  if (kcv.empty() || kcv.size() > kMaxKcvChars) {
    return std::unexpected(r.bad("version " + std::to_string(n) + " has a bad kcv"));
  }
  for (char c : kcv) {
    if (c < 0x21 || c > 0x7e) return std::unexpected(r.bad("version " + std::to_string(n) + " has a bad kcv"));
  }
  v.root_kcv = std::string(kcv);
  return v;
}

}  // namespace

std::string serialize_key_record(const kms::KeyRecord& record) {
  json::object o;
  o["format"] = kRecordFormat;
  o["name"] = record.name;
  o["type"] = kms::to_string(record.type);
  o["derived"] = record.derived;
  o["created"] = record.created_unix;
  o["config"] = config_json(record.config);
  json::array versions;
  versions.reserve(record.versions.size());
  for (const auto& v : record.versions) {
    json::object item;
    item["version"] = v.version;
    item["created"] = v.created_unix;
    item["wrapped"] = kms::base64_encode(v.wrapped_key);
    item["kcv"] = v.root_kcv;
    versions.emplace_back(std::move(item));
  }
  o["versions"] = std::move(versions);
  return json::serialize(o);
}

std::string serialize_keyring_key(const kms::KeyringKeyRecord& record) {
  json::object o;
  o["format"] = kRecordFormat;
  o["id"] = record.id;
  o["created"] = record.created_unix;
  o["wrapped"] = kms::base64_encode(record.wrapped);
  o["root_kcv"] = record.root_kcv;
  o["kcv"] = record.kcv;
  return json::serialize(o);
}

Result<kms::KeyringKeyRecord> parse_keyring_key(std::string_view text, std::string_view id) {
  const std::string label = "keyring key " + std::string(id.substr(0, 16));
  const Reader r(label);
  if (text.size() > 8192) return std::unexpected(r.bad("is too large"));
  json::parse_options opts;
  opts.max_depth = 4;
  std::error_code ec;
  json::value doc = json::parse(text, ec, {}, opts);
  if (ec || !doc.is_object()) return std::unexpected(r.bad("is not a JSON object"));
  const auto& o = doc.get_object();
  if (o.size() != 6) return std::unexpected(r.bad("has unknown or missing fields"));
  std::int64_t format = 0;
  ROOTSEAL_TRY_ASSIGN(format, r.integer(o, "format", 0, 1000));
  if (format != kRecordFormat) return std::unexpected(r.bad("has format " + std::to_string(format)));
  kms::KeyringKeyRecord rec;
  std::int64_t n = 0;
  ROOTSEAL_TRY_ASSIGN(n, r.integer(o, "id", 1, kms::kMaxKeyringKeyId));
  if (std::to_string(n) != id) return std::unexpected(r.bad("carries another id"));
  rec.id = static_cast<std::uint32_t>(n);
  ROOTSEAL_TRY_ASSIGN(rec.created_unix, r.integer(o, "created", 0, kMaxTime));
  std::string_view text_field;
  ROOTSEAL_TRY_ASSIGN(text_field, r.string(o, "wrapped"));
  auto bytes = kms::base64_decode(text_field);
  if (!bytes) return std::unexpected(r.bad("has a wrapped key that is not base64"));
  rec.wrapped = std::move(*bytes);
  ROOTSEAL_TRY_ASSIGN(text_field, r.string(o, "root_kcv"));
  rec.root_kcv = std::string(text_field);
  ROOTSEAL_TRY_ASSIGN(text_field, r.string(o, "kcv"));
  rec.kcv = std::string(text_field);
  if (auto ok = kms::validate_keyring_key_record(rec); !ok) {
    return std::unexpected(r.bad("is malformed: " + ok.error().message));
  }
  return rec;
}

Result<kms::KeyRecord> parse_key_record(std::string_view text, std::string_view name) {
  const Reader r(name);
  if (!kms::validate_key_name(name)) {
    return fail(Errc::storage_failure, "etcd store: a key under the prefix has an invalid key name");
  }
  if (text.size() > kMaxRecordBytes) return std::unexpected(r.bad("is too large"));
  json::parse_options opts;
  opts.max_depth = 8;
  std::error_code ec;
  json::value doc = json::parse(text, ec, {}, opts);
  if (ec || !doc.is_object()) return std::unexpected(r.bad("is not a JSON object"));
  const auto& o = doc.get_object();
  for (const auto& [k, v] : o) {
    static constexpr std::string_view kKnown[] = {"format", "name", "type", "derived", "created", "config", "versions"};
    if (std::find(std::begin(kKnown), std::end(kKnown), std::string_view(k)) == std::end(kKnown)) {
      return std::unexpected(r.bad("has an unknown field"));
    }
  }
  std::int64_t format = 0;
  ROOTSEAL_TRY_ASSIGN(format, r.integer(o, "format", 0, 1000));
  if (format != kRecordFormat) {
    return std::unexpected(r.bad("has format " + std::to_string(format) + " (this rootseald reads format " +
                                 std::to_string(kRecordFormat) + ")"));
  }
  kms::KeyRecord rec;
  std::string_view stored_name;
  ROOTSEAL_TRY_ASSIGN(stored_name, r.string(o, "name"));
  if (stored_name != name) return std::unexpected(r.bad("names another key"));
  rec.name = std::string(name);
  std::string_view type;
  ROOTSEAL_TRY_ASSIGN(type, r.string(o, "type"));
  auto t = kms::parse_key_type(type);
  if (!t) return std::unexpected(r.bad("has an unknown type"));
  rec.type = *t;
  ROOTSEAL_TRY_ASSIGN(rec.derived, r.boolean(o, "derived"));
  ROOTSEAL_TRY_ASSIGN(rec.created_unix, r.integer(o, "created", 0, kMaxTime));

  const json::object* config = nullptr;
  ROOTSEAL_TRY_ASSIGN(config, r.object(o, "config"));
  std::int64_t n = 0;
  ROOTSEAL_TRY_ASSIGN(n, r.integer(*config, "min_decryption_version", 1, kMaxVersion));
  rec.config.min_decryption_version = static_cast<std::uint32_t>(n);
  ROOTSEAL_TRY_ASSIGN(n, r.integer(*config, "min_encryption_version", 0, kMaxVersion));
  rec.config.min_encryption_version = static_cast<std::uint32_t>(n);
  ROOTSEAL_TRY_ASSIGN(rec.config.deletion_allowed, r.boolean(*config, "deletion_allowed"));
  ROOTSEAL_TRY_ASSIGN(rec.config.auto_rotate_period_s, r.integer(*config, "auto_rotate_period", 0, kMaxTime));
  if (config->size() != 4) return std::unexpected(r.bad("has an unknown config field"));

  const json::value* versions = nullptr;
  ROOTSEAL_TRY_ASSIGN(versions, r.field(o, "versions"));
  if (!versions->is_array() || versions->get_array().empty()) {
    return std::unexpected(r.bad("has no versions"));
  }
  std::uint32_t expected = 1;
  for (const auto& item : versions->get_array()) {
    kms::KeyVersionRecord v;
    ROOTSEAL_TRY_ASSIGN(v, parse_version(r, item, expected));
    rec.versions.push_back(std::move(v));
    ++expected;
  }
  const auto latest = static_cast<std::uint32_t>(rec.versions.size());
  if (rec.config.min_decryption_version > latest || rec.config.min_encryption_version > latest) {
    return std::unexpected(r.bad("has a minimum version above its latest"));
  }
  return rec;
}

}  // namespace rootseal::etcdstore::detail

namespace rootseal::etcdstore::detail {

std::string serialize_member(const EtcdStore::Member& m) {
  json::object o;
  o["host_id"] = m.host_id;
  o["instance"] = m.instance;
  o["version"] = m.version;
  o["root_kcv"] = m.root_kcv;
  o["sealed"] = m.sealed;
  o["seen_revision"] = m.seen_revision;
  o["started"] = m.started_unix;
  if (m.sync) o["sync"] = true;  // written only when set: older readers see the record they know
  if (!m.sync_config.empty()) o["sync_config"] = m.sync_config;  // likewise
  return json::serialize(o);
}

EtcdStore::Member parse_member(std::string_view text, std::string_view host_id) {
  EtcdStore::Member m;
  m.host_id = std::string(host_id);
  if (text.size() > 4096) {
    m.error = "the record is too large";
    return m;
  }
  json::parse_options opts;
  opts.max_depth = 2;
  std::error_code ec;
  json::value doc = json::parse(text, ec, {}, opts);
  if (ec || !doc.is_object()) {
    m.error = "the record is not a JSON object";
    return m;
  }
  const auto& o = doc.get_object();
  const Reader r(host_id);
  auto text_field = [&](std::string_view key, std::string& out) -> bool {
    auto v = r.string(o, key);
    if (!v || v->size() > 256) return false;
    out = std::string(*v);
    return true;
  };
  std::string stored;
  auto seen = r.integer(o, "seen_revision", 0, std::numeric_limits<std::int64_t>::max());
  auto started = r.integer(o, "started", 0, kMaxTime);
  auto sealed = r.boolean(o, "sealed");
  if (!text_field("host_id", stored) || stored != host_id || !text_field("instance", m.instance) ||
      !text_field("version", m.version) || !text_field("root_kcv", m.root_kcv) || !seen || !started || !sealed) {
    EtcdStore::Member bad;
    bad.host_id = std::string(host_id);
    bad.error = "the record has a missing or bad field (written by another version?)";
    return bad;
  }
  m.seen_revision = *seen;
  m.started_unix = *started;
  m.sealed = *sealed;
  if (o.contains("sync")) {
    auto sync = r.boolean(o, "sync");
    if (!sync) {
      EtcdStore::Member bad;
      bad.host_id = std::string(host_id);
      bad.error = "the record has a missing or bad field (written by another version?)";
      return bad;
    }
    m.sync = *sync;
  }
  if (o.contains("sync_config")) {
    // A fingerprint: exactly 64 lowercase hex digits, nothing else is taken.
    auto fp = r.string(o, "sync_config");
    if (!fp || fp->size() != 64 ||
        !std::all_of(fp->begin(), fp->end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); })) {
      EtcdStore::Member bad;
      bad.host_id = std::string(host_id);
      bad.error = "the record has a missing or bad field (written by another version?)";
      return bad;
    }
    m.sync_config = std::string(*fp);
  }
  return m;
}

std::string serialize_bucket_owner(const EtcdStore::BucketOwner& owner) {
  json::object o;
  o["host_id"] = owner.host_id;
  o["instance"] = owner.instance;
  return json::serialize(o);
}

EtcdStore::BucketOwner parse_bucket_owner(std::string_view text, std::uint32_t bucket) {
  EtcdStore::BucketOwner b;
  b.bucket = bucket;
  auto bad = [&](std::string why) {
    EtcdStore::BucketOwner out;
    out.bucket = bucket;
    out.error = std::move(why);
    return out;
  };
  if (text.size() > 1024) return bad("the record is too large");
  json::parse_options opts;
  opts.max_depth = 2;
  std::error_code ec;
  json::value doc = json::parse(text, ec, {}, opts);
  if (ec || !doc.is_object()) return bad("the record is not a JSON object");
  const auto& o = doc.get_object();
  const std::string what = "bucket " + std::to_string(bucket);
  const Reader r(what);
  auto host = r.string(o, "host_id");
  auto instance = r.string(o, "instance");
  if (!host || !instance || host->empty() || host->size() > 256 || instance->size() > 256) {
    return bad("the record has a missing or bad field (written by another version?)");
  }
  b.host_id = std::string(*host);
  b.instance = std::string(*instance);
  return b;
}

}  // namespace rootseal::etcdstore::detail
