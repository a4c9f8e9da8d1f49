// JSON documents whose every byte lives in locked memory.
//
// Transit request bodies carry plaintext and responses carry decrypted data
// and data keys. Parsing them with the default allocator would scatter those
// bytes over the ordinary heap, so each document gets a monotonic arena whose
// every chunk is a SecureBytes (mlocked, never dumped, zeroized when freed).
// The arena starts small and grows geometrically as the document needs, up
// to a limit derived from the request body (itself bounded by the server's
// body limit): past the limit an allocation throws std::bad_alloc (the caller
// answers 413), it never falls back to the ordinary heap.
#pragma once

#include <boost/json.hpp>

#include <cstddef>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/net/secure_body.hpp"

namespace rootseal::daemon {

class LockedJson {
 public:
  // `initial` bytes are locked at once; further chunks come on demand while
  // the total stays within `limit` (at least `initial`).
  LockedJson(std::size_t initial, std::size_t limit);
  LockedJson(const LockedJson&) = delete;
  LockedJson& operator=(const LockedJson&) = delete;

  [[nodiscard]] boost::json::storage_ptr storage() const noexcept { return storage_; }
  // Locked bytes held by this arena now (its first buffer and every chunk).
  [[nodiscard]] std::size_t reserved_bytes() const noexcept { return upstream_.total() + first_.size(); }

 private:
  // Hands out SecureBytes chunks to the monotonic resource; refuses past the limit.
  class Upstream final : public boost::json::memory_resource {
   public:
    explicit Upstream(std::size_t limit) noexcept : limit_(limit) {}
    [[nodiscard]] std::size_t total() const noexcept { return total_; }

   private:
    void* do_allocate(std::size_t bytes, std::size_t alignment) override;
    void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
    [[nodiscard]] bool do_is_equal(const boost::json::memory_resource& other) const noexcept override {
      return this == &other;
    }
    std::size_t limit_;
    std::size_t total_ = 0;
    std::vector<kms::SecureBytes> chunks_;
  };

  kms::SecureBytes first_;
  Upstream upstream_;
  boost::json::monotonic_resource resource_;
  boost::json::storage_ptr storage_;
};

// Parses a request body (an object, at most 32 levels deep) into `arena`.
// An empty body is an empty object. Errors are invalid_argument with Vault's
// wording ("failed to parse JSON input: ...").
kms::Result<boost::json::object> parse_object(std::string_view body, LockedJson& arena);

// Serializes into a SecureBuffer without any intermediate heap string.
net::SecureBuffer serialize_locked(const boost::json::value& value);
// Appends the serialization of `object` (or `value`) to `out`, the same way.
void serialize_locked_into(const boost::json::object& object, net::SecureBuffer& out);
void serialize_locked_into(const boost::json::value& value, net::SecureBuffer& out);

// The arena of a request whose body has n bytes: what is locked at once, and
// the most it may grow to (the parsed request plus the response).
struct ArenaSize {
  std::size_t initial;
  std::size_t limit;
};
ArenaSize arena_size_for(std::size_t body_bytes) noexcept;

}  // namespace rootseal::daemon
