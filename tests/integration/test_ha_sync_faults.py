"""The sharded sync engine (issue 21, docs/ha.md "Network partitions") when
etcd is out of reach: three rootseald hosts on three etcd members, the
Kubernetes API double (a write log per host token) and the Vault double, as
in test_ha_sync.py (its rig).

Host C reaches etcd only through three TCP proxies of this test (one per
member); A and B reach the members directly.

  1. Partition: C's proxies cut (bytes dropped, connections left hanging,
     as a network that loses packets). C still reaches the Kubernetes API.
     A and B take C's buckets once its lease has expired; C's ExternalSecrets
     changed then are synced by them; C sees the changes and tries (its
     rootseal_sync_shard_deferred rises) but writes nothing after its lease
     could have expired (nor after A and B own its buckets). Healed: C writes
     nothing until it owns a bucket again, gets its share back and syncs its
     namespaces.
  2. etcd down (all three members SIGKILLed): every host stops acting
     (rootseal_sync_buckets_owned 0 on each); ExternalSecrets changed then
     are tried (deferred) and not written by anyone; etcd back: every host
     resumes without a restart and every Secret is correct.

Waits poll with deadlines (no sleep decides anything).
"""
import http.client
import os
import socket
import threading
import time
import unittest

import test_ha_sync as ha
from test_ha_etcd import poll

HOSTS = ha.HOSTS
TTL = ha.TTL
NAMESPACES = ["fault-%02d" % i for i in range(15)]


class CutProxy:
    """A TCP forwarder to one etcd member that the test can cut. While cut it
    forwards nothing: bytes read are dropped and new connections are accepted
    and left unanswered (a partition, not a refusal). heal() closes what it
    held, so the client reconnects."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.socks = []
        self.cut_now = False
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def _track(self, s):
        with self.lock:
            self.socks.append(s)

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._track(client)
            if self.cut_now:
                continue  # held, never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._track(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.cut_now:
                    continue  # lost on the way
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _close_all(self):
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self):
        self.cut_now = True

    def heal(self):
        self._close_all()
        self.cut_now = False

    def close(self):
        self.closed = True
        self.listener.close()
        self._close_all()


class HaSyncFaultsTest(ha.HaSyncRig):
    NAMESPACES = NAMESPACES

    @classmethod
    def before_hosts(cls):
        cls.proxies = [CutProxy(cls.etcd.members[i]["client"]) for i in range(3)]

    @classmethod
    def etcd_endpoints(cls, label):
        if label == "C":
            return [p.endpoint() for p in cls.proxies]
        return super().etcd_endpoints(label)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        for p in cls.proxies:
            p.close()

    def metric(self, label, name):
        c = http.client.HTTPConnection("127.0.0.1", self.hosts[label]["port"], timeout=5)
        try:
            c.request("GET", "/v1/sys/metrics?format=prometheus")
            text = c.getresponse().read().decode()
        finally:
            c.close()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ", 1)[1])
        raise AssertionError("no metric %s on host %s" % (name, label))

    def mine(self):
        out = {h: [ns for ns in NAMESPACES if self.host_of_ns(ns, HOSTS) == h] for h in HOSTS}
        for h in HOSTS:
            self.assertGreaterEqual(len(out[h]), 2, "the namespace names give every host some work: %r" % out)
        return out

    def no_owner_c_since(self):
        """The instant just before an etcd read that showed no bucket owned by C."""
        asked = time.monotonic()
        return asked if "host-C" not in self.owners().values() else None

    def test_1_partition(self):
        mine = self.mine()
        self.expect_assignment(HOSTS)
        expected = {(ns, "p-0"): "v1" for ns in NAMESPACES}
        for ns in NAMESPACES:
            self.external_secret(ns, "p-0", "v1")
        self.sync_poll(expected, "every Secret written", 60)
        deferred = self.metric("C", "rootseal_sync_shard_deferred")

        # Cut C off etcd. A and B own its buckets once its lease expired.
        cut_at = time.monotonic()
        for p in self.proxies:
            p.cut()
            self.addCleanup(p.heal)  # the next test starts from a connected C even if this one fails
        taken_at = poll(self.no_owner_c_since, "C's buckets no longer C's in etcd", TTL + 10)
        self.expect_assignment(("A", "B"))
        print("partition: C's buckets without C %.1f s after the cut, all owned by A and B %.1f s after it" % (
            taken_at - cut_at, time.monotonic() - cut_at), flush=True)
        self.assertGreater(taken_at - cut_at, TTL - 1.5, "C's buckets were free before its lease could expire")
        # C's ExternalSecrets change: A and B sync them; C sees the events
        # (it still reaches the API), tries and is refused.
        for ns in mine["C"]:
            self.repoint(ns, "p-0", "v2")
            expected[(ns, "p-0")] = "v2"
        self.sync_poll(expected, "A and B sync C's namespaces while C is cut off", 30)
        limit = min(cut_at + TTL, taken_at)
        poll(lambda: self.metric("C", "rootseal_sync_shard_deferred") > deferred or self.writes("C", since=limit),
             "C acted on its changed ExternalSecrets (deferred them, or wrote)", 15)
        late = self.writes("C", since=limit)
        self.assertEqual(late, [], "C wrote after its lease could have expired:\n%s" % self.log_of("C"))
        self.assertEqual(self.metric("C", "rootseal_sync_buckets_owned"), 0)

        # Healed: no write from C until it owns a bucket again, then its share.
        healed_at = time.monotonic()
        without = self.watch_owner_free("host-C", healed_at)
        for p in self.proxies:
            p.heal()
        try:
            self.expect_assignment(HOSTS)
        finally:
            without["stop"] = True
            without["thread"].join()
        print("partition healed: C back in %.1f s" % (time.monotonic() - healed_at), flush=True)
        self.assertEqual(self.writes("C", since=limit, until=without["until"]), [],
                         "C wrote before owning a bucket again:\n%s" % self.log_of("C"))
        back = time.monotonic()
        for ns in mine["C"]:
            self.repoint(ns, "p-0", "v3")
            expected[(ns, "p-0")] = "v3"
        self.sync_poll(expected, "C syncs its namespaces again", 30)
        written = self.writes("C", since=back)
        self.assertTrue(written, "C wrote its namespaces' Secrets again")
        for w in written:
            parts = w["path"].split("/")
            self.assertIn(parts[parts.index("namespaces") + 1], mine["C"], "C wrote %s %s" % (w["method"], w["path"]))

    def test_2_etcd_down(self):
        self.expect_assignment(HOSTS)
        expected = {(ns, "d-0"): "v1" for ns in NAMESPACES}
        for ns in NAMESPACES:
            self.external_secret(ns, "d-0", "v1")
        self.sync_poll(expected, "every Secret written", 60)
        deferred = {h: self.metric(h, "rootseal_sync_shard_deferred") for h in HOSTS}

        # Every member killed: each host stops acting (its lease unconfirmed).
        down_at = time.monotonic()
        for i in range(3):
            self.etcd.kill(i)
        stopped = {}

        def all_stopped():
            for h in HOSTS:
                if h not in stopped:
                    asked = time.monotonic()
                    if self.metric(h, "rootseal_sync_buckets_owned") == 0:
                        stopped[h] = asked
            return len(stopped) == len(HOSTS)
        poll(all_stopped, "every host acting on no bucket", TTL + 10)
        print("etcd down: hosts stopped acting after %s s" % ", ".join(
            "%s %.1f" % (h, stopped[h] - down_at) for h in HOSTS), flush=True)
        for h in HOSTS:
            self.assertLess(stopped[h] - down_at, TTL + 1, "host %s stopped within its lease" % h)
        for ns in NAMESPACES:
            self.repoint(ns, "d-0", "v2")
            expected[(ns, "d-0")] = "v2"
        since = {h: min(stopped[h], down_at + TTL) for h in HOSTS}
        poll(lambda: all(self.metric(h, "rootseal_sync_shard_deferred") > deferred[h] or self.writes(h, since=since[h])
                         for h in HOSTS),
             "every host acted on its changed ExternalSecrets (deferred them, or wrote)", 15)
        for h in HOSTS:
            late = self.writes(h, since=since[h])
            self.assertEqual(late, [], "host %s wrote with etcd down:\n%s" % (h, self.log_of(h)))

        # etcd back: every host acts again, without a restart.
        up_at = time.monotonic()
        for i in range(3):
            self.etcd.start(i)
        for i in range(3):
            self.etcd.wait_healthy(i)
        self.sync_poll(expected, "every Secret correct after etcd is back", 40)
        self.expect_assignment(HOSTS)
        print("etcd back: every Secret correct %.1f s after the members were started" % (time.monotonic() - up_at),
              flush=True)
        for h in HOSTS:
            self.assertIsNone(self.hosts[h]["proc"].poll(), "host %s still runs" % h)


if __name__ == "__main__":
    unittest.main()
