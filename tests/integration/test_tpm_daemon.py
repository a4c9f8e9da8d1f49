"""rootseald with a TPM: the root key sealed to the TPM (root_of_trust: tpm) and
the HSM PIN sealed to the TPM (pin.sources: [tpm]), on swtpm instances started
here on free loopback ports, each with its own state folder.

Failure is a state: a PCR change, a missing TPM, a wrong auth value leave the
daemon up and sealed with the reason in /v1/sys/seal-status, and it unseals by
itself once the condition is cleared."""
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
import unittest

from rootseal_testlib import wait_until, ROOTSEALD, SOFTHSM2_MODULE, free_port_pair, make_softhsm, rmtree, tempdir
from test_kms_plugin import GrpcioClient

TPM_TOOL = os.environ.get("TPM_TOOL", "")
ROOTSEAL_CLI = os.environ.get("ROOTSEAL_CLI", "")
APP_TOKEN = "s.tpm-app-token-5b0e2d7c41a9"
HSM_PIN = "7391-tpm-sealed-pin"
AUTH_VALUE = "tpm-auth-8c1f6e20d4"
PLAINTEXT = base64.b64encode(b"sealed to the TPM").decode()
PCR_REASON = "TPM policy check failed: PCR values changed since sealing"


def free_port(pair=False):
    """A free loopback port (and, with pair, port+1 free too: swtpm's control
    port, picked below the ephemeral range by rootseal_testlib.free_port_pair)."""
    if pair:
        return free_port_pair()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connectable(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Swtpm:
    """swtpm socket --tpm2 on 127.0.0.1:port (control port+1) with its own state folder."""

    def __init__(self, base, port=None):
        self.state = os.path.join(base, "swtpm-state")
        os.makedirs(self.state, exist_ok=True)
        self.log_path = os.path.join(base, "swtpm.log")
        self.port = port if port is not None else free_port(pair=True)
        self.proc = None

    @property
    def tcti(self):
        return "swtpm:host=127.0.0.1,port=%d" % self.port

    def start(self, timeout=10):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2",
             "--server", "type=tcp,port=%d,bindaddr=127.0.0.1" % self.port,
             "--ctrl", "type=tcp,port=%d,bindaddr=127.0.0.1" % (self.port + 1),
             "--tpmstate", "dir=%s" % self.state, "--flags", "not-need-init,startup-clear"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while not connectable(self.port):  # bounded poll on the condition "port accepts"
            if self.proc.poll() is not None:
                raise AssertionError("swtpm exited: %s" % open(self.log_path).read())
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("swtpm did not accept connections in %ds" % timeout)
            time.sleep(0.02)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def reboot(self):
        """Same state, same ports: PCRs back to their reset values."""
        self.stop()
        self.start()


def tpm_tool(*args, stdin=None):
    r = subprocess.run([TPM_TOOL] + list(args), input=stdin, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("tpm_tool %s failed: %s" % (args[0], r.stderr.decode(errors="replace")))
    return r.stdout.decode()


def tpm_state(tcti):
    out = tpm_tool("state", tcti)
    f = out.split()
    return dict(zip(f[0::2], (int(v) for v in f[1::2])))


class TpmDaemonTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(ROOTSEALD and TPM_TOOL and ROOTSEAL_CLI,
                        "ROOTSEALD, TPM_TOOL and ROOTSEAL_CLI must be set (run through ctest)")
        self.dir = tempdir("rootseal-tpmd-")
        self.state_dir = os.path.join(self.dir, "state")
        os.makedirs(self.state_dir, mode=0o700)
        self.port = free_port()
        self.config = os.path.join(self.dir, "rootseald.yaml")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.env = dict(os.environ)
        self.env.pop("CREDENTIALS_DIRECTORY", None)
        self.env.pop("TSS2_LOG", None)
        self.proc = None
        self.swtpms = []

    def tearDown(self):
        try:
            if self.proc and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=30)
        finally:
            for sw in self.swtpms:
                sw.stop(signal.SIGKILL)
            if os.environ.get("ROOTSEAL_KEEP_TEST_DIR"):  # debugging: keep logs and state
                print("kept", self.dir)
            else:
                rmtree(self.dir)

    # --- helpers -----------------------------------------------------------

    def swtpm(self, port=None, start=True):
        sw = Swtpm(self.dir, port)
        self.swtpms.append(sw)
        if start:
            sw.start()
        return sw

    def write_config(self, tcti, root="tpm", initialize=True, pin_sources=None, auth_file=None,
                     pkcs11_label=None, pin_file=None, kms_socket=None):
        lines = [
            "listen:",
            "  address: 127.0.0.1:%d" % self.port,
            "  allow_plaintext: true",
            "state_dir: %s" % self.state_dir,
            "root_of_trust: %s" % root,
            "tpm:",
            "  tcti: \"%s\"" % tcti,
            "  pcrs: [7]",
        ]
        if root == "tpm":
            lines.append("  initialize: %s" % ("true" if initialize else "false"))
        if auth_file:
            lines.append("  auth_value_file: %s" % auth_file)
        if pkcs11_label:
            lines += ["pkcs11:", "  module: %s" % SOFTHSM2_MODULE, "  token_label: %s" % pkcs11_label,
                      "  generate_key: true"]
        if pin_sources is not None:
            lines += ["pin:", "  sources: [%s]" % ", ".join(pin_sources)]
            if pin_file:
                lines.append("  file: %s" % pin_file)
        if kms_socket:
            lines += ["kms_plugin:", "  enabled: true", "  socket: %s" % kms_socket,
                      "  allowed_uids: [%d]" % os.getuid()]
        lines += [
            "admin:",
            "  socket: %s" % os.path.join(self.dir, "admin.sock"),
            "seal:",
            "  probe_interval: 200ms",
            "policies:",
            "  apps:",
            "    keys: [\"app-*\"]",
            "    operations: [create, read, encrypt, decrypt]",
            "tokens:",
            "  - name: app",
            "    sha256: %s" % hashlib.sha256(APP_TOKEN.encode()).hexdigest(),
            "    policies: [apps]",
        ]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        self.assertTrue(self.proc is None or self.proc.poll() is not None, "daemon already running")
        err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([ROOTSEALD, "--config", self.config, "--allow-root"], stdout=subprocess.DEVNULL,
                                     stderr=err, env=self.env)
        err.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=30), 0, self.log())

    def rootseal(self, *args, stdin=None, expect=0):
        """The rootseal CLI; admin commands find the socket through --config."""
        r = subprocess.run([ROOTSEAL_CLI] + list(args) + ["--config", self.config], input=stdin,
                           capture_output=True, timeout=120, env=self.env)
        if expect is not None and r.returncode != expect:
            raise AssertionError("rootseal %s: exit %d (want %d)\n%s%s\n%s" % (
                " ".join(args), r.returncode, expect, r.stdout.decode(), r.stderr.decode(), self.log()))
        return r.stdout.decode(), r.stderr.decode()

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def call(self, method, path, body=None, token=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"X-Vault-Token": token} if token else {}
        try:
            conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                         headers=headers)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        return r.status, (json.loads(data) if data else None)

    def wait_for(self, predicate, what, timeout=30):
        return wait_until(self.proc, self.log, predicate, what, timeout)

    def seal_status(self):
        return self.call("GET", "/v1/sys/seal-status")[1]

    def wait_unsealed(self):
        self.wait_for(lambda: self.call("GET", "/v1/sys/health")[0] == 200, "unsealed")
        return self.seal_status()

    def wait_sealed_with(self, pattern, what):
        def sealed_reason():
            s = self.seal_status()
            return s["sealed_reason"] if s["sealed"] and re.search(pattern, s["sealed_reason"]) else None
        reason = self.wait_for(sealed_reason, what)
        self.assertEqual(self.call("GET", "/v1/sys/health")[0], 503)
        return reason

    def create_and_encrypt(self, key="app-one"):
        self.assertEqual(self.call("POST", "/v1/transit/keys/" + key, {}, APP_TOKEN)[0], 200)
        status, body = self.call("POST", "/v1/transit/encrypt/" + key, {"plaintext": PLAINTEXT}, APP_TOKEN)
        self.assertEqual(status, 200, body)
        return body["data"]["ciphertext"]

    def assert_decrypts(self, ct, key="app-one"):
        status, body = self.call("POST", "/v1/transit/decrypt/" + key, {"ciphertext": ct}, APP_TOKEN)
        self.assertEqual((status, body["data"]["plaintext"] if status == 200 else body), (200, PLAINTEXT))

    def assert_no_secret_in_log(self, *secrets):
        text = self.log()
        for s in (APP_TOKEN,) + secrets:
            self.assertNotIn(s, text)

    def assert_root_key_not_in_log(self, tcti, auth_file=None):
        args = ["unseal-hex", tcti, os.path.join(self.state_dir, "tpm-root.seal")]
        if auth_file:
            args.append(auth_file)
        key_hex = tpm_tool(*args).strip()
        self.assertEqual(len(key_hex), 64)
        raw = bytes.fromhex(key_hex)
        self.assert_no_secret_in_log(key_hex, key_hex.upper(), base64.b64encode(raw).decode(),
                                     base64.b64encode(raw).decode().rstrip("="))

    def assert_no_tss2_noise(self):
        # TSS2_LOG=all+none is set by rootseald: no tpm2-tss lines on stderr.
        self.assertIsNone(re.search(r"^(ERROR|WARNING):(tcti|esys|sys|mu|tctildr)", self.log(), re.M), self.log())

    # --- (a) the root key sealed to the TPM ---------------------------------

    def test_a_tpm_root_initialized_unseals_by_itself_and_survives_restart(self):
        sw = self.swtpm()
        self.write_config(sw.tcti, initialize=True)
        self.start()
        status = self.wait_unsealed()
        self.assertEqual(status["type"], "tpm")
        self.assertFalse(status["sealed"])
        self.assertEqual(status["sealed_reason"], "")
        kcv = status["root_key_check_value"]
        self.assertRegex(kcv, r"^[0-9a-f]{6}$")
        sealed_file = os.path.join(self.state_dir, "tpm-root.seal")
        self.assertEqual(stat.S_IMODE(os.stat(sealed_file).st_mode), 0o600)
        with open(sealed_file, "rb") as f:
            self.assertEqual(f.read(4), b"RSTS")
        self.assertEqual(self.log().count('msg="created the TPM-sealed root key"'), 1)
        ct = self.create_and_encrypt()
        self.assert_decrypts(ct)

        self.stop()
        self.start()
        status = self.wait_unsealed()
        self.assertEqual((status["type"], status["root_key_check_value"]), ("tpm", kcv))
        self.assert_decrypts(ct)
        # Created once; the second start unsealed the existing blob.
        self.assertEqual(self.log().count('msg="created the TPM-sealed root key"'), 1)
        self.assertRegex(self.log(), r'msg="unsealed" root=tpm keys=1 versions=1')
        # SIGPIPE is ignored (tpm2-tss's socket TCTIs write() to a TPM that may
        # have gone away): the signal itself leaves the daemon serving.
        with open("/proc/%d/status" % self.proc.pid) as f:
            sig_ign = int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", f.read(), re.M).group(1), 16)
        self.assertTrue(sig_ign & (1 << (signal.SIGPIPE - 1)), "SIGPIPE not ignored")
        os.kill(self.proc.pid, signal.SIGPIPE)
        self.assert_decrypts(ct)
        self.assertIsNone(self.proc.poll())
        self.stop()

        self.assert_root_key_not_in_log(sw.tcti)
        self.assert_no_tss2_noise()
        state = tpm_state(sw.tcti)
        self.assertEqual((state["transient"], state["sessions"], state["lockout_counter"]), (0, 0, 0), state)

    def test_a4_kms_plugin_on_a_tpm_root(self):
        # The KMS v2 plugin's self-test round trip goes through the TPM root;
        # its seeds survive a restart (the keyring unwrapped by the TPM again).
        sw = self.swtpm()
        sock = os.path.join(self.dir, "kms.sock")
        self.write_config(sw.tcti, initialize=True, kms_socket=sock)
        self.start()
        self.wait_unsealed()

        def status_ok(client):
            try:
                return client.status()
            except client.grpc.RpcError:
                return None  # UNAVAILABLE until the first self-test after unseal

        py = GrpcioClient(sock)
        try:
            version, healthz, key_id = self.wait_for(lambda: status_ok(py), "kms plugin status ok")
            self.assertEqual((version, healthz), ("v2", "ok"))
            seed = os.urandom(32)
            ct, enc_key_id, annotations = py.encrypt(seed)
            self.assertEqual(enc_key_id, key_id)
            self.assertEqual(py.decrypt(ct, key_id, annotations), seed)
        finally:
            py.close()
        self.stop()
        self.start()
        self.wait_unsealed()
        py = GrpcioClient(sock)
        try:
            self.assertEqual(self.wait_for(lambda: status_ok(py), "kms plugin status ok again")[2], key_id)
            self.assertEqual(py.decrypt(ct, key_id, annotations), seed)
        finally:
            py.close()
        self.stop()

    def test_a2_missing_sealed_file_without_initialize_is_a_reason_not_a_crash(self):
        sw = self.swtpm()
        self.write_config(sw.tcti, initialize=False)
        self.start()
        reason = self.wait_sealed_with(r"no TPM-sealed root key at", "sealed: no sealed root key")
        self.assertIn("tpm.initialize", reason)
        self.assertFalse(os.path.exists(os.path.join(self.state_dir, "tpm-root.seal")))
        self.assertEqual(self.seal_status()["type"], "tpm")
        status, body = self.call("POST", "/v1/transit/encrypt/app-x", {"plaintext": PLAINTEXT}, APP_TOKEN)
        self.assertEqual(status, 503)

    def test_a3_initialize_never_replaces_a_lost_root_key_under_existing_keys(self):
        sw = self.swtpm()
        self.write_config(sw.tcti, initialize=True)
        self.start()
        self.wait_unsealed()
        ct = self.create_and_encrypt()
        self.stop()
        sealed_file = os.path.join(self.state_dir, "tpm-root.seal")
        moved = os.path.join(self.dir, "tpm-root.seal.moved")
        os.rename(sealed_file, moved)

        self.start()
        reason = self.wait_sealed_with(r"state store holds 1 key", "sealed: refusing a new root key")
        self.assertIn("no TPM-sealed root key at " + sealed_file, reason)
        self.assertFalse(os.path.exists(sealed_file))
        # The sealed file comes back: unsealed by itself, the old data decrypts.
        os.rename(moved, sealed_file)
        self.wait_unsealed()
        self.assert_decrypts(ct)
        self.stop()
        self.assertEqual(self.log().count('msg="created the TPM-sealed root key"'), 1)

    # --- (b) the HSM PIN sealed to the TPM ----------------------------------

    def test_b_tpm_sealed_hsm_pin_logs_into_softhsm_without_a_person(self):
        sw = self.swtpm()
        self.env.update(make_softhsm(os.path.join(self.dir, "hsm"), "tpmpin", pin=HSM_PIN))
        pin_blob = os.path.join(self.state_dir, "hsm-pin.tpm")  # the default pin.tpm_sealed_file
        self.write_config(sw.tcti, root="pkcs11", pin_sources=["tpm"], pkcs11_label="tpmpin")
        # The product path: rootseal tpm seal-pin, on the TPM directly, with the daemon's policy.
        out, _ = self.rootseal("tpm", "seal-pin", stdin=(HSM_PIN + "\n").encode())
        self.assertIn("sealed the HSM PIN to %s (tcti %s, sha256 PCRs 7)" % (pin_blob, sw.tcti), out)
        self.assertEqual(stat.S_IMODE(os.stat(pin_blob).st_mode), 0o600)
        self.assertEqual(bytes.fromhex(tpm_tool("unseal-hex", sw.tcti, pin_blob).strip()), HSM_PIN.encode())
        self.start()
        status = self.wait_unsealed()
        self.assertEqual(status["type"], "pkcs11")
        ct = self.create_and_encrypt()
        self.assert_decrypts(ct)
        self.stop()

        # PCR 7 changes (e.g. a dbx update): the PIN no longer unseals; sealed with the reason, up.
        tpm_tool("extend", sw.tcti, "7")
        self.start()
        reason = self.wait_sealed_with(r"^no HSM PIN available \(tpm: " + re.escape(PCR_REASON),
                                       "sealed: PIN's PCR policy fails")
        self.assertIsNone(self.proc.poll())
        self.assertIn(PCR_REASON, self.log())
        # The condition clears (a reboot into the measured state): unsealed without a restart.
        sw.reboot()
        self.wait_unsealed()
        self.assert_decrypts(ct)
        self.stop()

        self.assertNotIn(HSM_PIN, reason)
        self.assert_no_secret_in_log(HSM_PIN)
        self.assert_no_tss2_noise()

    def test_b2_pin_sources_in_order_not_found_falls_through_and_reasons_are_shown(self):
        # No TPM-sealed PIN file: the tpm source is skipped without touching the
        # TPM (the TCTI points at a closed port), then the file source is read.
        self.env.update(make_softhsm(os.path.join(self.dir, "hsm"), "order", pin=HSM_PIN))
        pin_file = os.path.join(self.dir, "hsm-pin")
        dead = "swtpm:host=127.0.0.1,port=%d" % free_port(pair=True)
        self.write_config(dead, root="pkcs11", pin_sources=["tpm", "file"], pkcs11_label="order",
                          pin_file=pin_file)
        self.start()
        reason = self.wait_sealed_with(r"^no HSM PIN available", "sealed: no PIN anywhere")
        self.assertEqual(reason, "no HSM PIN available (tpm: no TPM-sealed PIN at %s; file: %s: missing)"
                         % (os.path.join(self.state_dir, "hsm-pin.tpm"), pin_file))
        with open(pin_file, "w") as f:
            f.write(HSM_PIN + "\n")
        os.chmod(pin_file, 0o600)
        self.wait_unsealed()
        self.stop()
        self.assert_no_secret_in_log(HSM_PIN)

    def test_b3_pin_reseal_after_pcr_change_authorised_by_a_typed_pin(self):
        sw = self.swtpm()
        self.env.update(make_softhsm(os.path.join(self.dir, "hsm"), "reseal", pin=HSM_PIN))
        pin_blob = os.path.join(self.state_dir, "hsm-pin.tpm")
        self.write_config(sw.tcti, root="pkcs11", pin_sources=["tpm", "typed"], pkcs11_label="reseal")
        _, err = self.rootseal("tpm", "seal-pin", "--pcrs", "24", stdin=HSM_PIN.encode(), expect=1)
        self.assertIn("--pcrs", err)
        self.assertFalse(os.path.exists(pin_blob))
        self.rootseal("tpm", "seal-pin", stdin=HSM_PIN.encode())
        with open(pin_blob, "rb") as f:
            old_blob = f.read()
        self.start()
        self.wait_unsealed()
        ct = self.create_and_encrypt()
        self.stop()

        # An intended PCR change (firmware/dbx update), then a restart: sealed with the reason.
        tpm_tool("extend", sw.tcti, "7")
        self.start()
        reason = self.wait_sealed_with(r"^no HSM PIN available \(tpm: " + re.escape(PCR_REASON) +
                                       r".*; typed: no PIN typed \(rootseal unseal\)\)$", "sealed: PCR changed")
        out, _ = self.rootseal("status", expect=2)
        self.assertIn(PCR_REASON, out)
        # Nothing to reseal yet: the daemon holds no PIN that logged in.
        _, err = self.rootseal("tpm", "reseal", expect=1)
        self.assertIn("rootseald holds no HSM PIN that logged in", err)
        with open(pin_blob, "rb") as f:
            self.assertEqual(f.read(), old_blob)
        # The operator types the PIN: the token accepts it (the authorisation) ...
        out, _ = self.rootseal("unseal", stdin=(HSM_PIN + "\n").encode())
        self.assertEqual(out.strip(), "unsealed")
        self.assert_decrypts(ct)
        # ... and rootseald seals that PIN again under the PCR values of now.
        out, _ = self.rootseal("tpm", "reseal")
        self.assertIn("resealed the HSM PIN to %s under the current values of sha256 PCRs 7" % pin_blob, out)
        with open(pin_blob, "rb") as f:
            self.assertNotEqual(f.read(), old_blob)
        self.assertEqual(stat.S_IMODE(os.stat(pin_blob).st_mode), 0o600)
        self.stop()

        # A restart unseals by itself from the resealed PIN, no person needed.
        self.start()
        self.wait_unsealed()
        self.assert_decrypts(ct)
        self.stop()
        self.assertIn('msg="TPM-sealed HSM PIN resealed" pcrs=7', self.log())
        self.assertNotIn(HSM_PIN, reason)
        self.assert_no_secret_in_log(HSM_PIN)
        self.assert_no_tss2_noise()
        state = tpm_state(sw.tcti)
        self.assertEqual((state["transient"], state["sessions"], state["lockout_counter"]), (0, 0, 0), state)

    def test_b4_root_reseal_before_a_planned_change_and_refused_when_sealed(self):
        sw = self.swtpm()
        self.write_config(sw.tcti, initialize=True)
        self.start()
        kcv = self.wait_unsealed()["root_key_check_value"]
        ct = self.create_and_encrypt()
        sealed_file = os.path.join(self.state_dir, "tpm-root.seal")

        # Planned change: while unsealed, reseal to a policy the change will not touch (no PCRs) ...
        out, _ = self.rootseal("tpm", "reseal", "--pcrs", "none")
        self.assertIn("resealed the root key to %s under the current values of sha256 PCRs none" % sealed_file, out)
        self.assertFalse(self.seal_status()["sealed"])
        self.stop()
        # ... the change happens (PCR 7 measures something else from now on) and the
        # daemon starts on it unsealed ...
        tpm_tool("extend", sw.tcti, "7")
        self.start()
        self.assertEqual(self.wait_unsealed()["root_key_check_value"], kcv)
        # ... then it is sealed again to the configured PCR 7, under its new value.
        out, _ = self.rootseal("tpm", "reseal", "--target", "root")
        self.assertIn("sha256 PCRs 7", out)
        self.stop()
        self.start()
        self.assertEqual(self.wait_unsealed()["root_key_check_value"], kcv)
        self.assert_decrypts(ct)
        self.assert_root_key_not_in_log(sw.tcti)
        self.assertEqual(self.log().count('msg="TPM root key resealed"'), 2)

        # An unplanned change: sealed at the next probe, and a reseal is refused (nothing held).
        tpm_tool("extend", sw.tcti, "7")
        self.wait_sealed_with(re.escape(PCR_REASON), "sealed: PCR changed at run time")
        _, err = self.rootseal("tpm", "reseal", expect=1)
        self.assertIn("rootseald does not hold the TPM root key", err)
        # A PIN reseal makes no sense with a TPM root.
        _, err = self.rootseal("tpm", "reseal", "--target", "pin", expect=1)
        self.assertIn("the HSM PIN is not TPM-sealed here", err)
        _, err = self.rootseal("unseal", stdin=b"1234\n", expect=1)
        self.assertIn("takes no typed PIN", err)
        self.stop()
        self.assert_no_tss2_noise()

    # --- (c) a PCR change ---------------------------------------------------

    def test_c_pcr_change_seals_with_the_reason_stays_up_and_recovers(self):
        sw = self.swtpm()
        self.write_config(sw.tcti, initialize=True)
        self.start()
        self.wait_unsealed()
        ct = self.create_and_encrypt()

        tpm_tool("extend", sw.tcti, "7")
        # verify_on_probe (default): the next probe finds the policy failing.
        reason = self.wait_sealed_with(re.escape(PCR_REASON), "sealed: PCR changed at run time")
        self.assertIn("Esys_", reason)  # the failing call and tpm2-tss's decoding
        status, body = self.call("POST", "/v1/transit/decrypt/app-one", {"ciphertext": ct}, APP_TOKEN)
        self.assertEqual((status, body), (503, {"errors": ["rootseal is sealed"]}))
        self.assertIn("root of trust lost, sealed", self.log())
        self.assertIn(PCR_REASON, self.log())

        # A restart does not change that: sealed with the same reason, running.
        self.stop()
        self.start()
        self.wait_sealed_with(re.escape(PCR_REASON), "sealed after restart: PCR changed")
        self.assertEqual(self.seal_status()["type"], "tpm")
        self.assertIsNone(self.proc.poll())

        # A reboot into the sealed-to state clears it: unsealed by itself.
        sw.reboot()
        self.wait_unsealed()
        self.assert_decrypts(ct)
        self.stop()
        self.assert_root_key_not_in_log(sw.tcti)
        self.assert_no_tss2_noise()

    # --- (d) no TPM ---------------------------------------------------------

    def test_d_no_tpm_is_a_sealed_state_and_the_tpm_appearing_unseals(self):
        sw = self.swtpm()
        self.write_config(sw.tcti, initialize=True)
        self.start()
        self.wait_unsealed()
        ct = self.create_and_encrypt()
        self.stop()
        sw.stop()

        # Nothing listens at the TCTI's port.
        self.start()
        reason = self.wait_sealed_with(re.escape("no TPM at " + sw.tcti), "sealed: no TPM")
        self.assertEqual(self.seal_status()["type"], "tpm")
        self.assertIsNone(self.proc.poll())
        self.assertIn("no TPM at " + sw.tcti, self.log())
        # The TPM appears on that port (same state): unsealed without a restart.
        sw.start()
        self.wait_unsealed()
        self.assert_decrypts(ct)

        # The TPM vanishes under a running daemon (maybe mid-command: SIGPIPE
        # must not kill it): sealed, up; back again: unsealed.
        sw.stop(signal.SIGKILL)
        self.wait_sealed_with(r"no TPM at|stopped answering", "sealed: TPM gone")
        self.assertIsNone(self.proc.poll())
        sw.start()
        self.wait_unsealed()
        self.assert_decrypts(ct)
        self.stop()
        self.assert_no_tss2_noise()

    def test_d2_a_tpm_endpoint_that_resets_connections_does_not_kill_the_daemon(self):
        # Something at the TCTI's ports that is not a TPM: the control port
        # (P+1) acknowledges swtpm control commands, the TPM port (P) accepts
        # and resets every connection. Sealed with the reason, probing on, up.
        port = free_port(pair=True)
        listeners = []
        for p in (port, port + 1):
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind(("127.0.0.1", p))
            srv.listen(16)
            srv.settimeout(0.2)
            listeners.append(srv)
        resets = []
        stopping = threading.Event()

        def serve(srv, control):
            while not stopping.is_set():
                try:
                    conn, _ = srv.accept()
                except OSError:
                    continue
                with conn:
                    if control:
                        conn.settimeout(2)
                        try:
                            conn.recv(4096)
                            conn.sendall(b"\0\0\0\0")  # TPM_SUCCESS
                        except OSError:
                            pass
                    else:
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        resets.append(1)

        threads = [threading.Thread(target=serve, args=(srv, i == 1), daemon=True) for i, srv in enumerate(listeners)]
        for t in threads:
            t.start()
        try:
            self.write_config("swtpm:host=127.0.0.1,port=%d" % port, initialize=True)
            self.start()
            self.wait_sealed_with(r"TPM at swtpm:host=127\.0\.0\.1,port=%d" % port, "sealed: TPM endpoint resets")
            # Several probes against the resetting endpoint, and still running.
            self.wait_for(lambda: len(resets) >= 5, "five connection attempts")
            self.assertIsNone(self.proc.poll())
            self.assertTrue(self.seal_status()["sealed"])
            self.stop()
        finally:
            stopping.set()
            for t in threads:
                t.join(timeout=5)
            for srv in listeners:
                srv.close()
        self.assert_no_tss2_noise()

    # --- (e) restarts and dictionary-attack protection ----------------------

    def test_e_twenty_restarts_with_an_auth_value_do_not_lock_out(self):
        sw = self.swtpm()
        auth_file = os.path.join(self.dir, "tpm-auth")
        with open(auth_file, "w") as f:
            f.write(AUTH_VALUE + "\n")
        os.chmod(auth_file, 0o600)
        self.write_config(sw.tcti, initialize=True, auth_file=auth_file)
        kcvs = set()
        for _ in range(20):
            self.start()
            kcvs.add(self.wait_unsealed()["root_key_check_value"])
            self.stop()
        self.assertEqual(len(kcvs), 1)
        self.assertEqual(self.log().count('msg="created the TPM-sealed root key"'), 1)
        self.assertEqual(self.log().count('msg="unsealed" root=tpm'), 20)
        state = tpm_state(sw.tcti)
        self.assertEqual(state, {"lockout_counter": 0, "in_lockout": 0, "transient": 0, "sessions": 0})
        self.assert_root_key_not_in_log(sw.tcti, auth_file)
        self.assert_no_secret_in_log(AUTH_VALUE)

    def test_f_wrong_auth_value_seals_with_the_reason_and_a_corrected_file_unseals(self):
        sw = self.swtpm()
        auth_file = os.path.join(self.dir, "tpm-auth")
        with open(auth_file, "w") as f:
            f.write(AUTH_VALUE)
        os.chmod(auth_file, 0o600)
        self.write_config(sw.tcti, initialize=True, auth_file=auth_file)
        self.start()
        self.wait_unsealed()
        ct = self.create_and_encrypt()
        self.stop()

        with open(auth_file, "w") as f:
            f.write("not-the-auth-value")
        self.start()
        reason = self.wait_sealed_with(r"wrong TPM auth value", "sealed: wrong auth value")
        self.assertNotIn("not-the-auth-value", reason)
        # Group-readable: refused before the TPM is asked, with the reason.
        os.chmod(auth_file, 0o640)
        self.wait_sealed_with(r"TPM auth value file .*readable", "sealed: auth file refused")
        with open(auth_file, "w") as f:
            f.write(AUTH_VALUE + "\n")
        os.chmod(auth_file, 0o600)
        self.wait_unsealed()
        self.assert_decrypts(ct)
        self.stop()
        state = tpm_state(sw.tcti)
        self.assertEqual((state["lockout_counter"], state["in_lockout"]), (0, 0), state)
        self.assert_no_secret_in_log(AUTH_VALUE, "not-the-auth-value")


if __name__ == "__main__":
    unittest.main(verbosity=2)
