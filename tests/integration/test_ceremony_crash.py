"""Crash safety of `rootseal ceremony rotate-root` with 1,000 wrapped keys.

The real binary is SIGKILLed (1) at every step boundary (ROOTSEAL_TEST_CRASH_AT
makes it kill itself there) and (2) at random moments. After every kill, a
fresh process (ceremony_store_tool) must find a root key in the token whose
keyring unseals the store and decrypts samples made before the rotation, and
that key must be the old or the new root - never neither. Then
`rotate-root --resume` finishes the rotation and the store opens under the
daemon's label with the new root (or, if the rotation was never recorded, the
old one).

SoftHSM2 rewrites its token.object in place at every login; a SIGKILL in
the middle can leave it cut short, and then the whole token is gone ("PKCS#11
token 'crash' not found", seen once in CI-like runs). That is SoftHSM2's file store, not rootseal (a real
HSM's token metadata is not a file the client process writes), so a torn
token.object is put back from the copy taken after the last good check and
counted in the output; the keys themselves are separate files and never
restored.
"""
import glob
import json
import os
import random
import signal
import subprocess
import time
import unittest

from rootseal_testlib import make_softhsm, rmtree, tempdir

ROOTSEAL = os.environ["ROOTSEAL_CLI"]
STORE_TOOL = os.environ["CEREMONY_STORE_TOOL"]
MODULE = os.environ.get("SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
# The fault-injecting module in front of SoftHSM2 (tests/doubles/pkcs11_shim).
SHIM = os.environ["ROOTSEAL_PKCS11_SHIM"]
ROUNDS = int(os.environ.get("ROOTSEAL_CEREMONY_CRASH_ROUNDS", "25"))
KEYS = 1000
LABEL = "rootseal-root"
POINTS = ["root-key-held", "shares-split", "shares-written", "new-key-imported", "rotation-recorded",
          "rewrap-before-commit", "rewrap-committed", "old-key-copied", "old-key-retired", "new-key-copied",
          "new-key-promoted"]
# A rotation to aes-cbc-pad-hmac passes these too (its HMAC key is imported
# first, promoted first and its temporary removed last) ...
TO_CBC_POINTS = POINTS[:4] + ["hmac-key-imported"] + POINTS[4:10] + ["new-hmac-copied"] + POINTS[10:] + \
    ["new-hmac-promoted"]
# ... and one from it these (the old HMAC key retired after its AES key).
FROM_CBC_POINTS = POINTS[:10] + ["old-hmac-copied", "old-hmac-retired"] + POINTS[10:]


class CeremonyCrashTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempdir("rootseal-ceremony-crash-")
        self.env = make_softhsm(os.path.join(self.dir, "hsm"), "crash")
        self.env["SOFTHSM2_MODULE"] = MODULE
        self.keys = os.path.join(self.dir, "keys")
        os.makedirs(self.keys)
        self.custodians = []
        for name, algo in (("alice", ["-algorithm", "X25519"]), ("bob", ["-algorithm", "X25519"]),
                           ("carol", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])):
            key = os.path.join(self.keys, name + ".key")
            pub = os.path.join(self.keys, name + ".pub")
            subprocess.run(["openssl", "genpkey"] + algo + ["-out", key], check=True, capture_output=True)
            subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
            self.custodians += ["--custodian", "%s=%s" % (name, pub)]
        self.transcript = os.path.join(self.dir, "transcript")
        self.shares = os.path.join(self.dir, "shares")
        self.db = os.path.join(self.dir, "rootseal.db")
        self.samples = os.path.join(self.dir, "samples.txt")
        self.run_cli(["ceremony", "init", "--module", MODULE, "--token", "crash", "--threshold", "2",
                      "--out", self.shares, "--transcript-dir", self.transcript] + self.custodians)
        r = subprocess.run([STORE_TOOL, "populate", self.db, "crash", LABEL, str(KEYS), self.samples],
                           capture_output=True, env=self.env, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.current = self.opens([LABEL])[1]
        self.torn = 0
        self.keep_token_object()

    def token_object(self):
        found = glob.glob(os.path.join(self.dir, "hsm", "tokens", "*", "token.object"))
        self.assertEqual(len(found), 1, found)
        return found[0]

    def keep_token_object(self):
        with open(self.token_object(), "rb") as f:
            self.good_token_object = f.read()

    def repair_torn_token_object(self):
        """A token.object shorter or longer than the last good one was cut mid-rewrite (see the module doc)."""
        path = self.token_object()
        with open(path, "rb") as f:
            data = f.read()
        if len(data) != len(self.good_token_object):
            with open(path, "wb") as f:
                f.write(self.good_token_object)
            self.torn += 1

    def tearDown(self):
        rmtree(self.dir)

    def start_cli(self, args, extra_env=None):
        r_fd, w_fd = os.pipe()
        os.write(w_fd, b"1234\n")
        os.close(w_fd)
        env = dict(self.env, **(extra_env or {}))
        pin = ["--pin-fd", str(r_fd)] if "--module" in args else []
        proc = subprocess.Popen([ROOTSEAL] + args + pin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, pass_fds=(r_fd,))
        os.close(r_fd)
        return proc

    def run_cli(self, args, extra_env=None, expect=0):
        proc = self.start_cli(args, extra_env)
        out, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, expect, "rootseal %s\n%s%s" % (" ".join(args), out.decode(), err.decode()))
        return out.decode()

    def rotate_args(self, resume=False, mechanism=None, module=MODULE):
        args = ["ceremony", "rotate-root", "--module", module, "--token", "crash", "--store", self.db,
                "--transcript-dir", self.transcript]
        if resume:
            return args + ["--resume"]
        return args + ["--threshold", "2", "--out", self.shares] + self.custodians + \
            (["--mechanism", mechanism] if mechanism else [])

    def opens(self, labels):
        """(label, kcv) of the first key label whose keyring unseals the store and decrypts every sample."""
        r = subprocess.run([STORE_TOOL, "check", self.db, "crash", self.samples] + labels, capture_output=True,
                           env=self.env, timeout=300)
        out = r.stdout.decode().split()
        self.assertEqual(r.returncode, 0, "no root key opens the store: %s %s" % (r.stdout.decode(), r.stderr.decode()))
        self.assertEqual(out[0], "OPENS")
        self.assertEqual(int(out[3]), KEYS)
        self.last_mechanism = out[4]
        return out[1], out[2]

    def entries(self):
        out = []
        for n in sorted(os.listdir(self.transcript)):
            if n.endswith(".json"):
                with open(os.path.join(self.transcript, n)) as f:
                    out.append(json.load(f))
        return out

    def completed_kcv(self):
        """The root the transcript considers current: init, or the last completed rotation."""
        kcv = None
        for e in self.entries():
            if e["kind"] in ("init", "rotate-root-complete") and e["outcome"] == "ok":
                kcv = e["root_key"]["kcv"]
        return kcv

    def pending_kcv(self):
        """The new root's kcv if an unfinished rotation is recorded, else None."""
        entries = self.entries()
        closed = {e["ceremony_id"] for e in entries if e["kind"] in ("rotate-root-complete", "rotate-root-abandoned")}
        for e in reversed(entries):
            if e["kind"] == "rotate-root" and e["outcome"] == "ok" and e["ceremony_id"] not in closed:
                return e["root_key"]["kcv"]
        return None

    def after_kill(self, what):
        """Never neither; then --resume, and the daemon's label opens the store."""
        self.repair_torn_token_object()
        old = self.current
        new = self.pending_kcv()
        done = self.completed_kcv()  # differs from `old` if the rotation finished before the kill
        label, kcv = self.opens([LABEL, LABEL + ".next"])
        self.assertIn(kcv, {old, new, done} - {None}, "%s: the store opens with an unknown root" % what)
        self.run_cli(self.rotate_args(resume=True))
        label, kcv = self.opens([LABEL])
        self.assertEqual(kcv, new or done, what)
        self.current = kcv
        self.keep_token_object()
        return new is not None

    def test_kill_at_every_step_of_rotate_root(self):
        for point in POINTS:
            proc = self.start_cli(self.rotate_args(), {"ROOTSEAL_TEST_CRASH_AT": point})
            out, err = proc.communicate(timeout=300)
            self.assertEqual(proc.returncode, -signal.SIGKILL, "%s: %s%s" % (point, out.decode(), err.decode()))
            self.after_kill(point)
        out = self.run_cli(["ceremony", "audit", "--transcript-dir", self.transcript])
        self.assertIn("chain intact", out)

    def test_kill_at_every_step_of_rotations_between_mechanisms(self):
        """aes-kwp -> aes-cbc-pad-hmac, SIGKILLed at each of its steps (each time
        resumed, then the next rotation is killed at the next step), then back
        aes-cbc-pad-hmac -> aes-kwp at each of its steps."""
        for target, points in (("aes-cbc-pad-hmac", TO_CBC_POINTS), ("aes-kwp", FROM_CBC_POINTS)):
            source = "aes-kwp" if target == "aes-cbc-pad-hmac" else "aes-cbc-pad-hmac"
            for point in points:
                what = "%s -> %s at %s" % (source, target, point)
                self.opens([LABEL])
                self.assertEqual(self.last_mechanism, source, what)
                proc = self.start_cli(self.rotate_args(mechanism=target), {"ROOTSEAL_TEST_CRASH_AT": point})
                out, err = proc.communicate(timeout=300)
                self.assertEqual(proc.returncode, -signal.SIGKILL, "%s: %s%s" % (what, out.decode(), err.decode()))
                recorded = self.after_kill(what)
                self.assertEqual(self.last_mechanism, target if recorded else source, what)
                if recorded:
                    # Back to the source mechanism, undisturbed, for the next step.
                    self.run_cli(self.rotate_args(mechanism=source))
                    self.current = self.opens([LABEL])[1]
                    self.keep_token_object()
            # The direction's last rotation, undisturbed: the next loop starts from `target`.
            self.run_cli(self.rotate_args(mechanism=target))
            self.current = self.opens([LABEL])[1]
            self.assertEqual(self.last_mechanism, target)
            self.keep_token_object()
        out = self.run_cli(["ceremony", "audit", "--transcript-dir", self.transcript])
        self.assertIn("chain intact", out)

    def test_kill_inside_each_key_copy(self):
        """SIGKILL inside C_CopyObject, where SoftHSM2 has stored the copy under
        the source's label but not yet given it the new one: two objects of one
        key share a label (the old root at '<label>' while it is kept under its
        retired label, the new one at '<label>.next' while it is promoted).
        They are one key: a fresh process opens the store with it, and --resume
        finishes. Each copy of three rotations (aes-kwp -> aes-kwp, -> aes-cbc-
        pad-hmac with its HMAC key, and back) is interrupted in turn."""
        self.assertTrue(os.path.exists(SHIM), SHIM)
        killed = 0
        for target in ("aes-kwp", "aes-cbc-pad-hmac", "aes-kwp"):
            self.opens([LABEL])
            source = self.last_mechanism
            for n in range(1, 10):
                what = "rotation to %s, killed in C_CopyObject #%d" % (target, n)
                proc = self.start_cli(self.rotate_args(mechanism=target, module=SHIM),
                                      {"ROOTSEAL_SHIM_KILL_IN_COPY": str(n)})
                out, err = proc.communicate(timeout=300)
                if proc.returncode == 0:
                    break  # fewer than n copies: the rotation ran to its end
                self.assertEqual(proc.returncode, -signal.SIGKILL, "%s: %s%s" % (what, out.decode(), err.decode()))
                killed += 1
                self.after_kill(what)
                self.assertEqual(self.last_mechanism, target, what)
                # Back to where this rotation started, for the next copy.
                self.run_cli(self.rotate_args(mechanism=source))
                self.current = self.opens([LABEL])[1]
                self.keep_token_object()
            else:
                self.fail("rotation to %s: still killed after 9 copies" % target)
            self.current = self.opens([LABEL])[1]
            self.assertEqual(self.last_mechanism, target)
            self.keep_token_object()
        # aes-kwp: old root kept, new root promoted; aes-cbc-pad-hmac adds its
        # HMAC key's promotion, and the way back the old HMAC key's retirement.
        self.assertEqual(killed, 2 + 3 + 3)
        out = self.run_cli(["ceremony", "audit", "--transcript-dir", self.transcript])
        self.assertIn("chain intact", out)

    def test_kill_at_random_moments_of_rotate_root(self):
        seed = int(os.environ.get("ROOTSEAL_CRASH_SEED", str(random.randrange(1 << 30))))
        print("ROOTSEAL_CRASH_SEED=%d" % seed)
        rng = random.Random(seed)
        # One undisturbed rotation sets the time scale.
        t0 = time.monotonic()
        self.run_cli(self.rotate_args())
        duration = time.monotonic() - t0
        self.current = self.opens([LABEL])[1]
        self.keep_token_object()
        completed = recorded = 0
        for _ in range(ROUNDS):
            proc = self.start_cli(self.rotate_args())
            time.sleep(rng.uniform(0, duration * 1.05))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=300)
            if proc.returncode == 0:
                completed += 1
            recorded += self.after_kill("random kill") and 1 or 0
        print("rotation %.2fs; %d rounds: %d finished before the kill, %d interrupted after being recorded; "
              "SoftHSM2 token.object torn and put back: %d" % (duration, ROUNDS, completed, recorded, self.torn))
        out = self.run_cli(["ceremony", "audit", "--transcript-dir", self.transcript])
        self.assertIn("chain intact", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
