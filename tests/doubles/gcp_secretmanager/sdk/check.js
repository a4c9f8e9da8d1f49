// Drives the GCP Secret Manager double with the real Node client
// (@google-cloud/secret-manager over its REST transport, fallback: "rest").
// Run by tests/integration/test_double_gcp.py with NODE_EXTRA_CA_CERTS set to
// the double's throwaway CA. Prints one JSON line per step; exits non-zero on
// a failed expectation.
"use strict";
const fs = require("fs");
const { SecretManagerServiceClient } = require("@google-cloud/secret-manager");

const [host, port, saFile, project] = process.argv.slice(2);
// "federated": node check.js federated <host> <port> <audience> <subject token file> <email> <project>
const federated = host === "federated";
const sa = federated ? null : JSON.parse(fs.readFileSync(saFile, "utf8"));
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
// Workload identity federation with google-auth-library's external account
// client (what the Google clients use for an external_account credential):
// STS token exchange with a file-sourced subject token, then service-account
// impersonation; the token reads a secret through the REST transport.
async function mainFederated() {
  const [, fhost, fport, audience, tokenFile, email, fproject] = process.argv.slice(2);
  const { ExternalAccountClient } = require("google-auth-library");
  const base = `https://${fhost}:${fport}`;
  const auth = ExternalAccountClient.fromJSON({
    type: "external_account", audience,
    subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
    token_url: `${base}/v1/token`,
    service_account_impersonation_url: `${base}/v1/projects/-/serviceAccounts/${email}:generateAccessToken`,
    credential_source: { file: tokenFile },
    scopes: ["https://www.googleapis.com/auth/cloud-platform"],
  });
  const { token } = await auth.getAccessToken();
  assert(typeof token === "string" && token.length > 10, "an impersonated access token");
  out("token", { prefix: token.slice(0, 7) });
  const client = new SecretManagerServiceClient({
    fallback: "rest", apiEndpoint: fhost, port: Number(fport), protocol: "https", projectId: fproject, authClient: auth,
  });
  const [v] = await client.accessSecretVersion({ name: `projects/${fproject}/secrets/wif-secret/versions/latest` });
  out("access", { value: Buffer.from(v.payload.data).toString() });
  out("done", {});
}

(federated ? mainFederated() : main()).catch((e) => { console.error("UNEXPECTED: " + (e.stack || e)); process.exit(2); });
