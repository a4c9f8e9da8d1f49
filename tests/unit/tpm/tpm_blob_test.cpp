// tpm::SealedBlob: the file format (strict parse, checksum), atomic save with
// mode 0600, load errors; and the attributes of the sealed object the TPM made.
#include <sys/stat.h>
#include <tss2/tss2_mu.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/tpm/tpm_root.hpp"
#include "swtpm.hpp"
#include "temp_dir.hpp"
#include "tpm_test_util.hpp"

using rootseal::kms::Errc;
using rootseal::kms::SecureBytes;
using rootseal::test::open_tpm;
using rootseal::test::Swtpm;
using rootseal::test::TempDir;
using rootseal::tpm::SealedBlob;
using rootseal::tpm::SealPolicy;
using rootseal::tpm::Tpm;
namespace fs = std::filesystem;

namespace {

SealedBlob sealed_blob(Tpm& t, SealPolicy policy = {}) {
  auto b = t.seal(policy, SecureBytes::random(32));
  INFO((b ? std::string("ok") : b.error().message));
  REQUIRE(b);
  return std::move(*b);
}

bool same(const SealedBlob& a, const SealedBlob& b) {
  return a.primary_alg == b.primary_alg && a.primary_handle == b.primary_handle && a.pcrs == b.pcrs &&
         a.has_auth_value == b.has_auth_value && a.primary_name == b.primary_name && a.public_area == b.public_area &&
         a.private_area == b.private_area;
}

}  // namespace

TEST_CASE("sealed object: KEYEDHASH, fixedTPM|fixedParent|noDA, no userWithAuth, a PCR authPolicy") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SealedBlob blob = sealed_blob(t);
  TPM2B_PUBLIC pub{};
  std::size_t off = 0;
  REQUIRE(Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob.public_area.data(), blob.public_area.size(), &off, &pub) ==
          TSS2_RC_SUCCESS);
  const TPMA_OBJECT a = pub.publicArea.objectAttributes;
  CHECK(pub.publicArea.type == TPM2_ALG_KEYEDHASH);
  CHECK((a & TPMA_OBJECT_FIXEDTPM) != 0);
  CHECK((a & TPMA_OBJECT_FIXEDPARENT) != 0);
  CHECK((a & TPMA_OBJECT_NODA) != 0);
  CHECK((a & TPMA_OBJECT_ADMINWITHPOLICY) != 0);
  CHECK((a & TPMA_OBJECT_USERWITHAUTH) == 0);
  CHECK((a & TPMA_OBJECT_SENSITIVEDATAORIGIN) == 0);
  CHECK(pub.publicArea.authPolicy.size == 32);
  CHECK(std::vector<std::uint8_t>(pub.publicArea.authPolicy.buffer, pub.publicArea.authPolicy.buffer + 32) !=
        std::vector<std::uint8_t>(32, 0));
  CHECK(blob.primary_name.size() == 34);  // nameAlg (2) + SHA-256
}

TEST_CASE("blob format: serialize/parse round trip, every damage is detected") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SealedBlob blob = sealed_blob(t);
  const auto bytes = blob.serialize();
  auto back = SealedBlob::parse(bytes);
  REQUIRE(back);
  CHECK(same(*back, blob));
  CHECK(back->serialize() == bytes);

  // Any flipped bit anywhere, truncation, or trailing bytes.
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto damaged = bytes;
    damaged[i] ^= 0x01;
    auto r = SealedBlob::parse(damaged);
    INFO("byte " << i);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
  }
  for (std::size_t n = 0; n < bytes.size(); n += 7) {
    CHECK_FALSE(SealedBlob::parse(std::span(bytes).first(n)));
  }
  auto longer = bytes;
  longer.push_back(0);
  CHECK_FALSE(SealedBlob::parse(longer));

  // A future version is refused even with a valid checksum.
  SealedBlob v = blob;
  auto future = v.serialize();
  future[4] = 2;
  CHECK_FALSE(SealedBlob::parse(future));

  // An unmarshalable public area behind a valid checksum.
  SealedBlob bad = blob;
  bad.public_area.resize(bad.public_area.size() - 1);
  auto r = SealedBlob::parse(bad.serialize());
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("public area") != std::string::npos);
}

TEST_CASE("blob files: saved 0600 atomically, loaded back, missing is not_found, damaged is sealed") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  TempDir dir;
  const fs::path path = dir / "root.seal";
  const SealedBlob blob = sealed_blob(t);
  REQUIRE(blob.save(path));
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto loaded = SealedBlob::load(path);
  REQUIRE(loaded);
  CHECK(same(*loaded, blob));

  // Replacing leaves no temporary file behind.
  const SealedBlob other = sealed_blob(t);
  REQUIRE(other.save(path));
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++files;
  CHECK(files == 1);
  CHECK(same(*SealedBlob::load(path), other));

  // replace=false never overwrites.
  auto no_replace = blob.save(path, false);
  REQUIRE_FALSE(no_replace);
  CHECK(no_replace.error().code == Errc::already_exists);
  CHECK(same(*SealedBlob::load(path), other));
  REQUIRE(blob.save(dir / "new.seal", false));
  CHECK(same(*SealedBlob::load(dir / "new.seal"), blob));
  fs::remove(dir / "new.seal");
  files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++files;
  CHECK(files == 1);

  auto missing = SealedBlob::load(dir / "absent.seal");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Errc::not_found);

  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << "not a blob";
  }
  auto damaged = SealedBlob::load(path);
  REQUIRE_FALSE(damaged);
  CHECK(damaged.error().code == Errc::sealed);
  CHECK(damaged.error().message.find("is damaged") != std::string::npos);

  auto no_dir = blob.save(dir / "no" / "such" / "dir.seal");
  REQUIRE_FALSE(no_dir);
  CHECK(no_dir.error().code == Errc::storage_failure);
}
