#include <catch2/catch.hpp>

#include <boost/json.hpp>
#include <fstream>
#include <atomic>
#include <optional>
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

TEST_CASE("audit: a torn last line is refused at open instead of being chained over") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  write_log(path, 2);
  {
    std::ofstream out(path, std::ios::app);
    out << R"({"time":"2026-)";
  }
  auto log = AuditLog::open(path);
  REQUIRE_FALSE(log);
  CHECK_THAT(log.error().message, Catch::Contains("incomplete"));
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
  CHECK(v.at("path").as_string() == "/v1/transit/encrypt/a\"b\\c\n\t\x01\x7f/\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // one U+FFFD per invalid byte
  CHECK(v.at("error").as_string() == "quote \" and \r");
  CHECK(v.at("latency_ms").to_number<double>() == Approx(1.5e-5));
  CHECK(v.at("status").to_number<int>() == 200);
  CHECK(v.at("key_version").to_number<int>() == 1);
  const std::string time(v.at("time").as_string());
  CHECK(time.size() == 27);  // YYYY-MM-DDTHH:MM:SS.uuuuuuZ
  CHECK(time[10] == 'T');
  CHECK(time.back() == 'Z');
}

TEST_CASE("audit: after a failed write every later write fails too, and the torn line is refused at the next open") {
  test::TempDir dir;
  const auto path = dir / "audit.log";
  // In a child: the file size limit makes the 4th line's pwrite fail (EFBIG).
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    auto log = AuditLog::open(path);
    if (!log) ::_exit(10);
    for (int i = 0; i < 3; ++i) {
      if (!(*log)->write(record(i))) ::_exit(11);
    }
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) ::_exit(12);
    rlimit original{};
    if (::getrlimit(RLIMIT_FSIZE, &original) != 0) ::_exit(13);
    const rlimit limit{static_cast<rlim_t>(st.st_size) + 10, original.rlim_max};  // soft limit only
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(13);
    if ((*log)->write(record(3))) ::_exit(14);  // must fail
    if (::setrlimit(RLIMIT_FSIZE, &original) != 0) ::_exit(16);
    if ((*log)->write(record(4))) ::_exit(15);  // still fails: the file would have a gap
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The partial 4th line is at the end: reopening refuses the file.
  CHECK_FALSE(AuditLog::open(path));
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
  CHECK(ids.size() == kThreads * kPerThread + 1);       // the reopen lines share one id
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
  // A file that is one torn line with no newline anywhere is refused.
  {
    std::ofstream out(dir / "torn.log", std::ios::binary);
    out << std::string(9000, 'x');
  }
  CHECK_FALSE(AuditLog::open(dir / "torn.log"));
}
