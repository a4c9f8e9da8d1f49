#!/usr/bin/python3
"""A HashiCorp Vault test double: KV v2 secrets engine, token, AppRole,
Kubernetes, JWT and TLS certificate auth, ACL policies, namespaces (Python 3
standard library only).

Serves /v1/<mount>/data|metadata|delete|undelete|destroy/<path> for KV v2
mounts, /v1/<mount>/<path> (GET, POST/PUT, DELETE, LIST) for KV v1 mounts, /v1/auth/token/lookup-self|renew-self|revoke-self|create,
/v1/auth/approle/login and the AppRole role endpoints hvac uses,
/v1/sys/auth/<path> (enable kubernetes or jwt auth), /v1/auth/<path>/config,
/v1/auth/<path>/role/<name> and /v1/auth/<path>/login for them (Kubernetes:
the JWT reviewed by the cluster's TokenReview API as Vault does; JWT: the
signature checked against a JWKS; cert: the TLS client certificate the
double verified against --client-ca), /v1/sys/policy/<name> (path rules with
capabilities, enforced for the tokens whose policies have rules),
/v1/sys/health; the X-Vault-Namespace header selects a separate store.
Error bodies are Vault's {"errors":[...]}.

Run:   python3 server.py --port 0 [--tls-cert F --tls-key F] [--token ROOT]
       [--mount secret] [--kv1-mount kv] prints "READY <port>" once listening.
Import: VaultKvDouble(port=0, root_token="root").start() ... .stop()

Test-only admin endpoints live under /_double/ (no auth); see
docs/testing-doubles.md.
"""
import base64
import copy
import fnmatch
import json
import os
import re
import secrets
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

# The plumbing every double shares, found from any working directory.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "common"))
from doublelib import (  # noqa: E402
    arg_parser, BaseDoubleHandler, DoubleServer, parse_args, retry_after_header, rfc3339_micros)
import jwtlib  # noqa: E402


class VaultError(Exception):
    def __init__(self, code, errors, headers=None):
        super().__init__(errors)
        self.code, self.errors, self.headers = code, list(errors), headers or {}


DENIED = VaultError(403, ["permission denied"])


class Token:
    def __init__(self, tid, namespace, policies, ttl, renewable, max_ttl=0, display_name="token",
                 meta=None, path="auth/token/create", num_uses=0):
        self.id, self.namespace, self.policies = tid, namespace, list(policies)
        self.accessor = secrets.token_hex(12)
        self.ttl, self.renewable, self.max_ttl = ttl, renewable, max_ttl
        self.created = time.time()
        self.expires = self.created + ttl if ttl else None
        self.display_name, self.meta, self.path = display_name, meta, path
        self.num_uses = num_uses
        self.renewals = 0

    def remaining(self, now):
        return max(0, int(round(self.expires - now))) if self.expires else 0

    def valid(self, now):
        return self.expires is None or now < self.expires


class KvEntry:
    def __init__(self):
        self.versions = {}  # n -> {"data", "created_time", "deletion_time", "destroyed"}
        self.current = 0
        self.oldest = 0
        self.max_versions = 0
        self.cas_required = False
        self.delete_version_after = "0s"
        self.custom_metadata = None
        self.created_time = rfc3339_micros()
        self.updated_time = self.created_time

    def meta_of(self, n):
        v = self.versions[n]
        return {"created_time": v["created_time"], "custom_metadata": self.custom_metadata,
                "deletion_time": v["deletion_time"], "destroyed": v["destroyed"], "version": n}


class Namespace:
    def __init__(self):
        self.kv = {}  # (mount, path) -> KvEntry
        self.kv1 = {}  # (mount, path) -> the secret's map (KV v1)
        self.roles = {}  # name -> {"role_id", "secret_ids": {sid: {...}}, config}
        self.auth_mounts = {}  # path -> {"type": "kubernetes"|"jwt", "config": {}, "roles": {}}
        self.policies = {}  # name -> [(path glob, set of capabilities)]


class VaultState:
    def __init__(self, root_token="root", mounts=("secret",), mount_max_versions=10, default_ttl=3600,
                 max_ttl=86400, kv1_mounts=("kv",)):
        self.lock = threading.RLock()
        self.mounts = set(mounts)
        self.kv1_mounts = set(kv1_mounts)
        self.mount_max_versions = mount_max_versions
        self.default_ttl, self.max_ttl = default_ttl, max_ttl
        self.namespaces = {"": Namespace()}
        self.tokens = {}
        if root_token:
            self.tokens[root_token] = Token(root_token, "", ["root"], 0, False, display_name="root",
                                            path="auth/token/root")

    def ns(self, name):
        name = (name or "").strip("/")
        if name not in self.namespaces:
            self.namespaces[name] = Namespace()
        return self.namespaces[name]

    def new_token(self, namespace, policies, ttl, renewable=True, max_ttl=None, display_name="token",
                  meta=None, path="auth/token/create"):
        tid = "hvs." + secrets.token_urlsafe(24)
        with self.lock:
            t = Token(tid, namespace, policies, ttl, renewable,
                      self.max_ttl if max_ttl is None else max_ttl, display_name, meta, path)
            self.tokens[tid] = t
        return t

    def auth(self, token_id, namespace):
        with self.lock:
            t = self.tokens.get(token_id or "")
            if t is None or not t.valid(time.time()):
                raise DENIED
            # A token works in its own namespace and in the ones below it.
            ns = (namespace or "").strip("/")
            if t.namespace and not (ns == t.namespace or ns.startswith(t.namespace + "/")):
                raise DENIED
            return t


_POLICY_PATH = re.compile(r'path\s+"([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}')


def parse_policy(text):
    """The path rules of an HCL policy: path "glob" { capabilities = [...] }."""
    rules = []
    for path, caps in _POLICY_PATH.findall(text or ""):
        rules.append((path, {c.strip().strip('"') for c in caps.split(",") if c.strip()}))
    return rules


def _auth_block(t, now):
    return {"client_token": t.id, "accessor": t.accessor, "policies": t.policies,
            "token_policies": t.policies, "metadata": t.meta, "lease_duration": t.remaining(now),
            "renewable": t.renewable, "entity_id": "", "token_type": "service", "orphan": True,
            "mfa_requirement": None, "num_uses": t.num_uses}


def write_version(e, data, mount_max_versions):
    """Adds version current+1 to a KvEntry, trims to max_versions; returns its metadata."""
    n = e.current + 1
    e.versions[n] = {"data": copy.deepcopy(data), "created_time": rfc3339_micros(), "deletion_time": "",
                     "destroyed": False}
    e.current = n
    e.updated_time = e.versions[n]["created_time"]
    keep = e.max_versions or mount_max_versions
    while keep and len(e.versions) > keep:
        del e.versions[min(e.versions)]
    e.oldest = min(e.versions)
    return e.meta_of(n)


class VaultHandler(BaseDoubleHandler):
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_LIST = BaseDoubleHandler.dispatch

    def reply(self, status, data=None, auth=None, warnings=None, raw=None):
        if status == 204:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = raw if raw is not None else {
            "request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
            "data": data, "wrap_info": None, "warnings": warnings, "auth": auth}
        self.send_json(status, body, {"Cache-Control": "no-store"})

    def serve_api(self, path, q, body):
        d = self.server.double
        method = self.command
        if method == "GET" and q.get("list") == "true":
            method = "LIST"
        segs = path.split("/")
        verb = "auth" if segs[2:3] == ["auth"] else method.lower()
        d.counters.add(method, path, verb, segs[2] if len(segs) > 2 else "")
        try:
            if d.faults.down == "503":
                raise VaultError(503, ["Vault is sealed"])
            rule = self.take_fault(path)
            if rule:
                msg = rule.get("message") or {
                    429: 'request path "%s": rate limit quota exceeded' % path.lstrip("/v1/"),
                    500: "internal error (injected by test double)",
                    503: "Vault is sealed"}.get(rule["status"], "injected failure")
                raise VaultError(rule["status"], [msg], retry_after_header(rule))
            try:
                args = json.loads(body) if body.strip() else {}
            except ValueError:
                raise VaultError(400, ["failed to parse JSON input: invalid character"])
            if not isinstance(args, dict):
                raise VaultError(400, ["failed to parse JSON input: expected an object"])
            if not path.startswith("/v1/"):
                raise VaultError(404, [])
            self.route(method, path[4:], q, args)
        except VaultError as e:
            self.send_json(e.code, {"errors": e.errors}, e.headers)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def admin_extra(self, path, q, arg):
        d = self.server.double
        if path == "/_double/token" and self.command == "POST":
            t = d.state.new_token(arg.get("namespace", ""), arg.get("policies", ["default"]),
                                  int(arg.get("ttl", d.state.default_ttl)), bool(arg.get("renewable", True)),
                                  arg.get("max_ttl"))
            self.send_json(200, {"token": t.id, "ttl": t.ttl})
        elif path == "/_double/approle" and self.command == "POST":
            rid, sid = d.add_approle(arg.get("name", "role"), arg.get("namespace", ""),
                                     int(arg.get("token_ttl", d.state.default_ttl)),
                                     int(arg.get("token_max_ttl", d.state.max_ttl)),
                                     arg.get("role_id"), arg.get("secret_id"))
            self.send_json(200, {"role_id": rid, "secret_id": sid})
        elif path == "/_double/state" and self.command == "GET":
            with d.state.lock:
                self.send_json(200, {
                    "logins": d.logins, "renewals": d.renewals, "jwt_logins": d.jwt_logins,
                    "tokens": len(d.state.tokens),
                    "secrets": {ns or "(root)": sorted("%s/%s" % k for k in n.kv)
                                for ns, n in d.state.namespaces.items()}})
        else:
            return False
        return True

    # ----------------------------------------------------------------- routes
    def route(self, method, path, q, args):
        d = self.server.double
        st = d.state
        nsname = (self.headers.get("X-Vault-Namespace") or "").strip("/")
        now = time.time()
        if path == "sys/health":
            return self.reply(200, raw={"initialized": True, "sealed": False, "standby": False,
                                        "performance_standby": False, "replication_performance_mode": "disabled",
                                        "replication_dr_mode": "disabled", "server_time_utc": int(now),
                                        "version": "1.15.0+rootseal-double", "cluster_name": "double",
                                        "cluster_id": "00000000-0000-0000-0000-000000000000"})
        if path.startswith("auth/approle/login") and method in ("POST", "PUT"):
            return self.approle_login(nsname, args)
        am = path.split("/")
        if len(am) == 3 and am[0] == "auth" and am[2] == "login" and method in ("POST", "PUT"):
            with st.lock:
                mount = st.ns(nsname).auth_mounts.get(am[1])
            if mount is not None and mount["type"] == "cert":
                return self.cert_login(nsname, am[1], mount, args)
            if mount is not None:
                return self.jwt_login(nsname, am[1], mount, args)
        token_id = self.headers.get("X-Vault-Token")
        if not token_id:
            a = self.headers.get("Authorization") or ""
            if a.startswith("Bearer "):
                token_id = a[7:].strip()
        tok = st.auth(token_id, nsname)
        if path.startswith("auth/token/"):
            return self.token_api(method, path[len("auth/token/"):], tok, args, nsname, now)
        if path.startswith("auth/approle/role/"):
            return self.approle_admin(method, path[len("auth/approle/role/"):], tok, args, nsname)
        if path.startswith("sys/auth/") or path.startswith("sys/policy/") or path.startswith("sys/policies/acl/"):
            return self.sys_admin(method, path, tok, args, nsname)
        if am[0] == "auth" and len(am) >= 3:
            with st.lock:
                mount = st.ns(nsname).auth_mounts.get(am[1])
            if mount is not None:
                return self.jwt_admin(method, am[2:], mount, tok, args)
        parts = path.split("/")
        mount = parts[0]
        if mount in st.kv1_mounts:
            with st.lock:
                ns = st.ns(nsname)
                self.check_acl(ns, tok, path.rstrip("/") if method != "LIST" else path, method)
                return self.kv1(method, ns, mount, "/".join(parts[1:]), args)
        if mount not in st.mounts or len(parts) < 2:
            raise VaultError(403 if "root" not in tok.policies else 404,
                             ["permission denied"] if "root" not in tok.policies else
                             ["no handler for route \"%s\". route entry not found." % path])
        op = parts[1]
        key = "/".join(parts[2:]).strip("/")
        with st.lock:
            ns = st.ns(nsname)
            self.check_acl(ns, tok, path.rstrip("/") if method != "LIST" else path, method)
            if op == "config":
                if method == "GET":
                    return self.reply(200, {"cas_required": False, "delete_version_after": "0s",
                                            "max_versions": d.state.mount_max_versions})
                return self.reply(204)
            if op == "data":
                return self.kv_data(method, ns, mount, key, q, args)
            if op == "metadata":
                return self.kv_metadata(method, ns, mount, key, args)
            if op in ("delete", "undelete", "destroy") and method in ("POST", "PUT"):
                return self.kv_versions(op, ns, mount, key, args)
        raise VaultError(405, ["unsupported operation"])

    # ------------------------------------------------------------------ KV v1
    def kv1(self, method, ns, mount, key, args):
        """KV v1: one unversioned map per path; a write replaces it (no metadata, no versions)."""
        if method == "LIST":
            prefix = key.strip("/") + "/" if key.strip("/") else ""
            keys = set()
            for (m, k) in ns.kv1:
                if m == mount and k.startswith(prefix):
                    rest = k[len(prefix):]
                    keys.add(rest.split("/", 1)[0] + "/" if "/" in rest else rest)
            if not keys:
                raise VaultError(404, [])
            return self.reply(200, {"keys": sorted(keys)})
        key = key.strip("/")
        if not key:
            raise VaultError(405, ["unsupported operation"])
        if method == "GET":
            v = ns.kv1.get((mount, key))
            if v is None:
                raise VaultError(404, [])
            # Vault answers a KV v1 read with the mount's default lease (768h).
            return self.reply(200, raw={"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False,
                                        "lease_duration": 2764800, "data": copy.deepcopy(v), "wrap_info": None,
                                        "warnings": None, "auth": None})
        if method in ("POST", "PUT"):
            ns.kv1[(mount, key)] = copy.deepcopy(args)
            return self.reply(204)
        if method == "DELETE":
            ns.kv1.pop((mount, key), None)
            return self.reply(204)
        raise VaultError(405, ["unsupported operation"])

    # ------------------------------------------------------------------ KV v2
    def kv_data(self, method, ns, mount, key, q, args):
        if not key:
            raise VaultError(404, [])
        e = ns.kv.get((mount, key))
        if method == "GET":
            if e is None or not e.current:
                raise VaultError(404, [])
            try:
                n = int(q.get("version") or 0) or e.current
            except ValueError:
                raise VaultError(400, ["invalid version"])
            if n not in e.versions:
                raise VaultError(404, [])
            v = e.versions[n]
            data = {"data": None if (v["deletion_time"] or v["destroyed"]) else copy.deepcopy(v["data"]),
                    "metadata": e.meta_of(n)}
            if data["data"] is None:
                # Vault answers 404 with the metadata of a deleted/destroyed version.
                return self.reply(404, data)
            return self.reply(200, data)
        if method in ("POST", "PUT"):
            data = args.get("data")
            if not isinstance(data, dict):
                raise VaultError(400, ["no data provided"])
            opts = args.get("options") or {}
            cas = opts.get("cas")
            cur = e.current if e else 0
            if cas is None and ((e and e.cas_required)):
                raise VaultError(400, ["check-and-set parameter required for this call"])
            if cas is not None and int(cas) != cur:
                raise VaultError(400, ["check-and-set parameter did not match the current version"])
            if e is None:
                e = ns.kv[(mount, key)] = KvEntry()
            return self.reply(200, write_version(e, data, self.server.double.state.mount_max_versions))
        if method == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/merge-patch+json":
                raise VaultError(415, ["Unsupported Content-Type header: application/merge-patch+json is required"])
            if e is None or not e.current or e.versions[e.current]["deletion_time"] or \
                    e.versions[e.current]["destroyed"]:
                raise VaultError(404, [])
            cas = (args.get("options") or {}).get("cas")
            if cas is not None and int(cas) != e.current:
                raise VaultError(400, ["check-and-set parameter did not match the current version"])
            merged = copy.deepcopy(e.versions[e.current]["data"])
            for k, v in (args.get("data") or {}).items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            return self.reply(200, write_version(e, merged, self.server.double.state.mount_max_versions))
        if method == "DELETE":
            if e is not None and e.current and e.current in e.versions:
                e.versions[e.current]["deletion_time"] = rfc3339_micros()
            return self.reply(204)
        raise VaultError(405, ["unsupported operation"])

    def kv_metadata(self, method, ns, mount, key, args):
        if method == "LIST":
            prefix = key + "/" if key else ""
            keys = set()
            for (m, k), e in ns.kv.items():
                if m != mount or not k.startswith(prefix):
                    continue
                rest = k[len(prefix):]
                keys.add(rest.split("/", 1)[0] + "/" if "/" in rest else rest)
            if not keys:
                raise VaultError(404, [])
            return self.reply(200, {"keys": sorted(keys)})
        e = ns.kv.get((mount, key))
        if method == "GET":
            if e is None:
                raise VaultError(404, [])
            return self.reply(200, {
                "cas_required": e.cas_required, "created_time": e.created_time, "current_version": e.current,
                "custom_metadata": e.custom_metadata, "delete_version_after": e.delete_version_after,
                "max_versions": e.max_versions, "oldest_version": e.oldest, "updated_time": e.updated_time,
                "versions": {str(n): {"created_time": v["created_time"], "deletion_time": v["deletion_time"],
                                      "destroyed": v["destroyed"]} for n, v in sorted(e.versions.items())}})
        if method in ("POST", "PUT", "PATCH"):
            if e is None:
                e = ns.kv[(mount, key)] = KvEntry()
            if "max_versions" in args:
                e.max_versions = int(args["max_versions"])
            if "cas_required" in args:
                e.cas_required = bool(args["cas_required"])
            if "delete_version_after" in args:
                e.delete_version_after = str(args["delete_version_after"])
            if "custom_metadata" in args:
                cm = args["custom_metadata"]
                if cm is not None and (not isinstance(cm, dict) or
                                       not all(isinstance(v, str) for v in cm.values())):
                    raise VaultError(400, ["custom_metadata must be a map of strings"])
                e.custom_metadata = cm
            e.updated_time = rfc3339_micros()
            return self.reply(204)
        if method == "DELETE":
            ns.kv.pop((mount, key), None)
            return self.reply(204)
        raise VaultError(405, ["unsupported operation"])

    def kv_versions(self, op, ns, mount, key, args):
        versions = args.get("versions")
        if not isinstance(versions, list) or not versions:
            raise VaultError(400, ["no version number provided"])
        e = ns.kv.get((mount, key))
        if e is None:
            return self.reply(204)
        for n in versions:
            v = e.versions.get(int(n))
            if v is None:
                continue
            if op == "delete" and not v["deletion_time"]:
                v["deletion_time"] = rfc3339_micros()
            elif op == "undelete" and not v["destroyed"]:
                v["deletion_time"] = ""
            elif op == "destroy":
                v["destroyed"] = True
                v["data"] = None
        return self.reply(204)

    # ------------------------------------------------------------------- auth
    def token_api(self, method, op, tok, args, nsname, now):
        d = self.server.double
        st = d.state
        if op == "lookup-self" and method in ("GET", "POST", "PUT"):
            return self.reply(200, {
                "accessor": tok.accessor, "creation_time": int(tok.created), "creation_ttl": tok.ttl,
                "display_name": tok.display_name, "entity_id": "",
                "expire_time": rfc3339_micros(tok.expires) if tok.expires else None,
                "explicit_max_ttl": 0, "id": tok.id, "issue_time": rfc3339_micros(tok.created),
                "meta": tok.meta, "num_uses": tok.num_uses, "orphan": True, "path": tok.path,
                "policies": tok.policies, "renewable": tok.renewable, "ttl": tok.remaining(now),
                "type": "service", "namespace_path": (tok.namespace + "/") if tok.namespace else ""})
        if op == "renew-self" and method in ("POST", "PUT"):
            if not tok.renewable:
                raise VaultError(400, ["lease is not renewable"])
            inc = args.get("increment")
            ttl = _parse_duration(inc) if inc not in (None, "", 0) else tok.ttl
            with st.lock:
                limit = tok.created + tok.max_ttl if tok.max_ttl else None
                new_exp = now + ttl
                warnings = None
                if limit and new_exp > limit:
                    new_exp = limit
                    warnings = ["TTL of \"%ds\" exceeded the effective max_ttl of \"%ds\"; TTL value is capped "
                                "accordingly" % (ttl, int(limit - now))]
                tok.expires = new_exp
                tok.renewals += 1
                d.renewals += 1
            return self.reply(200, None, _auth_block(tok, now), warnings)
        if op == "revoke-self" and method in ("POST", "PUT"):
            with st.lock:
                st.tokens.pop(tok.id, None)
            return self.reply(204)
        if op == "create" and method in ("POST", "PUT"):
            ttl = _parse_duration(args.get("ttl")) if args.get("ttl") else st.default_ttl
            t = st.new_token(nsname, args.get("policies") or tok.policies, ttl, args.get("renewable", True),
                             display_name=args.get("display_name", "token"), meta=args.get("meta"))
            return self.reply(200, None, _auth_block(t, now))
        raise VaultError(405, ["unsupported operation"])

    # ------------------------------------------------------------ ACL policies
    @staticmethod
    def check_acl(ns, tok, path, method):
        """Enforced for a token whose policies have rules (sys/policy): one
        rule must match the path (glob, * at the end) and allow the method."""
        if "root" in tok.policies:
            return
        rules = [r for p in tok.policies for r in ns.policies.get(p, [])]
        if not rules:
            return  # (tokens of policies without rules: the double's historical allow-all)
        need = {"GET": "read", "LIST": "list", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, "read")
        for glob, caps in rules:
            if fnmatch.fnmatchcase(path, glob) and (need in caps or (need == "create" and "update" in caps)):
                return
        raise DENIED

    def sys_admin(self, method, path, tok, args, nsname):
        d = self.server.double
        if "root" not in tok.policies:
            raise DENIED
        with d.state.lock:
            ns = d.state.ns(nsname)
            if path.startswith("sys/auth/") and method in ("POST", "PUT"):
                mpath = path[len("sys/auth/"):].strip("/")
                kind = args.get("type")
                if kind not in ("kubernetes", "jwt", "cert"):
                    raise VaultError(400, ['plugin not found in the catalog: %s' % kind])
                if mpath in ns.auth_mounts:
                    raise VaultError(400, ["path is already in use at %s/" % mpath])
                ns.auth_mounts[mpath] = {"type": kind, "config": {}, "roles": {}}
                return self.reply(204)
            if path.startswith("sys/auth/") and method == "DELETE":
                ns.auth_mounts.pop(path[len("sys/auth/"):].strip("/"), None)
                return self.reply(204)
            name = path.split("/")[-1]
            if method in ("POST", "PUT"):
                ns.policies[name] = parse_policy(args.get("policy") or args.get("rules"))
                return self.reply(204)
            if method == "DELETE":
                ns.policies.pop(name, None)
                return self.reply(204)
        raise VaultError(405, ["unsupported operation"])

    # ------------------------------------------------- Kubernetes and JWT auth
    def jwt_admin(self, method, rest, mount, tok, args):
        d = self.server.double
        if "root" not in tok.policies:
            raise DENIED
        with d.state.lock:
            if rest == ["config"]:
                if method in ("POST", "PUT"):
                    mount["config"] = dict(args)
                    return self.reply(204)
                if method == "GET":
                    return self.reply(200, {k: v for k, v in mount["config"].items() if k != "token_reviewer_jwt"})
            if len(rest) == 2 and rest[0] == "certs" and mount["type"] == "cert" and method in ("POST", "PUT"):
                if not args.get("certificate"):
                    raise VaultError(400, ["missing certificate"])
                mount["roles"][rest[1]] = dict(args)
                return self.reply(204)
            if len(rest) == 2 and rest[0] == "role":
                if method in ("POST", "PUT"):
                    if mount["type"] == "kubernetes":
                        for f in ("bound_service_account_names", "bound_service_account_namespaces"):
                            if not args.get(f):
                                raise VaultError(400, ['"%s" can not be empty' % f])
                    elif not args.get("user_claim"):
                        raise VaultError(400, ["a user claim must be defined on the role"])
                    mount["roles"][rest[1]] = dict(args)
                    return self.reply(204)
                if method == "GET":
                    r = mount["roles"].get(rest[1])
                    if r is None:
                        raise VaultError(404, [])
                    return self.reply(200, r)
                if method == "DELETE":
                    mount["roles"].pop(rest[1], None)
                    return self.reply(204)
        raise VaultError(405, ["unsupported operation"])

    @staticmethod
    def _list_arg(v):
        if v is None:
            return []
        return [x.strip() for x in v.split(",")] if isinstance(v, str) else list(v)

    @staticmethod
    def _fetch_json(url, body=None, bearer=None, ca_pem=None):
        ctx = None
        if url.startswith("https://"):
            import ssl as _ssl
            ctx = _ssl.create_default_context(cadata=ca_pem) if ca_pem else _ssl.create_default_context()
        h = {"Accept": "application/json"}
        if body is not None:
            h["Content-Type"] = "application/json"
        if bearer:
            h["Authorization"] = "Bearer " + bearer
        req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, headers=h,
                                     method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise VaultError(500, ["error reaching %s: %s" % (url.split("?")[0], e)])

    def jwt_login(self, nsname, mpath, mount, args):
        """auth/<path>/login {"role", "jwt"}: Kubernetes auth reviews the JWT
        through the cluster's TokenReview API (config kubernetes_host,
        kubernetes_ca_cert, token_reviewer_jwt: else the JWT itself), as
        vault-plugin-auth-kubernetes; JWT auth verifies the signature against
        the configured JWKS (jwks_url, jwks_ca_pem) and the role's bound
        audiences, subject and claims, as vault-plugin-auth-jwt."""
        d = self.server.double
        st = d.state
        jwt = args.get("jwt")
        name = args.get("role") or ("" if mount["type"] == "kubernetes" else mount["config"].get("default_role", ""))
        if mount["type"] == "kubernetes" and not name:
            raise VaultError(400, ["missing role"])
        if not jwt:
            raise VaultError(400, ["missing jwt" if mount["type"] == "kubernetes" else "missing token"])
        with st.lock:
            role = mount["roles"].get(name)
            cfg = dict(mount["config"])
        if role is None:
            raise VaultError(400, ['invalid role name "%s"' % name if mount["type"] == "kubernetes"
                                   else 'role "%s" could not be found' % name])
        now = time.time()
        if mount["type"] == "kubernetes":
            meta = self._kubernetes_review(jwt, role, cfg)
            meta["role"] = name
            display = "%s-%s-%s" % (mpath, meta["service_account_namespace"], meta["service_account_name"])
        else:
            claims = self._jwt_validate(jwt, role, cfg, now)
            meta = {"role": name}
            display = "%s-%s" % (mpath, claims.get(role["user_claim"]))
        ttl = _parse_duration(role.get("token_ttl") or role.get("ttl") or st.default_ttl)
        max_ttl = _parse_duration(role.get("token_max_ttl") or role.get("max_ttl") or st.max_ttl)
        policies = self._list_arg(role.get("token_policies") or role.get("policies"))
        t = st.new_token(nsname, ["default"] + policies, ttl, True, max_ttl, display, meta, "auth/%s/login" % mpath)
        with st.lock:
            d.logins += 1
            d.jwt_logins.append({"mount": mpath, "role": name, "meta": meta, "t": now})
        return self.reply(200, None, _auth_block(t, now))

    @staticmethod
    def _pem_ders(pem):
        out = []
        for m in re.finditer(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem or "", re.S):
            out.append(base64.b64decode("".join(m.group(1).split())))
        return out

    def cert_login(self, nsname, mpath, mount, args):
        """auth/<path>/login {"name"?}: the TLS client certificate (verified by
        the handshake against --client-ca) must be one a role names, or be
        signed by it when the role names the client CA itself."""
        d = self.server.double
        st = d.state
        try:
            der = self.connection.getpeercert(binary_form=True)
        except (AttributeError, ValueError):
            der = None
        if not der:
            raise VaultError(400, ["client certificate must be supplied"])
        ca_ders = []
        if d.client_ca:
            with open(d.client_ca) as f:
                ca_ders = self._pem_ders(f.read())
        with st.lock:
            roles = dict(mount["roles"])
        want = args.get("name")
        for name, role in sorted(roles.items()):
            if want and name != want:
                continue
            ders = self._pem_ders(role.get("certificate"))
            if der in ders or any(c in ders for c in ca_ders):
                ttl = _parse_duration(role.get("token_ttl") or role.get("ttl") or st.default_ttl)
                max_ttl = _parse_duration(role.get("token_max_ttl") or role.get("max_ttl") or st.max_ttl)
                policies = self._list_arg(role.get("token_policies") or role.get("policies"))
                t = st.new_token(nsname, ["default"] + policies, ttl, True, max_ttl, "%s-%s" % (mpath, name),
                                 {"cert_name": name}, "auth/%s/login" % mpath)
                with st.lock:
                    d.logins += 1
                    d.jwt_logins.append({"mount": mpath, "role": name, "meta": {"cert_name": name},
                                         "t": time.time()})
                return self.reply(200, None, _auth_block(t, time.time()))
        raise VaultError(400, ["invalid certificate or no client certificate supplied"])

    def _kubernetes_review(self, jwt, role, cfg):
        try:
            claims = json.loads(jwtlib.b64url_decode(jwt.split(".")[1]))
        except (IndexError, ValueError, UnicodeDecodeError):
            raise VaultError(403, ["permission denied"])
        k = claims.get("kubernetes.io") or {}
        sa_ns, sa = k.get("namespace"), (k.get("serviceaccount") or {}).get("name")
        names = self._list_arg(role.get("bound_service_account_names"))
        nss = self._list_arg(role.get("bound_service_account_namespaces"))
        if "*" not in names and sa not in names:
            raise VaultError(403, ["service account name not authorized"])
        if "*" not in nss and sa_ns not in nss:
            raise VaultError(403, ["namespace not authorized"])
        aud = role.get("audience")
        if aud and aud not in (claims.get("aud") or []):
            raise VaultError(403, ["invalid audience (aud) claim: audience claim does not match any expected audience"])
        host = (cfg.get("kubernetes_host") or "").rstrip("/")
        if not host:
            raise VaultError(500, ["could not load backend configuration"])
        spec = {"token": jwt}
        if aud:
            spec["audiences"] = [aud]
        review = self._fetch_json(host + "/apis/authentication.k8s.io/v1/tokenreviews",
                                  {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
                                  cfg.get("token_reviewer_jwt") or jwt, cfg.get("kubernetes_ca_cert"))
        status = review.get("status") or {}
        if not status.get("authenticated"):
            raise VaultError(403, ["lookup failed: service account unauthorized; this could mean it has been "
                                   "deleted or recreated with a new token"])
        user = status.get("user") or {}
        if user.get("username") != "system:serviceaccount:%s:%s" % (sa_ns, sa):
            raise VaultError(403, ["JWT names were not the same as the ones returned by TokenReview"])
        return {"service_account_name": sa, "service_account_namespace": sa_ns,
                "service_account_uid": user.get("uid", ""), "service_account_secret_name": ""}

    def _jwt_validate(self, jwt, role, cfg, now):
        if cfg.get("jwks_url"):
            keys = self._fetch_json(cfg["jwks_url"], ca_pem=cfg.get("jwks_ca_pem")).get("keys") or []
        elif cfg.get("jwks"):
            keys = cfg["jwks"]  # (a JWKS given inline: double-only convenience)
        else:
            raise VaultError(400, ["error validating token: no JWKS configured"])
        try:
            claims = jwtlib.verify(jwt, keys)
        except ValueError as e:
            raise VaultError(400, ["error validating token: %s" % e])
        leeway = int(role.get("expiration_leeway", 150))
        if isinstance(claims.get("exp"), (int, float)) and claims["exp"] + leeway < now:
            raise VaultError(400, ["error validating claims: validation failed, token is expired (exp)"])
        if isinstance(claims.get("nbf"), (int, float)) and claims["nbf"] - int(role.get("not_before_leeway", 150)) > now:
            raise VaultError(400, ["error validating claims: validation failed, token not valid yet (nbf)"])
        if cfg.get("bound_issuer") and claims.get("iss") != cfg["bound_issuer"]:
            raise VaultError(400, ["error validating claims: validation failed, invalid issuer (iss) claim"])
        bound_aud = self._list_arg(role.get("bound_audiences"))
        aud = claims.get("aud") or []
        aud = [aud] if isinstance(aud, str) else aud
        if bound_aud and not any(a in bound_aud for a in aud):
            raise VaultError(400, ["error validating claims: validation failed, invalid audience (aud) claim: "
                                   "audience claim does not match any expected audience"])
        if not bound_aud and aud:
            raise VaultError(400, ["audience claim found in JWT but no audiences bound to the role"])
        if role.get("bound_subject") and claims.get("sub") != role["bound_subject"]:
            raise VaultError(400, ["sub claim does not match bound subject"])
        for k, v in (role.get("bound_claims") or {}).items():
            have = claims
            for part in k.strip("/").split("/"):
                have = have.get(part) if isinstance(have, dict) else None
            want = v if isinstance(v, list) else [v]
            if have not in want:
                raise VaultError(400, ['claim "%s" does not match any associated bound claim values' % k])
        if claims.get(role["user_claim"]) in (None, ""):
            raise VaultError(400, ['claim "%s" not found in token' % role["user_claim"]])
        return claims

    def approle_login(self, nsname, args):
        d = self.server.double
        st = d.state
        rid, sid = args.get("role_id"), args.get("secret_id")
        if not rid:
            raise VaultError(400, ["missing role_id"])
        with st.lock:
            ns = st.namespaces.get(nsname)
            role = None
            for name, r in (ns.roles.items() if ns else []):
                if secrets.compare_digest(r["role_id"], str(rid)):
                    role = (name, r)
            if role is None:
                raise VaultError(400, ["invalid role or secret ID"])
            name, r = role
            if r["bind_secret_id"] and not any(secrets.compare_digest(s, str(sid or "")) for s in r["secret_ids"]):
                raise VaultError(400, ["invalid role or secret ID"])
            t = st.new_token(nsname, ["default"] + list(r["token_policies"]), r["token_ttl"], True,
                             r["token_max_ttl"], "approle", {"role_name": name}, "auth/approle/login")
            d.logins += 1
        return self.reply(200, None, _auth_block(t, time.time()))

    def approle_admin(self, method, rest, tok, args, nsname):
        d = self.server.double
        if "root" not in tok.policies:
            raise DENIED
        parts = rest.split("/")
        name = parts[0]
        with d.state.lock:
            ns = d.state.ns(nsname)
            if len(parts) == 1 and method in ("POST", "PUT"):
                r = ns.roles.setdefault(name, {"role_id": str(uuid.uuid4()), "secret_ids": {},
                                               "bind_secret_id": True, "token_policies": [],
                                               "token_ttl": d.state.default_ttl, "token_max_ttl": d.state.max_ttl})
                if "token_ttl" in args:
                    r["token_ttl"] = _parse_duration(args["token_ttl"])
                if "token_max_ttl" in args:
                    r["token_max_ttl"] = _parse_duration(args["token_max_ttl"])
                if "token_policies" in args:
                    p = args["token_policies"]
                    r["token_policies"] = p.split(",") if isinstance(p, str) else list(p)
                if "bind_secret_id" in args:
                    r["bind_secret_id"] = bool(args["bind_secret_id"])
                return self.reply(204)
            r = ns.roles.get(name)
            if r is None:
                raise VaultError(404, [])
            if len(parts) == 1 and method == "GET":
                return self.reply(200, {"token_ttl": r["token_ttl"], "token_max_ttl": r["token_max_ttl"],
                                        "token_policies": r["token_policies"], "bind_secret_id": r["bind_secret_id"]})
            if parts[1:] == ["role-id"]:
                if method == "GET":
                    return self.reply(200, {"role_id": r["role_id"]})
                r["role_id"] = str(args.get("role_id") or r["role_id"])
                return self.reply(204)
            if parts[1:] == ["secret-id"] and method in ("POST", "PUT"):
                sid = str(uuid.uuid4())
                r["secret_ids"][sid] = {"created": time.time()}
                return self.reply(200, {"secret_id": sid, "secret_id_accessor": str(uuid.uuid4()),
                                        "secret_id_ttl": 0, "secret_id_num_uses": 0})
            if parts[1:] == ["custom-secret-id"] and method in ("POST", "PUT"):
                sid = str(args.get("secret_id"))
                r["secret_ids"][sid] = {"created": time.time()}
                return self.reply(200, {"secret_id": sid, "secret_id_accessor": str(uuid.uuid4()),
                                        "secret_id_ttl": 0, "secret_id_num_uses": 0})
        raise VaultError(405, ["unsupported operation"])


_DUR = re.compile(r"(\d+)([smhd]?)")


def _parse_duration(v):
    if isinstance(v, (int, float)):
        return int(v)
    total = 0
    s = str(v).strip()
    if not s:
        return 0
    for num, unit in _DUR.findall(s):
        total += int(num) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return total


class VaultKvDouble(DoubleServer):
    """In-process handle: start(), stop(), url, port, state, faults, counters."""
    handler = VaultHandler

    def __init__(self, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, root_token="root",
                 mounts=("secret",), default_ttl=3600, max_ttl=86400, verbose=False, client_ca=None,
                 kv1_mounts=("kv",)):
        self.state = VaultState(root_token, mounts, default_ttl=default_ttl, max_ttl=max_ttl, kv1_mounts=kv1_mounts)
        self.client_ca = client_ca  # TLS client certificates it signed may log in with cert auth
        self.logins = 0
        self.renewals = 0
        self.jwt_logins = []  # {"mount", "role", "meta", "t"} per Kubernetes/JWT/cert login
        super().__init__(host, port, tls_cert, tls_key, verbose, client_ca)

    def add_approle(self, name, namespace="", token_ttl=3600, token_max_ttl=86400, role_id=None, secret_id=None):
        with self.state.lock:
            ns = self.state.ns(namespace)
            r = ns.roles.setdefault(name, {"role_id": role_id or str(uuid.uuid4()), "secret_ids": {},
                                           "bind_secret_id": True, "token_policies": []})
            r["token_ttl"], r["token_max_ttl"] = token_ttl, token_max_ttl
            if role_id:
                r["role_id"] = role_id
            sid = secret_id or str(uuid.uuid4())
            r["secret_ids"][sid] = {"created": time.time()}
            return r["role_id"], sid

    def put(self, path, data, mount="secret", namespace=""):
        """Writes a new version directly (test setup); returns the version."""
        with self.state.lock:
            ns = self.state.ns(namespace)
            e = ns.kv.setdefault((mount, path), KvEntry())
            return write_version(e, data, self.state.mount_max_versions)["version"]

    def remove(self, path, mount="secret", namespace=""):
        """Deletes a secret with all its versions and metadata (test setup, as DELETE .../metadata/<path>)."""
        with self.state.lock:
            self.state.ns(namespace).kv.pop((mount, path), None)


def main(argv=None):
    ap = arg_parser(__doc__)
    ap.add_argument("--token", default="root", help="root token (default: root)")
    ap.add_argument("--mount", action="append", help="KV v2 mount path (repeatable; default: secret)")
    ap.add_argument("--kv1-mount", action="append", help="KV v1 mount path (repeatable; default: kv)")
    ap.add_argument("--default-ttl", type=int, default=3600, help="TTL of AppRole/created tokens")
    ap.add_argument("--approle", action="append", default=[],
                    help="NAME:ROLE_ID:SECRET_ID[:NAMESPACE] AppRole to create at start (repeatable)")
    a = parse_args(ap, argv)
    d = VaultKvDouble(a.host, a.port, a.tls_cert, a.tls_key, a.token, tuple(a.mount or ["secret"]),
                      a.default_ttl, verbose=a.verbose, kv1_mounts=tuple(a.kv1_mount or ["kv"]))
    for spec in a.approle:
        p = spec.split(":")
        if len(p) < 3:
            ap.error("--approle wants NAME:ROLE_ID:SECRET_ID[:NAMESPACE]")
        d.add_approle(p[0], p[3] if len(p) > 3 else "", a.default_ttl, role_id=p[1], secret_id=p[2])
    return d.serve_main()


if __name__ == "__main__":
    sys.exit(main())
