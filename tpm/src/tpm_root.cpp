// rootseal::tpm — TpmRoot (a TPM-sealed root key held in a kms::SoftwareRoot)
// and the sealed-secret file helpers (the TPM-sealed HSM PIN).
//
// Locks: State::op_mu serializes the operations that talk to the TPM or the
// blob file (probe, initialize, import_key, reseal); State::key_mu guards the
// held key and is only held briefly, never across a TPM call, so wrap/unwrap
// never wait for the TPM.
#include <mutex>
#include <system_error>
#include <utility>

#include "rootseal/tpm/tpm_root.hpp"

namespace rootseal::tpm {

using kms::Errc;
using kms::fail;
using kms::Result;
using kms::SecureBytes;

namespace {

constexpr std::size_t kRootKeySize = 32;

// OS CSPRNG XOR TPM RNG: as strong as the better of the two.
Result<SecureBytes> generate_root_key(Tpm& tpm) {
  SecureBytes key = SecureBytes::random(kRootKeySize);
  SecureBytes from_tpm;
  ROOTSEAL_TRY_ASSIGN(from_tpm, tpm.random(kRootKeySize));
  for (std::size_t i = 0; i < kRootKeySize; ++i) key.data()[i] ^= from_tpm.data()[i];
  return key;
}

// Seals `key` under `policy` and unseals the new blob once before anyone
// relies on it (a blob that does not unseal must never replace one that does).
Result<SealedBlob> seal_verified(Tpm& tpm, const SealPolicy& policy, const SecureBytes& key) {
  SealedBlob blob;
  ROOTSEAL_TRY_ASSIGN(blob, tpm.seal(policy, key));
  SecureBytes back;
  ROOTSEAL_TRY_ASSIGN(back, tpm.unseal(policy, blob));
  if (!(back == key)) return fail(Errc::internal, "TPM returned a different secret than the one just sealed");
  return blob;
}

// A cheap early check (save(replace=false) is the atomic one).
Result<void> require_absent(const std::filesystem::path& p) {
  std::error_code ec;
  const bool exists = std::filesystem::exists(p, ec);
  if (ec) return fail(Errc::storage_failure, "cannot check " + p.string() + ": " + ec.message());
  if (exists) return fail(Errc::already_exists, "a TPM-sealed root key already exists at " + p.string());
  return {};
}

}  // namespace

struct TpmRoot::State {
  TpmRootConfig config;  // config.policy is replaced by reseal()

  std::mutex op_mu;  // TPM and file operations

  mutable std::mutex key_mu;  // held key
  SecureBytes key;            // the unsealed root key (for reseal and the probe comparison)
  std::shared_ptr<kms::SoftwareRoot> root;
  std::string last_error;  // why no key is held

  std::shared_ptr<kms::SoftwareRoot> held() const {
    std::lock_guard lock(key_mu);
    return root;
  }
  Result<std::shared_ptr<kms::SoftwareRoot>> held_or_sealed() const {
    std::lock_guard lock(key_mu);
    if (root) return root;
    return fail(Errc::sealed, last_error.empty() ? "TPM root key is not unsealed yet"
                                                 : "TPM root key is not unsealed: " + last_error);
  }
  Result<void> hold(SecureBytes k) {
    std::unique_ptr<kms::SoftwareRoot> r;
    ROOTSEAL_TRY_ASSIGN(r, kms::SoftwareRoot::create(k.clone()));
    std::lock_guard lock(key_mu);
    key = std::move(k);
    root = std::move(r);
    last_error.clear();
    return {};
  }
  void drop(const kms::Error& why) {
    std::lock_guard lock(key_mu);
    key.clear();
    root.reset();
    last_error = why.message;
  }
};

TpmRoot::TpmRoot(std::unique_ptr<State> state) : state_(std::move(state)) {}
TpmRoot::~TpmRoot() = default;

std::unique_ptr<TpmRoot> TpmRoot::create(TpmRootConfig config) {
  auto state = std::make_unique<State>();
  state->config = std::move(config);
  return std::unique_ptr<TpmRoot>(new TpmRoot(std::move(state)));
}

bool TpmRoot::holds_key() const { return state_->held() != nullptr; }

Result<void> TpmRoot::initialize() {
  State& s = *state_;
  std::lock_guard op(s.op_mu);
  ROOTSEAL_TRY(require_absent(s.config.blob_path));
  auto tpm = Tpm::open(s.config.tcti);
  if (!tpm) return std::unexpected(std::move(tpm).error());
  SecureBytes key;
  ROOTSEAL_TRY_ASSIGN(key, generate_root_key(*tpm));
  SealedBlob blob;
  ROOTSEAL_TRY_ASSIGN(blob, seal_verified(*tpm, s.config.policy, key));
  ROOTSEAL_TRY(blob.save(s.config.blob_path, /*replace=*/false));
  return s.hold(std::move(key));
}

Result<void> TpmRoot::import_key(SecureBytes root_key, bool replace) {
  if (root_key.size() != kRootKeySize) return fail(Errc::invalid_argument, "TPM root key must be 32 bytes");
  State& s = *state_;
  std::lock_guard op(s.op_mu);
  if (!replace) ROOTSEAL_TRY(require_absent(s.config.blob_path));
  auto tpm = Tpm::open(s.config.tcti);
  if (!tpm) return std::unexpected(std::move(tpm).error());
  SealedBlob blob;
  ROOTSEAL_TRY_ASSIGN(blob, seal_verified(*tpm, s.config.policy, root_key));
  ROOTSEAL_TRY(blob.save(s.config.blob_path, replace));
  return s.hold(std::move(root_key));
}

Result<void> TpmRoot::reseal(const SealPolicy& policy) {
  State& s = *state_;
  std::lock_guard op(s.op_mu);
  SecureBytes key;
  {
    std::lock_guard lock(s.key_mu);
    if (!s.root) {
      return fail(Errc::sealed,
                  "reseal needs the TPM root key unsealed (or restore it with the key ceremony and import it)");
    }
    key = s.key.clone();
  }
  auto tpm = Tpm::open(s.config.tcti);
  if (!tpm) return std::unexpected(std::move(tpm).error());
  SealedBlob blob;
  ROOTSEAL_TRY_ASSIGN(blob, seal_verified(*tpm, policy, key));
  ROOTSEAL_TRY(blob.save(s.config.blob_path));
  s.config.policy = policy.clone();
  return {};
}

Result<void> TpmRoot::probe() {
  State& s = *state_;
  std::lock_guard op(s.op_mu);
  const auto failed = [&](kms::Error e) -> Result<void> {
    s.drop(e);
    return std::unexpected(std::move(e));
  };

  if (!s.config.verify_on_probe && s.held()) return {};

  auto blob = SealedBlob::load(s.config.blob_path);
  if (!blob) {
    if (blob.error().code == Errc::not_found) {
      return failed(
          {Errc::sealed, "no TPM-sealed root key at " + s.config.blob_path.string() + " (initialize one first)"});
    }
    if (blob.error().code == Errc::storage_failure) return failed({Errc::sealed, blob.error().message});
    return failed(std::move(blob).error());
  }
  auto tpm = Tpm::open(s.config.tcti);
  if (!tpm) return failed(std::move(tpm).error());
  auto key = tpm->unseal(s.config.policy, *blob);
  if (!key) return failed(std::move(key).error());
  if (key->size() != kRootKeySize) return failed({Errc::sealed, "the TPM-sealed secret is not a 32-byte root key"});

  bool replaced = false;
  {
    std::lock_guard lock(s.key_mu);
    if (s.root) {
      if (s.key == *key) return {};
      replaced = true;  // on disk, by something else than a reseal of the same key
    }
  }
  if (replaced) {
    return failed({Errc::sealed, "the TPM-sealed root key at " + s.config.blob_path.string() +
                                     " is no longer the key in use (it was replaced on disk)"});
  }
  auto held = s.hold(std::move(*key));
  if (!held) return failed(std::move(held).error());
  return {};
}

Result<std::string> TpmRoot::key_check_value() {
  std::shared_ptr<kms::SoftwareRoot> root;
  ROOTSEAL_TRY_ASSIGN(root, state_->held_or_sealed());
  return root->key_check_value();
}

Result<std::vector<std::uint8_t>> TpmRoot::wrap(const SecureBytes& key) {
  std::shared_ptr<kms::SoftwareRoot> root;
  ROOTSEAL_TRY_ASSIGN(root, state_->held_or_sealed());
  return root->wrap(key);
}

Result<SecureBytes> TpmRoot::unwrap(std::span<const std::uint8_t> wrapped) {
  std::shared_ptr<kms::SoftwareRoot> root;
  ROOTSEAL_TRY_ASSIGN(root, state_->held_or_sealed());
  return root->unwrap(wrapped);
}

// ---------------------------------------------------------------------------

Result<void> seal_secret_to_file(std::string_view tcti, const SealPolicy& policy, const SecureBytes& secret,
                                 const std::filesystem::path& path) {
  auto tpm = Tpm::open(tcti);
  if (!tpm) return std::unexpected(std::move(tpm).error());
  SealedBlob blob;
  ROOTSEAL_TRY_ASSIGN(blob, seal_verified(*tpm, policy, secret));
  return blob.save(path);
}

namespace {

Result<SecureBytes> unseal_file(std::string_view tcti, const SealPolicy* policy, const std::filesystem::path& path) {
  SealedBlob blob;
  ROOTSEAL_TRY_ASSIGN(blob, SealedBlob::load(path));
  auto tpm = Tpm::open(tcti);
  if (!tpm) return std::unexpected(std::move(tpm).error());
  return policy != nullptr ? tpm->unseal(*policy, blob) : tpm->unseal(blob);
}

}  // namespace

Result<SecureBytes> unseal_secret_from_file(std::string_view tcti, const std::filesystem::path& path) {
  return unseal_file(tcti, nullptr, path);
}

Result<SecureBytes> unseal_secret_from_file(std::string_view tcti, const SealPolicy& policy,
                                            const std::filesystem::path& path) {
  return unseal_file(tcti, &policy, path);
}

}  // namespace rootseal::tpm
