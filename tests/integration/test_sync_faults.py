"""The sync engine under store and API faults (issue 25), asserted from the
doubles' request logs (GET /_double/log, in-process counters.log_since):

- Vault down, then answering 500 and 429 with Retry-After: the call rate
  during the fault is at most the steady rate, no call comes before the
  Retry-After, no Secret is touched, and every ExternalSecret is Ready again
  within one refresh interval after the store recovers;
- the Kubernetes API cut (connections dropped), its history reset (410),
  then every watch closed early: every informer is watching again within 2 s
  of the API returning and keeps watching.

Durations are scaled down from the issue's (refresh 4 s, outage 10 s instead
of 10 s / 30 s); the properties asserted are the same."""
import time
import unittest

from sync_testlib import ESO, SyncEnv

REFRESH = 4.0        # refreshInterval of every ExternalSecret (s)
N_ES, N_KEYS = 24, 12
OUTAGE = 10.0
RETRY_AFTER = 4      # Retry-After of the injected 429s (s)
IN_FLIGHT = 0.1      # requests arriving this soon after an answer were sent before it

ENV = None


def setUpModule():
    global ENV
    # store_backoff.max below the refresh interval: a recovered store is
    # probed (and its ExternalSecrets re-queued) within one interval.
    ENV = SyncEnv(refresh_window="1s", sync_extra="  store_backoff: {base: 1s, max: 2s}").start()


def tearDownModule():
    if ENV:
        ENV.stop()


def vault_reads(since, until=None):
    """Times of the KV reads the Vault double logged in (since, until]."""
    return [e["t"] for e in ENV.vault.counters.log_since(since)
            if e["path"].startswith("/v1/secret/data/") and (until is None or e["t"] <= until)]


class StoreFaults(unittest.TestCase):
    NS = "faults-store"

    def all_ready(self):
        return all((ENV.kube.ready(self.NS, "es-%d" % i) or ("",))[0] == "True" for i in range(N_ES))

    def not_ready(self):
        return sum((ENV.kube.ready(self.NS, "es-%d" % i) or ("",))[0] != "True" for i in range(N_ES))

    def secrets_rv(self):
        return {i: ENV.kube.secret(self.NS, "s-%d" % i)["metadata"]["resourceVersion"] for i in range(N_ES)}

    def test_store_down_then_throttled(self):
        kube, vault = ENV.kube, ENV.vault
        kube.namespace(self.NS)
        for k in range(N_KEYS):
            vault.put("faults/k%d" % k, {"v": "value-%d" % k})
        ENV.vault_store(self.NS)
        for i in range(N_ES):
            ENV.external_secret(self.NS, "es-%d" % i, [{"secretKey": "v", "remoteRef": {
                "key": "faults/k%d" % (i % N_KEYS), "property": "v"}}], refresh="%ds" % REFRESH,
                target={"name": "s-%d" % i})
        ENV.wait(self.all_ready, "every ExternalSecret Ready", timeout=60)

        # Steady rate: reads per second over three refresh intervals.
        t0 = time.time()
        time.sleep(3 * REFRESH)  # a measurement window, not a synchronisation
        t1 = time.time()
        steady = len(vault_reads(t0, t1)) / (t1 - t0)
        self.assertGreater(steady, 0)
        before = self.secrets_rv()

        # 1. Vault down (503 to everything) for OUTAGE seconds.
        down_at = time.time()
        vault.go_down("503")
        time.sleep(OUTAGE)  # the outage's length
        vault.faults.down = None
        up_at = time.time()
        during = len(vault_reads(down_at, up_at))
        self.assertLessEqual(during / (up_at - down_at), steady,
                             "call rate while Vault is down (%d calls in %.1f s) above the steady rate %.2f/s"
                             % (during, up_at - down_at, steady))
        self.assertEqual(self.secrets_rv(), before, "a Secret was written while Vault was down")
        m = ENV.metrics()
        store = 'store="SecretStore/%s/vault"' % self.NS
        self.assertGreater(m.get("rootseal_sync_store_refused_calls{%s}" % store, 0), 0, "no call refused locally")
        self.assertEqual(m.get("rootseal_sync_store_backing_off{%s}" % store), 1.0)
        self.assertGreater(m.get("rootseal_sync_store_parked{%s}" % store, 0), 0, "no ExternalSecret parked")
        self.assertGreater(self.not_ready(), 0, "no ExternalSecret reported the outage")
        self.assertIn("store backing off after errors", ENV.log())
        # Ready again within one refresh interval after the store came back.
        ENV.wait(self.all_ready, "every ExternalSecret Ready after the outage", timeout=REFRESH)
        self.assertEqual(self.secrets_rv(), before, "a Secret was rewritten with the same data")
        self.assertEqual(ENV.metric("rootseal_sync_store_backing_off{%s}" % store), 0.0)

        # 2. Vault answers 500, then 429 with Retry-After, then recovers.
        fault_at = time.time()
        vault.faults.add({"status": 500, "count": 2, "path": "^/v1/secret/data/"})
        vault.faults.add({"status": 429, "count": 2, "retry_after": RETRY_AFTER, "path": "^/v1/secret/data/"})

        def faults_used():
            with vault.faults.lock:
                return all(r["count"] <= 0 for r in vault.faults.rules)
        ENV.wait(faults_used, "the injected 500s and 429s consumed", timeout=60)
        healed_at = time.time()
        reads = vault_reads(fault_at)
        # Rules are consumed in order by matching requests: reads[0:2] got
        # 500, reads[2:4] got 429 with Retry-After. Reads already in flight
        # when a 429 was answered (arrived within IN_FLIGHT of it) do not count.
        self.assertGreaterEqual(len(reads), 4)
        for i in (2, 3):
            later = [t for t in reads if t > reads[i] + IN_FLIGHT]
            if later:
                self.assertGreaterEqual(later[0] - reads[i], RETRY_AFTER - 0.05,
                                        "a call %.2f s after a 429 with Retry-After: %d" % (later[0] - reads[i],
                                                                                            RETRY_AFTER))
        during = len([t for t in reads if t <= healed_at])
        self.assertLessEqual(during / max(healed_at - fault_at, REFRESH), steady,
                             "call rate while Vault answers 500/429 above the steady rate")
        ENV.wait(self.all_ready, "every ExternalSecret Ready after the throttling", timeout=RETRY_AFTER + REFRESH)
        self.assertEqual(self.secrets_rv(), before, "a Secret was written during the faults")

        # A deleted store leaves no health (nor metric series) behind.
        kube.delete(ESO + "/namespaces/%s/secretstores/vault" % self.NS)
        ENV.wait(lambda: "rootseal_sync_store_failures{%s}" % store not in ENV.metrics(), "the store's series gone")


class ApiFaults(unittest.TestCase):
    def watches(self, since):
        """{informer: [times of its watch requests]} since `since`; an informer
        is (path, label selector)."""
        out = {}
        for e in ENV.k8s.counters.log_since(since):
            if e["verb"] != "watch":
                continue
            q = e.get("query") or ""
            sel = [p for p in q.split("&") if p.startswith("labelSelector=")]
            out.setdefault((e["path"], sel[0] if sel else ""), []).append(e["t"])
        return out

    def assert_all_watching(self, informers, since, what):
        def all_back():
            seen = self.watches(since)
            return all(i in seen for i in informers)
        ENV.wait(all_back, what, timeout=10)
        seen = self.watches(since)
        late = {i: round(min(seen[i]) - since, 2) for i in informers if min(seen[i]) - since > 2.0}
        self.assertEqual(late, {}, "%s: informers watching again later than 2 s" % what)

    def test_api_cut_history_reset_watches_closed_early(self):
        k8s = ENV.k8s
        start = time.time()
        ENV.wait(lambda: len(self.watches(0)) >= 9, "the informers' watches")
        informers = set(self.watches(0))

        # The API server cut: connections dropped (watches closed) for 8 s.
        k8s.go_down("close")
        time.sleep(8)  # the outage's length
        k8s.faults.down = None
        self.assert_all_watching(informers, time.time(), "after the API returned")

        # History reset: every informer re-lists (counted) and watches again.
        relists = ENV.metric("rootseal_sync_informer_relists") or 0
        t = time.time()
        k8s.store.expire_history(kick=True)
        self.assert_all_watching(informers, t, "after a 410")
        lists = {e["path"] for e in k8s.counters.log_since(t) if e["verb"] == "list"}
        self.assertEqual(lists, {p for p, _ in informers})
        ENV.wait(lambda: (ENV.metric("rootseal_sync_informer_relists") or 0) >= relists + len(informers),
                 "every re-list counted")
        self.assertIn("informer re-list", ENV.log())

        # Watches closed early (before any event or bookmark): reopened at once.
        t = time.time()
        k8s.watch_limit = 0.5
        k8s.store.close_watches()
        try:
            time.sleep(5)  # a measurement window
            seen = self.watches(t)
        finally:
            k8s.watch_limit = None
        few = {i: len(seen.get(i, [])) for i in informers if len(seen.get(i, [])) < 6}
        self.assertEqual(few, {}, "informers that did not reopen their early-closed watches at once")
        self.assertLess(start, time.time())


if __name__ == "__main__":
    unittest.main()
