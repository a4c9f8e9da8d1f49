#!/usr/bin/python3
"""A GCP Secret Manager REST v1 test double plus Google's OAuth2 token
endpoint for service accounts (Python 3 standard library only).

Secret Manager v1: POST /v1/projects/{p}/secrets?secretId=ID (replication,
labels), GET / PATCH (updateMask) / DELETE /v1/projects/{p}/secrets/{s},
GET /v1/projects/{p}/secrets (pageSize, pageToken, filter labels.k=v),
POST .../secrets/{s}:addVersion (payload.data base64, dataCrc32c checked),
GET .../versions, GET .../versions/{n|latest}[:access], POST
.../versions/{n}:disable|enable|destroy. google.rpc.Status error bodies
{"error":{"code","message","status"}}.
OAuth2: POST /token with grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
and an RS256 service-account JWT, verified with the configured public key.
Workload identity federation: STS POST /v1/token (RFC 8693 token exchange,
form or JSON; the subject token checked against the pool provider its
audience names: issuer, signature by the issuer's JWKS, allowed audiences,
expiry; OAuth error bodies {"error","error_description"}), and IAM
Credentials POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken
(the caller's federated principal must hold roles/iam.workloadIdentityUser
on the service account; google.rpc.Status errors).
The API also accepts a self-signed service-account JWT as the bearer token
(as Google does), aud https://secretmanager.googleapis.com/ or a
cloud-platform scope claim.

Run:   python3 server.py --port 0 [--tls-cert F --tls-key F]
       --service-account sa.json [--project ID:NUMBER] prints "READY <port>".
Import: GcpSecretManagerDouble(port=0, accounts={email: pem}).start()
        double.add_pool_provider(audience, issuer, jwks_url, allowed_audiences=None)
        double.allow_impersonation(email, principal)

Test-only admin endpoints live under /_double/ (no auth); see
docs/testing-doubles.md.
"""
import base64
import json
import os
import re
import secrets
import ssl
import sys
import threading
import time
import urllib.request
from urllib.parse import parse_qs, unquote

# The plumbing every double shares, found from any working directory.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "common"))
from doublelib import (  # noqa: E402
    arg_parser, BaseDoubleHandler, DoubleServer, parse_args, retry_after_header, rfc3339_micros)
import jwtlib  # noqa: E402


# --------------------------------------------------------------------------
# CRC32C (Castagnoli), RS256 verification with the standard library only.
# --------------------------------------------------------------------------

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC_T = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _der(buf, i=0):
    """Reads one DER TLV at i: (tag, value bytes, next index)."""
    tag = buf[i]
    ln = buf[i + 1]
    i += 2
    if ln & 0x80:
        n = ln & 0x7F
        ln = int.from_bytes(buf[i:i + n], "big")
        i += n
    return tag, buf[i:i + ln], i + ln


def _der_seq(buf):
    out, i = [], 0
    while i < len(buf):
        tag, val, i = _der(buf, i)
        out.append((tag, val))
    return out


def rsa_public_from_pem(pem):
    """(n, e) from a PEM public key, RSA public key, PKCS#8 / PKCS#1 private key or certificate."""
    m = re.search(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", pem, re.S)
    if not m:
        raise ValueError("no PEM block")
    kind, der = m.group(1), base64.b64decode("".join(m.group(2).split()))

    def from_rsa_seq(seq, private):
        items = _der_seq(_der(seq)[1])
        if private:
            items = items[1:]
        return int.from_bytes(items[0][1], "big"), int.from_bytes(items[1][1], "big")

    def from_spki(spki):
        items = _der_seq(_der(spki)[1])
        bits = items[1][1]
        return from_rsa_seq(bits[1:], False)  # skip the unused-bits byte
    if kind == "PUBLIC KEY":
        return from_spki(der)
    if kind == "RSA PUBLIC KEY":
        return from_rsa_seq(der, False)
    if kind == "RSA PRIVATE KEY":
        return from_rsa_seq(der, True)
    if kind == "PRIVATE KEY":
        items = _der_seq(_der(der)[1])
        return from_rsa_seq(items[2][1], True)
    if kind == "CERTIFICATE":
        tbs = _der_seq(_der(der)[1])[0][1]
        fields = _der_seq(tbs)
        idx = 6 if fields[0][0] == 0xA0 else 5
        t, v = fields[idx]
        body = bytes([0x30]) + _der_len(len(v)) + v
        return from_spki(body)
    raise ValueError("unsupported PEM type %s" % kind)


def _der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


# RS256 verification and base64url: the shared JWT helpers (common/jwtlib.py).
rs256_verify = jwtlib.rs256_verify
b64url_decode = jwtlib.b64url_decode


def parse_jwt(token):
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    header = json.loads(b64url_decode(parts[0]))
    claims = json.loads(b64url_decode(parts[1]))
    return header, claims, (parts[0] + "." + parts[1]).encode(), b64url_decode(parts[2])


# --------------------------------------------------------------------------
# Secret Manager
# --------------------------------------------------------------------------

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SERVICE_AUD = "https://secretmanager.googleapis.com/"
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VAL = re.compile(r"^[a-z0-9_-]{0,63}$")


class GError(Exception):
    def __init__(self, code, status, message, headers=None):
        super().__init__(message)
        self.code, self.status, self.message, self.headers = code, status, message, headers or {}

    def body(self):
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


class OAuthError(Exception):
    def __init__(self, status, error, description):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def _etag():
    return '"%x"' % time.time_ns()


class GcpState:
    def __init__(self, projects, accounts, token_ttl):
        self.lock = threading.RLock()
        self.projects = dict(projects)  # project id -> number
        self.accounts = dict(accounts)  # client_email -> (n, e, key_id or None)
        self.token_ttl = token_ttl
        self.tokens = {}  # access token -> (email, expires)
        self.secrets = {}  # (number, id) -> {"secret": {...}, "versions": {n: {...}}, "next": 1}
        self.token_requests = 0
        self.self_signed_uses = 0
        # STS audience -> {"issuer", "jwks_url", "allowed_audiences", "principal" (fn of sub)}
        self.pool_providers = {}
        self.impersonators = {}  # service account email -> {principal, ...} (roles/iam.workloadIdentityUser)
        self.exchanges = []  # every STS exchange accepted: audience, sub, principal, t
        self.impersonations = []  # every generateAccessToken answered: email, principal, t
        self.callers = []  # the principal of every Secret Manager call: principal, t

    def project_number(self, p):
        if p in self.projects:
            return self.projects[p]
        if p in self.projects.values():
            return p
        return None


class GcpHandler(BaseDoubleHandler):
    do_GET = do_POST = do_PATCH = do_DELETE = BaseDoubleHandler.dispatch
    admin_expire_tokens = True
    # What a subclass for another Google API (tests/doubles/gcs) changes: the
    # OAuth scopes a token may carry, the audiences of a self-signed JWT used
    # as the bearer token, and the error class (its body shape).
    scopes = (SCOPE,)
    service_auds = (SERVICE_AUD, SERVICE_AUD.rstrip("/"))
    error_class = GError
    resource_name = "secrets"

    def serve_api(self, path, q, body):
        d = self.server.double
        self.enum_int = "enum-encoding=int" in (q.get("$alt") or "")
        verb = "token" if path == "/token" else self._verb(path)
        d.counters.add(self.command, path, verb, "oauth2" if path == "/token" else self.resource_name)
        try:
            if d.faults.down == "503":
                raise self.error_class(503, "UNAVAILABLE", "The service is currently unavailable.")
            rule = self.take_fault(path)
            if rule:
                status = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 409: "ABORTED",
                          403: "PERMISSION_DENIED", 401: "UNAUTHENTICATED"}.get(rule["status"], "UNKNOWN")
                msg = rule.get("message") or {
                    429: "Quota exceeded for quota metric 'Access requests' and limit 'Access requests per "
                         "minute per project' of service 'secretmanager.googleapis.com'."}.get(
                    rule["status"], "Injected failure.")
                raise self.error_class(rule["status"], status, msg, retry_after_header(rule))
            if path == "/token" and self.command == "POST":
                return self.token(body)
            if path == "/v1/token" and self.command == "POST":
                return self.sts_token(body)
            m = re.match(r"^/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken$", path)
            if m and self.command == "POST":
                return self.generate_access_token(unquote(m.group(1)), body)
            who = self.authenticate()
            with d.state.lock:
                d.state.callers.append({"principal": who, "t": time.time()})
            self.api(path, q, body)
        except GError as e:
            self.send_json(e.code, e.body(), e.headers)
        except OAuthError as e:
            self.send_json(e.status, {"error": e.error, "error_description": e.description})
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    _ENUMS = {"ENABLED": 1, "DISABLED": 2, "DESTROYED": 3}

    def send_json(self, status, obj, headers=None, ctype="application/json"):
        # $alt=json;enum-encoding=int (what the Google client libraries ask
        # for) returns enums as numbers.
        if getattr(self, "enum_int", False) and isinstance(obj, dict):
            obj = self._enum_to_int(obj)
        super().send_json(status, obj, headers, ctype)

    def _enum_to_int(self, o):
        if isinstance(o, dict):
            return {k: (self._ENUMS.get(v, v) if k == "state" else self._enum_to_int(v)) for k, v in o.items()}
        if isinstance(o, list):
            return [self._enum_to_int(x) for x in o]
        return o

    def _verb(self, path):
        if ":" in path:
            return path.rsplit(":", 1)[1]
        return {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete"}.get(self.command, "other")

    # ------------------------------------------------------------- OAuth2
    def _verify_jwt(self, token, want_aud=None):
        st = self.server.double.state
        try:
            header, claims, signing_input, sig = parse_jwt(token)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise OAuthError(400, "invalid_grant", "Invalid JWT: malformed token.")
        if header.get("alg") != "RS256":
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.")
        acct = st.accounts.get(claims.get("iss"))
        if acct is None:
            raise OAuthError(400, "invalid_grant", "Invalid grant: account not found")
        n, e, kid = acct
        if (kid and header.get("kid") and header["kid"] != kid) or not rs256_verify(n, e, signing_input, sig):
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.")
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)) or exp - iat > 3600 or \
                iat > now + 300 or exp < now:
            raise OAuthError(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) "
                             "and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
        if want_aud is not None and claims.get("aud") not in want_aud:
            raise OAuthError(400, "invalid_grant", "Invalid JWT: Failed audience check. The right audience is "
                             + GOOGLE_TOKEN_URL)
        return claims

    def token(self, body):
        d = self.server.double
        st = d.state
        with st.lock:
            st.token_requests += 1
        form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            raise OAuthError(400, "unsupported_grant_type", "Invalid grant_type: %s" % form.get("grant_type", ""))
        if not form.get("assertion"):
            raise OAuthError(400, "invalid_request", "Missing required parameter: assertion")
        claims = self._verify_jwt(form["assertion"], {GOOGLE_TOKEN_URL, d.url + "/token"})
        if not set(self.scopes) & set(str(claims.get("scope", "")).split()):
            raise OAuthError(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        tok = "ya29.c." + secrets.token_urlsafe(48)
        with st.lock:
            st.tokens[tok] = (claims["iss"], time.time() + st.token_ttl)
        return self.send_json(200, {"access_token": tok, "expires_in": st.token_ttl, "token_type": "Bearer"},
                              {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate"})

    # -------------------------------------- STS and IAM Credentials (federation)
    def sts_token(self, body):
        """POST https://sts.googleapis.com/v1/token: exchanges a third-party
        JWT for a federated access token of the pool provider `audience` names."""
        st = self.server.double.state
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            if ctype == "application/json":
                raw = json.loads(body or b"{}")
                form = {"grant_type": raw.get("grantType"), "audience": raw.get("audience"), "scope": raw.get("scope"),
                        "requested_token_type": raw.get("requestedTokenType"), "subject_token": raw.get("subjectToken"),
                        "subject_token_type": raw.get("subjectTokenType")}
            else:
                form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items()}
        except ValueError:
            raise OAuthError(400, "invalid_request", "Invalid JSON payload received.")
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            raise OAuthError(400, "invalid_grant", "Invalid value for \"grant_type\": %s" % form.get("grant_type"))
        if form.get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token":
            raise OAuthError(400, "invalid_request", "Invalid value for \"requested_token_type\".")
        if form.get("subject_token_type") not in ("urn:ietf:params:oauth:token-type:jwt",
                                                  "urn:ietf:params:oauth:token-type:id_token"):
            raise OAuthError(400, "invalid_request", "Invalid value for \"subject_token_type\".")
        if not form.get("subject_token"):
            raise OAuthError(400, "invalid_request", "The \"subject_token\" parameter is required.")
        with st.lock:
            prov = st.pool_providers.get(form.get("audience") or "")
        if prov is None:
            raise OAuthError(400, "invalid_target",
                             "The target service indicated by the \"audience\" parameters is invalid. This might "
                             "either be because the pool or provider is disabled or deleted or because it doesn't exist.")
        token = form["subject_token"]
        try:
            claims = json.loads(jwtlib.b64url_decode(token.split(".")[1]))
            if not isinstance(claims, dict):
                raise ValueError
        except (ValueError, IndexError, UnicodeDecodeError):
            raise OAuthError(400, "invalid_grant", "Unable to parse the ID Token.")
        if claims.get("iss") != prov["issuer"]:
            raise OAuthError(400, "invalid_grant", "The issuer in ID Token %s does not match the expected ones: %s."
                             % (claims.get("iss"), prov["issuer"]))
        try:
            with urllib.request.urlopen(prov["jwks_url"], timeout=10) as r:
                keys = json.loads(r.read()).get("keys") or []
            jwtlib.verify(token, keys)
        except ValueError:
            raise OAuthError(400, "invalid_grant", "Invalid ID Token: the signature cannot be verified.")
        auds = claims.get("aud")
        auds = [auds] if isinstance(auds, str) else [a for a in (auds or []) if isinstance(a, str)]
        if not set(auds) & set(prov["allowed_audiences"]):
            raise OAuthError(400, "invalid_grant", "The audience in ID Token [%s] does not match the expected "
                             "audience." % ",".join(auds))
        now = time.time()
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] <= now:
            raise OAuthError(400, "invalid_grant", "ID Token expired at %s." % claims.get("exp"))
        principal = prov["principal"](claims.get("sub") or "")
        tok = "ya29.d." + secrets.token_urlsafe(48)
        with st.lock:
            st.tokens[tok] = (principal, now + st.token_ttl)
            st.exchanges.append({"audience": form["audience"], "sub": claims.get("sub"), "principal": principal,
                                 "scope": form.get("scope"), "t": now})
        return self.send_json(200, {"access_token": tok, "issued_token_type":
                                    "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer",
                                    "expires_in": st.token_ttl})

    def generate_access_token(self, email, body):
        """POST https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{email}:generateAccessToken."""
        st = self.server.double.state
        caller = self.authenticate()
        try:
            args = json.loads(body or b"{}")
        except ValueError:
            raise GError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not isinstance(args, dict) or not isinstance(args.get("scope"), list) or not args["scope"]:
            raise GError(400, "INVALID_ARGUMENT", "Scope required.")
        with st.lock:
            known = email in st.accounts or email in st.impersonators
            allowed = caller in st.impersonators.get(email, set())
        if not known:
            raise GError(404, "NOT_FOUND", "Not found; Gaia id not found for email %s" % email)
        if not allowed:
            raise GError(403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied on resource "
                         "(or it may not exist).")
        lifetime = st.token_ttl
        tok = "ya29.c." + secrets.token_urlsafe(48)
        now = time.time()
        with st.lock:
            st.tokens[tok] = (email, now + lifetime)
            st.impersonations.append({"email": email, "principal": caller, "t": now})
        return self.send_json(200, {"accessToken": tok, "expireTime": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + lifetime))})

    def authenticate(self):
        st = self.server.double.state
        auth = self.headers.get("Authorization") or ""
        unauth = self.error_class(401, "UNAUTHENTICATED",
                        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                        "cookie or other valid authentication credential. See "
                        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                        {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        if not auth.startswith("Bearer "):
            raise unauth
        tok = auth[7:].strip()
        with st.lock:
            info = st.tokens.get(tok)
        if info is not None:
            if info[1] <= time.time():
                raise unauth
            return info[0]
        if tok.count(".") == 2:
            # A self-signed service-account JWT used directly as the access
            # token (what Google's client libraries do by default).
            try:
                claims = self._verify_jwt(tok)
            except OAuthError:
                raise unauth
            aud = claims.get("aud")
            if aud not in self.service_auds and not set(self.scopes) & set(str(claims.get("scope", "")).split()):
                raise unauth
            with st.lock:
                st.self_signed_uses += 1
            return claims["iss"]
        raise unauth

    # ---------------------------------------------------------------- API
    def api(self, path, q, body):
        st = self.server.double.state
        m = re.match(r"^/v1/projects/([^/:]+)/secrets(?:/([^/:]+)(?:/versions(?:/([^/:]+))?)?)?(?::([A-Za-z]+))?$",
                     path)
        if not m:
            raise GError(404, "NOT_FOUND", "The requested URL %s was not found on this server." % path)
        project, sid, ver, action = m.groups()
        number = st.project_number(project)
        cmd = self.command
        if number is None:
            perm = "secretmanager.secrets.%s" % ("create" if cmd == "POST" and not sid else
                                                 "list" if not sid else "get")
            raise GError(403, "PERMISSION_DENIED", "Permission '%s' denied for resource 'projects/%s' (or it "
                         "may not exist)." % (perm, project))
        try:
            args = json.loads(body) if body.strip() else {}
        except ValueError:
            raise GError(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unexpected token.")
        if not isinstance(args, dict):
            raise GError(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Expected an object.")
        with st.lock:
            if sid is None:
                if cmd == "POST" and action is None:
                    return self.create_secret(number, q.get("secretId"), args)
                if cmd == "GET" and action is None:
                    return self.list_secrets(number, q)
            elif "/versions" not in path:
                if action == "addVersion" and cmd == "POST":
                    return self.add_version(number, sid, args)
                if action is None and cmd == "GET":
                    return self.send_json(200, self._secret(number, sid)["secret"])
                if action is None and cmd == "DELETE":
                    e = self._secret(number, sid)
                    if q.get("etag") and q["etag"] != e["secret"]["etag"]:
                        raise GError(409, "ABORTED", "etag mismatch")
                    del st.secrets[(number, sid)]
                    return self.send_json(200, {})
                if action is None and cmd == "PATCH":
                    return self.patch_secret(number, sid, q, args)
            else:
                e = self._secret(number, sid)
                if ver is None and cmd == "GET" and action is None:
                    vs = [v for _, v in sorted(e["versions"].items(), reverse=True)]
                    return self.send_json(200, {"versions": vs, "totalSize": len(vs)} if vs else {})
                if ver is not None:
                    n, v = self._version(number, sid, e, ver)
                    if action == "access" and cmd == "GET":
                        if v["state"] != "ENABLED":
                            raise GError(400, "FAILED_PRECONDITION", "Secret Version [%s] is in %s state."
                                         % (v["name"], v["state"]))
                        data = e["payloads"][n]
                        return self.send_json(200, {"name": v["name"], "payload": {
                            "data": base64.b64encode(data).decode(), "dataCrc32c": str(crc32c(data))}})
                    if action is None and cmd == "GET":
                        return self.send_json(200, v)
                    if action in ("disable", "enable", "destroy") and cmd == "POST":
                        if v["state"] == "DESTROYED":
                            raise GError(400, "FAILED_PRECONDITION", "Secret Version [%s] is in DESTROYED state."
                                         % v["name"])
                        v["state"] = {"disable": "DISABLED", "enable": "ENABLED", "destroy": "DESTROYED"}[action]
                        v["etag"] = _etag()
                        if action == "destroy":
                            v["destroyTime"] = rfc3339_micros()
                            e["payloads"].pop(n, None)
                        return self.send_json(200, v)
        raise GError(404, "NOT_FOUND", "The requested URL %s was not found on this server." % path)

    def _secret(self, number, sid):
        e = self.server.double.state.secrets.get((number, sid))
        if e is None:
            raise GError(404, "NOT_FOUND", "Secret [projects/%s/secrets/%s] not found." % (number, sid))
        return e

    def _version(self, number, sid, e, ver):
        if ver == "latest":
            if not e["versions"]:
                raise GError(404, "NOT_FOUND", "Secret [projects/%s/secrets/%s] not found or has no versions."
                             % (number, sid))
            n = max(e["versions"])
        else:
            try:
                n = int(ver)
            except ValueError:
                raise GError(400, "INVALID_ARGUMENT", "Invalid resource field value in the request.")
        v = e["versions"].get(n)
        if v is None:
            raise GError(404, "NOT_FOUND", "Secret Version [projects/%s/secrets/%s/versions/%s] not found."
                         % (number, sid, ver))
        return n, v

    @staticmethod
    def _check_labels(labels):
        if labels is None:
            return
        if not isinstance(labels, dict) or len(labels) > 64:
            raise GError(400, "INVALID_ARGUMENT", "Secret.labels must be a map with at most 64 entries.")
        for k, v in labels.items():
            if not _LABEL_KEY.match(k) or not isinstance(v, str) or not _LABEL_VAL.match(v):
                raise GError(400, "INVALID_ARGUMENT", "Invalid label: key '%s' value '%s'. Keys must start with a "
                             "lowercase letter; keys and values may contain lowercase letters, digits, '_' and "
                             "'-' (63 characters at most)." % (k, v))

    def create_secret(self, number, sid, args):
        st = self.server.double.state
        if not sid or not _SECRET_ID.match(sid):
            raise GError(400, "INVALID_ARGUMENT", "Invalid secret ID: %r. IDs may contain letters, digits, '_' "
                         "and '-' and be at most 255 characters long." % (sid or ""))
        rep = args.get("replication")
        if not isinstance(rep, dict) or not (("automatic" in rep) ^ ("userManaged" in rep)):
            raise GError(400, "INVALID_ARGUMENT", "Secret.replication must set exactly one of automatic or "
                         "user_managed.")
        if "userManaged" in rep and not (rep["userManaged"] or {}).get("replicas"):
            raise GError(400, "INVALID_ARGUMENT", "Secret.replication.user_managed.replicas must not be empty.")
        self._check_labels(args.get("labels"))
        if (number, sid) in st.secrets:
            raise GError(409, "ALREADY_EXISTS", "Secret [projects/%s/secrets/%s] already exists." % (number, sid))
        secret = {"name": "projects/%s/secrets/%s" % (number, sid), "replication": rep,
                  "createTime": rfc3339_micros(), "etag": _etag()}
        for k in ("labels", "annotations", "topics", "expireTime", "ttl", "rotation", "versionAliases"):
            if args.get(k):
                secret[k] = args[k]
        st.secrets[(number, sid)] = {"secret": secret, "versions": {}, "payloads": {}}
        return self.send_json(200, secret)

    def list_secrets(self, number, q):
        st = self.server.double.state
        flt = q.get("filter") or ""
        items = [e["secret"] for (num, _), e in sorted(st.secrets.items()) if num == number]
        for term in flt.split():
            m = re.match(r"^labels\.([a-z0-9_-]+)([=:])(.+)$", term)
            if m:
                k, op, v = m.groups()
                items = [s for s in items if k in (s.get("labels") or {}) and
                         (v == "*" if op == ":" and v == "*" else s["labels"][k] == v)]
            elif term.startswith("name:"):
                items = [s for s in items if term[5:] in s["name"].rsplit("/", 1)[1]]
            else:
                raise GError(400, "INVALID_ARGUMENT", "Invalid filter: %s" % flt)
        try:
            # pageSize 0 or absent: the server decides (the double: page_limit).
            size = max(1, min(int(q.get("pageSize") or 25000), 25000, self.server.double.page_limit))
            start = int(q.get("pageToken") or 0)
        except ValueError:
            raise GError(400, "INVALID_ARGUMENT", "Invalid page token or size.")
        page = items[start:start + size]
        out = {}
        if page:
            out["secrets"] = page
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        if items:
            out["totalSize"] = len(items)
        return self.send_json(200, out)

    def patch_secret(self, number, sid, q, args):
        e = self._secret(number, sid)
        mask = q.get("updateMask")
        if not mask:
            raise GError(400, "INVALID_ARGUMENT", "update_mask is required.")
        if args.get("etag") and args["etag"] != e["secret"]["etag"]:
            raise GError(409, "ABORTED", "etag mismatch")
        for field in mask.split(","):
            field = field.strip()
            if field not in ("labels", "annotations", "expireTime", "ttl", "topics", "rotation", "versionAliases"):
                raise GError(400, "INVALID_ARGUMENT", "Invalid update_mask field: %s" % field)
            if field == "labels":
                self._check_labels(args.get("labels"))
            if args.get(field) is None:
                e["secret"].pop(field, None)
            else:
                e["secret"][field] = args[field]
        e["secret"]["etag"] = _etag()
        return self.send_json(200, e["secret"])

    def add_version(self, number, sid, args):
        e = self._secret(number, sid)
        payload = args.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
            raise GError(400, "INVALID_ARGUMENT", "SecretPayload.data is required.")
        try:
            data = base64.b64decode(payload["data"], validate=True)
        except (ValueError, TypeError):
            raise GError(400, "INVALID_ARGUMENT", "Invalid value at 'payload.data' (TYPE_BYTES), Base64 decoding "
                         "failed for \"%s\"" % payload["data"][:40])
        if len(data) > 65536:
            raise GError(400, "INVALID_ARGUMENT", "SecretPayload.data must be at most 65536 bytes.")
        checksum = "dataCrc32c" in payload
        if checksum:
            try:
                want = int(payload["dataCrc32c"])
            except (ValueError, TypeError):
                raise GError(400, "INVALID_ARGUMENT", "Invalid value at 'payload.data_crc32c' (TYPE_INT64).")
            if want != crc32c(data):
                raise GError(400, "INVALID_ARGUMENT", "Checksum mismatch: the data_crc32c provided does not match "
                             "the CRC32C of the payload data.")
        n = max(e["versions"], default=0) + 1
        v = {"name": "%s/versions/%d" % (e["secret"]["name"], n), "createTime": rfc3339_micros(), "state": "ENABLED",
             "replicationStatus": {"automatic": {}} if "automatic" in e["secret"]["replication"] else
             {"userManaged": {"replicas": [{"location": r.get("location")} for r in
                                           e["secret"]["replication"]["userManaged"]["replicas"]]}},
             "etag": _etag(), "clientSpecifiedPayloadChecksum": checksum}
        e["versions"][n] = v
        e["payloads"][n] = data
        return self.send_json(200, v)


class GcpSecretManagerDouble(DoubleServer):
    """In-process handle: start(), stop(), url, port, state, faults, counters.

    accounts: {client_email: PEM} with the service account's public key,
    certificate or private key (only the public half is used).
    projects: {project_id: project_number}; names in responses use the number
    as the real API does. page_limit: the most secrets a list page holds,
    whatever pageSize asks (the API lets the server decide)."""
    handler = GcpHandler

    def __init__(self, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, accounts=None, projects=None,
                 token_ttl=3599, verbose=False, page_limit=25000):
        self.page_limit = page_limit
        acc = {}
        for email, pem in (accounts or {}).items():
            kid = None
            if isinstance(pem, tuple):
                pem, kid = pem
            n, e = rsa_public_from_pem(pem)
            acc[email] = (n, e, kid)
        self.state = GcpState(projects or {"rootseal-test": "123456789012"}, acc, token_ttl)
        super().__init__(host, port, tls_cert, tls_key, verbose)
        self.token_url = self.url + "/token"

    def add_pool_provider(self, audience, issuer, jwks_url, allowed_audiences=None):
        """A workload identity pool provider (OIDC) that STS `audience` names:
        "//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X"
        (allowed audiences default to its https: URL, principal
        principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/subject/<sub>)
        or GKE's "identitynamespace:<project>.svc.id.goog:<cluster URL>" (audience: the pool, principal
        serviceAccount:<project>.svc.id.goog[<ns>/<name>])."""
        if audience.startswith("identitynamespace:"):
            pool = audience.split(":")[1]
            allowed = allowed_audiences or [pool]

            def principal(sub):
                parts = sub.split(":")
                return "serviceAccount:%s[%s/%s]" % (pool, parts[2], parts[3]) if len(parts) == 4 else sub
        else:
            allowed = allowed_audiences or ["https:" + audience]
            base = audience.rsplit("/providers/", 1)[0].lstrip("/")

            def principal(sub):
                return "principal://%s/subject/%s" % (base, sub)
        with self.state.lock:
            self.state.pool_providers[audience] = {"issuer": issuer, "jwks_url": jwks_url,
                                                   "allowed_audiences": list(allowed), "principal": principal}

    def allow_impersonation(self, email, principal):
        """roles/iam.workloadIdentityUser on service account `email` for `principal`."""
        with self.state.lock:
            self.state.impersonators.setdefault(email, set()).add(principal)

    def stats(self):
        s = super().stats()
        s["writes"] = sum(v for k, v in s["by_verb"].items()
                          if k in ("create", "patch", "delete", "addVersion", "disable", "enable", "destroy"))
        s["token_requests"] = self.state.token_requests
        s["self_signed_jwt_uses"] = self.state.self_signed_uses
        return s


def main(argv=None):
    ap = arg_parser(__doc__)
    ap.add_argument("--service-account", action="append", default=[],
                    help="service-account key JSON file (client_email + private_key; only the public half is used)")
    ap.add_argument("--account-key", action="append", default=[],
                    help="EMAIL:PEMFILE public key, certificate or private key of a service account")
    ap.add_argument("--project", action="append", default=[], help="PROJECT_ID:PROJECT_NUMBER (repeatable)")
    ap.add_argument("--token-ttl", type=int, default=3599)
    ap.add_argument("--token", action="append", default=[], help="static access token accepted by the API")
    ap.add_argument("--page-limit", type=int, default=25000, help="the most secrets a list page holds")
    a = parse_args(ap, argv)
    accounts = {}
    for f in a.service_account:
        with open(f) as fh:
            sa = json.load(fh)
        accounts[sa["client_email"]] = (sa["private_key"], sa.get("private_key_id"))
    for spec in a.account_key:
        email, path = spec.split(":", 1)
        with open(path) as fh:
            accounts[email] = fh.read()
    projects = dict(p.split(":", 1) for p in a.project) if a.project else None
    d = GcpSecretManagerDouble(a.host, a.port, a.tls_cert, a.tls_key, accounts, projects, a.token_ttl, a.verbose,
                               a.page_limit)
    for t in a.token:
        d.state.tokens[t] = ("static", float("inf"))
    return d.serve_main()


if __name__ == "__main__":
    sys.exit(main())
