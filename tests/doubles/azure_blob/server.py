#!/usr/bin/python3
"""An Azure Blob Storage REST test double (block blobs) plus the Microsoft
identity platform token endpoint (Python 3 standard library only).

Path-style addressing, as Azurite and the SDKs use for an IP endpoint:
{url}/{account}/{container}[/{blob}].
Blob service (https://learn.microsoft.com/rest/api/storageservices/):
Create Container (PUT ?restype=container, 201; 409 ContainerAlreadyExists),
List Blobs (GET ?restype=container&comp=list: prefix, delimiter, marker,
maxresults; EnumerationResults XML with NextMarker), Put Blob (PUT,
x-ms-blob-type BlockBlob required; Content-MD5 and x-ms-blob-content-md5
checked: 400 Md5Mismatch; If-None-Match: * and If-Match: 409
BlobAlreadyExists / 412 ConditionNotMet; 201), Get Blob (GET, Range /
x-ms-range: 206), Get Blob Properties (HEAD), Delete Blob (DELETE, 202).
Every request needs x-ms-version (2017-11-09 or later for a bearer token)
and a bearer token for https://storage.azure.com issued by the token
endpoint; errors are <Error><Code>…</Code><Message>…</Message></Error> with
x-ms-error-code, as the service sends them.

The token endpoint (POST /{tenant}/oauth2/v2.0/token, client credentials)
is the Azure Key Vault double's (tests/doubles/azure_keyvault, subclassed).

Run:   python3 server.py --port 0 [--tls-cert F --tls-key F] [--tenant T]
       [--client ID:SECRET] [--account A] [--container C] prints "READY <port>".
Import: AzureBlobDouble(port=0, tenant="t", clients={"id": "secret"},
        accounts={"acct": ["snaps"]}).start()

Test-only admin endpoints live under /_double/ (no auth): the common ones
(docs/testing-doubles.md), POST /_double/corrupt {"account","container",
"name","offset"} flips one byte of a stored blob (its stored Content-MD5
stays that of the upload), GET /_double/objects?account=&container=.
"""
import base64
import datetime
import hashlib
import os
import re
import ssl
import sys
import time
import uuid
from urllib.parse import unquote
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "common"))
from doublelib import arg_parser, load_double, parse_args, retry_after_header  # noqa: E402

_kv = load_double("azure_keyvault")

RESOURCE = "https://storage.azure.com"
MIN_BEARER_VERSION = "2017-11-09"
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def http_date(ts=None):
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ts if ts is not None else time.time()))


class BlobError(Exception):
    MESSAGES = {
        "NoAuthenticationInformation": "Server failed to authenticate the request. Please refer to the information "
                                       "in the www-authenticate header.",
        "InvalidAuthenticationInfo": "Server failed to authenticate the request. Please refer to the information "
                                     "in the www-authenticate header.",
        "AuthenticationFailed": "Server failed to authenticate the request. Make sure the value of Authorization "
                                "header is formed correctly including the signature.",
        "ResourceNotFound": "The specified resource does not exist.",
        "ContainerNotFound": "The specified container does not exist.",
        "ContainerAlreadyExists": "The specified container already exists.",
        "BlobNotFound": "The specified blob does not exist.",
        "BlobAlreadyExists": "The specified blob already exists.",
        "ConditionNotMet": "The condition specified using HTTP conditional header(s) is not met.",
        "Md5Mismatch": "The MD5 value specified in the request did not match with the MD5 value calculated by the "
                       "server.",
        "MissingRequiredHeader": "An HTTP header that's mandatory for this request is not specified.",
        "InvalidHeaderValue": "The value for one of the HTTP headers is not in the correct format.",
        "InvalidQueryParameterValue": "Value for one of the query parameters specified in the request URI is "
                                      "invalid.",
        "InvalidRange": "The range specified is invalid for the current size of the resource.",
        "InvalidResourceName": "The specifed resource name contains invalid characters.",
        "UnsupportedHttpVerb": "The resource doesn't support the specified HTTP verb.",
        "InternalError": "The server encountered an internal error. Please retry the request.",
        "ServerBusy": "The server is currently unable to receive requests. Please retry your request.",
        "OperationTimedOut": "The operation could not be completed within the permitted time.",
    }

    def __init__(self, status, code, detail=None, headers=None, message=None):
        super().__init__(code)
        self.status, self.code, self.detail, self.headers = status, code, detail, dict(headers or {})
        self.message = message or self.MESSAGES.get(code, code)

    def xml(self, request_id):
        msg = "%s\nRequestId:%s\nTime:%s" % (self.message, request_id,
                                             datetime.datetime.now(datetime.timezone.utc).strftime(
                                                 "%Y-%m-%dT%H:%M:%S.%f0Z"))
        extra = ""
        if self.detail:
            extra = "".join("<%s>%s</%s>" % (k, escape(str(v)), k) for k, v in self.detail)
        return ('\ufeff<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s</Message>%s</Error>'
                % (self.code, escape(msg), extra)).encode("utf-8")


class BlobHandler(_kv.AzureHandler):
    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _kv.AzureHandler.dispatch

    def serve_api(self, path, q, body):
        d = self.server.double
        parts = [p for p in path.split("/") if p]
        is_aad = len(parts) >= 2 and parts[1] in ("oauth2", "v2.0")
        if is_aad:
            return super().serve_api(path, q, body)
        rid = str(uuid.uuid4())
        verb = self._verb(parts, q)
        d.counters.add(self.command, path, verb, "blobs")
        try:
            if d.faults.down == "503":
                raise BlobError(503, "ServerBusy")
            rule = self.take_fault(path)
            if rule:
                code = {500: "InternalError", 503: "ServerBusy", 403: "AuthenticationFailed",
                        409: "BlobAlreadyExists", 412: "ConditionNotMet"}.get(rule["status"], "InternalError")
                raise BlobError(rule["status"], code, headers=retry_after_header(rule), message=rule.get("message"))
            self.authorize()
            self.blob_api(parts, q, body, rid)
        except BlobError as e:
            headers = dict(e.headers)
            headers.update({"x-ms-error-code": e.code, "x-ms-request-id": rid, "x-ms-version": self._version()})
            self.send_bytes(e.status, e.xml(rid) if self.command != "HEAD" else b"", "application/xml", headers)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def _verb(self, parts, q):
        if len(parts) == 2 and q.get("comp") == "list":
            return "list"
        if len(parts) == 2:
            return "container"
        return {"PUT": "put", "GET": "get", "HEAD": "head", "DELETE": "delete"}.get(self.command, "other")

    def _version(self):
        return self.headers.get("x-ms-version") or "2021-08-06"

    def authorize(self):
        d = self.server.double
        st = d.state
        challenge = {"WWW-Authenticate": "Bearer authorization_uri=%s/%s/oauth2/authorize resource_id=%s"
                     % (d.authority_host, st.tenant, RESOURCE)}
        auth = self.headers.get("Authorization") or ""
        if not auth:
            raise BlobError(401, "NoAuthenticationInformation", headers=challenge)
        if not auth.startswith("Bearer "):
            raise BlobError(403, "AuthenticationFailed", [("AuthenticationErrorDetail",
                                                          "Only bearer tokens are accepted by this double.")])
        version = self.headers.get("x-ms-version")
        if not version:
            raise BlobError(400, "MissingRequiredHeader", [("HeaderName", "x-ms-version")])
        if version < MIN_BEARER_VERSION:
            raise BlobError(400, "InvalidHeaderValue", [("HeaderName", "x-ms-version"), ("HeaderValue", version)],
                            message="Authentication scheme Bearer is not supported in this version.")
        tok = auth[7:].strip()
        with st.lock:
            info = st.tokens.get(tok)
        if info is None or info[1] <= time.time():
            raise BlobError(401, "InvalidAuthenticationInfo",
                            [("AuthenticationErrorDetail", "Lifetime validation failed. The token is expired."
                              if info else "Issuer validation failed. Issuer did not match.")], headers=challenge)
        if info[2].rstrip("/") != RESOURCE:
            raise BlobError(401, "InvalidAuthenticationInfo",
                            [("AuthenticationErrorDetail", "Audience validation failed. Audience did not match.")],
                            headers=challenge)

    # ------------------------------------------------------------ blobs
    def blob_api(self, parts, q, body, rid):
        d = self.server.double
        st = d.state
        if len(parts) < 2:
            raise BlobError(400, "InvalidQueryParameterValue")
        account, container = parts[0], parts[1]
        if account not in d.accounts:
            raise BlobError(404, "ResourceNotFound")
        if not _CONTAINER.match(container):
            raise BlobError(400, "InvalidResourceName")
        base = {"x-ms-request-id": rid, "x-ms-version": self._version(), "Date": http_date()}
        with st.lock:
            containers = d.accounts[account]
            if len(parts) == 2:
                if q.get("restype") != "container":
                    raise BlobError(400, "InvalidQueryParameterValue", [("QueryParameterName", "restype")])
                if self.command == "PUT" and not q.get("comp"):
                    if container in containers:
                        raise BlobError(409, "ContainerAlreadyExists")
                    containers[container] = {}
                    return self.send_bytes(201, b"", "application/octet-stream",
                                           dict(base, ETag='"0x%X"' % time.time_ns(), **{"Last-Modified": http_date()}))
                if container not in containers:
                    raise BlobError(404, "ContainerNotFound")
                if self.command == "GET" and q.get("comp") == "list":
                    return self.list_blobs(account, container, containers[container], q, base)
                raise BlobError(405, "UnsupportedHttpVerb")
            if container not in containers:
                raise BlobError(404, "ContainerNotFound")
            blobs = containers[container]
            name = "/".join(parts[2:])
            name = unquote(name)
            cur = blobs.get(name)
            if self.command == "PUT" and not q.get("comp"):
                return self.put_blob(blobs, name, cur, body, base)
            if cur is None:
                raise BlobError(404, "BlobNotFound")
            self._conditions(cur)
            if self.command in ("GET", "HEAD"):
                return self.get_blob(cur, base)
            if self.command == "DELETE":
                del blobs[name]
                return self.send_bytes(202, b"", "application/octet-stream", dict(base, **{"x-ms-delete-type-permanent": "true"}))
        raise BlobError(405, "UnsupportedHttpVerb")

    def _conditions(self, cur):
        inm = self.headers.get("If-None-Match")
        im = self.headers.get("If-Match")
        if inm == "*" and cur is not None:
            raise BlobError(409, "BlobAlreadyExists")
        if inm and inm != "*" and cur is not None and inm == cur["etag"]:
            raise BlobError(412, "ConditionNotMet")
        if im and (cur is None or (im != "*" and im != cur["etag"])):
            raise BlobError(412, "ConditionNotMet")

    def put_blob(self, blobs, name, cur, body, base):
        if not name or len(name) > 1024:
            raise BlobError(400, "InvalidResourceName")
        btype = self.headers.get("x-ms-blob-type")
        if not btype:
            raise BlobError(400, "MissingRequiredHeader", [("HeaderName", "x-ms-blob-type")])
        if btype != "BlockBlob":
            raise BlobError(400, "InvalidHeaderValue", [("HeaderName", "x-ms-blob-type"), ("HeaderValue", btype)],
                            message="This double stores block blobs only.")
        self._conditions(cur)
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        sent = self.headers.get("Content-MD5")
        if sent is not None and sent != md5:
            raise BlobError(400, "Md5Mismatch", [("UserSpecifiedMd5", sent), ("ServerCalculatedMd5", md5)])
        if sent is not None:
            self.server.double.checksummed_uploads += 1
        stored_md5 = self.headers.get("x-ms-blob-content-md5") or md5
        now = time.time()
        etag = '"0x%X"' % time.time_ns()
        blobs[name] = {"data": body, "md5": stored_md5, "etag": etag, "modified": now, "created": now,
                       "type": self.headers.get("x-ms-blob-content-type") or self.headers.get("Content-Type")
                       or "application/octet-stream"}
        return self.send_bytes(201, b"", "application/octet-stream", dict(
            base, ETag=etag, **{"Last-Modified": http_date(now), "Content-MD5": md5,
                                "x-ms-request-server-encrypted": "true"}))

    def get_blob(self, cur, base):
        data = cur["data"]
        headers = dict(base, ETag=cur["etag"], **{
            "Last-Modified": http_date(cur["modified"]), "x-ms-blob-type": "BlockBlob",
            "x-ms-creation-time": http_date(cur["created"]), "x-ms-lease-status": "unlocked",
            "x-ms-lease-state": "available", "x-ms-server-encrypted": "true", "Accept-Ranges": "bytes"})
        rng = self.headers.get("x-ms-range") or self.headers.get("Range")
        m = re.match(r"^bytes=(\d+)-(\d*)$", rng or "")
        if m:
            lo = int(m.group(1))
            hi = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            if lo >= len(data) or lo > hi:
                raise BlobError(416, "InvalidRange", headers={"Content-Range": "bytes */%d" % len(data)})
            headers["Content-Range"] = "bytes %d-%d/%d" % (lo, hi, len(data))
            headers["x-ms-blob-content-md5"] = cur["md5"]
            return self.send_bytes(206, data[lo:hi + 1], cur["type"], headers)
        headers["Content-MD5"] = cur["md5"]
        if self.command == "HEAD":
            self.send_response(200)
            headers.update({"Content-Type": cur["type"], "Content-Length": str(len(data))})
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            return None
        return self.send_bytes(200, data, cur["type"], headers)

    def list_blobs(self, account, container, blobs, q, base):
        d = self.server.double
        prefix = q.get("prefix") or ""
        delim = q.get("delimiter")
        marker = q.get("marker") or ""
        try:
            size = int(q.get("maxresults") or 5000)
        except ValueError:
            raise BlobError(400, "InvalidQueryParameterValue", [("QueryParameterName", "maxresults")])
        # Documented: at most 5000 per page (more is not an error); zero or less is a 400.
        if size < 1:
            raise BlobError(400, "OutOfRangeQueryParameterValue", [("QueryParameterName", "maxresults")],
                            message="One of the query parameters specified in the request URI is outside the "
                                    "permissible range.")
        limit = min(size, 5000, d.page_limit)
        entries, seen_prefixes, nxt = [], set(), ""
        for name in sorted(blobs):
            if not name.startswith(prefix) or (marker and name < marker):
                continue
            rest = name[len(prefix):]
            if delim and delim in rest:
                p = prefix + rest.split(delim, 1)[0] + delim
                if p in seen_prefixes:
                    continue
                if len(entries) == limit:
                    nxt = name
                    break
                seen_prefixes.add(p)
                entries.append("<BlobPrefix><Name>%s</Name></BlobPrefix>" % escape(p))
                continue
            if len(entries) == limit:
                nxt = name
                break
            b = blobs[name]
            entries.append(
                "<Blob><Name>%s</Name><Properties><Creation-Time>%s</Creation-Time><Last-Modified>%s</Last-Modified>"
                "<Etag>%s</Etag><Content-Length>%d</Content-Length><Content-Type>%s</Content-Type>"
                "<Content-Encoding /><Content-Language /><Content-CRC64 /><Content-MD5>%s</Content-MD5>"
                "<Cache-Control /><Content-Disposition /><BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier>"
                "<AccessTierInferred>true</AccessTierInferred><LeaseStatus>unlocked</LeaseStatus>"
                "<LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted></Properties>"
                "</Blob>"
                % (escape(name), http_date(b["created"]), http_date(b["modified"]), b["etag"], len(b["data"]),
                   escape(b["type"]), b["md5"]))
        doc = ('\ufeff<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="%s/%s/" '
               'ContainerName="%s">' % (d.url, account, container))
        if prefix:
            doc += "<Prefix>%s</Prefix>" % escape(prefix)
        if marker:
            doc += "<Marker>%s</Marker>" % escape(marker)
        if q.get("maxresults"):
            doc += "<MaxResults>%d</MaxResults>" % size
        if delim:
            doc += "<Delimiter>%s</Delimiter>" % escape(delim)
        doc += "<Blobs>%s</Blobs>" % "".join(entries)
        doc += "<NextMarker>%s</NextMarker>" % escape(nxt) if nxt else "<NextMarker />"
        doc += "</EnumerationResults>"
        return self.send_bytes(200, doc.encode("utf-8"), "application/xml", base)

    def admin_extra(self, path, q, arg):
        d = self.server.double
        st = d.state
        if path == "/_double/corrupt" and self.command == "POST":
            with st.lock:
                b = d.accounts.get(arg.get("account"), {}).get(arg.get("container"), {}).get(arg.get("name"))
                if b is None:
                    self.send_json(404, {"error": "no such blob"})
                    return True
                data = bytearray(b["data"])
                data[int(arg.get("offset", 0)) % len(data)] ^= 0x20
                b["data"] = bytes(data)
            self.send_json(200, {})
            return True
        if path == "/_double/objects" and self.command == "GET":
            with st.lock:
                blobs = d.accounts.get(q.get("account"), {}).get(q.get("container"), {})
                self.send_json(200, {"objects": {n: len(b["data"]) for n, b in sorted(blobs.items())}})
            return True
        return super().admin_extra(path, q, arg)


class AzureBlobDouble(_kv.AzureKeyVaultDouble):
    """In-process handle: start(), stop(), url, port, state, faults, counters.

    One server plays the storage account(s) ({url}/{account}/...) and the
    Microsoft identity platform ({url}/{tenant}/oauth2/v2.0/token).
    accounts: {account: [containers that exist]}; page_limit: the most
    entries one List Blobs page holds (the service's is 5000; smaller makes
    clients follow NextMarker)."""
    handler = BlobHandler

    def __init__(self, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, tenant="tenant-1", clients=None,
                 accounts=None, token_ttl=3599, verbose=False, page_limit=5000):
        self.page_limit = page_limit
        super().__init__(host, port, tls_cert, tls_key, tenant, clients, token_ttl, resource=RESOURCE,
                         verbose=verbose)
        self.accounts = {a: {c: {} for c in cs} for a, cs in (accounts or {"rootseal": ["snapshots"]}).items()}
        self.checksummed_uploads = 0  # Put Blobs that carried a Content-MD5 (checked)

    def stats(self):
        s = super().stats()
        s["checksummed_uploads"] = self.checksummed_uploads
        return s


def main(argv=None):
    ap = arg_parser(__doc__)
    ap.add_argument("--tenant", default="tenant-1")
    ap.add_argument("--client", action="append", default=[], help="CLIENT_ID:CLIENT_SECRET (repeatable)")
    ap.add_argument("--account", default="rootseal")
    ap.add_argument("--container", action="append", default=[], help="a container that exists (repeatable)")
    ap.add_argument("--token-ttl", type=int, default=3599)
    a = parse_args(ap, argv)
    clients = dict(c.split(":", 1) for c in a.client) if a.client else None
    d = AzureBlobDouble(a.host, a.port, a.tls_cert, a.tls_key, a.tenant, clients,
                        {a.account: a.container or ["snapshots"]}, a.token_ttl, a.verbose)
    return d.serve_main()


if __name__ == "__main__":
    sys.exit(main())
