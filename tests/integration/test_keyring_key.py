"""The keyring key with the real rootseald on SoftHSM2, SIGKILLed at every step.

A store written as releases before the keyring key wrote it (crash_rotator
legacy: every version wrapped by the HSM root directly) migrates at the first
unseal; `rootseal keyring rotate-key` moves every version under a new keyring
key. rootseald is SIGKILLed right after each durable step of both
(ROOTSEAL_TEST_CRASH_AT), started again, and must then decrypt every
ciphertext issued before and hold one keyring key with every version under it.
"""
import base64
import json
import os
import signal
import sqlite3
import subprocess
import unittest

from rootseal_testlib import ConfigDaemon, sha256_hex, write_private

TOKEN = "rs.keyring-key-test-token-0123456789abcdef"
ROOTSEAL = os.environ["ROOTSEAL_CLI"]
CRASH_ROTATOR = os.environ["CRASH_ROTATOR"]


class KeyringKeyTest(unittest.TestCase):
    def setUp(self):
        # Token "crash", PIN 1234: the ones crash_rotator uses.
        self.d = ConfigDaemon("rootseal-kk-", "crash", pin="1234")
        pin = write_private(self.d.p("hsm-pin"), "1234\n")
        self.socket = self.d.p("admin.sock")
        self.d.write_config(pin_file=pin, rest="admin:\n  socket: %s\n"
                            "tokens:\n  - name: t\n    sha256: %s\n    policies: [root]\n"
                            % (self.socket, sha256_hex(TOKEN)))
        os.makedirs(self.d.p("state"), mode=0o700, exist_ok=True)

    def tearDown(self):
        self.d.close()

    # --- helpers ---------------------------------------------------------------

    def start(self, crash_at=None):
        env = dict(self.d.env)
        if crash_at:
            env["ROOTSEAL_TEST_CRASH_AT"] = crash_at
        self.d.start(env=env)

    def wait_unsealed(self):
        self.d.wait_unsealed()

    def wait_killed(self):
        code = self.d.proc.wait(timeout=60)
        self.assertEqual(code, -signal.SIGKILL, self.d.log()[-3000:])

    def transit(self, method, path, body=None):
        r = self.d.call(method, "/v1/transit/" + path, body=body, token=TOKEN)
        return r.status, r.json()

    def decrypt(self, key, ciphertext):
        status, body = self.transit("POST", "decrypt/" + key, {"ciphertext": ciphertext})
        self.assertEqual(status, 200, body)
        return base64.b64decode(body["data"]["plaintext"])

    def db(self):
        return sqlite3.connect("file:%s?mode=ro" % self.d.p("state/rootseal.db"), uri=True)

    def store_state(self):
        """(keyring keys as [(id, kcv)], the set of version tags)."""
        with self.db() as c:
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            kks = [] if "keyring_keys" not in tables else \
                [(r[0], r[1]) for r in c.execute("SELECT id, kcv FROM keyring_keys ORDER BY id")]
            tags = {r[0] for r in c.execute("SELECT root_kcv FROM key_versions")}
        return kks, tags

    def write_legacy(self, keys, versions):
        r = subprocess.run([CRASH_ROTATOR, "legacy", self.d.p("state"), str(keys), str(versions)],
                           capture_output=True, text=True, env=self.d.env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = []
        for line in r.stdout.splitlines():
            _, key, version, hex_plain, ct = line.split(" ")
            out.append((key, int(version), bytes.fromhex(hex_plain), ct))
        self.assertEqual(len(out), keys * versions)
        return out

    def require_all_under_one_keyring_key(self, want_id):
        kks, tags = self.store_state()
        self.assertEqual([k[0] for k in kks], [want_id], kks)
        self.assertEqual(tags, {"kk%d:%s" % (want_id, kks[0][1])})

    def cli(self, *args):
        return subprocess.run([ROOTSEAL, *args, "--socket", self.socket], capture_output=True, text=True,
                              timeout=60)

    # --- tests -----------------------------------------------------------------

    def test_a_legacy_store_migrates_and_survives_a_kill_after_every_step(self):
        legacy = self.write_legacy(4, 3)
        kks, tags = self.store_state()
        self.assertEqual(kks, [])
        self.assertEqual(len(tags), 1)  # the root's check value
        root_kcv = next(iter(tags))
        self.assertRegex(root_kcv, r"^[0-9a-f]{6}$")

        # Killed right after the keyring key is stored: versions still under the root.
        self.start(crash_at="keyring-key-added")
        self.wait_killed()
        kks, tags = self.store_state()
        self.assertEqual([k[0] for k in kks], [1])
        self.assertEqual(tags, {root_kcv})

        # Killed right after the versions moved (one transaction for a SQLite store).
        self.start(crash_at="keyring-rewrapped-1")
        self.wait_killed()
        self.require_all_under_one_keyring_key(1)

        # A normal start: every ciphertext from before decrypts.
        self.start()
        self.wait_unsealed()
        for key, _version, plain, ct in legacy:
            self.assertEqual(self.decrypt(key, ct), plain)
        self.require_all_under_one_keyring_key(1)
        self.assertRegex(self.d.log(), r'msg="unsealed" root=pkcs11 keys=4 versions=12 unseal_ms=\d+ '
                                       r'keyring_key=1 keyring_key_kcv=[0-9a-f]{6} mechanism=')
        status = self.cli("status", "--json")
        self.assertEqual(status.returncode, 0, status.stderr)
        kk = json.loads(status.stdout)["keyring_key"]
        self.assertEqual((kk["id"], kk["pending_versions"], kk["settle_error"]), (1, 0, ""))
        self.assertEqual(kk["kcv"], self.store_state()[0][0][1])

    def test_b_a_keyring_key_rotation_survives_a_kill_after_every_step(self):
        self.start()
        self.wait_unsealed()
        made = []
        for k in range(3):
            name = "rot-%d" % k
            self.assertEqual(self.transit("POST", "keys/" + name)[0], 200)
            self.assertEqual(self.transit("POST", "keys/%s/rotate" % name)[0], 200)
            plain = ("secret %d" % k).encode()
            status, body = self.transit("POST", "encrypt/" + name, {"plaintext": base64.b64encode(plain).decode()})
            self.assertEqual(status, 200, body)
            made.append((name, plain, body["data"]["ciphertext"]))
        self.require_all_under_one_keyring_key(1)
        self.assertEqual(self.d.stop(), 0)

        want = 1
        for step in ("keyring-key-added", "keyring-rewrapped-1", "keyring-key-retired-"):
            # The retired key is the one current before this rotation.
            point = step + str(want) if step.endswith("-") else step
            self.start(crash_at=point)
            self.wait_unsealed()
            r = self.cli("keyring", "rotate-key")
            self.assertNotEqual(r.returncode, 0, r.stdout)  # the daemon died under it
            self.wait_killed()
            want += 1
            # Started again: it finishes what the kill cut off.
            self.start()
            self.wait_unsealed()
            self.require_all_under_one_keyring_key(want)
            for name, plain, ct in made:
                self.assertEqual(self.decrypt(name, ct), plain)
            self.assertEqual(self.d.stop(), 0)

        # Uninterrupted, with the CLI's answer.
        self.start()
        self.wait_unsealed()
        r = self.cli("keyring", "rotate-key")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("keyring key %d" % (want + 1), r.stdout)
        self.require_all_under_one_keyring_key(want + 1)
        status, body = self.transit("POST", "keys/rot-0/rotate")
        self.assertEqual(status, 200, body)
        self.require_all_under_one_keyring_key(want + 1)
        for name, plain, ct in made:
            self.assertEqual(self.decrypt(name, ct), plain)


if __name__ == "__main__":
    unittest.main(verbosity=2)
