"""`sync:` configuration changes applied by SIGHUP, without a restart, on the
sharded rig of test_ha_sync.py (three rootseald hosts, three etcd members,
the Kubernetes API double, the Vault double; issue 21, docs/ha.md
"Configuration changes").

  1. One host's reload adds a host store (vault2): the ExternalSecrets of
     its namespaces that use it are synced, those of the other hosts' are
     not (a namespace follows its bucket owner's configuration); every host
     reports rootseal_sync_config_peers_disagree 1 and logs the difference;
     the other two reloaded alike: 0 everywhere, every Secret written. Same
     PIDs, Transit encrypt requests to the unsealed host all answered across
     its reload, the old engine drained and freed.
  2. An invalid sync: section (an unknown store kind) is refused as a whole:
     logged, counted, `rootseal status` says so, the old engine goes on
     (a changed ExternalSecret is synced by it), no engine replaced.
  3. sync.sharded off on one host: its buckets go to the other two, which
     see its configuration differ; on again: the three share the buckets and
     agree.
  4. sync.enabled off on one host: its buckets go to the other two (no
     disagreement: it runs no sync), its sync metrics read zeros; on again:
     it takes its share and syncs.

Waits poll with deadlines (no sleep decides anything).
"""
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import unittest
import urllib.error
import urllib.request

import test_ha_sync as ha
from rootseal_testlib import sha256_hex
from sync_testlib import ESO, VAULT_ROOT
from test_ha_etcd import poll

HOSTS = ha.HOSTS
NAMESPACES = ["reload-%02d" % i for i in range(9)]
TOKEN = "reload-test-token"


class HaSyncReloadTest(ha.HaSyncRig):
    NAMESPACES = NAMESPACES

    @classmethod
    def before_hosts(cls):
        cls.vault_token_file = os.path.join(cls.dir, "vault2-token")
        with open(cls.vault_token_file, "w") as f:
            f.write(VAULT_ROOT + "\n")
        os.chmod(cls.vault_token_file, 0o600)
        cls.extra = {h: {"vault2": False, "sharded": True, "bad": False} for h in HOSTS}

    @classmethod
    def write_config(cls, label):
        super().write_config(label)
        path = os.path.join(cls.dir, "rootseald-%s.yaml" % label)
        with open(path) as f:
            text = f.read()
        extra = getattr(cls, "extra", {}).get(label, {})
        text = text.replace("sync:\n  enabled: true\n", "sync:\n  enabled: %s\n  sharded: %s\n" % (
            "true" if extra.get("enabled", True) else "false", "true" if extra.get("sharded", True) else "false"))
        stores = ""
        if extra.get("vault2"):
            stores += ("    vault2:\n      kind: vault\n      server: %s\n      token: {file: %s}\n"
                       "      namespaces: [\"*\"]\n" % (cls.vault.url, cls.vault_token_file))
        if extra.get("bad"):
            stores += "    broken:\n      kind: nosuch\n"
        text = text.replace("  stores:\n", "  stores:\n" + stores)
        if extra.get("no_kubeconfig"):  # parses, but the engine cannot be built
            text = re.sub(r"(?m)^  kubeconfig: .*$", "  kubeconfig: %s/no-such-kubeconfig" % cls.dir, text)
        text += "tokens:\n  - name: reload-test\n    sha256: %s\n    policies: [root]\n" % sha256_hex(TOKEN)
        with open(path, "w") as f:
            f.write(text)

    # --- helpers ----------------------------------------------------------------
    def metrics(self, label):
        c = http.client.HTTPConnection("127.0.0.1", self.hosts[label]["port"], timeout=5)
        try:
            c.request("GET", "/v1/sys/metrics?format=prometheus")
            return c.getresponse().read().decode()
        finally:
            c.close()

    def metric(self, label, name):
        for line in self.metrics(label).splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ", 1)[1])
        raise AssertionError("no metric %s on host %s" % (name, label))

    def full_log(self, label):
        with open(os.path.join(self.dir, "rootseald-%s.log" % label), "rb") as f:
            return f.read().decode(errors="replace")

    def count(self, label, text):
        return self.full_log(label).count(text)

    def reload(self, label, **changes):
        self.extra[label].update(changes)
        self.write_config(label)
        self.hosts[label]["proc"].send_signal(signal.SIGHUP)

    def disagree_everywhere(self, value):
        poll(lambda: all(self.metric(h, "rootseal_sync_config_peers_disagree") == value for h in HOSTS),
             "rootseal_sync_config_peers_disagree %d on every host" % value, 20)

    def vault2_external_secret(self, ns, name, value):
        self.vault.put("%s/%s" % (ns, name), {"v": value})
        self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": "vault2", "namespace": ns,
                         "annotations": {"sync.rootseal.io/credentials": "vault2"}},
            "spec": {"provider": {"vault": {"server": self.vault.url, "path": "secret", "version": "v2"}}}})
        self.kube.create(ESO + "/namespaces/%s/externalsecrets" % ns, {
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"refreshInterval": "1h", "secretStoreRef": {"name": "vault2", "kind": "SecretStore"},
                     "target": {"name": name},
                     "data": [{"secretKey": "v", "remoteRef": {"key": "%s/%s" % (ns, name), "property": "v"}}]}})

    def unsealed_host(self):
        def find():
            for h in HOSTS:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/v1/sys/seal-status" % self.hosts[h]["port"],
                                                timeout=5) as r:
                        if not json.loads(r.read())["sealed"]:
                            return h
                except (OSError, ValueError, KeyError):
                    pass
            return None
        return poll(find, "one host unsealed", 60)

    def transit(self, label, path, body):
        req = urllib.request.Request("http://127.0.0.1:%d/v1/transit/%s" % (self.hosts[label]["port"], path),
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"X-Vault-Token": TOKEN, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status

    def transit_traffic(self, label):
        """Encrypts in a loop until stopped: {"ok": n, "failed": [reasons]}."""
        self.transit(label, "keys/reload-key", {})
        state = {"ok": 0, "failed": [], "stop": False}

        def loop():
            while not state["stop"]:
                try:
                    self.transit(label, "encrypt/reload-key", {"plaintext": "aGVsbG8="})
                    state["ok"] += 1
                except (OSError, urllib.error.HTTPError) as e:
                    state["failed"].append(repr(e))
        state["thread"] = threading.Thread(target=loop)
        state["thread"].start()
        return state

    def status_json(self, label):
        return json.loads(subprocess.run([ha.ROOTSEAL, "status", "--socket", self.hosts[label]["socket"], "--json"],
                                         capture_output=True).stdout)

    # --- tests ------------------------------------------------------------------
    def test_1_a_new_store_by_reload_and_the_disagreement_it_shows(self):
        pids = {h: self.hosts[h]["proc"].pid for h in HOSTS}
        self.expect_assignment(HOSTS)
        self.disagree_everywhere(0)
        for ns in NAMESPACES:
            self.vault2_external_secret(ns, "v2-0", "one")
        u = self.unsealed_host()
        mine = [ns for ns in NAMESPACES if self.host_of_ns(ns, HOSTS) == u]
        others = [ns for ns in NAMESPACES if ns not in mine]
        self.assertTrue(mine and others, "the namespace names give the reloaded host some work and the others some")
        runs, freed = self.count(u, "sync: the new engine runs"), self.count(u, "sync: the previous engine has drained")
        traffic = self.transit_traffic(u)
        try:
            poll(lambda: traffic["ok"] > 0, "Transit answers before the reload", 20)
            # Work in flight when the old engine stops (ExternalSecrets created
            # just before and after the SIGHUP): the old one finishes or drops
            # its reconciles before it is freed, the new one syncs them all.
            burst = {}
            for i in range(24):
                ns = mine[i % len(mine)]
                self.external_secret(ns, "burst-%02d" % i, "b%d" % i)
                burst[(ns, "burst-%02d" % i)] = "b%d" % i
            self.reload(u, vault2=True)
            for i in range(24, 40):
                ns = mine[i % len(mine)]
                self.external_secret(ns, "burst-%02d" % i, "b%d" % i)
                burst[(ns, "burst-%02d" % i)] = "b%d" % i
            poll(lambda: self.count(u, "sync: the new engine runs") > runs, "the new engine started on " + u, 30)
            poll(lambda: self.count(u, "sync: the previous engine has drained") > freed, "the old engine freed", 30)
            self.sync_poll({(ns, "v2-0"): "one" for ns in mine}, "the reloaded host syncs through vault2", 30)
            self.sync_poll(burst, "the ExternalSecrets created around the reload synced", 30)
            self.disagree_everywhere(1)
            for h in HOSTS:
                poll(lambda: "the hosts' sync configurations differ" in self.full_log(h),
                     "the disagreement logged on " + h, 10)
            # A namespace follows its bucket owner's configuration: the
            # others' have no vault2 yet.
            self.assertTrue(all(self.kube.secret_value(ns, "v2-0", "v") is None for ns in others),
                            "a host without vault2 synced through it")
            served_before = traffic["ok"]
            poll(lambda: traffic["ok"] > served_before + 5, "Transit answers after the reload", 20)
        finally:
            traffic["stop"] = True
            traffic["thread"].join()
        self.assertEqual(traffic["failed"], [], "Transit requests failed across the reload")
        for h in HOSTS:
            if h != u:
                self.reload(h, vault2=True)
        self.disagree_everywhere(0)
        for h in HOSTS:
            poll(lambda: "the hosts' sync configurations agree again" in self.full_log(h),
                 "the agreement logged on " + h, 10)
        self.sync_poll({(ns, "v2-0"): "one" for ns in NAMESPACES}, "every host syncs through vault2", 30)
        self.assertEqual({h: self.hosts[h]["proc"].pid for h in HOSTS}, pids)
        self.assertTrue(all(self.hosts[h]["proc"].poll() is None for h in HOSTS), "a host exited")
        for h in HOSTS:
            self.assertGreaterEqual(self.metric(h, "rootseal_sync_engine_replacements_total"), 1)

    def test_2_an_invalid_sync_section_is_refused_and_the_old_engine_goes_on(self):
        label = "A"
        ns = next(n for n in NAMESPACES if self.host_of_ns(n, HOSTS) == label)
        self.external_secret(ns, "keep", "before")
        self.sync_poll({(ns, "keep"): "before"}, "the ExternalSecret synced", 30)
        failures = self.metric(label, "rootseal_config_reload_failures_total")
        replaced = self.metric(label, "rootseal_sync_engine_replacements_total")
        rejected = self.count(label, "reload rejected")
        self.reload(label, bad=True, vault2=not self.extra[label]["vault2"])
        poll(lambda: self.metric(label, "rootseal_config_reload_failures_total") == failures + 1,
             "the refused reload counted", 20)
        self.assertEqual(self.metric(label, "rootseal_config_last_reload_successful"), 0)
        self.assertEqual(self.count(label, "reload rejected"), rejected + 1)
        self.assertRegex(self.full_log(label), r"reload rejected.*nosuch|reload rejected.*broken")
        last = self.status_json(label)["last_reload"]
        self.assertFalse(last["ok"])
        self.assertIn("broken", last["error"])
        # The old engine goes on: a change is synced, nothing was replaced.
        self.repoint(ns, "keep", "after")
        self.sync_poll({(ns, "keep"): "after"}, "the old engine syncs after the refused reload", 30)
        self.assertEqual(self.metric(label, "rootseal_sync_engine_replacements_total"), replaced)
        # A section that parses but whose engine cannot be built (the
        # kubeconfig is missing): refused too, before anything changed.
        self.reload(label, bad=False, no_kubeconfig=True)
        poll(lambda: self.metric(label, "rootseal_config_reload_failures_total") == failures + 2,
             "the second refused reload counted", 20)
        self.assertIn("no-such-kubeconfig", self.status_json(label)["last_reload"]["error"])
        self.repoint(ns, "keep", "again")
        self.sync_poll({(ns, "keep"): "again"}, "the old engine syncs after the second refused reload", 30)
        self.assertEqual(self.metric(label, "rootseal_sync_engine_replacements_total"), replaced)
        self.reload(label, no_kubeconfig=False, vault2=not self.extra[label]["vault2"])
        poll(lambda: self.metric(label, "rootseal_config_last_reload_successful") == 1, "a good reload applied", 20)
        self.assertTrue(self.status_json(label)["last_reload"]["ok"])

    def test_3_sharded_off_and_on_by_reload(self):
        pid = self.hosts["C"]["proc"].pid
        self.expect_assignment(HOSTS)
        self.reload("C", sharded=False)
        self.expect_assignment(("A", "B"))
        poll(lambda: self.metric("A", "rootseal_sync_config_peers_disagree") == 1, "A sees C's configuration", 20)
        poll(lambda: self.metric("C", "rootseal_sync_buckets_owned") == 0, "C acts on no bucket", 20)
        self.reload("C", sharded=True)
        self.expect_assignment(HOSTS)
        self.disagree_everywhere(0)
        self.assertEqual(self.hosts["C"]["proc"].pid, pid)
        self.assertIsNone(self.hosts["C"]["proc"].poll())
        ns = next(n for n in NAMESPACES if self.host_of_ns(n, HOSTS) == "C")
        self.external_secret(ns, "back", "on")
        self.sync_poll({(ns, "back"): "on"}, "C syncs its namespace again", 30)
        self.assertRegex(self.full_log("C"), re.compile(r"not sharded any more"))

    def test_4_sync_off_and_on_by_reload(self):
        """A host whose reload turns sync off leaves the buckets to the others
        (a host without sync is not a disagreement) and its metrics read zeros;
        turned on again it takes its share and syncs."""
        pid = self.hosts["B"]["proc"].pid
        self.expect_assignment(HOSTS)
        poll(lambda: self.metric("B", "rootseal_sync_synced") == 1, "B's engine synced", 20)
        self.reload("B", enabled=False)
        self.expect_assignment(("A", "C"))
        poll(lambda: self.metric("B", "rootseal_sync_synced") == 0, "B's sync metrics read no engine", 20)
        self.disagree_everywhere(0)
        self.reload("B", enabled=True)
        self.expect_assignment(HOSTS)
        poll(lambda: self.metric("B", "rootseal_sync_synced") == 1, "B's new engine synced", 20)
        ns = next(n for n in NAMESPACES if self.host_of_ns(n, HOSTS) == "B")
        self.external_secret(ns, "again", "on")
        self.sync_poll({(ns, "again"): "on"}, "B syncs its namespace again", 30)
        self.assertEqual(self.hosts["B"]["proc"].pid, pid)


if __name__ == "__main__":
    unittest.main()
