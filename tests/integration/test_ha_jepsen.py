"""Jepsen-style check of storage: etcd (issue 20): three rootseald hosts on a
three-member etcd, every host's SoftHSM2 token holding one root key (one
`rootseal ceremony init`, restored on the other two), clients writing to all
three hosts while a nemesis kills, pauses and restarts etcd members and
rootseald hosts; then everything is healed and the history is checked.

Clients (threads, each an hvac Vault client per host, keep-alive): create,
rotate and encrypt on a small set of keys, on a random host each time. Every operation
is recorded with its outcome: ok (an answer), fail (an error answer: 4xx,
5xx) or unknown (no answer: a timeout, a reset connection — it may or may
not have happened).

Nemesis, one fault at a time, then healed: SIGSTOP/SIGCONT of an etcd
member, SIGKILL and restart of an etcd member, two members stopped at once
(no quorum), SIGSTOP/SIGCONT of a rootseald host, SIGKILL and restart of a
host.

After healing, on every host:
  - every key's versions are 1..N without a gap;
  - every acknowledged rotation's version exists;
  - every acknowledged ciphertext decrypts to its plaintext (a version with
    two different materials would fail here on some host);
  - every acknowledged create's key exists;
  - every host holds the same latest version of each key.
The operation and fault counts are printed. Waits poll with deadlines; the
nemesis's pauses are the faults' lengths, not synchronisation.
"""
import base64
import http.client
import json
import os
import random
import signal
import subprocess
import threading
import time
import unittest

import hvac
import requests

from rootseal_testlib import free_port, make_softhsm, rmtree, sha256_hex, tempdir, write_private
from test_ha_etcd import Etcd, poll, share_root

ROOTSEALD = os.environ["ROOTSEALD"]
MODULE = os.environ.get("SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
TOKEN = "rs.jepsen-test-token-0123456789abcdef0123456789abcdef"
PREFIX = "/rootseal-jepsen/"
HOSTS = ("A", "B", "C")
KEYS = ["j%d" % i for i in range(6)]
CLIENTS = 6
DURATION = float(os.environ.get("ROOTSEAL_JEPSEN_SECONDS", "30"))
SEED = int(os.environ.get("ROOTSEAL_JEPSEN_SEED", str(random.randrange(1 << 30))))


class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []

    def add(self, op):
        with self.lock:
            self.ops.append(op)

    def where(self, kind, outcome):
        with self.lock:
            return [o for o in self.ops if o["kind"] == kind and o["outcome"] == outcome]


class JepsenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        print("seed %d (ROOTSEAL_JEPSEN_SEED to replay the choices)" % SEED, flush=True)
        cls.rng = random.Random(SEED)
        cls.dir = tempdir("rootseal-jepsen-")
        cls.etcd = Etcd(cls.dir)
        cls.env = make_softhsm(os.path.join(cls.dir, "hsm"), "A")
        for label in HOSTS[1:]:
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "0000",
                            "--pin", "1234"], check=True, env=cls.env, stdout=subprocess.DEVNULL)
        cls.pin = os.path.join(cls.dir, "pin")
        write_private(cls.pin, "1234\n")
        share_root(cls.dir, cls.env, HOSTS)  # one root key on every host's token, through the ceremony
        cls.hosts = {}
        for label in HOSTS:
            cls.hosts[label] = {"port": free_port(), "proc": None, "stopped": False}
            cls.write_config(label)
            cls.start_host(label)
        for label in HOSTS:
            poll(lambda: cls.health(label) == 200, "host %s unsealed" % label, 60)

    @classmethod
    def tearDownClass(cls):
        for h in cls.hosts.values():
            p = h["proc"]
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
        for m in cls.etcd.members:
            if m["proc"] is not None and m["proc"].poll() is None:
                m["proc"].send_signal(signal.SIGCONT)
        cls.etcd.close()
        rmtree(cls.dir)

    # --- set-up ---------------------------------------------------------------
    @classmethod
    def write_config(cls, label):
        endpoints = ", ".join('"%s"' % cls.etcd.endpoint(i) for i in range(3))
        with open(os.path.join(cls.dir, "rootseald-%s.yaml" % label), "w") as f:
            f.write("listen:\n  address: 127.0.0.1:%d\n  allow_plaintext: true\n"
                    "state_dir: %s/state-%s\n"
                    "pkcs11:\n  module: %s\n  token_label: %s\n"
                    "pin:\n  sources: [file]\n  file: %s\n"
                    "seal:\n  probe_interval: 200ms\n"
                    "host_id: host-%s\n"
                    "storage: etcd\n"
                    "etcd:\n  endpoints: [%s]\n  prefix: %s\n  request_timeout: 1s\n  member_ttl: 3s\n"
                    "tokens:\n  - name: jepsen\n    sha256: %s\n    policies: [root]\n"
                    % (cls.hosts[label]["port"], cls.dir, label, MODULE, label, cls.pin, label, endpoints,
                       PREFIX, sha256_hex(TOKEN)))

    @classmethod
    def start_host(cls, label):
        log = open(os.path.join(cls.dir, "rootseald-%s.log" % label), "ab")
        cls.hosts[label]["proc"] = subprocess.Popen(
            [ROOTSEALD, "--config", os.path.join(cls.dir, "rootseald-%s.yaml" % label), "--allow-root"],
            stdout=subprocess.DEVNULL, stderr=log, env=cls.env)
        log.close()

    @classmethod
    def request(cls, label, method, path, body=None, timeout=5):
        """(status, JSON answer); raises OSError / HTTPException when there is no answer."""
        conn = http.client.HTTPConnection("127.0.0.1", cls.hosts[label]["port"], timeout=timeout)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"X-Vault-Token": TOKEN, "Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            return r.status, (json.loads(data) if data else {})
        finally:
            conn.close()

    @classmethod
    def health(cls, label):
        try:
            return cls.request(label, "GET", "/v1/sys/health", timeout=2)[0]
        except (OSError, http.client.HTTPException):
            return None

    # --- the run ----------------------------------------------------------------
    def client(self, n, history, stop):
        """A Vault client (hvac, one per host, keep-alive) spreading its requests over the hosts."""
        rng = random.Random(SEED + n)
        vault = {label: hvac.Client(url="http://127.0.0.1:%d" % self.hosts[label]["port"], token=TOKEN, timeout=5)
                 for label in HOSTS}
        transit = {label: c.secrets.transit for label, c in vault.items()}
        while not stop.is_set():
            label = rng.choice(HOSTS)
            key = rng.choice(KEYS)
            kind = rng.choices(("create", "rotate", "encrypt"), weights=(1, 2, 5))[0]
            op = {"kind": kind, "key": key, "host": label, "client": n}
            try:
                if kind == "create":
                    transit[label].create_key(key)
                elif kind == "rotate":
                    op["version"] = transit[label].rotate_key(key)["data"]["latest_version"]
                else:
                    plaintext = base64.b64encode(os.urandom(16)).decode()
                    op["ciphertext"] = transit[label].encrypt_data(key, plaintext)["data"]["ciphertext"]
                    op["plaintext"] = plaintext
                op["outcome"] = "ok"
            except hvac.exceptions.VaultError:
                op["outcome"] = "fail"  # an error answer: nothing happened
            except (requests.exceptions.RequestException, OSError, ValueError):
                op["outcome"] = "unknown"  # no answer: it may or may not have happened
            history.add(op)
        for c in vault.values():
            c.adapter.close()

    def nemesis(self, faults, stop):
        rng = self.rng
        while not stop.is_set():
            stop.wait(rng.uniform(0.5, 1.5))  # the calm between faults
            if stop.is_set():
                break
            fault = rng.choice(("stop-member", "kill-member", "no-quorum", "stop-host", "kill-host"))
            length = rng.uniform(1.0, 3.0)
            faults.append(fault)
            if fault == "stop-member":
                p = self.etcd.members[rng.randrange(3)]["proc"]
                p.send_signal(signal.SIGSTOP)
                stop.wait(length)
                p.send_signal(signal.SIGCONT)
            elif fault == "kill-member":
                i = rng.randrange(3)
                self.etcd.kill(i)
                stop.wait(length)
                self.etcd.start(i)
                self.etcd.wait_healthy(i)
            elif fault == "no-quorum":
                two = rng.sample(range(3), 2)
                for i in two:
                    self.etcd.members[i]["proc"].send_signal(signal.SIGSTOP)
                stop.wait(length)
                for i in two:
                    self.etcd.members[i]["proc"].send_signal(signal.SIGCONT)
            elif fault == "stop-host":
                p = self.hosts[rng.choice(HOSTS)]["proc"]
                p.send_signal(signal.SIGSTOP)
                stop.wait(length)
                p.send_signal(signal.SIGCONT)
            else:
                label = rng.choice(HOSTS)
                p = self.hosts[label]["proc"]
                p.kill()
                p.wait()
                stop.wait(length)
                self.start_host(label)
                poll(lambda: self.health(label) == 200, "host %s unsealed after its restart" % label, 60)
            for i in range(3):
                self.etcd.wait_healthy(i)

    def test_history_under_faults(self):
        for key in KEYS:  # every key exists before the faults (creates during them are recorded too)
            status, body = self.request("A", "POST", "/v1/transit/keys/" + key, {})
            self.assertEqual(status, 200, body)
        history = History()
        faults = []
        stop = threading.Event()
        clients = [threading.Thread(target=self.client, args=(n, history, stop)) for n in range(CLIENTS)]
        nemesis = threading.Thread(target=self.nemesis, args=(faults, stop))
        for t in clients + [nemesis]:
            t.start()
        time.sleep(DURATION)  # how long the history runs (the workload's length, not a synchronisation)
        stop.set()
        for t in clients + [nemesis]:
            t.join(timeout=120)
            self.assertFalse(t.is_alive(), "a client or the nemesis did not stop")

        # Healed: every member and host answers.
        for i in range(3):
            self.etcd.wait_healthy(i)
        for label in HOSTS:
            poll(lambda: self.health(label) == 200, "host %s unsealed after the run" % label, 60)

        def latest(label, key):
            status, body = self.request(label, "GET", "/v1/transit/keys/" + key, timeout=10)
            self.assertEqual(status, 200, body)
            return body["data"]

        # Every host converges on one latest version per key (the watch; a re-read otherwise).
        for key in KEYS:
            poll(lambda: len({latest(label, key)["latest_version"] for label in HOSTS}) == 1,
                 "the hosts agree on key %s" % key, 60)

        counts = {}
        for o in history.ops:
            counts[(o["kind"], o["outcome"])] = counts.get((o["kind"], o["outcome"]), 0) + 1
        print("operations: %s" % ", ".join("%s %s %d" % (k, r, n) for (k, r), n in sorted(counts.items())),
              flush=True)
        print("faults: %s" % ", ".join("%s %d" % (f, faults.count(f)) for f in sorted(set(faults))), flush=True)
        self.assertGreater(len(faults), 3, "the nemesis injected faults")
        self.assertGreater(counts.get(("encrypt", "ok"), 0), 50, "the clients got answers")
        self.assertGreater(counts.get(("rotate", "ok"), 0), 5, "rotations were acknowledged")

        for key in KEYS:
            for label in HOSTS:
                data = latest(label, key)
                versions = sorted(int(v) for v in data["keys"])
                self.assertEqual(versions, list(range(1, data["latest_version"] + 1)),
                                 "key %s on %s: versions without a gap" % (key, label))
        for o in history.where("rotate", "ok"):
            for label in HOSTS:
                self.assertGreaterEqual(latest(label, o["key"])["latest_version"], o["version"],
                                        "acknowledged rotation of %s to v%d on %s" % (o["key"], o["version"], label))
        for o in history.where("create", "ok"):
            for label in HOSTS:
                latest(label, o["key"])  # exists (200)
        acknowledged = history.where("encrypt", "ok")
        for o in acknowledged:
            for label in HOSTS:
                status, body = self.request(label, "POST", "/v1/transit/decrypt/" + o["key"],
                                            {"ciphertext": o["ciphertext"]}, timeout=10)
                self.assertEqual(status, 200, "%s on %s: %r" % (o["ciphertext"][:16], label, body))
                self.assertEqual(body["data"]["plaintext"], o["plaintext"],
                                 "%s decrypted on %s to other bytes" % (o["ciphertext"][:16], label))
        print("checked: %d acknowledged ciphertexts decrypt on all %d hosts" % (len(acknowledged), len(HOSTS)),
              flush=True)


if __name__ == "__main__":
    unittest.main()
