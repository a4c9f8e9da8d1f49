"""Every metric the alerting rules and the dashboard read is one rootseald
exports, with the labels they use.

rootseald runs from a configuration file with the sync engine on (dev mode
has no sync section), against the Kubernetes and Vault KV doubles and
moto_server (tests/integration/sync_testlib.py), with one ExternalSecret
that syncs and one that cannot (so the per-store series and both Ready
values exist), one Transit request, and snapshots to a local folder (the
rootseal_snapshot_* series exist only with a snapshots: section). Its /v1/sys/metrics is parsed, and
every selector of deploy/prometheus/rootseal-rules.yaml and
deploy/grafana/rootseal.json (promql_refs.py) is checked against it:
 - the metric name is exported (recording rules resolve to their own
   definition, and must be defined in the rules file);
 - every label matched on is one of the metric's labels (or job/instance,
   which Prometheus adds), and an equality matcher's value is one it has;
 - every label grouped on (by, on, ...) is a label of a metric the
   expression reads.
The whole exposition also passes `promtool check metrics`."""
import http.client
import re
import subprocess
import unittest

import opslib
import promql_refs
from sync_testlib import SyncEnv

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"')


def parse_exposition(text):
    """{metric name: [labels dict, ...]} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("unparseable sample line: %r" % line)
        labels = dict(LABEL.findall(m.group(2) or ""))
        out.setdefault(m.group(1), []).append(labels)
    return out


def check_expr(where, expr, exported, records, problems):
    """Appends to problems what in expr rootseald does not export."""
    selectors, grouping = promql_refs.refs(expr)
    if not selectors:
        problems.append("%s: reads no metric: %s" % (where, expr))
    available = set(promql_refs.TARGET_LABELS)
    for sel in selectors:
        if ":" in sel.name:
            if sel.name not in records:
                problems.append("%s: recording rule %s is not defined" % (where, sel.name))
                continue
            labels = promql_refs.refs(records[sel.name])[1] | promql_refs.TARGET_LABELS
            values = {}
        elif sel.name not in exported:
            problems.append("%s: rootseald does not export %s" % (where, sel.name))
            continue
        else:
            series = exported[sel.name]
            labels = {k for s in series for k in s} | promql_refs.TARGET_LABELS
            values = {}
            for s in series:
                for k, v in s.items():
                    values.setdefault(k, set()).add(v)
        available |= labels
        for label, op, value in sel.matchers:
            if label not in labels:
                problems.append("%s: %s has no label %s" % (where, sel.name, label))
            elif op == "=" and label in values and value not in values[label]:
                problems.append("%s: %s{%s} never has the value %r (has %s)" %
                                (where, sel.name, label, value, sorted(values[label])))
            elif op in ("=~", "!~"):
                re.compile(value)
    for label in grouping - available:
        problems.append("%s: groups by %s, which no metric it reads has" % (where, label))


class MetricsExported(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = SyncEnv(refresh_window="1s", top_extra="""
snapshots:
  interval: 1h
  destinations:
    - name: local
      kind: folder
      path: {dir}/snapshots
""").start()

    @classmethod
    def tearDownClass(cls):
        cls.env.stop()

    def scrape(self):
        c = http.client.HTTPConnection("127.0.0.1", self.env.port, timeout=5)
        try:
            c.request("GET", "/v1/sys/metrics?format=prometheus")
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            return r.read().decode()
        finally:
            c.close()

    def test_rules_and_dashboard_read_only_exported_metrics_and_labels(self):
        env, kube = self.env, self.env.kube
        kube.namespace("ops")
        env.vault.put("ops/db", {"password": "pw"})
        env.vault_store("ops")
        env.external_secret("ops", "good", [{"secretKey": "p", "remoteRef": {"key": "ops/db", "property": "password"}}])
        env.external_secret("ops", "bad", [{"secretKey": "p", "remoteRef": {"key": "ops/missing", "property": "x"}}])
        # One Transit request (refused: no token), so the route's series exist;
        # after the unseal (the engine can report synced before it: a sealed
        # host answers 503, not 403).
        def unsealed():
            h = http.client.HTTPConnection("127.0.0.1", env.port, timeout=5)
            try:
                h.request("GET", "/v1/sys/health")
                return h.getresponse().status == 200
            finally:
                h.close()
        env.wait(unsealed, "unsealed", timeout=30)
        c = http.client.HTTPConnection("127.0.0.1", env.port, timeout=5)
        c.request("POST", "/v1/transit/encrypt/k", body=b'{"plaintext":"YQ=="}')
        self.assertEqual(c.getresponse().status, 403)
        c.close()

        def ready_counts():
            m = env.metrics()
            t = m.get('rootseal_sync_externalsecrets{ready="True"}')
            f = m.get('rootseal_sync_externalsecrets{ready="False"}')
            return (t, f) == (1.0, 1.0) and any(k.startswith("rootseal_sync_store_failures{") for k in m)
        env.wait(ready_counts, "one ExternalSecret Ready, one not, and the store's series", timeout=30)

        text = self.scrape()
        # Prometheus' own parser and linter accept the whole exposition.
        p = subprocess.run([opslib.PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))
        exported = parse_exposition(text)
        self.assertEqual(exported["rootseal_sync_externalsecrets_stale"], [{}])
        self.assertEqual(exported["rootseal_root_probe_ok"], [{"root": "pkcs11"}])
        self.assertEqual(exported["rootseal_snapshot_interval_seconds"], [{}])
        self.assertEqual({s["ready"] for s in exported["rootseal_sync_pushsecrets"]}, {"True", "False", "Unknown"})

        records = opslib.records()
        problems = []
        for r in opslib.rules():
            check_expr(r.get("alert") or r.get("record"), r["expr"], exported, records, problems)
        queries = opslib.dashboard_queries()
        self.assertGreater(len(queries), 20)
        for title, expr in queries:
            check_expr("dashboard panel %r" % title, opslib.grafana_expand(expr), exported, records, problems)
        self.assertEqual(problems, [])

        # The check can fail: a rule on a name rootseald does not export, a
        # label it does not have, or a value it never takes, is reported.
        bad = []
        check_expr("x", 'rate(rootseal_sync_reconcile_total[5m])', exported, records, bad)
        check_expr("y", 'rootseal_sealed{route="transit/encrypt"}', exported, records, bad)
        check_expr("z", 'rootseal_sync_externalsecrets{ready="true"}', exported, records, bad)
        check_expr("w", 'sum by (store) (rootseal_sealed)', exported, records, bad)
        check_expr("v", 'rootseal:nope', exported, records, bad)
        self.assertEqual(len(bad), 5, bad)


if __name__ == "__main__":
    unittest.main()
