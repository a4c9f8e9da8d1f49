"""Helpers for rootseal's integration tests: start the real rootseald, talk HTTP."""
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOTSEALD = os.environ.get("ROOTSEALD", "")
SOFTHSM2_MODULE = os.environ.get("SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so")


class Daemon:
    """A rootseald --dev process with its own state folder."""

    def __init__(self, state_dir, extra_args=(), token_id=None, listen="127.0.0.1:0"):
        self.state_dir = state_dir
        args = [ROOTSEALD, "--dev", "--dev-state-dir", state_dir, "--dev-listen-address", listen]
        if token_id:
            args += ["--dev-root-token-id", token_id]
        args += list(extra_args)
        self.stderr_path = os.path.join(tempfile.mkdtemp(prefix="rootseald-log-"), "stderr.log")
        self._stderr = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.pop("SOFTHSM2_CONF", None)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        self.banner = self._read_banner(deadline=time.monotonic() + 60)
        m = re.search(r"Address:\s+http://(\S+)", self.banner)
        t = re.search(r"Root token:\s+(\S+)", self.banner)
        if not m or not t:
            raise AssertionError("no address/token in banner:\n" + self.banner + self.stderr())
        self.address = m.group(1)
        self.token = t.group(1)
        host, port = self.address.rsplit(":", 1)
        self.host, self.port = host.strip("[]"), int(port)

    def _read_banner(self, deadline):
        """Reads stdout until the banner's last line (the VAULT_TOKEN export) is complete."""
        out = b""
        fd = self.proc.stdout.fileno()
        while not re.search(rb"VAULT_TOKEN=\S+\n", out):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("rootseald did not print its banner in time; stderr:\n" + self.stderr())
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError("rootseald exited before its banner; stderr:\n" + self.stderr())
            out += chunk
        return out.decode()

    def stderr(self):
        if not self._stderr.closed:
            self._stderr.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), data
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None):
        status, hdrs, data = self.request(method, path, body, headers)
        return status, hdrs, (json.loads(data) if data else None)

    def wait_health(self, want_status, timeout=30):
        """Polls /v1/sys/health until it answers want_status (a condition, bounded)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("rootseald exited: %s\n%s" % (self.proc.returncode, self.stderr()))
            try:
                status, _, body = self.json("GET", "/v1/sys/health")
                last = (status, body)
                if status == want_status:
                    return body
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("health never became %d (last %r)\n%s" % (want_status, last, self.stderr()))

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("rootseald did not stop on %s" % sig)
        self.proc.stdout.close()
        self._stderr.close()
        return self.proc.returncode


def make_softhsm(base, label, pin="1234", so_pin="0000"):
    """A SoftHSM2 token in its own folder through softhsm2-util; returns the env to use it."""
    tokens = os.path.join(base, "tokens")
    os.makedirs(tokens, exist_ok=True)
    conf = os.path.join(base, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n" % tokens)
    env = dict(os.environ, SOFTHSM2_CONF=conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", so_pin,
                    "--pin", pin], check=True, env=env, stdout=subprocess.DEVNULL)
    return env


def tempdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    return d


def rmtree(d):
    shutil.rmtree(d, ignore_errors=True)


def free_port():
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(proc, log, predicate, what, timeout=30):
    """Polls predicate() (bounded) until it returns something true; fails at
    once if the process exits. OSError (connection refused, TLS errors) counts
    as not yet."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("rootseald exited %s\n%s" % (proc.returncode, log()))
        try:
            last = predicate()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last %r)\n%s" % (what, last, log()))
