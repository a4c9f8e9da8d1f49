#include "transcript.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <regex>

#include "util.hpp"

namespace rootseal::cli {

using kms::Errc;
using kms::fail;
namespace json = boost::json;

namespace {

void pretty(const json::value& v, std::string& out, int indent) {
  auto nl = [&](int n) {
    out += '\n';
    out.append(static_cast<std::size_t>(n) * 2, ' ');
  };
  switch (v.kind()) {
    case json::kind::object: {
      const auto& o = v.get_object();
      if (o.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      bool first = true;
      for (const auto& kv : o) {
        if (!first) out += ',';
        first = false;
        nl(indent + 1);
        out += json::serialize(json::value(kv.key()));
        out += ": ";
        pretty(kv.value(), out, indent + 1);
      }
      nl(indent);
      out += '}';
      return;
    }
    case json::kind::array: {
      const auto& a = v.get_array();
      if (a.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const auto& e : a) {
        if (!first) out += ',';
        first = false;
        nl(indent + 1);
        pretty(e, out, indent + 1);
      }
      nl(indent);
      out += ']';
      return;
    }
    default:
      out += json::serialize(v);
  }
}

// Member names that must never appear in a transcript.
bool forbidden_name(std::string_view k) {
  static constexpr std::string_view kNames[] = {"pin", "secret", "plaintext", "key_value", "share_value", "value"};
  return std::find(std::begin(kNames), std::end(kNames), k) != std::end(kNames);
}

void scan_names(const json::value& v, std::vector<std::string>& found) {
  if (v.is_object()) {
    for (const auto& kv : v.get_object()) {
      if (forbidden_name(kv.key())) found.emplace_back(kv.key());
      scan_names(kv.value(), found);
    }
  } else if (v.is_array()) {
    for (const auto& e : v.get_array()) scan_names(e, found);
  }
}

struct Listed {
  unsigned sequence;
  std::filesystem::path path;
};

kms::Result<std::vector<Listed>> list(const std::filesystem::path& dir) {
  std::vector<Listed> out;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return out;
  static const std::regex kName(R"(^([0-9]{6})-[a-z-]+-[0-9a-f]{8}\.json$)");
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    std::smatch m;
    if (!std::regex_match(name, m, kName)) continue;
    out.push_back({static_cast<unsigned>(std::stoul(m[1].str())), e.path()});
  }
  if (ec) return fail(Errc::storage_failure, dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const Listed& a, const Listed& b) { return a.sequence < b.sequence; });
  return out;
}

struct LockFile {
  int fd = -1;
  ~LockFile() {
    if (fd >= 0) ::close(fd);  // releases the flock
  }
};

}  // namespace

std::string TranscriptEntry::str(std::string_view key) const {
  const json::value* v = body.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::string pretty_json(const json::value& v) {
  std::string out;
  pretty(v, out, 0);
  out += '\n';
  return out;
}

Transcript::Audit Transcript::audit() const {
  Audit a;
  a.head = std::string(kGenesisHash);
  auto listed = list(dir_);
  if (!listed) {
    a.problems.push_back(listed.error().message);
    return a;
  }
  std::string prev = std::string(kGenesisHash);
  unsigned expect = 1;
  for (const auto& l : *listed) {
    const std::string name = l.path.filename().string();
    if (l.sequence != expect) {
      a.problems.push_back(name + ": sequence " + std::to_string(l.sequence) + " where " + std::to_string(expect) +
                           " was expected (an entry is missing or was added)");
      expect = l.sequence;
    }
    ++expect;
    auto text = read_small_file(l.path);
    if (!text) {
      a.problems.push_back(name + ": " + text.error().message);
      continue;
    }
    TranscriptEntry e;
    e.path = l.path;
    e.sequence = l.sequence;
    e.sha256 = sha256_hex(*text);
    json::error_code ec;
    json::value v = json::parse(*text, ec);
    if (ec || !v.is_object()) {
      a.problems.push_back(name + ": not a JSON object");
      prev = e.sha256;
      continue;
    }
    e.body = std::move(v.as_object());
    if (e.str("format") != kTranscriptFormat) a.problems.push_back(name + ": unknown format");
    const json::value* seq = e.body.if_contains("sequence");
    // The error_code form: a number that is no int64 (1e300, 2^64) is a mismatch, not an exception.
    json::error_code seq_ec;
    const std::int64_t seq_n = seq != nullptr && seq->is_number() ? seq->to_number<std::int64_t>(seq_ec) : -1;
    if (seq == nullptr || !seq->is_number() || seq_ec || seq_n != static_cast<std::int64_t>(l.sequence)) {
      a.problems.push_back(name + ": its \"sequence\" does not match its file name");
    }
    if (e.str("prev_sha256") != prev) {
      a.problems.push_back(name +
                           ": \"prev_sha256\" is not the SHA-256 of the previous entry (the chain is broken: "
                           "an earlier entry was changed or removed)");
    }
    std::vector<std::string> bad;
    scan_names(e.body, bad);
    for (const auto& b : bad) {
      std::string problem = name;
      problem.append(": has a member named \"").append(b).append("\", which is not allowed");
      a.problems.push_back(std::move(problem));
    }
    prev = e.sha256;
    a.entries.push_back(std::move(e));
  }
  a.head = prev;
  return a;
}

kms::Result<std::vector<TranscriptEntry>> Transcript::load() const {
  Audit a = audit();
  if (!a.problems.empty()) {
    return fail(Errc::conflict, "transcript chain in " + dir_.string() + " is broken: " + a.problems.front() +
                                    " (run `rootseal ceremony audit`)");
  }
  return std::move(a.entries);
}

kms::Result<TranscriptEntry> Transcript::append(json::object body) const {
  ROOTSEAL_TRY(make_private_dir(dir_));
  LockFile lock;
  lock.fd = ::open((dir_ / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock.fd < 0 || ::flock(lock.fd, LOCK_EX) != 0) {
    return fail(Errc::storage_failure, dir_.string() + ": cannot lock the transcript folder");
  }
  std::vector<TranscriptEntry> entries;
  ROOTSEAL_TRY_ASSIGN(entries, load());
  const unsigned seq = entries.empty() ? 1 : entries.back().sequence + 1;
  const std::string prev = entries.empty() ? std::string(kGenesisHash) : entries.back().sha256;

  json::object o;
  o["format"] = kTranscriptFormat;
  o["sequence"] = seq;
  o["prev_sha256"] = prev;
  for (auto& kv : body) o[kv.key()] = std::move(kv.value());
  const std::string kind = o.contains("kind") && o["kind"].is_string() ? std::string(o["kind"].as_string()) : "entry";
  std::string id = o.contains("ceremony_id") && o["ceremony_id"].is_string() ? std::string(o["ceremony_id"].as_string())
                                                                             : std::string("00000000");
  id.resize(8, '0');
  char name[96];
  const int n = std::snprintf(name, sizeof name, "%06u-%s-%s.json", seq, kind.c_str(), id.c_str());
  if (n < 0 || static_cast<std::size_t>(n) >= sizeof name) {
    return fail(Errc::invalid_argument, "transcript: the entry kind is too long for a file name");
  }
  const std::string text = pretty_json(o);
  ROOTSEAL_TRY(write_file_durably(dir_ / name, bytes_of(text), 0644, true));
  TranscriptEntry e;
  e.path = dir_ / name;
  e.sequence = seq;
  e.sha256 = sha256_hex(text);
  e.body = std::move(o);
  return e;
}

}  // namespace rootseal::cli
