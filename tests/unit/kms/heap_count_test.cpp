// kms::parse_into keeps boost::json's parse temporaries off the ordinary
// heap. Counting heap allocations needs a replaced global operator new, which
// cannot share a process with AddressSanitizer's allocator (ASan reports an
// alloc-dealloc mismatch for every allocation made through a variant it
// still owns), so this binary is built and run in the Release configuration
// only; every other toolkit test is in kms_crypto_tests and runs under ASan.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <cstdlib>
#include <new>
#include <string>

#include "rootseal/kms/secure_json.hpp"
#include "rootseal/kms/secure_memory_resource.hpp"

using namespace rootseal::kms;
namespace json = boost::json;

// Heap allocations made by this thread (operator new is replaced for this
// test binary; everything else forwards to malloc/free as usual). GCC 12 sees
// the replaced pair inlined into library code and warns of a mismatch there.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
thread_local std::size_t t_heap_allocations = 0;
}  // namespace
void* operator new(std::size_t n) {
  ++t_heap_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

TEST_CASE("parse_into: the parser's temporaries stay in the locked arena too, not on the heap", "[toolkit]") {
  // Many short strings: boost::json keeps them inline in its value stack,
  // which json::parse grows on the default heap past a 4 KiB stack buffer.
  std::string doc = R"({"batch_input":[)";
  for (int i = 0; i < 2000; ++i) doc += std::string(i ? "," : "") + R"({"plaintext":"c2VjcmV0"})";
  doc += "]}";
  SecureJsonResource arena(4096, 64 * 1024 * 1024);
  boost::system::error_code ec;
  // (Counted between the calls only: Catch's assertions allocate too.)
  std::size_t before = t_heap_allocations;
  json::value plain = json::parse(doc, ec, arena.storage());
  const std::size_t by_parse = t_heap_allocations - before;
  REQUIRE_FALSE(ec);
  CHECK(by_parse > 4);  // the value stack growing on the heap: what parse_into avoids
  before = t_heap_allocations;
  json::value locked = parse_into(doc, arena.storage(), ec);
  const std::size_t by_parse_into = t_heap_allocations - before;
  REQUIRE_FALSE(ec);
  // At most the parser's own state stack (a parse of one complete buffer
  // suspends once at its end): states, no text of the document.
  CHECK(by_parse_into <= 1);
  CHECK(locked == plain);
  CHECK(locked.storage().get() == &arena);
  parse_into("{nope", arena.storage(), ec);
  CHECK(ec);
}
