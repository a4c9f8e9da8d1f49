#!/usr/bin/python3
"""An Azure Key Vault secrets test double plus the Microsoft identity
platform token endpoint (Python 3 standard library only).

Key Vault secrets REST (api-version 7.4; 7.0-7.6 and 2025-07-01 accepted):
PUT /secrets/{name}, GET /secrets/{name}[/{version}], GET /secrets,
GET /secrets/{name}/versions, PATCH /secrets/{name}[/{version}],
DELETE /secrets/{name} (soft delete), /deletedsecrets/{name} get, purge,
recover. Certificates: POST /certificates/{name}/import (a PEM certificate
with its key: the value as the PEM text; PKCS#12 is not modelled, 400),
GET /certificates/{name}[/{version}] ("cer": the DER in base64, "x5t");
the import also writes the secret {name} (the PEM, application/x-pem-file),
as Key Vault does (the backing key is not made). Keys: PUT /keys/{name}
(import of an RSA or EC JWK; the bundle carries the public part only),
GET /keys/{name}[/{version}]. 401 with a WWW-Authenticate challenge on a missing or bad bearer
token, {"error":{"code","message"}} bodies, name validation.
Identity: POST /{tenant}/oauth2/v2.0/token (client_credentials, client
secret in the form or HTTP Basic, or a federated client assertion: a JWT
from an external issuer matched against the application's federated
identity credentials - issuer, subject, audience - and verified with the
issuer's keys, as Entra workload identity federation does),
GET /{tenant}/v2.0/.well-known/openid-configuration.

Run:   python3 server.py --port 0 [--tls-cert F --tls-key F] [--tenant T]
       [--client ID:SECRET] [--token STATIC] prints "READY <port>".
Import: AzureKeyVaultDouble(port=0, tenant="t", clients={"id": "secret"}).start()
        double.federate(client_id, issuer, subject, jwks_url, audiences=["api://AzureADTokenExchange"])

Test-only admin endpoints live under /_double/ (no auth); see
docs/testing-doubles.md.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import ssl
import sys
import threading
import time
import urllib.request
import uuid
from urllib.parse import parse_qs, urlsplit

# The plumbing every double shares, found from any working directory.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "common"))
from doublelib import (  # noqa: E402
    arg_parser, BaseDoubleHandler, DoubleServer, parse_args, retry_after_header)
import jwtlib  # noqa: E402

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_FIC_HINT = ("Please check your federated identity credential Subject, Audience and Issuer against the presented "
             "assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation")


API_VERSIONS = {"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01"}
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_UUIDISH = re.compile(r"^[0-9a-zA-Z.-]{1,64}$")


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


class AzError(Exception):
    def __init__(self, status, code, message, headers=None, inner=None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.inner = status, code, message, headers or {}, inner

    def body(self):
        e = {"code": self.code, "message": self.message}
        if self.inner:
            e["innererror"] = {"code": self.inner}
        return {"error": e}


def object_not_found(kind, code, name):
    return AzError(404, code, "A %s with (name/id) %s was not found in this key vault. If you recently deleted "
                   "this %s you may be able to recover it using the correct recovery command. For help resolving "
                   "this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182" % (kind, name, kind))


def not_found(name):
    return AzError(404, "SecretNotFound",
                   "A secret with (name/id) %s was not found in this key vault. If you recently deleted this "
                   "secret you may be able to recover it using the correct recovery command. For help resolving "
                   "this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182" % name)


class AadError(Exception):
    def __init__(self, status, error, code, description):
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description

    def body(self):
        return {"error": self.error, "error_description": "AADSTS%d: %s" % (self.code, self.description),
                "error_codes": [self.code], "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}


class AzureState:
    def __init__(self, tenant, clients, token_ttl):
        self.lock = threading.RLock()
        self.tenant = tenant
        self.clients = dict(clients)  # client_id -> client_secret
        # client_id -> [{"issuer", "subject", "audiences", "jwks_url"}]: federated identity credentials
        self.federated = {}
        self.assertions = []  # every client assertion accepted: client_id, iss, sub, aud, t
        self.token_ttl = token_ttl
        self.tokens = {}  # access token -> (client_id, expires)
        self.secrets = {}  # name -> {"versions": {ver: bundle}, "order": [ver, ...]}
        self.deleted = {}  # name -> (deleted bundle, entry)
        self.certificates = {}  # name -> {"versions": {ver: bundle}, "order": [ver, ...], "latest": bundle}
        self.keys = {}  # the same for keys
        self.token_requests = 0


class AzureHandler(BaseDoubleHandler):
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = BaseDoubleHandler.dispatch
    admin_expire_tokens = True

    def serve_api(self, path, q, body):
        d = self.server.double
        parts = [p for p in path.split("/") if p]
        is_aad = len(parts) >= 2 and parts[1] in ("oauth2", "v2.0")
        d.counters.add(self.command, path, "token" if is_aad else self.command.lower(),
                       "aad" if is_aad else "secrets")
        try:
            if d.faults.down == "503":
                raise AzError(503, "ServiceUnavailable", "The service is unavailable.")
            rule = self.take_fault(path)
            if rule:
                code = {429: "Throttled", 500: "InternalServerError", 503: "ServiceUnavailable",
                        409: "Conflict", 401: "Unauthorized", 403: "Forbidden"}.get(rule["status"], "Injected")
                msg = rule.get("message") or {
                    429: "Request was not processed because too many requests were received. Reason: A generic "
                         "throttling limit was reached."}.get(rule["status"], "Injected failure.")
                raise AzError(rule["status"], code, msg, retry_after_header(rule))
            if is_aad:
                return self.aad(parts, body)
            return self.vault(parts, q, body)
        except AzError as e:
            self.send_json(e.status, e.body(), e.headers)
        except AadError as e:
            self.send_json(e.status, e.body())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    # ------------------------------------------------- Microsoft identity
    def aad(self, parts, body):
        d = self.server.double
        st = d.state
        tenant = parts[0]
        base = d.url + "/" + tenant
        if parts[1:] == ["v2.0", ".well-known", "openid-configuration"] and self.command == "GET":
            if tenant not in (st.tenant, "common", "organizations"):
                raise AadError(400, "invalid_tenant", 90002, "Tenant '%s' not found." % tenant)
            return self.send_json(200, {
                "token_endpoint": base + "/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                          "client_secret_basic"],
                "jwks_uri": base + "/discovery/v2.0/keys", "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": base + "/v2.0", "request_uri_parameter_supported": False,
                "userinfo_endpoint": base + "/oidc/userinfo",
                "authorization_endpoint": base + "/oauth2/v2.0/authorize",
                "device_authorization_endpoint": base + "/oauth2/v2.0/devicecode",
                "http_logout_supported": True, "frontchannel_logout_supported": True,
                "end_session_endpoint": base + "/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid"],
                "kerberos_endpoint": base + "/kerberos", "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com", "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com", "rbac_url": "https://pas.windows.net"})
        if parts[1:] != ["oauth2", "v2.0", "token"] or self.command != "POST":
            raise AadError(404, "not_found", 90000, "Endpoint not found.")
        with st.lock:
            st.token_requests += 1
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            raise AadError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'grant_type'.")
        form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items()}
        if tenant != st.tenant:
            raise AadError(400, "invalid_request", 90002,
                           "Tenant '%s' not found. Check to make sure you have the correct tenant ID and are "
                           "signing into the correct cloud." % tenant)
        if form.get("grant_type") != "client_credentials":
            raise AadError(400, "unsupported_grant_type", 70003,
                           "The app requested an unsupported grant type '%s'." % form.get("grant_type"))
        cid, csec = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            try:
                cid, csec = base64.b64decode(auth[6:]).decode().split(":", 1)
            except Exception:
                pass
        if "client_assertion" in form or "client_assertion_type" in form:
            self.check_assertion(tenant, cid, form)
        else:
            if cid not in st.clients:
                raise AadError(400, "unauthorized_client", 700016,
                               "Application with identifier '%s' was not found in the directory '%s'." % (cid, tenant))
            if not csec or not hmac.compare_digest(str(csec).encode(), st.clients[cid].encode()):
                raise AadError(401, "invalid_client", 7000215,
                               "Invalid client secret provided. Ensure the secret being sent in the request is the "
                               "client secret value, not the client secret ID, for a secret added to app '%s'." % cid)
        scope = form.get("scope") or ""
        scopes = scope.split()
        if not scopes:
            raise AadError(400, "invalid_request", 90014,
                           "The required field 'scope' is missing from the credential. Ensure that you have all "
                           "the necessary parameters for the login request.")
        res = [s for s in scopes if s.endswith("/.default")]
        if not res:
            raise AadError(400, "invalid_scope", 1002012,
                           "The provided value for scope %s is not valid. Client credential flows must have a "
                           "scope value with /.default suffixed to the resource identifier "
                           "(application ID URI)." % scope)
        aud = res[0][:-len("/.default")]
        now = int(time.time())
        claims = {"aud": aud, "iss": "https://sts.windows.net/%s/" % tenant, "iat": now, "nbf": now,
                  "exp": now + st.token_ttl, "appid": cid, "tid": tenant, "oid": str(uuid.uuid4()),
                  "sub": cid, "ver": "1.0"}
        token = "%s.%s.%s" % (b64url(json.dumps({"typ": "JWT", "alg": "none"}).encode()),
                              b64url(json.dumps(claims).encode()), b64url(secrets.token_bytes(16)))
        with st.lock:
            st.tokens[token] = (cid, now + st.token_ttl, aud)
        return self.send_json(200, {"token_type": "Bearer", "expires_in": st.token_ttl,
                                    "ext_expires_in": st.token_ttl, "access_token": token},
                              {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def check_assertion(self, tenant, cid, form):
        """A federated client assertion (workload identity federation): the
        application's federated identity credentials must name the JWT's
        issuer, subject and an audience of it; the signature must verify with
        the issuer's keys; the JWT must be within its validity."""
        st = self.server.double.state
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise AadError(400, "invalid_request", 50027 if "client_assertion_type" in form else 900144,
                           "The request body must contain the following parameter: 'client_assertion_type'."
                           if "client_assertion_type" not in form else
                           "Invalid client_assertion_type '%s'." % form.get("client_assertion_type"))
        if form.get("client_secret"):
            raise AadError(400, "invalid_request", 90015,
                           "Requested query string is too long or both client_secret and client_assertion are present.")
        with st.lock:
            creds = list(st.federated.get(cid) or [])
        if not cid or (cid not in st.clients and not creds):
            raise AadError(400, "unauthorized_client", 700016,
                           "Application with identifier '%s' was not found in the directory '%s'." % (cid, tenant))
        token = form.get("client_assertion") or ""
        parts = token.split(".")
        try:
            if len(parts) != 3:
                raise ValueError
            claims = json.loads(jwtlib.b64url_decode(parts[1]))
            if not isinstance(claims, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            raise AadError(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
        iss, sub = claims.get("iss"), claims.get("sub")
        auds = claims.get("aud")
        auds = [auds] if isinstance(auds, str) else [a for a in (auds or []) if isinstance(a, str)]
        by_issuer = [c for c in creds if c["issuer"] == iss]
        if not by_issuer:
            raise AadError(401, "invalid_client", 700211,
                           "No matching federated identity record found for presented assertion issuer '%s'. %s"
                           % (iss, _FIC_HINT))
        by_subject = [c for c in by_issuer if c["subject"] == sub]
        if not by_subject:
            raise AadError(401, "invalid_client", 700213,
                           "No matching federated identity record found for presented assertion subject '%s'. %s"
                           % (sub, _FIC_HINT))
        matching = [c for c in by_subject if set(c["audiences"]) & set(auds)]
        if not matching:
            raise AadError(401, "invalid_client", 700212,
                           "No matching federated identity record found for presented assertion audience '%s'. %s"
                           % (",".join(auds), _FIC_HINT))
        try:
            with urllib.request.urlopen(matching[0]["jwks_url"], timeout=10) as r:
                keys = json.loads(r.read()).get("keys") or []
            jwtlib.verify(token, keys)
        except ValueError:
            raise AadError(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, (int, float)) or exp <= now or (isinstance(nbf, (int, float)) and nbf > now + 300):
            raise AadError(401, "invalid_client", 700024,
                           "Client assertion is not within its valid time range. Current time: %s, assertion valid "
                           "from %s, expiry time of assertion %s." % (
                               time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(now)),
                               time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(nbf or 0)),
                               time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(exp or 0))))
        with st.lock:
            st.assertions.append({"client_id": cid, "iss": iss, "sub": sub, "aud": auds, "t": now})

    # ----------------------------------------------------------- Key Vault
    def _challenge(self, message):
        d = self.server.double
        hdr = {"WWW-Authenticate": 'Bearer authorization="%s/%s", resource="%s"'
               % (d.authority_host, d.state.tenant, d.resource)}
        return AzError(401, "Unauthorized", message, hdr)

    def vault(self, parts, q, body):
        d = self.server.double
        st = d.state
        api = q.get("api-version")
        # Authentication comes first: the SDK's first request is deliberately
        # unauthenticated (and bodiless) to obtain the challenge.
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            raise self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        tok = auth[7:].strip()
        with st.lock:
            info = st.tokens.get(tok)
        if tok in d.static_tokens:
            info = ("static", time.time() + 3600, d.resource)
        if info is None:
            raise self._challenge("AKV10032: Invalid issuer. Expected one of https://sts.windows.net/%s/, "
                                  "found (null)." % st.tenant)
        if info[1] <= time.time():
            raise self._challenge("AKV10022: Invalid audience or token expired.")
        if info[2].rstrip("/") != d.resource.rstrip("/"):
            raise self._challenge("AKV10022: Invalid audience. Expected %s, found: %s." % (d.resource, info[2]))
        if not api:
            raise AzError(400, "BadParameter", "The request URI must contain an 'api-version' query parameter.")
        if api not in API_VERSIONS:
            raise AzError(400, "BadParameter", "The specified version (%s) is not recognized. Consider using "
                          "the latest supported version (7.4)." % api)
        try:
            args = json.loads(body) if body.strip() else None
        except ValueError:
            raise AzError(400, "BadParameter", "The request body is not valid JSON.")
        m = self.command
        with st.lock:
            if parts == ["secrets"] and m == "GET":
                return self.list_items(sorted(st.secrets), lambda n: self._item(st.secrets[n]["latest"], True), q)
            if len(parts) >= 2 and parts[0] == "secrets":
                name = parts[1]
                if not _NAME.match(name):
                    raise AzError(400, "BadParameter", "The request URI contains an invalid name: %s" % name)
                if len(parts) == 2 and m == "PUT":
                    return self.set_secret(name, args)
                if len(parts) == 2 and m == "GET":
                    return self.send_json(200, self._bundle_out(self._get(name, None)))
                if len(parts) == 2 and m == "DELETE":
                    return self.delete_secret(name)
                if len(parts) == 3 and parts[2] == "versions" and m == "GET":
                    e = st.secrets.get(name)
                    if e is None:
                        raise not_found(name)
                    return self.list_items(e["order"], lambda v: self._item(e["versions"][v]), q)
                if len(parts) == 3 and m == "GET":
                    return self.send_json(200, self._bundle_out(self._get(name, parts[2])))
                if len(parts) in (2, 3) and m == "PATCH":
                    return self.update_secret(name, parts[2] if len(parts) == 3 else None, args or {})
            if len(parts) >= 2 and parts[0] in ("certificates", "keys"):
                return self.cert_or_key(parts, m, args)
            if len(parts) >= 1 and parts[0] == "deletedsecrets":
                if len(parts) == 1 and m == "GET":
                    return self.list_items(sorted(st.deleted), lambda n: dict(self._item(st.deleted[n][0], True),
                                           **{k: st.deleted[n][0][k] for k in ("recoveryId", "deletedDate",
                                                                                "scheduledPurgeDate")}), q)
                name = parts[1] if len(parts) > 1 else ""
                if name not in st.deleted:
                    raise AzError(404, "SecretNotFound", "Deleted Secret not found")
                if len(parts) == 2 and m == "GET":
                    return self.send_json(200, self._bundle_out(st.deleted[name][0]))
                if len(parts) == 2 and m == "DELETE":
                    del st.deleted[name]
                    return self.send_bytes(204, b"")
                if len(parts) == 3 and parts[2] == "recover" and m == "POST":
                    bundle, entry = st.deleted.pop(name)
                    st.secrets[name] = entry
                    return self.send_json(200, self._bundle_out(entry["latest"]))
        raise AzError(405, "MethodNotAllowed", "The requested resource does not support http method '%s'." % m)

    # ------------------------------------------------ certificates and keys
    def cert_or_key(self, parts, m, args):
        st = self.server.double.state
        kind, name = parts[0], parts[1]
        if not _NAME.match(name):
            raise AzError(400, "BadParameter", "The request URI contains an invalid name: %s" % name)
        store = st.certificates if kind == "certificates" else st.keys
        noun, code = ("certificate", "CertificateNotFound") if kind == "certificates" else ("key", "KeyNotFound")
        if kind == "certificates" and len(parts) == 3 and parts[2] == "import" and m == "POST":
            return self.import_certificate(name, args)
        if kind == "keys" and len(parts) == 2 and m == "PUT":
            return self.import_key(name, args)
        if m == "GET" and len(parts) in (2, 3):
            e = store.get(name)
            if e is None:
                raise object_not_found(noun, code, name)
            b = e["latest"] if len(parts) == 2 else e["versions"].get(parts[2])
            if b is None:
                raise object_not_found(noun, code, "%s/%s" % (name, parts[2]))
            return self.send_json(200, self._bundle_out(b))
        raise AzError(405, "MethodNotAllowed", "The requested resource does not support http method '%s'." % m)

    @staticmethod
    def _attributes(args, now):
        attrs_in = (args or {}).get("attributes") or {}
        attrs = {"enabled": bool(attrs_in.get("enabled", True)), "created": now, "updated": now,
                 "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}
        for k in ("nbf", "exp"):
            if k in attrs_in:
                attrs[k] = int(attrs_in[k])
        return attrs

    @staticmethod
    def _tags(args):
        tags = (args or {}).get("tags")
        if tags is not None and (not isinstance(tags, dict) or len(tags) > 15 or any(
                not isinstance(v, str) or len(k) > 512 or len(v) > 256 for k, v in tags.items())):
            raise AzError(400, "BadParameter", "Tags must be a map of at most 15 string entries "
                          "(name up to 512 and value up to 256 characters).")
        return tags

    @staticmethod
    def _add_version(store, name, b, ver):
        e = store.setdefault(name, {"versions": {}, "order": []})
        e["versions"][ver] = b
        e["order"].append(ver)
        e["latest"] = b

    def import_certificate(self, name, args):
        d = self.server.double
        st = d.state
        if not isinstance(args, dict) or not isinstance(args.get("value"), str):
            raise AzError(400, "BadParameter", "Property value is required and must be a string.")
        pem = args["value"]
        blocks = re.findall(r"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", pem, re.S)
        if not blocks:
            raise AzError(400, "BadParameter", "The specified PEM X.509 certificate content is in an unexpected "
                          "format. Please check if certificate is in valid PEM format. (PKCS#12 imports are not "
                          "modelled by this double.)")
        if "PRIVATE KEY-----" not in pem:
            raise AzError(400, "BadParameter", "Private key is not specified in the specified X.509 PEM "
                          "certificate content. Please specify private key in the X.509 PEM certificate content.")
        try:
            der = base64.b64decode("".join(blocks[0].split()), validate=True)
        except ValueError:
            raise AzError(400, "BadParameter", "The specified PEM X.509 certificate content is in an unexpected "
                          "format. Please check if certificate is in valid PEM format.")
        tags = self._tags(args)
        now = int(time.time())
        ver = uuid.uuid4().hex
        b = {"id": "%s/certificates/%s/%s" % (d.url, name, ver), "kid": "%s/keys/%s/%s" % (d.url, name, ver),
             "sid": "%s/secrets/%s/%s" % (d.url, name, ver),
             "x5t": b64url(hashlib.sha1(der).digest()), "cer": base64.b64encode(der).decode(),
             "attributes": self._attributes(args, now), "tags": tags}
        self._add_version(st.certificates, name, b, ver)
        # Key Vault keeps the certificate with its key as a secret of the same name.
        secret = {"value": pem, "id": b["sid"], "contentType": "application/x-pem-file",
                  "attributes": dict(b["attributes"]), "tags": tags, "kid": b["kid"], "managed": True}
        self._add_version(st.secrets, name, secret, ver)
        return self.send_json(200, self._bundle_out(b))

    def import_key(self, name, args):
        d = self.server.double
        st = d.state
        jwk = args.get("key") if isinstance(args, dict) else None
        if not isinstance(jwk, dict):
            raise AzError(400, "BadParameter", "Property key is required.")
        kty = jwk.get("kty")
        public = {"RSA": ("n", "e"), "RSA-HSM": ("n", "e"), "EC": ("crv", "x", "y"), "EC-HSM": ("crv", "x", "y")}
        if kty not in public:
            raise AzError(400, "BadParameter", "Invalid key type: %s" % kty)
        if any(not isinstance(jwk.get(f), str) or not jwk.get(f) for f in public[kty]):
            raise AzError(400, "BadParameter", "The key is missing one of: %s." % ", ".join(public[kty]))
        tags = self._tags(args)
        ver = uuid.uuid4().hex
        ops = jwk.get("key_ops") or (["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
                                     if kty.startswith("RSA") else ["sign", "verify"])
        if args.get("hsm") and not kty.endswith("-HSM"):
            kty += "-HSM"
        key = {"kid": "%s/keys/%s/%s" % (d.url, name, ver), "kty": kty, "key_ops": ops}
        for f in public[jwk["kty"]]:
            key[f] = jwk[f]
        b = {"key": key, "attributes": self._attributes(args, int(time.time())), "tags": tags}
        self._add_version(st.keys, name, b, ver)
        return self.send_json(200, self._bundle_out(b))

    def list_items(self, keys, fn, q):
        d = self.server.double
        try:
            top = int(q.get("maxresults") or 25)
            skip = int(q.get("$skiptoken") or 0)
        except ValueError:
            raise AzError(400, "BadParameter", "invalid maxresults or $skiptoken")
        keys = list(keys)
        page = [fn(k) for k in keys[skip:skip + top]]
        nxt = None
        if skip + top < len(keys):
            nxt = "%s%s?api-version=%s&maxresults=%d&$skiptoken=%d" % (
                d.url, urlsplit(self.path).path, q.get("api-version"), top, skip + top)
        return self.send_json(200, {"value": page, "nextLink": nxt})

    def _bundle(self, name, version):
        """The secret's latest or given version, None when that version does not exist."""
        e = self.server.double.state.secrets.get(name)
        if e is None:
            raise not_found(name)
        return e["latest"] if not version else e["versions"].get(version)

    def _get(self, name, version):
        b = self._bundle(name, version)
        if b is None:
            raise AzError(404, "SecretNotFound", "A secret with (name/id) %s/%s was not found in this key vault. "
                          "If you recently deleted this secret you may be able to recover it using the correct "
                          "recovery command. For help resolving this issue, please see "
                          "https://go.microsoft.com/fwlink/?linkid=2125182" % (name, version))
        if not b["attributes"].get("enabled", True):
            raise AzError(403, "Forbidden", "Operation get is not allowed on a disabled secret.",
                          inner="SecretDisabled")
        return b

    @staticmethod
    def _bundle_out(b):
        return {k: v for k, v in b.items() if v is not None}

    @staticmethod
    def _item(b, strip_version=False):
        it = {"id": b["id"].rsplit("/", 1)[0] if strip_version else b["id"], "attributes": b["attributes"]}
        if b.get("tags") is not None:
            it["tags"] = b["tags"]
        if b.get("contentType") is not None:
            it["contentType"] = b["contentType"]
        return it

    def set_secret(self, name, args):
        d = self.server.double
        st = d.state
        if name in st.deleted:
            raise AzError(409, "Conflict", "Secret %s is currently in a deleted but recoverable state, and its "
                          "name cannot be reused; in this state, the secret can only be recovered or purged." % name,
                          inner="ObjectIsDeletedButRecoverable")
        if not isinstance(args, dict) or not isinstance(args.get("value"), str):
            raise AzError(400, "BadParameter", "Property value is required and must be a string.")
        if len(args["value"].encode()) > 25 * 1024:
            raise AzError(400, "BadParameter", "Secret value is too long; the maximum size is 25 KB.")
        tags = args.get("tags")
        if tags is not None:
            if not isinstance(tags, dict) or len(tags) > 15 or any(
                    not isinstance(v, str) or len(k) > 512 or len(v) > 256 for k, v in tags.items()):
                raise AzError(400, "BadParameter", "Tags must be a map of at most 15 string entries "
                              "(name up to 512 and value up to 256 characters).")
        attrs_in = args.get("attributes") or {}
        now = int(time.time())
        ver = uuid.uuid4().hex
        attrs = {"enabled": bool(attrs_in.get("enabled", True)), "created": now, "updated": now,
                 "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}
        for k in ("nbf", "exp"):
            if k in attrs_in:
                attrs[k] = int(attrs_in[k])
        b = {"value": args["value"], "id": "%s/secrets/%s/%s" % (d.url, name, ver), "attributes": attrs,
             "tags": tags, "contentType": args.get("contentType")}
        e = st.secrets.setdefault(name, {"versions": {}, "order": []})
        e["versions"][ver] = b
        e["order"].append(ver)
        e["latest"] = b
        return self.send_json(200, self._bundle_out(b))

    def update_secret(self, name, version, args):
        b = self._bundle(name, version)
        if b is None:
            raise not_found(name)
        if "tags" in args:
            b["tags"] = args["tags"]
        if "contentType" in args:
            b["contentType"] = args["contentType"]
        for k, v in (args.get("attributes") or {}).items():
            if k in ("enabled", "nbf", "exp"):
                b["attributes"][k] = v
        b["attributes"]["updated"] = int(time.time())
        out = self._bundle_out(b)
        out.pop("value", None)
        return self.send_json(200, out)

    def delete_secret(self, name):
        d = self.server.double
        st = d.state
        e = st.secrets.pop(name, None)
        if e is None:
            raise not_found(name)
        now = int(time.time())
        b = {k: v for k, v in e["latest"].items() if k != "value"}
        b.update({"recoveryId": "%s/deletedsecrets/%s" % (d.url, name), "deletedDate": now,
                  "scheduledPurgeDate": now + 90 * 86400})
        if d.soft_delete:
            st.deleted[name] = (b, e)
        return self.send_json(200, self._bundle_out(b))


class AzureKeyVaultDouble(DoubleServer):
    """In-process handle: start(), stop(), url, port, state, faults, counters.

    One server plays both the vault ({url}/secrets/...) and the Microsoft
    identity platform ({url}/{tenant}/oauth2/v2.0/token): point the client's
    vault URL and authority host at url."""
    handler = AzureHandler

    def __init__(self, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, tenant="tenant-1",
                 clients=None, token_ttl=3599, static_tokens=(), resource="https://vault.azure.net",
                 soft_delete=True, verbose=False):
        self.state = AzureState(tenant, clients if clients is not None else {"client-1": "client-secret-1"},
                                token_ttl)
        self.static_tokens = set(static_tokens)
        self.resource = resource
        self.soft_delete = soft_delete
        super().__init__(host, port, tls_cert, tls_key, verbose)
        self.authority_host = self.url

    def stats(self):
        s = super().stats()
        s["token_requests"] = self.state.token_requests
        return s

    def federate(self, client_id, issuer, subject, jwks_url, audiences=("api://AzureADTokenExchange",)):
        """A federated identity credential on application client_id: tokens of
        `issuer` for `subject` with one of `audiences`, verified with the keys
        at jwks_url (the issuer's discovery document, resolved up front)."""
        with self.state.lock:
            self.state.federated.setdefault(client_id, []).append(
                {"issuer": issuer, "subject": subject, "audiences": list(audiences), "jwks_url": jwks_url})


def main(argv=None):
    ap = arg_parser(__doc__)
    ap.add_argument("--tenant", default="tenant-1")
    ap.add_argument("--client", action="append", default=[], help="CLIENT_ID:CLIENT_SECRET (repeatable)")
    ap.add_argument("--token", action="append", default=[], help="static bearer token accepted by the vault")
    ap.add_argument("--token-ttl", type=int, default=3599)
    a = parse_args(ap, argv)
    clients = dict(c.split(":", 1) for c in a.client) if a.client else None
    d = AzureKeyVaultDouble(a.host, a.port, a.tls_cert, a.tls_key, a.tenant, clients, a.token_ttl, a.token,
                            verbose=a.verbose)
    return d.serve_main()


if __name__ == "__main__":
    sys.exit(main())
