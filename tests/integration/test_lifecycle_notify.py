"""rootseald and systemd's notification protocol, without systemd: the test
binds the datagram socket itself and hands it over in NOTIFY_SOCKET (with
WATCHDOG_USEC/WATCHDOG_PID), exactly as PID 1 would.

1. The messages come in the order a Type=notify unit needs: READY=1 with a
   STATUS= saying sealed/unsealed, WATCHDOG=1 at half the watchdog timeout,
   RELOADING=1 with MONOTONIC_USEC on SIGHUP then READY=1, STOPPING=1 on
   SIGTERM, then exit 0.
2. The pings come from the I/O loop itself: with one I/O thread, the test
   stalls that thread on a real, external condition (its stderr is a pipe the
   test fills and stops reading, so the next log line blocks in write(2), as
   it would behind a stuck journald) and the pings stop; when the pipe is
   drained they resume. A ping from an independent timer thread would go on
   regardless, and the test would fail.
"""
import os
import select
import signal
import socket
import subprocess
import threading
import time
import unittest

from rootseal_testlib import ROOTSEALD, ConfigDaemon, rmtree, write_private


class Notifications:
    """The receiving end of NOTIFY_SOCKET: every datagram with its arrival time."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []  # (monotonic seconds, {key: value})

    def close(self):
        self.sock.close()

    def poll(self, timeout):
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return None
        data = self.sock.recv(4096)
        fields = {}
        for line in data.decode().split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        entry = (time.monotonic(), fields)
        self.messages.append(entry)
        return entry

    def wait_for(self, predicate, what, proc, log, timeout=30):
        """Receives until a message satisfies predicate (bounded); returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.poll(min(0.2, deadline - time.monotonic()))
            if entry and predicate(entry[1]):
                return entry
            if entry is None and proc.poll() is not None:
                raise AssertionError("rootseald exited %s before %s\n%s" % (proc.returncode, what, log()))
        raise AssertionError("no %s within %ss; got %r\n%s" % (what, timeout, self.kinds(), log()))

    def collect(self, seconds):
        """Everything received during the next `seconds`."""
        got = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            entry = self.poll(deadline - time.monotonic())
            if entry:
                got.append(entry)
        return got

    def kinds(self):
        return [kind(m) for _, m in self.messages]


def kind(fields):
    for k in ("READY", "RELOADING", "STOPPING", "WATCHDOG"):
        if fields.get(k) == "1":
            return k
    return "STATUS" if "STATUS" in fields else "?"


class StderrPipe:
    """rootseald's stderr as a pipe drained by a thread the test can pause."""

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        self.text = b""
        self.lock = threading.Lock()  # held while draining; pause() takes it
        self.done = False
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self):
        while not self.done:
            with self.lock:
                ready, _, _ = select.select([self.read_fd], [], [], 0.05)
                if ready:
                    chunk = os.read(self.read_fd, 65536)
                    if not chunk:
                        return
                    self.text += chunk
            time.sleep(0.001)

    def pause_and_fill(self):
        """Stops draining and fills the pipe, so the daemon's next write(2) to
        stderr blocks. Our filler writes go through a second, non-blocking open
        file description of the same pipe; the daemon's stays blocking."""
        self.lock.acquire()
        filler = os.open("/proc/self/fd/%d" % self.write_fd, os.O_WRONLY | os.O_NONBLOCK)
        try:
            while True:
                try:
                    os.write(filler, b"#" * 4096)
                except BlockingIOError:
                    try:
                        os.write(filler, b"#")  # the last partial page
                    except BlockingIOError:
                        break
        finally:
            os.close(filler)

    def resume(self):
        self.lock.release()

    def log(self):
        return self.text.decode(errors="replace")

    def close(self):
        self.done = True
        self.thread.join(timeout=5)
        os.close(self.read_fd)


class NotifyTest(unittest.TestCase):
    def setUp(self):
        self.d = ConfigDaemon("rootseal-notify-", "notify", pin="2222")
        self.dir = self.d.dir
        self.env = self.d.env
        self.port = self.d.port
        self.config = self.d.config
        # One I/O thread: the thread that pings is the thread that serves.
        self.d.write_config(pin_file=write_private(self.d.p("pin"), "2222"), rest="io_threads: 1\n")
        self.notify = Notifications(os.path.join(self.dir, "notify.sock"))
        self.stderr = StderrPipe()
        self.proc = None

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
        self.stderr.close()
        rmtree(self.dir)

    def start(self, watchdog_usec):
        env = dict(self.env, NOTIFY_SOCKET=self.notify.path, WATCHDOG_USEC=str(watchdog_usec))
        # WATCHDOG_PID must be the daemon's own pid, as systemd sets it: the
        # shell exports its pid, then execs rootseald in its place.
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@"', ROOTSEALD, "--config",
             self.config, "--allow-root"],
            stdout=subprocess.DEVNULL, stderr=self.stderr.write_fd, env=env)

    def test_notify_order_and_watchdog_interval(self):
        self.start(watchdog_usec=3_000_000)  # pings every 1.5 s
        _, ready = self.notify.wait_for(lambda m: m.get("READY") == "1", "READY=1", self.proc, self.stderr.log)
        self.assertIn("STATUS", ready)
        self.assertRegex(ready["STATUS"], r"\b(sealed|unsealed)\b")
        # Nothing but pings before READY=1.
        self.assertEqual(set(self.notify.kinds()[:-1]) - {"WATCHDOG"}, set(), self.notify.kinds())
        self.notify.wait_for(lambda m: m.get("STATUS") == "unsealed", "STATUS=unsealed", self.proc, self.stderr.log)

        # Pings at half of WATCHDOG_USEC: not much sooner than that (the lower
        # bound allows for our own receive jitter; pings at a quarter would
        # fail it), never as late as the timeout (systemd would have killed us).
        pings = [t for t, m in self.notify.messages if m.get("WATCHDOG") == "1"]
        while len(pings) < 4:
            t, _ = self.notify.wait_for(lambda m: m.get("WATCHDOG") == "1", "WATCHDOG=1", self.proc,
                                        self.stderr.log, timeout=5)
            pings.append(t)
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        for gap in gaps:
            self.assertGreater(gap, 1.1, gaps)
            self.assertLess(gap, 3.0, gaps)

        # SIGHUP: RELOADING=1 with the monotonic time of the reload, then READY=1.
        before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.proc.send_signal(signal.SIGHUP)
        _, reloading = self.notify.wait_for(lambda m: kind(m) in ("RELOADING", "READY"), "RELOADING=1", self.proc,
                                            self.stderr.log)
        self.assertEqual(reloading.get("RELOADING"), "1", reloading)
        self.assertIn("MONOTONIC_USEC", reloading)
        after_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.assertTrue(before_us <= int(reloading["MONOTONIC_USEC"]) <= after_us, (before_us, reloading, after_us))
        _, ready = self.notify.wait_for(lambda m: kind(m) in ("READY", "STOPPING", "RELOADING"), "READY=1 again",
                                        self.proc, self.stderr.log)
        self.assertEqual(ready.get("READY"), "1", ready)
        self.assertEqual(ready.get("STATUS"), "unsealed", ready)
        # Still pinging after the reload.
        self.notify.wait_for(lambda m: m.get("WATCHDOG") == "1", "a ping after the reload", self.proc,
                             self.stderr.log, timeout=5)

        # SIGTERM: STOPPING=1, then exit 0; nothing after STOPPING but the exit.
        self.proc.send_signal(signal.SIGTERM)
        self.notify.wait_for(lambda m: m.get("STOPPING") == "1", "STOPPING=1", self.proc, self.stderr.log)
        self.assertEqual(self.proc.wait(timeout=30), 0, self.stderr.log())
        self.notify.collect(0.2)
        kinds = self.notify.kinds()
        self.assertEqual(kinds[-1], "STOPPING", kinds)
        # The whole conversation, pings and status updates folded away.
        order = [k for k in kinds if k in ("READY", "RELOADING", "STOPPING")]
        self.assertEqual(order, ["READY", "RELOADING", "READY", "STOPPING"], kinds)

    def test_blocked_loop_stops_the_pings(self):
        self.start(watchdog_usec=1_000_000)  # pings every 0.5 s
        self.notify.wait_for(lambda m: m.get("STATUS") == "unsealed", "STATUS=unsealed", self.proc, self.stderr.log)
        for _ in range(3):
            self.notify.wait_for(lambda m: m.get("WATCHDOG") == "1", "WATCHDOG=1", self.proc, self.stderr.log,
                                 timeout=5)

        # Stall the I/O thread: stderr full, then SIGHUP, whose handler runs on
        # the I/O loop and logs "signal received" first.
        self.stderr.pause_and_fill()
        try:
            self.proc.send_signal(signal.SIGHUP)
            stalled = self.notify.collect(3.0)  # six intervals
            self.assertIsNone(self.proc.poll())
            self.assertEqual([kind(m) for _, m in stalled if kind(m) == "WATCHDOG"], [],
                             "pings went on while the I/O loop was blocked")
        finally:
            self.stderr.resume()

        # Drained: the blocked write returns, the reload runs, the pings resume.
        self.notify.wait_for(lambda m: m.get("RELOADING") == "1", "RELOADING=1 once unblocked", self.proc,
                             self.stderr.log, timeout=10)
        self.notify.wait_for(lambda m: m.get("READY") == "1", "READY=1 after the reload", self.proc,
                             self.stderr.log, timeout=10)
        self.notify.wait_for(lambda m: m.get("WATCHDOG") == "1", "pings again", self.proc, self.stderr.log,
                             timeout=5)
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=30), 0, self.stderr.log())
        self.assertIn("signal received", self.stderr.log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
