// Where the tests find the checkout's files. The paths are compiled into one
// support file only: as compile definitions of every test they made each test
// source's ccache entry depend on the checkout's absolute path, so a fresh
// clone recompiled every test.
#pragma once

#include <filesystem>

namespace rootseal::test {

std::filesystem::path source_dir();  // the checkout (tests/doubles/..., docs/...)
std::filesystem::path
vectors_dir();  // Wycheproof vectors (tests/vectors/wycheproof unless ROOTSEAL_VECTORS_DIR says otherwise)

}  // namespace rootseal::test
