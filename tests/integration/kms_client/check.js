// A KMS v2 client that behaves like kube-apiserver (k8s.io/apiserver
// .../envelope/kmsv2): @grpc/grpc-js over unix://, a fresh UUID uid and a
// 3 s deadline with wait-for-ready on every call, and the apiserver's own
// checks on every answer (version, healthz, key_id size and equality with
// Status, ciphertext size, annotation key syntax and total size).
//
// usage: node check.js <socket path> <api.proto>  < ops.json
// ops.json: a list of {op: "status"} | {op: "encrypt", plaintext} |
// {op: "decrypt", ciphertext, key_id, annotations, uid?} |
// {op: "status_until", want: "ok"|"UNAVAILABLE"|..., timeout_ms}
// (bytes as base64). Prints one JSON list: per op {ok: true, ...} or
// {ok: false, code: "<gRPC code name>", details} or {ok: false, invalid: "<the apiserver's complaint>"}.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [socketPath, protoPath] = process.argv.slice(2);
const def = protoLoader.loadSync(protoPath, {keepCase: true, longs: String, enums: String, defaults: true});
const v2 = grpc.loadPackageDefinition(def).v2;
const client = new v2.KeyManagementService('unix://' + socketPath, grpc.credentials.createInsecure());

const codeName = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));
let firstVersion = null;
let statusKeyId = null;

function call(method, request) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 3000);
    client[method](request, new grpc.Metadata({waitForReady: true}), {deadline}, (err, res) => {
      if (err) resolve({ok: false, code: codeName[err.code] || String(err.code), details: err.details});
      else resolve({ok: true, res});
    });
  });
}

// validation.IsFullyQualifiedDomainName: lowercase RFC 1123 subdomain, >= 2 labels.
function isFqdn(name) {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (n.length === 0 || n.length > 253) return false;
  const labels = n.split('.');
  if (labels.length < 2) return false;
  return labels.every((l) => l.length >= 1 && l.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(l));
}

function checkKeyId(keyId) {
  if (typeof keyId !== 'string' || keyId.length === 0) return 'keyID is empty';
  if (Buffer.byteLength(keyId) > 1024) return 'keyID is longer than 1024 bytes';
  return null;
}

async function status() {
  const r = await call('Status', {});
  if (!r.ok) return r;
  const {version, healthz, key_id: keyId} = r.res;
  if (version !== 'v2' && version !== 'v2beta1') return {ok: false, invalid: 'unsupported version ' + version};
  if (firstVersion !== null && version !== firstVersion) return {ok: false, invalid: 'version changed'};
  firstVersion = version;
  if (healthz !== 'ok') return {ok: false, invalid: 'got unexpected healthz status: ' + healthz};
  const bad = checkKeyId(keyId);
  if (bad) return {ok: false, invalid: bad};
  statusKeyId = keyId;
  return {ok: true, version, healthz, key_id: keyId};
}

async function encrypt(op) {
  // The apiserver encrypts a fresh seed when Status shows a key_id; so do we.
  const s = await status();
  if (!s.ok) return s;
  const plaintext = Buffer.from(op.plaintext, 'base64');
  const r = await call('Encrypt', {plaintext, uid: crypto.randomUUID()});
  if (!r.ok) return r;
  const {ciphertext, key_id: keyId, annotations} = r.res;
  const bad = checkKeyId(keyId);
  if (bad) return {ok: false, invalid: bad};
  if (keyId !== statusKeyId) return {ok: false, invalid: 'keyID from Encrypt differs from Status', key_id: keyId};
  if (ciphertext.length === 0 || ciphertext.length > 1024) return {ok: false, invalid: 'encrypted DEK source size'};
  let total = 0;
  const out = {};
  for (const [k, v] of Object.entries(annotations || {})) {
    if (!isFqdn(k)) return {ok: false, invalid: 'annotation key is not a fully qualified domain name: ' + k};
    total += Buffer.byteLength(k) + v.length;
    out[k] = Buffer.from(v).toString('base64');
  }
  if (total > 32 * 1024) return {ok: false, invalid: 'annotations exceed 32 kB'};
  return {ok: true, key_id: keyId, ciphertext: Buffer.from(ciphertext).toString('base64'), annotations: out};
}

async function decrypt(op) {
  const annotations = {};
  for (const [k, v] of Object.entries(op.annotations || {})) annotations[k] = Buffer.from(v, 'base64');
  const r = await call('Decrypt', {
    ciphertext: Buffer.from(op.ciphertext, 'base64'),
    uid: op.uid !== undefined ? op.uid : crypto.randomUUID(),
    key_id: op.key_id,
    annotations,
  });
  if (!r.ok) return r;
  return {ok: true, plaintext: Buffer.from(r.res.plaintext).toString('base64')};
}

// The apiserver's Status loop, faster: polls until the answer is `want`
// ("ok" or a gRPC code name) or the time is up (then the last answer).
async function statusUntil(op) {
  const end = Date.now() + (op.timeout_ms || 10000);
  for (;;) {
    const s = await status();
    const got = s.ok ? 'ok' : (s.code || 'invalid');
    if (got === op.want || Date.now() > end) return Object.assign({waited_for: op.want}, s);
    await new Promise((res) => setTimeout(res, 100));
  }
}

async function main() {
  const ops = JSON.parse(fs.readFileSync(0, 'utf8'));
  const results = [];
  for (const op of ops) {
    if (op.op === 'status') results.push(await status());
    else if (op.op === 'encrypt') results.push(await encrypt(op));
    else if (op.op === 'decrypt') results.push(await decrypt(op));
    else if (op.op === 'status_until') results.push(await statusUntil(op));
    else throw new Error('unknown op ' + op.op);
  }
  process.stdout.write(JSON.stringify(results) + '\n');
  client.close();
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(2);
});
