#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "rootseal/kms/durable_file.hpp"
#include "temp_dir.hpp"

using namespace rootseal;

namespace {

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::size_t entries(const std::filesystem::path& dir) {
  return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(dir), {}));
}

}  // namespace

TEST_CASE("durable file: written whole with its mode, replaced, or refused when exclusive") {
  test::TempDir dir;
  const auto path = dir / "cluster-id";
  REQUIRE(kms::write_file_durably(path, bytes("one\n"), 0600, false));
  CHECK(read(path) == "one\n");
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(kms::write_file_durably(path, bytes("two\n"), 0644, false));
  CHECK(read(path) == "two\n");
  auto again = kms::write_file_durably(path, bytes("three\n"), 0600, true);
  REQUIRE_FALSE(again);
  CHECK(again.error().code == kms::Errc::already_exists);
  CHECK(read(path) == "two\n");
  CHECK(entries(dir.path()) == 1);  // no temporary file left behind
}

TEST_CASE("durable file: a write that fails (file size limit, as a full disk) leaves the old file and no temporary") {
  test::TempDir dir;
  const auto path = dir / "state";
  REQUIRE(kms::write_file_durably(path, bytes("old content\n"), 0600, false));
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (std::signal(SIGXFSZ, SIG_IGN) == SIG_ERR) ::_exit(11);
    rlimit original{};
    if (::getrlimit(RLIMIT_FSIZE, &original) != 0) ::_exit(10);
    const rlimit limit{4, original.rlim_max};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(11);
    auto r = kms::write_file_durably(path, bytes("new content that does not fit\n"), 0600, false);
    ::_exit(r ? 12 : 0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(read(path) == "old content\n");
  CHECK(entries(dir.path()) == 1);
}
