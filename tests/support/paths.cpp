#include "paths.hpp"

namespace rootseal::test {

std::filesystem::path source_dir() { return ROOTSEAL_SOURCE_DIR; }
std::filesystem::path vectors_dir() {
  // The vectors are in the repository (tests/vectors/wycheproof, the CMake
  // default of ROOTSEAL_VECTORS_DIR); an empty setting means that default too.
  const std::filesystem::path configured = ROOTSEAL_VECTORS_DIR;
  return configured.empty() ? source_dir() / "tests" / "vectors" / "wycheproof" : configured;
}

}  // namespace rootseal::test
