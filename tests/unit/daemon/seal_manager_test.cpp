// The seal state machine's probe bookkeeping (the rootseal_root_probe*
// metrics): a real SealManager, Keyring and SQLite store over a software root
// whose probe the test makes fail.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>

#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/state_store.hpp"
#include "seal_manager.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using namespace std::chrono_literals;

namespace {

// A software root whose probe reports the device gone while `down` is set.
class FlakyRoot final : public kms::RootOfTrust {
 public:
  explicit FlakyRoot(std::unique_ptr<kms::SoftwareRoot> inner) : inner_(std::move(inner)) {}
  [[nodiscard]] std::string_view kind() const noexcept override { return "software"; }
  kms::Result<void> probe() override {
    if (down) return kms::fail(kms::Errc::unavailable, "device gone (test)");
    return inner_->probe();
  }
  kms::Result<std::string> key_check_value() override { return inner_->key_check_value(); }
  kms::Result<std::vector<std::uint8_t>> wrap(const kms::SecureBytes& key) override { return inner_->wrap(key); }
  kms::Result<kms::SecureBytes> unwrap(std::span<const std::uint8_t> wrapped) override {
    return inner_->unwrap(wrapped);
  }
  std::atomic<bool> down{false};

 private:
  std::unique_ptr<kms::SoftwareRoot> inner_;
};

}  // namespace

TEST_CASE("seal manager: each probe is counted with its failures and the last outcome is kept") {
  test::TempDir dir("rootseal-seal");
  auto store = kms::open_sqlite_store(dir / "state.db");
  REQUIRE(store);
  auto inner =
      kms::SoftwareRoot::create(kms::SecureBytes::copy_of(std::string_view("0123456789abcdef0123456789abcdef")));
  REQUIRE(inner);
  FlakyRoot root(std::move(*inner));
  kms::Keyring ring(**store, root);
  boost::asio::io_context io;
  boost::asio::thread_pool pool(1);
  daemon::SealManager seal(io, pool, root, ring, 1s);

  auto s = seal.status();
  CHECK(s.probes == 0);
  CHECK_FALSE(s.last_probe_ok);

  s = seal.check_now();
  CHECK_FALSE(s.sealed);
  CHECK(s.probes == 1);
  CHECK(s.probe_failures == 0);
  CHECK(s.last_probe_ok);

  root.down = true;
  s = seal.check_now();
  CHECK(s.sealed);
  CHECK(s.reason == "device gone (test)");
  s = seal.check_now();  // still down: sealed, and each failed probe counts
  CHECK(s.probes == 3);
  CHECK(s.probe_failures == 2);
  CHECK_FALSE(s.last_probe_ok);

  root.down = false;
  s = seal.check_now();
  CHECK_FALSE(s.sealed);
  CHECK(s.probes == 4);
  CHECK(s.probe_failures == 2);
  CHECK(s.last_probe_ok);
  CHECK(s.unseal_count == 2);
  pool.join();
}
