#include "rootseal/kmsplugin/server.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "api.grpc.pb.h"

namespace rootseal::kmsplugin {

using kms::Errc;
using kms::fail;

namespace {

grpc::Status to_grpc(const Failure& f) {
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(f.code)), f.message);
}

// Wipes a request field that held plaintext once it has been used.
void wipe(const std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(const_cast<char*>(s.data()), s.size());
}

std::string cut(const std::string& s, std::size_t n) { return s.size() <= n ? s : s.substr(0, n); }

kms::Result<gid_t> group_id(const std::string& name) {
  group gr{};
  group* found = nullptr;
  std::vector<char> buf(16384);
  if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return fail(Errc::invalid_argument, "kms_plugin.group: no group named " + name);
  }
  return found->gr_gid;
}

sockaddr_un address_of(const std::filesystem::path& p) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, p.c_str(), std::min(p.native().size(), sizeof(sa.sun_path) - 1));
  return sa;
}

}  // namespace

struct Server::Impl final : v2::KeyManagementService::Service {
  Handler& handler;
  ServerOptions options;
  ServerHooks hooks;
  int listen_fd = -1;
  int stop_fd = -1;
  std::unique_ptr<grpc::Server> server;
  std::jthread acceptor;
  std::mutex peers_mu;
  std::map<int, long> peers;  // connection fd -> peer uid, set when accepted

  Impl(Handler& h, ServerOptions o, ServerHooks k) : handler(h), options(std::move(o)), hooks(std::move(k)) {}

  long peer_uid(grpc::ServerContext* ctx) {
    // A connection added with AddInsecureChannelFromFd is named "fd:<n>".
    const std::string peer = ctx->peer();
    int fd = -1;
    if (peer.rfind("fd:", 0) != 0) return -1;
    const auto r = std::from_chars(peer.data() + 3, peer.data() + peer.size(), fd);
    if (r.ec != std::errc{}) return -1;
    std::lock_guard lock(peers_mu);
    const auto it = peers.find(fd);
    return it == peers.end() ? -1 : it->second;
  }

  // Audits the call; an audit failure turns the answer into UNAVAILABLE.
  grpc::Status finish(CallRecord& record, grpc::ServerContext* ctx, std::chrono::steady_clock::time_point started) {
    record.peer_uid = peer_uid(ctx);
    record.elapsed = std::chrono::steady_clock::now() - started;
    if (hooks.on_call) {
      if (auto audited = hooks.on_call(record); !audited) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "audit log unavailable: " + audited.error().message);
      }
    }
    if (record.code == Code::ok) return grpc::Status::OK;
    return to_grpc(Failure{record.code, record.message});
  }

  grpc::Status Status(grpc::ServerContext* ctx, const v2::StatusRequest*, v2::StatusResponse* out) override {
    const auto started = std::chrono::steady_clock::now();
    CallRecord record;
    record.method = "Status";
    auto answer = handler.status();
    if (answer) {
      record.key_id = answer->key_id;
      out->set_version(answer->version);
      out->set_healthz(answer->healthz);
      out->set_key_id(answer->key_id);
    } else {
      record.code = answer.error().code;
      record.message = answer.error().message;
    }
    return finish(record, ctx, started);
  }

  grpc::Status Encrypt(grpc::ServerContext* ctx, const v2::EncryptRequest* in, v2::EncryptResponse* out) override {
    const auto started = std::chrono::steady_clock::now();
    CallRecord record;
    record.method = "Encrypt";
    record.uid = cut(in->uid(), kMaxUidBytes);
    const auto& plaintext = in->plaintext();
    auto answer =
        in->uid().size() > kMaxUidBytes
            ? Answer<EncryptAnswer>(std::unexpected(Failure{Code::invalid_argument, "uid longer than 256 bytes"}))
            : handler.encrypt({reinterpret_cast<const std::uint8_t*>(plaintext.data()), plaintext.size()});
    wipe(plaintext);
    if (answer) {
      record.key_id = answer->key_id;
      record.key_version = answer->key_version;
      out->set_ciphertext(std::move(answer->ciphertext));
      out->set_key_id(std::move(answer->key_id));
      for (auto& [k, v] : answer->annotations) (*out->mutable_annotations())[k] = v;
    } else {
      record.code = answer.error().code;
      record.message = answer.error().message;
    }
    auto status = finish(record, ctx, started);
    if (!status.ok()) out->Clear();
    return status;
  }

  grpc::Status Decrypt(grpc::ServerContext* ctx, const v2::DecryptRequest* in, v2::DecryptResponse* out) override {
    const auto started = std::chrono::steady_clock::now();
    CallRecord record;
    record.method = "Decrypt";
    record.uid = cut(in->uid(), kMaxUidBytes);
    record.key_id = cut(in->key_id(), kMaxKeyIdBytes);
    std::vector<Annotation> annotations;
    annotations.reserve(in->annotations().size());
    for (const auto& [k, v] : in->annotations()) annotations.emplace_back(k, v);
    const auto& ct = in->ciphertext();
    auto answer =
        in->uid().size() > kMaxUidBytes
            ? Answer<DecryptAnswer>(std::unexpected(Failure{Code::invalid_argument, "uid longer than 256 bytes"}))
            : handler.decrypt({reinterpret_cast<const std::uint8_t*>(ct.data()), ct.size()}, in->key_id(), annotations);
    if (answer) {
      record.key_version = answer->key_version;
    } else {
      record.code = answer.error().code;
      record.message = answer.error().message;
    }
    auto status = finish(record, ctx, started);
    // Only now, audited, does the plaintext leave locked memory (for gRPC's
    // serialization: see docs/kms-plugin.md, "Known limits").
    if (status.ok()) {
      out->set_plaintext(reinterpret_cast<const char*>(answer->plaintext.data()), answer->plaintext.size());
    }
    return status;
  }

  kms::Result<void> bind_socket() {
    const auto& path = options.socket;
    const std::string where = "kms_plugin.socket " + path.string();
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) return fail(Errc::invalid_argument, where + ": cannot create its folder: " + ec.message());
    const sockaddr_un sa = address_of(path);
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
      // Replaced only if nobody accepts on it (a stale one left by a crash).
      if (!S_ISSOCK(st.st_mode)) return fail(Errc::invalid_argument, where + ": exists and is not a socket");
      const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (probe < 0) return fail(Errc::internal, where + ": socket(): " + kms::errno_text(errno));
      const int rc = ::connect(probe, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa));
      ::close(probe);
      if (rc == 0) return fail(Errc::invalid_argument, where + ": another process is serving it");
    }
    gid_t gid = static_cast<gid_t>(-1);
    if (!options.group.empty()) ROOTSEAL_TRY_ASSIGN(gid, group_id(options.group));
    // Bound under a temporary name, mode and group set, then renamed into
    // place: the socket never exists at its path with the wrong mode.
    const auto tmp = path.parent_path() / ("." + path.filename().string() + "." + std::to_string(::getpid()));
    if (tmp.native().size() >= sizeof(sockaddr_un::sun_path)) {
      return fail(Errc::invalid_argument, where + ": path too long for a unix socket");
    }
    (void)::unlink(tmp.c_str());
    listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0) return fail(Errc::internal, where + ": socket(): " + kms::errno_text(errno));
    const sockaddr_un tmp_sa = address_of(tmp);
    auto undo = [&](const std::string& what) {
      const int err = errno;
      ::close(listen_fd);
      listen_fd = -1;
      (void)::unlink(tmp.c_str());
      return fail(Errc::invalid_argument, where + ": " + what + ": " + kms::errno_text(err));
    };
    if (::bind(listen_fd, reinterpret_cast<const sockaddr*>(&tmp_sa), sizeof(tmp_sa)) != 0) return undo("bind");
    if (::chmod(tmp.c_str(), options.mode) != 0) return undo("chmod");
    if (gid != static_cast<gid_t>(-1) && ::chown(tmp.c_str(), static_cast<uid_t>(-1), gid) != 0) return undo("chown");
    if (::listen(listen_fd, SOMAXCONN) != 0) return undo("listen");
    if (::rename(tmp.c_str(), path.c_str()) != 0) return undo("rename into place");
    return {};
  }

  void accept_loop(const std::stop_token& stop) {
    while (!stop.stop_requested()) {
      pollfd fds[2] = {{listen_fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      if ((fds[0].revents & POLLIN) == 0) continue;
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        // Out of descriptors or memory: the listening socket stays readable,
        // so wait a little (or for stop) instead of spinning; others
        // (EAGAIN, ECONNABORTED) retry at the next poll.
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          pollfd stop_only{stop_fd, POLLIN, 0};
          (void)::poll(&stop_only, 1, 100);
        }
        continue;
      }
      ucred cred{};
      socklen_t len = sizeof(cred);
      const bool known = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof(cred);
      if (!known || !options.allowed_uids.contains(cred.uid)) {
        ::close(fd);
        if (hooks.on_refused) hooks.on_refused(known ? static_cast<long>(cred.uid) : -1);
        continue;
      }
      {
        std::lock_guard lock(peers_mu);
        peers[fd] = static_cast<long>(cred.uid);
      }
      grpc::AddInsecureChannelFromFd(server.get(), fd);  // gRPC owns fd from here
    }
  }
};

Server::Server(Handler& handler, ServerOptions options, ServerHooks hooks)
    : impl_(std::make_unique<Impl>(handler, std::move(options), std::move(hooks))) {}

Server::~Server() { stop(); }

const std::filesystem::path& Server::path() const noexcept { return impl_->options.socket; }

kms::Result<void> Server::start() {
  auto& s = *impl_;
  ROOTSEAL_TRY(s.bind_socket());
  s.stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s.stop_fd < 0) {
    const int err = errno;
    stop();
    return fail(Errc::internal, "kms_plugin: eventfd: " + kms::errno_text(err));
  }
  grpc::ServerBuilder builder;
  builder.RegisterService(&s);
  // Requests are a few hundred bytes; annotations at most 32 KiB.
  builder.SetMaxReceiveMessageSize(64 * 1024);
  builder.SetMaxSendMessageSize(64 * 1024);
  s.server = builder.BuildAndStart();
  if (!s.server) {
    stop();
    return fail(Errc::internal, "kms_plugin: the gRPC server did not start");
  }
  s.acceptor = std::jthread([&s](const std::stop_token& stop) { s.accept_loop(stop); });
  return {};
}

void Server::stop() {
  auto& s = *impl_;
  if (s.acceptor.joinable()) {
    s.acceptor.request_stop();
    const std::uint64_t one = 1;
    (void)!::write(s.stop_fd, &one, sizeof one);
    s.acceptor.join();
  }
  if (s.listen_fd >= 0) {
    ::close(s.listen_fd);
    s.listen_fd = -1;
    (void)::unlink(s.options.socket.c_str());
  }
  if (s.server) {
    s.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    s.server->Wait();
    s.server.reset();
  }
  if (s.stop_fd >= 0) {
    ::close(s.stop_fd);
    s.stop_fd = -1;
  }
}

}  // namespace rootseal::kmsplugin
