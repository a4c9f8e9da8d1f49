#include <catch2/catch.hpp>

#include <boost/json.hpp>
#include <fstream>
#include <iterator>
#include <atomic>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <sstream>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <vector>

#include "rootseal/daemon/audit.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using namespace rootseal::daemon;

namespace {

AuditRecord record(int i) {
  AuditRecord r;
  r.request_id = "req-" + std::to_string(i);
  r.remote = "127.0.0.1:5555";
  r.accessor = "acc-" + std::to_string(i % 3);
  r.method = "POST";
  r.path = "/v1/transit/encrypt/k";
  r.operation = "encrypt";
  r.key = "k";
  r.key_version = 1;
  r.status = 200;
  r.latency_ms = 0.25;
  return r;
}

std::vector<std::string> read_lines(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

void write_lines(const std::filesystem::path& p, const std::vector<std::string>& lines) {
  std::ofstream out(p, std::ios::trunc);
  for (const auto& l : lines) out << l << "\n";
}

void write_log(const std::filesystem::path& p, int n) {
  auto log = AuditLog::open(p);
  REQUIRE(log);
  for (int i = 0; i < n; ++i) REQUIRE((*log)->write(record(i)));
}

}  // namespace

TEST_CASE("audit: a written log verifies, across reopen, and its file is private") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  write_log(path, 5);
  write_log(path, 3);  // a restart continues the chain
  auto v = verify_audit_log(path);
  REQUIRE(v);
  CHECK(v->lines == 8);
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  const auto lines = read_lines(path);
  CHECK(lines[0].find(R"("prev_sha256":"0000000000000000000000000000000000000000000000000000000000000000")") !=
        std::string::npos);
  CHECK(lines[1].find(R"("operation":"encrypt")") != std::string::npos);
}

TEST_CASE("audit: every line names the writing host when one is set, and the host is covered by the chain") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  AuditOptions options;
  options.host = "seal-2.example";
  {
    auto log = AuditLog::open(path, options);
    REQUIRE(log);
    for (int i = 0; i < 3; ++i) REQUIRE((*log)->write(record(i)));
  }
  auto lines = read_lines(path);
  REQUIRE(lines.size() == 3);
  for (const auto& l : lines) {
    const auto doc = boost::json::parse(l).as_object();
    CHECK(doc.at("host").as_string() == "seal-2.example");
  }
  REQUIRE(verify_audit_log(path));
  // Another host's name put on a line afterwards breaks the chain.
  lines[1].replace(lines[1].find("seal-2.example"), 14, "seal-3.example");
  write_lines(path, lines);
  auto r = verify_audit_log(path);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::StartsWith("line 2: edited"));
  // Without a host: no field (what the other tests write).
  const auto bare = dir / "bare.log";
  write_log(bare, 1);
  CHECK(read_lines(bare)[0].find("\"host\"") == std::string::npos);
}

TEST_CASE("audit: an edited, a deleted, an inserted and a swapped line are each caught") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  write_log(path, 6);
  const auto original = read_lines(path);

  auto edited = original;
  edited[2].replace(edited[2].find("\"status\":200"), 12, "\"status\":403");
  write_lines(path, edited);
  auto r = verify_audit_log(path);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::StartsWith("line 3: edited"));

  auto last_edited = original;  // the last line has no successor to betray it; its own hash does
  last_edited[5].replace(last_edited[5].find("\"status\":200"), 12, "\"status\":500");
  write_lines(path, last_edited);
  r = verify_audit_log(path);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::StartsWith("line 6: edited"));

  auto deleted = original;
  deleted.erase(deleted.begin() + 3);
  write_lines(path, deleted);
  r = verify_audit_log(path);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::StartsWith("line 4:"));

  auto swapped = original;
  std::swap(swapped[1], swapped[2]);
  write_lines(path, swapped);
  r = verify_audit_log(path);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::StartsWith("line 2:"));

  auto inserted = original;
  inserted.insert(inserted.begin() + 1, original[4]);
  write_lines(path, inserted);
  CHECK_FALSE(verify_audit_log(path));

  write_lines(path, original);
  CHECK(verify_audit_log(path));
}

namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::filesystem::path> damaged_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().find(".damaged-") != std::string::npos) out.push_back(e.path());
  }
  return out;
}

// Opens `path` whose end was damaged by `damage` (appended), checks the
// damage was set aside byte for byte and replaced by one recovery line, and
// that the chain goes on.
void check_recovery(const std::filesystem::path& path, const std::string& damage, std::size_t intact_lines) {
  const std::string before = read_file(path);
  const std::string intact = before.substr(0, before.size() - damage.size());
  auto log = AuditLog::open(path);
  REQUIRE(log);
  const auto rec = (*log)->recovery();
  REQUIRE(rec);
  CHECK(rec->damaged_bytes == damage.size());
  CHECK(read_file(rec->damaged_file) == damage);
  REQUIRE((*log)->write(record(100)));
  log->reset();
  const auto after = read_file(path);
  CHECK(after.starts_with(intact));
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == intact_lines + 2);
  const auto first = boost::json::parse(lines[intact_lines]).as_object();
  CHECK(first.at("operation").as_string() == "audit_recovery");
  CHECK(first.at("damaged_file").as_string() == rec->damaged_file.filename().string());
  CHECK(first.at("damaged_bytes").to_number<std::uint64_t>() == damage.size());
  CHECK(first.at("damaged_sha256").as_string() == rec->damaged_sha256);
  CHECK(first.at("last_intact_sha256").as_string() == rec->last_intact_sha256);
  CHECK(first.at("prev_sha256").as_string() == rec->last_intact_sha256);
  auto v = verify_audit_log(path);
  REQUIRE(v);
  CHECK(v->lines == intact_lines + 2);
  REQUIRE(v->recoveries.size() == 1);
  CHECK(v->recoveries[0].line == intact_lines + 1);
  CHECK(v->recoveries[0].damaged_file_checked);
}

}  // namespace

TEST_CASE("audit: a torn last line is set aside byte for byte and the chain continues with a recovery line") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  write_log(path, 3);
  const std::string torn = R"({"time":"2026-12-06T14:00:00.000000Z","request_id":"torn","sta)";
  {
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out << torn;
  }
  check_recovery(path, torn, 3);
  // The next start finds nothing to recover.
  auto again = AuditLog::open(path);
  REQUIRE(again);
  CHECK_FALSE((*again)->recovery());
  CHECK(damaged_files(dir.path()).size() == 1);
}

TEST_CASE("audit: a hole (NUL bytes, then complete lines after it) is set aside with those lines") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  write_log(path, 5);
  auto lines = read_lines(path);
  // What the old pwrite path left after a kill: a reserved line never
  // written (zeros), then the next lines, complete, chained to the missing one.
  const std::string damage = std::string(lines[2].size() + 1, '\0') + lines[3] + "\n" + lines[4] + "\n";
  lines.resize(2);
  write_lines(path, lines);
  {
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out << damage;
  }
  check_recovery(path, damage, 2);
}

TEST_CASE("audit: a last line edited or cut off its newline is damage at the end, and so is every line gone is too") {
  test::TempDir dir;
  SECTION("edited last line") {
    const auto path = dir / "audit.log";
    write_log(path, 3);
    auto lines = read_lines(path);
    auto last = lines.back();
    last.replace(last.find("\"status\":200"), 12, "\"status\":500");
    lines.pop_back();
    write_lines(path, lines);
    std::ofstream(path, std::ios::app | std::ios::binary) << last << "\n";
    check_recovery(path, last + "\n", 2);
  }
  SECTION("no newline after the last line") {
    const auto path = dir / "audit.log";
    write_log(path, 3);
    auto lines = read_lines(path);
    const auto last = lines.back();
    lines.pop_back();
    write_lines(path, lines);
    std::ofstream(path, std::ios::app | std::ios::binary) << last;
    check_recovery(path, last, 2);
  }
  SECTION("only a torn first line") {
    const auto path = dir / "audit.log";
    std::ofstream(path, std::ios::binary) << std::string(300, '\0');
    check_recovery(path, std::string(300, '\0'), 0);
    const auto first = boost::json::parse(read_lines(path).front());
    CHECK(first.at("last_intact_sha256").as_string() == std::string(64, '0'));
  }
}

TEST_CASE("audit: damage in the middle is not recovered: verify still names the line, and a long bad tail is refused") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  write_log(path, 5);
  auto lines = read_lines(path);
  lines[1].replace(lines[1].find("\"status\":200"), 12, "\"status\":403");
  write_lines(path, lines);
  {
    auto log = AuditLog::open(path);  // the end is intact: nothing to recover
    REQUIRE(log);
    CHECK_FALSE((*log)->recovery());
    REQUIRE((*log)->write(record(9)));
  }
  CHECK(damaged_files(dir.path()).empty());
  auto v = verify_audit_log(path);
  REQUIRE_FALSE(v);
  CHECK_THAT(v.error().message, Catch::StartsWith("line 2: edited"));

  // 9000 bytes with no newline at all: not a file this writer left.
  std::ofstream(dir / "torn.log", std::ios::binary) << std::string(9000, 'x');
  auto torn = AuditLog::open(dir / "torn.log");
  REQUIRE(torn);  // a whole file of damage is set aside (nothing intact to continue)
  REQUIRE((*torn)->recovery());
  CHECK((*torn)->recovery()->damaged_bytes == 9000);
}

TEST_CASE("audit: verify checks a recovery line's damaged file when it is beside the log") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  write_log(path, 2);
  std::ofstream(path, std::ios::app | std::ios::binary) << "{\"torn";
  std::filesystem::path damaged;
  {
    auto log = AuditLog::open(path);
    REQUIRE(log);
    damaged = (*log)->recovery()->damaged_file;
  }
  REQUIRE(verify_audit_log(path));
  std::ofstream(damaged, std::ios::app | std::ios::binary) << "x";  // the kept bytes changed
  auto v = verify_audit_log(path);
  REQUIRE_FALSE(v);
  CHECK_THAT(v.error().message, Catch::Contains("line 3: recovery line names"));
  std::filesystem::rename(damaged, dir / "elsewhere");  // archived elsewhere: the chain still verifies
  v = verify_audit_log(path);
  REQUIRE(v);
  REQUIRE(v->recoveries.size() == 1);
  CHECK_FALSE(v->recoveries[0].damaged_file_checked);
}

TEST_CASE("audit: concurrent writers produce one unbroken chain with every line once") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  {
    auto log = AuditLog::open(path);
    REQUIRE(log);
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          if (!(*log)->write(record(t * kPerThread + i))) ++failures;
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
    CHECK((*log)->lines_written() == kThreads * kPerThread);
  }
  auto v = verify_audit_log(path);
  REQUIRE(v);
  CHECK(v->lines == kThreads * kPerThread);
  std::set<std::string> ids;
  for (const auto& l : read_lines(path)) ids.insert(std::string(boost::json::parse(l).at("request_id").as_string()));
  CHECK(ids.size() == kThreads * kPerThread);
  write_log(path, 2);  // reopened: continues at the end of the file
  v = verify_audit_log(path);
  REQUIRE(v);
  CHECK(v->lines == kThreads * kPerThread + 2);
}

TEST_CASE("audit: field values are escaped so that every line is JSON and says what was sent") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  {
    auto log = AuditLog::open(path);
    REQUIRE(log);
    AuditRecord r = record(1);
    r.path = std::string("/v1/transit/encrypt/a\"b\\c\n\t\x01\x7f/") + "\xc3\xa9" + "\xff\xc3" + "\xe2\x82";
    r.error = "quote \" and \r";
    r.latency_ms = 1.5e-5;
    REQUIRE((*log)->write(r));
  }
  REQUIRE(verify_audit_log(path));
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == 1);
  const auto v = boost::json::parse(lines[0]);
  CHECK(
      v.at("path").as_string() ==
      "/v1/transit/encrypt/a\"b\\c\n\t\x01\x7f/\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // one U+FFFD per invalid byte
  CHECK(v.at("error").as_string() == "quote \" and \r");
  CHECK(v.at("latency_ms").to_number<double>() == Approx(1.5e-5));
  CHECK(v.at("status").to_number<int>() == 200);
  CHECK(v.at("key_version").to_number<int>() == 1);
  const std::string time(v.at("time").as_string());
  CHECK(time.size() == 27);  // YYYY-MM-DDTHH:MM:SS.uuuuuuZ
  CHECK(time[10] == 'T');
  CHECK(time.back() == 'Z');
}

TEST_CASE("audit: a failed write leaves no partial line, fails its requests, and the log recovers by itself") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  // In a child: the file size limit makes the 4th line's write fail (EFBIG),
  // as a full disk would (ENOSPC: tests/integration/test_audit_full_disk.py).
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    AuditOptions options;
    options.retry_min = std::chrono::hours(1);  // no retry before the clock says so
    options.retry_max = std::chrono::hours(1);
    auto log = AuditLog::open(path, options);
    if (!log) ::_exit(10);
    std::vector<std::pair<bool, std::string>> events;
    (*log)->on_health_change([&](bool healthy, const std::string& reason) { events.emplace_back(healthy, reason); });
    for (int i = 0; i < 3; ++i) {
      if (!(*log)->write(record(i))) ::_exit(11);
    }
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) ::_exit(12);
    const off_t good_size = st.st_size;
    rlimit original{};
    if (::getrlimit(RLIMIT_FSIZE, &original) != 0) ::_exit(13);
    const rlimit limit{static_cast<rlim_t>(good_size) + 10, original.rlim_max};  // soft limit only
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(13);
    auto failed = (*log)->write(record(3));
    if (failed || failed.error().code != kms::Errc::unavailable) ::_exit(14);
    if (::stat(path.c_str(), &st) != 0 || st.st_size != good_size) ::_exit(15);  // cut back: no partial line
    if ((*log)->healthy() || (*log)->write_failures() != 1) ::_exit(16);
    if (events.size() != 1 || events[0].first || events[0].second.find("write") == std::string::npos) ::_exit(17);
    if (::setrlimit(RLIMIT_FSIZE, &original) != 0) ::_exit(18);
    // Within the back-off, requests fail at once, without a write.
    if ((*log)->write(record(4)) || (*log)->write_failures() != 2) ::_exit(19);
    if (::stat(path.c_str(), &st) != 0 || st.st_size != good_size) ::_exit(20);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  auto v = verify_audit_log(path);
  REQUIRE(v);
  CHECK(v->lines == 3);

  // Without a back-off the next write after the cause is gone succeeds.
  const pid_t pid2 = ::fork();
  REQUIRE(pid2 >= 0);
  if (pid2 == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    AuditOptions options;
    options.retry_min = std::chrono::milliseconds(0);
    options.retry_max = std::chrono::milliseconds(0);
    auto log = AuditLog::open(path, options);
    if (!log) ::_exit(10);
    int healthy_again = 0;
    (*log)->on_health_change([&](bool healthy, const std::string&) { healthy_again += healthy ? 1 : 0; });
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) ::_exit(12);
    rlimit original{};
    if (::getrlimit(RLIMIT_FSIZE, &original) != 0) ::_exit(13);
    const rlimit limit{static_cast<rlim_t>(st.st_size) + 10, original.rlim_max};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(13);
    if ((*log)->write(record(5))) ::_exit(14);
    if (::setrlimit(RLIMIT_FSIZE, &original) != 0) ::_exit(18);
    if (!(*log)->write(record(6))) ::_exit(21);
    if (!(*log)->healthy() || healthy_again != 1) ::_exit(22);
    ::_exit(0);
  }
  REQUIRE(::waitpid(pid2, &status, 0) == pid2);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  v = verify_audit_log(path);
  REQUIRE(v);
  CHECK(v->lines == 4);
  const auto lines = read_lines(path);
  CHECK(boost::json::parse(lines.back()).at("request_id").as_string() == "req-6");
  CHECK(damaged_files(dir.path()).empty());
}

TEST_CASE("audit: a rotated log is reopened and the new file continues the old file's chain") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  auto log = AuditLog::open(path);
  REQUIRE(log);
  for (int i = 0; i < 3; ++i) REQUIRE((*log)->write(record(i)));
  auto same = (*log)->reopen();  // not rotated: nothing to do
  REQUIRE(same);
  CHECK_FALSE(*same);
  std::filesystem::rename(path, dir / "audit.log.1");
  auto reopened = (*log)->reopen();
  REQUIRE(reopened);
  CHECK(*reopened);
  for (int i = 3; i < 5; ++i) REQUIRE((*log)->write(record(i)));

  auto old_file = verify_audit_log(dir / "audit.log.1");
  REQUIRE(old_file);
  CHECK(old_file->lines == 3);
  auto new_alone = verify_audit_log(path);  // each file verifies on its own
  REQUIRE(new_alone);
  CHECK(new_alone->lines == 3);  // the reopen line + 2
  auto linked = verify_audit_log(path, old_file->last_sha256);
  REQUIRE(linked);
  CHECK(linked->continues == old_file->last_sha256);
  const auto first = boost::json::parse(read_lines(path).front());
  CHECK(first.at("operation").as_string() == "audit_reopen");

  // A line cut off the end of the old file no longer links to the new one.
  auto lines = read_lines(dir / "audit.log.1");
  lines.pop_back();
  write_lines(dir / "audit.log.2", lines);
  auto cut = verify_audit_log(dir / "audit.log.2");
  REQUIRE(cut);
  auto broken = verify_audit_log(path, cut->last_sha256);
  REQUIRE_FALSE(broken);
  CHECK_THAT(broken.error().message, Catch::StartsWith("line 1: does not continue the previous file"));
  // A file started fresh (a restart after a move) does not claim to continue anything.
  write_log(dir / "fresh.log", 2);
  auto fresh = verify_audit_log(dir / "fresh.log", old_file->last_sha256);
  REQUIRE_FALSE(fresh);
  CHECK_THAT(fresh.error().message, Catch::Contains("started without a reopen"));
}

TEST_CASE("audit: lines written while the log is rotated again and again all land, in one chain") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  constexpr int kThreads = 4;
  constexpr int kPerThread = 300;
  constexpr int kRotations = 5;
  std::vector<std::filesystem::path> files;
  {
    auto log = AuditLog::open(path);
    REQUIRE(log);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          if (!(*log)->write(record(t * kPerThread + i))) ++failures;
        }
      });
    }
    for (int k = 0; k < kRotations; ++k) {
      const auto rotated = dir / ("audit.log." + std::to_string(k));
      std::filesystem::rename(path, rotated);
      files.push_back(rotated);
      auto r = (*log)->reopen();
      REQUIRE(r);
      CHECK(*r);
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
  }
  files.push_back(path);
  std::optional<std::string> previous;
  std::uint64_t total = 0;
  std::set<std::string> ids;
  for (const auto& f : files) {
    auto v = verify_audit_log(f, previous);
    REQUIRE(v);
    total += v->lines;
    previous = v->last_sha256;
    for (const auto& l : read_lines(f)) ids.insert(std::string(boost::json::parse(l).at("request_id").as_string()));
  }
  CHECK(total == kThreads * kPerThread + kRotations);  // every request line + one reopen line per rotation
  CHECK(ids.size() == kThreads * kPerThread + 1);      // the reopen lines share one id
}

TEST_CASE("audit: a restart continues the chain when the last line spans more than one read step") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  {
    auto log = AuditLog::open(path);
    REQUIRE(log);
    REQUIRE((*log)->write(record(0)));
    AuditRecord big = record(1);
    big.path = "/v1/transit/encrypt/" + std::string(10000, 'k');  // the line is longer than 2 steps of 4 KiB
    REQUIRE((*log)->write(big));
  }
  write_log(path, 2);  // reopened: must chain to the long line
  auto v = verify_audit_log(path);
  REQUIRE(v);
  CHECK(v->lines == 4);
}

TEST_CASE("audit: SIGKILL during concurrent writes leaves no hole and loses no acknowledged line") {
  // A child writes from 16 threads and reports each line whose write()
  // returned (acknowledged, as a request is answered after it) through a pipe;
  // it is killed after a random number of acknowledgements. The next open
  // must keep every acknowledged line; what it sets aside (a write cut short
  // by the kill) holds no NUL bytes: a hole — a later line written while an
  // earlier one was not — cannot happen.
  test::TempDir dir;
  const auto path = dir / "audit.log";
  std::mt19937 rng(15);
  std::set<std::string> acknowledged;
  std::size_t recoveries = 0;
  for (int round = 0; round < 40; ++round) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      auto log = AuditLog::open(path);
      if (!log) ::_exit(10);
      std::vector<std::thread> threads;
      for (int t = 0; t < 16; ++t) {
        threads.emplace_back([&, t] {
          for (std::uint64_t i = 0;; ++i) {
            const std::uint64_t id =
                (static_cast<std::uint64_t>(round) << 40) | (static_cast<std::uint64_t>(t) << 32) | i;
            AuditRecord r = record(0);
            r.request_id = std::to_string(id);
            if (!(*log)->write(r)) ::_exit(11);
            if (::write(fds[1], &id, sizeof id) != sizeof id) ::_exit(12);
          }
        });
      }
      for (auto& th : threads) th.join();
      ::_exit(0);
    }
    ::close(fds[1]);
    const std::size_t kill_after = std::uniform_int_distribution<std::size_t>(1, 3000)(rng);
    std::size_t got = 0;
    bool killed = false;
    std::uint64_t id = 0;
    while (::read(fds[0], &id, sizeof id) == static_cast<ssize_t>(sizeof id)) {  // pipe writes of 8 bytes are atomic
      acknowledged.insert(std::to_string(id));
      if (++got == kill_after && !killed) {
        ::kill(pid, SIGKILL);
        killed = true;
      }
    }
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));

    auto log = AuditLog::open(path);
    REQUIRE(log);
    if (const auto rec = (*log)->recovery()) {
      ++recoveries;
      const std::string damage = read_file(rec->damaged_file);
      INFO("round " << round << ": " << damage.size() << " bytes set aside");
      CHECK(damage.find('\0') == std::string::npos);
    }
  }
  auto v = verify_audit_log(path);
  INFO((v ? std::string() : v.error().message));
  REQUIRE(v);
  std::set<std::string> audited;
  for (const auto& l : read_lines(path))
    audited.insert(std::string(boost::json::parse(l).at("request_id").as_string()));
  std::size_t missing = 0;
  for (const auto& a : acknowledged) missing += audited.count(a) == 0 ? 1u : 0u;
  INFO(acknowledged.size() << " acknowledged, " << recoveries << " recoveries");
  CHECK(missing == 0);
  CHECK(acknowledged.size() > 40);
}
