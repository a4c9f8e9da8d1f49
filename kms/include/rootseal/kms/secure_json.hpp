// rootseal::kms — boost::json documents in locked memory.
//
// Request bodies carry plaintext, answers decrypted data and data keys,
// Kubernetes Secrets and provider answers secret values: parsed or built with
// the default allocator, those bytes would be scattered over the ordinary
// heap. SecureJsonResource is a monotonic boost::json memory resource whose
// every chunk is a SecureBytes (mlocked, never dumped, wiped when released):
// the first chunk has `initial` bytes, the next ones grow geometrically, the
// total stays within `limit`; past it an allocation throws std::bad_alloc
// (there is no fallback to the heap). Deallocation is a no-op; everything is
// wiped when the resource goes.
//
// Sizing: chunks of 4 KiB or less are recycled per thread by the locked arena
// (no lock, no mmap/mlock), so a hot path keeps its `initial` at or under 4 KiB.
#pragma once

#include <boost/json/fwd.hpp>
#include <boost/json/memory_resource.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/storage_ptr.hpp>
#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <limits>
#include <string_view>

#include "rootseal/kms/secure_buffer.hpp"
#include "rootseal/kms/secure_memory_resource.hpp"

namespace rootseal::kms {

class SecureJsonResource final : public boost::json::memory_resource {
 public:
  explicit SecureJsonResource(std::size_t initial = 1024,
                              std::size_t limit = std::numeric_limits<std::size_t>::max()) noexcept
      : mono_(initial, limit) {}
  SecureJsonResource(const SecureJsonResource&) = delete;
  SecureJsonResource& operator=(const SecureJsonResource&) = delete;
  ~SecureJsonResource() override = default;

  // A non-owning storage for values built here: the resource must outlive
  // them (a local arena for one request). See secure_json_storage() otherwise.
  [[nodiscard]] boost::json::storage_ptr storage() noexcept { return boost::json::storage_ptr(this); }
  // Locked bytes held now.
  [[nodiscard]] std::size_t reserved_bytes() const noexcept { return mono_.reserved(); }

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override { return mono_.allocate(bytes, alignment); }
  void do_deallocate(void*, std::size_t, std::size_t) override {}
  [[nodiscard]] bool do_is_equal(const boost::json::memory_resource& other) const noexcept override {
    return this == &other;
  }

  SecureMonotonicResource mono_;
};

// A fresh reference-counted SecureJsonResource: the values built with it keep
// it alive, and it is wiped when the last of them goes.
boost::json::storage_ptr secure_json_storage(std::size_t initial = 1024,
                                             std::size_t limit = std::numeric_limits<std::size_t>::max());
// True if `sp` is a storage of secure_json_storage() or a SecureJsonResource.
bool is_secure_json_storage(const boost::json::storage_ptr& sp) noexcept;

// Parses `text` into `sp`, the parser's temporaries included: the value
// stack of boost::json::parse sits on the stack and the default heap, with
// short strings (up to 14 bytes) held inline in it. ec is set on a syntax
// error; std::bad_alloc past the resource's limit.
boost::json::value parse_into(std::string_view text, const boost::json::storage_ptr& sp, boost::system::error_code& ec,
                              const boost::json::parse_options& options = {});

// Appends the JSON text of a value (or object) to `out`, without any
// intermediate heap string (the serializer's buffer is on the stack, wiped).
void serialize_into(const boost::json::value& value, SecureBuffer& out);
void serialize_into(const boost::json::object& object, SecureBuffer& out);

}  // namespace rootseal::kms
