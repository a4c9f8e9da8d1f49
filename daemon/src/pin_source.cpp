#include "pin_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace rootseal::daemon {

using kms::Errc;
using kms::fail;

kms::Result<kms::SecureBytes> read_secret_file(const std::filesystem::path& path, std::size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
  if (fd < 0) {
    return fail(Errc::sealed, path.string() + ": " + (errno == ENOENT ? "missing" : std::strerror(errno)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return fail(Errc::sealed, path.string() + ": not a regular file");
  if ((st.st_mode & 0077) != 0) {
    return fail(Errc::sealed, path.string() + ": refused, readable or writable by group or others (chmod 0400)");
  }
  if (st.st_uid != ::geteuid()) return fail(Errc::sealed, path.string() + ": refused, not owned by the service user");
  if (static_cast<std::size_t>(st.st_size) > max_bytes) return fail(Errc::sealed, path.string() + ": too large");
  kms::SecureBytes buf(max_bytes);
  std::size_t got = 0;
  while (got < max_bytes) {
    const ssize_t n = ::read(fd, buf.data() + got, max_bytes - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(Errc::sealed, path.string() + ": read failed");
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  while (got > 0 && (buf.data()[got - 1] == '\n' || buf.data()[got - 1] == '\r')) --got;
  if (got == 0) return fail(Errc::sealed, path.string() + ": empty");
  buf.truncate(got);
  return buf;
}

kms::Result<tpm::SealPolicy> tpm_seal_policy(const TpmSection& tpm) {
  tpm::SealPolicy policy;
  policy.pcrs = tpm.pcrs;
  policy.primary_handle = tpm.persistent_handle;
  policy.primary_alg = tpm.primary_rsa ? tpm::PrimaryAlg::rsa2048 : tpm::PrimaryAlg::ecc_p256;
  if (!tpm.auth_value_file.empty()) {
    auto value = read_secret_file(tpm.auth_value_file);
    if (!value) return fail(Errc::sealed, "TPM auth value file " + value.error().message);
    policy.auth_value = std::move(*value);
  }
  return policy;
}

namespace {

// The TPM-sealed PIN: not_found when there is no sealed file (next source).
kms::Result<kms::SecureBytes> pin_from_tpm(const PinConfig& pin, const TpmSection& tpm) {
  if (pin.tpm_sealed_file.empty()) return fail(Errc::not_found, "no pin.tpm_sealed_file configured");
  // No sealed file: next source, without reading the auth value or opening the TPM.
  std::error_code ec;
  if (!std::filesystem::exists(pin.tpm_sealed_file, ec) && !ec) {
    return fail(Errc::not_found, "no TPM-sealed PIN at " + pin.tpm_sealed_file.string());
  }
  tpm::SealPolicy policy;
  ROOTSEAL_TRY_ASSIGN(policy, tpm_seal_policy(tpm));
  auto secret = tpm::unseal_secret_from_file(tpm.tcti, policy, pin.tpm_sealed_file);
  if (!secret) {
    if (secret.error().code == Errc::not_found) {
      return fail(Errc::not_found, "no TPM-sealed PIN at " + pin.tpm_sealed_file.string());
    }
    return std::unexpected(std::move(secret).error());
  }
  std::size_t n = secret->size();
  while (n > 0 && (secret->data()[n - 1] == '\n' || secret->data()[n - 1] == '\r')) --n;
  if (n == 0) return fail(Errc::sealed, "the TPM-sealed PIN at " + pin.tpm_sealed_file.string() + " is empty");
  secret->truncate(n);
  return secret;
}

}  // namespace

void PinBroker::put_typed(kms::SecureBytes pin) {
  std::lock_guard lock(mu_);
  typed_ = std::move(pin);
  typed_taken_ = false;
}

bool PinBroker::finish_typed() {
  std::lock_guard lock(mu_);
  typed_.reset();
  const bool taken = typed_taken_;
  typed_taken_ = false;
  return taken;
}

std::optional<kms::SecureBytes> PinBroker::take_typed() {
  std::lock_guard lock(mu_);
  if (!typed_) return std::nullopt;
  std::optional<kms::SecureBytes> out(std::move(*typed_));
  typed_.reset();
  typed_taken_ = true;
  return out;
}

void PinBroker::handed_out(const kms::SecureBytes& pin) {
  std::lock_guard lock(mu_);
  confirmed_.reset();  // a new login starts: the old one no longer proves anything
  if (keep_confirmed_) pending_ = pin.clone();
}

void PinBroker::confirm() {
  std::lock_guard lock(mu_);
  if (pending_) {
    confirmed_ = std::move(pending_);
    pending_.reset();
  }
}

void PinBroker::forget() {
  std::lock_guard lock(mu_);
  pending_.reset();
  confirmed_.reset();
}

std::optional<kms::SecureBytes> PinBroker::confirmed() const {
  std::lock_guard lock(mu_);
  if (!confirmed_) return std::nullopt;
  return confirmed_->clone();
}

hsm::PinSource make_pin_source(const PinConfig& pin, const TpmSection& tpm, std::shared_ptr<PinBroker> broker) {
  auto pick = [pin, tpm, broker]() -> kms::Result<kms::SecureBytes> {
    std::string tried;
    for (const auto kind : pin.sources) {
      switch (kind) {
        case PinSourceKind::tpm: {
          auto secret = pin_from_tpm(pin, tpm);
          if (secret) return secret;
          tried += "tpm: " + secret.error().message + "; ";
          break;
        }
        case PinSourceKind::credential: {
          const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
          if (dir == nullptr || *dir == '\0') {
            tried += "credential: $CREDENTIALS_DIRECTORY not set; ";
            break;
          }
          auto secret = read_secret_file(std::filesystem::path(dir) / pin.credential_name);
          if (secret) return secret;
          tried += "credential: " + secret.error().message + "; ";
          break;
        }
        case PinSourceKind::file: {
          auto secret = read_secret_file(pin.file);
          if (secret) return secret;
          tried += "file: " + secret.error().message + "; ";
          break;
        }
        case PinSourceKind::typed: {
          auto typed = broker ? broker->take_typed() : std::nullopt;
          if (typed) return std::move(*typed);
          tried += "typed: no PIN typed (rootseal unseal); ";
          break;
        }
      }
    }
    if (tried.size() >= 2) tried.resize(tried.size() - 2);
    return fail(Errc::sealed, "no HSM PIN available (" + tried + ")");
  };
  return [pick = std::move(pick), broker]() -> kms::Result<kms::SecureBytes> {
    auto chosen = pick();
    if (broker) {
      if (chosen)
        broker->handed_out(*chosen);
      else
        broker->forget();
    }
    return chosen;
  };
}

}  // namespace rootseal::daemon
