"""The GCP Secret Manager double (tests/doubles/gcp_secretmanager) checked
against the real Node client (@google-cloud/secret-manager over its REST
transport, pinned in tests/doubles/gcp_secretmanager/sdk/package-lock.json),
over TLS with a throwaway CA, and against Google's documented REST and OAuth2
examples with raw HTTP; the service-account JWTs are signed by openssl, not
by the double's code. Workload identity federation (STS token exchange and
IAM Credentials generateAccessToken) is checked with google-auth-library's
external account client (the same lock) and a Kubernetes double's
ServiceAccount token."""
import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from urllib.parse import urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLE = os.path.join(HERE, "..", "doubles", "gcp_secretmanager")
sys.path.insert(0, DOUBLE)
import server as gcp  # noqa: E402
from rootseal_testlib import npm_install, tempdir  # noqa: E402

EMAIL = "sync@rootseal-test.iam.gserviceaccount.com"
PROJECT, NUMBER = "rootseal-test", "123456789012"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def openssl(*args, stdin=None):
    return subprocess.run(["openssl"] + list(args), input=stdin, check=True, capture_output=True).stdout


def make_keys(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sa_key, other_key = os.path.join(d, "sa.pem"), os.path.join(d, "other.pem")
    for k in (sa_key, other_key):
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", k)
    pub = openssl("pkey", "-in", sa_key, "-pubout").decode()
    sa_json = os.path.join(d, "sa.json")
    with open(sa_json, "w") as f:
        json.dump({"type": "service_account", "project_id": PROJECT, "private_key_id": "key-1",
                   "private_key": open(sa_key).read(), "client_email": EMAIL,
                   "token_uri": "https://oauth2.googleapis.com/token"}, f)
    return cert, key, sa_key, other_key, pub, sa_json


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def jwt(key_file, claims, header=None):
    """RS256 JWT signed by openssl (independent of the double's verifier)."""
    h = header or {"alg": "RS256", "typ": "JWT", "kid": "key-1"}
    signing_input = b64url(json.dumps(h).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = openssl("dgst", "-sha256", "-sign", key_file, stdin=signing_input.encode())
    return signing_input + "." + b64url(sig)


class Rest:
    def __init__(self, d, cafile):
        self.d, self.ctx = d, ssl.create_default_context(cafile=cafile)
        self.token = None

    def req(self, method, path, body=None, headers=None, form=False):
        c = http.client.HTTPSConnection("127.0.0.1", self.d.port, context=self.ctx, timeout=10)
        try:
            h = dict(headers or {})
            data = None
            if body is not None:
                data = urlencode(body) if form else json.dumps(body)
                h["Content-Type"] = "application/x-www-form-urlencoded" if form else "application/json"
            if self.token and "Authorization" not in h:
                h["Authorization"] = "Bearer " + self.token
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            return r.status, dict(r.getheaders()), (json.loads(raw) if raw else None)
        finally:
            c.close()


def test_sdk(d, cert, sa_json):
    work = npm_install("gcp-secretmanager", os.path.join(DOUBLE, "sdk"))
    p = subprocess.run(["node", "check.js", "127.0.0.1", str(d.port), sa_json, PROJECT], cwd=work,
                       env=dict(os.environ, NODE_EXTRA_CA_CERTS=cert), capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("GCP client check failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
    steps = {}
    for line in p.stdout.splitlines():
        o = json.loads(line)
        steps[o.pop("step")] = o
    name = "projects/%s/secrets/db-password" % NUMBER
    assert steps["create"]["name"] == name, steps
    assert steps["duplicate"]["code"] == 409 and "ALREADY_EXISTS" in steps["duplicate"]["message"], steps
    assert steps["addVersion"] == {"v1": name + "/versions/1", "v2": name + "/versions/2", "state": "ENABLED"}, steps
    assert steps["access"]["latest"] == name + "/versions/2"
    assert steps["access"]["crc"] == str(gcp.crc32c(b"s3cret-v2")), steps["access"]
    assert steps["list"]["names"] == [name]
    assert steps["missing"]["code"] == 404 and "NOT_FOUND" in steps["missing"]["message"]
    assert steps["deleted"]["code"] == 404 and "done" in steps
    st = d.stats()
    # The Node library authenticates with self-signed JWTs (no token exchange).
    assert st["self_signed_jwt_uses"] >= 8 and st["token_requests"] == 0, st
    assert st["by_verb"]["addVersion"] == 2 and st["by_verb"]["access"] == 3, st
    print("Node client checks passed")


def test_oauth(d, rest, sa_key, other_key):
    now = int(time.time())
    good = {"iss": EMAIL, "scope": SCOPE, "aud": "https://oauth2.googleapis.com/token", "iat": now, "exp": now + 3600}
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

    def token(assertion, grant_type=grant):
        return rest.req("POST", "/token", {"grant_type": grant_type, "assertion": assertion}, form=True)
    st, _, b = token(jwt(sa_key, good))
    assert st == 200 and b["token_type"] == "Bearer" and b["expires_in"] > 0 and b["access_token"], b
    access = b["access_token"]
    st, _, b = token(jwt(sa_key, dict(good, aud=d.token_url)))
    assert st == 200, b
    for claims, key, want in [
            (good, other_key, "Invalid JWT Signature."),
            (dict(good, iss="nobody@x.iam.gserviceaccount.com"), sa_key, "Invalid grant: account not found"),
            (dict(good, exp=now + 7200), sa_key, "Invalid JWT: Token must be a short-lived token"),
            (dict(good, iat=now - 7200, exp=now - 3600), sa_key, "Invalid JWT: Token must be a short-lived token"),
            (dict(good, aud="https://example.com/token"), sa_key, "Invalid JWT: Failed audience check")]:
        st, _, b = token(jwt(key, claims))
        assert st == 400 and b["error"] == "invalid_grant" and b["error_description"].startswith(want), (claims, b)
    st, _, b = token(jwt(sa_key, dict(good, scope="https://www.googleapis.com/auth/devstorage.read_only")))
    assert st == 400 and b["error"] == "invalid_scope", b
    st, _, b = token(jwt(sa_key, good), grant_type="client_credentials")
    assert st == 400 and b["error"] == "unsupported_grant_type", b
    st, _, b = token(jwt(sa_key, good, header={"alg": "HS256", "typ": "JWT"}))
    assert st == 400 and b["error"] == "invalid_grant", b
    print("OAuth2 checks passed")
    return access


def test_rest(d, rest, access, sa_key):
    base = "/v1/projects/%s/secrets" % PROJECT
    st, h, b = rest.req("GET", base)
    assert st == 401 and b["error"]["status"] == "UNAUTHENTICATED" and "WWW-Authenticate" in h, (st, b)
    st, _, b = rest.req("GET", base, headers={"Authorization": "Bearer ya29.forged"})
    assert st == 401 and b["error"]["code"] == 401, b
    # A self-signed JWT for the service works as a bearer token; one for
    # another audience does not.
    now = int(time.time())
    ss = jwt(sa_key, {"iss": EMAIL, "sub": EMAIL, "aud": "https://secretmanager.googleapis.com/",
                      "iat": now, "exp": now + 3600})
    st, _, b = rest.req("GET", base, headers={"Authorization": "Bearer " + ss})
    assert st == 200 and b == {}, (st, b)  # proto3 JSON: an empty list is {}
    ss_bad = jwt(sa_key, {"iss": EMAIL, "sub": EMAIL, "aud": "https://storage.googleapis.com/",
                          "iat": now, "exp": now + 3600})
    assert rest.req("GET", base, headers={"Authorization": "Bearer " + ss_bad})[0] == 401

    rest.token = access
    st, _, b = rest.req("POST", "/v1/projects/other-project/secrets?secretId=x", {"replication": {"automatic": {}}})
    assert st == 403 and b["error"]["status"] == "PERMISSION_DENIED", b
    st, _, b = rest.req("POST", base + "?secretId=bad.id", {"replication": {"automatic": {}}})
    assert st == 400 and b["error"]["status"] == "INVALID_ARGUMENT", b
    st, _, b = rest.req("POST", base + "?secretId=api-key", {"labels": {"a": "b"}})
    assert st == 400 and b["error"]["status"] == "INVALID_ARGUMENT", b
    st, _, b = rest.req("POST", base + "?secretId=api-key", {"replication": {"automatic": {}},
                                                            "labels": {"Managed-By": "x"}})
    assert st == 400 and "label" in b["error"]["message"], b
    st, _, s = rest.req("POST", base + "?secretId=api-key",
                        {"replication": {"userManaged": {"replicas": [{"location": "europe-west1"}]}},
                         "labels": {"managed-by": "rootseal"}})
    assert st == 200 and s["name"] == "projects/%s/secrets/api-key" % NUMBER and s["labels"] == {"managed-by": "rootseal"}
    assert s["createTime"].endswith("Z") and s["etag"].startswith('"'), s
    st, _, b = rest.req("POST", base + "?secretId=api-key", {"replication": {"automatic": {}}})
    assert st == 409 and b == {"error": {"code": 409, "status": "ALREADY_EXISTS", "message":
                                         "Secret [projects/%s/secrets/api-key] already exists." % NUMBER}}, b
    st, _, b = rest.req("GET", base + "/api-key/versions/latest:access")
    assert st == 404 and b["error"]["status"] == "NOT_FOUND", b

    data = b"value-1"
    crc = gcp.crc32c(data)
    assert gcp.crc32c(b"123456789") == 0xE3069283  # the CRC32C check value
    st, _, b = rest.req("POST", base + "/api-key:addVersion",
                        {"payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(crc ^ 1)}})
    assert st == 400 and b["error"]["status"] == "INVALID_ARGUMENT" and "hecksum" in b["error"]["message"], b
    st, _, v = rest.req("POST", base + "/api-key:addVersion",
                        {"payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(crc)}})
    assert st == 200 and v["name"].endswith("/versions/1") and v["state"] == "ENABLED", v
    assert v["clientSpecifiedPayloadChecksum"] is True and v["replicationStatus"]["userManaged"], v
    st, _, v2 = rest.req("POST", base + "/api-key:addVersion", {"payload": {"data": base64.b64encode(b"v2").decode()}})
    assert st == 200 and v2["name"].endswith("/versions/2") and v2["clientSpecifiedPayloadChecksum"] is False
    st, _, a = rest.req("GET", base + "/api-key/versions/latest:access")
    assert st == 200 and base64.b64decode(a["payload"]["data"]) == b"v2" and a["name"].endswith("/versions/2")
    assert a["payload"]["dataCrc32c"] == str(gcp.crc32c(b"v2")), a  # int64 as a JSON string
    st, _, a = rest.req("GET", base + "/api-key/versions/1:access")
    assert base64.b64decode(a["payload"]["data"]) == data
    st, _, b = rest.req("GET", base + "/api-key/versions/9:access")
    assert st == 404 and b["error"]["message"] == \
        "Secret Version [projects/%s/secrets/api-key/versions/9] not found." % NUMBER, b
    st, _, b = rest.req("POST", base + "/api-key/versions/2:disable")
    assert st == 200 and b["state"] == "DISABLED"
    st, _, b = rest.req("GET", base + "/api-key/versions/latest:access")
    assert st == 400 and b["error"]["status"] == "FAILED_PRECONDITION", b
    st, _, b = rest.req("GET", base + "/api-key/versions/1?$alt=json;enum-encoding=int")
    assert st == 200 and b["state"] == 1, b
    st, _, b = rest.req("PATCH", base + "/api-key?updateMask=labels", {"labels": {"managed-by": "rootseal", "t": "a"}})
    assert st == 200 and b["labels"]["t"] == "a", b
    st, _, b = rest.req("GET", base + "?filter=labels.managed-by%3Drootseal")
    assert [x["name"].rsplit("/", 1)[1] for x in b["secrets"]] == ["api-key"], b

    d.faults.add({"status": 429, "count": 1, "retry_after": 2, "path": ":addVersion"})
    st, h, b = rest.req("POST", base + "/api-key:addVersion", {"payload": {"data": "eA=="}})
    assert st == 429 and b["error"]["status"] == "RESOURCE_EXHAUSTED" and h["Retry-After"] == "2", (st, h, b)
    d.faults.down = "503"
    assert rest.req("GET", base + "/api-key")[0] == 503
    d.faults.down = None
    d.counters.reset()
    rest.req("GET", base + "/api-key/versions/latest:access")
    rest.req("POST", base + "/api-key:addVersion", {"payload": {"data": "eQ=="}})
    s = d.stats()
    assert s["by_verb"] == {"access": 1, "addVersion": 1} and s["writes"] == 1, s
    st, _, _ = rest.req("DELETE", base + "/api-key")
    assert st == 200 and rest.req("GET", base + "/api-key")[0] == 404
    print("REST checks passed")


def test_sdk_federated(d, cert, work_dir):
    """google-auth-library's external account client against the double's STS and IAM Credentials: a
    Kubernetes ServiceAccount token (the Kubernetes double) exchanged for the pool's principal, which
    impersonates a service account allowed to, whose token reads a secret."""
    sys.path.insert(0, os.path.join(HERE, "..", "doubles", "common"))
    from doublelib import load_double
    k8s = load_double("k8s_apiserver")
    kube = k8s.K8sApiServerDouble(tokens=["admin"]).start()
    aud = "//iam.googleapis.com/projects/%s/locations/global/workloadIdentityPools/p/providers/k" % NUMBER
    reader = "reader@%s.iam.gserviceaccount.com" % PROJECT
    try:
        def kreq(path, body):
            c = http.client.HTTPConnection("127.0.0.1", kube.port, timeout=10)
            c.request("POST", path, json.dumps(body), {"Authorization": "Bearer admin", "Content-Type": "application/json"})
            r = c.getresponse()
            out = json.loads(r.read())
            c.close()
            return out
        kreq("/api/v1/namespaces", {"metadata": {"name": "team-a"}})
        kreq("/api/v1/namespaces/team-a/serviceaccounts", {"metadata": {"name": "app"}})
        tok = kreq("/api/v1/namespaces/team-a/serviceaccounts/app/token",
                   {"spec": {"audiences": ["https:" + aud]}})["status"]["token"]
        token_file = os.path.join(work_dir, "sa-token")
        with open(token_file, "w") as f:
            f.write(tok)
        d.add_pool_provider(aud, k8s.SA_ISSUER, kube.url + "/openid/v1/jwks")
        principal = ("principal://iam.googleapis.com/projects/%s/locations/global/workloadIdentityPools/p/subject/"
                     "system:serviceaccount:team-a:app" % NUMBER)
        d.allow_impersonation(reader, principal)
        d.state.tokens["admin-wif"] = ("admin", float("inf"))
        rest = Rest(d, cert)
        rest.token = "admin-wif"
        rest.req("POST", "/v1/projects/%s/secrets?secretId=wif-secret" % PROJECT, {"replication": {"automatic": {}}})
        rest.req("POST", "/v1/projects/%s/secrets/wif-secret:addVersion" % PROJECT,
                  {"payload": {"data": base64.b64encode(b"via-federation").decode()}})
        work = npm_install("gcp-secretmanager", os.path.join(DOUBLE, "sdk"))
        p = subprocess.run(["node", "check.js", "federated", "127.0.0.1", str(d.port), aud, token_file, reader, PROJECT],
                           cwd=work, env=dict(os.environ, NODE_EXTRA_CA_CERTS=cert), capture_output=True, text=True,
                           timeout=120)
        if p.returncode != 0:
            raise AssertionError("GCP federated check failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
        steps = {}
        for line in p.stdout.splitlines():
            o = json.loads(line)
            steps[o.pop("step")] = o
        assert steps["access"] == {"value": "via-federation"}, steps
        assert [(x["principal"], x["audience"]) for x in d.state.exchanges] == [(principal, aud)], d.state.exchanges
        assert [(x["email"], x["principal"]) for x in d.state.impersonations] == [(reader, principal)]
        assert reader in {x["principal"] for x in d.state.callers}
    finally:
        kube.stop()
    print("GCP federated checks passed")


def main():
    work = tempdir("gcp-double-")
    cert, key, sa_key, other_key, pub, sa_json = make_keys(work)
    # The double knows only the public key.
    d = gcp.GcpSecretManagerDouble(tls_cert=cert, tls_key=key, accounts={EMAIL: (pub, "key-1")},
                                   projects={PROJECT: NUMBER}).start()
    try:
        test_sdk(d, cert, sa_json)
        rest = Rest(d, cert)
        access = test_oauth(d, rest, sa_key, other_key)
        test_rest(d, rest, access, sa_key)
        test_sdk_federated(d, cert, work)  # last: it adds a secret the listings above do not expect
    finally:
        d.stop()
    # As a process, configured from the service-account file.
    p = subprocess.Popen([sys.executable, os.path.join(DOUBLE, "server.py"), "--port", "0", "--service-account",
                          sa_json, "--project", "%s:%s" % (PROJECT, NUMBER)], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        assert line[0] == "READY", line
        c = http.client.HTTPConnection("127.0.0.1", int(line[1]), timeout=10)
        now = int(time.time())
        c.request("POST", "/token", body=urlencode({
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": jwt(sa_key, {"iss": EMAIL, "scope": SCOPE, "aud": "https://oauth2.googleapis.com/token",
                                      "iat": now, "exp": now + 600})}),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["access_token"]
    finally:
        p.terminate()
        p.wait(10)
    print("ok")


if __name__ == "__main__":
    main()
