"""The Azure Blob Storage double (tests/doubles/azure_blob) checked against the
real Azure SDK for JavaScript (@azure/storage-blob with @azure/identity's
ClientSecretCredential, pinned in tests/doubles/azure_blob/sdk/
package-lock.json) over TLS with a throwaway CA, and against the Blob REST
API's documented answers with raw HTTP (Put Blob, List Blobs pages and
NextMarker, Get Blob, Delete Blob, conditional headers, Content-MD5, the
<Error><Code> body and x-ms-error-code)."""
import base64
import hashlib
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
from urllib.parse import urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLES = os.path.join(HERE, "..", "doubles")
sys.path.insert(0, os.path.join(DOUBLES, "common"))
from doublelib import load_double  # noqa: E402
from rootseal_testlib import SERVER_EXT, make_tls_material, npm_install, rmtree, tempdir  # noqa: E402

blob = load_double("azure_blob")

TENANT, CLIENT, SECRET = "72f988bf-tenant", "snapshots-app", "bl0b-s3cret"
ACCOUNT, CONTAINER = "rootsealbackups", "snapshots"
VERSION = "2021-08-06"


def test_sdk(d, ca):
    work = npm_install("azure-blob", os.path.join(DOUBLES, "azure_blob", "sdk"))
    p = subprocess.run(["node", "check.js", d.url, TENANT, CLIENT, SECRET, ACCOUNT, CONTAINER], cwd=work,
                       env=dict(os.environ, NODE_EXTRA_CA_CERTS=ca), capture_output=True, text=True, timeout=180)
    if p.returncode != 0:
        raise AssertionError("Azure Blob SDK check failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
    steps = {}
    for line in p.stdout.splitlines():
        o = json.loads(line)
        steps[o.pop("step")] = o
    assert steps["container"]["again"] == {"status": 409, "code": "ContainerAlreadyExists"}, steps
    assert steps["upload"] == {"dup": {"status": 409, "code": "BlobAlreadyExists"}}, steps["upload"]
    blobs = d.accounts[ACCOUNT][CONTAINER]
    sizes = [4000 + ord(n) for n in "abc"]  # what check.js uploaded (c is deleted by now)
    assert steps["pages"]["pages"] == [
        {"names": ["snaps/rootseal-a.snap", "snaps/rootseal-b.snap"], "sizes": sizes[:2], "marker": True},
        {"names": ["snaps/rootseal-c.snap"], "sizes": sizes[2:], "marker": False}], steps["pages"]
    assert steps["hierarchy"]["items"] == ["prefix:other/", "prefix:snaps/"], steps["hierarchy"]
    b = blobs["snaps/rootseal-b.snap"]
    assert steps["download"] == {"bytes": len(b["data"]), "type": "BlockBlob", "length": len(b["data"]),
                                 "md5": base64.b64encode(hashlib.md5(b["data"]).digest()).decode()}, steps
    assert steps["missing"] == {"status": 404, "code": "BlobNotFound"}, steps["missing"]
    assert steps["deleted"] == {"again": {"status": 404, "code": "BlobNotFound"}, "exists": False}, steps
    assert steps["noContainer"] == {"status": 404, "code": "ContainerNotFound"}, steps["noContainer"]
    assert steps["wrongSecret"]["invalidClient"], steps["wrongSecret"]
    assert "done" in steps
    print("Azure Blob SDK checks passed")


class Rest:
    def __init__(self, d, ca):
        self.d, self.ctx, self.token = d, ssl.create_default_context(cafile=ca), None

    def req(self, method, path, body=None, headers=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.d.port, context=self.ctx, timeout=10)
        try:
            h = {"x-ms-version": VERSION}
            if self.token:
                h["Authorization"] = "Bearer " + self.token
            h.update(headers or {})
            h = {k: v for k, v in h.items() if v is not None}
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()


def error_code(raw):
    m = re.search(rb"<Error><Code>([A-Za-z0-9]+)</Code><Message>", raw)
    return m.group(1).decode() if m else None


def test_rest(d, rest):
    base = "/%s/%s" % (ACCOUNT, CONTAINER)
    # No token: 401 NoAuthenticationInformation with the bearer challenge.
    st, h, raw = rest.req("GET", base + "?restype=container&comp=list")
    assert st == 401 and error_code(raw) == "NoAuthenticationInformation", (st, raw)
    assert h["x-ms-error-code"] == "NoAuthenticationInformation", h
    assert h["www-authenticate"].startswith("Bearer authorization_uri=") and \
        "resource_id=https://storage.azure.com" in h["www-authenticate"], h
    assert raw.startswith("\ufeff<?xml".encode()), raw[:20]
    # A token for Key Vault's audience is not one for Storage.
    form = {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET}
    st, _, raw = rest.req("POST", "/%s/oauth2/v2.0/token" % TENANT,
                          urlencode(dict(form, scope="https://vault.azure.net/.default")),
                          {"Content-Type": "application/x-www-form-urlencoded", "x-ms-version": None})
    assert st == 200, raw
    rest.token = json.loads(raw)["access_token"]
    st, _, raw = rest.req("GET", base + "?restype=container&comp=list")
    assert st == 401 and error_code(raw) == "InvalidAuthenticationInfo" and b"Audience validation failed" in raw, raw
    st, _, raw = rest.req("POST", "/%s/oauth2/v2.0/token" % TENANT,
                          urlencode(dict(form, scope="https://storage.azure.com/.default")),
                          {"Content-Type": "application/x-www-form-urlencoded", "x-ms-version": None})
    rest.token = json.loads(raw)["access_token"]
    # x-ms-version is required, and must know bearer tokens.
    st, h, raw = rest.req("GET", base + "?restype=container&comp=list", headers={"x-ms-version": None})
    assert st == 400 and error_code(raw) == "MissingRequiredHeader" and b"<HeaderName>x-ms-version<" in raw, raw
    st, _, raw = rest.req("GET", base + "?restype=container&comp=list", headers={"x-ms-version": "2015-02-21"})
    assert st == 400 and error_code(raw) == "InvalidHeaderValue", raw

    # An empty listing, then Put Blob.
    st, _, raw = rest.req("GET", base + "?restype=container&comp=list")
    assert st == 200 and b"<Blobs></Blobs><NextMarker /></EnumerationResults>" in raw, raw
    data = os.urandom(3000)
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    st, h, raw = rest.req("PUT", base + "/p/one.snap", data, {"Content-Type": "application/octet-stream"})
    assert st == 400 and error_code(raw) == "MissingRequiredHeader" and b"x-ms-blob-type" in raw, raw
    st, h, raw = rest.req("PUT", base + "/p/one.snap", data, {"x-ms-blob-type": "BlockBlob",
                                                            "Content-MD5": base64.b64encode(b"\0" * 16).decode()})
    assert st == 400 and error_code(raw) == "Md5Mismatch" and h["x-ms-error-code"] == "Md5Mismatch", raw
    assert b"<ServerCalculatedMd5>%s</ServerCalculatedMd5>" % md5.encode() in raw, raw
    put = {"x-ms-blob-type": "BlockBlob", "Content-MD5": md5, "If-None-Match": "*"}
    st, h, raw = rest.req("PUT", base + "/p/one.snap", data, put)
    assert st == 201 and raw == b"" and h["content-md5"] == md5 and h["etag"] and h["last-modified"], (st, h)
    assert h["x-ms-request-server-encrypted"] == "true" and h["x-ms-version"] == VERSION, h
    st, h, raw = rest.req("PUT", base + "/p/one.snap", b"other", dict(put, **{"Content-MD5": None}))
    assert st == 409 and error_code(raw) == "BlobAlreadyExists", raw
    for n in ("p/two.snap", "p/sub/three.snap", "q/four.snap"):
        assert rest.req("PUT", base + "/" + n, n.encode(), {"x-ms-blob-type": "BlockBlob"})[0] == 201
    st, _, raw = rest.req("PUT", "/%s/nope/x" % ACCOUNT, b"x", {"x-ms-blob-type": "BlockBlob"})
    assert st == 404 and error_code(raw) == "ContainerNotFound", raw

    # List Blobs: prefix, delimiter, pages of one with NextMarker.
    st, _, raw = rest.req("GET", base + "?restype=container&comp=list&prefix=p/&delimiter=/")
    doc = raw.decode("utf-8-sig")
    assert re.findall(r"<Blob><Name>([^<]+)</Name>", doc) == ["p/one.snap", "p/two.snap"], doc
    assert re.findall(r"<BlobPrefix><Name>([^<]+)</Name>", doc) == ["p/sub/"], doc
    assert "<Content-Length>3000</Content-Length>" in doc and "<BlobType>BlockBlob</BlobType>" in doc, doc
    assert doc.startswith('<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint='), doc
    names, marker = [], ""
    for _ in range(10):
        st, _, raw = rest.req("GET", base + "?restype=container&comp=list&prefix=p/&maxresults=1"
                              + ("&marker=" + marker if marker else ""))
        doc = raw.decode("utf-8-sig")
        names += re.findall(r"<Blob><Name>([^<]+)</Name>", doc)
        m = re.search(r"<NextMarker>([^<]+)</NextMarker>", doc)
        assert "<MaxResults>1</MaxResults>" in doc, doc
        if not m:
            assert "<NextMarker />" in doc, doc
            break
        marker = m.group(1)
    assert names == ["p/one.snap", "p/sub/three.snap", "p/two.snap"], names
    # More than 5000 asked is not an error (the service caps it); zero is.
    assert rest.req("GET", base + "?restype=container&comp=list&maxresults=9000")[0] == 200
    st, _, raw = rest.req("GET", base + "?restype=container&comp=list&maxresults=0")
    assert st == 400 and error_code(raw) == "OutOfRangeQueryParameterValue", raw

    # Get Blob: bytes with Content-MD5; a range; Delete Blob: 202, then 404.
    st, h, raw = rest.req("GET", base + "/p/one.snap")
    assert st == 200 and raw == data and h["content-md5"] == md5 and h["x-ms-blob-type"] == "BlockBlob", (st, h)
    st, h, raw = rest.req("GET", base + "/p/one.snap", headers={"x-ms-range": "bytes=10-19"})
    assert st == 206 and raw == data[10:20] and h["content-range"] == "bytes 10-19/3000", (st, h)
    st, h, raw = rest.req("DELETE", base + "/p/one.snap")
    assert st == 202 and raw == b"", (st, raw)
    st, h, raw = rest.req("DELETE", base + "/p/one.snap")
    assert st == 404 and error_code(raw) == "BlobNotFound" and h["x-ms-error-code"] == "BlobNotFound", raw

    # Faults: a 500 InternalError; a dropped connection stores nothing.
    d.faults.add({"status": 500, "count": 1, "method": "PUT"})
    st, h, raw = rest.req("PUT", base + "/p/five.snap", b"5", {"x-ms-blob-type": "BlockBlob"})
    assert st == 500 and error_code(raw) == "InternalError", raw
    d.faults.add({"status": 0, "count": 1, "method": "PUT"})
    try:
        rest.req("PUT", base + "/p/five.snap", b"5", {"x-ms-blob-type": "BlockBlob"})
        raise AssertionError("the connection should have been dropped")
    except (ConnectionError, http.client.HTTPException):
        pass
    assert "p/five.snap" not in d.accounts[ACCOUNT][CONTAINER]
    print("REST checks passed")


def main():
    work = tempdir("azblob-double-")
    try:
        make_tls_material(work, leaves=(("server", "127.0.0.1", SERVER_EXT),))
        ca = os.path.join(work, "ca.pem")
        for check in (test_sdk, test_rest):
            d = blob.AzureBlobDouble(tls_cert=os.path.join(work, "server.pem"), tls_key=os.path.join(work, "server.key"),
                                     tenant=TENANT, clients={CLIENT: SECRET}, accounts={ACCOUNT: [CONTAINER]}).start()
            try:
                check(d, ca) if check is test_sdk else check(d, Rest(d, ca))
            finally:
                d.stop()
        p = subprocess.Popen([sys.executable, os.path.join(DOUBLES, "azure_blob", "server.py"), "--port", "0",
                              "--tenant", TENANT, "--client", "%s:%s" % (CLIENT, SECRET), "--account", ACCOUNT,
                              "--container", CONTAINER], stdout=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline().split()
            assert line[0] == "READY", line
            c = http.client.HTTPConnection("127.0.0.1", int(line[1]), timeout=10)
            c.request("GET", "/%s/%s?restype=container&comp=list" % (ACCOUNT, CONTAINER),
                      headers={"x-ms-version": VERSION})
            assert c.getresponse().status == 401
        finally:
            p.terminate()
            p.wait(10)
    finally:
        rmtree(work)
    print("ok")


if __name__ == "__main__":
    main()
