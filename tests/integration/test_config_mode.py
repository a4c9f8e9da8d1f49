"""rootseald from a configuration file (not dev mode): a SoftHSM2 token, the
PIN from a private file, policies and static tokens declared by hash."""
import os
import shutil
import unittest

from rootseal_testlib import ConfigDaemon, sha256_hex, write_private

SEAL_TOKEN = "s.seal-token-0123456789abcdef"
APP_TOKEN = "s.app-token-0123456789abcdef"


class ConfigModeTest(unittest.TestCase):
    def setUp(self):
        self.d = ConfigDaemon("rootseal-cfg-", "prod", pin="4321")
        self.dir = self.d.dir
        self.pin = write_private(self.d.p("hsm-pin"), "4321\n")
        self.d.write_config(pin_sources=("credential", "file"), pin_file=self.pin, rest="""policies:
  autounseal:
    keys: [autounseal]
    operations: [encrypt, decrypt]
  apps:
    keys: ["app-*"]
    operations: [create, read, encrypt, decrypt, rotate]
tokens:
  - name: vault-seal
    sha256: %(seal)s
    policies: [autounseal]
    ttl: 1h
    renewable: true
  - name: app
    sha256: %(app)s
    policies: [apps]
""" % {"seal": sha256_hex(SEAL_TOKEN), "app": sha256_hex(APP_TOKEN)})

    def tearDown(self):
        self.d.close()

    def start(self):
        env = dict(self.d.env)
        env.pop("CREDENTIALS_DIRECTORY", None)
        self.d.start(env)

    def log(self):
        return self.d.log()

    def call(self, method, path, body=None, token=None):
        r = self.d.call(method, path, body, token)
        return r.status, r.json()

    def wait_for(self, predicate, what, timeout=30):
        return self.d.wait_for(predicate, what, timeout)

    def health(self):
        return self.call("GET", "/v1/sys/health")[0]

    def test_policies_tokens_and_pin_file(self):
        self.start()
        self.wait_for(lambda: self.health() == 200, "unsealed")
        # The seal token may use autounseal (created by an upsert it may not do: create is not in its policy).
        status, _ = self.call("PUT", "/v1/transit/encrypt/autounseal", {"plaintext": "YQ=="}, SEAL_TOKEN)
        self.assertEqual(status, 400)  # encryption key not found: no create capability
        status, _ = self.call("POST", "/v1/transit/keys/app-one", {}, APP_TOKEN)
        self.assertEqual(status, 200)
        status, body = self.call("POST", "/v1/transit/encrypt/app-one", {"plaintext": "YQ=="}, APP_TOKEN)
        self.assertEqual(status, 200)
        ct = body["data"]["ciphertext"]
        # Least privilege: the app token cannot touch other keys or delete; the seal token cannot touch app keys.
        self.assertEqual(self.call("POST", "/v1/transit/keys/other", {}, APP_TOKEN)[0], 403)
        self.assertEqual(self.call("DELETE", "/v1/transit/keys/app-one", None, APP_TOKEN)[0], 403)
        self.assertEqual(self.call("POST", "/v1/transit/decrypt/app-one", {"ciphertext": ct}, SEAL_TOKEN)[0], 403)
        self.assertEqual(self.call("POST", "/v1/transit/keys/app-one/rotate", {}, SEAL_TOKEN)[0], 403)
        # lookup-self / renew-self for the renewable seal token.
        status, body = self.call("GET", "/v1/auth/token/lookup-self", None, SEAL_TOKEN)
        self.assertEqual((status, body["data"]["policies"], body["data"]["renewable"]), (200, ["autounseal"], True))
        status, body = self.call("PUT", "/v1/auth/token/renew-self", {"increment": 0}, SEAL_TOKEN)
        self.assertEqual(status, 200)
        self.assertEqual(body["auth"]["lease_duration"], 3600)
        self.assertTrue(body["auth"]["renewable"])
        status, body = self.call("PUT", "/v1/auth/token/renew-self", {"increment": 0}, APP_TOKEN)
        self.assertEqual(status, 400)
        # No token values in the log.
        self.assertNotIn(SEAL_TOKEN, self.log())
        self.assertNotIn(APP_TOKEN, self.log())

    def test_pin_file_readable_by_others_is_refused_then_fixed(self):
        os.chmod(self.pin, 0o644)
        self.start()
        reason = self.wait_for(lambda: (lambda s: s["sealed_reason"] if s["sealed"] and "readable" in s["sealed_reason"] else None)(
            self.call("GET", "/v1/sys/seal-status")[1]), "sealed with a reason")
        self.assertIn(self.pin, reason)
        self.assertEqual(self.health(), 503)
        status, body = self.call("POST", "/v1/transit/encrypt/app-x", {"plaintext": "YQ=="}, APP_TOKEN)
        self.assertEqual((status, body), (503, {"errors": ["rootseal is sealed"]}))
        os.chmod(self.pin, 0o600)
        self.wait_for(lambda: self.health() == 200, "unsealed once the PIN file is private")

    def test_wrong_pin_seals_with_reason_and_is_not_retried(self):
        with open(self.pin, "w") as f:
            f.write("9999\n")
        self.start()
        reason = self.wait_for(lambda: (lambda s: s["sealed_reason"] if "PIN" in s["sealed_reason"] else None)(
            self.call("GET", "/v1/sys/seal-status")[1]), "sealed: wrong PIN")
        self.assertNotIn("9999", reason)
        with open(self.pin, "w") as f:
            f.write("4321\n")
        self.wait_for(lambda: self.health() == 200, "unsealed with the right PIN")

    def test_token_removed_seals_and_returning_unseals_without_restart(self):
        self.start()
        self.wait_for(lambda: self.health() == 200, "unsealed")
        status, body = self.call("POST", "/v1/transit/keys/app-k", {}, APP_TOKEN)
        status, body = self.call("POST", "/v1/transit/encrypt/app-k", {"plaintext": "YQ=="}, APP_TOKEN)
        ct = body["data"]["ciphertext"]
        tokens = os.path.join(self.dir, "hsm", "tokens")
        (token_dir,) = os.listdir(tokens)
        shutil.move(os.path.join(tokens, token_dir), os.path.join(self.dir, "unplugged"))
        self.wait_for(lambda: self.health() == 503, "sealed after the token went away")
        status, body = self.call("GET", "/v1/sys/seal-status")
        self.assertTrue(body["sealed"])
        self.assertNotEqual(body["sealed_reason"], "")
        self.assertEqual(self.call("POST", "/v1/transit/decrypt/app-k", {"ciphertext": ct}, APP_TOKEN)[0], 503)
        shutil.move(os.path.join(self.dir, "unplugged"), os.path.join(tokens, token_dir))
        self.wait_for(lambda: self.health() == 200, "unsealed after the token came back")
        status, body = self.call("POST", "/v1/transit/decrypt/app-k", {"ciphertext": ct}, APP_TOKEN)
        self.assertEqual((status, body["data"]["plaintext"]), (200, "YQ=="))
        self.assertIn("root of trust lost, sealed", self.log())
        self.assertEqual(self.log().count('msg="unsealed"'), 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
