#include "locked_json.hpp"

#include <array>
#include <new>

namespace rootseal::daemon {

namespace json = boost::json;

LockedJson::LockedJson(std::size_t capacity)
    : buffer_(capacity),
      resource_(buffer_.data(), buffer_.size(), json::get_null_resource()),
      storage_(&resource_) {}

std::size_t arena_size_for(std::size_t body_bytes) noexcept {
  // A parsed DOM costs a few times its text (values, object tables, strings);
  // responses of a batch are of the same order. Generous and still bounded by
  // the request body limit. Key metadata answers are built on the heap, so
  // their size does not depend on this.
  return 8 * body_bytes + 64 * 1024;
}

kms::Result<json::object> parse_object(std::string_view body, LockedJson& arena) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return json::object(arena.storage());
  json::parse_options options;
  options.max_depth = 32;
  json::error_code ec;
  json::value value;
  try {
    value = json::parse(body, ec, arena.storage(), options);
  } catch (const std::bad_alloc&) {
    return kms::fail(kms::Errc::invalid_argument, "failed to parse JSON input: request too complex");
  }
  if (ec) return kms::fail(kms::Errc::invalid_argument, "failed to parse JSON input: " + ec.message());
  if (!value.is_object()) return kms::fail(kms::Errc::invalid_argument, "failed to parse JSON input: not a JSON object");
  return std::move(value.as_object());
}

net::SecureBuffer serialize_locked(const json::value& value) {
  net::SecureBuffer out;
  json::serializer sr;
  sr.reset(&value);
  std::array<char, 4096> chunk;  // on the stack; wiped below
  while (!sr.done()) {
    const auto piece = sr.read(chunk.data(), chunk.size());
    out.append(piece.data(), piece.size());
  }
  kms::secure_zero(chunk.data(), chunk.size());
  return out;
}

}  // namespace rootseal::daemon
