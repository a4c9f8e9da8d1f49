// The parser: Go's text/template/parse grammar (lexer rules for actions,
// trim markers and comments; the checks Go makes at parse time: defined
// functions and variables, break/continue inside range, stages of a
// pipeline).
#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <utility>

#include "../go_json.hpp"
#include "ast.hpp"

namespace rootseal::sync::tmpl {

using kms::Result;

namespace {

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '_'; }
bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }
bool space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// ---- splitting the text into literal text and actions ----------------------

struct Item {
  bool action = false;
  std::string text;  // literal text or the inside of the action
  int line = 1;
};

Result<std::vector<Item>> split(std::string_view text) {
  std::vector<Item> out;
  std::size_t pos = 0;
  int line = 1;
  bool trim_next = false;
  auto lines_in = [](std::string_view s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); };
  while (pos <= text.size()) {
    const auto open = text.find("{{", pos);
    std::string_view lit = text.substr(pos, open == std::string_view::npos ? std::string_view::npos : open - pos);
    const int lit_line = line;
    line += lines_in(lit);
    if (trim_next) {
      while (!lit.empty() && space(lit.front())) lit.remove_prefix(1);
    }
    if (open == std::string_view::npos) {
      if (!lit.empty()) out.push_back({false, std::string(lit), lit_line});
      break;
    }
    std::size_t inner_start = open + 2;
    if (text.size() > open + 3 && text[open + 2] == '-' && space(text[open + 3])) {
      while (!lit.empty() && space(lit.back())) lit.remove_suffix(1);
      inner_start = open + 3;
    }
    if (!lit.empty()) out.push_back({false, std::string(lit), lit_line});
    // The closing "}}" outside string, raw string and character literals.
    char quote = 0;
    std::size_t close = std::string_view::npos;
    for (std::size_t i = inner_start; i < text.size(); ++i) {
      const char c = text[i];
      if (quote != 0) {
        if (c == '\\' && quote != '`') {
          ++i;
        } else if (c == quote) {
          quote = 0;
        } else if (c == '\n' && quote != '`') {
          return fail_at(line, "unterminated quoted string");
        }
        continue;
      }
      if (c == '"' || c == '`' || c == '\'') {
        quote = c;
        continue;
      }
      if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
        close = i;
        break;
      }
    }
    if (close == std::string_view::npos) return fail_at(line, "unclosed action");
    std::size_t inner_end = close;
    trim_next = false;
    if (inner_end > inner_start + 1 && text[inner_end - 1] == '-' && space(text[inner_end - 2])) {
      --inner_end;
      trim_next = true;
    }
    const std::string_view inner = text.substr(inner_start, inner_end - inner_start);
    // A comment starts right after "{{" or "{{- " and ends with its first
    // "*/" right before "}}" or " -}}", as Go's lexer has it.
    std::string_view comment = inner;
    if (inner_start == open + 3) comment.remove_prefix(1);
    if (comment.starts_with("/*")) {
      if (trim_next) comment.remove_suffix(1);
      if (comment.size() < 4 || comment.find("*/", 2) != comment.size() - 2) {
        return fail_at(line, "comment ends before closing delimiter");
      }
    } else {
      out.push_back({true, std::string(inner), line});
    }
    line += lines_in(text.substr(open, close + 2 - open));
    pos = close + 2;
  }
  return out;
}

// ---- tokens of one action ---------------------------------------------------

struct Token {
  enum class Kind : std::uint8_t { field, var, ident, constant, lparen, rparen, pipe, declare, assign, comma, dot };
  Kind kind;
  std::string name;                // ident, var
  std::vector<std::string> chain;  // field (and a variable's fields)
  Value constant;
  std::string text;
  bool spaced = true;  // whitespace before it
};

// strconv.Unquote of a literal's body: quote '"' for a string, '\'' for a
// character constant (each accepts only its own quote escaped).
Result<std::string> unquote(std::string_view s, char quote, int line) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out.push_back(s[i]);
      continue;
    }
    if (++i >= s.size()) return fail_at(line, "bad escape in quoted string");
    const char e = s[i];
    auto hex = [&](std::size_t n) -> std::optional<std::uint32_t> {
      if (i + n >= s.size()) return std::nullopt;
      std::uint32_t v = 0;
      auto [end, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 1 + n, v, 16);
      if (ec != std::errc{} || end != s.data() + i + 1 + n) return std::nullopt;
      i += n;
      return v;
    };
    if (const auto c =
            gojson::simple_escape(e, quote == '\'' ? gojson::Escapes::go_char : gojson::Escapes::go_string)) {
      out.push_back(*c);
      continue;
    }
    switch (e) {
      case 'x': {
        auto v = hex(2);
        if (!v) return fail_at(line, "bad escape in quoted string");
        out.push_back(static_cast<char>(*v));
        break;
      }
      case 'u':
      case 'U': {
        const std::size_t n = e == 'u' ? 4 : 8;
        auto v = hex(n);
        if (!v || *v > 0x10ffff || (*v >= 0xd800 && *v <= 0xdfff)) return fail_at(line, "bad escape in quoted string");
        SecureBuffer utf8(4);
        gojson::append_utf8(utf8, static_cast<char32_t>(*v));
        out.append(as_view(utf8.take()));
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          if (i + 2 >= s.size()) return fail_at(line, "bad escape in quoted string");
          unsigned v = 0;
          for (int k = 0; k < 3; ++k) {
            const char d = s[i + static_cast<std::size_t>(k)];
            if (d < '0' || d > '7') return fail_at(line, "bad escape in quoted string");
            v = v * 8 + static_cast<unsigned>(d - '0');
          }
          if (v > 255) return fail_at(line, "bad escape in quoted string");
          out.push_back(static_cast<char>(v));
          i += 2;
          break;
        }
        return fail_at(line, "bad escape in quoted string");
    }
  }
  return out;
}

// A number literal as Go's parser takes it: decimal or 0x integers (int),
// decimal floats (float64; integral ones also convert to int).
Result<Value> number(std::string_view t, int line) {
  const auto bad = [&] { return fail_at(line, "bad number syntax: " + std::string(t)); };
  std::string_view body = t;
  bool neg = false;
  if (!body.empty() && (body.front() == '+' || body.front() == '-')) {
    neg = body.front() == '-';
    body.remove_prefix(1);
  }
  if (body.empty()) return bad();
  if (body.find('_') != std::string_view::npos || body.find_first_of("pPiobOB") != std::string_view::npos) {
    return fail_at(line, "number literal " + std::string(t) + " is not supported (decimal or 0x only)");
  }
  const bool hex = body.size() > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X');
  if (hex || body.find_first_of(".eE") == std::string_view::npos) {
    std::uint64_t u = 0;
    const auto digits = hex ? body.substr(2) : body;
    if (!hex && digits.size() > 1 && digits[0] == '0') {
      return fail_at(line, "number literal " + std::string(t) + " is not supported (decimal or 0x only)");
    }
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), u, hex ? 16 : 10);
    if (ec != std::errc{} || end != digits.data() + digits.size()) return bad();
    if (u > static_cast<std::uint64_t>(INT64_MAX) + (neg ? 1 : 0)) {
      return fail_at(line, "number literal " + std::string(t) + " overflows int");
    }
    Value v = int_value(neg ? static_cast<std::int64_t>(0 - u) : static_cast<std::int64_t>(u));
    v.literal = true;
    return v;
  }
  double f = 0;
  auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), f);
  if (ec != std::errc{} || end != body.data() + body.size() || body.front() == '.' || body.back() == '.') return bad();
  Value v = float_value(neg ? -f : f);
  v.literal = true;
  return v;
}

// Where the quoted text starting at s[pos] (its quote) ends: the closing
// quote's index (backslash escapes skipped, but in a raw string), or npos.
std::size_t closing_quote(std::string_view s, std::size_t pos) {
  const char q = s[pos];
  if (q == '`') return s.find('`', pos + 1);
  for (std::size_t i = pos + 1; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == q) {
      return i;
    }
  }
  return std::string_view::npos;
}

// A string ("..." or `...`) or character ('x') literal at s[pos] as a
// constant token; pos moves past it.
Result<void> quoted_constant(std::string_view s, std::size_t& pos, int line, Token& t) {
  const char c = s[pos];
  const std::size_t close = closing_quote(s, pos);
  if (close == std::string_view::npos) {
    return fail_at(line, c == '`'   ? "unterminated raw quoted string"
                         : c == '"' ? "unterminated quoted string"
                                    : "unterminated character constant");
  }
  const auto body = s.substr(pos + 1, close - pos - 1);
  t.kind = Token::Kind::constant;
  if (c == '\'') {
    ROOTSEAL_LET(value, unquote(body, c, line));
    if (value.size() != 1) return fail_at(line, "character constants other than one ASCII character are not supported");
    t.constant = int_value(static_cast<unsigned char>(value[0]));
  } else if (c == '"') {
    ROOTSEAL_LET(value, unquote(body, c, line));
    t.constant = string_value(value);
  } else {
    t.constant = string_value(std::string(body));
  }
  t.constant.literal = true;
  pos = close + 1;
  return {};
}

// The punctuation at s[pos] ( ( ) | , := = ): its token kind and length.
std::optional<std::pair<Token::Kind, std::size_t>> punctuation(std::string_view s, std::size_t pos) {
  switch (s[pos]) {
    case '(':
      return std::pair{Token::Kind::lparen, std::size_t{1}};
    case ')':
      return std::pair{Token::Kind::rparen, std::size_t{1}};
    case '|':
      return std::pair{Token::Kind::pipe, std::size_t{1}};
    case ',':
      return std::pair{Token::Kind::comma, std::size_t{1}};
    case '=':
      return std::pair{Token::Kind::assign, std::size_t{1}};
    case ':':
      if (pos + 1 < s.size() && s[pos + 1] == '=') return std::pair{Token::Kind::declare, std::size_t{2}};
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

Result<std::vector<Token>> tokenize(std::string_view s, int line) {
  std::vector<Token> out;
  std::size_t pos = 0;
  auto chain = [&](std::vector<std::string>& into) -> Result<void> {
    while (pos < s.size() && s[pos] == '.' && pos + 1 < s.size() && ident_start(s[pos + 1])) {
      const std::size_t start = ++pos;
      while (pos < s.size() && ident_char(s[pos])) ++pos;
      into.emplace_back(s.substr(start, pos - start));
    }
    return {};
  };
  while (pos < s.size()) {
    bool spaced = pos == 0;
    while (pos < s.size() && space(s[pos])) {
      ++pos;
      spaced = true;
    }
    if (pos >= s.size()) break;
    const std::size_t start = pos;
    const char c = s[pos];
    Token t{Token::Kind::dot, {}, {}, {}, {}, spaced};
    if (c == '.' && pos + 1 < s.size() && ident_start(s[pos + 1])) {
      t.kind = Token::Kind::field;
      ROOTSEAL_TRY(chain(t.chain));
    } else if (c == '.' && !(pos + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[pos + 1])) != 0)) {
      ++pos;
      if (pos < s.size() && s[pos] == '.') return fail_at(line, "unexpected . after term");
      t.kind = Token::Kind::dot;
    } else if (c == '$') {
      ++pos;
      while (pos < s.size() && ident_char(s[pos])) ++pos;
      t.kind = Token::Kind::var;
      t.name = std::string(s.substr(start, pos - start));
      ROOTSEAL_TRY(chain(t.chain));
    } else if (ident_start(c)) {
      while (pos < s.size() && ident_char(s[pos])) ++pos;
      t.name = std::string(s.substr(start, pos - start));
      if (t.name == "true" || t.name == "false") {
        t.kind = Token::Kind::constant;
        t.constant = bool_value(t.name == "true");
      } else {
        t.kind = Token::Kind::ident;
      }
    } else if (c == '"' || c == '`' || c == '\'') {
      ROOTSEAL_TRY(quoted_constant(s, pos, line, t));
    } else if (std::isdigit(static_cast<unsigned char>(c)) != 0 || c == '.' ||
               ((c == '-' || c == '+') && pos + 1 < s.size() &&
                (std::isdigit(static_cast<unsigned char>(s[pos + 1])) != 0 || s[pos + 1] == '.'))) {
      ++pos;
      while (pos < s.size() &&
             (std::isalnum(static_cast<unsigned char>(s[pos])) != 0 || s[pos] == '.' || s[pos] == '_' ||
              ((s[pos] == '-' || s[pos] == '+') && (s[pos - 1] == 'e' || s[pos - 1] == 'E')))) {
        ++pos;
      }
      ROOTSEAL_LET(v, number(s.substr(start, pos - start), line));
      t.kind = Token::Kind::constant;
      t.constant = std::move(v);
    } else if (const auto p = punctuation(s, pos)) {
      t.kind = p->first;
      pos += p->second;
    } else {
      return fail_at(line, "unexpected \"" + std::string(1, c) + "\" in command");
    }
    t.text = std::string(s.substr(start, pos - start));
    out.push_back(std::move(t));
  }
  return out;
}

// ---- the parser -------------------------------------------------------------

class Parser {
 public:
  explicit Parser(std::vector<Item> items) : items_(std::move(items)) {}

  Result<Tree> run() {
    Tree tree;
    vars_ = {"$"};
    for (;;) {
      ROOTSEAL_LET(body, list(0, /*top=*/true, &tree));
      if (body.end != End::eof)
        return fail_at(body.line, std::string("unexpected {{") + (body.end == End::end ? "end" : "else") + "}}");
      tree.root = std::move(body.nodes);
      break;
    }
    for (auto& [name, def] : defs_) tree.defs[name] = std::move(def.first);
    return tree;
  }

 private:
  enum class End : std::uint8_t { eof, end, else_ };
  struct Body {
    std::vector<Node> nodes;
    End end = End::eof;
    std::vector<Token> else_rest;  // tokens after "else"
    int line = 0;
  };

  // Nodes up to {{end}}, {{else ...}} or the end of the text.
  Result<Body> list(int depth, bool top, Tree* tree) {
    if (depth > kMaxDepth) return fail_at(line_, "control structures nested too deep");
    Body body;
    while (pos_ < items_.size()) {
      const Item& it = items_[pos_++];
      line_ = it.line;
      if (!it.action) {
        Node n;
        n.kind = Node::Kind::text;
        n.text = it.text;
        n.line = it.line;
        body.nodes.push_back(std::move(n));
        continue;
      }
      ROOTSEAL_LET(toks, tokenize(it.text, it.line));
      if (toks.empty()) return fail_at(it.line, "missing value for command");
      const std::string kw = toks.front().kind == Token::Kind::ident ? toks.front().name : "";
      toks.erase(toks.begin(), toks.begin() + (kw.empty() ? 0 : 1));
      if (kw == "end") {
        if (!toks.empty()) return fail_at(it.line, "unexpected " + toks.front().text + " in end");
        body.end = End::end;
        body.line = it.line;
        return body;
      }
      if (kw == "else") {
        body.end = End::else_;
        body.else_rest = std::move(toks);
        body.line = it.line;
        return body;
      }
      if (kw == "if" || kw == "with" || kw == "range") {
        ROOTSEAL_LET(n, control(kw, std::move(toks), it.line, depth));
        body.nodes.push_back(std::move(n));
      } else if (kw == "define") {
        if (!top || depth != 0) return fail_at(it.line, "unexpected <define> in command");
        ROOTSEAL_LET(name, template_name(toks, it.line, "define"));
        if (toks.size() != 1) return fail_at(it.line, "unexpected " + toks[1].text + " in define clause");
        ROOTSEAL_TRY(definition(name, it.line, depth, tree));
      } else if (kw == "block" || kw == "template") {
        ROOTSEAL_LET(name, template_name(toks, it.line, kw));
        toks.erase(toks.begin());
        Node n;
        n.kind = Node::Kind::call;
        n.text = name;
        n.line = it.line;
        if (!toks.empty()) {
          ROOTSEAL_TRY_ASSIGN(n.pipe, pipeline(toks, it.line, kw));
        }
        if (kw == "block") ROOTSEAL_TRY(definition(name, it.line, depth, tree));
        body.nodes.push_back(std::move(n));
      } else if (kw == "break" || kw == "continue") {
        if (!toks.empty()) return fail_at(it.line, "unexpected " + toks.front().text + " in {{" + kw + "}}");
        if (range_depth_ == 0) return fail_at(it.line, "{{" + kw + "}} outside {{range}}");
        Node n;
        n.kind = kw == "break" ? Node::Kind::break_ : Node::Kind::continue_;
        n.line = it.line;
        body.nodes.push_back(std::move(n));
      } else {
        // An ordinary action: put the keyword-less first token back.
        ROOTSEAL_LET(all, tokenize(it.text, it.line));
        Node n;
        n.kind = Node::Kind::action;
        n.line = it.line;
        ROOTSEAL_TRY_ASSIGN(n.pipe, pipeline(all, it.line, "command"));
        body.nodes.push_back(std::move(n));
      }
    }
    body.line = line_;
    return body;
  }

  Result<std::string> template_name(const std::vector<Token>& toks, int line, std::string_view ctx) {
    if (toks.empty() || toks.front().kind != Token::Kind::constant ||
        toks.front().constant.kind != Value::Kind::string) {
      return fail_at(line, "unexpected token in " + std::string(ctx) + " clause (a quoted template name)");
    }
    return std::string(toks.front().constant.str());
  }

  // The body of define or block up to its {{end}}: two non-empty
  // definitions of one name are an error, an empty one never replaces
  // another (Go's parse.(*Tree).add).
  Result<void> definition(const std::string& name, int line, int depth, Tree* tree) {
    auto saved_vars = std::move(vars_);
    const int saved_range = range_depth_;
    vars_ = {"$"};
    range_depth_ = 0;
    ROOTSEAL_LET(body, list(depth + 1, false, tree));
    vars_ = std::move(saved_vars);
    range_depth_ = saved_range;
    if (body.end != End::end) return fail_at(line, "unexpected EOF in " + name + " (missing {{end}})");
    const bool empty = std::all_of(body.nodes.begin(), body.nodes.end(), [](const Node& n) {
      return n.kind == Node::Kind::text && std::all_of(n.text.begin(), n.text.end(), space);
    });
    auto it = defs_.find(name);
    if (it != defs_.end() && !empty && !it->second.second) {
      return fail_at(line, "template: multiple definition of template \"" + name + "\"");
    }
    if (it == defs_.end() || !empty) defs_[name] = {std::move(body.nodes), empty};
    return {};
  }

  // if / with / range: pipeline, body, else branch, {{end}}.
  Result<Node> control(const std::string& kw, std::vector<Token> toks, int line, int depth) {
    Node n;
    n.kind = kw == "if" ? Node::Kind::if_ : kw == "with" ? Node::Kind::with : Node::Kind::range;
    n.line = line;
    const std::size_t mark = vars_.size();
    ROOTSEAL_TRY_ASSIGN(n.pipe, pipeline(toks, line, kw));
    if (n.kind == Node::Kind::range) ++range_depth_;
    ROOTSEAL_LET(body, list(depth + 1, false, nullptr));
    if (n.kind == Node::Kind::range) --range_depth_;
    n.list = std::move(body.nodes);
    if (body.end == End::eof) return fail_at(line, "unexpected EOF (missing {{end}} of " + kw + ")");
    if (body.end == End::else_) {
      if (!body.else_rest.empty() && body.else_rest.front().kind == Token::Kind::ident &&
          body.else_rest.front().name == "if" && n.kind != Node::Kind::range) {
        // {{else if ...}}: an if inside the else branch, sharing the {{end}}.
        if (n.kind == Node::Kind::with) return fail_at(body.line, "{{else if}} after {{with}} is not supported");
        auto rest = std::move(body.else_rest);
        rest.erase(rest.begin());
        ROOTSEAL_LET(inner, control("if", std::move(rest), body.line, depth + 1));
        n.else_list.push_back(std::move(inner));
      } else {
        if (!body.else_rest.empty()) {
          return fail_at(body.line, "{{else " + body.else_rest.front().text + "}} is not supported here");
        }
        ROOTSEAL_LET(other, list(depth + 1, false, nullptr));
        if (other.end != End::end)
          return fail_at(line, "expected end; found " + std::string(other.end == End::eof ? "EOF" : "else"));
        n.else_list = std::move(other.nodes);
      }
    }
    vars_.resize(mark);
    return n;
  }

  // [$x := | $x = | $i, $v :=] command | command ...: two variables only in
  // a range (ctx names the construct, for Go's messages).
  Result<Pipe> pipeline(const std::vector<Token>& toks, int line, std::string_view ctx) {
    Pipe p;
    p.line = line;
    std::size_t i = 0;
    // Declarations: $x := | $x = | $i, $v :=
    std::vector<std::string> decl;
    std::size_t j = 0;
    while (j < toks.size() && toks[j].kind == Token::Kind::var && toks[j].chain.empty()) {
      decl.push_back(toks[j].name);
      ++j;
      if (j < toks.size() && toks[j].kind == Token::Kind::comma) {
        ++j;
        continue;
      }
      break;
    }
    if (!decl.empty() && j < toks.size() &&
        (toks[j].kind == Token::Kind::declare || toks[j].kind == Token::Kind::assign)) {
      const bool assign = toks[j].kind == Token::Kind::assign;
      if (decl.size() > 1 && (ctx != "range" || decl.size() > 2))
        return fail_at(line, "too many declarations in " + std::string(ctx));
      if (decl.size() > 1 && assign) return fail_at(line, "too many declarations in " + std::string(ctx));
      for (const auto& d : decl) {
        if (assign && std::find(vars_.begin(), vars_.end(), d) == vars_.end()) {
          return fail_at(line, "undefined variable \"" + d + "\"");
        }
      }
      p.decl = decl;
      p.assign = assign;
      i = j + 1;
    } else if (decl.size() > 1) {
      return fail_at(line, "unexpected \",\" in " + std::string(ctx));
    }
    ROOTSEAL_TRY(commands(toks, i, toks.size(), p, line, 0));
    if (!p.assign) {
      for (const auto& d : p.decl) vars_.push_back(d);
    }
    return p;
  }

  Result<void> commands(const std::vector<Token>& toks, std::size_t& i, std::size_t end, Pipe& p, int line, int depth) {
    if (depth > kMaxDepth) return fail_at(line, "parentheses nested too deep");
    for (;;) {
      Cmd c;
      while (i < end && toks[i].kind != Token::Kind::pipe && toks[i].kind != Token::Kind::rparen) {
        ROOTSEAL_LET(a, operand(toks, i, end, line, depth));
        c.args.push_back(std::move(a));
      }
      if (c.args.empty()) return fail_at(line, p.cmds.empty() ? "missing value for command" : "missing command");
      const auto& head = c.args.front();
      if (!p.cmds.empty() &&
          (head.kind == Arg::Kind::constant || head.kind == Arg::Kind::dot || head.kind == Arg::Kind::nil)) {
        return fail_at(line, "non executable command in pipeline stage " + std::to_string(p.cmds.size() + 1));
      }
      if (head.kind != Arg::Kind::func && c.args.size() > 1 &&
          (head.kind == Arg::Kind::constant || head.kind == Arg::Kind::dot)) {
        return fail_at(line, "can't give argument to non-function " + head.text);
      }
      p.cmds.push_back(std::move(c));
      if (i < end && toks[i].kind == Token::Kind::pipe) {
        ++i;
        continue;
      }
      return {};
    }
  }

  Result<Arg> operand(const std::vector<Token>& toks, std::size_t& i, std::size_t end, int line, int depth) {
    const Token& t = toks[i++];
    Arg a;
    a.text = t.text;
    switch (t.kind) {
      case Token::Kind::dot:
        a.kind = Arg::Kind::dot;
        break;
      case Token::Kind::field:
        a.kind = Arg::Kind::field;
        a.chain = t.chain;
        break;
      case Token::Kind::var:
        if (std::find(vars_.begin(), vars_.end(), t.name) == vars_.end()) {
          return fail_at(line, "undefined variable \"" + t.name + "\"");
        }
        a.kind = Arg::Kind::var;
        a.name = t.name;
        a.chain = t.chain;
        break;
      case Token::Kind::constant:
        a.kind = Arg::Kind::constant;
        a.constant = t.constant;
        break;
      case Token::Kind::ident:
        if (t.name == "nil") {
          a.kind = Arg::Kind::nil;
          break;
        }
        if (t.name == "if" || t.name == "else" || t.name == "end" || t.name == "range" || t.name == "with" ||
            t.name == "define" || t.name == "template" || t.name == "block" || t.name == "break" ||
            t.name == "continue") {
          return fail_at(line, "unexpected <" + t.name + "> in command");
        }
        if (!has_function(t.name))
          return fail_at(line, "function \"" + t.name + "\" is not supported (see docs/sync.md)");
        a.kind = Arg::Kind::func;
        a.name = t.name;
        break;
      case Token::Kind::lparen: {
        a.kind = Arg::Kind::paren;
        a.sub = std::make_shared<Pipe>();
        a.sub->line = line;
        ROOTSEAL_TRY(commands(toks, i, end, *a.sub, line, depth + 1));
        if (i >= end || toks[i].kind != Token::Kind::rparen) return fail_at(line, "unclosed left paren");
        ++i;
        a.text = "(...)";
        break;
      }
      case Token::Kind::rparen:
        return fail_at(line, "unexpected right paren");
      default:
        return fail_at(line, "unexpected \"" + t.text + "\" in operand");
    }
    // A field chain right after the term: (x).a, $x.a (lexed with the variable).
    if (i < end && toks[i].kind == Token::Kind::field && !toks[i].spaced) {
      if (a.kind == Arg::Kind::func)
        return fail_at(line, "a field or method of a function's result (" + a.text + ".) is not supported");
      if (a.kind != Arg::Kind::paren) return fail_at(line, "unexpected . after term " + a.text);
      a.chain = toks[i].chain;
      ++i;
    }
    return a;
  }

  std::vector<Item> items_;
  std::size_t pos_ = 0;
  int line_ = 1;
  std::vector<std::string> vars_;
  int range_depth_ = 0;
  std::map<std::string, std::pair<std::vector<Node>, bool>> defs_;  // the body, whether it is empty
};

}  // namespace

Result<Tree> parse(std::string_view text) {
  if (text.size() > kMaxTemplate) return kms::fail(kms::Errc::invalid_argument, "template: longer than 1 MiB");
  ROOTSEAL_LET(items, split(text));
  return Parser(std::move(items)).run();
}

}  // namespace rootseal::sync::tmpl
