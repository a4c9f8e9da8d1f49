"""The PromQL of deploy/prometheus/rootseal-rules.yaml and of
deploy/grafana/rootseal.json, for the ops tests."""
import json
import os
import re

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
RULES = os.path.join(ROOT, "deploy", "prometheus", "rootseal-rules.yaml")
RULES_TEST = os.path.join(HERE, "rules_test.yaml")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "rootseal.json")
OPERATIONS = os.path.join(ROOT, "docs", "operations.md")
PROMTOOL = "/usr/bin/promtool"

# Grafana's variables, replaced by what Grafana would put there.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}


def load_rules():
    with open(RULES) as f:
        return yaml.safe_load(f)


def rules():
    return [r for g in load_rules()["groups"] for r in g["rules"]]


def alerts():
    return [r for r in rules() if "alert" in r]


def records():
    return {r["record"]: r["expr"] for r in rules() if "record" in r}


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def grafana_expand(expr):
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    if "$" in expr:
        raise AssertionError("unknown Grafana variable in %s" % expr)
    return expr


def dashboard_queries():
    """(panel title, raw expr) of every panel target, and the variables' queries."""
    d = load_dashboard()
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
            if not m:
                raise AssertionError("variable %s: unexpected query %s" % (v["name"], q))
            out.append(("variable " + v["name"], m.group(1)))
    return out
