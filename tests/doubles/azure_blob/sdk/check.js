// Drives the Azure Blob Storage double with the real Azure SDK for JavaScript
// (@azure/storage-blob + @azure/identity's ClientSecretCredential against the
// double's token endpoint). Run by tests/integration/test_double_azure_blob.py
// with NODE_EXTRA_CA_CERTS set to the double's throwaway CA. Prints one JSON
// line per step; exits non-zero on a failed expectation.
"use strict";
const crypto = require("crypto");
const { BlobServiceClient } = require("@azure/storage-blob");
const { ClientSecretCredential } = require("@azure/identity");

const [url, tenant, clientId, clientSecret, account, container] = process.argv.slice(2);
const out = (step, data) => console.log(JSON.stringify({ step, ...data }));
function assert(cond, msg) { if (!cond) { console.error("ASSERTION FAILED: " + msg); process.exit(1); } }

async function failure(p) {
  try { await p; return null; } catch (e) { return { status: e.statusCode, code: e.code || (e.details && e.details.errorCode) }; }
}

function service(secret) {
  const cred = new ClientSecretCredential(tenant, clientId, secret, { authorityHost: url, disableInstanceDiscovery: true });
  return new BlobServiceClient(`${url}/${account}`, cred, { retryOptions: { maxTries: 1 } });
}

async function main() {
  const svc = service(clientSecret);
  const made = svc.getContainerClient("made-by-sdk");
  await made.create();
  out("container", { again: await failure(made.create()) });

  const cc = svc.getContainerClient(container);
  const payloads = {};
  for (const n of ["a", "b", "c"]) {
    const data = crypto.randomBytes(4000 + n.charCodeAt(0));
    payloads[n] = data;
    const md5 = crypto.createHash("md5").update(data).digest();
    const r = await cc.getBlockBlobClient(`snaps/rootseal-${n}.snap`).upload(data, data.length, {
      blobHTTPHeaders: { blobContentMD5: md5, blobContentType: "application/octet-stream" },
      conditions: { ifNoneMatch: "*" },
    });
    assert(Buffer.compare(Buffer.from(r.contentMD5), md5) === 0, "Put Blob echoes the Content-MD5");
  }
  await cc.getBlockBlobClient("other/x.txt").upload("x", 1);
  out("upload", { dup: await failure(cc.getBlockBlobClient("snaps/rootseal-a.snap").upload("again", 5,
                                                                                    { conditions: { ifNoneMatch: "*" } })) });

  const pages = [];
  for await (const page of cc.listBlobsFlat({ prefix: "snaps/" }).byPage({ maxPageSize: 2 })) {
    pages.push({ names: page.segment.blobItems.map((b) => b.name),
                 sizes: page.segment.blobItems.map((b) => b.properties.contentLength),
                 marker: !!page.continuationToken });
  }
  out("pages", { pages });
  const prefixes = [];
  for await (const item of cc.listBlobsByHierarchy("/")) prefixes.push(item.kind + ":" + item.name);
  out("hierarchy", { items: prefixes });

  const got = await cc.getBlobClient("snaps/rootseal-b.snap").downloadToBuffer();
  assert(Buffer.compare(got, payloads.b) === 0, "downloadToBuffer returns the bytes");
  const dl = await cc.getBlobClient("snaps/rootseal-b.snap").download(0);
  const chunks = [];
  for await (const c of dl.readableStreamBody) chunks.push(c);
  assert(Buffer.compare(Buffer.concat(chunks), payloads.b) === 0, "download stream");
  const props = await cc.getBlobClient("snaps/rootseal-b.snap").getProperties();
  out("download", { bytes: got.length, type: props.blobType, length: props.contentLength,
                    md5: Buffer.from(props.contentMD5).toString("base64") });
  out("missing", await failure(cc.getBlobClient("snaps/nope.snap").download(0)));

  await cc.getBlobClient("snaps/rootseal-c.snap").delete();
  out("deleted", { again: await failure(cc.getBlobClient("snaps/rootseal-c.snap").delete()),
                   exists: await cc.getBlobClient("snaps/rootseal-c.snap").exists() });
  out("noContainer", await failure(svc.getContainerClient("nope").getBlobClient("x").download(0)));

  let wrong = null;
  try { await service("not-the-secret").getContainerClient(container).getBlobClient("other/x.txt").download(0); }
  catch (e) { wrong = { name: e.name, invalidClient: /invalid_client|7000215/.test(e.message) }; }
  out("wrongSecret", wrong);
  out("done", {});
}
main().catch((e) => { console.error("UNEXPECTED: " + (e.stack || e)); process.exit(2); });
