#!/usr/bin/python3
"""PushSecret benchmark (issue 7): N PushSecrets (default 1,000), each pushing
its own Kubernetes Secret to AWS Secrets Manager (moto_server), through
rootseald (config mode) and the Kubernetes API double, each in its own
process.

Reports: time from rootseald start until every remote secret exists with the
right value (checked in moto itself, BatchGetSecretValue), and remote writes
per idle refresh cycle (target 0), measured three ways: rootseald's
rootseal_sync_push_writes, the number of secret versions in moto, and a
cycle being one more reconcile of every PushSecret
(rootseal_sync_push_reconciles / push_unchanged).

  ROOTSEALD=build/daemon/rootseald /usr/bin/python3 bench/push_1000.py \
      [--pushsecrets 1000 --namespaces 10 --refresh 30s --cycles 2]

Each namespace has its own SecretStore (host credentials `moto`), and every
store has its own 50 writes/s limiter: with 10 namespaces the first full push
is bounded by 10 x 50 writes/s.
"""
import argparse
import base64
import concurrent.futures
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "bench", "sync"))
from rootseal_testlib import free_port, rmtree, tempdir  # noqa: E402
from sync_testlib import http_json  # noqa: E402
from bench_sync import K8S_TOKEN, metrics, start_double, start_rootseald, stop_all, wait_for, write_private  # noqa: E402


def k8s(port, method, path, body=None):
    return http_json(port, method, path, {"Authorization": "Bearer " + K8S_TOKEN}, body, timeout=60)


def aws(port, op, body):
    """A Secrets Manager call to moto (moto does not check SigV4 signatures;
    the scope names the region)."""
    return http_json(port, "POST", "/", {
        "X-Amz-Target": "secretsmanager." + op,
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/aws4_request, "
                         "SignedHeaders=host, Signature=00"}, body, ctype="application/x-amz-json-1.1", timeout=60)


def remote_values(moto, names):
    """name -> value (SecretString, or SecretBinary decoded: rootseal pushes binary by
    default, as ESO) for the names that exist (BatchGetSecretValue, 20 at a time)."""
    out = {}
    for i in range(0, len(names), 20):
        st, r = aws(moto, "BatchGetSecretValue", {"SecretIdList": names[i:i + 20]})
        if st != 200:
            continue
        for v in r.get("SecretValues") or []:
            out[v["Name"]] = v["SecretString"] if "SecretString" in v else \
                base64.b64decode(v["SecretBinary"]).decode() if "SecretBinary" in v else None
    return out


def version_count(moto, names, pool):
    def one(n):
        st, r = aws(moto, "ListSecretVersionIds", {"SecretId": n, "IncludeDeprecated": True})
        return len(r["Versions"]) if st == 200 else 0
    return sum(pool.map(one, names))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushsecrets", type=int, default=1000)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--refresh", default="30s", help="PushSecret refreshInterval (seconds, 's' suffix)")
    ap.add_argument("--cycles", type=int, default=2, help="idle refresh cycles to observe")
    ap.add_argument("--loaders", type=int, default=16)
    args = ap.parse_args()
    refresh_s = int(args.refresh.rstrip("s"))
    n = args.pushsecrets
    names = ["bench/ps-%05d" % i for i in range(n)]
    work = tempdir("rootseal-bench-push-")
    procs = []
    results = {"pushsecrets": n, "namespaces": args.namespaces, "refreshInterval": args.refresh}
    try:
        kp, kport = start_double("k8s_apiserver", ["--token", K8S_TOKEN, "--max-history", "400000"])
        procs.append(kp)
        moto = free_port()
        mp = subprocess.Popen(["moto_server", "-p", str(moto)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(mp)

        def moto_up():
            try:
                return aws(moto, "ListSecrets", {})[0] == 200
            except (OSError, ValueError):
                return False
        wait_for(moto_up, "moto_server", 60)

        pool = concurrent.futures.ThreadPoolExecutor(args.loaders)
        t0 = time.monotonic()

        def make_ns(j):
            ns = "push-%03d" % j
            k8s(kport, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            st, body = k8s(kport, "POST", "/apis/external-secrets.io/v1/namespaces/%s/secretstores" % ns, {
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": {"name": "aws", "namespace": ns, "annotations": {"sync.rootseal.io/credentials": "moto"}},
                "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}}})
            assert st == 201, (st, body)
        list(pool.map(make_ns, range(args.namespaces)))

        def make_ps(i):
            ns = "push-%03d" % (i % args.namespaces)
            st, body = k8s(kport, "POST", "/api/v1/namespaces/%s/secrets" % ns, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src-%05d" % i, "namespace": ns},
                "data": {"value": base64.b64encode(b"value-%d" % i).decode()}})
            assert st == 201, (st, body)
            st, body = k8s(kport, "POST", "/apis/external-secrets.io/v1alpha1/namespaces/%s/pushsecrets" % ns, {
                "apiVersion": "external-secrets.io/v1alpha1", "kind": "PushSecret",
                "metadata": {"name": "ps-%05d" % i, "namespace": ns},
                "spec": {"refreshInterval": args.refresh, "secretStoreRefs": [{"name": "aws", "kind": "SecretStore"}],
                         "selector": {"secret": {"name": "src-%05d" % i}},
                         "data": [{"match": {"secretKey": "value", "remoteRef": {"remoteKey": names[i]}}}]}})
            assert st == 201, (st, body)
        list(pool.map(make_ps, range(n)))
        results["load_seconds"] = round(time.monotonic() - t0, 1)
        print("loaded %d PushSecrets in %d namespaces (%.1fs)" % (n, args.namespaces, results["load_seconds"]), flush=True)

        aws_id = write_private(work, "aws-id", "testing")
        aws_secret = write_private(work, "aws-secret", "testing")
        port, rs, t_start = start_rootseald(work, kport, """  refresh_window: 1s
  stores:
    moto:
      kind: aws
      region: us-east-1
      endpoint: http://127.0.0.1:%d
      access_key_id: {file: %s}
      secret_access_key: {file: %s}
      namespaces: ["*"]
""" % (moto, aws_id, aws_secret), procs)

        def pushed():
            try:
                m = metrics(port)
            except OSError:
                return False
            return m.get("rootseal_sync_push_writes", 0) >= n and m
        wait_for(pushed, "every PushSecret pushed", timeout=900, proc=rs)
        results["first_full_push_seconds"] = round(time.monotonic() - t_start, 1)
        # Verified in moto itself: every remote secret holds its value.
        vals = remote_values(moto, names)
        results["remote_verified"] = sum(1 for i, name in enumerate(names) if vals.get(name) == "value-%d" % i)
        results["remote_wrong_or_missing"] = n - results["remote_verified"]
        print("first full push: %(first_full_push_seconds)ss (%(remote_verified)d verified in moto)" % results,
              flush=True)

        # Idle refresh cycles: every PushSecret reconciled once more per cycle, values unchanged.
        wait_for(lambda: metrics(port).get("rootseal_sync_push_reconciles", 0) >= n, "first reconciles", 120, rs)
        v0 = version_count(moto, names, pool)
        m0 = metrics(port)
        cycles = []
        for c in range(args.cycles):
            base = metrics(port)
            wait_for(lambda: metrics(port)["rootseal_sync_push_unchanged"] - base["rootseal_sync_push_unchanged"] >= n,
                     "idle refresh cycle %d" % (c + 1), timeout=refresh_s * 4 + 120, proc=rs, step=0.5)
            now = metrics(port)
            cycles.append({"reconciles": int(now["rootseal_sync_push_reconciles"] - base["rootseal_sync_push_reconciles"]),
                           "unchanged": int(now["rootseal_sync_push_unchanged"] - base["rootseal_sync_push_unchanged"]),
                           "writes": int(now["rootseal_sync_push_writes"] - base["rootseal_sync_push_writes"])})
        m1 = metrics(port)
        v1 = version_count(moto, names, pool)
        results["idle_cycles"] = cycles
        results["writes_per_idle_cycle"] = [c["writes"] for c in cycles]
        results["moto_versions_before_after_idle"] = [v0, v1]
        results["push_errors_idle"] = int(m1["rootseal_sync_push_errors"] - m0["rootseal_sync_push_errors"])
        with open("/proc/%d/status" % rs.pid) as f:
            rss = [int(line.split()[1]) for line in f if line.startswith("VmRSS:")][0]
        results["rss_mib"] = round(rss / 1024, 1)
        print(json.dumps(results, indent=2))
        if results["remote_wrong_or_missing"] or any(results["writes_per_idle_cycle"]) or v0 != v1:
            raise SystemExit("push benchmark: wrong values or writes while idle")
    finally:
        stop_all(procs)
        rmtree(work)


if __name__ == "__main__":
    main()
