"""AWS Secrets Manager stores on their own credentials (ESO's `auth.secretRef`:
the keys read from a Kubernetes Secret in the Kubernetes API double), pointed
at moto_server through the host option `sync.aws_endpoint` (issue 17, item 5),
with `dataFrom[].extract.property` (item 4), PushSecret `data[].metadata`
(ESO's PushSecretMetadata: tags, description, kmsKeyId, secretPushFormat,
resourcePolicy) and `metadataPolicy: Fetch` (the secret's tags); a store's role chain (`additionalRoles`,
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


# The resource policy of ESO's AWS Secrets Manager guide (docs/provider/aws-secrets-manager.md).
POLICY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
    "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}

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
        # ESO's condition text; the error in the Warning event UpdateFailed.
        self.assertEqual(wait_ready("nickname", "False"),
                         ("False", "SecretSyncedError", "could not get secret data from provider"))
        ENV.wait(lambda: 'error processing spec.dataFrom[0].extract, err: SecretStore "aws" key "friendslist" '
                         'property "nickname": property \'nickname\' not found' in ENV.kube.event_messages(NS, "nickname"),
                 "UpdateFailed event of nickname")
        self.assertEqual(wait_ready("friends-array", "False"),
                         ("False", "SecretSyncedError", "could not get secret data from provider"))
        msg = 'error processing spec.dataFrom[0].extract, err: key "friendslist": extract: property \'friends\' ' \
              'is not a JSON object'
        ENV.wait(lambda: msg in ENV.kube.event_messages(NS, "friends-array"), "UpdateFailed event of friends-array")
        self.assertIsNone(ENV.kube.secret(NS, "nickname"))
        self.assertIsNone(ENV.kube.secret(NS, "friends-array"))
        # Gone, so that their retries do not reach moto during another test's recording.
        for name in ("nickname", "friends-array"):
            ENV.kube.delete(ESO + "/namespaces/%s/externalsecrets/%s" % (NS, name))

    def test_a_credential_secret_without_the_key_is_ready_false_naming_it(self):
        external_secret("badref", {"data": [{"secretKey": "n", "remoteRef": {"key": "friendslist"}}]},
                        store="aws-badref")
        self.assertEqual(wait_ready("badref", "False")[2], "could not get secret data from provider")
        msg = ENV.wait(lambda: ENV.kube.event_messages(NS, "badref"), "UpdateFailed event of badref")[-1]
        self.assertIn("credential Secret %s/awssm-secret has no key 'no-such-key'" % NS, msg)
        self.assertNotIn("testing", msg)

    def test_push_on_secret_ref_credentials_applies_push_secret_metadata_as_eso(self):
        ENV.kube.create("/api/v1/namespaces/%s/secrets" % NS, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src", "namespace": NS},
            "data": {"pw": b64("pushed-1")}})
        ENV.kube.create("/api/v1/namespaces/%s/configmaps" % NS, {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "my-secret-resource-policy", "namespace": NS},
            "data": {"policy.json": json.dumps(POLICY, indent=2)}})

        def push(name, remote, metadata=None):
            item = {"match": {"secretKey": "pw", "remoteRef": {"remoteKey": remote}}}
            if metadata is not None:
                item["metadata"] = metadata
            ENV.kube.create(ESO_PUSH + "/namespaces/%s/pushsecrets" % NS, {
                "apiVersion": "external-secrets.io/v1alpha1", "kind": "PushSecret",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"refreshInterval": "1h", "secretStoreRefs": [{"name": "aws", "kind": "SecretStore"}],
                         "selector": {"secret": {"name": "src"}}, "data": [item]}})

        def ready(name, status):
            return ENV.wait(lambda: ENV.push_ready(NS, name) and ENV.push_ready(NS, name)[0] == status and
                            ENV.push_ready(NS, name), "PushSecret %s %s" % (name, status))

        def tags(remote):
            return {t["Key"]: t["Value"] for t in ENV.aws("describe-secret", "--secret-id", remote).get("Tags", [])}

        # No metadata: ESO's default secretPushFormat, binary.
        push("plain", "tenant-pushed")
        ready("plain", "True")
        got = ENV.aws("get-secret-value", "--secret-id", "tenant-pushed")
        self.assertNotIn("SecretString", got)
        self.assertEqual(base64.b64decode(got["SecretBinary"]), b"pushed-1")

        # The metadata of ESO's docs/snippets/aws-sm-push-secret-with-metadata.yaml (kmsKeyID spelled as
        # there: Go matches JSON field names ignoring case), with the guide's resourcePolicy.
        metadata = {
            "apiVersion": "kubernetes.external-secrets.io/v1alpha1", "kind": "PushSecretMetadata",
            "spec": {"kmsKeyID": "bb123123-b2b0-4f60-ac3a-44a13f0e6b6c", "secretPushFormat": "string",
                     "description": "secret 'managed-by:secret-manager' from 'secret-store:teamb-secret-store'",
                     "tags": {"secret-store": "teamb-secret-store", "refresh-interval": "1h"},
                     "resourcePolicy": {"blockPublicPolicy": True, "policySourceRef": {
                         "kind": "ConfigMap", "name": "my-secret-resource-policy", "key": "policy.json"}}}}
        push("with-metadata", "tenant-with-metadata", metadata)
        self.assertEqual(ready("with-metadata", "True")[1], "Synced")
        d = ENV.aws("describe-secret", "--secret-id", "tenant-with-metadata")
        self.assertEqual(tags("tenant-with-metadata"), {"managed-by": "rootseal", "secret-store": "teamb-secret-store",
                                                        "refresh-interval": "1h"})
        self.assertEqual(d["Description"], "secret 'managed-by:secret-manager' from 'secret-store:teamb-secret-store'")
        self.assertEqual(d["KmsKeyId"], "bb123123-b2b0-4f60-ac3a-44a13f0e6b6c")
        got = ENV.aws("get-secret-value", "--secret-id", "tenant-with-metadata")
        self.assertEqual(got["SecretString"], "pushed-1")
        self.assertNotIn("SecretBinary", got)
        policy = ENV.aws("get-resource-policy", "--secret-id", "tenant-with-metadata")
        self.assertEqual(json.loads(policy["ResourcePolicy"]), POLICY)

        # The tags change in the manifest: ESO's patch, seen on the wire (UntagResource of what the
        # metadata no longer names, then TagResource of them all).
        def retag():
            ENV.kube.merge_patch(ESO_PUSH + "/namespaces/%s/pushsecrets/with-metadata" % NS, {"spec": {"data": [
                {"match": {"secretKey": "pw", "remoteRef": {"remoteKey": "tenant-with-metadata"}},
                 "metadata": dict(metadata, spec=dict(metadata["spec"], tags={"secret-store": "teamb-secret-store",
                                                                             "owner": "team-b"}))}]}})
            ENV.wait(lambda: tags("tenant-with-metadata") == {"managed-by": "rootseal", "owner": "team-b",
                                                            "secret-store": "teamb-secret-store"}, "tags patched")
        calls = ENV.moto_recording(retag)
        ours = [c for c in calls if "aws-cli" not in (c["headers"].get("User-Agent") or "")]
        untag = [json.loads(ENV.recorded_body(c)) for c in ours
                 if c["headers"].get("X-Amz-Target") == "secretsmanager.UntagResource"]
        tag = [json.loads(ENV.recorded_body(c)) for c in ours
               if c["headers"].get("X-Amz-Target") == "secretsmanager.TagResource"]
        self.assertEqual(untag, [{"SecretId": "tenant-with-metadata", "TagKeys": ["refresh-interval"]}])
        self.assertEqual(len(tag), 1)
        self.assertEqual({t["Key"]: t["Value"] for t in tag[0]["Tags"]},
                         {"managed-by": "rootseal", "owner": "team-b", "secret-store": "teamb-secret-store"})
        self.assertEqual(ENV.aws("get-secret-value", "--secret-id", "tenant-with-metadata")["SecretString"], "pushed-1")

        # An unknown key is refused by name, and nothing is written.
        push("typo", "tenant-typo", {"apiVersion": "kubernetes.external-secrets.io/v1alpha1",
                                     "kind": "PushSecretMetadata", "spec": {"tagz": {"team": "a"}}})
        st, reason, msg = ready("typo", "False")
        self.assertEqual(reason, "Errored")
        self.assertEqual(msg, "invalid PushSecret: spec.data[0].metadata.spec.tagz: unknown field (rootseal applies "
                              "PushSecretMetadata to AWS Secrets Manager, Azure Key Vault and GCP Secret Manager, "
                              "whose fields are: tags, description, secretPushFormat, kmsKeyId, resourcePolicy, "
                              "replicationLocations, contentType, expirationDate, labels, annotations, mergePolicy, "
                              "topics, cmekKeyName, replicationLocation)")
        listed = ENV.aws("list-secrets")["SecretList"]
        self.assertNotIn("tenant-typo", [s["Name"] for s in listed])
        for name in ("plain", "with-metadata", "typo"):
            ENV.kube.delete(ESO_PUSH + "/namespaces/%s/pushsecrets/%s" % (NS, name))

    def test_metadata_policy_fetch_reads_the_tags_whole_by_property_and_in_templates(self):
        ENV.aws("create-secret", "--name", "database-credentials", "--secret-string", '{"password":"pw"}',
                "--tags", "Key=dev,Value=alice", "Key=team,Value=a<b>")
        # ESO's parameter-store guide shape (docs/provider/aws-parameter-store.md), on Secrets Manager.
        external_secret("db-tags", {"data": [
            {"secretKey": "tags", "remoteRef": {"metadataPolicy": "Fetch", "key": "database-credentials"}},
            {"secretKey": "developer", "remoteRef": {"metadataPolicy": "Fetch", "key": "database-credentials",
                                                     "property": "dev"}},
            {"secretKey": "password", "remoteRef": {"key": "database-credentials", "property": "password"}}]})
        data = ENV.wait(lambda: secret_data("db-tags"), "Secret db-tags")
        self.assertEqual(data, {"tags": '{"dev":"alice","team":"a\\u003cb\\u003e"}', "developer": "alice",
                                "password": "pw"})
        external_secret("db-tags-tpl", {
            "data": [{"secretKey": "tags", "remoteRef": {"metadataPolicy": "Fetch", "key": "database-credentials"}}],
            "dataFrom": [{"extract": {"metadataPolicy": "Fetch", "key": "database-credentials"}}],
            "target": {"name": "db-tags-tpl", "template": {"data": {
                "owner": "{{ .dev }} of {{ (.tags | fromJson).team }}"}}}})
        data = ENV.wait(lambda: secret_data("db-tags-tpl"), "Secret db-tags-tpl")
        self.assertEqual(data, {"owner": "alice of a<b>"})
        # A missing tag by property is an error naming it; a missing secret is no NoSecretErr.
        external_secret("db-tag-missing", {"data": [{"secretKey": "x", "remoteRef": {
            "metadataPolicy": "Fetch", "key": "database-credentials", "property": "nope"}}]})
        st, reason, msg = wait_ready("db-tag-missing", "False")
        self.assertEqual((reason, msg), ("SecretSyncedError", "could not get secret data from provider"))
        self.assertIn("nope", ENV.wait(lambda: ENV.kube.event_messages(NS, "db-tag-missing"), "its event")[-1])
        # Gone, so that its retries do not reach moto during another test's recording.
        for name in ("db-tags", "db-tags-tpl", "db-tag-missing"):
            ENV.kube.delete(ESO + "/namespaces/%s/externalsecrets/%s" % (NS, name))

    def test_role_chain_is_assumed_in_order_and_its_credentials_reach_secrets_manager(self):
        # A secret of its own: the other tests' ExternalSecrets read friendslist with the store's
        # keys, and one still retrying may reach moto during this recording.
        ENV.aws("create-secret", "--name", "friendslist-via-role", "--secret-string", json.dumps(FRIENDS))

        def sync():
            external_secret("via-role", {"data": [{"secretKey": "last", "remoteRef": {
                "key": "friendslist-via-role", "property": "name.last"}}]}, store="aws-role")
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
              "aws-cli" not in (c["headers"].get("User-Agent") or "") and "friendslist-via-role" in body(c)]
        self.assertTrue(sm)
        for c in sm:
            self.assertIn("Credential=ASIA", c["headers"]["Authorization"])
            self.assertTrue(c["headers"].get("X-Amz-Security-Token"))


if __name__ == "__main__":
    unittest.main()
