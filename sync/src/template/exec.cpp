// The executor: Go's text/template exec.go semantics (dot, variables and
// their scopes, if/with/range/template, missingkey=error) over the values of
// value.hpp, with the caps of value.hpp on work, depth and output.
#include <algorithm>
#include <optional>

#include "../template.hpp"
#include "ast.hpp"

namespace rootseal::sync {

using kms::Result;

namespace tmpl {
namespace {

// Puts "line N: " into an error raised without a position.
kms::Error at_line(kms::Error e, int line) {
  constexpr std::string_view prefix = "template: ";
  if (e.message.starts_with(prefix) && !e.message.starts_with("template: line ")) {
    e.message.insert(prefix.size(), "line " + std::to_string(line) + ": ");
  }
  return e;
}

using Vars = std::vector<std::pair<std::string, Value>>;
enum class Flow : std::uint8_t { normal, brk, cont };

class Exec {
 public:
  Exec(const Tree& tree, SecureBuffer& out) : tree_(tree), out_(out) {}

  Result<Flow> walk(const std::vector<Node>& nodes, const Value& dot, Vars& vars, int depth) {
    if (depth > kMaxDepth)
      return fail_at(nodes.empty() ? 0 : nodes.front().line, "exceeded maximum template depth (64)");
    for (const auto& n : nodes) {
      ROOTSEAL_LET(flow, node(n, dot, vars, depth));
      if (flow != Flow::normal) return flow;
    }
    return Flow::normal;
  }

 private:
  Result<void> step(int line) {
    if (++steps_ > kMaxSteps) return fail_at(line, "too much work (more than 1000000 steps): refused");
    if (out_.size() > kMaxBytes) return fail_at(line, "the output exceeds 8 MiB: refused");
    return {};
  }

  Result<Flow> node(const Node& n, const Value& dot, Vars& vars, int depth) {
    switch (n.kind) {
      case Node::Kind::text:
        out_.append(n.text);
        if (out_.size() > kMaxBytes) return fail_at(n.line, "the output exceeds 8 MiB: refused");
        return Flow::normal;
      case Node::Kind::action: {
        ROOTSEAL_LET(v, pipe(n.pipe, dot, vars, depth));
        if (n.pipe.decl.empty()) {
          auto printed = print_value(v, out_);
          if (!printed) return std::unexpected(at_line(printed.error(), n.line));
        }
        return Flow::normal;
      }
      case Node::Kind::if_:
      case Node::Kind::with: {
        const std::size_t mark = vars.size();
        ROOTSEAL_LET(v, pipe(n.pipe, dot, vars, depth));
        Result<Flow> r = Flow::normal;
        if (truth(v)) {
          r = walk(n.list, n.kind == Node::Kind::with ? v : dot, vars, depth + 1);
        } else {
          r = walk(n.else_list, dot, vars, depth + 1);
        }
        vars.resize(mark);
        return r;
      }
      case Node::Kind::range:
        return range(n, dot, vars, depth);
      case Node::Kind::call: {
        auto it = tree_.defs.find(n.text);
        if (it == tree_.defs.end()) return fail_at(n.line, "no template \"" + n.text + "\" associated with template");
        Value arg;
        if (!n.pipe.cmds.empty()) {
          ROOTSEAL_TRY_ASSIGN(arg, pipe(n.pipe, dot, vars, depth));
        }
        Vars inner = {{"$", arg}};
        ROOTSEAL_TRY(walk(it->second, arg, inner, depth + 1));
        return Flow::normal;
      }
      case Node::Kind::break_:
        return Flow::brk;
      case Node::Kind::continue_:
        return Flow::cont;
    }
    return Flow::normal;
  }

  Result<Flow> range(const Node& n, const Value& dot, Vars& vars, int depth) {
    const std::size_t mark = vars.size();
    ROOTSEAL_LET(v, pipe(n.pipe, dot, vars, depth));
    const std::size_t nvars = n.pipe.decl.size();
    auto one = [&](Value key, const Value& elem) -> Result<Flow> {
      ROOTSEAL_TRY(step(n.line));
      if (nvars >= 1) vars[mark + nvars - 1].second = elem;
      if (nvars == 2) vars[mark].second = std::move(key);
      const std::size_t inner = vars.size();
      auto r = walk(n.list, elem, vars, depth + 1);
      vars.resize(inner);
      return r;
    };
    bool any = false;
    Result<Flow> status = Flow::normal;
    if (v.kind == Value::Kind::list) {
      const auto list = v.l;  // the body may replace the variable holding it
      for (std::size_t i = 0; i < list->size(); ++i) {
        any = true;
        auto r = one(int_value(static_cast<std::int64_t>(i)), (*list)[i]);
        if (!r) return r;
        if (*r == Flow::brk) break;
      }
    } else if (v.kind == Value::Kind::map) {
      const auto map = v.m;
      std::vector<const Map::value_type*> entries;
      for (const auto& e : *map) entries.push_back(&e);
      for (const auto* e : entries) {
        any = true;
        Value key = string_value(e->first.clone());
        auto r = one(std::move(key), e->second);
        if (!r) return r;
        if (*r == Flow::brk) break;
      }
    } else if (v.kind != Value::Kind::nil) {
      return fail_at(n.line, "range can't iterate over a value of type " + v.type_name());
    }
    if (!any) status = walk(n.else_list, dot, vars, depth + 1);
    vars.resize(mark);
    if (!status) return status;
    return Flow::normal;
  }

  Result<Value> pipe(const Pipe& p, const Value& dot, Vars& vars, int depth) {
    if (depth > kMaxDepth) return fail_at(p.line, "exceeded maximum template depth (64)");
    std::optional<Value> prev;
    for (const auto& c : p.cmds) {
      ROOTSEAL_LET(v, cmd(c, dot, vars, prev, depth, p.line));
      prev = std::move(v);
    }
    Value v = prev ? std::move(*prev) : Value{};
    for (const auto& d : p.decl) {
      if (p.assign) {
        for (auto it = vars.rbegin(); it != vars.rend(); ++it) {
          if (it->first == d) {
            it->second = v;
            break;
          }
        }
      } else {
        vars.emplace_back(d, v);
      }
    }
    return v;
  }

  Result<Value> cmd(const Cmd& c, const Value& dot, Vars& vars, std::optional<Value>& piped, int depth, int line) {
    ROOTSEAL_TRY(step(line));
    const Arg& head = c.args.front();
    const bool has_args = c.args.size() > 1 || piped.has_value();
    if (head.kind == Arg::Kind::nil) return fail_at(line, "nil is not a command");  // Go: at execution
    if (head.kind != Arg::Kind::func) {
      if (has_args) return fail_at(line, "can't give argument to non-function " + head.text);
      return arg(head, dot, vars, depth, line);
    }
    if (head.name == "and" || head.name == "or") {
      const bool is_and = head.name == "and";
      if (c.args.size() < 2 && !piped)
        return fail_at(line, "wrong number of args for " + head.name + ": want at least 1 got 0");
      Value v;
      for (std::size_t i = 1; i < c.args.size(); ++i) {
        ROOTSEAL_TRY_ASSIGN(v, arg(c.args[i], dot, vars, depth, line));
        if (truth(v) != is_and) return v;
      }
      if (piped) return std::move(*piped);
      return v;
    }
    std::vector<Value> args;
    args.reserve(c.args.size());
    for (std::size_t i = 1; i < c.args.size(); ++i) {
      ROOTSEAL_LET(v, arg(c.args[i], dot, vars, depth, line));
      args.push_back(std::move(v));
    }
    if (piped) args.push_back(std::move(*piped));
    if (!cheap(head.name)) {
      for (const auto& v : args) ROOTSEAL_TRY(charge(v, line));  // functions that read their arguments whole
    }
    auto r = call_function(head.name, args);
    if (!r) return std::unexpected(at_line(r.error(), line));
    ROOTSEAL_TRY(charge(*r, line));
    return r;
  }

  // Functions whose work does not grow with their arguments (lookups, type
  // questions, passing a value on).
  static bool cheap(std::string_view fn) {
    static constexpr std::string_view kCheap[] = {
        "index",   "get",      "hasKey",  "set",    "unset",  "len",    "first",  "last", "not", "empty",
        "default", "coalesce", "ternary", "typeOf", "kindOf", "typeIs", "kindIs", "list", "dict"};
    return std::find(std::begin(kCheap), std::end(kCheap), fn) != std::end(kCheap);
  }

  // A function's work is about the size of what it reads and returns:
  // charged to the step budget (one step per list element or map entry, per
  // 256 bytes of text), so that building or scanning values in a loop
  // (append, has, contains, ...) is capped by kMaxSteps however each call
  // is written.
  Result<void> charge(const Value& v, int line) {
    std::size_t cost = 0;
    if (v.kind == Value::Kind::string) cost = v.str().size() / 256;
    if (v.kind == Value::Kind::list) cost = v.l->size();
    if (v.kind == Value::Kind::map) cost = v.m->size();
    steps_ += cost;
    return step(line);
  }

  Result<Value> arg(const Arg& a, const Value& dot, Vars& vars, int depth, int line) {
    switch (a.kind) {
      case Arg::Kind::dot:
        return dot;
      case Arg::Kind::nil:
        return Value{};
      case Arg::Kind::constant:
        return a.constant;
      case Arg::Kind::field:
        return fields(dot, a.chain, line);
      case Arg::Kind::var:
        for (auto it = vars.rbegin(); it != vars.rend(); ++it) {
          if (it->first == a.name) return fields(it->second, a.chain, line);
        }
        return fail_at(line, "undefined variable: " + a.name);
      case Arg::Kind::paren: {
        ROOTSEAL_LET(v, pipe(*a.sub, dot, vars, depth + 1));
        return fields(std::move(v), a.chain, line);
      }
      case Arg::Kind::func: {
        // A function as an argument: called without arguments (Go's evalArg).
        std::vector<Value> none;
        if (a.name == "and" || a.name == "or")
          return fail_at(line, "wrong number of args for " + a.name + ": want at least 1 got 0");
        auto r = call_function(a.name, none);
        if (!r) return std::unexpected(at_line(r.error(), line));
        return r;
      }
    }
    return Value{};
  }

  // .a.b on a value: map keys (missingkey=error); anything else is an error.
  Result<Value> fields(Value base, const std::vector<std::string>& chain, int line) {
    for (const auto& f : chain) {
      if (base.kind == Value::Kind::map) {
        auto it = base.m->find(std::string_view(f));
        if (it == base.m->end()) return fail_at(line, "map has no entry for key \"" + f + "\"");
        Value next = it->second;
        base = std::move(next);
      } else if (base.kind == Value::Kind::nil) {
        return fail_at(line, "nil pointer evaluating interface {}." + f);
      } else if (base.kind == Value::Kind::time) {
        return fail_at(line, "the method " + f + " of time.Time is not supported (format it with date)");
      } else {
        return fail_at(line, "can't evaluate field " + f + " in type " + base.type_name());
      }
    }
    return base;
  }

  const Tree& tree_;
  SecureBuffer& out_;
  std::size_t steps_ = 0;
};

}  // namespace
}  // namespace tmpl

Result<void> check_template(std::string_view text) {
  ROOTSEAL_TRY(tmpl::parse(text));
  return {};
}

Result<kms::SecureBytes> render_template(std::string_view text, const SecretMap& values) {
  ROOTSEAL_LET(tree, tmpl::parse(text));
  tmpl::Map data;
  for (const auto& [k, v] : values) data.emplace(kms::SecureBytes::copy_of(k), tmpl::string_value(v.clone()));
  const tmpl::Value root = tmpl::map_value(std::move(data), /*strings=*/true);
  SecureBuffer out(text.size() + 64);
  tmpl::Vars vars = {{"$", root}};
  ROOTSEAL_TRY(tmpl::Exec(tree, out).walk(tree.root, root, vars, 0));
  return out.take();
}

}  // namespace rootseal::sync
