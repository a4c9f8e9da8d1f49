// Keyring snapshots: format, writer, verification, restore (snapshot.hpp).
#include "rootseal/kms/snapshot.hpp"

#include <openssl/evp.h>
#include <sqlite3.h>

#include <boost/json.hpp>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <limits>
#include <set>

#include "rootseal/kms/durable_file.hpp"
#include "rootseal/kms/encoding.hpp"
#include "sqlite_image.hpp"

namespace rootseal::kms {

namespace json = boost::json;

namespace {

constexpr std::uint64_t kMaxSectionBytes = 1ULL << 40;  // far above any keyring; keeps sums in range
constexpr std::size_t kMaxSections = 8;

std::string sha256_hex(std::span<const std::uint8_t> data) {
  std::uint8_t d[32];
  unsigned len = 0;
  if (EVP_Digest(data.data(), data.size(), d, &len, EVP_sha256(), nullptr) != 1 || len != sizeof d) {
    throw std::runtime_error("SHA-256 failed");  // OpenSSL broken: fatal
  }
  return hex_encode(d);
}

bool is_lower_hex(std::string_view s, std::size_t n) {
  return s.size() == n &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_section_name(std::string_view s) {
  return !s.empty() && s.size() <= 32 && std::all_of(s.begin(), s.end(), [](char c) { return c >= 'a' && c <= 'z'; });
}

// Host names and cluster ids: printable ASCII without quotes or backslashes,
// so a manifest field never carries control characters into a log line.
bool is_plain_text(std::string_view s, std::size_t max) {
  return s.size() <= max &&
         std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f && c != '"' && c != '\\'; });
}

std::unexpected<Error> bad(std::string what) {
  return std::unexpected<Error>(std::in_place, Errc::invalid_argument, "snapshot manifest: " + std::move(what));
}

Result<std::string> field_string(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return bad("'" + std::string(key) + "' is missing");
  if (!v->is_string()) return bad("'" + std::string(key) + "' must be a string");
  return std::string(v->get_string());
}

Result<std::uint64_t> field_uint(const json::object& o, std::string_view key, std::uint64_t max) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return bad("'" + std::string(key) + "' is missing");
  std::uint64_t n = 0;
  if (v->is_uint64()) {
    n = v->get_uint64();
  } else if (v->is_int64() && v->get_int64() >= 0) {
    n = static_cast<std::uint64_t>(v->get_int64());
  } else {
    return bad("'" + std::string(key) + "' must be a non-negative integer");
  }
  if (n > max) return bad("'" + std::string(key) + "' is out of range");
  return n;
}

Result<void> only_fields(const json::object& o, std::initializer_list<std::string_view> allowed,
                         std::string_view where) {
  for (const auto& kv : o) {
    if (std::find(allowed.begin(), allowed.end(), kv.key()) == allowed.end()) {
      // The unknown name is from outside: say where, not what.
      return bad(std::string(where) + " has an unknown field");
    }
  }
  return {};
}

}  // namespace

std::string serialize_manifest(const SnapshotManifest& m) {
  json::array sections;
  for (const auto& s : m.sections) {
    sections.push_back(json::object{{"name", s.name}, {"bytes", s.bytes}, {"sha256", s.sha256}});
  }
  json::object o{{"format", "rootseal-snapshot"},
                 {"version", 1},
                 {"created", snapshot_time_name(m.created_unix_ms)},
                 {"created_unix_ms", m.created_unix_ms},
                 {"host", m.host},
                 {"cluster_id", m.cluster_id},
                 {"root_kcv", m.root_kcv},
                 {"keys", m.keys},
                 {"versions", m.versions},
                 {"storage", m.storage},
                 {"sections", std::move(sections)},
                 {"content_sha256", m.content_sha256}};
  if (m.storage == "etcd") o["etcd_revision"] = m.etcd_revision;
  return json::serialize(o);
}

Result<SnapshotManifest> parse_manifest(std::string_view line) {
  if (line.size() > kMaxManifestBytes) return bad("longer than 64 KiB");
  json::value v;
  {
    boost::system::error_code ec;
    json::parse_options opt;
    opt.max_depth = 4;
    v = json::parse(line, ec, {}, opt);
    if (ec) return bad("not JSON");
  }
  if (!v.is_object()) return bad("not a JSON object");
  const auto& o = v.get_object();
  ROOTSEAL_TRY(only_fields(o,
                           {"format", "version", "created", "created_unix_ms", "host", "cluster_id", "root_kcv", "keys",
                            "versions", "storage", "etcd_revision", "sections", "content_sha256"},
                           "the manifest"));
  ROOTSEAL_LET(format, field_string(o, "format"));
  if (format != "rootseal-snapshot") return bad("format is not rootseal-snapshot");
  ROOTSEAL_LET(version, field_uint(o, "version", 1000));
  if (version != 1) return bad("version " + std::to_string(version) + " is not supported (this binary reads 1)");
  SnapshotManifest m;
  // Milliseconds since 1970 up to the year 9999 (the name has four year digits).
  ROOTSEAL_LET(ms, field_uint(o, "created_unix_ms", 253402300799999ULL));
  m.created_unix_ms = static_cast<std::int64_t>(ms);
  ROOTSEAL_LET(created, field_string(o, "created"));
  if (created != snapshot_time_name(m.created_unix_ms)) return bad("'created' does not match 'created_unix_ms'");
  ROOTSEAL_TRY_ASSIGN(m.host, field_string(o, "host"));
  if (!is_plain_text(m.host, 255)) return bad("'host' is not a plain host name");
  ROOTSEAL_TRY_ASSIGN(m.cluster_id, field_string(o, "cluster_id"));
  if (!is_plain_text(m.cluster_id, 64)) return bad("'cluster_id' is not a plain identifier");
  ROOTSEAL_TRY_ASSIGN(m.root_kcv, field_string(o, "root_kcv"));
  if (!is_lower_hex(m.root_kcv, 6)) return bad("'root_kcv' must be 6 lower-case hex digits");
  ROOTSEAL_TRY_ASSIGN(m.keys, field_uint(o, "keys", std::numeric_limits<std::uint32_t>::max()));
  ROOTSEAL_TRY_ASSIGN(m.versions, field_uint(o, "versions", std::numeric_limits<std::uint32_t>::max()));
  // The first snapshots have no "storage": they are SQLite's.
  if (o.contains("storage")) ROOTSEAL_TRY_ASSIGN(m.storage, field_string(o, "storage"));
  if (m.storage != "sqlite" && m.storage != "etcd") return bad("'storage' must be sqlite or etcd");
  if (m.storage == "etcd") {
    ROOTSEAL_LET(rev, field_uint(o, "etcd_revision", std::numeric_limits<std::int64_t>::max()));
    if (rev == 0) return bad("'etcd_revision' must be above 0");
    m.etcd_revision = static_cast<std::int64_t>(rev);
  } else if (o.contains("etcd_revision")) {
    return bad("'etcd_revision' belongs to a snapshot of etcd only");
  }
  ROOTSEAL_TRY_ASSIGN(m.content_sha256, field_string(o, "content_sha256"));
  if (!is_lower_hex(m.content_sha256, 64)) return bad("'content_sha256' must be 64 lower-case hex digits");
  const auto* secs = o.if_contains("sections");
  if (secs == nullptr || !secs->is_array()) return bad("'sections' must be a list");
  if (secs->get_array().empty() || secs->get_array().size() > kMaxSections)
    return bad("'sections' must hold 1 to 8 entries");
  std::set<std::string> seen;
  for (const auto& e : secs->get_array()) {
    if (!e.is_object()) return bad("a section must be an object");
    const auto& so = e.get_object();
    ROOTSEAL_TRY(only_fields(so, {"name", "bytes", "sha256"}, "a section"));
    SnapshotSection s;
    ROOTSEAL_TRY_ASSIGN(s.name, field_string(so, "name"));
    if (!is_section_name(s.name)) return bad("a section name must be 1 to 32 letters a-z");
    if (!seen.insert(s.name).second) return bad("section '" + s.name + "' appears twice");
    ROOTSEAL_TRY_ASSIGN(s.bytes, field_uint(so, "bytes", kMaxSectionBytes));
    ROOTSEAL_TRY_ASSIGN(s.sha256, field_string(so, "sha256"));
    if (!is_lower_hex(s.sha256, 64)) return bad("section '" + s.name + "': sha256 must be 64 lower-case hex digits");
    m.sections.push_back(std::move(s));
  }
  if (!seen.contains("keyring")) return bad("there is no 'keyring' section");
  return m;
}

std::string snapshot_time_name(std::int64_t unix_ms) {
  const std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  if (gmtime_r(&secs, &tm) == nullptr) return "00000000T000000.000Z";  // out of range: never a valid name
  char buf[40];
  (void)std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                      tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(unix_ms % 1000));
  return buf;
}

std::string snapshot_object_name(std::int64_t unix_ms) { return "rootseal-" + snapshot_time_name(unix_ms) + ".snap"; }

bool is_snapshot_object_name(std::string_view name) noexcept {
  // rootseal-YYYYMMDDTHHMMSS.mmmZ.snap
  constexpr std::string_view kPrefix = "rootseal-";
  constexpr std::string_view kSuffix = ".snap";
  constexpr std::string_view kShape = "ddddddddTdddddd.dddZ";
  if (name.size() != kPrefix.size() + kShape.size() + kSuffix.size()) return false;
  if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) return false;
  const auto t = name.substr(kPrefix.size(), kShape.size());
  for (std::size_t i = 0; i < kShape.size(); ++i) {
    if (kShape[i] == 'd' ? (t[i] < '0' || t[i] > '9') : t[i] != kShape[i]) return false;
  }
  return true;
}

Result<std::vector<std::uint8_t>> backup_sqlite_image(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return fail(Errc::not_found, path.filename().string() + " does not exist");
  sqlite3* src = nullptr;
  sqlite3* dst = nullptr;
  auto close = [&] {
    ::sqlite3_close_v2(src);
    ::sqlite3_close_v2(dst);
  };
  auto failed = [&](std::string_view what, int rc) {
    close();
    return fail(Errc::storage_failure,
                "snapshot of " + path.filename().string() + ": " + std::string(what) + ": " + ::sqlite3_errstr(rc));
  };
  int rc = ::sqlite3_open_v2(path.c_str(), &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE,
                             nullptr);
  if (rc != SQLITE_OK) return failed("open", rc);
  ::sqlite3_busy_timeout(src, 5000);
  rc = ::sqlite3_open_v2(":memory:", &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY | SQLITE_OPEN_EXRESCODE, nullptr);
  if (rc != SQLITE_OK) return failed("open in memory", rc);
  // The online backup API: one pass (-1 = every page) inside one read
  // transaction of the source, so writers in the daemon see no pause and the
  // copy is one consistent state.
  sqlite3_backup* b = ::sqlite3_backup_init(dst, "main", src, "main");
  if (b == nullptr) return failed("backup", ::sqlite3_errcode(dst));
  rc = ::sqlite3_backup_step(b, -1);
  const int frc = ::sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) return failed("backup", rc);
  if (frc != SQLITE_OK) return failed("backup", frc);
  // Drop free pages (deleted rows' old pages) from the copy.
  rc = ::sqlite3_exec(dst, "VACUUM", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return failed("vacuum", rc);
  auto out = serialize_image(dst);
  close();
  return out;
}

std::span<const std::uint8_t> SnapshotView::section(std::string_view name) const {
  for (const auto& [n, bytes] : sections) {
    if (n == name) return bytes;
  }
  return {};
}

Result<SnapshotView> parse_snapshot(std::span<const std::uint8_t> bytes) {
  auto refuse = [](std::string why) { return fail(Errc::invalid_argument, "snapshot refused: " + std::move(why)); };
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (!text.starts_with(kSnapshotMagic)) return refuse("not a rootseal snapshot (bad first line)");
  const auto rest = text.substr(kSnapshotMagic.size());
  const auto nl = rest.find('\n');
  if (nl == std::string_view::npos || nl > kMaxManifestBytes) return refuse("no manifest line");
  auto manifest = parse_manifest(rest.substr(0, nl));
  if (!manifest) return refuse(manifest.error().message);
  const std::size_t body_at = kSnapshotMagic.size() + nl + 1;
  const auto body = bytes.subspan(body_at);
  std::uint64_t total = 0;
  for (const auto& s : manifest->sections) total += s.bytes;
  if (total != body.size()) {
    return refuse("the manifest lists " + std::to_string(total) + " bytes of content, the file holds " +
                  std::to_string(body.size()) + " (truncated or padded)");
  }
  if (sha256_hex(body) != manifest->content_sha256) {
    return refuse("content SHA-256 does not match the manifest (the snapshot is damaged)");
  }
  SnapshotView view;
  std::size_t at = 0;
  for (const auto& s : manifest->sections) {
    const auto part = body.subspan(at, static_cast<std::size_t>(s.bytes));
    if (sha256_hex(part) != s.sha256) return refuse("section '" + s.name + "': SHA-256 does not match the manifest");
    view.sections.emplace_back(s.name, part);
    at += part.size();
  }
  view.manifest = std::move(*manifest);
  return view;
}

Result<std::vector<std::uint8_t>> build_snapshot(const SnapshotInput& input, std::string_view root_kcv) {
  ROOTSEAL_LET(store, open_sqlite_image(input.keyring));
  ROOTSEAL_LET(keys, store->load_all());
  SnapshotManifest m;
  m.created_unix_ms = input.created_unix_ms;
  m.host = input.host;
  m.cluster_id = input.cluster_id;
  m.storage = input.storage;
  m.etcd_revision = input.etcd_revision;
  if (m.storage != "sqlite" && m.storage != "etcd") return fail(Errc::invalid_argument, "snapshot: unknown storage");
  if ((m.storage == "etcd") != (m.etcd_revision > 0)) {
    return fail(Errc::invalid_argument, "snapshot: an etcd revision goes with storage etcd, and only there");
  }
  m.root_kcv = std::string(root_kcv);
  m.keys = keys.size();
  for (const auto& k : keys) m.versions += k.versions.size();
  if (!is_plain_text(m.host, 255)) return fail(Errc::invalid_argument, "snapshot: the host name is not plain text");
  if (!is_plain_text(m.cluster_id, 64))
    return fail(Errc::invalid_argument, "snapshot: the cluster id is not plain text");
  if (!is_lower_hex(m.root_kcv, 6))
    return fail(Errc::invalid_argument, "snapshot: the root check value is not 6 hex digits");
  std::vector<std::uint8_t> body;
  auto add = [&](std::string name, const std::vector<std::uint8_t>& image) {
    m.sections.push_back({std::move(name), image.size(), sha256_hex(image)});
    body.insert(body.end(), image.begin(), image.end());
  };
  add("keyring", input.keyring);
  if (!input.tokens.empty()) {
    sqlite3* db = nullptr;
    ROOTSEAL_TRY(open_memory_image(input.tokens, &db));
    ::sqlite3_close_v2(db);
    add("tokens", input.tokens);
  }
  m.content_sha256 = sha256_hex(body);
  const std::string line = serialize_manifest(m);
  std::vector<std::uint8_t> out;
  out.reserve(kSnapshotMagic.size() + line.size() + 1 + body.size());
  out.insert(out.end(), kSnapshotMagic.begin(), kSnapshotMagic.end());
  out.insert(out.end(), line.begin(), line.end());
  out.push_back('\n');
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Result<std::vector<std::uint8_t>> keyring_image(const std::vector<KeyRecord>& keys,
                                                const std::vector<KeyringKeyRecord>& keyring_keys) {
  return sqlite_image_of(keys, keyring_keys);
}

Result<std::vector<std::uint8_t>> build_sqlite_image(const std::function<Result<void>(sqlite3*)>& fill) {
  ROOTSEAL_LET(db, open_memory_connection());
  struct Close {
    sqlite3* db;
    ~Close() { ::sqlite3_close_v2(db); }
  } close{db};
  ROOTSEAL_TRY(fill(db));
  return serialize_image(db);
}

Result<void> read_sqlite_image(std::span<const std::uint8_t> image, const std::function<Result<void>(sqlite3*)>& read) {
  sqlite3* db = nullptr;
  ROOTSEAL_TRY(open_memory_image(image, &db));
  struct Close {
    sqlite3* db;
    ~Close() { ::sqlite3_close_v2(db); }
  } close{db};
  return read(db);
}

Result<std::vector<KeyRecord>> snapshot_keys(const SnapshotView& snapshot) {
  auto store = open_sqlite_image(snapshot.section("keyring"));
  if (!store) return fail(Errc::invalid_argument, "snapshot refused: section 'keyring': " + store.error().message);
  auto keys = (*store)->load_all();
  if (!keys) return fail(Errc::invalid_argument, "snapshot refused: section 'keyring': " + keys.error().message);
  return keys;
}

Result<std::vector<KeyringKeyRecord>> snapshot_keyring_keys(const SnapshotView& snapshot) {
  auto store = open_sqlite_image(snapshot.section("keyring"));
  if (!store) return fail(Errc::invalid_argument, "snapshot refused: section 'keyring': " + store.error().message);
  auto keys = (*store)->keyring_keys();
  if (!keys) return fail(Errc::invalid_argument, "snapshot refused: section 'keyring': " + keys.error().message);
  return keys;
}

Result<SnapshotReport> verify_snapshot(std::span<const std::uint8_t> bytes, RootOfTrust& root) {
  ROOTSEAL_LET(view, parse_snapshot(bytes));
  auto refuse = [](std::string why) { return fail(Errc::invalid_argument, "snapshot refused: " + std::move(why)); };
  const auto& m = view.manifest;
  for (const auto& [name, image] : view.sections) {
    if (name == "keyring") continue;
    sqlite3* db = nullptr;
    auto opened = open_memory_image(image, &db);
    if (!opened) return refuse("section '" + name + "': " + opened.error().message);
    ::sqlite3_close_v2(db);
  }
  auto keys = snapshot_keys(view);
  if (!keys) return std::unexpected(keys.error());
  std::uint64_t versions = 0;
  for (const auto& k : *keys) versions += k.versions.size();
  if (keys->size() != m.keys || versions != m.versions) {
    return refuse("the keyring holds " + std::to_string(keys->size()) + " keys and " + std::to_string(versions) +
                  " versions, the manifest says " + std::to_string(m.keys) + " and " + std::to_string(m.versions));
  }
  ROOTSEAL_LET(kcv, root.key_check_value());
  if (kcv != m.root_kcv) {
    return fail(Errc::decryption_failed,
                "snapshot refused: it was taken under root key " + m.root_kcv + ", the root of trust here is " + kcv);
  }
  ROOTSEAL_LET(keyring_keys, snapshot_keyring_keys(view));
  auto hierarchy = KeyHierarchy::open(root, kcv, keyring_keys);  // one root operation per keyring key
  if (!hierarchy) {
    return fail(hierarchy.error().code == Errc::sealed ? Errc::decryption_failed : hierarchy.error().code,
                "snapshot refused: " + hierarchy.error().message);
  }
  SnapshotReport report;
  for (const auto& k : *keys) {
    for (const auto& v : k.versions) {
      if (!hierarchy->knows(v.root_kcv)) {
        return fail(Errc::decryption_failed, "snapshot refused: key '" + k.name + "' version " +
                                                 std::to_string(v.version) + " is wrapped by " +
                                                 (keyring_key_tag_id(v.root_kcv) ? "keyring key " : "root key ") +
                                                 v.root_kcv + ", which it does not hold");
      }
      auto kek = hierarchy->unwrap(v);  // SecureBytes, wiped at the end of this statement's scope
      if (!kek) {
        return fail(kek.error().code, "snapshot refused: key '" + k.name + "' version " + std::to_string(v.version) +
                                          " does not unwrap: " + kek.error().message);
      }
      ++report.unwrapped;
    }
  }
  report.manifest = m;
  return report;
}

Result<void> restore_snapshot_files(const SnapshotView& snapshot, const std::filesystem::path& state_dir, bool force) {
  static constexpr std::string_view kFiles[] = {"rootseal.db",   "rootseal.db-wal", "rootseal.db-shm", "tokens.db",
                                                "tokens.db-wal", "tokens.db-shm",   "cluster-id"};
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) return fail(Errc::storage_failure, "restore: cannot create " + state_dir.string());
  std::vector<std::string> present;
  for (const auto f : kFiles) {
    if (std::filesystem::exists(state_dir / f, ec)) present.emplace_back(f);
  }
  if (!present.empty() && !force) {
    std::string list;
    for (const auto& p : present) list += (list.empty() ? "" : ", ") + p;
    return fail(Errc::conflict, "restore: " + state_dir.string() + " is not empty (" + list +
                                    "); stop the daemon and pass --force to replace it");
  }
  // Old journals first: a stale -wal beside a restored database would be replayed into it.
  for (const auto& p : present) {
    if (p.ends_with("-wal") || p.ends_with("-shm")) {
      std::filesystem::remove(state_dir / p, ec);
      if (ec) return fail(Errc::storage_failure, "restore: cannot remove " + p);
    }
  }
  auto put = [&](std::string_view file, std::span<const std::uint8_t> data) {
    return write_file_durably(state_dir / file, data, 0600, /*exclusive=*/false);
  };
  ROOTSEAL_TRY(put("rootseal.db", snapshot.section("keyring")));
  if (const auto tokens = snapshot.section("tokens"); !tokens.empty()) {
    ROOTSEAL_TRY(put("tokens.db", tokens));
  } else if (std::filesystem::exists(state_dir / "tokens.db", ec)) {
    std::filesystem::remove(state_dir / "tokens.db", ec);  // the snapshot's state had no created tokens
  }
  if (!snapshot.manifest.cluster_id.empty()) {
    const std::string line = snapshot.manifest.cluster_id + "\n";
    ROOTSEAL_TRY(put("cluster-id", std::span(reinterpret_cast<const std::uint8_t*>(line.data()), line.size())));
  }
  return {};
}

}  // namespace rootseal::kms
