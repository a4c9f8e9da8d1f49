// The state folder's lock (rootseal/daemon/state.hpp): one holder at a time,
// named in the refusal; released when the holder goes, SIGKILL included.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <string>

#include "rootseal/daemon/state.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using daemon::StateDirLock;

TEST_CASE("state lock: one holder at a time, named in the refusal, released with its holder") {
  test::TempDir dir;
  {
    auto held = StateDirLock::acquire(dir.path(), "rootseald");
    REQUIRE(held);
    struct stat st{};
    REQUIRE(::stat((dir.path() / "rootseald.lock").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    auto second = StateDirLock::acquire(dir.path(), "rootseal storage migrate");
    REQUIRE_FALSE(second);
    CHECK(second.error().code == kms::Errc::conflict);
    CHECK_THAT(second.error().message,
               Catch::Contains("is in use by pid " + std::to_string(::getpid()) + " rootseald"));
    CHECK_THAT(second.error().message, Catch::Contains("stop it first"));
  }
  REQUIRE(StateDirLock::acquire(dir.path(), "rootseald"));  // released by the destructor

  // Another process holds it; SIGKILLed, it releases it (the kernel drops the flock).
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(ready[0]);
    auto lock = StateDirLock::acquire(dir.path(), "rootseal storage migrate");
    const char c = lock ? '1' : '0';
    if (::write(ready[1], &c, 1) != 1) ::_exit(1);
    ::pause();  // until SIGKILL
    ::_exit(0);
  }
  ::close(ready[1]);
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  REQUIRE(c == '1');
  auto refused = StateDirLock::acquire(dir.path(), "rootseald");
  REQUIRE_FALSE(refused);
  CHECK_THAT(refused.error().message,
             Catch::Contains("is in use by pid " + std::to_string(child) + " rootseal storage migrate"));
  ::kill(child, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(StateDirLock::acquire(dir.path(), "rootseald"));

  // A folder that does not exist: a clear error, not a crash.
  auto missing = StateDirLock::acquire(dir.path() / "nope", "rootseald");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == kms::Errc::storage_failure);
}
