"""The Vault KV v2 double (tests/doubles/vault_kv) checked against hvac, the
Python Vault client: KV v2 versions and check-and-set, metadata, soft delete /
undelete / destroy, token lookup and renewal, AppRole login, Kubernetes
login (TokenReview on the Kubernetes double) and JWT login (a JWKS), ACL
policies, namespaces, Vault's error shapes, fault injection and request
counters."""
import http.client
import json
import os
import subprocess
import sys
import time

import hvac
import hvac.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "doubles", "vault_kv"))
import server as vault  # noqa: E402
from rootseal_testlib import make_server_and_client_certs  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "doubles", "k8s_apiserver"))
import importlib.util  # noqa: E402
_spec = importlib.util.spec_from_file_location("k8s_double", os.path.join(HERE, "..", "doubles", "k8s_apiserver",
                                                                          "server.py"))
k8s = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(k8s)

ROOT = "root-token-for-tests"


def raw(d, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), (json.loads(data) if data else None)
    finally:
        c.close()


def expect(exc, fn, *a, **kw):
    try:
        fn(*a, **kw)
    except exc as e:
        return e
    raise AssertionError("expected %s from %s" % (exc.__name__, fn))


def test_kv(d):
    c = hvac.Client(url=d.url, token=ROOT)
    assert c.is_authenticated()
    kv = c.secrets.kv.v2
    r = kv.create_or_update_secret(path="app/db", secret={"password": "p1", "user": "u"})
    assert r["data"]["version"] == 1 and r["data"]["destroyed"] is False, r
    r = kv.create_or_update_secret(path="app/db", secret={"password": "p2", "user": "u"}, cas=1)
    assert r["data"]["version"] == 2
    e = expect(hvac.exceptions.InvalidRequest, kv.create_or_update_secret, path="app/db",
               secret={"password": "x"}, cas=1)
    assert "check-and-set parameter did not match the current version" in str(e), e
    latest = kv.read_secret_version(path="app/db")
    assert latest["data"]["data"] == {"password": "p2", "user": "u"}, latest
    assert latest["data"]["metadata"]["version"] == 2 and latest["data"]["metadata"]["deletion_time"] == ""
    v1 = kv.read_secret_version(path="app/db", version=1)
    assert v1["data"]["data"]["password"] == "p1" and v1["data"]["metadata"]["version"] == 1
    # A create with cas=0 only works when the secret does not exist.
    kv.create_or_update_secret(path="new", secret={"a": "1"}, cas=0)
    expect(hvac.exceptions.InvalidRequest, kv.create_or_update_secret, path="new", secret={"a": "2"}, cas=0)

    # Missing secret: 404 with {"errors":[]} exactly as Vault.
    expect(hvac.exceptions.InvalidPath, kv.read_secret_version, path="nope")
    st, _, body = raw(d, "GET", "/v1/secret/data/nope", headers={"X-Vault-Token": ROOT})
    assert st == 404 and body == {"errors": []}, (st, body)

    # Metadata, list, patch.
    md = kv.read_secret_metadata(path="app/db")["data"]
    assert md["current_version"] == 2 and md["oldest_version"] == 1 and sorted(md["versions"]) == ["1", "2"], md
    keys = kv.list_secrets(path="app")["data"]["keys"]
    assert keys == ["db"], keys
    assert sorted(kv.list_secrets(path="")["data"]["keys"]) == ["app/", "new"]
    kv.update_metadata(path="app/db", max_versions=3)
    st, _, _ = raw(d, "POST", "/v1/secret/metadata/app/db", {"custom_metadata": {"owner": "team-a"}},
                   {"X-Vault-Token": ROOT})
    assert st == 204
    st, _, body = raw(d, "PATCH", "/v1/secret/data/app/db", {"data": {"user": "v"}},
                      {"X-Vault-Token": ROOT, "Content-Type": "application/merge-patch+json"})
    assert st == 200 and body["data"]["version"] == 3, (st, body)
    got = kv.read_secret_version(path="app/db")["data"]
    assert got["data"] == {"password": "p2", "user": "v"} and got["metadata"]["custom_metadata"] == {"owner": "team-a"}
    kv.create_or_update_secret(path="app/db", secret={"password": "p4", "user": "v"})
    md = kv.read_secret_metadata(path="app/db")["data"]
    assert sorted(md["versions"]) == ["2", "3", "4"] and md["oldest_version"] == 2, md  # max_versions=3

    # Soft delete, undelete, destroy.
    kv.delete_latest_version_of_secret(path="app/db")
    st, _, body = raw(d, "GET", "/v1/secret/data/app/db", headers={"X-Vault-Token": ROOT})
    assert st == 404 and body["data"]["data"] is None and body["data"]["metadata"]["deletion_time"], body
    kv.undelete_secret_versions(path="app/db", versions=[4])
    assert kv.read_secret_version(path="app/db")["data"]["data"]["password"] == "p4"
    kv.destroy_secret_versions(path="app/db", versions=[3])
    st, _, body = raw(d, "GET", "/v1/secret/data/app/db?version=3", headers={"X-Vault-Token": ROOT})
    assert st == 404 and body["data"]["metadata"]["destroyed"] is True, body
    kv.delete_secret_versions(path="app/db", versions=[2])
    assert kv.read_secret_metadata(path="app/db")["data"]["versions"]["2"]["deletion_time"]
    kv.delete_metadata_and_all_versions(path="app/db")
    expect(hvac.exceptions.InvalidPath, kv.read_secret_version, path="app/db")

    # Bad token: 403 permission denied.
    bad = hvac.Client(url=d.url, token="wrong")
    e = expect(hvac.exceptions.Forbidden, bad.secrets.kv.v2.read_secret_version, path="new")
    assert "permission denied" in str(e), e
    st, _, body = raw(d, "GET", "/v1/secret/data/new", headers={"X-Vault-Token": "wrong"})
    assert st == 403 and body == {"errors": ["permission denied"]}, body
    st, _, body = raw(d, "GET", "/v1/secret/data/new", headers={"Authorization": "Bearer " + ROOT})
    assert st == 200 and body["data"]["data"] == {"a": "1"}
    print("kv checks passed")


def test_kv1(d):
    # The KV v1 mount "kv": hvac's kv.v1 client against it, and Vault's answers read raw.
    c = hvac.Client(url=d.url, token=ROOT)
    kv = c.secrets.kv.v1
    kv.create_or_update_secret(path="team/app", secret={"user": "u", "n": 1}, mount_point="kv")
    got = kv.read_secret(path="team/app", mount_point="kv")
    assert got["data"] == {"user": "u", "n": 1} and got["lease_duration"] == 2764800, got
    kv.create_or_update_secret(path="team/app", secret={"user": "v"}, mount_point="kv")  # replaces the map
    assert kv.read_secret(path="team/app", mount_point="kv")["data"] == {"user": "v"}
    kv.create_or_update_secret(path="team/web", secret={"a": "b"}, mount_point="kv")
    assert kv.list_secrets(path="team", mount_point="kv")["data"]["keys"] == ["app", "web"]
    assert kv.list_secrets(path="", mount_point="kv")["data"]["keys"] == ["team/"]
    st, _, body = raw(d, "POST", "/v1/kv/team/raw", {"k": "v"}, {"X-Vault-Token": ROOT})
    assert st == 204, (st, body)
    kv.delete_secret(path="team/app", mount_point="kv")
    expect(hvac.exceptions.InvalidPath, kv.read_secret, path="team/app", mount_point="kv")
    st, _, body = raw(d, "GET", "/v1/kv/team/app", headers={"X-Vault-Token": ROOT})
    assert st == 404 and body == {"errors": []}, (st, body)
    e = expect(hvac.exceptions.Forbidden, hvac.Client(url=d.url, token="wrong").secrets.kv.v1.read_secret,
               path="team/web", mount_point="kv")
    assert "permission denied" in str(e), e
    print("kv v1 checks passed")


def test_auth(d):
    root = hvac.Client(url=d.url, token=ROOT)
    # AppRole set up through hvac's own role API.
    root.auth.approle.create_or_update_approle(role_name="sync", token_ttl="2s", token_max_ttl="1h",
                                               token_policies=["kv-read"])
    role_id = root.auth.approle.read_role_id(role_name="sync")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(role_name="sync")["data"]["secret_id"]
    c = hvac.Client(url=d.url)
    login = c.auth.approle.login(role_id=role_id, secret_id=secret_id)
    auth = login["auth"]
    assert auth["renewable"] is True and auth["lease_duration"] == 2 and "kv-read" in auth["policies"], auth
    assert c.token == auth["client_token"] and auth["metadata"] == {"role_name": "sync"}
    e = expect(hvac.exceptions.InvalidRequest, hvac.Client(url=d.url).auth.approle.login,
               role_id=role_id, secret_id="wrong")
    assert "invalid role or secret ID" in str(e)

    me = c.auth.token.lookup_self()["data"]
    assert me["id"] == auth["client_token"] and me["renewable"] is True and 0 < me["ttl"] <= 2, me
    assert me["path"] == "auth/approle/login" and me["expire_time"], me

    # Renewal extends the TTL; without it the token expires (403).
    r = c.auth.token.renew_self(increment=60)
    assert r["auth"]["lease_duration"] == 60 and r["auth"]["client_token"] == auth["client_token"], r
    assert d.renewals == 1 and d.logins == 1

    short = hvac.Client(url=d.url)
    short.auth.approle.login(role_id=role_id, secret_id=secret_id)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # bounded wait for the 2 s TTL to lapse
        try:
            short.auth.token.lookup_self()
        except hvac.exceptions.Forbidden:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("AppRole token did not expire")
    # Past the original 2 s TTL, the renewed token still works.
    assert c.auth.token.lookup_self()["data"]["ttl"] > 50
    # The root token is not renewable.
    expect(hvac.exceptions.InvalidRequest, root.auth.token.renew_self)
    # revoke-self.
    c.auth.token.revoke_self()
    expect(hvac.exceptions.Forbidden, c.auth.token.lookup_self)
    print("auth checks passed")


def test_namespaces(d):
    a = hvac.Client(url=d.url, token=ROOT, namespace="team-a")
    b = hvac.Client(url=d.url, token=ROOT, namespace="team-b")
    a.secrets.kv.v2.create_or_update_secret(path="shared", secret={"v": "a"})
    b.secrets.kv.v2.create_or_update_secret(path="shared", secret={"v": "b"})
    assert a.secrets.kv.v2.read_secret_version(path="shared")["data"]["data"] == {"v": "a"}
    assert b.secrets.kv.v2.read_secret_version(path="shared")["data"]["data"] == {"v": "b"}
    expect(hvac.exceptions.InvalidPath, hvac.Client(url=d.url, token=ROOT).secrets.kv.v2.read_secret_version,
           path="shared")
    # A token from an AppRole login in team-a works there and not in team-b.
    rid, sid = d.add_approle("ns-role", namespace="team-a")
    ta = hvac.Client(url=d.url, namespace="team-a")
    ta.auth.approle.login(role_id=rid, secret_id=sid)
    assert ta.secrets.kv.v2.read_secret_version(path="shared")["data"]["data"] == {"v": "a"}
    tb = hvac.Client(url=d.url, token=ta.token, namespace="team-b")
    expect(hvac.exceptions.Forbidden, tb.secrets.kv.v2.read_secret_version, path="shared")
    # The role does not exist in the root namespace.
    expect(hvac.exceptions.InvalidRequest, hvac.Client(url=d.url).auth.approle.login, role_id=rid, secret_id=sid)
    print("namespace checks passed")


def test_faults_and_counters(d):
    c = hvac.Client(url=d.url, token=ROOT)
    d.put("k", {"x": "1"})
    d.counters.reset()
    for _ in range(3):
        c.secrets.kv.v2.read_secret_version(path="k")
    st = d.stats()
    assert st["by_path"] == {"GET /v1/secret/data/k": 3}, st
    raw(d, "POST", "/_double/faults", {"status": 429, "count": 1, "retry_after": 2, "path": "/data/k"})
    s, h, body = raw(d, "GET", "/v1/secret/data/k", headers={"X-Vault-Token": ROOT})
    assert s == 429 and h["Retry-After"] == "2" and "rate limit quota exceeded" in body["errors"][0], (s, h, body)
    d.faults.add({"status": 500, "count": 1})
    expect(hvac.exceptions.InternalServerError, c.secrets.kv.v2.read_secret_version, path="k")
    assert c.secrets.kv.v2.read_secret_version(path="k")["data"]["data"] == {"x": "1"}
    raw(d, "POST", "/_double/down", {"mode": "503"})
    e = expect(hvac.exceptions.VaultDown, c.secrets.kv.v2.read_secret_version, path="k")
    assert "sealed" in str(e)
    d.faults.down = "close"
    try:
        raw(d, "GET", "/v1/secret/data/k", headers={"X-Vault-Token": ROOT})
        raise AssertionError("connection should have been dropped")
    except (http.client.HTTPException, OSError):
        pass
    raw(d, "POST", "/_double/up", {})
    assert c.secrets.kv.v2.read_secret_version(path="k")["data"]["data"] == {"x": "1"}
    print("fault checks passed")


def test_kubernetes_and_jwt_auth(d):
    """hvac's auth.kubernetes.login and auth.jwt.jwt_login against the double,
    with ServiceAccount tokens from the Kubernetes double (its TokenRequest,
    TokenReview and JWKS)."""
    kd = k8s.K8sApiServerDouble().start()
    try:
        def api(method, path, body=None):
            c = http.client.HTTPConnection("127.0.0.1", kd.port, timeout=10)
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            out = json.loads(r.read() or b"null")
            c.close()
            return r.status, out
        for ns in ("team-a", "team-b"):
            api("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            api("POST", "/api/v1/namespaces/%s/serviceaccounts" % ns, {"metadata": {"name": "app"}})

        def sa_token(ns, aud=None, name="app"):
            st, out = api("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (ns, name),
                          {"spec": {"audiences": aud or [], "expirationSeconds": 600}})
            assert st == 201, (st, out)
            return out["status"]["token"]

        root = hvac.Client(url=d.url, token=ROOT)
        root.sys.enable_auth_method("kubernetes")
        root.auth.kubernetes.configure(kubernetes_host=kd.url)
        root.auth.kubernetes.create_role("team-a-reader", bound_service_account_names=["app"],
                                         bound_service_account_namespaces=["team-a"], ttl="60s",
                                         policies=["team-a-read"])
        root.sys.create_or_update_policy("team-a-read", 'path "secret/data/team-a/*" { capabilities = ["read"] }')
        root.secrets.kv.v2.create_or_update_secret(path="team-a/db", secret={"password": "pa"})
        root.secrets.kv.v2.create_or_update_secret(path="team-b/db", secret={"password": "pb"})

        c = hvac.Client(url=d.url)
        res = c.auth.kubernetes.login("team-a-reader", sa_token("team-a"))
        assert res["auth"]["lease_duration"] == 60 and "team-a-read" in res["auth"]["policies"], res
        assert res["auth"]["metadata"]["service_account_namespace"] == "team-a", res
        assert c.secrets.kv.v2.read_secret_version(path="team-a/db")["data"]["data"] == {"password": "pa"}
        # The policy decides: another team's path is denied.
        expect(hvac.exceptions.Forbidden, c.secrets.kv.v2.read_secret_version, path="team-b/db")
        before = kd.stats()["by_resource"]["tokenreviews"]["create"]
        # team-b's ServiceAccount is not bound to the role: refused before any TokenReview.
        e = expect(hvac.exceptions.Forbidden, hvac.Client(url=d.url).auth.kubernetes.login, "team-a-reader",
                   sa_token("team-b"))
        assert "namespace not authorized" in str(e), e
        assert kd.stats()["by_resource"]["tokenreviews"]["create"] == before
        # A forged token naming team-a/app: the TokenReview refuses it.
        good = sa_token("team-a")
        forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
        e = expect(hvac.exceptions.Forbidden, hvac.Client(url=d.url).auth.kubernetes.login, "team-a-reader", forged)
        assert "lookup failed" in str(e), e
        assert kd.stats()["by_resource"]["tokenreviews"]["create"] == before + 1
        e = expect(hvac.exceptions.InvalidRequest, hvac.Client(url=d.url).auth.kubernetes.login, "nope", good)
        assert 'invalid role name "nope"' in str(e), e
        # The ServiceAccount deleted: its still-unexpired token no longer logs in.
        api("DELETE", "/api/v1/namespaces/team-a/serviceaccounts/app")
        e = expect(hvac.exceptions.Forbidden, hvac.Client(url=d.url).auth.kubernetes.login, "team-a-reader", good)
        assert "lookup failed" in str(e), e
        api("POST", "/api/v1/namespaces/team-a/serviceaccounts", {"metadata": {"name": "app"}})

        # JWT auth with the cluster's JWKS (service-account issuer discovery).
        root.sys.enable_auth_method("jwt")
        root.auth.jwt.configure(jwks_url=kd.url + "/openid/v1/jwks", bound_issuer=k8s.SA_ISSUER)
        root.auth.jwt.create_role("team-a", user_claim="sub", allowed_redirect_uris=[], bound_audiences=["vault"],
                                  bound_subject="system:serviceaccount:team-a:app", token_ttl=120,
                                  token_policies=["team-a-read"])
        j = hvac.Client(url=d.url)
        res = j.auth.jwt.jwt_login("team-a", sa_token("team-a", ["vault"]))
        assert res["auth"]["lease_duration"] == 120 and res["auth"]["metadata"] == {"role": "team-a"}, res
        assert j.secrets.kv.v2.read_secret_version(path="team-a/db")["data"]["data"] == {"password": "pa"}
        e = expect(hvac.exceptions.InvalidRequest, hvac.Client(url=d.url).auth.jwt.jwt_login, "team-a",
                   sa_token("team-a", ["elsewhere"]))
        assert "audience" in str(e), e
        e = expect(hvac.exceptions.InvalidRequest, hvac.Client(url=d.url).auth.jwt.jwt_login, "team-a",
                   sa_token("team-b", ["vault"]))
        assert "bound subject" in str(e), e
        tok = sa_token("team-a", ["vault"])
        e = expect(hvac.exceptions.InvalidRequest, hvac.Client(url=d.url).auth.jwt.jwt_login, "team-a",
                   tok[:-6] + ("AAAAAA" if not tok.endswith("AAAAAA") else "BBBBBB"))
        assert "signature" in str(e), e
        # A JWT signed by another key (not in the JWKS).
        other = vault.jwtlib.RsaKey(1024)
        e = expect(hvac.exceptions.InvalidRequest, hvac.Client(url=d.url).auth.jwt.jwt_login, "team-a",
                   other.sign({"iss": k8s.SA_ISSUER, "sub": "system:serviceaccount:team-a:app", "aud": ["vault"],
                               "exp": int(time.time()) + 600}))
        assert "signature" in str(e), e
        # Expired beyond the leeway (150 s by default).
        kd.token_max_seconds = 1
        short = sa_token("team-a", ["vault"])
        kd.token_max_seconds = None
        root.auth.jwt.create_role("strict", user_claim="sub", allowed_redirect_uris=[], bound_audiences=["vault"],
                                  expiration_leeway=0)
        deadline = time.monotonic() + 10
        while True:
            try:
                hvac.Client(url=d.url).auth.jwt.jwt_login("strict", short)
            except hvac.exceptions.InvalidRequest as ex:
                assert "expired" in str(ex), ex
                break
            assert time.monotonic() < deadline, "the short token never expired"
            time.sleep(0.1)
    finally:
        kd.stop()


def test_cert_auth():
    """hvac's auth.cert against the double over TLS with a client certificate."""
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="vault-cert-")
    try:
        srv, srv_key, ca, pems = make_server_and_client_certs(d, ("web", "other"))
        v = vault.VaultKvDouble(root_token=ROOT, tls_cert=srv, tls_key=srv_key, client_ca=ca).start()
        try:
            root = hvac.Client(url=v.url, token=ROOT, verify=srv)
            root.sys.enable_auth_method("cert")
            root.auth.cert.create_ca_certificate_role("web", certificate=pems["web"][0], token_ttl=90)  # (a path)
            root.secrets.kv.v2.create_or_update_secret(path="c", secret={"k": "v"})
            c = hvac.Client(url=v.url, verify=srv, cert=pems["web"])
            # (hvac takes the CA from the client's verify when cacert is not given.)
            res = c.auth.cert.login(name="web", cert_pem=pems["web"][0], key_pem=pems["web"][1])
            assert res["auth"]["lease_duration"] == 90 and res["auth"]["metadata"] == {"cert_name": "web"}, res
            assert c.secrets.kv.v2.read_secret_version(path="c")["data"]["data"] == {"k": "v"}
            # Another certificate signed by the same CA is not the role's; no certificate at all is refused too.
            o = hvac.Client(url=v.url, verify=srv, cert=pems["other"])
            e = expect(hvac.exceptions.InvalidRequest, o.auth.cert.login, name="web",
                       cert_pem=pems["other"][0], key_pem=pems["other"][1])
            assert "invalid certificate" in str(e), e
            e = expect(hvac.exceptions.InvalidRequest, hvac.Client(url=v.url, verify=srv).adapter.post,
                       "/v1/auth/cert/login", json={"name": "web"})
            assert "client certificate must be supplied" in str(e), e
        finally:
            v.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_cli():
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "..", "doubles", "vault_kv", "server.py"),
                          "--port", "0", "--token", "t0", "--approle", "r:rid:sid"], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        assert line[0] == "READY", line
        c = hvac.Client(url="http://127.0.0.1:%s" % line[1])
        c.auth.approle.login(role_id="rid", secret_id="sid")
        c.secrets.kv.v2.create_or_update_secret(path="x", secret={"a": "b"})
        assert c.secrets.kv.v2.read_secret_version(path="x")["data"]["data"] == {"a": "b"}
    finally:
        p.terminate()
        p.wait(10)


def main():
    d = vault.VaultKvDouble(root_token=ROOT).start()
    try:
        test_kv(d)
        test_kv1(d)
        test_auth(d)
        test_namespaces(d)
        test_faults_and_counters(d)
        test_kubernetes_and_jwt_auth(d)
        test_cert_auth()
    finally:
        d.stop()
    test_cli()
    print("ok")


if __name__ == "__main__":
    main()
