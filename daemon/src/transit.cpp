#include "transit.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <array>
#include <atomic>
#include <charconv>
#include <cstring>
#include <chrono>
#include <optional>

#include "locked_json.hpp"
#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/random.hpp"
#include "router.hpp"

namespace rootseal::daemon {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using kms::Errc;
using kms::fail;
using kms::Result;

namespace {

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

net::Response errors(unsigned status, std::string_view message, unsigned version) {
  json::object body;
  json::array list;
  if (!message.empty()) list.emplace_back(message);
  body["errors"] = std::move(list);
  return net::json_response(status, json::serialize(body), version);
}

// "'<field>' must be <what>" (built with append: GCC 12 misreports operator+ chains under -Wrestrict).
std::string must_be(std::string_view field, std::string_view what) {
  std::string m;
  m.reserve(field.size() + what.size() + 12);
  m.append("'").append(field).append("' must be ").append(what);
  return m;
}

// First locked block of a batch item's arena (its result object, strings and
// a copy of its reference); larger results grow it.
constexpr std::size_t kItemArenaBytes = 1024;

std::span<const std::uint8_t> bytes_of(const std::vector<std::uint8_t>& v) { return {v.data(), v.size()}; }

// ---- typed field access (Vault accepts numbers as strings and vice versa) ----

Result<std::optional<std::string_view>> opt_string(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<std::string_view>{};
  if (!v->is_string()) return fail(Errc::invalid_argument, must_be(key, "a string"));
  return std::optional<std::string_view>(v->get_string());
}

Result<std::optional<std::int64_t>> opt_int(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<std::int64_t>{};
  if (v->is_int64()) return std::optional<std::int64_t>(v->get_int64());
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    return std::optional<std::int64_t>(static_cast<std::int64_t>(v->get_uint64()));
  }
  if (v->is_string()) {
    const std::string_view s = v->get_string();
    std::int64_t out = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec == std::errc{} && end == s.data() + s.size()) return std::optional<std::int64_t>(out);
  }
  return fail(Errc::invalid_argument, must_be(key, "an integer"));
}

Result<std::optional<bool>> opt_bool(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<bool>{};
  if (v->is_bool()) return std::optional<bool>(v->get_bool());
  if (v->is_string()) {
    const std::string_view s = v->get_string();
    if (s == "true" || s == "1") return std::optional<bool>(true);
    if (s == "false" || s == "0") return std::optional<bool>(false);
  }
  return fail(Errc::invalid_argument, must_be(key, "a boolean"));
}

// Durations: seconds as a number, or "1h", "30m", "3600s".
Result<std::optional<std::int64_t>> opt_duration(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v != nullptr && v->is_string()) {
    const std::string_view s = v->get_string();
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    const std::string_view unit(end, static_cast<std::size_t>(s.data() + s.size() - end));
    if (ec == std::errc{} && n >= 0) {
      if (unit.empty() || unit == "s") return std::optional<std::int64_t>(n);
      if (unit == "m") return std::optional<std::int64_t>(n * 60);
      if (unit == "h") return std::optional<std::int64_t>(n * 3600);
    }
    return fail(Errc::invalid_argument, must_be(key, "a duration"));
  }
  return opt_int(o, key);
}

Result<std::uint32_t> key_version_of(const json::object& o) {
  std::optional<std::int64_t> v;
  ROOTSEAL_TRY_ASSIGN(v, opt_int(o, "key_version"));
  if (!v) return 0u;
  if (*v < 0 || *v > static_cast<std::int64_t>(kms::kMaxKeyVersion)) {
    return fail(Errc::invalid_argument, "invalid key version");
  }
  return static_cast<std::uint32_t>(*v);
}

// A base64 field that is not secret (context, associated_data).
Result<std::vector<std::uint8_t>> b64_field(const json::object& o, std::string_view key) {
  std::optional<std::string_view> s;
  ROOTSEAL_TRY_ASSIGN(s, opt_string(o, key));
  if (!s || s->empty()) return std::vector<std::uint8_t>{};
  auto decoded = kms::base64_decode(*s);
  if (!decoded) return fail(Errc::bad_base64, "failed to base64-decode " + std::string(key));
  return std::move(*decoded);
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
  ROOTSEAL_TRY_ASSIGN(in.context, b64_field(o, "context"));
  ROOTSEAL_TRY_ASSIGN(in.aad, b64_field(o, "associated_data"));
  ROOTSEAL_TRY_ASSIGN(in.key_version, key_version_of(o));
  std::optional<std::string_view> nonce;
  ROOTSEAL_TRY_ASSIGN(nonce, opt_string(o, "nonce"));
  if (nonce && !nonce->empty()) {
    return fail(Errc::invalid_argument, "provided nonce when not using convergent encryption");
  }
  return in;
}

// Key metadata is not secret: it lives on the ordinary heap, so a key with
// thousands of versions is not bounded by a request's locked arena.
json::object key_info_json(const kms::KeyInfo& info) {
  json::object keys;
  for (const auto& [version, created] : info.versions) keys[std::to_string(version)] = created;
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

}  // namespace

// Everything one request needs while it is handled.
struct TransitApi::Call {
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

  Call(net::Request& r, std::string_view p, boost::urls::params_view q, RequestNote& n, ArenaSize size)
      : request(r), path(p), params(q), version(r.version()), note(n), arena_limit(size.limit),
        arena(size.initial, size.limit), body(arena.storage()) {}

  // Vault's success envelope around `data`, serialized into locked memory:
  // written as text around the serialized `data` (the fixed members need no
  // JSON object of their own; this runs for every answer).
  net::Response ok(const json::value& data, const json::array& warnings = {}) {
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
  net::Response respond(unsigned status, const json::object& env) {
    net::Response res{static_cast<http::status>(status), version};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    res.body() = serialize_locked(env);
    res.prepare_payload();
    return res;
  }
  net::Response error(const kms::Error& e) const { return error_response(e, version); }
};

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
  if (deps_.seal_status().sealed) co_return errors(503, "rootseal is sealed", version);
  try {
    Call call(request, path, params, note, arena_size_for(request.body().size()));
    co_return co_await authenticated(call, peer);
  } catch (const std::bad_alloc&) {
    // The request's locked arena reached its limit (or locked memory ran
    // out): too large a request or answer to process.
  }
  co_return errors(413, "request too large to process", version);
}

asio::awaitable<net::Response> TransitApi::authenticated(Call& call, const net::PeerInfo& peer) {
  net::Request& request = call.request;
  RequestNote& note = call.note;

  std::string_view presented;
  if (auto it = request.find("X-Vault-Token"); it != request.end()) {
    presented = it->value();
  } else if (auto auth = request.find(http::field::authorization); auth != request.end()) {
    const std::string_view v = auth->value();
    if (v.starts_with("Bearer ")) presented = v.substr(7);
  }
  call.token = deps_.tokens->lookup(presented, now_unix());
  if (!call.token && presented.empty() && !peer.client_cert_sha256.empty()) {
    // Mutual TLS: a verified client certificate bound to policies in the config.
    if (auto identity = deps_.authorizer->certificate_identity(peer.client_cert_sha256)) {
      call.token = std::make_shared<const TokenInfo>(std::move(*identity));
    }
  }
  if (!call.token) co_return errors(403, "permission denied", call.version);
  note.accessor = call.token->accessor;
  call.token_text = presented;

  // PUT and POST are the same write; LIST is also GET ?list=true.
  const bool write = request.method() == http::verb::post || request.method() == http::verb::put;
  if (write || request.method() == http::verb::delete_) {
    auto parsed = parse_object(request.body().view(), call.arena);
    if (!parsed) co_return call.error(parsed.error());
    call.body = std::move(*parsed);
  }
  co_return co_await dispatch(call);
}

asio::awaitable<net::Response> TransitApi::dispatch(Call& call) {
  const auto method = call.request.method();
  const bool write = method == http::verb::post || method == http::verb::put;
  const bool is_get = method == http::verb::get;
  const bool list = call.request.method_string() == "LIST" ||
                    (is_get && call.params.find("list") != call.params.end() &&
                     (*call.params.find("list")).value == "true");
  const auto version = call.version;
  auto unsupported_op = [&] { return errors(405, "unsupported operation", version); };
  auto denied = [&] { return errors(403, "permission denied", version); };
  auto allowed = [&](Operation op, std::string_view key) {
    call.note.operation = std::string(to_string(op));
    call.note.key = std::string(key);
    return deps_.authorizer->allowed(*call.token, op, key);
  };
  auto on_error = [&](const kms::Error& e) {
    if (e.code == Errc::unavailable || e.code == Errc::sealed) deps_.report_root_failure();
    return call.error(e);
  };
  // Runs blocking keyring work (root of trust, store) on the blocking pool.
  auto blocking = [&](auto fn) -> asio::awaitable<decltype(fn())> {
    co_return co_await asio::co_spawn(*deps_.blocking, [&]() -> asio::awaitable<decltype(fn())> {
      co_return fn();
    }, asio::use_awaitable);
  };
  kms::Keyring& ring = *deps_.keyring;

  if (call.path.starts_with("auth/token/")) co_return co_await token_self(call, call.path.substr(11));

  // Split "<mount>/<endpoint>[/<more>...]".
  std::string_view rest = call.path.substr(deps_.mount.size() + 1);
  std::vector<std::string_view> seg;
  while (!rest.empty()) {
    const auto slash = rest.find('/');
    seg.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
    if (rest.empty()) seg.emplace_back();  // trailing slash
  }
  if (seg.empty()) co_return errors(404, "unsupported path", version);
  const std::string_view endpoint = seg[0];

  // ---- keys: LIST keys, keys/:name (create/read/delete), keys/:name/{config,rotate} ----
  if (endpoint == "keys") {
    if (seg.size() == 1 || (seg.size() == 2 && seg[1].empty())) {
      if (!list) co_return unsupported_op();
      if (!allowed(Operation::list, "")) co_return denied();
      auto names = ring.list();
      if (!names) co_return on_error(names.error());
      if (names->empty()) co_return errors(404, "", version);  // Vault: an empty list is a 404
      json::array keys;  // names are not secret: the heap, not the request's arena
      for (const auto& n : *names) {
        if (allowed(Operation::list, n) || allowed(Operation::read, n)) keys.emplace_back(n);
      }
      json::object data;
      data["keys"] = std::move(keys);
      co_return call.ok(std::move(data));
    }
    const std::string name(seg[1]);
    if (auto valid = kms::validate_key_name(name); !valid) co_return call.error(valid.error());
    if (seg.size() == 2) {
      if (write) {
        if (!allowed(Operation::create, name)) co_return denied();
        kms::CreateOptions opts;
        std::optional<std::string_view> type;
        std::optional<bool> derived, convergent, exportable, backup;
        std::optional<std::int64_t> period;
        auto parse = [&]() -> Result<void> {
          ROOTSEAL_TRY_ASSIGN(type, opt_string(call.body, "type"));
          ROOTSEAL_TRY_ASSIGN(derived, opt_bool(call.body, "derived"));
          ROOTSEAL_TRY_ASSIGN(convergent, opt_bool(call.body, "convergent_encryption"));
          ROOTSEAL_TRY_ASSIGN(exportable, opt_bool(call.body, "exportable"));
          ROOTSEAL_TRY_ASSIGN(backup, opt_bool(call.body, "allow_plaintext_backup"));
          ROOTSEAL_TRY_ASSIGN(period, opt_duration(call.body, "auto_rotate_period"));
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
          return {};
        };
        if (auto p = parse(); !p) co_return call.error(p.error());
        auto created = co_await blocking([&] { return ring.create(name, opts); });
        if (!created) co_return on_error(created.error());
        json::array warnings;
        if (created->existed) warnings.emplace_back("key " + name + " already existed");
        co_return call.ok(key_info_json(created->info), std::move(warnings));
      }
      if (is_get && !list) {
        if (!allowed(Operation::read, name)) co_return denied();
        auto info = ring.read(name);
        if (!info && info.error().code == Errc::not_found) co_return errors(404, "", version);
        if (!info) co_return on_error(info.error());
        co_return call.ok(key_info_json(*info));
      }
      if (method == http::verb::delete_) {
        if (!allowed(Operation::delete_, name)) co_return denied();
        auto removed = co_await blocking([&] { return ring.remove(name); });
        // Vault's words and status (400) for both refusals.
        if (!removed && removed.error().code == Errc::deletion_not_allowed) {
          co_return errors(400, "error deleting policy " + name + ": deletion is not allowed for this key", version);
        }
        if (!removed && removed.error().code == Errc::not_found) {
          co_return errors(400, "error deleting policy " + name + ": could not delete key; not found", version);
        }
        if (!removed) co_return on_error(removed.error());
        net::Response res{http::status::no_content, version};
        res.prepare_payload();
        co_return res;
      }
      co_return unsupported_op();
    }
    if (seg.size() == 3 && seg[2] == "rotate") {
      if (!write) co_return unsupported_op();
      if (!allowed(Operation::rotate, name)) co_return denied();
      auto info = co_await blocking([&] { return ring.rotate(name); });
      if (!info && info.error().code == Errc::not_found) co_return errors(400, "key not found", version);
      if (!info) co_return on_error(info.error());
      co_return call.ok(key_info_json(*info));
    }
    if (seg.size() == 3 && seg[2] == "config") {
      if (!write) co_return unsupported_op();
      if (!allowed(Operation::config, name)) co_return denied();
      kms::ConfigUpdate update;
      auto parse = [&]() -> Result<void> {
        std::optional<std::int64_t> mind, mine, period;
        std::optional<bool> del, exportable, backup;
        ROOTSEAL_TRY_ASSIGN(mind, opt_int(call.body, "min_decryption_version"));
        ROOTSEAL_TRY_ASSIGN(mine, opt_int(call.body, "min_encryption_version"));
        ROOTSEAL_TRY_ASSIGN(del, opt_bool(call.body, "deletion_allowed"));
        ROOTSEAL_TRY_ASSIGN(exportable, opt_bool(call.body, "exportable"));
        ROOTSEAL_TRY_ASSIGN(backup, opt_bool(call.body, "allow_plaintext_backup"));
        ROOTSEAL_TRY_ASSIGN(period, opt_duration(call.body, "auto_rotate_period"));
        if (exportable.value_or(false) || backup.value_or(false)) {
          return fail(Errc::invalid_argument, "rootseal never exports keys");
        }
        auto version_field = [](std::optional<std::int64_t> v, const char* field) -> Result<std::optional<std::uint32_t>> {
          if (!v) return std::optional<std::uint32_t>{};
          if (*v < 0 || *v > static_cast<std::int64_t>(kms::kMaxKeyVersion)) {
            return fail(Errc::invalid_argument, std::string(field) + " out of range");
          }
          return std::optional<std::uint32_t>(static_cast<std::uint32_t>(*v));
        };
        ROOTSEAL_TRY_ASSIGN(update.min_decryption_version, version_field(mind, "min_decryption_version"));
        ROOTSEAL_TRY_ASSIGN(update.min_encryption_version, version_field(mine, "min_encryption_version"));
        update.deletion_allowed = del;
        update.auto_rotate_period_s = period;
        return {};
      };
      if (auto p = parse(); !p) co_return call.error(p.error());
      auto info = co_await blocking([&] { return ring.configure(name, update); });
      if (!info && info.error().code == Errc::not_found) {
        co_return errors(400, "no existing key named " + name + " could be found", version);
      }
      if (!info) co_return on_error(info.error());
      co_return call.ok(key_info_json(*info));
    }
    co_return errors(404, "unsupported path", version);
  }

  // ---- encrypt / decrypt / rewrap / datakey ----
  const bool is_datakey = endpoint == "datakey";
  if (!(endpoint == "encrypt" || endpoint == "decrypt" || endpoint == "rewrap" || is_datakey)) {
    co_return errors(404, "unsupported path", version);
  }
  if ((!is_datakey && seg.size() != 2) || (is_datakey && seg.size() != 3)) {
    co_return errors(404, "unsupported path", version);
  }
  if (!write) co_return unsupported_op();
  const std::string name(seg.back());
  if (auto valid = kms::validate_key_name(name); !valid) co_return call.error(valid.error());
  const auto sp = call.arena.storage();

  if (is_datakey) {
    const std::string_view kind = seg[1];
    if (kind != "plaintext" && kind != "wrapped") {
      co_return errors(400, "invalid type: must be \"plaintext\" or \"wrapped\"", version);
    }
    if (!allowed(Operation::datakey, name)) co_return denied();
    auto in = item_inputs(call.body);
    if (!in) co_return call.error(in.error());
    auto bits = opt_int(call.body, "bits");
    if (!bits) co_return call.error(bits.error());
    const std::int64_t b = bits->value_or(256);
    if (b != 128 && b != 256 && b != 512) co_return errors(400, "invalid bit length", version);
    auto dk = ring.generate_data_key(name, static_cast<unsigned>(b), in->options());
    if (!dk && dk.error().code == Errc::not_found) co_return errors(400, "encryption key not found", version);
    if (!dk) co_return on_error(dk.error());
    json::object data(sp);
    data["ciphertext"] = dk->ciphertext;
    data["key_version"] = dk->key_version;
    if (kind == "plaintext") {
      const auto b64 = kms::base64_encode_secure(dk->plaintext.span());
      data["plaintext"] = std::string_view(reinterpret_cast<const char*>(b64.data()), b64.size());
    }
    co_return call.ok(std::move(data));
  }

  const Operation op = endpoint == "encrypt" ? Operation::encrypt
                       : endpoint == "decrypt" ? Operation::decrypt
                                               : Operation::rewrap;
  if (!allowed(op, name)) co_return denied();

  // The key is looked up once for the whole request (batch or not), as Vault
  // does: a missing key is one 400, not one error per item. Encrypt upserts a
  // missing key, which needs the create capability.
  const auto existing = ring.read(name);
  if (!existing && existing.error().code != Errc::not_found) co_return on_error(existing.error());
  if (!existing) {
    if (op != Operation::encrypt || !allowed(Operation::create, name)) {
      co_return errors(400, "encryption key not found", version);
    }
    kms::CreateOptions opts;
    auto type = opt_string(call.body, "type");
    if (!type) co_return call.error(type.error());
    if (*type) {
      auto t = kms::parse_key_type(**type);
      if (!t) co_return call.error(t.error());
      opts.type = *t;
    }
    auto created = co_await blocking([&] { return ring.create(name, opts); });
    if (!created) co_return on_error(created.error());
  }
  call.note.operation = std::string(to_string(op));  // allowed(create) above noted "create"
  call.note.key = name;

  // One item: returns its result object, or the item's error.
  auto one = [&](const json::object& item, json::storage_ptr storage) -> Result<json::object> {
    ItemInputs in;
    ROOTSEAL_TRY_ASSIGN(in, item_inputs(item));
    json::object out(3, storage);
    if (op == Operation::encrypt) {
      std::optional<std::string_view> text;
      ROOTSEAL_TRY_ASSIGN(text, opt_string(item, "plaintext"));
      if (!text) return fail(Errc::invalid_argument, "missing plaintext to encrypt");
      auto plain = kms::base64_decode_secure(*text);
      if (!plain) return fail(Errc::bad_base64, "failed to base64-decode plaintext");
      kms::Encrypted enc;
      ROOTSEAL_TRY_ASSIGN(enc, ring.encrypt(name, plain->span(), in.options()));
      out["ciphertext"] = enc.ciphertext;
      out["key_version"] = enc.key_version;
    } else {
      std::optional<std::string_view> text;
      ROOTSEAL_TRY_ASSIGN(text, opt_string(item, "ciphertext"));
      if (!text || text->empty()) return fail(Errc::invalid_argument, "missing ciphertext to decrypt");
      if (op == Operation::decrypt) {
        kms::SecureBytes plain;
        ROOTSEAL_TRY_ASSIGN(plain, ring.decrypt(name, *text, in.options()));
        const auto b64 = kms::base64_encode_secure(plain.span());
        out["plaintext"] = std::string_view(reinterpret_cast<const char*>(b64.data()), b64.size());
      } else {
        kms::Encrypted enc;
        ROOTSEAL_TRY_ASSIGN(enc, ring.rewrap(name, *text, in.options()));
        out["ciphertext"] = enc.ciphertext;
        out["key_version"] = enc.key_version;
      }
    }
    return out;
  };

  const auto* batch = call.body.if_contains("batch_input");
  if (batch == nullptr || batch->is_null()) {
    auto result = one(call.body, sp);
    if (result) {
      if (const auto* v = result->if_contains("key_version"); v != nullptr && v->is_uint64()) {
        call.note.key_version = static_cast<std::uint32_t>(v->get_uint64());
      }
    }
    if (!result) {
      if (result.error().code == Errc::not_found) co_return errors(400, "encryption key not found", version);
      co_return on_error(result.error());
    }
    co_return call.ok(std::move(*result));
  }
  if (!batch->is_array()) co_return errors(400, "'batch_input' must be an array of objects", version);
  if (batch->get_array().empty()) co_return errors(400, "missing batch input to process", version);
  auto partial_code = opt_int(call.body, "partial_failure_response_code");
  if (!partial_code) co_return call.error(partial_code.error());

  call.note.batch_items = batch->get_array().size();
  // The answer is written item by item into one locked buffer: each item's
  // result is built in a small arena of its own and serialized at once, so a
  // batch never holds a DOM of all its answers (boost::json spends a few
  // hundred bytes on each small object).
  net::SecureBuffer text = call.batch_prefix();
  std::size_t failed = 0;
  bool internal = false;
  bool first = true;
  for (const auto& entry : batch->get_array()) {
    LockedJson item_arena(kItemArenaBytes, call.arena_limit);
    const auto isp = item_arena.storage();
    json::object item_result(3, isp);
    const json::value* reference = nullptr;
    if (!entry.is_object()) {
      item_result["error"] = "batch_input items must be objects";
      ++failed;
    } else {
      reference = entry.get_object().if_contains("reference");
      auto r = one(entry.get_object(), isp);
      if (r) {
        item_result = std::move(*r);
      } else {
        if (r.error().code == Errc::sealed || r.error().code == Errc::unavailable) {
          deps_.report_root_failure();
          co_return call.error(r.error());
        }
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
  // Vault: any failed item makes it a 400 (500 for an internal error), unless
  // partial_failure_response_code is set and at least one item succeeded.
  if (failed > 0) {
    unsigned status = internal ? 500 : 400;
    const std::int64_t c = partial_code->value_or(0);
    if (!internal && c != 0 && failed < batch->get_array().size()) {
      // A code that cannot carry the results (1xx, 204, 304) is not used.
      if (c >= 200 && c <= 599 && c != 204 && c != 304) status = static_cast<unsigned>(c);
    }
    res.result(static_cast<http::status>(status));
  }
  co_return res;
}

asio::awaitable<net::Response> TransitApi::token_self(Call& call, std::string_view what) {
  const auto version = call.version;
  const auto method = call.request.method();
  const TokenInfo& t = *call.token;
  const auto sp = call.arena.storage();
  json::array policies(sp);
  if (t.root) policies.emplace_back("root");
  for (const auto& p : t.policies) policies.emplace_back(p);

  if (what == "lookup-self") {
    if (method != http::verb::get && method != http::verb::post && method != http::verb::put) {
      co_return errors(405, "unsupported operation", version);
    }
    json::object data(sp);
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
    data["policies"] = policies;
    data["renewable"] = t.renewable;
    data["ttl"] = t.expire_time == 0 ? 0 : std::max<std::int64_t>(0, t.expire_time - now_unix());
    data["type"] = "service";
    co_return call.ok(std::move(data));
  }
  if (what == "renew-self") {
    if (method != http::verb::post && method != http::verb::put) co_return errors(405, "unsupported operation", version);
    // The transit seal renews with increment 0 at start. A token that cannot
    // be renewed gets a 4xx (never an empty 200, which would stop the seal).
    auto renewed = deps_.tokens->renew(call.token_text, now_unix());
    if (!t.renewable || !renewed) co_return errors(400, "lease is not renewable", version);
    json::object auth(sp);
    auth["client_token"] = call.token_text;
    auth["accessor"] = t.accessor;
    auth["policies"] = policies;
    auth["token_policies"] = policies;
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
    co_return call.respond(200, env);
  }
  co_return errors(404, "unsupported path", version);
}

}  // namespace rootseal::daemon
