"""The Google Cloud Storage double (tests/doubles/gcs) checked against the real
Node client (@google-cloud/storage, pinned in tests/doubles/gcs/sdk/
package-lock.json) over TLS with a throwaway CA, and against the JSON API's
documented answers with raw HTTP (uploads media and multipart, listing pages
and prefixes, alt=media with x-goog-hash, preconditions, the error body);
the service-account JWTs are signed by openssl, not by the double's code."""
import base64
import hashlib
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from urllib.parse import quote, urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLES = os.path.join(HERE, "..", "doubles")
sys.path.insert(0, os.path.join(DOUBLES, "common"))
from doublelib import load_double  # noqa: E402
from rootseal_testlib import SERVER_EXT, make_tls_material, npm_install, rmtree, tempdir  # noqa: E402

gcs = load_double("gcs")
gcp = load_double("gcp_secretmanager")

EMAIL = "snapshots@rootseal-test.iam.gserviceaccount.com"
BUCKET = "rootseal-snaps"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"


def openssl(*args, stdin=None):
    return subprocess.run(["openssl"] + list(args), input=stdin, check=True, capture_output=True).stdout


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def jwt(key_file, claims):
    signing_input = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "key-1"}).encode()) + "." + \
        b64url(json.dumps(claims).encode())
    return signing_input + "." + b64url(openssl("dgst", "-sha256", "-sign", key_file, stdin=signing_input.encode()))


def make_keys(d):
    make_tls_material(d, leaves=(("server", "127.0.0.1", SERVER_EXT),))
    sa_key = os.path.join(d, "sa.pem")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", sa_key)
    sa_json = os.path.join(d, "sa.json")
    with open(sa_json, "w") as f:
        json.dump({"type": "service_account", "project_id": "rootseal-test", "private_key_id": "key-1",
                   "private_key": open(sa_key).read(), "client_email": EMAIL,
                   "token_uri": "https://oauth2.googleapis.com/token"}, f)
    return sa_key, sa_json


class Rest:
    def __init__(self, d, cafile):
        self.d, self.ctx, self.token = d, ssl.create_default_context(cafile=cafile), None

    def req(self, method, path, body=None, headers=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.d.port, context=self.ctx, timeout=10)
        try:
            h = dict(headers or {})
            if self.token and "Authorization" not in h:
                h["Authorization"] = "Bearer " + self.token
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def json(self, method, path, body=None, headers=None):
        st, h, raw = self.req(method, path, body, headers)
        return st, h, (json.loads(raw) if raw else None)


def test_sdk(d, ca, sa_json):
    work = npm_install("gcs", os.path.join(DOUBLES, "gcs", "sdk"))
    p = subprocess.run(["node", "check.js", "127.0.0.1", str(d.port), sa_json, BUCKET], cwd=work,
                       env=dict(os.environ, NODE_EXTRA_CA_CERTS=ca), capture_output=True, text=True, timeout=180)
    if p.returncode != 0:
        raise AssertionError("GCS client check failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
    steps = {}
    for line in p.stdout.splitlines():
        o = json.loads(line)
        steps[o.pop("step")] = o
    up = steps["upload"]
    stored = d.state.buckets[BUCKET]["snaps/rootseal-a.snap"]["data"]
    assert up["name"] == "snaps/rootseal-a.snap" and up["size"] == str(len(stored)), up
    assert up["crc32c"] == base64.b64encode(gcp.crc32c(stored).to_bytes(4, "big")).decode(), up
    assert up["md5"] == base64.b64encode(hashlib.md5(stored).digest()).decode(), up
    assert steps["duplicate"]["code"] == 412 and "pre-conditions" in steps["duplicate"]["message"], steps
    assert steps["pages"] == {"first": ["snaps/rootseal-a.snap", "snaps/rootseal-b.snap"],
                              "second": ["snaps/rootseal-c.snap"], "token": True, "last": True}, steps["pages"]
    assert steps["list"]["names"] == ["other/x.txt", "snaps/rootseal-a.snap", "snaps/rootseal-b.snap",
                                      "snaps/rootseal-c.snap"], steps["list"]
    assert steps["download"] == {"bytes": len(d.state.buckets[BUCKET]["snaps/rootseal-b.snap"]["data"]),
                                 "ranged": 10}, steps["download"]
    assert steps["missing"]["code"] == 404 and "No such object" in steps["missing"]["message"], steps
    assert steps["deleted"] == {"again": {"code": 404, "message": steps["deleted"]["again"]["message"]},
                                "exists": False}, steps["deleted"]
    assert steps["stranger"]["code"] == 401, steps["stranger"]
    assert "done" in steps
    assert d.stats()["by_verb"]["insert"] >= 5, d.stats()
    print("Node client checks passed")


def test_oauth(d, rest, sa_key):
    now = int(time.time())
    claims = {"iss": EMAIL, "scope": SCOPE, "aud": "https://oauth2.googleapis.com/token", "iat": now,
              "exp": now + 3600}
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": jwt(sa_key, claims)}
    st, _, b = rest.json("POST", "/token", urlencode(form), {"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 200 and b["token_type"] == "Bearer" and b["access_token"], b
    # A token for Secret Manager's scope only is not one for Cloud Storage.
    form["assertion"] = jwt(sa_key, dict(claims, scope="https://www.googleapis.com/auth/pubsub"))
    st, _, e = rest.json("POST", "/token", urlencode(form), {"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 400 and e["error"] == "invalid_scope", e
    return b["access_token"]


def test_rest(d, rest, access):
    base = "/storage/v1/b/%s/o" % BUCKET
    st, h, b = rest.json("GET", base)
    assert st == 401 and b["error"]["code"] == 401 and b["error"]["errors"][0]["reason"] == "authError", b
    assert b["error"]["errors"][0]["location"] == "Authorization", b
    rest.token = access
    st, _, b = rest.json("GET", "/storage/v1/b/no-such-bucket/o")
    assert st == 404 and b == {"error": {"code": 404, "message": "The specified bucket does not exist.", "errors": [
        {"message": "The specified bucket does not exist.", "domain": "global", "reason": "notFound"}]}}, b
    st, _, b = rest.json("GET", base)
    assert st == 200 and b == {"kind": "storage#objects"}, b  # an empty listing has no items

    # Media upload.
    data = os.urandom(5000)
    st, _, o = rest.json("POST", "/upload/storage/v1/b/%s/o?uploadType=media&name=%s&ifGenerationMatch=0"
                         % (BUCKET, quote("p/one.snap", safe="")), data, {"Content-Type": "application/octet-stream"})
    assert st == 200 and o["kind"] == "storage#object" and o["name"] == "p/one.snap" and o["size"] == "5000", o
    assert o["crc32c"] == base64.b64encode(gcp.crc32c(data).to_bytes(4, "big")).decode(), o
    assert o["md5Hash"] == base64.b64encode(hashlib.md5(data).digest()).decode(), o
    assert int(o["generation"]) > 0 and o["metageneration"] == "1" and o["bucket"] == BUCKET, o
    # The same name again with ifGenerationMatch=0: the precondition fails.
    st, _, b = rest.json("POST", "/upload/storage/v1/b/%s/o?uploadType=media&name=p%%2Fone.snap&ifGenerationMatch=0"
                         % BUCKET, b"x", {"Content-Type": "application/octet-stream"})
    assert st == 412 and b["error"]["errors"][0]["reason"] == "conditionNotMet", b

    # Multipart: a CRC32C in the metadata that does not match the media is refused.
    def multipart(meta, media):
        bnd = "b0undary"
        body = ("--%s\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n%s\r\n--%s\r\n"
                "Content-Type: application/octet-stream\r\n\r\n" % (bnd, json.dumps(meta), bnd)).encode()
        body += media + ("\r\n--%s--\r\n" % bnd).encode()
        return rest.json("POST", "/upload/storage/v1/b/%s/o?uploadType=multipart" % BUCKET, body,
                         {"Content-Type": "multipart/related; boundary=" + bnd})
    two = b"second object"
    good_crc = base64.b64encode(gcp.crc32c(two).to_bytes(4, "big")).decode()
    st, _, b = multipart({"name": "p/two.snap", "crc32c": "AAAAAA=="}, two)
    assert st == 400 and b["error"]["errors"][0]["reason"] == "invalid" and "CRC32C" in b["error"]["message"], b
    st, _, o = multipart({"name": "p/two.snap", "crc32c": good_crc}, two)
    assert st == 200 and o["size"] == str(len(two)) and o["crc32c"] == good_crc, o
    multipart({"name": "p/sub/three.snap"}, b"3")
    multipart({"name": "q/four.snap"}, b"4")

    # Listing: prefix, delimiter (prefixes), pages of one.
    st, _, b = rest.json("GET", base + "?prefix=p%2F&delimiter=%2F")
    assert [i["name"] for i in b["items"]] == ["p/one.snap", "p/two.snap"] and b["prefixes"] == ["p/sub/"], b
    names, token = [], None
    for _ in range(10):
        st, _, b = rest.json("GET", base + "?prefix=p%2F&maxResults=1" + ("&pageToken=" + token if token else ""))
        assert st == 200 and len(b["items"]) == 1, b
        names.append(b["items"][0]["name"])
        token = b.get("nextPageToken")
        if not token:
            break
    assert names == ["p/one.snap", "p/sub/three.snap", "p/two.snap"], names

    # alt=media: the bytes, x-goog-hash; Range; metadata without alt.
    st, h, raw = rest.req("GET", base + "/" + quote("p/one.snap", safe="") + "?alt=media")
    assert st == 200 and raw == data, st
    assert h["x-goog-hash"] == "crc32c=%s,md5=%s" % (o_crc(data), base64.b64encode(hashlib.md5(data).digest()).decode())
    assert h["x-goog-generation"] and h["x-goog-stored-content-length"] == "5000", h
    st, h, raw = rest.req("GET", base + "/p%2Fone.snap?alt=media", headers={"Range": "bytes=100-199"})
    assert st == 206 and raw == data[100:200] and h["content-range"] == "bytes 100-199/5000", (st, h)
    st, _, m = rest.json("GET", base + "/p%2Fone.snap")
    assert st == 200 and m["name"] == "p/one.snap" and m["size"] == "5000", m
    st, _, b = rest.json("GET", base + "/p%2Fnope.snap?alt=media")
    assert st == 404 and b["error"]["message"] == "No such object: %s/p/nope.snap" % BUCKET, b

    # Delete: 204 without a body, then 404.
    st, _, raw = rest.req("DELETE", base + "/p%2Fone.snap")
    assert st == 204 and raw == b"", (st, raw)
    assert rest.req("DELETE", base + "/p%2Fone.snap")[0] == 404

    # Faults: a 503 (backendError) and a dropped connection.
    d.faults.add({"status": 503, "count": 1, "path": "^/upload/"})
    st, _, b = multipart({"name": "p/five.snap"}, b"5")
    assert st == 503 and b["error"]["errors"][0]["reason"] == "backendError", b
    d.faults.add({"status": 0, "count": 1, "path": "^/upload/"})
    try:
        multipart({"name": "p/five.snap"}, b"5")
        raise AssertionError("the connection should have been dropped")
    except (ConnectionError, http.client.HTTPException):
        pass
    assert "p/five.snap" not in d.state.buckets[BUCKET]
    print("REST checks passed")


def o_crc(data):
    return base64.b64encode(gcp.crc32c(data).to_bytes(4, "big")).decode()


def main():
    work = tempdir("gcs-double-")
    try:
        sa_key, sa_json = make_keys(work)
        pub = openssl("pkey", "-in", sa_key, "-pubout").decode()
        ca = os.path.join(work, "ca.pem")
        d = gcs.GcsDouble(tls_cert=os.path.join(work, "server.pem"), tls_key=os.path.join(work, "server.key"),
                          accounts={EMAIL: (pub, "key-1")}, buckets=[BUCKET]).start()
        try:
            test_sdk(d, ca, sa_json)
        finally:
            d.stop()
        d = gcs.GcsDouble(tls_cert=os.path.join(work, "server.pem"), tls_key=os.path.join(work, "server.key"),
                          accounts={EMAIL: (pub, "key-1")}, buckets=[BUCKET]).start()
        try:
            rest = Rest(d, ca)
            test_rest(d, rest, test_oauth(d, rest, sa_key))
        finally:
            d.stop()
        # As a process, configured from the service-account file.
        p = subprocess.Popen([sys.executable, os.path.join(DOUBLES, "gcs", "server.py"), "--port", "0",
                              "--service-account", sa_json, "--bucket", BUCKET], stdout=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline().split()
            assert line[0] == "READY", line
            c = http.client.HTTPConnection("127.0.0.1", int(line[1]), timeout=10)
            c.request("GET", "/storage/v1/b/%s/o" % BUCKET)
            assert c.getresponse().status == 401
        finally:
            p.terminate()
            p.wait(10)
    finally:
        rmtree(work)
    print("ok")


if __name__ == "__main__":
    main()
