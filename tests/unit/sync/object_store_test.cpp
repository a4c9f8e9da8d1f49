// sync::ObjectStore: the folder store (put is whole and never replaces, list
// skips what is not an object, get/remove of absent names) and the argument
// checks of the S3 store. The S3 store's requests are tested against
// moto_server in tests/integration/test_snapshots.py.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "provider_test_util.hpp"
#include "rootseal/sync/object_store.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using kms::Errc;

namespace {

std::vector<std::uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

}  // namespace

TEST_CASE("folder store: put, get, list, remove") {
  test::TempDir dir("rootseal-objects");
  const auto folder = dir / "snapshots";
  auto store = sync::make_folder_store(folder);
  test::Loop loop;
  const auto a = bytes("first");
  const auto b = bytes("second object");
  REQUIRE(loop.run(store->put("b.snap", b)));
  REQUIRE(loop.run(store->put("a.snap", a)));
  // The folder is private, the objects too.
  struct stat st{};
  REQUIRE(::stat(folder.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(::stat((folder / "a.snap").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  // A stray temporary file and a sub-folder are not objects.
  std::ofstream(folder / ".a.snap.tmp-123456") << "partial";
  std::filesystem::create_directory(folder / "sub");

  auto listed = loop.run(store->list());
  REQUIRE(listed);
  REQUIRE(listed->size() == 2);
  CHECK((*listed)[0].name == "a.snap");
  CHECK((*listed)[0].size == a.size());
  CHECK((*listed)[1].name == "b.snap");
  auto got = loop.run(store->get("b.snap"));
  REQUIRE(got);
  CHECK(*got == b);

  // An existing object is never replaced.
  auto again = loop.run(store->put("a.snap", b));
  REQUIRE_FALSE(again);
  CHECK(again.error().code == Errc::already_exists);
  CHECK(*loop.run(store->get("a.snap")) == a);

  REQUIRE(loop.run(store->remove("a.snap")));
  REQUIRE(loop.run(store->remove("a.snap")));  // absent: fine
  auto gone = loop.run(store->get("a.snap"));
  REQUIRE_FALSE(gone);
  CHECK(gone.error().code == Errc::not_found);
  CHECK(loop.run(store->list())->size() == 1);
}

TEST_CASE("folder store: names that could leave the folder are refused") {
  test::TempDir dir("rootseal-objects");
  auto store = sync::make_folder_store(dir / "s");
  test::Loop loop;
  for (const std::string& name : std::vector<std::string>{"", "../x", "a/b", ".hidden", "a b", std::string(201, 'a')}) {
    INFO(name);
    auto r = loop.run(store->put(name, bytes("x")));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK_FALSE(loop.run(store->get(name)));
  }
  CHECK(loop.run(store->list())->empty());
}

TEST_CASE("s3 store: the spec is checked before any request") {
  boost::asio::io_context io;
  auto spec = [] {
    sync::S3Spec s;
    s.bucket = "rootseal-snapshots";
    s.region = "eu-west-1";
    s.access_key_id = kms::SecureBytes::copy_of(std::string_view("AKIDEXAMPLE"));
    s.secret_access_key = kms::SecureBytes::copy_of(std::string_view("secret"));
    return s;
  };
  REQUIRE(sync::make_s3_store(io.get_executor(), spec()));
  struct Case {
    std::function<void(sync::S3Spec&)> change;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](sync::S3Spec& s) { s.bucket = "Upper"; }, "bucket"},
      {[](sync::S3Spec& s) { s.bucket = "ab"; }, "bucket"},
      {[](sync::S3Spec& s) { s.region = ""; }, "region"},
      {[](sync::S3Spec& s) { s.prefix = "noslash"; }, "prefix"},
      {[](sync::S3Spec& s) { s.prefix = "/abs/"; }, "prefix"},
      {[](sync::S3Spec& s) { s.sse = "aes"; }, "server_side_encryption"},
      {[](sync::S3Spec& s) { s.sse_kms_key_id = "k"; }, "sse_kms_key_id"},
      {[](sync::S3Spec& s) { s.endpoint = "ftp://x"; }, "endpoint"},
      {[](sync::S3Spec& s) { s.endpoint = "http://x:9000/path"; }, "endpoint"},
      {[](sync::S3Spec& s) { s.secret_access_key = kms::SecureBytes(); }, "secret_access_key"},
  };
  for (const auto& c : cases) {
    auto s = spec();
    c.change(s);
    auto r = sync::make_s3_store(io.get_executor(), std::move(s));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(r.error().message.find(c.message) != std::string::npos);
  }
}
