// Drives the Google Cloud Storage double with the real Node client
// (@google-cloud/storage, JSON API). Run by tests/integration/test_double_gcs.py
// with NODE_EXTRA_CA_CERTS set to the double's throwaway CA. The client signs
// its own service-account JWTs (google-auth-library's JWT with
// useJWTAccessWithScope, as it does outside the default universe), which the
// double verifies with the account's public key. Prints one JSON line per
// step; exits non-zero on a failed expectation.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const { Storage } = require("@google-cloud/storage");
const { JWT } = require("google-auth-library");

const [host, port, saFile, bucketName] = process.argv.slice(2);
const sa = JSON.parse(fs.readFileSync(saFile, "utf8"));
const out = (step, data) => console.log(JSON.stringify({ step, ...data }));
function assert(cond, msg) { if (!cond) { console.error("ASSERTION FAILED: " + msg); process.exit(1); } }

async function code(p) {
  try { await p; return 0; } catch (e) { return { code: e.code, message: e.message }; }
}

async function main() {
  const signer = (email) => {
    const jwt = new JWT({ email, key: sa.private_key, keyId: sa.private_key_id,
                          scopes: ["https://www.googleapis.com/auth/devstorage.read_write"] });
    jwt.useJWTAccessWithScope = true;  // self-signed JWTs with the scope claim, no token exchange
    return jwt;
  };
  const authClient = signer(sa.client_email);
  const storage = new Storage({
    apiEndpoint: `https://${host}:${port}`, useAuthWithCustomEndpoint: true, authClient,
    projectId: sa.project_id, retryOptions: { autoRetry: false },
  });
  const bucket = storage.bucket(bucketName);

  // Uploads (multipart, CRC32C validated by the client), one precondition failure.
  const payloads = {};
  for (const n of ["a", "b", "c"]) {
    const data = crypto.randomBytes(3000 + n.charCodeAt(0));
    payloads[n] = data;
    await bucket.file(`snaps/rootseal-${n}.snap`).save(data, {
      resumable: false, validation: "crc32c", contentType: "application/octet-stream",
      preconditionOpts: { ifGenerationMatch: 0 },
    });
  }
  await bucket.file("other/x.txt").save(Buffer.from("x"), { resumable: false });
  const [meta] = await bucket.file("snaps/rootseal-a.snap").getMetadata();
  out("upload", { name: meta.name, size: String(meta.size), crc32c: meta.crc32c, md5: meta.md5Hash,
                  generation: String(meta.generation) });
  const dup = await code(bucket.file("snaps/rootseal-a.snap").save(Buffer.from("again"), {
    resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }));
  out("duplicate", dup);

  // Listing: pages of two under a prefix, then everything.
  const [page1, next1] = await bucket.getFiles({ prefix: "snaps/", maxResults: 2, autoPaginate: false });
  const [page2, next2] = await bucket.getFiles({ ...next1, autoPaginate: false });
  out("pages", { first: page1.map((f) => f.name), second: page2.map((f) => f.name), token: !!next1,
                 last: next2 === null || next2 === undefined });
  const [all] = await bucket.getFiles();
  out("list", { names: all.map((f) => f.name) });

  // Downloads (the client checks the x-goog-hash CRC32C and MD5).
  const [got] = await bucket.file("snaps/rootseal-b.snap").download({ validation: true });
  assert(Buffer.compare(got, payloads.b) === 0, "download returns the bytes uploaded");
  const [part] = await bucket.file("snaps/rootseal-b.snap").download({ start: 10, end: 19 });
  assert(Buffer.compare(part, payloads.b.subarray(10, 20)) === 0, "ranged download");
  out("download", { bytes: got.length, ranged: part.length });
  out("missing", await code(bucket.file("snaps/nope.snap").download()));

  // Deletion: gone afterwards, deleting again is a 404.
  await bucket.file("snaps/rootseal-c.snap").delete();
  out("deleted", { again: await code(bucket.file("snaps/rootseal-c.snap").delete()),
                   exists: (await bucket.file("snaps/rootseal-c.snap").exists())[0] });

  // A key the double does not know is refused.
  const stranger = new Storage({
    apiEndpoint: `https://${host}:${port}`, useAuthWithCustomEndpoint: true, projectId: sa.project_id,
    retryOptions: { autoRetry: false },
    authClient: signer("stranger@x.iam.gserviceaccount.com"),
  });
  out("stranger", await code(stranger.bucket(bucketName).getFiles()));
  out("done", {});
}
main().catch((e) => { console.error("UNEXPECTED: " + (e.stack || e)); process.exit(2); });
