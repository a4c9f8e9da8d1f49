// Fuzz target: Aead::open with a fixed key on arbitrary (nonce || ct || tag, AAD).
// Input layout: byte 0 = AAD length (mod 64), then the AAD, then the sealed
// message. The seed corpus holds messages sealed under the fixed key, so the
// success path is reached too. Properties:
//  - open fails only with malformed_ciphertext (shorter than 28 bytes) or
//    decryption_failed;
//  - whatever opens, sealed again under its own nonce, gives the input back;
//  - seal_with_nonce / open round-trips the input taken as plaintext.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>

#include "rootseal/kms/aead.hpp"

namespace kms = rootseal::kms;

namespace {

// Key bytes 0x00..0x1f (tests/fuzz/corpus/aead_open was sealed with it).
const kms::Aead& fixed_aead() {
  static const std::unique_ptr<kms::Aead> aead = [] {
    kms::SecureBytes key(32);
    for (std::size_t i = 0; i < key.size(); ++i) key.data()[i] = static_cast<std::uint8_t>(i);
    auto made = kms::make_aead(kms::KeyType::aes256_gcm96, key);
    if (!made) std::abort();
    return std::move(*made);
  }();
  return *aead;
}

bool same(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const kms::Aead& aead = fixed_aead();
  const std::span<const std::uint8_t> input(data + 1, size - 1);
  const std::size_t aad_len = std::min<std::size_t>(data[0] % 64U, input.size());
  const auto aad = input.first(aad_len);
  const auto sealed = input.subspan(aad_len);

  auto opened = aead.open(sealed, aad);
  if (!opened) {
    const auto code = opened.error().code;
    const bool expected = code == kms::Errc::decryption_failed ||
                          (code == kms::Errc::malformed_ciphertext && sealed.size() < kms::Aead::kOverhead);
    if (!expected) __builtin_trap();
  } else {
    auto again = aead.seal_with_nonce(sealed.first(kms::Aead::kNonceSize), opened->span(), aad);
    if (!again || !same(*again, sealed)) __builtin_trap();
  }

  static const std::uint8_t kNonce[kms::Aead::kNonceSize] = {9, 9, 9};
  auto round = aead.seal_with_nonce(kNonce, sealed, aad);
  if (!round) __builtin_trap();
  auto back = aead.open(*round, aad);
  if (!back || !same(back->span(), sealed)) __builtin_trap();
  return 0;
}
