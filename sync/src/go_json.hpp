// rootseal::sync — JSON as ESO's Go code reads and writes it, so that a
// remote value becomes the same Secret bytes under rootseal as under ESO.
//
// ESO hands out a remote value in three ways, and each provider differs:
//   - Go's json.Marshal of a decoded value (Vault: the secret's data map, its
//     numbers kept as written because Vault's client decodes with UseNumber;
//     a nested object of dataFrom.extract): keys sorted, strings escaped for
//     HTML (<, >, & as \u003c...), no whitespace;
//   - esutils.GetByteValue of a decoded value (a property, an extracted key):
//     a string as its bytes, a number as written (json.Number) or as
//     strconv.FormatFloat(f, 'f', -1, 64) (float64), true/false, null empty;
//   - gjson's Result.String() (a property path, AWS): a string as its bytes,
//     an integer as written and any other number through float64, objects and
//     arrays as their text in the document.
// Document keeps each value's text as written (numbers and nested objects
// are never re-formatted by a JSON library), strings decoded as Go decodes
// them (invalid UTF-8 and unpaired surrogates become U+FFFD), all of it in
// locked memory. fuzz.go_json_diff checks every function here against Go's
// encoding/json and gjson.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "secure_buffer.hpp"

namespace rootseal::sync::gojson {

enum class Kind : std::uint8_t { null, boolean, number, string, array, object };

// Numbers of a decoded value: as written (json.Number, Go's UseNumber) or
// as the float64 Go's plain Unmarshal makes of them.
enum class Numbers : std::uint8_t { as_written, float64 };

class Document {
 public:
  using Id = std::uint32_t;
  struct Member {
    Id key;  // a string node
    Id value;
  };
  // Nesting deeper than this is refused (Go allows 10,000).
  static constexpr std::size_t kMaxDepth = 512;

  // RFC 8259 JSON, one value with whitespace around it, as Go's decoder
  // accepts it. invalid_argument "not valid JSON (at byte N)"; the text is
  // never quoted back.
  static kms::Result<Document> parse(std::span<const std::uint8_t> text);
  static kms::Result<Document> parse(std::string_view text);

  [[nodiscard]] static constexpr Id root() noexcept { return 0; }
  [[nodiscard]] Kind kind(Id id) const noexcept { return nodes_[id].kind; }
  // The value's text as written in the document.
  [[nodiscard]] std::string_view raw(Id id) const noexcept;
  // A string's decoded bytes.
  [[nodiscard]] std::string_view string(Id id) const noexcept;
  [[nodiscard]] std::span<const Id> elements(Id array) const noexcept;
  // An object's members in document order, duplicates included.
  [[nodiscard]] std::span<const Member> members(Id object) const noexcept;
  // The member Go's Unmarshal into a map keeps (the last of duplicates).
  [[nodiscard]] std::optional<Id> last_member(Id object, std::string_view key) const noexcept;
  // Whether every number of the document (dropped duplicates included) fits
  // a float64, as Go's Unmarshal into `any` requires.
  [[nodiscard]] bool numbers_fit_float64() const noexcept;
  // The member gjson finds (the first of duplicates).
  [[nodiscard]] std::optional<Id> first_member(Id object, std::string_view key) const noexcept;

  Document(Document&&) noexcept = default;
  Document& operator=(Document&&) noexcept = default;

 private:
  struct Node {
    Kind kind;
    std::uint32_t raw_offset, raw_size;
    std::uint32_t data_offset, data_size;  // string: in strings_; array/object: in children_ / members_
  };
  Document() = default;
  class Parser;

  kms::SecureBytes text_;
  SecureBuffer strings_;
  std::vector<Node> nodes_;
  std::vector<Id> children_;
  std::vector<Member> members_;
};

// Go's json.Marshal of the value decoded into `any`: objects as maps (keys
// sorted bytewise, the last of duplicates), strings escaped as Go does (with
// HTML escaping unless escape_html is false), numbers per `numbers`. invalid_argument when a number does
// not fit a float64 (Go's Unmarshal refuses it).
kms::Result<void> marshal(const Document& doc, Document::Id id, Numbers numbers, SecureBuffer& out,
                          bool escape_html = true);
// How append_json_string escapes: `escape_html` writes <, >, & as \u003c...
// (json.Marshal; an Encoder with SetEscapeHTML(false) leaves them); `go_utf8`
// replaces invalid UTF-8 by \ufffd and escapes U+2028/U+2029 as Go's
// encoding/json does, otherwise bytes >= 0x80 are copied as they are.
struct JsonStringStyle {
  bool escape_html = true;
  bool go_utf8 = true;
};
// Appends the JSON string literal of `s` (quotes included): the one JSON
// string escaper of the sync module.
void append_json_string(SecureBuffer& out, std::string_view s, JsonStringStyle style);
// A Go string literal as encoding/json writes it.
inline void append_go_string(SecureBuffer& out, std::string_view s, bool escape_html = true) {
  append_json_string(out, s, {.escape_html = escape_html, .go_utf8 = true});
}

// esutils.GetByteValue of the decoded value.
kms::Result<void> byte_value(const Document& doc, Document::Id id, Numbers numbers, SecureBuffer& out);

// gjson's Result.String() of the value.
void gjson_string(const Document& doc, Document::Id id, SecureBuffer& out);

// Whether a gjson path has only plain keys and array indexes ("a.b.0.c";
// `\.` is a dot inside a key): no wildcards (* ?), queries or array
// operations (#), modifiers (@), pipes (|) or literals (!), which rootseal
// does not implement, and no leading ".." (JSON Lines).
bool is_plain_gjson_path(std::string_view path);
// gjson.Get for a plain path from `from` (of duplicate keys, the first from
// which the rest of the path exists, as gjson); nullopt when it does not
// exist or the path is not plain.
std::optional<Document::Id> gjson_get(const Document& doc, Document::Id from, std::string_view path);

// The one-character escapes of a quoted text: JSON's (\b \f \n \r \t \\ \"
// \/), or a Go literal's as strconv.Unquote reads it: JSON's without \/,
// with \a and \v, and of the quotes only the literal's own (\" in a
// "string", \' in a 'c' character constant).
enum class Escapes : std::uint8_t { json, go_string, go_char };
// The byte the escape letter `e` stands for in that set, or nullopt.
std::optional<char> simple_escape(char e, Escapes set);

// The UTF-8 encoding of a code point, appended.
void append_utf8(SecureBuffer& out, char32_t cp);

// strconv.FormatFloat(v, fmt, -1, bits), appended: fmt 'f' or 'g', bits 64
// or 32 (v is then taken as a float32).
void append_format_float(SecureBuffer& out, double v, char fmt, int bits);

}  // namespace rootseal::sync::gojson
