"""The CyberArk Conjur double (tests/doubles/conjur) against Conjur's
documented REST API with raw HTTP: authn with an API key (the access token as
JSON, or base64 with Accept-Encoding: base64), the token as
`Authorization: Token token="<base64>"`, variable reads with percent-encoded
ids and versions, the batch retrieval, the resource listing, authn-jwt (issuer, JWKS signature,
audience, identity-path mapping, a host id in the URL), and the status
codes Conjur answers: 401 (empty body), 403, 404, 422. No Conjur client is
available from npm or Debian to check it against."""
import base64
import http.client
import json
import os
import sys
import time
import unittest
from urllib.parse import quote, urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "doubles", "common"))
from doublelib import load_double  # noqa: E402

conjur = load_double("conjur")
k8s = load_double("k8s_apiserver")
K8S_TOKEN = "conjur-double-test"


class ConjurDoubleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = k8s.K8sApiServerDouble(tokens=[K8S_TOKEN]).start()
        cls.d = conjur.ConjurDouble(account="myorg").start()
        cls.d.user("admin", "admin-key")
        cls.d.user("host/apps/ci", "ci-key")
        cls.d.variable("apps/db/password", "v1")
        cls.d.variable("apps/db/password", "v2")
        cls.d.variable("apps/other", "other")
        cls.d.variable("apps/empty", b"")
        cls.d.state.variables["apps/empty"] = []
        for v in ("apps/db/password", "apps/empty"):
            cls.d.permit("host/apps/ci", v)
        cls.d.jwt_service("k8s", k8s.SA_ISSUER, cls.k.url + "/openid/v1/jwks", audience="conjur", identity_path="k8s")
        cls.d.host_claims("pinned", {"sub": "system:serviceaccount:ns:app"})
        cls.d.permit("host/k8s/system:serviceaccount:ns:app", "apps/db/password")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.k.stop()

    def req(self, method, path, body=None, headers=None, port=None):
        c = http.client.HTTPConnection("127.0.0.1", port or self.d.port, timeout=10)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.getheader("Content-Type"), r.read()
        finally:
            c.close()

    def login(self, login="host/apps/ci", key="ci-key"):
        st, _, body = self.req("POST", "/authn/myorg/%s/authenticate" % quote(login, safe=""), key.encode())
        self.assertEqual(st, 200, body)
        return {"Authorization": 'Token token="%s"' % base64.b64encode(body).decode()}

    def sa_token(self, ns, name, audiences):
        hdr = {"Authorization": "Bearer " + K8S_TOKEN, "Content-Type": "application/json"}
        self.req("POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": ns}}), hdr, self.k.port)
        self.req("POST", "/api/v1/namespaces/%s/serviceaccounts" % ns, json.dumps({"metadata": {"name": name}}), hdr,
                 self.k.port)
        st, _, body = self.req("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (ns, name),
                               json.dumps({"spec": {"audiences": audiences, "expirationSeconds": 600}}), hdr, self.k.port)
        self.assertEqual(st, 201, body)
        return json.loads(body)["status"]["token"]

    def test_authn_token_formats_and_refusals(self):
        st, ctype, body = self.req("POST", "/authn/myorg/host%2Fapps%2Fci/authenticate", b"ci-key")
        self.assertEqual((st, ctype), (200, "application/json"))
        tok = json.loads(body)
        self.assertEqual(sorted(tok), ["payload", "protected", "signature"])
        payload = json.loads(base64.urlsafe_b64decode(tok["payload"] + "=" * (-len(tok["payload"]) % 4)))
        self.assertEqual(payload["sub"], "host/apps/ci")
        self.assertEqual(payload["exp"] - payload["iat"], 480)  # 8 minutes
        st, ctype, b64 = self.req("POST", "/authn/myorg/host%2Fapps%2Fci/authenticate", b"ci-key",
                                  {"Accept-Encoding": "base64"})
        self.assertEqual((st, ctype), (200, "text/plain"))
        self.assertEqual(sorted(json.loads(base64.b64decode(b64))), ["payload", "protected", "signature"])
        for path, key in (("/authn/myorg/host%2Fapps%2Fci/authenticate", b"wrong"),
                          ("/authn/other/host%2Fapps%2Fci/authenticate", b"ci-key"),
                          ("/authn/myorg/nobody/authenticate", b"ci-key")):
            st, _, body = self.req("POST", path, key)
            self.assertEqual((st, body), (401, b""))

    def test_variables_versions_and_status_codes(self):
        h = self.login()
        st, _, body = self.req("GET", "/secrets/myorg/variable/apps%2Fdb%2Fpassword", headers=h)
        self.assertEqual((st, body), (200, b"v2"))
        st, _, body = self.req("GET", "/secrets/myorg/variable/apps%2Fdb%2Fpassword?version=1", headers=h)
        self.assertEqual((st, body), (200, b"v1"))
        st, _, body = self.req("GET", "/secrets/myorg/variable/apps%2Fdb%2Fpassword?version=9", headers=h)
        self.assertEqual(st, 404)
        st, _, body = self.req("GET", "/secrets/myorg/variable/apps%2Fother", headers=h)
        self.assertEqual((st, json.loads(body)["error"]["code"]), (403, "forbidden"))
        st, _, body = self.req("GET", "/secrets/myorg/variable/apps%2Fnone", headers=h)
        self.assertEqual((st, json.loads(body)["error"]["code"]), (404, "not_found"))
        st, _, body = self.req("GET", "/secrets/myorg/variable/apps%2Fempty", headers=h)
        self.assertIn("is empty or not found", json.loads(body)["error"]["message"])
        for bad in ({}, {"Authorization": "Token token=\"bm90IGEgdG9rZW4=\""}, {"Authorization": "Bearer x"}):
            st, _, body = self.req("GET", "/secrets/myorg/variable/apps%2Fdb%2Fpassword", headers=bad)
            self.assertEqual((st, body), (401, b""))

    def test_expired_token_is_401(self):
        self.d.state.token_lifetime = 1
        try:
            h = self.login()
        finally:
            self.d.state.token_lifetime = 480
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            st, _, _ = self.req("GET", "/secrets/myorg/variable/apps%2Fdb%2Fpassword", headers=h)
            if st == 401:
                break
            time.sleep(0.1)
        self.assertEqual(st, 401)

    def test_batch_retrieval(self):
        h = self.login()
        q = urlencode({"variable_ids": "myorg:variable:apps/db/password"})
        st, _, body = self.req("GET", "/secrets?" + q, headers=h)
        self.assertEqual((st, json.loads(body)), (200, {"myorg:variable:apps/db/password": "v2"}))
        q = urlencode({"variable_ids": "myorg:variable:apps/db/password,myorg:variable:apps/other"})
        self.assertEqual(self.req("GET", "/secrets?" + q, headers=h)[0], 403)  # all or nothing
        q = urlencode({"variable_ids": "myorg:variable:apps/db/password,myorg:variable:apps/none"})
        self.assertEqual(self.req("GET", "/secrets?" + q, headers=h)[0], 404)
        self.assertEqual(self.req("GET", "/secrets", headers=h)[0], 422)
        self.assertEqual(self.req("GET", "/secrets?" + urlencode({"variable_ids": "myorg:user:admin"}), headers=h)[0], 422)

    def test_resources_listing(self):
        h = self.login()
        st, _, body = self.req("GET", "/resources/myorg?kind=variable", headers=h)
        self.assertEqual(st, 200)
        # Only what the caller holds a privilege on, sorted by id.
        self.assertEqual([r["id"] for r in json.loads(body)], ["myorg:variable:apps/db/password",
                                                             "myorg:variable:apps/empty"])
        st, _, body = self.req("GET", "/resources/myorg?kind=variable&limit=1&offset=1", headers=h)
        self.assertEqual([r["id"] for r in json.loads(body)], ["myorg:variable:apps/empty"])
        self.assertEqual(self.req("GET", "/resources/myorg?kind=variable&limit=x", headers=h)[0], 422)
        self.assertEqual(self.req("GET", "/resources/myorg?kind=variable")[0], 401)

    def test_authn_jwt(self):
        good = self.sa_token("ns", "app", ["conjur"])
        st, _, body = self.req("POST", "/authn-jwt/k8s/myorg/authenticate", urlencode({"jwt": good}).encode(),
                               {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 200, body)
        h = {"Authorization": 'Token token="%s"' % base64.b64encode(body).decode()}
        self.assertEqual(self.req("GET", "/secrets/myorg/variable/apps%2Fdb%2Fpassword", headers=h)[:3:2], (200, b"v2"))
        # A host id in the URL: the host's annotated claims must match.
        st, _, _ = self.req("POST", "/authn-jwt/k8s/myorg/pinned/authenticate", urlencode({"jwt": good}).encode())
        self.assertEqual(st, 200)
        other = self.sa_token("ns2", "app", ["conjur"])
        self.assertEqual(self.req("POST", "/authn-jwt/k8s/myorg/pinned/authenticate",
                                  urlencode({"jwt": other}).encode())[0], 401)
        wrong_aud = self.sa_token("ns", "app", ["vault"])
        tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
        for jwt, service in ((wrong_aud, "k8s"), (tampered, "k8s"), (good, "nope"), ("", "k8s"), (other, "k8s")):
            st, _, body = self.req("POST", "/authn-jwt/%s/myorg/authenticate" % service, urlencode({"jwt": jwt}).encode())
            self.assertEqual((st, body), (401, b""), (service, jwt[:20]))


if __name__ == "__main__":
    unittest.main()
