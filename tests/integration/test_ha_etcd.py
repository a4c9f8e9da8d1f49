"""Two rootseald hosts sharing one keyring on a real three-member etcd
(storage: etcd; docs/ha.md).

Each host has its own SoftHSM2 token holding the same root key: `rootseal
ceremony init` makes it on token A (two custodians, threshold 2) and
`ceremony restore` imports it into token B from the two sealed shares. Both
hosts point at the same etcd members (Debian's /usr/bin/etcd, started here on
free loopback ports) with authentication on: the hosts log in as a user whose
role covers the prefix only, its password read from a private file. Clients
are hvac.

  - create on A, encrypt on A, decrypt on B (B re-reads the key it has not seen);
  - rotate on B, A decrypts the new version; a further rotate on B reaches A's
    keyring through the watch (A's key read shows it without any request naming it);
  - the values in etcd hold wrapped keys only (their fields checked; the
    plaintexts sent are in none of them);
  - two etcd members killed: rotate answers 503 with the reason on both
    hosts while encrypt and decrypt keep working; members back: rotate
    works again without a restart, and the other host follows;
  - a third host whose token holds another root key stays sealed with that
    reason and writes nothing;
  - Vault's transit-seal sequence against A; A SIGKILLed; the sequence
    against B opens every blob A made;
  - the Kubernetes KMS v2 plugin on both hosts (kube-apiserver-like grpc-js
    client, tests/integration/kms_client): one key_id on both, a seed
    encrypted on A decrypts on B, a rotation on B changes A's key_id through
    the watch, old seeds keep decrypting on both; every audit line names
    its host.
Waits poll a condition with a deadline.
"""
import base64
import json
import os
import subprocess
import time
import unittest
import urllib.request

import hvac

from rootseal_testlib import free_port, npm_install, rmtree, sha256_hex, tempdir, write_private, make_softhsm

ROOTSEALD = os.environ["ROOTSEALD"]
ROOTSEAL = os.environ["ROOTSEAL_CLI"]
MODULE = os.environ.get("SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
ETCD = "/usr/bin/etcd"
TOKEN = "rs.ha-test-token-0123456789abcdef0123456789abcdef"
SEAL_TOKEN = "s.vault-transit-seal-token-for-the-ha-test"  # renewable, 1 h, policy autounseal
ROOT_PASSWORD = "etcd-root-pw-for-the-test"
ETCD_USER = "rootseal"
ETCD_PASSWORD = "etcd-rootseal-pw-for-the-test"
PREFIX = "/rootseal-ha/"
MEMBER_TTL = 3  # seconds: etcd.member_ttl, the lease of each host's record
HERE = os.path.dirname(os.path.abspath(__file__))
KMS_PROTO = os.path.join(HERE, "..", "..", "kmsplugin", "proto", "api.proto")
KMS_KEY = "k8s-etcd"


def poll(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, hvac.exceptions.VaultError) as e:
            last = e
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last %r)" % (what, last))


def rootseal_with_pin(args, token, env, pin="1234"):
    """rootseal on SoftHSM2 token `token` with the PIN on a pipe (never in argv)."""
    r_fd, w_fd = os.pipe()
    os.write(w_fd, pin.encode() + b"\n")
    os.close(w_fd)
    try:
        p = subprocess.run([ROOTSEAL] + args + ["--module", MODULE, "--token", token, "--pin-fd", str(r_fd)],
                           capture_output=True, env=env, timeout=120, pass_fds=(r_fd,))
    finally:
        os.close(r_fd)
    if p.returncode != 0:
        raise AssertionError("rootseal %s: %s" % (" ".join(args), p.stderr.decode(errors="replace")))
    return p.stdout.decode()


def share_root(base, env, labels):
    """One root key on the tokens `labels`: `rootseal ceremony init` (two
    custodians, threshold 2) on the first, `ceremony restore` on the others."""
    keys = os.path.join(base, "keys")
    os.makedirs(keys)
    custodians = []
    for name in ("alice", "bob"):
        key = os.path.join(keys, name + ".key")
        subprocess.run(["openssl", "genpkey", "-algorithm", "X25519", "-out", key], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", key + ".pub"], check=True)
        custodians += ["--custodian", "%s=%s.pub" % (name, key)]
    shares = os.path.join(base, "shares")
    transcript = os.path.join(base, "transcript")
    rootseal_with_pin(["ceremony", "init", "--threshold", "2", "--out", shares, "--transcript-dir", transcript,
                       "--officer", "Olga", "--witness", "Walt"] + custodians, labels[0], env)
    files = sorted(os.path.join(shares, f) for f in os.listdir(shares))
    for label in labels[1:]:
        restore = ["ceremony", "restore", "--transcript-dir", transcript]
        for f, name in zip(files, ("alice", "bob")):
            restore += ["--share", f, "--key", os.path.join(keys, name + ".key")]
        rootseal_with_pin(restore, label, env)


class EtcdExited(Exception):
    """An etcd member's process ended while it was awaited."""


class Etcd:
    """Three etcd members on free loopback ports, each with its own data folder."""

    START_ATTEMPTS = 3

    def __init__(self, base):
        self.base = base
        # A port found free can be taken before etcd binds it (other tests pick
        # ports too): a member that exits while the cluster forms is a new
        # attempt on fresh ports and folders, not a failed test.
        for attempt in range(1, self.START_ATTEMPTS + 1):
            self.members = []
            for i in range(3):
                self.members.append({"name": "m%d" % i, "client": free_port(), "peer": free_port(),
                                     "data": os.path.join(base, "a%d-m%d" % (attempt, i)), "proc": None})
            self.initial = ",".join("%s=http://127.0.0.1:%d" % (m["name"], m["peer"]) for m in self.members)
            for i in range(3):
                self.start(i, new=True)
            try:
                for i in range(3):
                    self.wait_healthy(i)
                return
            except EtcdExited:
                self.close()
                if attempt == self.START_ATTEMPTS:
                    raise

    def start(self, i, new=False):
        m = self.members[i]
        log = open(os.path.join(self.base, m["name"] + ".log"), "ab")
        args = [ETCD, "--name", m["name"], "--data-dir", m["data"],
                "--listen-client-urls", "http://127.0.0.1:%d" % m["client"],
                "--advertise-client-urls", "http://127.0.0.1:%d" % m["client"],
                "--listen-peer-urls", "http://127.0.0.1:%d" % m["peer"],
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % m["peer"],
                "--initial-cluster", self.initial, "--initial-cluster-token", "rootseal-ha-test",
                "--initial-cluster-state", "new" if new else "existing", "--log-level", "error"]
        m["proc"] = subprocess.Popen(args, stdout=log, stderr=log)
        log.close()

    def endpoint(self, i):
        return "http://127.0.0.1:%d" % self.members[i]["client"]

    def healthy(self, i):
        with urllib.request.urlopen(self.endpoint(i) + "/health", timeout=2) as r:
            return json.loads(r.read()).get("health") == "true"

    def log_tail(self, i, lines=20):
        with open(os.path.join(self.base, self.members[i]["name"] + ".log"), "rb") as f:
            return b"".join(f.readlines()[-lines:]).decode(errors="replace")

    def wait_healthy(self, i, timeout=60):
        """Until member i answers healthy; EtcdExited at once if it exited,
        AssertionError (with every member's log) after the timeout."""
        def check():
            p = self.members[i]["proc"]
            if p.poll() is not None:
                raise EtcdExited("etcd member %d exited %s:\n%s" % (i, p.returncode, self.log_tail(i)))
            return self.healthy(i)
        try:
            poll(check, "etcd member %d healthy" % i, timeout)
        except AssertionError as e:
            logs = "\n".join("-- m%d:\n%s" % (k, self.log_tail(k)) for k in range(len(self.members)))
            raise AssertionError("%s\n%s" % (e, logs)) from None

    def kill(self, i):
        p = self.members[i]["proc"]
        p.kill()
        p.wait()

    def etcdctl(self, *args, stdin=b""):
        p = subprocess.run(["/usr/bin/etcdctl", "--endpoints=" + self.endpoint(0)] + list(args), input=stdin,
                           capture_output=True, env=dict(os.environ, ETCDCTL_API="3"), timeout=60)
        if p.returncode != 0:
            raise AssertionError("etcdctl %s: %s" % (" ".join(args), p.stderr.decode(errors="replace")))

    def enable_auth(self, prefix, user, password):
        """root (for the test's own reads) and `user` with a role on `prefix` only."""
        self.etcdctl("user", "add", "root", "--interactive=false", stdin=ROOT_PASSWORD.encode() + b"\n")
        self.etcdctl("role", "add", "rootseal")
        self.etcdctl("role", "grant-permission", "rootseal", "--prefix=true", "readwrite", prefix)
        self.etcdctl("user", "add", user, "--interactive=false", stdin=password.encode() + b"\n")
        self.etcdctl("user", "grant-role", user, "rootseal")
        self.etcdctl("auth", "enable")

    def post(self, path, body, token=None):
        headers = {"Authorization": token} if token else {}
        req = urllib.request.Request(self.endpoint(0) + path, data=json.dumps(body).encode(), method="POST",
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def range_prefix(self, prefix):
        """Every key under prefix and its value, read as etcd's root user."""
        token = self.post("/v3/auth/authenticate", {"name": "root", "password": ROOT_PASSWORD})["token"]
        answer = self.post("/v3/kv/range", {
            "key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode(prefix[:-1].encode() + bytes([ord(prefix[-1]) + 1])).decode()}, token)
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]) for kv in answer.get("kvs", [])}

    def close(self):
        for m in self.members:
            if m["proc"] is not None and m["proc"].poll() is None:
                m["proc"].kill()
                m["proc"].wait()


class HaEtcdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempdir("rootseal-ha-")
        cls.kms_client = npm_install("kms-client", os.path.join(HERE, "kms_client"))
        cls.etcd = Etcd(cls.dir)
        cls.env = make_softhsm(os.path.join(cls.dir, "hsm"), "A")
        for label in ("B", "C"):
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "0000",
                            "--pin", "1234"], check=True, env=cls.env, stdout=subprocess.DEVNULL)
        cls.pin = os.path.join(cls.dir, "pin")
        write_private(cls.pin, "1234\n")
        cls.etcd.enable_auth(PREFIX, ETCD_USER, ETCD_PASSWORD)
        cls.etcd_password = os.path.join(cls.dir, "etcd-password")
        write_private(cls.etcd_password, ETCD_PASSWORD + "\n")
        cls.make_shared_root()
        cls.hosts = {}
        for label in ("A", "B"):
            cls.hosts[label] = cls.start_host(label)
        cls.clients = {label: hvac.Client(url="http://127.0.0.1:%d" % h["port"], token=TOKEN, timeout=30)
                       for label, h in cls.hosts.items()}
        for label in cls.hosts:
            poll(lambda: cls.health(label) == 200, "host %s unsealed" % label, 60)

    @classmethod
    def tearDownClass(cls):
        for h in cls.hosts.values():
            if h["proc"].poll() is None:
                h["proc"].terminate()
                h["proc"].wait(timeout=30)
        cls.etcd.close()
        rmtree(cls.dir)

    @classmethod
    def make_shared_root(cls):
        """The same root key on tokens A and B, through a two-custodian ceremony."""
        share_root(cls.dir, cls.env, ("A", "B"))

    @classmethod
    def start_host(cls, label, generate_key=False):
        port = free_port()
        config = os.path.join(cls.dir, "rootseald-%s.yaml" % label)
        endpoints = ", ".join('"%s"' % cls.etcd.endpoint(i) for i in range(3))
        with open(config, "w") as f:
            f.write("listen:\n  address: 127.0.0.1:%d\n  allow_plaintext: true\n"
                    "state_dir: %s/state-%s\n"
                    "pkcs11:\n  module: %s\n  token_label: %s\n  generate_key: %s\n"
                    "pin:\n  sources: [file]\n  file: %s\n"
                    "seal:\n  probe_interval: 200ms\n"
                    "host_id: host-%s\n"
                    "admin:\n  socket: %s\n"
                    "kms_plugin:\n  enabled: true\n  socket: %s\n  allowed_uids: [%d]\n  key: %s\n"
                    "storage: etcd\n"
                    "etcd:\n  endpoints: [%s]\n  prefix: %s\n  request_timeout: 1s\n  member_ttl: %ds\n"
                    "  username: %s\n  password_file: %s\n"
                    "policies:\n  autounseal:\n    keys: [autounseal]\n    operations: [encrypt, decrypt]\n"
                    "tokens:\n  - name: ha-test\n    sha256: %s\n    policies: [root]\n"
                    "  - name: vault-seal\n    sha256: %s\n    policies: [autounseal]\n    ttl: 1h\n"
                    "    renewable: true\n"
                    % (port, cls.dir, label, MODULE, label, "true" if generate_key else "false", cls.pin, label,
                       os.path.join(cls.dir, "admin-%s.sock" % label), cls.kms_socket(label), os.getuid(), KMS_KEY,
                       endpoints, PREFIX, MEMBER_TTL, ETCD_USER,
                       cls.etcd_password, sha256_hex(TOKEN), sha256_hex(SEAL_TOKEN)))
        log = open(os.path.join(cls.dir, "rootseald-%s.log" % label), "ab")
        proc = subprocess.Popen([ROOTSEALD, "--config", config, "--allow-root"], stdout=subprocess.DEVNULL,
                                stderr=log, env=cls.env)
        log.close()
        return {"port": port, "proc": proc, "log": os.path.join(cls.dir, "rootseald-%s.log" % label),
                "socket": os.path.join(cls.dir, "admin-%s.sock" % label)}

    @classmethod
    def kms_socket(cls, label):
        return os.path.join(cls.dir, "kms-%s.sock" % label)

    def kms(self, label, ops):
        """The KMS v2 plugin of host `label`, called as kube-apiserver does (check.js validates every answer)."""
        p = subprocess.run(["node", os.path.join(self.kms_client, "check.js"), self.kms_socket(label), KMS_PROTO],
                           input=json.dumps(ops), capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        results = json.loads(p.stdout)
        for r in results:
            self.assertNotIn("invalid", r, "an answer kube-apiserver would reject: %r" % r)
        return results

    def kms_key_id(self, label):
        [r] = self.kms(label, [{"op": "status_until", "want": "ok", "timeout_ms": 30000}])
        self.assertTrue(r["ok"], r)
        return r["key_id"]

    @classmethod
    def health(cls, label):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/v1/sys/health" % cls.hosts[label]["port"],
                                        timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def log(self, label):
        with open(self.hosts[label]["log"], "rb") as f:
            return f.read().decode(errors="replace")

    def encrypt(self, label, key, text):
        r = self.clients[label].secrets.transit.encrypt_data(key, base64.b64encode(text).decode())
        return r["data"]["ciphertext"]

    def decrypt(self, label, key, ciphertext):
        r = self.clients[label].secrets.transit.decrypt_data(key, ciphertext)
        return base64.b64decode(r["data"]["plaintext"])

    def latest(self, label, key):
        return self.clients[label].secrets.transit.read_key(key)["data"]["latest_version"]

    def raw_rotate(self, label, key):
        """POST keys/<key>/rotate without hvac's exceptions: (status, body)."""
        req = urllib.request.Request("http://127.0.0.1:%d/v1/transit/keys/%s/rotate" % (self.hosts[label]["port"], key),
                                     data=b"{}", method="POST", headers={"X-Vault-Token": TOKEN})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def test_1_hosts_share_one_keyring(self):
        a, b = self.clients["A"], self.clients["B"]
        a.secrets.transit.create_key("orders")
        ct1 = self.encrypt("A", "orders", b"first secret")
        self.assertTrue(ct1.startswith("vault:v1:"))
        self.assertEqual(self.decrypt("B", "orders", ct1), b"first secret")

        b.secrets.transit.rotate_key("orders")
        ct2 = self.encrypt("B", "orders", b"second secret")
        self.assertTrue(ct2.startswith("vault:v2:"), ct2)
        self.assertEqual(self.decrypt("A", "orders", ct2), b"second secret")
        self.assertEqual(self.decrypt("A", "orders", ct1), b"first secret")

        # Through the watch alone: A's key read (no version named) catches up.
        b.secrets.transit.rotate_key("orders")
        poll(lambda: self.latest("A", "orders") == 3, "host A sees version 3 through the watch")
        ct3 = self.encrypt("A", "orders", b"third secret")
        self.assertTrue(ct3.startswith("vault:v3:"), ct3)
        self.assertEqual(self.decrypt("B", "orders", ct3), b"third secret")

        # A create on B of the key A made is Vault's upsert: the same key.
        b.secrets.transit.create_key("orders")
        self.assertEqual(self.latest("B", "orders"), 3)

        # What etcd holds: one value per key, wrapped versions, no plaintext.
        values = self.etcd.range_prefix(PREFIX)
        self.assertIn(PREFIX + "keys/orders", values)
        record = json.loads(values[PREFIX + "keys/orders"])
        self.assertEqual(sorted(record), ["config", "created", "derived", "format", "name", "type", "versions"])
        self.assertEqual([v["version"] for v in record["versions"]], [1, 2, 3])
        self.assertEqual(len({v["kcv"] for v in record["versions"]}), 1)  # one root key wrapped them all
        for raw in values.values():
            for plain in (b"first secret", b"second secret", b"third secret"):
                self.assertNotIn(plain, raw)
                self.assertNotIn(base64.b64encode(plain), raw)

    def test_1b_kms_plugin_serves_one_keyring_from_every_host(self):
        key_id1 = self.kms_key_id("A")
        self.assertEqual(self.kms_key_id("B"), key_id1)  # same cluster id, key, version and creation time
        seed1 = os.urandom(32)
        [enc1] = self.kms("A", [{"op": "encrypt", "plaintext": base64.b64encode(seed1).decode()}])
        self.assertTrue(enc1["ok"], enc1)
        self.assertEqual(enc1["key_id"], key_id1)

        def decrypt(label, enc):
            [r] = self.kms(label, [{"op": "decrypt", "ciphertext": enc["ciphertext"], "key_id": enc["key_id"],
                                    "annotations": enc["annotations"]}])
            return r

        self.assertEqual(decrypt("B", enc1), {"ok": True, "plaintext": base64.b64encode(seed1).decode()})

        # A rotation on B: A's key_id follows through the watch, with no request naming the key.
        status, body = self.raw_rotate("B", KMS_KEY)
        self.assertEqual(status, 200, body)
        key_id2 = self.kms_key_id("B")
        self.assertNotEqual(key_id2, key_id1)
        poll(lambda: self.kms_key_id("A") == key_id2, "A's KMS plugin reports the key_id of B's rotation")
        seed2 = os.urandom(32)
        [enc2] = self.kms("A", [{"op": "encrypt", "plaintext": base64.b64encode(seed2).decode()}])
        self.assertEqual(enc2["key_id"], key_id2)
        for label in ("A", "B"):
            self.assertEqual(decrypt(label, enc1)["plaintext"], base64.b64encode(seed1).decode())
            self.assertEqual(decrypt(label, enc2)["plaintext"], base64.b64encode(seed2).decode())
            # A ciphertext presented under a key_id it was not issued under.
            stale = dict(enc1, key_id=key_id2)
            self.assertEqual(decrypt(label, stale).get("code"), "INVALID_ARGUMENT")
        # Each host's audit log names it on every line (the KMS calls above included).
        for label in ("A", "B"):
            with open(os.path.join(self.dir, "state-%s" % label, "audit.log")) as f:
                lines = [json.loads(line) for line in f]
            self.assertTrue(any(line.get("operation") == "kms_decrypt" for line in lines))
            self.assertEqual({line.get("host") for line in lines}, {"host-%s" % label})

    def admin(self, label, *args):
        p = subprocess.run([ROOTSEAL] + list(args) + ["--socket", self.hosts[label]["socket"], "--json"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def http_status(self, label, token, key="shared-tokens"):
        req = urllib.request.Request("http://127.0.0.1:%d/v1/transit/encrypt/%s" % (self.hosts[label]["port"], key),
                                     data=json.dumps({"plaintext": base64.b64encode(b"x").decode()}).encode(),
                                     method="POST", headers={"X-Vault-Token": token})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def test_1c_tokens_created_on_one_host_work_on_every_host(self):
        self.clients["A"].secrets.transit.create_key("shared-tokens")
        made = self.admin("A", "token", "create", "--policy", "root", "--ttl", "1h", "--renewable",
                          "--display-name", "shared")
        token, accessor = made["token"], made["accessor"]
        self.assertEqual(self.http_status("A", token), 200)
        # B learns of it through its watch on <prefix>tokens/ (no restart, no request naming it).
        poll(lambda: self.http_status("B", token) == 200, "B accepts the token created on A")
        self.assertIn(accessor, [t["accessor"] for t in self.admin("B", "token", "list")["tokens"]])
        # In etcd: the hash and the accessor, never the token.
        records = self.etcd.range_prefix(PREFIX + "tokens/")
        self.assertEqual(len(records), 1, records)
        self.assertNotIn(token.encode(), b"".join(records.values()))
        self.assertEqual(json.loads(next(iter(records.values())))["accessor"], accessor)
        # Renewed on B (Vault's renew-self): A holds B's expiry. A renewal sets
        # now + ttl: once the clock has left the creation's second, the
        # renewed expiry is later than the first one, whichever host reads it.
        first = self.admin("A", "token", "lookup", accessor)["expire_time"]
        poll(lambda: int(time.time()) + 3600 > first, "the clock past the creation's second")
        req = urllib.request.Request("http://127.0.0.1:%d/v1/auth/token/renew-self" % self.hosts["B"]["port"],
                                     data=b"{}", method="POST", headers={"X-Vault-Token": token})
        with urllib.request.urlopen(req, timeout=30) as r:
            self.assertEqual(r.status, 200)
        renewed = self.admin("B", "token", "lookup", accessor)["expire_time"]
        self.assertGreater(renewed, first)
        poll(lambda: self.admin("A", "token", "lookup", accessor)["expire_time"] == renewed, "A holds B's renewal")
        # Revoked on B: refused on A without a restart.
        self.admin("B", "token", "revoke", accessor)
        poll(lambda: self.http_status("A", token) == 403, "A refuses the token revoked on B")
        self.assertEqual(self.http_status("B", token), 403)
        self.assertEqual(self.etcd.range_prefix(PREFIX + "tokens/"), {})

    def test_2_quorum_loss_stops_key_changes_only(self):
        a, b = self.clients["A"], self.clients["B"]
        a.secrets.transit.create_key("quorum")
        ct = self.encrypt("A", "quorum", b"before")
        self.assertEqual(self.decrypt("B", "quorum", ct), b"before")

        self.etcd.kill(1)
        self.etcd.kill(2)
        try:
            for label in ("A", "B"):
                status, body = self.raw_rotate(label, "quorum")
                self.assertEqual(status, 503, body)
                self.assertIn("key changes are refused until it is back", " ".join(body.get("errors", [])))
                # encrypt and decrypt keep working on both hosts, across them
                ct_h = self.encrypt(label, "quorum", b"during " + label.encode())
                for other in ("A", "B"):
                    self.assertEqual(self.decrypt(other, "quorum", ct_h), b"during " + label.encode())
                self.assertEqual(self.decrypt(label, "quorum", ct), b"before")
        finally:
            self.etcd.start(1)
            self.etcd.start(2)
        self.etcd.wait_healthy(1)
        self.etcd.wait_healthy(2)
        # Back without a restart (an election may still be under way: poll).
        poll(lambda: self.raw_rotate("A", "quorum")[0] == 200, "rotate on A after quorum is back", 60)
        poll(lambda: self.latest("B", "quorum") == 2, "host B follows through the watch", 60)
        ct2 = self.encrypt("B", "quorum", b"after")
        self.assertTrue(ct2.startswith("vault:v2:"), ct2)
        self.assertEqual(self.decrypt("A", "quorum", ct2), b"after")
        for label in ("A", "B"):
            self.assertIsNone(self.hosts[label]["proc"].poll(), self.log(label))

    def test_3_a_host_with_another_root_stays_sealed(self):
        """Token C holds a root key of its own (generate_key): its host must not
        join the cluster's keyring."""
        self.clients["A"].secrets.transit.create_key("guarded")
        self.hosts["C"] = self.start_host("C", generate_key=True)
        port = self.hosts["C"]["port"]

        def status():
            with urllib.request.urlopen("http://127.0.0.1:%d/v1/sys/seal-status" % port, timeout=5) as r:
                return json.loads(r.read())
        reason = poll(lambda: status()["sealed_reason"] if "is not the cluster's" in status()["sealed_reason"]
                      else None, "host C sealed for its root key", 60)
        self.assertIn("writes nothing", reason)
        st = status()
        self.assertTrue(st["sealed"])
        self.assertEqual(st["storage_type"], "etcd")
        self.assertNotEqual(self.health("C"), 200)
        # Nothing it wrote: one keyring key, wrapped by the cluster's root, and
        # every version in etcd under it.
        values = self.etcd.range_prefix(PREFIX)
        keyring_keys = [json.loads(raw) for key, raw in values.items() if key.startswith(PREFIX + "keyring/")]
        self.assertEqual(len(keyring_keys), 1, keyring_keys)
        self.assertEqual(values[PREFIX + "cluster/root_kcv"].decode(), keyring_keys[0]["root_kcv"])
        kcvs = {v["kcv"] for key, raw in values.items() if key.startswith(PREFIX + "keys/")
                for v in json.loads(raw)["versions"]}
        self.assertEqual(kcvs, {"kk%d:%s" % (keyring_keys[0]["id"], keyring_keys[0]["kcv"])})
        self.assertEqual(self.latest("A", "guarded"), 1)

    def cluster_status(self, label):
        """`rootseal cluster status --json` against host `label`: (exit code, data)."""
        p = subprocess.run([ROOTSEAL, "cluster", "status", "--socket", self.hosts[label]["socket"], "--json"],
                           capture_output=True, timeout=60)
        if p.returncode not in (0, 2):
            raise AssertionError("rootseal cluster status: %s" % p.stderr.decode(errors="replace"))
        return p.returncode, json.loads(p.stdout)

    def members(self, label):
        return {m["host_id"]: m for m in self.cluster_status(label)[1].get("members", [])}

    def test_3b_cluster_status_lists_every_host(self):
        """Every host (A, B, and C sealed by its other root) registered; the
        etcd endpoints' health; sys/leader's HA fields."""
        kcv = self.etcd.range_prefix(PREFIX)[PREFIX + "cluster/root_kcv"].decode()

        def registered():
            m = self.members("A")
            return (set(m) == {"host-A", "host-B", "host-C"} and
                    all(not m[h]["sealed"] and m[h]["root_kcv"] == kcv for h in ("host-A", "host-B")))
        # A record is rewritten within a keepalive round (member_ttl / 3) of a
        # change, and after an etcd outage (test 2) once etcd answers again.
        poll(registered, "three hosts registered, A and B unsealed", 30)
        rc, st = self.cluster_status("B")
        self.assertEqual(rc, 0)
        self.assertEqual((st["storage"], st["ha_enabled"], st["prefix"]), ("etcd", True, PREFIX))
        self.assertEqual(st["cluster_root_kcv"], kcv)
        members = {m["host_id"]: m for m in st["members"]}
        for label in ("A", "B"):
            m = members["host-" + label]
            self.assertEqual((m["sealed"], m["root_kcv"], m["version"]), (False, kcv, "0.1.0"), m)
            self.assertEqual(m["self"], label == "B")
        self.assertTrue(members["host-C"]["sealed"])
        self.assertNotEqual(members["host-C"]["root_kcv"], kcv)
        # B's keyring has every change (a rotate on A reaches it through the watch).
        self.clients["A"].secrets.transit.create_key("status")
        self.clients["A"].secrets.transit.rotate_key("status")
        poll(lambda: self.members("A")["host-B"]["current"] and
             self.members("A")["host-B"]["seen_revision"] >= self.cluster_status("A")[1]["latest_key_revision"],
             "host B's record shows its keyring current", 30)
        self.assertTrue(st["this_host"]["registered"])
        self.assertEqual(st["this_host"]["host_id"], "host-B")
        # etcd: three endpoints reachable, one the leader, all agreeing on it.
        self.assertEqual(len(st["endpoints"]), 3)
        self.assertTrue(all(e["reachable"] for e in st["endpoints"]), st["endpoints"])
        self.assertEqual(sum(1 for e in st["endpoints"] if e["is_leader"]), 1)
        self.assertEqual({e["leader_id"] for e in st["endpoints"]}, {st["etcd_leader_id"]})
        # The human form names every host.
        text = subprocess.run([ROOTSEAL, "cluster", "status", "--socket", self.hosts["A"]["socket"]],
                              capture_output=True, timeout=60).stdout.decode()
        self.assertRegex(text, r"(?m)^  host-A\s+unsealed .*<- this host$")
        self.assertRegex(text, r"(?m)^  host-C\s+sealed ")
        self.assertIn("3 of 3 endpoints reachable", text)
        # sys/leader: HA on, every unsealed host active, no leader address (active-active).
        with urllib.request.urlopen("http://127.0.0.1:%d/v1/sys/leader" % self.hosts["A"]["port"], timeout=5) as r:
            leader = json.loads(r.read())
        self.assertEqual((leader["ha_enabled"], leader["is_self"], leader["leader_address"]), (True, True, ""))
        self.assertNotEqual(leader["active_time"], "0001-01-01T00:00:00Z")
        with urllib.request.urlopen("http://127.0.0.1:%d/v1/sys/leader" % self.hosts["C"]["port"], timeout=5) as r:
            self.assertEqual(json.loads(r.read())["is_self"], False)  # sealed: not active
        # C stopped (SIGTERM): its lease revoked, its record gone.
        self.hosts["C"]["proc"].terminate()
        self.hosts["C"]["proc"].wait(timeout=30)
        poll(lambda: "host-C" not in self.members("A"), "host C's record gone after it stopped", 30)

    def test_4_transit_seal_sequence_survives_the_loss_of_its_host(self):
        """Vault's seal "transit" sequence against host A; A is SIGKILLed; the
        same sequence against host B opens every blob A made (last: it kills A)."""
        self.clients["A"].secrets.transit.create_key("autounseal")

        def seal_call(label, method, path, body):
            req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.hosts[label]["port"], path),
                                         data=json.dumps(body).encode(), method=method,
                                         headers={"X-Vault-Token": SEAL_TOKEN})
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())

        def seal_encrypt(label, plain):
            data = seal_call(label, "PUT", "/v1/transit/encrypt/autounseal",
                             {"plaintext": base64.b64encode(plain).decode()})["data"]
            return data["ciphertext"]

        def seal_decrypt(label, ct):
            data = seal_call(label, "PUT", "/v1/transit/decrypt/autounseal", {"ciphertext": ct})["data"]
            return base64.b64decode(data["plaintext"])

        # SetConfig on A: renew-self (a real auth block), the test encrypt of "a".
        auth = seal_call("A", "PUT", "/v1/auth/token/renew-self", {"increment": 0})["auth"]
        self.assertEqual((auth["client_token"], auth["renewable"]), (SEAL_TOKEN, True))
        ct_a = seal_encrypt("A", b"a")
        self.assertEqual(seal_decrypt("A", ct_a), b"a")
        barrier, recovery = os.urandom(32), os.urandom(32)
        blobs = {seal_encrypt("A", barrier): barrier, seal_encrypt("A", recovery): recovery, ct_a: b"a"}

        self.hosts["A"]["proc"].kill()
        self.hosts["A"]["proc"].wait()
        killed = time.monotonic()

        # The same sequence against B (the address now points there).
        auth = seal_call("B", "PUT", "/v1/auth/token/renew-self", {"increment": 0})["auth"]
        self.assertEqual(auth["client_token"], SEAL_TOKEN)
        for ct, plain in blobs.items():
            self.assertEqual(seal_decrypt("B", ct), plain)
        ct = seal_encrypt("B", b"Heartbeat 1")
        self.assertTrue(ct.startswith("vault:v1:"), ct)
        self.assertEqual(seal_decrypt("B", ct), b"Heartbeat 1")

        # A's record (no revocation: SIGKILL) goes when its lease expires:
        # within etcd.member_ttl of its last keepalive (plus etcd's expiry tick).
        poll(lambda: "host-A" not in self.members("B"), "host A's record gone (lease expired)", MEMBER_TTL + 5)
        print("host A left the member list %.1fs after its SIGKILL (member_ttl %ds)"
              % (time.monotonic() - killed, MEMBER_TTL), flush=True)
        self.assertEqual(set(self.members("B")), {"host-B"})


if __name__ == "__main__":
    unittest.main()
