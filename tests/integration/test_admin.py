"""The admin socket of a real rootseald --dev and the `rootseal` CLI over it:
tokens created, used over HTTP, listed, revoked (403 at once), kept across a
restart (as hashes only), expiring (403, then purged); unknown policies
refused; peer credentials checked (a client running as another uid is
refused and recorded in the log and the audit log)."""
import hashlib
import json
import os
import re
import stat
import subprocess
import time
import unittest

from rootseal_testlib import Daemon, rmtree, tempdir, wait_until

ROOTSEAL_CLI = os.environ.get("ROOTSEAL_CLI", "")
PLAINTEXT = "aGVsbG8="  # "hello"


def rootseal(*args, stdin=None, expect=0, as_nobody=False):
    cmd = [ROOTSEAL_CLI] + list(args)
    if as_nobody:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
    r = subprocess.run(cmd, input=stdin, capture_output=True, timeout=60)
    out, err = r.stdout.decode(), r.stderr.decode()
    if expect is not None and r.returncode != expect:
        raise AssertionError("rootseal %s: exit %d (want %d)\nstdout:%s\nstderr:%s"
                             % (" ".join(args), r.returncode, expect, out, err))
    return r.returncode, out, err


class AdminSocketTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(ROOTSEAL_CLI, "ROOTSEAL_CLI must be set (run through ctest)")
        self.dir = tempdir("rootseal-admin-")
        self.state = os.path.join(self.dir, "state")
        self.daemon = None

    def tearDown(self):
        if self.daemon is not None:
            self.daemon.stop()
        rmtree(self.dir)

    def start(self):
        self.daemon = Daemon(self.state)
        self.daemon.wait_health(200)
        self.socket = os.path.join(self.state, "admin.sock")
        return self.daemon

    def cli(self, *args, **kw):
        return rootseal(*(list(args) + ["--socket", self.socket]), **kw)

    def cli_json(self, *args):
        _, out, _ = self.cli(*(list(args) + ["--json"]))
        return json.loads(out)

    def encrypt(self, token, key="admin-demo"):
        status, _, body = self.daemon.json("POST", "/v1/transit/encrypt/" + key,
                                           json.dumps({"plaintext": PLAINTEXT}).encode(),
                                           {"X-Vault-Token": token})
        return status, body

    def audit_lines(self):
        with open(os.path.join(self.state, "audit.log")) as f:
            return [json.loads(line) for line in f if line.strip()]

    def test_socket_is_private_and_status_answers(self):
        d = self.start()
        st = os.lstat(self.socket)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertIn("admin socket", d.stderr())
        rc, out, _ = self.cli("status")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"(?m)^sealed\s+false$")
        self.assertRegex(out, r"(?m)^root\s+pkcs11$")
        status = self.cli_json("status")
        self.assertEqual((status["sealed"], status["type"], status["pin_sources"]), (False, "pkcs11", ["file", "typed"]))
        # A second daemon on the same state folder cannot take the live socket.
        self.assertNotIn("admin socket unavailable", d.stderr())
        # --dev serves the KMS plugin too: `rootseal kms rotate` rotates its key.
        rotated = self.cli_json("kms", "rotate")
        self.assertEqual(rotated["version"], 2)
        self.assertTrue(rotated["key_id"].startswith("rs1-"), rotated)

    def test_token_lifecycle_create_use_list_revoke_restart(self):
        d = self.start()
        self.assertEqual(d.json("POST", "/v1/transit/keys/admin-demo", b"{}", {"X-Vault-Token": d.token})[0], 200)

        rc, out, err = self.cli("token", "create", "--policy", "root", "--display-name", "ci-app")
        m = re.search(r"(?m)^token\s+(rs\.[0-9a-f]{48})$", out)
        self.assertIsNotNone(m, out)
        token = m.group(1)
        accessor = re.search(r"(?m)^accessor\s+([0-9a-f]{24})$", out).group(1)
        self.assertIn("shown once", err)
        self.assertEqual(self.encrypt(token)[0], 200)

        # A second token, kept over the restart; the first is revoked.
        kept = self.cli_json("token", "create", "--policy", "root", "--ttl", "1h", "--renewable",
                             "--display-name", "kept")
        self.assertRegex(kept["token"], r"^rs\.[0-9a-f]{48}$")
        self.assertEqual((kept["ttl"], kept["renewable"], kept["source"]), (3600, True, "created"))
        self.assertEqual(kept["expire_time"] - kept["creation_time"], 3600)

        listed = self.cli_json("token", "list")["tokens"]
        by_accessor = {t["accessor"]: t for t in listed}
        self.assertIn(accessor, by_accessor)
        self.assertEqual(by_accessor[accessor]["display_name"], "ci-app")
        self.assertEqual(by_accessor[accessor]["policies"], ["root"])
        self.assertEqual(by_accessor[accessor]["expire_time"], 0)
        # Never a token or its hash in a listing.
        rc, text, _ = self.cli("token", "list")
        for secret in (token, kept["token"], hashlib.sha256(token.encode()).hexdigest()):
            self.assertNotIn(secret, json.dumps(listed))
            self.assertNotIn(secret, text)
        self.assertEqual(self.cli_json("token", "lookup", accessor)["display_name"], "ci-app")

        _, out, _ = self.cli("token", "revoke", accessor)
        self.assertIn("revoked " + accessor, out)
        # Effective for the very next HTTP request.
        status, body = self.encrypt(token)
        self.assertEqual((status, body), (403, {"errors": ["permission denied"]}))
        rc, _, err = self.cli("token", "lookup", accessor, expect=1)
        self.assertIn("no live token with accessor " + accessor, err)
        rc, _, err = self.cli("token", "revoke", accessor, expect=1)
        self.assertIn("no token with accessor", err)
        self.assertEqual(self.encrypt(kept["token"])[0], 200)

        # The dev root token is not revocable over the socket.
        root_accessor = [t for t in self.cli_json("token", "list")["tokens"] if t["source"] == "dev-root"][0]["accessor"]
        _, _, err = self.cli("token", "revoke", root_accessor, expect=1)
        self.assertIn("dev root token cannot be revoked", err)

        # Restart: the kept token works, the revoked one does not; the file holds hashes only.
        d.stop()
        self.daemon = None
        db_bytes = b""
        for name in os.listdir(self.state):
            if name.startswith("tokens.db"):
                path = os.path.join(self.state, name)
                self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, name)
                with open(path, "rb") as f:
                    db_bytes += f.read()
        self.assertNotIn(kept["token"].encode(), db_bytes)
        self.assertNotIn(token.encode(), db_bytes)
        self.assertIn(hashlib.sha256(kept["token"].encode()).hexdigest().encode(), db_bytes)
        d = self.start()
        self.assertEqual(self.encrypt(kept["token"])[0], 200)
        self.assertEqual(self.encrypt(token)[0], 403)
        accessors = [t["accessor"] for t in self.cli_json("token", "list")["tokens"]]
        self.assertIn(kept["accessor"], accessors)
        self.assertNotIn(accessor, accessors)
        # renew-self of the persisted token answers with its ttl.
        status, _, body = d.json("POST", "/v1/auth/token/renew-self", b"{}", {"X-Vault-Token": kept["token"]})
        self.assertEqual((status, body["auth"]["lease_duration"]), (200, 3600))

        for secret in (token, kept["token"]):
            self.assertNotIn(secret, d.stderr())
            with open(os.path.join(self.state, "audit.log")) as f:
                self.assertNotIn(secret, f.read())
        ops = [(l["path"], l["status"]) for l in self.audit_lines() if l["path"].startswith("admin/")]
        self.assertIn(("admin/token.create", 200), ops)
        self.assertIn(("admin/token.revoke", 200), ops)
        revoked_line = [l for l in self.audit_lines() if l["path"] == "admin/token.revoke" and l["status"] == 200][0]
        self.assertEqual(revoked_line["accessor"], accessor)

    def test_token_create_refuses_unknown_policy_and_bad_arguments(self):
        self.start()
        _, _, err = self.cli("token", "create", "--policy", "no-such-policy", expect=1)
        self.assertIn("unknown policy 'no-such-policy'", err)
        _, _, err = self.cli("token", "create", "--policy", "root", "--renewable", expect=1)
        self.assertIn("renewable token needs a ttl", err)
        _, _, err = self.cli("token", "create", "--policy", "root", "--ttl", "5y", expect=1)
        self.assertIn("--ttl", err)
        _, _, err = self.cli("token", "create", "--policy", "root", "--display-name", "bad\nname", expect=1)
        self.assertIn("display_name", err)
        # Nothing was created by the refused calls.
        self.assertEqual([t["source"] for t in self.cli_json("token", "list")["tokens"]], ["dev-root"])

    def test_expired_token_is_refused_then_purged(self):
        d = self.start()
        self.assertEqual(d.json("POST", "/v1/transit/keys/admin-demo", b"{}", {"X-Vault-Token": d.token})[0], 200)
        t = self.cli_json("token", "create", "--policy", "root", "--ttl", "2s")
        self.assertEqual(self.encrypt(t["token"])[0], 200)
        wait_until(d.proc, d.stderr, lambda: self.encrypt(t["token"])[0] == 403, "the token to expire", timeout=15)
        self.assertNotIn(t["accessor"], [x["accessor"] for x in self.cli_json("token", "list")["tokens"]])
        _, _, err = self.cli("token", "lookup", t["accessor"], expect=1)
        self.assertIn("no live token", err)
        # Purged from the file too: a restart does not bring it back.
        d.stop()
        self.daemon = None
        self.start()
        self.assertEqual(self.encrypt(t["token"])[0], 403)
        _, _, err = self.cli("token", "revoke", t["accessor"], expect=1)
        self.assertIn("no token with accessor", err)

    def test_other_uid_is_refused_by_peer_credentials(self):
        d = self.start()
        # With the socket's own mode (0600) another uid cannot even connect.
        os.chmod(self.dir, 0o711)
        os.chmod(self.state, 0o711)
        rc, _, err = self.cli("status", as_nobody=True, expect=1)
        self.assertIn("Permission denied", err)
        # Even if the file mode were wrong, the peer credentials are checked.
        os.chmod(self.socket, 0o666)
        rc, _, err = self.cli("token", "list", as_nobody=True, expect=1)
        self.assertIn("permission denied: the admin socket serves only root", err)
        self.assertIn("peer uid 65534", err)
        rc, _, err = self.cli("token", "create", "--policy", "root", as_nobody=True, expect=1)
        self.assertIn("permission denied", err)
        self.assertRegex(d.stderr(), r'level=warn msg="admin: refused connection" uid=65534 gid=65534 pid=\d+')
        refused = [l for l in self.audit_lines() if l["path"] == "admin/connect"]
        self.assertEqual(len(refused), 2)
        self.assertTrue(all(l["status"] == 403 and l["remote"].startswith("unix:uid=65534,") for l in refused))
        # Nothing was created; root is still served.
        self.assertEqual([t["source"] for t in self.cli_json("token", "list")["tokens"]], ["dev-root"])

    def test_protocol_limits_and_bad_requests(self):
        import socket as pysocket
        d = self.start()

        def raw(data, shutdown=True):
            s = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
            s.settimeout(20)
            s.connect(self.socket)
            s.sendall(data)
            if shutdown:
                s.shutdown(pysocket.SHUT_WR)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            s.close()
            return json.loads(out) if out else None

        self.assertEqual(raw(b"not json\n")["error"]["code"], "invalid_argument")
        self.assertIn("unknown op", raw(b'{"op":"format-disk"}\n')["error"]["message"])
        self.assertEqual(raw(b'{"op":"status"}')["ok"], True)  # EOF ends the line too
        self.assertIn("64 KiB", raw(b"{" + b" " * (64 * 1024 - 1))["error"]["message"])
        self.assertEqual(raw(b'{"op":"unseal","pin":"%%%"}\n')["error"]["code"], "invalid_argument")
        # A client that sends nothing is cut off after admin.timeout (10 s).
        started = time.monotonic()
        self.assertIsNone(raw(b"", shutdown=False))
        self.assertLess(time.monotonic() - started, 15)
        self.assertEqual(d.wait_health(200)["sealed"], False)


if __name__ == "__main__":
    unittest.main(verbosity=2)
