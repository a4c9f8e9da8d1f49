"""The External Secrets Operator's own example manifests (its docs/snippets/
and the examples in its guides and Vault provider page), applied with kubectl
unchanged except for server URLs, credentials, mkdocs markers and store
references the documentation elides (issue 17). Each manifest is kept in
tests/integration/eso_upstream/ with a line naming its upstream path and
commit and every edit listed; eso_upstream/README.md lists them with the
expected result.

rootseald runs with sync on the Kubernetes API double, the Vault KV v2
double, moto_server (AWS) and the Azure Key Vault and GCP Secret Manager
doubles; every store in the manifests is on its own credentials (ESO's
model), its endpoint set on the host (`sync.aws_endpoint`,
`sync.azure_authority_host`, `sync.gcp_endpoint`) or substituted into the
manifest. For each example the test seeds the remote secrets it reads and
asserts what ESO documents and its controller writes
(pkg/controllers/externalsecret, pkg/controllers/pushsecret): the Secret's
bytes, the Ready condition (status, reason, message) and the events. Where
rootseal refuses a feature on purpose (docs/sync.md's table) the documented
refusal is asserted instead. Every wait is a bounded poll."""
import base64
import datetime
import json
import os
import re
import subprocess
import tempfile
import time
import unittest

import yaml

from sync_testlib import (SyncEnv, K8S_TOKEN, VAULT_ROOT, AZ_TENANT, AZ_CLIENT, AZ_SECRET,
                          GCP_PROJECT, GCP_EMAIL, PushCloud, b64, http_json, k8s_double, vault_double,
                          write_kubeconfig)

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFESTS = os.path.join(HERE, "eso_upstream")
KUBECTL = "/usr/bin/kubectl"
ENV = None
CLOUD = None
KUBECTL_TLS = None  # a TLS listener on the same API double, for kubectl
VAULT_PAGE = None  # the Vault of docs/provider/hashicorp-vault.md's examples
KUBECONFIG = None
SUBST = {}


def setUpModule():
    try:
        start()
    except BaseException:
        tearDownModule()  # unittest does not call it when setUpModule fails
        raise


def start():
    global ENV, CLOUD, VAULT_PAGE
    # moto's request recorder (another test) writes its file here, not into the working directory.
    os.environ.setdefault("MOTO_RECORDER_FILEPATH",
                          os.path.join(tempfile.mkdtemp(prefix="rootseal-moto-rec-"), "recording"))
    env = ENV = SyncEnv(refresh_window="1s", push=True)
    # ESO reads these from its environment (AWS_SECRETSMANAGER_ENDPOINT, AZURE_AUTHORITY_HOST, ...);
    # rootseal from the host configuration, never from a manifest.
    env.sync_extra = ("  aws_endpoint: http://127.0.0.1:%d\n  azure_authority_host: %s\n"
                      "  gcp_endpoint: %s\n  gcp_sts_endpoint: %s\n  gcp_iam_endpoint: %s"
                      % (env.moto_port, env.azure.url, env.gcp.url, env.gcp.url, env.gcp.url))
    env.start()
    CLOUD = PushCloud(ENV)
    kubectl_listener()
    # The examples of ESO's Vault provider page search by name and tags: a Vault of their own, so the
    # other examples' secrets (`development`, `my-secrets-dev`) do not match their `dev` searches.
    VAULT_PAGE = vault_double.VaultKvDouble(root_token=VAULT_ROOT).start()
    with open(os.path.join(ENV.dir, "gcp-sa.json")) as f:
        sa = json.load(f)
    SUBST.update({
        "VAULT_URL": ENV.vault.url, "GCP_PROJECT": GCP_PROJECT, "GCP_KEY_ID": sa["private_key_id"],
        "GCP_PRIVATE_KEY": json.dumps(sa["private_key"])[1:-1], "GCP_EMAIL": GCP_EMAIL,
        "GCP_TOKEN_URI": ENV.gcp.token_url, "AZURE_TENANT": AZ_TENANT, "AZURE_VAULT_URL": ENV.azure.url,
        "AZURE_CLIENT_ID_B64": b64(AZ_CLIENT), "AZURE_CLIENT_SECRET_B64": b64(AZ_SECRET)})
    seed()


def tearDownModule():
    if VAULT_PAGE:
        VAULT_PAGE.stop()
    if KUBECTL_TLS:
        KUBECTL_TLS.stop()
    if ENV:
        ENV.stop()


def kubectl_listener():
    """kubectl sends a bearer token only over TLS: a second listener of the
    API double, with a throwaway certificate, serving the same objects."""
    global KUBECTL_TLS, KUBECONFIG
    cert, key = os.path.join(ENV.dir, "kubectl-tls.pem"), os.path.join(ENV.dir, "kubectl-tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    KUBECTL_TLS = k8s_double.K8sApiServerDouble(tls_cert=cert, tls_key=key, tokens=[K8S_TOKEN])
    KUBECTL_TLS.store = ENV.k8s.store
    KUBECTL_TLS.resources = ENV.k8s.resources
    KUBECTL_TLS.start()
    KUBECONFIG = write_kubeconfig(os.path.join(ENV.dir, "kubectl-config"), "https://127.0.0.1:%d" % KUBECTL_TLS.port,
                                  cert)


# ---- the remote secrets the examples read ---------------------------------------


def vault_put(path, data, vault=None, custom_metadata=None):
    port = (vault or ENV.vault).port
    st, body = http_json(port, "POST", "/v1/secret/data/" + path, {"X-Vault-Token": VAULT_ROOT}, {"data": data})
    assert st == 200, (path, st, body)
    if custom_metadata:
        st, body = http_json(port, "POST", "/v1/secret/metadata/" + path, {"X-Vault-Token": VAULT_ROOT},
                             {"custom_metadata": custom_metadata})
        assert st in (200, 204), (path, st, body)


def vault_get(path, vault=None):
    """(data answer, metadata answer) of secret/<path>: each the answer's data."""
    port = (vault or ENV.vault).port
    out = []
    for kind in ("data", "metadata"):
        st, body = http_json(port, "GET", "/v1/secret/%s/%s" % (kind, path), {"X-Vault-Token": VAULT_ROOT})
        assert st == 200, (kind, path, st, body)
        out.append(body["data"])
    return tuple(out)


def gcp_put(sid, value):
    st, body = CLOUD.gcp("POST", "secrets?secretId=" + sid, {"replication": {"automatic": {}}})
    assert st == 200, (sid, st, body)
    st, body = CLOUD.gcp("POST", "secrets/%s:addVersion" % sid, {"payload": {"data": b64(value)}})
    assert st == 200, (sid, st, body)


def azure_put(name, value, tags=None):
    body = {"value": value}
    if tags:
        body["tags"] = tags
    st, body = CLOUD.azure("PUT", "/secrets/" + name, body)
    assert st == 200, (name, st, body)


DOCKER_CONFIG = '{"auths":{"registry.example":{"auth":"dXNlcjpwYXNz"}}}'
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def seed():
    # Vault KV v2 (mount "secret", as vault-token-store.yaml).
    # docs/guides/datafrom-rewrite.md's values for its examples.
    vault_put("path/to/secrets/object-storage-credentials", {"ACCESS_KEY": "XXXX", "SECRET_KEY": "YYYY"})
    vault_put("path/to/secrets/mongo-credentials", {"USERNAME": "XXXX", "PASSWORD": "YYYY"})
    vault_put("path/to/secrets/unrelated", {"other": "not-merged"})
    vault_put("my-secrets-dev", {"password": "bar"})
    vault_put("my-secrets-prod", {"password": "safebar"})
    vault_put("development", {"foo/bar": "1111", "foo$baz": "2222"})
    vault_put("path/to/my/secrets/username", {"value": "admin"})
    vault_put("path/to/my/secrets/password", {"value": "s3cr3t"})
    vault_put("path/to/my/other", {"value": "not-found"})
    # docs/provider/hashicorp-vault.md's secrets, in their own Vault.
    dev_config = {"foo": {"nested": {"bar": "mysecret", "baz": "bang"}}}
    vault_put("dev/config", dev_config, VAULT_PAGE, {"environment": "dev", "component": "app-1"})
    vault_put("dev/package.json", {"name": "app", "version": "1.0.0"}, VAULT_PAGE)
    vault_put("prod/config", {"foo": "not-dev"}, VAULT_PAGE, {"environment": "prod"})
    # The page's metadataPolicy example: foobar czNjcjN0 is base64 of "s3cr3t"; the label "dev".
    vault_put("foo", {"my-value": "s3cr3t"}, VAULT_PAGE, {"dev": "alice"})
    # AWS Secrets Manager (moto).
    ENV.aws("create-secret", "--name", "provider-key", "--secret-string", '{"provider-key-property":"current"}')
    ENV.aws("put-secret-value", "--secret-id", "provider-key", "--secret-string",
            '{"provider-key-property":"staged"}', "--version-stages", "provider-key-version")
    ENV.aws("create-secret", "--name", "remote-key-in-the-provider", "--secret-string",
            '{"username":"admin","password":"hunter2"}')
    # docs/guides/getallsecrets.md's secrets for find-by-name, each "\n" (Cg==).
    for name in ("/path/key1", "key2/path", "path/to/keyring"):
        ENV.aws("create-secret", "--name", name, "--secret-string", "\n")
    ENV.aws("create-secret", "--name", "prod-app", "--secret-string", "tagged-both",
            "--tags", "Key=environment,Value=prod", "Key=application,Value=app-name")
    ENV.aws("create-secret", "--name", "prod-other", "--secret-string", "tagged-env-only",
            "--tags", "Key=environment,Value=prod", "Key=application,Value=other")
    # The guide's value, without its trailing comma (which makes it invalid JSON).
    ENV.aws("create-secret", "--name", "my-secret", "--secret-string",
            '{"name": "Gustavo", "surname": "Fring", "address": "aGFwcHkgc3RyZWV0"}')
    ENV.aws("create-secret", "--name", "/credentials", "--secret-string", "multikey-value")
    ENV.aws("create-secret", "--name", "/credentials/password", "--secret-string", b64("merged-password"))
    ENV.aws("create-secret", "--name", "/credentials/username", "--secret-string", "merged-user")
    ENV.aws("create-secret", "--name", "/grafana/user", "--secret-string", "grafana-user")
    ENV.aws("create-secret", "--name", "/grafana/password", "--secret-string", "grafana-pass")
    ENV.aws("create-secret", "--name", "/database/url", "--secret-string", "postgres://db.example/app")
    ENV.aws("create-secret", "--name", "/grafana/uri", "--secret-string", "oci://registry.example/grafana")
    ENV.aws("create-secret", "--name", "/ingress-controller/valid-users", "--secret-string", '{"alice":"pw"}')
    ENV.aws("create-secret", "--name", "service/sonarqube/apiToken", "--secret-string", "sonar-token")
    ENV.aws("create-secret", "--name", "service/harbor/chartRobot", "--secret-string",
            '{"username":"robot$chart","password":"harbor-pw"}')
    # vault-anchore-engine-access-credentials-external-secret.yaml's properties.
    vault_put("anchore-engine", {"ANCHORE_ADMIN_PASSWORD": "anchore-admin-pw", "ANCHORE_ADMIN_USERNAME": "admin",
                                 "ANCHORE_DB_PASSWORD": "anchore-db-pw", "db-url": "postgres://anchore-db/anchore",
                                 "db-user": "anchore", "postgres-password": "postgres-pw"})
    ENV.aws("create-secret", "--name", "service/anchore-engine/engineAccess", "--secret-string",
            '{"ANCHORE_ADMIN_USERNAME":"admin","ANCHORE_ADMIN_PASSWORD":"anchore-pw"}')
    # GCP Secret Manager.
    gcp_put("demo-secret", "demo-value")
    gcp_put("database_username", "gcp-user")
    gcp_put("database_password", "gcp-pass")
    gcp_put("all-keys-example-secret", '{"username":"gcp-admin","password":"gcp-pw"}')
    gcp_put("docker-config-example", DOCKER_CONFIG)
    gcp_put("ssh-priv-key-example", SSH_KEY)
    gcp_put("ssl-certificate-p12-example", "not-read")
    # Azure Key Vault.
    azure_put("tls-client-credentials", "not-read")
    # aws-sm-external-secret.yaml's secrets (its store, aws-sm-store.yaml, is in eu-central-1): the AWS
    # guide's friendslist, and database-credentials with the tags its metadataPolicy examples read.
    ENV.aws("create-secret", "--region", "eu-central-1", "--name", "friendslist", "--secret-string", json.dumps(
        {"name": {"first": "Tom", "last": "Anderson"},
         "friends": [{"first": "Dale", "last": "Murphy"}, {"first": "Roger", "last": "Craig"}]}))
    ENV.aws("create-secret", "--region", "eu-central-1", "--name", "database-credentials", "--secret-string",
            '{"username":"db-user","password":"db-pw"}', "--tags", "Key=dev,Value=alice", "Key=team,Value=a<b>")
    # azkv-external-secret.yaml's and azkv-datafrom-external-secret.yaml's secrets: one tag of
    # database-credentials a JSON object of strings (ESO's Azure provider spreads those for extract).
    azure_put("database-username", "az-user")
    azure_put("database-password", "az-pass")
    azure_put("database-credentials", '{"username":"db-admin","password":"db-pw"}',
              {"environment": "production", "owner": '{"team":"payments","oncall":"alice"}'})
    azure_put("dev-username", "dev-user")
    azure_put("api-token", "t0k3n", {"environment": "dev"})


# ---- applying the manifests ---------------------------------------------------------


def manifest_text(name):
    """eso_upstream/<name> with its placeholders substituted."""
    with open(os.path.join(MANIFESTS, name)) as f:
        text = f.read()
    for k, v in SUBST.items():
        text = text.replace("${%s}" % k, v)
    assert "${" not in text, name
    return text


def manifest(name):
    """The documents of eso_upstream/<name>, placeholders substituted."""
    return [d for d in yaml.safe_load_all(manifest_text(name)) if d]


def kubectl_apply(docs, ns):
    """kubectl apply -n ns of docs: a YAML text (a manifest as it is) or
    parsed objects (a store under another name)."""
    text = docs if isinstance(docs, str) else json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    p = subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, "--cache-dir", KUBECONFIG + ".cache", "-n", ns,
                        "apply", "--validate=false", "-f", "-"], input=text, capture_output=True, text=True,
                       timeout=60)
    if p.returncode != 0:
        raise AssertionError("kubectl apply failed (%d): %s %s" % (p.returncode, p.stdout, p.stderr))


def apply(name, ns, rename=None, relocate=False):
    """kubectl apply -n ns of eso_upstream/<name>. rename: the name the example
    refers to this upstream object by (two snippets of one page that name the
    store differently, or a store no snippet defines: the same store under the
    name the example uses); a namespace the manifest sets must be ns unless
    relocate (two snippets that put objects of the same name in "default")."""
    docs = manifest(name)
    for d in docs:
        meta = d.setdefault("metadata", {})
        if relocate:
            meta["namespace"] = ns
        assert meta.get("namespace", ns) == ns, (name, meta, ns)
        if rename:
            meta["name"] = rename
    # kubectl reads the manifest's own text unless the test changed something in it.
    kubectl_apply(docs if rename or relocate else manifest_text(name), ns)
    return docs


NAMESPACES = set()


def namespace(ns):
    if ns not in NAMESPACES and not ENV.kube.get("/api/v1/namespaces/" + ns):
        ENV.kube.namespace(ns)
    NAMESPACES.add(ns)


def vault_credentials(ns):
    # vault-token-store.yaml's tokenSecretRef {name: my-secret, key: vault-token}: ESO's docs leave
    # the Secret to the reader.
    ENV.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-secret", "namespace": ns},
        "data": {"vault-token": b64(VAULT_ROOT)}})


def aws_credentials(ns):
    # basic-secret-store.yaml's awssm-secret {access-key, secret-access-key}: moto's credentials.
    ENV.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "awssm-secret", "namespace": ns},
        "data": {"access-key": b64("testing"), "secret-access-key": b64("testing")}})


def vault_store(ns, name, vault=None):
    """vault-token-store.yaml (namespace "example") in ns under the name name
    (its server: ENV.vault's URL, or vault's)."""
    namespace(ns)
    vault_credentials(ns)
    docs = manifest("vault-token-store.yaml")
    docs[0]["metadata"].update({"name": name, "namespace": ns})
    if vault:
        docs[0]["spec"]["provider"]["vault"]["server"] = vault.url
    kubectl_apply(docs, ns)


def aws_store(ns):
    namespace(ns)
    aws_credentials(ns)
    apply("basic-secret-store.yaml", ns)


def gcp_store(ns, name):
    namespace(ns)
    docs = manifest("gcpsm-sa-credentials-secret.yaml") + manifest("gcpsm-sa-secret-store.yaml")
    for d in docs:
        d["metadata"]["namespace"] = ns
    docs[1]["metadata"]["name"] = name
    kubectl_apply(docs, ns)


def cluster_store(snippet, name):
    """The upstream SecretStore snippet as a ClusterSecretStore called name
    (the name the example refers to; no snippet defines it), its credential
    Secret in the namespace eso-creds (a ClusterSecretStore names it)."""
    docs = manifest(snippet)
    store = docs[0]
    store["kind"] = "ClusterSecretStore"
    store["metadata"] = {"name": name}
    provider = store["spec"]["provider"]
    if "aws" in provider:
        namespace("eso-creds")
        if not ENV.kube.get("/api/v1/namespaces/eso-creds/secrets/awssm-secret"):
            aws_credentials("eso-creds")
        for ref in provider["aws"]["auth"]["secretRef"].values():
            ref["namespace"] = "eso-creds"
    else:
        namespace("eso-creds")
        if not ENV.kube.get("/api/v1/namespaces/eso-creds/secrets/my-secret"):
            vault_credentials("eso-creds")
        provider["vault"]["auth"]["tokenSecretRef"]["namespace"] = "eso-creds"
    kubectl_apply(docs, "eso-creds")


def azure_store(ns, name):
    namespace(ns)
    apply("azkv-credentials-secret.yaml", ns)
    apply("azkv-secret-store-spn-secret.yaml", ns, rename=name)


# ---- what ESO writes ----------------------------------------------------------------


def secret_data(ns, name):
    s = ENV.kube.secret(ns, name)
    if not s:
        return None
    return {k: base64.b64decode(v) for k, v in (s.get("data") or {}).items()}


def events(ns, kind, name):
    items = ENV.kube.get("/api/v1/namespaces/%s/events" % ns)["items"]
    return [(e.get("type"), e.get("reason"), e.get("message")) for e in items
            if e.get("involvedObject", {}).get("kind") == kind and e.get("involvedObject", {}).get("name") == name]


def es_ready(ns, name, status):
    return ENV.wait(lambda: (ENV.kube.ready(ns, name) or (None,))[0] == status and ENV.kube.ready(ns, name),
                    "ExternalSecret %s/%s Ready=%s" % (ns, name, status))


def ps_ready(ns, name, status):
    return ENV.wait(lambda: (ENV.push_ready(ns, name) or (None,))[0] == status and ENV.push_ready(ns, name),
                    "PushSecret %s/%s Ready=%s" % (ns, name, status))


# ESO's fixed condition messages (externalsecret_controller.go): the error itself is in the event.
GET_DATA = "could not get secret data from provider"
UPDATE = "could not update secret"


def raw(data):
    return {k: v.encode() if isinstance(v, str) else v for k, v in data.items()}


class EsoUpstreamExamples(unittest.TestCase):
    def synced(self, ns, es, secret, data, secret_type="Opaque"):
        """ESO's success: the Secret with exactly these bytes, Ready=True
        SecretSynced "secret synced", a Normal Created event "secret created"."""
        got = ENV.wait(lambda: secret_data(ns, secret), "Secret %s/%s" % (ns, secret))
        self.assertEqual(got, raw(data))
        self.assertEqual(ENV.kube.secret(ns, secret).get("type", "Opaque"), secret_type)
        self.assertEqual(es_ready(ns, es, "True"), ("True", "SecretSynced", "secret synced"))
        self.wait_event(ns, "ExternalSecret", es, ("Normal", "Created", "secret created"))

    def wait_event(self, ns, kind, name, want):
        """Waits for the event `want` (type, reason, message) of the object: it may
        follow the status it goes with, and other events may come first."""
        ENV.wait(lambda: want in events(ns, kind, name), "event %r of %s %s/%s" % (want, kind, ns, name))

    def refused(self, ns, es, event, condition=GET_DATA):
        """A failure as ESO's markAsFailed: Ready=False SecretSyncedError with
        ESO's fixed text for the path (`condition`: "could not get secret data
        from provider", "could not update secret", ...) and a Warning
        UpdateFailed event with the error (`event`). rootseal's own refusals
        (an invalid spec, a template it does not run) carry the error in both:
        condition=event."""
        st, reason, msg = es_ready(ns, es, "False")
        self.assertEqual((st, reason, msg), ("False", "SecretSyncedError", condition))
        self.wait_event(ns, "ExternalSecret", es, ("Warning", "UpdateFailed", event))
        return event

    # -- Vault KV v2 (vault-token-store.yaml) --------------------------------------

    def test_datafrom_rewrite_merge_empty(self):
        # docs/guides/datafrom-rewrite.md: every `*-credentials` below path/to/secrets merged into one map.
        vault_store("example", "vault-backend")
        apply("datafrom-rewrite-merge-empty.yaml", "example")
        self.synced("example", "merge-basic-example", "merge-basic-example",
                    {"ACCESS_KEY": "XXXX", "SECRET_KEY": "YYYY", "USERNAME": "XXXX", "PASSWORD": "YYYY"})

    def test_datafrom_rewrite_conflict(self):
        # The guide: the same keys of two secrets kept apart by prefixes. The guide shows dev_password
        # and prod_password, but its manifest's target is "dev-$1": ESO's RewriteMap (Go's
        # ReplaceAllString) gives dev-password, as rootseal.
        vault_store("rewrite-conflict", "backend")
        apply("datafrom-rewrite-conflict.yaml", "rewrite-conflict")
        self.synced("rewrite-conflict", "example", "secret-to-be-created",
                    {"dev-password": "bar", "prod-password": "safebar"})

    def test_datafrom_rewrite_invalid_characters(self):
        vault_store("rewrite-invalid", "backend")
        apply("datafrom-rewrite-invalid-characters.yaml", "rewrite-invalid")
        self.synced("rewrite-invalid", "example", "secret-to-be-created", {"foo_bar": "1111", "foo_baz": "2222"})

    def test_datafrom_rewrite_remove_path(self):
        # find by name below path/to/my; each whole value (Go's Marshal of the data) under its name,
        # the path prefix removed by the rewrite.
        vault_store("rewrite-path", "backend")
        apply("datafrom-rewrite-remove-path.yaml", "rewrite-path")
        self.synced("rewrite-path", "example", "secret-to-be-created",
                    {"username": '{"value":"admin"}', "password": '{"value":"s3cr3t"}'})

    def test_datafrom_rewrite_transform_invalid_keys(self):
        # The template (upper, Sprig's replace) renders; over this Vault's paths the new keys keep their
        # '/', which ESO's ValidateKeys refuses after the rewrite, as rootseal does (the first such key
        # named; ESO names whichever its map iteration meets first).
        namespace("rewrite-transform")
        vault_credentials("rewrite-transform")
        docs = manifest("vault-token-store.yaml")
        docs[0]["kind"] = "ClusterSecretStore"
        docs[0]["metadata"] = {"name": "fake"}
        docs[0]["spec"]["provider"]["vault"]["auth"]["tokenSecretRef"]["namespace"] = "rewrite-transform"
        kubectl_apply(docs, "rewrite-transform")
        apply("datafrom-rewrite-transform.yaml", "rewrite-transform")
        self.refused("rewrite-transform", "external-secret-transform",
                     "error processing spec.dataFrom[0].find, err: invalid secret keys (TIP: use rewrite or "
                     "conversionStrategy to change keys): key has invalid character /, only alphanumeric, '-', '.' "
                     "and '_' are allowed: ENV_PATH/TO/MY/OTHER")
        self.assertIsNone(ENV.kube.secret("rewrite-transform", "external-secret-transform"))

    # -- docs/provider/hashicorp-vault.md (vault-token-store.yaml as vault-backend) ----------

    def page_example(self, manifest_name, ns):
        vault_store(ns, "vault-backend", VAULT_PAGE)
        apply(manifest_name, ns)

    def test_vault_page_raw_values(self):
        # No property: the JSON of the whole secret (Go's Marshal of its data).
        self.page_example("vault-raw-values.yaml", "vault-raw")
        self.synced("vault-raw", "vault-example", "vault-example", {"foobar": '{"name":"app","version":"1.0.0"}'})

    def test_vault_page_nested_values(self):
        self.page_example("vault-nested-values.yaml", "vault-nested")
        self.synced("vault-nested", "vault-example", "vault-example", {"foobar": "mysecret"})  # the page's result

    def test_vault_page_multiple_nested_values(self):
        self.page_example("vault-multiple-nested-values.yaml", "vault-multi")
        self.synced("vault-multi", "vault-example", "vault-example", {"bar": "mysecret", "baz": "bang"})

    DEV_CONFIG = '{"foo":{"nested":{"bar":"mysecret","baz":"bang"}}}'
    DEV_PACKAGE = '{"name":"app","version":"1.0.0"}'

    def test_vault_page_find_by_name_and_tags(self):
        # The page's result, dev_config with the secret's JSON; the page's Vault holds only dev/config,
        # this one also the raw-values example's dev/package.json, whose name contains "dev" too.
        # prod/config has neither "dev" in its name nor environment=dev.
        self.page_example("vault-find.yaml", "vault-find")
        self.synced("vault-find", "vault-example", "vault-example",
                    {"dev_config": self.DEV_CONFIG, "dev_package.json": self.DEV_PACKAGE})

    def test_vault_page_metadata_policy(self):
        # metadataPolicy: Fetch of KV v2 metadata: the whole map as JSON (tags), one custom_metadata
        # key by property (developer); the page's result for foobar.
        self.page_example("vault-metadata-policy.yaml", "vault-md")
        got = ENV.wait(lambda: secret_data("vault-md", "example-sync"), "Secret vault-md/example-sync")
        self.assertEqual(got["foobar"], b"s3cr3t")
        self.assertEqual(got["developer"], b"alice")
        tags = json.loads(got["tags"])
        self.assertEqual(tags["dev"], "alice")
        self.assertEqual(str(tags["current_version"]), "1")
        self.assertEqual(es_ready("vault-md", "vault-example", "True"), ("True", "SecretSynced", "secret synced"))

    def test_vault_page_find_with_path(self):
        # The page says the key is "config" (relative to find.path) and prints the value with spaces.
        # ESO's Vault provider does otherwise (client_get_all_secrets.go: listSecrets names each secret
        # path + key, the full name; the value is Go's Marshal), and so does rootseal: "dev_config".
        # datafrom-rewrite-remove-path.yaml relies on the full name.
        self.page_example("vault-find-path.yaml", "vault-find-path")
        self.synced("vault-find-path", "vault-example", "vault-example",
                    {"dev_config": self.DEV_CONFIG, "dev_package.json": self.DEV_PACKAGE})

    # -- AWS Secrets Manager (basic-secret-store.yaml, moto) ---------------------------

    def test_basic_external_secret(self):
        # ESO's AWS provider: a version that is not "uuid/..." is a VersionStage.
        aws_store("aws-basic")
        apply("basic-external-secret.yaml", "aws-basic")
        self.synced("aws-basic", "example", "secret-to-be-created",
                    {"secret-key-to-be-managed": "staged", "username": "admin", "password": "hunter2"})

    def test_getallsecrets_find_by_name(self):
        aws_store("aws-find-name")
        apply("getallsecrets-find-by-name.yaml", "aws-find-name")
        # The guide's result (_path_key1, key2_path, path_to_keyring: "/" converted to "_"), and the
        # two secrets of basic-external-secret.yaml, whose names contain "key" too.
        self.synced("aws-find-name", "find-by-tags", "secret-to-be-created",
                    {"_path_key1": "\n", "key2_path": "\n", "path_to_keyring": "\n",
                     "provider-key": '{"provider-key-property":"current"}',
                     "remote-key-in-the-provider": '{"username":"admin","password":"hunter2"}'})

    def test_getallsecrets_find_by_tags(self):
        aws_store("aws-find-tags")
        apply("getallsecrets-find-by-tags.yaml", "aws-find-tags")
        self.synced("aws-find-tags", "find-by-tags", "secret-to-be-created", {"prod-app": "tagged-both"})

    def test_aws_sm_external_secret_with_metadata_policy(self):
        # docs/provider/aws-secrets-manager.md: aws-sm-store.yaml (its `role` assumed through moto's STS)
        # and aws-sm-external-secret.yaml: two properties of friendslist (the comments' Tom and Roger),
        # the tags of database-credentials as Go's JSON of a map (HTML escaped) and its `dev` tag.
        namespace("aws-sm")
        aws_credentials("aws-sm")
        apply("aws-sm-store.yaml", "aws-sm")
        apply("aws-sm-external-secret.yaml", "aws-sm")
        self.synced("aws-sm", "example", "friends", {
            "my_name": "Tom", "first_friend": "Roger", "tags": '{"dev":"alice","team":"a\\u003cb\\u003e"}',
            "developer": "alice"})

    def test_aws_sm_push_secret_with_metadata(self):
        # aws-sm-push-secret-with-metadata.yaml (namespace teamb); its store teamb-secret-store is in no
        # snippet: basic-secret-store.yaml under that name; its source Secret my-secret neither.
        namespace("teamb")
        aws_credentials("teamb")
        apply("basic-secret-store.yaml", "teamb", rename="teamb-secret-store")
        ENV.kube.create("/api/v1/namespaces/teamb/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-secret", "namespace": "teamb"},
            "data": {"key1": b64("teamb-value")}})
        apply("aws-sm-push-secret-with-metadata.yaml", "teamb")
        self.assertEqual(ps_ready("teamb", "pushsecret-example", "True"),
                         ("True", "Synced", "PushSecret synced successfully"))
        self.wait_event("teamb", "PushSecret", "pushsecret-example",
                        ("Normal", "Synced", "PushSecret synced successfully"))
        # secretPushFormat string: SecretString; description, KMS key and tags as the metadata says (with
        # rootseal's managed-by tag where ESO's is managed-by=external-secrets, docs/push.md).
        got = ENV.aws("get-secret-value", "--secret-id", "teamb-my-first-parameter-3")
        self.assertEqual(got.get("SecretString"), "teamb-value")
        self.assertNotIn("SecretBinary", got)
        d = CLOUD.aws_describe("teamb-my-first-parameter-3")
        self.assertEqual(d["Description"], "secret 'managed-by:secret-manager' from 'secret-store:teamb-secret-store'")
        self.assertEqual(d["KmsKeyId"], "bb123123-b2b0-4f60-ac3a-44a13f0e6b6c")
        self.assertEqual({t["Key"]: t["Value"] for t in d["Tags"]},
                         {"managed-by": "rootseal", "secret-store": "teamb-secret-store", "refresh-interval": "1h"})

    def test_decoding_strategy_auto(self):
        # docs/guides/decoding-strategy.md: Gustavo and Fring stay, the base64 address is decoded.
        aws_store("aws-decoding")
        apply("decoding-strategy-auto.yaml", "aws-decoding")
        self.synced("aws-decoding", "decoding-auto", "decoding-auto",
                    {"name": "Gustavo", "surname": "Fring", "address": "happy street"})

    def test_multikey_template_and_force_sync(self):
        aws_store("tpl-multikey")
        apply("multikey-template-v2-external-secret.yaml", "tpl-multikey")
        self.synced("tpl-multikey", "template", "template", {"name": "admin", "password": "multikey-value"})
        # ESO's manual refresh (docs/api/externalsecret.md: `kubectl annotate es my-es
        # force-sync=$(date +%s) --overwrite`): a metadata change refreshes at once, and the changed
        # value gives a Normal Updated event "secret updated". rootseal serves a value fetched
        # within the last sync.refresh_window from its cache (docs/sync.md), so the annotation is
        # set again (a new value each time) until the new value is read.
        ENV.aws("put-secret-value", "--secret-id", "/credentials", "--secret-string", "multikey-value-2")
        stamp = [0]

        def force_sync():
            stamp[0] += 1
            p = subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, "--cache-dir", KUBECONFIG + ".cache", "-n",
                                "tpl-multikey", "annotate", "es", "template", "force-sync=%d" % stamp[0],
                                "--overwrite"], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            return ENV.wait(lambda: secret_data("tpl-multikey", "template"), "Secret")["password"] == b"multikey-value-2"

        ENV.wait(force_sync, "Secret template updated after force-sync")
        self.assertEqual(secret_data("tpl-multikey", "template"), raw({"name": "admin", "password": "multikey-value-2"}))
        self.wait_event("tpl-multikey", "ExternalSecret", "template", ("Normal", "Updated", "secret updated"))
        self.assertEqual(es_ready("tpl-multikey", "template", "True"), ("True", "SecretSynced", "secret synced"))

    def test_merge_template(self):
        aws_store("tpl-merge")
        apply("merge-template-v2-external-secret.yaml", "tpl-merge")
        self.synced("tpl-merge", "template", "template",
                    {"name": "admin", "password": "merged-password", "username": "merged-user"})

    def test_helm_escape_sequence_renders_the_literal(self):
        # Applied with kubectl (not through Helm), the escaped template is a string literal: ESO's Secret
        # holds the text "{{ .mysecret }}".
        aws_store("tpl-helm")
        apply("helm-template-v2-escape-sequence.yaml", "tpl-helm")
        self.synced("tpl-helm", "template", "template", {"name": "admin", "password": "{{ .mysecret }}"})

    def test_jenkins_credentials_with_template_metadata(self):
        # docs/examples/jenkins-kubernetes-credentials.md: no data template, so the provider's keys are the
        # data and the template's labels and annotations go on the Secret.
        namespace("ci")
        cluster_store("basic-secret-store.yaml", "cluster-secrets-store")
        apply("aws-jenkins-credential-sonarqube-api-token-external-secret.yaml", "ci")
        apply("aws-jenkins-credentials-harbor-chart-robot-external-secret.yaml", "ci")
        apply("aws-anchore-engine-access-credentials-external-secret.yaml", "ci")
        self.synced("ci", "sonarqube-api-token", "sonarqube-api-token", {"text": "sonar-token"})
        self.synced("ci", "harbor-chart-robot", "harbor-chart-robot",
                    {"username": "robot$chart", "password": "harbor-pw"})
        self.synced("ci", "anchore-access-credentials", "anchore-access-credentials",
                    {"ANCHORE_ADMIN_USERNAME": "admin", "ANCHORE_ADMIN_PASSWORD": "anchore-pw"})
        for name, kind, description in (("sonarqube-api-token", "secretText", "Sonar API token"),
                                        ("harbor-chart-robot", "usernamePassword", "harbor chart robot access")):
            meta = ENV.kube.secret("ci", name)["metadata"]
            self.assertEqual(meta["labels"].get("jenkins.io/credentials-type"), kind)
            self.assertEqual(meta["annotations"].get("jenkins.io/credentials-description"), description)

    def test_jenkins_github_ssh_refused_parameter_store(self):
        # Documented refusal (docs/sync.md: AWS ParameterStore).
        namespace("ci")
        cluster_store("aws-parameter-store.yaml", "cluster-parameter-store")
        apply("aws-jenkins-credential-github-ssh-external-secret.yaml", "ci")
        self.refused("ci", "github-ssh-access",
                     "error processing spec.data[0] (key: /service/github/sshUserPrivateKeyUserName), err: "
                     "ClusterSecretStore \"cluster-parameter-store\" is invalid: spec.provider.aws.service: "
                     "unsupported value 'ParameterStore' (supported: SecretsManager)")
        self.assertIsNone(ENV.kube.secret("ci", "github-ssh-access"))

    def test_vault_anchore_printf(self):
        namespace("security")
        cluster_store("vault-token-store.yaml", "vault-backend")
        apply("vault-anchore-engine-access-credentials-external-secret.yaml", "security")
        # The example's printf of a string literal holding template text: ESO's Secret holds that text
        # (a template for another tool), not the fetched values.
        self.synced("security", "anchore-access-credentials", "anchore-access-credentials", {
            "ANCHORE_ADMIN_USERNAME": "{{ .username | toString }}",
            "ANCHORE_ADMIN_PASSWORD": "{{ .password | toString }}",
            "ANCHORE_DB_PASSWORD": "{{ .dbPassword | toString }}",
            "db-url": "{{ .dbUrl | toString }}",
            "db-user": "{{ .dbUser | toString }}",
            "postgres-password": "{{ .postgresPassword | toString }}"})

    def test_template_from_configmap_now(self):
        # The ConfigMap's `templated` item (if/else, hasPrefix) renders, and its `annotations` item
        # calls Sprig's `now` with no format: Go's time.Time String() in the daemon's Local zone, with
        # the monotonic reading ("m=+<seconds since the process started>"), as ESO's controller writes it.
        aws_store("tpl-from-cm")
        before = time.time()
        apply("template-v2-from-secret.yaml", "tpl-from-cm")
        self.synced("tpl-from-cm", "my-template-example", "secret-to-be-created", {
            "config.yaml": "datasources:\n  - name: Graphite\n    type: graphite\n    access: proxy\n"
                           "    url: \"oci://registry.example/grafana\"\n    password: \"grafana-pass\"\n"
                           "    user: \"grafana-user\"\n",
            "my-application-grafana-user": base64.b64encode(b"grafana-pass").decode(),
            "enableOCI": "true",
            "application-type": "grafana"})
        after = time.time()
        annotations = ENV.kube.secret("tpl-from-cm", "secret-to-be-created")["metadata"]["annotations"]
        stamp = annotations["last-synced-for-user/grafana-user"]
        m = re.fullmatch(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d{1,9})? ([+-]\d{4}) [A-Za-z+\-0-9]+ "
                         r"m=\+\d+\.\d{9}", stamp)
        self.assertIsNotNone(m, stamp)
        when = datetime.datetime.strptime(m.group(1) + m.group(3), "%Y-%m-%d %H:%M:%S%z").timestamp()
        self.assertLessEqual(int(before), when)
        self.assertLessEqual(when, after)

    def test_multiline_template_replace(self):
        aws_store("tpl-multiline")
        apply("multiline-template-v2-external-secret.yaml", "tpl-multiline")
        self.synced("tpl-multiline", "template", "secret-to-be-created", {
            "config": "datasources:\n- name: Graphite\n  type: graphite\n  access: proxy\n  url: http://localhost:8080\n"
                      "  password: \"grafana-pass\"\n  user: \"grafana-user\"\n",
            "connection": "postgresql://db.example/app"})

    def test_vault_pushsecret(self):
        # vault-pushsecret.yaml's store vault-secretstore is not in the snippets: vault-token-store.yaml
        # under that name (KV v2 at "secret").
        vault_store("vault-push", "vault-secretstore")
        apply("vault-pushsecret.yaml", "vault-push", relocate=True)
        self.assertEqual(ps_ready("vault-push", "pushsecret-example", "True"),
                         ("True", "Synced", "PushSecret synced successfully"))
        self.wait_event("vault-push", "PushSecret", "pushsecret-example",
                        ("Normal", "Synced", "PushSecret synced successfully"))
        # As ESO's Vault PushSecret writes them: source-key1 (a JSON object, no property) is the data map,
        # source-key2 ("bar") the property foo; each secret carries ESO's custom_metadata marker.
        for path in ("vault/secret1", "vault/secret2"):
            data, meta = vault_get(path)
            self.assertEqual(data["data"], {"foo": "bar"}, path)
            self.assertEqual(meta["custom_metadata"], {"managed-by": "external-secrets"}, path)
            self.assertEqual(meta["current_version"], 1, path)

    def test_pushing_the_whole_secret(self):
        # docs/guides/pushsecrets.md, "Pushing the whole secret". The snippets name the store
        # aws-parameterstore; ParameterStore is refused (test_jenkins_github_ssh_refused_parameter_store),
        # so the store of that name here is basic-secret-store.yaml (Secrets Manager). Both PushSecrets
        # are called pokedex-credentials in "default": each is applied in its own namespace.
        for ns in ("push-whole", "push-property"):
            namespace(ns)
            aws_credentials(ns)
            apply("basic-secret-store.yaml", ns, rename="aws-parameterstore")
            ENV.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pokedex-credentials", "namespace": ns},
                "data": {"best-pokemon": b64("Pikachu"), "trainer": b64("Ash")}})
        # 1. No secretKey, no property: every key, as ESO's ExtractSecretData (Go's JSON of the map).
        apply("full-pushsecret-no-key-no-property.yaml", "push-whole", relocate=True)
        self.assertEqual(ps_ready("push-whole", "pokedex-credentials", "True"),
                         ("True", "Synced", "PushSecret synced successfully"))
        self.assertEqual(CLOUD.aws_value("my-first-parameter"), '{"best-pokemon":"Pikachu","trainer":"Ash"}')
        self.wait_event("push-whole", "PushSecret", "pokedex-credentials",
                        ("Normal", "Synced", "PushSecret synced successfully"))
        # 2. secretKey best-pokemon into the property single-value-secret of the same remote secret: set
        # in the JSON object already there (ESO: sjson.SetBytes on the current value).
        apply("full-pushsecret-no-key-with-property.yaml", "push-property", relocate=True)
        self.assertEqual(ps_ready("push-property", "pokedex-credentials", "True"),
                         ("True", "Synced", "PushSecret synced successfully"))
        self.assertEqual(CLOUD.aws_value("my-first-parameter"),
                         '{"best-pokemon":"Pikachu","trainer":"Ash","single-value-secret":"Pikachu"}')

    def test_full_pushsecret_template(self):
        # docs/snippets/full-pushsecret.yaml: spec.template (engine v2 over the source Secret's data,
        # templateFrom a ConfigMap) as ESO's PushSecret controller applies it. Its store
        # aws-parameterstore is ParameterStore, which rootseal refuses (asserted with the github-ssh
        # example): basic-secret-store.yaml (Secrets Manager, moto) under that name, as for the
        # whole-secret PushSecrets. The snippet's Secret is called pushsecret-example, its selector
        # names pokedex-credentials, and its ConfigMap application-config-tmpl is in no snippet.
        namespace("default")
        aws_credentials("default")
        apply("basic-secret-store.yaml", "default", rename="aws-parameterstore")
        apply("full-pushsecret.yaml", "default")
        # 1. As written: ESO's errFailedGetSecret (the selector's Secret is not the snippet's).
        self.assertEqual(ps_ready("default", "pushsecret-example", "False"),
                         ("False", "Errored", "could not get source secret"))
        self.wait_event("default", "PushSecret", "pushsecret-example",
                        ("Warning", "Errored", "could not get source secret"))
        self.assertIsNone(CLOUD.aws_value("destination-secret"))
        # 2. The ConfigMap, then the snippet's Secret under the selector's name: the template renders over
        # its data (best-pokemon-src kept, best-pokemon and config.yml added, in memory) and data[0]
        # pushes best-pokemon into the property best-pokemon-dst of destination-secret.
        ENV.kube.create("/api/v1/namespaces/default/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "application-config-tmpl", "namespace": "default"},
            "data": {"config.yml": 'pokemon: {{ index . "best-pokemon-src" }}\n'}})
        ENV.kube.create("/api/v1/namespaces/default/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pokedex-credentials", "namespace": "default"},
            "data": {"best-pokemon-src": b64("Pikachu")}})
        self.assertEqual(ps_ready("default", "pushsecret-example", "True"),
                         ("True", "Synced", "PushSecret synced successfully"))
        self.wait_event("default", "PushSecret", "pushsecret-example",
                        ("Normal", "Synced", "PushSecret synced successfully"))
        # ESO's sjson.SetBytes of the property on a new secret; SecretBinary, as ESO's default.
        self.assertEqual(CLOUD.aws_value("destination-secret"), '{"best-pokemon-dst":"PIKACHU is the really best!"}')
        got = ENV.aws("get-secret-value", "--secret-id", "destination-secret")
        self.assertIn("SecretBinary", got)
        # The source Secret is templated in memory only.
        self.assertEqual(secret_data("default", "pokedex-credentials"), {"best-pokemon-src": b"Pikachu"})

    # -- GCP Secret Manager (gcpsm-sa-credentials-secret.yaml, gcpsm-sa-secret-store.yaml) --

    def test_gcpsm_external_secret(self):
        gcp_store("demo", "gcp-store")
        apply("gcpsm-external-secret.yaml", "demo")
        self.synced("demo", "database-credentials", "database-credentials",
                    {"database_username": "gcp-user", "database_password": "gcp-pass"})

    def test_gcpsm_wif_external_secret_on_the_sa_store(self):
        # gcpsm-wif-externalsecret.yaml names demo-store in demo, the name gcpsm-sa-secret-store.yaml has.
        gcp_store("demo", "demo-store")
        apply("gcpsm-wif-externalsecret.yaml", "demo")
        self.synced("demo", "demo-external-secret", "secret-to-be-created", {"DEMO_SECRET": "demo-value"})

    def test_gcpsm_data_from(self):
        gcp_store("gcp-datafrom", "example")
        apply("gcpsm-data-from-external-secret.yaml", "gcp-datafrom")
        self.synced("gcp-datafrom", "example", "secret-to-be-created",
                    {"username": "gcp-admin", "password": "gcp-pw"})

    def test_gcpsm_docker_config(self):
        gcp_store("gcp-docker", "example")
        apply("gcpsm-docker-config-externalsecret.yaml", "gcp-docker")
        self.synced("gcp-docker", "dk-cfg-example", "secret-to-be-created", {".dockerconfigjson": DOCKER_CONFIG},
                    "kubernetes.io/dockerconfigjson")

    def test_gcpsm_ssh_auth(self):
        gcp_store("gcp-ssh", "example")
        apply("gcpsm-ssh-auth-externalsecret.yaml", "gcp-ssh")
        self.synced("gcp-ssh", "ssh-auth-example", "secret-to-be-created", {"ssh-privatekey": SSH_KEY},
                    "kubernetes.io/ssh-auth")

    # -- Azure Key Vault (azkv-credentials-secret.yaml, azkv-secret-store-spn-secret.yaml) --

    def test_azkv_external_secret(self):
        # docs/provider/azure-key-vault.md's ExternalSecret: two secrets, database-credentials' metadata with
        # metadataPolicy Fetch (all of it, then the tag "environment"), the certificate db-client-cert (ESO's
        # GetSecret answers its "cer": the DER) and the key encryption-pubkey (ESO answers the key's JWK as
        # Go's json.Marshal of its SDK's JSONWebKey writes it: kid, kty, key_ops, n, e, in that order).
        tls = tls_material()
        st, cert = CLOUD.azure("POST", "/certificates/db-client-cert/import",
                               {"value": (tls.cert + tls.key).decode(),
                                "policy": {"secret_props": {"contentType": "application/x-pem-file"}}})
        self.assertEqual(st, 200, cert)
        st, key = CLOUD.azure("PUT", "/keys/encryption-pubkey", {"key": json.loads(tls.jwk_priv)})
        self.assertEqual(st, 200, key)
        self.assertNotIn("d", key["key"])  # Key Vault never hands out the private part
        st, creds = CLOUD.azure("GET", "/secrets/database-credentials")
        self.assertEqual(st, 200)
        rfc3339 = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
        metadata = {"attribute.created": rfc3339(creds["attributes"]["created"]),
                    "attribute.updated": rfc3339(creds["attributes"]["updated"])}
        metadata.update(creds["tags"])
        der = base64.b64decode("".join(tls.cert.decode().split("-----")[2].split()))
        k = key["key"]
        jwk = ('{"kid":"%s","kty":"RSA","key_ops":["encrypt","decrypt","sign","verify","wrapKey","unwrapKey"],'
               '"n":"%s","e":"%s"}' % (k["kid"], k["n"], k["e"]))
        azure_store("azkv-es", "azure-store")
        apply("azkv-external-secret.yaml", "azkv-es")
        self.synced("azkv-es", "database-credentials", "database-credentials", {
            "database-username": "az-user", "database-password": "az-pass",
            "database-credentials-metadata": json.dumps(metadata, sort_keys=True, separators=(",", ":")),
            "database-credentials": "production", "db-client-cert": der, "encryption-pubkey": jwk})

    def test_azkv_cert_property_and_key_extract(self):
        # Not an upstream manifest: what ESO's Azure provider does with the example's objects beyond it,
        # through rootseald. A property on a certificate is not read (ESO answers the cer whatever it is); the
        # key's JWK by property; dataFrom.extract of a key refused before any read, with ESO's text.
        tls = tls_material()
        st, cert = CLOUD.azure("POST", "/certificates/cert-extra/import", {"value": (tls.cert + tls.key).decode()})
        self.assertEqual(st, 200, cert)
        st, key = CLOUD.azure("PUT", "/keys/key-extra", {"key": json.loads(tls.jwk_pub)})
        self.assertEqual(st, 200, key)
        azure_store("azkv-extra", "azure-store")
        ENV.external_secret("azkv-extra", "cert-property", [
            {"secretKey": "cert", "remoteRef": {"key": "cert/cert-extra", "property": "anything"}},
            {"secretKey": "e", "remoteRef": {"key": "key/key-extra", "property": "e"}}],
            target={"name": "cert-property"}, store="azure-store")
        self.synced("azkv-extra", "cert-property", "cert-property",
                    {"cert": base64.b64decode(cert["cer"]), "e": "AQAB"})
        ENV.external_secret("azkv-extra", "key-extract", [], target={"name": "key-extract"}, store="azure-store",
                            data_from=[{"extract": {"key": "key/key-extra"}}])
        self.refused("azkv-extra", "key-extract",
                     'error processing spec.dataFrom[0].extract, err: SecretStore "azure-store" key "key/key-extra": '
                     'cannot get use dataFrom to get key secret')

    def test_azkv_datafrom_find_extract_and_metadata(self):
        # azkv-datafrom-external-secret.yaml: find by name (^dev) and by tags (environment: dev), the
        # JSON of database-credentials, and its tags with metadataPolicy Fetch as ESO's Azure
        # GetSecretMap makes them: "<name>_<tag>", a JSON object of strings spread one key per member,
        # and the attributes created and updated (RFC 3339, UTC).
        azure_store("azkv-datafrom", "azure-store")
        st, body = CLOUD.azure("GET", "/secrets/database-credentials")
        self.assertEqual(st, 200)
        attrs = body["attributes"]
        rfc3339 = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
        apply("azkv-datafrom-external-secret.yaml", "azkv-datafrom")
        self.synced("azkv-datafrom", "all-secrets", "all-secrets", {
            "dev-username": "dev-user", "api-token": "t0k3n", "username": "db-admin", "password": "db-pw",
            "database-credentials_environment": "production", "database-credentials_owner_team": "payments",
            "database-credentials_owner_oncall": "alice",
            "database-credentials_attribute.created": rfc3339(attrs["created"]),
            "database-credentials_attribute.updated": rfc3339(attrs["updated"])})

    def test_azkv_pushsecret_with_metadata(self):
        # azkv-pushsecret-secret.yaml (its Secret and PushSecret, moved out of "default", where another
        # example's PushSecret has the same name): tags, contentType and expirationDate applied.
        azure_store("azkv-push", "azure-store")
        apply("azkv-pushsecret-secret.yaml", "azkv-push", relocate=True)
        self.assertEqual(ps_ready("azkv-push", "pushsecret-example", "True"),
                         ("True", "Synced", "PushSecret synced successfully"))
        self.wait_event("azkv-push", "PushSecret", "pushsecret-example",
                        ("Normal", "Synced", "PushSecret synced successfully"))
        st, body = CLOUD.azure("GET", "/secrets/my-azkv-secret-name")
        self.assertEqual(st, 200)
        self.assertEqual(body["value"], "my-secret")
        self.assertEqual(body["contentType"], "application/json")
        self.assertEqual(body["attributes"]["exp"], 1735689599)  # 2024-12-31T23:59:59Z
        self.assertEqual(body["tags"], {"managed-by": "rootseal", "environment": "production"})

# ---- ESO's own template helpers (docs/guides/templating.md) ------------------------


class TlsMaterial:
    """A CA, a certificate it signed (with subject alternative names and key
    identifiers) and its key, a PKCS#12 file of the certificate and key (no
    password), made by the openssl CLI for this run; the PEMs ESO's helpers
    give for them (the key as PKCS#8 and its public key, as `openssl pkey`
    writes them) and the key's JWKs (RFC 7517, by Python's cryptography)."""

    def __init__(self, folder):
        def run(*args):
            subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=folder)
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=tls-ca",
            "-addext", "basicConstraints=critical,CA:TRUE", "-keyout", "ca.key", "-out", "ca.crt")
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=tls.example", "-keyout", "tls.key",
            "-out", "tls.csr")
        with open(os.path.join(folder, "tls.ext"), "w") as f:
            f.write("subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
                    "subjectAltName=DNS:tls.example,DNS:www.tls.example,IP:10.1.2.3\n")
        run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
            "-extfile", "tls.ext", "-out", "tls.crt")
        run("pkcs12", "-export", "-in", "tls.crt", "-inkey", "tls.key", "-passout", "pass:", "-out", "tls.pfx")
        run("pkey", "-in", "tls.key", "-out", "tls.pkcs8")
        run("pkey", "-in", "tls.key", "-pubout", "-out", "tls.pub")

        def read(name):
            with open(os.path.join(folder, name), "rb") as f:
                return f.read()
        self.ca, self.cert, self.key, self.pub, self.pfx = (read(n) for n in (
            "ca.crt", "tls.crt", "tls.pkcs8", "tls.pub", "tls.pfx"))
        from cryptography.hazmat.primitives import serialization
        k = serialization.load_pem_private_key(read("tls.key"), None).private_numbers()

        def n(v):
            return base64.urlsafe_b64encode(v.to_bytes((v.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
        pub = {"kty": "RSA", "n": n(k.public_numbers.n), "e": n(k.public_numbers.e)}
        self.jwk_pub = json.dumps(pub)
        self.jwk_priv = json.dumps(dict(pub, d=n(k.d), p=n(k.p), q=n(k.q), dp=n(k.dmp1), dq=n(k.dmq1),
                                        qi=n(k.iqmp)))


TLS = None


def tls_material():
    global TLS
    if TLS is None:
        TLS = TlsMaterial(tempfile.mkdtemp(prefix="tls-", dir=ENV.dir))
    return TLS


class EsoTemplateHelperExamples(unittest.TestCase):
    """The upstream examples of ESO's PEM, PKCS#12, JWK and RSA helpers
    (runtime/template/v2), served by rootseal's implementation of them."""
    synced = EsoUpstreamExamples.synced
    wait_event = EsoUpstreamExamples.wait_event
    refused = EsoUpstreamExamples.refused

    def test_gcpsm_tls_pkcs12(self):
        # gcpsm-tls-externalsecret.yaml: the GCP secret is the PKCS#12 file itself (binary); pkcs12cert
        # and pkcs12key give the certificate and the PKCS#8 key as PEM, in a kubernetes.io/tls Secret.
        tls = tls_material()
        st, body = CLOUD.gcp("POST", "secrets/ssl-certificate-p12-example:addVersion",
                             {"payload": {"data": base64.b64encode(tls.pfx).decode()}})
        self.assertEqual(st, 200, body)
        gcp_store("gcp-tls", "example")
        apply("gcpsm-tls-externalsecret.yaml", "gcp-tls")
        self.synced("gcp-tls", "template-tls-example", "secret-to-be-created",
                    {"tls.crt": tls.cert, "tls.key": tls.key}, "kubernetes.io/tls")

    def test_azkv_pkcs12_cert(self):
        # azkv-pkcs12-cert-external-secret.yaml: Key Vault keeps a certificate's PKCS#12 file as a secret
        # in base64; the template decodes it (b64dec) before pkcs12cert/pkcs12key.
        tls = tls_material()
        azure_put("tls-client-credentials", base64.b64encode(tls.pfx).decode())
        azure_store("azure-tls", "azure-store")
        apply("azkv-pkcs12-cert-external-secret.yaml", "azure-tls")
        self.synced("azure-tls", "tls-client-credentials", "tls-client-credentials",
                    {"tls.crt": tls.cert, "tls.key": tls.key}, "kubernetes.io/tls")

    def test_template_helper_snippets_without_data(self):
        # The jwk and certSANs snippets show only the template: no `data` entry gives them .myjwk /
        # .certificate, so ESO's template fails on the missing key (missingkey=error), and so does
        # rootseal's, after the fetch. rsadecrypt's private key comes from a `kubernetes` provider store
        # (sourceRef), which rootseal does not serve (docs/sync.md): no store of that name is there.
        # ESO's conditions: a template that fails is "could not update secret", a store that is not
        # there "could not get secret data from provider"; the errors are in the UpdateFailed events.
        for i, (snippet, es, message, condition) in enumerate((
                ("jwk-template-v2-external-secret.yaml", "template",
                 "could not apply template: could not execute template: spec.target.template.data.jwk_priv: "
                 "template: line 1: map has no entry for key \"myjwk\"", UPDATE),
                ("certsans-template-v2-external-secret.yaml", "cert-sans-example",
                 "could not apply template: could not execute template: spec.target.template.data.primary-domain: "
                 "template: line 1: map has no entry for key \"certificate\"", UPDATE),
                ("rsadecrypt-template-v2-external-secret.yaml", "rsa-decrypt-template-v2",
                 "error processing spec.data[0] (key: a-secretname-in-cluster), err: "
                 "SecretStore \"kubernetes\" not found", GET_DATA))):
            ns = "tpl-helper-%d" % i
            aws_store(ns)
            apply(snippet, ns)
            with self.subTest(snippet=snippet):
                self.refused(ns, es, message, condition)

    def test_jwk_and_certsans_with_their_data(self):
        # The same snippets with the `data` entry they leave out (the one edit, made here): the JWK and
        # the certificate chain from AWS. As in ESO, a private JWK gives only the private PEM (Go's
        # x509.MarshalPKIXPublicKey of an *rsa.PrivateKey fails) and a public one only the public PEM:
        # the snippet's two keys over one JWK cannot both render; each is asserted on its own too.
        tls = tls_material()
        ENV.aws("create-secret", "--name", "tmpl-eso/jwk-private", "--secret-string", tls.jwk_priv)
        ENV.aws("create-secret", "--name", "tmpl-eso/jwk-public", "--secret-string", tls.jwk_pub)
        ENV.aws("create-secret", "--name", "tmpl-eso/certificate", "--secret-string",
                (tls.ca + tls.cert).decode())
        ns = "tpl-helper-data"
        aws_store(ns)

        def with_data(snippet, name, key, remote, only=None):
            docs = manifest(snippet)
            docs[0]["metadata"]["name"] = name
            docs[0]["spec"]["data"] = [{"secretKey": key, "remoteRef": {"key": remote}}]
            if only:
                tpl = docs[0]["spec"]["target"]["template"]["data"]
                docs[0]["spec"]["target"]["template"]["data"] = {only: tpl[only]}
            kubectl_apply(docs, ns)

        with_data("jwk-template-v2-external-secret.yaml", "jwk-both", "myjwk", "tmpl-eso/jwk-private")
        self.refused(ns, "jwk-both", "could not apply template: could not execute template: "
                                     "spec.target.template.data.jwk_pub: template: line 1: error calling "
                                     "jwkPublicKeyPem: x509: only public keys are supported (the JWK has a private "
                                     "part)", UPDATE)
        with_data("jwk-template-v2-external-secret.yaml", "jwk-priv", "myjwk", "tmpl-eso/jwk-private", "jwk_priv")
        self.synced(ns, "jwk-priv", "jwk-priv", {"jwk_priv": tls.key})
        with_data("jwk-template-v2-external-secret.yaml", "jwk-pub", "myjwk", "tmpl-eso/jwk-public", "jwk_pub")
        self.synced(ns, "jwk-pub", "jwk-pub", {"jwk_pub": tls.pub})
        with_data("certsans-template-v2-external-secret.yaml", "cert-sans", "certificate", "tmpl-eso/certificate")
        self.synced(ns, "cert-sans", "cert-sans", {
            "sans": "tls.example,www.tls.example,10.1.2.3", "primary-domain": "tls.example",
            "sans-json": '["tls.example","www.tls.example","10.1.2.3"]'})

    def test_literal_template_htpasswd(self):
        # template-v2-literal-example.yaml: ESO's Sprig htpasswd with "bcrypt" over the extracted users,
        # one "user:hash" line each, the literal read as keys and values. The salt is random: the hash
        # is checked with crypt(3) (Python's crypt module on libxcrypt), its form is Go's ($2a$, cost 10).
        import re
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        aws_store("tpl-literal")
        apply("template-v2-literal-example.yaml", "tpl-literal")
        got = ENV.wait(lambda: secret_data("tpl-literal", "secret-to-be-created"), "Secret tpl-literal")
        self.assertEqual(sorted(got), ["auth"])
        m = re.fullmatch(r"alice:(\$2a\$10\$[./A-Za-z0-9]{53})", got["auth"].decode())
        self.assertIsNotNone(m, got["auth"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertEqual(crypt.crypt("pw", m.group(1)), m.group(1))
            self.assertNotEqual(crypt.crypt("other", m.group(1)), m.group(1))
        self.assertEqual(es_ready("tpl-literal", "my-template-example", "True"),
                         ("True", "SecretSynced", "secret synced"))
        self.wait_event("tpl-literal", "ExternalSecret", "my-template-example",
                        ("Normal", "Created", "secret created"))


if __name__ == "__main__":
    unittest.main()
