// Drives the GCP Secret Manager double with the real Node client
// (@google-cloud/secret-manager over its REST transport, fallback: "rest").
// Run by tests/integration/test_double_gcp.py with NODE_EXTRA_CA_CERTS set to
// the double's throwaway CA. Prints one JSON line per step; exits non-zero on
// a failed expectation.
"use strict";
const fs = require("fs");
const { SecretManagerServiceClient } = require("@google-cloud/secret-manager");

const [host, port, saFile, project] = process.argv.slice(2);
const sa = JSON.parse(fs.readFileSync(saFile, "utf8"));
const out = (step, data) => console.log(JSON.stringify({ step, ...data }));
function assert(cond, msg) { if (!cond) { console.error("ASSERTION FAILED: " + msg); process.exit(1); } }

async function main() {
  const client = new SecretManagerServiceClient({
    fallback: "rest",
    apiEndpoint: host,
    port: Number(port),
    protocol: "https",
    projectId: project,
    credentials: { client_email: sa.client_email, private_key: sa.private_key },
  });
  const parent = `projects/${project}`;
  const [secret] = await client.createSecret({
    parent, secretId: "db-password",
    secret: { replication: { automatic: {} }, labels: { "managed-by": "rootseal" } },
  });
  assert(/^projects\/\d+\/secrets\/db-password$/.test(secret.name), "secret name uses the project number: " + secret.name);
  assert(secret.labels["managed-by"] === "rootseal", "labels");
  out("create", { name: secret.name });

  try {
    await client.createSecret({ parent, secretId: "db-password", secret: { replication: { automatic: {} } } });
    assert(false, "duplicate create must fail");
  } catch (e) {
    out("duplicate", { code: e.code, message: e.message });
  }

  const payload = Buffer.from("s3cret-v1");
  const [v1] = await client.addSecretVersion({ parent: secret.name, payload: { data: payload } });
  const [v2] = await client.addSecretVersion({ parent: secret.name, payload: { data: Buffer.from("s3cret-v2") } });
  out("addVersion", { v1: v1.name, v2: v2.name, state: v2.state });

  const [latest] = await client.accessSecretVersion({ name: `${secret.name}/versions/latest` });
  assert(latest.payload.data.toString() === "s3cret-v2", "latest payload");
  const [first] = await client.accessSecretVersion({ name: v1.name });
  assert(first.payload.data.toString() === "s3cret-v1", "version 1 payload");
  out("access", { latest: latest.name, crc: String(latest.payload.dataCrc32c) });

  const [got] = await client.getSecret({ name: `projects/${project}/secrets/db-password` });
  assert(got.name === secret.name, "get secret");
  const [list] = await client.listSecrets({ parent });
  out("list", { names: list.map((s) => s.name) });

  try {
    await client.accessSecretVersion({ name: `projects/${project}/secrets/nope/versions/latest` });
    assert(false, "missing secret must fail");
  } catch (e) {
    out("missing", { code: e.code, message: e.message });
  }
  await client.deleteSecret({ name: secret.name });
  try {
    await client.getSecret({ name: secret.name });
    assert(false, "deleted secret must be gone");
  } catch (e) {
    out("deleted", { code: e.code });
  }
  out("done", {});
}
main().catch((e) => { console.error("UNEXPECTED: " + (e.stack || e)); process.exit(2); });
