#include "template.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/encoding.hpp"
#include "secure_buffer.hpp"
#include "secure_json.hpp"

namespace rootseal::sync {

namespace json = boost::json;
using kms::Errc;
using kms::fail;
using kms::Result;

namespace {

constexpr std::size_t kMaxTemplate = 1u << 20;
constexpr int kMaxDepth = 32;

std::unexpected<kms::Error> err(std::string_view what) {
  return fail(Errc::invalid_argument, "template: " + std::string(what));
}

// ---- AST -------------------------------------------------------------------

struct Pipeline;

struct Operand {
  enum class Kind { root, field, string, func, group } kind = Kind::root;
  std::vector<std::string> fields;  // field: the chain after '.', group: the chain after ')'
  std::string text;                 // string literal, or function name
  std::shared_ptr<Pipeline> group;
};

struct Command {
  std::vector<Operand> args;
};

struct Pipeline {
  std::vector<Command> commands;
};

struct Piece {
  bool literal = true;
  std::string text;  // literal text (template text is not secret)
  Pipeline pipe;
};

// ---- lexer/parser for one action ---------------------------------------------

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '_'; }
bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

const std::vector<std::string_view>& known_functions() {
  static const std::vector<std::string_view> f = {"b64enc",   "b64dec", "upper", "lower", "trim", "toString",
                                                  "toJson",   "fromJson", "quote", "index", "get"};
  return f;
}

bool is_keyword(std::string_view s) {
  static constexpr std::string_view kw[] = {"if",    "else", "end",   "range", "with", "define",
                                            "template", "block", "break", "continue", "nil", "true", "false"};
  return std::find(std::begin(kw), std::end(kw), s) != std::end(kw);
}

class ActionParser {
 public:
  explicit ActionParser(std::string_view s) : s_(s) {}

  Result<Pipeline> parse_all() {
    ROOTSEAL_LET(p, pipeline(0));
    skip_ws();
    if (pos_ != s_.size()) return err("unexpected '" + std::string(1, s_[pos_]) + "' in action");
    if (p.commands.empty()) return err("empty action");
    return p;
  }

 private:
  void skip_ws() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_])) != 0) ++pos_;
  }

  Result<std::vector<std::string>> field_chain() {
    std::vector<std::string> out;
    while (pos_ < s_.size() && s_[pos_] == '.') {
      const std::size_t start = ++pos_;
      while (pos_ < s_.size() && ident_char(s_[pos_])) ++pos_;
      if (pos_ == start) {
        if (out.empty()) return out;  // a lone "." (root)
        return err("empty field name after '.'");
      }
      out.emplace_back(s_.substr(start, pos_ - start));
    }
    return out;
  }

  Result<Pipeline> pipeline(int depth) {
    if (depth > kMaxDepth) return err("nesting too deep");
    Pipeline p;
    for (;;) {
      ROOTSEAL_LET(c, command(depth));
      if (c.args.empty()) {
        if (p.commands.empty()) return p;
        return err("missing command after '|'");
      }
      p.commands.push_back(std::move(c));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == '|') {
        ++pos_;
        continue;
      }
      return p;
    }
  }

  // One command: operands up to '|', ')' or the end. A function (first)
  // takes the operands after it as arguments; a value takes none.
  Result<Command> command(int depth) {
    Command c;
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] == '|' || s_[pos_] == ')') return c;
      ROOTSEAL_LET(op, operand(depth, c.args.empty()));
      if (!c.args.empty() && c.args.front().kind != Operand::Kind::func) {
        return err("a value cannot take arguments (missing '|'?)");
      }
      c.args.push_back(std::move(op));
    }
  }

  // One operand at pos_ (not at the end): .field, "string", `raw`, (pipeline)
  // or a function name; anything else is refused.
  Result<Operand> operand(int depth, bool first) {
    const char ch = s_[pos_];
    if (ch == '.') return field_operand();
    if (ch == '"') return string_literal();
    if (ch == '`') return raw_string();
    if (ch == '(') return group(depth);
    if (ident_start(ch)) return function(first);
    if (ch == '$') return err("variables are not supported");
    if (std::isdigit(static_cast<unsigned char>(ch)) != 0 || ch == '-') return err("number literals are not supported");
    return err("unexpected '" + std::string(1, ch) + "' in action");
  }

  // "." (the root) or a chain of fields ".a.b".
  Result<Operand> field_operand() {
    Operand op;
    ROOTSEAL_LET(chain, field_chain());
    if (chain.empty()) {
      op.kind = Operand::Kind::root;
    } else {
      op.kind = Operand::Kind::field;
      op.fields = std::move(chain);
    }
    return op;
  }

  // A "..." literal with the escapes \n \t \r \\ \".
  Result<Operand> string_literal() {
    ++pos_;
    std::string lit;
    bool closed = false;
    while (pos_ < s_.size()) {
      char x = s_[pos_++];
      if (x == '"') {
        closed = true;
        break;
      }
      if (x == '\\') {
        if (pos_ >= s_.size()) break;
        const char e = s_[pos_++];
        switch (e) {
          case 'n': lit.push_back('\n'); break;
          case 't': lit.push_back('\t'); break;
          case 'r': lit.push_back('\r'); break;
          case '\\': lit.push_back('\\'); break;
          case '"': lit.push_back('"'); break;
          default: return err("unsupported escape in string literal");
        }
      } else {
        lit.push_back(x);
      }
    }
    if (!closed) return err("unterminated string literal");
    Operand op;
    op.kind = Operand::Kind::string;
    op.text = std::move(lit);
    return op;
  }

  // A `...` literal, taken as it is.
  Result<Operand> raw_string() {
    const auto end = s_.find('`', pos_ + 1);
    if (end == std::string_view::npos) return err("unterminated raw string");
    Operand op;
    op.kind = Operand::Kind::string;
    op.text = std::string(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return op;
  }

  // "(pipeline)", optionally followed by a field chain.
  Result<Operand> group(int depth) {
    ++pos_;
    ROOTSEAL_LET(inner, pipeline(depth + 1));
    skip_ws();
    if (pos_ >= s_.size() || s_[pos_] != ')') return err("missing ')'");
    ++pos_;
    if (inner.commands.empty()) return err("empty parentheses");
    Operand op;
    op.kind = Operand::Kind::group;
    op.group = std::make_shared<Pipeline>(std::move(inner));
    ROOTSEAL_LET(chain, field_chain());
    op.fields = std::move(chain);
    return op;
  }

  // A function name: one of known_functions(), first in its command.
  Result<Operand> function(bool first) {
    const std::size_t start = pos_;
    while (pos_ < s_.size() && (ident_char(s_[pos_]))) ++pos_;
    const std::string name(s_.substr(start, pos_ - start));
    if (is_keyword(name)) return err("'" + name + "' is not supported (no control flow; see docs/sync.md)");
    const auto& fns = known_functions();
    if (std::find(fns.begin(), fns.end(), name) == fns.end()) {
      return err("function '" + name + "' is not supported (see docs/sync.md)");
    }
    if (!first) return err("function '" + name + "' must come first in a command (use parentheses)");
    Operand op;
    op.kind = Operand::Kind::func;
    op.text = name;
    return op;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

Result<std::vector<Piece>> parse_template(std::string_view text) {
  if (text.size() > kMaxTemplate) return err("longer than 1 MiB");
  std::vector<Piece> out;
  std::size_t pos = 0;
  bool trim_next = false;
  while (pos <= text.size()) {
    const auto open = text.find("{{", pos);
    std::string lit(text.substr(pos, open == std::string_view::npos ? std::string_view::npos : open - pos));
    if (trim_next) {
      const auto first = lit.find_first_not_of(" \t\r\n");
      lit = first == std::string::npos ? std::string() : lit.substr(first);
    }
    if (open == std::string_view::npos) {
      if (!lit.empty()) out.push_back(Piece{true, std::move(lit), {}});
      break;
    }
    std::size_t inner_start = open + 2;
    if (text.size() > open + 3 && text[open + 2] == '-' &&
        std::isspace(static_cast<unsigned char>(text[open + 3])) != 0) {
      const auto last = lit.find_last_not_of(" \t\r\n");
      lit = last == std::string::npos ? std::string() : lit.substr(0, last + 1);
      inner_start = open + 3;
    }
    if (!lit.empty()) out.push_back(Piece{true, std::move(lit), {}});
    // Find the closing "}}" outside string literals.
    std::size_t i = inner_start;
    char quote = 0;
    std::size_t close = std::string_view::npos;
    for (; i + 1 < text.size() + 1 && i < text.size(); ++i) {
      const char c = text[i];
      if (quote != 0) {
        if (c == '\\' && quote == '"') {
          ++i;
        } else if (c == quote) {
          quote = 0;
        }
        continue;
      }
      if (c == '"' || c == '`') {
        quote = c;
        continue;
      }
      if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
        close = i;
        break;
      }
    }
    if (close == std::string_view::npos) return err("unclosed action (missing '}}')");
    std::size_t inner_end = close;
    trim_next = false;
    if (inner_end > inner_start && text[inner_end - 1] == '-' && inner_end - 1 > inner_start &&
        std::isspace(static_cast<unsigned char>(text[inner_end - 2])) != 0) {
      --inner_end;
      trim_next = true;
    }
    std::string_view inner = text.substr(inner_start, inner_end - inner_start);
    // A comment starts right after "{{" or "{{- " and ends with its first
    // "*/" right before "}}" or " -}}", as Go's lexer has it ("{{ /* x */ }}"
    // is an error there, so it is one here).
    std::string_view comment = inner.substr(inner_start == open + 3 ? 1 : 0);
    if (comment.starts_with("/*")) {
      if (trim_next) comment.remove_suffix(1);
      if (comment.size() < 4 || comment.find("*/", 2) != comment.size() - 2) {
        return err("a comment must end with \"*/\" right before the closing \"}}\"");
      }
    } else {
      ROOTSEAL_LET(pipe, ActionParser(inner).parse_all());
      Piece piece;
      piece.literal = false;
      piece.pipe = std::move(pipe);
      out.push_back(std::move(piece));
    }
    pos = close + 2;
  }
  return out;
}

// ---- evaluation ----------------------------------------------------------------

struct Value {
  enum class Kind { root, bytes, json } kind = Kind::bytes;
  kms::SecureBytes bytes;
  std::shared_ptr<SecureJson> doc;      // keeps the tree alive
  const json::value* jv = nullptr;      // into doc
  // Text of the template itself (a string literal): the only kind of key an
  // error message may quote. A computed key can be (part of) a secret value.
  bool literal = false;
};

Value bytes_value(kms::SecureBytes b) {
  Value v;
  v.kind = Value::Kind::bytes;
  v.bytes = std::move(b);
  return v;
}

Result<kms::SecureBytes> to_bytes(const Value& v, std::string_view fn) {
  switch (v.kind) {
    case Value::Kind::bytes: return v.bytes.clone();
    case Value::Kind::json:
      // Go would print its map[...] / [...] formatting here: not JSON, not useful.
      if (v.jv->is_object() || v.jv->is_array()) return err(std::string(fn) + ": a JSON object or array is not text (use toJson)");
      return json_value_bytes(*v.jv);
    case Value::Kind::root: break;
  }
  return err(std::string(fn) + ": cannot use the whole data map as a string");
}

// toJson of a JSON value as Go's encoding/json writes what Sprig's fromJson
// gave: object members sorted by key.
void serialize_sorted(const json::value& v, SecureBuffer& out) {
  if (v.is_object()) {
    std::vector<const json::key_value_pair*> members;
    for (const auto& kv : v.as_object()) members.push_back(&kv);
    std::sort(members.begin(), members.end(), [](const auto* a, const auto* b) { return a->key() < b->key(); });
    out.append("{");
    for (std::size_t i = 0; i < members.size(); ++i) {
      if (i != 0) out.append(",");
      const auto k = members[i]->key();
      json_quote(std::span(reinterpret_cast<const std::uint8_t*>(k.data()), k.size()), out);
      out.append(":");
      serialize_sorted(members[i]->value(), out);
    }
    out.append("}");
  } else if (v.is_array()) {
    out.append("[");
    bool first = true;
    for (const auto& e : v.as_array()) {
      if (!first) out.append(",");
      first = false;
      serialize_sorted(e, out);
    }
    out.append("]");
  } else {
    serialize_json(v, out);
  }
}

class Evaluator {
 public:
  explicit Evaluator(const SecretMap& values) : values_(values) {}

  Result<Value> eval(const Pipeline& p, int depth) {
    if (depth > kMaxDepth) return err("nesting too deep");
    std::optional<Value> prev;
    for (const auto& cmd : p.commands) {
      ROOTSEAL_LET(v, eval_command(cmd, prev ? &*prev : nullptr, depth));
      prev = std::move(v);
    }
    if (!prev) return err("empty pipeline");
    return std::move(*prev);
  }

 private:
  Result<Value> field(Value base, const std::vector<std::string>& chain) {
    for (const auto& f : chain) {
      ROOTSEAL_LET(next, index_one(base, f, /*literal=*/true, "field"));
      base = std::move(next);
    }
    return base;
  }

  // `literal`: the key is template text, and may be quoted in an error;
  // otherwise it was computed from data and is never quoted.
  Result<Value> index_one(const Value& base, std::string_view key, bool literal, std::string_view how) {
    // Built only for an error: lookups that succeed allocate nothing here.
    auto quoted = [&] { return literal ? "\"" + std::string(key) + "\"" : std::string("(a key computed from data)"); };
    if (base.kind == Value::Kind::root) {
      auto it = values_.find(key);
      if (it == values_.end()) return err("map has no entry for key " + quoted());
      return bytes_value(it->second.clone());
    }
    if (base.kind == Value::Kind::json && base.jv->is_object()) {
      const auto* v = base.jv->as_object().if_contains(key);
      if (v == nullptr) return err("map has no entry for key " + quoted());
      Value out;
      out.kind = Value::Kind::json;
      out.doc = base.doc;
      out.jv = v;
      return out;
    }
    if (base.kind == Value::Kind::json && base.jv->is_array()) {
      std::size_t i = 0;
      auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), i);
      if (ec != std::errc{} || end != key.data() + key.size() || i >= base.jv->as_array().size()) {
        return err("index out of range");
      }
      Value out;
      out.kind = Value::Kind::json;
      out.doc = base.doc;
      out.jv = &base.jv->as_array()[i];
      return out;
    }
    return err("can't evaluate " + std::string(how) + " " + quoted() + " on a string value (use fromJson first)");
  }

  Result<Value> operand(const Operand& op, int depth) {
    switch (op.kind) {
      case Operand::Kind::root: {
        Value v;
        v.kind = Value::Kind::root;
        return v;
      }
      case Operand::Kind::field: {
        Value root;
        root.kind = Value::Kind::root;
        return field(std::move(root), op.fields);
      }
      case Operand::Kind::string: {
        Value v = bytes_value(kms::SecureBytes::copy_of(op.text));
        v.literal = true;
        return v;
      }
      case Operand::Kind::group: {
        ROOTSEAL_LET(v, eval(*op.group, depth + 1));
        return field(std::move(v), op.fields);
      }
      case Operand::Kind::func: break;
    }
    return err("a function cannot be used as a value");
  }

  Result<Value> eval_command(const Command& cmd, Value* piped, int depth) {
    const Operand& head = cmd.args.front();
    if (head.kind != Operand::Kind::func) {
      if (piped != nullptr) return err("a value cannot follow '|' (expected a function)");
      return operand(head, depth);
    }
    std::vector<Value> args;
    for (std::size_t i = 1; i < cmd.args.size(); ++i) {
      ROOTSEAL_LET(v, operand(cmd.args[i], depth));
      args.push_back(std::move(v));
    }
    if (piped != nullptr) args.push_back(std::move(*piped));
    return call(head.text, args);
  }

  static Result<void> arity(std::string_view fn, const std::vector<Value>& args, std::size_t n) {
    if (args.size() != n) {
      return err(std::string(fn) + ": wants " + std::to_string(n) + " argument(s), got " + std::to_string(args.size()));
    }
    return {};
  }

  Result<Value> call(const std::string& fn, std::vector<Value>& args) {
    if (fn == "index" || fn == "get") {
      if (args.size() < 2 || (fn == "get" && args.size() != 2)) return err(fn + ": wants a collection and a key");
      // Sprig's get takes a JSON object (fromJson), never the data map.
      if (fn == "get" && args.front().kind == Value::Kind::root) {
        return err("get: wants a JSON object (the data map is not one: use index . \"key\")");
      }
      Value cur = std::move(args.front());
      for (std::size_t i = 1; i < args.size(); ++i) {
        ROOTSEAL_LET(k, to_bytes(args[i], fn));
        ROOTSEAL_LET(next, index_one(cur, as_view(k), args[i].literal, fn));
        cur = std::move(next);
      }
      return cur;
    }
    ROOTSEAL_TRY(arity(fn, args, 1));
    Value& a = args.front();
    if (fn == "fromJson") {
      ROOTSEAL_LET(b, to_bytes(a, fn));
      auto doc = SecureJson::parse(b.span());
      if (!doc) return err("fromJson: the value is not valid JSON");
      Value out;
      out.kind = Value::Kind::json;
      out.doc = std::move(*doc);
      out.jv = &out.doc->root();
      return out;
    }
    if (fn == "toJson") {
      SecureBuffer buf(64);
      if (a.kind == Value::Kind::json) {
        serialize_sorted(*a.jv, buf);
      } else if (a.kind == Value::Kind::bytes) {
        json_quote(a.bytes.span(), buf);
      } else {
        json_object_of(values_, buf);  // the whole data map: an object of strings
      }
      return bytes_value(buf.take());
    }
    ROOTSEAL_LET(b, to_bytes(a, fn));
    if (fn == "toString") return bytes_value(std::move(b));
    if (fn == "b64enc") return bytes_value(kms::base64_encode_secure(b.span()));
    if (fn == "b64dec") {
      auto d = kms::base64_decode_secure(as_view(b));
      if (!d) return err("b64dec: the value is not valid base64");
      return bytes_value(std::move(*d));
    }
    if (fn == "upper" || fn == "lower") {
      for (auto& c : b.span()) {
        c = static_cast<std::uint8_t>(fn == "upper" ? std::toupper(c) : std::tolower(c));
      }
      return bytes_value(std::move(b));
    }
    if (fn == "trim") {
      auto sv = as_view(b);
      const auto first = sv.find_first_not_of(" \t\r\n\v\f");
      if (first == std::string_view::npos) return bytes_value(kms::SecureBytes());
      const auto last = sv.find_last_not_of(" \t\r\n\v\f");
      return bytes_value(kms::SecureBytes::copy_of(sv.substr(first, last - first + 1)));
    }
    if (fn == "quote") {
      SecureBuffer buf(b.size() + 2);
      json_quote(b.span(), buf);
      return bytes_value(buf.take());
    }
    return err("function '" + fn + "' is not supported");
  }

  const SecretMap& values_;
};

}  // namespace

Result<void> check_template(std::string_view text) {
  ROOTSEAL_TRY(parse_template(text));
  return {};
}

Result<kms::SecureBytes> render_template(std::string_view text, const SecretMap& values) {
  ROOTSEAL_LET(pieces, parse_template(text));
  SecureBuffer out(text.size() + 64);
  Evaluator ev(values);
  for (const auto& p : pieces) {
    if (p.literal) {
      out.append(p.text);
      continue;
    }
    ROOTSEAL_LET(v, ev.eval(p.pipe, 0));
    ROOTSEAL_LET(b, to_bytes(v, "output"));
    out.append(b.span());
  }
  return out.take();
}

}  // namespace rootseal::sync
