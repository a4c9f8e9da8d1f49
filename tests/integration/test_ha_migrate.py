"""`rootseal storage migrate`: 1,000 keys SQLite -> etcd -> SQLite, the migrate
process SIGKILLed at random points and resumed to completion (docs/ha.md,
Migration).

One SoftHSM2 token holds the root key (made by the first rootseald, generate_key).
rootseald on SQLite makes 1,000 keys (some rotated, some of type
chacha20-poly1305, some with deletion_allowed) and a ciphertext of every
version. Then:
  - migrate while that rootseald runs: refused, naming it (the state folder's lock);
  - SQLite -> etcd: SIGKILLed by the test after it saw some records arrive in
    etcd, and at random record counts through the crash hook
    (ROOTSEAL_TEST_CRASH_AT=migrate-copied-<n>), before the copy
    (migrate-prepared) and before the verification (migrate-copied-all);
    after each kill etcd holds exactly the records copied so far and the next
    run copies only the rest; the last run verifies every version; one more
    run copies nothing;
  - rootseald on etcd decrypts every ciphertext, reports the same cluster id,
    keeps each key's config; it rotates and creates meanwhile;
  - etcd -> SQLite (a new state folder), killed the same ways (the test watching
    the SQLite file), resumed; rootseald on that SQLite decrypts everything
    made on either store;
  - conflicts: a SQLite store whose key of the same name holds other material
    is refused with the key's name and etcd's record is left as it was; a
    different cluster id is refused before anything is written.
Waits poll a condition with a deadline; nothing sleeps for synchronisation.
"""
import base64
import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
import unittest
import urllib.request

from rootseal_testlib import free_port, make_softhsm, rmtree, sha256_hex, tempdir, write_private
from test_ha_etcd import Etcd, poll

ROOTSEALD = os.environ["ROOTSEALD"]
ROOTSEAL = os.environ["ROOTSEAL_CLI"]
MODULE = os.environ.get("SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
TOKEN = "rs.migrate-test-token-0123456789abcdef0123456789"
PREFIX = "/rootseal-mig/"
KEYS = 1000


def b64(data):
    return base64.b64encode(data).decode()


class Host:
    """One rootseald process and a keep-alive HTTP connection to it."""

    def __init__(self, test, name, state_dir, storage, generate_key=False):
        self.port = free_port()
        self.config = test.write_config(name, state_dir, storage, self.port, generate_key)
        self.log_path = os.path.join(test.dir, "rootseald-%s.log" % name)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([ROOTSEALD, "--config", self.config, "--allow-root"],
                                     stdout=subprocess.DEVNULL, stderr=log, env=test.env)
        log.close()
        self.conn = None
        poll(lambda: self.alive() and self.status("GET", "/v1/sys/health") == 200, "rootseald %s unsealed" % name, 90)

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError("rootseald exited %s:\n%s" % (self.proc.returncode, self.log()))
        return True

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def call(self, method, path, body=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                                  headers={"X-Vault-Token": TOKEN, "Content-Type": "application/json"})
                r = self.conn.getresponse()
                data = r.read()
                return r.status, (json.loads(data) if data else {})
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def status(self, method, path):
        try:
            return self.call(method, path)[0]
        except OSError:
            return None

    def ok(self, method, path, body=None):
        status, answer = self.call(method, path, body)
        if status not in (200, 204):
            raise AssertionError("%s %s: %d %r" % (method, path, status, answer))
        return answer

    def encrypt(self, key, plain):
        return self.ok("POST", "/v1/transit/encrypt/" + key, {"plaintext": b64(plain)})["data"]["ciphertext"]

    def decrypt(self, key, ct):
        return base64.b64decode(self.ok("POST", "/v1/transit/decrypt/" + key, {"ciphertext": ct})["data"]["plaintext"])

    def cluster_id(self):
        return self.ok("GET", "/v1/sys/health")["cluster_id"]

    def stop(self):
        if self.conn is not None:
            self.conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


class MigrateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempdir("rootseal-migrate-")
        cls.etcd = Etcd(cls.dir)
        cls.env = make_softhsm(os.path.join(cls.dir, "hsm"), "A")
        cls.pin = os.path.join(cls.dir, "pin")
        write_private(cls.pin, "1234\n")
        cls.seed = int(os.environ.get("ROOTSEAL_TEST_SEED", str(random.randrange(1 << 30))))
        print("random seed %d (ROOTSEAL_TEST_SEED to repeat)" % cls.seed, flush=True)
        cls.rng = random.Random(cls.seed)
        cls.hosts = []

    @classmethod
    def tearDownClass(cls):
        for h in cls.hosts:
            h.stop()
        cls.etcd.close()
        rmtree(cls.dir)

    @classmethod
    def write_config(cls, name, state_dir, storage, port, generate_key):
        config = os.path.join(cls.dir, "rootseald-%s.yaml" % name)
        endpoints = ", ".join('"%s"' % cls.etcd.endpoint(i) for i in range(3))
        with open(config, "w") as f:
            f.write("listen:\n  address: 127.0.0.1:%d\n  allow_plaintext: true\n"
                    "state_dir: %s\n"
                    "pkcs11:\n  module: %s\n  token_label: A\n  generate_key: %s\n"
                    "pin:\n  sources: [file]\n  file: %s\n"
                    "admin:\n  socket: %s/admin.sock\n"
                    "tokens:\n  - name: migrate-test\n    sha256: %s\n    policies: [root]\n"
                    % (port, state_dir, MODULE, "true" if generate_key else "false", cls.pin, state_dir,
                       sha256_hex(TOKEN)))
            if storage == "etcd":
                f.write("storage: etcd\netcd:\n  endpoints: [%s]\n  prefix: %s\n  request_timeout: 1s\n"
                        % (endpoints, PREFIX))
        return config

    def start(self, name, state_dir, storage, generate_key=False):
        h = Host(self, name, state_dir, storage, generate_key)
        self.hosts.append(h)
        return h

    def migrate_args(self, state_dir, to):
        config = self.write_config("migrate", state_dir, "etcd", free_port(), False)
        return [ROOTSEAL, "storage", "migrate", "--config", config, "--to", to,
                "--module", MODULE, "--token", "A"]

    def run_migrate(self, state_dir, to, crash_at=None):
        """Runs it to the end: (returncode, stdout, stderr)."""
        p = self.spawn_migrate(state_dir, to, crash_at)
        out, err = p.communicate(timeout=600)
        return p.returncode, out.decode(), err.decode()

    def spawn_migrate(self, state_dir, to, crash_at=None):
        env = dict(self.env)
        if crash_at:
            env["ROOTSEAL_TEST_CRASH_AT"] = crash_at
        r_fd, w_fd = os.pipe()
        os.write(w_fd, b"1234\n")
        os.close(w_fd)
        try:
            return subprocess.Popen(self.migrate_args(state_dir, to) + ["--pin-fd", str(r_fd)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(r_fd,))
        finally:
            os.close(r_fd)

    def etcd_keys(self):
        """The key records in etcd: name -> value bytes."""
        answer = self.etcd.post("/v3/kv/range", {
            "key": b64((PREFIX + "keys/").encode()), "range_end": b64((PREFIX + "keys0").encode())})
        return {base64.b64decode(kv["key"]).decode()[len(PREFIX + "keys/"):]: base64.b64decode(kv["value"])
                for kv in answer.get("kvs", [])}

    def etcd_members(self):
        answer = self.etcd.post("/v3/kv/range", {
            "key": b64((PREFIX + "members/").encode()), "range_end": b64((PREFIX + "members0").encode())})
        return answer.get("kvs", [])

    def etcd_count(self):
        answer = self.etcd.post("/v3/kv/range", {
            "key": b64((PREFIX + "keys/").encode()), "range_end": b64((PREFIX + "keys0").encode()),
            "count_only": True})
        return int(answer.get("count", 0))

    @staticmethod
    def sqlite_count(state_dir):
        path = os.path.join(state_dir, "rootseal.db")
        if not os.path.exists(path):
            return 0
        db = sqlite3.connect(path, timeout=5)
        try:
            return db.execute("SELECT count(*) FROM keys").fetchone()[0]
        except sqlite3.OperationalError:
            return 0  # the schema is not there yet
        finally:
            db.close()

    def migrate_with_kills(self, state_dir, to, count):
        """Kills the migration by watching `count()` grow, then through the hook at
        random record counts, before the copy and before the verification;
        checks after each kill that exactly the records copied so far are
        there; then runs it to completion. Returns the last run's output."""
        # 1. Killed from outside once some records are seen at the target.
        before = count()
        p = self.spawn_migrate(state_dir, to)
        target = before + 40
        try:
            poll(lambda: p.poll() is not None or count() >= target, "records arriving at the target", 120)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(p.returncode, -signal.SIGKILL, "the migration ended before it was killed")
        seen = count()
        self.assertGreaterEqual(seen, target)
        self.assertLess(seen, KEYS, "the kill came after the last record")

        # 2. Before anything is copied: nothing changes (but the write the
        # killed process had in flight may have landed meanwhile).
        rc, _, err = self.run_migrate(state_dir, to, "migrate-prepared")
        self.assertEqual(rc, -signal.SIGKILL, err)
        self.assertIn(count() - seen, (0, 1))
        seen = count()

        # 3. At random record counts: the next run copies only what is missing.
        for _ in range(3):
            n = self.rng.randrange(1, max(2, (KEYS - seen) // 3))
            rc, _, err = self.run_migrate(state_dir, to, "migrate-copied-%d" % n)
            self.assertEqual(rc, -signal.SIGKILL, err)
            self.assertEqual(count(), seen + n, "killed after record %d of this run" % n)
            seen += n

        # 4. Everything copied, killed before the verification.
        rc, _, err = self.run_migrate(state_dir, to, "migrate-copied-all")
        self.assertEqual(rc, -signal.SIGKILL, err)
        self.assertEqual(count(), KEYS)

        # 5. To completion: nothing left to copy, every version verified.
        rc, out, err = self.run_migrate(state_dir, to)
        self.assertEqual(rc, 0, err)
        self.assertIn("%d keys: 0 copied, %d already there and identical" % (KEYS, KEYS), out)
        self.assertIn("versions: every one unwraps with the root key in the HSM", out)
        print(out, flush=True)
        return out

    @staticmethod
    def cluster_status(state_dir):
        p = subprocess.run([ROOTSEAL, "cluster", "status", "--socket", os.path.join(state_dir, "admin.sock"),
                            "--json"], capture_output=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError("rootseal cluster status: %s" % p.stderr.decode(errors="replace"))
        return json.loads(p.stdout)

    def make_keys(self, host):
        """KEYS keys; returns {key: [(ciphertext, plaintext)...]}, {key: config}."""
        cts = {}
        configs = {}
        for i in range(KEYS):
            key = "k%04d" % i
            body = {"type": "chacha20-poly1305"} if i % 7 == 3 else {}
            host.ok("POST", "/v1/transit/keys/" + key, body)
            plain = ("secret %d v1" % i).encode()
            cts[key] = [(host.encrypt(key, plain), plain)]
            if i % 10 == 0:
                host.ok("POST", "/v1/transit/keys/%s/rotate" % key, {})
                plain = ("secret %d v2" % i).encode()
                cts[key].append((host.encrypt(key, plain), plain))
            if i % 50 == 1:
                host.ok("POST", "/v1/transit/keys/%s/config" % key, {"deletion_allowed": True})
                configs[key] = True
        return cts, configs

    def check_all(self, host, cts, configs):
        for key, items in cts.items():
            for ct, plain in items:
                self.assertEqual(host.decrypt(key, ct), plain, key)
        for key, allowed in configs.items():
            self.assertEqual(host.ok("GET", "/v1/transit/keys/" + key)["data"]["deletion_allowed"], allowed, key)

    @staticmethod
    def created_token_works(host, token):
        """An encrypt with a token made by rootseal token create: its HTTP status."""
        conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
        try:
            conn.request("POST", "/v1/transit/encrypt/k0001", body=json.dumps({"plaintext": "eA=="}),
                         headers={"X-Vault-Token": token, "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            return r.status
        finally:
            conn.close()

    def test_round_trip_with_kills(self):
        state1 = os.path.join(self.dir, "state-1")
        state2 = os.path.join(self.dir, "state-2")
        host = self.start("sqlite-1", state1, "sqlite", generate_key=True)
        cts, configs = self.make_keys(host)
        # A token made with rootseal token create (kept in state-1/tokens.db) moves with the keys.
        made = subprocess.run([ROOTSEAL, "token", "create", "--policy", "root", "--display-name", "moves",
                               "--socket", os.path.join(state1, "admin.sock"), "--json"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(made.returncode, 0, made.stderr)
        created = json.loads(made.stdout)["token"]
        self.assertEqual(self.created_token_works(host, created), 200)
        cluster = host.cluster_id()
        status = self.cluster_status(state1)
        self.assertEqual((status["storage"], status["ha_enabled"], status["cluster_id"]), ("sqlite", False, cluster))

        # Refused while rootseald runs on that state folder, naming it.
        rc, _, err = self.run_migrate(state1, "etcd")
        self.assertEqual(rc, 1)
        self.assertIn("is in use by pid %d rootseald" % host.proc.pid, err)
        self.assertIn("the migration runs with rootseald stopped", err)
        self.assertEqual(self.etcd_count(), 0)
        host.stop()

        # SQLite -> etcd.
        self.migrate_with_kills(state1, "etcd", self.etcd_count)
        rc, out, err = self.run_migrate(state1, "etcd")  # idempotent
        self.assertEqual(rc, 0, err)
        self.assertIn("0 copied, %d already there" % KEYS, out)
        self.assertIn("cluster id " + cluster, out)
        self.assertIn("created tokens (hashes): 0 copied, 1 already there and identical", out)
        values = self.etcd_keys()
        self.assertEqual(len(values), KEYS)
        for raw in values.values():
            self.assertNotIn(b"secret ", raw)

        # rootseald on etcd opens everything, under the same cluster id.
        host = self.start("etcd-1", state1, "etcd")
        self.assertEqual(host.cluster_id(), cluster)
        self.assertEqual(self.created_token_works(host, created), 200)
        # The tokens.db left in the state folder was found in etcd already: renamed, not imported twice.
        self.assertTrue(os.path.exists(os.path.join(state1, "tokens.db.imported")))
        self.assertFalse(os.path.exists(os.path.join(state1, "tokens.db")))
        # While it runs (registered in etcd), etcd is not migrated away.
        poll(lambda: len(self.cluster_status(state1).get("members", [])) == 1, "the host registered", 30)
        rc, _, err = self.run_migrate(state2, "sqlite")
        self.assertEqual(rc, 1)
        self.assertIn("1 rootseald host is registered in etcd (", err)
        self.assertIn("stop them first", err)
        self.assertEqual(self.sqlite_count(state2), 0)
        self.check_all(host, cts, configs)
        for key in ("k0005", "k0500", "k0999"):
            host.ok("POST", "/v1/transit/keys/%s/rotate" % key, {})
            plain = ("made on etcd " + key).encode()
            cts[key].append((host.encrypt(key, plain), plain))
        host.stop()
        # A clean stop revokes its lease (at the latest it expires: etcd.member_ttl, 10s).
        poll(lambda: not self.etcd_members(), "the stopped host's record gone", 20)

        # etcd -> SQLite, into a new state folder.
        self.migrate_with_kills(state2, "sqlite", lambda: self.sqlite_count(state2))
        with open(os.path.join(state2, "cluster-id")) as f:
            self.assertEqual(f.read().strip(), cluster)
        host = self.start("sqlite-2", state2, "sqlite")
        self.assertEqual(host.cluster_id(), cluster)
        self.assertEqual(self.created_token_works(host, created), 200)
        self.check_all(host, cts, configs)
        host.stop()

        self.check_conflicts_are_refused()

    def check_conflicts_are_refused(self):
        """etcd holds k0001 (the round trip's); another store has its own k0001."""
        state3 = os.path.join(self.dir, "state-3")
        host = self.start("sqlite-3", state3, "sqlite")
        host.ok("POST", "/v1/transit/keys/k0001", {})  # another key under a name etcd holds
        host.stop()
        before = self.etcd_keys()

        # Its own cluster id first: refused before anything is written.
        rc, _, err = self.run_migrate(state3, "etcd")
        self.assertEqual(rc, 1)
        self.assertIn("cluster id: etcd records", err)
        self.assertIn("nothing copied", err)

        # Under the cluster's id: the key's name, never overwritten.
        os.remove(os.path.join(state3, "cluster-id"))
        rc, _, err = self.run_migrate(state3, "etcd")
        self.assertEqual(rc, 1)
        self.assertIn("1 key exists in the target with other contents and is not overwritten: 'k0001' (", err)
        self.assertEqual(self.etcd_keys(), before)

        # A version that does not unwrap (its blob damaged in the source):
        # refused before anything is copied.
        state4 = os.path.join(self.dir, "state-4")
        host = self.start("sqlite-4", state4, "sqlite")
        host.ok("POST", "/v1/transit/keys/intact", {})
        host.stop()
        os.remove(os.path.join(state4, "cluster-id"))
        db = sqlite3.connect(os.path.join(state4, "rootseal.db"))
        blob = bytearray(db.execute("SELECT wrapped FROM key_versions WHERE name = 'intact'").fetchone()[0])
        blob[-1] ^= 0x01
        db.execute("UPDATE key_versions SET wrapped = ? WHERE name = 'intact'", (bytes(blob),))
        db.commit()
        db.close()
        rc, _, err = self.run_migrate(state4, "etcd")
        self.assertEqual(rc, 1)
        self.assertIn("key 'intact' version 1 in SQLite", err)
        self.assertIn("does not unwrap with the root key", err)
        self.assertIn("nothing copied", err)
        self.assertEqual(self.etcd_keys(), before)


if __name__ == "__main__":
    unittest.main()
