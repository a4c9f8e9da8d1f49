#include "transit_fields.hpp"

#include <limits>
#include <string>

#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/numbers.hpp"

namespace rootseal::daemon {

namespace json = boost::json;
using kms::Errc;
using kms::fail;
using kms::Result;

namespace {

constexpr auto kI64Max = std::numeric_limits<std::int64_t>::max();
constexpr auto kI64Min = std::numeric_limits<std::int64_t>::min();

// "'<field>' must be <what>" (built with append: GCC 12 misreports operator+ chains under -Wrestrict).
kms::Error must_be(std::string_view field, std::string_view what) {
  std::string m;
  m.reserve(field.size() + what.size() + 12);
  m.append("'").append(field).append("' must be ").append(what);
  return {Errc::invalid_argument, std::move(m)};
}

// The field, or nullptr when absent or null.
const json::value* present(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v == nullptr || v->is_null() ? nullptr : v;
}

}  // namespace

Result<std::optional<std::string_view>> string_field(const json::object& o, std::string_view key) {
  const auto* v = present(o, key);
  if (v == nullptr) return std::optional<std::string_view>{};
  if (!v->is_string()) return std::unexpected(must_be(key, "a string"));
  return std::optional<std::string_view>(v->get_string());
}

Result<std::optional<std::int64_t>> int_field(const json::object& o, std::string_view key) {
  using Out = std::optional<std::int64_t>;
  const auto* v = present(o, key);
  if (v == nullptr) return Out{};
  if (v->is_int64()) return Out(v->get_int64());
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(kI64Max)) {
    return Out(static_cast<std::int64_t>(v->get_uint64()));
  }
  if (v->is_bool()) return Out(v->get_bool() ? 1 : 0);
  if (v->is_string()) {
    const std::string_view s = v->get_string();
    if (s.empty()) return Out(0);
    // Vault reads "010" as octal (Go's ParseInt with base 0): a leading zero
    // is refused rather than read as a different number than Vault would.
    const std::string_view digits = s.substr(s.starts_with('+') || s.starts_with('-') ? 1 : 0);
    if (digits.size() > 1 && digits.front() == '0') return std::unexpected(must_be(key, "a decimal integer"));
    if (auto n = kms::parse_int(s, kI64Min, kI64Max)) return Out(*n);
  }
  return std::unexpected(must_be(key, "an integer"));
}

Result<std::optional<bool>> bool_field(const json::object& o, std::string_view key) {
  using Out = std::optional<bool>;
  const auto* v = present(o, key);
  if (v == nullptr) return Out{};
  if (v->is_bool()) return Out(v->get_bool());
  if (v->is_string()) {
    const std::string_view s = v->get_string();
    if (s.empty()) return Out(false);
    if (auto b = kms::parse_go_bool(s)) return Out(*b);
  }
  // Vault reads a JSON number as its text: ParseBool("1") and ("0") only.
  if ((v->is_int64() || v->is_uint64()) && (v->to_number<std::int64_t>() == 0 || v->to_number<std::int64_t>() == 1)) {
    return Out(v->to_number<std::int64_t>() == 1);
  }
  return std::unexpected(must_be(key, "a boolean"));
}

Result<std::optional<std::int64_t>> duration_field(const json::object& o, std::string_view key) {
  using Out = std::optional<std::int64_t>;
  const auto* v = present(o, key);
  if (v == nullptr) return Out{};
  std::string text;  // a JSON integer is read as its text, as Vault does
  if (v->is_string()) {
    text = std::string_view(v->get_string());
  } else if (v->is_int64()) {
    text = std::to_string(v->get_int64());
  } else if (v->is_uint64()) {
    text = std::to_string(v->get_uint64());
  } else {
    return std::unexpected(must_be(key, "a duration (seconds, or a string such as \"1h\")"));
  }
  auto d = kms::parse_vault_duration(text);
  if (!d)
    return std::unexpected(must_be(key, "a duration (seconds, or a string such as \"1h\"): " + d.error().message));
  return Out(d->count());
}

Result<std::vector<std::uint8_t>> base64_field(const json::object& o, std::string_view key) {
  std::optional<std::string_view> s;
  ROOTSEAL_TRY_ASSIGN(s, string_field(o, key));
  if (!s || s->empty()) return std::vector<std::uint8_t>{};
  auto decoded = kms::base64_decode(*s);
  if (!decoded) return fail(Errc::bad_base64, "failed to base64-decode " + std::string(key));
  return std::move(*decoded);
}

}  // namespace rootseal::daemon
