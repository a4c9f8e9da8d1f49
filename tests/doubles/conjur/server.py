#!/usr/bin/python3
"""A CyberArk Conjur test double (Python 3 standard library only), following
Conjur's REST API:

POST /authn/{account}/{login}/authenticate         body: the API key -> an access token
POST /authn-jwt/{service-id}/{account}[/{host-id}]/authenticate
                                                   form jwt=<JWT> -> an access token
GET  /secrets/{account}/variable/{id}[?version=N]  the value (raw bytes)
GET  /secrets?variable_ids=<account>:variable:<id>,...   batch: {"<full id>": "value"}
GET  /resources/{account}?kind=variable&limit=N&offset=M  the variables the caller may see
                                                   [{"id","owner","policy","permissions","annotations","secrets"}]

An access token is a JSON document {"protected","payload","signature"}
valid 8 minutes, presented as `Authorization: Token token="<base64>"`.
Status codes as Conjur answers: 401 (bad credentials, a missing, malformed
or expired token; empty body), 403 (no execute privilege:
{"error":{"code":"forbidden","message":"Forbidden"}}), 404 (unknown account,
variable, or a variable without a value: {"error":{"code":"not_found",...}}),
422 (a batch request without variable_ids). authn-jwt checks the JWT as
Conjur's authenticator does: the service's issuer, its JWKS (signature),
its audience, expiry, and maps the token-app-property claim under the
identity path to a host (or, with a host id in the URL, requires the host's
annotated claims).

Run:   python3 server.py --port 0 [--tls-cert F --tls-key F] [--account A]
       [--user LOGIN:APIKEY] [--variable ID=VALUE] [--permit LOGIN=ID] prints "READY <port>".
Import: ConjurDouble(account="myorg").start(); .user(login, api_key), .variable(id, value),
        .permit(role, id), .jwt_service(service_id, issuer, jwks_url, audience, identity_path,
        token_app_property="sub"), .host_claims(host_id, {claim: value})
"""
import base64
import hmac
import json
import os
import secrets
import ssl
import sys
import threading
import time
import urllib.request
from urllib.parse import parse_qs, unquote

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "common"))
from doublelib import arg_parser, BaseDoubleHandler, DoubleServer, parse_args  # noqa: E402
import jwtlib  # noqa: E402

TOKEN_LIFETIME = 8 * 60


class ConjurError(Exception):
    def __init__(self, status, code=None, message=None, target=None):
        super().__init__(message or "")
        self.status, self.code, self.message, self.target = status, code, message, target

    def body(self):
        if self.code is None:
            return b""  # Conjur's 401s carry no body
        e = {"code": self.code, "message": self.message}
        if self.target:
            e["target"] = self.target
        return json.dumps({"error": e}).encode()


class ConjurState:
    def __init__(self, account):
        self.lock = threading.RLock()
        self.account = account
        self.token_lifetime = TOKEN_LIFETIME
        self.users = {}       # login ("admin", "host/app") -> API key
        self.variables = {}   # id -> [values] (versions 1..n)
        self.annotations = {}  # variable id -> {name: value}
        self.permits = {}     # role login -> {variable id} (execute privilege)
        self.jwt_services = {}  # service id -> {issuer, jwks_url, audience, identity_path, token_app_property}
        self.host_claims = {}   # host id (login without "host/") -> {claim: value}
        self.tokens = {}      # base64 access token -> (login, expires)
        self.logins = []      # every authentication: login, method, ok, t
        self.reads = []       # every variable read answered: login, id, status, t


class ConjurHandler(BaseDoubleHandler):
    do_GET = do_POST = BaseDoubleHandler.dispatch
    admin_expire_tokens = True

    def serve_api(self, path, q, body):
        d = self.server.double
        parts = path.split("/")[1:]
        d.counters.add(self.command, path, parts[0] if parts else "", "conjur")
        try:
            if d.faults.down == "503":
                raise ConjurError(503, "service_unavailable", "Service Unavailable")
            rule = self.take_fault(path)
            if rule:
                raise ConjurError(rule["status"], "injected", rule.get("message") or "Injected failure.")
            if self.command == "POST" and len(parts) == 4 and parts[0] == "authn" and parts[3] == "authenticate":
                return self.authn(unquote(parts[1]), unquote(parts[2]), body)
            if self.command == "POST" and len(parts) in (4, 5) and parts[0] == "authn-jwt" and parts[-1] == "authenticate":
                return self.authn_jwt(unquote(parts[1]), unquote(parts[2]),
                                      unquote(parts[3]) if len(parts) == 5 else None, body)
            if self.command == "GET" and parts == ["secrets"]:
                return self.batch(q)
            if self.command == "GET" and len(parts) == 2 and parts[0] == "resources":
                return self.resources(unquote(parts[1]), q)
            if self.command == "GET" and len(parts) == 4 and parts[0] == "secrets" and parts[2] == "variable":
                return self.secret(unquote(parts[1]), unquote(parts[3]), q)
            raise ConjurError(404, "not_found", "Not Found")
        except ConjurError as e:
            self.send_bytes(e.status, e.body(), "application/json" if e.code else "text/plain")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    # ------------------------------------------------------------ authn
    def issue(self, login, method):
        st = self.server.double.state
        now = int(time.time())
        header = {"alg": "conjur.org/slosilo/v2", "kid": secrets.token_hex(16)}
        payload = {"sub": login, "iat": now, "exp": now + st.token_lifetime}
        tok = {"protected": jwtlib.b64url(json.dumps(header).encode()),
               "payload": jwtlib.b64url(json.dumps(payload).encode()),
               "signature": jwtlib.b64url(secrets.token_bytes(64))}
        raw = json.dumps(tok).encode()
        with st.lock:
            st.tokens[base64.b64encode(raw).decode()] = (login, time.time() + st.token_lifetime)
            st.logins.append({"login": login, "method": method, "ok": True, "t": time.time()})
        if (self.headers.get("Accept-Encoding") or "").lower() == "base64":
            return self.send_bytes(200, base64.b64encode(raw), "text/plain")
        return self.send_bytes(200, raw, "application/json")

    def refuse_login(self, login, method):
        st = self.server.double.state
        with st.lock:
            st.logins.append({"login": login, "method": method, "ok": False, "t": time.time()})
        raise ConjurError(401)

    def authn(self, account, login, body):
        st = self.server.double.state
        with st.lock:
            key = st.users.get(login)
        if account != st.account or key is None or not hmac.compare_digest(body.strip(), key.encode()):
            self.refuse_login(login, "authn")
        return self.issue(login, "authn")

    def authn_jwt(self, service_id, account, host_id, body):
        st = self.server.double.state
        with st.lock:
            svc = st.jwt_services.get(service_id)
        form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items()}
        token = form.get("jwt") or ""
        if account != st.account or svc is None or not token:
            self.refuse_login(host_id or "?", "authn-jwt")
        try:
            with urllib.request.urlopen(svc["jwks_url"], timeout=10) as r:
                keys = json.loads(r.read()).get("keys") or []
            claims = jwtlib.verify(token, keys)
        except ValueError:
            self.refuse_login(host_id or "?", "authn-jwt")
        auds = claims.get("aud")
        auds = [auds] if isinstance(auds, str) else (auds or [])
        if claims.get("iss") != svc["issuer"] or (svc["audience"] and svc["audience"] not in auds) or \
                not isinstance(claims.get("exp"), (int, float)) or claims["exp"] <= time.time():
            self.refuse_login(host_id or "?", "authn-jwt")
        if host_id:
            want = st.host_claims.get(host_id) or {}
            if not want or any(claims.get(k) != v for k, v in want.items()):
                self.refuse_login("host/" + host_id, "authn-jwt")
            login = "host/" + host_id
        else:
            value = claims.get(svc["token_app_property"])
            if not isinstance(value, str) or not value:
                self.refuse_login("?", "authn-jwt")
            login = "host/" + (svc["identity_path"].strip("/") + "/" if svc["identity_path"] else "") + value
        with st.lock:
            known = login in st.users or login[5:] in st.host_claims or login in st.permits
        if not known:
            self.refuse_login(login, "authn-jwt")
        return self.issue(login, "authn-jwt")

    # ---------------------------------------------------------- secrets
    def caller(self):
        st = self.server.double.state
        auth = self.headers.get("Authorization") or ""
        if not (auth.startswith('Token token="') and auth.endswith('"')):
            raise ConjurError(401)
        tok = auth[len('Token token="'):-1]
        with st.lock:
            info = st.tokens.get(tok)
        if info is None or info[1] <= time.time():
            raise ConjurError(401)
        return info[0]

    def resolve(self, login, account, vid):
        """The value of variable vid for login, or a ConjurError as Conjur answers."""
        st = self.server.double.state
        with st.lock:
            exists = account == st.account and vid in st.variables
            allowed = vid in st.permits.get(login, set())
            values = list(st.variables.get(vid) or [])
        if not exists:
            raise ConjurError(404, "not_found", "Variable '%s' not found in account '%s'" % (vid, account), "variable")
        if not allowed:
            raise ConjurError(403, "forbidden", "Forbidden")
        if not values:
            raise ConjurError(404, "not_found", "Variable %s is empty or not found." % vid, "variable")
        return values

    def secret(self, account, vid, q):
        st = self.server.double.state
        login = self.caller()
        status = 200
        try:
            values = self.resolve(login, account, vid)
            version = q.get("version")
            if version is not None:
                if not version.isdigit() or not 1 <= int(version) <= len(values):
                    raise ConjurError(404, "not_found", "Requested version does not exist", "variable")
                value = values[int(version) - 1]
            else:
                value = values[-1]
        except ConjurError as e:
            status = e.status
            raise
        finally:
            with st.lock:
                st.reads.append({"login": login, "id": vid, "status": status, "t": time.time()})
        return self.send_bytes(200, value, "application/octet-stream")

    def batch(self, q):
        st = self.server.double.state
        login = self.caller()
        ids = [i for i in (q.get("variable_ids") or "").split(",") if i]
        if not ids:
            raise ConjurError(422, "unprocessable_entity", "variable_ids must not be empty")
        out = {}
        for full in ids:
            acct, kind, vid = (full.split(":", 2) + ["", ""])[:3]
            if kind != "variable":
                raise ConjurError(422, "unprocessable_entity", "Invalid resource kind in %s" % full)
            values = self.resolve(login, acct, vid)
            try:
                out[full] = values[-1].decode()
            except UnicodeDecodeError:
                raise ConjurError(500, "internal_error", "Variable %s is not valid UTF-8; ask for it with "
                                  "Accept: base64" % full)
        with st.lock:
            st.reads.extend({"login": login, "id": i, "status": 200, "t": time.time()} for i in ids)
        return self.send_bytes(200, json.dumps(out).encode(), "application/json")

    def resources(self, account, q):
        """GET /resources/{account}?kind=variable: the variables the caller holds a privilege on, sorted by
        id, paged by limit and offset (a bad number is 422)."""
        st = self.server.double.state
        login = self.caller()
        try:
            limit = int(q.get("limit") or 1000)
            offset = int(q.get("offset") or 0)
            if limit < 1 or offset < 0:
                raise ValueError
        except ValueError:
            raise ConjurError(422, "unprocessable_entity", "limit and offset must be non-negative integers")
        if q.get("kind") not in (None, "variable"):
            return self.send_bytes(200, b"[]", "application/json")
        with st.lock:
            if account != st.account:
                return self.send_bytes(200, b"[]", "application/json")
            visible = sorted(v for v in st.variables if v in st.permits.get(login, set()))
            page = [{"created_at": "2026-12-07T00:00:00.000+00:00", "id": "%s:variable:%s" % (account, v),
                     "owner": "%s:policy:root" % account, "policy": "%s:policy:root" % account, "permissions": [],
                     "annotations": [{"name": k, "value": val, "policy": "%s:policy:root" % account}
                                     for k, val in sorted((st.annotations.get(v) or {}).items())],
                     "secrets": [{"version": i + 1, "expires_at": None} for i in range(len(st.variables[v]))]}
                    for v in visible[offset:offset + limit]]
        return self.send_bytes(200, json.dumps(page).encode(), "application/json")


class ConjurDouble(DoubleServer):
    """In-process handle: start(), stop(), url, port, state, faults, counters."""
    handler = ConjurHandler

    def __init__(self, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, account="myorg", verbose=False):
        self.state = ConjurState(account)
        super().__init__(host, port, tls_cert, tls_key, verbose)

    def user(self, login, api_key):
        with self.state.lock:
            self.state.users[login] = api_key

    def variable(self, vid, value, annotations=None):
        with self.state.lock:
            self.state.variables.setdefault(vid, []).append(value.encode() if isinstance(value, str) else value)
            if annotations is not None:
                self.state.annotations[vid] = dict(annotations)

    def permit(self, role, vid):
        with self.state.lock:
            self.state.permits.setdefault(role, set()).add(vid)

    def jwt_service(self, service_id, issuer, jwks_url, audience="", identity_path="", token_app_property="sub"):
        with self.state.lock:
            self.state.jwt_services[service_id] = {"issuer": issuer, "jwks_url": jwks_url, "audience": audience,
                                                   "identity_path": identity_path,
                                                   "token_app_property": token_app_property}

    def host_claims(self, host_id, claims):
        with self.state.lock:
            self.state.host_claims[host_id] = dict(claims)


def main(argv=None):
    ap = arg_parser(__doc__)
    ap.add_argument("--account", default="myorg")
    ap.add_argument("--user", action="append", default=[], help="LOGIN:APIKEY (repeatable)")
    ap.add_argument("--variable", action="append", default=[], help="ID=VALUE (repeatable)")
    ap.add_argument("--permit", action="append", default=[], help="LOGIN=VARIABLE_ID (repeatable)")
    a = parse_args(ap, argv)
    d = ConjurDouble(a.host, a.port, a.tls_cert, a.tls_key, a.account, verbose=a.verbose)
    for u in a.user:
        d.user(*u.split(":", 1))
    for v in a.variable:
        d.variable(*v.split("=", 1))
    for p in a.permit:
        d.permit(*p.split("=", 1))
    return d.serve_main()


if __name__ == "__main__":
    sys.exit(main())
