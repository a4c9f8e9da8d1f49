// A StateStore for tests that forwards to another and, while `fail_writes`
// is set, fails every write with storage_failure (reads always forward): a
// store that went away between two steps of an operation.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/state_store.hpp"

namespace rootseal::test {

class FailingStore final : public kms::StateStore {
 public:
  explicit FailingStore(kms::StateStore& inner) : inner_(inner) {}
  std::atomic<bool> fail_writes{false};

  kms::Result<std::vector<kms::KeyRecord>> load_all() override { return inner_.load_all(); }
  kms::Result<std::optional<kms::KeyRecord>> find(std::string_view n) override { return inner_.find(n); }
  kms::Result<std::vector<std::string>> list_names() override { return inner_.list_names(); }
  kms::Result<void> create_key(const kms::KeyRecord& k) override {
    return fail_writes ? injected() : inner_.create_key(k);
  }
  kms::Result<void> add_version(std::string_view n, const kms::KeyVersionRecord& v) override {
    return fail_writes ? injected() : inner_.add_version(n, v);
  }
  kms::Result<void> update_config(std::string_view n, const kms::KeyConfig& c) override {
    return fail_writes ? injected() : inner_.update_config(n, c);
  }
  kms::Result<void> delete_key(std::string_view n) override { return fail_writes ? injected() : inner_.delete_key(n); }
  kms::Result<void> replace_wrapped(const std::vector<Rewrapped>& e,
                                    const std::vector<kms::KeyringKeyRecord>& kk) override {
    return fail_writes ? injected() : inner_.replace_wrapped(e, kk);
  }
  kms::Result<std::vector<kms::KeyringKeyRecord>> keyring_keys() override { return inner_.keyring_keys(); }
  kms::Result<void> add_keyring_key(const kms::KeyringKeyRecord& k) override {
    return fail_writes ? injected() : inner_.add_keyring_key(k);
  }
  kms::Result<void> retire_keyring_key(std::uint32_t id) override {
    return fail_writes ? injected() : inner_.retire_keyring_key(id);
  }
  [[nodiscard]] int schema_version() const noexcept override { return inner_.schema_version(); }

 private:
  static kms::Result<void> injected() { return kms::fail(kms::Errc::storage_failure, "state store: injected failure"); }
  kms::StateStore& inner_;
};

}  // namespace rootseal::test
