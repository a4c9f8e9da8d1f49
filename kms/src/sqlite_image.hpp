// Private to kms: SQLite database images held in memory (snapshots).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/state_store.hpp"

struct sqlite3;

namespace rootseal::kms {

// A private, hardened in-memory connection (closed with sqlite3_close_v2).
Result<sqlite3*> open_memory_connection();

// The database of `db` as an image, marked rollback-journal (it opens in
// memory and as a file; the store switches a file back to WAL on open).
Result<std::vector<std::uint8_t>> serialize_image(sqlite3* db);

// Opens a copy of `image` as an in-memory database (no file is touched) and
// runs SQLite's integrity check on it; invalid_argument if it is not an
// intact SQLite database. The caller closes *out with sqlite3_close_v2.
Result<void> open_memory_image(std::span<const std::uint8_t> image, sqlite3** out);

// The image of a keyring database as a StateStore, entirely in memory.
Result<std::unique_ptr<StateStore>> open_sqlite_image(std::span<const std::uint8_t> image);

// A keyring database image holding exactly `keys` and `keyring_keys` (built in memory).
Result<std::vector<std::uint8_t>> sqlite_image_of(const std::vector<KeyRecord>& keys,
                                                  const std::vector<KeyringKeyRecord>& keyring_keys);

}  // namespace rootseal::kms
