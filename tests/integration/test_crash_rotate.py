"""Crash safety: SIGKILL at random points while rotating keys in a loop.

After every kill, a fresh process reopens the SQLite store and the SoftHSM2
token and proves that every rotation that was acknowledged is present and
every ciphertext produced before the kill still decrypts.
"""
import os
import random
import select
import signal
import subprocess
import time
import unittest

from rootseal_testlib import make_softhsm, rmtree, tempdir

CRASH_ROTATOR = os.environ["CRASH_ROTATOR"]
ROUNDS = int(os.environ.get("ROOTSEAL_CRASH_ROUNDS", "20"))


class CrashRotateTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempdir("rootseal-crash-")
        self.env = make_softhsm(os.path.join(self.dir, "hsm"), "crash")
        self.log_path = os.path.join(self.dir, "acks.log")

    def tearDown(self):
        rmtree(self.dir)

    def run_until_killed(self, rng):
        """Starts a rotator, lets it acknowledge a random number of rotations, then
        SIGKILLs it at a random moment; appends every complete line it printed."""
        proc = subprocess.Popen([CRASH_ROTATOR, "run", self.dir, "k"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env)
        want_acks = rng.randint(1, 40)
        acks = 0
        buf = b""
        lines = []
        deadline = time.monotonic() + 120
        fd = proc.stdout.fileno()
        while acks < want_acks and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 5)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            *complete, buf = buf.split(b"\n")
            for line in complete:
                lines.append(line)
                if line.startswith(b"ACK"):
                    acks += 1
        # Kill somewhere inside the next rotation: between 0 and ~3 ms later.
        time.sleep(rng.random() * 0.003)
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
        buf += rest
        *complete, _partial = buf.split(b"\n")
        lines.extend(complete)
        self.assertEqual(proc.returncode, -signal.SIGKILL, err.decode(errors="replace"))
        self.assertGreater(acks, 0, err.decode(errors="replace"))
        with open(self.log_path, "ab") as f:
            for line in lines:
                f.write(line + b"\n")
        return acks

    def verify(self):
        r = subprocess.run([CRASH_ROTATOR, "verify", self.dir, "k", self.log_path], capture_output=True,
                           env=self.env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return r.stdout.decode().strip()

    def test_kill_during_rotation_loses_nothing_acknowledged(self):
        seed = int(os.environ.get("ROOTSEAL_CRASH_SEED", str(random.randrange(1 << 30))))
        print("ROOTSEAL_CRASH_SEED=%d" % seed)
        rng = random.Random(seed)
        total = 0
        for _ in range(ROUNDS):
            total += self.run_until_killed(rng)
            summary = self.verify()
            self.assertTrue(summary.startswith("OK"), summary)
        print("crash rounds=%d acknowledged rotations=%d; last: %s" % (ROUNDS, total, summary))


if __name__ == "__main__":
    unittest.main(verbosity=2)
