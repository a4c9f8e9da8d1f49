// The audit log's write path: lines per second and write(2) calls per line
// with 1, 2, 4 and 16 threads writing at once (the Transit hot path writes
// one line per request), with and without fdatasync per write (audit.fsync).
// Write calls come from /proc/self/io (syscw: write-like system calls of the
// process), so they show what group commit saves.
//
//   rootseal_bench_audit [--dir DIR] [--lines N] [--fsync-lines N]
//
// DIR defaults to /var/tmp (a disk-backed file system: fdatasync costs what it
// costs in production there; on tmpfs it is free).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "rootseal/daemon/audit.hpp"

using namespace rootseal::daemon;

namespace {

std::uint64_t write_syscalls() {
  std::ifstream in("/proc/self/io");
  std::string key;
  std::uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "syscw:") return value;
  }
  return 0;
}

AuditRecord sample(int t, int i) {
  AuditRecord r;
  r.request_id = "bench-" + std::to_string(t) + "-" + std::to_string(i);
  r.remote = "127.0.0.1:40000";
  r.accessor = "accessor-0123456789abcdef";
  r.method = "PUT";
  r.path = "/v1/transit/encrypt/bench";
  r.operation = "encrypt";
  r.key = "bench";
  r.key_version = 1;
  r.status = 200;
  r.outcome = "ok";
  r.latency_ms = 0.042;
  return r;
}

void run(const std::filesystem::path& dir, int threads, int total, bool sync) {
  const auto path = dir / ("rootseal-audit-bench-" + std::to_string(::getpid()) + ".log");
  std::filesystem::remove(path);
  AuditOptions options;
  options.sync = sync;
  auto log = AuditLog::open(path, options);
  if (!log) rootseal::bench::die("open: " + log.error().message);
  const int per_thread = total / threads;
  std::atomic<int> failures{0};
  const auto calls_before = write_syscalls();
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        if (!(*log)->write(sample(t, i))) ++failures;
      }
    });
  }
  for (auto& th : pool) th.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto calls = write_syscalls() - calls_before;
  const int lines = per_thread * threads;
  std::printf("%-5s threads=%-3d lines=%-7d %10.0f lines/s  %6.2f us/line  %5.3f write calls/line%s\n",
              sync ? "fsync" : "write", threads, lines, lines / secs, 1e6 * secs / lines,
              static_cast<double>(calls) / lines, failures != 0 ? "  FAILURES" : "");
  log->reset();
  if (!verify_audit_log(path)) std::printf("  the written log does not verify\n");
  std::filesystem::remove(path);
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir = "/var/tmp";
  int lines = 400000;
  int fsync_lines = 4000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--dir")
      dir = argv[i + 1];
    else if (a == "--lines")
      lines = rootseal::bench::parse_arg<int>(argv[i + 1], "--lines");
    else if (a == "--fsync-lines")
      fsync_lines = rootseal::bench::parse_arg<int>(argv[i + 1], "--fsync-lines");
  }
  for (int threads : {1, 2, 4, 16}) run(dir, threads, lines, false);
  for (int threads : {1, 4, 16}) run(dir, threads, fsync_lines, true);
}
