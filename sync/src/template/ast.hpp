// rootseal::sync — internal: the parse tree of a template (Go's
// text/template/parse, the parts rootseal evaluates).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "value.hpp"

namespace rootseal::sync::tmpl {

struct Pipe;

struct Arg {
  enum class Kind : std::uint8_t { dot, nil, var, field, constant, func, paren } kind = Kind::dot;
  std::string name;                // variable ("$x", "$") or function name
  std::vector<std::string> chain;  // fields after the dot, variable or parenthesis
  Value constant;                  // bool, number, string literal
  std::shared_ptr<Pipe> sub;       // paren
  std::string text;                // the source, for error messages (template text, never data)
};

struct Cmd {
  std::vector<Arg> args;
};

struct Pipe {
  std::vector<std::string> decl;  // $x := / $i, $v := / $x =
  bool assign = false;            // '=' rather than ':='
  std::vector<Cmd> cmds;
  int line = 0;
};

struct Node {
  enum class Kind : std::uint8_t { text, action, if_, range, with, call, break_, continue_ } kind = Kind::text;
  std::string text;  // text, or the template name of call
  Pipe pipe;
  std::vector<Node> list, else_list;
  int line = 0;
};

struct Tree {
  std::vector<Node> root;
  std::map<std::string, std::vector<Node>> defs;  // define / block
};

kms::Result<Tree> parse(std::string_view text);

// Functions: whether rootseal has `name`, and calling it (args evaluated, the
// piped value last). and/or are evaluated by the executor.
bool has_function(std::string_view name);
kms::Result<Value> call_function(std::string_view name, std::vector<Value>& args);

}  // namespace rootseal::sync::tmpl
