"""SIGTERM under load: concurrent clients encrypt through keep-alive
connections with the audit log on; SIGTERM arrives mid-run. Every request
answered 200 has its audit line (matched by request_id), the log verifies
with `rootseal audit verify`, ends with a complete line, and reopens cleanly
at the next start; the daemon exits 0 within its drain bound
(api.request_timeout + 5 s)."""
import http.client
import json
import os
import signal
import subprocess
import threading
import time
import unittest

from rootseal_testlib import Daemon, rmtree, tempdir, wait_until

ROOTSEAL_CLI = os.environ.get("ROOTSEAL_CLI", "")
CLIENTS = 8
DRAIN_BOUND_S = 30 + 5  # dev mode's api.request_timeout (30 s) + 5 s


class Client(threading.Thread):
    def __init__(self, daemon, token, stop):
        super().__init__(daemon=True)
        self.d, self.token, self.stop = daemon, token, stop
        self.ok = []          # (request_id, monotonic time of the answer)
        self.other = []       # non-200 statuses
        self.ended_by = None  # the error that ended the run

    def run(self):
        conn = None
        body = json.dumps({"plaintext": "bG9hZA=="})
        headers = {"X-Vault-Token": self.token, "Content-Type": "application/json"}
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.d.host, self.d.port, timeout=30)
                conn.request("PUT", "/v1/transit/encrypt/load", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 200:
                    self.ok.append((json.loads(data)["request_id"], time.monotonic()))
                else:
                    self.other.append(resp.status)
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                # Refused, reset or closed: the daemon is going away. A new
                # connection is tried until it is refused.
                self.ended_by = repr(e)
                if conn is not None:
                    conn.close()
                    conn = None
                if isinstance(e, ConnectionRefusedError):
                    return
                time.sleep(0.01)
        if conn is not None:
            conn.close()


class DrainTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(ROOTSEAL_CLI, "ROOTSEAL_CLI must be set (run through ctest)")
        self.dir = tempdir("rootseal-drain-")
        self.state = os.path.join(self.dir, "state")

    def tearDown(self):
        rmtree(self.dir)

    def test_sigterm_under_load_loses_no_acknowledged_request(self):
        d = Daemon(self.state)
        d.wait_health(200)
        status, _, _ = d.json("POST", "/v1/transit/keys/load", headers={"X-Vault-Token": d.token})
        self.assertIn(status, (200, 204))

        stop = threading.Event()
        clients = [Client(d, d.token, stop) for _ in range(CLIENTS)]
        for c in clients:
            c.start()
        try:
            wait_until(d.proc, d.stderr, lambda: sum(len(c.ok) for c in clients) >= 1000, "1000 answered requests")
            signalled = time.monotonic()
            d.proc.send_signal(signal.SIGTERM)
            rc = d.proc.wait(timeout=DRAIN_BOUND_S + 5)
            exited = time.monotonic()
        finally:
            stop.set()
            for c in clients:
                c.join(timeout=60)
        self.assertEqual(rc, 0, d.stderr())
        self.assertLess(exited - signalled, DRAIN_BOUND_S)
        for c in clients:
            self.assertFalse(c.is_alive())
            self.assertEqual(c.other, [], "only 200s or a closed connection, never an error status")

        acknowledged = [rid for c in clients for rid, _ in c.ok]
        after_signal = sum(1 for c in clients for _, t in c.ok if t >= signalled)
        self.assertEqual(len(set(acknowledged)), len(acknowledged))

        audit = os.path.join(self.state, "audit.log")
        with open(audit, "rb") as f:
            raw = f.read()
        self.assertTrue(raw.endswith(b"\n"), "the audit log ends in a torn line")
        lines = [json.loads(l) for l in raw.decode().splitlines()]
        audited_ok = {l["request_id"] for l in lines if l["status"] == 200 and l.get("operation") == "encrypt"}
        missing = set(acknowledged) - audited_ok
        self.assertEqual(missing, set(), "acknowledged requests without an audit line")
        r = subprocess.run([ROOTSEAL_CLI, "audit", "verify", audit], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(b": %d lines, chain intact" % len(lines), r.stdout)
        log = d.stderr()
        self.assertIn('msg="stopping"', log)
        self.assertIn('msg="stopped"', log)
        self.assertNotIn("drain deadline passed", log)
        d.stop()
        print("%d requests acknowledged, %d of them after SIGTERM; %d audit lines; exit after %.2fs"
              % (len(acknowledged), after_signal, len(lines), exited - signalled))

        # The next start continues the chain from the last line (it refuses a torn one).
        d2 = Daemon(self.state)
        try:
            d2.wait_health(200)
            status, _, body = d2.json("PUT", "/v1/transit/encrypt/load", body=json.dumps({"plaintext": "YQ=="}),
                                      headers={"X-Vault-Token": d2.token})
            self.assertEqual(status, 200, body)
        finally:
            self.assertEqual(d2.stop(), 0)
        r = subprocess.run([ROOTSEAL_CLI, "audit", "verify", audit], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
