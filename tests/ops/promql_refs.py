"""What a PromQL expression reads: the metric selectors (name and label
matchers) and the grouping labels (by, without, on, ignoring, group_left,
group_right). A tokenizer, not a full parser: enough for the rules and the
dashboard, and strict — an unexpected token raises, so a construct it does
not know fails the test instead of hiding a metric name.

promtool (check rules) is what says an expression is valid PromQL; this only
lists the names it uses."""
import re

TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![a-zA-Z_]))
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}])
""", re.VERBOSE)

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "atan2", "inf", "nan", "Inf", "NaN"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
                "quantile"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series


def tokens(expr):
    pos, out = 0, []
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError("cannot tokenize PromQL at %r" % expr[pos:pos + 20])
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def unquote(s):
    return s[1:-1].encode().decode("unicode_escape") if s[0] in "\"'" else s[1:-1]


class Selector:
    def __init__(self, name):
        self.name = name
        self.matchers = []  # (label, op, value)

    def __repr__(self):
        return "%s{%s}" % (self.name, ",".join("%s%s%r" % m for m in self.matchers))


def refs(expr):
    """(selectors, grouping labels) of a PromQL expression."""
    toks = tokens(expr)
    selectors, grouping = [], set()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident" and text in GROUPING:
            i += 1
            if nxt == "(":
                i += 1
                while toks[i][1] != ")":
                    if toks[i][0] == "ident":
                        grouping.add(toks[i][1])
                    elif toks[i][1] != ",":
                        raise ValueError("unexpected %r in %s (...) of %s" % (toks[i][1], text, expr))
                    i += 1
                i += 1
            continue
        if kind == "ident" and (nxt == "(" or (text in AGGREGATIONS and nxt in GROUPING)):  # a function, an aggregation
            i += 1
            continue
        if kind == "ident" and text not in KEYWORDS:
            sel = Selector(text)
            selectors.append(sel)
            i += 1
            if nxt == "{":
                i += 1
                while toks[i][1] != "}":
                    if toks[i][1] == ",":
                        i += 1
                        continue
                    label, op, value = toks[i], toks[i + 1], toks[i + 2]
                    if label[0] != "ident" or op[1] not in ("=", "!=", "=~", "!~") or value[0] != "string":
                        raise ValueError("bad matcher near %r in %s" % (label[1], expr))
                    sel.matchers.append((label[1], op[1], unquote(value[1])))
                    i += 3
                i += 1
            continue
        if text == "{":
            raise ValueError("a selector without a metric name in %s" % expr)
        i += 1
    return selectors, grouping
