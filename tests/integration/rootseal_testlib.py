"""Helpers for rootseal's integration tests: start the real rootseald, talk HTTP."""
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import random
import socket
import ssl
import atexit
import fcntl
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
        self.stderr_path = os.path.join(tempdir("rootseald-log-"), "stderr.log")
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


_TEMPDIRS = []


@atexit.register
def _remove_tempdirs():
    """Every folder tempdir() made goes when the test process ends, passed or failed; a test
    that wants to inspect one afterwards sets ROOTSEAL_KEEP_TMP=1."""
    if os.environ.get("ROOTSEAL_KEEP_TMP") == "1":
        return
    for d in _TEMPDIRS:
        shutil.rmtree(d, ignore_errors=True)


def tempdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    _TEMPDIRS.append(d)
    return d


def rmtree(d):
    shutil.rmtree(d, ignore_errors=True)


def free_port():
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair():
    """A port P with P and P+1 both free now (swtpm: server and control port),
    below the kernel's ephemeral range (32768 and up by default), as
    tests/support/swtpm.cpp picks them: bind(0) hands out odd ephemeral ports
    and outgoing connections take the even ones, so under heavy connection
    churn on the machine (thousands of TIME-WAIT client sockets) P+1 of a
    bind(0) port is almost never free."""
    pick = random.SystemRandom()
    for _ in range(200):
        port = pick.randrange(20000, 32000)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no free loopback port pair")


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


def wait_moto(proc, port, timeout=60, http_probe=True):
    """Waits until the moto_server process `proc` answers HTTP on `port` (or,
    without http_probe, accepts connections: with INITIAL_NO_AUTH_ACTION_COUNT
    every answered request counts)."""
    def up():
        if not http_probe:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                return True
            except OSError:
                return False
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            c.request("GET", "/")
            return c.getresponse().status < 500
        finally:
            c.close()
    wait_until(proc, lambda: "moto_server", up, "moto_server", timeout=timeout)


def aws_cli(port, args, timeout=120, key=("testing", "testing")):
    """The real aws CLI against moto_server on `port` (dummy credentials, or
    `key` = (access key id, secret)); its stdout as bytes."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1],
               AWS_DEFAULT_REGION="us-east-1")
    return subprocess.run(["aws", "--endpoint-url", "http://127.0.0.1:%d" % port] + list(args), check=True,
                          capture_output=True, env=env, timeout=timeout).stdout


def write_private(path, text):
    """Writes text to path with mode 0600 (PIN files, keys); returns path."""
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def sha256_hex(text):
    """What a configuration's tokens[].sha256 holds for a token value."""
    return hashlib.sha256(text.encode()).hexdigest()


def npm_install(name, src):
    """npm ci of src/package-lock.json (a double's sdk/ folder) into
    $ROOTSEAL_NPM_DIR/name (reused while the lock is unchanged), with src's
    check.js copied beside it; returns that folder."""
    base = os.environ.get("ROOTSEAL_NPM_DIR") or os.path.join(tempfile.gettempdir(), "rootseal-npm-doubles")
    dst = os.path.join(base, name)
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "package-lock.json")) as f:
        lock = f.read()
    stamp = os.path.join(dst, ".installed-lock")
    # Tests running in parallel (ctest -j) may share one client folder: one
    # installs while the others wait.
    with open(os.path.join(base, name + ".lock"), "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (os.path.isdir(os.path.join(dst, "node_modules")) and os.path.exists(stamp)
                and open(stamp).read() == lock):
            for fn in ("package.json", "package-lock.json"):
                shutil.copy(os.path.join(src, fn), dst)
            p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=dst,
                               capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                raise AssertionError("npm ci failed in %s: %s %s" % (dst, p.stdout, p.stderr))
            with open(stamp, "w") as f:
                f.write(lock)
        shutil.copy(os.path.join(src, "check.js"), dst)
    return dst


SERVER_EXT = "subjectAltName=IP:127.0.0.1"
CLIENT_EXT = "extendedKeyUsage=clientAuth"


def make_tls_material(folder, ca_cn="rootseal-test-ca",
                      leaves=(("server", "rootseal", SERVER_EXT), ("client", "vault-seal", CLIENT_EXT))):
    """A throwaway CA and leaf certificates (EC P-256, valid 2 days) made with
    the openssl CLI in `folder`: ca.pem/ca.key, and for each (name, common
    name, extension line) of `leaves` <name>.pem and <name>.key (mode 0600).
    Returns {name: SHA-256 hex of the leaf's DER certificate} (what
    client_certs[].sha256 names)."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def p(leaf):
        return os.path.join(folder, leaf)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=" + ca_cn, "-keyout", p("ca.key"), "-out", p("ca.pem"))
    fingerprints = {}
    for name, cn, ext in leaves:
        with open(p(name + ".ext"), "w") as f:
            f.write(ext + "\n")
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + cn,
            "-keyout", p(name + ".key"), "-out", p(name + ".csr"))
        run("x509", "-req", "-in", p(name + ".csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial",
            "-days", "2", "-extfile", p(name + ".ext"), "-out", p(name + ".pem"))
        os.chmod(p(name + ".key"), 0o600)
        der = subprocess.run(["openssl", "x509", "-in", p(name + ".pem"), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        fingerprints[name] = hashlib.sha256(der).hexdigest()
    return fingerprints


class Reply:
    """One HTTP answer: status, Content-Type, raw body, the server certificate's CN (TLS only)."""

    def __init__(self, status, content_type, data, peer_cn=None):
        self.status, self.content_type, self.data, self.peer_cn = status, content_type, data, peer_cn

    def json(self):
        return json.loads(self.data) if self.data else None


class ConfigDaemon:
    """rootseald from a configuration file (not dev mode) in a throwaway folder
    `dir`: a SoftHSM2 token under dir/hsm (`env` uses it), a free loopback
    `port`, dir/rootseald.yaml from write_config(), stderr appended to
    dir/stderr.log. TLS material, if any, is the caller's (make_tls_material(d.dir)).
    close() stops a running daemon and removes the folder."""

    def __init__(self, prefix, token_label, pin):
        self.dir = tempdir(prefix)
        self.token_label = token_label
        self.env = make_softhsm(self.p("hsm"), token_label, pin=pin)
        self.port = free_port()
        self.config = self.p("rootseald.yaml")
        self.stderr_path = self.p("stderr.log")
        self.proc = None

    def p(self, leaf):
        return os.path.join(self.dir, leaf)

    def tls_listen(self, cert="server", client_ca=True, require_client_cert=False):
        """The `listen:` lines (after address) of a TLS listener with dir/<cert>.pem and .key."""
        lines = "  tls:\n    cert_file: %s/%s.pem\n    key_file: %s/%s.key\n" % (self.dir, cert, self.dir, cert)
        if client_ca:
            lines += "    client_ca_file: %s/ca.pem\n" % self.dir
        if require_client_cert:
            lines += "    require_client_cert: true\n"
        return lines

    def write_config(self, rest="", listen="  allow_plaintext: true\n", pin_sources=("file",), pin_file=None):
        """Writes rootseald.yaml: listen on 127.0.0.1:<port> (`listen`: the lines
        under listen: after address), state in dir/state, the SoftHSM2 token
        with a generated key, the PIN sources (and file), a 200 ms seal probe,
        then `rest` (YAML, as given)."""
        pin = "pin:\n  sources: [%s]\n" % ", ".join(pin_sources)
        if pin_file:
            pin += "  file: %s\n" % pin_file
        with open(self.config, "w") as f:
            f.write("\nlisten:\n  address: 127.0.0.1:%d\n%sstate_dir: %s/state\n"
                    "pkcs11:\n  module: %s\n  token_label: %s\n  generate_key: true\n"
                    "%sseal:\n  probe_interval: 200ms\n%s"
                    % (self.port, listen, self.dir, SOFTHSM2_MODULE, self.token_label, pin, rest))

    def start(self, env=None):
        """rootseald --config rootseald.yaml --allow-root, with `env` (default: self.env)."""
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen([ROOTSEALD, "--config", self.config, "--allow-root"],
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         env=self.env if env is None else env)
        return self.proc

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_for(self, predicate, what, timeout=30):
        return wait_until(self.proc, self.log, predicate, what, timeout)

    def health(self):
        """The status of GET /v1/sys/health (plain HTTP), None while nothing answers."""
        try:
            return self.call("GET", "/v1/sys/health").status
        except OSError:
            return None

    def wait_unsealed(self, timeout=30):
        self.wait_for(lambda: self.health() == 200, "unsealed", timeout)

    def stop(self, timeout=30):
        """SIGTERM and wait; the exit status (None if it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def close(self):
        self.stop()
        rmtree(self.dir)

    def tls_context(self, client_cert=False):
        """Trusts dir/ca.pem; with client_cert, presents dir/client.pem."""
        c = ssl.create_default_context(cafile=self.p("ca.pem"))
        if client_cert:
            c.load_cert_chain(self.p("client.pem"), self.p("client.key"))
        return c

    def call(self, method, path, body=None, token=None, headers=None, raw_body=None, context=None, timeout=10):
        """One request to 127.0.0.1:<port> (HTTPS with `context`): body as JSON
        or raw_body as is, the token in X-Vault-Token."""
        if context is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=context)
        hdrs = dict(headers or {})
        if token:
            hdrs["X-Vault-Token"] = token
        data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            cn = None
            if context is not None:
                conn.connect()
                cn = dict(x[0] for x in conn.sock.getpeercert()["subject"])["commonName"]
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            return Reply(r.status, r.getheader("Content-Type"), r.read(), cn)
        finally:
            conn.close()


def make_server_and_client_certs(d, client_names):
    """A server certificate for 127.0.0.1 (self-signed: it is its own CA
    file), a client CA and one client certificate per name signed by it, in
    folder d: (server cert, server key, client CA, {name: (cert, key)})."""
    def openssl(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)
    srv, srv_key, ca, ca_key = (os.path.join(d, x) for x in ("srv.pem", "srv.key", "client-ca.pem", "client-ca.key"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", srv_key, "-out", srv, "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
            "-subj", "/CN=client-ca")
    clients = {}
    for name in client_names:
        key, csr, crt = (os.path.join(d, name + x) for x in (".key", ".csr", ".pem"))
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt, "-days", "1")
        clients[name] = (crt, key)
    return srv, srv_key, ca, clients
