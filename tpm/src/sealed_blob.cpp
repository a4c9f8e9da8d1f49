// rootseal::tpm — SealedBlob: the versioned file format, atomic save, load.
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tpm2_types.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include "rootseal/tpm/tpm_root.hpp"

namespace rootseal::tpm {

using kms::Errc;
using kms::fail;

namespace {

constexpr std::array<std::uint8_t, 4> kMagic{'R', 'S', 'T', 'S'};
constexpr std::size_t kDigestSize = 32;
constexpr std::uint8_t kFlagAuthValue = 0x01;
constexpr std::uint32_t kMaxPcr = 23;
constexpr std::size_t kMaxFileSize = std::size_t{64} * 1024;

void put_u16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}
void put_bytes16(std::vector<std::uint8_t>& out, const std::vector<std::uint8_t>& b) {
  put_u16(out, static_cast<std::uint16_t>(b.size()));
  out.insert(out.end(), b.begin(), b.end());
}

std::array<std::uint8_t, kDigestSize> sha256(std::span<const std::uint8_t> data) {
  std::array<std::uint8_t, kDigestSize> md{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md.data(), &len, EVP_sha256(), nullptr) != 1 || len != kDigestSize) {
    md.fill(0);  // never matches a real checksum
  }
  return md;
}

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> b) : b_(b) {}
  bool u8(std::uint8_t& v) {
    if (b_.size() - pos_ < 1) return false;
    v = b_[pos_++];
    return true;
  }
  bool u16(std::uint16_t& v) {
    if (b_.size() - pos_ < 2) return false;
    v = static_cast<std::uint16_t>((b_[pos_] << 8) | b_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (b_.size() - pos_ < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | b_[pos_++];
    return true;
  }
  bool bytes(std::size_t n, std::vector<std::uint8_t>& out) {
    if (b_.size() - pos_ < n) return false;
    out.assign(b_.begin() + static_cast<std::ptrdiff_t>(pos_), b_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
    pos_ += n;
    return true;
  }
  bool bytes16(std::vector<std::uint8_t>& out, std::size_t max) {
    std::uint16_t n = 0;
    return u16(n) && n <= max && bytes(n, out);
  }
  [[nodiscard]] std::size_t pos() const { return pos_; }

 private:
  std::span<const std::uint8_t> b_;
  std::size_t pos_ = 0;
};

kms::Error malformed(std::string_view why) {
  return {Errc::invalid_argument, "malformed sealed blob: " + std::string(why)};
}

// write(2) all of it, through EINTR.
bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

}  // namespace

std::vector<std::uint8_t> SealedBlob::serialize() const {
  std::vector<std::uint8_t> out(kMagic.begin(), kMagic.end());
  out.push_back(kVersion);
  out.push_back(static_cast<std::uint8_t>(primary_alg));
  out.push_back(has_auth_value ? kFlagAuthValue : 0);
  out.push_back(static_cast<std::uint8_t>(pcrs.size()));
  put_u32(out, primary_handle);
  put_u16(out, TPM2_ALG_SHA256);
  for (auto p : pcrs) out.push_back(static_cast<std::uint8_t>(p));
  put_bytes16(out, primary_name);
  put_bytes16(out, public_area);
  put_bytes16(out, private_area);
  const auto md = sha256(out);
  out.insert(out.end(), md.begin(), md.end());
  return out;
}

kms::Result<SealedBlob> SealedBlob::parse(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < kMagic.size() + kDigestSize) return std::unexpected(malformed("too short"));
  if (!std::equal(kMagic.begin(), kMagic.end(), bytes.begin()))
    return std::unexpected(malformed("not a rootseal TPM blob"));
  const auto body = bytes.first(bytes.size() - kDigestSize);
  const auto md = sha256(body);
  if (!kms::constant_time_equal(md, bytes.last(kDigestSize))) return std::unexpected(malformed("checksum mismatch"));

  Reader r(body);
  std::vector<std::uint8_t> magic;
  std::uint8_t version = 0, alg = 0, flags = 0, pcr_count = 0;
  std::uint16_t bank = 0;
  SealedBlob blob;
  if (!r.bytes(kMagic.size(), magic) || !r.u8(version)) return std::unexpected(malformed("truncated header"));
  if (version != kVersion) return std::unexpected(malformed("unsupported version " + std::to_string(version)));
  if (!r.u8(alg) || !r.u8(flags) || !r.u8(pcr_count) || !r.u32(blob.primary_handle) || !r.u16(bank)) {
    return std::unexpected(malformed("truncated header"));
  }
  if (alg != static_cast<std::uint8_t>(PrimaryAlg::ecc_p256) && alg != static_cast<std::uint8_t>(PrimaryAlg::rsa2048)) {
    return std::unexpected(malformed("unknown primary key algorithm"));
  }
  blob.primary_alg = static_cast<PrimaryAlg>(alg);
  if ((flags & ~kFlagAuthValue) != 0) return std::unexpected(malformed("unknown flags"));
  blob.has_auth_value = (flags & kFlagAuthValue) != 0;
  if (bank != TPM2_ALG_SHA256) return std::unexpected(malformed("unsupported PCR bank"));
  if (blob.primary_handle != 0 && (blob.primary_handle >> 24) != TPM2_HT_PERSISTENT) {
    return std::unexpected(malformed("primary handle is not a persistent handle"));
  }
  if (pcr_count > kMaxPcr + 1) return std::unexpected(malformed("too many PCRs"));
  for (std::uint8_t i = 0; i < pcr_count; ++i) {
    std::uint8_t p = 0;
    if (!r.u8(p)) return std::unexpected(malformed("truncated PCR list"));
    if (p > kMaxPcr || (!blob.pcrs.empty() && p <= blob.pcrs.back())) return std::unexpected(malformed("bad PCR list"));
    blob.pcrs.push_back(p);
  }
  if (!r.bytes16(blob.primary_name, sizeof(TPMU_NAME)) || !r.bytes16(blob.public_area, sizeof(TPM2B_PUBLIC)) ||
      !r.bytes16(blob.private_area, sizeof(TPM2B_PRIVATE))) {
    return std::unexpected(malformed("truncated or oversized field"));
  }
  if (r.pos() != body.size()) return std::unexpected(malformed("trailing bytes"));

  // The TPM structures must unmarshal exactly.
  TPM2B_PUBLIC pub{};
  std::size_t off = 0;
  if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob.public_area.data(), blob.public_area.size(), &off, &pub) != TSS2_RC_SUCCESS ||
      off != blob.public_area.size()) {
    return std::unexpected(malformed("bad public area"));
  }
  if (pub.publicArea.type != TPM2_ALG_KEYEDHASH || pub.publicArea.nameAlg != TPM2_ALG_SHA256) {
    return std::unexpected(malformed("public area is not a sealed data object"));
  }
  TPM2B_PRIVATE priv{};
  off = 0;
  if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob.private_area.data(), blob.private_area.size(), &off, &priv) !=
          TSS2_RC_SUCCESS ||
      off != blob.private_area.size()) {
    return std::unexpected(malformed("bad private area"));
  }
  return blob;
}

kms::Result<void> SealedBlob::save(const std::filesystem::path& path, bool replace) const {
  const auto bytes = serialize();
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const std::string leaf = "." + path.filename().string() + ".tmp-XXXXXX";
  std::string tmpl = (dir / leaf).string();
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  const int fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0)
    return fail(Errc::storage_failure, "cannot create a file in " + dir.string() + ": " + kms::errno_text(errno));
  const auto cleanup = [&](const std::string& what) {
    const int err = errno;
    ::close(fd);
    ::unlink(name.data());
    return fail(Errc::storage_failure, "cannot write " + path.string() + ": " + what + ": " + kms::errno_text(err));
  };
  if (::fchmod(fd, 0600) != 0) return cleanup("fchmod");
  if (!write_all(fd, bytes.data(), bytes.size())) return cleanup("write");
  if (::fsync(fd) != 0) return cleanup("fsync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(name.data());
    return fail(Errc::storage_failure, "cannot write " + path.string() + ": close: " + kms::errno_text(err));
  }
  if (replace) {
    if (::rename(name.data(), path.c_str()) != 0) {
      const int err = errno;
      ::unlink(name.data());
      return fail(Errc::storage_failure, "cannot rename into " + path.string() + ": " + kms::errno_text(err));
    }
  } else {
    // link(2) never replaces: two concurrent creators cannot both win.
    const int rc = ::link(name.data(), path.c_str());
    const int err = errno;
    ::unlink(name.data());
    if (rc != 0 && err == EEXIST) return fail(Errc::already_exists, path.string() + " already exists");
    if (rc != 0) return fail(Errc::storage_failure, "cannot create " + path.string() + ": " + kms::errno_text(err));
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return fail(Errc::storage_failure, "cannot open " + dir.string() + ": " + kms::errno_text(errno));
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) return fail(Errc::storage_failure, "cannot fsync " + dir.string() + ": " + kms::errno_text(err));
  return {};
}

kms::Result<SealedBlob> SealedBlob::load(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return fail(Errc::not_found, "no sealed blob at " + path.string());
    return fail(Errc::storage_failure, "cannot open " + path.string() + ": " + kms::errno_text(err));
  }
  std::vector<std::uint8_t> bytes;
  std::array<std::uint8_t, 4096> buf{};
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return fail(Errc::storage_failure, "cannot read " + path.string() + ": " + kms::errno_text(err));
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), buf.begin(), buf.begin() + n);
    if (bytes.size() > kMaxFileSize) {
      ::close(fd);
      return fail(Errc::sealed, "sealed blob at " + path.string() + " is damaged: too large");
    }
  }
  ::close(fd);
  auto blob = parse(bytes);
  if (!blob) return fail(Errc::sealed, "sealed blob at " + path.string() + " is damaged: " + blob.error().message);
  return blob;
}

}  // namespace rootseal::tpm
