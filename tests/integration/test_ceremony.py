"""The offline key ceremony through the real `rootseal` binary.

Two SoftHSM2 tokens (A, B) in one SOFTHSM2_CONF; five custodians with keys made
by the openssl tool (X25519, P-256, RSA-3072). init on A, every custodian runs
`share decrypt`, the typed shares 1, 3, 5 are piped into `restore --typed` on B,
`verify`, `audit`. The test reconstructs the root key itself from the typed
shares with an independent Shamir implementation (checked against the key
check value), then scans every file the CLI wrote and everything it printed
for the key. Also: the PIN is never an argument, refusals import nothing, and
a running `rootseal` has locked memory and no core dumps.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import time
import unittest

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from rootseal_testlib import ConfigDaemon, make_softhsm, rmtree, tempdir, write_private

ROOTSEAL = os.environ["ROOTSEAL_CLI"]
MODULE = os.environ.get("SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
CUSTODIANS = [("alice", "x25519"), ("bob", "p256"), ("carol", "rsa"), ("dave", "x25519"), ("erin", "p256")]


# --- an independent GF(2^8) / Shamir, written from the definition ------------
def gf_mul(a, b):
    r = 0
    for i in range(8):
        if (b >> i) & 1:
            r ^= a << i
    for i in range(15, 7, -1):
        if (r >> i) & 1:
            r ^= 0x11B << (i - 8)
    return r


def gf_inv(a):
    return next(b for b in range(1, 256) if gf_mul(a, b) == 1)


def shamir_combine(points):
    """points: {x: bytes}; Lagrange interpolation at 0."""
    xs = list(points)
    n = len(next(iter(points.values())))
    out = bytearray(n)
    for i in xs:
        num, den = 1, 1
        for j in xs:
            if j != i:
                num = gf_mul(num, j)
                den = gf_mul(den, j ^ i)
        basis = gf_mul(num, gf_inv(den))
        for b in range(n):
            out[b] ^= gf_mul(basis, points[i][b])
    return bytes(out)


def parse_typed(text):
    """The typed form printed by `share decrypt` -> (ceremony id, index, threshold, y): six lines
    (0x01, a 32-byte key) or nine (0x02, mechanism 3 = aes-cbc-pad-hmac, a 64-byte AES || HMAC key)."""
    chars = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        tokens = line.split()
        chars += "".join(tokens[1:-1])
    raw = base64.b32decode(chars)
    if raw[0] == 2:
        assert len(raw) == 90 and raw[19] == 3, len(raw)
        assert hashlib.sha256(b"rootseal-typed-share-v2" + raw[:84]).digest()[:6] == raw[84:]
        return raw[1:17].hex(), raw[17], raw[18], raw[20:84]
    assert len(raw) == 55 and raw[0] == 1, len(raw)
    return raw[1:17].hex(), raw[17], raw[18], raw[19:51]


def hmac_check(key):
    """The HMAC key's check value (docs/ceremony.md): HMAC-SHA256(key, "rootseal-hmac-kcv-v1")[0..3]."""
    return hmac.new(key, b"rootseal-hmac-kcv-v1", hashlib.sha256).digest()[:3].hex()


def asan_build(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def kcv(key):
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (enc.update(bytes(16)) + enc.finalize())[:3].hex()


class CeremonyTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempdir("rootseal-ceremony-")
        self.env = make_softhsm(os.path.join(self.dir, "hsm"), "A")
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "B", "--so-pin", "0000",
                        "--pin", "1234"], check=True, env=self.env, stdout=subprocess.DEVNULL)
        self.keys = os.path.join(self.dir, "keys")
        os.makedirs(self.keys)
        for name, kind in CUSTODIANS:
            key = os.path.join(self.keys, name + ".key")
            if kind == "x25519":
                gen = ["openssl", "genpkey", "-algorithm", "X25519", "-out", key]
            elif kind == "p256":
                gen = ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key]
            else:
                gen = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072", "-out", key]
            subprocess.run(gen, check=True, capture_output=True)
            subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", os.path.join(self.keys, name + ".pub")],
                           check=True)
        self.transcript = os.path.join(self.dir, "transcript")
        self.shares = os.path.join(self.dir, "shares")
        self.outputs = []  # every stdout/stderr of the CLI

    def tearDown(self):
        rmtree(self.dir)

    def rootseal(self, args, stdin=b"", expect=0, pin=b"1234\n"):
        """Runs rootseal with the PIN on fd 3 (never in argv)."""
        r_fd, w_fd = os.pipe()
        os.write(w_fd, pin)
        os.close(w_fd)
        try:
            argv = [ROOTSEAL] + args + (["--pin-fd", str(r_fd)] if "--module" in args else [])
            p = subprocess.run(argv, input=stdin, capture_output=True, env=self.env, timeout=120, pass_fds=(r_fd,))
        finally:
            os.close(r_fd)
        self.outputs += [p.stdout, p.stderr]
        self.assertEqual(p.returncode, expect, "rootseal %s\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")))
        return p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def token_args(self, token):
        return ["--module", MODULE, "--token", token]

    def objects(self, token):
        p = subprocess.run(["pkcs11-tool", "--module", MODULE, "--token-label", token, "--login", "--pin", "1234",
                            "--list-objects", "--type", "secrkey"], capture_output=True, env=self.env, check=True)
        return re.findall(r"label:\s+(\S+)", p.stdout.decode())

    def init(self, mechanism=None):
        args = ["ceremony", "init"] + self.token_args("A") + (["--mechanism", mechanism] if mechanism else []) + \
            ["--threshold", "3", "--out", self.shares,
                                                              "--transcript-dir", self.transcript,
                                                              "--officer", "Olga", "--witness", "Walt"]
        for name, _ in CUSTODIANS:
            args += ["--custodian", "%s=%s" % (name, os.path.join(self.keys, name + ".pub"))]
        out, _ = self.rootseal(args)
        files = sorted(os.listdir(self.shares))
        self.assertEqual(len(files), 5)
        with open(os.path.join(self.transcript, sorted(n for n in os.listdir(self.transcript) if n.endswith(".json"))[0])) as f:
            record = json.load(f)
        return record, [os.path.join(self.shares, f) for f in files], out

    def decrypt(self, share_file, index):
        name = CUSTODIANS[index][0]
        out, err = self.rootseal(["ceremony", "share", "decrypt", "--share", share_file, "--key",
                                  os.path.join(self.keys, name + ".key")])
        self.assertIn("checksum", err)
        return out

    def test_full_ceremony_restore_on_second_token_and_no_key_bytes_anywhere(self):
        record, files, _ = self.init()
        self.assertEqual(record["kind"], "init")
        self.assertEqual(record["shamir"]["threshold"], 3)
        self.assertEqual([c["key_type"] for c in record["custodians"]], ["x25519", "p256", "rsa", "x25519", "p256"])
        self.assertEqual(self.objects("A"), ["rootseal-root"])

        typed = [self.decrypt(files[i], i) for i in range(5)]
        for t in typed:
            lines = [l for l in t.splitlines() if l and not l.startswith("#")]
            self.assertEqual(len(lines), 6)
            self.assertRegex(lines[0], r"^01  [A-Z2-7]{4} [A-Z2-7]{4} [A-Z2-7]{4} [A-Z2-7]{4}  [A-Z2-7]{2}$")

        # The key, recovered independently from shares 2, 4, 5, matches the HSM's check value.
        parsed = [parse_typed(t) for t in typed]
        self.assertTrue(all(p[0] == record["ceremony_id"] for p in parsed))
        key = shamir_combine({parsed[i][1]: parsed[i][3] for i in (1, 3, 4)})
        self.assertEqual(kcv(key), record["root_key"]["kcv"])
        # Two shares do not give it.
        self.assertNotEqual(shamir_combine({parsed[i][1]: parsed[i][3] for i in (0, 1)}), key)

        # Restore on B from typed shares 1, 3, 5 on standard input.
        stdin = (typed[0] + typed[2] + typed[4]).encode()
        out, _ = self.rootseal(["ceremony", "restore"] + self.token_args("B") +
                               ["--typed", "--transcript-dir", self.transcript], stdin=stdin)
        self.assertIn(record["root_key"]["kcv"], out)
        self.assertEqual(self.objects("B"), ["rootseal-root"])
        out, _ = self.rootseal(["ceremony", "verify"] + self.token_args("B") + ["--transcript-dir", self.transcript])
        head = re.search(r"chain head \(the witness records it\): ([0-9a-f]{64})", out).group(1)
        out, _ = self.rootseal(["ceremony", "audit", "--transcript-dir", self.transcript, "--expect-head", head])
        self.assertIn("chain intact", out)

        # The key in no file the CLI wrote and in nothing it printed.
        needles = [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key),
                   base64.b32encode(key).rstrip(b"="), key[:16], key.hex()[:32].encode()]
        scanned = 0
        for folder in (self.shares, self.transcript):
            for root, _, names in os.walk(folder):
                for n in names:
                    with open(os.path.join(root, n), "rb") as f:
                        data = f.read()
                    scanned += 1
                    for needle in needles:
                        self.assertNotIn(needle, data, os.path.join(root, n))
        self.assertGreaterEqual(scanned, 5 + 3)
        for text in self.outputs:
            for needle in needles:
                self.assertNotIn(needle, text)

    def test_aes_cbc_pad_hmac_root_restored_on_second_token_checked_independently(self):
        record, files, out = self.init("aes-cbc-pad-hmac")
        rk = record["root_key"]
        self.assertEqual(rk["mechanism"], "aes-cbc-pad-hmac")
        self.assertEqual(rk["hmac_key"]["label"], "rootseal-root-hmac")
        self.assertIn("HMAC key 'rootseal-root-hmac' check value (computed by the HSM): " +
                      rk["hmac_key"]["check_value"], out)
        self.assertEqual(sorted(self.objects("A")), ["rootseal-root", "rootseal-root-hmac"])
        with open(files[0]) as f:
            share = json.load(f)
        self.assertEqual((share["format"], share["mechanism"]), ("rootseal-share-v2", "aes-cbc-pad-hmac"))

        typed = [self.decrypt(files[i], i) for i in range(5)]
        for t in typed:
            self.assertEqual(len([l for l in t.splitlines() if l and not l.startswith("#")]), 9)
        # Both keys, recovered independently from shares 1, 2, 4: the AES key's
        # KCV and the HMAC key's check value are the ones the HSM computed.
        parsed = [parse_typed(t) for t in typed]
        secret = shamir_combine({parsed[i][1]: parsed[i][3] for i in (0, 1, 3)})
        self.assertEqual(len(secret), 64)
        aes, mac = secret[:32], secret[32:]
        self.assertEqual(kcv(aes), rk["kcv"])
        self.assertEqual(hmac_check(mac), rk["hmac_key"]["check_value"])

        stdin = (typed[1] + typed[2] + typed[4]).encode()
        out, _ = self.rootseal(["ceremony", "restore"] + self.token_args("B") +
                               ["--typed", "--transcript-dir", self.transcript], stdin=stdin)
        self.assertIn(rk["hmac_key"]["check_value"], out)
        self.assertEqual(sorted(self.objects("B")), ["rootseal-root", "rootseal-root-hmac"])
        out, _ = self.rootseal(["ceremony", "verify"] + self.token_args("B") + ["--transcript-dir", self.transcript])
        self.assertIn("(aes-cbc-pad-hmac)", out)

        # Neither key in any file the CLI wrote or anything it printed.
        needles = []
        for key in (aes, mac, secret):
            needles += [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key),
                        base64.b32encode(key).rstrip(b"="), key[:16], key.hex()[:32].encode()]
        for folder in (self.shares, self.transcript):
            for root, _, names in os.walk(folder):
                for n in names:
                    with open(os.path.join(root, n), "rb") as f:
                        data = f.read()
                    for needle in needles:
                        self.assertNotIn(needle, data, os.path.join(root, n))
        for text in self.outputs:
            for needle in needles:
                self.assertNotIn(needle, text)

    def test_rootseald_after_rotations_between_mechanisms(self):
        """A ceremony root (aes-kwp) serves rootseald; rotate-root moves it to
        aes-cbc-pad-hmac and back; after each, rootseald unseals with the new
        mechanism (auto) and decrypts every ciphertext issued before."""
        d = ConfigDaemon("rootseal-ceremony-daemon-", "D", pin="1234")
        token = "rs.ceremony-daemon-token"
        rest = ("policies:\n  app:\n    keys: [\"k\"]\n    operations: [create, read, encrypt, decrypt]\n"
                "tokens:\n  - name: app\n    sha256: %s\n    policies: [app]\n"
                % hashlib.sha256(token.encode()).hexdigest())
        self.env = d.env
        custodians = []
        for name, _ in CUSTODIANS[:3]:
            custodians += ["--custodian", "%s=%s" % (name, os.path.join(self.keys, name + ".pub"))]
        split = ["--threshold", "2", "--transcript-dir", self.transcript] + custodians
        store = os.path.join(d.dir, "state", "rootseal.db")
        try:
            out, _ = self.rootseal(["ceremony", "init"] + self.token_args("D") + ["--out", self.shares] + split)
            write_private(d.p("pin"), "1234")
            d.write_config(rest=rest, pin_file=d.p("pin"))
            ciphertexts = []

            def serve(mechanism, kcv):
                """Starts rootseald, checks its root, decrypts every earlier ciphertext, adds one, stops."""
                d.start()
                d.wait_for(lambda: d.call("GET", "/v1/sys/health").status == 200, "unsealed", timeout=60)
                unsealed = [l for l in d.log().splitlines() if 'msg="unsealed"' in l]
                self.assertTrue(unsealed[-1].endswith(" mechanism=" + mechanism), unsealed[-1])
                self.assertEqual(d.call("GET", "/v1/sys/seal-status").json()["root_key_check_value"], kcv)
                if not ciphertexts:
                    self.assertEqual(d.call("POST", "/v1/transit/keys/k", {}, token=token).status // 100, 2)
                for i, ct in enumerate(ciphertexts):
                    r = d.call("POST", "/v1/transit/decrypt/k", {"ciphertext": ct}, token=token)
                    self.assertEqual(r.status, 200, r.data)
                    self.assertEqual(base64.b64decode(r.json()["data"]["plaintext"]), b"secret %d" % i)
                r = d.call("POST", "/v1/transit/encrypt/k",
                           {"plaintext": base64.b64encode(b"secret %d" % len(ciphertexts)).decode()}, token=token)
                self.assertEqual(r.status, 200, r.data)
                ciphertexts.append(r.json()["data"]["ciphertext"])
                self.assertEqual(d.stop(), 0)

            kcv0 = re.search(r"key check value \(computed by the HSM\): ([0-9a-f]{6})", out).group(1)
            serve("CKM_AES_KEY_WRAP_KWP", kcv0)
            for target, expected in (("aes-cbc-pad-hmac", "CKM_AES_CBC_PAD+CKM_SHA256_HMAC"),
                                     ("aes-kwp", "CKM_AES_KEY_WRAP_KWP")):
                out, _ = self.rootseal(["ceremony", "rotate-root"] + self.token_args("D") +
                                       ["--mechanism", target, "--store", store,
                                        "--out", os.path.join(self.dir, "shares-" + target)] + split)
                kcv = re.search(r"the root key is 'rootseal-root' \(kcv ([0-9a-f]{6})\)", out).group(1)
                self.assertIn("new root: " + target, out)
                serve(expected, kcv)
            self.assertEqual(len(ciphertexts), 3)
        finally:
            d.close()

    def test_mechanism_from_rootseald_yaml_unless_given(self):
        config = os.path.join(self.dir, "rootseald.yaml")
        with open(config, "w") as f:
            f.write("listen:\n  address: 127.0.0.1:8200\n  allow_plaintext: true\nstate_dir: %s/state\n"
                    "pkcs11:\n  module: %s\n  token_label: A\n  mechanism: aes-cbc-pad-hmac\n" % (self.dir, MODULE))
        out, _ = self.rootseal(["ceremony", "init"] + self.token_args("A") +
                               ["--config", config, "--no-backup", "--transcript-dir", self.transcript])
        self.assertIn("root mechanism aes-cbc-pad-hmac", out)
        self.assertEqual(sorted(self.objects("A")), ["rootseal-root", "rootseal-root-hmac"])
        # --mechanism wins over the configuration.
        out, _ = self.rootseal(["ceremony", "init"] + self.token_args("B") +
                               ["--config", config, "--mechanism", "aes-kwp", "--no-backup",
                                "--transcript-dir", self.transcript])
        self.assertIn("root mechanism aes-kwp", out)
        self.assertEqual(self.objects("B"), ["rootseal-root"])

    def test_rsa_oaep_needs_no_backup_and_a_token_doing_oaep_sha256(self):
        _, err = self.rootseal(["ceremony", "init"] + self.token_args("A") +
                               ["--mechanism", "rsa-oaep", "--transcript-dir", self.transcript], expect=1)
        self.assertIn("an rsa-oaep root cannot be backed up in shares", err)
        # SoftHSM 2.6 does OAEP with SHA-1 only: the generated pair fails the
        # self-test and is destroyed (opencryptoki: integration_hsm_probe).
        _, err = self.rootseal(["ceremony", "init"] + self.token_args("A") +
                               ["--mechanism", "rsa-oaep", "--no-backup", "--transcript-dir", self.transcript],
                               expect=1)
        self.assertIn("does not decrypt with CKM_RSA_PKCS_OAEP (SHA-256, MGF1-SHA-256)", err)
        p = subprocess.run(["pkcs11-tool", "--module", MODULE, "--token-label", "A", "--login", "--pin", "1234",
                            "--list-objects"], capture_output=True, env=self.env, check=True)
        self.assertNotIn(b"rootseal-root", p.stdout)

    def test_refusals_import_nothing(self):
        record, files, _ = self.init()
        key = lambda i: os.path.join(self.keys, CUSTODIANS[i][0] + ".key")
        restore = ["ceremony", "restore"] + self.token_args("B") + ["--transcript-dir", self.transcript]

        edited = os.path.join(self.dir, "edited.json")
        with open(files[2]) as f:
            share = json.load(f)
        ct = bytearray(base64.b64decode(share["encryption"]["ciphertext"]))
        ct[5] ^= 1
        share["encryption"]["ciphertext"] = base64.b64encode(bytes(ct)).decode()
        with open(edited, "w") as f:
            json.dump(share, f)
        _, err = self.rootseal(restore + ["--share", files[0], "--key", key(0), "--share", edited, "--key", key(2),
                                          "--share", files[4], "--key", key(4)], expect=1)
        self.assertIn("does not decrypt", err)
        _, err = self.rootseal(restore + ["--share", files[0], "--key", key(1), "--share", files[2], "--key", key(2),
                                          "--share", files[4], "--key", key(4)], expect=1)
        self.assertIn("wrong custodian key", err)
        _, err = self.rootseal(restore + ["--share", files[0], "--key", key(0), "--share", files[0], "--key", key(0),
                                          "--share", files[4], "--key", key(4)], expect=1)
        self.assertIn("given twice", err)
        typed = self.decrypt(files[1], 1)
        bad = re.sub(r"(?m)^02  ([A-Z2-7])", lambda m: "02  " + ("B" if m.group(1) == "A" else "A"), typed)
        _, err = self.rootseal(restore + ["--typed"], stdin=bad.encode(), expect=1)
        # Caught on its line (or, one time in 1024, by the whole-share check).
        self.assertRegex(err, r"line 02: checksum mismatch|as a whole")
        _, err = self.rootseal(restore + ["--share", files[0], "--key", key(0), "--share", files[1], "--key", key(1)],
                               expect=1)
        self.assertIn("needs 3 shares", err)
        self.assertEqual(self.objects("B"), [])
        # The refusals are recorded; the chain stays intact.
        out, _ = self.rootseal(["ceremony", "audit", "--transcript-dir", self.transcript])
        self.assertEqual(len(re.findall(r"\srestore-failed\s", out)), 5)
        self.assertIn("chain intact", out)

    def test_pin_is_never_an_argument_and_wrong_pin_is_refused(self):
        p = subprocess.run([ROOTSEAL, "ceremony", "verify", "--module", MODULE, "--token", "A", "--pin", "1234",
                            "--transcript-dir", self.transcript], capture_output=True, env=self.env)
        self.assertEqual(p.returncode, 2)
        # No terminal and no --pin-fd: a clear message instead of a hang.
        p = subprocess.run([ROOTSEAL, "ceremony", "init", "--module", MODULE, "--token", "A", "--no-backup",
                            "--transcript-dir", self.transcript], capture_output=True, env=self.env,
                           stdin=subprocess.DEVNULL, start_new_session=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("--pin-fd", p.stderr.decode())
        _, err = self.rootseal(["ceremony", "init"] + self.token_args("A") + ["--no-backup", "--transcript-dir",
                                                                              self.transcript],
                               pin=b"9999\n", expect=1)
        self.assertIn("PIN is incorrect", err)
        self.assertEqual(self.objects("A"), [])
        out, err = self.rootseal(["ceremony", "init"] + self.token_args("A") + ["--no-backup", "--transcript-dir",
                                                                                self.transcript])
        self.assertIn("can never be restored", err)
        self.assertEqual(self.objects("A"), ["rootseal-root"])

    def test_running_cli_has_locked_memory_and_no_core_dumps(self):
        record, files, _ = self.init()
        typed = self.decrypt(files[0], 0)
        r_fd, w_fd = os.pipe()
        os.write(w_fd, b"1234\n")
        os.close(w_fd)
        proc = subprocess.Popen([ROOTSEAL, "ceremony", "restore"] + self.token_args("B") +
                                ["--typed", "--transcript-dir", self.transcript, "--pin-fd", str(r_fd)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env,
                                pass_fds=(r_fd,))
        os.close(r_fd)
        try:
            # One share typed; the CLI now holds it and waits for the next.
            proc.stdin.write(typed.encode())
            proc.stdin.flush()
            deadline = time.monotonic() + 30
            vmlck = 0
            while time.monotonic() < deadline and vmlck == 0 and not asan_build(proc.pid):
                with open("/proc/%d/status" % proc.pid) as f:
                    vmlck = int(re.search(r"VmLck:\s+(\d+)", f.read()).group(1))
                time.sleep(0.05)
            if not asan_build(proc.pid):  # ASan makes mlock() a no-op: VmLck is 0 in sanitizer builds
                self.assertGreater(vmlck, 0)
            # The CLI hardens itself first thing after exec; poll (bounded) rather
            # than race its start-up (sanitizer builds skip the VmLck wait above).
            core = None
            while time.monotonic() < deadline:
                with open("/proc/%d/limits" % proc.pid) as f:
                    core = re.search(r"Max core file size\s+(\S+)\s+(\S+)", f.read()).groups()
                if core == ("0", "0"):
                    break
                time.sleep(0.05)
            self.assertEqual(core, ("0", "0"))
            # Killed only once it waits for the next share (blocked reading its
            # standard input, seen three polls in a row): a SIGKILL while
            # SoftHSM2 writes its token files (logging in) can leave token B
            # unreadable, which would be the simulator's damage, not the CLI's.
            # (Without ASan the VmLck wait above already comes after that.)
            blocked = 0
            while time.monotonic() < deadline and blocked < 3:
                with open("/proc/%d/syscall" % proc.pid) as f:
                    call = f.read().split()
                blocked = blocked + 1 if call[:2] == ["0", "0x0"] else 0  # read(2) on fd 0 (x86-64)
                time.sleep(0.05)
            self.assertEqual(blocked, 3, "the CLI never waited for the next share")
        finally:
            proc.kill()
            proc.communicate()
        self.assertEqual(self.objects("B"), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
