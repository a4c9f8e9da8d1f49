// kms::SoftwareRoot: a root key held in locked memory, wrapping with AES-KWP.
// Immutable after create(), hence thread-safe without a lock.
#include <utility>

#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "rootseal/kms/root_of_trust.hpp"

#include <algorithm>
#include <thread>

namespace rootseal::kms {
namespace {

constexpr std::size_t kRootKeySize = 32;
constexpr std::size_t kMinWrappedKey = 16;  // the KEK sizes the interface allows
constexpr std::size_t kMaxWrappedKey = 64;

}  // namespace

Result<std::unique_ptr<SoftwareRoot>> SoftwareRoot::create(SecureBytes root_key) {
  if (root_key.size() != kRootKeySize) return fail(Errc::invalid_argument, "software root key must be 32 bytes");
  std::vector<std::uint8_t> kcv;
  ROOTSEAL_TRY_ASSIGN(kcv, aes_key_check_value(root_key));
  // make_unique cannot reach the private constructor.
  return std::unique_ptr<SoftwareRoot>(new SoftwareRoot(std::move(root_key), hex_encode(kcv)));
}

SoftwareRoot::SoftwareRoot(SecureBytes root_key, std::string kcv)
    : root_key_(std::move(root_key)), kcv_(std::move(kcv)) {}

// The key is in process memory: always reachable.
Result<void> SoftwareRoot::probe() { return {}; }

Result<std::string> SoftwareRoot::key_check_value() { return kcv_; }

Result<std::vector<std::uint8_t>> SoftwareRoot::wrap(const SecureBytes& key) {
  if (key.size() < kMinWrappedKey || key.size() > kMaxWrappedKey) {
    return fail(Errc::invalid_argument, "key to wrap must be 16..64 bytes");
  }
  return aes_kwp_wrap(root_key_, key.span());
}

Result<SecureBytes> SoftwareRoot::unwrap(std::span<const std::uint8_t> wrapped) {
  return aes_kwp_unwrap(root_key_, wrapped);
}

std::size_t SoftwareRoot::unwrap_parallelism() const noexcept {
  return std::max<std::size_t>(1, std::thread::hardware_concurrency());  // pure CPU work
}

}  // namespace rootseal::kms
