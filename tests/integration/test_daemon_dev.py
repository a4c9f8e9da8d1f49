"""rootseald --dev end to end: start-up, health, seal-status, limits, restart, shutdown."""
import json
import os
import socket
import subprocess
import unittest

from rootseal_testlib import ROOTSEALD, Daemon, rmtree, tempdir


class DevModeTest(unittest.TestCase):
    def setUp(self):
        self.state = tempdir("rootseal-dev-")

    def tearDown(self):
        rmtree(self.state)

    def test_health_seal_status_and_errors(self):
        d = Daemon(self.state, token_id="dev-root-token-for-test")
        try:
            self.assertEqual(d.token, "dev-root-token-for-test")
            health = d.wait_health(200)
            for field in ("initialized", "sealed", "standby", "performance_standby", "server_time_utc",
                          "version", "cluster_name", "cluster_id", "replication_dr_mode"):
                self.assertIn(field, health)
            self.assertFalse(health["sealed"])
            self.assertTrue(health["initialized"])

            status, hdrs, body = d.request("HEAD", "/v1/sys/health")
            self.assertEqual(status, 200)
            self.assertEqual(body, b"")
            self.assertEqual(hdrs["Content-Type"], "application/json")
            self.assertGreater(int(hdrs["Content-Length"]), 0)

            status, _, body = d.json("GET", "/v1/sys/health?activecode=299")
            self.assertEqual(status, 299)

            status, hdrs, ss = d.json("GET", "/v1/sys/seal-status")
            self.assertEqual(status, 200)
            self.assertEqual(hdrs["Content-Type"], "application/json")
            self.assertEqual(ss["type"], "pkcs11")
            self.assertFalse(ss["sealed"])
            self.assertEqual(ss["sealed_reason"], "")
            self.assertRegex(ss["root_key_check_value"], r"^[0-9a-f]{6}$")
            self.assertEqual(ss["cluster_id"], health["cluster_id"])

            status, _, body = d.json("GET", "/v1/no/such/path")
            self.assertEqual((status, body), (404, {"errors": []}))
            status, _, body = d.json("POST", "/v1/sys/health", body=b"{}")
            self.assertEqual(status, 405)

            # A body over the limit is refused with 413 as soon as the header is read.
            with socket.create_connection((d.host, d.port), timeout=5) as s:
                s.sendall(b"POST /v1/sys/health HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n")
                reply = s.recv(4096)
            self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply)
            self.assertIn(b'{"errors":["request body too large"]}', reply)
            # ... and a client that sends the whole oversized body still gets the 413
            # (the server drains before closing instead of resetting the connection).
            status, _, body = d.json("POST", "/v1/sys/health", body=b"x" * (1024 * 1024 + 1))
            self.assertEqual(status, 413)
            self.assertEqual(body, {"errors": ["request body too large"]})

            # Malformed HTTP gets a 400 and the connection closed; the server stays up.
            with socket.create_connection((d.host, d.port), timeout=5) as s:
                s.sendall(b"NOT A REQUEST\r\n\r\n")
                reply = s.recv(4096)
            self.assertTrue(reply.startswith(b"HTTP/1.1 400"), reply)
            # An oversized header: 431.
            with socket.create_connection((d.host, d.port), timeout=5) as s:
                s.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
                reply = s.recv(4096)
            self.assertTrue(reply.startswith(b"HTTP/1.1 431"), reply)
            d.wait_health(200)

            # Keep-alive: two requests on one connection.
            import http.client
            conn = http.client.HTTPConnection(d.host, d.port, timeout=5)
            for _ in range(2):
                conn.request("GET", "/v1/sys/health")
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                json.loads(r.read())
            conn.close()
        finally:
            rc = d.stop()
        self.assertEqual(rc, 0)
        log = d.stderr()
        self.assertIn("unsealed", log)
        self.assertIn('msg="stopped"', log)
        # The root token and the HSM PIN never reach the log.
        self.assertNotIn("dev-root-token-for-test", log)
        with open(os.path.join(self.state, "hsm-pin")) as f:
            self.assertNotIn(f.read().strip(), log)

    def test_state_survives_restart_and_files_are_private(self):
        d = Daemon(self.state)
        d.wait_health(200)
        _, _, first = d.json("GET", "/v1/sys/seal-status")
        self.assertEqual(d.stop(), 0)
        for leaf in ("hsm-pin", "rootseal.db"):
            mode = os.stat(os.path.join(self.state, leaf)).st_mode & 0o777
            self.assertEqual(mode & 0o077, 0, "%s has mode %o" % (leaf, mode))
        self.assertEqual(os.stat(self.state).st_mode & 0o777, 0o700)
        d2 = Daemon(self.state)
        try:
            d2.wait_health(200)
            _, _, second = d2.json("GET", "/v1/sys/seal-status")
            self.assertNotEqual(d.token, d2.token)  # a fresh random root token each start
            self.assertEqual(first["root_key_check_value"], second["root_key_check_value"])
            self.assertEqual(first["cluster_id"], second["cluster_id"])
        finally:
            self.assertEqual(d2.stop(), 0)

    def test_dev_mode_refuses_non_loopback(self):
        for address in ("0.0.0.0:0", "[::]:0", "10.1.2.3:8200"):
            r = subprocess.run([ROOTSEALD, "--dev", "--dev-state-dir", self.state, "--dev-listen-address", address],
                               capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 1, address)
            self.assertIn(b"loopback only", r.stderr, address)

    def test_config_errors_are_clear(self):
        cfg = os.path.join(self.state, "bad.yaml")
        with open(cfg, "w") as f:
            f.write("listen:\n  adress: 127.0.0.1:8200\n")
        r = subprocess.run([ROOTSEALD, "--config", cfg], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"listen: unknown option 'adress'", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
