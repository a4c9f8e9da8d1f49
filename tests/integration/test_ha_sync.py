"""The sync engine sharded across three rootseald hosts on a three-member etcd
(issue 21, docs/ha.md "The sync engine on several hosts"), against the
Kubernetes API double and the Vault KV v2 double.

Each host has its own SoftHSM2 token with its own generated root key: the
first to unseal records the cluster's root, the other two stay sealed (the
sync engine does not use the keyring; their member records, leases and
buckets work the same). Each host talks to the API double with its own bearer
token, so the double's write log says which host wrote.

  1. Every one of the 256 buckets is owned by exactly one host, the one
     rendezvous hashing (computed here independently, in Python) names; every
     Secret is written, by its namespace's owner only; `rootseal cluster
     status` shows the owners.
  2. SIGKILL of one host: its buckets are taken over within
     etcd.member_ttl + 5 s; ExternalSecrets created in its namespaces right
     after the kill are synced by the others; every Secret is correct; its
     PushSecrets (to moto_server, refreshed every 2 s) are pushed by the new
     owners when their source changes, and no pushed secret gains a version
     from a handover (moto's own version counts, checked again at the end);
     each version's VersionId records the bucket and the epoch of the owner
     that wrote it (the new owner's a larger one, the bucket record's in etcd).
  3. The host restarted: it gets its share back (the others drain and
     release it), and writes only for its own namespaces.
  4. SIGSTOP of a host past its lease while its ExternalSecrets change, the
     others take over, SIGCONT: between SIGCONT and the moment it owns a
     bucket again (etcd read by the test), it sends no write at all.
  5. SIGTERM of a host: it exits 0, the other two own every bucket and sync
     its namespaces.

Waits poll with deadlines; the only pause is the SIGSTOP itself, which is the
fault (it ends when the others have taken over, polled).
"""
import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
import unittest
import urllib.request

from rootseal_testlib import (ROOTSEALD, SOFTHSM2_MODULE, free_port, make_softhsm, rmtree, tempdir, wait_moto,
                              write_private)
from sync_testlib import ESO, K8S_TOKEN, VAULT_ROOT, Kube, b64, k8s_double, moto_secrets, vault_double
from test_ha_etcd import Etcd, poll

ROOTSEAL = os.environ["ROOTSEAL_CLI"]
PREFIX = "/rootseal-sync/"
HOSTS = ("A", "B", "C")
TTL = 3  # etcd.member_ttl, seconds
NAMESPACES = ["team-%02d" % i for i in range(24)]
PER_NS = 4
TEST_TOKEN = K8S_TOKEN  # the test's own client (Kube)


def token_of(label):
    return "host-token-" + label


# --- the protocol, written again from docs/ha.md ------------------------------
M64 = (1 << 64) - 1


def stable_hash(data):
    h = 0xcbf29ce484222325
    for c in data:
        h ^= c
        h = (h * 0x100000001b3) & M64
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & M64
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & M64
    h ^= h >> 33
    return h


def bucket_of(ns):
    return stable_hash(ns.encode()) % 256


def moto_version_ids(port, name):
    """The VersionIds of a Secrets Manager secret (in no particular order)
    and its current one, from moto_server's own state."""
    with urllib.request.urlopen("http://127.0.0.1:%d/moto-api/data.json" % port, timeout=10) as r:
        data = json.loads(r.read())
    for sec in (data.get("secretsmanager") or {}).get("FakeSecret") or []:
        if sec["name"] == name:
            return list((sec.get("versions") or {}).keys()), sec.get("default_version_id")
    return [], None


def version_epoch(version_id, bucket):
    """The epoch a VersionId made by a sharded push records
    ("rs-<bucket>-<epoch>-<32 hex>", docs/push.md); fails for another bucket's."""
    m = re.fullmatch(r"rs-(\d+)-(\d+)-[0-9a-f]{32}", version_id)
    assert m is not None and int(m.group(1)) == bucket, "VersionId %r of bucket %d" % (version_id, bucket)
    return int(m.group(2))


def owner_of(bucket, members):
    return max(sorted(members), key=lambda m: stable_hash(m.encode() + b"\0" + str(bucket).encode()))


class HaSyncRig(unittest.TestCase):
    """Three hosts, three etcd members, the doubles and moto (no test of its
    own: test_ha_sync_faults.py runs other tests on the same rig)."""
    NAMESPACES = NAMESPACES

    @classmethod
    def setUpClass(cls):
        cls.dir = tempdir("rootseal-ha-sync-")
        cls.etcd = Etcd(cls.dir)
        cls.k8s = k8s_double.K8sApiServerDouble(tokens=[token_of(h) for h in HOSTS] + [TEST_TOKEN],
                                                bookmark_interval=1.0).start()
        cls.kube = Kube(cls.k8s.port)
        cls.vault = vault_double.VaultKvDouble(root_token=VAULT_ROOT).start()
        cls.moto_port = free_port()
        cls.moto = subprocess.Popen(["moto_server", "-p", str(cls.moto_port)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        wait_moto(cls.moto, cls.moto_port)
        cls.aws_id = os.path.join(cls.dir, "aws-id")
        cls.aws_secret = os.path.join(cls.dir, "aws-secret")
        write_private(cls.aws_id, "testing\n")
        write_private(cls.aws_secret, "testing\n")
        cls.env = make_softhsm(os.path.join(cls.dir, "hsm"), "A")
        for label in HOSTS[1:]:
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "0000",
                            "--pin", "1234"], check=True, env=cls.env, stdout=subprocess.DEVNULL)
        cls.env.pop("CREDENTIALS_DIRECTORY", None)
        cls.pin = os.path.join(cls.dir, "pin")
        write_private(cls.pin, "1234\n")
        cls.before_hosts()
        for ns in cls.NAMESPACES:
            cls.kube.namespace(ns)
            cls.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-token", "namespace": ns},
                "data": {"token": b64(VAULT_ROOT)}})
            cls.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": {"name": "vault", "namespace": ns},
                "spec": {"provider": {"vault": {"server": cls.vault.url, "path": "secret", "version": "v2",
                                                "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token"}}}}}})
        cls.hosts = {}
        for label in HOSTS:
            cls.hosts[label] = {"port": free_port(), "proc": None,
                                "socket": os.path.join(cls.dir, "admin-%s.sock" % label)}
            cls.write_config(label)
            cls.start_host(label)

    @classmethod
    def tearDownClass(cls):
        for h in cls.hosts.values():
            p = h["proc"]
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
        cls.etcd.close()
        cls.moto.terminate()
        cls.moto.wait(timeout=10)
        cls.k8s.stop()
        cls.vault.stop()
        rmtree(cls.dir)

    # --- set-up ---------------------------------------------------------------
    @classmethod
    def before_hosts(cls):
        """Called before the hosts' configurations are written (a subclass
        sets up what etcd_endpoints gives)."""

    @classmethod
    def etcd_endpoints(cls, label):
        """The etcd endpoints host `label` is configured with."""
        return [cls.etcd.endpoint(i) for i in range(3)]

    @classmethod
    def external_secret(cls, ns, name, value):
        cls.vault.put("%s/%s" % (ns, name), {"v": value})
        cls.kube.create(ESO + "/namespaces/%s/externalsecrets" % ns, {
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"refreshInterval": "1h", "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
                     "target": {"name": name},
                     "data": [{"secretKey": "v", "remoteRef": {"key": "%s/%s" % (ns, name), "property": "v"}}]}})

    def push_secret(self, ns, value):
        """A PushSecret in ns pushing the Secret src-push's key pw to moto as
        push-<ns> (through the host store moto, the same on every host)."""
        self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src-push", "namespace": ns},
            "data": {"pw": b64(value)}})
        self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": "aws", "namespace": ns, "annotations": {"sync.rootseal.io/credentials": "moto"}},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}}})
        self.kube.create("/apis/external-secrets.io/v1alpha1/namespaces/%s/pushsecrets" % ns, {
            "apiVersion": "external-secrets.io/v1alpha1", "kind": "PushSecret",
            "metadata": {"name": "ps", "namespace": ns},
            "spec": {"refreshInterval": "2s", "secretStoreRefs": [{"name": "aws", "kind": "SecretStore"}],
                     "selector": {"secret": {"name": "src-push"}},
                     "data": [{"match": {"secretKey": "pw", "remoteRef": {"remoteKey": "push-" + ns}}}]}})

    def pushes_are(self, pushed):
        got = moto_secrets(self.moto_port)
        self.push_state = got
        return all(got.get("push-" + ns) == want for ns, want in pushed.items())

    def repoint(self, ns, name, value):
        """The ExternalSecret reads a new Vault key holding `value` (a new
        key: the refresh window's fetch cache cannot answer it)."""
        key = "%s/%s-%s" % (ns, name, value)
        self.vault.put(key, {"v": value})
        self.kube.merge_patch(ESO + "/namespaces/%s/externalsecrets/%s" % (ns, name), {
            "spec": {"data": [{"secretKey": "v", "remoteRef": {"key": key, "property": "v"}}]}})

    @classmethod
    def write_config(cls, label):
        kubeconfig = os.path.join(cls.dir, "kubeconfig-%s" % label)
        with open(kubeconfig, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {server: \"%s\"}\n"
                    "users:\n- name: rootseal\n  user: {token: \"%s\"}\ncontexts:\n- name: double\n"
                    "  context: {cluster: double, user: rootseal}\ncurrent-context: double\n"
                    % (cls.k8s.url, token_of(label)))
        os.chmod(kubeconfig, 0o600)
        endpoints = ", ".join('"%s"' % e for e in cls.etcd_endpoints(label))
        with open(os.path.join(cls.dir, "rootseald-%s.yaml" % label), "w") as f:
            f.write("listen:\n  address: 127.0.0.1:%d\n  allow_plaintext: true\n"
                    "state_dir: %s/state-%s\n"
                    "admin:\n  socket: %s\n"
                    "pkcs11:\n  module: %s\n  token_label: %s\n  generate_key: true\n"
                    "pin:\n  sources: [file]\n  file: %s\n"
                    "host_id: host-%s\n"
                    "storage: etcd\n"
                    "etcd:\n  endpoints: [%s]\n  prefix: %s\n  request_timeout: 1s\n  member_ttl: %ds\n"
                    "sync:\n  enabled: true\n  kubeconfig: %s\n  refresh_window: 1s\n  concurrency: 4\n"
                    "  retry_base: 200ms\n  retry_max: 1s\n"
                    "  stores:\n    moto:\n      kind: aws\n      region: us-east-1\n"
                    "      endpoint: http://127.0.0.1:%d\n      access_key_id: {file: %s}\n"
                    "      secret_access_key: {file: %s}\n      namespaces: [\"*\"]\n"
                    % (cls.hosts[label]["port"], cls.dir, label, cls.hosts[label]["socket"], SOFTHSM2_MODULE, label,
                       cls.pin, label, endpoints, PREFIX, TTL, kubeconfig, cls.moto_port, cls.aws_id, cls.aws_secret))

    @classmethod
    def start_host(cls, label):
        log = open(os.path.join(cls.dir, "rootseald-%s.log" % label), "ab")
        cls.hosts[label]["proc"] = subprocess.Popen(
            [ROOTSEALD, "--config", os.path.join(cls.dir, "rootseald-%s.yaml" % label), "--allow-root"],
            stdout=subprocess.DEVNULL, stderr=log, env=cls.env)
        log.close()

    def log_of(self, label):
        with open(os.path.join(self.dir, "rootseald-%s.log" % label), "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    # --- what etcd and the double say ------------------------------------------
    def shard_records(self):
        """bucket -> its ownership record's kv, read from etcd (a plain range read at one revision)."""
        prefix = PREFIX + "shards/"
        answer = self.etcd.post("/v3/kv/range", {
            "key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode((PREFIX + "shards0").encode()).decode()})
        return {int(base64.b64decode(kv["key"]).decode()[len(prefix):]): kv for kv in answer.get("kvs", [])}

    def owners(self):
        """bucket -> host id."""
        return {b: json.loads(base64.b64decode(kv["value"]))["host_id"] for b, kv in self.shard_records().items()}

    def epochs(self):
        """bucket -> epoch (its ownership record's create_revision)."""
        return {b: int(kv["create_revision"]) for b, kv in self.shard_records().items()}

    def expect_assignment(self, live):
        want = {b: owner_of(b, ["host-" + h for h in live]) for b in range(256)}
        last = {}

        def done():
            last["got"] = self.owners()
            return last["got"] == want
        try:
            poll(done, "every bucket owned by its rendezvous host among %s" % (live,), 30)
        except AssertionError:
            diff = {b: (last.get("got", {}).get(b), want[b]) for b in range(256)
                    if last.get("got", {}).get(b) != want[b]}
            raise AssertionError("buckets not as assigned (got, want): %r" % dict(list(diff.items())[:10]))
        return want

    def watch_owner_free(self, host_id, since):
        """Starts a thread that reads etcd until host_id owns a bucket:
        ["until"] is then the last instant (from `since`) at which a read
        still showed it owning none. Set ["stop"], join ["thread"]."""
        state = {"until": since, "stop": False}

        def watch():
            deadline = time.monotonic() + 30
            while not state["stop"] and time.monotonic() < deadline:
                asked = time.monotonic()
                try:
                    owners = self.owners()
                except OSError:
                    continue
                if host_id in owners.values():
                    return
                state["until"] = asked  # no bucket of host_id at a revision read after this instant
        state["thread"] = threading.Thread(target=watch)
        state["thread"].start()
        return state

    def host_of_ns(self, ns, live):
        return owner_of(bucket_of(ns), ["host-" + h for h in live])[len("host-"):]

    def writes(self, label, since=0.0, until=float("inf")):
        with self.k8s.write_log_lock:
            return [w for w in self.k8s.write_log if w["token"] == token_of(label) and since <= w["t"] <= until]

    def secrets_correct(self, expected):
        wrong = [(ns, name, value, self.kube.secret_value(ns, name, "v")) for (ns, name), value in expected.items()
                 if self.kube.secret_value(ns, name, "v") != value]
        self.wrong = wrong
        return not wrong

    def sync_poll(self, expected, what, timeout):
        try:
            poll(lambda: self.secrets_correct(expected), what, timeout)
        except AssertionError as e:
            raise AssertionError("%s; wrong (ns, name, want, got): %r\n--- A:\n%s\n--- C:\n%s" % (
                e, self.wrong[:5], self.log_of("A")[-2000:], self.log_of("C")[-3000:]))



class HaSyncTest(HaSyncRig):
    # --- the test (one sequence: each step starts from the last one's state) ---
    def test_sharded_sync(self):
        expected = {(ns, "es-%d" % i): "v1" for ns in NAMESPACES for i in range(PER_NS)}
        mine = {h: [ns for ns in NAMESPACES if self.host_of_ns(ns, HOSTS) == h] for h in HOSTS}
        for h in HOSTS:
            self.assertGreaterEqual(len(mine[h]), 3, "the namespace names give every host some work: %r" % mine)

        # 1. Every bucket has exactly one owner, the rendezvous one (the first
        #    host up took them all, and handed each over as the others
        #    joined); the ExternalSecrets made then are written, each
        #    namespace by its owner only.
        self.expect_assignment(HOSTS)
        settled = time.monotonic()
        for ns in NAMESPACES:
            for i in range(PER_NS):
                self.external_secret(ns, "es-%d" % i, "v1")
        self.sync_poll(expected, "every Secret written", 60)
        # PushSecrets in two namespaces of each host, refreshed every 2 s:
        # one version each, whatever happens to the hosts below.
        pushed = {}
        for h in HOSTS:
            for ns in mine[h][:2]:
                self.push_secret(ns, "p-" + ns)
                pushed[ns] = ("p-" + ns, 1)
        poll(lambda: self.pushes_are(pushed), "every PushSecret pushed once", 30)
        for h in HOSTS:
            for w in self.writes(h, since=settled):
                parts = w["path"].split("/")
                if "namespaces" in parts:
                    ns = parts[parts.index("namespaces") + 1]
                    self.assertEqual(self.host_of_ns(ns, HOSTS), h, "host %s wrote %s %s" % (h, w["method"],
                                                                                          w["path"]))
        status = json.loads(subprocess.run([ROOTSEAL, "cluster", "status", "--socket", self.hosts["A"]["socket"],
                                            "--json"], check=True, capture_output=True).stdout)
        sync = status["sync"]
        self.assertEqual(sync["unowned"], 0)
        self.assertEqual(sum(sync["owners"].values()), 256)
        self.assertEqual(sorted(sync["owners"]), ["host-A", "host-B", "host-C"])
        self.assertEqual(len(sync["owned"]), sync["owners"]["host-A"])
        text = subprocess.run([ROOTSEAL, "cluster", "status", "--socket", self.hosts["A"]["socket"]], check=True,
                              capture_output=True, text=True).stdout
        self.assertIn("sync buckets  256: host-A %d, host-B %d, host-C %d (0 without an owner)" % (
            sync["owners"]["host-A"], sync["owners"]["host-B"], sync["owners"]["host-C"]), text)

        # 2. SIGKILL C: its buckets go to A and B within TTL + 5 s; new
        #    ExternalSecrets in C's namespaces are synced by them.
        killed = time.monotonic()
        self.hosts["C"]["proc"].kill()
        self.hosts["C"]["proc"].wait()
        for ns in mine["C"]:
            self.external_secret(ns, "after-kill", "v2")
            expected[(ns, "after-kill")] = "v2"
        self.expect_assignment(("A", "B"))
        took = time.monotonic() - killed
        self.assertLess(took, TTL + 5, "the buckets of a killed host are taken over within the TTL + 5 s")
        self.sync_poll(expected, "every Secret correct after the takeover", TTL + 10)
        # C's PushSecrets are the new owners': a changed source is pushed (one
        # new version), the unchanged one keeps its single version.
        changed = mine["C"][0]
        self.kube.merge_patch("/api/v1/namespaces/%s/secrets/src-push" % changed, {"data": {"pw": b64("p2")}})
        pushed[changed] = ("p2", 2)
        poll(lambda: self.pushes_are(pushed), "C's PushSecrets pushed by their new owners", 30)
        # Each version records who wrote it: C under its epoch, the change
        # under the new owner's (larger, its ownership record's in etcd).
        bucket = bucket_of(changed)
        ids, current = moto_version_ids(self.moto_port, "push-" + changed)
        epochs = sorted(version_epoch(v, bucket) for v in ids)
        self.assertEqual(len(epochs), 2, ids)
        self.assertLess(epochs[0], epochs[1])
        self.assertEqual(version_epoch(current, bucket), epochs[1])
        self.assertEqual(epochs[1], self.epochs()[bucket])
        print("takeover after SIGKILL: %.1f s (member_ttl %d s)" % (took, TTL), flush=True)

        # 3. C restarted: it gets exactly its share back.
        self.start_host("C")
        self.expect_assignment(HOSTS)
        restarted = time.monotonic()
        for ns in mine["C"]:
            self.repoint(ns, "es-0", "v3")
            expected[(ns, "es-0")] = "v3"
        self.sync_poll(expected, "C syncs its namespaces again", 30)
        for w in self.writes("C", since=restarted):
            ns = w["path"].split("/")[w["path"].split("/").index("namespaces") + 1]
            self.assertIn(ns, mine["C"], "C wrote %s %s" % (w["method"], w["path"]))

        # 4. SIGSTOP C past its lease while its ExternalSecrets change; A and
        #    B take over; SIGCONT: C writes nothing until it owns a bucket again.
        self.hosts["C"]["proc"].send_signal(signal.SIGSTOP)
        for ns in mine["C"]:
            self.repoint(ns, "es-1", "v4")
            expected[(ns, "es-1")] = "v4"
        self.expect_assignment(("A", "B"))
        self.sync_poll(expected, "A and B sync C's namespaces", 30)
        # C's events (the changed ExternalSecrets) wait in its sockets and queue.
        cont = time.monotonic()
        without = self.watch_owner_free("host-C", cont)
        self.hosts["C"]["proc"].send_signal(signal.SIGCONT)
        try:
            self.expect_assignment(HOSTS)
        finally:
            without["stop"] = True
            without["thread"].join()
        stale = self.writes("C", since=cont, until=without["until"])
        print("after SIGCONT: C owned nothing for %.2f s, wrote %d times then" % (without["until"] - cont, len(stale)),
              flush=True)
        self.assertEqual(stale, [], "C wrote after losing its buckets:\n%s" % self.log_of("C"))
        self.sync_poll(expected, "every Secret correct at the end", 30)
        self.assertTrue(self.pushes_are(pushed), "one version per pushed secret (no extra version from the "
                        "handovers): %r" % self.push_state)
        for ns in pushed:
            for v in moto_version_ids(self.moto_port, "push-" + ns)[0]:
                version_epoch(v, bucket_of(ns))  # every version written under its namespace's bucket's epoch
        for h in HOSTS:
            self.assertIsNone(self.hosts[h]["proc"].poll(), "host %s still runs" % h)

        # 5. A clean stop of B: it releases its buckets (and its lease), A
        #    and C own them all, and B exits 0.
        self.hosts["B"]["proc"].send_signal(signal.SIGTERM)
        self.assertEqual(self.hosts["B"]["proc"].wait(timeout=30), 0, self.log_of("B"))
        self.expect_assignment(("A", "C"))
        for ns in [ns for ns in NAMESPACES if self.host_of_ns(ns, HOSTS) == "B"]:
            self.repoint(ns, "es-2", "v5")
            expected[(ns, "es-2")] = "v5"
        self.sync_poll(expected, "A and C sync B's namespaces after its clean stop", 30)


if __name__ == "__main__":
    unittest.main()
