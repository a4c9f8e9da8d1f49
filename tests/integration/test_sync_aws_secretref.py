"""AWS Secrets Manager stores on their own credentials (ESO's `auth.secretRef`:
the keys read from a Kubernetes Secret in the Kubernetes API double), pointed
at moto_server through the host option `sync.aws_endpoint` (issue 17, item 5),
with `dataFrom[].extract.property` (item 4) and PushSecret `data[].metadata`
refused with the field named (item 3); a store's role chain (`additionalRoles`,
then `role` with `externalID`, `sessionTags`, `transitiveTagKeys`) assumed
through moto's STS, checked on moto's request recorder.

The remote values are written and read back with the real aws CLI. Every wait
is a bounded poll."""
import base64
import json
import os
import tempfile
import unittest
import urllib.parse

from sync_testlib import SyncEnv, ESO, ESO_PUSH, b64

ENV = None
NS = "tenant-aws"
# The value of ESO's AWS Secrets Manager guide ("friendslist").
FRIENDS = {"name": {"first": "Tom", "last": "Anderson"},
           "friends": [{"first": "Dale", "last": "Murphy"}, {"first": "Roger", "last": "Craig"}]}


HOP = "arn:aws:iam::123456789012:role/hop"
ROLE = "arn:aws:iam::123456789012:role/tenant-aws-reader"


def setUpModule():
    global ENV
    # moto's request recorder writes its file here, not into the working directory.
    os.environ["MOTO_RECORDER_FILEPATH"] = os.path.join(tempfile.mkdtemp(prefix="rootseal-moto-rec-"), "recording")
    env = SyncEnv(refresh_window="1s")
    env.sync_extra = "  aws_endpoint: http://127.0.0.1:%d" % env.moto_port
    ENV = env.start()
    ENV.kube.namespace(NS)
    ENV.kube.create("/api/v1/namespaces/%s/secrets" % NS, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "awssm-secret", "namespace": NS},
        "data": {"access-key": b64("testing"), "secret-access-key": b64("testing")}})
    for name, key in (("aws", "access-key"), ("aws-badref", "no-such-key")):
        ENV.kube.create(ESO + "/namespaces/%s/secretstores" % NS, {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": name, "namespace": NS},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1", "auth": {"secretRef": {
                "accessKeyIDSecretRef": {"name": "awssm-secret", "key": key},
                "secretAccessKeySecretRef": {"name": "awssm-secret", "key": "secret-access-key"}}}}}}})
    ENV.kube.create(ESO + "/namespaces/%s/secretstores" % NS, {
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": "aws-role", "namespace": NS},
        "spec": {"provider": {"aws": {
            "service": "SecretsManager", "region": "us-east-1", "additionalRoles": [HOP], "role": ROLE,
            "externalID": "tenant-aws-ext", "sessionTags": [{"key": "team", "value": "a"}, {"key": "env", "value": "ci"}],
            "transitiveTagKeys": ["team"],
            "auth": {"secretRef": {"accessKeyIDSecretRef": {"name": "awssm-secret", "key": "access-key"},
                                   "secretAccessKeySecretRef": {"name": "awssm-secret", "key": "secret-access-key"}}}}}}})
    ENV.aws("create-secret", "--name", "friendslist", "--secret-string", json.dumps(FRIENDS))


def tearDownModule():
    if ENV:
        ENV.stop()


def external_secret(name, spec, store="aws"):
    body = {"refreshInterval": "1h", "secretStoreRef": {"name": store, "kind": "SecretStore"},
            "target": {"name": name}}
    body.update(spec)
    ENV.kube.create(ESO + "/namespaces/%s/externalsecrets" % NS, {
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": NS}, "spec": body})


def secret_data(name):
    s = ENV.kube.secret(NS, name)
    if not s:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}


def wait_ready(name, status):
    return ENV.wait(lambda: (ENV.kube.ready(NS, name) or (None,))[0] == status and ENV.kube.ready(NS, name),
                    "ExternalSecret %s Ready=%s" % (name, status))


class AwsSecretRefAgainstMoto(unittest.TestCase):
    def test_secret_ref_credentials_reach_moto_and_extract_property_spreads_the_object(self):
        # ESO's guide: data[] with a nested property, and dataFrom[].extract
        # with property "name" spreads {"first", "last"} into keys.
        external_secret("friends", {
            "data": [{"secretKey": "my_name", "remoteRef": {"key": "friendslist", "property": "name.first"}},
                     {"secretKey": "first_friend", "remoteRef": {"key": "friendslist", "property": "friends.1.first"}}],
            "dataFrom": [{"extract": {"key": "friendslist", "property": "name"}}]})
        data = ENV.wait(lambda: secret_data("friends"), "Secret friends")
        self.assertEqual(data, {"my_name": "Tom", "first_friend": "Roger", "first": "Tom", "last": "Anderson"})
        self.assertEqual(wait_ready("friends", "True")[:2], ("True", "SecretSynced"))

    def test_extract_property_missing_or_not_an_object_is_ready_false_with_the_property_named(self):
        external_secret("nickname", {"dataFrom": [{"extract": {"key": "friendslist", "property": "nickname"}}]})
        external_secret("friends-array", {"dataFrom": [{"extract": {"key": "friendslist", "property": "friends"}}]})
        st, reason, msg = wait_ready("nickname", "False")
        self.assertEqual(reason, "SecretSyncedError")
        self.assertEqual(msg, 'could not get secret data from provider: SecretStore "aws" key "friendslist" '
                              'property "nickname": property \'nickname\' not found')
        st, reason, msg = wait_ready("friends-array", "False")
        self.assertEqual(msg, 'spec.dataFrom[0].extract: key "friendslist": extract: property \'friends\' '
                              'is not a JSON object')
        self.assertNotIn("Dale", msg)
        self.assertIsNone(ENV.kube.secret(NS, "nickname"))
        self.assertIsNone(ENV.kube.secret(NS, "friends-array"))

    def test_a_credential_secret_without_the_key_is_ready_false_naming_it(self):
        external_secret("badref", {"data": [{"secretKey": "n", "remoteRef": {"key": "friendslist"}}]},
                        store="aws-badref")
        st, reason, msg = wait_ready("badref", "False")
        self.assertIn("credential Secret %s/awssm-secret has no key 'no-such-key'" % NS, msg)
        self.assertNotIn("testing", msg)

    def test_push_on_secret_ref_credentials_and_metadata_refused_with_the_field_named(self):
        ENV.kube.create("/api/v1/namespaces/%s/secrets" % NS, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src", "namespace": NS},
            "data": {"pw": b64("pushed-1")}})

        def push(name, remote, metadata=None):
            item = {"match": {"secretKey": "pw", "remoteRef": {"remoteKey": remote}}}
            if metadata is not None:
                item["metadata"] = metadata
            ENV.kube.create(ESO_PUSH + "/namespaces/%s/pushsecrets" % NS, {
                "apiVersion": "external-secrets.io/v1alpha1", "kind": "PushSecret",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"refreshInterval": "1h", "secretStoreRefs": [{"name": "aws", "kind": "SecretStore"}],
                         "selector": {"secret": {"name": "src"}}, "data": [item]}})

        def ready(name):
            return ENV.wait(lambda: ENV.push_ready(NS, name), "PushSecret %s status" % name)

        push("plain", "tenant-pushed")
        ENV.wait(lambda: ENV.push_ready(NS, "plain") and ENV.push_ready(NS, "plain")[0] == "True", "plain Synced")
        self.assertEqual(ENV.aws("get-secret-value", "--secret-id", "tenant-pushed").get("SecretString"), "pushed-1")

        push("with-metadata", "tenant-with-metadata", {
            "apiVersion": "kubernetes.external-secrets.io/v1alpha1", "kind": "PushSecretMetadata",
            "spec": {"secretPushFormat": "string", "description": "from rootseal", "tags": {"team": "a"}}})
        st, reason, msg = ready("with-metadata")
        self.assertEqual((st, reason), ("False", "Errored"))
        self.assertEqual(msg, "invalid PushSecret: spec.data[0].metadata: not supported by rootseal (provider metadata "
                              "such as PushSecretMetadata tags, description, secretPushFormat or kmsKeyID is not "
                              "applied); remove it")
        # Nothing was written.
        listed = ENV.aws("list-secrets")["SecretList"]
        self.assertNotIn("tenant-with-metadata", [s["Name"] for s in listed])


    def test_role_chain_is_assumed_in_order_and_its_credentials_reach_secrets_manager(self):
        def sync():
            external_secret("via-role", {"data": [{"secretKey": "last", "remoteRef": {
                "key": "friendslist", "property": "name.last"}}]}, store="aws-role")
            self.assertEqual(ENV.wait(lambda: secret_data("via-role"), "Secret via-role"), {"last": "Anderson"})
        calls = ENV.moto_recording(sync)
        body = ENV.recorded_body
        assumed = [(c, urllib.parse.parse_qs(body(c))) for c in calls if "Action=AssumeRole&" in body(c)]
        self.assertGreaterEqual(len(assumed), 2)
        (first_call, first), (second_call, second) = assumed[0], assumed[1]
        # additionalRoles first, bare, signed with the store's own keys ...
        self.assertEqual(first["RoleArn"], [HOP])
        for k in ("ExternalId", "Tags.member.1.Key", "TransitiveTagKeys.member.1"):
            self.assertNotIn(k, first)
        self.assertIn("Credential=testing/", first_call["headers"]["Authorization"])
        self.assertIn("/sts/aws4_request", first_call["headers"]["Authorization"])
        # ... then role, with ESO's options, signed with the hop's credentials.
        self.assertEqual(second["RoleArn"], [ROLE])
        self.assertEqual(second["ExternalId"], ["tenant-aws-ext"])
        self.assertEqual((second["Tags.member.1.Key"], second["Tags.member.1.Value"]), (["team"], ["a"]))
        self.assertEqual((second["Tags.member.2.Key"], second["Tags.member.2.Value"]), (["env"], ["ci"]))
        self.assertEqual(second["TransitiveTagKeys.member.1"], ["team"])
        self.assertTrue(second["RoleSessionName"][0].startswith("aws-go-sdk-"))  # the AWS SDK's default, as ESO
        self.assertIn("Credential=ASIA", second_call["headers"]["Authorization"])
        self.assertTrue(second_call["headers"].get("X-Amz-Security-Token"))
        # Secrets Manager with the role's credentials, never the store's keys.
        sm = [c for c in calls if (c["headers"].get("X-Amz-Target") or "").startswith("secretsmanager.") and
              "aws-cli" not in (c["headers"].get("User-Agent") or "")]
        self.assertTrue(sm)
        for c in sm:
            self.assertIn("Credential=ASIA", c["headers"]["Authorization"])
            self.assertTrue(c["headers"].get("X-Amz-Security-Token"))


if __name__ == "__main__":
    unittest.main()
