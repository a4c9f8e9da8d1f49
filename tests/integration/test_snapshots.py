"""Keyring snapshots (issue 24) with the real rootseald, the real `rootseal`
CLI, SoftHSM2 tokens that get their root key through the key ceremony,
moto_server as S3 and the real aws CLI reading back what was uploaded.

- The disaster drill: host A (root from `ceremony init`) holds 100 keys x 10
  versions; a ciphertext under every version is recorded; a scheduled
  snapshot reaches S3; A's state folder is deleted; host B's token gets the
  root through `ceremony restore`; `rootseal snapshot restore` from S3 fills
  B's empty state folder; B decrypts every recorded ciphertext.
- The uploaded object (fetched with `aws s3 cp`) holds no PIN, no token in
  clear and nothing of the audit log.
- A snapshot with one byte changed is refused by `snapshot verify` and
  `snapshot restore` (which writes nothing).
- moto_server checks SigV4 signatures here (INITIAL_NO_AUTH_ACTION_COUNT: an
  IAM user and its access key are made first, then every request must be
  signed with that key): rootseal's S3 requests pass, a wrong secret gets
  SignatureDoesNotMatch.
- An upload cut midway (a proxy in front of moto_server closes the
  connection) is never counted good and retention deletes nothing; once
  uploads work again, retention keeps the newest `retain.count`.
"""
import base64
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import threading
import time
import unittest

from rootseal_testlib import ConfigDaemon, SOFTHSM2_MODULE, aws_cli, free_port, rmtree, tempdir, wait_moto

ROOTSEAL = os.environ["ROOTSEAL_CLI"]
BUCKET = "rootseal-snapshots"
KEYS = 100
VERSIONS = 10
CUSTODIANS = ["alice", "bob", "carol"]


class CutProxy:
    """A TCP proxy in front of moto_server. While `cut` is set, each connection
    forwards at most `budget` bytes of what the client sends, then both sides
    are closed: an upload dies midway, small requests pass."""

    def __init__(self, upstream_port, budget=2048):
        self.upstream_port = upstream_port
        self.budget = budget
        self.cut = False
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.conns = []
        self.cuts = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def set_cut(self, on):
        with self.lock:
            self.cut = on
            for c in self.conns:  # pooled keep-alive connections start over
                for s in c:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self.conns = []

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self.lock:
                self.conns.append((client, upstream))
                cut = self.cut
            threading.Thread(target=self._pump, args=(client, upstream, cut), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src, dst, cut):
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if cut and sent + len(data) > self.budget:
                    dst.sendall(data[:self.budget - sent])
                    with self.lock:
                        self.cuts += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()
        self.set_cut(False)


class Moto:
    """A moto_server. With `signed`, it checks SigV4 signatures
    (INITIAL_NO_AUTH_ACTION_COUNT: the first three requests make an IAM user,
    its access key and its policy; every later one must be signed with that
    key). Each has `buckets`, and credential files for rootseald in `folder`."""

    def __init__(self, folder, signed, buckets):
        self.port = free_port()
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3") if signed else None
        self.proc = subprocess.Popen(["moto_server", "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        try:
            self._set_up(folder, signed, buckets)
        except BaseException:
            self.close()  # a failed set-up leaves no server behind
            raise

    def _set_up(self, folder, signed, buckets):
        # Only a TCP probe: with authentication on, every answered request counts.
        wait_moto(self.proc, self.port, http_probe=False)
        self.key = ("testing", "testing")
        if signed:
            self.aws("iam", "create-user", "--user-name", "snapshots")
            made = json.loads(self.aws("iam", "create-access-key", "--user-name", "snapshots", "--output", "json"))
            self.aws("iam", "put-user-policy", "--user-name", "snapshots", "--policy-name", "s3", "--policy-document",
                     json.dumps({"Version": "2012-10-17",
                                 "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
            self.key = (made["AccessKey"]["AccessKeyId"], made["AccessKey"]["SecretAccessKey"])
        for b in buckets:
            self.aws("s3", "mb", "s3://" + b)
        self.id_file = self._private(folder, "id", self.key[0])
        self.secret_file = self._private(folder, "secret", self.key[1])

    def _private(self, folder, name, value):
        p = os.path.join(folder, "moto-%d-%s" % (self.port, name))
        with open(p, "w") as f:
            f.write(value + "\n")
        os.chmod(p, 0o600)
        return p

    def aws(self, *args):
        return aws_cli(self.port, args, key=self.key).decode()

    def objects(self, bucket, prefix):
        out = self.aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix, "--output", "json")
        listed = json.loads(out) if out.strip() else {}
        return sorted(o["Key"][len(prefix):] for o in listed.get("Contents", []))

    def fetch(self, folder, bucket, prefix, name):
        path = os.path.join(folder, "fetched-" + name)
        self.aws("s3", "cp", "s3://%s/%s%s" % (bucket, prefix, name), path)
        with open(path, "rb") as f:
            return f.read()

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class SnapshotHelpers:
    """What the snapshot tests share (test_snapshots_cloud.py too): rootseal
    with the PIN on a pipe, hosts (ConfigDaemon with a token), the API,
    the snapshot metrics. The test's setUp/tearDown keep `self.daemons`."""

    def cli(self, args, env, pin=None, expect=0, stdin=b""):
        """rootseal with the PIN on a pipe (never in argv)."""
        fds = ()
        argv = [ROOTSEAL] + args
        r_fd = None
        if pin is not None:
            r_fd, w_fd = os.pipe()
            os.write(w_fd, pin.encode() + b"\n")
            os.close(w_fd)
            argv += ["--pin-fd", str(r_fd)]
            fds = (r_fd,)
        try:
            p = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=300, pass_fds=fds)
        finally:
            if r_fd is not None:
                os.close(r_fd)
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, expect, "rootseal %s\nstdout:\n%s\nstderr:\n%s" % (" ".join(args), out, err))
        return out, err

    def host(self, name, pin):
        d = ConfigDaemon("rootseal-snap-%s-" % name, name, pin)
        self.daemons.append(d)
        d.token = "rs." + secrets.token_hex(24)
        d.pin = pin
        return d

    def pin_file(self, d):
        p = d.p("hsm-pin")
        with open(p, "w") as f:
            f.write(d.pin + "\n")
        os.chmod(p, 0o600)
        return p

    def api(self, d, method, path, body=None, expect=200):
        r = d.call(method, path, body=body, token=d.token, timeout=30)
        expect = expect if isinstance(expect, tuple) else (expect,)
        self.assertIn(r.status, expect, "%s %s -> %d %r" % (method, path, r.status, r.data[:300]))
        return r.json()

    def metrics(self, d):
        r = d.call("GET", "/v1/sys/metrics?format=prometheus", token=d.token)
        self.assertEqual(r.status, 200)
        out = {}
        for line in r.data.decode().splitlines():
            m = re.match(r"^(rootseal_snapshots?_[a-z_]+) (\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def wait_metric(self, d, predicate, what, timeout=60):
        return d.wait_for(lambda: predicate(self.metrics(d)), what, timeout=timeout)

    def unsealed(self, d):
        def ok():
            r = d.call("GET", "/v1/sys/health")
            return r.status == 200
        d.wait_for(ok, "unsealed", timeout=60)

    def token_args(self, d):
        return ["--module", SOFTHSM2_MODULE, "--token", d.token_label]

    def make_keys(self, d, keys, versions, stem="drill"):
        """`keys` keys of `versions` versions on host d, a ciphertext under
        every version: [(key, ciphertext, plaintext in base64)]."""
        recorded = []
        for k in range(keys):
            name = "%s-%03d" % (stem, k)
            self.api(d, "POST", "/v1/transit/keys/" + name, {}, expect=(200, 204))
            for v in range(1, versions + 1):
                if v > 1:
                    self.api(d, "POST", "/v1/transit/keys/%s/rotate" % name, {}, expect=200)
                plain = base64.b64encode(("%s v%d %s" % (name, v, secrets.token_hex(8))).encode()).decode()
                ct = self.api(d, "POST", "/v1/transit/encrypt/" + name, {"plaintext": plain})["data"]["ciphertext"]
                self.assertTrue(ct.startswith("vault:v%d:" % v), ct)
                recorded.append((name, ct, plain))
        return recorded


class SnapshotTest(SnapshotHelpers, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempdir("rootseal-snapshots-")
        cls.signed = cls.open = None
        try:
            cls._set_up_class()
        except BaseException:
            cls.tearDownClass()  # unittest does not call it when setUpClass fails
            raise

    @classmethod
    def _set_up_class(cls):
        # Signed: the drill and the cut uploads (one bucket each, no prefix:
        # moto's signature check mis-verifies a ListObjectsV2 whose prefix has
        # a '/', the aws CLI's own included). Open: prefixes ("corrupt/").
        cls.signed = Moto(cls.dir, True, ["rootseal-drill", "rootseal-cut"])
        cls.open = Moto(cls.dir, False, [BUCKET])
        wrong = os.path.join(cls.dir, "wrong-secret")
        with open(wrong, "w") as f:
            f.write("not-the-secret\n")
        os.chmod(wrong, 0o600)
        cls.wrong_secret = wrong
        # Custodian keys for the ceremony (X25519, by the openssl tool).
        cls.keys = os.path.join(cls.dir, "keys")
        os.makedirs(cls.keys)
        for name in CUSTODIANS:
            key = os.path.join(cls.keys, name + ".key")
            subprocess.run(["openssl", "genpkey", "-algorithm", "X25519", "-out", key], check=True, capture_output=True)
            subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", os.path.join(cls.keys, name + ".pub")],
                           check=True)

    @classmethod
    def tearDownClass(cls):
        for moto in (cls.signed, cls.open):
            if moto is not None:
                moto.close()
        rmtree(cls.dir)

    def setUp(self):
        self.daemons = []
        self.proxies = []

    def tearDown(self):
        for d in self.daemons:
            d.close()
        for p in self.proxies:
            p.close()

    # --- helpers -------------------------------------------------------------
    def configure(self, d, moto, bucket, prefix, interval="1s", count=3, enabled=True, port=None):
        d.write_config(
            "admin:\n  socket: %s\n"
            "tokens:\n  - name: test\n    sha256: %s\n    policies: [root]\n"
            "snapshots:\n  enabled: %s\n  interval: %s\n  retain:\n    count: %d\n"
            "  destinations:\n    - name: s3\n      kind: s3\n      bucket: %s\n      prefix: \"%s\"\n"
            "      region: us-east-1\n      endpoint: http://127.0.0.1:%d\n      server_side_encryption: AES256\n"
            "      access_key_id: {file: %s}\n      secret_access_key: {file: %s}\n"
            "    - name: local\n      kind: folder\n      path: %s\n"
            % (d.p("admin.sock"), hashlib.sha256(d.token.encode()).hexdigest(), "true" if enabled else "false",
               interval, count, bucket, prefix, port or moto.port, moto.id_file, moto.secret_file,
               d.p("local-snapshots")),
            pin_file=self.pin_file(d))

    def ceremony_init(self, d, transcript):
        args = ["ceremony", "init", "--module", SOFTHSM2_MODULE, "--token", d.token_label, "--threshold", "2",
                "--out", os.path.join(self.dir, "shares-" + d.token_label), "--transcript-dir", transcript,
                "--officer", "Olga", "--witness", "Walt"]
        for name in CUSTODIANS:
            args += ["--custodian", "%s=%s" % (name, os.path.join(self.keys, name + ".pub"))]
        self.cli(args, d.env, pin=d.pin)
        shares = os.path.join(self.dir, "shares-" + d.token_label)
        return [os.path.join(shares, f) for f in sorted(os.listdir(shares))]

    def ceremony_restore(self, d, transcript, shares):
        typed = ""
        for i in (0, 2):
            out, _ = self.cli(["ceremony", "share", "decrypt", "--share", shares[i], "--key",
                               os.path.join(self.keys, CUSTODIANS[i] + ".key")], d.env)
            typed += out
        self.cli(["ceremony", "restore", "--module", SOFTHSM2_MODULE, "--token", d.token_label, "--typed",
                  "--transcript-dir", transcript], d.env, pin=d.pin, stdin=typed.encode())

    # --- the drill -----------------------------------------------------------
    def test_disaster_drill_restore_on_second_host_from_s3(self):
        moto, bucket, prefix = self.signed, "rootseal-drill", ""
        transcript = os.path.join(self.dir, "transcript-drill")
        a = self.host("A", "snap-pin-4a7e91")
        shares = self.ceremony_init(a, transcript)
        self.configure(a, moto, bucket, prefix, interval="2s")
        a.start()
        self.unsealed(a)

        # 100 keys x 10 versions; a ciphertext under every version.
        recorded = self.make_keys(a, KEYS, VERSIONS)
        self.assertEqual(len(recorded), KEYS * VERSIONS)
        # A token created over the admin socket: stored hashed in tokens.db.
        out, _ = self.cli(["token", "create", "--policy", "root", "--socket", a.p("admin.sock")], a.env)
        created = re.search(r"(?m)^token\s+(rs\.[0-9a-f]{48})$", out).group(1)

        # A scheduled snapshot taken after all of that, good at both destinations.
        done = time.time()
        self.wait_metric(a, lambda m: m.get("rootseal_snapshot_last_good_timestamp_seconds", 0) > done,
                         "a good snapshot after the keys were written", timeout=120)
        m = self.metrics(a)
        self.assertGreater(m["rootseal_snapshot_last_good_size_bytes"], 100000)
        self.assertEqual(m["rootseal_snapshot_interval_seconds"], 2)
        self.assertLess(m["rootseal_snapshot_age_seconds"], 10)

        # What the aws CLI sees in the bucket: names that sort by time, the newest holds everything.
        names = moto.objects(bucket, prefix)
        self.assertTrue(names, "no snapshot in S3")
        self.assertTrue(all(re.match(r"^rootseal-\d{8}T\d{6}\.\d{3}Z\.snap$", n) for n in names), names)
        self.assertLessEqual(len(names), 3)  # retain.count
        newest = moto.fetch(self.dir, bucket, prefix, names[-1])
        self.assertTrue(newest.startswith(b"rootseal-snapshot 1\n"))
        manifest = json.loads(newest.split(b"\n", 2)[1])
        self.assertEqual((manifest["keys"], manifest["versions"]), (KEYS, KEYS * VERSIONS))
        self.assertEqual([s["name"] for s in manifest["sections"]], ["keyring", "tokens"])
        self.assertEqual(hashlib.sha256(newest.split(b"\n", 2)[2]).hexdigest(), manifest["content_sha256"])
        self.assertRegex(manifest["root_kcv"], r"^[0-9a-f]{6}$")
        with open(os.path.join(a.dir, "state", "cluster-id")) as f:
            self.assertEqual(manifest["cluster_id"], f.read().strip())
        # The same snapshot in the local folder destination.
        self.assertIn(names[-1], os.listdir(a.p("local-snapshots")))

        # No PIN, no token in clear, nothing from the audit log.
        self.assertNotIn(a.pin.encode(), newest)
        self.assertNotIn(a.token.encode(), newest)
        self.assertNotIn(created.encode(), newest)
        self.assertIn(hashlib.sha256(created.encode()).hexdigest().encode(), newest)  # stored hashed: it is there
        with open(os.path.join(a.dir, "state", "audit.log"), "rb") as f:
            audit = [json.loads(l) for l in f.read().splitlines() if l.strip()]
        self.assertGreater(len(audit), KEYS * VERSIONS)
        for line in audit[-50:]:
            for field in ("sha256", "prev_sha256", "request_id", "id"):
                if isinstance(line.get(field), str) and len(line[field]) >= 16:
                    self.assertNotIn(line[field].encode(), newest, field)
        self.assertNotIn(b'"operation"', newest)

        # Disaster: host A and its state folder are gone.
        self.assertEqual(a.stop(), 0)
        rmtree(os.path.join(a.dir, "state"))

        # Host B: its own token gets the root through the ceremony.
        b = self.host("B", "snap-pin-b2c8d4")
        self.ceremony_restore(b, transcript, shares)
        b.token = a.token
        self.configure(b, moto, bucket, prefix, enabled=False)
        out, _ = self.cli(["snapshot", "list", "--config", b.config], b.env)
        self.assertIn(names[-1], out)
        out, _ = self.cli(["snapshot", "restore", "--config", b.config] + self.token_args(b), b.env, pin=b.pin)
        self.assertIn("%d keys, %d versions: every one unwraps" % (KEYS, KEYS * VERSIONS), out)
        self.assertIn("restored into %s/state" % b.dir, out)
        # A second restore onto the now non-empty state is refused without --force.
        _, err = self.cli(["snapshot", "restore", "--config", b.config] + self.token_args(b), b.env, pin=b.pin,
                          expect=1)
        self.assertIn("is not empty", err)
        self.assertIn("--force", err)

        b.start()
        self.unsealed(b)
        # Never under a running rootseald, --force or not: it holds the state folder's lock.
        _, err = self.cli(["snapshot", "restore", "--config", b.config, "--force"] + self.token_args(b), b.env,
                          pin=b.pin, expect=1)
        self.assertIn("is in use by pid", err)
        self.assertIn("rootseald", err)
        for name, ct, plain in recorded:
            got = self.api(b, "POST", "/v1/transit/decrypt/" + name, {"ciphertext": ct})["data"]["plaintext"]
            self.assertEqual(got, plain, name)
        # The token created on A works on B (tokens.db came with the snapshot).
        r = b.call("GET", "/v1/auth/token/lookup-self", token=created)
        self.assertEqual(r.status, 200, r.data)

    # --- corruption ------------------------------------------------------------
    def test_one_changed_byte_is_refused_by_verify_and_restore(self):
        moto, bucket, prefix = self.open, BUCKET, "corrupt/"
        a = self.host("C", "snap-pin-c0ffee")
        self.configure(a, moto, bucket, prefix, interval="1s")
        a.start()
        self.unsealed(a)
        for k in range(5):
            self.api(a, "POST", "/v1/transit/keys/c-%d" % k, {}, expect=(200, 204))
        done = time.time()
        self.wait_metric(a, lambda m: m.get("rootseal_snapshot_last_good_timestamp_seconds", 0) > done, "a good snapshot")
        self.assertEqual(a.stop(), 0)
        names = moto.objects(bucket, prefix)
        good = moto.fetch(self.dir, bucket, prefix, names[-1])
        out, _ = self.cli(["snapshot", "verify", names[-1], "--config", a.config] + self.token_args(a), a.env,
                          pin=a.pin)
        self.assertIn("5 keys, 5 versions: every one unwraps", out)
        # The signed moto_server checks signatures: the right key lists, a wrong secret is refused.
        self.configure(a, self.signed, "rootseal-cut", "", enabled=False)
        self.cli(["snapshot", "list", "--config", a.config], a.env)
        with open(a.config) as f:
            text = f.read()
        wrong = a.p("wrong.yaml")
        with open(wrong, "w") as f:
            f.write(text.replace(self.signed.secret_file, self.wrong_secret))
        _, err = self.cli(["snapshot", "list", "--config", wrong], a.env, expect=1)
        self.assertIn("s3: ListObjectsV2: HTTP 403 SignatureDoesNotMatch", err)
        self.assertNotIn("not-the-secret", err)

        # One byte of the object changed, uploaded with the aws CLI under a newer name.
        bad = bytearray(good)
        bad[len(bad) - 1000] ^= 0x20
        bad_name = "rootseal-29991231T235959.999Z.snap"
        path = os.path.join(self.dir, bad_name)
        with open(path, "wb") as f:
            f.write(bytes(bad))
        moto.aws("s3", "cp", path, "s3://%s/%s%s" % (bucket, prefix, bad_name))
        self.configure(a, moto, bucket, prefix, enabled=False)
        _, err = self.cli(["snapshot", "verify", "--config", a.config] + self.token_args(a), a.env, pin=a.pin, expect=1)
        self.assertIn("snapshot %s: snapshot refused: content SHA-256 does not match the manifest" % bad_name, err)
        target = os.path.join(self.dir, "corrupt-restore")
        _, err = self.cli(["snapshot", "restore", bad_name, "--config", a.config, "--state-dir", target]
                          + self.token_args(a), a.env, pin=a.pin, expect=1)
        self.assertIn("content SHA-256 does not match", err)
        self.assertFalse(os.path.exists(os.path.join(target, "rootseal.db")))
        # A one-byte change in the manifest (the key count) is refused too, with its reason.
        forged = good.replace(b'"keys":5,', b'"keys":6,', 1)
        self.assertNotEqual(forged, good)
        with open(path, "wb") as f:
            f.write(forged)
        _, err = self.cli(["snapshot", "verify", "--file", path] + self.token_args(a), a.env, pin=a.pin, expect=1)
        self.assertIn("the keyring holds 5 keys and 5 versions, the manifest says 6 and 5", err)

    # --- a snapshot on request, over the admin socket ------------------------------
    def test_snapshot_now_over_the_admin_socket(self):
        moto, bucket, prefix = self.open, BUCKET, "now/"
        a = self.host("E", "snap-pin-e4e4e4")
        self.configure(a, moto, bucket, prefix, interval="1h")
        a.start()
        self.unsealed(a)
        for k in range(3):
            self.api(a, "POST", "/v1/transit/keys/now-%d" % k, {}, expect=(200, 204))
        self.assertEqual(moto.objects(bucket, prefix), [])  # the timer's first run is an hour away
        out, _ = self.cli(["snapshot", "now", "--socket", a.p("admin.sock")], a.env)
        m = re.search(r"^snapshot (rootseal-\S+\.snap): good at 2 destinations \(\d+ bytes, 3 keys, 3 versions "
                      r"unwrapped\)$", out.strip())
        self.assertIsNotNone(m, out)
        self.assertEqual(moto.objects(bucket, prefix), [m.group(1)])
        self.assertEqual(self.metrics(a)["rootseal_snapshots_good_total"], 1)
        self.assertEqual(a.stop(), 0)

        # A daemon without snapshots: says so.
        b = self.host("F", "snap-pin-f5f5f5")
        self.configure(b, moto, bucket, prefix, enabled=False)
        b.start()
        self.unsealed(b)
        _, err = self.cli(["snapshot", "now", "--socket", b.p("admin.sock")], b.env, expect=1)
        self.assertIn("this rootseald takes no snapshots", err)

    # --- failed uploads and retention -------------------------------------------
    def test_failed_upload_counts_nothing_and_deletes_nothing(self):
        moto, bucket, prefix = self.signed, "rootseal-cut", ""
        proxy = CutProxy(moto.port)
        self.proxies.append(proxy)
        a = self.host("D", "snap-pin-d00d42")
        self.configure(a, moto, bucket, prefix, interval="1s", count=2, port=proxy.port)
        a.start()
        self.unsealed(a)
        self.api(a, "POST", "/v1/transit/keys/cut-0", {}, expect=(200, 204))
        self.wait_metric(a, lambda m: m.get("rootseal_snapshots_good_total", 0) >= 3, "three good snapshots")
        self.wait_metric(a, lambda m: m.get("rootseal_snapshots_deleted_total", 0) >= 1, "retention at work")
        # retain.count between runs (a run's upload lands before its retention deletes the oldest).
        a.wait_for(lambda: len(moto.objects(bucket, prefix)) == 2, "retain.count objects between runs")

        proxy.set_cut(True)
        before = self.metrics(a)
        failures = before["rootseal_snapshot_failures_total"]
        self.wait_metric(a, lambda m: m["rootseal_snapshot_failures_total"] >= failures + 3, "three failed uploads")
        during = self.metrics(a)
        kept = moto.objects(bucket, prefix)
        self.assertGreater(proxy.cuts, 0)
        # Counted good: nothing new. Deleted by retention: nothing.
        self.assertLessEqual(during["rootseal_snapshots_good_total"], before["rootseal_snapshots_good_total"] + 1)
        last_good = during["rootseal_snapshot_last_good_timestamp_seconds"]
        self.wait_metric(a, lambda m: m["rootseal_snapshot_failures_total"] >= during["rootseal_snapshot_failures_total"] + 2,
                         "two more failed uploads")
        after = self.metrics(a)
        self.assertEqual(after["rootseal_snapshots_good_total"], during["rootseal_snapshots_good_total"])
        self.assertEqual(after["rootseal_snapshot_last_good_timestamp_seconds"], last_good)
        self.assertEqual(after["rootseal_snapshots_deleted_total"], during["rootseal_snapshots_deleted_total"])
        self.assertGreaterEqual(after["rootseal_snapshot_age_seconds"], time.time() - last_good - 1)
        self.assertEqual(moto.objects(bucket, prefix), kept)  # no partial object, nothing deleted
        self.assertIn("snapshot failed", a.log())

        # Uploads work again: good snapshots, retention back to the newest two.
        proxy.set_cut(False)
        self.wait_metric(a, lambda m: m["rootseal_snapshots_good_total"] >= after["rootseal_snapshots_good_total"] + 2,
                         "good snapshots again")
        a.wait_for(lambda: (lambda names: len(names) == 2 and names[0] > kept[-1])(moto.objects(bucket, prefix)),
                   "the newest two, taken after the failures")


if __name__ == "__main__":
    unittest.main()
