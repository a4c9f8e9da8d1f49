"""deploy/ as a kustomize base and deploy/overlays/example, rendered by
`kubectl kustomize` and applied with kubectl to the Kubernetes API double
(TLS, bearer token); then deploy/kubeconfig.sh turns the ServiceAccount's
token Secret into the kubeconfig rootseald reads, and kubectl authenticates
with it as that ServiceAccount."""
import base64
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "doubles", "k8s_apiserver"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import server as k8s  # noqa: E402
from test_double_k8s import make_cert  # noqa: E402

KUBECTL = "/usr/bin/kubectl"
DEPLOY = os.path.join(ROOT, "deploy")
OVERLAY = os.path.join(DEPLOY, "overlays", "example")
SCRIPT = os.path.join(DEPLOY, "kubeconfig.sh")
ADMIN = "admin-token-" + secrets.token_hex(8)


def render(path):
    p = subprocess.run([KUBECTL, "kustomize", path], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("kubectl kustomize %s: %s" % (path, p.stderr))
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def ids(docs):
    return sorted((d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs)


BASE = [("CustomResourceDefinition", "", "clustersecretstores.external-secrets.io"),
        ("CustomResourceDefinition", "", "externalsecrets.external-secrets.io"),
        ("CustomResourceDefinition", "", "pushsecrets.external-secrets.io"),
        ("CustomResourceDefinition", "", "secretstores.external-secrets.io"),
        ("Namespace", "", "rootseal-system"),
        ("Secret", "rootseal-system", "rootseal-sync-token"),
        ("ServiceAccount", "rootseal-system", "rootseal-sync")]


class Render(unittest.TestCase):
    def test_base(self):
        docs = render(DEPLOY)
        self.assertEqual(ids(docs), BASE)
        tok = [d for d in docs if d["kind"] == "Secret"][0]
        self.assertEqual(tok["type"], "kubernetes.io/service-account-token")
        self.assertEqual(tok["metadata"]["annotations"]["kubernetes.io/service-account.name"], "rootseal-sync")
        self.assertNotIn("data", tok)  # the token controller fills it, never the manifest
        for d in docs:
            self.assertEqual(d["metadata"]["labels"]["app.kubernetes.io/part-of"], "rootseal", d["metadata"]["name"])

    def test_overlay_adds_least_privilege_rbac_per_watched_namespace(self):
        docs = render(OVERLAY)
        rbac = [("ClusterRole", "", "rootseal-sync-cluster-stores"),
                ("ClusterRoleBinding", "", "rootseal-sync-cluster-stores"),
                ("Namespace", "", "payments"), ("Namespace", "", "web"),
                ("Role", "payments", "rootseal-sync"), ("Role", "web", "rootseal-sync"),
                ("RoleBinding", "payments", "rootseal-sync"), ("RoleBinding", "web", "rootseal-sync")]
        self.assertEqual(ids(docs), sorted(BASE + rbac))
        sa = {"kind": "ServiceAccount", "name": "rootseal-sync", "namespace": "rootseal-system"}
        for d in docs:
            if d["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                self.assertEqual(d["subjects"], [sa], d["metadata"])
            if d["kind"] == "RoleBinding":
                self.assertEqual(d["roleRef"]["kind"], "Role")  # namespaced grants only
            if d["kind"] in ("Role", "ClusterRole"):
                for rule in d["rules"]:
                    self.assertNotIn("*", rule["verbs"] + rule["resources"] + rule["apiGroups"], d["metadata"])
            if d["kind"] == "Role":
                # ServiceAccounts: create on their token subresource (TokenRequest), get of the object
                # (AWS web identity's role annotation), nothing wider.
                sa_rules = [r for r in d["rules"] if any(x.startswith("serviceaccounts") for x in r["resources"])]
                self.assertEqual(sa_rules, [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                                             "verbs": ["create"]},
                                            {"apiGroups": [""], "resources": ["serviceaccounts"],
                                             "verbs": ["get"]}], d["metadata"])
            if d["kind"] == "ClusterRole":
                # Cluster-wide: ClusterSecretStores and namespace labels, never Secrets.
                res = {r for rule in d["rules"] for r in rule["resources"]}
                self.assertEqual(res, {"clustersecretstores", "clustersecretstores/status", "namespaces"})


class Apply(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="rootseal-kustomize-")
        self.cert, key = make_cert(self.dir)
        self.d = k8s.K8sApiServerDouble(tokens=[ADMIN], tls_cert=self.cert, tls_key=key).start()
        self.admin = self.kubeconfig("admin", ADMIN)

    def tearDown(self):
        self.d.stop()
        shutil.rmtree(self.dir)

    def kubeconfig(self, name, token):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "double",
                       "clusters": [{"name": "double", "cluster": {"server": self.d.url,
                                                                   "certificate-authority": self.cert}}],
                       "users": [{"name": "u", "user": {"token": token}}],
                       "contexts": [{"name": "double", "context": {"cluster": "double", "user": "u"}}]}, f)
        return path

    def kubectl(self, kcfg, *args, check=True):
        p = subprocess.run([KUBECTL, "--kubeconfig", kcfg, "--cache-dir", os.path.join(self.dir, "cache")] + list(args),
                           capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError("kubectl %s: %s %s" % (" ".join(args), p.stdout, p.stderr))
        return p

    def script(self, out, *args, timeout=60):
        env = dict(os.environ, KUBECONFIG=self.admin, KUBECTL=KUBECTL, HOME=self.dir)
        return subprocess.run(["bash", SCRIPT] + list(args) + [out], capture_output=True, text=True, env=env,
                              timeout=timeout)

    def test_apply_overlay_then_kubeconfig_for_the_service_account(self):
        out = self.kubectl(self.admin, "apply", "--validate=false", "-k", OVERLAY).stdout
        lines = sorted(out.strip().splitlines())
        self.assertEqual(len(lines), 15, out)
        self.assertTrue(all(ln.endswith(" created") for ln in lines), out)
        for want in ("namespace/rootseal-system created", "serviceaccount/rootseal-sync created",
                     "secret/rootseal-sync-token created",
                     "customresourcedefinition.apiextensions.k8s.io/externalsecrets.external-secrets.io created",
                     "role.rbac.authorization.k8s.io/rootseal-sync created",
                     "clusterrolebinding.rbac.authorization.k8s.io/rootseal-sync-cluster-stores created"):
            self.assertIn(want, lines)
        # Idempotent: a second apply changes nothing.
        out = self.kubectl(self.admin, "apply", "--validate=false", "-k", OVERLAY).stdout
        self.assertTrue(all(ln.endswith(" unchanged") for ln in out.strip().splitlines()), out)
        rb = json.loads(self.kubectl(self.admin, "-n", "web", "get", "rolebindings.rbac.authorization.k8s.io",
                                     "rootseal-sync", "-o", "json").stdout)
        self.assertEqual(rb["subjects"][0]["namespace"], "rootseal-system")

        # The token controller's part (the double has none): fill the Secret.
        sa_token = "sa-" + secrets.token_hex(16)
        with open(self.cert) as f:
            ca = f.read()
        patch = {"data": {"token": base64.b64encode(sa_token.encode()).decode(),
                          "ca.crt": base64.b64encode(ca.encode()).decode(),
                          "namespace": base64.b64encode(b"rootseal-system").decode()}}
        self.kubectl(self.admin, "-n", "rootseal-system", "patch", "secret", "rootseal-sync-token", "--type=merge",
                     "-p", json.dumps(patch))
        self.d.tokens.add(sa_token)

        out_dir = os.path.join(self.dir, "etc-rootseal")
        p = self.script(out_dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        kc_path = os.path.join(out_dir, "kubeconfig")
        for leaf in ("kubeconfig", "k8s-token", "k8s-ca.pem"):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(out_dir, leaf)).st_mode), 0o600, leaf)
        with open(os.path.join(out_dir, "k8s-token")) as f:
            self.assertEqual(f.read(), sa_token)
        with open(os.path.join(out_dir, "k8s-ca.pem")) as f:
            self.assertEqual(f.read(), ca)
        with open(kc_path) as f:
            text = f.read()
        self.assertNotIn(sa_token, text)  # the token only in its own file (tokenFile)
        kc = yaml.safe_load(text)
        self.assertEqual(kc["clusters"][0]["cluster"],
                         {"server": self.d.url, "certificate-authority": os.path.join(out_dir, "k8s-ca.pem")})
        self.assertEqual(kc["users"][0], {"name": "rootseal-sync",
                                          "user": {"tokenFile": os.path.join(out_dir, "k8s-token")}})
        # kubectl, as the ServiceAccount, through that kubeconfig alone.
        names = self.kubectl(kc_path, "-n", "payments", "get", "roles.rbac.authorization.k8s.io", "-o", "name").stdout
        self.assertEqual(names.split(), ["role.rbac.authorization.k8s.io/rootseal-sync"])
        # The token file is what authenticates: a wrong one is refused.
        with open(os.path.join(out_dir, "k8s-token"), "w") as f:
            f.write("not-the-token")
        p = self.kubectl(kc_path, "-n", "payments", "get", "roles.rbac.authorization.k8s.io", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue("Unauthorized" in p.stderr or "credentials" in p.stderr, p.stderr)

    def test_script_refuses_a_secret_that_is_not_a_token_or_never_filled(self):
        self.kubectl(self.admin, "apply", "--validate=false", "-k", DEPLOY)
        out_dir = os.path.join(self.dir, "out")
        p = self.script(out_dir, "--timeout", "2")
        self.assertEqual(p.returncode, 1)
        self.assertIn("has no token after 2s", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(out_dir, "kubeconfig")))
        self.kubectl(self.admin, "-n", "rootseal-system", "create", "secret", "generic", "plain",
                     "--from-literal=token=x")
        p = self.script(out_dir, "--secret", "plain")
        self.assertEqual(p.returncode, 1)
        self.assertIn("has type 'Opaque', not kubernetes.io/service-account-token", p.stderr)


if __name__ == "__main__":
    unittest.main()
