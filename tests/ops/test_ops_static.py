"""The alerting rules and the dashboard without a running daemon:
 - every alert has a firing and a non-firing case in rules_test.yaml (which
   promtool test rules runs: ctest ops_promtool_test_rules) and a runbook
   entry in docs/operations.md;
 - the dashboard has its datasource and instance variables, every target
   uses them, and every expression parses: they are written into a rules
   file that promtool check rules must accept."""
import os
import re
import subprocess
import tempfile
import unittest

import yaml

import opslib
import promql_refs


class Rules(unittest.TestCase):
    def test_every_alert_has_a_firing_and_a_non_firing_case(self):
        with open(opslib.RULES_TEST) as f:
            cases = yaml.safe_load(f)
        fired, quiet = set(), set()
        for t in cases["tests"]:
            for a in t.get("alert_rule_test", []):
                (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
        names = [a["alert"] for a in opslib.alerts()]
        self.assertGreaterEqual(len(names), 14)
        for n in names:
            self.assertIn(n, fired, "no case where %s fires" % n)
            self.assertIn(n, quiet, "no case where %s stays quiet" % n)
        self.assertEqual(fired | quiet, set(names), "tests of alerts that do not exist")

    def test_every_alert_has_a_runbook_with_meaning_checks_and_fix(self):
        with open(opslib.OPERATIONS) as f:
            doc = f.read()
        for a in opslib.alerts():
            name = a["alert"]
            self.assertEqual(a["annotations"]["runbook_url"], "docs/operations.md#" + name.lower())
            m = re.search(r"^#### %s\n(.*?)(?=^#)" % name, doc, re.S | re.M)
            self.assertIsNotNone(m, "no '#### %s' runbook in docs/operations.md" % name)
            for part in ("Means:", "Check:", "Fix:"):
                self.assertIn(part, m.group(1), "%s's runbook has no %s" % (name, part))

    def test_the_rules_reference_only_recording_rules_they_define(self):
        recorded = set(opslib.records())
        for r in opslib.rules():
            for sel in promql_refs.refs(r["expr"])[0]:
                if ":" in sel.name:
                    self.assertIn(sel.name, recorded, "%s uses an undefined recording rule" % r.get("alert", r.get("record")))


class Dashboard(unittest.TestCase):
    def test_variables_and_targets_use_them(self):
        d = opslib.load_dashboard()
        by_name = {v["name"]: v for v in d["templating"]["list"]}
        self.assertEqual(by_name["datasource"]["type"], "datasource")
        self.assertEqual(by_name["datasource"]["query"], "prometheus")
        inst = by_name["instance"]
        self.assertEqual(inst["type"], "query")
        self.assertEqual(inst["datasource"]["uid"], "${datasource}")
        self.assertTrue(inst["multi"] and inst["includeAll"])
        panels = [p for p in d["panels"] if p["type"] != "row"]
        self.assertGreaterEqual(len(panels), 14)
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        for p in panels:
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
            self.assertTrue(p["targets"], p["title"])
            for t in p["targets"]:
                self.assertEqual(t["datasource"]["uid"], "${datasource}", p["title"])
                for sel in promql_refs.refs(opslib.grafana_expand(t["expr"]))[0]:
                    self.assertIn(("instance", "=~", ".*"), sel.matchers,
                                  "%s: %s does not follow the instance variable" % (p["title"], sel.name))

    def test_every_dashboard_panel_is_documented(self):
        with open(opslib.OPERATIONS) as f:
            doc = f.read()
        for p in opslib.load_dashboard()["panels"]:
            if p["type"] != "row":
                self.assertTrue("**%s**" % p["title"] in doc, "panel %r is not listed in docs/operations.md" % p["title"])

    def test_every_expression_parses_with_promtool(self):
        queries = opslib.dashboard_queries()
        rules = [{"record": "dashboard:q%d" % i, "expr": opslib.grafana_expand(e)} for i, (_, e) in enumerate(queries)]
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "dashboard-rules.yaml")
            with open(path, "w") as f:
                yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            p = subprocess.run([opslib.PROMTOOL, "check", "rules", path], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("SUCCESS: %d rules found" % len(rules), p.stdout)
            # ... and promtool does refuse a broken one (the check can fail).
            rules.append({"record": "dashboard:broken", "expr": "sum(rate(rootseal_sealed[5m])"})
            with open(path, "w") as f:
                yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            p = subprocess.run([opslib.PROMTOOL, "check", "rules", path], capture_output=True, text=True)
            self.assertNotEqual(p.returncode, 0)


if __name__ == "__main__":
    unittest.main()
