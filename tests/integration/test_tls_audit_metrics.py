"""rootseald over TLS (and mutual TLS) from a configuration file: a real
client with certificate verification, SIGHUP reload of the certificate (a
broken one is refused and the old keeps serving), the audit log (chained,
verified, no secrets) and Prometheus metrics."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import unittest

from rootseal_testlib import (CLIENT_EXT, ROOTSEALD, SERVER_EXT, ConfigDaemon, make_tls_material, sha256_hex,
                              write_private)

APP_TOKEN = "s.tls-app-token-0123456789abcdef"
# Not hex: a hex PIN such as "1111" turns up by chance in the log's hashes and request ids.
TLS_PIN = "pin-tls-zq"


class TlsAuditMetricsTest(unittest.TestCase):
    def setUp(self):
        self.d = ConfigDaemon("rootseal-tls-", "tls", pin=TLS_PIN)
        self.dir = self.d.dir
        self.env = self.d.env
        self.port = self.d.port
        self.config = self.d.config
        self.pin = write_private(self.p("pin"), TLS_PIN)
        fingerprints = make_tls_material(self.dir, leaves=(("server", "rootseal-one", SERVER_EXT),
                                                           ("server2", "rootseal-two", SERVER_EXT),
                                                           ("client", "vault-seal", CLIENT_EXT)))
        self.client_fp = fingerprints["client"]
        os.symlink(self.p("server.pem"), self.p("live.pem"))
        os.symlink(self.p("server.key"), self.p("live.key"))
        self.write_config()
        self.proc = None

    def p(self, leaf):
        return self.d.p(leaf)

    def write_config(self, extra=""):
        self.d.write_config(listen=self.d.tls_listen(cert="live"), pin_file=self.pin, rest="""audit:
  file: %(dir)s/audit.log
policies:
  seal:
    keys: [autounseal]
    operations: [create, encrypt, decrypt]
tokens:
  - name: app
    sha256: %(app)s
    policies: [seal]
client_certs:
  - name: vault-seal
    sha256: %(fp)s
    policies: [seal]
%(extra)s""" % {"dir": self.dir, "app": sha256_hex(APP_TOKEN), "fp": self.client_fp, "extra": extra})

    def tearDown(self):
        self.d.close()

    def start(self):
        self.proc = self.d.start()

    def log(self):
        return self.d.log()

    def call(self, method, path, body=None, token=None, client_cert=False):
        r = self.d.call(method, path, body, token, context=self.d.tls_context(client_cert))
        return r.status, r.content_type, r.data, r.peer_cn

    def wait_for(self, predicate, what, timeout=30):
        return self.d.wait_for(predicate, what, timeout)

    def test_tls_mtls_reload_audit_metrics(self):
        self.start()
        self.wait_for(lambda: self.call("GET", "/v1/sys/health")[0] == 200, "unsealed over TLS")

        # Plain HTTP on the TLS port gets nothing useful.
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertFalse(s.recv(100).startswith(b"HTTP/1.1 200"))

        status, _, body, cn = self.call("PUT", "/v1/transit/encrypt/autounseal", {"plaintext": "YQ=="}, APP_TOKEN)
        self.assertEqual((status, cn), (200, "rootseal-one"))
        ct = json.loads(body)["data"]["ciphertext"]
        # A client certificate bound to the same policy works without any token ...
        status, _, body, _ = self.call("PUT", "/v1/transit/decrypt/autounseal", {"ciphertext": ct}, client_cert=True)
        self.assertEqual((status, json.loads(body)["data"]["plaintext"]), (200, "YQ=="))
        # ... and no certificate and no token is a 403.
        self.assertEqual(self.call("PUT", "/v1/transit/decrypt/autounseal", {"ciphertext": ct})[0], 403)

        # SIGHUP with a broken certificate: refused, the old one keeps serving.
        os.unlink(self.p("live.pem"))
        with open(self.p("live.pem"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
        self.proc.send_signal(signal.SIGHUP)
        self.wait_for(lambda: "reload rejected" in self.log(), "the reload to be rejected")
        self.assertEqual(self.call("GET", "/v1/sys/health")[3], "rootseal-one")
        # SIGHUP with a new certificate: new connections get it, without a restart.
        os.unlink(self.p("live.pem"))
        os.unlink(self.p("live.key"))
        os.symlink(self.p("server2.pem"), self.p("live.pem"))
        os.symlink(self.p("server2.key"), self.p("live.key"))
        pid = self.proc.pid
        self.proc.send_signal(signal.SIGHUP)
        self.wait_for(lambda: self.call("GET", "/v1/sys/health")[3] == "rootseal-two", "the new certificate")
        self.assertEqual(self.proc.pid, pid)
        self.assertIsNone(self.proc.poll())

        # Metrics.
        status, ctype, body, _ = self.call("GET", "/v1/sys/metrics?format=prometheus")
        self.assertEqual((status, ctype), (200, "text/plain; version=0.0.4"))
        text = body.decode()
        self.assertIn('rootseal_http_requests_total{route="transit/encrypt",method="PUT",status="200"} 1', text)
        self.assertIn('rootseal_http_requests_total{route="transit/decrypt",method="PUT",status="403"} 1', text)
        self.assertIn("rootseal_sealed 0", text)
        self.assertIn("rootseal_http_request_duration_seconds_bucket", text)

        # Stop, then the audit log: one chained line per Transit request, no secrets.
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=30), 0, self.log())
        with open(self.p("audit.log")) as f:
            lines = [json.loads(l) for l in f]
        # The refused request names no operation (it was never authorized) but its path says what was tried.
        self.assertEqual([l.get("operation") for l in lines], ["encrypt", "decrypt", None], lines)
        self.assertEqual([l["path"] for l in lines], ["/v1/transit/encrypt/autounseal",
                                                     "/v1/transit/decrypt/autounseal",
                                                     "/v1/transit/decrypt/autounseal"])
        self.assertEqual(len({l["accessor"] for l in lines[:2]}), 2)  # token and certificate identities differ
        self.assertEqual([l["status"] for l in lines], [200, 200, 403])
        # The refused request is audited as denied, with no accessor (no identity was presented).
        self.assertEqual([l["outcome"] for l in lines], ["ok", "ok", "denied"])
        self.assertEqual(lines[2]["accessor"], "")
        self.assertEqual(lines[1]["client_cert"].split("CN=")[-1], "vault-seal")
        self.assertEqual(lines[2]["error"], "permission denied")
        raw = open(self.p("audit.log")).read()
        for secret in (APP_TOKEN, ct, "YQ==", TLS_PIN):
            self.assertNotIn(secret, raw)
        self.assertEqual(lines[0]["prev_sha256"], "0" * 64)
        self.assertEqual(lines[1]["prev_sha256"], lines[0]["sha256"])
        with open(self.p("audit.log"), "rb") as f:
            first = f.readline().rstrip(b"\n")
        covered = first[:first.rindex(b',"sha256":')] + b"}"
        self.assertEqual(lines[0]["sha256"], hashlib.sha256(covered).hexdigest())
        self.assertEqual(os.stat(self.p("audit.log")).st_mode & 0o777, 0o600)
        # `rootseal audit verify` accepts the log and names the first bad line of an edited copy.
        cli = os.environ["ROOTSEAL_CLI"]
        ok = subprocess.run([cli, "audit", "verify", self.p("audit.log")], capture_output=True)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn(b"3 lines, chain intact", ok.stdout)
        with open(self.p("audit.log")) as f:
            text = f.read()
        with open(self.p("edited.log"), "w") as f:
            f.write(text.replace('"status":403', '"status":200'))
        bad = subprocess.run([cli, "audit", "verify", self.p("edited.log")], capture_output=True)
        self.assertEqual(bad.returncode, 1)
        self.assertIn(b"line 3", bad.stderr)
        with open(self.p("swapped.log"), "w") as f:
            l = text.splitlines(keepends=True)
            f.write(l[1] + l[0] + l[2])
        swapped = subprocess.run([cli, "audit", "verify", self.p("swapped.log")], capture_output=True)
        self.assertEqual(swapped.returncode, 1)
        self.assertIn(b"line 1", swapped.stderr)

    def test_audit_log_rotated_by_move_and_sighup_stays_one_chain(self):
        self.start()
        self.wait_for(lambda: self.call("GET", "/v1/sys/health")[0] == 200, "unsealed over TLS")
        cli = os.environ["ROOTSEAL_CLI"]
        encrypt = lambda: self.call("PUT", "/v1/transit/encrypt/autounseal", {"plaintext": "YQ=="}, APP_TOKEN)[0]
        self.assertEqual([encrypt() for _ in range(3)], [200] * 3)
        files = []
        pid = self.proc.pid
        for k in (2, 1):  # logrotate's order: audit.log -> audit.log.2, later audit.log -> audit.log.1
            rotated = self.p("audit.log.%d" % k)
            os.rename(self.p("audit.log"), rotated)
            files.append(rotated)
            self.assertEqual(encrypt(), 200)  # after the move, before SIGHUP: still written to the moved file
            self.proc.send_signal(signal.SIGHUP)
            self.wait_for(lambda: os.path.exists(self.p("audit.log")), "the reopened audit log")
            self.assertEqual([encrypt() for _ in range(2)], [200] * 2)
        self.assertEqual(self.proc.pid, pid)
        self.assertIn("audit log reopened", self.log())
        files.append(self.p("audit.log"))
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=30), 0, self.log())

        counts = []
        for f in files:
            with open(f) as fh:
                counts.append(len(fh.readlines()))
        # 3 + 1 moved-file line | reopen line + 2 + 1 | reopen line + 2
        self.assertEqual(counts, [4, 4, 3])
        with open(self.p("audit.log")) as fh:
            first = json.loads(fh.readline())
        self.assertEqual((first["operation"], first["method"]), ("audit_reopen", "SIGHUP"))
        with open(files[1]) as fh:
            last_of_previous = json.loads(fh.readlines()[-1])["sha256"]
        self.assertEqual(first["continues"], last_of_previous)
        ok = subprocess.run([cli, "audit", "verify"] + files, capture_output=True)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn(b"3 files, 11 lines, one chain", ok.stdout)
        # A rotated file missing from the list breaks the chain at the file after the gap.
        gap = subprocess.run([cli, "audit", "verify", files[0], files[2]], capture_output=True)
        self.assertEqual(gap.returncode, 1)
        self.assertIn(b"line 1: does not continue the previous file", gap.stderr)

    def test_plain_http_refused_off_loopback_and_without_opt_in(self):
        self.write_config()
        with open(self.config) as f:
            cfg = f.read()
        no_tls = cfg.replace("  tls:\n    cert_file: %s/live.pem\n    key_file: %s/live.key\n    client_ca_file: %s/ca.pem\n"
                             % (self.dir, self.dir, self.dir), "")
        with open(self.config, "w") as f:
            f.write(no_tls)
        r = subprocess.run([ROOTSEALD, "--config", self.config, "--allow-root"], capture_output=True, env=self.env, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"plain HTTP is refused", r.stderr)
        with open(self.config, "w") as f:
            f.write(no_tls.replace("address: 127.0.0.1:", "address: 0.0.0.0:").replace(
                "listen:\n", "listen:\n  allow_plaintext: true\n"))
        r = subprocess.run([ROOTSEALD, "--config", self.config, "--allow-root"], capture_output=True, env=self.env, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"plain HTTP is refused", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
