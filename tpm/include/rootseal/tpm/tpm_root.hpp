// rootseal::tpm — a TPM 2.0 as root of trust, and sealing small secrets
// (the root key, the HSM PIN) to PCR values, through tpm2-tss ESAPI.
//
// Sealing: a KEYEDHASH object holding the secret (1..128 bytes) is created
// under a storage primary key of the owner hierarchy, with attributes
// fixedTPM|fixedParent|noDA|adminWithPolicy and no userWithAuth, so the TPM
// releases it only through a policy session that satisfies its authPolicy:
// TPM2_PolicyPCR over the chosen sha256 PCRs, plus TPM2_PolicyAuthValue when
// an auth value is set. The primary is either recreated on every use from the
// standard SRK template (TCG provisioning guidance; what tpm2_createprimary,
// clevis and systemd use) or a persistent key at a configured handle.
// Unsealing runs through a policy session salted with the primary key and
// parameter-encrypted (AES-128-CFB both ways), so the secret never crosses
// the TPM bus in clear; sealing sends it through a salted, encrypted HMAC
// session. Every transient object and session is flushed on every path.
//
// Errors (kms::Errc): a policy that no longer holds (PCR changed), a wrong
// auth value, a lockout, a blob from another TPM are `sealed`, with a reason
// safe to show; no TPM at the TCTI, or a TPM that stops answering or is out
// of resources, is `unavailable`; a secret or policy out of range is
// `invalid_argument`.
//
// Every call blocks on the TPM: call it from the blocking pool.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::tpm {

// The kernel's resource manager. Tests use "swtpm:host=127.0.0.1,port=N";
// any tpm2-tss TCTI configuration string works ("tabrmd:", "mssim:...").
inline constexpr std::string_view kDefaultTcti = "device:/dev/tpmrm0";

// The TPM's limit for sealed data (MAX_SYM_DATA; tpm2-tss says 256, wrongly).
inline constexpr std::size_t kMaxSealedSecret = 128;

// Template of a transient primary key (both: restricted|decrypt|fixedTPM|
// fixedParent|sensitiveDataOrigin|userWithAuth|noDA, AES-128-CFB, empty
// unique: the TCG SRK templates).
enum class PrimaryAlg : std::uint8_t { ecc_p256 = 1, rsa2048 = 2 };

struct SealPolicy {
  // PCR indices (0..23) of the sha256 bank the secret is bound to. Empty
  // binds the secret to this TPM only, with no PCR condition.
  std::vector<std::uint32_t> pcrs{7};
  // An extra secret the unsealer must present (TPM2_PolicyAuthValue), any
  // length >= 1; the TPM sees SHA-256 of it. Objects are noDA: wrong values
  // never lock the TPM out (rate limiting is the caller's business).
  std::optional<kms::SecureBytes> auth_value;
  // 0: transient primary recreated from the template below on every use.
  // Otherwise a persistent storage key handle (0x81000000..0x81FFFFFF), e.g.
  // the SRK at 0x81000001 that systemd-tpm2-setup creates.
  std::uint32_t primary_handle = 0;
  PrimaryAlg primary_alg = PrimaryAlg::ecc_p256;

  [[nodiscard]] SealPolicy clone() const;
};

// What the TPM needs to unseal: the sealed object's public and private areas
// (the private one is encrypted under the primary key and useless elsewhere),
// and how to rebuild the session and the parent. Not secret by itself.
//
// File format (big-endian):
//   "RSTS" | version u8 (=1) | primary_alg u8 | flags u8 (bit0: auth value)
//   | pcr_count u8 | primary_handle u32 | pcr_bank u16 (TPM2_ALG_SHA256)
//   | pcr index u8 x pcr_count (strictly increasing)
//   | u16 len + primary name (TPM2B_NAME contents at sealing time)
//   | u16 len + marshalled TPM2B_PUBLIC | u16 len + marshalled TPM2B_PRIVATE
//   | SHA-256 of everything before it
struct SealedBlob {
  static constexpr std::uint8_t kVersion = 1;

  PrimaryAlg primary_alg = PrimaryAlg::ecc_p256;
  std::uint32_t primary_handle = 0;
  std::vector<std::uint32_t> pcrs;
  bool has_auth_value = false;
  std::vector<std::uint8_t> primary_name;
  std::vector<std::uint8_t> public_area;
  std::vector<std::uint8_t> private_area;

  [[nodiscard]] std::vector<std::uint8_t> serialize() const;
  // invalid_argument for anything malformed.
  static kms::Result<SealedBlob> parse(std::span<const std::uint8_t> bytes);

  // Atomic: temp file (0600) in the same folder, fsync, rename (or, with
  // replace=false, link: already_exists if the path exists), fsync of the
  // folder. storage_failure on I/O errors.
  kms::Result<void> save(const std::filesystem::path& path, bool replace = true) const;
  // not_found if absent; sealed if damaged; storage_failure on I/O errors.
  static kms::Result<SealedBlob> load(const std::filesystem::path& path);
};

namespace detail {
struct TpmAccess;
}

// One connection to a TPM (one ESAPI context). Not thread-safe: one user at
// a time. Objects and sessions live only inside a call.
class Tpm {
 public:
  // Loads the TCTI, initializes ESAPI and sends TPM2_Startup(CLEAR)
  // (TPM_RC_INITIALIZE, "already started", is fine).
  static kms::Result<Tpm> open(std::string_view tcti = kDefaultTcti);

  Tpm(Tpm&&) noexcept;
  Tpm& operator=(Tpm&&) noexcept;
  Tpm(const Tpm&) = delete;
  Tpm& operator=(const Tpm&) = delete;
  ~Tpm();

  // Seals `secret` (1..128 bytes) under the policy, to the PCR values the
  // TPM holds now.
  kms::Result<SealedBlob> seal(const SealPolicy& policy, const kms::SecureBytes& secret);
  // Unseals. The PCR selection, primary key and template come from the blob
  // (they are what the TPM checks); only policy.auth_value is used here.
  kms::Result<kms::SecureBytes> unseal(const SealPolicy& policy, const SealedBlob& blob);
  kms::Result<kms::SecureBytes> unseal(const SealedBlob& blob);

  // n bytes from the TPM's RNG, over an encrypted session.
  kms::Result<kms::SecureBytes> random(std::size_t n);

  [[nodiscard]] const std::string& tcti() const noexcept;

 private:
  struct Impl;
  explicit Tpm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend struct detail::TpmAccess;
};

struct TpmRootConfig {
  std::string tcti = std::string(kDefaultTcti);
  // The sealed root key, in the state folder (e.g. /var/lib/rootseal/tpm-root.seal).
  std::filesystem::path blob_path;
  // Used to seal (initialize, import_key) and for its auth value at unseal.
  SealPolicy policy;
  // probe() unseals again every time, even with the key held, so a PCR
  // change (or a vanished TPM) seals the daemon at the next probe. false:
  // once held, probe() does not touch the TPM.
  bool verify_on_probe = true;
};

// The root key (AES-256) sealed to the TPM; once unsealed it is held in a
// kms::SoftwareRoot, which does wrap/unwrap (AES-KWP) and the KCV.
// Thread-safe. The TPM connection is opened per operation (probe,
// initialize, reseal) and closed again.
class TpmRoot final : public kms::RootOfTrust {
 public:
  // Does not touch the TPM or the file yet.
  static std::unique_ptr<TpmRoot> create(TpmRootConfig config);
  ~TpmRoot() override;

  // Generates a root key (OS CSPRNG XOR TPM RNG), seals it, writes the blob
  // and holds the key. already_exists if the blob file exists.
  kms::Result<void> initialize();
  // Seals a given 32-byte root key (restored by the ceremony) and holds it;
  // replaces an existing blob only if `replace` (after a successful trial
  // unseal of the new blob).
  kms::Result<void> import_key(kms::SecureBytes root_key, bool replace);
  // Re-seals the held root key under `policy` and the current PCR values
  // (after an intended change, e.g. a firmware update); the new blob is
  // unsealed once before it replaces the old file. sealed if no key is held.
  kms::Result<void> reseal(const SealPolicy& policy);

  // True while the unsealed root key is held.
  [[nodiscard]] bool holds_key() const;

  [[nodiscard]] std::string_view kind() const noexcept override { return "tpm"; }
  // Unseals the blob (when no key is held, or always with verify_on_probe);
  // on failure drops the held key and returns the mapped error.
  kms::Result<void> probe() override;
  kms::Result<std::string> key_check_value() override;
  kms::Result<std::vector<std::uint8_t>> wrap(const kms::SecureBytes& key) override;
  kms::Result<kms::SecureBytes> unwrap(std::span<const std::uint8_t> wrapped) override;

 private:
  struct State;
  explicit TpmRoot(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The TPM-sealed HSM PIN (or any small secret): seal to a file (0600, atomic
// replace) and unseal from it. unseal: not_found if the file is absent.
kms::Result<void> seal_secret_to_file(std::string_view tcti, const SealPolicy& policy, const kms::SecureBytes& secret,
                                      const std::filesystem::path& path);
kms::Result<kms::SecureBytes> unseal_secret_from_file(std::string_view tcti, const std::filesystem::path& path);
kms::Result<kms::SecureBytes> unseal_secret_from_file(std::string_view tcti, const SealPolicy& policy,
                                                      const std::filesystem::path& path);

}  // namespace rootseal::tpm
