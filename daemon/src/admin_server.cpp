#include "admin_server.hpp"
#include "snapshot_scheduler.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "locked_json.hpp"
#include "log.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/tpm/tpm_root.hpp"
#include "router.hpp"

namespace rootseal::daemon {

namespace asio = boost::asio;
namespace json = boost::json;
using kms::Errc;
using kms::fail;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxRequest = 64 * 1024;
constexpr int kMaxSessions = 16;
constexpr std::int64_t kMaxTtl = 10LL * 365 * 24 * 3600;
constexpr auto kPurgeInterval = std::chrono::seconds(60);

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string_view pin_source_name(PinSourceKind k) {
  switch (k) {
    case PinSourceKind::tpm:
      return "tpm";
    case PinSourceKind::credential:
      return "credential";
    case PinSourceKind::file:
      return "file";
    case PinSourceKind::typed:
      return "typed";
  }
  return "unknown";
}

bool has_source(const Config& c, PinSourceKind k) {
  return std::find(c.pin.sources.begin(), c.pin.sources.end(), k) != c.pin.sources.end();
}

json::object keyring_key_json(const kms::KeyringKeyStatus& s) {
  return json::object{{"id", s.id},
                      {"kcv", s.kcv},
                      {"created_unix", s.created_unix},
                      {"keyring_keys", s.keyring_keys},
                      {"pending_versions", s.pending_versions},
                      {"settle_error", s.settle_error}};
}

json::object token_json(const TokenInfo& t) {
  json::array policies;
  for (const auto& p : t.policies) policies.emplace_back(p);
  return json::object{
      {"accessor", t.accessor},          {"display_name", t.display_name},
      {"policies", std::move(policies)}, {"creation_time", t.creation_time},
      {"expire_time", t.expire_time},    {"ttl", t.ttl_s},
      {"renewable", t.renewable},        {"source", t.persistent ? "created" : (t.from_config ? "config" : "dev-root")},
  };
}

// Display names: 1..128 of [A-Za-z0-9 ._@:-].
bool valid_display_name(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' || c == '.' ||
           c == '_' || c == '@' || c == ':' || c == '-';
  });
}

kms::Result<std::optional<std::vector<std::uint32_t>>> parse_pcrs(const json::object& req) {
  const auto* v = req.if_contains("pcrs");
  if (v == nullptr || v->is_null()) return std::optional<std::vector<std::uint32_t>>();
  if (!v->is_array()) return fail(Errc::invalid_argument, "pcrs: a list of PCR indices");
  std::vector<std::uint32_t> pcrs;
  for (const auto& e : v->as_array()) {
    if (!e.is_int64() || e.as_int64() < 0 || e.as_int64() > 23) {
      return fail(Errc::invalid_argument, "pcrs: PCR indices are 0..23");
    }
    const auto pcr = static_cast<std::uint32_t>(e.as_int64());
    if (pcr == 16 || pcr == 23) {
      return fail(Errc::invalid_argument, "pcrs: PCR " + std::to_string(pcr) + " is resettable by any process");
    }
    if (std::find(pcrs.begin(), pcrs.end(), pcr) != pcrs.end()) {
      return fail(Errc::invalid_argument, "pcrs: PCR " + std::to_string(pcr) + " is listed twice");
    }
    pcrs.push_back(pcr);
  }
  std::sort(pcrs.begin(), pcrs.end());
  return std::optional<std::vector<std::uint32_t>>(std::move(pcrs));
}

// Asio opens and accepts without SOCK_CLOEXEC: nothing of ours leaks into a child.
void set_cloexec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) (void)::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

std::string pcr_text(const std::vector<std::uint32_t>& pcrs) {
  std::string out;
  for (const auto p : pcrs) out += (out.empty() ? "" : ",") + std::to_string(p);
  return out.empty() ? "none" : out;
}

// A string argument of a request (at most 256 bytes), or "" when absent.
std::string string_arg(const json::object& req, const char* name) {
  const auto* v = req.if_contains(name);
  return v != nullptr && v->is_string() && v->as_string().size() <= 256 ? std::string(v->as_string()) : std::string();
}

// The PIN of an unseal request: base64, 1 to 128 bytes, decoded into locked memory.
kms::Result<kms::SecureBytes> pin_arg(const json::object& req) {
  const auto* pin_value = req.if_contains("pin");
  if (pin_value == nullptr || !pin_value->is_string()) return fail(Errc::invalid_argument, "pin (base64) is required");
  auto pin = kms::base64_decode_secure(std::string_view(pin_value->as_string()));
  if (!pin || pin->empty() || pin->size() > tpm::kMaxSealedSecret) {
    return fail(Errc::invalid_argument, "pin: 1 to 128 bytes, base64");
  }
  return std::move(*pin);
}

}  // namespace

kms::Result<AdminRequest> parse_admin_request(std::string_view line, std::string* op_out) {
  LockedJson arena(16 * 1024, 512 * 1024);
  auto parsed = parse_object(line, arena);
  if (!parsed) return std::unexpected(parsed.error());
  const json::object& req = *parsed;
  const auto* op_value = req.if_contains("op");
  if (op_value == nullptr || !op_value->is_string() || op_value->as_string().size() > 64) {
    return fail(Errc::invalid_argument, "missing \"op\"");
  }
  AdminRequest r;
  r.op = std::string(op_value->as_string());
  if (op_out != nullptr) *op_out = r.op;

  if (r.op == "status" || r.op == "token.list" || r.op == "snapshot.now" || r.op == "kms.rotate" ||
      r.op == "cluster.status" || r.op == "keyring.rotate-key") {
    return r;
  }

  if (r.op == "token.create") {
    const auto* policies = req.if_contains("policies");
    if (policies == nullptr || !policies->is_array() || policies->as_array().empty()) {
      return fail(Errc::invalid_argument, "at least one policy is required (--policy NAME)");
    }
    for (const auto& p : policies->as_array()) {
      if (!p.is_string() || p.as_string().empty() || p.as_string().size() > 128) {
        return fail(Errc::invalid_argument, "policies: a list of policy names");
      }
      std::string name(p.as_string());
      if (std::find(r.policies.begin(), r.policies.end(), name) == r.policies.end())
        r.policies.push_back(std::move(name));
    }
    if (const auto* ttl = req.if_contains("ttl_s"); ttl != nullptr) {
      if (!ttl->is_int64() || ttl->as_int64() < 0 || ttl->as_int64() > kMaxTtl) {
        return fail(Errc::invalid_argument, "ttl: 0 (no expiry) up to 10 years, in seconds");
      }
      r.ttl_s = ttl->as_int64();
    }
    if (const auto* rn = req.if_contains("renewable"); rn != nullptr) {
      if (!rn->is_bool()) return fail(Errc::invalid_argument, "renewable: true or false");
      r.renewable = rn->as_bool();
    }
    if (r.renewable && r.ttl_s == 0) return fail(Errc::invalid_argument, "a renewable token needs a ttl (--ttl)");
    r.display_name = string_arg(req, "display_name");
    if (r.display_name.empty()) r.display_name = "token";
    if (!valid_display_name(r.display_name)) {
      return fail(Errc::invalid_argument, "display_name: 1..128 of letters, digits, space and ._@:-");
    }
    return r;
  }

  if (r.op == "token.lookup" || r.op == "token.revoke") {
    r.accessor = string_arg(req, "accessor");
    if (r.accessor.empty()) return fail(Errc::invalid_argument, "accessor is required");
    return r;
  }

  if (r.op == "unseal") {
    ROOTSEAL_TRY_ASSIGN(r.pin, pin_arg(req));
    return r;
  }

  if (r.op == "tpm.reseal") {
    ROOTSEAL_TRY_ASSIGN(r.pcrs, parse_pcrs(req));
    r.target = string_arg(req, "target");
    return r;
  }

  return fail(Errc::invalid_argument, "unknown op '" + r.op + "'");
}

// One answer line, serialized in locked memory.
struct AdminServer::Answer {
  net::SecureBuffer line;
  unsigned status = 200;  // for the audit log, as the HTTP API would answer
  std::string error;      // the error message sent, if any (never a secret)
  bool created_token = false;

  static Answer ok(const json::value& data) {
    Answer a;
    json::object envelope(data.storage());
    envelope["ok"] = true;
    envelope["data"] = data;
    a.line = serialize_locked(envelope);
    a.line.append("\n");
    return a;
  }
  static Answer err(Errc code, std::string message, std::int64_t retry_after_ms = -1, std::string_view code_name = {}) {
    Answer a;
    json::object error{{"code", code_name.empty() ? kms::to_string(code) : code_name}, {"message", message}};
    if (retry_after_ms >= 0) error["retry_after_ms"] = retry_after_ms;
    a.line = serialize_locked(json::object{{"ok", false}, {"error", std::move(error)}});
    a.line.append("\n");
    a.status = code_name == "rate_limited" ? 429 : http_status(code);
    a.error = std::move(message);
    return a;
  }
  static Answer err(const kms::Error& e) { return err(e.code, e.message); }
};

namespace {

// Runs job() on the blocking pool; the caller resumes on its own executor.
// Not a coroutine itself, and the job is a named local of the caller: no
// closure is ever copied into a coroutine frame (g++ 12 gets those wrong).
asio::awaitable<void> on_pool(asio::thread_pool& pool, const std::function<void()>& job) {
  return asio::co_spawn(
      pool,
      [&job]() -> asio::awaitable<void> {
        job();
        co_return;
      },
      asio::use_awaitable);
}

}  // namespace

AdminServer::AdminServer(asio::io_context& io, AdminDeps deps)
    : io_(io), deps_(std::move(deps)), path_(deps_.config->admin.socket), purge_timer_(io) {}

AdminServer::~AdminServer() = default;

kms::Result<void> AdminServer::listen() {
  namespace fs = std::filesystem;
  const std::string where = "admin.socket " + path_.string();
  std::error_code ec;
  fs::create_directories(path_.parent_path(), ec);
  if (ec) return fail(Errc::invalid_argument, where + ": cannot create its folder: " + ec.message());

  // An existing socket is replaced only if nobody accepts on it (a stale one
  // left by a crash); anything else at that path is not ours to remove.
  struct stat st{};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return fail(Errc::invalid_argument, where + ": exists and is not a socket");
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return fail(Errc::internal, where + ": socket(): " + std::strerror(errno));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path_.c_str(), std::min(path_.native().size(), sizeof(sa.sun_path) - 1));
    const int rc = ::connect(probe, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa));
    ::close(probe);
    if (rc == 0) return fail(Errc::invalid_argument, where + ": another process is serving it (a second rootseald?)");
  }

  // Bound under a temporary name, its mode set, then renamed into place:
  // the socket never exists at its path with the wrong mode.
  const fs::path tmp = path_.parent_path() / ("." + path_.filename().string() + "." + std::to_string(::getpid()));
  if (tmp.native().size() >= sizeof(sockaddr_un::sun_path)) {
    return fail(Errc::invalid_argument, where + ": path too long for a unix socket");
  }
  (void)::unlink(tmp.c_str());
  auto acceptor = std::make_unique<asio::local::stream_protocol::acceptor>(io_);
  boost::system::error_code bec;
  acceptor->open(asio::local::stream_protocol(), bec);
  if (!bec) set_cloexec(acceptor->native_handle());
  if (!bec) acceptor->bind(asio::local::stream_protocol::endpoint(tmp.string()), bec);
  if (bec) return fail(Errc::invalid_argument, where + ": cannot bind: " + bec.message());
  if (::chmod(tmp.c_str(), deps_.config->admin.mode) != 0) {
    (void)::unlink(tmp.c_str());
    return fail(Errc::invalid_argument, where + ": cannot chmod: " + std::strerror(errno));
  }
  acceptor->listen(asio::socket_base::max_listen_connections, bec);
  if (bec || ::rename(tmp.c_str(), path_.c_str()) != 0) {
    (void)::unlink(tmp.c_str());
    return fail(Errc::invalid_argument, where + ": cannot listen or rename into place");
  }
  acceptor_ = std::move(acceptor);
  return {};
}

void AdminServer::start() {
  running_ = true;
  if (acceptor_) asio::co_spawn(acceptor_->get_executor(), accept_loop(), asio::detached);
  asio::co_spawn(purge_timer_.get_executor(), purge_loop(), asio::detached);
}

void AdminServer::stop() {
  running_ = false;
  asio::post(io_, [this] {
    purge_timer_.cancel();
    if (acceptor_) {
      boost::system::error_code ec;
      acceptor_->close(ec);
    }
  });
  if (acceptor_) (void)::unlink(path_.c_str());
}

asio::awaitable<void> AdminServer::purge_loop() {
  while (running_) {
    purge_timer_.expires_after(kPurgeInterval);
    auto [ec] = co_await purge_timer_.async_wait(kTuple);
    if (ec || !running_) break;
    std::optional<kms::Result<std::size_t>> purged;
    const std::function<void()> job = [&] { purged.emplace(deps_.tokens->purge_expired(now_unix())); };
    co_await on_pool(*deps_.blocking, job);
    if (!*purged)
      log::error("purging expired tokens failed", {{"reason", (*purged).error().message}});
    else if (**purged > 0)
      log::info("purged expired tokens", {{"count", **purged}});
  }
}

asio::awaitable<void> AdminServer::accept_loop() {
  while (running_) {
    auto [ec, socket] = co_await acceptor_->async_accept(asio::make_strand(io_), kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !running_) break;
      continue;
    }
    set_cloexec(socket.native_handle());
    if (sessions_.fetch_add(1) >= kMaxSessions) {
      --sessions_;
      log::warn("admin: too many connections, one closed", {{"limit", kMaxSessions}});
      continue;  // closed by the socket's destructor
    }
    auto executor = socket.get_executor();
    asio::co_spawn(executor, session(std::move(socket)), asio::detached);
  }
}

void AdminServer::audit(const Peer& peer, std::string_view op, std::string_view accessor, unsigned status,
                        std::string_view error) {
  if (deps_.audit == nullptr) return;
  AuditRecord r;
  r.request_id = kms::hex_encode(kms::SecureBytes::random(8).span());  // an identifier, not a secret
  r.remote = "unix:uid=" + std::to_string(peer.uid) + ",pid=" + std::to_string(peer.pid);
  r.accessor = std::string(accessor);
  r.method = "ADMIN";
  r.path = "admin/" + std::string(op);
  r.operation = std::string(op);
  r.status = status;
  r.error = std::string(error);
  if (auto w = deps_.audit->write(r); !w) {
    log::error("admin: audit log unavailable", {{"op", op}, {"reason", w.error().message}});
  }
}

// Who is on the other end of an admin connection (SO_PEERCRED); nullopt, logged, if unknown.
std::optional<AdminServer::Peer> AdminServer::peer_of(Socket& socket) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred)) {
    log::error("admin: cannot read peer credentials; connection closed", {{"errno", errno}});
    return std::nullopt;
  }
  return Peer{static_cast<std::int64_t>(cred.uid), static_cast<std::int64_t>(cred.gid),
              static_cast<std::int64_t>(cred.pid)};
}

asio::awaitable<void> AdminServer::session(Socket plain) {
  struct Count {
    std::atomic<int>& n;
    ~Count() { --n; }
  } count{sessions_};
  auto socket = std::make_shared<Socket>(std::move(plain));
  const auto timeout = deps_.config->admin.timeout;
  asio::steady_timer deadline(socket->get_executor());
  auto arm = [&] {
    deadline.expires_after(timeout);
    deadline.async_wait([weak = std::weak_ptr<Socket>(socket)](const boost::system::error_code& ec) {
      if (ec) return;
      if (auto s = weak.lock()) {
        boost::system::error_code ignored;
        s->close(ignored);
      }
    });
  };
  auto send = [&](const Answer& a) -> asio::awaitable<void> {
    arm();
    (void)co_await asio::async_write(*socket, asio::buffer(a.line.data(), a.line.size()), kTuple);
    deadline.cancel();
  };

  try {
    // Who is on the other end: checked before a byte is read.
    const std::optional<Peer> peer_found = peer_of(*socket);
    if (!peer_found) co_return;
    const Peer peer = *peer_found;
    const auto self = static_cast<std::int64_t>(::geteuid());
    if (peer.uid != 0 && peer.uid != self) {
      const std::string msg =
          "permission denied: the admin socket serves only root (uid 0) and the service user (uid " +
          std::to_string(self) + "); peer uid " + std::to_string(peer.uid);
      log::warn("admin: refused connection", {{"uid", peer.uid}, {"gid", peer.gid}, {"pid", peer.pid}});
      audit(peer, "connect", "", 403, msg);
      co_await send(Answer::err(Errc::permission_denied, msg));
      co_return;
    }

    // One request line, in locked memory (it may carry a PIN).
    kms::SecureBytes buf(kMaxRequest);
    std::size_t have = 0;
    std::size_t end = kMaxRequest;
    arm();
    while (end == kMaxRequest) {
      if (have == kMaxRequest) {
        deadline.cancel();
        co_await send(Answer::err(Errc::invalid_argument, "request line longer than 64 KiB"));
        co_return;
      }
      auto [ec, n] = co_await socket->async_read_some(asio::buffer(buf.data() + have, kMaxRequest - have), kTuple);
      for (std::size_t i = have; i < have + n; ++i) {
        if (buf.data()[i] == '\n') {
          end = i;
          break;
        }
      }
      have += n;
      if (ec) {
        if (ec == asio::error::eof && have > 0 && end == kMaxRequest) end = have;  // last line without '\n'
        if (end == kMaxRequest) co_return;                                         // timed out (closed) or gone
      }
    }
    deadline.cancel();

    std::string op;
    std::string accessor;
    Answer answer =
        co_await dispatch(peer, std::string_view(reinterpret_cast<const char*>(buf.data()), end), op, accessor);
    buf.clear();
    if (op.empty()) op = "invalid";
    log::info("admin request", {{"op", op}, {"uid", peer.uid}, {"pid", peer.pid}, {"status", answer.status}});
    audit(peer, op, accessor, answer.status, answer.error);
    co_await send(answer);
  } catch (const std::exception& e) {
    log::error("admin: session failed", {{"reason", e.what()}});
  }
}

AdminServer::Answer AdminServer::status() {
  const Config& cfg = *deps_.config;
  // null while sealed (the keyring key is known once unsealed)
  auto keyring_key_value = [&]() -> json::value {
    if (deps_.keyring == nullptr) return nullptr;
    auto kk = deps_.keyring->keyring_key_status();
    if (!kk) return nullptr;
    return keyring_key_json(*kk);
  };
  const SealStatus s = deps_.seal->status();
  json::array sources;
  for (const auto k : cfg.pin.sources) sources.emplace_back(pin_source_name(k));
  std::int64_t retry_ms = 0;
  {
    std::lock_guard lock(unseal_mu_);
    const auto now = std::chrono::steady_clock::now();
    if (now < next_unseal_) {
      retry_ms = std::chrono::duration_cast<std::chrono::milliseconds>(next_unseal_ - now).count();
    }
  }
  return Answer::ok(json::object{
      {"sealed", s.sealed},
      {"sealed_reason", s.reason},
      {"type", deps_.root_kind},
      {"since_unix", s.since_unix},
      {"unseal_count", s.unseal_count},
      {"root_key_check_value", s.root_kcv},
      {"keyring_key", keyring_key_value()},
      {"pin_sources", deps_.root_kind == "pkcs11" ? json::value(std::move(sources)) : json::value(nullptr)},
      {"unseal_retry_after_ms", retry_ms},
      {"dev", cfg.dev},
      {"last_reload", deps_.reload_status ? json::value(deps_.reload_status()) : json::value(nullptr)},
  });
}

asio::awaitable<AdminServer::Answer> AdminServer::dispatch(const Peer& peer, std::string_view line, std::string& op,
                                                           std::string& accessor) {
  (void)peer;
  auto parsed = parse_admin_request(line, &op);
  if (!parsed) co_return Answer::err(parsed.error());
  AdminRequest& req = *parsed;

  if (op == "status") co_return status();

  if (op == "token.create") {
    TokenInfo info;
    for (const auto& name : req.policies) {
      if (!deps_.authorizer->has_policy(name)) {
        co_return Answer::err(Errc::invalid_argument,
                              "unknown policy '" + name + "' (declare it under policies: in the configuration)");
      }
    }
    info.policies = std::move(req.policies);
    info.ttl_s = req.ttl_s;
    info.renewable = req.renewable;
    info.display_name = std::move(req.display_name);
    std::optional<kms::Result<TokenStore::Created>> result;
    const std::function<void()> job = [&] { result.emplace(deps_.tokens->create(info, now_unix())); };
    co_await on_pool(*deps_.blocking, job);
    auto& created = *result;
    if (!created) co_return Answer::err(created.error());
    accessor = created->info.accessor;
    // The token goes into locked memory only: this arena, then the answer line.
    LockedJson out(8 * 1024, 64 * 1024);
    json::object data = json::object(token_json(created->info), out.storage());
    data["token"] = json::string(
        std::string_view(reinterpret_cast<const char*>(created->token.data()), created->token.size()), out.storage());
    Answer a = Answer::ok(data);
    a.created_token = true;
    log::info("token created",
              {{"accessor", accessor}, {"display_name", created->info.display_name}, {"ttl", created->info.ttl_s}});
    co_return a;
  }

  if (op == "token.list") {
    std::optional<kms::Result<std::size_t>> purged;
    const std::function<void()> job = [&] { purged.emplace(deps_.tokens->purge_expired(now_unix())); };
    co_await on_pool(*deps_.blocking, job);
    if (!*purged) co_return Answer::err((*purged).error());
    json::array list;
    for (const auto& t : deps_.tokens->list(now_unix())) list.push_back(token_json(t));
    co_return Answer::ok(json::object{{"tokens", std::move(list)}});
  }

  if (op == "token.lookup" || op == "token.revoke") {
    accessor = req.accessor;
    if (op == "token.lookup") {
      auto t = deps_.tokens->lookup_accessor(accessor, now_unix());
      if (!t) co_return Answer::err(Errc::not_found, "no live token with accessor " + accessor);
      co_return Answer::ok(token_json(*t));
    }
    std::optional<kms::Result<TokenInfo>> result;
    const std::function<void()> job = [&] { result.emplace(deps_.tokens->revoke(accessor)); };
    co_await on_pool(*deps_.blocking, job);
    auto& revoked = *result;
    if (!revoked) co_return Answer::err(revoked.error());
    log::info("token revoked", {{"accessor", accessor}, {"display_name", revoked->display_name}});
    co_return Answer::ok(token_json(*revoked));
  }

  if (op == "unseal") co_return co_await unseal(req.pin);

  if (op == "tpm.reseal") co_return co_await reseal(req.target, std::move(req.pcrs));

  if (op == "snapshot.now") co_return co_await snapshot_now();

  if (op == "kms.rotate") co_return co_await kms_rotate();

  if (op == "cluster.status") co_return co_await cluster_status();

  if (op == "keyring.rotate-key") co_return co_await rotate_keyring_key();

  co_return Answer::err(Errc::internal, "unhandled op '" + op + "'");
}

asio::awaitable<AdminServer::Answer> AdminServer::unseal(const kms::SecureBytes& pin) {
  const Config& cfg = *deps_.config;
  if (deps_.root_kind != "pkcs11" || !has_source(cfg, PinSourceKind::typed) || !deps_.pins) {
    co_return Answer::err(Errc::invalid_argument,
                          "this rootseald takes no typed PIN: add typed to pin.sources (root_of_trust: pkcs11)");
  }
  {
    std::lock_guard lock(unseal_mu_);
    const auto now = std::chrono::steady_clock::now();
    if (unseal_busy_) co_return Answer::err(Errc::conflict, "another unseal is in progress");
    if (now < next_unseal_) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next_unseal_ - now).count();
      co_return Answer::err(Errc::permission_denied,
                            std::to_string(wrong_pins_) + " wrong PIN(s): the next attempt is allowed in " +
                                std::to_string((ms + 999) / 1000) + "s",
                            ms, "rate_limited");
    }
    unseal_busy_ = true;
  }
  struct Busy {
    AdminServer* self;
    ~Busy() {
      std::lock_guard lock(self->unseal_mu_);
      self->unseal_busy_ = false;
    }
  } busy{this};

  if (!deps_.seal->status().sealed) {
    co_return Answer::ok(json::object{{"sealed", false}, {"pin_used", false}, {"message", "already unsealed"}});
  }
  deps_.pins->put_typed(pin.clone());
  struct Outcome {
    SealStatus status;
    bool used = false;
  };
  Outcome outcome;
  const std::function<void()> job = [&] {
    outcome.status = deps_.seal->check_now();
    outcome.used = deps_.pins->finish_typed();  // wipes it if no login took it
  };
  co_await on_pool(*deps_.blocking, job);
  if (!outcome.status.sealed) {
    std::lock_guard lock(unseal_mu_);
    wrong_pins_ = 0;
    next_unseal_ = {};
    log::info("unsealed with a typed PIN", {{"pin_used", outcome.used}});
    co_return Answer::ok(json::object{{"sealed", false}, {"pin_used", outcome.used}, {"message", "unsealed"}});
  }
  if (!outcome.used) {
    co_return Answer::err(Errc::sealed, "still sealed, the typed PIN was not tried: " + outcome.status.reason);
  }
  std::int64_t delay_ms = 0;
  {
    std::lock_guard lock(unseal_mu_);
    ++wrong_pins_;
    auto delay = cfg.admin.unseal_delay;
    for (unsigned i = 1; i < wrong_pins_ && delay < cfg.admin.max_unseal_delay; ++i) delay *= 2;
    delay = std::min(delay, cfg.admin.max_unseal_delay);
    next_unseal_ = std::chrono::steady_clock::now() + delay;
    delay_ms = delay.count();
  }
  log::warn("typed PIN did not unseal",
            {{"wrong_pins", wrong_pins_}, {"next_attempt_in_ms", delay_ms}, {"reason", outcome.status.reason}});
  co_return Answer::err(Errc::sealed, "still sealed: " + outcome.status.reason, delay_ms);
}

asio::awaitable<AdminServer::Answer> AdminServer::snapshot_now() {
  if (deps_.snapshots == nullptr) {
    co_return Answer::err(Errc::invalid_argument,
                          "this rootseald takes no snapshots: add a snapshots: section (enabled) to its configuration");
  }
  auto r = co_await deps_.snapshots->run_now();
  if (!r) co_return Answer::err(r.error());
  co_return Answer::ok(json::object{{"snapshot", r->name},
                                    {"bytes", r->bytes},
                                    {"keys", r->keys},
                                    {"versions", r->versions},
                                    {"destinations", r->destinations}});
}

asio::awaitable<AdminServer::Answer> AdminServer::cluster_status() {
  if (!deps_.cluster_status) co_return Answer::err(Errc::internal, "cluster status is not available");
  json::object status;
  const std::function<void()> job = [&] { status = deps_.cluster_status(); };
  co_await on_pool(*deps_.blocking, job);
  co_return Answer::ok(std::move(status));
}

asio::awaitable<AdminServer::Answer> AdminServer::kms_rotate() {
  if (!deps_.kms_rotate) {
    co_return Answer::err(Errc::invalid_argument,
                          "this rootseald serves no KMS plugin: set kms_plugin.enabled in its configuration");
  }
  std::optional<kms::Result<AdminDeps::KmsRotation>> r;
  const std::function<void()> job = [&] { r.emplace(deps_.kms_rotate()); };
  co_await on_pool(*deps_.blocking, job);
  if (!*r) co_return Answer::err((*r).error());
  const auto& rot = **r;
  co_return Answer::ok(json::object{{"key", rot.key}, {"version", rot.version}, {"key_id", rot.key_id}});
}

asio::awaitable<AdminServer::Answer> AdminServer::rotate_keyring_key() {
  if (deps_.keyring == nullptr) co_return Answer::err(Errc::internal, "the keyring is not available");
  std::optional<kms::Result<kms::KeyringKeyStatus>> r;
  const std::function<void()> job = [&] { r.emplace(deps_.keyring->rotate_keyring_key()); };
  co_await on_pool(*deps_.blocking, job);
  if (!*r) co_return Answer::err((*r).error());
  const auto& st = **r;
  log::info("keyring key rotated", {{"keyring_key", static_cast<std::int64_t>(st.id)},
                                    {"keyring_key_kcv", st.kcv},
                                    {"pending_versions", static_cast<std::int64_t>(st.pending_versions)}});
  co_return Answer::ok(keyring_key_json(st));
}

asio::awaitable<AdminServer::Answer> AdminServer::reseal(std::string_view target,
                                                         std::optional<std::vector<std::uint32_t>> pcrs) {
  const Config& cfg = *deps_.config;
  std::string what(target);
  if (what.empty()) what = deps_.root_kind == "tpm" ? "root" : "pin";
  if (what != "root" && what != "pin") co_return Answer::err(Errc::invalid_argument, "target: root or pin");
  const auto effective = pcrs ? *pcrs : cfg.tpm.pcrs;

  if (what == "root") {
    if (deps_.root_kind != "tpm" || !deps_.reseal_root) {
      co_return Answer::err(Errc::invalid_argument,
                            "the root key is not TPM-sealed here (root_of_trust: " + deps_.root_kind + ")");
    }
    std::optional<kms::Result<void>> r;
    const std::function<void()> job = [&] { r.emplace(deps_.reseal_root(pcrs)); };
    co_await on_pool(*deps_.blocking, job);
    if (!*r) co_return Answer::err((*r).error());
    log::info("TPM root key resealed", {{"pcrs", pcr_text(effective)}, {"file", cfg.tpm.sealed_file.string()}});
    co_return Answer::ok(
        json::object{{"target", "root"}, {"file", cfg.tpm.sealed_file.string()}, {"pcrs", pcr_text(effective)}});
  }

  if (!has_source(cfg, PinSourceKind::tpm) || !deps_.pins) {
    co_return Answer::err(Errc::invalid_argument, "the HSM PIN is not TPM-sealed here (add tpm to pin.sources)");
  }
  auto pin = deps_.pins->confirmed();
  if (!pin || deps_.seal->status().sealed) {
    co_return Answer::err(Errc::sealed,
                          "rootseald holds no HSM PIN that logged in: unseal first (rootseal unseal types the PIN), or "
                          "seal it offline with rootseal tpm seal-pin");
  }
  std::optional<kms::Result<void>> r;
  const std::function<void()> job = [&] {
    auto policy = tpm_seal_policy(cfg.tpm);
    if (!policy) {
      r.emplace(std::unexpected(policy.error()));
      return;
    }
    if (pcrs) policy->pcrs = *pcrs;
    // Sealed, unsealed once to check, then renamed over the old file.
    r.emplace(tpm::seal_secret_to_file(cfg.tpm.tcti, *policy, *pin, cfg.pin.tpm_sealed_file));
  };
  co_await on_pool(*deps_.blocking, job);
  pin.reset();
  if (!*r) co_return Answer::err((*r).error());
  log::info("TPM-sealed HSM PIN resealed", {{"pcrs", pcr_text(effective)}, {"file", cfg.pin.tpm_sealed_file.string()}});
  co_return Answer::ok(
      json::object{{"target", "pin"}, {"file", cfg.pin.tpm_sealed_file.string()}, {"pcrs", pcr_text(effective)}});
}

}  // namespace rootseal::daemon
