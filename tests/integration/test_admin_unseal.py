"""`rootseal unseal` and `rootseal status` against a rootseald whose only HSM
PIN source is `typed`: sealed at start, a wrong PIN keeps it sealed and is
not tried again, the next attempt is rate-limited (doubling), the right PIN
unseals it. The PIN never reaches the log or the audit log. Also: a token
created over the admin socket is bound by its policy (least privilege)."""
import json
import os
import re
import signal
import subprocess
import unittest

from rootseal_testlib import ConfigDaemon, wait_until, ROOTSEALD

ROOTSEAL_CLI = os.environ.get("ROOTSEAL_CLI", "")
PIN = "5150-typed-into-rootseal"
WRONG_PIN = "0000-not-the-pin"
NO_PIN_REASON = "no HSM PIN available (typed: no PIN typed (rootseal unseal))"


class TypedUnsealTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(ROOTSEALD and ROOTSEAL_CLI, "ROOTSEALD and ROOTSEAL_CLI must be set (run through ctest)")
        self.d = ConfigDaemon("rootseal-unseal-", "typed", pin=PIN)
        self.dir = self.d.dir
        self.port = self.d.port
        self.socket = os.path.join(self.dir, "run", "admin.sock")
        self.config = self.d.config
        self.d.write_config(pin_sources=("typed",), rest="""admin:
  socket: %(socket)s
  unseal_delay: 2s
  max_unseal_delay: 1m
policies:
  apps:
    keys: ["app-*"]
    operations: [create, read, encrypt, decrypt]
""" % {"socket": self.socket})
        self.proc = self.d.start()

    def tearDown(self):
        self.d.close()

    def log(self):
        return self.d.log()

    def cli(self, *args, stdin=None, expect=0):
        # --config: the CLI finds admin.socket in rootseald's own configuration.
        r = subprocess.run([ROOTSEAL_CLI] + list(args) + ["--config", self.config], input=stdin,
                           capture_output=True, timeout=60)
        if expect is not None and r.returncode != expect:
            raise AssertionError("rootseal %s: exit %d (want %d)\n%s%s\n%s"
                                 % (args, r.returncode, expect, r.stdout.decode(), r.stderr.decode(), self.log()))
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def status(self):
        rc, out, _ = self.cli("status", "--json", expect=None)
        self.assertIn(rc, (0, 2))
        s = json.loads(out)
        self.assertEqual(rc == 2, s["sealed"])
        return s

    def http(self, method, path, body=None, token=None):
        r = self.d.call(method, path, body, token)
        return r.status, r.json()

    def test_wrong_pin_rate_limited_then_right_pin_unseals(self):
        wait_until(self.proc, self.log, lambda: os.path.exists(self.socket) and self.status()["sealed_reason"] == NO_PIN_REASON,
                   "sealed, waiting for a typed PIN")
        rc, out, _ = self.cli("status", expect=2)
        self.assertRegex(out, r"(?m)^sealed\s+true$")
        self.assertIn("typed: no PIN typed (rootseal unseal)", out)
        self.assertEqual(self.http("GET", "/v1/sys/health")[0], 503)

        # A wrong PIN (on standard input: not a terminal): refused by the token, still sealed.
        _, _, err = self.cli("unseal", stdin=(WRONG_PIN + "\n").encode(), expect=1)
        self.assertIn("still sealed", err)
        self.assertIn("CKR_PIN_INCORRECT", err)
        # It is not tried again: the next probes find no PIN at all.
        wait_until(self.proc, self.log, lambda: self.status()["sealed_reason"] == NO_PIN_REASON,
                   "the wrong PIN forgotten")
        self.assertEqual(self.log().count("the user PIN is incorrect (C_Login: CKR_PIN_INCORRECT)"), 2, self.log())
        self.assertEqual(self.log().count('msg="typed PIN did not unseal" wrong_pins=1'), 1, self.log())

        # At once the right PIN: refused by the rate limit without being tried.
        _, _, err = self.cli("unseal", stdin=PIN.encode(), expect=1)
        self.assertRegex(err, r"1 wrong PIN\(s\): the next attempt is allowed in [12]s")
        self.assertTrue(self.status()["sealed"])
        self.assertGreater(self.status()["unseal_retry_after_ms"], 0)

        # After the delay: a second wrong PIN doubles it (2s, then 4s).
        wait_until(self.proc, self.log, lambda: self.status()["unseal_retry_after_ms"] == 0, "the delay to pass")
        _, _, err = self.cli("unseal", stdin=(WRONG_PIN + "-2\n").encode(), expect=1)
        self.assertIn("still sealed", err)
        delay = self.status()["unseal_retry_after_ms"]
        self.assertTrue(2000 < delay <= 4000, delay)
        _, _, err = self.cli("unseal", stdin=PIN.encode(), expect=1)
        self.assertRegex(err, r"2 wrong PIN\(s\): the next attempt is allowed in [34]s")

        wait_until(self.proc, self.log, lambda: self.status()["unseal_retry_after_ms"] == 0, "the delay to pass",
                   timeout=10)
        _, out, _ = self.cli("unseal", stdin=(PIN + "\n").encode())
        self.assertEqual(out.strip(), "unsealed")
        self.assertEqual(self.http("GET", "/v1/sys/health")[0], 200)
        s = self.status()
        self.assertEqual((s["sealed"], s["sealed_reason"], s["unseal_retry_after_ms"]), (False, "", 0))
        # A PIN typed while unsealed is not used.
        _, out, _ = self.cli("unseal", stdin=(WRONG_PIN + "\n").encode())
        self.assertIn("already", out)
        self.assertEqual(self.http("GET", "/v1/sys/health")[0], 200)

        # Least privilege for a created token.
        _, out, _ = self.cli("token", "create", "--policy", "apps", "--json")
        token = json.loads(out)["token"]
        self.assertEqual(self.http("POST", "/v1/transit/keys/app-one", {}, token)[0], 200)
        self.assertEqual(self.http("POST", "/v1/transit/encrypt/app-one", {"plaintext": "aGk="}, token)[0], 200)
        self.assertEqual(self.http("POST", "/v1/transit/keys/other", {}, token), (403, {"errors": ["permission denied"]}))

        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=30), 0)
        self.assertFalse(os.path.exists(self.socket), "the socket is removed at shutdown")
        log = self.log()
        self.assertIn('msg="unsealed with a typed PIN" pin_used=true', log)
        with open(os.path.join(self.dir, "state", "audit.log")) as f:
            audit = f.read()
        self.assertEqual(len(re.findall(r'"path":"admin/unseal"', audit)), 6)
        for secret in (PIN, WRONG_PIN, token):
            self.assertNotIn(secret, log)
            self.assertNotIn(secret, audit)


if __name__ == "__main__":
    unittest.main(verbosity=2)
