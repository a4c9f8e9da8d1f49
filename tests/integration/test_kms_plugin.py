"""The Kubernetes KMS v2 plugin (docs/kms-plugin.md) against a real,
independent client: @grpc/grpc-js + @grpc/proto-loader from npm
(tests/integration/kms_client/check.js), which calls like kube-apiserver (a
fresh uid, a 3 s deadline and wait-for-ready per call) and checks every answer
as the apiserver does. rootseald runs from a configuration file on a SoftHSM2
token with a 200 ms seal probe."""
import base64
import json
import os
import re
import shutil
import subprocess
import unittest

from rootseal_testlib import ConfigDaemon, Daemon, npm_install, rmtree, sha256_hex, tempdir, write_private

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "..", "kmsplugin", "proto", "api.proto")
ADMIN_TOKEN = "s.kms-admin-token-0123456789abcdef"
KEY = "k8s-etcd"


def b64(data):
    return base64.b64encode(data).decode()


# -- a second, independent client: Debian's python3-grpcio, with the three
# messages encoded and decoded by hand from the field table (no generated code).

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, data):
    """A length-delimited field (wire type 2): string, bytes, message."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _read_varint(data, i):
    """(value, next index) of the varint at data[i]."""
    value, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _read_fields(data):
    """[(number, bytes)] of a message with length-delimited fields only."""
    fields, i = [], 0
    while i < len(data):
        key, i = _read_varint(data, i)
        if key & 7 != 2:
            raise AssertionError("unexpected wire type %d" % (key & 7))
        n, i = _read_varint(data, i)
        if i + n > len(data):
            raise AssertionError("field runs past the message")
        fields.append((key >> 3, data[i:i + n]))
        i += n
    return fields


def _map_entries(fields, number):
    out = {}
    for num, entry in fields:
        if num == number:
            kv = dict(_read_fields(entry))
            out[kv.get(1, b"").decode()] = kv.get(2, b"")
    return out


class GrpcioClient:
    def __init__(self, sock):
        import grpc  # Debian's python3-grpcio (the tests run /usr/bin/python3)
        self.grpc = grpc
        self.channel = grpc.insecure_channel("unix://" + sock)
        ident = lambda b: b  # noqa: E731
        self.calls = {m: self.channel.unary_unary("/v2.KeyManagementService/" + m, request_serializer=ident,
                                                  response_deserializer=ident)
                      for m in ("Status", "Encrypt", "Decrypt")}

    def call(self, method, request):
        return self.calls[method](request, timeout=3, wait_for_ready=True)

    def status(self):
        f = dict(_read_fields(self.call("Status", b"")))
        return f.get(1, b"").decode(), f.get(2, b"").decode(), f.get(3, b"").decode()

    def encrypt(self, plaintext):
        import uuid
        fields = _read_fields(self.call("Encrypt", _field(1, plaintext) + _field(2, str(uuid.uuid4()).encode())))
        f = dict(fields)
        return f.get(1, b""), f.get(2, b"").decode(), _map_entries(fields, 3)

    def decrypt(self, ciphertext, key_id, annotations):
        import uuid
        req = _field(1, ciphertext) + _field(2, str(uuid.uuid4()).encode()) + _field(3, key_id.encode())
        for k, v in annotations.items():
            req += _field(4, _field(1, k.encode()) + _field(2, v))
        return dict(_read_fields(self.call("Decrypt", req))).get(1, b"")

    def close(self):
        self.channel.close()


class KmsPluginTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client_dir = npm_install("kms-client", os.path.join(HERE, "kms_client"))

    def setUp(self):
        self.d = ConfigDaemon("rootseal-kms-", "kms", pin="3333")
        self.pin = write_private(self.d.p("hsm-pin"), "3333\n")
        self.sock = self.d.p("kms.sock")
        self.configure(allowed_uids=[os.getuid()])

    def tearDown(self):
        self.d.close()

    def configure(self, allowed_uids):
        self.d.write_config(pin_file=self.pin, rest="""admin:
  socket: %(admin_sock)s
kms_plugin:
  enabled: true
  socket: %(sock)s
  allowed_uids: [%(uids)s]
  key: %(key)s
policies:
  kms-admin:
    keys: [%(key)s]
    operations: [read, rotate, config]
tokens:
  - name: admin
    sha256: %(admin)s
    policies: [kms-admin]
""" % {"sock": self.sock, "admin_sock": self.d.p("admin.sock"), "uids": ", ".join(str(u) for u in allowed_uids), "key": KEY,
       "admin": sha256_hex(ADMIN_TOKEN)})

    def start(self):
        self.d.start()
        [r] = self.ops([{"op": "status_until", "want": "ok", "timeout_ms": 30000}])
        self.assertTrue(r["ok"], r)
        return r["key_id"]

    def ops(self, ops, timeout=120):
        p = subprocess.run(["node", os.path.join(self.client_dir, "check.js"), self.sock, PROTO],
                           input=json.dumps(ops), capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise AssertionError("kms client failed: %s\n%s" % (p.stderr, self.d.log()))
        results = json.loads(p.stdout)
        for r in results:
            self.assertNotIn("invalid", r, "an answer kube-apiserver would reject: %r" % r)
        return results

    def one(self, op):
        return self.ops([op])[0]

    def encrypt(self, seed):
        r = self.one({"op": "encrypt", "plaintext": b64(seed)})
        self.assertTrue(r["ok"], r)
        return r

    def decrypt(self, enc, key_id=None, **changes):
        op = {"op": "decrypt", "ciphertext": enc["ciphertext"], "key_id": enc["key_id"] if key_id is None else key_id,
              "annotations": enc["annotations"]}
        op.update(changes)
        return self.one(op)

    def rotate(self):
        r = self.d.call("POST", "/v1/transit/keys/%s/rotate" % KEY, {}, ADMIN_TOKEN)
        self.assertEqual(r.status, 200, r.data)

    def audit_text(self):
        with open(os.path.join(self.d.dir, "state", "audit.log")) as f:
            return f.read()

    def metrics(self):
        return self.d.call("GET", "/v1/sys/metrics?format=prometheus").data.decode()

    def test_status_encrypt_decrypt_rotate_restart(self):
        key_id1 = self.start()
        self.assertTrue(key_id1.startswith("rs1-"), key_id1)
        seed1 = os.urandom(32)
        enc1 = self.encrypt(seed1)
        self.assertEqual(enc1["key_id"], key_id1)
        self.assertEqual(enc1["annotations"], {"version.kms.rootseal.io": b64(b"1")})
        self.assertEqual(self.decrypt(enc1), {"ok": True, "plaintext": b64(seed1)})
        # Distinct seeds give distinct ciphertexts (the plugin's duty to the apiserver).
        self.assertNotEqual(self.encrypt(seed1)["ciphertext"], enc1["ciphertext"])

        self.rotate()
        [status] = self.ops([{"op": "status"}])
        key_id2 = status["key_id"]
        self.assertNotEqual(key_id2, key_id1)
        seed2 = os.urandom(32)
        enc2 = self.encrypt(seed2)
        self.assertEqual(enc2["key_id"], key_id2)
        self.assertEqual(self.decrypt(enc1)["plaintext"], b64(seed1))  # old seeds still decrypt
        self.assertEqual(self.decrypt(enc2)["plaintext"], b64(seed2))
        # A key_id the ciphertext was not issued under, or none this cluster issued.
        for key_id in (key_id2, "rs1-" + "0" * 64, "another-plugin-key"):
            r = self.decrypt(enc1, key_id=key_id)
            self.assertEqual(r.get("code"), "INVALID_ARGUMENT", r)

        # Restarted, the same keyring gives the same key_id and opens old seeds.
        self.assertEqual(self.d.stop(), 0)
        self.assertFalse(os.path.exists(self.sock), "the socket is removed at stop")
        self.assertEqual(self.start(), key_id2)
        self.assertEqual(self.decrypt(enc1)["plaintext"], b64(seed1))
        self.assertEqual(self.decrypt(enc2)["plaintext"], b64(seed2))

        # Every call audited with its uid, never with the seed.
        self.assertEqual(self.decrypt(enc2, uid="audit-uid-0001")["plaintext"], b64(seed2))
        audit = self.audit_text()
        lines = [json.loads(line) for line in audit.splitlines()]
        mine = [line for line in lines if line.get("request_id") == "audit-uid-0001"]
        self.assertEqual(len(mine), 1, audit)
        self.assertEqual((mine[0]["operation"], mine[0]["key"], mine[0]["key_version"], mine[0]["outcome"],
                          mine[0]["remote"]), ("kms_decrypt", KEY, 2, "ok", "uid:%d" % os.getuid()))
        self.assertTrue(any(line.get("operation") == "kms_decrypt" and line["outcome"] == "invalid" for line in lines))
        for seed in (seed1, seed2):
            for form in (b64(seed), seed.hex(), base64.b64encode(seed).decode().rstrip("=")):
                self.assertNotIn(form, audit)
        m = self.metrics()
        self.assertRegex(m, r'rootseal_kms_plugin_requests_total\{method="Decrypt",code="OK"\} [1-9]')
        self.assertRegex(m, r'rootseal_kms_plugin_request_duration_seconds_count\{method="Status"\} [1-9]')

    def test_rootseal_kms_rotate_over_the_admin_socket(self):
        key_id1 = self.start()
        enc1 = self.encrypt(b"\x01" * 32)
        cli = [os.environ["ROOTSEAL_CLI"], "kms", "rotate", "--socket", self.d.p("admin.sock")]
        p = subprocess.run(cli + ["--json"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr + self.d.log())
        out = json.loads(p.stdout)
        self.assertEqual((out["key"], out["version"]), (KEY, 2))
        [status] = self.ops([{"op": "status"}])
        self.assertEqual(status["key_id"], out["key_id"])  # what the command printed is what Status reports
        self.assertNotEqual(out["key_id"], key_id1)
        enc2 = self.encrypt(b"\x02" * 32)
        self.assertEqual(enc2["key_id"], out["key_id"])
        self.assertEqual(self.decrypt(enc1)["plaintext"], b64(b"\x01" * 32))  # old seeds still decrypt
        p = subprocess.run(cli, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("rotated %s to version 3; key_id rs1-" % KEY, p.stdout)
        self.assertIn("kms plugin key rotated", self.d.log())

    def test_rootseal_kms_rotate_without_the_plugin_is_refused(self):
        self.d.write_config(pin_file=self.pin, rest="admin:\n  socket: %s\n" % self.d.p("admin.sock"))
        self.d.start()
        self.d.wait_for(lambda: os.path.exists(self.d.p("admin.sock")), "admin socket")
        p = subprocess.run([os.environ["ROOTSEAL_CLI"], "kms", "rotate", "--socket", self.d.p("admin.sock")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("this rootseald serves no KMS plugin: set kms_plugin.enabled in its configuration", p.stderr)

    def test_bad_requests_get_the_right_codes(self):
        self.start()
        seed = os.urandom(32)
        enc = self.encrypt(seed)
        ct = base64.b64decode(enc["ciphertext"])
        text = ct.decode()
        prefix, body = text.rsplit(":", 1)
        raw = bytearray(base64.b64decode(body))
        raw[20] ^= 1
        altered = (prefix + ":" + base64.b64encode(bytes(raw)).decode()).encode()
        cases = {
            "altered": {"ciphertext": b64(altered)},
            "truncated": {"ciphertext": b64(ct[:-8])},
            "cut to the prefix": {"ciphertext": b64(ct[:9])},
            "not a ciphertext": {"ciphertext": b64(b"\x00" * 60)},
            "empty ciphertext": {"ciphertext": ""},
            "oversized ciphertext": {"ciphertext": b64(ct + b"A" * (1025 - len(ct)))},
            "empty key_id": {"key_id": ""},
            "oversized key_id": {"key_id": "k" * 1025},
            "annotation key not a domain": {"annotations": {"Version": b64(b"1")}},
            "annotation key one label": {"annotations": {"version": b64(b"1")}},
            "annotations over 32 KiB": {"annotations": {"big.kms.rootseal.io": b64(b"x" * 32768)}},
            "version annotation disagrees": {"annotations": {"version.kms.rootseal.io": b64(b"7")}},
            "oversized uid": {"uid": "u" * 257},
        }
        for name, change in cases.items():
            with self.subTest(name):
                r = self.decrypt(enc, **change)
                self.assertEqual(r.get("code"), "INVALID_ARGUMENT", r)
        # Past gRPC's 64 KiB message limit the request is refused before the handler.
        r = self.decrypt(enc, annotations={"big.kms.rootseal.io": b64(b"x" * 70000)})
        self.assertEqual(r.get("code"), "RESOURCE_EXHAUSTED", r)
        for name, plaintext in (("empty", b""), ("513 bytes", os.urandom(513))):
            with self.subTest("encrypt " + name):
                r = self.one({"op": "encrypt", "plaintext": b64(plaintext)})
                self.assertEqual(r.get("code"), "INVALID_ARGUMENT", r)
        # The good request still works after all that.
        self.assertEqual(self.decrypt(enc)["plaintext"], b64(seed))

        # min_decryption_version moved past a seed's version: refused, not garbage.
        self.rotate()
        r = self.d.call("POST", "/v1/transit/keys/%s/config" % KEY, {"min_decryption_version": 2}, ADMIN_TOKEN)
        self.assertIn(r.status, (200, 204), r.data)
        r = self.decrypt(enc)
        self.assertEqual(r.get("code"), "FAILED_PRECONDITION", r)
        self.assertEqual(self.encrypt(seed)["annotations"], {"version.kms.rootseal.io": b64(b"2")})

    def test_token_removed_status_unavailable_and_back_without_restart(self):
        key_id = self.start()
        seed = os.urandom(32)
        enc = self.encrypt(seed)
        tokens = os.path.join(self.d.dir, "hsm", "tokens")
        (token_dir,) = os.listdir(tokens)
        shutil.move(os.path.join(tokens, token_dir), self.d.p("unplugged"))
        [r] = self.ops([{"op": "status_until", "want": "UNAVAILABLE", "timeout_ms": 10000}])
        self.assertEqual(r.get("code"), "UNAVAILABLE", r)
        self.assertEqual(self.one({"op": "encrypt", "plaintext": b64(seed)}).get("code"), "UNAVAILABLE")
        self.assertEqual(self.decrypt(enc).get("code"), "UNAVAILABLE")
        shutil.move(self.d.p("unplugged"), os.path.join(tokens, token_dir))
        [r] = self.ops([{"op": "status_until", "want": "ok", "timeout_ms": 30000}])
        self.assertEqual(r.get("key_id"), key_id, r)
        self.assertEqual(self.decrypt(enc)["plaintext"], b64(seed))
        # Logged when the outcome changes: ok at start, ok again after the token came back.
        self.assertEqual(self.d.log().count("kms plugin: self-test passed"), 2, self.d.log())

    def test_python_grpcio_client_agrees_with_grpc_js(self):
        key_id = self.start()
        py = GrpcioClient(self.sock)
        try:
            self.assertEqual(py.status(), ("v2", "ok", key_id))
            seed = os.urandom(32)
            ct, py_key_id, annotations = py.encrypt(seed)
            self.assertEqual(py_key_id, key_id)
            self.assertLessEqual(len(ct), 1024)
            self.assertEqual(annotations, {"version.kms.rootseal.io": b"1"})
            self.assertEqual(py.decrypt(ct, key_id, annotations), seed)
            # What one client encrypted, the other decrypts.
            r = self.decrypt({"ciphertext": b64(ct), "key_id": key_id,
                              "annotations": {k: b64(v) for k, v in annotations.items()}})
            self.assertEqual(r["plaintext"], b64(seed))
            seed2 = os.urandom(32)
            enc = self.encrypt(seed2)
            self.assertEqual(py.decrypt(base64.b64decode(enc["ciphertext"]), enc["key_id"],
                                        {k: base64.b64decode(v) for k, v in enc["annotations"].items()}), seed2)
            with self.assertRaises(py.grpc.RpcError) as caught:
                py.decrypt(ct, "rs1-" + "f" * 64, annotations)
            self.assertEqual(caught.exception.code(), py.grpc.StatusCode.INVALID_ARGUMENT)
        finally:
            py.close()

    def test_peer_uid_not_allowed_is_refused(self):
        # The socket's mode lets this process connect; SO_PEERCRED does not.
        other = 4242 if os.getuid() != 4242 else 4243
        self.configure(allowed_uids=[other])
        self.d.start()
        self.d.wait_for(lambda: os.path.exists(self.sock), "the kms socket")
        r = self.one({"op": "status"})
        self.assertIn(r.get("code"), ("UNAVAILABLE", "DEADLINE_EXCEEDED"), r)
        self.d.wait_for(lambda: "connection refused, peer uid not in kms_plugin.allowed_uids" in self.d.log(),
                        "the refusal logged")
        self.assertIn("peer_uid=%d" % os.getuid(), self.d.log())
        m = re.search(r"rootseal_kms_plugin_connections_refused_total (\d+)", self.metrics())
        self.assertTrue(m and int(m.group(1)) >= 1, self.metrics())
        audit = self.audit_text()
        self.assertNotIn("kms_status", audit)  # nothing was served
        self.assertEqual(os.stat(self.sock).st_mode & 0o777, 0o600)


class KmsPluginDevModeTest(unittest.TestCase):
    def test_dev_mode_serves_the_plugin_and_prints_the_encryption_configuration(self):
        client_dir = npm_install("kms-client", os.path.join(HERE, "kms_client"))
        state = tempdir("rootseal-kms-dev-")
        d = Daemon(os.path.join(state, "st"))
        try:
            sock = os.path.join(state, "st", "kms.sock")
            self.assertIn("KMS plugin:  unix://" + sock, d.banner)
            self.assertIn("kind: EncryptionConfiguration", d.banner)
            self.assertIn("endpoint: unix://" + sock, d.banner)
            ops = [{"op": "status_until", "want": "ok", "timeout_ms": 30000},
                   {"op": "encrypt", "plaintext": b64(b"s" * 32)}]
            p = subprocess.run(["node", os.path.join(client_dir, "check.js"), sock, PROTO], input=json.dumps(ops),
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            status, enc = json.loads(p.stdout)
            self.assertTrue(status["ok"] and enc["ok"], p.stdout)
            self.assertEqual(enc["key_id"], status["key_id"])
            self.assertEqual(os.stat(sock).st_mode & 0o777, 0o600)
        finally:
            self.assertEqual(d.stop(), 0)
            rmtree(state)


if __name__ == "__main__":
    unittest.main(verbosity=2)
