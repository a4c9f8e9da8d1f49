"""The Transit-compatible API through a real Vault client (python3-hvac) and
raw HTTP for bad input: status codes, error bodies, and that nothing breaks."""
import base64
import json
import socket
import unittest

import hvac

from rootseal_testlib import Daemon, rmtree, tempdir


def b64(data):
    return base64.b64encode(data).decode()


class TransitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.state = tempdir("rootseal-transit-")
        cls.d = Daemon(cls.state, token_id="transit-test-root")
        cls.d.wait_health(200)
        cls.client = hvac.Client(url="http://%s" % cls.d.address, token=cls.d.token, timeout=10)
        cls.transit = cls.client.secrets.transit

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        rmtree(cls.state)

    def raw(self, method, path, body=None, token="transit-test-root", headers=None):
        h = dict(headers or {})
        if token is not None:
            h["X-Vault-Token"] = token
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        status, hdrs, data = self.d.request(method, path, body=body, headers=h)
        return status, hdrs, (json.loads(data) if data else None)

    def test_key_lifecycle_and_envelope(self):
        body = self.transit.create_key("life")  # hvac returns the parsed JSON of a 200
        for field in ("request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth"):
            self.assertIn(field, body)
        again = self.transit.create_key("life")
        self.assertEqual(again["warnings"], ["key life already existed"])
        info = self.transit.read_key("life")["data"]
        self.assertEqual(info["type"], "aes256-gcm96")
        self.assertEqual(info["latest_version"], 1)
        self.assertEqual(info["min_decryption_version"], 1)
        self.assertFalse(info["deletion_allowed"])
        self.assertFalse(info["exportable"])
        self.assertIn("life", self.transit.list_keys()["data"]["keys"])
        self.transit.rotate_key("life")
        self.assertEqual(self.transit.read_key("life")["data"]["latest_version"], 2)
        with self.assertRaises(hvac.exceptions.InvalidRequest):
            self.transit.delete_key("life")  # deletion_allowed is false
        self.transit.update_key_configuration("life", deletion_allowed=True)
        self.transit.delete_key("life")
        with self.assertRaises(hvac.exceptions.InvalidPath):
            self.transit.read_key("life")

    def test_encrypt_decrypt_rotate_rewrap(self):
        self.transit.create_key("app")
        ct1 = self.transit.encrypt_data("app", b64(b"first secret"))["data"]["ciphertext"]
        self.assertTrue(ct1.startswith("vault:v1:"))
        self.transit.rotate_key("app")
        ct2 = self.transit.encrypt_data("app", b64(b"second secret"))["data"]
        self.assertEqual(ct2["key_version"], 2)
        self.assertTrue(ct2["ciphertext"].startswith("vault:v2:"))
        self.assertEqual(base64.b64decode(self.transit.decrypt_data("app", ct1)["data"]["plaintext"]), b"first secret")
        rewrapped = self.transit.rewrap_data("app", ct1)["data"]["ciphertext"]
        self.assertTrue(rewrapped.startswith("vault:v2:"))
        self.assertEqual(base64.b64decode(self.transit.decrypt_data("app", rewrapped)["data"]["plaintext"]),
                         b"first secret")
        # min_decryption_version refuses the old ciphertext.
        self.transit.update_key_configuration("app", min_decryption_version=2)
        with self.assertRaises(hvac.exceptions.InvalidRequest) as ctx:
            self.transit.decrypt_data("app", ct1)
        self.assertIn("too old", str(ctx.exception))
        # As Vault, the key's `keys` lists only versions that can still decrypt.
        self.assertEqual(sorted(self.transit.read_key("app")["data"]["keys"]), ["2"])

    def test_batch_in_order_with_references(self):
        self.transit.create_key("batch")
        items = [{"plaintext": b64(("item %d" % i).encode()), "reference": "ref-%d" % i} for i in range(50)]
        enc = self.transit.encrypt_data("batch", plaintext=None, batch_input=items)["data"]["batch_results"]
        self.assertEqual([r["reference"] for r in enc], ["ref-%d" % i for i in range(50)])
        dec = self.transit.decrypt_data("batch", ciphertext=None,
                                        batch_input=[{"ciphertext": r["ciphertext"], "reference": r["reference"]}
                                                     for r in enc])["data"]["batch_results"]
        self.assertEqual([base64.b64decode(r["plaintext"]) for r in dec], [("item %d" % i).encode() for i in range(50)])
        # One bad item: per-item error, HTTP 400 (or the partial failure code).
        status, _, body = self.raw("POST", "/v1/transit/encrypt/batch",
                                   {"batch_input": [{"plaintext": "YQ=="}, {"plaintext": "%%%"}]})
        self.assertEqual(status, 400)
        self.assertIn("ciphertext", body["data"]["batch_results"][0])
        self.assertIn("base64", body["data"]["batch_results"][1]["error"])
        status, _, _ = self.raw("POST", "/v1/transit/encrypt/batch",
                                {"batch_input": [{"plaintext": "YQ=="}, {"plaintext": "%%%"}],
                                 "partial_failure_response_code": 207})
        self.assertEqual(status, 207)

    def test_datakeys_and_derived_keys(self):
        self.transit.create_key("dk")
        plain = self.transit.generate_data_key("dk", key_type="plaintext", bits=512)["data"]
        self.assertEqual(len(base64.b64decode(plain["plaintext"])), 64)
        opened = base64.b64decode(self.transit.decrypt_data("dk", plain["ciphertext"])["data"]["plaintext"])
        self.assertEqual(opened, base64.b64decode(plain["plaintext"]))
        wrapped = self.transit.generate_data_key("dk", key_type="wrapped")["data"]
        self.assertNotIn("plaintext", wrapped)
        status, _, body = self.raw("POST", "/v1/transit/datakey/plaintext/dk", {"bits": 100})
        self.assertEqual((status, body), (400, {"errors": ["invalid bit length"]}))
        status, _, body = self.raw("POST", "/v1/transit/datakey/raw/dk", {})
        self.assertEqual(status, 400)

        self.transit.create_key("derived", derived=True)
        ctx = b64(b"tenant-1")
        ct = self.transit.encrypt_data("derived", b64(b"x"), context=ctx)["data"]["ciphertext"]
        self.assertEqual(base64.b64decode(self.transit.decrypt_data("derived", ct, context=ctx)["data"]["plaintext"]), b"x")
        with self.assertRaises(hvac.exceptions.InvalidRequest):
            self.transit.decrypt_data("derived", ct, context=b64(b"tenant-2"))
        with self.assertRaises(hvac.exceptions.InvalidRequest):
            self.transit.encrypt_data("derived", b64(b"x"))  # missing context

    def test_associated_data(self):
        self.transit.create_key("aad")
        status, _, body = self.raw("POST", "/v1/transit/encrypt/aad",
                                   {"plaintext": b64(b"p"), "associated_data": b64(b"ctx-a")})
        self.assertEqual(status, 200)
        ct = body["data"]["ciphertext"]
        status, _, body = self.raw("POST", "/v1/transit/decrypt/aad", {"ciphertext": ct, "associated_data": b64(b"ctx-a")})
        self.assertEqual((status, base64.b64decode(body["data"]["plaintext"])), (200, b"p"))
        status, _, body = self.raw("POST", "/v1/transit/decrypt/aad", {"ciphertext": ct, "associated_data": b64(b"ctx-b")})
        self.assertEqual(status, 400)

    def test_transit_seal_sequence(self):
        # What Vault's transit seal sends: renew-self (increment 0), PUT encrypt of "a", decrypt.
        status, _, body = self.raw("PUT", "/v1/auth/token/renew-self", {"increment": 0})
        self.assertEqual(status, 400)  # the dev root token is not renewable: a 4xx, never an empty 200
        self.assertEqual(body, {"errors": ["lease is not renewable"]})
        status, _, body = self.raw("PUT", "/v1/transit/encrypt/autounseal", {"plaintext": "YQ=="})
        self.assertEqual(status, 200)
        ct = body["data"]["ciphertext"]
        self.assertEqual(len(ct.split(":")), 3)
        status, _, body = self.raw("PUT", "/v1/transit/decrypt/autounseal", {"ciphertext": ct})
        self.assertEqual((status, body["data"]["plaintext"]), (200, "YQ=="))
        me = self.client.lookup_token()["data"]
        self.assertEqual(me["policies"], ["root"])

    def test_bad_input_gets_clear_errors(self):
        self.transit.create_key("bad")
        good = self.transit.encrypt_data("bad", b64(b"payload"))["data"]["ciphertext"]
        cases = [
            ("POST", "/v1/transit/encrypt/bad", b'{"plaintext": ', 400, "failed to parse JSON"),
            ("POST", "/v1/transit/encrypt/bad", b'[1,2]', 400, "not a JSON object"),
            ("POST", "/v1/transit/encrypt/bad", {"plaintext": 5}, 400, "'plaintext' must be a string"),
            ("POST", "/v1/transit/encrypt/bad", {}, 400, "missing plaintext"),
            ("POST", "/v1/transit/encrypt/bad", {"plaintext": "not base64!"}, 400, "base64"),
            ("POST", "/v1/transit/decrypt/bad", {"ciphertext": good[:-6]}, 400, None),
            ("POST", "/v1/transit/decrypt/bad", {"ciphertext": good[:12] + ("A" if good[12] != "A" else "B") + good[13:]}, 400, None),
            ("POST", "/v1/transit/decrypt/bad", {"ciphertext": "vault:v1"}, 400, "malformed"),
            ("POST", "/v1/transit/decrypt/bad", {"ciphertext": "vault:v9:" + good.split(":")[2]}, 400, None),
            ("POST", "/v1/transit/decrypt/nosuchkey", {"ciphertext": good}, 400, "encryption key not found"),
            ("GET", "/v1/transit/keys/nosuchkey", None, 404, None),
            ("POST", "/v1/transit/encrypt/bad", {"plaintext": "YQ==", "key_version": "x"}, 400, "integer"),
            ("POST", "/v1/transit/encrypt/bad", {"plaintext": "YQ==", "key_version": 7}, 400, None),
            ("POST", "/v1/transit/keys/bad", {"exportable": True}, 400, "never exports"),
            ("POST", "/v1/transit/keys/x", {"type": "rsa-4096"}, 400, None),
            ("POST", "/v1/transit/keys/bad/config", {"min_decryption_version": 99}, 400, None),
            ("PATCH", "/v1/transit/encrypt/bad", None, 405, None),
            ("GET", "/v1/transit/encrypt/bad", None, 405, None),
            ("POST", "/v1/transit/nosuch/bad", {}, 404, None),
            ("POST", "/v1/transit/keys/bad%2Fx", {}, 404, None),
            ("POST", "/v1/transit/keys/" + "k" * 300, {}, 400, None),
        ]
        for method, path, body, want, fragment in cases:
            with self.subTest(method=method, path=path[:60], body=str(body)[:60]):
                status, hdrs, data = self.raw(method, path, body)
                self.assertEqual(status, want, data)
                self.assertEqual(hdrs.get("Content-Type"), "application/json")
                self.assertIn("errors", data)
                if fragment:
                    self.assertIn(fragment, " ".join(data["errors"]))
        # Wrong or missing token: 403, for every endpoint.
        for token in (None, "wrong-token", "transit-test-root-but-longer", ""):
            status, _, data = self.raw("POST", "/v1/transit/encrypt/bad", {"plaintext": "YQ=="}, token=token)
            self.assertEqual((status, data), (403, {"errors": ["permission denied"]}), token)
        # Bearer works like X-Vault-Token.
        status, _, _ = self.raw("POST", "/v1/transit/encrypt/bad", {"plaintext": "YQ=="}, token=None,
                                headers={"Authorization": "Bearer transit-test-root"})
        self.assertEqual(status, 200)
        # Nothing was damaged: the good ciphertext still opens.
        self.assertEqual(base64.b64decode(self.transit.decrypt_data("bad", good)["data"]["plaintext"]), b"payload")

    def test_key_with_many_versions_reads_and_lists(self):
        # Key metadata is not bounded by the request's locked arena.
        self.transit.create_key("many")
        for _ in range(1499):
            status, _, _ = self.raw("POST", "/v1/transit/keys/many/rotate", {})
            self.assertEqual(status, 200)
        info = self.transit.read_key("many")["data"]
        self.assertEqual(info["latest_version"], 1500)
        self.assertEqual(len(info["keys"]), 1500)
        ct = self.transit.encrypt_data("many", b64(b"v1500"))["data"]
        self.assertEqual(ct["key_version"], 1500)

    def test_oversize_body_and_slow_client(self):
        status, _, body = self.raw("POST", "/v1/transit/encrypt/big", b'{"plaintext":"' + b"A" * (1024 * 1024) + b'"}')
        self.assertEqual(status, 413)
        # A client that opens a connection and sends half a header does not block others.
        with socket.create_connection((self.d.host, self.d.port), timeout=5) as slow:
            slow.sendall(b"POST /v1/transit/encrypt/x HTTP/1.1\r\nHost: x\r\n")
            self.assertEqual(self.transit.create_key("after-slow")["data"]["name"], "after-slow")

    # ---- HEAD on a real keep-alive connection ----

    def _read_head(self, sock, buf):
        """Reads one response header block from sock; returns (status, headers, rest of buf)."""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            self.assertTrue(chunk, "connection closed before a full response header")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.assertTrue(lines[0].startswith("HTTP/1.1 "), "not a status line: %r" % lines[0][:80])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), headers, rest

    def _head_then_get(self, path, token):
        """HEAD then GET on one connection: the GET's status line must follow the
        HEAD's header directly (a body after a HEAD answer breaks the framing)."""
        host, port = self.d.address.rsplit(":", 1)
        auth = ("X-Vault-Token: %s\r\n" % token) if token else ""
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            for method in ("HEAD", "GET"):
                sock.sendall(("%s %s HTTP/1.1\r\nHost: test\r\n%s\r\n" % (method, path, auth)).encode())
            buf = b""
            head_status, head_headers, buf = self._read_head(sock, buf)
            # Nothing may follow the HEAD header but the GET's answer.
            get_status, get_headers, buf = self._read_head(sock, buf)
            length = int(get_headers.get("content-length", "0"))
            while len(buf) < length:
                chunk = sock.recv(65536)
                self.assertTrue(chunk, "connection closed inside the GET body")
                buf += chunk
            self.assertEqual(len(buf), length, "bytes beyond the GET body")
            return head_status, head_headers, get_status, get_headers, buf

    def test_go_booleans_for_list_and_body_fields(self):
        """Another Vault client sends ?list=1 and "TRUE" strings: Vault's ParseBool."""
        self.transit.create_key("boolkey")
        for value in ("1", "t", "T", "TRUE", "true", "True"):
            status, _, body = self.raw("GET", "/v1/transit/keys?list=" + value)
            self.assertEqual(status, 200, value)
            self.assertIn("boolkey", body["data"]["keys"])
        for value in ("0", "f", "false", "False"):
            status, _, _ = self.raw("GET", "/v1/transit/keys?list=" + value)
            self.assertEqual(status, 405, value)
        status, _, body = self.raw("GET", "/v1/transit/keys?list=yes")
        self.assertEqual(status, 400)
        status, _, body = self.raw("POST", "/v1/transit/keys/boolkey/config", {"deletion_allowed": "TRUE"})
        self.assertEqual(status, 200)
        self.assertTrue(body["data"]["deletion_allowed"])
        status, _, body = self.raw("POST", "/v1/transit/keys/boolkey/config", {"auto_rotate_period": "9999999999999999h"})
        self.assertEqual(status, 400)
        self.assertIn("out of range", body["errors"][0])

    def test_head_then_get_on_one_keep_alive_connection_for_every_route(self):
        self.transit.create_key("headkey")
        root = "transit-test-root"
        routes = [
            ("/v1/sys/health", None, 200),
            ("/v1/sys/seal-status", None, 200),
            ("/v1/sys/leader", None, 200),
            ("/v1/sys/metrics?format=prometheus", None, 200),
            ("/v1/sys/metrics", None, 400),
            ("/v1/transit/keys?list=true", root, 200),
            ("/v1/transit/keys?list=1", root, 200),
            ("/v1/transit/keys", root, 405),
            ("/v1/transit/keys/headkey", root, 200),
            ("/v1/transit/keys/nokey", root, 404),
            ("/v1/transit/keys/headkey/config", root, 405),
            ("/v1/transit/keys/headkey/rotate", root, 405),
            ("/v1/transit/encrypt/headkey", root, 405),
            ("/v1/transit/decrypt/headkey", root, 405),
            ("/v1/transit/rewrap/headkey", root, 405),
            ("/v1/transit/datakey/plaintext/headkey", root, 405),
            ("/v1/transit/datakey/wrapped/headkey", root, 405),
            ("/v1/transit/nothing/here", root, 404),
            ("/v1/transit/keys/headkey", None, 403),
            ("/v1/auth/token/lookup-self", root, 200),
            ("/v1/auth/token/renew-self", root, 405),
            ("/v1/no/such/path", None, 404),
        ]
        for path, token, status in routes:
            with self.subTest(path=path, token=bool(token)):
                hs, hh, gs, gh, body = self._head_then_get(path, token)
                self.assertEqual(gs, status)
                self.assertEqual(hs, gs)
                self.assertEqual(hh.get("content-type"), gh.get("content-type"))
                if "metrics?format" not in path:  # metrics count the HEAD itself
                    self.assertEqual(int(hh["content-length"]), len(body))


if __name__ == "__main__":
    unittest.main(verbosity=2)
