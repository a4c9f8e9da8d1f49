"""rootseald's in-process hardening, seen from outside the process through
/proc, on the real binary:

- not dumpable: the kernel gives /proc/<pid>/* of a non-dumpable process to
  root, so a daemon running as `nobody` has root-owned /proc files while a
  control process started the same way (same uid, same exec path) has its own;
- key pages locked (VmLck > 0) and no core limit;
- root refused without --allow-root (with a clear message, nothing created),
  accepted with it (with a warning), and in dev mode (with a warning);
- secret-looking environment variables read (the dev root token) and then
  gone from /proc/<pid>/environ, bytes and names, other variables kept;
- the dev root token given on the command line gone from /proc/<pid>/cmdline;
- a configuration with a secret written inline refused, the value never echoed.
"""
import http.client
import os
import re
import select
import socket
import stat
import subprocess
import unittest

from rootseal_testlib import (ROOTSEALD, SOFTHSM2_MODULE, Daemon, free_port, make_softhsm, rmtree, tempdir,
                              wait_until)

NOBODY = 65534


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)


def proc_environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return f.read()


def fd_targets(pid):
    out = {}
    for n in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(n)] = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            pass  # closed meanwhile
    return out


def inheritable_fds(pid):
    """{fd: target} of every descriptor above stderr without O_CLOEXEC."""
    out = {}
    for fd, target in fd_targets(pid).items():
        if fd <= 2:
            continue
        try:
            with open("/proc/%d/fdinfo/%d" % (pid, fd)) as f:
                flags = int(re.search(r"^flags:\s+([0-7]+)", f.read(), re.M).group(1), 8)
        except OSError:
            continue
        if not flags & 0o2000000:  # O_CLOEXEC
            out[fd] = target
    return out


class HardeningTest(unittest.TestCase):
    def setUp(self):
        self.assertEqual(os.geteuid(), 0, "these tests switch users: run them as root (make test does)")
        self.dir = tempdir("rootseal-harden-")
        os.chmod(self.dir, 0o755)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()
        rmtree(self.dir)

    def p(self, leaf):
        return os.path.join(self.dir, leaf)

    def spawn(self, args, env=None, user=None, log="stderr.log"):
        log_file = open(self.p(log), "wb")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log_file, env=env,
                                preexec_fn=as_nobody if user == NOBODY else None)
        log_file.close()
        self.procs.append(proc)
        return proc

    def read(self, leaf):
        with open(self.p(leaf), "rb") as f:
            return f.read().decode(errors="replace")

    def test_non_root_dev_daemon_is_non_dumpable_locked_and_scrubbed(self):
        state = self.p("state")
        os.mkdir(state, 0o700)
        os.chown(state, NOBODY, NOBODY)
        token = "rs.env-root-token-0123456789abcdef"
        env = {
            "PATH": "/usr/bin:/bin",
            "ROOTSEAL_DEV_ROOT_TOKEN_ID": token,      # read, then scrubbed
            "VAULT_TOKEN": "s.leaked-vault-token-4242",  # scrubbed
            "ROOTSEAL_HSM_PIN": "pin-9876-secret",    # scrubbed
            "aws_secret_access_key": "awsSecretValue17",  # scrubbed, any case
            "CREDENTIALS_DIRECTORY": "/nonexistent/creds",  # a path systemd sets: kept
            "KEEP_ME": "harmless-value",              # kept
        }
        # Sanitizer builds (make test-asan) pass their options on.
        env.update({k: v for k, v in os.environ.items() if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")})
        port = free_port()
        daemon = self.spawn([ROOTSEALD, "--dev", "--dev-state-dir", state, "--dev-listen-address",
                             "127.0.0.1:%d" % port], env=env, user=NOBODY)
        # A control process exec'd the same way as the same user.
        control = subprocess.Popen(["/bin/sleep", "60"], preexec_fn=as_nobody)
        self.procs.append(control)

        banner = []

        def banner_token():
            ready, _, _ = select.select([daemon.stdout], [], [], 0.2)
            if ready:
                banner.append(os.read(daemon.stdout.fileno(), 65536).decode())
            m = re.search(r"Root token:\s+(\S+)\n", "".join(banner))
            return m.group(1) if m else None

        self.assertEqual(wait_until(daemon, lambda: self.read("stderr.log"), banner_token, "the dev banner"), token)
        status = proc_status(daemon.pid)
        self.assertEqual(status["Uid"].split()[0], str(NOBODY))
        wait_until(daemon, lambda: self.read("stderr.log"), lambda: "msg=\"unsealed\"" in self.read("stderr.log"),
                   "unsealed")

        # Not dumpable: /proc/<pid> belongs to root, the control's to nobody.
        self.assertEqual(os.stat("/proc/%d/status" % control.pid).st_uid, NOBODY)
        self.assertEqual(os.stat("/proc/%d/status" % daemon.pid).st_uid, 0)
        self.assertEqual(os.stat("/proc/%d/environ" % daemon.pid).st_uid, 0)

        # Key pages locked while key material is held: a fresh dev daemon may
        # hold none (the PIN is wiped after login), so create a key first —
        # its unwrapped versions live in SecureBytes. No core limit.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/transit/keys/locked-pages", headers={"X-Vault-Token": token})
        self.assertIn(conn.getresponse().status, (200, 204))
        conn.close()
        vmlck_kb = int(proc_status(daemon.pid)["VmLck"].split()[0])
        # AddressSanitizer's runtime intercepts mlock() as a no-op (it would
        # lock shadow memory), so locked pages are only visible without it.
        with open("/proc/%d/maps" % daemon.pid) as f:
            sanitized = "libasan" in f.read()
        if not sanitized:
            self.assertGreater(vmlck_kb, 0)
        with open("/proc/%d/limits" % daemon.pid) as f:
            core = [l for l in f if l.startswith("Max core file size")][0].split()
        self.assertEqual(core[4:6], ["0", "0"], core)

        # The environment: secrets gone (names and bytes), the rest kept.
        environ = proc_environ(daemon.pid)
        for secret in (token, "leaked-vault-token", "pin-9876", "awsSecretValue17"):
            self.assertNotIn(secret.encode(), environ)
        for name in (b"ROOTSEAL_DEV_ROOT_TOKEN_ID=", b"VAULT_TOKEN=", b"ROOTSEAL_HSM_PIN=", b"aws_secret_access_key="):
            self.assertNotIn(name, environ)
        entries = [e for e in environ.split(b"\0") if e]
        self.assertIn(b"CREDENTIALS_DIRECTORY=/nonexistent/creds", entries)
        self.assertIn(b"KEEP_ME=harmless-value", entries)
        log = self.read("stderr.log")
        self.assertIn("removed secret-looking variables from the environment", log)
        self.assertIn("VAULT_TOKEN", log)
        for secret in (token, "leaked-vault-token", "pin-9876", "awsSecretValue17"):
            self.assertNotIn(secret, log)
        # Not root: no root warning.
        self.assertNotIn("running as root", log)

        # O_CLOEXEC everywhere: with a client connected to every listening
        # socket (so accepted sockets are counted too), no descriptor but
        # stdin/stdout/stderr would survive an exec (a PKCS#11 module or a
        # TCTI that spawns a helper must not inherit the listener or a peer).
        peers = [socket.create_connection(("127.0.0.1", port), timeout=10)]
        for leaf in os.listdir(state):
            path = os.path.join(state, leaf)
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                u.connect(path)
                peers.append(u)
        try:
            expected_fds = 2 * len(peers)  # each listener and the peer it accepted
            wait_until(daemon, lambda: self.read("stderr.log"),
                       lambda: sum(1 for t in fd_targets(daemon.pid).values() if t.startswith("socket:")) >= expected_fds,
                       "the accepted connections")
            inheritable = inheritable_fds(daemon.pid)
            self.assertEqual(inheritable, {}, "descriptors without O_CLOEXEC")
        finally:
            for peer in peers:
                peer.close()

        daemon.terminate()
        self.assertEqual(daemon.wait(timeout=30), 0, self.read("stderr.log"))

    def test_root_dev_mode_scrubs_the_token_from_the_command_line(self):
        token = "rs.cmdline-root-token-fedcba9876543210"
        d = Daemon(self.p("dev"), token_id=token)
        try:
            self.assertEqual(d.token, token)
            with open("/proc/%d/cmdline" % d.proc.pid, "rb") as f:
                argv = f.read().split(b"\0")
            self.assertNotIn(token.encode(), b"\0".join(argv))
            self.assertIn(b"x" * len(token), argv)  # the same length, overwritten
            self.assertIn("running as root in dev mode", d.stderr())
            d.wait_health(200)
        finally:
            self.assertEqual(d.stop(), 0)

    def config(self, name, extra=""):
        env = make_softhsm(self.p("hsm-" + name), name, pin="3333")
        pin = self.p("pin-" + name)
        with open(pin, "w") as f:
            f.write("3333")
        os.chmod(pin, 0o600)
        path = self.p(name + ".yaml")
        with open(path, "w") as f:
            f.write("""
listen:
  address: 127.0.0.1:%d
  allow_plaintext: true
state_dir: %s
pkcs11:
  module: %s
  token_label: %s
  generate_key: true
pin:
  sources: [file]
  file: %s
%s""" % (free_port(), self.p("state-" + name), SOFTHSM2_MODULE, name, pin, extra))
        return path, env

    def test_root_is_refused_without_allow_root(self):
        path, env = self.config("rootcheck")
        r = subprocess.run([ROOTSEALD, "--config", path], capture_output=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"refusing to run as root", r.stderr)
        self.assertIn(b"--allow-root", r.stderr)
        # Refused before touching anything: no state folder, no store.
        self.assertFalse(os.path.exists(self.p("state-rootcheck")))

        proc = self.spawn([ROOTSEALD, "--config", path, "--allow-root"], env=env, log="allowed.log")
        wait_until(proc, lambda: self.read("allowed.log"), lambda: "msg=\"unsealed\"" in self.read("allowed.log"),
                   "unsealed with --allow-root")
        self.assertIn("running as root (--allow-root)", self.read("allowed.log"))
        proc.terminate()
        self.assertEqual(proc.wait(timeout=30), 0)

    def test_secret_written_in_the_config_is_refused(self):
        cases = [
            # (extra YAML, what the message must name)
            ("tpm:\n  auth_value: hunter2-inline-secret\n", "tpm.auth_value_file"),
            ("tokens:\n  - name: app\n    token: rs.hunter2-inline-secret\n    policies: [root]\n", "token"),
        ]
        for i, (extra, named) in enumerate(cases):
            path, env = self.config("inline%d" % i, extra)
            r = subprocess.run([ROOTSEALD, "--config", path, "--allow-root"], capture_output=True, env=env,
                               timeout=60)
            self.assertEqual(r.returncode, 1, extra)
            self.assertIn(named.encode(), r.stderr, extra)
            self.assertNotIn(b"hunter2", r.stderr, extra)
            self.assertFalse(os.path.exists(self.p("state-inline%d" % i)), extra)


if __name__ == "__main__":
    unittest.main(verbosity=2)
