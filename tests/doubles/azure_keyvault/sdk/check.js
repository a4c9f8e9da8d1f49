// Drives the Azure Key Vault double with the real Azure SDK for JavaScript
// (@azure/keyvault-secrets + @azure/identity). Run by
// tests/integration/test_double_azure.py with NODE_EXTRA_CA_CERTS set to the
// double's throwaway CA. Prints one JSON line per step; exits non-zero on a
// failed expectation.
"use strict";
const { SecretClient } = require("@azure/keyvault-secrets");
const { ClientAssertionCredential, ClientSecretCredential } = require("@azure/identity");

const [url, tenant, clientId, clientSecret] = process.argv.slice(2);
// "federated": node check.js federated <url> <tenant> <clientId> <assertion> <unfederated assertion>
const federated = process.argv[2] === "federated";
const out = (step, data) => console.log(JSON.stringify({ step, ...data }));
function assert(cond, msg) { if (!cond) { console.error("ASSERTION FAILED: " + msg); process.exit(1); } }

async function main() {
  const cred = new ClientSecretCredential(tenant, clientId, clientSecret, {
    authorityHost: url,
    disableInstanceDiscovery: true,
  });
  const client = new SecretClient(url, cred, {
    serviceVersion: "7.4",
    disableChallengeResourceVerification: true, // the challenge names https://vault.azure.net, not 127.0.0.1
    retryOptions: { maxRetries: 3, retryDelayInMs: 100, maxRetryDelayInMs: 5000 },
  });

  const s1 = await client.setSecret("db-password", "p1", { tags: { "managed-by": "rootseal" }, contentType: "text/plain" });
  assert(s1.value === "p1" && s1.properties.tags["managed-by"] === "rootseal", "setSecret result");
  assert(s1.properties.version && s1.properties.version.length === 32, "version id");
  out("set", { version: s1.properties.version, id: s1.properties.id, name: s1.name });

  const s2 = await client.setSecret("db-password", "p2");
  const latest = await client.getSecret("db-password");
  assert(latest.value === "p2" && latest.properties.version === s2.properties.version, "latest is p2");
  const old = await client.getSecret("db-password", { version: s1.properties.version });
  assert(old.value === "p1" && old.properties.contentType === "text/plain", "version read");
  out("get", { latest: latest.properties.version, old: old.properties.version, enabled: latest.properties.enabled });

  let versions = [];
  for await (const p of client.listPropertiesOfSecretVersions("db-password")) versions.push(p.version);
  assert(versions.length === 2, "two versions");
  let names = [];
  for await (const p of client.listPropertiesOfSecrets()) names.push(p.name);
  out("list", { versions: versions.length, names });

  const upd = await client.updateSecretProperties("db-password", s2.properties.version, { tags: { "managed-by": "rootseal", team: "a" } });
  assert(upd.tags.team === "a", "tags updated");

  try {
    await client.getSecret("missing-one");
    assert(false, "missing secret must throw");
  } catch (e) {
    assert(e.statusCode === 404 && e.code === "SecretNotFound", "404 SecretNotFound, got " + e.statusCode + " " + e.code);
    out("missing", { status: e.statusCode, code: e.code });
  }
  try {
    await client.setSecret("bad_name", "x");
    assert(false, "bad name must throw");
  } catch (e) {
    out("badname", { status: e.statusCode, code: e.code, message: e.message });
  }

  // Throttling: the double answers one 429 with Retry-After: 1; the SDK
  // waits and retries on its own.
  await fetch(url + "/_double/faults", { method: "POST", body: JSON.stringify({ status: 429, count: 1, retry_after: 1, path: "/secrets/db-password" }) });
  const t0 = Date.now();
  const again = await client.getSecret("db-password");
  assert(again.value === "p2", "value after 429 retry");
  out("throttled", { elapsed_ms: Date.now() - t0 });

  const poller = await client.beginDeleteSecret("db-password", { intervalInMs: 50 });
  const deleted = await poller.pollUntilDone();
  assert(deleted.name === "db-password" && deleted.recoveryId, "deleted secret");
  try {
    await client.setSecret("db-password", "p3");
    assert(false, "reuse of a deleted name must throw");
  } catch (e) {
    out("deleted-conflict", { status: e.statusCode, code: e.code });
  }
  await client.purgeDeletedSecret("db-password");
  const s3 = await client.setSecret("db-password", "p3");
  assert(s3.value === "p3", "set after purge");
  out("purged", {});

  // A wrong client secret: the credential fails with AADSTS7000215.
  const bad = new SecretClient(url, new ClientSecretCredential(tenant, clientId, "wrong", { authorityHost: url, disableInstanceDiscovery: true }),
    { serviceVersion: "7.4", disableChallengeResourceVerification: true, retryOptions: { maxRetries: 0 } });
  try {
    await bad.getSecret("db-password");
    assert(false, "bad credential must fail");
  } catch (e) {
    out("badcred", { name: e.name, message: String(e.message).slice(0, 200) });
  }
  out("done", {});
}
// Workload identity federation: ClientAssertionCredential (what
// WorkloadIdentityCredential uses) with a Kubernetes ServiceAccount token.
async function mainFederated() {
  const [, furl, ftenant, fclient, assertion, stranger] = process.argv.slice(2);
  const opts = { authorityHost: furl, disableInstanceDiscovery: true };
  const cred = new ClientAssertionCredential(ftenant, fclient, async () => assertion, opts);
  const client = new SecretClient(furl, cred, { serviceVersion: "7.4", disableChallengeResourceVerification: true });
  const s = await client.setSecret("wi-secret", "via-federation");
  const got = await client.getSecret("wi-secret");
  assert(s.value === "via-federation" && got.value === "via-federation", "federated set/get");
  out("federated", { version: got.properties.version.length });
  const other = new ClientAssertionCredential(ftenant, fclient, async () => stranger, opts);
  try {
    await other.getToken("https://vault.azure.net/.default");
    assert(false, "an unfederated subject must fail");
  } catch (e) {
    out("unfederated", { name: e.name, message: String(e.message).slice(0, 300) });
  }
  out("done", {});
}

(federated ? mainFederated() : main()).catch((e) => { console.error("UNEXPECTED: " + (e.stack || e)); process.exit(2); });
