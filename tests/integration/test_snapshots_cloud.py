"""Keyring snapshots (issue 24) to Google Cloud Storage and Azure Blob Storage:
the real rootseald and `rootseal` CLI against the GCS and Azure Blob doubles
(tests/doubles/gcs, azure_blob; both checked with the real npm clients by
integration_double_gcs / integration_double_azure_blob), over TLS with a
throwaway CA (ca_file), credentials from 0600 files. The doubles answer at
most two objects per listing page, so every listing follows page tokens.

For each of the two destinations:
- scheduled snapshots reach the bucket/container (names that sort by time,
  retain.count kept); `rootseal snapshot list` names them; `snapshot verify`
  unwraps every version; the state folder is deleted, `snapshot restore`
  fills it from the cloud, and the restarted daemon decrypts every recorded
  ciphertext;
- one byte of the stored object changed under its stored checksum (bit rot)
  is refused by verify and restore with the transport check's reason; a
  snapshot with one changed byte uploaded consistently (its checksums match)
  is refused by the snapshot's own content SHA-256;
- uploads that fail midway (the double answers 500; then drops the
  connection mid-request) count no snapshot good, retention deletes nothing
  (no delete request reaches the double), and once uploads work again the
  newest retain.count are kept;
- wrong credentials (another RSA key for the service account; a wrong client
  secret) give a clear error from `snapshot list` and from the daemon's
  scheduler, without the secret.
"""
import base64
import hashlib
import http.client
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import time
import unittest
from urllib.parse import quote, urlencode

from rootseal_testlib import SERVER_EXT, make_tls_material, rmtree, tempdir, write_private
from test_snapshots import SnapshotHelpers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "doubles", "common"))
from doublelib import load_double  # noqa: E402

gcs_double = load_double("gcs")
blob_double = load_double("azure_blob")

EMAIL = "snapshots@rootseal-test.iam.gserviceaccount.com"
BUCKET = "rootseal-snaps"
TENANT, CLIENT, SECRET = "72f988bf-tenant", "rootseal-snapshots", "Az-bl0b-s3cret~x"
ACCOUNT, CONTAINER = "rootsealbackups", "snapshots"
KEYS, VERSIONS = 12, 3


def openssl(*args, stdin=None):
    return subprocess.run(["openssl"] + list(args), input=stdin, check=True, capture_output=True).stdout


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


class StoreDouble:
    """What both doubles' wrappers share: the stored objects (name -> entry
    with "data") under the double's lock, read and changed in place."""

    def stored(self):
        raise NotImplementedError

    def objects(self, prefix):
        with self.d.state.lock:
            names = sorted(self.stored())
        return [n[len(prefix):] for n in names if n.startswith(prefix) and "/" not in n[len(prefix):]]

    def read(self, prefix, name):
        with self.d.state.lock:
            return self.stored()[prefix + name]["data"]

    def rot(self, prefix, name, offset):
        """One byte flipped, the checksums stored with the object unchanged."""
        with self.d.state.lock:
            e = self.stored()[prefix + name]
            data = bytearray(e["data"])
            data[offset] ^= 0x20
            e["data"] = bytes(data)

    def deletes(self):
        return self.d.stats()["by_verb"].get("delete", 0)

    def uploads(self):
        return self.d.stats()["by_verb"].get(self.upload_verb, 0)

    def close(self):
        self.d.stop()


class Gcs(StoreDouble):
    """The GCS double and what a destination of kind gcs needs."""
    kind = "gcs"

    def __init__(self, folder, tls):
        self.folder = folder
        self.sa_key = os.path.join(folder, "sa.pem")
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", self.sa_key)
        other = os.path.join(folder, "other.pem")
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", other)
        self.key_file = self._sa_file("sa.json", self.sa_key)
        self.wrong_file = self._sa_file("sa-wrong.json", other)
        pub = openssl("pkey", "-in", self.sa_key, "-pubout").decode()
        self.d = gcs_double.GcsDouble(tls_cert=tls[0], tls_key=tls[1], accounts={EMAIL: (pub, "key-1")},
                                      buckets=[BUCKET], page_limit=2).start()
        self.ctx = ssl.create_default_context(cafile=tls[2])

    def _sa_file(self, name, key):
        # token_uri stays Google's: the destination's token_uri option overrides it (explicitly).
        with open(key) as f:
            pem = f.read()
        return write_private(os.path.join(self.folder, name), json.dumps({
            "type": "service_account", "project_id": "rootseal-test", "private_key_id": "key-1",
            "private_key": pem, "client_email": EMAIL,
            "token_uri": "https://oauth2.googleapis.com/token"}))

    def destination(self, prefix, wrong=False):
        return ("      bucket: %s\n      prefix: \"%s\"\n      endpoint: %s\n      token_uri: %s/token\n"
                "      service_account_json: {file: %s}\n"
                % (BUCKET, prefix, self.d.url, self.d.url, self.wrong_file if wrong else self.key_file))

    def stored(self):
        return self.d.state.buckets[BUCKET]

    def upload(self, prefix, name, data):
        """A consistent upload (checksums of these bytes) over the JSON API, with a self-signed JWT."""
        now = int(time.time())
        signing_input = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "." + b64url(json.dumps({
            "iss": EMAIL, "sub": EMAIL, "aud": "https://storage.googleapis.com/", "iat": now,
            "exp": now + 600}).encode())
        token = signing_input + "." + b64url(openssl("dgst", "-sha256", "-sign", self.sa_key,
                                                     stdin=signing_input.encode()))
        c = http.client.HTTPSConnection("127.0.0.1", self.d.port, context=self.ctx, timeout=10)
        c.request("POST", "/upload/storage/v1/b/%s/o?uploadType=media&name=%s" % (BUCKET, quote(prefix + name, safe="")),
                  body=data, headers={"Authorization": "Bearer " + token, "Content-Type": "application/octet-stream"})
        r = c.getresponse()
        assert r.status == 200, r.read()
        c.close()

    def fail_uploads(self, status):
        self.d.faults.add({"status": status, "count": 100000, "path": "^/upload/"})

    upload_verb = "insert"


class Blob(StoreDouble):
    """The Azure Blob double and what a destination of kind azure needs."""
    kind = "azure"

    def __init__(self, folder, tls):
        self.secret_file = write_private(os.path.join(folder, "client-secret"), SECRET + "\n")
        self.wrong_file = write_private(os.path.join(folder, "client-secret-wrong"), "not-the-secret\n")
        self.d = blob_double.AzureBlobDouble(tls_cert=tls[0], tls_key=tls[1], tenant=TENANT,
                                             clients={CLIENT: SECRET}, accounts={ACCOUNT: [CONTAINER]},
                                             page_limit=2).start()
        self.ctx = ssl.create_default_context(cafile=tls[2])

    def destination(self, prefix, wrong=False):
        return ("      account: %s\n      container: %s\n      prefix: \"%s\"\n      endpoint: %s\n"
                "      tenant_id: %s\n      client_id: %s\n      authority_host: %s\n      client_secret: {file: %s}\n"
                % (ACCOUNT, CONTAINER, prefix, self.d.url, TENANT, CLIENT, self.d.url,
                   self.wrong_file if wrong else self.secret_file))

    def stored(self):
        return self.d.accounts[ACCOUNT][CONTAINER]

    def upload(self, prefix, name, data):
        """A consistent Put Blob (Content-MD5 of these bytes) with a client-credentials token."""
        c = http.client.HTTPSConnection("127.0.0.1", self.d.port, context=self.ctx, timeout=10)
        c.request("POST", "/%s/oauth2/v2.0/token" % TENANT, body=urlencode({
            "grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET,
            "scope": "https://storage.azure.com/.default"}), headers={"Content-Type": "application/x-www-form-urlencoded"})
        token = json.loads(c.getresponse().read())["access_token"]
        c.request("PUT", "/%s/%s/%s%s" % (ACCOUNT, CONTAINER, prefix, name), body=data, headers={
            "Authorization": "Bearer " + token, "x-ms-version": "2021-08-06", "x-ms-blob-type": "BlockBlob",
            "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode()})
        r = c.getresponse()
        assert r.status == 201, r.read()
        c.close()

    def fail_uploads(self, status):
        self.d.faults.add({"status": status, "count": 100000, "method": "PUT"})

    upload_verb = "put"


class CloudSnapshotTest(SnapshotHelpers):
    """The checks, run once per destination kind (the subclasses below)."""
    store_class = None

    @classmethod
    def setUpClass(cls):
        cls.dir = tempdir("rootseal-snapcloud-")
        cls.store = None
        try:
            make_tls_material(cls.dir, leaves=(("server", "127.0.0.1", SERVER_EXT),))
            cls.ca = os.path.join(cls.dir, "ca.pem")
            cls.store = cls.store_class(cls.dir, (os.path.join(cls.dir, "server.pem"),
                                                  os.path.join(cls.dir, "server.key"), cls.ca))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.store is not None:
            cls.store.close()
        rmtree(cls.dir)

    def setUp(self):
        self.daemons = []
        self.store.d.faults.clear()

    def tearDown(self):
        for d in self.daemons:
            d.close()

    def configure(self, d, prefix, interval="1s", count=3, enabled=True, wrong=False):
        d.write_config(
            "admin:\n  socket: %s\n"
            "tokens:\n  - name: test\n    sha256: %s\n    policies: [root]\n"
            "snapshots:\n  enabled: %s\n  interval: %s\n  retain:\n    count: %d\n"
            "  destinations:\n    - name: cloud\n      kind: %s\n      ca_file: %s\n%s"
            % (d.p("admin.sock"), hashlib.sha256(d.token.encode()).hexdigest(), "true" if enabled else "false",
               interval, count, self.store.kind, self.ca, self.store.destination(prefix, wrong)),
            pin_file=self.pin_file(d))

    def good_snapshot_after(self, d, t, timeout=60):
        self.wait_metric(d, lambda m: m.get("rootseal_snapshot_last_good_timestamp_seconds", 0) > t,
                         "a good snapshot after %.3f" % t, timeout=timeout)

    # --- scheduled, listed, verified, restored -------------------------------------
    def test_scheduled_snapshots_restore_onto_an_empty_state(self):
        prefix = "drill/"
        counted = self.store.d.stats()
        a = self.host(self.store.kind + "-a", "cloud-pin-" + secrets.token_hex(3))
        self.configure(a, prefix, interval="1s", count=3)
        a.start()
        self.unsealed(a)
        recorded = []
        for k in range(KEYS):
            name = "cloud-%02d" % k
            self.api(a, "POST", "/v1/transit/keys/" + name, {}, expect=(200, 204))
            for v in range(1, VERSIONS + 1):
                if v > 1:
                    self.api(a, "POST", "/v1/transit/keys/%s/rotate" % name, {})
                plain = base64.b64encode(("%s v%d %s" % (name, v, secrets.token_hex(6))).encode()).decode()
                ct = self.api(a, "POST", "/v1/transit/encrypt/" + name, {"plaintext": plain})["data"]["ciphertext"]
                recorded.append((name, ct, plain))
        done = time.time()
        self.good_snapshot_after(a, done)
        # More scheduled runs: retention keeps retain.count.
        self.wait_metric(a, lambda m: m.get("rootseal_snapshots_deleted_total", 0) >= 1, "retention at work")
        a.wait_for(lambda: len(self.store.objects(prefix)) == 3, "retain.count objects between runs")
        self.assertEqual(a.stop(), 0)
        names = self.store.objects(prefix)
        # A run stopped between its upload and its retention leaves one more.
        self.assertIn(len(names), (3, 4), names)
        self.assertTrue(all(re.match(r"^rootseal-\d{8}T\d{6}\.\d{3}Z\.snap$", n) for n in names), names)
        newest = self.store.read(prefix, names[-1])
        manifest = json.loads(newest.split(b"\n", 2)[1])
        self.assertEqual((manifest["keys"], manifest["versions"]), (KEYS, KEYS * VERSIONS))
        self.assertEqual(hashlib.sha256(newest.split(b"\n", 2)[2]).hexdigest(), manifest["content_sha256"])
        self.assertNotIn(a.pin.encode(), newest)
        self.assertNotIn(a.token.encode(), newest)
        # Every upload carried the checksum the service checks it against (CRC32C in
        # the GCS metadata, Content-MD5 for Azure): a corrupted upload would be refused.
        st = self.store.d.stats()
        uploads = st["by_verb"][self.store.upload_verb] - counted["by_verb"].get(self.store.upload_verb, 0)
        self.assertGreaterEqual(uploads, 3)
        self.assertEqual(st["checksummed_uploads"] - counted["checksummed_uploads"], uploads)

        self.configure(a, prefix, enabled=False)
        out, _ = self.cli(["snapshot", "list", "--config", a.config], a.env)
        for n in names:
            self.assertIn(n, out)
        out, _ = self.cli(["snapshot", "verify", "--config", a.config] + self.token_args(a), a.env, pin=a.pin)
        self.assertIn("%d keys, %d versions: every one unwraps" % (KEYS, KEYS * VERSIONS), out)

        # The state folder is lost; restore from the cloud onto the empty state.
        rmtree(os.path.join(a.dir, "state"))
        out, _ = self.cli(["snapshot", "restore", "--config", a.config] + self.token_args(a), a.env, pin=a.pin)
        self.assertIn("restored into %s/state" % a.dir, out)
        a.start()
        self.unsealed(a)
        for name, ct, plain in recorded:
            got = self.api(a, "POST", "/v1/transit/decrypt/" + name, {"ciphertext": ct})["data"]["plaintext"]
            self.assertEqual(got, plain, name)

    # --- corruption -------------------------------------------------------------------
    def test_corrupted_objects_are_refused_by_verify_and_restore(self):
        prefix = "corrupt/"
        a = self.host(self.store.kind + "-c", "cloud-pin-" + secrets.token_hex(3))
        self.configure(a, prefix, interval="1s")
        a.start()
        self.unsealed(a)
        for k in range(4):
            self.api(a, "POST", "/v1/transit/keys/c-%d" % k, {}, expect=(200, 204))
        self.good_snapshot_after(a, time.time())
        self.assertEqual(a.stop(), 0)
        self.configure(a, prefix, enabled=False)
        name = self.store.objects(prefix)[-1]
        good = self.store.read(prefix, name)

        # A consistent upload of the snapshot with one byte changed: the transport
        # checks pass, the snapshot's content SHA-256 does not.
        bad = bytearray(good)
        bad[len(bad) - 700] ^= 0x01
        forged = "rootseal-29991231T235959.999Z.snap"
        self.store.upload(prefix, forged, bytes(bad))
        _, err = self.cli(["snapshot", "verify", "--config", a.config] + self.token_args(a), a.env, pin=a.pin, expect=1)
        self.assertIn("snapshot %s: snapshot refused: content SHA-256 does not match the manifest" % forged, err)
        target = os.path.join(a.dir, "restore-forged")
        _, err = self.cli(["snapshot", "restore", forged, "--config", a.config, "--state-dir", target]
                          + self.token_args(a), a.env, pin=a.pin, expect=1)
        self.assertIn("content SHA-256 does not match", err)
        self.assertFalse(os.path.exists(os.path.join(target, "rootseal.db")))

        # Bit rot under the stored checksum: the client's read check refuses it.
        self.store.rot(prefix, name, len(good) - 900)
        reason = {"gcs": "gcs: %s does not match its CRC32C (x-goog-hash)" % name,
                  "azure": "azure-blob: %s does not match its Content-MD5" % name}[self.store.kind]
        _, err = self.cli(["snapshot", "verify", name, "--config", a.config] + self.token_args(a), a.env,
                          pin=a.pin, expect=1)
        self.assertIn(reason, err)
        target = os.path.join(a.dir, "restore-rot")
        _, err = self.cli(["snapshot", "restore", name, "--config", a.config, "--state-dir", target]
                          + self.token_args(a), a.env, pin=a.pin, expect=1)
        self.assertIn(reason, err)
        self.assertFalse(os.path.exists(os.path.join(target, "rootseal.db")))

    # --- failed uploads -------------------------------------------------------------
    def test_failed_uploads_count_nothing_and_delete_nothing(self):
        prefix = "cut/"
        a = self.host(self.store.kind + "-f", "cloud-pin-" + secrets.token_hex(3))
        self.configure(a, prefix, interval="1s", count=2)
        a.start()
        self.unsealed(a)
        self.api(a, "POST", "/v1/transit/keys/cut-0", {}, expect=(200, 204))
        self.wait_metric(a, lambda m: m.get("rootseal_snapshots_deleted_total", 0) >= 1, "retention at work")
        # Between runs the prefix holds retain.count (during one, the new upload
        # is there before retention removes the oldest).
        a.wait_for(lambda: len(self.store.objects(prefix)) == 2, "retain.count objects between runs")

        for status, what in ((500, "the double answers 500"), (0, "the double drops the connection")):
            with self.subTest(what):
                self.store.d.faults.clear()
                self.store.fail_uploads(status)
                before = self.metrics(a)
                # A run that was under way when the fault was set may still end well: wait it out.
                self.wait_metric(a, lambda m: m["rootseal_snapshot_failures_total"]
                                 >= before["rootseal_snapshot_failures_total"] + 2, "two failed uploads")
                during = self.metrics(a)
                kept, deletes, uploads = self.store.objects(prefix), self.store.deletes(), self.store.uploads()
                # While the store backs off, a run is refused locally (no request):
                # a failure need not come with an upload. The probe after the
                # backoff does reach the double.
                a.wait_for(lambda: self.store.uploads() > uploads, "an upload that reached the double")
                self.wait_metric(a, lambda m: m["rootseal_snapshot_failures_total"]
                                 >= during["rootseal_snapshot_failures_total"] + 2, "two more failed uploads")
                after = self.metrics(a)
                self.assertEqual(after["rootseal_snapshots_good_total"], during["rootseal_snapshots_good_total"])
                self.assertEqual(after["rootseal_snapshot_last_good_timestamp_seconds"],
                                 during["rootseal_snapshot_last_good_timestamp_seconds"])
                self.assertEqual(after["rootseal_snapshots_deleted_total"], during["rootseal_snapshots_deleted_total"])
                self.assertEqual(self.store.deletes(), deletes, "retention sent no delete")
                self.assertEqual(self.store.objects(prefix), kept, "nothing stored, nothing deleted")
        self.assertIn("snapshot failed", a.log())

        # Uploads work again: good snapshots, retention back to the newest two.
        self.store.d.faults.clear()
        again = self.metrics(a)["rootseal_snapshots_good_total"]
        self.wait_metric(a, lambda m: m["rootseal_snapshots_good_total"] >= again + 2, "good snapshots again")
        # Retention back to the newest two, all taken after the failures.
        a.wait_for(lambda: len(self.store.objects(prefix)) == 2 and self.store.objects(prefix)[0] > kept[-1],
                   "the newest two, taken after the failures")

    # --- wrong credentials ------------------------------------------------------------
    def test_wrong_credentials_give_a_clear_error(self):
        a = self.host(self.store.kind + "-w", "cloud-pin-" + secrets.token_hex(3))
        self.configure(a, "wrong/", enabled=False, wrong=True)
        _, err = self.cli(["snapshot", "list", "--config", a.config], a.env, expect=1)
        want = {"gcs": "gcs: token request refused: 400 invalid_grant: Invalid JWT Signature.",
                "azure": "azure-blob: token request refused: 401 invalid_client: AADSTS7000215: Invalid client "
                         "secret provided."}[self.store.kind]
        self.assertIn(want, err)
        self.assertNotIn("not-the-secret", err)
        self.assertNotIn("PRIVATE KEY", err)
        # The daemon's scheduler says the same in its log, and counts the failure.
        self.configure(a, "wrong/", interval="1s", wrong=True)
        a.start()
        self.unsealed(a)
        self.wait_metric(a, lambda m: m.get("rootseal_snapshot_failures_total", 0) >= 1, "a failed run")
        self.assertEqual(self.metrics(a)["rootseal_snapshots_good_total"], 0)
        self.assertIn(want, a.log())
        self.assertNotIn("not-the-secret", a.log())


class GcsSnapshotTest(CloudSnapshotTest, unittest.TestCase):
    store_class = Gcs


class AzureBlobSnapshotTest(CloudSnapshotTest, unittest.TestCase):
    store_class = Blob


if __name__ == "__main__":
    unittest.main()
