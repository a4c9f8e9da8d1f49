"""SIGKILL at random moments under 1, 4 and 16 concurrent clients (15 kills
each, every fifth one during start-up instead of under load): every start
succeeds, `rootseal audit verify` accepts every file (recovery lines
included), every answered request has its audit line with the status it was
answered, no request is audited twice or without having been sent. The
1,000-kill campaign with figures is bench/audit_crash.py."""
import json
import unittest

from audit_crash_lib import Campaign
from rootseal_testlib import rmtree, tempdir

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
