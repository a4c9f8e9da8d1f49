#include "rootseal/kms/random.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <stdexcept>

#include "rootseal/kms/encoding.hpp"

namespace rootseal::kms {

void random_public_bytes(std::span<std::uint8_t> out) {
  while (!out.empty()) {
    const std::size_t n = std::min<std::size_t>(out.size(), INT_MAX);
    if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
    out = out.subspan(n);
  }
}

std::string uuid_v4() {
  // One RAND_bytes call costs about as much as drawing 32 identifiers at once.
  thread_local std::array<std::uint8_t, 512> pool{};
  thread_local std::size_t used = pool.size();
  if (used == pool.size()) {
    random_public_bytes(pool);  // throws; `used` stays at the end, so the next call draws again
    used = 0;
  }
  std::array<std::uint8_t, 16> raw{};
  std::memcpy(raw.data(), pool.data() + used, raw.size());
  used += raw.size();
  raw[6] = static_cast<std::uint8_t>((raw[6] & 0x0f) | 0x40);  // version 4
  raw[8] = static_cast<std::uint8_t>((raw[8] & 0x3f) | 0x80);  // variant 10
  std::string id(36, '-');
  const std::span<const std::uint8_t> r(raw);
  hex_encode_into(r.subspan(0, 4), id.data());
  hex_encode_into(r.subspan(4, 2), id.data() + 9);
  hex_encode_into(r.subspan(6, 2), id.data() + 14);
  hex_encode_into(r.subspan(8, 2), id.data() + 19);
  hex_encode_into(r.subspan(10, 6), id.data() + 24);
  return id;
}

}  // namespace rootseal::kms
