"""SIGKILL at random moments under 1, 4 and 16 concurrent clients (15 kills
each, every fifth one during start-up instead of under load): every start
succeeds, `rootseal audit verify` accepts every file (recovery lines
included), every answered request has its audit line with the status it was
answered, no request is audited twice or without having been sent. The
1,000-kill campaign with figures is bench/audit_crash.py."""
import json
import os
import subprocess
import unittest

from audit_crash_lib import ROOTSEAL_CLI, Campaign
from rootseal_testlib import Daemon, rmtree, tempdir

KILLS_PER_LEVEL = 15


class AuditCrashTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempdir("rootseal-audit-crash-")

    def tearDown(self):
        rmtree(self.dir)

    def test_sigkill_under_load_keeps_the_audit_log_whole(self):
        campaign = Campaign(self.dir + "/state", seed=15)
        for clients in (1, 4, 16):
            for _ in range(KILLS_PER_LEVEL):
                campaign.round(clients)
        figures = campaign.finish()
        print(json.dumps(figures))
        self.assertEqual(figures["starts"], 3 * KILLS_PER_LEVEL + 1)
        self.assertEqual(figures["kills_under_load"] + figures["kills_during_startup"], 3 * KILLS_PER_LEVEL)
        self.assertGreater(figures["acknowledged"], 0)
        self.assertGreaterEqual(figures["audited_requests"], figures["acknowledged"])

    def test_a_torn_end_is_set_aside_logged_and_listed_by_verify(self):
        state = self.dir + "/state"
        d = Daemon(state)
        d.wait_health(200)
        status, _, _ = d.json("POST", "/v1/transit/keys/k", headers={"X-Vault-Token": d.token})
        self.assertIn(status, (200, 204))
        self.assertEqual(d.stop(), 0)
        audit = os.path.join(state, "audit.log")
        torn = b'{"time":"2026-12-06T14:00:00.000000Z","request_id":"to'
        with open(audit, "ab") as f:
            f.write(torn)
        d = Daemon(state)
        try:
            d.wait_health(200)
            self.assertIn('level=warn msg="audit log: a damaged end', d.stderr())
        finally:
            self.assertEqual(d.stop(), 0)
        damaged = [f for f in os.listdir(state) if f.startswith("audit.log.damaged-")]
        self.assertEqual(len(damaged), 1)
        with open(os.path.join(state, damaged[0]), "rb") as f:
            self.assertEqual(f.read(), torn)
        r = subprocess.run([ROOTSEAL_CLI, "audit", "verify", audit], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(b"lines, chain intact, 1 recovery:", r.stdout)
        self.assertRegex(r.stdout.decode(), r"line 2: recovered after a crash or a full disk: %d bytes set aside in "
                                            r"%s \(sha256 [0-9a-f]{64}\), checked" % (len(torn), damaged[0]))

    def test_a_dev_token_object_emptied_by_a_kill_is_put_back(self):
        """SoftHSM2 rewrites token.object in place at each login; a kill
        between its truncate and its write leaves it empty (seen in this
        campaign). The next start puts back the last good copy."""
        state = self.dir + "/state"
        d = Daemon(state)
        d.wait_health(200)
        status, _, _ = d.json("POST", "/v1/transit/keys/k", headers={"X-Vault-Token": d.token})
        self.assertIn(status, (200, 204))
        status, _, body = d.json("POST", "/v1/transit/encrypt/k", body=json.dumps({"plaintext": "YQ=="}),
                                 headers={"X-Vault-Token": d.token})
        self.assertEqual(status, 200, body)
        ciphertext = body["data"]["ciphertext"]
        d.proc.kill()
        d.proc.wait()
        d.stop()
        tokens = os.path.join(state, "softhsm", "tokens")
        (token,) = os.listdir(tokens)
        open(os.path.join(tokens, token, "token.object"), "wb").close()  # what the kill leaves
        d = Daemon(state)
        try:
            d.wait_health(200)
            status, _, body = d.json("POST", "/v1/transit/decrypt/k", body=json.dumps({"ciphertext": ciphertext}),
                                     headers={"X-Vault-Token": d.token})
            self.assertEqual(status, 200, body)
            self.assertEqual(body["data"]["plaintext"], "YQ==")
        finally:
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
