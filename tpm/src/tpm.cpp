// rootseal::tpm — Tpm: ESAPI connection, seal and unseal.
//
// Seal:   primary (owner hierarchy) -> trial session: PolicyPCR [+ PolicyAuthValue]
//         -> PolicyGetDigest -> Create(KEYEDHASH, authPolicy) authorized by an
//         HMAC session salted with the primary, with parameter encryption both
//         ways (the secret and the auth value cross the bus encrypted).
// Unseal: primary -> Load -> policy session salted with the primary, with
//         parameter encryption -> PolicyPCR [+ PolicyAuthValue] -> Unseal
//         (the secret comes back encrypted).
// Every ESYS_TR lives in a detail::EsysHandle: flushed on every path. Every
// TSS2_RC becomes a kms::Error in detail::tss_error, right where it is returned.
#include <openssl/evp.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_sys.h>
#include <tss2/tss2_tctildr.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "rootseal/kms/secure_bytes.hpp"
#include "tpm_internal.hpp"
#include "tss_error.hpp"

namespace rootseal::tpm {

using detail::EsysHandle;
using detail::Step;
using detail::tss_error;
using kms::Errc;
using kms::fail;
using kms::Result;
using kms::SecureBytes;

namespace {

constexpr std::uint32_t kMaxPcr = 23;
constexpr std::uint32_t kPersistentFirst = 0x81000000;
constexpr std::uint32_t kPersistentLast = 0x81FFFFFF;

// AES-128-CFB for parameter encryption (systemd's tpm2_make_encryption_session).
constexpr TPMT_SYM_DEF kSessionSymmetric = {
    .algorithm = TPM2_ALG_AES, .keyBits = {.aes = 128}, .mode = {.aes = TPM2_ALG_CFB}};
constexpr TPMT_SYM_DEF kNoSymmetric = {.algorithm = TPM2_ALG_NULL, .keyBits = {.aes = 0}, .mode = {.aes = 0}};
constexpr TPMA_SESSION kEncryptedSessionAttrs =
    TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT | TPMA_SESSION_CONTINUESESSION;

// Wipes a structure that held secret bytes when it goes out of scope.
template <class T>
struct Wiped {
  T value{};
  Wiped() = default;
  Wiped(const Wiped&) = delete;
  Wiped& operator=(const Wiped&) = delete;
  ~Wiped() { kms::secure_zero(&value, sizeof value); }
};

// Frees what ESAPI allocated for an output parameter.
template <class T>
struct EsysOut {
  T* p = nullptr;
  EsysOut() = default;
  EsysOut(const EsysOut&) = delete;
  EsysOut& operator=(const EsysOut&) = delete;
  ~EsysOut() { Esys_Free(p); }
  T** out() noexcept { return &p; }
};

// The TCG SRK templates (Provisioning Guidance §7.5.1): what tpm2_createprimary
// -C o, clevis and systemd create; with an empty unique field the key is a pure
// function of the owner seed, so every run recreates the same key.
TPM2B_PUBLIC primary_template(PrimaryAlg alg) {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT | TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                       TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA;
  if (alg == PrimaryAlg::rsa2048) {
    p.type = TPM2_ALG_RSA;
    p.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
    p.parameters.rsaDetail.symmetric.keyBits.aes = 128;
    p.parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    p.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
    p.parameters.rsaDetail.keyBits = 2048;
    p.parameters.rsaDetail.exponent = 0;
  } else {
    p.type = TPM2_ALG_ECC;
    p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
    p.parameters.eccDetail.symmetric.keyBits.aes = 128;
    p.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  }
  return t;
}

TPML_PCR_SELECTION pcr_selection(const std::vector<std::uint32_t>& pcrs) {
  TPML_PCR_SELECTION sel{};
  sel.count = 1;
  sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
  sel.pcrSelections[0].sizeofSelect = 3;
  for (auto p : pcrs) sel.pcrSelections[0].pcrSelect[p / 8] |= static_cast<std::uint8_t>(1u << (p % 8));
  return sel;
}

// The TPM strips trailing zero bytes of an authValue when it stores it (and
// the HMAC key is then the stripped value); strip ours the same way.
void derive_auth(const SecureBytes& auth_value, TPM2B_AUTH& out) {
  out = TPM2B_AUTH{};
  unsigned int len = 0;
  if (EVP_Digest(auth_value.data(), auth_value.size(), out.buffer, &len, EVP_sha256(), nullptr) != 1) {
    len = 0;
  }
  while (len > 0 && out.buffer[len - 1] == 0) --len;
  out.size = static_cast<UINT16>(len);
}

Result<std::vector<std::uint32_t>> normalize_pcrs(std::vector<std::uint32_t> pcrs) {
  std::sort(pcrs.begin(), pcrs.end());
  pcrs.erase(std::unique(pcrs.begin(), pcrs.end()), pcrs.end());
  if (!pcrs.empty() && pcrs.back() > kMaxPcr) return fail(Errc::invalid_argument, "PCR index out of range (0..23)");
  return pcrs;
}

Result<void> check_policy(const SealPolicy& policy) {
  if (policy.auth_value && policy.auth_value->empty()) {
    return fail(Errc::invalid_argument, "TPM auth value must not be empty (leave it unset instead)");
  }
  if (policy.primary_handle != 0 &&
      (policy.primary_handle < kPersistentFirst || policy.primary_handle > kPersistentLast)) {
    return fail(Errc::invalid_argument, "persistent primary handle must be in 0x81000000..0x81FFFFFF");
  }
  if (policy.primary_alg != PrimaryAlg::ecc_p256 && policy.primary_alg != PrimaryAlg::rsa2048) {
    return fail(Errc::invalid_argument, "unknown primary key algorithm");
  }
  return {};
}

// Wipes the SAPI response buffer, which holds the last response's first
// parameter decrypted in place by ESAPI (the unsealed secret).
void wipe_response_buffer(ESYS_CONTEXT* esys) noexcept {
  TSS2_SYS_CONTEXT* sys = nullptr;
  if (Esys_GetSysContext(esys, &sys) != TSS2_RC_SUCCESS || sys == nullptr) return;
  size_t size = 0;
  const uint8_t* buf = nullptr;
  if (Tss2_Sys_GetRpBuffer(sys, &size, &buf) != TSS2_RC_SUCCESS || buf == nullptr) return;
  kms::secure_zero(const_cast<uint8_t*>(buf), size);
}

struct Primary {
  EsysHandle handle;
  std::vector<std::uint8_t> name;
};

}  // namespace

SealPolicy SealPolicy::clone() const {
  SealPolicy p;
  p.pcrs = pcrs;
  if (auth_value) p.auth_value = auth_value->clone();
  p.primary_handle = primary_handle;
  p.primary_alg = primary_alg;
  return p;
}

namespace {

// The operations, on one open ESAPI context.
class Session {
 public:
  Session(ESYS_CONTEXT* ctx, const std::string& tcti) : ctx_(ctx), tcti_(tcti) {}

  kms::Error error(TSS2_RC rc, std::string_view call, Step step) const { return tss_error(rc, call, step, tcti_); }

  Result<Primary> primary(PrimaryAlg alg, std::uint32_t persistent_handle) {
    Primary out;
    ESYS_TR tr = ESYS_TR_NONE;
    if (persistent_handle != 0) {
      const TSS2_RC rc = Esys_TR_FromTPMPublic(ctx_, persistent_handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
      if (rc != TSS2_RC_SUCCESS) {
        kms::Error e = error(rc, "Esys_TR_FromTPMPublic", Step::persistent);
        char at[32];
        (void)std::snprintf(at, sizeof at, "at 0x%08x", static_cast<unsigned>(persistent_handle));
        if (const auto pos = e.message.find("at the configured handle"); pos != std::string::npos) {
          e.message.replace(pos, std::strlen("at the configured handle"), at);
        }
        return std::unexpected(std::move(e));
      }
      out.handle = EsysHandle(ctx_, tr, EsysHandle::Kind::close);
    } else {
      const TPM2B_PUBLIC in_public = primary_template(alg);
      const TPM2B_SENSITIVE_CREATE in_sensitive{};
      const TPM2B_DATA outside_info{};
      const TPML_PCR_SELECTION creation_pcr{};
      const TSS2_RC rc =
          Esys_CreatePrimary(ctx_, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &in_sensitive,
                             &in_public, &outside_info, &creation_pcr, &tr, nullptr, nullptr, nullptr, nullptr);
      if (rc != TSS2_RC_SUCCESS) return std::unexpected(error(rc, "Esys_CreatePrimary", Step::create_primary));
      out.handle = EsysHandle(ctx_, tr, EsysHandle::Kind::flush);
    }
    EsysOut<TPM2B_NAME> name;
    const TSS2_RC rc = Esys_TR_GetName(ctx_, out.handle.get(), name.out());
    if (rc != TSS2_RC_SUCCESS) return std::unexpected(error(rc, "Esys_TR_GetName", Step::other));
    out.name.assign(name.p->name, name.p->name + name.p->size);
    return out;
  }

  // A session salted with `salt_key` (so only this TPM knows its key) and
  // encrypting the first command and response parameters.
  Result<EsysHandle> start_session(TPM2_SE type, ESYS_TR salt_key) {
    ESYS_TR tr = ESYS_TR_NONE;
    const bool trial = type == TPM2_SE_TRIAL;
    TSS2_RC rc = Esys_StartAuthSession(ctx_, trial ? ESYS_TR_NONE : salt_key, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                       ESYS_TR_NONE, nullptr, type, trial ? &kNoSymmetric : &kSessionSymmetric,
                                       TPM2_ALG_SHA256, &tr);
    if (rc != TSS2_RC_SUCCESS) return std::unexpected(error(rc, "Esys_StartAuthSession", Step::session));
    EsysHandle session(ctx_, tr, EsysHandle::Kind::flush);
    rc = Esys_TRSess_SetAttributes(ctx_, tr, trial ? TPMA_SESSION_CONTINUESESSION : kEncryptedSessionAttrs, 0xff);
    if (rc != TSS2_RC_SUCCESS) return std::unexpected(error(rc, "Esys_TRSess_SetAttributes", Step::session));
    return session;
  }

  Result<void> apply_policy(ESYS_TR session, const std::vector<std::uint32_t>& pcrs, bool auth_value) {
    if (!pcrs.empty()) {
      const TPM2B_DIGEST current{};  // empty: the TPM hashes the PCR values it holds now
      const TPML_PCR_SELECTION sel = pcr_selection(pcrs);
      const TSS2_RC rc = Esys_PolicyPCR(ctx_, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &current, &sel);
      if (rc != TSS2_RC_SUCCESS) return std::unexpected(error(rc, "Esys_PolicyPCR", Step::session));
    }
    if (auth_value) {
      const TSS2_RC rc = Esys_PolicyAuthValue(ctx_, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE);
      if (rc != TSS2_RC_SUCCESS) return std::unexpected(error(rc, "Esys_PolicyAuthValue", Step::session));
    }
    return {};
  }

  Result<SealedBlob> seal(const SealPolicy& policy, const SecureBytes& secret) {
    if (secret.empty()) return fail(Errc::invalid_argument, "secret to seal must not be empty");
    if (secret.size() > kMaxSealedSecret) {
      return fail(Errc::invalid_argument, "secret to seal must be at most 128 bytes");
    }
    ROOTSEAL_TRY(check_policy(policy));
    SealedBlob blob;
    ROOTSEAL_TRY_ASSIGN(blob.pcrs, normalize_pcrs(policy.pcrs));
    blob.primary_alg = policy.primary_alg;
    blob.primary_handle = policy.primary_handle;
    blob.has_auth_value = policy.auth_value.has_value();

    Primary parent;
    ROOTSEAL_TRY_ASSIGN(parent, primary(policy.primary_alg, policy.primary_handle));
    blob.primary_name = parent.name;

    // The policy digest, computed by the TPM over its current PCR values.
    TPM2B_DIGEST policy_digest{};
    {
      EsysHandle trial;
      ROOTSEAL_TRY_ASSIGN(trial, start_session(TPM2_SE_TRIAL, ESYS_TR_NONE));
      ROOTSEAL_TRY(apply_policy(trial.get(), blob.pcrs, blob.has_auth_value));
      EsysOut<TPM2B_DIGEST> digest;
      const TSS2_RC rc =
          Esys_PolicyGetDigest(ctx_, trial.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, digest.out());
      if (rc != TSS2_RC_SUCCESS) return std::unexpected(error(rc, "Esys_PolicyGetDigest", Step::session));
      policy_digest = *digest.p;
    }

    EsysHandle enc;
    ROOTSEAL_TRY_ASSIGN(enc, start_session(TPM2_SE_HMAC, parent.handle.get()));

    TPM2B_PUBLIC in_public{};
    TPMT_PUBLIC& p = in_public.publicArea;
    p.type = TPM2_ALG_KEYEDHASH;
    p.nameAlg = TPM2_ALG_SHA256;
    // No userWithAuth: the USER role needs the policy. adminWithPolicy: the
    // ADMIN role (ObjectChangeAuth ...) needs it too, so the auth value
    // cannot be changed behind the policy's back.
    p.objectAttributes =
        TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_NODA | TPMA_OBJECT_ADMINWITHPOLICY;
    p.authPolicy = policy_digest;
    p.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;

    Wiped<TPM2B_SENSITIVE_CREATE> in_sensitive;
    if (policy.auth_value) derive_auth(*policy.auth_value, in_sensitive.value.sensitive.userAuth);
    std::memcpy(in_sensitive.value.sensitive.data.buffer, secret.data(), secret.size());
    in_sensitive.value.sensitive.data.size = static_cast<UINT16>(secret.size());

    const TPM2B_DATA outside_info{};
    const TPML_PCR_SELECTION creation_pcr{};
    EsysOut<TPM2B_PRIVATE> out_private;
    EsysOut<TPM2B_PUBLIC> out_public;
    EsysOut<TPM2B_CREATION_DATA> creation_data;
    EsysOut<TPM2B_DIGEST> creation_hash;
    EsysOut<TPMT_TK_CREATION> creation_ticket;
    const TSS2_RC rc = Esys_Create(ctx_, parent.handle.get(), enc.get(), ESYS_TR_NONE, ESYS_TR_NONE,
                                   &in_sensitive.value, &in_public, &outside_info, &creation_pcr, out_private.out(),
                                   out_public.out(), creation_data.out(), creation_hash.out(), creation_ticket.out());
    if (rc != TSS2_RC_SUCCESS) return std::unexpected(error(rc, "Esys_Create", Step::create));

    std::vector<std::uint8_t> buf(sizeof(TPM2B_PUBLIC));
    std::size_t off = 0;
    TSS2_RC mrc = Tss2_MU_TPM2B_PUBLIC_Marshal(out_public.p, buf.data(), buf.size(), &off);
    if (mrc != TSS2_RC_SUCCESS) return std::unexpected(error(mrc, "Tss2_MU_TPM2B_PUBLIC_Marshal", Step::other));
    blob.public_area.assign(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(off));
    buf.assign(sizeof(TPM2B_PRIVATE), 0);
    off = 0;
    mrc = Tss2_MU_TPM2B_PRIVATE_Marshal(out_private.p, buf.data(), buf.size(), &off);
    if (mrc != TSS2_RC_SUCCESS) return std::unexpected(error(mrc, "Tss2_MU_TPM2B_PRIVATE_Marshal", Step::other));
    blob.private_area.assign(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(off));
    return blob;
  }

  Result<SecureBytes> unseal(const SealPolicy* policy, const SealedBlob& blob) {
    if (blob.has_auth_value && (policy == nullptr || !policy->auth_value)) {
      return fail(Errc::sealed, "this sealed blob needs a TPM auth value and none was given");
    }
    if (blob.has_auth_value && policy->auth_value->empty()) {
      return fail(Errc::invalid_argument, "TPM auth value must not be empty");
    }
    if (!std::is_sorted(blob.pcrs.begin(), blob.pcrs.end()) || (!blob.pcrs.empty() && blob.pcrs.back() > kMaxPcr)) {
      return fail(Errc::invalid_argument, "malformed sealed blob: bad PCR list");
    }
    TPM2B_PUBLIC pub{};
    TPM2B_PRIVATE priv{};
    std::size_t off = 0;
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob.public_area.data(), blob.public_area.size(), &off, &pub) !=
        TSS2_RC_SUCCESS) {
      return fail(Errc::invalid_argument, "malformed sealed blob: bad public area");
    }
    off = 0;
    if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob.private_area.data(), blob.private_area.size(), &off, &priv) !=
        TSS2_RC_SUCCESS) {
      return fail(Errc::invalid_argument, "malformed sealed blob: bad private area");
    }

    Primary parent;
    ROOTSEAL_TRY_ASSIGN(parent, primary(blob.primary_alg, blob.primary_handle));
    // The parent recreated from this TPM's owner seed has the name recorded at
    // sealing time, or this is another TPM (or the owner hierarchy was
    // cleared). Also keeps a substituted public key from receiving the salt.
    if (!blob.primary_name.empty() && parent.name != blob.primary_name) {
      return fail(Errc::sealed,
                  std::string(detail::kForeignBlob) +
                      " (its storage primary key differs: another TPM, or the owner hierarchy was cleared)");
    }

    ESYS_TR item_tr = ESYS_TR_NONE;
    TSS2_RC rc =
        Esys_Load(ctx_, parent.handle.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, &item_tr);
    if (rc != TSS2_RC_SUCCESS) return std::unexpected(error(rc, "Esys_Load", Step::load));
    EsysHandle item(ctx_, item_tr, EsysHandle::Kind::flush);

    EsysHandle session;
    ROOTSEAL_TRY_ASSIGN(session, start_session(TPM2_SE_POLICY, parent.handle.get()));
    ROOTSEAL_TRY(apply_policy(session.get(), blob.pcrs, blob.has_auth_value));
    if (blob.has_auth_value) {
      Wiped<TPM2B_AUTH> auth;
      derive_auth(*policy->auth_value, auth.value);
      rc = Esys_TR_SetAuth(ctx_, item.get(), &auth.value);
      if (rc != TSS2_RC_SUCCESS) return std::unexpected(error(rc, "Esys_TR_SetAuth", Step::other));
    }

    TPM2B_SENSITIVE_DATA* out = nullptr;
    rc = Esys_Unseal(ctx_, item.get(), session.get(), ESYS_TR_NONE, ESYS_TR_NONE, &out);
    wipe_response_buffer(ctx_);
    if (blob.has_auth_value) {
      // Overwrite ESAPI's copy of the auth value (freed unwiped at flush).
      const TPM2B_AUTH empty{};
      Esys_TR_SetAuth(ctx_, item.get(), &empty);
    }
    if (rc != TSS2_RC_SUCCESS) {
      if (out != nullptr) {
        kms::secure_zero(out, sizeof *out);
        Esys_Free(out);
      }
      return std::unexpected(error(rc, "Esys_Unseal", Step::unseal));
    }
    SecureBytes secret;
    try {
      secret = SecureBytes::copy_of(std::span<const std::uint8_t>(out->buffer, out->size));
    } catch (...) {
      kms::secure_zero(out, sizeof *out);
      Esys_Free(out);
      throw;
    }
    kms::secure_zero(out, sizeof *out);
    Esys_Free(out);
    return secret;
  }

  Result<SecureBytes> random(std::size_t n) {
    SecureBytes result(n);
    // No encrypted session: these bytes cross the bus in clear, so callers
    // only ever XOR them into bytes of the OS CSPRNG (defence in depth
    // against a weak OS RNG, never the only source).
    std::size_t done = 0;
    while (done < n) {
      EsysOut<TPM2B_DIGEST> bytes;
      const auto want = static_cast<UINT16>(std::min<std::size_t>(n - done, sizeof(TPMU_HA)));
      const TSS2_RC rc = Esys_GetRandom(ctx_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, want, bytes.out());
      if (rc != TSS2_RC_SUCCESS) return std::unexpected(error(rc, "Esys_GetRandom", Step::other));
      const std::size_t got = std::min<std::size_t>(bytes.p->size, n - done);
      std::memcpy(result.data() + done, bytes.p->buffer, got);
      kms::secure_zero(bytes.p, sizeof *bytes.p);
      if (got == 0) return fail(Errc::unavailable, "TPM returned no random bytes");
      done += got;
    }
    return result;
  }

 private:
  ESYS_CONTEXT* ctx_;
  const std::string& tcti_;
};

}  // namespace

// ---------------------------------------------------------------------------

Tpm::Tpm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tpm::Tpm(Tpm&&) noexcept = default;
Tpm& Tpm::operator=(Tpm&&) noexcept = default;
Tpm::~Tpm() = default;

const std::string& Tpm::tcti() const noexcept { return impl_->tcti; }

Result<Tpm> Tpm::open(std::string_view tcti) {
  auto impl = std::make_unique<Impl>();
  impl->tcti = std::string(tcti);
  TSS2_RC rc = Tss2_TctiLdr_Initialize(impl->tcti.c_str(), &impl->tcti_ctx);
  if (rc != TSS2_RC_SUCCESS) {
    impl->tcti_ctx = nullptr;
    return std::unexpected(tss_error(rc, "Tss2_TctiLdr_Initialize", Step::tcti, impl->tcti));
  }
  rc = Esys_Initialize(&impl->esys, impl->tcti_ctx, nullptr);
  if (rc != TSS2_RC_SUCCESS) {
    impl->esys = nullptr;
    return std::unexpected(tss_error(rc, "Esys_Initialize", Step::tcti, impl->tcti));
  }
  rc = Esys_Startup(impl->esys, TPM2_SU_CLEAR);
  if (rc != TSS2_RC_SUCCESS && detail::tpm_base_code(rc) != TPM2_RC_INITIALIZE) {
    return std::unexpected(tss_error(rc, "Esys_Startup", Step::startup, impl->tcti));
  }
  return Tpm(std::move(impl));
}

Result<SealedBlob> Tpm::seal(const SealPolicy& policy, const SecureBytes& secret) {
  return Session(impl_->esys, impl_->tcti).seal(policy, secret);
}

Result<SecureBytes> Tpm::unseal(const SealPolicy& policy, const SealedBlob& blob) {
  return Session(impl_->esys, impl_->tcti).unseal(&policy, blob);
}

Result<SecureBytes> Tpm::unseal(const SealedBlob& blob) {
  return Session(impl_->esys, impl_->tcti).unseal(nullptr, blob);
}

Result<SecureBytes> Tpm::random(std::size_t n) { return Session(impl_->esys, impl_->tcti).random(n); }

}  // namespace rootseal::tpm
