"""The audit log on a file system that fills up: rootseald's whole state
folder on a small tmpfs, mounted by this test in a private mount namespace
(it re-runs itself under `unshare -m`: needs root, as make test runs).

While the file system is full: no torn line (the file always ends with a
complete line and verifies), Transit requests fail with 503 and Vault's error
shape, rootseald says so at once (an error log line, rootseal_audit_healthy 0,
rootseal_audit_write_failures_total > 0), and it restarts (SIGKILL, SIGTERM)
without a person. Once space is freed the next write succeeds with no
restart or SIGHUP. Across the whole sequence every request answered 200 has
its line and no request answered 503 has one."""
import errno
import json
import os
import re
import subprocess
import sys
import time
import unittest

from rootseal_testlib import Daemon, rmtree, tempdir, wait_until

ROOTSEAL_CLI = os.environ.get("ROOTSEAL_CLI", "")
INSIDE = "ROOTSEAL_AUDIT_FULL_DISK_NS"


def in_private_mount_namespace():
    """Re-runs this file in a private mount namespace (once)."""
    if os.environ.get(INSIDE):
        return
    if os.geteuid() != 0:
        raise SystemExit("test_audit_full_disk.py must run as root (it mounts a tmpfs in a private mount namespace)")
    env = dict(os.environ, **{INSIDE: "1"})
    os.execvpe("unshare", ["unshare", "--mount", "--propagation", "private", sys.executable, "-B",
                           os.path.abspath(__file__)] + sys.argv[1:], env)


class FullDiskTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(ROOTSEAL_CLI, "ROOTSEAL_CLI must be set (run through ctest)")
        self.dir = tempdir("rootseal-full-disk-")
        self.mnt = os.path.join(self.dir, "mnt")
        os.mkdir(self.mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", self.mnt], check=True)
        self.state = os.path.join(self.mnt, "state")
        self.audit = os.path.join(self.state, "audit.log")
        self.filler = os.path.join(self.mnt, "filler")
        self.answered = {}   # request_id -> 200
        self.refused = 0     # requests answered 503
        self.d = None

    def tearDown(self):
        if self.d is not None and self.d.proc.poll() is None:
            self.d.proc.kill()
            self.d.proc.wait()
        subprocess.run(["umount", self.mnt], check=False)
        rmtree(self.dir)

    def start(self):
        self.d = Daemon(self.state)
        health = self.d.wait_health(200)
        # cluster-id is written once, whole: the same id at every start, full disk or not.
        if not hasattr(self, "cluster_id"):
            self.cluster_id = health["cluster_id"]
        self.assertEqual(health["cluster_id"], self.cluster_id)
        return self.d

    def encrypt(self):
        status, _, body = self.d.json("PUT", "/v1/transit/encrypt/full", body=json.dumps({"plaintext": "ZnVsbA=="}),
                                      headers={"X-Vault-Token": self.d.token})
        if status == 200:
            self.answered[body["request_id"]] = 200
        elif status == 503:
            self.assertEqual(body, {"errors": ["audit log unavailable"]})
            self.refused += 1
        else:
            self.fail("encrypt answered %s %r" % (status, body))
        return status

    def until_refused(self):
        """Encrypts until refused with 503 and rootseal_audit_healthy 0. The
        last page of the audit log may still have room for a line shorter
        than the one that failed (lines differ by a few bytes): such a line
        is written and answered 200, and the next failure comes soon after."""
        for _ in range(500):
            if self.encrypt() == 503 and self.metric("rootseal_audit_healthy") == 0:
                return
        self.fail("never refused on a full file system")

    def metric(self, name):
        status, _, data = self.d.request("GET", "/v1/sys/metrics?format=prometheus")
        self.assertEqual(status, 200)
        m = re.search(rb"^%s (\S+)$" % name.encode(), data, re.M)
        self.assertIsNotNone(m, name)
        return float(m.group(1))

    def fill(self):
        """Fills the file system: writes until ENOSPC, in smaller and smaller pieces."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\xa5" * size)
                except OSError as e:
                    self.assertEqual(e.errno, errno.ENOSPC)
        finally:
            os.close(fd)

    def check_file(self):
        """No torn line; the chain verifies; 200s audited, nothing else."""
        with open(self.audit, "rb") as f:
            raw = f.read()
        self.assertTrue(raw.endswith(b"\n"), "the audit log ends in a torn line")
        r = subprocess.run([ROOTSEAL_CLI, "audit", "verify", self.audit], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = [json.loads(l) for l in raw.splitlines()]
        audited = {l["request_id"]: l["status"] for l in lines if l.get("operation") == "encrypt"}
        self.assertEqual(audited, self.answered, "audit lines are exactly the requests answered 200")
        self.assertEqual([l for l in lines if l.get("operation") == "audit_recovery"], [],
                         "nothing torn, so nothing to recover")

    def test_full_disk_503_then_recovers_by_itself(self):
        self.start()
        status, _, _ = self.d.json("POST", "/v1/transit/keys/full", headers={"X-Vault-Token": self.d.token})
        self.assertIn(status, (200, 204))
        for _ in range(20):
            self.assertEqual(self.encrypt(), 200)
        self.assertEqual(self.metric("rootseal_audit_healthy"), 1)

        self.fill()
        self.until_refused()
        self.assertEqual(self.metric("rootseal_audit_healthy"), 0)
        self.assertGreater(self.metric("rootseal_audit_write_failures_total"), 0)
        wait_until(self.d.proc, self.d.stderr, lambda: 'level=error msg="audit log cannot be written' in self.d.stderr(),
                   "the error log line")
        self.check_file()

        # Restart while full: SIGKILL, then SIGTERM; both starts need no one.
        self.d.proc.kill()
        self.d.proc.wait()
        self.d.stop()
        self.check_file()
        self.start()
        self.until_refused()
        self.assertEqual(self.d.stop(), 0)
        self.check_file()
        self.start()
        self.until_refused()
        self.check_file()

        # A key written to the state store while full: refused (503: its
        # audit line cannot be written either) and the store stays usable.
        status, _, body = self.d.json("POST", "/v1/transit/keys/while-full", headers={"X-Vault-Token": self.d.token})
        self.assertEqual(status, 503, body)

        # Space returns: the next write after the back-off succeeds, no restart, no SIGHUP.
        os.unlink(self.filler)
        wait_until(self.d.proc, self.d.stderr, lambda: self.encrypt() == 200, "a request served again")
        self.assertEqual(self.metric("rootseal_audit_healthy"), 1)
        self.assertIn('msg="audit log writable again', self.d.stderr())
        for _ in range(20):
            self.assertEqual(self.encrypt(), 200)
        status, _, body = self.d.json("POST", "/v1/transit/keys/after-full", headers={"X-Vault-Token": self.d.token})
        self.assertIn(status, (200, 204), body)
        status, _, body = self.d.json("POST", "/v1/transit/keys/full/rotate", headers={"X-Vault-Token": self.d.token})
        self.assertIn(status, (200, 204), body)
        self.check_file()
        self.assertEqual(self.d.stop(), 0)
        self.check_file()
        self.start()
        self.assertEqual(self.encrypt(), 200)
        status, _, body = self.d.json("GET", "/v1/transit/keys/full", headers={"X-Vault-Token": self.d.token})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["latest_version"], 2, "the rotation made after the full disk was kept")
        self.assertEqual(self.d.stop(), 0)
        self.check_file()
        print("%d requests answered 200, %d answered 503" % (len(self.answered), self.refused))


if __name__ == "__main__":
    in_private_mount_namespace()
    unittest.main(verbosity=2)
