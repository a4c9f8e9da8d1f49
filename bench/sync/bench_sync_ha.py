#!/usr/bin/python3
"""The sync engine sharded over hosts (issue 21): N ExternalSecrets in M
namespaces, rootseald hosts on a three-member etcd (storage: etcd,
sync.sharded), the Kubernetes API double and the Vault KV v2 double in their
own processes. Run once with --hosts 1 and once with --hosts 3 for the
comparison (both on etcd, so only the number of hosts differs).

Reports: cold sync (from the hosts' start until every Secret exists, read
from the API double), provider calls of the cold sync (sum over the hosts),
RSS per host, buckets per host, and with --hosts > 1 the takeover after a
SIGKILL of one host (until every bucket has a live owner again, read from
etcd).

  ROOTSEALD=build/release/daemon/rootseald /usr/bin/python3 bench/sync/bench_sync_ha.py \\
      --hosts 3 [--es 3000 --namespaces 60 --keys 300]
"""
import argparse
import base64
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
from bench_sync import (Http, K8S_TOKEN, VAULT_TOKEN, host_files, metrics, rss_kib, start_double,  # noqa: E402
                        stop_all, wait_for)
from rootseal_testlib import SOFTHSM2_MODULE, free_port, rmtree, tempdir  # noqa: E402
os.environ.setdefault("ROOTSEAL_CLI", os.path.join(ROOT, "build", "release", "cli", "rootseal"))  # test_ha_etcd reads it
from test_ha_etcd import Etcd  # noqa: E402

ROOTSEALD = os.environ.get("ROOTSEALD") or os.path.join(ROOT, "build", "release", "daemon", "rootseald")
PREFIX = "/rootseal-bench/"


def start_host(work, label, kport, endpoints, ttl, window):
    d = os.path.join(work, label)
    os.makedirs(d)
    env, pin, kubeconfig = host_files(d, kport)
    port = free_port()
    cfg = os.path.join(d, "rootseald.yaml")
    with open(cfg, "w") as f:
        f.write("""listen: {address: 127.0.0.1:%d, allow_plaintext: true}
state_dir: %s/state
pkcs11: {module: %s, token_label: bench, generate_key: true}
pin: {sources: [file], file: %s}
log: {level: warn}
admin: {socket: %s/admin.sock}
host_id: %s
storage: etcd
etcd: {endpoints: [%s], prefix: %s, request_timeout: 1s, member_ttl: %ds}
sync:
  enabled: true
  kubeconfig: %s
  kube_qps: 5000
  kube_burst: 5000
  rollout_restart: false
  refresh_window: %s
""" % (port, d, SOFTHSM2_MODULE, pin, d, label, ", ".join(endpoints), PREFIX, ttl, kubeconfig, window))
    err = open(os.path.join(d, "stderr.log"), "wb")
    proc = subprocess.Popen([ROOTSEALD, "--config", cfg, "--allow-root"], stdout=subprocess.DEVNULL, stderr=err,
                            env=env)
    return {"label": label, "port": port, "proc": proc}


def owners(etcd):
    prefix = PREFIX + "shards/"
    answer = etcd.post("/v3/kv/range", {"key": base64.b64encode(prefix.encode()).decode(),
                                        "range_end": base64.b64encode((PREFIX + "shards0").encode()).decode()})
    return {int(base64.b64decode(kv["key"]).decode()[len(prefix):]): json.loads(base64.b64decode(kv["value"]))["host_id"]
            for kv in answer.get("kvs", [])}


def managed_secrets(k8s):
    st, lst = k8s.req("GET", "/api/v1/secrets?labelSelector=reconcile.external-secrets.io/managed%3Dtrue")
    return [s for s in lst["items"] if s["metadata"]["name"].startswith("es-")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--es", type=int, default=3000)
    ap.add_argument("--namespaces", type=int, default=60)
    ap.add_argument("--keys", type=int, default=300)
    ap.add_argument("--window", default="10s")
    ap.add_argument("--ttl", type=int, default=3, help="etcd.member_ttl, seconds")
    ap.add_argument("--loaders", type=int, default=16)
    args = ap.parse_args()

    work = tempdir("rootseal-bench-sync-ha-")
    procs = []
    etcd = None
    hosts = []
    results = {"hosts": args.hosts, "es": args.es, "namespaces": args.namespaces, "keys": args.keys,
               "member_ttl_s": args.ttl}
    try:
        etcd = Etcd(work)
        kp, kport = start_double("k8s_apiserver", ["--token", K8S_TOKEN, "--max-history", "400000"])
        procs.append(kp)
        vp, vport = start_double("vault_kv", ["--token", VAULT_TOKEN])
        procs.append(vp)
        k8s = Http(kport, {"Authorization": "Bearer " + K8S_TOKEN})
        vault = Http(vport, {"X-Vault-Token": VAULT_TOKEN})
        pool = concurrent.futures.ThreadPoolExecutor(args.loaders)

        def put_key(i):
            st, _ = vault.req("POST", "/v1/secret/data/k/%d" % i, {"data": {"value": "v%d-1" % i}})
            assert st in (200, 204), st
        list(pool.map(put_key, range(args.keys)))

        def make_ns(n):
            ns = "bench-%03d" % n
            k8s.req("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            k8s.req("POST", "/api/v1/namespaces/%s/secrets" % ns, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-token", "namespace": ns},
                "data": {"token": base64.b64encode(VAULT_TOKEN.encode()).decode()}})
            st, body = k8s.req("POST", "/apis/external-secrets.io/v1/namespaces/%s/secretstores" % ns, {
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": {"name": "vault", "namespace": ns},
                "spec": {"provider": {"vault": {"server": "http://127.0.0.1:%d" % vport, "path": "secret",
                                                "version": "v2",
                                                "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token"}}}}}})
            assert st == 201, (st, body)
        list(pool.map(make_ns, range(args.namespaces)))

        def make_es(i):
            ns = "bench-%03d" % (i % args.namespaces)
            st, body = k8s.req("POST", "/apis/external-secrets.io/v1/namespaces/%s/externalsecrets" % ns, {
                "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": {"name": "es-%05d" % i, "namespace": ns},
                "spec": {"refreshInterval": "1h", "secretStoreRef": {"name": "vault"},
                         "data": [{"secretKey": "value", "remoteRef": {"key": "k/%d" % (i % args.keys),
                                                                      "property": "value"}}]}})
            assert st == 201, (st, body)
        list(pool.map(make_es, range(args.es)))
        print("loaded %d ExternalSecrets in %d namespaces" % (args.es, args.namespaces), flush=True)

        endpoints = ['"%s"' % etcd.endpoint(i) for i in range(3)]
        t_start = time.monotonic()
        for h in range(args.hosts):
            hosts.append(start_host(work, "rs-%d" % (h + 1), kport, endpoints, args.ttl, args.window))
            procs.append(hosts[-1]["proc"])
        wait_for(lambda: len(managed_secrets(k8s)) >= args.es, "every Secret synced", timeout=900, step=0.5)
        results["cold_sync_seconds"] = round(time.monotonic() - t_start, 1)
        wrong = sum(1 for s in managed_secrets(k8s)
                    if base64.b64decode(s["data"]["value"]).decode() != "v%d-1" % (int(s["metadata"]["name"][3:])
                                                                                  % args.keys))
        results["secrets_wrong"] = wrong
        per = [metrics(h["port"]) for h in hosts]
        results["provider_calls_cold_total"] = int(sum(m.get("rootseal_sync_provider_calls", 0) for m in per))
        results["provider_calls_cold_per_host"] = [int(m.get("rootseal_sync_provider_calls", 0)) for m in per]
        results["buckets_per_host"] = [int(m.get("rootseal_sync_buckets_owned", 0)) for m in per]
        results["rss_mib_per_host"] = [round(rss_kib(h["proc"].pid) / 1024, 1) for h in hosts]
        print("cold sync: %(cold_sync_seconds)ss over %(hosts)d host(s), provider calls %(provider_calls_cold_total)d "
              "%(provider_calls_cold_per_host)s, buckets %(buckets_per_host)s, RSS MiB %(rss_mib_per_host)s" % results,
              flush=True)

        if args.hosts > 1:
            victim = hosts[-1]
            t_kill = time.monotonic()
            victim["proc"].kill()
            victim["proc"].wait()
            wait_for(lambda: len(owners(etcd)) == 256 and victim["label"] not in owners(etcd).values(),
                     "every bucket owned by a live host", timeout=120, step=0.05)
            results["takeover_seconds_buckets"] = round(time.monotonic() - t_kill, 2)
            print("takeover after SIGKILL: every bucket owned again after %(takeover_seconds_buckets)ss" % results,
                  flush=True)
        print(json.dumps(results, indent=2))
    finally:
        for h in hosts:
            if h["proc"].poll() is None:
                h["proc"].send_signal(signal.SIGCONT)
        stop_all(procs)
        if etcd is not None:
            etcd.close()
        rmtree(work)


if __name__ == "__main__":
    main()
