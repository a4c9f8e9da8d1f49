// rootseal::net — the byte transport under the HTTP client.
//
// HttpClient speaks HTTP/1.1 (Beast's response parser, chunked and
// Content-Length bodies, keep-alive, streamed lines) over a connected byte
// stream. That stream is a TCP socket (with TLS for https://) unless a
// Transport has been installed on the execution context the client runs on
// (use_transport): then every connection of every HttpClient created
// afterwards on that context is a ByteStream the Transport opens, and the
// client's HTTP code runs over it unchanged. Such a transport carries plain
// HTTP only: HttpClient::create refuses an https:// URL on it.
//
// rootseald and rootseal never install one; an in-process transport lets a
// caller answer HTTP itself without sockets (the fuzz targets of remote
// answers, tests/fuzz/scripted_transport.hpp).
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string_view>

#include "rootseal/kms/error.hpp"

namespace rootseal::net {

// One connection. Also an Asio AsyncReadStream / AsyncWriteStream (the
// templates below), so Beast reads HTTP from it as from a socket.
class ByteStream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using Handler = boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;

  ByteStream() = default;
  virtual ~ByteStream() = default;
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  [[nodiscard]] virtual executor_type get_executor() = 0;
  // Reads at least one byte into `into` (none when it is empty), or fails
  // (boost::asio::error::eof when the peer has ended the stream). Writes at
  // least one byte of `from`. The handler is never called from inside these
  // calls (it is posted, as a socket's is).
  virtual void read_some(boost::asio::mutable_buffer into, Handler handler) = 0;
  virtual void write_some(boost::asio::const_buffer from, Handler handler) = 0;
  // Operations pending at `deadline` or started after it fail with
  // boost::beast::error::timeout.
  virtual void expires_at(std::chrono::steady_clock::time_point deadline) = 0;
  // Pending operations fail with boost::asio::error::operation_aborted.
  virtual void close() = 0;

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, boost::asio::mutable_buffer b) { read_some(b, std::move(handler)); }, token,
        first_buffer<boost::asio::mutable_buffer>(buffers));
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, boost::asio::const_buffer b) { write_some(b, std::move(handler)); }, token,
        first_buffer<boost::asio::const_buffer>(buffers));
  }

 private:
  // The first non-empty buffer of a sequence (a read or write "some" may
  // stop at a buffer's end), or an empty one.
  template <class Buffer, class Buffers>
  static Buffer first_buffer(const Buffers& buffers) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      Buffer b(*it);
      if (b.size() != 0) return b;
    }
    return Buffer();
  }
};

class Transport {
 public:
  Transport() = default;
  virtual ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // A connection to host:port (as written in the client's base URL) whose
  // handlers run on `executor`, opened by `deadline`. Errors: Errc::unavailable.
  virtual boost::asio::awaitable<kms::Result<std::unique_ptr<ByteStream>>> connect(
      boost::asio::any_io_executor executor, std::string_view host, std::string_view port,
      std::chrono::steady_clock::time_point deadline) = 0;
};

// Installs `transport` (nullptr: TCP again) for the HttpClients created from
// now on with an executor of `context`.
void use_transport(boost::asio::execution_context& context, std::shared_ptr<Transport> transport);
// The transport installed on `context`, or nullptr (TCP).
[[nodiscard]] std::shared_ptr<Transport> installed_transport(boost::asio::execution_context& context);

}  // namespace rootseal::net
