"""`rootseal hsm probe` against three independent PKCS#11 implementations
(SoftHSM2, opencryptoki's software token, tpm2-pkcs11 over swtpm) and
p11-kit's proxy module in front of SoftHSM2, each
started here from scratch (pkcs11_impls.py). What the probe reports is checked
against a second, independent client (OpenSC's pkcs11-tool --list-mechanisms)
and against what each implementation is known to offer; rootseald on a token
without KWP or GCM stays sealed with a reason naming what the token offers.

Runs as root: opencryptoki's paths are fixed by the package, so this process
moves into a private mount and IPC namespace first (the host's
/var/lib/opencryptoki, /var/run and SysV shared memory are never touched)."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import unittest

import pkcs11_impls
from rootseal_testlib import ConfigDaemon, write_private

ROOTSEAL_CLI = os.environ.get("ROOTSEAL_CLI", "")
STORE_TOOL = os.environ.get("CEREMONY_STORE_TOOL", "")
# The steps of a rotation from an rsa-oaep root to aes-cbc-pad-hmac (the
# crash points of `rootseal ceremony rotate-root`, docs/ceremony.md).
RSA_TO_CBC_POINTS = ["root-key-held", "shares-written", "hmac-key-imported", "new-key-imported", "rotation-recorded",
                     "rewrap-before-commit", "rewrap-committed", "old-key-copied", "old-key-retired",
                     "new-hmac-copied", "new-key-copied", "new-key-promoted", "new-hmac-promoted"]
# ... and from an aes-cbc-pad-hmac root to a new rsa-oaep pair (--no-backup).
CBC_TO_RSA_POINTS = ["new-key-imported", "rotation-recorded", "rewrap-before-commit", "rewrap-committed",
                     "old-key-copied", "old-key-retired", "old-hmac-copied", "old-hmac-retired", "new-key-copied",
                     "new-key-promoted"]

# pkcs11-tool's names (OpenSC's table) of the mechanisms the verdicts rest on.
OPENSC_IDS = {
    "AES-KEY-GEN": 0x1080, "AES-ECB": 0x1081, "AES-CBC": 0x1082, "AES-CBC-PAD": 0x1085, "AES-CTR": 0x1086,
    "AES-GCM": 0x1087, "AES-KEY-WRAP": 0x2109, "AES-KEY-WRAP-PAD": 0x210A, "SHA256-HMAC": 0x251,
    "RSA-PKCS-KEY-PAIR-GEN": 0x0, "RSA-PKCS": 0x1, "RSA-X-509": 0x3, "RSA-PKCS-OAEP": 0x9,
    "GENERIC-SECRET-KEY-GEN": 0x350, "SHA256": 0x250, "SHA-1": 0x220,
}

# pkcs11-tool's words for the elliptic-curve flags.
OPENSC_FLAGS = {
    "EC F_P": "ec_f_p", "EC F_2M": "ec_f_2m", "EC parameters": "ec_parameters", "EC OID": "ec_oid",
    "EC uncompressed": "ec_uncompress", "EC compressed": "ec_compress", "EC curve name": "ec_curvename",
}

# What each implementation, as Debian 12 ships it, lets this build use.
EXPECTED_USABLE = {
    "softhsm2": ["aes-kwp", "aes-gcm", "aes-cbc-pad-hmac", "rsa-oaep"],
    "opencryptoki": ["aes-cbc-pad-hmac", "rsa-oaep"],
    "tpm2-pkcs11": ["aes-cbc-pad-hmac", "rsa-oaep"],
    "p11-kit-proxy": ["aes-kwp", "aes-gcm", "aes-cbc-pad-hmac", "rsa-oaep"],
}
# ... and what the token offers of the fallbacks issue 19 adds.
EXPECTED_OFFERED = {
    "softhsm2": ["aes-kwp", "aes-gcm", "aes-cbc-pad-hmac", "rsa-oaep"],
    "opencryptoki": ["aes-cbc-pad-hmac", "rsa-oaep"],
    "tpm2-pkcs11": ["aes-cbc-pad-hmac", "rsa-oaep"],
    "p11-kit-proxy": ["aes-kwp", "aes-gcm", "aes-cbc-pad-hmac", "rsa-oaep"],
}

# What the refusals say opencryptoki's software token offers.
OPENCRYPTOKI_OFFERS = (
    "CKM_AES_KEY_GEN (generate), CKM_AES_CBC_PAD (encrypt, decrypt, wrap, unwrap), "
    "CKM_AES_CBC (encrypt, decrypt, wrap, unwrap), CKM_AES_ECB (encrypt, decrypt, wrap, unwrap), "
    "CKM_SHA256_HMAC (sign, verify), CKM_GENERIC_SECRET_KEY_GEN (generate), "
    "CKM_RSA_PKCS_KEY_PAIR_GEN (generate_key_pair), CKM_RSA_PKCS_OAEP (encrypt, decrypt, wrap, unwrap)")


def pkcs11_tool_mechanisms(tok):
    """[(name, id or None, (min, max) or None, set of flags)] in the token's order."""
    out = subprocess.run(["pkcs11-tool", "--module", tok.module, "--token-label", tok.label, "--list-mechanisms"],
                         env=tok.env, check=True, capture_output=True, text=True).stdout
    lines = out.splitlines()
    assert lines and lines[0].startswith("Supported mechanisms"), out
    result = []
    for line in lines[1:]:
        if not line.startswith("  "):
            continue
        parts = [p.strip() for p in re.split(r",\s*(?![^{]*\})", line.strip())]
        name = parts[0]
        mid = int(name[len("mechtype-"):], 16) if name.startswith("mechtype-") else OPENSC_IDS.get(name)
        size = None
        flags = set()
        for p in parts[1:]:
            m = re.fullmatch(r"keySize=\{(\d+),(\d+)\}", p)
            if m:
                size = (int(m.group(1)), int(m.group(2)))
            else:
                flags.add(OPENSC_FLAGS.get(p, p.replace("other flags=", "other_flags=")))
        result.append((name, mid, size, flags))
    return result


def verdicts_from_pkcs11_tool(mechs):
    """Which root mechanisms the token offers, worked out from pkcs11-tool's listing alone."""
    by_id = {mid: (size, flags) for _, mid, size, flags in mechs if mid is not None}

    def has(mid, *flags, min_max=0):
        if mid not in by_id:
            return False
        size, fl = by_id[mid]
        return set(flags) <= fl and (size is None or size[1] == 0 or size[1] >= min_max)

    offered = []
    if has(0x210A, "wrap", "unwrap", min_max=32):
        offered.append("aes-kwp")
    if has(0x1087, "encrypt", "decrypt", min_max=32):
        offered.append("aes-gcm")
    if has(0x1085, "encrypt", "decrypt", min_max=32) and has(0x251, "sign", "verify"):
        offered.append("aes-cbc-pad-hmac")
    if has(0x0, "generate_key_pair", min_max=3072) and has(0x9, "encrypt", "decrypt", min_max=3072):
        offered.append("rsa-oaep")
    return offered


class HsmProbeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        assert ROOTSEAL_CLI, "ROOTSEAL_CLI is not set"
        pkcs11_impls.enter_private_namespace()
        cls.base = pkcs11_impls.tempfile_dir("rootseal-hsmprobe-")
        cls.tokens = {}
        try:
            for name, start in (("softhsm2", pkcs11_impls.softhsm2), ("opencryptoki", pkcs11_impls.opencryptoki),
                                ("tpm2-pkcs11", pkcs11_impls.tpm2_pkcs11)):
                d = os.path.join(cls.base, name)
                os.makedirs(d)
                cls.tokens[name] = start(d)
            d = os.path.join(cls.base, "p11-kit-proxy")
            os.makedirs(d)
            cls.tokens["p11-kit-proxy"] = pkcs11_impls.p11kit_proxy(d, cls.tokens["softhsm2"])
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for tok in cls.tokens.values():
            tok.stop()
        pkcs11_impls.remove(cls.base)

    def probe(self, tok, *extra, check=True):
        r = subprocess.run([ROOTSEAL_CLI, "hsm", "probe", "--module", tok.module, "--token", tok.label, *extra],
                           env=tok.env, capture_output=True, text=True, timeout=120)
        if check:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def check_implementation(self, name):
        tok = self.tokens[name]
        doc = json.loads(self.probe(tok, "--json").stdout)
        theirs = pkcs11_tool_mechanisms(tok)
        ours = doc["mechanisms"]

        # The same mechanisms, in the same order, with the same key sizes and flags.
        self.assertGreater(len(theirs), 0)
        self.assertEqual(len(ours), len(theirs), [m["name"] for m in ours])
        known_ids = 0
        for mine, (tname, tid, tsize, tflags) in zip(ours, theirs):
            what = "%s: ours %s, pkcs11-tool %s" % (name, mine, tname)
            if tid is not None:
                self.assertEqual(int(mine["type"], 16), tid, what)
                known_ids += 1
            self.assertEqual((mine["min_key_size"], mine["max_key_size"]), tsize or (0, 0), what)
            self.assertEqual(set(mine["flag_names"]), tflags, what)
        self.assertGreaterEqual(known_ids, 5, "too few mechanisms identified by both clients")

        # The verdicts: what the listing supports, and what this build can use.
        roots = {v["mechanism"]: v for v in doc["root_mechanisms"]}
        self.assertEqual(list(roots), ["aes-kwp", "aes-gcm", "aes-cbc-pad-hmac", "rsa-oaep"])
        offered = [n for n, v in roots.items() if v["offered_by_token"]]
        self.assertEqual(offered, verdicts_from_pkcs11_tool(theirs))
        self.assertEqual(offered, EXPECTED_OFFERED[name])
        for n, v in roots.items():
            self.assertTrue(v["supported_by_this_build"], n)
            self.assertEqual(v["usable"], v["offered_by_token"] and v["supported_by_this_build"], n)
            self.assertEqual(v["missing"] == "", v["offered_by_token"], n)
        self.assertEqual(doc["usable_root_mechanisms"], EXPECTED_USABLE[name])
        self.assertEqual(doc["token"]["label"], tok.label)
        self.assertIn("token_initialized", doc["token"]["flag_names"])
        self.assertIn("user_pin_initialized", doc["token"]["flag_names"])

        # The text form says the same.
        text = self.probe(tok).stdout
        self.assertIn("PKCS#11 token '%s' in %s" % (tok.label, tok.module), text)
        self.assertIn("mechanisms (%d;" % len(ours), text)
        for m in ours:
            self.assertRegex(text, r"(?m)^  %s +%s +key size %d\.\.%d " % (
                re.escape(m["name"]), m["type"], m["min_key_size"], m["max_key_size"]))
        for n, v in roots.items():
            status = ("usable" if v["usable"] else
                      "offered by the token; not supported by this build" if v["offered_by_token"] else
                      "not offered (lacks ")
            self.assertRegex(text, r"(?m)^  %s +%s" % (re.escape(n), re.escape(status)))
        if EXPECTED_USABLE[name]:
            self.assertIn("rootseal can hold its root key in this token with: " +
                          ", ".join(EXPECTED_USABLE[name]) + "\n", text)
        else:
            self.assertIn("rootseal cannot hold its root key in this token", text)
        return doc

    def test_softhsm2(self):
        doc = self.check_implementation("softhsm2")
        self.assertEqual(doc["token"]["manufacturer"], "SoftHSM project")

    def test_opencryptoki(self):
        doc = self.check_implementation("opencryptoki")
        self.assertEqual(doc["token"]["model"], "IBM SoftTok")

    def test_tpm2_pkcs11(self):
        doc = self.check_implementation("tpm2-pkcs11")
        self.assertEqual(doc["token"]["manufacturer"], "IBM")  # swtpm's TPM manufacturer

    def test_p11kit_proxy(self):
        doc = self.check_implementation("p11-kit-proxy")
        self.assertEqual(doc["module"], pkcs11_impls.P11KIT_PROXY_MODULE)
        # The proxy forwards SoftHSM2's token and mechanisms unchanged.
        direct = json.loads(self.probe(self.tokens["softhsm2"], "--json").stdout)
        self.assertEqual(doc["token"], direct["token"])
        self.assertEqual(doc["mechanisms"], direct["mechanisms"])

    def test_rootseald_unseals_through_p11kit_proxy(self):
        tok = self.tokens["p11-kit-proxy"]
        d = ConfigDaemon("rootseal-hsmprobe-daemon-", "unused", pin="12345678")
        try:
            self.write_daemon_config(d, tok)
            d.start(env=tok.env)
            d.wait_for(lambda: d.call("GET", "/v1/sys/health").status == 200, "unsealed through p11-kit's proxy")
            status = d.call("GET", "/v1/sys/seal-status").json()
            self.assertFalse(status["sealed"])
        finally:
            d.close()

    def run_with_pin(self, tok, args, pin=None):
        """rootseal ARGS with tok's PIN (or `pin`) on a pipe passed as --pin-fd."""
        r_fd, w_fd = os.pipe()
        os.write(w_fd, (tok.pin if pin is None else pin).encode() + b"\n")
        os.close(w_fd)
        try:
            return subprocess.run([ROOTSEAL_CLI] + args + ["--pin-fd", str(r_fd)], env=tok.env, capture_output=True,
                                  text=True, timeout=120, pass_fds=(r_fd,))
        finally:
            os.close(r_fd)

    def run_killed_at(self, tok, args, point):
        """rootseal ARGS with tok's PIN, SIGKILLed at crash point `point`."""
        r_fd, w_fd = os.pipe()
        os.write(w_fd, tok.pin.encode() + b"\n")
        os.close(w_fd)
        try:
            k = subprocess.run([ROOTSEAL_CLI] + args + ["--pin-fd", str(r_fd)],
                               env=dict(tok.env, ROOTSEAL_TEST_CRASH_AT=point), capture_output=True, text=True,
                               timeout=300, pass_fds=(r_fd,))
        finally:
            os.close(r_fd)
        self.assertEqual(k.returncode, -9, "%s: %s%s" % (point, k.stdout, k.stderr))

    def store_tool(self, tok, *args):
        """ceremony_store_tool ARGS on tok; its standard output split in words."""
        self.assertTrue(STORE_TOOL, "CEREMONY_STORE_TOOL is not set")
        r = subprocess.run([STORE_TOOL, *args], capture_output=True, text=True, timeout=300,
                           env=dict(tok.env, SOFTHSM2_MODULE=tok.module, TEST_PIN=tok.pin))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout.split()

    def store_opens(self, tok, db, samples, labels):
        """(kcv, mechanism) of the root under one of `labels` that opens the
        store `db` and decrypts its 20 keys' samples."""
        out = self.store_tool(tok, "check", db, tok.label, samples, *labels)
        self.assertEqual((out[0], out[3]), ("OPENS", "20"))
        return out[2], out[4]

    def root_and_store(self, tok, work, label, mechanism):
        """A root `label` made by `ceremony init --no-backup` and a store of 20
        keys under it in `work`: (transcript folder, store, samples, kcv)."""
        transcript = os.path.join(work, "transcript-" + label)
        db, samples = os.path.join(work, label + ".db"), os.path.join(work, "samples-" + label)
        r = self.run_with_pin(tok, ["ceremony", "init", "--module", tok.module, "--token", tok.label, "--key-label",
                                    label, "--mechanism", mechanism, "--no-backup", "--transcript-dir", transcript])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.store_tool(tok, "populate", db, tok.label, label, "20", samples)
        kcv, mech = self.store_opens(tok, db, samples, [label])
        self.assertEqual(mech, mechanism)
        return transcript, db, samples, kcv

    def rotate_killed_and_resumed(self, tok, label, transcript, db, samples, extra, point, mechanisms):
        """rotate-root of `label` (with `extra` arguments) SIGKILLed at
        `point`; the store opens under the root or its temporary label (with
        one of `mechanisms`), never neither; --resume then finishes (or
        abandons) it. (recorded, kcv, mechanism) of the store's root after."""
        rotate = ["ceremony", "rotate-root", "--module", tok.module, "--token", tok.label, "--key-label", label,
                  "--store", db, "--transcript-dir", transcript]
        self.run_killed_at(tok, rotate + extra, point)
        _, mech = self.store_opens(tok, db, samples, [label, label + ".next"])
        self.assertIn(mech, mechanisms, point)
        r = self.run_with_pin(tok, rotate + ["--resume"])
        self.assertEqual(r.returncode, 0, "%s: %s" % (point, r.stderr))
        return ("resuming root rotation" in r.stdout,) + self.store_opens(tok, db, samples, [label])

    def token_object_labels(self, tok):
        r = subprocess.run(["pkcs11-tool", "--module", tok.module, "--token-label", tok.label, "--login", "--pin",
                            tok.pin, "--list-objects"], env=tok.env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        return re.findall(r"label:\s+(\S+)\n", r.stdout)

    def probe_keys(self, tok, *extra):
        r = self.run_with_pin(tok, ["hsm", "probe", "--module", tok.module, "--token", tok.label, "--json", *extra])
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["root_keys"]

    def test_pin_fd_lists_the_root_key_objects(self):
        d = os.path.join(self.base, "softhsm2-keys")
        os.makedirs(d)
        tok = pkcs11_impls.softhsm2(d)
        # A fresh token: none. Without --pin-fd the JSON has no root_keys at all.
        self.assertEqual(self.probe_keys(tok), {"label": "rootseal-root", "objects": []})
        self.assertNotIn("root_keys", json.loads(self.probe(tok, "--json").stdout))
        # The ceremony makes one; the probe shows it with the check value the ceremony printed.
        r = self.run_with_pin(tok, ["ceremony", "init", "--module", tok.module, "--token", tok.label, "--no-backup",
                                    "--transcript-dir", os.path.join(d, "transcript")])
        self.assertEqual(r.returncode, 0, r.stderr)
        kcv = re.search(r"key check value \(computed by the HSM\): ([0-9a-f]{6})", r.stdout).group(1)
        keys = self.probe_keys(tok)
        self.assertEqual(len(keys["objects"]), 1)
        k = keys["objects"][0]
        self.assertEqual((k["kcv"], k["aes"], k["value_len"], k["sensitive"], k["extractable"], k["valid_root_key"]),
                         (kcv, True, 32, True, False, True))
        text = self.run_with_pin(tok, ["hsm", "probe", "--module", tok.module, "--token", tok.label]).stdout
        self.assertIn("root key objects labelled 'rootseal-root' (logged in as the user): 1\n"
                      "  check value %s: AES-256, token, private, sensitive, not extractable, wrap, unwrap; "
                      "a valid root key\n" % kcv, text)
        # A key made by another client with its defaults (readable: not CKA_SENSITIVE) is no root key.
        subprocess.run(["pkcs11-tool", "--module", tok.module, "--token-label", tok.label, "--login", "--pin", tok.pin,
                        "--keygen", "--key-type", "AES:32", "--label", "other"], env=tok.env, check=True,
                       capture_output=True)
        other = self.probe_keys(tok, "--key-label", "other")["objects"]
        self.assertEqual([(o["aes"], o["value_len"], o["sensitive"], o["valid_root_key"]) for o in other],
                         [(True, 32, False, False)])
        # A wrong PIN: refused, nothing printed.
        r = self.run_with_pin(tok, ["hsm", "probe", "--module", tok.module, "--token", tok.label], pin="11111111")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertIn("PKCS#11 token 'rootseal': the user PIN is incorrect", r.stderr)

    def test_pin_fd_on_a_token_without_kwp_or_gcm(self):
        # Looking is allowed where the ceremony would refuse.
        self.assertEqual(self.probe_keys(self.tokens["opencryptoki"]), {"label": "rootseal-root", "objects": []})

    def test_unknown_token(self):
        tok = self.tokens["softhsm2"]
        r = subprocess.run([ROOTSEAL_CLI, "hsm", "probe", "--module", tok.module, "--token", "no-such-token"],
                           env=tok.env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("PKCS#11 token 'no-such-token' not found in " + tok.module, r.stderr)
        self.assertEqual(r.stdout, "")

    @staticmethod
    def write_daemon_config(d, tok, mechanism="auto", key_label="rootseal-root", rest=""):
        """rootseald.yaml in d's folder: the token `tok`, a generated root key, its PIN from a file."""
        pin_file = d.p("pin")
        write_private(pin_file, tok.pin)
        with open(d.config, "w") as f:
            f.write("listen:\n  address: 127.0.0.1:%d\n  allow_plaintext: true\nstate_dir: %s/state\n"
                    "pkcs11:\n  module: %s\n  token_label: %s\n  generate_key: true\n  mechanism: %s\n"
                    "  key_label: %s\n"
                    "pin:\n  sources: [file]\n  file: %s\nseal:\n  probe_interval: 200ms\n%s"
                    % (d.port, d.dir, tok.module, tok.label, mechanism, key_label, pin_file, rest))

    def check_rootseald_round_trip(self, name, mechanism, expected, key_label):
        """rootseald on token `name` with pkcs11.mechanism `mechanism` unseals
        with `expected`, creates a key, encrypts; restarted, decrypts it."""
        tok = self.tokens[name]
        d = ConfigDaemon("rootseal-hsmmech-daemon-", "unused", pin="12345678")
        token = "rs.mechanism-test-token"
        rest = ("policies:\n  app:\n    keys: [\"k\"]\n    operations: [create, read, encrypt, decrypt]\n"
                "tokens:\n  - name: app\n    sha256: %s\n    policies: [app]\n"
                % hashlib.sha256(token.encode()).hexdigest())
        try:
            self.write_daemon_config(d, tok, mechanism, key_label, rest)
            d.start(env=tok.env)
            d.wait_for(lambda: d.call("GET", "/v1/sys/health").status == 200,
                       "unsealed on %s with %s" % (name, mechanism), timeout=120)
            self.assertRegex(d.log(), r'msg="unsealed" root=pkcs11 keys=\d+ versions=\d+ unseal_ms=\d+ keyring_key=1 keyring_key_kcv=[0-9a-f]{6} mechanism=%s\n'
                             % re.escape(expected))
            kcv = d.call("GET", "/v1/sys/seal-status").json()["root_key_check_value"]
            self.assertRegex(kcv, "^[0-9a-f]{6}$")
            self.assertEqual(d.call("POST", "/v1/transit/keys/k", {}, token=token).status // 100, 2)
            r = d.call("POST", "/v1/transit/encrypt/k", {"plaintext": "aGVsbG8="}, token=token)
            self.assertEqual(r.status, 200, r.data)
            ct = r.json()["data"]["ciphertext"]
            self.assertEqual(d.stop(), 0)
            d.start(env=tok.env)
            d.wait_for(lambda: d.call("GET", "/v1/sys/health").status == 200, "unsealed again", timeout=120)
            self.assertEqual(d.call("GET", "/v1/sys/seal-status").json()["root_key_check_value"], kcv)
            r = d.call("POST", "/v1/transit/decrypt/k", {"ciphertext": ct}, token=token)
            self.assertEqual(r.status, 200, r.data)
            self.assertEqual(r.json()["data"]["plaintext"], "aGVsbG8=")
        finally:
            d.close()

    def test_ceremony_refuses_a_mechanism_opencryptoki_lacks(self):
        tok = self.tokens["opencryptoki"]
        transcript = os.path.join(self.base, "ceremony-transcript-refused")
        r = self.run_with_pin(tok, ["ceremony", "init", "--module", tok.module, "--token", tok.label, "--no-backup",
                                    "--mechanism", "aes-kwp", "--key-label", "root-refused",
                                    "--transcript-dir", transcript])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("--mechanism aes-kwp: token '%s' cannot hold a aes-kwp root: it lacks CKM_AES_KEY_WRAP_PAD or "
                      "CKM_AES_KEY_WRAP_KWP (wrap, unwrap)" % tok.label, r.stderr)
        self.assertEqual(self.probe_keys(tok, "--key-label", "root-refused")["objects"], [])

    def test_ceremony_root_moves_from_softhsm2_to_opencryptoki(self):
        """An aes-cbc-pad-hmac root made by the ceremony on SoftHSM2 serves
        rootseald there; restored from the shares onto opencryptoki's token
        (another implementation), rootseald there opens the same state and
        decrypts what the first one encrypted."""
        src, dst = self.tokens["softhsm2"], self.tokens["opencryptoki"]
        work = os.path.join(self.base, "moved")
        os.makedirs(work)
        transcript, shares = os.path.join(work, "transcript"), os.path.join(work, "shares")
        custodians = []
        for name in ("alice", "bob", "carol"):
            key, pub = os.path.join(work, name + ".key"), os.path.join(work, name + ".pub")
            subprocess.run(["openssl", "genpkey", "-algorithm", "X25519", "-out", key], check=True,
                           capture_output=True)
            subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
            custodians += ["--custodian", "%s=%s" % (name, pub)]
        label = "root-moved"
        r = self.run_with_pin(src, ["ceremony", "init", "--module", src.module, "--token", src.label, "--key-label",
                                    label, "--mechanism", "aes-cbc-pad-hmac", "--threshold", "2", "--out", shares,
                                    "--transcript-dir", transcript] + custodians)
        self.assertEqual(r.returncode, 0, r.stderr)
        kcv = re.search(r"key check value \(computed by the HSM\): ([0-9a-f]{6})", r.stdout).group(1)
        mac = re.search(r"HMAC key '%s-hmac' check value \(computed by the HSM\): ([0-9a-f]{6})" % label,
                        r.stdout).group(1)

        token = "rs.moved-root-token"
        rest = ("policies:\n  app:\n    keys: [\"k\"]\n    operations: [create, read, encrypt, decrypt]\n"
                "tokens:\n  - name: app\n    sha256: %s\n    policies: [app]\n"
                % hashlib.sha256(token.encode()).hexdigest())
        first = ConfigDaemon("rootseal-moved-a-", "unused", pin="12345678")
        second = ConfigDaemon("rootseal-moved-b-", "unused", pin="12345678")
        try:
            self.write_daemon_config(first, src, "auto", label, rest)
            first.start(env=src.env)
            first.wait_for(lambda: first.call("GET", "/v1/sys/health").status == 200, "unsealed on SoftHSM2",
                           timeout=120)
            self.assertIn("mechanism=CKM_AES_CBC_PAD+CKM_SHA256_HMAC", first.log())
            self.assertEqual(first.call("GET", "/v1/sys/seal-status").json()["root_key_check_value"], kcv)
            self.assertEqual(first.call("POST", "/v1/transit/keys/k", {}, token=token).status // 100, 2)
            r = first.call("POST", "/v1/transit/encrypt/k", {"plaintext": "bW92ZWQ="}, token=token)
            self.assertEqual(r.status, 200, r.data)
            ct = r.json()["data"]["ciphertext"]
            self.assertEqual(first.stop(), 0)

            # Two custodians' share files restore both keys onto opencryptoki.
            files = sorted(os.listdir(shares))
            r = self.run_with_pin(dst, ["ceremony", "restore", "--module", dst.module, "--token", dst.label,
                                        "--key-label", label, "--transcript-dir", transcript,
                                        "--share", os.path.join(shares, files[0]), "--key",
                                        os.path.join(work, "alice.key"),
                                        "--share", os.path.join(shares, files[2]), "--key",
                                        os.path.join(work, "carol.key")])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(kcv, r.stdout)
            self.assertIn(mac, r.stdout)
            aes = self.probe_keys(dst, "--key-label", label)["objects"]
            hmac_key = self.probe_keys(dst, "--key-label", label + "-hmac")["objects"]
            self.assertEqual(len(aes), 1)
            self.assertEqual(len(hmac_key), 1)
            # opencryptoki keeps no CKA_CHECK_VALUE: the token computes the KCV (CBC-PAD, zero IV).
            self.assertEqual((aes[0]["kcv"], aes[0]["valid_root_key"], aes[0]["encrypt"], aes[0]["wrap"]),
                             (kcv, True, True, False))
            self.assertEqual((hmac_key[0]["kcv"], hmac_key[0]["sensitive"], hmac_key[0]["extractable"]),
                             (mac, True, False))
            state = os.path.join(first.dir, "state")
            r = self.run_with_pin(dst, ["ceremony", "verify", "--module", dst.module, "--token", dst.label,
                                        "--key-label", label, "--transcript-dir", transcript,
                                        "--store", os.path.join(state, "rootseal.db")])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("state store", r.stdout)

            # rootseald on opencryptoki with the first one's state.
            shutil.copytree(state, os.path.join(second.dir, "state"))
            self.write_daemon_config(second, dst, "auto", label, rest)
            second.start(env=dst.env)
            second.wait_for(lambda: second.call("GET", "/v1/sys/health").status == 200, "unsealed on opencryptoki",
                            timeout=120)
            self.assertIn("mechanism=CKM_AES_CBC_PAD+CKM_SHA256_HMAC", second.log())
            self.assertEqual(second.call("GET", "/v1/sys/seal-status").json()["root_key_check_value"], kcv)
            r = second.call("POST", "/v1/transit/decrypt/k", {"ciphertext": ct}, token=token)
            self.assertEqual(r.status, 200, r.data)
            self.assertEqual(r.json()["data"]["plaintext"], "bW92ZWQ=")
        finally:
            first.close()
            second.close()

    def test_ceremony_rsa_oaep_root_on_opencryptoki_no_backup_only(self):
        self.check_ceremony_rsa_oaep_root("opencryptoki")

    def test_ceremony_rsa_oaep_root_on_tpm2_pkcs11_no_backup_only(self):
        self.check_ceremony_rsa_oaep_root("tpm2-pkcs11")

    def check_ceremony_rsa_oaep_root(self, name):
        """rsa-oaep: refused without --no-backup; with it, the pair is generated
        in the token, the warning is loud, verify checks the public key's check
        value, and rootseald uses the root with the same check value."""
        tok = self.tokens[name]
        transcript = os.path.join(self.base, "ceremony-transcript-rsa-" + name)
        label = "root-rsa-ceremony"
        base = ["ceremony", "init", "--module", tok.module, "--token", tok.label, "--key-label", label,
                "--mechanism", "rsa-oaep", "--transcript-dir", transcript]
        r = self.run_with_pin(tok, base + ["--threshold", "2", "--out", os.path.join(self.base, "rsa-shares-" + name),
                                           "--custodian", "a=/nonexistent-a.pem", "--custodian", "b=/nonexistent-b"])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("an rsa-oaep root cannot be backed up in shares", r.stderr)
        r = self.run_with_pin(tok, base + ["--no-backup"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("NO BACKUP", r.stderr)
        kcv = re.search(r"key check value \(SHA-256 of the RSA public key's SubjectPublicKeyInfo, as the token "
                        r"reports it\): ([0-9a-f]{6})", r.stdout).group(1)
        with open(os.path.join(transcript, sorted(n for n in os.listdir(transcript) if n.endswith(".json"))[-1])) as f:
            record = json.load(f)
        self.assertEqual((record["kind"], record["root_key"]["mechanism"], record["root_key"]["backup"]),
                         ("init", "rsa-oaep", False))
        self.assertIn("can never be", record["warning"])
        r = self.run_with_pin(tok, ["ceremony", "verify", "--module", tok.module, "--token", tok.label, "--key-label",
                                    label, "--transcript-dir", transcript])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("(rsa-oaep)", r.stdout)
        self.check_rootseald_uses_rsa_root(tok, label, kcv)

    def check_rootseald_uses_rsa_root(self, tok, label, kcv, store=None):
        """rootseald (with a copy of `store`, if given) unseals with the RSA
        root `label` of check value `kcv`."""
        d = ConfigDaemon("rootseal-rsa-root-", "unused", pin="12345678")
        try:
            if store:
                os.makedirs(os.path.join(d.dir, "state"), mode=0o700)
                shutil.copy(store, os.path.join(d.dir, "state", "rootseal.db"))
            self.write_daemon_config(d, tok, "auto", label)
            d.start(env=tok.env)
            d.wait_for(lambda: d.call("GET", "/v1/sys/health").status == 200, "unsealed with the RSA root " + label,
                       timeout=120)
            self.assertIn("mechanism=CKM_RSA_PKCS_OAEP", d.log())
            if store:
                self.assertRegex(d.log(), r'msg="unsealed" root=pkcs11 keys=\d+ versions=20 ')
            self.assertEqual(d.call("GET", "/v1/sys/seal-status").json()["root_key_check_value"], kcv)
        finally:
            d.close()

    def test_rotate_root_from_rsa_oaep_to_aes_cbc_pad_hmac_killed_at_every_step(self):
        """On opencryptoki: for each step of rotate-root, a fresh rsa-oaep root
        (init --no-backup) wraps 20 keys; the rotation to aes-cbc-pad-hmac is
        SIGKILLed there; the store then opens under the root or its temporary
        label, and --resume ends with the store under an aes-cbc-pad-hmac root
        with the recorded check value, the RSA pair kept as <label>.retired-<kcv>."""
        tok = self.tokens["opencryptoki"]
        work = os.path.join(self.base, "rsa-rotation")
        os.makedirs(work)
        custodians = []
        for name in ("alice", "bob"):
            key, pub = os.path.join(work, name + ".key"), os.path.join(work, name + ".pub")
            subprocess.run(["openssl", "genpkey", "-algorithm", "X25519", "-out", key], check=True,
                           capture_output=True)
            subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
            custodians += ["--custodian", "%s=%s" % (name, pub)]

        moved = 0
        for i, point in enumerate(RSA_TO_CBC_POINTS):
            label = "rsa-rot-%d" % i
            transcript, db, samples, rsa_kcv = self.root_and_store(tok, work, label, "rsa-oaep")
            recorded, kcv, mech = self.rotate_killed_and_resumed(
                tok, label, transcript, db, samples, ["--mechanism", "aes-cbc-pad-hmac", "--threshold", "2", "--out",
                                                      os.path.join(work, "shares-%d" % i)] + custodians,
                point, ("rsa-oaep", "aes-cbc-pad-hmac"))
            moved += recorded
            self.assertEqual(mech, "aes-cbc-pad-hmac" if recorded else "rsa-oaep", point)
            if not recorded:
                self.assertEqual(kcv, rsa_kcv, point)
                continue
            keys = self.probe_keys(tok, "--key-label", label)["objects"]
            self.assertEqual([(k["kcv"], k["encrypt"], k["wrap"]) for k in keys], [(kcv, True, False)], point)
            self.assertEqual(self.probe_keys(tok, "--key-label", label + ".next")["objects"], [], point)
            # The RSA pair kept under its retired label, and nothing at the temporary one.
            r = subprocess.run(["pkcs11-tool", "--module", tok.module, "--token-label", tok.label, "--login",
                                "--pin", tok.pin, "--list-objects"], env=tok.env, capture_output=True, text=True)
            retired = "%s.retired-%s" % (label, rsa_kcv)
            self.assertEqual(r.stdout.count('label:      %s\n' % retired), 2, point + "\n" + r.stdout)
            self.assertNotIn("%s.next" % label, r.stdout, point)
        # The kills before the rotation was recorded leave the RSA root; the rest end on the new one.
        self.assertEqual(moved, len(RSA_TO_CBC_POINTS) - RSA_TO_CBC_POINTS.index("rotation-recorded"))

    def test_rotate_root_from_aes_cbc_pad_hmac_to_rsa_oaep_killed_at_every_step(self):
        """On opencryptoki: for each step of rotate-root, a fresh
        aes-cbc-pad-hmac root (init --no-backup) wraps 20 keys; the rotation to
        a new rsa-oaep pair (--no-backup) is SIGKILLed there; the store then
        opens under the root or its temporary label, and --resume ends with the
        store under the recorded RSA pair at the label, the AES and HMAC keys
        kept as <label>.retired-<kcv>(-hmac), nothing at <label>.next; killed
        before the rotation was recorded, --resume destroys the unrecorded pair."""
        tok = self.tokens["opencryptoki"]
        work = os.path.join(self.base, "cbc-to-rsa")
        os.makedirs(work)
        moved = 0
        for i, point in enumerate(CBC_TO_RSA_POINTS):
            label = "cbc-rsa-%d" % i
            transcript, db, samples, old_kcv = self.root_and_store(tok, work, label, "aes-cbc-pad-hmac")
            old_mac = self.probe_keys(tok, "--key-label", label + "-hmac")["objects"][0]["kcv"]
            recorded, kcv, mech = self.rotate_killed_and_resumed(tok, label, transcript, db, samples,
                                                                 ["--mechanism", "rsa-oaep", "--no-backup"], point,
                                                                 ("aes-cbc-pad-hmac", "rsa-oaep"))
            moved += recorded
            labels = self.token_object_labels(tok)
            self.assertNotIn(label + ".next", labels, point)
            self.assertNotIn(label + ".next-hmac", labels, point)
            with open(os.path.join(transcript, sorted(n for n in os.listdir(transcript)
                                                      if n.endswith(".json"))[-1])) as f:
                last = json.load(f)
            if not recorded:
                self.assertEqual((mech, kcv), ("aes-cbc-pad-hmac", old_kcv), point)
                self.assertEqual((last["kind"], len(last["destroyed_kcvs"])), ("rotate-root-abandoned", 1), point)
                continue
            self.assertEqual(mech, "rsa-oaep", point)
            self.assertEqual((last["kind"], last["root_key"]["kcv"], last["root_key"]["mechanism"]),
                             ("rotate-root-complete", kcv, "rsa-oaep"), point)
            # The pair (public and private key) at the label, and no AES key there any more.
            self.assertEqual(labels.count(label), 2, point)
            self.assertEqual(self.probe_keys(tok, "--key-label", label)["objects"], [], point)
            self.assertEqual(self.probe_keys(tok, "--key-label", label + "-hmac")["objects"], [], point)
            retired = "%s.retired-%s" % (label, old_kcv)
            self.assertEqual([k["kcv"] for k in self.probe_keys(tok, "--key-label", retired)["objects"]], [old_kcv],
                             point)
            self.assertEqual([k["kcv"] for k in self.probe_keys(tok, "--key-label", retired + "-hmac")["objects"]],
                             [old_mac], point)
            # The rotation record carries the no-backup warning.
            with open(os.path.join(transcript, sorted(n for n in os.listdir(transcript)
                                                      if n.endswith(".json"))[-2])) as f:
                prepared = json.load(f)
            self.assertEqual((prepared["kind"], prepared["root_key"]["mechanism"], prepared["root_key"]["backup"]),
                             ("rotate-root", "rsa-oaep", False), point)
            self.assertIn("can never be", prepared["warning"])
        # Killed before the rotation was recorded: the AES root stays; the rest end on the RSA pair.
        self.assertEqual(moved, len(CBC_TO_RSA_POINTS) - CBC_TO_RSA_POINTS.index("rotation-recorded"))

        # Uninterrupted: aes-cbc-pad-hmac -> rsa-oaep, then rsa-oaep -> a new rsa-oaep pair.
        label = "cbc-rsa-whole"
        transcript, db, samples, kcv = self.root_and_store(tok, work, label, "aes-cbc-pad-hmac")
        kcvs = [kcv]
        for _ in range(2):
            r = self.run_with_pin(tok, ["ceremony", "rotate-root", "--module", tok.module, "--token", tok.label,
                                        "--key-label", label, "--store", db, "--transcript-dir", transcript,
                                        "--mechanism", "rsa-oaep", "--no-backup"])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("NO BACKUP", r.stderr)
            kcv, mech = self.store_opens(tok, db, samples, [label])
            self.assertEqual(mech, "rsa-oaep")
            self.assertIn("root rotation", r.stdout)
            self.assertIn("old root (kcv %s) relabelled '%s.retired-%s'" % (kcvs[-1], label, kcvs[-1]), r.stdout)
            self.assertIn("the root key is '%s' (kcv %s)" % (label, kcv), r.stdout)
            kcvs.append(kcv)
            r = self.run_with_pin(tok, ["ceremony", "verify", "--module", tok.module, "--token", tok.label,
                                        "--key-label", label, "--transcript-dir", transcript, "--store", db])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("(rsa-oaep)", r.stdout)
            self.assertIn(kcv, r.stdout)
        labels = self.token_object_labels(tok)
        self.assertEqual((labels.count(label), labels.count("%s.retired-%s" % (label, kcvs[1]))), (2, 2))
        self.assertEqual(len(set(kcvs)), 3)
        # rootseald opens that store with the rotated RSA root.
        self.check_rootseald_uses_rsa_root(tok, label, kcv, db)

    def test_rotate_root_to_rsa_oaep_refusals(self):
        """Without --no-backup: refused before the token is touched. On
        SoftHSM2 (OAEP with SHA-1 only): refused with the reason, nothing
        recorded, nothing left at <label>.next, the store under the old root."""
        tok = self.tokens["softhsm2"]
        work = os.path.join(self.base, "to-rsa-refused")
        os.makedirs(work)
        label = "root-to-rsa"
        transcript, db, samples, old_kcv = self.root_and_store(tok, work, label, "aes-kwp")
        rotate = ["ceremony", "rotate-root", "--module", tok.module, "--token", tok.label, "--key-label", label,
                  "--store", db, "--transcript-dir", transcript, "--mechanism", "rsa-oaep"]
        r = self.run_with_pin(tok, rotate + ["--threshold", "2", "--out", os.path.join(work, "shares"),
                                             "--custodian", "a=/nonexistent-a.pem", "--custodian", "b=/nonexistent-b"])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("an rsa-oaep root cannot be backed up in shares", r.stderr)
        self.assertNotIn("root rotation", r.stdout)  # refused before the token is opened
        r = self.run_with_pin(tok, rotate + ["--no-backup"])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("does not decrypt with CKM_RSA_PKCS_OAEP (SHA-256, MGF1-SHA-256)", r.stderr)
        self.assertNotIn(label + ".next", self.token_object_labels(tok))
        self.assertEqual(self.store_opens(tok, db, samples, [label]), (old_kcv, "aes-kwp"))
        r = self.run_with_pin(tok, ["ceremony", "rotate-root", "--module", tok.module, "--token", tok.label,
                                    "--key-label", label, "--store", db, "--transcript-dir", transcript, "--resume"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no interrupted root rotation; nothing to resume", r.stdout)

    def test_rootseald_on_opencryptoki_auto_is_cbc_pad_hmac(self):
        self.check_rootseald_round_trip("opencryptoki", "auto", "CKM_AES_CBC_PAD+CKM_SHA256_HMAC", "root-auto")

    def test_rootseald_on_opencryptoki_rsa_oaep(self):
        self.check_rootseald_round_trip("opencryptoki", "rsa-oaep", "CKM_RSA_PKCS_OAEP", "root-rsa")

    def test_rootseald_on_tpm2_pkcs11_auto_is_rsa_oaep(self):
        # tpm2-pkcs11 1.9 over swtpm: no CKM_GENERIC_SECRET_KEY_GEN (so no
        # HMAC key for aes-cbc-pad-hmac), so auto picks rsa-oaep. Its C_Encrypt
        # with a public key reports the caller's whole buffer length as the
        # ciphertext length; rootseald asks the length first (docs/hsm.md).
        self.check_rootseald_round_trip("tpm2-pkcs11", "auto", "CKM_RSA_PKCS_OAEP", "root-auto")

    def test_rootseald_on_tpm2_pkcs11_rsa_oaep(self):
        self.check_rootseald_round_trip("tpm2-pkcs11", "rsa-oaep", "CKM_RSA_PKCS_OAEP", "root-rsa")

    def test_rootseald_on_softhsm2_every_aes_mechanism(self):
        for mech, expected in (("aes-kwp", "CKM_AES_KEY_WRAP_KWP"), ("aes-gcm", "CKM_AES_GCM"),
                               ("aes-cbc-pad-hmac", "CKM_AES_CBC_PAD+CKM_SHA256_HMAC")):
            with self.subTest(mech):
                self.check_rootseald_round_trip("softhsm2", mech, expected, "root-" + mech)


if __name__ == "__main__":
    unittest.main(verbosity=2)
