"""Keyring snapshots with a TPM root (issue 24): rootseald with
`root_of_trust: tpm` on an swtpm started here takes a snapshot to a folder
destination; the offline `rootseal snapshot verify | restore` check it against
the same TPM-sealed root key (tpm-root.seal, the TCTI, the auth value of the
`tpm:` section), as the daemon opens it.

- verify passes (the TPM root chosen from the configuration's root_of_trust,
  or with --tpm / --sealed-file), with the manifest's root check value;
- one byte changed: refused by verify and by restore (which writes nothing);
- restore into an empty state folder (holding only the sealed file), then a
  rootseald started on it decrypts every ciphertext recorded before; a second
  restore onto it is refused without --force;
- another seal (a different root key sealed to the same TPM) is refused on
  the root check value; a missing or damaged sealed file, an unreachable TPM,
  a changed PCR, a TPM root mixed with --module are refused with their reason.
"""
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import unittest

from rootseal_testlib import ConfigDaemon, rmtree, tempdir, write_private
from test_tpm_daemon import Swtpm, free_port, tpm_tool

ROOTSEAL = os.environ.get("ROOTSEAL_CLI", "")
AUTH_VALUE = "snap-tpm-auth-51c9e0"
KEYS = 6
VERSIONS = 3


class TpmSnapshotTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        assert ROOTSEAL and os.environ.get("TPM_TOOL"), "ROOTSEAL_CLI and TPM_TOOL must be set (run through ctest)"
        # Class cleanups run even when setUpClass fails (tearDownClass would not); last added, first run.
        cls.dir = tempdir("rootseal-snaptpm-")
        cls.addClassCleanup(rmtree, cls.dir)
        cls.daemons = []
        cls.addClassCleanup(lambda: [d.close() for d in cls.daemons])
        cls.sw = Swtpm(cls.dir)
        cls.addClassCleanup(cls.sw.stop, signal.SIGKILL)
        cls.sw.start()
        # The root key is sealed with an auth value too (tpm.auth_value_file): the offline commands read it.
        cls.auth_file = cls.private_file("tpm-auth", AUTH_VALUE)
        # Host A: the root key created in the TPM on first start; keys, versions, ciphertexts.
        a = cls.host("A")
        cls.a = a
        cls.write_config(a)
        a.start()
        cls.wait_unsealed(a)
        cls.recorded = []
        for k in range(KEYS):
            name = "tpm-%d" % k
            cls.api(a, "POST", "/v1/transit/keys/" + name, {}, (200, 204))
            for v in range(1, VERSIONS + 1):
                if v > 1:
                    cls.api(a, "POST", "/v1/transit/keys/%s/rotate" % name, {}, (200,))
                plain = base64.b64encode(("%s v%d %s" % (name, v, secrets.token_hex(8))).encode()).decode()
                ct = cls.api(a, "POST", "/v1/transit/encrypt/" + name, {"plaintext": plain}, (200,))["data"]["ciphertext"]
                assert ct.startswith("vault:v%d:" % v), ct
                cls.recorded.append((name, ct, plain))
        # A snapshot on request (the scheduler's run: take, write, read back, verify with the TPM root).
        out = cls.run_cli(["snapshot", "now", "--socket", a.p("admin.sock")], a.env)
        m = re.search(r"^snapshot (rootseal-\S+\.snap): good at 1 destinations", out.stdout)
        assert out.returncode == 0 and m, out.stdout + out.stderr
        cls.name = m.group(1)
        # Offline from here: swtpm serves one connection at a time.
        assert a.stop() == 0
        cls.snapshot = os.path.join(a.p("snapshots"), cls.name)
        with open(cls.snapshot, "rb") as f:
            cls.bytes = f.read()
        cls.manifest = json.loads(cls.bytes.split(b"\n", 2)[1])
        cls.seal = os.path.join(a.dir, "state", "tpm-root.seal")

    # --- helpers ---------------------------------------------------------------
    @classmethod
    def host(cls, name):
        d = ConfigDaemon("rootseal-snaptpm-%s-" % name, "snaptpm-" + name, "unused-pin")
        d.env.pop("TSS2_LOG", None)
        d.token = "rs." + secrets.token_hex(24)
        cls.daemons.append(d)
        return d

    @classmethod
    def private_file(cls, leaf, text):
        return write_private(os.path.join(cls.dir, leaf), text + "\n")

    @classmethod
    def write_config(cls, d, initialize=True):
        with open(d.config, "w") as f:
            f.write("listen:\n  address: 127.0.0.1:%d\n  allow_plaintext: true\n"
                    "state_dir: %s/state\n"
                    "root_of_trust: tpm\n"
                    "tpm:\n  tcti: \"%s\"\n  pcrs: [7]\n  initialize: %s\n  auth_value_file: %s\n"
                    "admin:\n  socket: %s\n"
                    "seal:\n  probe_interval: 200ms\n"
                    "tokens:\n  - name: test\n    sha256: %s\n    policies: [root]\n"
                    "snapshots:\n  interval: 1h\n  retain:\n    count: 5\n"
                    "  destinations:\n    - name: local\n      kind: folder\n      path: %s\n"
                    % (d.port, d.dir, cls.sw.tcti, "true" if initialize else "false", cls.auth_file, d.p("admin.sock"),
                       hashlib.sha256(d.token.encode()).hexdigest(), d.p("snapshots")))

    @classmethod
    def api(cls, d, method, path, body, expect):
        r = d.call(method, path, body=body, token=d.token, timeout=30)
        assert r.status in expect, "%s %s -> %d %r" % (method, path, r.status, r.data[:300])
        return r.json() if r.data else None

    @staticmethod
    def wait_unsealed(d):
        d.wait_for(lambda: d.call("GET", "/v1/sys/health").status == 200, "unsealed", timeout=60)

    @staticmethod
    def run_cli(args, env):
        return subprocess.run([ROOTSEAL] + args, capture_output=True, text=True, env=env, timeout=300)

    def cli(self, args, expect=0):
        p = self.run_cli(args, self.a.env)
        self.assertEqual(p.returncode, expect, "rootseal %s\nstdout:\n%s\nstderr:\n%s" % (" ".join(args), p.stdout,
                                                                                           p.stderr))
        return p.stdout, p.stderr

    def good_report(self, out, name=None):
        """The report of a good verify: the snapshot, its counts, the TPM root and the manifest's check value."""
        self.assertIn("snapshot %s: good" % (name or self.name), out)
        self.assertIn("%d keys, %d versions: every one unwraps with the TPM-sealed root key" % (KEYS, KEYS * VERSIONS),
                      out)
        self.assertRegex(self.manifest["root_kcv"], r"^[0-9a-f]{6}$")
        self.assertIn("(check value %s)" % self.manifest["root_kcv"], out)

    def write(self, leaf, data):
        path = os.path.join(self.dir, leaf)
        with open(path, "wb") as f:
            f.write(data)
        return path

    # --- verify --------------------------------------------------------------------
    def test_verify_with_the_tpm_root_of_the_configuration(self):
        a = self.a
        # root_of_trust: tpm in --config: the TPM root without any root option.
        out, _ = self.cli(["snapshot", "verify", "--config", a.config])
        self.good_report(out)
        self.assertIn("(%s)" % self.seal, out)
        # --tpm with a folder; --sealed-file and --tcti without a configuration.
        out, _ = self.cli(["snapshot", "verify", "--tpm", "--config", a.config, "--folder", a.p("snapshots")])
        self.good_report(out)
        # --sealed-file and --tcti override the configuration's tpm: section (here a dead TCTI and no sealed file).
        with open(a.config) as f:
            text = f.read()
        elsewhere = self.write("elsewhere.yaml", text.replace(
            'tcti: "%s"' % self.sw.tcti, 'tcti: "swtpm:host=127.0.0.1,port=%d"\n  sealed_file: %s'
            % (free_port(), os.path.join(self.dir, "nowhere.seal"))).encode())
        _, err = self.cli(["snapshot", "verify", "--config", elsewhere, "--file", self.snapshot], expect=1)
        self.assertIn("no TPM-sealed root key at %s" % os.path.join(self.dir, "nowhere.seal"), err)
        copy = os.path.join(self.dir, "copy-of-root.seal")
        shutil.copy2(self.seal, copy)
        out, _ = self.cli(["snapshot", "verify", "--config", elsewhere, "--file", self.snapshot, "--sealed-file", copy,
                           "--tcti", self.sw.tcti])
        self.good_report(out)
        self.assertIn("(%s)" % copy, out)
        # The manifest's check value is the TPM root's: what the daemon recorded.
        self.assertEqual(self.manifest["keys"], KEYS)
        self.assertEqual(self.manifest["versions"], KEYS * VERSIONS)

    def test_one_changed_byte_is_refused_by_verify_and_restore(self):
        bad = bytearray(self.bytes)
        bad[len(bad) - 1000] ^= 0x20
        path = self.write("rootseal-29991231T235959.999Z.snap", bytes(bad))
        _, err = self.cli(["snapshot", "verify", "--config", self.a.config, "--file", path], expect=1)
        self.assertIn("snapshot rootseal-29991231T235959.999Z.snap: snapshot refused: content SHA-256 does not match "
                      "the manifest", err)
        target = os.path.join(self.dir, "corrupt-restore")
        _, err = self.cli(["snapshot", "restore", "--config", self.a.config, "--file", path, "--state-dir", target],
                          expect=1)
        self.assertIn("content SHA-256 does not match the manifest", err)
        self.assertFalse(os.path.exists(os.path.join(target, "rootseal.db")))

    # --- restore ---------------------------------------------------------------------
    def test_restore_into_an_empty_state_then_rootseald_decrypts(self):
        b = self.host("B")
        self.write_config(b, initialize=False)
        state = os.path.join(b.dir, "state")
        os.makedirs(state, mode=0o700)
        # The new host's state folder holds only the sealed root key (kept with the snapshots).
        shutil.copy2(self.seal, os.path.join(state, "tpm-root.seal"))
        source = ["--config", b.config, "--folder", self.a.p("snapshots"), "--state-dir", state]
        out, _ = self.cli(["snapshot", "restore", self.name] + source)
        self.good_report(out)
        self.assertIn("restored into %s (rootseal.db, tokens.db, cluster-id)" % state, out)
        # Onto the now non-empty state: refused without --force, nothing changed.
        with open(os.path.join(state, "rootseal.db"), "rb") as f:
            restored = f.read()
        _, err = self.cli(["snapshot", "restore"] + source, expect=1)
        self.assertIn("%s is not empty (rootseal.db, tokens.db, cluster-id); stop the daemon and pass --force" % state, err)
        with open(os.path.join(state, "rootseal.db"), "rb") as f:
            self.assertEqual(f.read(), restored)
        out, _ = self.cli(["snapshot", "restore", "--force"] + source)
        self.assertIn("restored into %s" % state, out)

        b.start()
        self.wait_unsealed(b)
        self.assertRegex(b.log(), r'msg="unsealed" root=tpm keys=%d versions=%d' % (KEYS, KEYS * VERSIONS))
        for name, ct, plain in self.recorded:
            got = self.api(b, "POST", "/v1/transit/decrypt/" + name, {"ciphertext": ct}, (200,))["data"]["plaintext"]
            self.assertEqual(got, plain, name)
        self.assertEqual(b.stop(), 0)

    # --- the wrong root, and the TPM's failures ----------------------------------------
    def test_another_seal_is_refused_on_the_check_value(self):
        other = os.path.join(self.dir, "other-root.seal")
        if not os.path.exists(other):
            tpm_tool("seal", self.sw.tcti, other, "7", self.auth_file, stdin=secrets.token_bytes(32))
        _, err = self.cli(["snapshot", "verify", "--config", self.a.config, "--sealed-file", other], expect=1)
        m = re.search(r"snapshot %s: snapshot refused: it was taken under root key ([0-9a-f]{6}), the root of trust "
                      r"here is ([0-9a-f]{6})" % re.escape(self.name), err)
        self.assertIsNotNone(m, err)
        self.assertEqual(m.group(1), self.manifest["root_kcv"])
        self.assertNotEqual(m.group(2), m.group(1))
        target = os.path.join(self.dir, "wrong-root-restore")
        _, err = self.cli(["snapshot", "restore", "--config", self.a.config, "--sealed-file", other, "--state-dir",
                           target], expect=1)
        self.assertIn("it was taken under root key %s" % self.manifest["root_kcv"], err)
        self.assertFalse(os.path.exists(os.path.join(target, "rootseal.db")))

    def test_missing_damaged_unreachable_and_mixed_roots_are_refused(self):
        cfg = self.a.config
        missing = os.path.join(self.dir, "no-such.seal")
        _, err = self.cli(["snapshot", "verify", "--config", cfg, "--sealed-file", missing], expect=1)
        # The whole reason (no "initialize one first": an offline command never creates a root key).
        self.assertEqual("rootseal: error: TPM root (tcti %s, sealed file %s): no TPM-sealed root key at %s\n"
                         % (self.sw.tcti, missing, missing), err)
        damaged = self.write("damaged.seal", b"RSTS" + secrets.token_bytes(60))
        _, err = self.cli(["snapshot", "verify", "--config", cfg, "--sealed-file", damaged], expect=1)
        self.assertIn("sealed file %s): sealed blob at %s is damaged" % (damaged, damaged), err)
        short = os.path.join(self.dir, "short.seal")
        if not os.path.exists(short):
            tpm_tool("seal", self.sw.tcti, short, "7", self.auth_file, stdin=secrets.token_bytes(16))
        _, err = self.cli(["snapshot", "verify", "--config", cfg, "--sealed-file", short], expect=1)
        self.assertIn("the TPM-sealed secret is not a 32-byte root key", err)
        # The auth value of tpm.auth_value_file, read as rootseald reads it: a wrong one, one others can read.
        with open(cfg) as f:
            text = f.read()
        wrong = self.private_file("wrong-auth", "not-the-auth-value")
        wrong_cfg = self.write("wrong-auth.yaml", text.replace(self.auth_file, wrong).encode())
        _, err = self.cli(["snapshot", "verify", "--config", wrong_cfg], expect=1)
        self.assertIn("sealed file %s): wrong TPM auth value" % self.seal, err)
        self.assertNotIn("not-the-auth-value", err)
        self.assertNotIn(AUTH_VALUE, err)
        os.chmod(wrong, 0o644)
        _, err = self.cli(["snapshot", "verify", "--config", wrong_cfg], expect=1)
        self.assertIn("TPM auth value file %s: refused, readable or writable by group or others" % wrong, err)
        nobody = "swtpm:host=127.0.0.1,port=%d" % free_port()
        _, err = self.cli(["snapshot", "verify", "--config", cfg, "--tcti", nobody], expect=1)
        self.assertIn("TPM root (tcti %s, sealed file %s): no TPM at %s" % (nobody, self.seal, nobody), err)
        _, err = self.cli(["snapshot", "verify", "--config", cfg, "--tpm", "--module", "/usr/lib/softhsm/libsofthsm2.so",
                           "--token", "x"], expect=1)
        self.assertIn("a TPM root (--tpm, --tcti, --sealed-file) and a PKCS#11 token", err)
        _, err = self.cli(["snapshot", "verify", "--file", self.snapshot, "--config",
                           os.path.join(self.dir, "absent.yaml")], expect=1)
        self.assertIn("no root to check against", err)

    def test_zz_a_changed_pcr_is_refused_with_the_reason(self):
        """Last (zz): PCR 7 extended; the swtpm is rebooted after (PCRs back to their reset values)."""
        try:
            tpm_tool("extend", self.sw.tcti, "7")
            _, err = self.cli(["snapshot", "verify", "--config", self.a.config], expect=1)
            self.assertIn("TPM policy check failed: PCR values changed since sealing", err)
        finally:
            self.sw.reboot()
        out, _ = self.cli(["snapshot", "verify", "--config", self.a.config])
        self.good_report(out)


if __name__ == "__main__":
    unittest.main()
