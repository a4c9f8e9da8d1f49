"""SIGKILL campaigns against rootseald's audit log (docs/operations.md, "Audit
log: crashes and full disks"), shared by tests/integration/test_audit_crash.py
(bounded, under ctest) and bench/audit_crash.py (1,000 kills, figures).

One dev-mode state folder for the whole campaign. Each round:
  1. rootseald starts (every start must succeed) and becomes healthy;
  2. the audit log it recovered is rotated (rename + SIGHUP) and the rotated
     file is checked: `rootseal audit verify` links it to the file before it
     (recovery lines included, damaged files beside it checked), every request
     the previous round's clients saw answered has its line with the status
     they saw, no request id is audited twice, and no round has more audited
     encrypt lines than requests sent;
  3. N clients (threads, keep-alive) encrypt until rootseald is SIGKILLed at a
     random moment (or, in some rounds, during its start-up instead).
"""
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time

from rootseal_testlib import ROOTSEALD, Daemon, wait_until

ROOTSEAL_CLI = os.environ.get("ROOTSEAL_CLI", "")


class Client(threading.Thread):
    """Encrypts until the connection fails; records what it was answered."""

    def __init__(self, daemon, token, stop):
        super().__init__(daemon=True)
        self.d, self.token, self.stop = daemon, token, stop
        self.answered = {}  # request_id -> status
        self.sent = 0

    def run(self):
        body = json.dumps({"plaintext": "Y3Jhc2g="})
        headers = {"X-Vault-Token": self.token, "Content-Type": "application/json"}
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.d.host, self.d.port, timeout=10)
                self.sent += 1
                conn.request("PUT", "/v1/transit/encrypt/crash", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                doc = json.loads(data) if data else {}
                if "request_id" in doc:
                    self.answered[doc["request_id"]] = resp.status
                elif resp.status == 200:
                    raise AssertionError("a 200 without a request_id: %r" % data)
            except (OSError, http.client.HTTPException, ValueError):
                return  # killed: whatever was not answered may or may not have a line
        if conn is not None:
            conn.close()


def audit_lines(path):
    with open(path, "rb") as f:
        return [json.loads(l) for l in f.read().splitlines()]


class Campaign:
    def __init__(self, state_dir, startup_kill_every=5, load_s=(0.05, 0.4), seed=None):
        if not ROOTSEAL_CLI or not ROOTSEALD:
            raise AssertionError("ROOTSEALD and ROOTSEAL_CLI must be set")
        self.state = state_dir
        self.audit = os.path.join(state_dir, "audit.log")
        self.rng = random.Random(seed)
        self.startup_kill_every = startup_kill_every
        self.load_s = load_s
        self.rounds = 0
        self.kills = 0
        self.startup_kills = 0
        self.rotated = []          # rotated audit files, oldest first
        self.previous_last = None  # sha256 of the last line of the last rotated file
        self.pending = {}          # request_id -> status answered, not yet found in a rotated file
        self.sent_since_check = 0
        self.acknowledged = 0
        self.audited = 0
        self.recoveries = 0
        self.damaged_bytes = 0
        self.seen_ids = set()
        self.start_s = []

    def _start(self):
        t0 = time.monotonic()
        d = Daemon(self.state)  # raises if rootseald does not come up
        try:
            d.wait_health(200)
        except AssertionError:
            d.proc.kill()
            d.proc.wait()
            d.stop()
            raise
        self.start_s.append(time.monotonic() - t0)
        return d

    def _rotate_and_check(self, d):
        """Rotates the audit log rootseald has open and checks the rotated file."""
        rotated = "%s.%06d" % (self.audit, len(self.rotated))
        os.rename(self.audit, rotated)
        d.proc.send_signal(signal.SIGHUP)
        # The reopen line is the new file's first line: written once the reopen is done.
        wait_until(d.proc, d.stderr, lambda: os.path.exists(self.audit) and os.path.getsize(self.audit) > 0,
                   "the reopened audit log", timeout=30)
        args = [ROOTSEAL_CLI, "audit", "verify"] + ([self.rotated[-1]] if self.rotated else []) + [rotated]
        r = subprocess.run(args, capture_output=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("audit verify failed after round %d: %s" % (self.rounds, (r.stdout + r.stderr).decode()))
        self.rotated.append(rotated)
        lines = audit_lines(rotated)
        encrypt = 0
        for l in lines:
            op = l.get("operation")
            if op == "audit_recovery":
                self.recoveries += 1
                self.damaged_bytes += l["damaged_bytes"]
                # A kill can cut the last write short; it never leaves a hole
                # (NUL bytes: a line written after one that was not).
                with open(os.path.join(self.state, l["damaged_file"]), "rb") as f:
                    if b"\0" in f.read():
                        raise AssertionError("a hole in the audit log (set aside in %s)" % l["damaged_file"])
                continue
            if op in ("audit_reopen",):
                continue
            rid = l["request_id"]
            if rid in self.seen_ids:
                raise AssertionError("request %s audited twice" % rid)
            self.seen_ids.add(rid)
            encrypt += 1 if op == "encrypt" else 0
            if rid in self.pending:
                if self.pending.pop(rid) != l["status"]:
                    raise AssertionError("request %s: audited status %s is not the one answered" % (rid, l["status"]))
        if self.pending:
            raise AssertionError("%d answered requests without an audit line after round %d, e.g. %s"
                                 % (len(self.pending), self.rounds, sorted(self.pending)[:3]))
        if encrypt > self.sent_since_check:
            raise AssertionError("%d audited requests but only %d sent" % (encrypt, self.sent_since_check))
        self.audited += encrypt
        self.sent_since_check = 0

    def _startup_kill(self):
        """SIGKILL while rootseald starts (opening its files, recovering the audit log)."""
        proc = subprocess.Popen([ROOTSEALD, "--dev", "--dev-state-dir", self.state,
                                 "--dev-listen-address", "127.0.0.1:0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(self.rng.uniform(0.0, 0.15))  # the kill moment, not a wait for anything
        proc.kill()
        proc.wait()
        self.startup_kills += 1

    def round(self, clients):
        self.rounds += 1
        d = self._start()
        try:
            if self.rounds == 1:
                status, _, body = d.json("POST", "/v1/transit/keys/crash", headers={"X-Vault-Token": d.token})
                if status not in (200, 204):
                    raise AssertionError("cannot create the key: %s %r" % (status, body))
            self._rotate_and_check(d)
            if self.startup_kill_every and self.rounds % self.startup_kill_every == 0:
                d.proc.kill()
                d.proc.wait()
                self._startup_kill()
                return
            stop = threading.Event()
            cs = [Client(d, d.token, stop) for _ in range(clients)]
            for c in cs:
                c.start()
            # Kill at a random moment once the clients are being answered.
            wait_until(d.proc, d.stderr, lambda: sum(len(c.answered) for c in cs) >= clients, "first answers")
            time.sleep(self.rng.uniform(*self.load_s))  # the kill moment, not a wait for anything
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
            self.kills += 1
            stop.set()
            for c in cs:
                c.join(timeout=30)
                if c.is_alive():
                    raise AssertionError("a client did not stop")
                for rid, status in c.answered.items():
                    self.pending[rid] = status
                    self.acknowledged += 1
                self.sent_since_check += c.sent
        finally:
            if d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
            d.stop()
            shutil.rmtree(os.path.dirname(d.stderr_path), ignore_errors=True)

    def finish(self):
        """A last start: its recovery and every answered request are checked."""
        d = self._start()
        try:
            self._rotate_and_check(d)
        finally:
            d.stop()
            shutil.rmtree(os.path.dirname(d.stderr_path), ignore_errors=True)
        damaged = [f for f in os.listdir(self.state) if ".damaged-" in f]
        return {
            "rounds": self.rounds,
            "kills_under_load": self.kills,
            "kills_during_startup": self.startup_kills,
            "starts": len(self.start_s),
            "start_s_max": max(self.start_s),
            "acknowledged": self.acknowledged,
            "audited_requests": self.audited,
            "recoveries": self.recoveries,
            "damaged_files": len(damaged),
            "damaged_bytes": self.damaged_bytes,
            "rotated_files_verified": len(self.rotated),
        }
