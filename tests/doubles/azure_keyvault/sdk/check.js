// Drives the Azure Key Vault double with the real Azure SDK for JavaScript
// (@azure/keyvault-secrets, -certificates and -keys + @azure/identity). Run by
// tests/integration/test_double_azure.py with NODE_EXTRA_CA_CERTS set to the
// double's throwaway CA. Prints one JSON line per step; exits non-zero on a
// failed expectation.
"use strict";
const { SecretClient } = require("@azure/keyvault-secrets");
const { CertificateClient } = require("@azure/keyvault-certificates");
const { KeyClient } = require("@azure/keyvault-keys");
const crypto = require("crypto");
const fs = require("fs");
const { ClientAssertionCredential, ClientSecretCredential } = require("@azure/identity");

// certPem, keyPem (optional): a certificate and its key for the certificate and key steps.
const [url, tenant, clientId, clientSecret, certPem, keyPem] = process.argv.slice(2);
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

  if (certPem) await certificatesAndKeys(cred);

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
// Certificates (import of a PEM with its key; get, by version; 404) and keys
// (import of an RSA JWK; get: the public part; 404) through the SDK's own clients.
async function certificatesAndKeys(cred) {
  const opts = { serviceVersion: "7.4", disableChallengeResourceVerification: true, retryOptions: { maxRetries: 0 } };
  const certs = new CertificateClient(url, cred, opts);
  const pem = fs.readFileSync(certPem, "utf8") + fs.readFileSync(keyPem, "utf8");
  const imported = await certs.importCertificate("tls-cert", Buffer.from(pem), {
    policy: { contentType: "application/x-pem-file" }, tags: { env: "prod" } });
  const der = new crypto.X509Certificate(fs.readFileSync(certPem)).raw;
  assert(Buffer.from(imported.cer).equals(der), "imported cer is the DER");
  const got = await certs.getCertificate("tls-cert");
  assert(Buffer.from(got.cer).equals(der) && got.properties.tags.env === "prod", "getCertificate");
  const thumb = crypto.createHash("sha1").update(der).digest();
  assert(Buffer.from(got.properties.x509Thumbprint).equals(thumb), "x5t is the SHA-1 thumbprint");
  const byVersion = await certs.getCertificateVersion("tls-cert", got.properties.version);
  assert(Buffer.from(byVersion.cer).equals(der), "getCertificateVersion");
  const client = new SecretClient(url, cred, opts);
  const backing = await client.getSecret("tls-cert");
  assert(backing.value === pem && backing.properties.contentType === "application/x-pem-file" && backing.properties.managed,
    "the certificate's secret");
  try {
    await certs.getCertificate("no-such-cert");
    assert(false, "missing certificate must throw");
  } catch (e) {
    assert(e.statusCode === 404 && e.code === "CertificateNotFound", "404 CertificateNotFound, got " + e.statusCode + " " + e.code);
  }
  out("certificate", { version: got.properties.version.length, bytes: der.length });

  const keys = new KeyClient(url, cred, opts);
  const jwk = crypto.createPrivateKey(fs.readFileSync(keyPem)).export({ format: "jwk" });
  const b64u = (s) => Buffer.from(s, "base64url");
  const k = await keys.importKey("tls-key", { kty: "RSA", n: b64u(jwk.n), e: b64u(jwk.e), d: b64u(jwk.d), p: b64u(jwk.p),
    q: b64u(jwk.q), dp: b64u(jwk.dp), dq: b64u(jwk.dq), qi: b64u(jwk.qi), keyOps: ["sign", "verify"] }, { tags: { team: "a" } });
  const key = await keys.getKey("tls-key", { version: k.properties.version });
  assert(key.keyType === "RSA" && Buffer.from(key.key.n).equals(b64u(jwk.n)) && key.key.d === undefined, "getKey: the public part");
  assert(key.keyOperations.join(",") === "sign,verify" && key.properties.tags.team === "a", "key_ops and tags");
  assert(key.id === url + "/keys/tls-key/" + k.properties.version, "kid");
  try {
    await keys.getKey("no-such-key");
    assert(false, "missing key must throw");
  } catch (e) {
    assert(e.statusCode === 404 && e.code === "KeyNotFound", "404 KeyNotFound, got " + e.statusCode + " " + e.code);
  }
  out("key", { kty: key.keyType, ops: key.keyOperations });
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
