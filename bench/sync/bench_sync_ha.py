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

With --pushsecrets P (issue 21's test at scale: --es 1000 --namespaces 50
--pushsecrets 200): P PushSecrets spread over the namespaces push their own
Secret to moto_server through the host store `moto` (refreshed every
--push-refresh). Also reported, and checked (exit 1 when not as the issue
asks): every PushSecret pushed once; no Kubernetes write in steady state
(the API double's write count over one refresh of every PushSecret); after
the SIGKILL every bucket owned again within member_ttl + 5 s, every Secret
correct, and no pushed secret with more than its one version (moto's own
version counts) once every PushSecret was refreshed by the survivors.

  ROOTSEALD=build/release/daemon/rootseald /usr/bin/python3 bench/sync/bench_sync_ha.py \\
      --hosts 3 [--es 3000 --namespaces 60 --keys 300] [--pushsecrets 200]
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
from bench_sync import (Http, K8S_TOKEN, VAULT_TOKEN, metrics, rss_kib, start_double,  # noqa: E402
                        start_rootseald, stop_all, wait_for)
from rootseal_testlib import free_port, rmtree, tempdir, wait_moto, write_private  # noqa: E402
os.environ.setdefault("ROOTSEAL_CLI", os.path.join(ROOT, "build", "release", "cli", "rootseal"))  # test_ha_etcd reads it
from sync_testlib import moto_secrets  # noqa: E402
from test_ha_etcd import Etcd  # noqa: E402

PREFIX = "/rootseal-bench/"


def start_host(work, label, kport, endpoints, ttl, window, moto_port=0):
    d = os.path.join(work, label)
    os.makedirs(d)
    top = """admin: {socket: %s/admin.sock}
host_id: %s
storage: etcd
etcd: {endpoints: [%s], prefix: %s, request_timeout: 1s, member_ttl: %ds}
""" % (d, label, ", ".join(endpoints), PREFIX, ttl)
    sync = "  refresh_window: %s\n" % window
    if moto_port:
        sync += """  stores:
    moto:
      kind: aws
      region: us-east-1
      endpoint: http://127.0.0.1:%d
      access_key_id: {file: %s}
      secret_access_key: {file: %s}
      namespaces: ["*"]
""" % (moto_port, write_private(os.path.join(d, "aws-id"), "testing\n"),
       write_private(os.path.join(d, "aws-secret"), "testing\n"))
    procs = []
    port, proc, _ = start_rootseald(d, kport, sync, procs, top_extra=top)
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


def k8s_write_count(k8s):
    st, s = k8s.req("GET", "/_double/stats")
    return s["writes"]


def total(hosts, name):
    return sum(metrics(h["port"]).get(name, 0) for h in hosts if h["proc"].poll() is None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--es", type=int, default=3000)
    ap.add_argument("--namespaces", type=int, default=60)
    ap.add_argument("--keys", type=int, default=300)
    ap.add_argument("--window", default="10s")
    ap.add_argument("--ttl", type=int, default=3, help="etcd.member_ttl, seconds")
    ap.add_argument("--loaders", type=int, default=16)
    ap.add_argument("--pushsecrets", type=int, default=0, help="PushSecrets to moto_server (0: none)")
    ap.add_argument("--push-refresh", default="10s", help="the PushSecrets' refreshInterval")
    args = ap.parse_args()

    work = tempdir("rootseal-bench-sync-ha-")
    procs = []
    etcd = None
    hosts = []
    results = {"hosts": args.hosts, "es": args.es, "namespaces": args.namespaces, "keys": args.keys,
               "member_ttl_s": args.ttl, "pushsecrets": args.pushsecrets}
    failures = []
    moto_port = 0
    try:
        etcd = Etcd(work)
        kp, kport = start_double("k8s_apiserver", ["--token", K8S_TOKEN, "--max-history", "400000"])
        procs.append(kp)
        vp, vport = start_double("vault_kv", ["--token", VAULT_TOKEN])
        procs.append(vp)
        k8s = Http(kport, {"Authorization": "Bearer " + K8S_TOKEN})
        vault = Http(vport, {"X-Vault-Token": VAULT_TOKEN})
        pool = concurrent.futures.ThreadPoolExecutor(args.loaders)
        if args.pushsecrets:
            moto_port = free_port()
            mp = subprocess.Popen(["moto_server", "-p", str(moto_port)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            procs.append(mp)
            wait_moto(mp, moto_port)

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

        def make_ps(i):
            ns = "bench-%03d" % (i % args.namespaces)
            if i < args.namespaces:
                st, body = k8s.req("POST", "/apis/external-secrets.io/v1/namespaces/%s/secretstores" % ns, {
                    "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                    "metadata": {"name": "aws", "namespace": ns,
                                 "annotations": {"sync.rootseal.io/credentials": "moto"}},
                    "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}}})
                assert st == 201, (st, body)
            st, body = k8s.req("POST", "/api/v1/namespaces/%s/secrets" % ns, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src-%04d" % i, "namespace": ns},
                "data": {"pw": base64.b64encode(b"p-%d" % i).decode()}})
            assert st == 201, (st, body)
            st, body = k8s.req("POST", "/apis/external-secrets.io/v1alpha1/namespaces/%s/pushsecrets" % ns, {
                "apiVersion": "external-secrets.io/v1alpha1", "kind": "PushSecret",
                "metadata": {"name": "ps-%04d" % i, "namespace": ns},
                "spec": {"refreshInterval": args.push_refresh,
                         "secretStoreRefs": [{"name": "aws", "kind": "SecretStore"}],
                         "selector": {"secret": {"name": "src-%04d" % i}},
                         "data": [{"match": {"secretKey": "pw", "remoteRef": {"remoteKey": "push-%04d" % i}}}]}})
            assert st == 201, (st, body)
        list(pool.map(make_ps, range(args.pushsecrets)))
        want_pushed = {"push-%04d" % i: ("p-%d" % i, 1) for i in range(args.pushsecrets)}

        def pushed_once():
            got = moto_secrets(moto_port)
            return {n: got.get(n) for n in want_pushed if got.get(n) != want_pushed[n]}
        print("loaded %d ExternalSecrets and %d PushSecrets in %d namespaces" % (
            args.es, args.pushsecrets, args.namespaces), flush=True)

        endpoints = ['"%s"' % etcd.endpoint(i) for i in range(3)]
        t_start = time.monotonic()
        for h in range(args.hosts):
            hosts.append(start_host(work, "rs-%d" % (h + 1), kport, endpoints, args.ttl, args.window, moto_port))
            procs.append(hosts[-1]["proc"])
        wait_for(lambda: len(managed_secrets(k8s)) >= args.es, "every Secret synced", timeout=900, step=0.5)
        results["cold_sync_seconds"] = round(time.monotonic() - t_start, 1)

        def secrets_wrong():
            return sum(1 for s in managed_secrets(k8s)
                       if base64.b64decode(s["data"]["value"]).decode() != "v%d-1" % (int(s["metadata"]["name"][3:])
                                                                                     % args.keys))
        results["secrets_wrong"] = secrets_wrong()
        if args.pushsecrets:
            wait_for(lambda: not pushed_once(), "every PushSecret pushed", timeout=900, step=0.5)
            results["cold_sync_with_pushes_seconds"] = round(time.monotonic() - t_start, 1)
            wait_for(lambda: len(owners(etcd)) == 256, "every bucket owned", timeout=120, step=0.2)
            # Steady state: every PushSecret refreshed once more (their
            # reconciles counted over the hosts), no Kubernetes write meanwhile.
            writes0 = k8s_write_count(k8s)
            pr0 = total(hosts, "rootseal_sync_push_reconciles")
            t0 = time.monotonic()
            wait_for(lambda: total(hosts, "rootseal_sync_push_reconciles") >= pr0 + args.pushsecrets,
                     "every PushSecret refreshed once more", timeout=300, step=0.2)
            results["steady_state_window_seconds"] = round(time.monotonic() - t0, 1)
            results["steady_state_k8s_writes"] = k8s_write_count(k8s) - writes0
            if results["steady_state_k8s_writes"]:
                failures.append("Kubernetes writes in steady state: %d" % results["steady_state_k8s_writes"])
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
            writes_kill = k8s_write_count(k8s)
            t_kill = time.monotonic()
            victim["proc"].kill()
            victim["proc"].wait()
            wait_for(lambda: len(owners(etcd)) == 256 and victim["label"] not in owners(etcd).values(),
                     "every bucket owned by a live host", timeout=120, step=0.05)
            results["takeover_seconds_buckets"] = round(time.monotonic() - t_kill, 2)
            print("takeover after SIGKILL: every bucket owned again after %(takeover_seconds_buckets)ss" % results,
                  flush=True)
            if results["takeover_seconds_buckets"] > args.ttl + 5:
                failures.append("takeover %.1f s > member_ttl + 5 s" % results["takeover_seconds_buckets"])
            if args.pushsecrets:
                # The survivors refresh every PushSecret (the victim's too):
                # still one version each, every Secret still correct.
                pr1 = total(hosts, "rootseal_sync_push_reconciles")
                wait_for(lambda: total(hosts, "rootseal_sync_push_reconciles") >= pr1 + args.pushsecrets,
                         "every PushSecret refreshed by the survivors", timeout=300, step=0.2)
                # Steady state again (every PushSecret refreshed once by the
                # survivors, who also queued every object of the buckets they
                # gained): Kubernetes writes since the kill.
                results["k8s_writes_since_kill"] = k8s_write_count(k8s) - writes_kill
                if results["k8s_writes_since_kill"]:
                    failures.append("Kubernetes writes from the takeover: %d" % results["k8s_writes_since_kill"])
                extra = pushed_once()
                results["pushes_not_one_version_after_takeover"] = len(extra)
                if extra:
                    failures.append("pushed secrets not at one version after the takeover: %r" %
                                    dict(list(extra.items())[:5]))
                results["secrets_wrong_after_takeover"] = secrets_wrong()
                if results["secrets_wrong_after_takeover"]:
                    failures.append("Secrets wrong after the takeover: %d" % results["secrets_wrong_after_takeover"])
        if results["secrets_wrong"]:
            failures.append("Secrets wrong after the cold sync: %d" % results["secrets_wrong"])
        print(json.dumps(results, indent=2))
        for f in failures:
            print("FAILED: " + f, flush=True)
    finally:
        for h in hosts:
            if h["proc"].poll() is None:
                h["proc"].send_signal(signal.SIGCONT)
        stop_all(procs)
        if etcd is not None:
            etcd.close()
        rmtree(work)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
