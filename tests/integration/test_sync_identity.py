"""Stores authenticated as the tenant's own ServiceAccount, end to end:
rootseald (sync.enabled) asks the Kubernetes API double for ServiceAccount
tokens (TokenRequest) and logs in to the Vault double with them: Vault
`auth.kubernetes` (the double reviews the token through the cluster's
TokenReview API, as Vault does) and `auth.jwt` (the double checks the
signature against the cluster's JWKS); and AWS `auth.jwt` (STS
AssumeRoleWithWebIdentity at moto_server with the ServiceAccount's token,
Secrets Manager called with the credentials bought, pull and push). Checked: an ExternalSecret syncs
through its own namespace's ServiceAccount and Vault's policy limits it; a
store in another namespace cannot use that ServiceAccount (ESO's message); a
token's expiry leads to a fresh TokenRequest, not a failure; a deleted
ServiceAccount gives a clear status, no retry storm and no deletion of the
Secret; no token ever reaches rootseald's log, a status or an event."""
import base64
import json
import os
import shutil
import tempfile
import time
import unittest
import urllib.parse

from rootseal_testlib import make_server_and_client_certs
from sync_testlib import SyncEnv, ESO, K8S_TOKEN, VAULT_ROOT, b64, vault_double

ENV = None


def setUpModule():
    global ENV
    # moto's request recorder (the AWS test) writes its file here, not into the working directory.
    os.environ["MOTO_RECORDER_FILEPATH"] = os.path.join(tempfile.mkdtemp(prefix="rootseal-moto-rec-"), "recording")
    ENV = SyncEnv(refresh_window="1s")
    ENV.sync_extra = "  aws_endpoint: http://127.0.0.1:%d" % ENV.moto_port  # Secrets Manager and STS (moto)
    ENV.start()
    v = ENV.vault
    root = {"X-Vault-Token": VAULT_ROOT}
    for path, body in (
            ("/v1/sys/auth/kubernetes", {"type": "kubernetes"}),
            # token_reviewer_jwt: the credential Vault reviews tokens with (here the double's admin token).
            ("/v1/auth/kubernetes/config", {"kubernetes_host": ENV.k8s.url, "token_reviewer_jwt": K8S_TOKEN}),
            ("/v1/sys/auth/jwt", {"type": "jwt"}),
            ("/v1/auth/jwt/config", {"jwks_url": ENV.k8s.url + "/openid/v1/jwks",
                                     "bound_issuer": "https://kubernetes.default.svc.cluster.local"})):
        st, out = vault_req(v, "POST", path, body, root)
        assert st in (200, 204), (path, st, out)


def tearDownModule():
    if ENV:
        ENV.stop()
    shutil.rmtree(os.path.dirname(os.environ.pop("MOTO_RECORDER_FILEPATH", "/nonexistent/x")), ignore_errors=True)


def vault_req(v, method, path, body, headers):
    import http.client
    import json
    c = http.client.HTTPConnection("127.0.0.1", v.port, timeout=10)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = c.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)
    finally:
        c.close()


def vault_admin(path, body):
    st, out = vault_req(ENV.vault, "POST", "/v1/" + path, body, {"X-Vault-Token": VAULT_ROOT})
    assert st in (200, 204), (path, st, out)


class Identity(unittest.TestCase):
    def setUp(self):
        self.env = ENV
        self.kube = ENV.kube

    # ---- helpers ---------------------------------------------------------------

    def ns(self, name):
        self.kube.namespace(name)
        return name

    def service_account(self, ns, name="app"):
        return self.kube.create("/api/v1/namespaces/%s/serviceaccounts" % ns, {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})

    def k8s_role(self, role, ns, sa="app", ttl=None):
        """A Vault Kubernetes-auth role for ns/sa with a policy reading secret/data/<ns>/*."""
        vault_admin("sys/policy/" + ns, {"policy": 'path "secret/data/%s/*" { capabilities = ["read"] }' % ns})
        body = {"bound_service_account_names": [sa], "bound_service_account_namespaces": [ns],
                "token_policies": [ns]}
        if ttl:
            body.update(token_ttl=ttl, token_max_ttl=ttl)
        vault_admin("auth/kubernetes/role/" + role, body)

    def store(self, ns, auth, name="vault", kind="SecretStore"):
        path = ESO + ("/namespaces/%s/secretstores" % ns if kind == "SecretStore" else "/clustersecretstores")
        md = {"name": name, "namespace": ns} if kind == "SecretStore" else {"name": name}
        self.kube.create(path, {"apiVersion": "external-secrets.io/v1", "kind": kind, "metadata": md,
                                "spec": {"provider": {"vault": {"server": self.env.vault.url, "path": "secret",
                                                                "version": "v2", "auth": auth}}}})

    def es(self, ns, key, name="db", refresh="1s", store="vault", kind="SecretStore", deletion=None):
        target = {"name": name + "-creds"}
        if deletion:
            target["deletionPolicy"] = deletion
        self.env.external_secret(ns, name, [{"secretKey": "password",
                                             "remoteRef": {"key": key, "property": "password"}}],
                                 refresh=refresh, target=target, store=store, kind=kind)

    def token_requests(self, ns, name="app"):
        return [r for r in self.env.k8s.token_requests if r["namespace"] == ns and r["name"] == name]

    def assert_no_credentials_leaked(self, namespaces):
        """No ServiceAccount token the double issued, nor any Vault token, in
        rootseald's log, the ExternalSecrets' statuses or the Events."""
        secrets = [r["token"] for r in self.env.k8s.token_requests]
        with self.env.vault.state.lock:
            secrets += [t for t in self.env.vault.state.tokens]
        self.assertTrue(secrets)
        # Each token's signature alone is unique enough: a part of a token is as bad as all of it.
        needles = set(secrets) | {t.split(".")[-1] for t in secrets if t.count(".") == 2}
        self.env.err.flush()
        with open(self.env.stderr_path, "rb") as f:
            haystacks = [f.read().decode(errors="replace")]
        import json
        for ns in namespaces:
            es = self.kube.get(ESO + "/namespaces/%s/externalsecrets" % ns)
            haystacks.append(json.dumps([e.get("status") for e in es["items"]]))
            ss = self.kube.get(ESO + "/namespaces/%s/secretstores" % ns)
            haystacks.append(json.dumps([s.get("status") for s in ss["items"]]))
            haystacks.append(json.dumps(self.kube.get("/api/v1/namespaces/%s/events" % ns)["items"]))
        for h in haystacks:
            for n in needles:
                self.assertNotIn(n, h)

    # ---- tests -----------------------------------------------------------------

    def test_kubernetes_auth_syncs_through_the_namespace_service_account(self):
        ns = self.ns("id-kube")
        sa = self.service_account(ns)
        self.k8s_role("id-kube", ns)
        self.env.vault.put("%s/db" % ns, {"password": "pw-kube"})
        self.env.vault.put("id-other/db", {"password": "not-yours"})
        self.store(ns, {"kubernetes": {"mountPath": "kubernetes", "role": "id-kube",
                                       "serviceAccountRef": {"name": "app"}}})
        self.es(ns, "%s/db" % ns, refresh="1h")
        self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "password") == "pw-kube", "db-creds synced")
        # The token: for ns/app, ESO's request (the serviceAccountRef's audiences: none; 600 s).
        reqs = self.token_requests(ns)
        self.assertGreaterEqual(len(reqs), 1)
        self.assertEqual((reqs[0]["audiences"], reqs[0]["expirationSeconds"]), (None, 600))
        # Vault logged it in as that ServiceAccount, after a TokenReview on the cluster.
        logins = [x for x in self.env.vault.jwt_logins if x["role"] == "id-kube"]
        self.assertTrue(logins)
        self.assertEqual(logins[0]["meta"]["service_account_namespace"], ns)
        self.assertEqual(logins[0]["meta"]["service_account_uid"], sa["metadata"]["uid"])
        self.assertGreaterEqual(self.env.k8s.stats()["by_resource"]["tokenreviews"]["create"], 1)
        # Vault's policy for that identity decides: another namespace's path is refused.
        self.es(ns, "id-other/db", name="other")
        ready = self.env.wait(lambda: (self.kube.ready(ns, "other") or [None])[0] == "False" and
                              self.kube.ready(ns, "other"), "other refused")
        self.assertIn("permission denied", ready[2])
        self.assertIsNone(self.kube.secret(ns, "other-creds"))
        self.assert_no_credentials_leaked([ns])

    def test_jwt_auth_with_a_service_account_token(self):
        ns = self.ns("id-jwt")
        self.service_account(ns)
        vault_admin("sys/policy/" + ns, {"policy": 'path "secret/data/%s/*" { capabilities = ["read"] }' % ns})
        vault_admin("auth/jwt/role/id-jwt", {"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"],
                                            "bound_subject": "system:serviceaccount:%s:app" % ns,
                                            "token_policies": [ns]})
        self.env.vault.put("%s/db" % ns, {"password": "pw-jwt"})
        self.store(ns, {"jwt": {"path": "jwt", "role": "id-jwt",
                                "kubernetesServiceAccountToken": {"serviceAccountRef": {"name": "app"}}}})
        self.es(ns, "%s/db" % ns, refresh="1h")
        self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "password") == "pw-jwt", "db-creds synced")
        reqs = self.token_requests(ns)
        # ESO's auth.jwt request: the serviceAccountRef's audiences + kubernetesServiceAccountToken's ("vault"), 600 s.
        self.assertEqual((reqs[0]["audiences"], reqs[0]["expirationSeconds"]), (["vault"], 600))
        self.assert_no_credentials_leaked([ns])

    def test_a_store_in_another_namespace_cannot_use_the_service_account(self):
        owner = self.ns("id-owner")
        self.service_account(owner)
        self.k8s_role("id-owner", owner)
        self.env.vault.put("%s/db" % owner, {"password": "owner-only"})
        thief = self.ns("id-thief")
        self.store(thief, {"kubernetes": {"role": "id-owner",
                                          "serviceAccountRef": {"name": "app", "namespace": owner}}})
        self.es(thief, "%s/db" % owner)
        ready = self.env.wait(lambda: self.kube.ready(thief, "db"), "Ready condition")
        self.assertEqual(ready[0], "False")
        self.assertIn("namespace should either be empty or match the namespace of the SecretStore for a "
                      "namespaced SecretStore", ready[2])
        self.assertEqual(self.token_requests(owner), [])  # never asked for the owner's token
        self.assertIsNone(self.kube.secret(thief, "db-creds"))

    def test_cluster_store_uses_each_namespace_own_service_account(self):
        """A ClusterSecretStore whose serviceAccountRef names no namespace: each
        ExternalSecret's namespace authenticates as its own ServiceAccount."""
        a, b = self.ns("id-ref-a"), self.ns("id-ref-b")
        for ns in (a, b):
            self.service_account(ns)
            self.env.vault.put("%s/db" % ns, {"password": "pw-" + ns})
        vault_admin("sys/policy/id-ref", {"policy": 'path "secret/data/id-ref-*" { capabilities = ["read"] }'})
        vault_admin("auth/kubernetes/role/id-ref", {"bound_service_account_names": ["app"],
                                                    "bound_service_account_namespaces": [a, b],
                                                    "token_policies": ["id-ref"]})
        self.store(None, {"kubernetes": {"role": "id-ref", "serviceAccountRef": {"name": "app"}}},
                   name="id-ref-css", kind="ClusterSecretStore")
        for ns in (a, b):
            self.es(ns, "%s/db" % ns, refresh="1h", store="id-ref-css", kind="ClusterSecretStore")
        for ns in (a, b):
            self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "password") == "pw-" + ns, ns + " synced")
            self.assertTrue(self.token_requests(ns))
        spaces = {x["meta"]["service_account_namespace"] for x in self.env.vault.jwt_logins if x["role"] == "id-ref"}
        self.assertEqual(spaces, {a, b})

    def test_token_expiry_leads_to_a_fresh_token_request_not_a_failure(self):
        ns = self.ns("id-expiry")
        self.service_account(ns)
        # Vault tokens of 2 s that cannot be renewed beyond: a login every ~2 s,
        # each with a ServiceAccount token the double lets live 3 s only.
        self.k8s_role("id-expiry", ns, ttl="2s")
        self.env.vault.put("%s/db" % ns, {"password": "v1"})
        self.env.k8s.token_max_seconds = 3
        try:
            self.store(ns, {"kubernetes": {"role": "id-expiry", "serviceAccountRef": {"name": "app"}}})
            self.es(ns, "%s/db" % ns, refresh="1s")
            self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "password") == "v1", "first sync")
            start, wall_start = time.monotonic(), time.time()
            seen_false = []
            version = 1

            def progressed():
                nonlocal version
                r = self.kube.ready(ns, "db")
                if r and r[0] != "True":
                    seen_false.append(r)
                if self.kube.secret_value(ns, "db-creds", "password") == "v%d" % version:
                    version += 1
                    self.env.vault.put("%s/db" % ns, {"password": "v%d" % version})
                # Three token lifetimes at least, each value change followed.
                fresh = [r for r in self.token_requests(ns) if r["t"] >= wall_start]
                reviewed = [r for r in self.env.k8s.token_reviews
                            if r["t"] >= wall_start and r.get("username") == "system:serviceaccount:%s:app" % ns]
                return time.monotonic() - start > 10 and len(fresh) >= 3 and len(reviewed) >= 3 and version >= 4
            self.env.wait(progressed, "syncs across several token lifetimes", timeout=60)
        finally:
            self.env.k8s.token_max_seconds = None
        self.assertEqual(seen_false, [])
        # Every token rootseald presented was still valid when Vault had it reviewed: renewed before expiry,
        # never refused and retried.
        # (TokenReviews after the start are this test's: the other tests' stores use tokens of 600 s.)
        reviews = [r for r in self.env.k8s.token_reviews if r["t"] >= wall_start]
        self.assertGreaterEqual(len([r for r in reviews if r.get("username") == "system:serviceaccount:%s:app" % ns]), 3)
        self.assertEqual([r for r in reviews if not r["authenticated"]], [])
        # Each login used a token still valid: the TokenReviews all passed (a login refused would show above).
        logins = [x for x in self.env.vault.jwt_logins if x["role"] == "id-expiry"]
        self.assertGreaterEqual(len(logins), 3)
        reqs = self.token_requests(ns)
        # Cached in between: fewer TokenRequests than logins or about one per token lifetime, never one per fetch.
        span = reqs[-1]["t"] - reqs[0]["t"]
        self.assertLessEqual(len(reqs), span / 2.0 + 2, [r["t"] for r in reqs])
        self.assert_no_credentials_leaked([ns])

    def test_deleted_service_account_gives_a_clear_status_without_retry_storm(self):
        ns = self.ns("id-deleted")
        self.service_account(ns)
        self.k8s_role("id-deleted", ns, ttl="2s")
        self.env.vault.put("%s/db" % ns, {"password": "kept"})
        self.store(ns, {"kubernetes": {"role": "id-deleted", "serviceAccountRef": {"name": "app"}}})
        # deletionPolicy Delete: a failure read as "the remote secret is gone" would delete the Secret.
        self.es(ns, "%s/db" % ns, refresh="1s", deletion="Delete")
        self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "password") == "kept", "first sync")
        st, _ = self.kube.delete("/api/v1/namespaces/%s/serviceaccounts/app" % ns)
        self.assertEqual(st, 200)
        ready = self.env.wait(lambda: (self.kube.ready(ns, "db") or [None])[0] == "False" and
                              self.kube.ready(ns, "db"), "Ready False", timeout=30)
        self.assertIn('cannot request Kubernetes service account token for service account "app"', ready[2])
        self.assertIn('serviceaccounts "app" not found', ready[2])
        # No retry storm: over 6 s, the ExternalSecret's backoff (retry_base 200 ms, retry_max 2 s) allows a
        # handful of TokenRequests, not one per refresh of every caller.
        t0 = time.time()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            self.assertEqual(self.kube.secret_value(ns, "db-creds", "password"), "kept")  # never deleted
            time.sleep(0.25)
        self.assertEqual([r for r in self.token_requests(ns) if r["t"] > t0], [])  # (answered ones only)
        errors = [e for e in self.env.k8s.counters.log_since(t0)
                  if e["path"] == "/api/v1/namespaces/%s/serviceaccounts/app/token" % ns]
        self.assertGreaterEqual(len(errors), 1)
        self.assertLessEqual(len(errors), 8, [round(e["t"] - t0, 2) for e in errors])
        print("\ndeleted ServiceAccount: %d TokenRequests in 6 s: %s" % (len(errors), [round(e["t"] - t0, 2) for e in errors]))
        # Recreated: syncing resumes with a fresh token.
        self.service_account(ns)
        self.env.vault.put("%s/db" % ns, {"password": "back"})
        self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "password") == "back", "resumed", timeout=30)
        self.assert_no_credentials_leaked([ns])


    # ---- AWS web identity ----------------------------------------------------

    def test_aws_web_identity_pull_and_push(self):
        ns = self.ns("id-aws")
        role = "arn:aws:iam::123456789012:role/id-aws-reader"
        self.kube.create("/api/v1/namespaces/%s/serviceaccounts" % ns, {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "app", "namespace": ns, "annotations": {"eks.amazonaws.com/role-arn": role}}})
        self.env.aws("create-secret", "--name", "id-aws/db", "--secret-string", json.dumps({"password": "pw-aws"}))

        def pull_and_push():
            self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": {"name": "aws", "namespace": ns},
                "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1",
                                              "auth": {"jwt": {"serviceAccountRef": {"name": "app"}}}}}}})
            self.es_aws = self.env.external_secret(ns, "db", [{"secretKey": "password", "remoteRef": {
                "key": "id-aws/db", "property": "password"}}], refresh="1h", target={"name": "db-creds"}, store="aws")
            self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "password") == "pw-aws", "db-creds synced")
            # Push through the same identity: a Secret of the namespace to Secrets Manager.
            self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src", "namespace": ns},
                "data": {"token": b64("pushed-by-web-identity")}})
            self.env.push_secret(ns, "up", {"secret": {"name": "src"}},
                                 [{"match": {"secretKey": "token", "remoteRef": {"remoteKey": "id-aws/pushed"}}}],
                                 stores=("aws",))
            self.env.wait(lambda: (self.env.push_ready(ns, "up") or [None])[0] == "True", "PushSecret Ready")
            self.assertEqual(self.env.aws("get-secret-value", "--secret-id", "id-aws/pushed")["SecretString"],
                             "pushed-by-web-identity")
        calls = self.env.moto_recording(pull_and_push)
        body = self.env.recorded_body
        sts = [urllib.parse.parse_qs(body(c)) for c in calls if "AssumeRoleWithWebIdentity" in body(c)]
        self.assertGreaterEqual(len(sts), 1)
        self.assertEqual(sts[0]["RoleArn"], [role])
        self.assertEqual(sts[0]["RoleSessionName"], ["external-secrets-provider-aws"])  # ESO's
        issued = {r["token"]: r for r in self.token_requests(ns)}
        self.assertIn(sts[0]["WebIdentityToken"][0], issued)  # a token the cluster issued for id-aws/app ...
        self.assertEqual(issued[sts[0]["WebIdentityToken"][0]]["audiences"], ["sts.amazonaws.com"])  # ... for STS
        self.assertIsNone(issued[sts[0]["WebIdentityToken"][0]]["expirationSeconds"])  # ESO: the server's default
        # Secrets Manager was called with the credentials STS sold (ASIA... + a session token), not static keys.
        sm = [c for c in calls if (c["headers"].get("X-Amz-Target") or "").startswith("secretsmanager.") and
              "aws-cli" not in (c["headers"].get("User-Agent") or "")]  # rootseald's, not the test's aws CLI
        self.assertTrue(sm)
        for c in sm:
            self.assertIn("Credential=ASIA", c["headers"]["Authorization"])
            self.assertTrue(c["headers"].get("X-Amz-Security-Token"))
        # Credentials cached: one STS call for every Secrets Manager call made (pull and push).
        self.assertLessEqual(len(sts), 2)
        self.assertGreaterEqual(len(sm), 3)
        self.assert_no_credentials_leaked([ns])
        self.env.err.flush()
        with open(self.env.stderr_path, "rb") as f:
            log = f.read().decode(errors="replace")
        for c in sm:
            self.assertNotIn(c["headers"]["X-Amz-Security-Token"], log)
        es = json.dumps(self.kube.es(ns, "db").get("status"))
        for c in sm:
            self.assertNotIn(c["headers"]["X-Amz-Security-Token"], es)

    def test_aws_store_in_another_namespace_cannot_use_the_service_account(self):
        owner, thief = self.ns("id-aws-owner"), self.ns("id-aws-thief")
        self.kube.create("/api/v1/namespaces/%s/serviceaccounts" % owner, {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                "name": "app", "namespace": owner,
                "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/owner"}}})
        self.kube.create(ESO + "/namespaces/%s/secretstores" % thief, {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": "aws", "namespace": thief},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1", "auth": {
                "jwt": {"serviceAccountRef": {"name": "app", "namespace": owner}}}}}}})
        self.env.external_secret(thief, "db", [{"secretKey": "p", "remoteRef": {"key": "x"}}], store="aws")
        ready = self.env.wait(lambda: self.kube.ready(thief, "db"), "Ready condition")
        self.assertEqual(ready[0], "False")
        self.assertIn("namespace should either be empty or match the namespace of the SecretStore for a "
                      "namespaced SecretStore", ready[2])
        self.assertEqual(self.token_requests(owner), [])

    def test_aws_web_identity_without_role_annotation_is_refused_clearly(self):
        ns = self.ns("id-aws-norole")
        self.service_account(ns)
        self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": "aws", "namespace": ns},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1",
                                          "auth": {"jwt": {"serviceAccountRef": {"name": "app"}}}}}}})
        self.env.external_secret(ns, "db", [{"secretKey": "p", "remoteRef": {"key": "x"}}], store="aws")
        ready = self.env.wait(lambda: self.kube.ready(ns, "db"), "Ready condition")
        self.assertEqual(ready[0], "False")
        self.assertIn("an IAM role must be associated with service account app (namespace: %s)" % ns, ready[2])
        self.assertEqual(self.token_requests(ns), [])


    # ---- Vault auth.cert --------------------------------------------------------

    def test_vault_cert_auth_with_a_client_certificate_from_a_secret(self):
        import http.client
        import ssl
        d = tempfile.mkdtemp(prefix="rootseal-cert-auth-")
        try:
            def read(path):
                with open(path) as f:
                    return f.read()
            srv_cert, srv_key, ca, files = make_server_and_client_certs(d, ("web", "other"))
            certs = {name: (read(c), read(k)) for name, (c, k) in files.items()}
            v = vault_double.VaultKvDouble(root_token=VAULT_ROOT, tls_cert=srv_cert, tls_key=srv_key,
                                           client_ca=ca).start()
        except Exception:
            shutil.rmtree(d, ignore_errors=True)
            raise
        try:
            ctx = ssl.create_default_context(cafile=srv_cert)

            def admin(path, body):
                c = http.client.HTTPSConnection("127.0.0.1", v.port, context=ctx, timeout=10)
                c.request("POST", "/v1/" + path, body=json.dumps(body), headers={"X-Vault-Token": VAULT_ROOT})
                r = c.getresponse()
                r.read()
                c.close()
                assert r.status in (200, 204), (path, r.status)
            admin("sys/auth/cert", {"type": "cert"})
            for name in ("web", "other"):
                admin("auth/cert/certs/" + name, {"certificate": certs[name][0], "token_ttl": 60})
            v.put("cert/db", {"password": "pw-cert"})
            ns = self.ns("id-cert")
            for name in ("web", "other"):
                self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
                    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls-" + name, "namespace": ns},
                    "type": "kubernetes.io/tls",
                    "data": {"tls.crt": b64(certs[name][0]), "tls.key": b64(certs[name][1])}})

            def store(name, client, role):
                self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
                    "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"provider": {"vault": {
                        "server": v.url, "path": "secret", "version": "v2",
                        "caBundle": base64.b64encode(read(srv_cert).encode()).decode(),
                        "auth": {"cert": {"vaultRole": role,
                                          "clientCert": {"name": "tls-" + client, "key": "tls.crt"},
                                          "secretRef": {"name": "tls-" + client, "key": "tls.key"}}}}}}})
            store("vault-cert", "web", "web")
            self.es(ns, "cert/db", refresh="1h", store="vault-cert")
            self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "password") == "pw-cert", "db-creds synced")
            self.assertEqual([x["role"] for x in v.jwt_logins], ["web"])
            # The "web" certificate presented for role "other": refused by Vault, said clearly.
            store("vault-wrong", "web", "other")
            self.es(ns, "cert/db", name="wrong", refresh="1h", store="vault-wrong")
            ready = self.env.wait(lambda: (self.kube.ready(ns, "wrong") or [None])[0] == "False" and
                                  self.kube.ready(ns, "wrong"), "wrong refused")
            self.assertIn("vault: certificate login failed: vault answered 400: invalid certificate", ready[2])
            # No private key material in the log or the statuses.
            self.env.err.flush()
            with open(self.env.stderr_path, "rb") as f:
                log = f.read().decode(errors="replace")
            key_body = "".join(certs["web"][1].strip().splitlines()[1:-1])
            for h in (log, json.dumps(self.kube.es(ns, "db").get("status")),
                      json.dumps(self.kube.es(ns, "wrong").get("status"))):
                self.assertNotIn(key_body[:64], h)
        finally:
            v.stop()
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
