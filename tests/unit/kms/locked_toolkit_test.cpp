// The locked-memory toolkit of kms: SecureBuffer, SecureJsonResource, the
// secure memory resource's blocks, and the checked public randomness.
#define OPENSSL_SUPPRESS_DEPRECATED  // RAND_set_rand_method: the one way to make RAND_bytes fail
#include <catch2/catch.hpp>

#include <boost/json.hpp>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "rootseal/kms/random.hpp"
#include "rootseal/kms/secure_buffer.hpp"
#include "rootseal/kms/secure_json.hpp"
#include "rootseal/kms/secure_memory_resource.hpp"

using namespace rootseal::kms;
namespace json = boost::json;

TEST_CASE("SecureBuffer grows in locked memory and hands over exactly its bytes", "[toolkit]") {
  const auto before = secure_arena_stats().in_use_bytes;
  {
    SecureBuffer b(16);
    CHECK(b.empty());
    CHECK(b.capacity() >= 16);
    for (int i = 0; i < 1000; ++i) b.append("0123456789");
    b.push_back('!');
    CHECK(b.size() == 10001);
    CHECK(b.view().substr(9990) == "0123456789!");
    CHECK(secure_arena_stats().in_use_bytes >= before + b.capacity());
    b.pop(1);
    CHECK(b.view().back() == '9');
    SecureBytes taken = b.take();
    CHECK(taken.size() == 10000);
    CHECK(b.empty());
    CHECK(as_view(taken).substr(0, 10) == "0123456789");
  }
  CHECK(secure_arena_stats().in_use_bytes == before);
}

TEST_CASE("SecureJsonResource: documents live in locked chunks within the limit", "[toolkit]") {
  std::string doc = R"({"items":[)";
  for (int i = 0; i < 2000; ++i)
    doc += std::string(i ? "," : "") + R"({"secret":"c2VjcmV0LXZhbHVl","n":)" + std::to_string(i) + "}";
  doc += "]}";
  const auto before = secure_arena_stats().in_use_bytes;
  {
    SecureJsonResource arena(3 * 1024, 8 * 1024 * 1024);
    CHECK(arena.reserved_bytes() == 0);  // nothing locked before the first allocation
    json::value v = json::parse(doc, arena.storage());
    CHECK(v.at("items").as_array().size() == 2000);
    CHECK(v.at("items").as_array().at(7).at("secret").as_string().storage().get() == &arena);
    CHECK(is_secure_json_storage(v.storage()));
    CHECK(arena.reserved_bytes() > 3 * 1024);
    CHECK(arena.reserved_bytes() <= 8 * 1024 * 1024);
    CHECK(secure_arena_stats().in_use_bytes >= before + arena.reserved_bytes());
  }
  CHECK(secure_arena_stats().in_use_bytes == before);

  // Past the limit: bad_alloc, never the heap.
  SecureJsonResource small(1024, 8 * 1024);
  CHECK_THROWS_AS(json::parse(doc, small.storage()), std::bad_alloc);
  CHECK(small.reserved_bytes() <= 8 * 1024);

  // A small first chunk comes from the per-thread size classes (<= 4 KiB).
  SecureJsonResource request(3 * 1024 + 2 * 40, 1 << 20);
  json::value small_doc = json::parse(R"({"plaintext":"aGVsbG8="})", request.storage());
  CHECK(request.reserved_bytes() == 3 * 1024 + 2 * 40);

  // The shared form keeps itself alive through its values. A value declared
  // with the default storage copies what it is assigned to the heap: values
  // that hold secrets start out in the locked storage.
  json::value plain;
  plain = json::value(json::string("a secret value longer than the small buffer", secure_json_storage(512)));
  CHECK_FALSE(is_secure_json_storage(plain.as_string().storage()));
  json::value held(secure_json_storage(512));
  held = json::string("a secret value longer than the small buffer", held.storage());
  CHECK(is_secure_json_storage(held.as_string().storage()));
  CHECK_FALSE(is_secure_json_storage(json::storage_ptr()));

  // Serialized into locked memory.
  SecureBuffer out;
  serialize_into(small_doc, out);
  CHECK(out.view() == R"({"plaintext":"aGVsbG8="})");
}

TEST_CASE("SecureMemoryResource gives back what it hands out, large blocks included", "[toolkit]") {
  SecureMemoryResource mr;
  const auto before = secure_arena_stats();
  void* small = mr.allocate(100, 8);
  void* large = mr.allocate(40 * 1024, 16);
  CHECK(mr.allocations() == 2);
  CHECK(mr.in_use() == 100 + 40 * 1024);
  std::memset(large, 0x5A, 40 * 1024);
  mr.deallocate(large, 40 * 1024, 16);
  mr.deallocate(small, 100, 8);
  CHECK(mr.allocations() == 0);
  CHECK(mr.in_use() == 0);
  CHECK(secure_arena_stats().in_use_bytes == before.in_use_bytes);
  // A large block of another size may reuse the cached one: it reads as zeros.
  SecureBytes again(40 * 1024);
  CHECK(std::all_of(again.data(), again.data() + again.size(), [](std::uint8_t b) { return b == 0; }));
}

TEST_CASE("uuid_v4: version 4, variant 10, lower-case, distinct", "[toolkit]") {
  const std::regex form("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {  // more than one block of 32 per thread
    const std::string id = uuid_v4();
    INFO(id);
    CHECK(std::regex_match(id, form));
    seen.insert(id);
  }
  CHECK(seen.size() == 200);
}

namespace {

// An RNG that always fails, installed for the life of the object.
struct FailingRng {
  static int fail_bytes(unsigned char*, int) { return 0; }
  static int status() { return 0; }
  FailingRng() : previous(RAND_get_rand_method()) {
    method.bytes = &fail_bytes;
    method.pseudorand = &fail_bytes;
    method.status = &status;
    REQUIRE(RAND_set_rand_method(&method) == 1);
  }
  ~FailingRng() { RAND_set_rand_method(previous); }
  RAND_METHOD method{};
  const RAND_METHOD* previous;
};

}  // namespace

TEST_CASE("a failing RNG is an error, never unset bytes", "[toolkit]") {
  // A fresh thread: its block of identifiers is empty, so uuid_v4 draws.
  bool uuid_threw = false, bytes_threw = false;
  std::array<std::uint8_t, 6> bytes{};
  {
    FailingRng failing;
    std::thread([&] {
      try {
        (void)uuid_v4();
      } catch (const std::runtime_error&) {
        uuid_threw = true;
      }
      try {
        random_public_bytes(bytes);
      } catch (const std::runtime_error&) {
        bytes_threw = true;
      }
    }).join();
  }
  CHECK(uuid_threw);
  CHECK(bytes_threw);
  // With the RNG back, both work.
  CHECK(uuid_v4().size() == 36);
  random_public_bytes(bytes);
}
