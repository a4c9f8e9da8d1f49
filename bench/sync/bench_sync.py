#!/usr/bin/python3
"""Sync engine benchmark (issue 6): N ExternalSecrets across M namespaces over
K distinct Vault KV v2 keys, rootseald (config mode) against the Kubernetes
API double and the Vault KV v2 double, each in its own process.

Reports: time from rootseald start until every Secret exists (cold sync);
provider calls per refresh cycle; Kubernetes writes in steady state; resident
memory; delay from a store change to the Secret update.

  ROOTSEALD=build/daemon/rootseald /usr/bin/python3 bench/sync/bench_sync.py \
      [--es 10000 --namespaces 100 --keys 1000 --refresh 30s --window 10s]
"""
import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from rootseal_testlib import free_port, make_softhsm, rmtree, tempdir, SOFTHSM2_MODULE  # noqa: E402
from sync_testlib import http_json  # noqa: E402

ROOTSEALD = os.environ.get("ROOTSEALD") or os.path.join(ROOT, "build", "release", "daemon", "rootseald")
K8S_TOKEN = "bench-token"
VAULT_TOKEN = "bench-root"


def start_double(rel, args):
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "doubles", rel, "server.py"), "--port", "0"] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    m = re.match(r"READY (\d+)", line)
    if not m:
        raise SystemExit("double %s did not start: %r" % (rel, line))
    return p, int(m.group(1))


class Http:
    def __init__(self, port, headers):
        self.port, self.headers = port, headers

    def req(self, method, path, body=None, ctype="application/json"):
        return http_json(self.port, method, path, self.headers, body, ctype, timeout=60)


def stop_all(procs):
    """SIGTERM to each still-running process, last started first; kill after 30 s."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def write_private(work, name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    return path


def host_files(work, kport):
    """A fresh SoftHSM2 token (its env), its PIN file and a kubeconfig for
    the Kubernetes double at kport, in `work`: (env, pin path, kubeconfig path)."""
    env = make_softhsm(os.path.join(work, "hsm"), "bench", pin="4321")
    env.pop("CREDENTIALS_DIRECTORY", None)
    pin = write_private(work, "pin", "4321")
    kubeconfig = write_private(work, "kubeconfig", (
        "apiVersion: v1\nkind: Config\nclusters:\n- name: d\n  cluster: {server: \"http://127.0.0.1:%d\"}\n"
        "users:\n- name: u\n  user: {token: \"%s\"}\ncontexts:\n- name: c\n  context: {cluster: d, user: u}\n"
        "current-context: c") % (kport, K8S_TOKEN))
    return env, pin, kubeconfig


def start_rootseald(work, kport, sync_extra, procs, top_extra=""):
    """rootseald in config mode on a fresh SoftHSM2 token, syncing with the
    Kubernetes double at kport; top_extra is YAML of top-level keys (storage,
    etcd, host_id...), sync_extra is YAML appended under `sync:` (indented by
    two). Returns (port, process, monotonic start time)."""
    env, pin, kubeconfig = host_files(work, kport)
    port = free_port()
    cfg = os.path.join(work, "rootseald.yaml")
    with open(cfg, "w") as f:
        f.write("""listen: {address: 127.0.0.1:%d, allow_plaintext: true}
state_dir: %s/state
pkcs11: {module: %s, token_label: bench, generate_key: true}
pin: {sources: [file], file: %s}
log: {level: warn}
%ssync:
  enabled: true
  kubeconfig: %s
  kube_qps: 5000
  kube_burst: 5000
  rollout_restart: false
%s""" % (port, work, SOFTHSM2_MODULE, pin, top_extra, kubeconfig, sync_extra))
    t_start = time.monotonic()
    err = open(os.path.join(work, "stderr.log"), "wb")
    rs = subprocess.Popen([ROOTSEALD, "--config", cfg, "--allow-root"], stdout=subprocess.DEVNULL, stderr=err, env=env)
    procs.append(rs)
    return port, rs, t_start


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metrics(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/v1/sys/metrics?format=prometheus")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("rootseal_sync_"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def wait_for(pred, what, timeout, proc=None, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit("rootseald exited %s while waiting for %s" % (proc.returncode, what))
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise SystemExit("timed out waiting for %s" % what)


def vault_reads(vault):
    st, s = vault.req("GET", "/_double/stats")
    return sum(v for k, v in s["by_path"].items() if k.startswith("GET /v1/secret/data/"))


def k8s_writes(k8s):
    st, s = k8s.req("GET", "/_double/stats")
    return s["writes"], s["by_verb"]


def ready_count(k8s):
    """ExternalSecrets whose Ready condition is True, from the API server."""
    st, lst = k8s.req("GET", "/apis/external-secrets.io/v1/externalsecrets")
    n = 0
    for es in lst.get("items", []):
        for c in (es.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready" and c.get("status") == "True":
                n += 1
    return n


def outage(args, results, k8s, vault, port, rs):
    """Vault down (503 to everything) for args.outage seconds, then back:
    provider calls during the outage and the recovery, ExternalSecrets parked,
    time from Vault's return until every ExternalSecret is Ready again."""
    r0 = vault_reads(vault)
    m0 = metrics(port)
    vault.req("POST", "/_double/down", {"mode": "503"})
    t_down = time.monotonic()
    parked_max = 0
    while time.monotonic() - t_down < args.outage:  # the outage's length (a measurement window)
        parked_max = max(parked_max, int(metrics(port).get("rootseal_sync_parked", 0)))
        time.sleep(1)
    not_ready = args.es - ready_count(k8s)
    r1 = vault_reads(vault)
    vault.req("POST", "/_double/up")
    t_up = time.monotonic()
    wait_for(lambda: ready_count(k8s) >= args.es, "every ExternalSecret Ready after the outage", timeout=900, proc=rs,
             step=0.5)
    t_ready = time.monotonic()
    r2 = vault_reads(vault)
    m2 = metrics(port)
    results["outage_seconds"] = args.outage
    results["outage_not_ready_at_end"] = not_ready
    results["outage_parked_max"] = parked_max
    results["outage_vault_reads"] = r1 - r0
    results["outage_refused_locally"] = int(sum(v for k, v in m2.items() if k.startswith("rootseal_sync_store_refused_calls"))
                                            - sum(v for k, v in m0.items() if k.startswith("rootseal_sync_store_refused_calls")))
    results["recovery_seconds_until_all_ready"] = round(t_ready - t_up, 1)
    results["recovery_vault_reads"] = r2 - r1
    print("outage %.0fs: %d vault reads during it, %d ExternalSecrets not Ready at its end (%d parked at most); "
          "all Ready %.1fs after Vault returned, %d vault reads for the recovery"
          % (args.outage, r1 - r0, not_ready, parked_max, t_ready - t_up, r2 - r1), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--es", type=int, default=10000)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--refresh", default="30s", help="ExternalSecret refreshInterval")
    ap.add_argument("--window", default="10s", help="sync.refresh_window")
    ap.add_argument("--cycles", type=int, default=2, help="steady-state refresh cycles to observe")
    ap.add_argument("--loaders", type=int, default=16)
    ap.add_argument("--outage", type=float, default=0,
                    help="then Vault down (503) for this many seconds: recovery time and provider calls (0: skip)")
    args = ap.parse_args()
    refresh_s = int(args.refresh.rstrip("s"))

    work = tempdir("rootseal-bench-sync-")
    procs = []
    results = {"es": args.es, "namespaces": args.namespaces, "keys": args.keys, "refreshInterval": args.refresh,
               "refresh_window": args.window}
    try:
        kp, kport = start_double("k8s_apiserver", ["--token", K8S_TOKEN, "--max-history", "400000"])
        procs.append(kp)
        vp, vport = start_double("vault_kv", ["--token", VAULT_TOKEN])
        procs.append(vp)
        k8s = Http(kport, {"Authorization": "Bearer " + K8S_TOKEN})
        vault = Http(vport, {"X-Vault-Token": VAULT_TOKEN})

        t0 = time.monotonic()
        pool = concurrent.futures.ThreadPoolExecutor(args.loaders)

        def put_key(i):
            st, _ = vault.req("POST", "/v1/secret/data/k/%d" % i, {"data": {"value": "v%d-1" % i, "n": str(i)}})
            assert st in (200, 204), st
        list(pool.map(put_key, range(args.keys)))

        def make_ns(n):
            ns = "bench-%03d" % n
            st, _ = k8s.req("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            st, _ = k8s.req("POST", "/api/v1/namespaces/%s/secrets" % ns, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-token", "namespace": ns},
                "data": {"token": base64.b64encode(VAULT_TOKEN.encode()).decode()}})
            st, body = k8s.req("POST", "/apis/external-secrets.io/v1/namespaces/%s/secretstores" % ns, {
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": "vault", "namespace": ns},
                "spec": {"provider": {"vault": {"server": "http://127.0.0.1:%d" % vport, "path": "secret", "version": "v2",
                                                "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token"}}}}}})
            assert st == 201, (st, body)
        list(pool.map(make_ns, range(args.namespaces)))

        def make_es(i):
            ns = "bench-%03d" % (i % args.namespaces)
            key = i % args.keys
            st, body = k8s.req("POST", "/apis/external-secrets.io/v1/namespaces/%s/externalsecrets" % ns, {
                "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": {"name": "es-%05d" % i, "namespace": ns},
                "spec": {"refreshInterval": args.refresh, "secretStoreRef": {"name": "vault"},
                         "data": [{"secretKey": "value", "remoteRef": {"key": "k/%d" % key, "property": "value"}}]}})
            assert st == 201, (st, body)
        list(pool.map(make_es, range(args.es)))
        results["load_seconds"] = round(time.monotonic() - t0, 1)
        print("loaded %d ExternalSecrets in %d namespaces (%.1fs)" % (args.es, args.namespaces, results["load_seconds"]),
              flush=True)

        # rootseald
        k8s.req("POST", "/_double/stats/reset")
        vault.req("POST", "/_double/stats/reset")
        port, rs, t_start = start_rootseald(work, kport, "  refresh_window: %s\n" % args.window, procs)

        def synced():
            try:
                m = metrics(port)
            except OSError:
                return False
            return m.get("rootseal_sync_managed_secrets", 0) >= args.es and m
        m = wait_for(synced, "every Secret synced", timeout=900, proc=rs)
        results["cold_sync_seconds"] = round(time.monotonic() - t_start, 1)
        results["provider_calls_cold"] = int(m["rootseal_sync_provider_calls"])
        results["vault_reads_cold"] = vault_reads(vault)
        results["rss_mib_after_sync"] = round(rss_kib(rs.pid) / 1024, 1)
        # Verify from the API server itself: every Secret exists with the right value.
        st, lst = k8s.req("GET", "/api/v1/secrets?labelSelector=reconcile.external-secrets.io/managed%3Dtrue")
        managed = [s for s in lst["items"] if s["metadata"]["name"].startswith("es-")]
        wrong = 0
        for s in managed:
            i = int(s["metadata"]["name"][3:])
            if base64.b64decode(s["data"]["value"]).decode() != "v%d-1" % (i % args.keys):
                wrong += 1
        results["secrets_verified"] = len(managed)
        results["secrets_wrong"] = wrong
        print("cold sync: %(cold_sync_seconds)ss, provider calls %(provider_calls_cold)d, RSS %(rss_mib_after_sync)s MiB"
              % results, flush=True)

        # Steady state: wait for the queue to drain (status writes of the cold sync), then observe refresh cycles.
        wait_for(lambda: metrics(port).get("rootseal_sync_queue_ready", 1) == 0, "queue drained", timeout=600, proc=rs)
        time.sleep(2)  # let in-flight status patches land before counting (measurement pause, not synchronisation)
        w0, _ = k8s_writes(k8s)
        m0 = metrics(port)
        cycles = []
        for c in range(args.cycles):
            # One refresh cycle: wait until the engine has re-fetched all keys once more.
            base = vault_reads(vault)
            wait_for(lambda: vault_reads(vault) - base >= args.keys, "refresh cycle %d" % (c + 1),
                     timeout=refresh_s * 4 + 120, proc=rs, step=0.5)
            time.sleep(3)  # let the rest of the cycle finish (measurement window)
            cycles.append(vault_reads(vault) - base)
        w1, verbs = k8s_writes(k8s)
        m1 = metrics(port)
        results["provider_calls_per_cycle"] = cycles
        results["k8s_writes_steady_state"] = w1 - w0
        results["reconciles_steady_state"] = int(m1["rootseal_sync_reconciles"] - m0["rootseal_sync_reconciles"])
        results["rss_mib_steady"] = round(rss_kib(rs.pid) / 1024, 1)
        print("steady state: provider calls per cycle %s, k8s writes %d over %d cycles"
              % (cycles, results["k8s_writes_steady_state"], args.cycles), flush=True)

        # Store change -> Secret update delay (key 0 feeds es-00000, es-<keys>, ...).
        t_change = time.monotonic()
        vault.req("POST", "/v1/secret/data/k/0", {"data": {"value": "v0-2", "n": "0"}})
        ns0 = "bench-000"
        watched = ["es-%05d" % i for i in range(0, args.es, args.keys) if i % args.namespaces == 0][:3] or ["es-00000"]

        def updated():
            for name in watched:
                st, s = k8s.req("GET", "/api/v1/namespaces/%s/secrets/%s" % (ns0, name))
                if st != 200 or base64.b64decode(s["data"]["value"]).decode() != "v0-2":
                    return False
            return True
        wait_for(updated, "store change reaches the Secrets", timeout=refresh_s * 3 + 60, proc=rs, step=0.1)
        results["store_change_to_secret_seconds"] = round(time.monotonic() - t_change, 1)
        results["store_change_bound_seconds"] = "refreshInterval + refresh_window"
        if args.outage > 0:
            outage(args, results, k8s, vault, port, rs)
        print(json.dumps(results, indent=2))
    finally:
        stop_all(procs)
        rmtree(work)


if __name__ == "__main__":
    main()
