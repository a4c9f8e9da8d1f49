"""A real Vault client (Debian's python3-hvac) against rootseald --dev."""
import unittest

import hvac

from rootseal_testlib import Daemon, rmtree, tempdir


class HvacTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.state = tempdir("rootseal-hvac-")
        cls.d = Daemon(cls.state)
        cls.d.wait_health(200)
        cls.client = hvac.Client(url="http://%s" % cls.d.address, token=cls.d.token, timeout=10)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        rmtree(cls.state)

    def test_health_get(self):
        health = self.client.sys.read_health_status(method="GET")
        self.assertIsInstance(health, dict)
        self.assertFalse(health["sealed"])
        self.assertTrue(health["initialized"])

    def test_health_head(self):
        # hvac's default is HEAD (query parameters dropped); it never raises on status.
        resp = self.client.sys.read_health_status()
        self.assertEqual(resp.status_code, 200)

    def test_seal_status(self):
        self.assertFalse(self.client.sys.is_sealed())
        status = self.client.sys.read_seal_status()
        self.assertEqual(status["type"], "pkcs11")

    def test_unknown_path_is_invalid_path(self):
        with self.assertRaises(hvac.exceptions.InvalidPath):
            self.client.adapter.get("/v1/sys/does-not-exist")


if __name__ == "__main__":
    unittest.main(verbosity=2)
