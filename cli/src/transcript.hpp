// rootseal::cli — ceremony transcripts: a hash chain of JSON files.
//
// A transcript folder holds one file per ceremony step, NNNNNN-<kind>-<id>.json,
// each a JSON object with
//   "format": "rootseal-transcript-v1", "sequence": N,
//   "prev_sha256": SHA-256 of the exact bytes of file N-1 (64 zeros for N = 1)
// and the step's record (who, when, token, key check value, custodians and
// share commitments, steps and outcomes) — never a secret. Files are written
// once (durably, never overwritten); appending takes an exclusive lock on
// DIR/.lock. The SHA-256 of the last file is the chain's head: the witness
// writes it down, and `ceremony audit --expect-head` proves later that no
// entry was changed, removed or added in between.
#pragma once

#include <boost/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "rootseal/kms/error.hpp"

namespace rootseal::cli {

inline constexpr std::string_view kTranscriptFormat = "rootseal-transcript-v1";
inline constexpr std::string_view kGenesisHash = "0000000000000000000000000000000000000000000000000000000000000000";

struct TranscriptEntry {
  std::filesystem::path path;
  unsigned sequence = 0;
  std::string sha256;  // of the file's bytes
  boost::json::object body;

  [[nodiscard]] std::string str(std::string_view key) const;  // "" if absent
};

class Transcript {
 public:
  explicit Transcript(std::filesystem::path dir) : dir_(std::move(dir)) {}
  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_; }

  // Reads and checks the whole chain; any break is an error.
  kms::Result<std::vector<TranscriptEntry>> load() const;
  // Appends an entry (creating the folder if needed).
  kms::Result<TranscriptEntry> append(boost::json::object body) const;

  // Every problem of the chain (empty = intact), and the entries that parse.
  struct Audit {
    std::vector<TranscriptEntry> entries;
    std::vector<std::string> problems;
    std::string head;  // sha256 of the last file, or the genesis hash
  };
  [[nodiscard]] Audit audit() const;

 private:
  std::filesystem::path dir_;
};

// Pretty JSON (two-space indent, members in insertion order) ending in '\n'.
std::string pretty_json(const boost::json::value& v);

}  // namespace rootseal::cli
