#include "transit.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstring>
#include <chrono>
#include <optional>
#include <span>
#include <type_traits>

#include "locked_json.hpp"
#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/random.hpp"
#include "transit_fields.hpp"
#include "vault_http.hpp"

namespace rootseal::daemon {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using kms::Errc;
using kms::fail;
using kms::Result;

namespace {

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// First locked block of a batch item's arena (its result object, strings and
// a copy of its reference); larger results grow it.
constexpr std::size_t kItemArenaBytes = 1024;

std::span<const std::uint8_t> bytes_of(const std::vector<std::uint8_t>& v) { return {v.data(), v.size()}; }

Result<std::uint32_t> key_version_of(const json::object& o) {
  std::optional<std::int64_t> v;
  ROOTSEAL_TRY_ASSIGN(v, int_field(o, "key_version"));
  if (!v) return 0u;
  if (*v < 0 || *v > static_cast<std::int64_t>(kms::kMaxKeyVersion)) {
    return fail(Errc::invalid_argument, "invalid key version");
  }
  return static_cast<std::uint32_t>(*v);
}

// min_decryption_version / min_encryption_version of keys/:name/config.
Result<std::optional<std::uint32_t>> version_field(const json::object& o, std::string_view field) {
  std::optional<std::int64_t> v;
  ROOTSEAL_TRY_ASSIGN(v, int_field(o, field));
  if (!v) return std::optional<std::uint32_t>{};
  if (*v < 0 || *v > static_cast<std::int64_t>(kms::kMaxKeyVersion)) {
    return fail(Errc::invalid_argument, std::string(field) + " out of range");
  }
  return std::optional<std::uint32_t>(static_cast<std::uint32_t>(*v));
}

// ---- the per-item inputs shared by single and batch requests ----

struct ItemInputs {
  std::vector<std::uint8_t> context;
  std::vector<std::uint8_t> aad;
  std::uint32_t key_version = 0;
  [[nodiscard]] kms::CryptoOptions options() const { return {bytes_of(context), bytes_of(aad), key_version}; }
};

Result<ItemInputs> item_inputs(const json::object& o) {
  ItemInputs in;
  ROOTSEAL_TRY_ASSIGN(in.context, base64_field(o, "context"));
  ROOTSEAL_TRY_ASSIGN(in.aad, base64_field(o, "associated_data"));
  ROOTSEAL_TRY_ASSIGN(in.key_version, key_version_of(o));
  std::optional<std::string_view> nonce;
  ROOTSEAL_TRY_ASSIGN(nonce, string_field(o, "nonce"));
  if (nonce && !nonce->empty()) {
    return fail(Errc::invalid_argument, "provided nonce when not using convergent encryption");
  }
  return in;
}

// Key metadata is not secret: it lives on the ordinary heap, so a key with
// thousands of versions is not bounded by a request's locked arena. As Vault,
// `keys` lists only the versions that can still decrypt (>= min_decryption_version).
json::object key_info_json(const kms::KeyInfo& info) {
  json::object keys;
  for (const auto& [version, created] : info.versions) {
    if (version >= info.config.min_decryption_version) keys[std::to_string(version)] = created;
  }
  json::object d;
  d["name"] = info.name;
  d["type"] = kms::to_string(info.type);
  d["keys"] = std::move(keys);
  d["latest_version"] = info.latest_version;
  d["min_available_version"] = info.min_available_version;
  d["min_decryption_version"] = info.config.min_decryption_version;
  d["min_encryption_version"] = info.config.min_encryption_version;
  d["deletion_allowed"] = info.config.deletion_allowed;
  d["derived"] = info.derived;
  d["exportable"] = false;
  d["allow_plaintext_backup"] = false;
  d["supports_encryption"] = true;
  d["supports_decryption"] = true;
  d["supports_derivation"] = true;
  d["supports_signing"] = false;
  d["auto_rotate_period"] = info.config.auto_rotate_period_s;
  d["imported_key"] = false;
  if (info.derived) {
    d["kdf"] = "hkdf_sha256";
    d["convergent_encryption"] = false;
  }
  return d;
}

// Everything one request needs while it is handled.
struct Call {
  const TransitDeps& deps;
  net::Request& request;
  std::string_view path;  // after "/v1/"
  boost::urls::params_view params;
  unsigned version;
  RequestNote& note;
  std::shared_ptr<const TokenInfo> token;
  std::string_view token_text;  // the presented token, in the request's header (lookup-self's "id")
  std::size_t arena_limit;      // of this request's arena, and of each batch item's
  LockedJson arena;
  json::object body;
  std::string name;       // the route's :name (a valid key name), if it has one
  std::string_view kind;  // the route's :kind (datakey/:kind/:name)

  Call(const TransitDeps& d, net::Request& r, std::string_view p, boost::urls::params_view q, RequestNote& n,
       ArenaSize size)
      : deps(d),
        request(r),
        path(p),
        params(q),
        version(r.version()),
        note(n),
        arena_limit(size.limit),
        arena(size.initial, size.limit),
        body(arena.storage()) {}

  kms::Keyring& ring() const { return *deps.keyring; }

  // Notes the operation for the audit log and asks the token's policies.
  bool allowed(Operation op, std::string_view key) {
    note.operation = std::string(to_string(op));
    note.key = std::string(key);
    return deps.authorizer->allowed(*token, op, key);
  }

  // Runs blocking keyring work (root of trust, store) on the blocking pool.
  template <class Fn>
  asio::awaitable<std::invoke_result_t<Fn&>> blocking(Fn fn) {
    co_return co_await asio::co_spawn(
        *deps.blocking, [&]() -> asio::awaitable<std::invoke_result_t<Fn&>> { co_return fn(); }, asio::use_awaitable);
  }

  // With a shared store (etcd): the key as the store holds it now, when this
  // host does not hold it, or holds it only up to a version below
  // `key_version`. A failed re-read (etcd unavailable) leaves memory as it was:
  // the answer is then what memory says.
  asio::awaitable<void> catch_up(std::uint32_t key_version = 0) {
    if (!deps.shared_store) co_return;
    auto latest = ring().latest_version(name);
    if (latest && *latest >= key_version) co_return;
    if (!latest && latest.error().code != Errc::not_found) co_return;
    (void)co_await blocking([&] { return ring().refresh(name); });
  }

  net::Response error(const kms::Error& e) const { return error_response(e, version); }
  net::Response error(VaultError e) const { return error_response(e, version); }
  // An error from the keyring: one that means the root of trust failed is
  // reported so the seal manager probes it now.
  net::Response failed(const kms::Error& e) const {
    if (e.code == Errc::unavailable || e.code == Errc::sealed) deps.report_root_failure();
    return error(e);
  }

  // Vault's success envelope around `data`, serialized into locked memory:
  // written as text around the serialized `data` (the fixed members need no
  // JSON object of their own; this runs for every answer).
  net::Response ok(const json::value& data, const json::array& warnings = {}) const {
    net::SecureBuffer text = envelope_prefix();
    serialize_locked_into(data, text);
    text.append(R"(,"wrap_info":null,"warnings":)");
    if (warnings.empty()) {
      text.append("null");
    } else {
      serialize_locked_into(json::value(warnings, data.storage()), text);
    }
    text.append(R"(,"auth":null,"mount_type":"transit"})");
    return text_response(std::move(text));
  }
  // The envelope up to "data": (a UUID request id: nothing to escape).
  [[nodiscard]] net::SecureBuffer envelope_prefix() const {
    net::SecureBuffer out;
    out.append(R"({"request_id":")");
    out.append(note.request_id);
    out.append(R"(","lease_id":"","renewable":false,"lease_duration":0,"data":)");
    return out;
  }
  // A batch answer, written as text: the envelope up to "batch_results":[ ...
  [[nodiscard]] net::SecureBuffer batch_prefix() const {
    net::SecureBuffer out = envelope_prefix();
    out.append(R"({"batch_results":[)");
    return out;
  }
  // ... and after the items, the rest of Vault's envelope.
  net::Response batch_done(net::SecureBuffer text) const {
    text.append(R"(]},"wrap_info":null,"warnings":null,"auth":null,"mount_type":"transit"})");
    return text_response(std::move(text));
  }
  net::Response text_response(net::SecureBuffer text) const {
    net::Response res{http::status::ok, version};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    res.body() = std::move(text);
    res.prepare_payload();
    return res;
  }
  // A whole envelope built as a JSON object (renew-self's, with an auth block).
  net::Response respond(const json::object& env) const {
    net::Response res{http::status::ok, version};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    res.body() = serialize_locked(env);
    res.prepare_payload();
    return res;
  }
};

using Handler = asio::awaitable<net::Response> (*)(Call&);

// ---- keys ----

asio::awaitable<net::Response> list_keys(Call& call) {
  if (!call.allowed(Operation::list, "")) co_return call.error(VaultError::permission_denied);
  auto names = call.ring().list();
  if (!names) co_return call.failed(names.error());
  json::array keys;  // names are not secret: the heap, not the request's arena
  const Authorizer& policies = *call.deps.authorizer;
  for (const auto& n : *names) {
    if (policies.allowed(*call.token, Operation::list, n) || policies.allowed(*call.token, Operation::read, n)) {
      keys.emplace_back(n);
    }
  }
  if (keys.empty()) co_return call.error(VaultError::not_found);  // Vault: an empty list is a 404
  json::object data;
  data["keys"] = std::move(keys);
  co_return call.ok(std::move(data));
}

Result<kms::CreateOptions> create_options(const json::object& body) {
  kms::CreateOptions opts;
  std::optional<std::string_view> type;
  std::optional<bool> derived, convergent, exportable, backup;
  std::optional<std::int64_t> period;
  ROOTSEAL_TRY_ASSIGN(type, string_field(body, "type"));
  ROOTSEAL_TRY_ASSIGN(derived, bool_field(body, "derived"));
  ROOTSEAL_TRY_ASSIGN(convergent, bool_field(body, "convergent_encryption"));
  ROOTSEAL_TRY_ASSIGN(exportable, bool_field(body, "exportable"));
  ROOTSEAL_TRY_ASSIGN(backup, bool_field(body, "allow_plaintext_backup"));
  ROOTSEAL_TRY_ASSIGN(period, duration_field(body, "auto_rotate_period"));
  if (type) ROOTSEAL_TRY_ASSIGN(opts.type, kms::parse_key_type(*type));
  if (convergent.value_or(false)) {
    return fail(Errc::invalid_argument, "convergent encryption is not supported by rootseal");
  }
  if (backup.value_or(false)) {
    return fail(Errc::invalid_argument, "plaintext backup is not supported: rootseal never exports keys");
  }
  opts.derived = derived.value_or(false);
  opts.exportable = exportable.value_or(false);
  opts.auto_rotate_period_s = period.value_or(0);
  return opts;
}

asio::awaitable<net::Response> create_key(Call& call) {
  if (!call.allowed(Operation::create, call.name)) co_return call.error(VaultError::permission_denied);
  auto opts = create_options(call.body);
  if (!opts) co_return call.error(opts.error());
  auto created = co_await call.blocking([&] { return call.ring().create(call.name, *opts); });
  if (!created) co_return call.failed(created.error());
  json::array warnings;
  if (created->existed) warnings.emplace_back("key " + call.name + " already existed");
  co_return call.ok(key_info_json(created->info), std::move(warnings));
}

asio::awaitable<net::Response> read_key(Call& call) {
  if (!call.allowed(Operation::read, call.name)) co_return call.error(VaultError::permission_denied);
  co_await call.catch_up();
  auto info = call.ring().read(call.name);
  if (!info && info.error().code == Errc::not_found) co_return call.error(VaultError::not_found);
  if (!info) co_return call.failed(info.error());
  co_return call.ok(key_info_json(*info));
}

asio::awaitable<net::Response> delete_key(Call& call) {
  if (!call.allowed(Operation::delete_, call.name)) co_return call.error(VaultError::permission_denied);
  co_await call.catch_up();
  auto removed = co_await call.blocking([&] { return call.ring().remove(call.name); });
  // Vault's words for both refusals (400, as http_status gives them).
  if (!removed && removed.error().code == Errc::deletion_not_allowed) {
    co_return call.error(
        {Errc::deletion_not_allowed, "error deleting policy " + call.name + ": deletion is not allowed for this key"});
  }
  if (!removed && removed.error().code == Errc::not_found) {
    co_return call.error(
        {Errc::invalid_argument, "error deleting policy " + call.name + ": could not delete key; not found"});
  }
  if (!removed) co_return call.failed(removed.error());
  net::Response res{http::status::no_content, call.version};
  res.prepare_payload();
  co_return res;
}

asio::awaitable<net::Response> rotate_key(Call& call) {
  if (!call.allowed(Operation::rotate, call.name)) co_return call.error(VaultError::permission_denied);
  co_await call.catch_up();
  auto info = co_await call.blocking([&] { return call.ring().rotate(call.name); });
  if (!info && info.error().code == Errc::not_found) co_return call.error({Errc::invalid_argument, "key not found"});
  if (!info) co_return call.failed(info.error());
  co_return call.ok(key_info_json(*info));
}

Result<kms::ConfigUpdate> config_update(const json::object& body) {
  kms::ConfigUpdate update;
  std::optional<bool> exportable, backup;
  ROOTSEAL_TRY_ASSIGN(update.min_decryption_version, version_field(body, "min_decryption_version"));
  ROOTSEAL_TRY_ASSIGN(update.min_encryption_version, version_field(body, "min_encryption_version"));
  ROOTSEAL_TRY_ASSIGN(update.deletion_allowed, bool_field(body, "deletion_allowed"));
  ROOTSEAL_TRY_ASSIGN(exportable, bool_field(body, "exportable"));
  ROOTSEAL_TRY_ASSIGN(backup, bool_field(body, "allow_plaintext_backup"));
  ROOTSEAL_TRY_ASSIGN(update.auto_rotate_period_s, duration_field(body, "auto_rotate_period"));
  if (exportable.value_or(false) || backup.value_or(false)) {
    return fail(Errc::invalid_argument, "rootseal never exports keys");
  }
  return update;
}

asio::awaitable<net::Response> configure_key(Call& call) {
  if (!call.allowed(Operation::config, call.name)) co_return call.error(VaultError::permission_denied);
  auto update = config_update(call.body);
  if (!update) co_return call.error(update.error());
  co_await call.catch_up();
  auto info = co_await call.blocking([&] { return call.ring().configure(call.name, *update); });
  if (!info && info.error().code == Errc::not_found) {
    co_return call.error({Errc::invalid_argument, "no existing key named " + call.name + " could be found"});
  }
  if (!info) co_return call.failed(info.error());
  co_return call.ok(key_info_json(*info));
}

// ---- encrypt / decrypt / rewrap (one item, a batch of them) ----

// One item of `op` on key `name`: its result object, or the item's error.
Result<json::object> crypt_item(const Call& call, Operation op, const json::object& item, json::storage_ptr storage) {
  ItemInputs in;
  ROOTSEAL_TRY_ASSIGN(in, item_inputs(item));
  kms::Keyring& ring = call.ring();
  json::object out(3, std::move(storage));
  std::optional<std::string_view> text;
  if (op == Operation::encrypt) {
    ROOTSEAL_TRY_ASSIGN(text, string_field(item, "plaintext"));
    if (!text) return fail(Errc::invalid_argument, "missing plaintext to encrypt");
    auto plain = kms::base64_decode_secure(*text);
    if (!plain) return fail(Errc::bad_base64, "failed to base64-decode plaintext");
    kms::Encrypted enc;
    ROOTSEAL_TRY_ASSIGN(enc, ring.encrypt(call.name, plain->span(), in.options()));
    out["ciphertext"] = enc.ciphertext;
    out["key_version"] = enc.key_version;
    return out;
  }
  ROOTSEAL_TRY_ASSIGN(text, string_field(item, "ciphertext"));
  if (!text || text->empty()) return fail(Errc::invalid_argument, "missing ciphertext to decrypt");
  if (op == Operation::decrypt) {
    kms::SecureBytes plain;
    ROOTSEAL_TRY_ASSIGN(plain, ring.decrypt(call.name, *text, in.options()));
    const auto b64 = kms::base64_encode_secure(plain.span());
    out["plaintext"] = std::string_view(reinterpret_cast<const char*>(b64.data()), b64.size());
    return out;
  }
  kms::Encrypted enc;
  ROOTSEAL_TRY_ASSIGN(enc, ring.rewrap(call.name, *text, in.options()));
  out["ciphertext"] = enc.ciphertext;
  out["key_version"] = enc.key_version;
  return out;
}

// The highest key version the request names (its ciphertexts' versions and
// key_version fields; 0 if none): a host that holds less re-reads the key
// first (a version another host has just made).
std::uint32_t highest_version(const Call& call, Operation op) {
  std::uint32_t highest = 0;
  auto note = [&](const json::object& item) {
    if (const auto* kv = item.if_contains("key_version"); kv != nullptr && kv->is_number()) {
      std::error_code ec;
      const auto v = kv->to_number<std::uint32_t>(ec);
      if (!ec) highest = std::max(highest, v);
    }
    if (op == Operation::encrypt) return;
    // Only the "vault:v<N>:" prefix (the keyring checks the rest).
    if (const auto* ct = item.if_contains("ciphertext"); ct != nullptr && ct->is_string()) {
      std::string_view text = ct->get_string();
      if (!text.starts_with("vault:v")) return;
      text.remove_prefix(7);
      std::uint32_t v = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec == std::errc() && end != text.data() + text.size() && *end == ':') highest = std::max(highest, v);
    }
  };
  note(call.body);
  if (const auto* batch = call.body.if_contains("batch_input"); batch != nullptr && batch->is_array()) {
    for (const auto& item : batch->get_array()) {
      if (item.is_object()) note(item.get_object());
    }
  }
  return highest;
}

// The key is looked up once for the whole request (batch or not), as Vault
// does: a missing key is one 400, not one error per item. Encrypt upserts a
// missing key, which needs the create capability. nullopt: carry on.
asio::awaitable<std::optional<net::Response>> ensure_key(Call& call, Operation op) {
  if (call.deps.shared_store) co_await call.catch_up(highest_version(call, op));
  auto exists = call.ring().contains(call.name);
  if (!exists) co_return call.failed(exists.error());
  if (*exists) co_return std::nullopt;
  if (op != Operation::encrypt || !call.allowed(Operation::create, call.name)) {
    co_return call.error(VaultError::key_not_found);
  }
  kms::CreateOptions opts;
  auto type = string_field(call.body, "type");
  if (!type) co_return call.error(type.error());
  if (*type) {
    auto t = kms::parse_key_type(**type);
    if (!t) co_return call.error(t.error());
    opts.type = *t;
  }
  auto created = co_await call.blocking([&] { return call.ring().create(call.name, opts); });
  if (!created) co_return call.failed(created.error());
  call.note.operation = std::string(to_string(op));  // allowed(create) above noted "create"
  co_return std::nullopt;
}

// The status of a batch with `failed` failed items of `total`: Vault's rule
// is 400 (500 for an internal error) unless partial_failure_response_code is
// set and at least one item succeeded.
unsigned batch_status(std::size_t failed, std::size_t total, bool internal, std::int64_t partial_code) {
  if (failed == 0) return 200;
  if (!internal && partial_code != 0 && failed < total) {
    // A code that cannot carry the results (1xx, 204, 304) is not used.
    if (partial_code >= 200 && partial_code <= 599 && partial_code != 204 && partial_code != 304) {
      return static_cast<unsigned>(partial_code);
    }
  }
  return http_status(internal ? Errc::internal : Errc::invalid_argument);
}

// The answer is written item by item into one locked buffer: each item's
// result is built in a small arena of its own and serialized at once, so a
// batch never holds a DOM of all its answers (boost::json spends a few
// hundred bytes on each small object).
net::Response crypt_batch(Call& call, Operation op, const json::array& batch, std::int64_t partial_code) {
  call.note.batch_items = batch.size();
  net::SecureBuffer text = call.batch_prefix();
  std::size_t failed = 0;
  bool internal = false;
  bool first = true;
  for (const auto& entry : batch) {
    LockedJson item_arena(kItemArenaBytes, call.arena_limit);
    const auto isp = item_arena.storage();
    json::object item_result(3, isp);
    const json::value* reference = nullptr;
    if (!entry.is_object()) {
      item_result["error"] = "batch_input items must be objects";
      ++failed;
    } else {
      reference = entry.get_object().if_contains("reference");
      auto r = crypt_item(call, op, entry.get_object(), isp);
      if (r) {
        item_result = std::move(*r);
      } else {
        // The root of trust failing fails the whole request.
        if (r.error().code == Errc::sealed || r.error().code == Errc::unavailable) return call.failed(r.error());
        if (http_status(r.error().code) >= 500) internal = true;
        item_result["error"] =
            r.error().code == Errc::not_found ? std::string("encryption key not found") : r.error().message;
        ++failed;
      }
    }
    if (reference != nullptr) item_result["reference"] = *reference;
    if (!first) text.append(",");
    first = false;
    serialize_locked_into(item_result, text);
  }
  net::Response res = call.batch_done(std::move(text));
  res.result(static_cast<http::status>(batch_status(failed, batch.size(), internal, partial_code)));
  return res;
}

asio::awaitable<net::Response> crypt(Call& call, Operation op) {
  if (!call.allowed(op, call.name)) co_return call.error(VaultError::permission_denied);
  if (auto refused = co_await ensure_key(call, op)) co_return std::move(*refused);

  const auto* batch = call.body.if_contains("batch_input");
  if (batch == nullptr || batch->is_null()) {
    auto result = crypt_item(call, op, call.body, call.arena.storage());
    if (!result && result.error().code == Errc::not_found) co_return call.error(VaultError::key_not_found);
    if (!result) co_return call.failed(result.error());
    if (const auto* v = result->if_contains("key_version"); v != nullptr && v->is_uint64()) {
      call.note.key_version = static_cast<std::uint32_t>(v->get_uint64());
    }
    co_return call.ok(std::move(*result));
  }
  if (!batch->is_array()) co_return call.error({Errc::invalid_argument, "'batch_input' must be an array of objects"});
  if (batch->get_array().empty()) co_return call.error({Errc::invalid_argument, "missing batch input to process"});
  auto partial_code = int_field(call.body, "partial_failure_response_code");
  if (!partial_code) co_return call.error(partial_code.error());
  co_return crypt_batch(call, op, batch->get_array(), partial_code->value_or(0));
}

asio::awaitable<net::Response> encrypt(Call& call) { co_return co_await crypt(call, Operation::encrypt); }
asio::awaitable<net::Response> decrypt(Call& call) { co_return co_await crypt(call, Operation::decrypt); }
asio::awaitable<net::Response> rewrap(Call& call) { co_return co_await crypt(call, Operation::rewrap); }

asio::awaitable<net::Response> datakey(Call& call) {
  if (call.kind != "plaintext" && call.kind != "wrapped") {
    co_return call.error({Errc::invalid_argument, "invalid type: must be \"plaintext\" or \"wrapped\""});
  }
  if (!call.allowed(Operation::datakey, call.name)) co_return call.error(VaultError::permission_denied);
  auto in = item_inputs(call.body);
  if (!in) co_return call.error(in.error());
  auto bits = int_field(call.body, "bits");
  if (!bits) co_return call.error(bits.error());
  const std::int64_t b = bits->value_or(256);
  if (b != 128 && b != 256 && b != 512) co_return call.error({Errc::invalid_argument, "invalid bit length"});
  if (call.deps.shared_store) co_await call.catch_up(highest_version(call, Operation::encrypt));
  auto dk = call.ring().generate_data_key(call.name, static_cast<unsigned>(b), in->options());
  if (!dk && dk.error().code == Errc::not_found) co_return call.error(VaultError::key_not_found);
  if (!dk) co_return call.failed(dk.error());
  json::object data(call.arena.storage());
  data["ciphertext"] = dk->ciphertext;
  data["key_version"] = dk->key_version;
  if (call.kind == "plaintext") {
    const auto b64 = kms::base64_encode_secure(dk->plaintext.span());
    data["plaintext"] = std::string_view(reinterpret_cast<const char*>(b64.data()), b64.size());
  }
  co_return call.ok(std::move(data));
}

// ---- auth/token/{lookup-self,renew-self} ----

json::array policies_of(const TokenInfo& t, json::storage_ptr sp) {
  json::array policies(std::move(sp));
  if (t.root) policies.emplace_back("root");
  for (const auto& p : t.policies) policies.emplace_back(p);
  return policies;
}

asio::awaitable<net::Response> lookup_self(Call& call) {
  const TokenInfo& t = *call.token;
  json::object data(call.arena.storage());
  data["accessor"] = t.accessor;
  data["creation_time"] = t.creation_time;
  data["creation_ttl"] = t.ttl_s;
  data["display_name"] = t.display_name;
  data["entity_id"] = "";
  data["expire_time"] = t.expire_time == 0 ? json::value(nullptr) : json::value(t.expire_time);
  data["explicit_max_ttl"] = 0;
  data["id"] = call.token_text;
  data["meta"] = nullptr;
  data["num_uses"] = 0;
  data["orphan"] = true;
  data["path"] = t.root ? "auth/token/root" : "auth/token/create";
  data["policies"] = policies_of(t, call.arena.storage());
  data["renewable"] = t.renewable;
  data["ttl"] = t.expire_time == 0 ? 0 : std::max<std::int64_t>(0, t.expire_time - now_unix());
  data["type"] = "service";
  co_return call.ok(std::move(data));
}

asio::awaitable<net::Response> renew_self(Call& call) {
  const TokenInfo& t = *call.token;
  // The transit seal renews with increment 0 at start. A token that cannot
  // be renewed gets a 4xx (never an empty 200, which would stop the seal).
  auto renewed = call.deps.tokens->renew(call.token_text, now_unix());
  if (!t.renewable || !renewed) co_return call.error({Errc::invalid_argument, "lease is not renewable"});
  const auto sp = call.arena.storage();
  json::object auth(sp);
  auth["client_token"] = call.token_text;
  auth["accessor"] = t.accessor;
  auth["policies"] = policies_of(t, sp);
  auth["token_policies"] = policies_of(t, sp);
  auth["metadata"] = nullptr;
  auth["lease_duration"] = renewed->ttl_s;
  auth["renewable"] = t.renewable;
  auth["entity_id"] = "";
  auth["token_type"] = "service";
  auth["orphan"] = true;
  json::object env(sp);
  env["request_id"] = call.note.request_id;
  env["lease_id"] = "";
  env["renewable"] = false;
  env["lease_duration"] = 0;
  env["data"] = nullptr;
  env["wrap_info"] = nullptr;
  env["warnings"] = nullptr;
  env["auth"] = std::move(auth);
  co_return call.respond(env);
}

// ---- the route table ----

struct Route {
  Verb verb;
  std::string_view pattern;  // after "<mount>/" (or "auth/token/"); ":name" a key name, ":kind" any segment
  Handler handler;
};

constexpr Route kTransitRoutes[] = {
    {Verb::list, "keys", list_keys},
    {Verb::write, "keys/:name", create_key},
    {Verb::read, "keys/:name", read_key},
    {Verb::remove, "keys/:name", delete_key},
    {Verb::write, "keys/:name/rotate", rotate_key},
    {Verb::write, "keys/:name/config", configure_key},
    {Verb::write, "encrypt/:name", encrypt},
    {Verb::write, "decrypt/:name", decrypt},
    {Verb::write, "rewrap/:name", rewrap},
    {Verb::write, "datakey/:kind/:name", datakey},
};

constexpr Route kTokenRoutes[] = {
    {Verb::read, "lookup-self", lookup_self},
    {Verb::write, "lookup-self", lookup_self},
    {Verb::write, "renew-self", renew_self},
};

// Matches `path` against `pattern` segment by segment, capturing :name and
// :kind into the call. A capture must be non-empty.
bool matches(std::string_view pattern, std::string_view path, Call& call) {
  call.name.clear();
  call.kind = {};
  while (true) {
    const auto p_end = pattern.find('/');
    const auto s_end = path.find('/');
    const std::string_view p = pattern.substr(0, p_end);
    const std::string_view s = path.substr(0, s_end);
    if (p.starts_with(':')) {
      if (s.empty()) return false;
      if (p == ":name") call.name = std::string(s);
      if (p == ":kind") call.kind = s;
    } else if (p != s) {
      return false;
    }
    if ((p_end == std::string_view::npos) != (s_end == std::string_view::npos)) return false;
    if (p_end == std::string_view::npos) return true;
    pattern.remove_prefix(p_end + 1);
    path.remove_prefix(s_end + 1);
  }
}

// The handler for `rest` (the path within the table's prefix) and `verb`:
// 404 unsupported path when no pattern matches, 405 unsupported operation
// when one matches but not for this verb, 400 for an invalid key name.
asio::awaitable<net::Response> route(Call& call, std::span<const Route> table, std::string_view rest, Verb verb) {
  // Vault lists "keys/" as "keys" (its pattern is keys/?$).
  if (verb == Verb::list && rest.ends_with('/')) rest.remove_suffix(1);
  bool path_known = false;
  for (const Route& r : table) {
    if (!matches(r.pattern, rest, call)) continue;
    path_known = true;
    if (r.verb != verb) continue;
    if (!call.name.empty()) {
      if (auto valid = kms::validate_key_name(call.name); !valid) co_return call.error(valid.error());
    }
    co_return co_await r.handler(call);
  }
  co_return call.error(path_known ? VaultError::unsupported_operation : VaultError::unsupported_path);
}

// Authenticates (token, or a verified client certificate bound in the
// config), reads the body of a write into the request's locked arena, and
// hands the call to its route.
asio::awaitable<net::Response> dispatch(Call& call, const net::PeerInfo& peer) {
  net::Request& request = call.request;
  std::string_view presented;
  if (auto it = request.find("X-Vault-Token"); it != request.end()) {
    presented = it->value();
  } else if (auto auth = request.find(http::field::authorization); auth != request.end()) {
    const std::string_view v = auth->value();
    if (v.starts_with("Bearer ")) presented = v.substr(7);
  }
  call.token = call.deps.tokens->lookup(presented, now_unix());
  if (!call.token && presented.empty() && !peer.client_cert_sha256.empty()) {
    // Mutual TLS: a verified client certificate bound to policies in the config.
    if (auto identity = call.deps.authorizer->certificate_identity(peer.client_cert_sha256)) {
      call.token = std::make_shared<const TokenInfo>(std::move(*identity));
    }
  }
  if (!call.token) co_return call.error(VaultError::permission_denied);
  call.note.accessor = call.token->accessor;
  call.token_text = presented;

  auto verb = verb_of(request, call.params);
  if (!verb) co_return call.error(verb.error());
  if (!*verb) co_return call.error(VaultError::unsupported_operation);
  if (**verb == Verb::write || **verb == Verb::remove) {
    auto parsed = parse_object(request.body().view(), call.arena);
    if (!parsed) co_return call.error(parsed.error());
    call.body = std::move(*parsed);
  }
  if (call.path.starts_with("auth/token/")) co_return co_await route(call, kTokenRoutes, call.path.substr(11), **verb);
  co_return co_await route(call, kTransitRoutes, call.path.substr(call.deps.mount.size() + 1), **verb);
}

}  // namespace

TransitApi::TransitApi(TransitDeps deps) : deps_(std::move(deps)) {}

bool TransitApi::owns(std::string_view path) const noexcept {
  return path.starts_with("auth/token/") ||
         (path.starts_with(deps_.mount) && path.size() > deps_.mount.size() && path[deps_.mount.size()] == '/');
}

asio::awaitable<net::Response> TransitApi::handle(net::Request& request, std::string_view path,
                                                  boost::urls::params_view params, const net::PeerInfo& peer,
                                                  RequestNote& note) {
  note.request_id = kms::uuid_v4();  // public DRBG, checked; drawn in blocks per thread
  const unsigned version = request.version();
  // Sealed: nothing can be decrypted and no key read; Vault answers 503 first.
  if (deps_.seal_status().sealed) co_return error_response(VaultError::sealed, version);
  try {
    Call call(deps_, request, path, params, note, arena_size_for(request.body().size()));
    co_return co_await dispatch(call, peer);
  } catch (const std::bad_alloc&) {
    // The request's locked arena reached its limit (or locked memory ran
    // out): too large a request or answer to process.
  }
  co_return error_response(VaultError::too_large, version);
}

}  // namespace rootseal::daemon
