#!/usr/bin/python3
"""A Google Cloud Storage JSON API v1 test double (objects only) plus Google's
OAuth2 token endpoint for service accounts (Python 3 standard library only).

Objects (https://cloud.google.com/storage/docs/json_api/v1/objects):
POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name=N or
uploadType=multipart (multipart/related: JSON metadata, then the media; a
crc32c or md5Hash in the metadata is checked against the bytes),
ifGenerationMatch / ifGenerationNotMatch preconditions (0: must not exist);
GET /storage/v1/b/{bucket}/o (prefix, delimiter, maxResults, pageToken:
items sorted by name, nextPageToken, prefixes); GET
/storage/v1/b/{bucket}/o/{object} (metadata; alt=media: the bytes with
x-goog-hash crc32c and md5, Range); DELETE .../o/{object} (204).
Errors are the JSON API's {"error":{"code","message","errors":[{"message",
"domain":"global","reason"}]}}.

Authentication is the GCP Secret Manager double's (tests/doubles/
gcp_secretmanager, subclassed here): POST /token exchanges an RS256
service-account JWT whose scope is devstorage.read_write, devstorage.
full_control or cloud-platform; a self-signed service-account JWT is
accepted as the bearer token (aud https://storage.googleapis.com/ or one of
those scopes), as Google's client libraries send it.

Run:   python3 server.py --port 0 [--tls-cert F --tls-key F]
       --service-account sa.json --bucket NAME prints "READY <port>".
Import: GcsDouble(port=0, accounts={email: pem}, buckets=["b"]).start()

Test-only admin endpoints live under /_double/ (no auth): the common ones
(docs/testing-doubles.md), and POST /_double/corrupt {"bucket","name",
"offset"} flips one byte of a stored object (its hashes stay those of the
upload, as with bit rot under a stored checksum).
"""
import base64
import hashlib
import json
import os
import re
import sys
import time
from urllib.parse import quote, unquote

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "common"))
from doublelib import arg_parser, load_double, parse_args, rfc3339_micros  # noqa: E402

_gcp = load_double("gcp_secretmanager")

SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",
          "https://www.googleapis.com/auth/devstorage.full_control",
          "https://www.googleapis.com/auth/cloud-platform")
SERVICE_AUD = "https://storage.googleapis.com/"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
# google.rpc status -> the JSON API's reason
_REASONS = {"UNAUTHENTICATED": "authError", "PERMISSION_DENIED": "forbidden", "NOT_FOUND": "notFound",
            "RESOURCE_EXHAUSTED": "rateLimitExceeded", "UNAVAILABLE": "backendError", "INTERNAL": "backendError",
            "INVALID_ARGUMENT": "invalid", "FAILED_PRECONDITION": "conditionNotMet", "ABORTED": "conflict",
            "ALREADY_EXISTS": "conflict"}


class GcsError(_gcp.GError):
    """A JSON API error; `status` is a google.rpc status or directly a reason."""

    def body(self):
        reason = _REASONS.get(self.status, self.status)
        err = {"message": self.message, "domain": "global", "reason": reason}
        if reason == "authError":
            err.update({"locationType": "header", "location": "Authorization"})
        return {"error": {"code": self.code, "message": self.message, "errors": [err]}}


def crc32c_b64(data):
    return base64.b64encode(_gcp.crc32c(data).to_bytes(4, "big")).decode()


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class GcsState(_gcp.GcpState):
    def __init__(self, accounts, token_ttl, buckets):
        super().__init__({}, accounts, token_ttl)
        self.buckets = {b: {} for b in buckets}  # bucket -> {name: {"meta": {...}, "data": bytes}}
        self.checksummed_uploads = 0  # uploads whose metadata carried a crc32c or md5Hash (checked)
        self.generation = int(time.time() * 1e6)


class GcsHandler(_gcp.GcpHandler):
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _gcp.GcpHandler.dispatch
    scopes = SCOPES
    service_auds = (SERVICE_AUD, SERVICE_AUD.rstrip("/"))
    error_class = GcsError
    resource_name = "objects"

    def _verb(self, path):
        if path.startswith("/upload/"):
            return "insert"
        if re.match(r"^/(?:download/)?storage/v1/b/[^/]+/o$", path):
            return "list"
        return {"GET": "get", "DELETE": "delete", "PATCH": "patch"}.get(self.command, "other")

    def api(self, path, q, body):
        st = self.server.double.state
        m = re.match(r"^(/upload|/download)?/storage/v1/b/([^/]+)/o(?:/(.+))?$", path)
        if not m:
            raise GcsError(404, "notFound", "Not Found")
        kind, bucket, obj = m.group(1), m.group(2), m.group(3)
        if bucket not in st.buckets:
            raise GcsError(404, "notFound", "The specified bucket does not exist.")
        with st.lock:
            objects = st.buckets[bucket]
            if kind == "/upload":
                if self.command != "POST" or obj is not None:
                    raise GcsError(405, "methodNotAllowed", "Method not allowed.")
                return self.insert(bucket, objects, q, body)
            if obj is None:
                if self.command == "GET":
                    return self.list_objects(objects, q)
                raise GcsError(405, "methodNotAllowed", "Method not allowed.")
            name = unquote(obj)
            e = objects.get(name)
            if e is None:
                raise GcsError(404, "notFound", "No such object: %s/%s" % (bucket, name))
            self._preconditions(e, q)
            if self.command == "GET":
                if q.get("alt") == "media" or kind == "/download":
                    return self.media(e)
                return self.send_json(200, e["meta"])
            if self.command == "DELETE":
                del objects[name]
                return self.send_bytes(204, b"", "application/json")
        raise GcsError(405, "methodNotAllowed", "Method not allowed.")

    @staticmethod
    def _preconditions(current, q):
        gen = current["meta"]["generation"] if current else "0"
        if "ifGenerationMatch" in q and q["ifGenerationMatch"] != gen:
            raise GcsError(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.")
        if "ifGenerationNotMatch" in q and q["ifGenerationNotMatch"] == gen:
            raise GcsError(304 if current else 412, "notModified" if current else "conditionNotMet",
                           "At least one of the pre-conditions you specified did not hold.")

    def _multipart(self, body):
        ctype = self.headers.get("Content-Type") or ""
        mb = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.lower().startswith("multipart/related") or not mb:
            raise GcsError(400, "invalid", "Invalid multipart request: Content-Type must be multipart/related "
                           "with a boundary.")
        delim = b"--" + mb.group(1).encode()
        parts = body.split(delim)
        # ['', part1, part2, '--\r\n']
        if len(parts) < 4 or not parts[-1].startswith(b"--"):
            raise GcsError(400, "invalid", "Invalid multipart request with 0 mime parts.")
        out = []
        for p in parts[1:-1]:
            if p.startswith(b"\r\n"):
                p = p[2:]
            head, sep, content = p.partition(b"\r\n\r\n")
            if not sep:
                raise GcsError(400, "invalid", "Invalid multipart request: a part has no header.")
            if content.endswith(b"\r\n"):
                content = content[:-2]
            out.append((head.decode(errors="replace"), content))
        if len(out) != 2:
            raise GcsError(400, "invalid", "Invalid multipart request with %d mime parts." % len(out))
        try:
            meta = json.loads(out[0][1])
        except ValueError:
            raise GcsError(400, "parseError", "Parse Error")
        if not isinstance(meta, dict):
            raise GcsError(400, "invalid", "Invalid metadata.")
        ct = re.search(r"(?im)^content-type:\s*([^\r\n]+)", out[1][0])
        return meta, out[1][1], ct.group(1).strip() if ct else None

    def insert(self, bucket, objects, q, body):
        utype = q.get("uploadType")
        if utype == "media":
            meta, data, ctype = {}, body, self.headers.get("Content-Type")
            name = q.get("name")
        elif utype == "multipart":
            meta, data, ctype = self._multipart(body)
            name = meta.get("name") or q.get("name")
        elif utype == "resumable":
            raise GcsError(400, "invalid", "Resumable uploads are not supported by this double.")
        else:
            raise GcsError(400, "invalid", "Upload requests must include an uploadType URL parameter and a URL "
                           "path beginning with /upload/")
        if not name:
            raise GcsError(400, "required", "Required")
        if len(name.encode()) > 1024 or "\n" in name or "\r" in name:
            raise GcsError(400, "invalid", "The specified object name is not valid.")
        if meta.get("crc32c") is not None and meta["crc32c"] != crc32c_b64(data):
            raise GcsError(400, "invalid", 'Provided CRC32C "%s" doesn\'t match calculated CRC32C "%s".'
                           % (meta["crc32c"], crc32c_b64(data)))
        if meta.get("md5Hash") is not None and meta["md5Hash"] != md5_b64(data):
            raise GcsError(400, "invalid", 'Provided MD5 hash "%s" doesn\'t match calculated MD5 hash "%s".'
                           % (meta["md5Hash"], md5_b64(data)))
        self._preconditions(objects.get(name), q)
        st = self.server.double.state
        if meta.get("crc32c") is not None or meta.get("md5Hash") is not None:
            st.checksummed_uploads += 1
        st.generation += 1
        gen = str(st.generation)
        now = rfc3339_micros()
        d = self.server.double
        enc = quote(name, safe="")
        res = {"kind": "storage#object", "id": "%s/%s/%s" % (bucket, name, gen),
               "selfLink": "%s/storage/v1/b/%s/o/%s" % (d.url, bucket, enc),
               "mediaLink": "%s/download/storage/v1/b/%s/o/%s?generation=%s&alt=media" % (d.url, bucket, enc, gen),
               "name": name, "bucket": bucket, "generation": gen, "metageneration": "1",
               "contentType": meta.get("contentType") or ctype or "application/octet-stream",
               "storageClass": "STANDARD", "size": str(len(data)), "md5Hash": md5_b64(data),
               "crc32c": crc32c_b64(data), "etag": base64.b64encode(gen.encode()).decode(),
               "timeCreated": now, "updated": now, "timeStorageClassUpdated": now}
        if isinstance(meta.get("metadata"), dict):
            res["metadata"] = meta["metadata"]
        objects[name] = {"meta": res, "data": data}
        return self.send_json(200, res)

    def list_objects(self, objects, q):
        prefix = q.get("prefix") or ""
        delim = q.get("delimiter")
        try:
            size = max(1, min(int(q.get("maxResults") or 1000), 1000, self.server.double.page_limit))
        except ValueError:
            raise GcsError(400, "invalid", "Invalid unsigned integer value: '%s'." % q.get("maxResults"))
        token = q.get("pageToken") or ""
        start = ""
        if token:
            try:
                start = base64.urlsafe_b64decode(token.encode()).decode()
            except ValueError:
                raise GcsError(400, "invalid", "Invalid page token.")
        items, prefixes = [], set()
        nxt = None
        for name in sorted(objects):
            if not name.startswith(prefix) or (start and name <= start):
                continue
            if delim and delim in name[len(prefix):]:
                prefixes.add(prefix + name[len(prefix):].split(delim, 1)[0] + delim)
                continue
            if len(items) == size:
                nxt = base64.urlsafe_b64encode(items[-1]["name"].encode()).decode()
                break
            items.append(objects[name]["meta"])
        out = {"kind": "storage#objects"}
        if nxt:
            out["nextPageToken"] = nxt
        if prefixes:
            out["prefixes"] = sorted(prefixes)
        if items:
            out["items"] = items
        return self.send_json(200, out)

    def media(self, e):
        data = e["data"]
        meta = e["meta"]
        headers = {"x-goog-hash": "crc32c=%s,md5=%s" % (meta["crc32c"], meta["md5Hash"]),
                   "x-goog-generation": meta["generation"], "x-goog-metageneration": meta["metageneration"],
                   "x-goog-stored-content-length": meta["size"], "x-goog-stored-content-encoding": "identity",
                   "x-goog-storage-class": meta["storageClass"], "ETag": meta["etag"],
                   "Accept-Ranges": "bytes"}
        rng = re.match(r"^bytes=(\d*)-(\d*)$", self.headers.get("Range") or "")
        if rng and (rng.group(1) or rng.group(2)):
            a, b = rng.group(1), rng.group(2)
            if a:
                lo, hi = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
            else:
                lo, hi = max(0, len(data) - int(b)), len(data) - 1
            if lo > hi or lo >= len(data):
                raise GcsError(416, "requestedRangeNotSatisfiable", "Request range not satisfiable")
            headers["Content-Range"] = "bytes %d-%d/%d" % (lo, hi, len(data))
            return self.send_bytes(206, data[lo:hi + 1], meta["contentType"], headers)
        return self.send_bytes(200, data, meta["contentType"], headers)

    def admin_extra(self, path, q, arg):
        st = self.server.double.state
        if path == "/_double/corrupt" and self.command == "POST":
            with st.lock:
                e = st.buckets.get(arg.get("bucket"), {}).get(arg.get("name"))
                if e is None:
                    self.send_json(404, {"error": "no such object"})
                    return True
                data = bytearray(e["data"])
                data[int(arg.get("offset", 0)) % len(data)] ^= 0x20
                e["data"] = bytes(data)
            self.send_json(200, {})
            return True
        if path == "/_double/objects" and self.command == "GET":
            with st.lock:
                b = st.buckets.get(q.get("bucket"), {})
                self.send_json(200, {"objects": {n: int(e["meta"]["size"]) for n, e in sorted(b.items())}})
            return True
        return False


class GcsDouble(_gcp.GcpSecretManagerDouble):
    """In-process handle: start(), stop(), url, port, state, faults, counters.

    accounts: {client_email: PEM or (PEM, key_id)} (only the public half is
    used); buckets: the bucket names that exist; page_limit: the most items
    one listing page holds (Cloud Storage's is 1000; smaller makes clients page)."""
    handler = GcsHandler

    def __init__(self, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, accounts=None, buckets=("rootseal",),
                 token_ttl=3599, verbose=False, page_limit=1000):
        super().__init__(host, port, tls_cert, tls_key, accounts, None, token_ttl, verbose)
        self.page_limit = page_limit
        for b in buckets:
            if not _BUCKET.match(b):
                raise ValueError("invalid bucket name %r" % b)
        self.state = GcsState(self.state.accounts, token_ttl, buckets)

    def stats(self):
        s = super().stats()
        s["writes"] = sum(v for k, v in s["by_verb"].items() if k in ("insert", "delete", "patch"))
        s["checksummed_uploads"] = self.state.checksummed_uploads
        return s


def main(argv=None):
    ap = arg_parser(__doc__)
    ap.add_argument("--service-account", action="append", default=[],
                    help="service-account key JSON file (client_email + private_key; only the public half is used)")
    ap.add_argument("--bucket", action="append", default=[], help="a bucket that exists (repeatable)")
    ap.add_argument("--token-ttl", type=int, default=3599)
    a = parse_args(ap, argv)
    accounts = {}
    for f in a.service_account:
        with open(f) as fh:
            sa = json.load(fh)
        accounts[sa["client_email"]] = (sa["private_key"], sa.get("private_key_id"))
    d = GcsDouble(a.host, a.port, a.tls_cert, a.tls_key, accounts, a.bucket or ["rootseal"], a.token_ttl, a.verbose)
    return d.serve_main()


if __name__ == "__main__":
    sys.exit(main())
