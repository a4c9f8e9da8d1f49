#include "kube/secure_json.hpp"

#include <boost/json/memory_resource.hpp>
#include <boost/json/serializer.hpp>

#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/kms/secure_memory_resource.hpp"

namespace rootseal::sync::kube {

namespace json = boost::json;

namespace {

// boost::json's memory_resource is boost::container::pmr's, not std::pmr's: adapt.
class SecureArena final : public json::memory_resource {
 public:
  explicit SecureArena(std::size_t initial) : mono_(initial) {}

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override { return mono_.allocate(bytes, alignment); }
  void do_deallocate(void*, std::size_t, std::size_t) override {}
  [[nodiscard]] bool do_is_equal(const json::memory_resource& other) const noexcept override { return this == &other; }

  kms::SecureMonotonicResource mono_;
};

}  // namespace

json::storage_ptr secure_json_storage(std::size_t initial) { return json::make_shared_resource<SecureArena>(initial); }

bool is_secure_json_storage(const json::storage_ptr& sp) noexcept {
  // make_shared_resource<T> wraps T in detail::shared_resource_impl<T>.
  return dynamic_cast<const json::detail::shared_resource_impl<SecureArena>*>(sp.get()) != nullptr;
}

net::SecureBuffer serialize_secure(const json::value& v) {
  net::SecureBuffer out;
  json::serializer sr;  // writes string contents straight into `buf`
  sr.reset(&v);
  char buf[4096];
  while (!sr.done()) out.append(sr.read(buf, sizeof buf));
  kms::secure_zero(buf, sizeof buf);
  return out;
}

json::value secure_json_copy(const json::value& v) {
  return json::value(v, secure_json_storage(2048));  // the arena grows geometrically past this
}

}  // namespace rootseal::sync::kube
