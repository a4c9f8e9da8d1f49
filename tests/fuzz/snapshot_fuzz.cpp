// Fuzz target: keyring snapshots (kms/snapshot.hpp), a file format read from
// object storage. Each input is tried three ways:
//  - as a manifest line: parse_manifest; what it accepts serializes to a line
//    it parses again to the same manifest;
//  - as a snapshot file: parse_snapshot; what it accepts has sections that
//    add up to the content and verifies or is refused with a reason;
//  - as a keyring database image (digests cannot be forged by a fuzzer, so
//    the harness wraps the bytes in a snapshot with correct digests, as a
//    writer would): build_snapshot opens it in memory as a state store, and
//    verify_snapshot (SoftwareRoot of 32 x 0x42, the key of the seeds) checks
//    counts, check values and unwraps every version, or refuses with a reason;
//    the records it holds are written into a new image (keyring_image, as a
//    snapshot of etcd is made) and that snapshot holds as many keys and
//    versions;
//  - as a tokens section (TokenDb::tokens_of_image, what a restore reads):
//    refused with a reason, or tokens with a SHA-256 hex hash and an
//    accessor each, which written into a new image (TokenDb::image_of) read
//    back the same.
// Never a crash, a sanitizer report, an `internal` error or an empty message.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "admin_token_db.hpp"
#include "rootseal/kms/snapshot.hpp"

namespace kms = rootseal::kms;

namespace {

kms::SoftwareRoot& root() {
  static std::unique_ptr<kms::SoftwareRoot> r = [] {
    auto made = kms::SoftwareRoot::create(
        kms::SecureBytes::copy_of(std::string_view("\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42"
                                                   "\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42\x42",
                                                   32)));
    if (!made) __builtin_trap();
    return std::move(*made);
  }();
  return *r;
}

void check_error(const kms::Error& e) {
  if (e.code == kms::Errc::internal || e.message.empty()) __builtin_trap();
}

void check_verify(std::span<const std::uint8_t> bytes) {
  auto report = kms::verify_snapshot(bytes, root());
  if (!report) {
    check_error(report.error());
    if (!report.error().message.starts_with("snapshot refused: ")) __builtin_trap();
    return;
  }
  if (report->unwrapped != report->manifest.versions) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto m = kms::parse_manifest(text)) {
    auto again = kms::parse_manifest(kms::serialize_manifest(*m));
    if (!again || !(*again == *m)) __builtin_trap();
  } else {
    check_error(m.error());
  }

  if (auto view = kms::parse_snapshot(input)) {
    std::uint64_t total = 0;
    for (const auto& [name, bytes] : view->sections) total += bytes.size();
    std::uint64_t listed = 0;
    for (const auto& s : view->manifest.sections) listed += s.bytes;
    if (total != listed || view->section("keyring").empty()) __builtin_trap();
    check_verify(input);
  } else {
    check_error(view.error());
  }

  if (auto tokens = rootseal::daemon::TokenDb::tokens_of_image(input)) {
    for (const auto& t : *tokens) {
      if (t.hash.size() != 64 || t.info.accessor.empty()) __builtin_trap();
    }
    auto image = rootseal::daemon::TokenDb::image_of(*tokens);
    if (image) {
      auto again = rootseal::daemon::TokenDb::tokens_of_image(*image);
      if (!again || again->size() != tokens->size()) __builtin_trap();
      for (std::size_t i = 0; i < tokens->size(); ++i) {
        const auto& a = (*tokens)[i];
        const auto& b = (*again)[i];
        if (a.hash != b.hash || a.info.accessor != b.info.accessor || a.info.policies != b.info.policies ||
            a.info.expire_time != b.info.expire_time) {
          __builtin_trap();
        }
      }
    } else {
      check_error(image.error());
    }
  } else {
    check_error(tokens.error());
  }

  kms::SnapshotInput in;
  in.keyring.assign(data, data + size);
  in.created_unix_ms = 1796570340123;
  in.host = "fuzz-host";
  auto built = kms::build_snapshot(in, "a1b2c3");
  if (!built) {
    check_error(built.error());
    return 0;
  }
  auto view = kms::parse_snapshot(*built);
  if (!view || view->section("keyring").size() != size) __builtin_trap();
  check_verify(*built);
  // The records it holds, written into a new image (as a snapshot of etcd
  // is made), read back the same; or refused with a reason.
  auto keys = kms::snapshot_keys(*view);
  if (!keys) {
    check_error(keys.error());
    return 0;
  }
  auto keyring_keys = kms::snapshot_keyring_keys(*view);
  if (!keyring_keys) {
    check_error(keyring_keys.error());
    return 0;
  }
  auto image = kms::keyring_image(*keys, *keyring_keys);
  if (!image) {
    check_error(image.error());
    return 0;
  }
  in.keyring = std::move(*image);
  in.storage = "etcd";
  in.etcd_revision = 7;
  auto rebuilt = kms::build_snapshot(in, "a1b2c3");
  if (!rebuilt) __builtin_trap();
  auto again = kms::parse_snapshot(*rebuilt);
  if (!again || again->manifest.keys != view->manifest.keys || again->manifest.versions != view->manifest.versions ||
      again->manifest.storage != "etcd") {
    __builtin_trap();
  }
  return 0;
}
