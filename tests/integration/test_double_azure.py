"""The Azure Key Vault double (tests/doubles/azure_keyvault) checked against
the real Azure SDK for JavaScript (@azure/keyvault-secrets with
@azure/identity's ClientSecretCredential and, for workload identity
federation, ClientAssertionCredential with a ServiceAccount token of the
Kubernetes double, pinned in
tests/doubles/azure_keyvault/sdk/package-lock.json and installed with npm ci
into $ROOTSEAL_NPM_DIR), over TLS with a throwaway CA, and against the
documented REST shapes with raw HTTP."""
import http.client
import json
import os
import ssl
import subprocess
import sys
from urllib.parse import urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLE = os.path.join(HERE, "..", "doubles", "azure_keyvault")
sys.path.insert(0, DOUBLE)
import server as azure  # noqa: E402
from rootseal_testlib import npm_install, tempdir  # noqa: E402

TENANT, CLIENT, SECRET = "0f0e0d0c-tenant", "app-client-1", "s3cr3t-value"


def make_cert(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def req(d, ctx, method, path, body=None, headers=None):
    c = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), (json.loads(data) if data else None)
    finally:
        c.close()


def run_check(cert, args):
    """node check.js <args> with the pinned SDK: its steps, {step: data}."""
    work = npm_install("azure-keyvault", os.path.join(DOUBLE, "sdk"))
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=cert)
    p = subprocess.run(["node", "check.js"] + args, cwd=work, env=env, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("Azure SDK check failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
    steps = {}
    for line in p.stdout.splitlines():
        o = json.loads(line)
        steps[o.pop("step")] = o
    return steps


def test_sdk(d, cert, key):
    steps = run_check(cert, [d.url, TENANT, CLIENT, SECRET, cert, key])
    assert steps["set"]["id"].startswith(d.url + "/secrets/db-password/"), steps["set"]
    assert steps["list"] == {"versions": 2, "names": ["db-password"]}, steps["list"]
    assert steps["missing"] == {"status": 404, "code": "SecretNotFound"}, steps["missing"]
    assert steps["badname"]["status"] == 400 and steps["badname"]["code"] == "BadParameter", steps["badname"]
    # The SDK honoured Retry-After: 1 before retrying.
    assert steps["throttled"]["elapsed_ms"] >= 900, steps["throttled"]
    assert steps["deleted-conflict"] == {"status": 409, "code": "Conflict"}, steps["deleted-conflict"]
    assert "AADSTS7000215" in steps["badcred"]["message"], steps["badcred"]
    # Certificates and keys (the double's cert/ and key/ endpoints) through the SDK's own clients.
    assert steps["certificate"]["version"] == 32 and steps["certificate"]["bytes"] > 500, steps["certificate"]
    assert steps["key"] == {"kty": "RSA", "ops": ["sign", "verify"]}, steps["key"]
    assert "done" in steps
    st = d.stats()
    # One token for the whole session of the good client (cached), one attempt for the bad one.
    assert d.state.token_requests == 2, st
    assert st["by_path"]["POST /%s/oauth2/v2.0/token" % TENANT] == 2, st
    print("Azure SDK checks passed: %s" % json.dumps(steps["throttled"]))


def test_sdk_federated(d, cert):
    """ClientAssertionCredential with ServiceAccount tokens: the federated one is accepted (set and get through
    the vault), one for a subject without a federated credential is refused with AADSTS700213."""
    sys.path.insert(0, os.path.join(HERE, "..", "doubles", "common"))
    from doublelib import load_double
    k8s = load_double("k8s_apiserver")
    kube = k8s.K8sApiServerDouble(tokens=["admin"]).start()
    try:
        hdr = {"Authorization": "Bearer admin", "Content-Type": "application/json"}

        def kreq(path, body):
            c = http.client.HTTPConnection("127.0.0.1", kube.port, timeout=10)
            c.request("POST", path, json.dumps(body), hdr)
            r = c.getresponse()
            out = json.loads(r.read())
            c.close()
            return out
        kreq("/api/v1/namespaces", {"metadata": {"name": "team-a"}})
        tokens = []
        for name in ("app", "stranger"):
            kreq("/api/v1/namespaces/team-a/serviceaccounts", {"metadata": {"name": name}})
            tokens.append(kreq("/api/v1/namespaces/team-a/serviceaccounts/%s/token" % name,
                               {"spec": {"audiences": ["api://AzureADTokenExchange"]}})["status"]["token"])
        d.federate("wi-app", k8s.SA_ISSUER, "system:serviceaccount:team-a:app", kube.url + "/openid/v1/jwks")
        steps = run_check(cert, ["federated", d.url, TENANT, "wi-app"] + tokens)
        assert steps["federated"] == {"version": 32}, steps
        assert "AADSTS700213" in steps["unfederated"]["message"], steps["unfederated"]
        assert [a["sub"] for a in d.state.assertions] == ["system:serviceaccount:team-a:app"], d.state.assertions
    finally:
        kube.stop()
    print("Azure SDK federated checks passed")


def test_rest(d, ctx):
    # Missing bearer: 401 with the challenge the SDKs parse.
    st, h, b = req(d, ctx, "GET", "/secrets/x?api-version=7.4")
    assert st == 401 and b["error"]["code"] == "Unauthorized", (st, b)
    assert h["WWW-Authenticate"] == 'Bearer authorization="%s/%s", resource="https://vault.azure.net"' % (
        d.url, TENANT), h
    st, h, b = req(d, ctx, "GET", "/secrets/x?api-version=7.4", headers={"Authorization": "Bearer forged"})
    assert st == 401 and "WWW-Authenticate" in h and b["error"]["message"].startswith("AKV10032"), b

    # Token endpoint: client_credentials with a client secret.
    form = urlencode({"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET,
                      "scope": "https://vault.azure.net/.default"})
    ct = {"Content-Type": "application/x-www-form-urlencoded"}
    st, _, tok = req(d, ctx, "POST", "/%s/oauth2/v2.0/token" % TENANT, form, ct)
    assert st == 200 and tok["token_type"] == "Bearer" and tok["expires_in"] > 0 and tok["access_token"], tok
    st, _, e = req(d, ctx, "POST", "/%s/oauth2/v2.0/token" % TENANT, form.replace(SECRET, "nope"), ct)
    assert st == 401 and e["error"] == "invalid_client" and e["error_codes"] == [7000215], e
    st, _, e = req(d, ctx, "POST", "/%s/oauth2/v2.0/token" % TENANT,
                   form.replace("%2F.default", "%2Fsecrets.read"), ct)
    assert st == 400 and e["error"] == "invalid_scope", e
    st, _, e = req(d, ctx, "POST", "/other-tenant/oauth2/v2.0/token", form, ct)
    assert st == 400 and "AADSTS90002" in e["error_description"], e
    # A token for another resource is refused by the vault.
    st, _, other = req(d, ctx, "POST", "/%s/oauth2/v2.0/token" % TENANT,
                       form.replace("vault.azure.net", "graph.microsoft.com"), ct)
    assert st == 200
    st, _, b = req(d, ctx, "GET", "/secrets/x?api-version=7.4",
                   headers={"Authorization": "Bearer " + other["access_token"]})
    assert st == 401 and "AKV10022" in b["error"]["message"], b

    auth = {"Authorization": "Bearer " + tok["access_token"], "Content-Type": "application/json"}
    st, _, b = req(d, ctx, "PUT", "/secrets/api-key", json.dumps({"value": "v1"}), auth)
    assert st == 400 and "api-version" in b["error"]["message"], b
    st, _, b = req(d, ctx, "PUT", "/secrets/api-key?api-version=1.0", json.dumps({"value": "v1"}), auth)
    assert st == 400 and b["error"]["code"] == "BadParameter", b
    st, _, b = req(d, ctx, "PUT", "/secrets/api_key?api-version=7.4", json.dumps({"value": "v1"}), auth)
    assert st == 400 and b == {"error": {"code": "BadParameter",
                                         "message": "The request URI contains an invalid name: api_key"}}, b
    st, _, s1 = req(d, ctx, "PUT", "/secrets/api-key?api-version=7.4",
                    json.dumps({"value": "v1", "contentType": "text/plain", "attributes": {"enabled": True},
                                "tags": {"managed-by": "rootseal"}}), auth)
    assert st == 200 and s1["value"] == "v1" and s1["tags"] == {"managed-by": "rootseal"}, s1
    assert s1["attributes"]["enabled"] is True and s1["attributes"]["recoveryLevel"] == "Recoverable+Purgeable"
    st, _, s2 = req(d, ctx, "PUT", "/secrets/api-key?api-version=7.4", json.dumps({"value": "v2"}), auth)
    assert s2["id"] != s1["id"], "every PUT creates a new version"
    st, _, g = req(d, ctx, "GET", "/secrets/api-key?api-version=7.4", headers=auth)
    assert g["value"] == "v2" and g["id"] == s2["id"]
    ver1 = s1["id"].rsplit("/", 1)[1]
    st, _, g = req(d, ctx, "GET", "/secrets/api-key/%s?api-version=7.4" % ver1, headers=auth)
    assert g["value"] == "v1"
    st, _, b = req(d, ctx, "GET", "/secrets/nothing?api-version=7.4", headers=auth)
    assert st == 404 and b["error"]["code"] == "SecretNotFound" and "(name/id) nothing" in b["error"]["message"], b

    # Injected throttling and outage.
    d.faults.add({"status": 429, "count": 1, "retry_after": 7})
    st, h, b = req(d, ctx, "GET", "/secrets/api-key?api-version=7.4", headers=auth)
    assert st == 429 and h["Retry-After"] == "7" and b["error"]["code"] == "Throttled", (st, h, b)
    d.faults.down = "503"
    st, _, b = req(d, ctx, "GET", "/secrets/api-key?api-version=7.4", headers=auth)
    assert st == 503, st
    d.faults.down = None
    d.counters.reset()
    req(d, ctx, "GET", "/secrets/api-key?api-version=7.4", headers=auth)
    req(d, ctx, "PUT", "/secrets/api-key?api-version=7.4", json.dumps({"value": "v3"}), auth)
    s = d.stats()
    assert s["by_verb"] == {"get": 1, "put": 1} and s["writes"] == 1, s
    print("REST checks passed")


def main():
    work = tempdir("azure-double-")
    cert, key = make_cert(work)
    d = azure.AzureKeyVaultDouble(tls_cert=cert, tls_key=key, tenant=TENANT, clients={CLIENT: SECRET}).start()
    try:
        test_sdk(d, cert, key)
        test_sdk_federated(d, cert)
        test_rest(d, ssl.create_default_context(cafile=cert))
    finally:
        d.stop()
    # As a process: READY <port>, then the token endpoint and the vault work.
    p = subprocess.Popen([sys.executable, os.path.join(DOUBLE, "server.py"), "--port", "0", "--tls-cert", cert,
                          "--tls-key", key, "--tenant", TENANT, "--client", "%s:%s" % (CLIENT, SECRET)],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        assert line[0] == "READY", line

        class Port:
            port = int(line[1])
        ctx = ssl.create_default_context(cafile=cert)
        st, _, tok = req(Port, ctx, "POST", "/%s/oauth2/v2.0/token" % TENANT, urlencode({
            "grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET,
            "scope": "https://vault.azure.net/.default"}), {"Content-Type": "application/x-www-form-urlencoded"})
        assert st == 200, tok
        st, _, b = req(Port, ctx, "PUT", "/secrets/x?api-version=7.4", json.dumps({"value": "v"}),
                       {"Authorization": "Bearer " + tok["access_token"], "Content-Type": "application/json"})
        assert st == 200 and b["value"] == "v", b
    finally:
        p.terminate()
        p.wait(10)
    print("ok")


if __name__ == "__main__":
    main()
