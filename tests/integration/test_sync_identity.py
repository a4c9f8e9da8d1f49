"""Stores authenticated as the tenant's own ServiceAccount, end to end:
rootseald (sync.enabled) asks the Kubernetes API double for ServiceAccount
tokens (TokenRequest) and logs in to the Vault double with them: Vault
`auth.kubernetes` (the double reviews the token through the cluster's
TokenReview API, as Vault does) and `auth.jwt` (the double checks the
signature against the cluster's JWKS); and AWS `auth.jwt` (STS
AssumeRoleWithWebIdentity at moto_server with the ServiceAccount's token,
Secrets Manager called with the credentials bought, pull and push); Azure
workload identity (the ServiceAccount's token as the client assertion at the
Key Vault double's Entra token endpoint, which checks it against the
application's federated credential and the cluster's keys, pull and push). Checked: an ExternalSecret syncs
through its own namespace's ServiceAccount and Vault's policy limits it; a
store in another namespace cannot use that ServiceAccount (ESO's message); a
token's expiry leads to a fresh TokenRequest, not a failure; a deleted
ServiceAccount gives a clear status, no retry storm and no deletion of the
Secret; no token ever reaches rootseald's log, a status or an event."""
import base64
import json
import os
import re
import shutil
import tempfile
import time
import unittest
import urllib.parse

from rootseal_testlib import make_server_and_client_certs
from sync_testlib import SyncEnv, ESO, K8S_TOKEN, VAULT_ROOT, azure_double, b64, gcp_double, vault_double
from doublelib import load_double  # noqa: E402 (on sys.path once sync_testlib has loaded a double)

conjur_double = load_double("conjur")

ENV = None
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"  # the Kubernetes double's issuer
AZ_TENANT = "72f988bf-0000-4000-8000-00000000a2e1"
AZ_APP = "0c5d7a11-0000-4000-8000-0000000000a1"  # the application (client id) the federated credentials are on
AZ_ADMIN = "az-admin-token"  # the test's own Key Vault token
GCP_PROJECT, GCP_NUMBER = "team-proj", "318275665932"
GCP_ADMIN = "gcp-admin-token"  # the test's own Secret Manager token
GCP_POOL_AUD = ("//iam.googleapis.com/projects/%s/locations/global/workloadIdentityPools/rootseal/providers/cluster-1"
                % GCP_NUMBER)
GCP_READER = "reader@%s.iam.gserviceaccount.com" % GCP_PROJECT


def setUpModule():
    global ENV
    # moto's request recorder (the AWS test) writes its file here, not into the working directory.
    os.environ["MOTO_RECORDER_FILEPATH"] = os.path.join(tempfile.mkdtemp(prefix="rootseal-moto-rec-"), "recording")
    ENV = SyncEnv(refresh_window="1s")
    # Entra (token endpoint) and Key Vault: one double; no application has a secret, only federated credentials.
    ENV.az = azure_double.AzureKeyVaultDouble(tenant=AZ_TENANT, clients={}, static_tokens=[AZ_ADMIN]).start()
    # Secret Manager, STS and IAM Credentials: one double.
    ENV.gcp = gcp_double.GcpSecretManagerDouble(projects={GCP_PROJECT: GCP_NUMBER}).start()
    ENV.gcp.state.tokens[GCP_ADMIN] = ("admin", float("inf"))
    ENV.gcp.add_pool_provider(GCP_POOL_AUD, SA_ISSUER, ENV.k8s.url + "/openid/v1/jwks")
    # Conjur: authn-jwt service "k8s" trusting the cluster's issuer (audience "conjur"), hosts under k8s/.
    ENV.conjur = conjur_double.ConjurDouble(account="myorg").start()
    ENV.conjur.jwt_service("k8s", SA_ISSUER, ENV.k8s.url + "/openid/v1/jwks", audience="conjur", identity_path="k8s")
    ENV.sync_extra = ("  aws_endpoint: http://127.0.0.1:%d\n"  # Secrets Manager and STS (moto)
                      "  azure_authority_host: %s\n"
                      "  gcp_endpoint: %s\n  gcp_sts_endpoint: %s\n  gcp_iam_endpoint: %s"
                      % (ENV.moto_port, ENV.az.url, ENV.gcp.url, ENV.gcp.url, ENV.gcp.url))
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
        ENV.az.stop()
        ENV.gcp.stop()
        ENV.conjur.stop()
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

    def refused(self, ns, name="db", timeout=20):
        """(status, reason, error) of ExternalSecret ns/name once it is Ready=False for a reason other than its
        store not being in rootseald's cache yet (an ExternalSecret created right after its store may see that
        first): the condition carries ESO's fixed text, the error is its latest Warning event UpdateFailed."""
        def settled():
            r = self.kube.ready(ns, name)
            failed = self.kube.event_messages(ns, name)
            if not r or r[0] != "False" or not failed or re.search(r'Secret ?Store "[^"]*" not found', failed[-1]):
                return None
            return r[0], r[1], failed[-1], r[2]
        st, reason, error, condition = self.env.wait(settled, "%s/%s refused" % (ns, name), timeout=timeout)
        self.assertEqual((reason, condition), ("SecretSyncedError", "could not get secret data from provider"))
        return st, reason, error

    def follow_changes(self, ns, put, exchanges):
        """Starting from value v1 synced into Secret <ns>/db-creds key "v": writes v2, v3, ... with put(value)
        each time the previous one arrived, until 8 s have passed, at least three values were followed and
        exchanges(since) (the backend's token exchanges since the start) counts three or more. The wall time
        of the start; fails if the ExternalSecret ever leaves Ready."""
        start, wall_start = time.monotonic(), time.time()
        seen_false, version = [], [1]

        def progressed():
            r = self.kube.ready(ns, "db")
            if r and r[0] != "True":
                seen_false.append(r)
            if self.kube.secret_value(ns, "db-creds", "v") == "v%d" % version[0]:
                version[0] += 1
                put("v%d" % version[0])
            return time.monotonic() - start > 8 and exchanges(wall_start) >= 3 and version[0] >= 4
        self.env.wait(progressed, "syncs across several access-token lifetimes", timeout=60)
        self.assertEqual(seen_false, [])
        return wall_start

    def assert_tokens_not_shown(self, ns, tokens, part):
        """None of `tokens` (each cut by part(token) to a unique piece) in rootseald's log, the namespace's
        ExternalSecret statuses or Events; nor any ServiceAccount or Vault token."""
        self.assertTrue(tokens)
        self.env.err.flush()
        with open(self.env.stderr_path, "rb") as f:
            log = f.read().decode(errors="replace")
        status = json.dumps([e.get("status") for e in self.kube.get(ESO + "/namespaces/%s/externalsecrets" % ns)["items"]])
        events = json.dumps(self.kube.get("/api/v1/namespaces/%s/events" % ns)["items"])
        for t in tokens:
            for h in (log, status, events):
                self.assertNotIn(part(t), h)
        self.assert_no_credentials_leaked([ns])

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
        ready = self.refused(ns, "other")
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
        ready = self.refused(thief)
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
        ready = self.refused(ns, "db", timeout=30)
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
            got = self.env.aws("get-secret-value", "--secret-id", "id-aws/pushed")
            self.assertEqual(base64.b64decode(got["SecretBinary"]), b"pushed-by-web-identity")  # ESO's default
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
        ready = self.refused(thief)
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
        ready = self.refused(ns)
        self.assertIn("an IAM role must be associated with service account app (namespace: %s)" % ns, ready[2])
        self.assertEqual(self.token_requests(ns), [])


    # ---- Azure workload identity ---------------------------------------------

    def az_req(self, method, path, body=None):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", ENV.az.port, timeout=10)
        try:
            sep = "&" if "?" in path else "?"
            c.request(method, path + sep + "api-version=7.4", body=json.dumps(body) if body is not None else None,
                      headers={"Authorization": "Bearer " + AZ_ADMIN, "Content-Type": "application/json"})
            r = c.getresponse()
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
        finally:
            c.close()

    def az_service_account(self, ns, annotations=None, federate=True):
        ann = {"azure.workload.identity/client-id": AZ_APP} if annotations is None else annotations
        self.kube.create("/api/v1/namespaces/%s/serviceaccounts" % ns, {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": ns,
                                                                       "annotations": ann}})
        if federate:  # the federated credential on the application: this cluster's issuer, this ServiceAccount
            ENV.az.federate(AZ_APP, SA_ISSUER, "system:serviceaccount:%s:app" % ns, ENV.k8s.url + "/openid/v1/jwks")

    def az_store(self, ns, extra=None, sa_ns=None, name="azure"):
        ref = {"name": "app"}
        if sa_ns:
            ref["namespace"] = sa_ns
        z = {"vaultUrl": ENV.az.url, "authType": "WorkloadIdentity", "tenantId": AZ_TENANT, "serviceAccountRef": ref}
        z.update(extra or {})
        self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": name, "namespace": ns},
            "spec": {"provider": {"azurekv": z}}})

    def az_assertions(self, ns):
        with ENV.az.state.lock:
            return [a for a in ENV.az.state.assertions if a["sub"] == "system:serviceaccount:%s:app" % ns]

    def assert_no_azure_tokens_leaked(self, ns):
        with ENV.az.state.lock:
            tokens = list(ENV.az.state.tokens)
        self.assert_tokens_not_shown(ns, tokens, lambda t: t.split(".")[-1])
    def test_azure_workload_identity_pull_and_push(self):
        ns = self.ns("id-az")
        self.az_service_account(ns)
        st, _ = self.az_req("PUT", "/secrets/id-az-db", {"value": json.dumps({"password": "pw-az"})})
        self.assertEqual(st, 200)
        self.az_store(ns)
        self.env.external_secret(ns, "db", [{"secretKey": "password", "remoteRef": {
            "key": "id-az-db", "property": "password"}}], refresh="1h", target={"name": "db-creds"}, store="azure")
        self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "password") == "pw-az", "db-creds synced")
        # Push through the same identity.
        self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src", "namespace": ns},
            "data": {"token": b64("pushed-by-workload-identity")}})
        self.env.push_secret(ns, "up", {"secret": {"name": "src"}},
                             [{"match": {"secretKey": "token", "remoteRef": {"remoteKey": "id-az-pushed"}}}],
                             stores=("azure",))
        self.env.wait(lambda: (self.env.push_ready(ns, "up") or [None])[0] == "True", "PushSecret Ready")
        st, got = self.az_req("GET", "/secrets/id-az-pushed")
        self.assertEqual((st, got["value"]), (200, "pushed-by-workload-identity"))
        # The ServiceAccount token: ESO's request (api://AzureADTokenExchange, the server's expiry) ...
        reqs = self.token_requests(ns)
        self.assertTrue(reqs)
        self.assertEqual((reqs[0]["audiences"], reqs[0]["expirationSeconds"]), (["api://AzureADTokenExchange"], None))
        # ... presented as the client assertion of AZ_APP, and checked by Entra against the federated credential.
        got = self.az_assertions(ns)
        self.assertTrue(got)
        self.assertEqual((got[0]["client_id"], got[0]["iss"], got[0]["aud"]),
                         (AZ_APP, SA_ISSUER, ["api://AzureADTokenExchange"]))
        # One exchange for every pull and push call (the access token is cached; pull and push share it or
        # buy one each, never one per call).
        self.assertLessEqual(len(got), 2)
        self.assert_no_azure_tokens_leaked(ns)

    def assert_found_a_b_c(self, ns, refused_name, refusal):
        """The find tests' outcome: by-name holds <ns>-a and -b, by-tag -a and -c (secrets a/red, b/blue,
        c/red), and `refused_name` is Ready=False with `refusal` in its message and no Secret."""
        self.env.wait(lambda: (self.kube.secret(ns, "by-name") or {}).get("data") is not None and
                      (self.kube.secret(ns, "by-tag") or {}).get("data") is not None, "find synced")
        got = {n: {k: base64.b64decode(v).decode() for k, v in self.kube.secret(ns, n)["data"].items()}
               for n in ("by-name", "by-tag")}
        self.assertEqual(got["by-name"], {ns + "-a": "value-a", ns + "-b": "value-b"})
        self.assertEqual(got["by-tag"], {ns + "-a": "value-a", ns + "-c": "value-c"})
        refused = self.refused(ns, refused_name)
        self.assertIn(refusal, refused[2])
        self.assertIsNone(self.kube.secret(ns, refused_name))

    def test_azure_find_by_name_and_tags(self):
        """dataFrom.find on Azure Key Vault as ESO's provider: the secrets list (tags on its items), then
        each match's latest value; find.path refused by name."""
        ns = self.ns("id-az-find")
        self.az_service_account(ns)
        for name, team in (("a", "red"), ("b", "blue"), ("c", "red")):
            st, _ = self.az_req("PUT", "/secrets/%s-%s" % (ns, name),
                                {"value": "value-" + name, "tags": {"team": team, "ns": ns}})
            self.assertEqual(st, 200)
        self.az_store(ns)
        self.env.external_secret(ns, "by-name", [], refresh="1h", target={"name": "by-name"}, store="azure",
                                 data_from=[{"find": {"name": {"regexp": "^%s-[ab]$" % ns}}}])
        self.env.external_secret(ns, "by-tag", [], refresh="1h", target={"name": "by-tag"}, store="azure",
                                 data_from=[{"find": {"tags": {"team": "red", "ns": ns}}}])
        self.env.external_secret(ns, "by-path", [], refresh="1h", target={"name": "by-path"}, store="azure",
                                 data_from=[{"find": {"path": ns, "name": {"regexp": "a"}}}])
        self.assert_found_a_b_c(ns, "by-path", "azure: find.path is not served by rootseal")
        self.assert_no_azure_tokens_leaked(ns)

    def test_azure_and_gcp_push_secret_metadata(self):
        """PushSecretMetadata through rootseald: Azure tags/contentType/expirationDate, GCP labels/annotations,
        and a field the store's provider does not apply refused by name with nothing pushed."""
        ns = self.ns("id-md")
        self.az_service_account(ns, annotations={"azure.workload.identity/client-id": AZ_APP,
                                                 "iam.gke.io/gcp-service-account": GCP_READER})
        self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src", "namespace": ns},
            "data": {"token": b64("with-metadata")}})
        self.az_store(ns)
        self.gcp_store(ns, self.wif())
        ENV.gcp.allow_impersonation(GCP_READER, self.gcp_principal(ns))
        md = lambda spec: {"apiVersion": "kubernetes.external-secrets.io/v1alpha1", "kind": "PushSecretMetadata",
                           "spec": spec}
        self.env.push_secret(ns, "az", {"secret": {"name": "src"}}, [{
            "match": {"secretKey": "token", "remoteRef": {"remoteKey": ns + "-az"}},
            "metadata": md({"tags": {"team": "a"}, "contentType": "text/x", "expirationDate": "2030-01-02T03:04:05Z"})}],
            stores=("azure",))
        self.env.wait(lambda: (self.env.push_ready(ns, "az") or [None])[0] == "True", "azure PushSecret Ready")
        st, got = self.az_req("GET", "/secrets/%s-az" % ns)
        self.assertEqual((st, got["value"], got["contentType"], got["attributes"]["exp"], got["tags"]),
                         (200, "with-metadata", "text/x", 1893553445, {"managed-by": "rootseal", "team": "a"}))
        self.env.push_secret(ns, "gcp", {"secret": {"name": "src"}}, [{
            "match": {"secretKey": "token", "remoteRef": {"remoteKey": ns + "-gcp"}},
            "metadata": md({"labels": {"team": "a"}, "annotations": {"owner": "alice"}})}], stores=("gcp",))
        self.env.wait(lambda: (self.env.push_ready(ns, "gcp") or [None])[0] == "True", "gcp PushSecret Ready")
        st, got = self.gcp_req("GET", "/v1/projects/%s/secrets/%s-gcp" % (GCP_PROJECT, ns))
        self.assertEqual((st, got["labels"], got["annotations"]),
                         (200, {"managed-by": "rootseal", "team": "a"}, {"owner": "alice"}))
        self.env.push_secret(ns, "topics", {"secret": {"name": "src"}}, [{
            "match": {"secretKey": "token", "remoteRef": {"remoteKey": ns + "-topics"}},
            "metadata": md({"topics": ["projects/p/topics/t"]})}], stores=("gcp",))
        refused = self.env.wait(lambda: (self.env.push_ready(ns, "topics") or [None])[0] == "False" and
                                self.env.push_ready(ns, "topics"), "topics refused")
        self.assertEqual(refused[2], "invalid PushSecret: spec.data[0].metadata.spec.topics: not supported by "
                                     "rootseal for gcp stores (SecretStore/gcp)")
        st, _ = self.gcp_req("GET", "/v1/projects/%s/secrets/%s-topics" % (GCP_PROJECT, ns))
        self.assertEqual(st, 404)

    def test_azure_workload_identity_refusals_are_clear(self):
        # A store in another namespace cannot use the ServiceAccount (ESO's message), and never asks for its token.
        owner, thief = self.ns("id-az-owner"), self.ns("id-az-thief")
        self.az_service_account(owner)
        self.az_store(thief, sa_ns=owner)
        self.env.external_secret(thief, "db", [{"secretKey": "p", "remoteRef": {"key": "x"}}], store="azure")
        # No client-id annotation (ESO's message), no token asked for.
        bare = self.ns("id-az-noclient")
        self.az_service_account(bare, annotations={}, federate=False)
        self.az_store(bare)
        self.env.external_secret(bare, "db", [{"secretKey": "p", "remoteRef": {"key": "x"}}], store="azure")
        # A ServiceAccount the application has no federated credential for: Entra's AADSTS700213, said as is.
        nofic = self.ns("id-az-nofic")
        self.az_service_account(nofic, federate=False)
        self.az_store(nofic)
        self.env.external_secret(nofic, "db", [{"secretKey": "p", "remoteRef": {"key": "x"}}], store="azure")
        for ns, want in ((thief, "namespace should either be empty or match the namespace of the SecretStore for a "
                                 "namespaced SecretStore"),
                         (bare, "missing clientID: either serviceAccountRef or service account annotation "
                                "'azure.workload.identity/client-id' is missing"),
                         (nofic, "AADSTS700213: No matching federated identity record found for presented assertion "
                                 "subject 'system:serviceaccount:%s:app'" % nofic)):
            ready = self.refused(ns)
            self.assertIn(want, ready[2])
            self.assertIsNone(self.kube.secret(ns, "db-creds"))
        self.assertEqual(self.token_requests(owner), [])
        self.assertEqual(self.token_requests(bare), [])
        self.assertTrue(self.token_requests(nofic))
        self.assertEqual(self.az_assertions(nofic), [])

    def test_azure_access_token_expiry_leads_to_a_fresh_exchange(self):
        ns = self.ns("id-az-expiry")
        self.az_service_account(ns)
        st, _ = self.az_req("PUT", "/secrets/id-az-expiry", {"value": "v1"})
        self.assertEqual(st, 200)
        # Access tokens of 2 s, bought with ServiceAccount tokens of 3 s.
        ENV.az.state.token_ttl = 2
        self.env.k8s.token_max_seconds = 3
        try:
            self.az_store(ns)
            self.env.external_secret(ns, "db", [{"secretKey": "v", "remoteRef": {"key": "id-az-expiry"}}],
                                     refresh="1s", target={"name": "db-creds"}, store="azure")
            self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "v") == "v1", "first sync")
            wall_start = self.follow_changes(
                ns, lambda v: self.az_req("PUT", "/secrets/id-az-expiry", {"value": v}),
                lambda since: len([a for a in self.az_assertions(ns) if a["t"] >= since]))
        finally:
            ENV.az.state.token_ttl = 3599
            self.env.k8s.token_max_seconds = None
        # Every exchange was accepted: the assertion was always fresh enough (Entra refuses an expired one, and a
        # refused exchange would have shown in the Ready condition above).
        fresh = [a for a in self.az_assertions(ns) if a["t"] >= wall_start]
        self.assertGreaterEqual(len(fresh), 3)
        self.assertGreaterEqual(len([r for r in self.token_requests(ns) if r["t"] >= wall_start]), 2)
        self.assert_no_azure_tokens_leaked(ns)

    def deleted_service_account_case(self, ns, store, put, recreate, what):
        """A store on ServiceAccount <ns>/app whose bought tokens live 2 s: after a first sync of "kept"
        (ExternalSecret db, deletionPolicy Delete), the ServiceAccount is deleted: Ready turns False with the
        API server's message, the Secret is never deleted, over 6 s the ServiceAccount is asked for a handful
        of times (the ExternalSecret's backoff, no storm); recreated, syncing resumes."""
        put("kept")
        store()
        self.env.external_secret(ns, "db", [{"secretKey": "v", "remoteRef": {"key": ns + "-db"}}],
                                 refresh="1s", target={"name": "db-creds", "deletionPolicy": "Delete"},
                                 store=what)
        self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "v") == "kept", "first sync")
        st, _ = self.kube.delete("/api/v1/namespaces/%s/serviceaccounts/app" % ns)
        self.assertEqual(st, 200)
        ready = self.refused(ns, "db", timeout=30)
        self.assertIn('serviceaccounts "app" not found', ready[2])
        t0 = time.time()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            self.assertEqual(self.kube.secret_value(ns, "db-creds", "v"), "kept")  # never deleted
            time.sleep(0.25)
        calls = [e for e in self.env.k8s.counters.log_since(t0)
                 if e["path"].startswith("/api/v1/namespaces/%s/serviceaccounts/app" % ns)]
        self.assertGreaterEqual(len(calls), 1)
        self.assertLessEqual(len(calls), 12, [(round(e["t"] - t0, 2), e["path"]) for e in calls])
        print("\n%s, deleted ServiceAccount: %d ServiceAccount calls in 6 s" % (what, len(calls)))
        recreate()
        put("back")
        self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "v") == "back", "resumed", timeout=30)

    def test_azure_deleted_service_account_gives_a_clear_status_without_retry_storm(self):
        ns = self.ns("id-az-deleted")
        self.az_service_account(ns)
        ENV.az.state.token_ttl = 2  # an access token outlives its ServiceAccount by 2 s at most here
        try:
            self.deleted_service_account_case(
                ns, lambda: self.az_store(ns),
                lambda v: self.assertEqual(self.az_req("PUT", "/secrets/%s-db" % ns, {"value": v})[0], 200),
                # the federated credential names the subject: it still matches the recreated ServiceAccount
                lambda: self.az_service_account(ns, federate=False), "azure")
        finally:
            ENV.az.state.token_ttl = 3599
        self.assert_no_azure_tokens_leaked(ns)

    # ---- GCP workload identity federation ---------------------------------------

    def gcp_req(self, method, path, body=None):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", ENV.gcp.port, timeout=10)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Authorization": "Bearer " + GCP_ADMIN, "Content-Type": "application/json"})
            r = c.getresponse()
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
        finally:
            c.close()

    def gcp_put(self, sid, value, labels=None):
        secret = {"replication": {"automatic": {}}}
        if labels:
            secret["labels"] = labels
        self.gcp_req("POST", "/v1/projects/%s/secrets?secretId=%s" % (GCP_PROJECT, sid), secret)
        st, out = self.gcp_req("POST", "/v1/projects/%s/secrets/%s:addVersion" % (GCP_PROJECT, sid),
                               {"payload": {"data": b64(value)}})
        self.assertEqual(st, 200, out)

    def gcp_store(self, ns, auth, name="gcp"):
        self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": name, "namespace": ns},
            "spec": {"provider": {"gcpsm": {"projectID": GCP_PROJECT, "auth": auth}}}})

    def wif(self, extra=None):
        w = {"serviceAccountRef": {"name": "app", "audiences": ["https:" + GCP_POOL_AUD]}, "audience": GCP_POOL_AUD}
        w.update(extra or {})
        return {"workloadIdentityFederation": w}

    def gcp_principal(self, ns):
        return ("principal://iam.googleapis.com/projects/%s/locations/global/workloadIdentityPools/rootseal/subject/"
                "system:serviceaccount:%s:app" % (GCP_NUMBER, ns))

    def gcp_since(self, what, t0):
        with ENV.gcp.state.lock:
            return [x for x in getattr(ENV.gcp.state, what) if x["t"] >= t0]

    def assert_no_gcp_tokens_leaked(self, ns):
        with ENV.gcp.state.lock:
            tokens = [t for t in ENV.gcp.state.tokens if t != GCP_ADMIN]
        self.assert_tokens_not_shown(ns, tokens, lambda t: t[8:])
    def test_gcp_find_by_name_and_labels(self):
        """dataFrom.find on GCP Secret Manager as ESO's provider: ListSecrets (a labels filter for tags),
        then each match's latest version; name with tags refused by name."""
        ns = self.ns("id-gcp-find")
        self.kube.create("/api/v1/namespaces/%s/serviceaccounts" % ns, {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                "name": "app", "namespace": ns, "annotations": {"iam.gke.io/gcp-service-account": GCP_READER}}})
        ENV.gcp.allow_impersonation(GCP_READER, self.gcp_principal(ns))
        for name, team in (("a", "red"), ("b", "blue"), ("c", "red")):
            self.gcp_put("%s-%s" % (ns, name), "value-" + name, labels={"team": team, "ns": ns})
        self.gcp_store(ns, self.wif())
        self.env.external_secret(ns, "by-name", [], refresh="1h", target={"name": "by-name"}, store="gcp",
                                 data_from=[{"find": {"name": {"regexp": "-[ab]$"}, "path": ns + "-"}}])
        self.env.external_secret(ns, "by-tag", [], refresh="1h", target={"name": "by-tag"}, store="gcp",
                                 data_from=[{"find": {"tags": {"team": "red", "ns": ns}}}])
        self.env.external_secret(ns, "both", [], refresh="1h", target={"name": "both"}, store="gcp",
                                 data_from=[{"find": {"tags": {"team": "red"}, "name": {"regexp": "a"}}}])
        self.assert_found_a_b_c(ns, "both", "gcp: find.name and find.tags together are not served by rootseal")
        self.assert_no_gcp_tokens_leaked(ns)

    def test_gcp_workload_identity_federation_pull_and_push_impersonating(self):
        ns = self.ns("id-gcp")
        self.kube.create("/api/v1/namespaces/%s/serviceaccounts" % ns, {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                "name": "app", "namespace": ns, "annotations": {"iam.gke.io/gcp-service-account": GCP_READER}}})
        ENV.gcp.allow_impersonation(GCP_READER, self.gcp_principal(ns))
        self.gcp_put("id-gcp-db", json.dumps({"password": "pw-gcp"}))
        t0 = time.time()
        self.gcp_store(ns, self.wif())
        self.env.external_secret(ns, "db", [{"secretKey": "password", "remoteRef": {
            "key": "id-gcp-db", "property": "password"}}], refresh="1h", target={"name": "db-creds"}, store="gcp")
        self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "password") == "pw-gcp", "db-creds synced")
        self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src", "namespace": ns},
            "data": {"token": b64("pushed-by-federation")}})
        self.env.push_secret(ns, "up", {"secret": {"name": "src"}},
                             [{"match": {"secretKey": "token", "remoteRef": {"remoteKey": "id-gcp-pushed"}}}],
                             stores=("gcp",))
        self.env.wait(lambda: (self.env.push_ready(ns, "up") or [None])[0] == "True", "PushSecret Ready")
        st, got = self.gcp_req("GET", "/v1/projects/%s/secrets/id-gcp-pushed/versions/latest:access" % GCP_PROJECT)
        self.assertEqual((st, base64.b64decode(got["payload"]["data"]).decode()), (200, "pushed-by-federation"))
        # ESO's workloadIdentityFederation token: the ref's audiences, 15 minutes.
        reqs = self.token_requests(ns)
        self.assertEqual((reqs[0]["audiences"], reqs[0]["expirationSeconds"]), (["https:" + GCP_POOL_AUD], 900))
        # Exchanged at STS for the pool's principal, which impersonated the annotated service account ...
        ex = [x for x in self.gcp_since("exchanges", t0) if x["sub"] == "system:serviceaccount:%s:app" % ns]
        self.assertTrue(ex)
        self.assertEqual((ex[0]["audience"], ex[0]["principal"], ex[0]["scope"]),
                         (GCP_POOL_AUD, self.gcp_principal(ns), "https://www.googleapis.com/auth/cloud-platform"))
        imp = [x for x in self.gcp_since("impersonations", t0) if x["principal"] == self.gcp_principal(ns)]
        self.assertTrue(imp)
        self.assertEqual(imp[0]["email"], GCP_READER)
        self.assertLessEqual(len(ex), 2)  # one exchange for pull and push (each provider at most one)
        # ... and every Secret Manager call of rootseald's was made as that service account.
        callers = {x["principal"] for x in self.gcp_since("callers", t0)} - {"admin"}
        self.assertEqual(callers, {GCP_READER})
        self.assert_no_gcp_tokens_leaked(ns)

    def test_gcp_gke_workload_identity_without_impersonation(self):
        ns = self.ns("id-gke")
        self.service_account(ns)  # no iam.gke.io/gcp-service-account: the federated token is used directly
        cluster = "https://container.googleapis.com/v1/projects/%s/locations/europe-west1/clusters/c1" % GCP_PROJECT
        ENV.gcp.add_pool_provider("identitynamespace:%s.svc.id.goog:%s" % (GCP_PROJECT, cluster), SA_ISSUER,
                                  ENV.k8s.url + "/openid/v1/jwks")
        self.gcp_put("id-gke-db", "pw-gke")
        t0 = time.time()
        self.gcp_store(ns, {"workloadIdentity": {"serviceAccountRef": {"name": "app"}, "clusterProjectID": GCP_PROJECT,
                                                 "clusterLocation": "europe-west1", "clusterName": "c1"}})
        self.env.external_secret(ns, "db", [{"secretKey": "v", "remoteRef": {"key": "id-gke-db"}}], refresh="1h",
                                 target={"name": "db-creds"}, store="gcp")
        self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "v") == "pw-gke", "db-creds synced")
        reqs = self.token_requests(ns)
        self.assertEqual((reqs[0]["audiences"], reqs[0]["expirationSeconds"]), (["%s.svc.id.goog" % GCP_PROJECT], 900))
        principal = "serviceAccount:%s.svc.id.goog[%s/app]" % (GCP_PROJECT, ns)
        self.assertTrue([x for x in self.gcp_since("exchanges", t0) if x["principal"] == principal])
        self.assertEqual([x for x in self.gcp_since("impersonations", t0) if x["principal"] == principal], [])
        self.assertIn(principal, {x["principal"] for x in self.gcp_since("callers", t0)})

    def test_gcp_federation_refusals_are_clear(self):
        owner, thief = self.ns("id-gcp-owner"), self.ns("id-gcp-thief")
        self.service_account(owner)
        self.gcp_store(thief, {"workloadIdentityFederation": {
            "serviceAccountRef": {"name": "app", "namespace": owner}, "audience": GCP_POOL_AUD}})
        self.env.external_secret(thief, "db", [{"secretKey": "p", "remoteRef": {"key": "x"}}], store="gcp")
        # Impersonation the service account's IAM policy does not grant: IAM Credentials' 403, said as is.
        noimp = self.ns("id-gcp-noimp")
        self.kube.create("/api/v1/namespaces/%s/serviceaccounts" % noimp, {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                "name": "app", "namespace": noimp, "annotations": {"iam.gke.io/gcp-service-account": GCP_READER}}})
        self.gcp_store(noimp, self.wif())
        self.env.external_secret(noimp, "db", [{"secretKey": "p", "remoteRef": {"key": "x"}}], store="gcp")
        # A pool provider that does not exist: STS's invalid_target.
        nopool = self.ns("id-gcp-nopool")
        self.service_account(nopool)
        self.gcp_store(nopool, self.wif({"audience": GCP_POOL_AUD.replace("cluster-1", "gone")}))
        self.env.external_secret(nopool, "db", [{"secretKey": "p", "remoteRef": {"key": "x"}}], store="gcp")
        for ns, want in ((thief, "namespace should either be empty or match the namespace of the SecretStore for a "
                                 "namespaced SecretStore"),
                         (noimp, "generateAccessToken for %s refused: 403 PERMISSION_DENIED: Permission "
                                 "'iam.serviceAccounts.getAccessToken' denied" % GCP_READER),
                         (nopool, "400 invalid_target: The target service indicated by the \"audience\" parameters "
                                  "is invalid")):
            ready = self.refused(ns)
            self.assertIn(want, ready[2])
            self.assertIsNone(self.kube.secret(ns, "db-creds"))
        self.assertEqual(self.token_requests(owner), [])

    def test_gcp_access_token_expiry_leads_to_a_fresh_exchange(self):
        ns = self.ns("id-gcp-expiry")
        self.kube.create("/api/v1/namespaces/%s/serviceaccounts" % ns, {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                "name": "app", "namespace": ns, "annotations": {"iam.gke.io/gcp-service-account": GCP_READER}}})
        ENV.gcp.allow_impersonation(GCP_READER, self.gcp_principal(ns))
        self.gcp_put("id-gcp-expiry", "v1")
        ENV.gcp.state.token_ttl = 2  # federated and impersonated tokens of 2 s
        try:
            self.gcp_store(ns, self.wif())
            self.env.external_secret(ns, "db", [{"secretKey": "v", "remoteRef": {"key": "id-gcp-expiry"}}],
                                     refresh="1s", target={"name": "db-creds"}, store="gcp")
            self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "v") == "v1", "first sync")
            wall_start = self.follow_changes(
                ns, lambda v: self.gcp_req("POST", "/v1/projects/%s/secrets/id-gcp-expiry:addVersion" % GCP_PROJECT,
                                           {"payload": {"data": b64(v)}}),
                lambda since: len([x for x in self.gcp_since("impersonations", since)
                                   if x["principal"] == self.gcp_principal(ns)]))
        finally:
            ENV.gcp.state.token_ttl = 3599
        ex = [x for x in self.gcp_since("exchanges", wall_start) if x["principal"] == self.gcp_principal(ns)]
        self.assertGreaterEqual(len(ex), 3)
        self.assertGreaterEqual(len([r for r in self.token_requests(ns) if r["t"] >= wall_start]), 3)
        self.assert_no_gcp_tokens_leaked(ns)

    def test_gcp_deleted_service_account_gives_a_clear_status_without_retry_storm(self):
        ns = self.ns("id-gcp-deleted")

        def sa():
            self.kube.create("/api/v1/namespaces/%s/serviceaccounts" % ns, {
                "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                    "name": "app", "namespace": ns, "annotations": {"iam.gke.io/gcp-service-account": GCP_READER}}})
        sa()
        ENV.gcp.allow_impersonation(GCP_READER, self.gcp_principal(ns))
        created = []

        def put(v):
            if not created:
                self.gcp_put(ns + "-db", v)
                created.append(1)
            else:
                self.gcp_req("POST", "/v1/projects/%s/secrets/%s-db:addVersion" % (GCP_PROJECT, ns),
                             {"payload": {"data": b64(v)}})
        ENV.gcp.state.token_ttl = 2
        try:
            self.deleted_service_account_case(ns, lambda: self.gcp_store(ns, self.wif()), put, sa, "gcp")
        finally:
            ENV.gcp.state.token_ttl = 3599
        self.assert_no_gcp_tokens_leaked(ns)

    # ---- CyberArk Conjur -------------------------------------------------------

    def conjur_store(self, ns, auth, name="conjur"):
        self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": name, "namespace": ns},
            "spec": {"provider": {"conjur": {"url": ENV.conjur.url, "auth": auth}}}})

    def assert_no_conjur_tokens_leaked(self, ns):
        with ENV.conjur.state.lock:
            tokens = list(ENV.conjur.state.tokens)
        self.assert_tokens_not_shown(ns, tokens, lambda t: t[-40:])  # the base64 of the token's signature
    def test_conjur_jwt_with_the_namespace_service_account(self):
        ns = self.ns("id-conjur")
        self.service_account(ns)
        host = "host/k8s/system:serviceaccount:%s:app" % ns
        ENV.conjur.variable("%s/db/password" % ns, "pw-conjur")
        ENV.conjur.variable("%s/db/json" % ns, json.dumps({"user": "alice"}))
        ENV.conjur.variable("other/db/password", "not-yours")
        for v in ("%s/db/password" % ns, "%s/db/json" % ns):
            ENV.conjur.permit(host, v)
        t0 = time.time()
        self.conjur_store(ns, {"jwt": {"account": "myorg", "serviceID": "k8s",
                                       "serviceAccountRef": {"name": "app", "audiences": ["conjur"]}}})
        self.env.external_secret(ns, "db", [
            {"secretKey": "password", "remoteRef": {"key": "%s/db/password" % ns}},
            {"secretKey": "user", "remoteRef": {"key": "%s/db/json" % ns, "property": "user"}}],
            refresh="1h", target={"name": "db-creds"}, store="conjur")
        self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "password") == "pw-conjur", "db-creds synced")
        self.assertEqual(self.kube.secret_value(ns, "db-creds", "user"), "alice")
        # ESO's auth.jwt token: the ref's audiences, 10 minutes ...
        reqs = self.token_requests(ns)
        self.assertEqual((reqs[0]["audiences"], reqs[0]["expirationSeconds"]), (["conjur"], 600))
        # ... accepted by authn-jwt as the host its sub claim maps to; one login for both reads.
        with ENV.conjur.state.lock:
            logins = [x for x in ENV.conjur.state.logins if x["t"] >= t0 and x["login"] == host]
            reads = [x for x in ENV.conjur.state.reads if x["t"] >= t0 and x["login"] == host]
        self.assertEqual([(x["method"], x["ok"]) for x in logins], [("authn-jwt", True)])
        self.assertEqual(sorted(x["id"] for x in reads), ["%s/db/json" % ns, "%s/db/password" % ns])
        # Conjur's policy decides: a variable the host may not read is refused (403), the Secret not written.
        self.env.external_secret(ns, "other", [{"secretKey": "p", "remoteRef": {"key": "other/db/password"}}],
                                 refresh="1h", target={"name": "other-creds"}, store="conjur")
        ready = self.refused(ns, "other")
        self.assertIn('conjur: reading variable "other/db/password" refused: 403 forbidden: Forbidden', ready[2])
        self.assertIsNone(self.kube.secret(ns, "other-creds"))
        self.assert_no_conjur_tokens_leaked(ns)

    def test_conjur_find_by_name_and_tags(self):
        ns = self.ns("id-conjur-find")
        self.service_account(ns)
        host = "host/k8s/system:serviceaccount:%s:app" % ns
        for name, team in (("a", "red"), ("b", "blue"), ("c", "red")):
            ENV.conjur.variable("%s/%s" % (ns, name), "value-" + name, annotations={"team": team})
            ENV.conjur.permit(host, "%s/%s" % (ns, name))
        ENV.conjur.variable("%s/hidden" % ns, "not-visible", annotations={"team": "red"})  # no privilege: not listed
        self.conjur_store(ns, {"jwt": {"account": "myorg", "serviceID": "k8s",
                                       "serviceAccountRef": {"name": "app", "audiences": ["conjur"]}}})
        t0 = time.time()
        self.env.external_secret(ns, "by-name", [], refresh="1h", target={"name": "by-name"}, store="conjur",
                                 data_from=[{"find": {"name": {"regexp": "/[ab]$"}}}])
        self.env.external_secret(ns, "by-tag", [], refresh="1h", target={"name": "by-tag"}, store="conjur",
                                 data_from=[{"find": {"tags": {"team": "red"}}}])
        key = ns + "_"
        self.env.wait(lambda: (self.kube.secret(ns, "by-name") or {}).get("data") is not None and
                      (self.kube.secret(ns, "by-tag") or {}).get("data") is not None, "find synced")
        got = {n: {k: base64.b64decode(v).decode() for k, v in self.kube.secret(ns, n)["data"].items()}
               for n in ("by-name", "by-tag")}
        self.assertEqual(got["by-name"], {key + "a": "value-a", key + "b": "value-b"})  # "/" converted to "_"
        self.assertEqual(got["by-tag"], {key + "a": "value-a", key + "c": "value-c"})
        # Read with the batch retrieval: every value read came through GET /secrets?variable_ids=.
        batch = [e for e in ENV.conjur.counters.log_since(t0) if e["path"] == "/secrets"]
        self.assertGreaterEqual(len(batch), 2)
        with ENV.conjur.state.lock:
            self.assertNotIn("%s/hidden" % ns, [x["id"].split(":", 2)[-1] for x in ENV.conjur.state.reads])
        self.assert_no_conjur_tokens_leaked(ns)

    def test_conjur_api_key_and_refusals(self):
        ns = self.ns("id-conjur-key")
        ENV.conjur.user("host/apps/ci", "k3y-" + "9" * 20)
        ENV.conjur.variable("apps/ci/token", "ci-token")
        ENV.conjur.permit("host/apps/ci", "apps/ci/token")
        for name, key in (("conjur-login", "k3y-" + "9" * 20), ("conjur-wrong", "wrong-key")):
            self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
                "data": {"user": b64("host/apps/ci"), "apikey": b64(key)}})
        for store, secret in (("conjur", "conjur-login"), ("conjur-wrong", "conjur-wrong")):
            self.conjur_store(ns, {"apikey": {"account": "myorg", "userRef": {"name": secret, "key": "user"},
                                              "apiKeyRef": {"name": secret, "key": "apikey"}}}, name=store)
        self.env.external_secret(ns, "ci", [{"secretKey": "t", "remoteRef": {"key": "apps/ci/token"}}],
                                 refresh="1h", target={"name": "ci"}, store="conjur")
        self.env.wait(lambda: self.kube.secret_value(ns, "ci", "t") == "ci-token", "ci synced")
        self.env.external_secret(ns, "wrong", [{"secretKey": "t", "remoteRef": {"key": "apps/ci/token"}}],
                                 refresh="1h", target={"name": "wrong"}, store="conjur-wrong")
        self.env.external_secret(ns, "missing", [{"secretKey": "t", "remoteRef": {"key": "apps/ci/none"}}],
                                 refresh="1h", target={"name": "missing"}, store="conjur")
        # A store in another namespace naming this namespace's ServiceAccount: ESO's message, no token asked for.
        thief = self.ns("id-conjur-thief")
        self.service_account(ns)
        self.conjur_store(thief, {"jwt": {"account": "myorg", "serviceID": "k8s",
                                          "serviceAccountRef": {"name": "app", "namespace": ns}}})
        self.env.external_secret(thief, "db", [{"secretKey": "t", "remoteRef": {"key": "apps/ci/token"}}],
                                 store="conjur")
        for where, name, want in (
                (ns, "wrong", "conjur: authn as host/apps/ci refused (401 Unauthorized)"),
                (ns, "missing", 'conjur: variable "apps/ci/none" not found or empty: 404 not_found'),
                (thief, "db", "namespace should either be empty or match the namespace of the SecretStore for a "
                              "namespaced SecretStore")):
            ready = self.refused(where, name)
            self.assertIn(want, ready[2])
        self.assertEqual(self.token_requests(ns), [])
        self.env.err.flush()
        with open(self.env.stderr_path, "rb") as f:
            self.assertNotIn("k3y-" + "9" * 20, f.read().decode(errors="replace"))
        self.assert_no_conjur_tokens_leaked(ns)

    def test_conjur_expired_access_token_leads_to_a_fresh_login(self):
        ns = self.ns("id-conjur-expiry")
        self.service_account(ns)
        host = "host/k8s/system:serviceaccount:%s:app" % ns
        vid = "%s/v" % ns
        ENV.conjur.variable(vid, "v1")
        ENV.conjur.permit(host, vid)
        ENV.conjur.state.token_lifetime = 2  # Conjur's are 8 minutes; these expire under rootseald's feet
        try:
            self.conjur_store(ns, {"jwt": {"account": "myorg", "serviceID": "k8s",
                                           "serviceAccountRef": {"name": "app", "audiences": ["conjur"]}}})
            self.env.external_secret(ns, "db", [{"secretKey": "v", "remoteRef": {"key": vid}}], refresh="1s",
                                     target={"name": "db-creds"}, store="conjur")
            self.env.wait(lambda: self.kube.secret_value(ns, "db-creds", "v") == "v1", "first sync")

            def logins(since):
                with ENV.conjur.state.lock:
                    return len([x for x in ENV.conjur.state.logins if x["t"] >= since and x["login"] == host])
            wall_start = self.follow_changes(ns, lambda v: ENV.conjur.variable(vid, v), logins)
        finally:
            ENV.conjur.state.token_lifetime = 8 * 60
        with ENV.conjur.state.lock:
            logins = [x for x in ENV.conjur.state.logins if x["t"] >= wall_start and x["login"] == host]
        self.assertTrue(all(x["ok"] for x in logins))  # each login with a fresh, valid ServiceAccount token
        self.assert_no_conjur_tokens_leaked(ns)

    def test_conjur_deleted_service_account_gives_a_clear_status_without_retry_storm(self):
        ns = self.ns("id-conjur-deleted")
        self.service_account(ns)
        ENV.conjur.permit("host/k8s/system:serviceaccount:%s:app" % ns, ns + "-db")
        ENV.conjur.state.token_lifetime = 2
        try:
            self.deleted_service_account_case(
                ns, lambda: self.conjur_store(ns, {"jwt": {"account": "myorg", "serviceID": "k8s", "serviceAccountRef": {
                    "name": "app", "audiences": ["conjur"]}}}),
                lambda v: ENV.conjur.variable(ns + "-db", v), lambda: self.service_account(ns), "conjur")
        finally:
            ENV.conjur.state.token_lifetime = 8 * 60
        self.assert_no_conjur_tokens_leaked(ns)

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
            ready = self.refused(ns, "wrong")
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
