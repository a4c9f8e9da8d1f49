#include "scripted_server.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "fuzz_util.hpp"

namespace rootseal::fuzz {

std::vector<ScriptedAnswer> parse_script(std::string_view in, bool keep_retryable) {
  std::vector<ScriptedAnswer> out;
  while (!in.empty() && out.size() < 16) {
    std::string_view block = next_part(in, "\n--\n");
    const std::string_view status_line = next_line(block);
    ScriptedAnswer a;
    unsigned s = 0;
    for (char c : status_line.substr(0, 3)) {
      if (c < '0' || c > '9') break;
      s = s * 10 + static_cast<unsigned>(c - '0');
    }
    if (s < 200 || s > 599) s = 200;
    if (!keep_retryable && (s == 429 || s >= 500)) s = 400;
    a.status = s;
    a.body = std::string(block);
    out.push_back(std::move(a));
  }
  return out;
}

struct ScriptedServer::Impl {
  int listener = -1;
  std::uint16_t port = 0;
  std::mutex mu;
  std::deque<ScriptedAnswer> script;
  std::size_t served = 0;

  // Accepted connections waiting for a worker: a fixed ring, so handing one
  // over allocates nothing.
  static constexpr std::size_t kQueue = 256;
  std::mutex qmu;
  std::condition_variable qcv;
  int queue[kQueue] = {};
  std::size_t qhead = 0;
  std::size_t qcount = 0;

  ScriptedAnswer next() {
    std::lock_guard lock(mu);
    ++served;
    if (script.empty()) return ScriptedAnswer{404, ""};
    ScriptedAnswer a = std::move(script.front());
    script.pop_front();
    return a;
  }
};

namespace {

bool send_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::size_t content_length(std::string_view head) {
  std::size_t len = 0;
  std::size_t pos = 0;
  while ((pos = head.find('\n', pos)) != std::string_view::npos) {
    ++pos;
    const std::string_view rest = head.substr(pos);
    if (rest.size() > 15 && ::strncasecmp(rest.data(), "content-length:", 15) == 0) {
      len = 0;
      for (std::size_t i = 15; i < rest.size() && len < (1u << 24); ++i) {
        if (rest[i] >= '0' && rest[i] <= '9')
          len = len * 10 + static_cast<std::size_t>(rest[i] - '0');
        else if (rest[i] != ' ')
          break;
      }
    }
  }
  return len;
}

// One connection. Between requests (blocked in recv) it holds no heap
// memory, only its stack: a connection the client dropped is noticed
// asynchronously, possibly while libFuzzer checks the next input for leaks.
// The buffers are small (inputs are at most -max_len=4096 bytes; a request
// or answer that does not fit closes the connection): LeakSanitizer scans
// every worker's stack whenever it runs.
constexpr std::size_t kBuf = 32 * 1024;

void serve(const std::shared_ptr<ScriptedServer::Impl>& impl, int fd) {
  char buf[kBuf];
  char out[kBuf];
  std::size_t have = 0;
  auto done = [&] { ::close(fd); };
  for (;;) {
    std::size_t end;
    while ((end = std::string_view(buf, have).find("\r\n\r\n")) == std::string_view::npos) {
      if (have == kBuf) return done();
      const ssize_t n = ::recv(fd, buf + have, kBuf - have, 0);
      if (n <= 0) return done();
      have += static_cast<std::size_t>(n);
    }
    const std::size_t need = end + 4 + content_length(std::string_view(buf, end + 2));
    if (need > kBuf) return done();
    while (have < need) {
      const ssize_t n = ::recv(fd, buf + have, kBuf - have, 0);
      if (n <= 0) return done();
      have += static_cast<std::size_t>(n);
    }
    std::memmove(buf, buf + need, have - need);
    have -= need;
    // The answer is copied into the stack buffer and freed before the first
    // byte goes out: once the client has the response, this thread frees
    // nothing more of the input (libFuzzer's per-input malloc/free balance,
    // which otherwise sends every input through a full LeakSanitizer scan).
    std::size_t out_len = 0;
    {
      const ScriptedAnswer a = impl->next();
      const int n = std::snprintf(
          out, kBuf, "HTTP/1.1 %u Scripted\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", a.status,
          a.body.size());
      if (n <= 0 || static_cast<std::size_t>(n) + a.body.size() > kBuf) return done();
      std::memcpy(out + n, a.body.data(), a.body.size());
      out_len = static_cast<std::size_t>(n) + a.body.size();
    }
    if (!send_all(fd, std::string_view(out, out_len))) return done();
  }
}

}  // namespace

ScriptedServer::ScriptedServer() : impl_(std::make_shared<Impl>()) {
  impl_->listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (impl_->listener < 0 || ::bind(impl_->listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(impl_->listener, 64) != 0 ||
      ::getsockname(impl_->listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    fail_property("scripted server: cannot listen on 127.0.0.1");
  }
  impl_->port = ntohs(addr.sin_port);
  // A fixed pool of workers, one connection each at a time, started here and
  // living as long as the process (the fuzz run). Not a thread per
  // connection: a thread's exit frees its TLS asynchronously, after the input
  // that closed the connection, and libFuzzer then sees more mallocs than
  // frees and runs a full LeakSanitizer scan on every input. kWorkers covers
  // a client's whole pool (max_connections 16) plus its streams.
  constexpr int kWorkers = 24;
  for (int i = 0; i < kWorkers; ++i) {
    std::thread([impl = impl_] {
      for (;;) {
        int fd = -1;
        {
          std::unique_lock lock(impl->qmu);
          impl->qcv.wait(lock, [&] { return impl->qcount > 0; });
          fd = impl->queue[impl->qhead];
          impl->qhead = (impl->qhead + 1) % Impl::kQueue;
          --impl->qcount;
        }
        serve(impl, fd);
      }
    }).detach();
  }
  std::thread([impl = impl_] {
    for (;;) {
      const int fd = ::accept4(impl->listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard lock(impl->qmu);
      if (impl->qcount == Impl::kQueue) {
        ::close(fd);  // more connections than any client here opens: refuse
        continue;
      }
      impl->queue[(impl->qhead + impl->qcount) % Impl::kQueue] = fd;
      ++impl->qcount;
      impl->qcv.notify_one();
    }
  }).detach();
}

ScriptedServer::~ScriptedServer() = default;

std::string ScriptedServer::url() const { return "http://127.0.0.1:" + std::to_string(impl_->port); }

void ScriptedServer::set_script(std::vector<ScriptedAnswer> answers) {
  std::lock_guard lock(impl_->mu);
  impl_->script.assign(std::make_move_iterator(answers.begin()), std::make_move_iterator(answers.end()));
  impl_->served = 0;
}

std::size_t ScriptedServer::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->served;
}

}  // namespace rootseal::fuzz
