// rootseal::kms — public random values: identifiers, name suffixes.
//
// From OpenSSL's public DRBG (RAND_bytes), every call checked: a failing RNG
// throws std::runtime_error, never leaves bytes unset. Secret material comes
// from SecureBytes::random (the private DRBG) instead.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace rootseal::kms {

// Fills `out` with random bytes. Throws std::runtime_error if the RNG fails.
void random_public_bytes(std::span<std::uint8_t> out);

// A random UUID, version 4 (RFC 9562), lower-case "8-4-4-4-12". Cheap enough
// for one per request: drawn from a per-thread block of 32 identifiers.
// Throws std::runtime_error if the RNG fails.
std::string uuid_v4();

}  // namespace rootseal::kms
