#include "paths.hpp"

namespace rootseal::test {

std::filesystem::path source_dir() { return ROOTSEAL_SOURCE_DIR; }
std::filesystem::path vectors_dir() { return ROOTSEAL_VECTORS_DIR; }

}  // namespace rootseal::test
