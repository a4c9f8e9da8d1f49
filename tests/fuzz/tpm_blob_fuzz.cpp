// Fuzz target: the TPM sealed-blob format (tpm::SealedBlob::parse, the file
// rootseald reads at every start: tpm-root.seal, hsm-pin.tpm).
//
// Input: a first byte selecting the mode, then the bytes.
//   'R'    the bytes are the whole file, as on disk;
//   other  the bytes are a file without its SHA-256 trailer, which the
//          target appends, so that mutations reach the fields behind the
//          checksum (random bytes never pass it).
// Properties beyond "no crash, no sanitizer report":
//  - a failure is invalid_argument with a message;
//  - the format is canonical (fixed layout + SHA-256 trailer), so a parsed
//    blob serializes back to exactly the file's bytes, and parses again to
//    the same fields.
#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_util.hpp"
#include "rootseal/tpm/tpm_root.hpp"

using namespace rootseal;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::vector<std::uint8_t> file(data + 1, data + size);
  if (data[0] != 'R') {
    std::uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256(file.data(), file.size(), md);
    file.insert(file.end(), md, md + sizeof md);
  }
  auto blob = tpm::SealedBlob::parse(file);
  if (!blob) {
    fuzz::require_clean_error(blob.error(), {kms::Errc::invalid_argument}, "parse error code");
    return 0;
  }
  fuzz::require(blob->serialize() == file, "serialize(parse(x)) == x");
  auto twice = tpm::SealedBlob::parse(file);
  fuzz::require(twice.has_value(), "reparse");
  fuzz::require(twice->primary_alg == blob->primary_alg && twice->primary_handle == blob->primary_handle &&
                    twice->pcrs == blob->pcrs && twice->has_auth_value == blob->has_auth_value &&
                    twice->primary_name == blob->primary_name && twice->public_area == blob->public_area &&
                    twice->private_area == blob->private_area,
                "reparse gives the same fields");
  return 0;
}
