// Fuzz target: what the offline key ceremony (`rootseal`, cli/) reads back:
// share files (JSON), typed shares (the six checksummed base32 lines a
// custodian types in) and transcripts (a hash chain of JSON files).
//
// Input: a first byte selecting the format, then its bytes.
//   'S'  a share file: cli::parse_share_file
//   'T'  typed lines fed one by one to cli::TypedShareReader
//   'Y'  a typed share made by cli::typed_share_text from the bytes
//        (ceremony id, index, threshold, y), read back, then read again
//        with characters replaced where the rest of the bytes say
//   'W'  the same with a 64-byte y (the nine-line form of an
//        aes-cbc-pad-hmac secret)
//   'C'  a transcript: files separated by a line "====", written as
//        000001-entry-00000000.json ... into a scratch folder, then audited
// Properties beyond "no crash, no sanitizer report":
//  - failures are invalid_argument with a message;
//  - share files round-trip: share_file_json(parse(x)) parses to the same
//    share and is a fixed point;
//  - a typed share reads back to exactly what was written; an altered one
//    is refused or (if the change was a no-op such as case) reads back the same;
//  - transcript audit: the head is the SHA-256 of the last file; no problem
//    means load() succeeds with the same entries; pretty_json of an entry
//    parses to the same value.
#include <openssl/sha.h>

#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "json_limits.hpp"
#include "rootseal/kms/encoding.hpp"
#include "share_format.hpp"
#include "transcript.hpp"

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace rootseal;

namespace {

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

void share_file(std::string_view text) {
  const auto s = cli::parse_share_file(text, "share");
  if (!s) {
    fuzz::require_clean_error(s.error(), {kms::Errc::invalid_argument}, "share file error code");
    return;
  }
  const std::string out = cli::share_file_json(*s);
  const auto back = cli::parse_share_file(out, "share");
  fuzz::require(back.has_value(), "a written share file parses");
  fuzz::require(back->mechanism == s->mechanism && (s->mechanism.empty() || cli::secret_size(s->mechanism) != 0),
                "a share file's mechanism is known (or absent: v1)");
  fuzz::require(back->ceremony_id == s->ceremony_id && back->index == s->index && back->threshold == s->threshold &&
                    back->count == s->count && back->root_kcv == s->root_kcv &&
                    back->custodian_name == s->custodian_name && back->custodian_key_type == s->custodian_key_type &&
                    back->custodian_fingerprint == s->custodian_fingerprint && back->commitment == s->commitment &&
                    back->sealed.scheme == s->sealed.scheme && back->sealed.ephemeral == s->sealed.ephemeral &&
                    back->sealed.ciphertext == s->sealed.ciphertext,
                "share file round trip");
  fuzz::require(cli::share_file_json(*back) == out, "share_file_json is a fixed point");
}

// Feeds `text` line by line; the shares completed.
std::vector<cli::TypedShare> feed(std::string_view text, bool& refused) {
  cli::TypedShareReader r;
  std::vector<cli::TypedShare> out;
  refused = false;
  while (!text.empty()) {
    const std::string_view line = fuzz::next_line(text);
    const auto st = r.feed(bytes_of(line));
    if (!st) {
      fuzz::require_clean_error(st.error(), {kms::Errc::invalid_argument}, "typed share error code");
      // Each error names its line, but the check of the share as a whole.
      fuzz::require(st.error().message.starts_with("line ") ||
                        st.error().message.starts_with("the share does not check out as a whole"),
                    "typed share errors name the line");
      refused = true;
      continue;  // as the CLI does: the line may be entered again
    }
    if (*st == cli::TypedShareReader::Status::complete) out.push_back(r.take());
  }
  return out;
}

void typed_round_trip(std::span<const std::uint8_t> in, std::size_t ysize) {
  if (in.size() < 16 + 2 + ysize) return;
  const std::string id = kms::hex_encode(in.first(16));
  const unsigned index = in[16];
  const unsigned threshold = in[17];
  const auto y = kms::SecureBytes::copy_of(std::string_view(reinterpret_cast<const char*>(in.data() + 18), ysize));
  const auto text = cli::typed_share_text(id, index, threshold, y);
  const std::string t(reinterpret_cast<const char*>(text.data()), text.size());
  bool refused = false;
  const auto shares = feed(t, refused);
  fuzz::require(!refused && shares.size() == 1, "a typed share reads back");
  fuzz::require(shares[0].ceremony_id == id && shares[0].index == index && shares[0].threshold == threshold &&
                    shares[0].y == y && shares[0].mechanism == (ysize == 64 ? "aes-cbc-pad-hmac" : ""),
                "typed share round trip");
  // Edits: (position, character) pairs from the rest of the input.
  std::string edited = t;
  const auto rest = in.subspan(18 + ysize);
  for (std::size_t i = 0; i + 1 < rest.size(); i += 2) {
    edited[rest[i] % edited.size()] = static_cast<char>(rest[i + 1]);
  }
  const auto again = feed(edited, refused);
  for (const auto& s : again) {
    if (s.ceremony_id == id && s.index == index && s.threshold == threshold) {
      fuzz::require(s.y == y, "an altered typed share never reads back as another value");
    }
  }
}

std::string sha256_hex(std::string_view s) {
  std::uint8_t md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const std::uint8_t*>(s.data()), s.size(), md);
  return kms::hex_encode(std::span<const std::uint8_t>(md, sizeof md));
}

const fs::path& scratch() {
  static const fs::path dir = [] {
    std::string templ = fs::exists("/dev/shm") ? "/dev/shm/rootseal-fuzz-tr-XXXXXX" : "/tmp/rootseal-fuzz-tr-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) std::abort();
    static fs::path keep = templ;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(keep, ec);
    });
    return fs::path(templ);
  }();
  return dir;
}

void transcript(std::string_view in) {
  const fs::path dir = scratch() / "tr";
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  std::vector<std::string> files;
  while (!in.empty() && files.size() < 16) files.emplace_back(fuzz::next_part(in, "\n====\n"));
  for (std::size_t i = 0; i < files.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "%06zu-entry-00000000.json", i + 1);
    std::ofstream(dir / name, std::ios::binary) << files[i];
  }
  const cli::Transcript t(dir);
  const auto a = t.audit();
  fuzz::require(a.head == (files.empty() ? std::string(cli::kGenesisHash) : sha256_hex(files.back())),
                "the head is the SHA-256 of the last file");
  for (const auto& p : a.problems) fuzz::require(!p.empty(), "problems are described");
  const auto loaded = t.load();
  fuzz::require(loaded.has_value() == a.problems.empty(), "load() succeeds exactly when audit finds nothing");
  if (loaded) fuzz::require(loaded->size() == a.entries.size(), "load() gives the audited entries");
  for (const auto& e : a.entries) {
    if (!fuzz::boost_json_round_trips(e.body)) continue;  // json_limits.hpp
    json::error_code jec;
    const json::value back = json::parse(cli::pretty_json(e.body), jec);
    fuzz::require(!jec && back == json::value(e.body), "pretty_json round trip");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest = fuzz::as_text(data + 1, size - 1);
  switch (data[0]) {
    case 'S':
      share_file(rest);
      break;
    case 'T': {
      bool refused = false;
      (void)feed(rest, refused);
      break;
    }
    case 'Y':
      typed_round_trip(std::span(data + 1, size - 1), 32);
      break;
    case 'W':
      typed_round_trip(std::span(data + 1, size - 1), 64);
      break;
    case 'C':
      transcript(rest);
      break;
    default:
      break;
  }
  return 0;
}
