"""The sync engine end to end: rootseald (config mode, sync.enabled) against
the Kubernetes API double, the Vault KV v2 double and moto_server.

Each test uses its own namespaces in one shared environment."""
import base64
import hashlib
import unittest

from sync_testlib import SyncEnv, ESO, b64

ENV = None


def setUpModule():
    global ENV
    ENV = SyncEnv(refresh_window="1s").start()


def tearDownModule():
    if ENV:
        ENV.stop()


def data_hash(data):
    """ESO's reconcile.external-secrets.io/data-hash: SHA3-224 of Go's %+v of map[string][]byte."""
    parts = ["%s:[%s]" % (k, " ".join(str(b) for b in v.encode())) for k, v in sorted(data.items())]
    return hashlib.sha3_224(("map[" + " ".join(parts) + "]").encode()).hexdigest()


class SyncE2E(unittest.TestCase):
    def setUp(self):
        self.env = ENV
        self.kube = ENV.kube

    def ns(self, name, labels=None):
        self.kube.namespace(name, labels)
        return name

    def test_external_secret_creates_secret_with_data_labels_annotations_owner(self):
        ns = self.ns("e2e-create")
        self.env.vault.put("app/db", {"username": "alice", "password": "pw-1"})
        self.env.vault_store(ns)
        es = self.env.external_secret(ns, "db", [
            {"secretKey": "user", "remoteRef": {"key": "app/db", "property": "username"}},
            {"secretKey": "pass", "remoteRef": {"key": "app/db", "property": "password"}}],
            target={"name": "db-creds", "template": {"type": "kubernetes.io/basic-auth",
                                                     "metadata": {"labels": {"team": "payments"},
                                                                  "annotations": {"owner": "ops"}},
                                                     "mergePolicy": "Merge",
                                                     "data": {"dsn": "pg://{{ .user }}:{{ .pass }}@db"}}})
        s = self.env.wait(lambda: self.kube.secret(ns, "db-creds"), "Secret db-creds")
        data = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        self.assertEqual(data, {"user": "alice", "pass": "pw-1", "dsn": "pg://alice:pw-1@db"})
        self.assertEqual(s["type"], "kubernetes.io/basic-auth")
        md = s["metadata"]
        self.assertEqual(md["labels"]["team"], "payments")
        self.assertEqual(md["labels"]["reconcile.external-secrets.io/managed"], "true")
        self.assertEqual(md["labels"]["reconcile.external-secrets.io/created-by"],
                         hashlib.sha3_224(("%s/db" % ns).encode()).hexdigest())
        self.assertEqual(md["annotations"]["owner"], "ops")
        self.assertEqual(md["annotations"]["reconcile.external-secrets.io/data-hash"], data_hash(data))
        refs = md["ownerReferences"]
        self.assertEqual(len(refs), 1)
        self.assertEqual((refs[0]["kind"], refs[0]["name"], refs[0]["uid"], refs[0]["controller"]),
                         ("ExternalSecret", "db", es["metadata"]["uid"], True))
        ready = self.env.wait(lambda: self.kube.ready(ns, "db"), "Ready condition")
        self.assertEqual(ready[:2], ("True", "SecretSynced"))
        st = self.kube.es(ns, "db")["status"]
        self.assertEqual(st["binding"]["name"], "db-creds")
        self.assertTrue(st["syncedResourceVersion"].startswith("1-"))
        self.assertTrue(st["refreshTime"].endswith("Z"))
        # An Event was recorded for the creation.
        events = self.kube.get("/api/v1/namespaces/%s/events" % ns)["items"]
        self.assertIn("Created", [e["reason"] for e in events])

    def test_template_from_config_map_and_literal(self):
        """ESO's template-v2-from-secret snippet, edited as in template_from_test.cpp (no
        {{ now }}, no control flow): a ConfigMap read by the real Kubernetes client."""
        ns = self.ns("e2e-tplfrom")
        self.env.vault.put("grafana", {"user": "alice", "password": "s3cret", "uri": "oci://registry"})
        self.env.vault_store(ns)
        self.env.external_secret(ns, "grafana", [
            {"secretKey": k, "remoteRef": {"key": "grafana", "property": k}} for k in ("user", "password", "uri")],
            target={"name": "grafana-out", "template": {"engineVersion": "v2", "templateFrom": [
                {"target": "Data", "configMap": {"name": "grafana-config-tpl", "items": [
                    {"key": "config.yaml", "templateAs": "Values"},
                    {"key": "templated", "templateAs": "KeysAndValues"}]}},
                {"target": "Annotations", "literal": "last-synced-for-user/{{ .user }}: synced"}]}})
        # No ConfigMap yet: Ready=False with ESO's reason text, no Secret.
        ready = self.env.wait(lambda: (self.kube.ready(ns, "grafana") or [None])[0] == "False" and
                              self.kube.ready(ns, "grafana"), "Ready=False")
        # ESO's ApplyTemplate error: "could not update secret", the error in the event.
        self.assertEqual(ready[2], "could not update secret")
        self.env.wait(lambda: 'could not apply template: error fetching templateFrom data: configmaps '
                      '"grafana-config-tpl" not found' in self.kube.event_messages(ns, "grafana"), "UpdateFailed event")
        self.assertIsNone(self.kube.secret(ns, "grafana-out"))
        self.kube.create("/api/v1/namespaces/%s/configmaps" % ns, {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "grafana-config-tpl", "namespace": ns},
            "data": {"config.yaml": 'url: "{{ .uri }}"\nuser: "{{ .user }}"\n',
                     "templated": "my-application-{{ .user }}: {{ .password | b64enc }}\nenableOCI: yes\n"}})
        # The retry with backoff picks it up.
        s = self.env.wait(lambda: self.kube.secret(ns, "grafana-out"), "Secret grafana-out", timeout=60)
        data = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        self.assertEqual(data, {"config.yaml": 'url: "oci://registry"\nuser: "alice"\n',
                                "my-application-alice": "czNjcmV0", "enableOCI": "true"})
        self.assertEqual(s["metadata"]["annotations"]["last-synced-for-user/alice"], "synced")
        self.assertEqual(self.env.wait(lambda: self.kube.ready(ns, "grafana")[0] == "True" and
                                       self.kube.ready(ns, "grafana"), "Ready=True")[1], "SecretSynced")

    def test_data_from_find_by_name_and_path(self):
        """ESO's dataFrom.find on Vault: the names below find.path matching find.name.regexp,
        each whole value (Go's Marshal: keys sorted, numbers as stored) under its converted
        name; a rewrite replaces the conversion."""
        ns = self.ns("e2e-find")
        self.env.vault.put("find/app/db", {"user": "alice", "port": 5432})
        self.env.vault.put("find/app/cache", {"pw": "c"})
        self.env.vault.put("find/other", {"pw": "o"})
        self.env.vault_store(ns)
        self.env.external_secret(ns, "found", [], target={"name": "found"}, data_from=[
            {"find": {"path": "find/app", "name": {"regexp": "db$"}}},
            {"find": {"path": "find", "name": {"regexp": "other"}},
             "rewrite": [{"regexp": {"source": "^find/(.*)", "target": "x-$1"}}]}])
        s = self.env.wait(lambda: self.kube.secret(ns, "found"), "Secret found")
        data = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        self.assertEqual(data, {"find_app_db": '{"port":5432,"user":"alice"}', "x-other": '{"pw":"o"}'})
        self.assertEqual(self.env.wait(lambda: self.kube.ready(ns, "found")[0] == "True" and
                                       self.kube.ready(ns, "found"), "Ready=True")[1], "SecretSynced")

    def test_v1beta1_and_aws_secrets_manager_with_host_credentials(self):
        ns = self.ns("e2e-aws")
        self.env.aws("create-secret", "--name", "prod/api", "--secret-string", '{"key":"k-123","region":"eu"}')
        self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": "aws", "namespace": ns, "annotations": {"sync.rootseal.io/credentials": "moto"}},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}}})
        self.env.external_secret(ns, "api", [{"secretKey": "apikey", "remoteRef": {"key": "prod/api", "property": "key"}}],
                                 store="aws", api="external-secrets.io/v1beta1")
        self.env.wait(lambda: self.kube.secret_value(ns, "api", "apikey") == "k-123", "Secret from moto")

    def test_rotation_updates_secret_and_restarts_opted_in_deployment_once(self):
        ns = self.ns("e2e-rotate")
        self.env.vault.put("rot/key", {"value": "v1"})
        self.env.vault_store(ns)
        self.env.external_secret(ns, "rot", [{"secretKey": "value", "remoteRef": {"key": "rot/key", "property": "value"}}],
                                 refresh="2s")
        self.kube.create("/apis/apps/v1/namespaces/%s/deployments" % ns, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns, "annotations": {"secret.rootseal.io/reload": "other, rot"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
        self.kube.create("/apis/apps/v1/namespaces/%s/deployments" % ns, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "bystander", "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "b"}},
                     "template": {"metadata": {"labels": {"app": "b"}},
                                  "spec": {"containers": [{"name": "b", "image": "nginx"}]}}}})
        dep = "/apis/apps/v1/namespaces/%s/deployments/web" % ns
        self.env.wait(lambda: self.kube.secret_value(ns, "rot", "value") == "v1", "first sync")
        # The workload records the data it runs with, without a restart.
        self.env.wait(lambda: "secret.rootseal.io/reloaded-hashes" in (self.kube.get(dep)["metadata"].get("annotations") or {}),
                      "reload record")
        tmpl = self.kube.get(dep)["spec"]["template"]["metadata"]
        self.assertNotIn("rootseal.io/restartedAt", tmpl.get("annotations") or {})

        self.env.vault.put("rot/key", {"value": "v2"})
        self.env.wait(lambda: self.kube.secret_value(ns, "rot", "value") == "v2", "rotation within the refresh interval",
                      timeout=15)
        restarted = self.env.wait(
            lambda: (self.kube.get(dep)["spec"]["template"]["metadata"].get("annotations") or {}).get("rootseal.io/restartedAt"),
            "pod template restartedAt")
        gen = self.kube.get(dep)["metadata"]["generation"]
        # Two more refreshes of the ExternalSecret (seen as reads in the Vault
        # double) change nothing: the restart happened exactly once.
        reads = lambda: self.env.vault.counters.snapshot()["by_path"].get("GET /v1/secret/data/rot/key", 0)
        base = reads()
        self.env.wait(lambda: reads() >= base + 2, "two more refreshes", timeout=20)
        d = self.kube.get(dep)
        self.assertEqual(d["spec"]["template"]["metadata"]["annotations"]["rootseal.io/restartedAt"], restarted)
        self.assertEqual(d["metadata"]["generation"], gen)
        self.assertEqual(self.kube.secret_value(ns, "rot", "value"), "v2")
        by = self.kube.get("/apis/apps/v1/namespaces/%s/deployments/bystander" % ns)
        self.assertNotIn("annotations", by["spec"]["template"]["metadata"])

    def test_provider_down_keeps_secret_reports_error_and_recovers(self):
        ns = self.ns("e2e-down")
        self.env.vault.put("down/key", {"value": "before"})
        self.env.vault_store(ns)
        self.env.external_secret(ns, "d", [{"secretKey": "value", "remoteRef": {"key": "down/key", "property": "value"}}],
                                 refresh="1s")
        self.env.wait(lambda: self.kube.secret_value(ns, "d", "value") == "before", "first sync")
        rv = self.kube.secret(ns, "d")["metadata"]["resourceVersion"]
        self.env.vault.put("down/key", {"value": "after"})
        self.env.vault.faults.down = "503"
        try:
            ready = self.env.wait(lambda: (self.kube.ready(ns, "d") or ("",))[0] == "False" and self.kube.ready(ns, "d"),
                                  "Ready=False while the store is down", timeout=20)
            self.assertEqual(ready[1], "SecretSyncedError")
            self.assertEqual("could not get secret data from provider", ready[2])
            failed = self.env.wait(lambda: self.kube.event_messages(ns, "d"), "UpdateFailed event")
            self.assertTrue(failed[-1].startswith("error processing spec.data[0] (key: down/key), err: "), failed)
            self.assertNotIn("after", failed[-1])
            s = self.kube.secret(ns, "d")
            self.assertEqual(s["metadata"]["resourceVersion"], rv)
            self.assertEqual(base64.b64decode(s["data"]["value"]).decode(), "before")
            events = self.kube.get("/api/v1/namespaces/%s/events" % ns)["items"]
            self.assertIn("UpdateFailed", [e["reason"] for e in events])
        finally:
            self.env.vault.faults.down = None
        self.env.wait(lambda: self.kube.secret_value(ns, "d", "value") == "after", "recovery", timeout=20)
        self.env.wait(lambda: (self.kube.ready(ns, "d") or ("",))[0] == "True", "Ready=True again")

    def test_deleted_external_secret_honours_creation_policy(self):
        ns = self.ns("e2e-delete")
        self.env.vault.put("del/key", {"value": "x"})
        self.env.vault_store(ns)
        ref = [{"secretKey": "value", "remoteRef": {"key": "del/key", "property": "value"}}]
        self.env.external_secret(ns, "owned", ref)
        self.env.external_secret(ns, "orphan", ref, target={"creationPolicy": "Orphan"})
        self.env.wait(lambda: self.kube.secret(ns, "owned") and self.kube.secret(ns, "orphan"), "both Secrets")
        self.assertNotIn("ownerReferences", self.kube.secret(ns, "orphan")["metadata"])
        self.kube.delete(ESO + "/namespaces/%s/externalsecrets/owned" % ns)
        self.kube.delete(ESO + "/namespaces/%s/externalsecrets/orphan" % ns)
        self.env.wait(lambda: self.kube.secret(ns, "owned") is None, "Owner Secret removed")
        self.assertEqual(self.kube.secret_value(ns, "orphan", "value"), "x")

    def test_creation_policy_change_from_owner_and_none(self):
        """As ESO's reconcile: a policy changed from Owner drops the controller
        ownerReference and the created-by label (applyOwnership); under None the
        template is never applied, so one that cannot render is no error."""
        ns = self.ns("e2e-policy")
        self.env.vault.put("pol/key", {"value": "x"})
        self.env.vault_store(ns)
        ref = [{"secretKey": "value", "remoteRef": {"key": "pol/key", "property": "value"}}]
        es = self.env.external_secret(ns, "pol", ref)
        created_by = "reconcile.external-secrets.io/created-by"
        md = lambda: (self.kube.secret(ns, "pol") or {}).get("metadata") or {}  # noqa: E731
        self.env.wait(lambda: md().get("ownerReferences") and created_by in md().get("labels", {}), "owned Secret")
        self.assertEqual(md()["ownerReferences"][0]["uid"], es["metadata"]["uid"])
        path = ESO + "/namespaces/%s/externalsecrets/pol" % ns
        self.kube.merge_patch(path, {"spec": {"target": {"creationPolicy": "Orphan"}}})
        self.env.wait(lambda: not md().get("ownerReferences") and created_by not in md().get("labels", {}),
                      "ownerReference and created-by label dropped")
        self.assertEqual(self.kube.secret_value(ns, "pol", "value"), "x")
        version = self.kube.secret(ns, "pol")["metadata"]["resourceVersion"]
        self.kube.merge_patch(path, {"spec": {"target": {"creationPolicy": "None",
                                                         "template": {"data": {"x": "{{ .nope }}"}}}}})
        self.env.wait(lambda: ((self.kube.es(ns, "pol").get("status") or {}).get("syncedResourceVersion") or "")
                      .startswith("3-"), "the None spec reconciled")
        self.assertEqual(self.kube.ready(ns, "pol"), ("True", "SecretSynced", "secret synced"))
        self.assertEqual(self.kube.secret(ns, "pol")["metadata"]["resourceVersion"], version)
        self.assertEqual(self.kube.event_messages(ns, "pol"), [])

    def test_deletion_policy_delete_removes_secret_when_remote_key_is_gone(self):
        # The reconciler itself deletes the Secret here (the ExternalSecret, its owner, still exists),
        # with the Secret's uid as a delete precondition.
        ns = self.ns("e2e-delpol")
        self.env.vault.put("gone/key", {"value": "soon gone"})
        self.env.vault_store(ns)
        self.env.external_secret(ns, "d", [{"secretKey": "value", "remoteRef": {"key": "gone/key", "property": "value"}}],
                                 refresh="1s", target={"deletionPolicy": "Delete"})
        self.env.wait(lambda: self.kube.secret_value(ns, "d", "value") == "soon gone", "Secret d synced")
        self.env.vault.remove("gone/key")
        self.env.wait(lambda: self.kube.secret(ns, "d") is None, "Secret d deleted by DeletionPolicy=Delete")
        def deleted_condition():
            r = self.kube.ready(ns, "d")  # None until the status has a Ready condition
            return r if r is not None and r[1] == "SecretDeleted" else None
        ready = self.env.wait(deleted_condition, "Ready condition SecretDeleted")
        self.assertEqual(ready[:2], ("True", "SecretDeleted"))  # as ESO (markAsDone)
        self.assertIsNotNone(self.kube.es(ns, "d"), "the ExternalSecret itself stays")

    def test_cluster_secret_store_refuses_disallowed_namespace(self):
        allowed = self.ns("e2e-css-ok")
        refused = self.ns("e2e-css-no")
        self.env.vault.put("css/key", {"value": "shared"})
        self.kube.create("/api/v1/namespaces/%s/secrets" % allowed, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-token", "namespace": allowed},
            "data": {"token": b64("vault-root-token")}})
        self.kube.create(ESO + "/clustersecretstores", {
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": "shared"},
            "spec": {"provider": {"vault": {"server": self.env.vault.url, "path": "secret",
                                            "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token",
                                                                        "namespace": allowed}}}},
                     "conditions": [{"namespaces": [allowed]}]}})
        ref = [{"secretKey": "value", "remoteRef": {"key": "css/key", "property": "value"}}]
        self.env.external_secret(allowed, "s", ref, store="shared", kind="ClusterSecretStore")
        self.env.external_secret(refused, "s", ref, store="shared", kind="ClusterSecretStore")
        self.env.wait(lambda: self.kube.secret_value(allowed, "s", "value") == "shared", "allowed namespace synced")
        ready = self.env.wait(lambda: self.kube.ready(refused, "s"), "refused status")
        self.assertEqual(ready, ("False", "SecretSyncedError", "could not get secret data from provider"))
        self.env.wait(lambda: any("is not allowed from namespace \"%s\"" % refused in m
                                  for m in self.kube.event_messages(refused, "s")), "UpdateFailed event")
        self.assertIsNone(self.kube.secret(refused, "s"))

    def test_cluster_secret_store_selector_fails_closed_when_labels_cannot_be_read(self):
        ok = self.ns("e2e-sel-ok")
        quarantined = self.ns("e2e-sel-q", {"quarantine": "yes"})
        unread = self.ns("e2e-sel-unread")
        self.env.vault.put("sel/key", {"value": "selected"})
        self.kube.create("/api/v1/namespaces/%s/secrets" % ok, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-token", "namespace": ok},
            "data": {"token": b64("vault-root-token")}})
        self.kube.create(ESO + "/clustersecretstores", {
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": "selected"},
            "spec": {"provider": {"vault": {"server": self.env.vault.url, "path": "secret",
                                            "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token",
                                                                        "namespace": ok}}}},
                     "conditions": [{"namespaceSelector": {"matchExpressions": [
                         {"key": "quarantine", "operator": "DoesNotExist"}]}}]}})
        # Reading the labels of e2e-sel-unread fails (403, as without RBAC on namespaces).
        self.env.k8s.faults.add({"status": 403, "count": 1000000, "method": "GET",
                                 "path": "^/api/v1/namespaces/%s$" % unread})
        self.addCleanup(self.env.k8s.faults.clear)
        ref = [{"secretKey": "value", "remoteRef": {"key": "sel/key", "property": "value"}}]
        for ns in (ok, quarantined, unread):
            self.env.external_secret(ns, "s", ref, store="selected", kind="ClusterSecretStore")
        self.env.wait(lambda: self.kube.secret_value(ok, "s", "value") == "selected", "admitted namespace synced")
        denied = self.env.wait(lambda: self.kube.ready(quarantined, "s"), "refused status")
        self.assertEqual(denied, ("False", "SecretSyncedError", "could not get secret data from provider"))
        self.env.wait(lambda: any("is not allowed from namespace \"%s\"" % quarantined in m
                                  for m in self.kube.event_messages(quarantined, "s")), "UpdateFailed event")
        refused = self.env.wait(lambda: self.kube.ready(unread, "s"), "refused status (labels unread)")
        self.assertEqual(refused, ("False", "SecretSyncedError", "could not get secret data from provider"))
        self.env.wait(lambda: any("refused: could not read namespace labels" in m
                                  for m in self.kube.event_messages(unread, "s")), "UpdateFailed event")
        self.assertIsNone(self.kube.secret(quarantined, "s"))
        self.assertIsNone(self.kube.secret(unread, "s"))

    def test_hand_edited_secret_is_restored(self):
        ns = self.ns("e2e-edit")
        self.env.vault.put("edit/key", {"value": "truth"})
        self.env.vault_store(ns)
        self.env.external_secret(ns, "e", [{"secretKey": "value", "remoteRef": {"key": "edit/key", "property": "value"}}])
        self.env.wait(lambda: self.kube.secret_value(ns, "e", "value") == "truth", "first sync")
        self.kube.merge_patch("/api/v1/namespaces/%s/secrets/e" % ns, {"data": {"value": b64("tampered")}})
        self.env.wait(lambda: self.kube.secret_value(ns, "e", "value") == "truth", "restored after a hand edit")
        self.kube.delete("/api/v1/namespaces/%s/secrets/e" % ns)
        self.env.wait(lambda: self.kube.secret_value(ns, "e", "value") == "truth", "recreated after a deletion")

    def test_conflict_on_update_is_retried_and_converges(self):
        ns = self.ns("e2e-conflict")
        self.env.vault.put("cf/key", {"value": "one"})
        self.env.vault_store(ns)
        self.env.external_secret(ns, "c", [{"secretKey": "value", "remoteRef": {"key": "cf/key", "property": "value"}}],
                                 refresh="1s")
        self.env.wait(lambda: self.kube.secret_value(ns, "c", "value") == "one", "first sync")
        before = self.env.k8s.counters.snapshot()["by_path"].get("PUT /api/v1/namespaces/%s/secrets/c" % ns, 0)
        self.env.k8s.faults.add({"status": 409, "count": 2, "method": "PUT", "path": "/namespaces/%s/secrets/c$" % ns})
        self.env.vault.put("cf/key", {"value": "two"})
        self.env.wait(lambda: self.kube.secret_value(ns, "c", "value") == "two", "converged after 409s", timeout=20)
        puts = self.env.k8s.counters.snapshot()["by_path"].get("PUT /api/v1/namespaces/%s/secrets/c" % ns, 0)
        self.assertGreaterEqual(puts - before, 3)  # two refused, one accepted

    def test_invalid_spec_gets_precise_ready_false(self):
        ns = self.ns("e2e-invalid")
        self.env.vault_store(ns)
        self.env.external_secret(ns, "bad", [{"secretKey": "k", "remoteRef": {"key": "x", "decodingStrategy": "Rot13"}}])
        ready = self.env.wait(lambda: self.kube.ready(ns, "bad"), "status of an invalid spec")
        self.assertEqual(ready[:2], ("False", "SecretSyncedError"))
        self.assertIn("spec.data[0].remoteRef.decodingStrategy: unsupported value 'Rot13'", ready[2])

    def test_host_credentials_are_limited_to_their_namespaces(self):
        ok = self.ns("team-host")
        no = self.ns("e2e-host-no")
        self.env.vault.put("host/key", {"value": "h"})
        for ns in (ok, no):
            self.kube.create(ESO + "/namespaces/%s/secretstores" % ns, {
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": {"name": "central", "namespace": ns,
                             "annotations": {"sync.rootseal.io/credentials": "central"}},
                "spec": {"provider": {"vault": {"server": self.env.vault.url, "path": "secret"}}}})
            self.env.external_secret(ns, "h", [{"secretKey": "value", "remoteRef": {"key": "host/key", "property": "value"}}],
                                     store="central")
        self.env.wait(lambda: self.kube.secret_value(ok, "h", "value") == "h", "host-credential store synced")
        ready = self.env.wait(lambda: self.kube.ready(no, "h"), "refused host credentials")
        self.assertEqual(ready, ("False", "SecretSyncedError", "could not get secret data from provider"))
        self.env.wait(lambda: any("may not be used from namespace" in m for m in self.kube.event_messages(no, "h")),
                      "UpdateFailed event")
        self.assertIsNone(self.kube.secret(no, "h"))


class SyncConfigRefused(unittest.TestCase):
    """A `sync:` section that would put a secret in the configuration, or is
    malformed, stops rootseald at start-up with a message naming the key."""

    def run_config(self, sync_yaml):
        import os
        import subprocess
        from rootseal_testlib import ROOTSEALD, rmtree, tempdir
        d = tempdir("rootseal-synccfg-")
        try:
            cfg = os.path.join(d, "rootseald.yaml")
            with open(cfg, "w") as f:
                f.write("state_dir: %s/state\nsync:\n%s" % (d, sync_yaml))
            r = subprocess.run([ROOTSEALD, "--config", cfg, "--allow-root"], capture_output=True, timeout=30)
            return r.returncode, r.stderr.decode()
        finally:
            rmtree(d)

    def test_inline_secret_refused(self):
        rc, err = self.run_config("  enabled: true\n  stores:\n    v:\n      kind: vault\n      server: http://v\n"
                                  "      namespaces: [a]\n      token: s.inline-secret\n")
        self.assertEqual(rc, 1)
        # Refused naming the key (by the sync parser, or earlier by the
        # configuration's own secret-value check).
        self.assertIn("sync.stores.v.token: ", err)
        self.assertTrue("{file: PATH} or {credential: NAME}" in err or "never written in the configuration" in err, err)
        self.assertNotIn("s.inline-secret", err)

    def test_unknown_and_bad_values_refused(self):
        rc, err = self.run_config("  enabled: true\n  refresh_windw: 5s\n")
        self.assertEqual(rc, 1)
        self.assertIn("sync: unknown option 'refresh_windw'", err)
        rc, err = self.run_config("  enabled: true\n  refresh_window: 5d\n")
        self.assertEqual(rc, 1)
        self.assertIn("sync.refresh_window: invalid duration (unknown unit 'd'", err)
        rc, err = self.run_config("  enabled: true\n  stores:\n    a:\n      kind: aws\n      namespaces: [x]\n")
        self.assertEqual(rc, 1)
        self.assertIn("sync.stores.a.region: required for aws", err)
        rc, err = self.run_config("  enabled: true\n  stores:\n    z:\n      kind: azure\n      namespaces: [x]\n"
                                  "      vault_url: https://kv.vault.azure.net\n      tenant_id: t\n")
        self.assertEqual(rc, 1)
        self.assertIn("sync.stores.z.client_id: required for azure", err)
        rc, err = self.run_config("  enabled: true\n  stores:\n    g:\n      kind: gcp\n      namespaces: [x]\n"
                                  "      project_id: p\n")
        self.assertEqual(rc, 1)
        self.assertIn("sync.stores.g.service_account_json: required for gcp", err)
        rc, err = self.run_config("  enabled: true\n  stores:\n    g:\n      kind: gcp\n      namespaces: [x]\n"
                                  "      project_id: p\n      service_account_json: {file: /nonexistent}\n"
                                  "      gcp_endpoint: secretmanager.example\n")
        self.assertEqual(rc, 1)
        self.assertIn("sync.stores.g.gcp_endpoint: not an http:// or https:// URL", err)
        self.assertNotIn("secretmanager.example", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
