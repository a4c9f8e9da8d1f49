"""Vault's transit seal, replayed request by request against the real rootseald
over TLS with a required client certificate (mutual TLS): renew-self with
increment 0, PUT encrypt of "YQ==", decrypt, heartbeats, key rotation then
decrypt of the old blobs (and their upgrade), across a restart. Then bad
input over the same real server: a slow-loris client cut by the header
timeout, a stalled body cut by the request timeout, an oversized body (413),
an expired token, malformed and tampered requests; the daemon stays up and
keeps answering, and the audit log holds no secret."""
import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
import time
import unittest

from rootseal_testlib import ConfigDaemon, make_tls_material, sha256_hex, wait_until, write_private

SEAL_TOKEN = "s.vault-transit-seal-token-0123456789"   # renewable, 1 h, policy autounseal
ADMIN_TOKEN = "s.rootseal-admin-token-0123456789"       # manages the autounseal key
SHORT_TOKEN = "s.short-lived-token-0123456789"          # expires 12 s after start
MAX_BODY = 64 * 1024


def b64(data):
    return base64.b64encode(data).decode()


class TransitSealOverMutualTlsTest(unittest.TestCase):
    def setUp(self):
        self.d = ConfigDaemon("rootseal-seal-tls-", "seal", pin="2222")
        self.dir = self.d.dir
        self.port = self.d.port
        make_tls_material(self.dir, ca_cn="rootseal-seal-test-ca")
        self.d.write_config(
            listen=self.d.tls_listen(require_client_cert=True),
            pin_file=write_private(self.p("pin"), "2222"),
            rest="""api:
  max_body_bytes: %(max_body)d
  request_timeout: 2s
audit:
  file: %(dir)s/audit.log
policies:
  autounseal:
    keys: [autounseal]
    operations: [encrypt, decrypt]
  admin:
    keys: [autounseal]
    operations: [create, read, rotate, config]
tokens:
  - name: vault-seal
    sha256: %(seal)s
    policies: [autounseal]
    ttl: 1h
    renewable: true
  - name: admin
    sha256: %(admin)s
    policies: [admin]
  - name: short
    sha256: %(short)s
    policies: [autounseal]
    ttl: 12s
""" % {"dir": self.dir, "max_body": MAX_BODY, "seal": sha256_hex(SEAL_TOKEN), "admin": sha256_hex(ADMIN_TOKEN),
       "short": sha256_hex(SHORT_TOKEN)})
        self.proc = None

    def p(self, leaf):
        return self.d.p(leaf)

    def tearDown(self):
        self.stop()
        self.d.close()

    def start(self):
        self.proc = self.d.start()
        wait_until(self.proc, self.log, lambda: self.call("GET", "/v1/sys/health")[0] == 200, "unsealed over mTLS", 60)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.assertEqual(self.d.stop(), 0, self.log())
        self.proc = None

    def log(self):
        return self.d.log()

    def ctx(self, client_cert=True):
        return self.d.tls_context(client_cert)

    def call(self, method, path, body=None, token=None, raw_body=None):
        """One request the way Vault's api client sends it (Logical().Write is a PUT)."""
        r = self.d.call(method, path, body, token, headers={"X-Vault-Request": "true"}, raw_body=raw_body,
                        context=self.ctx())
        return r.status, r.content_type, r.json()

    def tls_socket(self):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        return self.ctx().wrap_socket(raw, server_hostname="127.0.0.1")

    # -- the seal's own sequence ------------------------------------------------

    def seal_encrypt(self, plaintext):
        status, ctype, body = self.call("PUT", "/v1/transit/encrypt/autounseal", {"plaintext": b64(plaintext)},
                                        SEAL_TOKEN)
        self.assertEqual((status, ctype), (200, "application/json"), body)
        ct = body["data"]["ciphertext"]
        self.assertIsInstance(ct, str)
        parts = ct.split(":")
        self.assertEqual(len(parts), 3, ct)  # the seal needs exactly 3 parts; KeyId = the middle one
        return ct, parts[1]

    def seal_decrypt(self, ct):
        status, ctype, body = self.call("PUT", "/v1/transit/decrypt/autounseal", {"ciphertext": ct}, SEAL_TOKEN)
        self.assertEqual((status, ctype), (200, "application/json"), body)
        self.assertIsInstance(body["data"]["plaintext"], str)
        return base64.b64decode(body["data"]["plaintext"], validate=True)

    def test_transit_seal_sequence_with_rotation_and_restart(self):
        self.start()
        # The TLS layer requires a client certificate: without one there is no HTTP at all.
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.ctx(False))
            conn.request("GET", "/v1/sys/health")
            conn.getresponse().read()

        # The operator creates the seal's key (the seal itself may not create it).
        status, _, body = self.call("PUT", "/v1/transit/encrypt/autounseal", {"plaintext": "YQ=="}, SEAL_TOKEN)
        self.assertEqual((status, body), (400, {"errors": ["encryption key not found"]}))
        status, _, body = self.call("POST", "/v1/transit/keys/autounseal", {}, ADMIN_TOKEN)
        self.assertEqual(status, 200, body)

        # 1. SetConfig: renew-self with increment 0 must return a real auth block.
        status, ctype, body = self.call("PUT", "/v1/auth/token/renew-self", {"increment": 0}, SEAL_TOKEN)
        self.assertEqual((status, ctype), (200, "application/json"), body)
        self.assertEqual(body["auth"]["client_token"], SEAL_TOKEN)
        self.assertTrue(body["auth"]["renewable"])
        self.assertEqual(body["auth"]["lease_duration"], 3600)
        self.assertEqual(body["auth"]["policies"], ["autounseal"])
        # 2. The test encrypt of "a" (YQ==) that sets the KeyId, then decrypt of it.
        ct_a, key_id = self.seal_encrypt(b"a")
        self.assertEqual(key_id, "v1")
        self.assertEqual(self.seal_decrypt(ct_a), b"a")
        # Initialization stores the wrapped barrier/recovery keys.
        barrier = os.urandom(32)
        recovery = os.urandom(32)
        blob_barrier, _ = self.seal_encrypt(barrier)
        blob_recovery, _ = self.seal_encrypt(recovery)
        # 3. The health check: encrypt then decrypt "Heartbeat N".
        for n in range(1, 4):
            ct, kid = self.seal_encrypt(b"Heartbeat %d" % n)
            self.assertEqual(kid, "v1")
            self.assertEqual(self.seal_decrypt(ct), b"Heartbeat %d" % n)

        # 4. The operator rotates the key; the seal's token may not.
        status, _, _ = self.call("POST", "/v1/transit/keys/autounseal/rotate", {}, SEAL_TOKEN)
        self.assertEqual(status, 403)
        status, _, body = self.call("POST", "/v1/transit/keys/autounseal/rotate", {}, ADMIN_TOKEN)
        self.assertEqual((status, body["data"]["latest_version"]), (200, 2))
        # Old blobs still decrypt; new encryptions use v2.
        self.assertEqual(self.seal_decrypt(blob_barrier), barrier)
        _, kid = self.seal_encrypt(b"a")
        self.assertEqual(kid, "v2")
        # UpgradeKeys: a KeyId differs from the current one, so decrypt and re-encrypt.
        upgraded, kid = self.seal_encrypt(self.seal_decrypt(blob_recovery))
        self.assertEqual(kid, "v2")
        self.assertEqual(self.seal_decrypt(upgraded), recovery)

        # 5. A restart of rootseald (the seal's blobs outlive it): both versions still open.
        self.stop()
        self.start()
        status, _, body = self.call("PUT", "/v1/auth/token/renew-self", {"increment": 0}, SEAL_TOKEN)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.seal_decrypt(blob_barrier), barrier)
        self.assertEqual(self.seal_decrypt(upgraded), recovery)
        self.assertEqual(self.seal_decrypt(ct_a), b"a")
        ct, kid = self.seal_encrypt(b"Heartbeat 4")
        self.assertEqual((kid, self.seal_decrypt(ct)), ("v2", b"Heartbeat 4"))
        self.stop()

        # Every request is in the audit log, denied ones too; no token, plaintext or blob.
        with open(self.p("audit.log")) as f:
            raw = f.read()
        lines = [json.loads(l) for l in raw.splitlines()]
        self.assertGreaterEqual(len(lines), 20)
        self.assertTrue(all(l.get("client_cert", "").endswith("CN=vault-seal") for l in lines), lines[0])
        denied = [l for l in lines if l["status"] == 403]
        self.assertEqual([(l["outcome"], l["operation"]) for l in denied], [("denied", "rotate")])
        self.assertTrue(denied[0]["accessor"])
        for secret in (SEAL_TOKEN, ADMIN_TOKEN, ct_a, blob_barrier, blob_barrier.split(":")[2][:16], upgraded,
                       b64(barrier), b64(recovery), "YQ==", "SGVhcnRiZWF0"):
            self.assertNotIn(secret, raw)
        cli = os.environ["ROOTSEAL_CLI"]
        verify = subprocess.run([cli, "audit", "verify", self.p("audit.log")], capture_output=True)
        self.assertEqual(verify.returncode, 0, verify.stderr)

    # -- bad input over the real server ----------------------------------------

    def test_bad_input_over_mutual_tls_leaves_the_daemon_serving(self):
        self.start()
        self.assertEqual(self.call("POST", "/v1/transit/keys/autounseal", {}, ADMIN_TOKEN)[0], 200)
        good, _ = self.seal_encrypt(b"keep me")
        # The short-lived token works while it lives (it expires during the slow clients below).
        status, _, _ = self.call("PUT", "/v1/transit/encrypt/autounseal", {"plaintext": "YQ=="}, SHORT_TOKEN)
        self.assertEqual(status, 200)

        # A slow-loris client (half a header, then nothing) is cut by the header timeout (10 s) ...
        slow = self.tls_socket()
        slow.sendall(b"PUT /v1/transit/encrypt/autounseal HTTP/1.1\r\nHost: x\r\nX-Vault-Tok")
        started = time.monotonic()
        # ... while other clients are served meanwhile.
        self.assertEqual(self.seal_decrypt(good), b"keep me")
        try:
            closed = slow.recv(1024)
        except (ssl.SSLError, ConnectionError):
            closed = b""
        elapsed = time.monotonic() - started
        slow.close()
        self.assertEqual(closed, b"")  # closed without an answer
        self.assertLess(elapsed, 25)
        self.assertGreater(elapsed, 5)
        # A client that stalls in the body is cut by the request timeout (2 s here).
        stall = self.tls_socket()
        stall.sendall(b"PUT /v1/transit/encrypt/autounseal HTTP/1.1\r\nHost: x\r\nX-Vault-Token: " +
                      SEAL_TOKEN.encode() + b"\r\nContent-Length: 40\r\n\r\n{\"plaintext\":")
        started = time.monotonic()
        try:
            closed = stall.recv(1024)
        except (ssl.SSLError, ConnectionError):
            closed = b""
        stall.close()
        self.assertEqual(closed, b"")
        self.assertLess(time.monotonic() - started, 10)

        # Oversized body: 413 with a JSON error, announced or not.
        # The server may answer 413 as soon as it has read the headers and close
        # while a client is still sending, so only a first part of the body is
        # sent before the answer is read (as a client that waits would see it).
        big = json.dumps({"plaintext": "A" * MAX_BODY}).encode()
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.ctx())
        try:
            conn.putrequest("PUT", "/v1/transit/encrypt/autounseal")
            conn.putheader("X-Vault-Token", SEAL_TOKEN)
            conn.putheader("Content-Length", str(len(big)))
            conn.endheaders()
            try:
                conn.send(big[:4096])
            except OSError:
                pass  # already answered and closed: the answer is still read below
            r = conn.getresponse()
            status, ctype, payload = r.status, r.getheader("Content-Type"), r.read()
        finally:
            conn.close()
        self.assertEqual((status, ctype), (413, "application/json"))
        self.assertEqual(json.loads(payload), {"errors": ["request body too large"]})

        # An expired token: 403 once its TTL has passed (polled, bounded).
        wait_until(self.proc, self.log,
                   lambda: self.call("GET", "/v1/auth/token/lookup-self", token=SHORT_TOKEN)[0] == 403,
                   "the short token to expire", 15)
        status, ctype, body = self.call("PUT", "/v1/transit/encrypt/autounseal", {"plaintext": "YQ=="}, SHORT_TOKEN)
        self.assertEqual((status, ctype, body), (403, "application/json", {"errors": ["permission denied"]}))
        status, _, body = self.call("PUT", "/v1/auth/token/renew-self", {"increment": 0}, SHORT_TOKEN)
        self.assertEqual(status, 403)

        # Malformed, mistyped, tampered, truncated, unknown key, another policy, wrong token.
        tampered = good[:12] + ("A" if good[12] != "A" else "B") + good[13:]
        cases = [
            ("PUT", "/v1/transit/encrypt/autounseal", b'{"plaintext": ', SEAL_TOKEN, 400),
            ("PUT", "/v1/transit/encrypt/autounseal", b'{"plaintext": 5}', SEAL_TOKEN, 400),
            ("PUT", "/v1/transit/encrypt/autounseal", b'{"plaintext": "%%%"}', SEAL_TOKEN, 400),
            ("PUT", "/v1/transit/decrypt/autounseal", json.dumps({"ciphertext": tampered}).encode(), SEAL_TOKEN, 400),
            ("PUT", "/v1/transit/decrypt/autounseal", json.dumps({"ciphertext": good[:-8]}).encode(), SEAL_TOKEN, 400),
            ("PUT", "/v1/transit/decrypt/other", json.dumps({"ciphertext": good}).encode(), SEAL_TOKEN, 403),
            ("PUT", "/v1/transit/decrypt/autounseal", json.dumps({"ciphertext": good}).encode(), "s.wrong", 403),
            ("GET", "/v1/transit/keys/autounseal", None, SEAL_TOKEN, 403),
            ("PATCH", "/v1/transit/encrypt/autounseal", b"{}", SEAL_TOKEN, 405),
            ("PUT", "/v1/transit/nothing/autounseal", b"{}", SEAL_TOKEN, 404),
        ]
        for method, path, raw, token, want in cases:
            with self.subTest(method=method, path=path, body=(raw or b"")[:40]):
                status, ctype, body = self.call(method, path, token=token, raw_body=raw)
                self.assertEqual((status, ctype), (want, "application/json"), body)
                self.assertIsInstance(body["errors"], list)

        # Still up, nothing damaged.
        self.assertIsNone(self.proc.poll())
        self.assertEqual(self.seal_decrypt(good), b"keep me")
        status, _, body = self.call("GET", "/v1/sys/health")
        self.assertEqual((status, body["sealed"]), (200, False))


if __name__ == "__main__":
    unittest.main(verbosity=2)
