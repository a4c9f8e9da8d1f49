#include "scripted_transport.hpp"

#include <strings.h>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/error.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "fuzz_util.hpp"

namespace rootseal::fuzz {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

bool retryable(unsigned s) { return s == 429 || s >= 500; }

// The status of a raw answer's status line ("HTTP/1.1 503 ..."), made 400
// when it is one the clients retry after a pause; 0 when there is none.
unsigned raw_status(std::string& bytes, bool keep_retryable) {
  const auto sp = bytes.find(' ');
  if (sp == std::string::npos || sp > bytes.find('\n') || bytes.size() < sp + 4) return 0;
  unsigned s = 0;
  for (std::size_t i = sp + 1; i < sp + 4; ++i) {
    if (bytes[i] < '0' || bytes[i] > '9') return 0;
    s = s * 10 + static_cast<unsigned>(bytes[i] - '0');
  }
  if (!keep_retryable && retryable(s)) {
    bytes.replace(sp + 1, 3, "400");
    s = 400;
  }
  return s;
}

// The Content-Length of a request head (the client always sends one when
// there is a body).
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

// One connection: the client's request bytes in, the script's answers out.
// Every operation completes at once (posted): an answer is there as soon as
// its request is complete.
class ScriptedStream final : public net::ByteStream {
 public:
  ScriptedStream(asio::any_io_executor executor, ScriptedTransport& transport)
      : executor_(std::move(executor)), transport_(transport) {}

  executor_type get_executor() override { return executor_; }

  void read_some(asio::mutable_buffer into, Handler handler) override {
    boost::system::error_code ec;
    std::size_t n = 0;
    if (closed_) {
      ec = asio::error::operation_aborted;
    } else if (expired()) {
      ec = boost::beast::error::timeout;
    } else if (into.size() == 0) {
      // nothing to read into
    } else if (pos_ < out_.size()) {
      n = std::min(into.size(), out_.size() - pos_);
      std::memcpy(into.data(), out_.data() + pos_, n);
      pos_ += n;
      if (pos_ == out_.size()) {
        out_.clear();
        pos_ = 0;
      }
    } else {
      // No answer pending: the server has ended the connection (after a raw
      // answer), or would wait for a request the client never sends.
      ec = asio::error::eof;
    }
    complete(std::move(handler), ec, n);
  }

  void write_some(asio::const_buffer from, Handler handler) override {
    boost::system::error_code ec;
    std::size_t n = 0;
    if (closed_) {
      ec = asio::error::operation_aborted;
    } else if (ended_) {
      ec = asio::error::broken_pipe;
    } else if (expired()) {
      ec = boost::beast::error::timeout;
    } else {
      n = from.size();
      in_.append(static_cast<const char*>(from.data()), n);
      answer_complete_requests();
    }
    complete(std::move(handler), ec, n);
  }

  void expires_at(Clock::time_point deadline) override { deadline_ = deadline; }
  void close() override { closed_ = true; }

 private:
  bool expired() const { return deadline_ != Clock::time_point{} && Clock::now() >= deadline_; }

  void complete(Handler handler, boost::system::error_code ec, std::size_t n) {
    asio::post(executor_, [h = std::move(handler), ec, n]() mutable { std::move(h)(ec, n); });
  }

  void answer_complete_requests() {
    for (;;) {
      const auto end = in_.find("\r\n\r\n");
      if (end == std::string::npos) return;
      const std::size_t need = end + 4 + content_length(std::string_view(in_).substr(0, end + 2));
      if (in_.size() < need) return;
      in_.erase(0, need);
      bool last = false;
      out_ += transport_.next_answer(last);
      if (last) {
        ended_ = true;
        in_.clear();
        return;
      }
    }
  }

  asio::any_io_executor executor_;
  ScriptedTransport& transport_;
  std::string in_;
  std::string out_;
  std::size_t pos_ = 0;
  bool ended_ = false;
  bool closed_ = false;
  Clock::time_point deadline_{};
};

}  // namespace

std::vector<ScriptedAnswer> parse_script(std::string_view in, bool keep_retryable) {
  std::vector<ScriptedAnswer> out;
  while (!in.empty() && out.size() < 16) {
    std::string_view block = next_part(in, "\n--\n");
    ScriptedAnswer a;
    if (block.starts_with("HTTP/")) {
      a.raw = true;
      a.body = std::string(block);
      a.status = raw_status(a.body, keep_retryable);
      out.push_back(std::move(a));
      continue;
    }
    const std::string_view status_line = next_line(block);
    unsigned s = 0;
    for (char c : status_line.substr(0, 3)) {
      if (c < '0' || c > '9') break;
      s = s * 10 + static_cast<unsigned>(c - '0');
    }
    if (s < 200 || s > 599) s = 200;
    if (!keep_retryable && retryable(s)) s = 400;
    a.status = s;
    a.body = std::string(block);
    out.push_back(std::move(a));
  }
  return out;
}

bool any_raw(const std::vector<ScriptedAnswer>& answers) {
  return std::any_of(answers.begin(), answers.end(), [](const ScriptedAnswer& a) { return a.raw; });
}

void ScriptedTransport::set_script(std::vector<ScriptedAnswer> answers) {
  script_.assign(std::make_move_iterator(answers.begin()), std::make_move_iterator(answers.end()));
  served_ = 0;
}

std::string ScriptedTransport::next_answer(bool& end) {
  ++served_;
  end = false;
  if (script_.empty()) return "HTTP/1.1 404 Scripted\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n";
  ScriptedAnswer a = std::move(script_.front());
  script_.pop_front();
  if (a.raw) {
    end = true;
    return std::move(a.body);
  }
  char head[128];
  const int n = std::snprintf(head, sizeof head,
                              "HTTP/1.1 %u Scripted\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                              a.status, a.body.size());
  std::string bytes(head, static_cast<std::size_t>(n));
  bytes += a.body;
  return bytes;
}

boost::asio::awaitable<kms::Result<std::unique_ptr<net::ByteStream>>> ScriptedTransport::connect(
    boost::asio::any_io_executor executor, std::string_view, std::string_view, std::chrono::steady_clock::time_point) {
  co_return std::make_unique<ScriptedStream>(std::move(executor), *this);
}

ScriptedTransport& install_scripted_transport(boost::asio::execution_context& context) {
  static const auto transport = std::make_shared<ScriptedTransport>();  // lives for the whole run
  net::use_transport(context, transport);
  return *transport;
}

}  // namespace rootseal::fuzz
