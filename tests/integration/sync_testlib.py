"""Shared set-up for the sync engine's end-to-end tests: the Kubernetes API
double and the Vault KV v2 double in-process, moto_server as a process, and
rootseald from a configuration file with `sync.enabled`. With push=True also
the Azure Key Vault and GCP Secret Manager doubles (in-process), declared as
host-credential stores `azure` and `gcp` in rootseald.yaml (PushCloud reads
them back independently of rootseald)."""
import base64
import http.client
import json
import os
import signal
import subprocess
import urllib.request

from rootseal_testlib import aws_cli, free_port, wait_moto, wait_until, ROOTSEALD, SOFTHSM2_MODULE, make_softhsm, rmtree, tempdir

HERE = os.path.dirname(os.path.abspath(__file__))
import importlib.util  # noqa: E402


def _load(name, rel):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "..", "doubles", rel, "server.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


k8s_double = _load("k8s_double", "k8s_apiserver")
vault_double = _load("vault_double", "vault_kv")
azure_double = _load("azure_double", "azure_keyvault")
gcp_double = _load("gcp_double", "gcp_secretmanager")

K8S_TOKEN = "sync-e2e-token"
VAULT_ROOT = "vault-root-token"
ESO = "/apis/external-secrets.io/v1"
ESO_PUSH = "/apis/external-secrets.io/v1alpha1"
AZ_TENANT, AZ_CLIENT, AZ_SECRET = "tenant-e2e", "client-e2e", "client-secret-e2e"
AZ_TOKEN = "azure-test-reader"  # static token the test itself uses to read the double
GCP_PROJECT, GCP_NUMBER, GCP_EMAIL = "rootseal-test", "123456789012", "rootseal-push@rootseal-test.iam.gserviceaccount.com"
GCP_TOKEN = "gcp-test-reader"


def b64(s):
    return base64.b64encode(s.encode()).decode()


def moto_secrets(port, timeout=10):
    """name -> (current value, number of versions) of every Secrets Manager
    secret, from moto_server's own state (its /moto-api/data.json)."""
    with urllib.request.urlopen("http://127.0.0.1:%d/moto-api/data.json" % port, timeout=timeout) as r:
        data = json.loads(r.read())
    out = {}
    for sec in (data.get("secretsmanager") or {}).get("FakeSecret") or []:
        versions = sec.get("versions") or {}
        version = versions.get(sec.get("default_version_id")) or {}
        current = version.get("secret_string")
        if current is None and version.get("secret_binary") is not None:
            # rootseal pushes SecretBinary by default, as ESO does; moto keeps it base64.
            current = base64.b64decode(version["secret_binary"]).decode()
        out[sec["name"]] = (current, len(versions))
    return out


def http_json(port, method, path, headers, body=None, ctype="application/json", timeout=10):
    """One plain-HTTP request to 127.0.0.1:port with a JSON body; (status, parsed JSON body or None)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = dict(headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = ctype
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)
    finally:
        c.close()


def write_kubeconfig(path, server, ca_file=None, token=K8S_TOKEN):
    """A kubeconfig (mode 0600) for the API double at server with a bearer token."""
    ca = ', certificate-authority: "%s"' % ca_file if ca_file else ""
    with open(path, "w") as f:
        f.write("""apiVersion: v1
kind: Config
clusters:
- name: double
  cluster: {server: "%s"%s}
users:
- name: rootseal
  user: {token: "%s"}
contexts:
- name: double
  context: {cluster: double, user: rootseal}
current-context: double
""" % (server, ca, token))
    os.chmod(path, 0o600)
    return path


class Kube:
    """A tiny client of the API double (the test's own view of the cluster)."""

    def __init__(self, port):
        self.port = port

    def req(self, method, path, body=None, ctype="application/json"):
        return http_json(self.port, method, path, {"Authorization": "Bearer " + K8S_TOKEN}, body, ctype)

    def create(self, path, obj):
        st, body = self.req("POST", path, obj)
        assert st == 201, (st, body)
        return body

    def get(self, path):
        st, body = self.req("GET", path)
        return body if st == 200 else None

    def delete(self, path):
        return self.req("DELETE", path)

    def merge_patch(self, path, patch):
        st, body = self.req("PATCH", path, patch, "application/merge-patch+json")
        assert st == 200, (st, body)
        return body

    def namespace(self, name, labels=None):
        self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": name, "labels": labels or {}}})

    def secret(self, ns, name):
        return self.get("/api/v1/namespaces/%s/secrets/%s" % (ns, name))

    def secret_value(self, ns, name, key):
        s = self.secret(ns, name)
        if not s or key not in (s.get("data") or {}):
            return None
        return base64.b64decode(s["data"][key]).decode()

    def es(self, ns, name):
        return self.get(ESO + "/namespaces/%s/externalsecrets/%s" % (ns, name))

    def ready(self, ns, name):
        """(status, reason, message) of the Ready condition, or None."""
        es = self.es(ns, name)
        for c in ((es or {}).get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                return c.get("status"), c.get("reason"), c.get("message")
        return None

    def event_messages(self, ns, name, reason="UpdateFailed", kind="ExternalSecret"):
        """The messages of the events `reason` about the object kind ns/name.
        A failed ExternalSecret's condition carries ESO's fixed text
        ("could not get secret data from provider", ...); the error is in its
        Warning event UpdateFailed."""
        items = (self.get("/api/v1/namespaces/%s/events" % ns) or {}).get("items") or []
        return [e.get("message") for e in items if e.get("reason") == reason and
                e.get("involvedObject", {}).get("kind") == kind and e.get("involvedObject", {}).get("name") == name]


class SyncEnv:
    """Doubles + rootseald with sync enabled. Call start(); stop() in tearDown."""

    def __init__(self, refresh_window="1s", extra_stores="", concurrency=0, push=False, sync_extra="",
                 top_extra=""):
        self.dir = tempdir("rootseal-sync-")
        # More top-level YAML after the sync: section ("{dir}" is this env's folder).
        self.top_extra = top_extra.replace("{dir}", self.dir)
        self.azure = self.gcp = None
        if push:
            self.azure = azure_double.AzureKeyVaultDouble(tenant=AZ_TENANT, clients={AZ_CLIENT: AZ_SECRET},
                                                          static_tokens=[AZ_TOKEN]).start()
            key = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                                 check=True, capture_output=True).stdout.decode()
            self.gcp = gcp_double.GcpSecretManagerDouble(accounts={GCP_EMAIL: key},
                                                         projects={GCP_PROJECT: GCP_NUMBER}).start()
            self.gcp.state.tokens[GCP_TOKEN] = ("static", float("inf"))
            sa = self.write_private("gcp-sa.json", json.dumps({
                "type": "service_account", "project_id": GCP_PROJECT, "private_key_id": "k1", "private_key": key,
                "client_email": GCP_EMAIL, "token_uri": self.gcp.token_url}))
            az = self.write_private("azure-client-secret", AZ_SECRET)
            extra_stores += """
    azure:
      kind: azure
      vault_url: %(az)s
      authority_host: %(az)s
      tenant_id: %(tenant)s
      client_id: %(client)s
      client_secret: {file: %(az_secret)s}
      namespaces: ["*"]
    gcp:
      kind: gcp
      project_id: %(project)s
      gcp_endpoint: %(gcp)s
      token_uri: %(gcp)s/token
      service_account_json: {file: %(sa)s}
      namespaces: ["*"]
""" % {"az": self.azure.url, "tenant": AZ_TENANT, "client": AZ_CLIENT, "az_secret": az, "project": GCP_PROJECT,
                "gcp": self.gcp.url, "sa": sa}
        self.k8s = k8s_double.K8sApiServerDouble(tokens=[K8S_TOKEN], bookmark_interval=1.0).start()
        self.kube = Kube(self.k8s.port)
        self.vault = vault_double.VaultKvDouble(root_token=VAULT_ROOT).start()
        self.moto_port = free_port()
        self.moto = subprocess.Popen(["moto_server", "-p", str(self.moto_port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.refresh_window = refresh_window
        self.extra_stores = extra_stores
        self.concurrency = concurrency
        self.sync_extra = sync_extra  # more YAML under sync: (indented by two)
        self.proc = None

    def aws(self, *args):
        out = aws_cli(self.moto_port, ["secretsmanager"] + list(args) + ["--output", "json"])
        return json.loads(out) if out.strip() else None

    def wait_moto(self):
        wait_moto(self.moto, self.moto_port)

    def moto_api(self, method, path):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.moto_port, path), method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def moto_recording(self, action):
        """Runs action() with moto's request recorder on (MOTO_RECORDER_FILEPATH
        must be set before moto starts); the requests moto received meanwhile,
        each {"headers", "body", "body_encoded", ...}."""
        self.moto_api("POST", "/moto-api/recorder/reset-recording")
        self.moto_api("POST", "/moto-api/recorder/start-recording")
        try:
            action()
            rec = self.moto_api("GET", "/moto-api/recorder/download-recording").decode()
        finally:
            self.moto_api("POST", "/moto-api/recorder/stop-recording")
        return [json.loads(line) for line in rec.splitlines() if line.strip()]

    @staticmethod
    def recorded_body(call):
        b = call.get("body") or ""
        return base64.b64decode(b).decode() if call.get("body_encoded") else b

    def write_private(self, name, text):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            f.write(text + "\n")
        os.chmod(p, 0o600)
        return p

    def start(self):
        self.wait_moto()
        env = make_softhsm(os.path.join(self.dir, "hsm"), "sync", pin="4321")
        pin = self.write_private("hsm-pin", "4321")
        kubeconfig = write_kubeconfig(os.path.join(self.dir, "kubeconfig"), "http://127.0.0.1:%d" % self.k8s.port)
        aws_id = self.write_private("aws-id", "testing")
        aws_secret = self.write_private("aws-secret", "testing")
        vault_token = self.write_private("vault-token", VAULT_ROOT)
        self.port = free_port()
        self.config = os.path.join(self.dir, "rootseald.yaml")
        with open(self.config, "w") as f:
            f.write("""
listen:
  address: 127.0.0.1:%(port)d
  allow_plaintext: true
state_dir: %(dir)s/state
pkcs11:
  module: %(module)s
  token_label: sync
  generate_key: true
pin:
  sources: [file]
  file: %(pin)s
sync:
  enabled: true
  kubeconfig: %(kubeconfig)s
  refresh_window: %(window)s
  concurrency: %(concurrency)d
  retry_base: 200ms
  retry_max: 2s
%(sync_extra)s
  stores:
    moto:
      kind: aws
      region: us-east-1
      endpoint: http://127.0.0.1:%(moto)d
      access_key_id: {file: %(aws_id)s}
      secret_access_key: {file: %(aws_secret)s}
      namespaces: ["*"]
    central:
      kind: vault
      server: %(vault)s
      token: {file: %(vault_token)s}
      namespaces: [team-host]
%(extra)s
%(top_extra)s
""" % {"port": self.port, "dir": self.dir, "module": SOFTHSM2_MODULE, "pin": pin, "kubeconfig": kubeconfig,
       "window": self.refresh_window, "moto": self.moto_port, "aws_id": aws_id, "aws_secret": aws_secret,
       "vault": self.vault.url, "vault_token": vault_token, "extra": self.extra_stores,
       "concurrency": self.concurrency, "sync_extra": self.sync_extra, "top_extra": self.top_extra})
        env.pop("CREDENTIALS_DIRECTORY", None)
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([ROOTSEALD, "--config", self.config, "--allow-root"], stdout=subprocess.DEVNULL,
                                     stderr=self.err, env=env)
        self.wait(lambda: self.metric("rootseal_sync_synced") == 1.0, "sync engine synced", timeout=60)
        return self

    def log(self):
        self.err.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")[-6000:]

    def wait(self, predicate, what, timeout=30):
        return wait_until(self.proc, self.log, predicate, what, timeout)

    def metrics(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request("GET", "/v1/sys/metrics?format=prometheus")
            r = c.getresponse()
            text = r.read().decode()
        finally:
            c.close()
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            k, v = line.rsplit(" ", 1)
            try:
                out[k] = float(v)
            except ValueError:
                pass
        return out

    def metric(self, name):
        return self.metrics().get(name)

    def stop(self):
        """Stops everything; raises if rootseald did not exit cleanly on SIGTERM
        (a crash, or a leak report under LeakSanitizer), with its log."""
        failure = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            if self.proc.returncode != 0:
                failure = "rootseald exited %s on SIGTERM\n%s" % (self.proc.returncode, self.log())
            self.err.close()
        self.moto.terminate()
        self.moto.wait(timeout=10)
        self.k8s.stop()
        self.vault.stop()
        for d in (self.azure, self.gcp):
            if d:
                d.stop()
        rmtree(self.dir)
        if failure:
            raise AssertionError(failure)

    # ---- objects ---------------------------------------------------------------

    def vault_store(self, ns, name="vault"):
        self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-token", "namespace": ns},
            "data": {"token": b64(VAULT_ROOT)}})
        self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": name, "namespace": ns},
            "spec": {"provider": {"vault": {"server": self.vault.url, "path": "secret", "version": "v2",
                                            "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token"}}}}}})

    def external_secret(self, ns, name, data, refresh="1h", target=None, store="vault", kind="SecretStore",
                        api="external-secrets.io/v1", data_from=None):
        spec = {"refreshInterval": refresh, "secretStoreRef": {"name": store, "kind": kind}, "data": data}
        if data_from:
            spec["dataFrom"] = data_from
        if target:
            spec["target"] = target
        return self.kube.create("/apis/%s/namespaces/%s/externalsecrets" % (api, ns), {
            "apiVersion": api, "kind": "ExternalSecret", "metadata": {"name": name, "namespace": ns}, "spec": spec})

    # ---- push (PushSecret) ------------------------------------------------------

    def push_stores(self, ns, aws_extra=None):
        """SecretStores `aws`, `azure`, `gcp` in ns, each on the host credentials
        of the same name in rootseald.yaml (moto, the Azure and GCP doubles)."""
        aws = {"service": "SecretsManager", "region": "us-east-1"}
        aws.update(aws_extra or {})
        for name, cred, provider in (
                ("aws", "moto", {"aws": aws}),
                ("azure", "azure", {"azurekv": {"vaultUrl": self.azure.url, "authType": "ServicePrincipal"}}),
                ("gcp", "gcp", {"gcpsm": {"projectID": GCP_PROJECT}})):
            self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": {"name": name, "namespace": ns,
                             "annotations": {"sync.rootseal.io/credentials": cred}},
                "spec": {"provider": provider}})

    def push_secret(self, ns, name, selector, data, refresh="1h", stores=("aws", "azure", "gcp"), deletion=None,
                    update=None):
        spec = {"refreshInterval": refresh, "secretStoreRefs": [{"name": s, "kind": "SecretStore"} for s in stores],
                "selector": selector, "data": data}
        if deletion:
            spec["deletionPolicy"] = deletion
        if update:
            spec["updatePolicy"] = update
        return self.kube.create(ESO_PUSH + "/namespaces/%s/pushsecrets" % ns, {
            "apiVersion": "external-secrets.io/v1alpha1", "kind": "PushSecret",
            "metadata": {"name": name, "namespace": ns}, "spec": spec})

    def push_ready(self, ns, name):
        """(status, reason, message) of the PushSecret's Ready condition, or None."""
        ps = self.kube.get(ESO_PUSH + "/namespaces/%s/pushsecrets/%s" % (ns, name))
        for c in ((ps or {}).get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                return c.get("status"), c.get("reason"), c.get("message")
        return None


def _http(url, method, path, token, body=None):
    return http_json(int(url.rsplit(":", 1)[1]), method, path, {"Authorization": "Bearer " + token}, body)


class PushCloud:
    """The test's own view of the three push targets (not through rootseald):
    the aws CLI against moto, raw REST against the Azure and GCP doubles."""

    def __init__(self, env):
        self.env = env

    # AWS (aws CLI)
    def aws_value(self, name):
        """The current value: SecretString, or SecretBinary decoded (rootseal pushes binary
        by default, as ESO does)."""
        try:
            got = self.env.aws("get-secret-value", "--secret-id", name)
        except subprocess.CalledProcessError:
            return None
        if "SecretString" in got:
            return got["SecretString"]
        return base64.b64decode(got["SecretBinary"]).decode()

    def aws_versions(self, name):
        out = self.env.aws("list-secret-version-ids", "--secret-id", name, "--include-deprecated")
        return len(out["Versions"])

    def aws_describe(self, name):
        try:
            return self.env.aws("describe-secret", "--secret-id", name)
        except subprocess.CalledProcessError:
            return None

    # Azure Key Vault (REST 7.4)
    def azure(self, method, path, body=None):
        sep = "&" if "?" in path else "?"
        return _http(self.env.azure.url, method, path + sep + "api-version=7.4", AZ_TOKEN, body)

    def azure_value(self, name):
        st, body = self.azure("GET", "/secrets/" + name)
        return body["value"] if st == 200 else None

    def azure_versions(self, name):
        st, body = self.azure("GET", "/secrets/%s/versions" % name)
        return len(body.get("value") or []) if st == 200 else 0

    # GCP Secret Manager (REST v1)
    def gcp(self, method, path, body=None):
        return _http(self.env.gcp.url, method, "/v1/projects/%s/%s" % (GCP_PROJECT, path), GCP_TOKEN, body)

    def gcp_value(self, sid):
        st, body = self.gcp("GET", "secrets/%s/versions/latest:access" % sid)
        return base64.b64decode(body["payload"]["data"]).decode() if st == 200 else None

    def gcp_versions(self, sid):
        st, body = self.gcp("GET", "secrets/%s/versions" % sid)
        return len(body.get("versions") or []) if st == 200 else 0

    def values(self, aws_name, azure_name, gcp_id):
        return self.aws_value(aws_name), self.azure_value(azure_name), self.gcp_value(gcp_id)
