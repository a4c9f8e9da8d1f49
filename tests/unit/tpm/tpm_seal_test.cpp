// tpm::Tpm seal/unseal against swtpm: sizes, auth values, PCR policies,
// foreign blobs, a missing TPM, handle leaks, dictionary-attack behaviour,
// parameter encryption on the bus, and the TSS2_RC mapping.
#include <openssl/evp.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <memory>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/tpm/tpm_root.hpp"
#include "swtpm.hpp"
#include "temp_dir.hpp"
#include "tpm_test_util.hpp"
#include "tss_error.hpp"

using rootseal::kms::Errc;
using rootseal::kms::SecureBytes;
using rootseal::test::esys;
using rootseal::test::extend_pcr;
using rootseal::test::open_tpm;
using rootseal::test::pattern_bytes;
using rootseal::test::require_no_leaked_handles;
using rootseal::test::Swtpm;
using rootseal::test::TempDir;
using rootseal::test::tpm_property;
using rootseal::tpm::PrimaryAlg;
using rootseal::tpm::SealedBlob;
using rootseal::tpm::SealPolicy;
using rootseal::tpm::Tpm;
namespace detail = rootseal::tpm::detail;

namespace {

SealedBlob seal_ok(Tpm& t, const SealPolicy& p, const SecureBytes& s) {
  auto b = t.seal(p, s);
  INFO((b ? std::string("ok") : b.error().message));
  REQUIRE(b);
  return std::move(*b);
}

SecureBytes unseal_ok(Tpm& t, const SealPolicy& p, const SealedBlob& b) {
  auto s = t.unseal(p, b);
  INFO((s ? std::string("ok") : s.error().message));
  REQUIRE(s);
  return std::move(*s);
}

SealPolicy with_auth(std::string_view auth, std::vector<std::uint32_t> pcrs = {7}) {
  SealPolicy p;
  p.pcrs = std::move(pcrs);
  p.auth_value = SecureBytes::copy_of(auth);
  return p;
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

bool file_contains(const std::string& file, std::span<const std::uint8_t> needle) {
  return file.find(std::string_view(reinterpret_cast<const char*>(needle.data()), needle.size())) != std::string::npos;
}

}  // namespace

TEST_CASE("seal and unseal round trip: 32, 1 and 128 bytes, 0 and 129 bytes rejected") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SealPolicy policy;  // PCR 7, no auth, transient ECC primary
  for (std::size_t n : {std::size_t{32}, std::size_t{1}, std::size_t{128}}) {
    const SecureBytes secret = SecureBytes::random(n);
    const SealedBlob blob = seal_ok(t, policy, secret);
    CHECK(blob.pcrs == std::vector<std::uint32_t>{7});
    CHECK_FALSE(blob.has_auth_value);
    CHECK(unseal_ok(t, policy, blob) == secret);
    CHECK(unseal_ok(t, SealPolicy{}, blob) == secret);  // no auth value needed
    CHECK(t.unseal(blob).has_value());
  }
  auto too_big = t.seal(policy, SecureBytes::random(129));
  REQUIRE_FALSE(too_big);
  CHECK(too_big.error().code == Errc::invalid_argument);
  CHECK(contains(too_big.error().message, "at most 128 bytes"));
  auto empty = t.seal(policy, SecureBytes{});
  REQUIRE_FALSE(empty);
  CHECK(empty.error().code == Errc::invalid_argument);
  require_no_leaked_handles(t);
}

TEST_CASE("bad policies are invalid_argument before the TPM is touched") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SecureBytes secret = SecureBytes::random(32);
  SealPolicy p;
  p.pcrs = {24};
  CHECK(t.seal(p, secret).error().code == Errc::invalid_argument);
  p.pcrs = {7};
  p.primary_handle = 0x80000001;  // transient, not persistent
  CHECK(t.seal(p, secret).error().code == Errc::invalid_argument);
  p.primary_handle = 0;
  p.auth_value = SecureBytes{};
  CHECK(t.seal(p, secret).error().code == Errc::invalid_argument);
  require_no_leaked_handles(t);
}

TEST_CASE("auth value: right one unseals, wrong or missing is sealed with a clear reason and never locks out") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SecureBytes secret = SecureBytes::random(32);
  const SealedBlob blob = seal_ok(t, with_auth("correct horse"), secret);
  CHECK(blob.has_auth_value);
  CHECK(unseal_ok(t, with_auth("correct horse"), blob) == secret);

  // Far more failures than the reference TPM's maxTries (3).
  for (int i = 0; i < 10; ++i) {
    auto wrong = t.unseal(with_auth("battery staple"), blob);
    REQUIRE_FALSE(wrong);
    CHECK(wrong.error().code == Errc::sealed);
    CHECK(contains(wrong.error().message, "wrong TPM auth value"));
  }
  auto missing = t.unseal(SealPolicy{}, blob);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Errc::sealed);
  CHECK(contains(missing.error().message, "needs a TPM auth value"));

  CHECK(tpm_property(t, TPM2_PT_LOCKOUT_COUNTER) == 0);
  CHECK((tpm_property(t, TPM2_PT_PERMANENT) & TPMA_PERMANENT_INLOCKOUT) == 0);
  CHECK(unseal_ok(t, with_auth("correct horse"), blob) == secret);
  require_no_leaked_handles(t);
}

TEST_CASE("auth values of any length, including ones whose SHA-256 ends in zero bytes") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SecureBytes secret = SecureBytes::random(16);
  // "a" x 200: longer than any TPM digest; the TPM sees its SHA-256.
  const SealedBlob long_auth = seal_ok(t, with_auth(std::string(200, 'a')), secret);
  CHECK(unseal_ok(t, with_auth(std::string(200, 'a')), long_auth) == secret);
  CHECK_FALSE(t.unseal(with_auth(std::string(199, 'a')), long_auth));
  // The TPM strips trailing zeros of stored auth values; ours must agree.
  // Find an input whose SHA-256 ends in 0x00 (1 in 256).
  std::string auth;
  for (int i = 0;; ++i) {
    auth = "pin-" + std::to_string(i);
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(auth.data(), auth.size(), md, &len, EVP_sha256(), nullptr);
    if (md[31] == 0) break;
  }
  const SealedBlob zero_tail = seal_ok(t, with_auth(auth), secret);
  CHECK(unseal_ok(t, with_auth(auth), zero_tail) == secret);
  require_no_leaked_handles(t);
}

TEST_CASE("PCR 7 policy: an extend breaks unseal with the PCR reason, resealing under the new values works") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SecureBytes secret = SecureBytes::random(32);
  const SealPolicy policy;  // {7}
  const SealedBlob blob = seal_ok(t, policy, secret);
  CHECK(unseal_ok(t, policy, blob) == secret);

  extend_pcr(t, 7);
  auto broken = t.unseal(policy, blob);
  REQUIRE_FALSE(broken);
  CHECK(broken.error().code == Errc::sealed);
  CHECK(contains(broken.error().message,
                 "TPM policy check failed: PCR values changed since sealing (reseal after an intended change)"));
  require_no_leaked_handles(t);

  // Reseal the same secret to the values the TPM holds now.
  const SealedBlob resealed = seal_ok(t, policy, secret);
  CHECK(unseal_ok(t, policy, resealed) == secret);
  CHECK_FALSE(t.unseal(policy, blob));  // the old blob stays broken
  require_no_leaked_handles(t);
}

TEST_CASE("PCR list {7, 11}: either one breaks it, PCRs outside the list do not") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SecureBytes secret = SecureBytes::random(32);
  SealPolicy policy;
  policy.pcrs = {11, 7, 11};  // order and duplicates do not matter
  const SealedBlob blob = seal_ok(t, policy, secret);
  CHECK(blob.pcrs == std::vector<std::uint32_t>{7, 11});

  extend_pcr(t, 8);
  extend_pcr(t, 12);
  CHECK(unseal_ok(t, policy, blob) == secret);

  extend_pcr(t, 11);
  auto broken = t.unseal(policy, blob);
  REQUIRE_FALSE(broken);
  CHECK(broken.error().code == Errc::sealed);
  CHECK(contains(broken.error().message, "PCR values changed since sealing"));

  const SealedBlob resealed = seal_ok(t, policy, secret);
  CHECK(unseal_ok(t, policy, resealed) == secret);
  extend_pcr(t, 7);
  CHECK(t.unseal(policy, resealed).error().code == Errc::sealed);
  require_no_leaked_handles(t);
}

TEST_CASE("PCR policy with an auth value: PCR failure and wrong auth are told apart") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SecureBytes secret = SecureBytes::random(32);
  const SealedBlob blob = seal_ok(t, with_auth("s3cret"), secret);
  extend_pcr(t, 7);
  auto e = t.unseal(with_auth("s3cret"), blob);
  REQUIRE_FALSE(e);
  CHECK(contains(e.error().message, "PCR values changed since sealing"));
  require_no_leaked_handles(t);
}

TEST_CASE("an empty PCR list binds to the TPM only") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SecureBytes secret = SecureBytes::random(32);
  SealPolicy policy;
  policy.pcrs = {};
  const SealedBlob blob = seal_ok(t, policy, secret);
  extend_pcr(t, 7);
  CHECK(unseal_ok(t, policy, blob) == secret);
  require_no_leaked_handles(t);
}

TEST_CASE("a blob sealed on another TPM does not unseal") {
  Swtpm first;
  Swtpm second;
  const SecureBytes secret = SecureBytes::random(32);
  SealedBlob foreign;
  {
    Tpm t2 = open_tpm(second);
    foreign = seal_ok(t2, SealPolicy{}, secret);
    CHECK(unseal_ok(t2, SealPolicy{}, foreign) == secret);
  }
  Tpm t1 = open_tpm(first);
  auto e = t1.unseal(SealPolicy{}, foreign);
  REQUIRE_FALSE(e);
  CHECK(e.error().code == Errc::sealed);
  CHECK(contains(e.error().message, "sealed blob does not belong to this TPM"));

  // Without the recorded primary name the TPM itself refuses it (TPM2_Load
  // fails its integrity check under this TPM's primary key).
  SealedBlob nameless = foreign;
  nameless.primary_name.clear();
  auto e2 = t1.unseal(SealPolicy{}, nameless);
  REQUIRE_FALSE(e2);
  CHECK(e2.error().code == Errc::sealed);
  CHECK(contains(e2.error().message, "sealed blob does not belong to this TPM"));
  CHECK(contains(e2.error().message, "Esys_Load"));
  require_no_leaked_handles(t1);
}

TEST_CASE("no TPM at the TCTI: unavailable with a 'no TPM' reason, no crash") {
  const std::string tcti = "swtpm:host=127.0.0.1,port=" + std::to_string(Swtpm::unused_port());
  auto t = Tpm::open(tcti);
  REQUIRE_FALSE(t);
  CHECK(t.error().code == Errc::unavailable);
  CHECK(contains(t.error().message, "no TPM at " + tcti));

  auto dev = Tpm::open("device:/nonexistent/tpmrm0");
  REQUIRE_FALSE(dev);
  CHECK(dev.error().code == Errc::unavailable);
  CHECK(contains(dev.error().message, "no TPM at device:/nonexistent/tpmrm0"));

  TempDir dir;
  auto sealed = rootseal::tpm::seal_secret_to_file(tcti, SealPolicy{}, SecureBytes::random(8), dir / "pin.seal");
  REQUIRE_FALSE(sealed);
  CHECK(sealed.error().code == Errc::unavailable);
}

TEST_CASE("a TPM that goes away mid-session is unavailable, not a crash") {
  auto sw = std::make_unique<Swtpm>();
  Tpm t = open_tpm(*sw);
  const SealedBlob blob = seal_ok(t, SealPolicy{}, SecureBytes::random(32));
  sw->stop();
  auto e = t.unseal(SealPolicy{}, blob);
  REQUIRE_FALSE(e);
  CHECK(e.error().code == Errc::unavailable);
}

TEST_CASE("no leaked handles after many unseal cycles (ROOTSEAL_TPM_UNSEAL_CYCLES, default 1000)") {
  long cycles = 1000;
  if (const char* env = std::getenv("ROOTSEAL_TPM_UNSEAL_CYCLES")) cycles = std::strtol(env, nullptr, 10);
  REQUIRE(cycles > 0);
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SecureBytes secret = SecureBytes::random(32);
  const SealedBlob blob = seal_ok(t, SealPolicy{}, secret);
  const SealedBlob with_auth_blob = seal_ok(t, with_auth("pin"), secret);

  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < cycles; ++i) {
    // The reference TPM holds 3 objects and 3 sessions: one leak per cycle
    // would fail within a few cycles (TPM_RC_OBJECT_MEMORY).
    auto s = t.unseal(SealPolicy{}, blob);
    if (!s || !(*s == secret)) {
      INFO("cycle " << i << ": " << (s ? std::string("wrong secret") : s.error().message));
      REQUIRE(false);
    }
    if (i % 100 == 0) {  // failure paths leak nothing either
      REQUIRE(t.unseal(with_auth("nope"), with_auth_blob).error().code == Errc::sealed);
    }
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "tpm: %ld unseal cycles in %lld ms (%.2f ms each)\n", cycles, static_cast<long long>(ms),
               static_cast<double>(ms) / static_cast<double>(cycles));
  require_no_leaked_handles(t);
  CHECK(tpm_property(t, TPM2_PT_LOCKOUT_COUNTER) == 0);
}

TEST_CASE("restarts: new contexts and TPM reboots, with wrong auth values in between, never lock out") {
  Swtpm sw;
  const SecureBytes secret = SecureBytes::random(32);
  SealedBlob blob;
  {
    Tpm t = open_tpm(sw);
    blob = seal_ok(t, with_auth("pin"), secret);
  }
  for (int round = 0; round < 6; ++round) {
    if (round % 2 == 1) sw.restart();  // a reboot: PCRs reset to the same values
    for (int i = 0; i < 3; ++i) {
      Tpm t = open_tpm(sw);  // a daemon restart: a new ESAPI context
      auto wrong = t.unseal(with_auth("not the pin"), blob);
      REQUIRE_FALSE(wrong);
      CHECK(wrong.error().code == Errc::sealed);
      CHECK(unseal_ok(t, with_auth("pin"), blob) == secret);
    }
  }
  Tpm t = open_tpm(sw);
  CHECK(tpm_property(t, TPM2_PT_LOCKOUT_COUNTER) == 0);
  CHECK((tpm_property(t, TPM2_PT_PERMANENT) & TPMA_PERMANENT_INLOCKOUT) == 0);
  require_no_leaked_handles(t);
}

TEST_CASE("a TPM in dictionary-attack lockout (someone else's failures) still unseals our noDA objects") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  const SecureBytes secret = SecureBytes::random(32);
  const SealedBlob blob = seal_ok(t, with_auth("pin"), secret);

  // A DA-protected primary with an auth value, then wrong auths until lockout.
  TPM2B_SENSITIVE_CREATE sens{};
  sens.sensitive.userAuth.size = 4;
  std::memcpy(sens.sensitive.userAuth.buffer, "good", 4);
  TPM2B_PUBLIC tmpl{};
  tmpl.publicArea.type = TPM2_ALG_KEYEDHASH;
  tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
  tmpl.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                     TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_SIGN_ENCRYPT;
  tmpl.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_HMAC;
  tmpl.publicArea.parameters.keyedHashDetail.scheme.details.hmac.hashAlg = TPM2_ALG_SHA256;
  const TPM2B_DATA outside{};
  const TPML_PCR_SELECTION pcrs{};
  ESYS_TR key = ESYS_TR_NONE;
  REQUIRE(Esys_CreatePrimary(esys(t), ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
                             &outside, &pcrs, &key, nullptr, nullptr, nullptr, nullptr) == TSS2_RC_SUCCESS);
  TPM2B_AUTH wrong{};
  wrong.size = 3;
  std::memcpy(wrong.buffer, "bad", 3);
  REQUIRE(Esys_TR_SetAuth(esys(t), key, &wrong) == TSS2_RC_SUCCESS);
  TPM2B_MAX_BUFFER data{};
  data.size = 1;
  bool locked_out = false;
  for (int i = 0; i < 50 && !locked_out; ++i) {
    TPM2B_DIGEST* out = nullptr;
    const TSS2_RC rc =
        Esys_HMAC(esys(t), key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &data, TPM2_ALG_SHA256, &out);
    REQUIRE(rc != TSS2_RC_SUCCESS);
    Esys_Free(out);
    locked_out = detail::tpm_base_code(rc) == TPM2_RC_LOCKOUT;
  }
  REQUIRE(Esys_FlushContext(esys(t), key) == TSS2_RC_SUCCESS);
  REQUIRE(locked_out);
  CHECK((tpm_property(t, TPM2_PT_PERMANENT) & TPMA_PERMANENT_INLOCKOUT) != 0);

  // Our objects are noDA: lockout does not concern them.
  CHECK(unseal_ok(t, with_auth("pin"), blob) == secret);
  auto wrong_auth = t.unseal(with_auth("nope"), blob);
  REQUIRE_FALSE(wrong_auth);
  CHECK(contains(wrong_auth.error().message, "wrong TPM auth value"));
  require_no_leaked_handles(t);
}

TEST_CASE("parameter encryption: neither the secret nor the auth value crosses the TPM bus in clear") {
  Swtpm sw;
  TempDir dir;
  const auto pcap = dir / "bus.pcap";
  // This test's own process; Catch2 runs test cases on one thread, and
  // tpm2-tss reads the variable when the TCTI starts, after this line.
  REQUIRE(::setenv("TCTI_PCAP_FILE", pcap.c_str(), 1) == 0);  // NOLINT(concurrency-mt-unsafe)
  const SecureBytes secret = SecureBytes::random(64);
  const std::string auth = "a long and recognisable auth value";
  std::vector<std::uint8_t> public_area;
  {
    Tpm t = open_tpm("pcap:" + sw.tcti());
    const SealedBlob blob = seal_ok(t, with_auth(auth), secret);
    CHECK(unseal_ok(t, with_auth(auth), blob) == secret);
    public_area = blob.public_area;
  }
  const std::string bus = file_bytes(pcap);
  REQUIRE(bus.size() > 1000);
  // The capture works: the public area crossed in clear (TPM2_Create's
  // response, TPM2_Load's command) ...
  CHECK(file_contains(bus, std::span(public_area).subspan(2)));
  // ... the secret and the auth value did not, in either direction, in whole or in part.
  CHECK_FALSE(file_contains(bus, secret.span()));
  CHECK_FALSE(file_contains(bus, secret.span().first(8)));
  CHECK_FALSE(file_contains(bus, secret.span().last(8)));
  unsigned char auth_hash[32];
  unsigned int len = 0;
  EVP_Digest(auth.data(), auth.size(), auth_hash, &len, EVP_sha256(), nullptr);
  CHECK_FALSE(file_contains(bus, std::span<const std::uint8_t>(auth_hash, 16)));
  CHECK_FALSE(bus.find(auth) != std::string::npos);
}

TEST_CASE("a persistent primary key handle, and a missing one") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  // Make the standard SRK persistent at 0x81000001, as systemd-tpm2-setup does.
  constexpr std::uint32_t kSrk = 0x81000001;
  {
    const SealedBlob transient = seal_ok(t, SealPolicy{}, SecureBytes::random(8));
    TPM2B_PUBLIC tmpl{};
    // Recreate the transient primary through the library's template: seal
    // recorded its name; create it raw here with the same template.
    tmpl.publicArea.type = TPM2_ALG_ECC;
    tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
    tmpl.publicArea.objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT | TPMA_OBJECT_FIXEDTPM |
                                       TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                       TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA;
    auto& ecc = tmpl.publicArea.parameters.eccDetail;
    ecc.symmetric.algorithm = TPM2_ALG_AES;
    ecc.symmetric.keyBits.aes = 128;
    ecc.symmetric.mode.aes = TPM2_ALG_CFB;
    ecc.scheme.scheme = TPM2_ALG_NULL;
    ecc.curveID = TPM2_ECC_NIST_P256;
    ecc.kdf.scheme = TPM2_ALG_NULL;
    const TPM2B_SENSITIVE_CREATE sens{};
    const TPM2B_DATA outside{};
    const TPML_PCR_SELECTION pcrs{};
    ESYS_TR primary = ESYS_TR_NONE;
    REQUIRE(Esys_CreatePrimary(esys(t), ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
                               &outside, &pcrs, &primary, nullptr, nullptr, nullptr, nullptr) == TSS2_RC_SUCCESS);
    TPM2B_NAME* name = nullptr;
    REQUIRE(Esys_TR_GetName(esys(t), primary, &name) == TSS2_RC_SUCCESS);
    // The library's transient primary is exactly the TCG SRK.
    CHECK(std::vector<std::uint8_t>(name->name, name->name + name->size) == transient.primary_name);
    Esys_Free(name);
    ESYS_TR persistent = ESYS_TR_NONE;
    REQUIRE(Esys_EvictControl(esys(t), ESYS_TR_RH_OWNER, primary, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, kSrk,
                              &persistent) == TSS2_RC_SUCCESS);
    REQUIRE(Esys_TR_Close(esys(t), &persistent) == TSS2_RC_SUCCESS);
    REQUIRE(Esys_FlushContext(esys(t), primary) == TSS2_RC_SUCCESS);
  }
  SealPolicy policy;
  policy.primary_handle = kSrk;
  const SecureBytes secret = SecureBytes::random(32);
  const SealedBlob blob = seal_ok(t, policy, secret);
  CHECK(blob.primary_handle == kSrk);
  CHECK(unseal_ok(t, SealPolicy{}, blob) == secret);  // the handle comes from the blob

  SealPolicy missing;
  missing.primary_handle = 0x81000002;
  auto e = t.seal(missing, secret);
  REQUIRE_FALSE(e);
  CHECK(e.error().code == Errc::sealed);
  CHECK(contains(e.error().message, "no persistent primary key at 0x81000002"));
  require_no_leaked_handles(t);
  CHECK(rootseal::test::tpm_handles(t, TPM2_PERSISTENT_FIRST) == std::vector<TPM2_HANDLE>{kSrk});  // not evicted
}

TEST_CASE("RSA 2048 primary template") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  SealPolicy policy;
  policy.primary_alg = PrimaryAlg::rsa2048;
  const SecureBytes secret = SecureBytes::random(32);
  const SealedBlob blob = seal_ok(t, policy, secret);
  CHECK(blob.primary_alg == PrimaryAlg::rsa2048);
  CHECK(unseal_ok(t, SealPolicy{}, blob) == secret);
  extend_pcr(t, 7);
  CHECK(t.unseal(SealPolicy{}, blob).error().code == Errc::sealed);
  require_no_leaked_handles(t);
}

TEST_CASE("the TPM random number generator") {
  Swtpm sw;
  Tpm t = open_tpm(sw);
  auto a = t.random(100);
  auto b = t.random(100);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->size() == 100);
  CHECK_FALSE(*a == *b);
}

TEST_CASE("TSS2_RC mapping: each failure class gets its code and reason") {
  using detail::Step;
  using detail::tss_error;
  const std::string tcti = "device:/dev/tpmrm0";
  struct Case {
    TSS2_RC rc;
    Step step;
    Errc code;
    std::string_view reason;
  };
  const std::vector<Case> cases = {
      {TPM2_RC_POLICY_FAIL + TPM2_RC_S + TPM2_RC_1, Step::unseal, Errc::sealed, detail::kPolicyFailed},
      {TPM2_RC_PCR_CHANGED, Step::session, Errc::sealed, detail::kPolicyFailed},
      {TSS2_RESMGR_TPM_RC_LAYER | (TPM2_RC_POLICY_FAIL + TPM2_RC_S + TPM2_RC_1), Step::unseal, Errc::sealed,
       detail::kPolicyFailed},
      {TPM2_RC_LOCKOUT, Step::unseal, Errc::sealed, "dictionary-attack lockout"},
      {TPM2_RC_AUTH_FAIL + TPM2_RC_S + TPM2_RC_1, Step::unseal, Errc::sealed, detail::kWrongAuth},
      {TPM2_RC_BAD_AUTH + TPM2_RC_S + TPM2_RC_1, Step::unseal, Errc::sealed, detail::kWrongAuth},
      {TPM2_RC_BAD_AUTH + TPM2_RC_S + TPM2_RC_1, Step::create_primary, Errc::sealed, "owner hierarchy has an auth"},
      {TPM2_RC_INTEGRITY + TPM2_RC_P + TPM2_RC_1, Step::load, Errc::sealed, detail::kForeignBlob},
      {TPM2_RC_HANDLE + TPM2_RC_H + TPM2_RC_1, Step::persistent, Errc::sealed, "no persistent primary key"},
      {TSS2_TCTI_RC_IO_ERROR, Step::tcti, Errc::unavailable, "no TPM at device:/dev/tpmrm0"},
      {TSS2_TCTI_RC_IO_ERROR, Step::unseal, Errc::unavailable, "stopped answering"},
      {TPM2_RC_OBJECT_MEMORY, Step::load, Errc::unavailable, "busy or out of resources"},
      {TPM2_RC_RETRY, Step::create, Errc::unavailable, "busy or out of resources"},
      {TPM2_RC_FAILURE, Step::other, Errc::unavailable, "failure mode"},
      {TSS2_ESYS_RC_RSP_AUTH_FAILED, Step::unseal, Errc::crypto_failure, "HMAC check"},
      {TSS2_ESYS_RC_BAD_TR, Step::other, Errc::internal, "software stack"},
  };
  for (const auto& c : cases) {
    const auto e = tss_error(c.rc, "Esys_Call", c.step, tcti);
    INFO("rc 0x" << std::hex << c.rc << ": " << e.message);
    CHECK(e.code == c.code);
    CHECK(contains(e.message, c.reason));
    CHECK(contains(e.message, "(Esys_Call: "));
  }
  CHECK(detail::tpm_base_code(TPM2_RC_POLICY_FAIL + TPM2_RC_S + TPM2_RC_1) == TPM2_RC_POLICY_FAIL);
  CHECK(detail::tpm_base_code(TSS2_TCTI_RC_IO_ERROR) == 0);
  CHECK(detail::rc_text(TPM2_RC_POLICY_FAIL + TPM2_RC_S + TPM2_RC_1).find("policy") != std::string::npos);
}
