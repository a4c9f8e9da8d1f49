"""PushSecret end to end: rootseald (config mode, sync.enabled) against the
Kubernetes API double, the Vault KV v2 double (the central store), moto_server
(AWS Secrets Manager, read back with the aws CLI) and the Azure Key Vault and
GCP Secret Manager doubles, all three clouds on host credentials from
rootseald.yaml.

Every wait is a bounded poll. "Refreshes" are observed, not slept: each
refresh of a PushSecret reads the remote value once (Azure GET /secrets/<n>,
GCP versions/latest:access), so the doubles' request counters count them."""
import datetime
import time
import unittest

from sync_testlib import SyncEnv, PushCloud, ESO, ESO_PUSH, b64

ENV = None


def setUpModule():
    global ENV
    ENV = SyncEnv(refresh_window="1s", push=True).start()


def tearDownModule():
    if ENV:
        ENV.stop()


class PushE2E(unittest.TestCase):
    def setUp(self):
        self.env = ENV
        self.kube = ENV.kube
        self.cloud = PushCloud(ENV)

    def ns(self, name):
        self.kube.namespace(name)
        self.env.push_stores(name, aws_extra={"secretsManager": {"recoveryWindowInDays": 7}})
        return name

    def wait_values(self, names, want, what, timeout=30):
        return self.env.wait(lambda: self.cloud.values(*names) == (want, want, want),
                             "%s = %r on AWS, Azure and GCP" % (what, want), timeout=timeout)

    def wait_ready(self, ns, name, reason="Synced"):
        return self.env.wait(lambda: (self.env.push_ready(ns, name) or (None, None))[1] == reason and
                             self.env.push_ready(ns, name), "PushSecret %s/%s %s" % (ns, name, reason))

    def test_store_rotation_reaches_all_three_clouds_within_one_refresh(self):
        ns = self.ns("push-rotate")
        self.env.vault.put("app/db", {"password": "pw-1", "user": "app"})
        self.env.vault_store(ns)
        refresh = 3.0
        ps = self.env.push_secret(ns, "db", {"remoteRef": {"storeRef": {"name": "vault", "kind": "SecretStore"},
                                                           "key": "app/db"}},
                                  [{"match": {"secretKey": "password", "remoteRef": {"remoteKey": "push-rotate-db"}}}],
                                  refresh="3s")
        self.wait_values(("push-rotate-db", "push-rotate-db", "push-rotate-db"), "pw-1", "first push")
        ready = self.wait_ready(ns, "db")
        self.assertEqual(ready[0], "True")
        st = self.kube.get(ESO_PUSH + "/namespaces/%s/pushsecrets/db" % ns)["status"]
        self.assertEqual(sorted(st["syncedPushSecrets"]), ["SecretStore/aws", "SecretStore/azure", "SecretStore/gcp"])
        self.assertIn("push-rotate-db", st["syncedPushSecrets"]["SecretStore/gcp"])
        # Marked as rootseal's on every cloud.
        tags = {t["Key"]: t["Value"] for t in self.cloud.aws_describe("push-rotate-db")["Tags"]}
        self.assertEqual(tags.get("managed-by"), "rootseal")
        self.assertEqual(self.cloud.azure("GET", "/secrets/push-rotate-db")[1]["tags"]["managed-by"], "rootseal")
        self.assertEqual(self.cloud.gcp("GET", "secrets/push-rotate-db")[1]["labels"]["managed-by"], "rootseal")
        # No finalizer with deletionPolicy None (ESO adds it only for Delete).
        self.assertNotIn("pushsecret.externalsecrets.io/finalizer", ps["metadata"].get("finalizers") or [])
        # Rotation in the store: every cloud has the new value within one
        # refreshInterval (plus the scheduling slack of a shared machine).
        self.env.vault.put("app/db", {"password": "pw-2", "user": "app"})
        t0 = time.monotonic()
        self.wait_values(("push-rotate-db",) * 3, "pw-2", "rotated value", timeout=refresh + 7)
        self.assertLess(time.monotonic() - t0, refresh + 7)
        # One new version each, not more.
        self.assertEqual(self.cloud.aws_versions("push-rotate-db"), 2)
        self.assertEqual(self.cloud.azure_versions("push-rotate-db"), 2)
        self.assertEqual(self.cloud.gcp_versions("push-rotate-db"), 2)

    def test_kubernetes_secret_source_is_pushed_at_once_on_change(self):
        ns = self.ns("push-k8s")
        self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api", "namespace": ns},
            "data": {"token": b64("tok-1")}})
        # refreshInterval 1h: only the watch on the source Secret can explain a quick push.
        self.env.push_secret(ns, "api", {"secret": {"name": "api"}},
                             [{"match": {"secretKey": "token", "remoteRef": {"remoteKey": "push-k8s-api"}}}],
                             refresh="1h")
        self.wait_values(("push-k8s-api",) * 3, "tok-1", "first push")
        self.kube.merge_patch("/api/v1/namespaces/%s/secrets/api" % ns, {"data": {"token": b64("tok-2")}})
        self.wait_values(("push-k8s-api",) * 3, "tok-2", "pushed after the Secret changed", timeout=15)
        self.assertEqual(self.cloud.aws_versions("push-k8s-api"), 2)

    def test_unchanged_value_makes_zero_writes_over_ten_refreshes(self):
        ns = self.ns("push-idle")
        self.env.vault.put("app/idle", {"v": "steady"})
        self.env.vault_store(ns)
        self.env.push_secret(ns, "idle", {"remoteRef": {"storeRef": {"name": "vault"}, "key": "app/idle"}},
                             [{"match": {"secretKey": "v", "remoteRef": {"remoteKey": "push-idle"}}}], refresh="1s")
        self.wait_values(("push-idle",) * 3, "steady", "first push")
        self.wait_ready(ns, "idle")
        versions = (self.cloud.aws_versions("push-idle"), self.cloud.azure_versions("push-idle"),
                    self.cloud.gcp_versions("push-idle"))
        self.assertEqual(versions, (1, 1, 1))
        ps_before = self.kube.get(ESO_PUSH + "/namespaces/%s/pushsecrets/idle" % ns)
        writes_before = self.env.metric("rootseal_sync_push_writes")
        unchanged_before = self.env.metric("rootseal_sync_push_unchanged")
        self.env.azure.counters.reset()
        self.env.gcp.counters.reset()
        az_read = "GET /secrets/push-idle"
        gcp_read = "GET /v1/projects/rootseal-test/secrets/push-idle/versions/latest:access"
        # Ten refreshes of this PushSecret, counted as the reads each one makes.
        self.env.wait(lambda: self.env.azure.stats()["by_path"].get(az_read, 0) >= 10 and
                      self.env.gcp.stats()["by_path"].get(gcp_read, 0) >= 10, "ten refreshes", timeout=60)
        self.assertEqual(self.env.azure.stats()["writes"], 0, self.env.azure.stats()["by_path"])
        self.assertEqual(self.env.gcp.stats()["writes"], 0, self.env.gcp.stats()["by_path"])
        self.assertEqual((self.cloud.aws_versions("push-idle"), self.cloud.azure_versions("push-idle"),
                          self.cloud.gcp_versions("push-idle")), (1, 1, 1))
        self.assertEqual(self.env.metric("rootseal_sync_push_writes"), writes_before)
        self.assertGreaterEqual(self.env.metric("rootseal_sync_push_unchanged") - unchanged_before, 30)
        # No status churn either: the PushSecret was not rewritten.
        ps_after = self.kube.get(ESO_PUSH + "/namespaces/%s/pushsecrets/idle" % ns)
        self.assertEqual(ps_after["metadata"]["resourceVersion"], ps_before["metadata"]["resourceVersion"])

    def test_remote_secret_not_managed_by_rootseal_is_refused_with_the_reason(self):
        ns = self.ns("push-foreign")
        self.env.aws("create-secret", "--name", "push-foreign", "--secret-string", "theirs")
        st, _ = self.cloud.azure("PUT", "/secrets/push-foreign", {"value": "theirs", "tags": {"owner": "someone"}})
        self.assertEqual(st, 200)
        st, _ = self.cloud.gcp("POST", "secrets?secretId=push-foreign", {"replication": {"automatic": {}}})
        self.assertEqual(st, 200)
        self.cloud.gcp("POST", "secrets/push-foreign:addVersion", {"payload": {"data": b64("theirs")}})
        self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src", "namespace": ns},
            "data": {"v": b64("ours")}})
        for store in ("aws", "azure", "gcp"):
            self.env.push_secret(ns, "to-" + store, {"secret": {"name": "src"}},
                                 [{"match": {"secretKey": "v", "remoteRef": {"remoteKey": "push-foreign"}}}],
                                 stores=(store,), deletion="Delete")
        for store in ("aws", "azure", "gcp"):
            ready = self.wait_ready(ns, "to-" + store, reason="Errored")
            self.assertEqual(ready[0], "False")
            # ESO's errFailedSetSecret / errSetSecretFailed: the secret key and the store's name.
            self.assertTrue(ready[2].startswith("set secret failed: could not write remote ref v to target "
                                                "secretstore %s: " % store), ready[2])
            self.assertIn("not managed by rootseal", ready[2])
        self.assertEqual(self.cloud.values("push-foreign", "push-foreign", "push-foreign"), ("theirs",) * 3)
        # Deleting the PushSecrets (deletionPolicy Delete) must not delete what is not ours either.
        for store in ("aws", "azure", "gcp"):
            self.kube.delete(ESO_PUSH + "/namespaces/%s/pushsecrets/to-%s" % (ns, store))
        for store in ("aws", "azure", "gcp"):
            self.env.wait(lambda: (self.env.push_ready(ns, "to-" + store) or ("", "", ""))[2].startswith(
                "Failed to Delete Secrets from Provider: "), "deletion refused for " + store)
        self.assertEqual(self.cloud.values("push-foreign", "push-foreign", "push-foreign"), ("theirs",) * 3)
        self.assertNotIn("DeletedDate", self.cloud.aws_describe("push-foreign"))

    def test_throttling_backs_off_and_converges_without_loss(self):
        ns = self.ns("push-throttle")
        self.env.vault.put("app/thr", {"v": "t-1"})
        self.env.vault_store(ns)
        self.env.push_secret(ns, "thr", {"remoteRef": {"storeRef": {"name": "vault"}, "key": "app/thr"}},
                             [{"match": {"secretKey": "v", "remoteRef": {"remoteKey": "push-throttle"}}}],
                             refresh="2s", stores=("azure", "gcp"))
        self.env.wait(lambda: (self.cloud.azure_value("push-throttle"), self.cloud.gcp_value("push-throttle")) ==
                      ("t-1", "t-1"), "first push")
        # More 429s than the providers' own retry budget (6 attempts): the
        # reconcile fails, the engine backs off and retries.
        self.env.azure.counters.reset()
        self.env.gcp.counters.reset()
        self.env.azure.faults.add({"status": 429, "count": 8, "method": "PUT", "path": "^/secrets/push-throttle$",
                                   "retry_after": 1})
        self.env.gcp.faults.add({"status": 429, "count": 8, "method": "POST", "path": "push-throttle:addVersion$"})
        t0 = time.monotonic()
        self.env.vault.put("app/thr", {"v": "t-2"})
        self.env.wait(lambda: (self.cloud.azure_value("push-throttle"), self.cloud.gcp_value("push-throttle")) ==
                      ("t-2", "t-2"), "converged after throttling", timeout=90)
        elapsed = time.monotonic() - t0
        az = self.env.azure.stats()["by_path"]
        gcp = self.env.gcp.stats()["by_path"]
        # Every 429 was taken, then exactly one successful write each: nothing lost, nothing doubled.
        self.assertEqual(az.get("PUT /secrets/push-throttle"), 9, az)
        self.assertEqual(gcp.get("POST /v1/projects/rootseal-test/secrets/push-throttle:addVersion"), 9, gcp)
        self.assertEqual(self.cloud.azure_versions("push-throttle"), 2)
        self.assertEqual(self.cloud.gcp_versions("push-throttle"), 2)
        # Azure's Retry-After (1 s) was honoured between the eight refusals.
        self.assertGreaterEqual(elapsed, 7.0)
        self.wait_ready(ns, "thr")

    def test_deletion_policy_delete_removes_remote_and_finalizer_none_keeps(self):
        ns = self.ns("push-delete")
        self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src", "namespace": ns},
            "data": {"a": b64("va"), "b": b64("vb")}})
        self.env.push_secret(ns, "del", {"secret": {"name": "src"}},
                             [{"match": {"secretKey": "a", "remoteRef": {"remoteKey": "push-del-a"}}}],
                             deletion="Delete")
        self.env.push_secret(ns, "keep", {"secret": {"name": "src"}},
                             [{"match": {"secretKey": "b", "remoteRef": {"remoteKey": "push-keep-b"}}}],
                             deletion="None")
        self.wait_values(("push-del-a",) * 3, "va", "Delete policy push")
        self.wait_values(("push-keep-b",) * 3, "vb", "None policy push")
        path = ESO_PUSH + "/namespaces/%s/pushsecrets/" % ns
        self.env.wait(lambda: "pushsecret.externalsecrets.io/finalizer" in
                      (self.kube.get(path + "del")["metadata"].get("finalizers") or []), "finalizer added")
        self.assertNotIn("pushsecret.externalsecrets.io/finalizer",
                         self.kube.get(path + "keep")["metadata"].get("finalizers") or [])
        self.kube.delete(path + "del")
        self.kube.delete(path + "keep")
        # The finalizer goes once the remote secrets are removed; then the object is gone.
        self.env.wait(lambda: self.kube.get(path + "del") is None, "PushSecret del gone (finalizer removed)")
        self.assertIsNone(self.kube.get(path + "keep"))
        self.assertEqual(self.cloud.azure("GET", "/secrets/push-del-a")[0], 404)
        self.assertEqual(self.cloud.gcp("GET", "secrets/push-del-a")[0], 404)
        # AWS: scheduled for deletion with the store's recovery window (7 days).
        d = self.cloud.aws_describe("push-del-a")
        self.assertIn("DeletedDate", d)
        when = d["DeletedDate"]
        when = when if isinstance(when, (int, float)) else datetime.datetime.fromisoformat(when).timestamp()
        self.assertAlmostEqual((when - time.time()) / 86400, 7, delta=0.5)  # the store's window, not the default 30
        self.assertIsNone(self.cloud.aws_value("push-del-a"))
        # deletionPolicy None: kept everywhere.
        self.assertEqual(self.cloud.values("push-keep-b", "push-keep-b", "push-keep-b"), ("vb",) * 3)
        self.assertNotIn("DeletedDate", self.cloud.aws_describe("push-keep-b"))

    def test_cluster_store_conditions_fail_closed_on_push(self):
        # A ClusterSecretStore for every namespace not labelled tier=silver.
        # Under "no labels" NotIn holds, so a namespace whose labels cannot be
        # read must be refused, not treated as unlabelled.
        self.kube.create(ESO + "/clustersecretstores", {
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
            "metadata": {"name": "push-css", "annotations": {"sync.rootseal.io/credentials": "moto"}},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}},
                     "conditions": [{"namespaceSelector": {"matchExpressions": [
                         {"key": "tier", "operator": "NotIn", "values": ["silver"]}]}}]}})
        cases = {"push-css-ok": {"tier": "gold"}, "push-css-no": {"tier": "silver"}, "push-css-unread": {}}
        # The API answers 403 to reading the labels of push-css-unread (as without RBAC on namespaces).
        self.env.k8s.faults.add({"status": 403, "count": 1000000, "method": "GET",
                                 "path": "^/api/v1/namespaces/push-css-unread$"})
        self.addCleanup(self.env.k8s.faults.clear)
        for ns, labels in cases.items():
            self.kube.namespace(ns, labels)
            self.kube.create("/api/v1/namespaces/%s/secrets" % ns, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src", "namespace": ns},
                "data": {"v": b64("value-of-" + ns)}})
            self.kube.create(ESO_PUSH + "/namespaces/%s/pushsecrets" % ns, {
                "apiVersion": "external-secrets.io/v1alpha1", "kind": "PushSecret",
                "metadata": {"name": "p", "namespace": ns},
                "spec": {"refreshInterval": "1h", "secretStoreRefs": [{"name": "push-css", "kind": "ClusterSecretStore"}],
                         "selector": {"secret": {"name": "src"}},
                         "data": [{"match": {"secretKey": "v", "remoteRef": {"remoteKey": "remote-" + ns}}}]}})
        self.env.wait(lambda: self.cloud.aws_value("remote-push-css-ok") == "value-of-push-css-ok", "allowed namespace pushed")
        self.assertEqual(self.wait_ready("push-css-ok", "p")[0], "True")
        unread = self.wait_ready("push-css-unread", "p", reason="Errored")
        self.assertIn('from namespace "push-css-unread" refused: could not read namespace labels', unread[2])
        denied = self.wait_ready("push-css-no", "p", reason="Errored")
        self.assertIn('is not allowed from namespace "push-css-no": denied by spec.conditions', denied[2])
        # The refused namespaces never reached the store.
        self.assertIsNone(self.cloud.aws_describe("remote-push-css-no"))
        self.assertIsNone(self.cloud.aws_describe("remote-push-css-unread"))


if __name__ == "__main__":
    unittest.main()
