// rootseal::kms — writing a small file so that a crash at any instant, or a
// full disk, leaves either the old content or all of the new one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>

#include "rootseal/kms/error.hpp"

namespace rootseal::kms {

// Writes `data` to `path` durably: a temporary sibling (unique name, `mode`),
// write, fsync, then rename(2) over `path` — or, with `exclusive`, link(2),
// which never replaces an existing file (already_exists) — and fsync of the
// folder. On any failure the temporary file is removed and `path` is as it
// was. A process killed in the middle leaves at most a `.<name>.tmp-XXXXXX`
// sibling, never a partial `path`.
Result<void> write_file_durably(const std::filesystem::path& path, std::span<const std::uint8_t> data, unsigned mode,
                                bool exclusive);

}  // namespace rootseal::kms
