// SecureBytes: ownership, wiping, equality, arena accounting.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "rootseal/kms/secure_bytes.hpp"

using rootseal::kms::constant_time_equal;
using rootseal::kms::secure_arena_stats;
using rootseal::kms::SecureBytes;

namespace {

bool all_zero(const std::uint8_t* p, std::size_t n) {
  return std::all_of(p, p + n, [](std::uint8_t b) { return b == 0; });
}

SecureBytes filled(std::size_t n, std::uint8_t value) {
  SecureBytes b(n);
  std::memset(b.data(), value, n);
  return b;
}

}  // namespace

TEST_CASE("SecureBytes starts zeroed and reports its size", "[secure_bytes]") {
  SecureBytes empty;
  CHECK(empty.empty());
  CHECK(empty.size() == 0);
  CHECK(empty.data() == nullptr);

  SecureBytes b(100);
  REQUIRE(b.size() == 100);
  CHECK_FALSE(b.empty());
  CHECK(all_zero(b.data(), b.size()));
  CHECK(b.span().size() == 100);

  SecureBytes zero_sized(0);
  CHECK(zero_sized.empty());
}

TEST_CASE("SecureBytes move empties the source", "[secure_bytes]") {
  SecureBytes a = filled(48, 0xA5);
  const std::uint8_t* const p = a.data();

  SecureBytes b(std::move(a));
  CHECK(a.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is the contract
  CHECK(a.data() == nullptr);
  CHECK(a.size() == 0);
  REQUIRE(b.size() == 48);
  CHECK(b.data() == p);  // the buffer moved; no copy of the secret was made
  CHECK(b.data()[47] == 0xA5);

  SecureBytes c;
  c = std::move(b);
  CHECK(b.empty());  // NOLINT(bugprone-use-after-move)
  REQUIRE(c.size() == 48);
  CHECK(c.data()[0] == 0xA5);
}

TEST_CASE("SecureBytes wipes a buffer it gives up", "[secure_bytes]") {
  // White-box: small buffers come from arena regions that stay mapped for the
  // life of the process, so the released block can still be read here.
  SECTION("clear()") {
    SecureBytes a = filled(64, 0x5A);
    std::uint8_t* const p = a.data();
    a.clear();
    CHECK(a.empty());
    CHECK(all_zero(p, 64));
  }
  SECTION("move assignment over a live buffer") {
    SecureBytes target = filled(64, 0x5A);
    std::uint8_t* const old = target.data();
    SecureBytes source = filled(64, 0x11);
    target = std::move(source);
    CHECK(target.data()[0] == 0x11);
    CHECK(all_zero(old, 64));
  }
  SECTION("destruction") {
    std::uint8_t* p = nullptr;
    {
      SecureBytes a = filled(200, 0x77);
      p = a.data();
    }
    CHECK(all_zero(p, 200));
  }
}

TEST_CASE("SecureBytes clone is a deep, equal copy", "[secure_bytes]") {
  SecureBytes a = SecureBytes::copy_of(std::string_view("correct horse battery staple"));
  SecureBytes b = a.clone();
  REQUIRE(b.size() == a.size());
  CHECK(b.data() != a.data());
  CHECK(a == b);
  b.data()[0] ^= 1;
  CHECK_FALSE(a == b);
  CHECK(a.data()[0] == 'c');

  SecureBytes empty;
  CHECK(empty.clone().empty());
}

TEST_CASE("SecureBytes equality compares contents and length", "[secure_bytes]") {
  const std::uint8_t raw[] = {1, 2, 3, 4};
  SecureBytes a = SecureBytes::copy_of(std::span<const std::uint8_t>(raw));
  SecureBytes same = SecureBytes::copy_of(std::span<const std::uint8_t>(raw));
  SecureBytes last_differs = SecureBytes::copy_of(std::span<const std::uint8_t>(raw));
  last_differs.data()[3] = 5;
  SecureBytes shorter = SecureBytes::copy_of(std::span<const std::uint8_t>(raw, 3));

  CHECK(a == same);
  CHECK_FALSE(a == last_differs);
  CHECK_FALSE(a == shorter);
  CHECK(SecureBytes() == SecureBytes());
  CHECK_FALSE(SecureBytes() == a);

  CHECK(constant_time_equal(std::string_view("token"), std::string_view("token")));
  CHECK_FALSE(constant_time_equal(std::string_view("token"), std::string_view("tokem")));
  CHECK_FALSE(constant_time_equal(std::string_view("token"), std::string_view("token2")));
  CHECK(constant_time_equal(std::string_view(), std::string_view()));
  CHECK(constant_time_equal(a.span(), same.span()));
  CHECK_FALSE(constant_time_equal(a.span(), shorter.span()));
}

TEST_CASE("SecureBytes copy_of keeps the bytes, including NULs", "[secure_bytes]") {
  const std::string_view text("a\0b", 3);
  SecureBytes b = SecureBytes::copy_of(text);
  REQUIRE(b.size() == 3);
  CHECK(b.data()[0] == 'a');
  CHECK(b.data()[1] == 0);
  CHECK(b.data()[2] == 'b');
  CHECK(SecureBytes::copy_of(std::string_view()).empty());
}

TEST_CASE("SecureBytes truncate shrinks and wipes the tail", "[secure_bytes]") {
  SecureBytes b = filled(32, 0xEE);
  b.truncate(4);
  REQUIRE(b.size() == 4);
  CHECK(b.data()[3] == 0xEE);
  CHECK(all_zero(b.data() + 4, 28));  // still owned (capacity) and wiped
  b.truncate(10);                     // growing is a no-op
  CHECK(b.size() == 4);
  b.truncate(0);
  CHECK(b.empty());
}

TEST_CASE("SecureBytes random gives distinct full-entropy buffers", "[secure_bytes]") {
  SecureBytes a = SecureBytes::random(32);
  SecureBytes b = SecureBytes::random(32);
  REQUIRE(a.size() == 32);
  REQUIRE(b.size() == 32);
  CHECK_FALSE(a == b);  // 2^-256 chance of a false failure
  CHECK_FALSE(all_zero(a.data(), a.size()));
  CHECK(SecureBytes::random(0).empty());
}

TEST_CASE("The locked arena counts live allocations", "[secure_bytes]") {
  const auto before = secure_arena_stats();
  {
    SecureBytes small(10);
    const auto one = secure_arena_stats();
    CHECK(one.live_allocations == before.live_allocations + 1);
    CHECK(one.in_use_bytes == before.in_use_bytes + 32);  // the smallest size class
    CHECK(one.locked_bytes >= one.in_use_bytes);
    {
      SecureBytes medium(1000);
      const auto two = secure_arena_stats();
      CHECK(two.live_allocations == before.live_allocations + 2);
      CHECK(two.in_use_bytes == one.in_use_bytes + 1024);
    }
    CHECK(secure_arena_stats().live_allocations == before.live_allocations + 1);
    SecureBytes moved(std::move(small));  // a move is not an allocation
    CHECK(secure_arena_stats().live_allocations == before.live_allocations + 1);
  }
  const auto after = secure_arena_stats();
  CHECK(after.live_allocations == before.live_allocations);
  CHECK(after.in_use_bytes == before.in_use_bytes);
}

TEST_CASE("Small blocks a thread keeps for itself go back to the arena when it exits", "[secure_bytes]") {
  // Each thread holds 32 blocks of 1 KiB at once, frees them (its cache keeps
  // them) and exits. If exiting threads did not hand their blocks back, 100
  // threads would strand 3.2 MiB of locked memory; handed back, the next
  // thread reuses them and the arena hardly grows.
  const auto before = secure_arena_stats();
  for (int t = 0; t < 100; ++t) {
    std::thread([] {
      std::vector<SecureBytes> held;
      for (int i = 0; i < 32; ++i) {
        held.emplace_back(1000);
        if (!all_zero(held.back().data(), held.back().size())) std::abort();  // recycled blocks were wiped
        std::memset(held.back().data(), 0xa5, held.back().size());
      }
    }).join();
  }
  const auto after = secure_arena_stats();
  CHECK(after.live_allocations == before.live_allocations);
  CHECK(after.in_use_bytes == before.in_use_bytes);
  CHECK(after.locked_bytes - before.locked_bytes <= 256 * 1024);
  // And this thread gets wiped memory from blocks other threads returned.
  std::vector<SecureBytes> again;
  for (int i = 0; i < 64; ++i) {
    again.emplace_back(1000);
    CHECK(all_zero(again.back().data(), again.back().size()));
  }
}

// Locked bytes not sitting in the large-block cache.
std::size_t locked_outside_cache(const rootseal::kms::SecureArenaStats& s) { return s.locked_bytes - s.cached_bytes; }

TEST_CASE("Allocations above 32 KiB get locked pages of their own", "[secure_bytes]") {
  const auto before = secure_arena_stats();
  {
    SecureBytes big = filled(40000, 0x3C);
    const auto during = secure_arena_stats();
    CHECK(during.live_allocations == before.live_allocations + 1);
    CHECK(during.in_use_bytes >= before.in_use_bytes + 40000);
    CHECK(locked_outside_cache(during) >= locked_outside_cache(before) + 40000);
    CHECK(big.data()[39999] == 0x3C);
    SecureBytes copy = big.clone();
    CHECK(copy == big);
  }
  const auto after = secure_arena_stats();
  CHECK(after.live_allocations == before.live_allocations);
  // Given back: either unmapped or kept (wiped, still locked) in the cache.
  CHECK(locked_outside_cache(after) == locked_outside_cache(before));
  CHECK(after.cached_bytes <= after.locked_bytes);
}

TEST_CASE("A freed large block is reused from the cache and reads as zeros", "[secure_bytes]") {
  constexpr std::size_t kSize = 128 * 1024;
  SecureBytes first = filled(kSize, 0xA5);
  const std::uint8_t* const where = first.data();
  first.clear();
  const auto freed = secure_arena_stats();
  CHECK(freed.cached_bytes >= kSize);
  CHECK(freed.cached_blocks >= 1);

  SecureBytes again(kSize);
  const auto reused = secure_arena_stats();
  CHECK(again.data() == where);                      // the same block, most recently freed first
  CHECK(all_zero(again.data(), again.size()));       // wiped on free, not re-zeroed on reuse
  CHECK(reused.locked_bytes == freed.locked_bytes);  // no new mapping
  CHECK(reused.cached_bytes == freed.cached_bytes - kSize);
  CHECK(reused.cached_blocks == freed.cached_blocks - 1);

  // A request of a different size that still fits (not more than twice over)
  // takes it too, and sees only zeros over the whole of what it asked for.
  std::memset(again.data(), 0x5A, kSize);
  again.clear();
  SecureBytes smaller(100000);  // no other test leaves a block of this size cached
  CHECK(smaller.data() == where);
  CHECK(all_zero(smaller.data(), smaller.size()));
  // One less than half its size does not pin the 128 KiB block.
  smaller.clear();
  SecureBytes much_smaller(40000);
  CHECK(much_smaller.data() != where);
}

TEST_CASE("A reused small block reads as zeros, also after truncate", "[secure_bytes]") {
  SecureBytes first = filled(48, 0xFF);
  const std::uint8_t* const where = first.data();
  first.truncate(5);  // the tail is wiped now, the head on release
  first.clear();
  SecureBytes again(48);
  CHECK(again.data() == where);  // the size class's free list is last in, first out
  CHECK(all_zero(again.data(), again.size()));
}

TEST_CASE("The large-block cache is bounded in blocks and bytes", "[secure_bytes]") {
  constexpr std::size_t kBlock = 36 * 1024;  // the smallest large block (33 KiB rounded to pages)
  constexpr std::size_t kCount = 80;         // more than the 64-block bound
  const auto before = secure_arena_stats();
  std::size_t locked_while_live = 0;
  {
    std::vector<SecureBytes> live;
    for (std::size_t i = 0; i < kCount; ++i) live.push_back(filled(33 * 1024, 0x77));
    locked_while_live = secure_arena_stats().locked_bytes;
  }
  const auto after = secure_arena_stats();
  CHECK(after.live_allocations == before.live_allocations);
  CHECK(after.cached_blocks <= 64);
  CHECK(after.cached_bytes <= 8 * 1024 * 1024);
  CHECK(after.cached_bytes <= after.cached_blocks * 1024 * 1024);  // sanity: counts agree in scale
  // Not all of them were kept: at least kCount - 64 went back to the OS.
  CHECK(after.locked_bytes + (kCount - 64) * kBlock <= locked_while_live);
  // The rest is still counted as locked (it is), and only what fit was kept.
  CHECK(locked_outside_cache(after) == locked_outside_cache(before));

  // 3 x 4 MiB cannot all fit a cache of at most 8 MiB.
  const auto before_big = secure_arena_stats();
  std::size_t locked_big = 0;
  {
    std::vector<SecureBytes> live;
    for (int i = 0; i < 3; ++i) live.emplace_back(4 * 1024 * 1024);
    locked_big = secure_arena_stats().locked_bytes;
  }
  const auto after_big = secure_arena_stats();
  CHECK(after_big.cached_bytes <= 8 * 1024 * 1024);
  CHECK(after_big.locked_bytes + 4 * 1024 * 1024 <= locked_big);
  CHECK(locked_outside_cache(after_big) == locked_outside_cache(before_big));
}

TEST_CASE("Allocations from 4 KiB to 32 KiB come from the locked arena and are reused", "[secure_bytes]") {
  {
    SecureBytes warm = filled(16 * 1024, 0x11);
  }  // the 16 KiB class now has a region
  const auto before = secure_arena_stats();
  {
    SecureBytes mid = filled(16 * 1024, 0x5A);
    CHECK(mid.data()[16 * 1024 - 1] == 0x5A);
    const auto during = secure_arena_stats();
    CHECK(during.live_allocations == before.live_allocations + 1);
    CHECK(during.locked_bytes == before.locked_bytes);  // served from the region, no new mapping
  }
  CHECK(secure_arena_stats().live_allocations == before.live_allocations);
}
