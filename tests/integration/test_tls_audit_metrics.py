"""rootseald over TLS (and mutual TLS) from a configuration file: a real
client with certificate verification, SIGHUP reload of the certificate (a
broken one is refused and the old keeps serving), the audit log (chained,
verified, no secrets) and Prometheus metrics."""
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import unittest

from rootseal_testlib import free_port, wait_until, ROOTSEALD, SOFTHSM2_MODULE, make_softhsm, rmtree, tempdir

APP_TOKEN = "s.tls-app-token-0123456789abcdef"


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)



class TlsAuditMetricsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempdir("rootseal-tls-")
        d = self.dir
        self.env = make_softhsm(os.path.join(d, "hsm"), "tls", pin="1111")
        self.pin = os.path.join(d, "pin")
        with open(self.pin, "w") as f:
            f.write("1111")
        os.chmod(self.pin, 0o600)
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=rootseal-test-ca", "-keyout", self.p("ca.key"), "-out", self.p("ca.pem")])
        for name, cn, ext in (("server", "rootseal-one", "subjectAltName=IP:127.0.0.1"),
                              ("server2", "rootseal-two", "subjectAltName=IP:127.0.0.1"),
                              ("client", "vault-seal", "extendedKeyUsage=clientAuth")):
            with open(self.p(name + ".ext"), "w") as f:
                f.write(ext + "\n")
            run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + cn,
                 "-keyout", self.p(name + ".key"), "-out", self.p(name + ".csr")])
            run(["openssl", "x509", "-req", "-in", self.p(name + ".csr"), "-CA", self.p("ca.pem"), "-CAkey",
                 self.p("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", self.p(name + ".ext"), "-out",
                 self.p(name + ".pem")])
            os.chmod(self.p(name + ".key"), 0o600)
        der = subprocess.run(["openssl", "x509", "-in", self.p("client.pem"), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.client_fp = hashlib.sha256(der).hexdigest()
        os.symlink(self.p("server.pem"), self.p("live.pem"))
        os.symlink(self.p("server.key"), self.p("live.key"))
        self.port = free_port()
        self.config = self.p("rootseald.yaml")
        self.write_config()
        self.proc = None

    def p(self, leaf):
        return os.path.join(self.dir, leaf)

    def write_config(self, extra=""):
        with open(self.config, "w") as f:
            f.write("""
listen:
  address: 127.0.0.1:%(port)d
  tls:
    cert_file: %(dir)s/live.pem
    key_file: %(dir)s/live.key
    client_ca_file: %(dir)s/ca.pem
state_dir: %(dir)s/state
pkcs11:
  module: %(module)s
  token_label: tls
  generate_key: true
pin:
  sources: [file]
  file: %(pin)s
seal:
  probe_interval: 200ms
audit:
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
%(extra)s""" % {"port": self.port, "dir": self.dir, "module": SOFTHSM2_MODULE, "pin": self.pin,
               "app": hashlib.sha256(APP_TOKEN.encode()).hexdigest(), "fp": self.client_fp, "extra": extra})

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        rmtree(self.dir)

    def start(self):
        self.log_file = open(self.p("stderr.log"), "ab")
        self.proc = subprocess.Popen([ROOTSEALD, "--config", self.config, "--allow-root"], stdout=subprocess.DEVNULL,
                                     stderr=self.log_file, env=self.env)

    def log(self):
        with open(self.p("stderr.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def ctx(self, client_cert=False):
        c = ssl.create_default_context(cafile=self.p("ca.pem"))
        if client_cert:
            c.load_cert_chain(self.p("client.pem"), self.p("client.key"))
        return c

    def call(self, method, path, body=None, token=None, client_cert=False):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.ctx(client_cert))
        headers = {"X-Vault-Token": token} if token else {}
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        cn = dict(x[0] for x in conn.sock.getpeercert()["subject"])["commonName"]
        conn.close()
        return r.status, r.getheader("Content-Type"), data, cn

    def wait_for(self, predicate, what, timeout=30):
        return wait_until(self.proc, self.log, predicate, what, timeout)

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
        for secret in (APP_TOKEN, ct, "YQ==", "1111"):
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
