"""The Kubernetes API server double (tests/doubles/k8s_apiserver) checked
against the real kubectl and against the API machinery rules of
/work/shared/reference/eso-k8s.md section 4, over TLS with a bearer token."""
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "doubles", "k8s_apiserver"))
import server as k8s  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "doubles", "common"))
import jwtlib  # noqa: E402
from rootseal_testlib import tempdir  # noqa: E402

TOKEN = "double-token-123"
KUBECTL = "/usr/bin/kubectl"


def make_cert(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def make_client_cert(d):
    """A CA and a client certificate it signed (for kubeconfig client-certificate auth)."""
    ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    ck, csr, cc = os.path.join(d, "client.key"), os.path.join(d, "client.csr"), os.path.join(d, "client.pem")
    for args in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
                  "-subj", "/CN=double-client-ca"],
                 ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", ck, "-out", csr, "-subj", "/O=rootseal/CN=sync"],
                 ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cc,
                  "-days", "1"]):
        subprocess.run(["openssl"] + args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return ca, cc, ck


class Api:
    def __init__(self, port, cafile, token=TOKEN):
        self.port, self.token = port, token
        self.ctx = ssl.create_default_context(cafile=cafile)

    def req(self, method, path, body=None, ctype="application/json", token=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
        try:
            h = {"Authorization": "Bearer " + (token or self.token)}
            data = None
            if body is not None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                h["Content-Type"] = ctype
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            return r.status, dict(r.getheaders()), (json.loads(raw) if raw else None)
        finally:
            c.close()

    def ok(self, method, path, body=None, ctype="application/json", want=(200, 201)):
        st, _, b = self.req(method, path, body, ctype)
        assert st in want, (method, path, st, b)
        return b

    def watch(self, path, events, stop, ready):
        """Reads a chunked watch stream into events until it ends or stop is set."""
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        c.request("GET", path, headers={"Authorization": "Bearer " + self.token})
        r = c.getresponse()
        events.append(("HTTP", r.status, r.getheader("Transfer-Encoding")))
        ready.set()
        while not stop.is_set():
            line = r.readline()
            if not line:
                break
            events.append(json.loads(line))
        c.close()


def wait_for(pred, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def kubectl(kcfg, *args, check=True, stdin=None):
    p = subprocess.run([KUBECTL, "--kubeconfig", kcfg, "--cache-dir", kcfg + ".cache"] + list(args), input=stdin, capture_output=True,
                       text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("kubectl %s failed (%d): %s %s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: vault, namespace: team-a}
spec:
  provider:
    vault:
      server: http://127.0.0.1:8200
      path: secret
      version: v2
      auth: {tokenSecretRef: {name: vault-token, key: token}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: db, namespace: team-a}
spec:
  refreshInterval: 1m
  secretStoreRef: {name: vault, kind: SecretStore}
  target: {name: db-creds}
  data:
  - secretKey: password
    remoteRef: {key: db, property: password}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team-a
  annotations: {secret.rootseal.io/reload: db-creds}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"""


def test_kubectl(d, kcfg, badcfg, certcfg, workdir):
    # Wrong token: 401 Status, kubectl says it is not logged in.
    p = kubectl(badcfg, "get", "ns", check=False)
    assert p.returncode != 0 and ("Unauthorized" in p.stderr or "credentials" in p.stderr), p.stderr
    # A client certificate signed by the configured client CA authenticates.
    out = kubectl(certcfg, "get", "ns", "default", "-o", "name").stdout.split()
    assert out == ["namespace/default"], out

    out = kubectl(kcfg, "get", "ns", "-o", "name").stdout.split()
    assert "namespace/default" in out, out

    # apply (client-side) twice: created, then unchanged.
    mf = os.path.join(workdir, "m.yaml")
    with open(mf, "w") as f:
        f.write(MANIFESTS)
    out = kubectl(kcfg, "apply", "--validate=false", "-f", mf).stdout
    assert "externalsecret.external-secrets.io/db created" in out, out
    assert "deployment.apps/web created" in out, out
    out = kubectl(kcfg, "apply", "--validate=false", "-f", mf).stdout
    assert "externalsecret.external-secrets.io/db unchanged" in out, out

    # Short names and the v1beta1 version of the same object.
    out = kubectl(kcfg, "-n", "team-a", "get", "es", "-o", "name").stdout.split()
    assert out == ["externalsecret.external-secrets.io/db"], out
    b1 = json.loads(kubectl(kcfg, "-n", "team-a", "get", "externalsecrets.v1beta1.external-secrets.io", "db",
                            "-o", "json").stdout)
    assert b1["apiVersion"] == "external-secrets.io/v1beta1" and b1["spec"]["target"]["name"] == "db-creds"

    # kubectl create (typed, protobuf body) and create -f (JSON).
    kubectl(kcfg, "-n", "team-a", "create", "secret", "generic", "vault-token", "--from-literal=token=s.abc")
    sec = json.loads(kubectl(kcfg, "-n", "team-a", "get", "secret", "vault-token", "-o", "json").stdout)
    assert sec["data"] == {"token": "cy5hYmM="} and sec["type"] == "Opaque", sec
    p = kubectl(kcfg, "-n", "team-a", "create", "secret", "generic", "vault-token", "--from-literal=x=y",
                check=False)
    assert p.returncode != 0 and 'secrets "vault-token" already exists' in p.stderr, \
        p.stderr
    kubectl(kcfg, "create", "--validate=false", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1", "namespace": "team-a"},
        "data": {"k": "v"}}))

    # patch: merge and JSON on a CRD; strategic is refused for CRDs (415) and
    # works on a Deployment; generation follows spec changes only.
    es = json.loads(kubectl(kcfg, "-n", "team-a", "get", "es", "db", "-o", "json").stdout)
    assert es["metadata"]["generation"] == 1
    kubectl(kcfg, "-n", "team-a", "patch", "es", "db", "--type=merge", "-p", '{"spec":{"refreshInterval":"5m"}}')
    kubectl(kcfg, "-n", "team-a", "patch", "es", "db", "--type=json",
            "-p", '[{"op":"replace","path":"/spec/target/name","value":"db2"}]')
    kubectl(kcfg, "-n", "team-a", "label", "es", "db", "team=a")
    es = json.loads(kubectl(kcfg, "-n", "team-a", "get", "es", "db", "-o", "json").stdout)
    assert es["spec"]["refreshInterval"] == "5m" and es["spec"]["target"]["name"] == "db2"
    assert es["metadata"]["generation"] == 3 and es["metadata"]["labels"] == {"team": "a"}, es["metadata"]
    p = kubectl(kcfg, "-n", "team-a", "patch", "es", "db", "-p", '{"spec":{"refreshInterval":"6m"}}', check=False)
    assert p.returncode != 0 and "strategic-merge-patch" in p.stderr, p.stderr
    kubectl(kcfg, "-n", "team-a", "patch", "deploy", "web", "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}')
    kubectl(kcfg, "-n", "team-a", "rollout", "restart", "deploy", "web")
    dep = json.loads(kubectl(kcfg, "-n", "team-a", "get", "deploy", "web", "-o", "json").stdout)
    tmpl = dep["spec"]["template"]
    assert tmpl["spec"]["containers"] == [{"name": "web", "image": "nginx:2"}], tmpl
    assert "kubectl.kubernetes.io/restartedAt" in tmpl["metadata"]["annotations"], tmpl
    assert dep["metadata"]["generation"] == 3, dep["metadata"]

    # server-side apply: ok for a fresh manager on untouched fields; conflict
    # with the fields kubectl-patch owns; --force-conflicts takes them over.
    p = kubectl(kcfg, "apply", "--server-side", "--validate=false", "-f", mf, check=False)
    assert p.returncode != 0 and "conflict" in p.stderr and ".spec.refreshInterval" in p.stderr, p.stderr
    out = kubectl(kcfg, "apply", "--server-side", "--force-conflicts", "--validate=false", "-f", mf).stdout
    assert "externalsecret.external-secrets.io/db serverside-applied" in out, out
    es = json.loads(kubectl(kcfg, "-n", "team-a", "get", "es", "db", "-o", "json", "--show-managed-fields").stdout)
    assert es["spec"]["refreshInterval"] == "1m" and es["spec"]["target"]["name"] == "db-creds"
    assert any(m["manager"] == "kubectl" and m["operation"] == "Apply" for m in es["metadata"]["managedFields"])

    # Pagination: kubectl --chunk-size=2 walks limit/continue and sees all.
    for i in range(5):
        kubectl(kcfg, "-n", "team-a", "create", "secret", "generic", "c%d" % i, "--from-literal=a=%d" % i)
    d.counters.reset()
    p = kubectl(kcfg, "-n", "team-a", "get", "secrets", "--chunk-size=2", "-o", "name", "-v=6")
    names = p.stdout.split()
    assert names == ["secret/c%d" % i for i in range(5)] + ["secret/vault-token"], names
    assert p.stderr.count("continue=") == 2 and "limit=2" in p.stderr, p.stderr
    assert d.counters.snapshot()["by_verb"].get("list") == 3

    # kubectl get --watch sees creation and deletion.
    w = subprocess.Popen([KUBECTL, "--kubeconfig", kcfg, "--cache-dir", kcfg + ".cache", "-n", "team-a", "get",
                          "secrets", "--watch", "--output-watch-events"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: [lines.append(ln.split()) for ln in w.stdout], daemon=True)
    reader.start()
    try:
        wait_for(lambda: d.open_watches >= 1, "kubectl watch to connect")
        kubectl(kcfg, "-n", "team-a", "create", "secret", "generic", "w1", "--from-literal=a=1")
        out = kubectl(kcfg, "-n", "team-a", "delete", "secret", "w1").stdout
        assert 'secret "w1" deleted' in out, out
        wait_for(lambda: any(ln[:2] == ["DELETED", "w1"] for ln in list(lines)), "watch events from kubectl")
        assert any(ln[:2] == ["ADDED", "w1"] for ln in lines), lines
    finally:
        w.terminate()
        w.wait()

    # Deleting the ExternalSecret garbage-collects the Secret it owns.
    es = json.loads(kubectl(kcfg, "-n", "team-a", "get", "es", "db", "-o", "json").stdout)
    kubectl(kcfg, "create", "--validate=false", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "db-creds", "namespace": "team-a",
            "ownerReferences": [{"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                                 "name": "db", "uid": es["metadata"]["uid"], "controller": True,
                                 "blockOwnerDeletion": True}]}, "data": {"password": "cHc="}}))
    kubectl(kcfg, "-n", "team-a", "delete", "es", "db")
    p = kubectl(kcfg, "-n", "team-a", "get", "secret", "db-creds", check=False)
    assert p.returncode != 0 and "NotFound" in p.stderr, p.stderr
    print("kubectl checks passed")


def test_api(d, api):
    ns = "/api/v1/namespaces/team-b"
    api.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})

    # Status error bodies.
    st, _, b = api.req("GET", ns + "/secrets/nope")
    assert st == 404 and b == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": 'secrets "nope" not found', "reason": "NotFound",
                               "details": {"name": "nope", "group": "", "kind": "secrets"}, "code": 404}, b
    st, _, b = api.req("GET", ns + "/secrets", token="wrong")
    assert st == 401 and b["reason"] == "Unauthorized" and b["kind"] == "Status", b
    st, _, b = api.req("POST", "/api/v1/namespaces/ghost/secrets", {"metadata": {"name": "x"}})
    assert st == 404 and b["message"] == 'namespaces "ghost" not found', b

    s1 = api.ok("POST", ns + "/secrets", {"apiVersion": "v1", "kind": "Secret",
                                           "metadata": {"name": "s1", "labels": {"app": "a"}},
                                           "stringData": {"k": "v"}})
    assert s1["data"] == {"k": "dg=="} and "stringData" not in s1 and s1["type"] == "Opaque"
    assert "generation" not in s1["metadata"]
    st, _, b = api.req("POST", ns + "/secrets", {"metadata": {"name": "s1"}})
    assert st == 409 and b["reason"] == "AlreadyExists" and b["message"] == 'secrets "s1" already exists', b
    st, _, b = api.req("POST", ns + "/secrets", {"metadata": {"name": "Bad_Name"}, "data": {"a b": "eA=="}})
    assert st == 422 and b["reason"] == "Invalid" and len(b["details"]["causes"]) == 2, b
    st, _, b = api.req("POST", ns + "/secrets", {"metadata": {"name": "lbl", "labels": {"k": "bad value"}}})
    assert st == 422 and b["details"]["causes"][0]["field"] == "metadata.labels", b

    # Optimistic concurrency: PUT with the current rv works and bumps it; a
    # stale rv is 409 Conflict; a no-op write keeps the rv.
    rv1 = s1["metadata"]["resourceVersion"]
    s1["data"]["k2"] = "eA=="
    s2 = api.ok("PUT", ns + "/secrets/s1", s1)
    assert int(s2["metadata"]["resourceVersion"]) > int(rv1)
    st, _, b = api.req("PUT", ns + "/secrets/s1", s1)
    assert st == 409 and b["reason"] == "Conflict" and "the object has been modified" in b["message"], b
    s3 = api.ok("PUT", ns + "/secrets/s1", s2)
    assert s3["metadata"]["resourceVersion"] == s2["metadata"]["resourceVersion"], "no-op write bumped rv"
    st, _, b = api.req("PATCH", ns + "/secrets/s1", {"metadata": {"resourceVersion": rv1}},
                       "application/merge-patch+json")
    assert st == 409 and b["reason"] == "Conflict", b
    # managedFields record the writer of each field.
    api.ok("PATCH", ns + "/secrets/s1?fieldManager=rootseal", {"data": {"k3": "eQ=="}}, "application/merge-patch+json")
    s = api.ok("GET", ns + "/secrets/s1")
    mf = {m["manager"]: m["fieldsV1"] for m in s["metadata"]["managedFields"]}
    assert mf["rootseal"] == {"f:data": {"f:k3": {}}}, mf
    # JSON patch test failure is 422; strategic merge works on Secrets.
    st, _, b = api.req("PATCH", ns + "/secrets/s1", [{"op": "test", "path": "/data/k", "value": "no"}],
                       "application/json-patch+json")
    assert st == 422, (st, b)
    api.ok("PATCH", ns + "/secrets/s1", {"metadata": {"annotations": {"a": "b"}}},
           "application/strategic-merge-patch+json")

    # Server-side apply: create, own fields, drop a field on re-apply.
    cfg = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ssa"}, "data": {"a": "YQ==", "b": "Yg=="}}
    st, _, b = api.req("PATCH", ns + "/secrets/ssa", cfg, "application/apply-patch+yaml")
    assert st == 400 and "fieldManager" in b["message"], b
    api.ok("PATCH", ns + "/secrets/ssa?fieldManager=rs", cfg, "application/apply-patch+yaml")
    cfg["data"] = {"a": "YQ=="}
    o = api.ok("PATCH", ns + "/secrets/ssa?fieldManager=rs", cfg, "application/apply-patch+yaml")
    assert o["data"] == {"a": "YQ=="}, o
    st, _, b = api.req("PATCH", ns + "/secrets/ssa?fieldManager=other",
                       dict(cfg, data={"a": "Wg=="}), "application/apply-patch+yaml")
    assert st == 409 and b["details"]["causes"][0]["type"] == "FieldManagerConflict", b
    o = api.ok("PATCH", ns + "/secrets/ssa?fieldManager=other&force=true", dict(cfg, data={"a": "Wg=="}),
               "application/apply-patch+yaml")
    assert o["data"] == {"a": "Wg=="}

    # CRD: /status subresource and generation.
    esp = "/apis/external-secrets.io/v1/namespaces/team-b/externalsecrets"
    es = api.ok("POST", esp, {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                              "metadata": {"name": "e1"}, "spec": {"refreshInterval": "1h"},
                              "status": {"refreshTime": "ignored"}})
    assert es["metadata"]["generation"] == 1 and "status" not in es, es
    st, _, b = api.req("PUT", esp + "/e1", {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                                             "metadata": {"name": "e1"}, "spec": {}})
    assert st == 422 and "must be specified for an update" in b["message"], b
    es["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced"}]}
    es2 = api.ok("PUT", esp + "/e1/status", es)
    assert es2["metadata"]["generation"] == 1 and es2["status"]["conditions"][0]["reason"] == "SecretSynced"
    es2["spec"]["refreshInterval"] = "2h"
    es2["status"] = {"hacked": True}
    es3 = api.ok("PUT", esp + "/e1", es2)
    assert es3["metadata"]["generation"] == 2 and es3["status"]["conditions"][0]["reason"] == "SecretSynced", es3
    es4 = api.ok("PATCH", esp + "/e1", {"metadata": {"annotations": {"force-sync": "1"}}},
                 "application/merge-patch+json")
    assert es4["metadata"]["generation"] == 2
    es5 = api.ok("PATCH", esp + "/e1/status", {"status": {"refreshTime": "2026-01-01T00:00:00Z"},
                                               "spec": {"refreshInterval": "9h"}}, "application/merge-patch+json")
    assert es5["metadata"]["generation"] == 2 and es5["spec"]["refreshInterval"] == "2h", es5
    assert es5["status"]["refreshTime"] == "2026-01-01T00:00:00Z"
    b1 = api.ok("GET", "/apis/external-secrets.io/v1beta1/namespaces/team-b/externalsecrets/e1")
    assert b1["apiVersion"] == "external-secrets.io/v1beta1" and b1["spec"]["refreshInterval"] == "2h"
    st, _, b = api.req("PATCH", esp + "/e1", {"spec": {}}, "application/strategic-merge-patch+json")
    assert st == 415 and b["reason"] == "UnsupportedMediaType", b

    # Selectors.
    for i, team in enumerate(["x", "y", "x"]):
        api.ok("POST", ns + "/configmaps", {"metadata": {"name": "cm%d" % i, "labels": {"team": team}}})
    names = [o["metadata"]["name"] for o in api.ok("GET", ns + "/configmaps?labelSelector=team%3Dx")["items"]]
    assert names == ["cm0", "cm2"], names
    names = [o["metadata"]["name"] for o in api.ok("GET", ns + "/configmaps?labelSelector=team+notin+(x)")["items"]]
    assert names == ["cm1"], names
    names = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in
             api.ok("GET", "/api/v1/configmaps?fieldSelector=metadata.name%3Dcm1")["items"]]
    assert names == [("team-a", "cm1"), ("team-b", "cm1")], names
    names = [o["metadata"]["name"] for o in
             api.ok("GET", "/api/v1/configmaps?fieldSelector=metadata.name%3Dcm1,metadata.namespace!%3Dteam-a")["items"]]
    assert names == ["cm1"], names
    st, _, b = api.req("GET", ns + "/configmaps?fieldSelector=data.k%3Dv")
    assert st == 400 and b["reason"] == "BadRequest", b

    # Metadata-only lists (what metadata informers ask for).
    c = http.client.HTTPSConnection("127.0.0.1", api.port, context=api.ctx, timeout=10)
    c.request("GET", ns + "/configmaps?labelSelector=team%3Dy", headers={
        "Authorization": "Bearer " + TOKEN,
        "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"})
    pl = json.loads(c.getresponse().read())
    c.close()
    assert pl["kind"] == "PartialObjectMetadataList" and pl["items"][0]["kind"] == "PartialObjectMetadata", pl
    assert set(pl["items"][0]) == {"kind", "apiVersion", "metadata"} and pl["items"][0]["metadata"]["name"] == "cm1"

    # Pagination: one resourceVersion for all pages, even with writes between.
    p1 = api.ok("GET", ns + "/configmaps?limit=2")
    assert len(p1["items"]) == 2 and p1["metadata"]["continue"] and p1["metadata"]["remainingItemCount"] == 1
    api.ok("POST", ns + "/configmaps", {"metadata": {"name": "cm9"}})
    p2 = api.ok("GET", ns + "/configmaps?limit=2&continue=" + p1["metadata"]["continue"])
    assert [o["metadata"]["name"] for o in p2["items"]] == ["cm2"] and "continue" not in p2["metadata"]
    assert p2["metadata"]["resourceVersion"] == p1["metadata"]["resourceVersion"]
    d.store.expire_history(kick=False)
    st, _, b = api.req("GET", ns + "/configmaps?limit=2&continue=" + p1["metadata"]["continue"])
    assert st == 410 and b["reason"] == "Expired", b

    # Watch: chunked, events after rv, bookmarks, filtering; 410 Expired in-stream.
    lst = api.ok("GET", ns + "/secrets")
    rv = lst["metadata"]["resourceVersion"]
    events, stop, ready = [], threading.Event(), threading.Event()
    t = threading.Thread(target=api.watch, args=(
        ns + "/secrets?watch=1&allowWatchBookmarks=true&labelSelector=app%3Dw&resourceVersion=" + rv,
        events, stop, ready), daemon=True)
    t.start()
    ready.wait(10)
    assert events[0] == ("HTTP", 200, "chunked"), events[0]
    api.ok("POST", ns + "/secrets", {"metadata": {"name": "w", "labels": {"app": "w"}}})
    api.ok("POST", ns + "/secrets", {"metadata": {"name": "unrelated"}})
    api.ok("PATCH", ns + "/secrets/w", {"data": {"z": "eg=="}}, "application/merge-patch+json")
    api.ok("DELETE", ns + "/secrets/w")
    types = lambda: [e["type"] for e in events[1:] if isinstance(e, dict) and e["type"] != "BOOKMARK"]
    wait_for(lambda: types() == ["ADDED", "MODIFIED", "DELETED"], "watch events (got %r)" % events)
    deleted_rv = int([e for e in events[1:] if isinstance(e, dict) and e["type"] == "DELETED"][0]
                     ["object"]["metadata"]["resourceVersion"])
    n = len(events)
    d.store.bookmark_now()
    bm = wait_for(lambda: [e for e in events[n:] if isinstance(e, dict) and e["type"] == "BOOKMARK"], "bookmark")
    assert set(bm[0]["object"]["metadata"]) == {"resourceVersion"} and bm[0]["object"]["kind"] == "Secret", bm[0]
    assert int(bm[0]["object"]["metadata"]["resourceVersion"]) >= deleted_rv, (bm[0], deleted_rv)
    # Expiring the history ends open watches with ERROR 410 Expired.
    d.store.expire_history(kick=True)
    t.join(10)
    err = events[-1]
    assert err["type"] == "ERROR" and err["object"]["code"] == 410 and err["object"]["reason"] == "Expired", err
    assert err["object"]["message"].startswith("too old resource version"), err
    # A watch from the old rv now fails at once; a fresh list's rv works.
    events2, ready2 = [], threading.Event()
    api.watch(ns + "/secrets?watch=1&resourceVersion=" + rv, events2, threading.Event(), ready2)
    assert events2[1]["type"] == "ERROR" and events2[1]["object"]["code"] == 410, events2

    # Finalizers: DELETE sets deletionTimestamp; removing the last finalizer deletes.
    api.ok("POST", esp, {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                         "metadata": {"name": "fin", "finalizers": ["externalsecrets.external-secrets.io/externalsecret-cleanup"]},
                         "spec": {}})
    o = api.ok("DELETE", esp + "/fin")
    assert o["kind"] == "ExternalSecret" and o["metadata"]["deletionTimestamp"], o
    st, _, b = api.req("PATCH", esp + "/fin", {"metadata": {"finalizers": ["a", "b"]}}, "application/merge-patch+json")
    assert st == 422, (st, b)
    api.ok("PATCH", esp + "/fin", {"metadata": {"finalizers": None}}, "application/merge-patch+json")
    st, _, _ = api.req("GET", esp + "/fin")
    assert st == 404
    # DELETE returns a Status; ownerReferences are garbage collected;
    # propagationPolicy=Orphan keeps dependents.
    owner = api.ok("POST", esp, {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                                 "metadata": {"name": "own"}, "spec": {}})
    for n in ("dep1", "dep2"):
        api.ok("POST", ns + "/secrets", {"metadata": {"name": n, "ownerReferences": [{
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "name": "own",
            "uid": owner["metadata"]["uid"], "controller": n == "dep1"}]}})
    st_body = api.ok("DELETE", esp + "/own")
    assert st_body["kind"] == "Status" and st_body["status"] == "Success", st_body
    assert api.req("GET", ns + "/secrets/dep1")[0] == 404 and api.req("GET", ns + "/secrets/dep2")[0] == 404
    owner = api.ok("POST", esp, {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                                 "metadata": {"name": "own2"}, "spec": {}})
    api.ok("POST", ns + "/secrets", {"metadata": {"name": "dep3", "ownerReferences": [{
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "name": "own2",
        "uid": owner["metadata"]["uid"]}]}})
    api.ok("DELETE", esp + "/own2", {"propagationPolicy": "Orphan"})
    assert "ownerReferences" not in api.ok("GET", ns + "/secrets/dep3")["metadata"]

    # Fault injection, down modes and counters.
    d.faults.add({"status": 409, "count": 2, "method": "PUT", "path": "/secrets/s1$"})
    cur = api.ok("GET", ns + "/secrets/s1")
    assert api.req("PUT", ns + "/secrets/s1", cur)[0] == 409
    assert api.req("PUT", ns + "/secrets/s1", cur)[0] == 409
    api.ok("PUT", ns + "/secrets/s1", cur)
    st, _, _ = api.req("POST", "/_double/faults", {"status": 429, "count": 1, "retry_after": 3})
    assert st == 200
    st, h, b = api.req("GET", ns + "/secrets")
    assert st == 429 and h["Retry-After"] == "3" and b["reason"] == "TooManyRequests" and \
        b["details"]["retryAfterSeconds"] == 3, (st, h, b)
    d.go_down("503")
    st, _, b = api.req("GET", ns + "/secrets")
    assert st == 503 and b["reason"] == "ServiceUnavailable", b
    d.go_down("close")
    try:
        api.req("GET", ns + "/secrets")
        raise AssertionError("expected the connection to be dropped")
    except (http.client.HTTPException, OSError):
        pass
    api.req("POST", "/_double/up", {})
    d.counters.reset()
    for _ in range(3):
        api.ok("GET", ns + "/secrets/s1")
    cur = api.ok("GET", ns + "/secrets/s1")
    api.ok("PUT", ns + "/secrets/s1", cur)
    st, _, stats = api.req("GET", "/_double/stats")
    assert stats["by_verb"] == {"get": 4, "update": 1} and stats["writes"] == 1, stats
    assert stats["by_resource"]["secrets"] == {"get": 4, "update": 1}, stats
    print("API machinery checks passed")


def jwt_claims(token):
    return json.loads(jwtlib.b64url_decode(token.split(".")[1]))


def test_service_account_tokens(d, kcfg, api):
    """TokenRequest through kubectl create token (its own client), TokenReview
    through kubectl create -f, the JWKS the tokens verify with."""
    kubectl(kcfg, "create", "namespace", "tok-a")
    sa_manifest = json.dumps({"apiVersion": "v1", "kind": "ServiceAccount",
                              "metadata": {"name": "reader", "namespace": "tok-a"}})
    kubectl(kcfg, "create", "--validate=false", "-f", "-", stdin=sa_manifest)  # (typed create sends protobuf the double does not decode)
    sa = json.loads(kubectl(kcfg, "-n", "tok-a", "get", "sa", "reader", "-o", "json").stdout)
    before = int(time.time())
    tok = kubectl(kcfg, "-n", "tok-a", "create", "token", "reader", "--audience", "vault",
                  "--audience", "other", "--duration", "15m").stdout.strip()
    c = jwt_claims(tok)
    assert c["aud"] == ["vault", "other"], c
    assert c["sub"] == "system:serviceaccount:tok-a:reader", c
    assert c["iss"] == k8s.SA_ISSUER, c
    assert c["kubernetes.io"] == {"namespace": "tok-a",
                                  "serviceaccount": {"name": "reader", "uid": sa["metadata"]["uid"]}}, c
    assert before <= c["iat"] <= int(time.time()) and c["exp"] - c["iat"] == 900 and c["nbf"] == c["iat"], c
    jwks = api.ok("GET", "/openid/v1/jwks")
    assert jwtlib.verify(tok, jwks["keys"]) == c
    disc = api.ok("GET", "/.well-known/openid-configuration")
    assert disc["issuer"] == k8s.SA_ISSUER and disc["jwks_uri"].endswith("/openid/v1/jwks"), disc
    # No audience: the API's own; no duration: an hour.
    c2 = jwt_claims(kubectl(kcfg, "-n", "tok-a", "create", "token", "reader").stdout.strip())
    assert c2["aud"] == [k8s.SA_ISSUER] and c2["exp"] - c2["iat"] == 3600, c2
    # The answer as the API gives it (status.token, status.expirationTimestamp).
    r = api.ok("POST", "/api/v1/namespaces/tok-a/serviceaccounts/reader/token",
               {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": ["sts.amazonaws.com"], "expirationSeconds": 600}})
    assert r["kind"] == "TokenRequest" and r["spec"]["expirationSeconds"] == 600, r
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["status"]["expirationTimestamp"]), r
    assert jwt_claims(r["status"]["token"])["aud"] == ["sts.amazonaws.com"]
    # Refusals: a missing ServiceAccount (404 as the API says it), under 10 minutes (422).
    p = kubectl(kcfg, "-n", "tok-a", "create", "token", "nobody", check=False)
    assert p.returncode != 0 and 'serviceaccounts "nobody" not found' in p.stderr, p.stderr
    st, _, b = api.req("POST", "/api/v1/namespaces/tok-a/serviceaccounts/reader/token",
                       {"spec": {"expirationSeconds": 60}})
    assert st == 422 and "may not specify a duration less than 10 minutes" in b["message"], (st, b)
    st, _, b = api.req("GET", "/api/v1/namespaces/tok-a/serviceaccounts/reader/token")
    assert st == 405, (st, b)

    def review(token, audiences=None):
        tr = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        if audiences:
            tr["spec"]["audiences"] = audiences
        return json.loads(kubectl(kcfg, "create", "--validate=false", "-o", "json", "-f", "-", stdin=json.dumps(tr)).stdout)["status"]
    st = review(tok, ["vault"])
    assert st["authenticated"] is True and st["audiences"] == ["vault"], st
    assert st["user"]["username"] == "system:serviceaccount:tok-a:reader", st
    assert st["user"]["uid"] == sa["metadata"]["uid"], st
    assert "system:serviceaccounts:tok-a" in st["user"]["groups"], st
    st = review(tok, ["elsewhere"])
    assert not st.get("authenticated") and "audiences" in st["error"], st
    st = review(tok[:-4] + ("AAAA" if not tok.endswith("AAAA") else "BBBB"), ["vault"])
    assert not st.get("authenticated") and "signature" in st["error"], st
    # The token cap (/_double/token-expiry): an expired token is refused.
    api.ok("POST", "/_double/token-expiry", {"seconds": 1})
    short = kubectl(kcfg, "-n", "tok-a", "create", "token", "reader", "--audience", "vault").stdout.strip()
    assert jwt_claims(short)["exp"] - jwt_claims(short)["iat"] <= 1
    wait_for(lambda: "expired" in (review(short, ["vault"]).get("error") or ""), "the short token to expire")
    api.ok("POST", "/_double/token-expiry", {"seconds": 0})
    # A deleted ServiceAccount: its tokens are no longer valid, new ones refused.
    kubectl(kcfg, "-n", "tok-a", "delete", "serviceaccount", "reader")
    st = review(tok, ["vault"])
    assert not st.get("authenticated") and 'serviceaccounts "reader" not found' in st["error"], st
    # Recreated under the same name: another uid, the old token stays refused.
    kubectl(kcfg, "create", "--validate=false", "-f", "-", stdin=sa_manifest)
    st = review(tok, ["vault"])
    assert not st.get("authenticated") and "does not match" in st["error"], st
    counts = d.stats()["by_resource"]
    assert counts["serviceaccounts/token"]["create"] >= 5 and counts["tokenreviews"]["create"] >= 6, counts


def test_cli_ready(workdir, cert, key):
    """The double as a process: READY <port> with port 0, then serves."""
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "..", "doubles", "k8s_apiserver", "server.py"),
                          "--port", "0", "--tls-cert", cert, "--tls-key", key, "--token", TOKEN],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        assert line[0] == "READY" and int(line[1]) > 0, line
        api = Api(int(line[1]), cert)
        assert api.ok("GET", "/api/v1/namespaces/default")["metadata"]["name"] == "default"
    finally:
        p.terminate()
        p.wait(10)


def main():
    workdir = tempdir("k8s-double-")
    cert, key = make_cert(workdir)
    client_ca, client_cert, client_key = make_client_cert(workdir)
    d = k8s.K8sApiServerDouble(tokens=[TOKEN], tls_cert=cert, tls_key=key, client_ca=client_ca).start()
    try:
        def kubeconfig(name, user):
            path = os.path.join(workdir, name)
            with open(path, "w") as f:
                json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "double",
                           "clusters": [{"name": "double", "cluster": {"server": d.url,
                                                                       "certificate-authority": cert}}],
                           "users": [{"name": "u", "user": user}],
                           "contexts": [{"name": "double", "context": {"cluster": "double", "user": "u"}}]}, f)
            return path
        test_kubectl(d, kubeconfig("kc", {"token": TOKEN}), kubeconfig("bad", {"token": "nope"}),
                     kubeconfig("cert", {"client-certificate": client_cert, "client-key": client_key}), workdir)
        test_api(d, Api(d.port, cert))
        test_service_account_tokens(d, kubeconfig("kc2", {"token": TOKEN}), Api(d.port, cert))
        test_cli_ready(workdir, cert, key)
    finally:
        d.stop()
    print("ok")


if __name__ == "__main__":
    main()
