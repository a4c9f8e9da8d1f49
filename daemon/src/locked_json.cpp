#include "locked_json.hpp"

#include <algorithm>
#include <new>

namespace rootseal::daemon {

namespace json = boost::json;

ArenaSize arena_size_for(std::size_t body_bytes) noexcept {
  // A parsed DOM costs a few times its text (values, object tables, strings)
  // and a batch's answer is of the same order, more for tiny items (an item
  // "{}" of 3 bytes answers with an error object). Start small, so the common
  // request (a seal call of a few dozen bytes) locks one small block, and
  // allow generous growth that is still bounded by the body limit. Key
  // metadata answers are built on the heap, so they do not count here.
  // The floor keeps a seal call's first block at 4 KiB or less: such blocks
  // are recycled per thread (no arena lock) and wiping one on release is
  // cheap; a 16 KiB floor took a 32 KiB block per request.
  constexpr std::size_t kFloor = 3 * 1024;
  constexpr std::size_t kSlack = 1024 * 1024;
  constexpr std::size_t kGrowth = 64;
  const std::size_t body = std::min<std::size_t>(body_bytes, std::size_t{1} << 40);
  return {2 * body + kFloor, kGrowth * body + kSlack};
}

kms::Result<json::object> parse_object(std::string_view body, LockedJson& arena) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return json::object(arena.storage());
  json::parse_options options;
  options.max_depth = 32;
  json::error_code ec;
  try {
    // Initialized, never assigned: assigning to a value constructed earlier
    // would copy the document into that value's (default, ordinary heap)
    // storage. Moves below keep the arena's storage.
    json::value value = kms::parse_into(body, arena.storage(), ec, options);
    if (ec) return kms::fail(kms::Errc::invalid_argument, "failed to parse JSON input: " + ec.message());
    if (!value.is_object()) {
      return kms::fail(kms::Errc::invalid_argument, "failed to parse JSON input: not a JSON object");
    }
    return std::move(value.as_object());
  } catch (const std::bad_alloc&) {
    return kms::fail(kms::Errc::invalid_argument, "failed to parse JSON input: request too complex");
  }
}

net::SecureBuffer serialize_locked(const json::value& value) {
  net::SecureBuffer out;
  kms::serialize_into(value, out);
  return out;
}

}  // namespace rootseal::daemon
