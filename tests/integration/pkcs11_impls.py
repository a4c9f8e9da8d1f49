"""Three independent PKCS#11 implementations (and p11-kit's proxy), each
started from scratch inside the test, each giving back a Token: the module
path, the token label, the user PIN and the environment to run clients with.

  softhsm2(base)       SoftHSM2 with its own token folder (SOFTHSM2_CONF)
  opencryptoki(base)   opencryptoki's software token (pkcsslotd + libpkcs11_sw):
                       its paths are fixed by the package (/var/lib/opencryptoki,
                       /var/lock/opencryptoki, /etc/opencryptoki, /var/run), so
                       enter_private_namespace() must have been called first:
                       the test process gets its own mount and IPC namespace,
                       in which those paths are folders under `base` and /run
                       and /dev/shm are fresh tmpfs. The host's own state is
                       never touched. Needs root (CAP_SYS_ADMIN).
  tpm2_pkcs11(base)    tpm2-pkcs11 over a fresh swtpm, its store under `base`
                       (TPM2_PKCS11_STORE), the token made by the library's own
                       C_InitToken/C_InitPIN (through OpenSC's pkcs11-tool).
  p11kit_proxy(base, inner)  p11-kit-proxy.so with `inner` as its only module
                       (a module file in base/modules bound over p11-kit's
                       package module folder /usr/share/p11-kit/modules; needs
                       enter_private_namespace() too; no user configuration).

Every token is labelled "rootseal" unless told otherwise. stop() ends what
was started (by pid) and removes nothing the caller did not give.
"""
import ctypes
import grp
import os
import shutil
import signal
import socket
import subprocess
import time

from rootseal_testlib import free_port_pair, make_softhsm, tempdir

SOFTHSM2_MODULE = os.environ.get("SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
OPENCRYPTOKI_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so"
TPM2_PKCS11_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so"
P11KIT_PROXY_MODULE = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"
P11KIT_PACKAGE_MODULES = "/usr/share/p11-kit/modules"
OPENCRYPTOKI_SW_SLOT = 3  # the slot of libpkcs11_sw.so in the package's opencryptoki.conf

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000


class Token:
    def __init__(self, impl, module, label, pin, env, stop=None):
        self.impl = impl
        self.module = module
        self.label = label
        self.pin = pin
        self.env = env
        self._stop = stop

    def stop(self):
        if self._stop:
            self._stop()
            self._stop = None


def _wait(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def _pid_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except FileNotFoundError:
        return True


def softhsm2(base, label="rootseal", pin="12345678"):
    env = make_softhsm(base, label, pin=pin)
    return Token("softhsm2", SOFTHSM2_MODULE, label, pin, env)


_in_namespace = False


def enter_private_namespace():
    """Moves this process (single-threaded, root) into its own mount and IPC
    namespace with every mount private, and fresh tmpfs on /run and /dev/shm.
    Children inherit it; the host sees none of it. Idempotent."""
    global _in_namespace
    if _in_namespace:
        return
    if os.geteuid() != 0:
        raise AssertionError("opencryptoki's paths are fixed: run this test as root (make test does), "
                             "it uses a private mount namespace")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS|CLONE_NEWIPC)")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    _in_namespace = True
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "rootseal-test-run", "/run"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "rootseal-test-shm", "/dev/shm"], check=True)


def _bind(src, target):
    """Binds src over target inside the private namespace. Creates target only
    under the private /run (a tmpfs of ours); elsewhere it must exist (the
    package's folder), so that nothing is ever created on the host."""
    if target.startswith("/run/"):
        os.makedirs(target, exist_ok=True)
    elif not os.path.isdir(target):
        raise AssertionError("%s is missing: install the package that owns it (scripts/install-deps)" % target)
    subprocess.run(["mount", "--bind", src, target], check=True)


def opencryptoki(base, label="rootseal", pin="12345678", so_pin="87654321"):
    """opencryptoki's software token, initialised by pkcsconf, served by a
    pkcsslotd of our own. Call enter_private_namespace() first."""
    if not _in_namespace:
        raise AssertionError("opencryptoki() needs enter_private_namespace() first")
    for leaf in ("lib/swtok/TOK_OBJ", "lock/swtok", "etc"):
        os.makedirs(os.path.join(base, leaf), exist_ok=True)
    with open(os.path.join(base, "etc", "opencryptoki.conf"), "w") as f:
        f.write("version opencryptoki-3.1\nslot %d\n{\nstdll = libpkcs11_sw.so\n}\n" % OPENCRYPTOKI_SW_SLOT)
    gid = _group_id("pkcs11")
    for root, dirs, _ in os.walk(base):
        for d in [root] + [os.path.join(root, x) for x in dirs]:
            os.chown(d, 0, gid)
            os.chmod(d, 0o770)
    # /var/lib/opencryptoki and /etc/opencryptoki exist (the package's); the
    # lock folder is under the private /run on Debian.
    _bind(os.path.join(base, "lib"), "/var/lib/opencryptoki")
    _bind(os.path.join(base, "etc"), "/etc/opencryptoki")
    _bind(os.path.join(base, "lock"), os.path.realpath("/var/lock") + "/opencryptoki")
    subprocess.run(["pkcsslotd"], check=True)
    pidfile = "/var/run/pkcsslotd.pid"
    def read_pid():
        with open(pidfile) as f:
            return f.read().strip()

    _wait(lambda: os.path.exists(pidfile) and read_pid().isdigit(), "pkcsslotd's pid file")
    pid = int(read_pid())
    _wait(lambda: os.path.exists("/var/run/pkcsslotd.socket"), "pkcsslotd's socket")

    def stop():
        if not _pid_gone(pid):
            os.kill(pid, signal.SIGTERM)
            _wait(lambda: _pid_gone(pid), "pkcsslotd to exit")

    try:
        slot = str(OPENCRYPTOKI_SW_SLOT)
        # The factory SO PIN of a fresh software token is 87654321.
        subprocess.run(["pkcsconf", "-I", "-c", slot, "-S", "87654321"], input=label + "\n", text=True,
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["pkcsconf", "-P", "-c", slot, "-S", "87654321", "-n", so_pin], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["pkcsconf", "-u", "-c", slot, "-S", so_pin, "-n", pin], check=True,
                       stdout=subprocess.DEVNULL)
    except BaseException:
        stop()
        raise
    # opencryptoki 3.8.1's software token leaks a few bytes that LeakSanitizer
    # reports after C_Finalize has unloaded it (libpkcs11_sw.so is dlopen'ed and
    # dlclose'd by libopencryptoki itself, so the frames are "<unknown module>"
    # and no suppression by library name matches). Leak checking is therefore
    # off for processes using this token in the ASan build (address and UB
    # checks stay on); the same code paths are leak-checked on SoftHSM2 and
    # tpm2-pkcs11.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = dict(os.environ, ASAN_OPTIONS=(asan + ":" if asan else "") + "detect_leaks=0")
    return Token("opencryptoki", OPENCRYPTOKI_MODULE, label, pin, env, stop)


def _group_id(name):
    return grp.getgrnam(name).gr_gid


def _free_port_pair():
    return free_port_pair()


def tpm2_pkcs11(base, label="rootseal", pin="12345678", so_pin="87654321"):
    """tpm2-pkcs11 over a swtpm of its own; the store (sqlite) under base/store."""
    state = os.path.join(base, "swtpm-state")
    store = os.path.join(base, "store")
    os.makedirs(state, exist_ok=True)
    os.makedirs(store, exist_ok=True)
    port = _free_port_pair()
    log = open(os.path.join(base, "swtpm.log"), "wb")
    sw = subprocess.Popen(["swtpm", "socket", "--tpm2", "--server", "type=tcp,port=%d" % port,
                           "--ctrl", "type=tcp,port=%d" % (port + 1), "--tpmstate", "dir=" + state,
                           "--flags", "not-need-init,startup-clear"], stdout=log, stderr=subprocess.STDOUT)
    log.close()

    def up():
        if sw.poll() is not None:
            raise AssertionError("swtpm exited: " + open(os.path.join(base, "swtpm.log")).read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop():
        if sw.poll() is None:
            sw.terminate()
            sw.wait(timeout=30)

    try:
        _wait(up, "swtpm to accept connections")
        env = dict(os.environ, TPM2_PKCS11_STORE=store, TPM2_PKCS11_TCTI="swtpm:host=127.0.0.1,port=%d" % port,
                   TPM2_PKCS11_LOG_LEVEL="0")
        # tpm2_ptool runs tpm2-tools commands that leave transient objects
        # loaded, and swtpm without a resource manager holds only 3: its
        # addtoken fails with TPM_RC_OBJECT_MEMORY. The library's own
        # C_InitToken flushes what it loads.
        subprocess.run(["pkcs11-tool", "--module", TPM2_PKCS11_MODULE, "--init-token", "--label", label,
                        "--so-pin", so_pin], check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["pkcs11-tool", "--module", TPM2_PKCS11_MODULE, "--token-label", label, "--login",
                        "--login-type", "so", "--so-pin", so_pin, "--init-pin", "--new-pin", pin], check=True,
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # pkcs11-tool's C_InitToken/C_InitPIN leave one transient object
        # loaded. A host's resource manager (/dev/tpmrm0, tpm2-abrmd) flushes
        # a client's objects when it disconnects; this bare swtpm does not,
        # and a client of the token (rootseald: its key pair and the primary
        # key) then runs out of the 3 object slots (TPM_RC_OBJECT_MEMORY).
        subprocess.run(["tpm2_flushcontext", "--transient-object"], check=True,
                       env=dict(env, TPM2TOOLS_TCTI=env["TPM2_PKCS11_TCTI"]), stdout=subprocess.DEVNULL)
    except BaseException:
        stop()
        raise
    return Token("tpm2-pkcs11", TPM2_PKCS11_MODULE, label, pin, env, stop)


def remove(base):
    shutil.rmtree(base, ignore_errors=True)


def p11kit_proxy(base, inner):
    """p11-kit's proxy module, configured (inside the private namespace) with
    `inner`'s module as the only one; `inner`'s environment is kept."""
    if not _in_namespace:
        raise AssertionError("p11kit_proxy() needs enter_private_namespace() first")
    modules = os.path.join(base, "modules")
    os.makedirs(modules, exist_ok=True)
    with open(os.path.join(modules, "inner.module"), "w") as f:
        f.write("module: %s\ncritical: yes\n" % inner.module)
    if not os.path.ismount(P11KIT_PACKAGE_MODULES):
        _bind(modules, P11KIT_PACKAGE_MODULES)
    env = dict(inner.env, P11_KIT_NO_USER_CONFIG="1")
    return Token("p11-kit-proxy", P11KIT_PROXY_MODULE, inner.label, inner.pin, env)


def tempfile_dir(prefix):
    return tempdir(prefix)
