// rootseal::cli — what a share looks like outside memory (private to the CLI).
//
// Share file (JSON, one per custodian, never the plaintext share):
//   {"format": "rootseal-share-v2", "mechanism": "<root mechanism>",
//    "ceremony_id": "<32 hex>", "index": i,
//    "threshold": m, "shares": n, "root_kcv": "<6 hex>",
//    "custodian": {"name", "key_type", "fingerprint"},
//    "commitment": "<64 hex>",
//    "encryption": {"scheme", "ephemeral_public_key": b64 | absent, "ciphertext": b64}}
// The mechanism (aes-kwp, aes-gcm, aes-cbc-pad-hmac) says what the secret
// is: a 32-byte AES key, or for aes-cbc-pad-hmac 64 bytes, the AES-256 key
// followed by the HMAC-SHA256 key, split as one secret. Format
// "rootseal-share-v1" (no "mechanism"; written before aes-cbc-pad-hmac
// roots) is read as a 32-byte AES key whose mechanism the transcript says.
//
// Binding (AEAD associated data / OAEP label / HKDF info) of share i:
//   v1: "rootseal-share-v1" 0x00 ceremony_id(16 bytes) index threshold count
//       custodian-fingerprint(32 bytes)
//   v2: "rootseal-share-v2" 0x00 ceremony_id index threshold count
//       custodian-fingerprint mechanism-name
//
// Commitment (the share's authenticated tag, recorded in the transcript):
//   HMAC-SHA256(key = the ceremony's commitment salt (random, in the
//   transcript), "rootseal-share-commitment-v1" 0x00 ceremony_id index
//   threshold y)
// A share is accepted for combining only if its commitment equals the one
// the transcript records for its index: an edited share, or a share of
// another ceremony, is refused before the secret is combined. (The 256 bits
// of a share are uniformly random on their own, so the commitment reveals
// nothing usable about the secret.)
//
// Typed form (`share decrypt` output, typed back into `restore`): for a
// 32-byte secret the 55-byte
//   0x01 || ceremony_id[16] || index || threshold || y[32] || check[4]
// (check = SHA-256("rootseal-typed-share-v1" || the 51 bytes before)[0..4])
// in RFC 4648 base32 (88 characters), six numbered lines of up to four groups
// of four; for a 64-byte secret (aes-cbc-pad-hmac) the 90-byte
//   0x02 || ceremony_id[16] || index || threshold || mechanism || y[64] || check[6]
// (mechanism 3 = aes-cbc-pad-hmac, the root's blob header; check =
// SHA-256("rootseal-typed-share-v2" || the 84 bytes before)[0..6]), 144
// characters in nine lines. Each line ends with a two-character checksum
// over its number and characters (10 bits of SHA-256), so that a typo is
// caught on its line:
//   01  ABCD EFGH IJKL MNOP  Q7
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "custodian.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::cli {

inline constexpr std::size_t kCeremonyIdSize = 16;
inline constexpr std::size_t kRootKeySize = 32;
inline constexpr std::size_t kTypedLines = 6;    // a 32-byte secret
inline constexpr std::size_t kTypedLinesV2 = 9;  // a 64-byte secret
inline constexpr std::string_view kCbcHmac = "aes-cbc-pad-hmac";

// The mechanisms a share may record, and the size of their secret (32, or
// 64 for aes-cbc-pad-hmac); 0 for anything else.
std::size_t secret_size(std::string_view mechanism) noexcept;

// A ceremony id: 16 random bytes as 32 lower-case hex digits.
std::string new_ceremony_id();
bool is_ceremony_id(std::string_view id) noexcept;

// `mechanism` empty: the v1 binding.
std::vector<std::uint8_t> share_binding(std::string_view ceremony_id, unsigned index, unsigned threshold,
                                        unsigned count, std::string_view custodian_fingerprint,
                                        std::string_view mechanism);

std::string share_commitment(std::span<const std::uint8_t> salt, std::string_view ceremony_id, unsigned index,
                             unsigned threshold, const kms::SecureBytes& y);

struct ShareFile {
  std::string mechanism;  // empty: a v1 share file (a 32-byte AES key)
  std::string ceremony_id;
  unsigned index = 0;
  unsigned threshold = 0;
  unsigned count = 0;
  std::string root_kcv;
  std::string custodian_name;
  std::string custodian_key_type;
  std::string custodian_fingerprint;
  std::string commitment;
  SealedShare sealed;
};

std::string share_file_json(const ShareFile& share);
kms::Result<ShareFile> parse_share_file(std::string_view text, std::string_view where);

// The typed form of a share: text with '\n' line ends, in locked memory.
// A 64-byte y is written in the nine-line form (mechanism aes-cbc-pad-hmac),
// any other in the six-line form of its first 32 bytes.
kms::SecureBytes typed_share_text(std::string_view ceremony_id, unsigned index, unsigned threshold,
                                  const kms::SecureBytes& y);

struct TypedShare {
  std::string mechanism;  // empty for the six-line form (a 32-byte AES key)
  std::string ceremony_id;
  unsigned index = 0;
  unsigned threshold = 0;
  kms::SecureBytes y;
};

// Assembles typed shares line by line. Lines starting with '#' and blank
// lines are skipped; a line numbered 01 starts a share.
class TypedShareReader {
 public:
  enum class Status { more, complete, skipped };
  // Errors (invalid_argument) name the line and say what is wrong, e.g.
  // "line 03: checksum mismatch (a typo in this line?)". After an error the
  // line may be entered again.
  kms::Result<Status> feed(std::span<const std::uint8_t> line);
  // The share completed by the last feed() that returned complete.
  TypedShare take();
  [[nodiscard]] std::size_t next_line() const noexcept { return lines_ + 1; }
  [[nodiscard]] bool in_progress() const noexcept { return lines_ > 0; }

 private:
  kms::SecureBytes chars_ = kms::SecureBytes(kTypedLinesV2 * 16);  // base32 characters so far
  std::size_t nchars_ = 0;
  std::size_t lines_ = 0;
  std::size_t total_lines_ = kTypedLines;  // of the share in progress (its first line says)
  std::optional<TypedShare> done_;
};

}  // namespace rootseal::cli
