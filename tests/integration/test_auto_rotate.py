"""Automatic key rotation (a key's auto_rotate_period; docs/api.md): rootseald
from a configuration file, SoftHSM2, SQLite state, hvac as the client.

A key is created with auto_rotate_period=1h; rootseald is stopped and the
key's version 1 is backdated by two hours in the state database (the only way
to make an hour pass in a test); restarted with auto_rotate.check_interval 1s
it rotates the key once: version 2 appears, ciphertexts of version 1 still
decrypt, the rotation is in the audit log (operation rotate, remote
auto-rotate, hash chain intact) and in the metrics, and later checks leave
the key alone (it is current). A key without a period is never rotated.
Waits poll a condition with a deadline."""
import base64
import json
import os
import sqlite3
import subprocess
import unittest

import hvac

from rootseal_testlib import ConfigDaemon, sha256_hex, write_private

TOKEN = "rs.auto-rotate-test-token-0123456789abcdef"
ROOTSEAL = os.environ["ROOTSEAL_CLI"]


class AutoRotateTest(unittest.TestCase):
    def setUp(self):
        self.d = ConfigDaemon("rootseal-autorot-", "autorot", pin="5555")
        pin = write_private(self.d.p("hsm-pin"), "5555\n")
        self.d.write_config(pin_file=pin, rest="auto_rotate:\n  check_interval: 1s\n"
                            "tokens:\n  - name: t\n    sha256: %s\n    policies: [root]\n" % sha256_hex(TOKEN))
        self.client = hvac.Client(url="http://127.0.0.1:%d" % self.d.port, token=TOKEN, timeout=10)

    def tearDown(self):
        self.d.close()

    def start(self):
        self.d.start()
        self.d.wait_unsealed()

    def metric(self, name):
        text = self.d.call("GET", "/v1/sys/metrics?format=prometheus").data.decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError("metric %s missing:\n%s" % (name, text))

    def latest(self, key):
        return self.client.secrets.transit.read_key(key)["data"]["latest_version"]

    def test_a_due_key_is_rotated_once_and_stays_current(self):
        self.start()
        # This hvac's create_key has no auto_rotate_period: the raw request, as Vault's CLI sends it.
        r = self.client.adapter.post("/v1/transit/keys/auto", json={"auto_rotate_period": "1h"})
        self.assertIn(getattr(r, "status_code", 200), (200, 204))
        self.client.secrets.transit.create_key("manual")
        self.assertEqual(self.client.secrets.transit.read_key("auto")["data"]["auto_rotate_period"], 3600)
        plain = base64.b64encode(b"before the rotation").decode()
        ct1 = self.client.secrets.transit.encrypt_data("auto", plain)["data"]["ciphertext"]
        self.assertTrue(ct1.startswith("vault:v1:"))
        # Not due yet: a few checks pass and nothing changes.
        checks = self.metric("rootseal_auto_rotation_checks_total")
        self.d.wait_for(lambda: self.metric("rootseal_auto_rotation_checks_total") >= checks + 2, "two more checks")
        self.assertEqual(self.latest("auto"), 1)
        self.assertEqual(self.d.stop(), 0)

        db = sqlite3.connect(os.path.join(self.d.dir, "state", "rootseal.db"))
        with db:
            n = db.execute("UPDATE key_versions SET created = created - 7200 WHERE name IN ('auto', 'manual')").rowcount
        db.close()
        self.assertEqual(n, 2)

        self.start()
        self.d.wait_for(lambda: self.latest("auto") == 2, "the due key rotated")
        self.assertEqual(self.metric("rootseal_auto_rotations_total"), 1)
        self.assertEqual(self.metric("rootseal_auto_rotation_failures_total"), 0)
        ct2 = self.client.secrets.transit.encrypt_data("auto", plain)["data"]["ciphertext"]
        self.assertTrue(ct2.startswith("vault:v2:"))
        for ct in (ct1, ct2):
            self.assertEqual(self.client.secrets.transit.decrypt_data("auto", ct)["data"]["plaintext"], plain)
        # Current now: later checks leave it alone; the key without a period is never touched.
        checks = self.metric("rootseal_auto_rotation_checks_total")
        self.d.wait_for(lambda: self.metric("rootseal_auto_rotation_checks_total") >= checks + 3, "three more checks")
        self.assertEqual(self.latest("auto"), 2)
        self.assertEqual(self.latest("manual"), 1)
        self.assertEqual(self.metric("rootseal_auto_rotations_total"), 1)
        self.assertIn("key rotated automatically", self.d.log())

        audit_path = os.path.join(self.d.dir, "state", "audit.log")
        with open(audit_path) as f:
            lines = [json.loads(line) for line in f]
        auto = [l for l in lines if l.get("remote") == "auto-rotate"]
        self.assertEqual(len(auto), 1, auto)
        self.assertEqual((auto[0]["operation"], auto[0]["key"], auto[0]["key_version"], auto[0]["outcome"]),
                         ("rotate", "auto", 2, "ok"))
        self.assertEqual(self.d.stop(), 0)
        v = subprocess.run([ROOTSEAL, "audit", "verify", audit_path], capture_output=True, text=True)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_b_a_bad_check_interval_is_refused_at_start(self):
        for value, why in (("500ms", "1s to 1h"), ("2h", "1s to 1h"), ("soon", "auto_rotate.check_interval")):
            with open(self.d.config) as f:
                text = f.read()
            with open(self.d.config, "w") as f:
                f.write(text.replace("check_interval: 1s", "check_interval: %s" % value))
            p = subprocess.run([os.environ["ROOTSEALD"], "--config", self.d.config, "--allow-root"],
                               capture_output=True, text=True, env=self.d.env, timeout=30)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(why, p.stderr)
            with open(self.d.config, "w") as f:
                f.write(text)


if __name__ == "__main__":
    unittest.main()
