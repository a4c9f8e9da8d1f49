"""Keyring snapshots with storage: etcd (issue 24): the real rootseald and
`rootseal` CLI, a real three-member etcd on loopback (test_ha_etcd.Etcd),
moto_server as S3 (the aws CLI reads back what was uploaded), one SoftHSM2
token holding the root key that every host uses.

- Two hosts A and B share the keyring under one etcd prefix, both with
  snapshots every second to S3 and to a folder of their own: exactly one of
  them takes the scheduled snapshots (rootseal_snapshot_taker 1 on one, 0 on
  the other; the other's runs are skipped, its folder stays empty, its good
  count 0; every object in S3 is in the taker's folder); the manifest says
  storage etcd, the revision, the keys and versions and the cluster id
  /v1/sys/health reports; the other host reports the cluster's last good
  snapshot. The taker SIGKILLed: the other takes over (its lease expires).
- `rootseal snapshot verify` of the newest in S3 unwraps every version.
- The disaster drill: keys x versions with a ciphertext under every version;
  every host stopped; the prefix wiped; `rootseal snapshot restore` from S3
  into the empty prefix; a host started on it decrypts every ciphertext.
- restore refuses while a host is registered, and a prefix holding another
  key without --force (nothing written); --force replaces it.
- A restore SIGKILLed midway leaves the restore mark: a host started then
  stays sealed with that reason; the restore run again finishes (the keys
  already written skipped) and the host unseals.
- A snapshot with one byte changed is refused by verify and by the restore
  into etcd, which writes nothing.
- Across stores: the etcd snapshot restores into a SQLite state folder, and a
  SQLite host's snapshot restores into the etcd prefix; hosts on each decrypt.
Waits poll a condition with a deadline; nothing sleeps for synchronisation.
"""
import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import time
import unittest

from rootseal_testlib import ConfigDaemon, rmtree, tempdir
from test_ha_etcd import Etcd, poll
from test_snapshots import Moto, SnapshotHelpers

PREFIX = "/rootseal-snap/"
BUCKET = "rootseal-etcd-snaps"
KEYS, VERSIONS = 40, 5
PIN = "snap-etcd-pin-51c9"
MEMBER_TTL = 2


def b64(s):
    return base64.b64encode(s.encode()).decode()


class EtcdSnapshotTest(SnapshotHelpers, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempdir("rootseal-snap-etcd-")
        cls.etcd = cls.moto = None
        try:
            cls.etcd = Etcd(cls.dir)
            cls.moto = Moto(cls.dir, False, [BUCKET])
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.moto is not None:
            cls.moto.close()
        if cls.etcd is not None:
            cls.etcd.close()
        rmtree(cls.dir)

    def setUp(self):
        self.daemons = []
        self.token = "rs." + secrets.token_hex(24)
        self.first = None  # the host whose token holds the root key; the others share it
        self.s3_prefix = "cluster-%s/" % secrets.token_hex(4)  # this test's objects only
        # Each test starts on an empty prefix (its own root key).
        poll(lambda: not self.members(), "no host registered")
        self.wipe_prefix()

    def tearDown(self):
        for d in self.daemons:
            d.close()

    # --- helpers -------------------------------------------------------------
    def new_host(self, name, storage="etcd", snapshots=True):
        d = self.host(name, PIN)
        d.token = self.token
        if self.first is None:
            self.first = d
        else:
            d.env = self.first.env  # the same SoftHSM2 token: the same root key
            d.token_label = self.first.token_label
        rest = ("admin:\n  socket: %s\n"
                "tokens:\n  - name: test\n    sha256: %s\n    policies: [root]\n"
                % (d.p("admin.sock"), hashlib.sha256(self.token.encode()).hexdigest()))
        if storage == "etcd":
            endpoints = ", ".join('"%s"' % self.etcd.endpoint(i) for i in range(3))
            rest += ("storage: etcd\nhost_id: %s\netcd:\n  endpoints: [%s]\n  prefix: %s\n  member_ttl: %ds\n"
                     % (name, endpoints, PREFIX, MEMBER_TTL))
        if snapshots:
            rest += ("snapshots:\n  interval: 1s\n  retain:\n    count: 50\n  destinations:\n"
                     "    - name: s3\n      kind: s3\n      bucket: %s\n      prefix: \"%s\"\n"
                     "      region: us-east-1\n      endpoint: http://127.0.0.1:%d\n"
                     "      access_key_id: {file: %s}\n      secret_access_key: {file: %s}\n"
                     "    - name: local\n      kind: folder\n      path: %s\n"
                     % (BUCKET, self.s3_prefix, self.moto.port, self.moto.id_file, self.moto.secret_file,
                        d.p("local-snapshots")))
        d.write_config(rest, pin_file=self.pin_file(d))
        return d

    def start(self, d):
        d.start()
        self.unsealed(d)
        return d

    def keys_in_etcd(self):
        return {k: v for k, v in self.etcd_prefix().items() if k.startswith(PREFIX + "keys/")}

    def etcd_prefix(self):
        answer = self.etcd.post("/v3/kv/range", {"key": b64(PREFIX), "range_end": b64(PREFIX[:-1] + "0")})
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]) for kv in answer.get("kvs", [])}

    def members(self):
        return [k for k in self.etcd_prefix() if k.startswith(PREFIX + "members/")]

    def wipe_prefix(self):
        self.etcd.post("/v3/kv/deleterange", {"key": b64(PREFIX), "range_end": b64(PREFIX[:-1] + "0")})
        self.assertEqual(self.etcd_prefix(), {})

    def stop_all(self):
        for d in self.daemons:
            if d.proc is not None and d.proc.poll() is None:
                self.assertEqual(d.stop(), 0, d.log()[-3000:])
        poll(lambda: not self.members(), "no host registered")

    def decrypt_all(self, d, recorded):
        for name, ct, plain in recorded:
            got = self.api(d, "POST", "/v1/transit/decrypt/" + name, {"ciphertext": ct})["data"]["plaintext"]
            self.assertEqual(got, plain, name)

    def restore(self, d, extra=(), expect=0, env=None):
        args = ["snapshot", "restore", "--config", d.config] + list(extra) + self.token_args(d)
        if env is None:
            return self.cli(args, d.env, pin=PIN, expect=expect)
        return self.cli(args, env, pin=PIN, expect=expect)

    def create_token(self, d):
        """A token made with rootseal token create over d's admin socket (kept by its store)."""
        out, _ = self.cli(["token", "create", "--policy", "root", "--display-name", "snap", "--socket",
                           d.p("admin.sock"), "--json"], d.env)
        return json.loads(out)["token"]

    def token_status(self, d, token):
        """GET of a key that does not exist: 404 with a valid token, 403 without one."""
        return d.call("GET", "/v1/transit/keys/nosuch", token=token, timeout=30).status

    def local_snapshots(self, d):
        folder = d.p("local-snapshots")
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []

    # --- the tests -----------------------------------------------------------
    def test_scheduled_by_one_host_verified_and_restored_into_a_wiped_prefix(self):
        a = self.start(self.new_host("A"))
        b = self.start(self.new_host("B"))
        recorded = self.make_keys(a, KEYS, VERSIONS)
        cluster_id = self.api(a, "GET", "/v1/sys/health")["cluster_id"]
        created = self.create_token(a)  # in etcd, the cluster's: it goes into the snapshot
        poll(lambda: self.token_status(b, created) == 404, "B accepts the token created on A")

        # A good snapshot taken after every key was written, by one of the two.
        done = time.time()
        def newest_good(_):
            return max(self.metrics(a)["rootseal_snapshot_last_good_timestamp_seconds"],
                       self.metrics(b)["rootseal_snapshot_last_good_timestamp_seconds"]) > done + 1
        self.wait_metric(a, newest_good, "a good snapshot after the keys were written", timeout=120)
        ma, mb = self.metrics(a), self.metrics(b)
        self.assertEqual(ma["rootseal_snapshot_taker"] + mb["rootseal_snapshot_taker"], 1, (ma, mb))
        taker, other = (a, b) if ma["rootseal_snapshot_taker"] == 1 else (b, a)
        # A few more intervals: the other host takes none of them, and reports the taker's.
        good_before = self.metrics(taker)["rootseal_snapshots_good_total"]
        self.wait_metric(taker, lambda m: m["rootseal_snapshots_good_total"] >= good_before + 3, "three more runs")
        self.wait_metric(other, lambda m: m["rootseal_snapshots_skipped_total"] >= 3, "the other host skipping")
        mo = self.metrics(other)
        self.assertEqual(mo["rootseal_snapshots_good_total"], 0)
        self.assertEqual(mo["rootseal_snapshot_failures_total"], 0)
        self.assertEqual(mo["rootseal_snapshot_taker"], 0)
        self.assertGreater(mo["rootseal_snapshot_last_good_timestamp_seconds"], done)  # the cluster's, from etcd
        self.assertEqual(self.local_snapshots(other), [])
        names = self.moto.objects(BUCKET, self.s3_prefix)
        self.assertGreaterEqual(len(names), 4)
        taker_local = set(self.local_snapshots(taker))
        self.assertTrue(set(names) <= taker_local, (names, sorted(taker_local)))  # every upload is the taker's

        # What the aws CLI fetches: a snapshot of the etcd keyring at one revision.
        newest = self.moto.fetch(self.dir, BUCKET, self.s3_prefix, names[-1])
        manifest = json.loads(newest.split(b"\n", 2)[1])
        self.assertEqual(manifest["storage"], "etcd")
        self.assertGreater(manifest["etcd_revision"], KEYS * VERSIONS)
        self.assertEqual((manifest["keys"], manifest["versions"]), (KEYS, KEYS * VERSIONS))
        self.assertEqual(manifest["cluster_id"], cluster_id)
        self.assertEqual([s["name"] for s in manifest["sections"]], ["keyring", "tokens"])
        self.assertNotIn(PIN.encode(), newest)
        self.assertNotIn(self.token.encode(), newest)
        self.assertNotIn(created.encode(), newest)  # its hash only

        # The taker SIGKILLed: its lock goes with its lease, the other host takes over.
        taker.proc.send_signal(signal.SIGKILL)
        taker.proc.wait()
        self.wait_metric(other, lambda m: m["rootseal_snapshot_taker"] == 1 and m["rootseal_snapshots_good_total"] >= 1,
                         "the other host taking over", timeout=MEMBER_TTL * 10 + 30)
        self.assertTrue(self.local_snapshots(other))

        # verify, with the token: every version unwraps.
        out, _ = self.cli(["snapshot", "verify", "--config", other.config] + self.token_args(other), other.env, pin=PIN)
        self.assertIn("%d keys, %d versions: every one unwraps" % (KEYS, KEYS * VERSIONS), out)
        self.assertIn("from etcd at revision", out)

        # Refused while a host is registered (the one still running).
        _, err = self.restore(other, expect=1)
        self.assertIn("registered in etcd", err)

        # Disaster: every host stopped, the prefix wiped; restore from S3.
        self.stop_all()
        self.wipe_prefix()
        out, _ = self.restore(other)
        self.assertIn("restored into etcd", out)
        self.assertIn("%d keys: %d written, 0 already there" % (KEYS, KEYS), out)
        self.assertIn("cluster id " + cluster_id, out)
        self.assertIn("created tokens (hashes): 1 written, 0 already there", out)
        self.assertEqual(len(self.keys_in_etcd()), KEYS)
        self.assertNotIn(PREFIX + "cluster/restoring", self.etcd_prefix())
        self.assertEqual(self.etcd_prefix()[PREFIX + "cluster/id"].decode(), cluster_id)

        c = self.start(self.new_host("C", snapshots=False))
        self.assertEqual(self.api(c, "GET", "/v1/sys/health")["cluster_id"], cluster_id)
        self.decrypt_all(c, recorded)
        self.assertEqual(self.token_status(c, created), 404)  # accepted (the key does not exist), not 403

        # A prefix holding another key: refused without --force, nothing written; --force replaces it.
        self.make_keys(c, 1, 1, stem="extra")
        self.stop_all()
        before = self.etcd_prefix()
        _, err = self.restore(other, expect=1)
        self.assertIn("is not empty", err)
        self.assertIn("'extra-000' (not in the snapshot)", err)
        self.assertEqual(self.etcd_prefix(), before)
        out, _ = self.restore(other, ["--force"])
        self.assertIn("1 replaced or removed (--force)", out)
        self.assertNotIn(PREFIX + "keys/extra-000", self.etcd_prefix())
        self.assertEqual(len(self.keys_in_etcd()), KEYS)

        # A changed byte: verify and the restore into etcd refuse it; etcd keeps what it holds.
        bad = bytearray(newest)
        bad[len(bad) // 2] ^= 0x01
        bad_file = os.path.join(self.dir, "bad.snap")
        with open(bad_file, "wb") as f:
            f.write(bytes(bad))
        _, err = self.cli(["snapshot", "verify", "--file", bad_file] + self.token_args(other), other.env, pin=PIN,
                          expect=1)
        self.assertIn("SHA-256 does not match", err)
        self.wipe_prefix()
        _, err = self.restore(other, ["--file", bad_file], expect=1)
        self.assertIn("SHA-256 does not match", err)
        self.assertEqual(self.etcd_prefix(), {})

    def test_restore_resumes_after_a_kill_and_moves_between_sqlite_and_etcd(self):
        # A SQLite host's snapshot, restored into etcd.
        s = self.start(self.new_host("S", storage="sqlite"))
        recorded = self.make_keys(s, 12, 3, stem="sq")
        sqlite_cluster = self.api(s, "GET", "/v1/sys/health")["cluster_id"]
        created = self.create_token(s)  # in S's tokens.db: the snapshot's tokens section
        done = time.time()
        self.wait_metric(s, lambda m: m["rootseal_snapshot_last_good_timestamp_seconds"] > done + 1,
                         "a snapshot of the SQLite host")
        self.assertEqual(s.stop(), 0)
        snap = os.path.join(s.p("local-snapshots"), self.local_snapshots(s)[-1])
        with open(snap, "rb") as f:
            manifest = json.loads(f.read().split(b"\n", 2)[1])
        self.assertEqual(manifest["storage"], "sqlite")
        self.assertNotIn("etcd_revision", manifest)

        e = self.new_host("E", snapshots=False)
        self.wipe_prefix()
        # Killed after 5 keys: the mark stays, a host started now stays sealed with that reason.
        env = dict(e.env, ROOTSEAL_TEST_CRASH_AT="restore-copied-5")
        self.restore(e, ["--file", snap], expect=-signal.SIGKILL, env=env)
        self.assertIn(PREFIX + "cluster/restoring", self.etcd_prefix())
        self.assertEqual(len(self.keys_in_etcd()), 5)
        e.start()
        e.wait_for(lambda: "a snapshot restore into %s is under way or was interrupted" % PREFIX in e.log(),
                   "the host sealed by the restore mark", timeout=60)
        self.assertEqual(e.call("GET", "/v1/sys/health").status, 503)  # sealed
        self.assertEqual(e.stop(), 0)
        poll(lambda: not self.members(), "no host registered")
        out, _ = self.restore(e, ["--file", snap])
        self.assertIn("12 keys: 7 written, 5 already there and identical", out)
        self.assertIn("created tokens (hashes): 1 written, 0 already there", out)
        self.assertNotIn(PREFIX + "cluster/restoring", self.etcd_prefix())
        self.start(e)
        self.assertEqual(self.api(e, "GET", "/v1/sys/health")["cluster_id"], sqlite_cluster)
        self.decrypt_all(e, recorded)
        self.assertEqual(self.token_status(e, created), 404)  # accepted on etcd, not 403
        more = self.make_keys(e, 3, 2, stem="on-etcd")

        # And back: a snapshot of the etcd keyring restored into an empty SQLite state folder.
        self.assertEqual(e.stop(), 0)
        poll(lambda: not self.members(), "no host registered")
        t = self.new_host("T")
        self.start(t)
        done = time.time()
        self.wait_metric(t, lambda m: m["rootseal_snapshot_last_good_timestamp_seconds"] > done + 1,
                         "a snapshot of the etcd keyring")
        self.assertEqual(t.stop(), 0)
        etcd_snap = os.path.join(t.p("local-snapshots"), self.local_snapshots(t)[-1])
        q = self.new_host("Q", storage="sqlite", snapshots=False)
        out, _ = self.cli(["snapshot", "restore", "--file", etcd_snap, "--state-dir", q.p("state")]
                          + self.token_args(q), q.env, pin=PIN)
        self.assertIn("from etcd at revision", out)
        self.assertIn("restored into %s" % q.p("state"), out)
        self.start(q)
        self.assertEqual(self.api(q, "GET", "/v1/sys/health")["cluster_id"], sqlite_cluster)
        self.decrypt_all(q, recorded + more)
        self.assertEqual(self.token_status(q, created), 404)  # the etcd snapshot's tokens, back in a tokens.db


if __name__ == "__main__":
    unittest.main()
