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

    def test_errors_raise_the_exceptions_a_real_vault_causes(self):
        transit = self.client.secrets.transit
        transit.create_key("hvac-errors")
        # 400 -> InvalidRequest: a missing key for decrypt, rotate, config and delete (Vault answers 400, not 404).
        with self.assertRaises(hvac.exceptions.InvalidRequest) as ctx:
            transit.decrypt_data("hvac-nokey", "vault:v1:AAAA")
        self.assertIn("encryption key not found", str(ctx.exception))
        with self.assertRaises(hvac.exceptions.InvalidRequest):
            transit.rotate_key("hvac-nokey")
        with self.assertRaises(hvac.exceptions.InvalidRequest):
            transit.update_key_configuration("hvac-nokey", deletion_allowed=True)
        with self.assertRaises(hvac.exceptions.InvalidRequest) as ctx:
            transit.delete_key("hvac-nokey")
        self.assertIn("could not delete key; not found", str(ctx.exception))
        with self.assertRaises(hvac.exceptions.InvalidRequest):
            transit.encrypt_data("hvac-errors", "not base64!")
        with self.assertRaises(hvac.exceptions.InvalidRequest):
            transit.encrypt_data("hvac-errors", plaintext=None, batch_input=[])
        # 404 -> InvalidPath: reading a missing key.
        with self.assertRaises(hvac.exceptions.InvalidPath):
            transit.read_key("hvac-nokey")
        # 403 -> Forbidden: a wrong token, for every kind of call.
        stranger = hvac.Client(url=self.client.url, token="not-a-token", timeout=10)
        for call in (lambda: stranger.secrets.transit.read_key("hvac-errors"),
                     lambda: stranger.secrets.transit.encrypt_data("hvac-errors", "YQ=="),
                     lambda: stranger.secrets.transit.list_keys(),
                     lambda: stranger.lookup_token()):
            with self.assertRaises(hvac.exceptions.Forbidden):
                call()
        self.assertFalse(stranger.is_authenticated())
        self.assertTrue(self.client.is_authenticated())
        # The dev root token is not renewable: renew-self is a 4xx (InvalidRequest), never an empty 200.
        with self.assertRaises(hvac.exceptions.InvalidRequest):
            self.client.auth.token.renew_self(increment=0)
        # Nothing was damaged.
        ct = transit.encrypt_data("hvac-errors", "YQ==")["data"]["ciphertext"]
        self.assertEqual(transit.decrypt_data("hvac-errors", ct)["data"]["plaintext"], "YQ==")


if __name__ == "__main__":
    unittest.main(verbosity=2)
