#!/usr/bin/python3
"""A Kubernetes API server test double (Python 3 standard library only).

Serves core/v1 Namespaces, Secrets, ConfigMaps, Events and ServiceAccounts;
apps/v1 Deployments, StatefulSets and DaemonSets; rbac.authorization.k8s.io/v1
Roles, RoleBindings, ClusterRoles, ClusterRoleBindings and
apiextensions.k8s.io/v1 CustomResourceDefinitions (stored, not enforced or
served: so that deploy/ can be applied); and the External Secrets Operator
CRDs (external-secrets.io v1 + v1beta1 ExternalSecret, SecretStore,
ClusterSecretStore; v1alpha1 PushSecret) with the API machinery behaviour of
/work/shared/reference/eso-k8s.md section 4: a global resourceVersion,
409 Conflict / AlreadyExists, Status error bodies, merge / JSON / strategic
merge patch, server-side apply with managedFields, the /status subresource
with generation semantics, chunked watch with BOOKMARK and in-stream 410
Expired, limit/continue pagination, finalizers and ownerReference garbage
collection, bearer-token auth.

Run:   python3 server.py --port 0 [--tls-cert F --tls-key F] [--token T]
       prints "READY <port>" once listening.
Import: K8sApiServerDouble(port=0, tokens=["t"]).start() ... .stop()

Test-only admin endpoints live under /_double/ (no auth); see
docs/testing-doubles.md.
"""
import base64
import bisect
import json
import os
import re
import ssl
import sys
import threading
import time
import uuid

# The plumbing every double shares, found from any working directory.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "common"))
from doublelib import (  # noqa: E402
    arg_parser, BaseDoubleHandler, DoubleServer, jcopy, now_rfc3339, parse_args)
import jwtlib  # noqa: E402

# The issuer and default audience of ServiceAccount tokens, as a kubeadm
# cluster's (--service-account-issuer, --api-audiences).
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


# --------------------------------------------------------------------------
# Resource catalogue
# --------------------------------------------------------------------------


class Res:
    def __init__(self, group, versions, kind, plural, singular, namespaced, status_sub, short=(),
                 crd=False, generation=True, storage=None):
        self.group, self.versions, self.kind, self.plural = group, list(versions), kind, plural
        self.singular, self.namespaced, self.status_sub = singular, namespaced, status_sub
        self.short, self.crd, self.generation = list(short), crd, generation
        self.storage = storage or self.versions[0]

    def gv(self, version):
        return version if not self.group else self.group + "/" + version

    @property
    def gr(self):
        return (self.group, self.plural)


ESO = "external-secrets.io"


def default_resources(serve_v1beta1=True):
    eso_versions = ["v1", "v1beta1"] if serve_v1beta1 else ["v1"]
    return [
        Res("", ["v1"], "Namespace", "namespaces", "namespace", False, True, ["ns"]),
        Res("", ["v1"], "Secret", "secrets", "secret", True, False, generation=False),
        Res("", ["v1"], "ConfigMap", "configmaps", "configmap", True, False, ["cm"], generation=False),
        Res("", ["v1"], "Event", "events", "event", True, False, ["ev"], generation=False),
        Res("", ["v1"], "ServiceAccount", "serviceaccounts", "serviceaccount", True, False, ["sa"],
            generation=False),
        Res("apps", ["v1"], "Deployment", "deployments", "deployment", True, True, ["deploy"]),
        Res("apps", ["v1"], "StatefulSet", "statefulsets", "statefulset", True, True, ["sts"]),
        Res("apps", ["v1"], "DaemonSet", "daemonsets", "daemonset", True, True, ["ds"]),
        Res(ESO, eso_versions, "ExternalSecret", "externalsecrets", "externalsecret", True, True,
            ["es"], crd=True),
        Res(ESO, eso_versions, "SecretStore", "secretstores", "secretstore", True, True, ["ss"],
            crd=True),
        Res(ESO, eso_versions, "ClusterSecretStore", "clustersecretstores", "clustersecretstore",
            False, True, ["css"], crd=True),
        Res(ESO, ["v1alpha1"], "PushSecret", "pushsecrets", "pushsecret", True, True, [], crd=True),
        # Stored only, for applying deploy/ (tests/ops/test_kustomize.py): the
        # double neither enforces RBAC nor serves the kinds a CRD defines (the
        # external-secrets.io kinds above are always served).
        Res("rbac.authorization.k8s.io", ["v1"], "Role", "roles", "role", True, False, generation=False),
        Res("rbac.authorization.k8s.io", ["v1"], "RoleBinding", "rolebindings", "rolebinding", True, False,
            generation=False),
        Res("rbac.authorization.k8s.io", ["v1"], "ClusterRole", "clusterroles", "clusterrole", False, False,
            generation=False),
        Res("rbac.authorization.k8s.io", ["v1"], "ClusterRoleBinding", "clusterrolebindings",
            "clusterrolebinding", False, False, generation=False),
        Res("apiextensions.k8s.io", ["v1"], "CustomResourceDefinition", "customresourcedefinitions",
            "customresourcedefinition", False, True, ["crd", "crds"]),
    ]


VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details, self.headers = details, headers or {}

    def status(self):
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            s["details"] = self.details
        return s


def _qualified(res):
    return res.plural if not res.group else res.plural + "." + res.group


def not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (_qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.plural})


def conflict(res, name):
    return ApiError(409, "Conflict",
                    'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                    % (_qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.plural})


def invalid(res, name, causes):
    msg = '%s "%s" is invalid: %s' % (res.kind, name,
                                      ", ".join("%s: %s" % (c["field"], c["message"]) for c in causes))
    if len(causes) > 1:
        msg = '%s "%s" is invalid: [%s]' % (res.kind, name, ", ".join(
            "%s: %s" % (c["field"], c["message"]) for c in causes))
    return ApiError(422, "Invalid", msg,
                    {"name": name, "group": res.group, "kind": res.kind, "causes": causes})


def bad_request(msg):
    return ApiError(400, "BadRequest", msg)


# --------------------------------------------------------------------------
# Selectors, validation, patches
# --------------------------------------------------------------------------

_SEL_SET = re.compile(r"^\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_SEL_EQ = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


def _split_selector(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_label_selector(s):
    """Returns a predicate over a labels dict; raises ApiError 400 on syntax errors."""
    reqs = []
    for part in _split_selector(s or ""):
        m = _SEL_EQ.match(part)
        if m:
            key, op, val = m.groups()
            reqs.append(("ne" if op == "!=" else "eq", key, {val}))
            continue
        m = _SEL_SET.match(part)
        if m:
            neg, key, op, vals = m.groups()
            if op:
                reqs.append((op, key, {v.strip() for v in vals.split(",") if v.strip()}))
            else:
                reqs.append(("notexists" if neg else "exists", key, None))
            continue
        raise bad_request("unable to parse requirement: found '%s', expected a valid selector" % part.strip())

    def pred(labels):
        labels = labels or {}
        for op, key, vals in reqs:
            has = key in labels
            if op == "eq" and (not has or labels[key] not in vals):
                return False
            if op == "in" and (not has or labels[key] not in vals):
                return False
            if op == "ne" and has and labels[key] in vals:
                return False
            if op == "notin" and has and labels[key] in vals:
                return False
            if op == "exists" and not has:
                return False
            if op == "notexists" and has:
                return False
        return True
    return pred


def parse_field_selector(s, res):
    reqs = []
    for part in _split_selector(s or ""):
        m = _SEL_EQ.match(part)
        if not m:
            raise bad_request("invalid selector: '%s'; can't understand '%s'" % (s, part))
        key, op, val = m.groups()
        if key not in ("metadata.name", "metadata.namespace") and not (res.plural == "secrets" and key == "type"):
            raise bad_request('field label not supported: %s' % key)
        reqs.append((key, op != "!=", val))

    def get(obj, key):
        if key == "type":
            return obj.get("type", "")
        return obj.get("metadata", {}).get(key.split(".", 1)[1], "")

    def pred(obj):
        return all((get(obj, k) == v) == want for k, want, v in reqs)
    return pred


_DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _qualified_name_errors(key):
    errs = []
    name = key
    if "/" in key:
        prefix, name = key.split("/", 1)
        if len(prefix) > 253 or not _DNS1123_SUB.match(prefix):
            errs.append("prefix part must be a lowercase RFC 1123 subdomain")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        errs.append("name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
                    "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
                    "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
    return errs


def validate(res, obj):
    """Kubernetes-style field validation for what the sync engine writes; returns causes."""
    causes = []
    md = obj.get("metadata") or {}
    name = md.get("name", "")
    if res.plural == "namespaces":
        ok = len(name) <= 63 and _DNS1123_LABEL.match(name)
    else:
        ok = len(name) <= 253 and _DNS1123_SUB.match(name)
    if not ok:
        causes.append({"type": "FieldValueInvalid", "field": "metadata.name",
                       "message": 'Invalid value: "%s": a lowercase RFC 1123 subdomain must consist of '
                       "lower case alphanumeric characters, '-' or '.', and must start and end with an "
                       "alphanumeric character" % name})
    for k, v in (md.get("labels") or {}).items():
        for e in _qualified_name_errors(k):
            causes.append({"type": "FieldValueInvalid", "field": "metadata.labels",
                           "message": 'Invalid value: "%s": %s' % (k, e)})
        if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.match(v):
            causes.append({"type": "FieldValueInvalid", "field": "metadata.labels",
                           "message": 'Invalid value: "%s": a valid label must be an empty string or '
                           "consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                           "with an alphanumeric character" % (v,)})
    for k, v in (md.get("annotations") or {}).items():
        for e in _qualified_name_errors(k):
            causes.append({"type": "FieldValueInvalid", "field": "metadata.annotations",
                           "message": 'Invalid value: "%s": %s' % (k, e)})
        if not isinstance(v, str):
            raise bad_request("json: cannot unmarshal %s into Go struct field ObjectMeta.metadata.annotations of type string"
                              % type(v).__name__)
    if sum(len(k) + len(v) for k, v in (md.get("annotations") or {}).items()) > 262144:
        causes.append({"type": "FieldValueTooLong", "field": "metadata.annotations",
                       "message": "Too long: must have at most 262144 bytes"})
    if res.plural in ("secrets", "configmaps"):
        total = 0
        for field in ("data", "binaryData") if res.plural == "configmaps" else ("data",):
            data = obj.get(field) or {}
            if not isinstance(data, dict):
                raise bad_request("json: cannot unmarshal into Go struct field %s.%s" % (res.kind, field))
            for k, v in data.items():
                if not _CONFIG_KEY.match(k) or len(k) > 253:
                    causes.append({"type": "FieldValueInvalid", "field": "%s[%s]" % (field, k),
                                   "message": 'Invalid value: "%s": a valid config key must consist of '
                                   "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
                                   "'KEY_NAME',  or 'key-name', regex used for validation is "
                                   "'[-._a-zA-Z0-9]+')" % k})
                if res.plural == "secrets":
                    if not isinstance(v, str):
                        raise bad_request("json: cannot unmarshal %s into Go struct field Secret.data of type []uint8"
                                          % type(v).__name__)
                    try:
                        total += len(base64.b64decode(v, validate=True))
                    except Exception:
                        raise bad_request("illegal base64 data at input byte 0 in Secret data[%s]" % k)
                else:
                    total += len(v) if isinstance(v, str) else 0
        if total > 1048576:
            causes.append({"type": "FieldValueTooLong", "field": "data",
                           "message": "Too long: must have at most 1048576 bytes"})
    return causes


def json_pointer_parts(ptr):
    if ptr == "":
        return []
    if not ptr.startswith("/"):
        raise ValueError("JSON pointer must start with /: %r" % ptr)
    return [p.replace("~1", "/").replace("~0", "~") for p in ptr[1:].split("/")]


def _jp_parent(doc, parts):
    return _jp_get(doc, parts[:-1])


def _jp_get(doc, parts):
    cur = doc
    for p in parts:
        if isinstance(cur, list):
            cur = cur[int(p)]
        elif isinstance(cur, dict):
            cur = cur[p]
        else:
            raise KeyError(p)
    return cur


def apply_json_patch(doc, ops):
    """RFC 6902 on a deep copy; raises ValueError with a message on failure."""
    doc = jcopy(doc)
    if not isinstance(ops, list):
        raise ValueError("json patch must be a JSON array")
    for op in ops:
        try:
            kind = op["op"]
            parts = json_pointer_parts(op["path"])

            def add(parts, value):
                nonlocal doc
                if not parts:
                    doc = value
                    return
                parent = _jp_parent(doc, parts)
                last = parts[-1]
                if isinstance(parent, list):
                    idx = len(parent) if last == "-" else int(last)
                    if idx < 0 or idx > len(parent):
                        raise IndexError("index out of range")
                    parent.insert(idx, value)
                elif isinstance(parent, dict):
                    parent[last] = value
                else:
                    raise KeyError(last)

            def remove(parts):
                parent = _jp_parent(doc, parts)
                last = parts[-1]
                if isinstance(parent, list):
                    return parent.pop(int(last))
                if last not in parent:
                    raise KeyError(last)
                return parent.pop(last)

            if kind == "add":
                add(parts, jcopy(op["value"]))
            elif kind == "remove":
                remove(parts)
            elif kind == "replace":
                _jp_get(doc, parts)
                if not parts:
                    doc = jcopy(op["value"])
                else:
                    parent = _jp_parent(doc, parts)
                    parent[int(parts[-1]) if isinstance(parent, list) else parts[-1]] = jcopy(op["value"])
            elif kind == "move":
                val = remove(json_pointer_parts(op["from"]))
                add(parts, val)
            elif kind == "copy":
                add(parts, jcopy(_jp_get(doc, json_pointer_parts(op["from"]))))
            elif kind == "test":
                if _jp_get(doc, parts) != op["value"]:
                    raise ValueError("testing value %s failed" % op["path"])
            else:
                raise ValueError("Unexpected kind: %s" % kind)
        except ValueError:
            raise
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError("%s operation does not apply: doc is missing path: \"%s\": %s"
                             % (op.get("op") if isinstance(op, dict) else "?",
                                op.get("path") if isinstance(op, dict) else "?", e))
    return doc


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return jcopy(patch)
    out = jcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# Strategic merge: merge keys for the list fields of the built-in types the
# sync engine touches. Lists not named here are replaced (as in Kubernetes
# for atomic lists); finalizers merge as a set.
_SMP_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name",
             "env": "name", "volumes": "name", "volumeMounts": "mountPath", "ports": "containerPort",
             "imagePullSecrets": "name", "ownerReferences": "uid", "tolerations": None,
             "envFrom": None, "conditions": "type"}
_SMP_SETS = {"finalizers"}


def strategic_merge(target, patch):
    if not isinstance(patch, dict):
        return jcopy(patch)
    out = jcopy(target) if isinstance(target, dict) else {}
    if patch.get("$patch") == "replace":
        return {k: jcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k == "$retainKeys" or k == "$patch":
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            out[field] = [x for x in out.get(field) or [] if x not in v]
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and k in _SMP_SETS:
            cur = list(out.get(k) or [])
            out[k] = cur + [x for x in v if x not in cur]
        elif isinstance(v, list) and _SMP_KEYS.get(k) and all(isinstance(x, dict) for x in v):
            key = _SMP_KEYS[k]
            cur = [jcopy(x) for x in (out.get(k) or [])]
            for item in v:
                idx = next((i for i, c in enumerate(cur) if isinstance(c, dict) and c.get(key) == item.get(key)), None)
                if item.get("$patch") == "delete":
                    if idx is not None:
                        cur.pop(idx)
                elif idx is None:
                    cur.append({a: b for a, b in item.items() if a != "$patch"})
                else:
                    cur[idx] = strategic_merge(cur[idx], item)
            out[k] = cur
        elif isinstance(v, dict):
            merged = strategic_merge(out.get(k), v)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        else:
            out[k] = jcopy(v)
    return out


# --------------------------------------------------------------------------
# Minimal protobuf request decoding. kubectl's typed "create" generators
# (kubectl create namespace / secret / configmap) send
# application/vnd.kubernetes.protobuf and do not fall back to JSON, so the
# double decodes those three kinds (responses are always JSON, which the
# client accepts).
# --------------------------------------------------------------------------


def _pb_fields(buf):
    i, n, out = 0, len(buf), []

    def varint():
        nonlocal i
        shift = val = 0
        while True:
            if i >= n:
                raise ValueError("truncated varint")
            b = buf[i]
            i += 1
            val |= (b & 0x7F) << shift
            if not b & 0x80:
                return val
            shift += 7
    while i < n:
        key = varint()
        fno, wt = key >> 3, key & 7
        if wt == 0:
            out.append((fno, varint()))
        elif wt == 2:
            ln = varint()
            if i + ln > n:
                raise ValueError("truncated field")
            out.append((fno, bytes(buf[i:i + ln])))
            i += ln
        elif wt == 1:
            out.append((fno, bytes(buf[i:i + 8])))
            i += 8
        elif wt == 5:
            out.append((fno, bytes(buf[i:i + 4])))
            i += 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
    return out


def _pb_map(entries, bytes_values=False):
    out = {}
    for raw in entries:
        kv = dict(_pb_fields(raw))
        v = kv.get(2, b"")
        out[kv.get(1, b"").decode()] = base64.b64encode(v).decode() if bytes_values else v.decode()
    return out


def _pb_meta(buf):
    md, labels, ann, fins, owners = {}, [], [], [], []
    for fno, v in _pb_fields(buf):
        if fno in (1, 2, 3) and v:
            md[{1: "name", 2: "generateName", 3: "namespace"}[fno]] = v.decode()
        elif fno == 11:
            labels.append(v)
        elif fno == 12:
            ann.append(v)
        elif fno == 13:
            o = {}
            for f, x in _pb_fields(v):
                if f in (1, 3, 4, 5):
                    o[{1: "kind", 3: "name", 4: "uid", 5: "apiVersion"}[f]] = x.decode()
                elif f in (6, 7):
                    o[{6: "controller", 7: "blockOwnerDeletion"}[f]] = bool(x)
            owners.append(o)
        elif fno == 14:
            fins.append(v.decode())
    if labels:
        md["labels"] = _pb_map(labels)
    if ann:
        md["annotations"] = _pb_map(ann)
    if owners:
        md["ownerReferences"] = owners
    if fins:
        md["finalizers"] = fins
    return md


def decode_k8s_protobuf(body):
    if not body.startswith(b"k8s\x00"):
        raise ValueError("missing k8s protobuf envelope")
    env = dict(_pb_fields(body[4:]))
    tm = dict(_pb_fields(env.get(1, b"")))
    api_version, kind = tm.get(1, b"").decode(), tm.get(2, b"").decode()
    raw = env.get(2, b"")
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {}}
    fields = _pb_fields(raw)
    if kind == "Namespace":
        for fno, v in fields:
            if fno == 1:
                obj["metadata"] = _pb_meta(v)
            elif fno == 2:
                fins = [x.decode() for f, x in _pb_fields(v) if f == 1]
                if fins:
                    obj["spec"] = {"finalizers": fins}
    elif kind in ("Secret", "ConfigMap"):
        data, other = [], []
        for fno, v in fields:
            if fno == 1:
                obj["metadata"] = _pb_meta(v)
            elif fno == 2:
                data.append(v)
            elif kind == "Secret" and fno == 3:
                obj["type"] = v.decode()
            elif (kind == "Secret" and fno == 4) or (kind == "ConfigMap" and fno == 3):
                other.append(v)
            elif (kind == "Secret" and fno == 5) or (kind == "ConfigMap" and fno == 4):
                obj["immutable"] = bool(v)
        if data:
            obj["data"] = _pb_map(data, bytes_values=(kind == "Secret"))
        if other:
            obj["stringData" if kind == "Secret" else "binaryData"] = _pb_map(other, kind == "ConfigMap")
    elif kind == "ServiceAccount":
        for fno, v in fields:
            if fno == 1:
                obj["metadata"] = _pb_meta(v)
    elif kind == "TokenRequest":  # kubectl create token: spec{audiences=1, boundObjectRef=3, expirationSeconds=4}
        spec = {}
        for fno, v in fields:
            if fno == 1:
                obj["metadata"] = _pb_meta(v)
            elif fno == 2:
                for f, x in _pb_fields(v):
                    if f == 1:
                        spec.setdefault("audiences", []).append(x.decode())
                    elif f == 4:
                        spec["expirationSeconds"] = x
        obj["spec"] = spec
    else:
        raise ValueError("protobuf bodies are decoded for Namespace, Secret, ConfigMap, ServiceAccount and "
                         "TokenRequest only, not %s" % kind)
    return obj


# --------------------------------------------------------------------------
# Managed fields (server-side apply ownership), simplified: leaf paths of
# maps; lists are atomic leaves.
# --------------------------------------------------------------------------

_SYSTEM_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink",
                "generateName"}


def leaf_paths(obj, include_status=False):
    out = {}

    def walk(v, path):
        if isinstance(v, dict) and v:
            for k, sub in v.items():
                walk(sub, path + (k,))
        else:
            out[path] = v
    for k, v in obj.items():
        if k in ("apiVersion", "kind"):
            continue
        if k == "status" and not include_status:
            continue
        if k == "metadata":
            for mk, mv in (v or {}).items():
                if mk not in _SYSTEM_META:
                    walk(mv, ("metadata", mk))
            continue
        walk(v, (k,))
    return out


def paths_to_fields(paths):
    tree = {}
    for p in sorted(paths):
        cur = tree
        for k in p:
            cur = cur.setdefault("f:" + k, {})
    return tree


def fields_to_paths(tree, prefix=()):
    out = set()
    for k, v in (tree or {}).items():
        if not k.startswith("f:"):
            continue
        p = prefix + (k[2:],)
        if v:
            out |= fields_to_paths(v, p)
        else:
            out.add(p)
    return out


def _del_path(obj, path):
    stack = []
    cur = obj
    for k in path[:-1]:
        if not isinstance(cur, dict) or k not in cur:
            return
        stack.append((cur, k))
        cur = cur[k]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)
    # prune emptied maps
    for parent, k in reversed(stack):
        if isinstance(parent[k], dict) and not parent[k] and k not in ("metadata",):
            parent.pop(k)
        else:
            break


def deep_merge_apply(base, cfg):
    """Apply-config merge: maps merge recursively, lists and scalars replace."""
    if not isinstance(cfg, dict) or not isinstance(base, dict):
        return jcopy(cfg)
    out = jcopy(base)
    for k, v in cfg.items():
        out[k] = deep_merge_apply(out.get(k), v) if isinstance(v, dict) else jcopy(v)
    return out


# --------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------


class Store:
    def __init__(self, resources, history_window=300.0, max_history=200000, continue_ttl=300.0,
                 bookmark_interval=1.0):
        self.resources = resources
        self.by_gr = {r.gr: r for r in resources}
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 1000
        self.objects = {r.gr: {} for r in resources}
        self.history = []  # (rv, gr, namespace, type, obj, old_obj, time)
        self.compacted_rv = self.rv
        self.history_window, self.max_history = history_window, max_history
        self.continue_ttl = continue_ttl
        self.snapshots = {}
        self.bookmark_interval = bookmark_interval
        self.kick_generation = 0     # bumped to end every open watch with ERROR 410
        self.close_generation = 0    # bumped to end every open watch silently
        self.bookmark_generation = 0  # bumped to send a BOOKMARK now
        self.dependents = {}  # owner uid -> {(gr, (namespace, name))}
        self.live_uids = set()  # uids of every stored object (owner existence for GC)
        with self.lock:
            for ns in ("default", "kube-system", "kube-public"):
                self._put(self.by_gr[("", "namespaces")], None, self._new_meta_obj(
                    self.by_gr[("", "namespaces")], "v1", {"metadata": {"name": ns}}, None, "kube-apiserver"))

    # -- helpers
    def _next_rv(self):
        self.rv += 1
        return self.rv

    def _record(self, res, ns, etype, obj, old=None):
        self.history.append((int(obj["metadata"]["resourceVersion"]), res.gr, ns, etype, obj, old,
                             time.monotonic()))
        self._trim_history()
        self.cond.notify_all()

    def _trim_history(self):
        cutoff = time.monotonic() - self.history_window
        drop = 0
        n = len(self.history)
        while drop < n and (n - drop > self.max_history or self.history[drop][6] < cutoff):
            drop += 1
        if drop:
            self.compacted_rv = max(self.compacted_rv, self.history[drop - 1][0])
            del self.history[:drop]

    def expire_history(self, kick=True):
        """Drops the watch history: every resourceVersion handed out so far is
        now too old (410 Expired on watch); open watches get an in-stream
        ERROR 410 when kick is set."""
        with self.lock:
            self._next_rv()
            self.compacted_rv = self.rv
            self.history = []
            self.snapshots = {}
            if kick:
                self.kick_generation += 1
            self.cond.notify_all()

    def close_watches(self):
        with self.lock:
            self.close_generation += 1
            self.cond.notify_all()

    def bookmark_now(self):
        with self.lock:
            self.bookmark_generation += 1
            self.cond.notify_all()

    def _new_meta_obj(self, res, version, body, ns, manager):
        obj = jcopy(body)
        obj["apiVersion"] = res.gv(res.storage)
        obj["kind"] = res.kind
        md = obj.setdefault("metadata", {})
        if ns is not None:
            md["namespace"] = ns
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        if res.generation:
            md["generation"] = 1
        if res.plural == "namespaces":
            obj["status"] = {"phase": "Active"}
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md["name"]
        return obj

    def _index_owners(self, gr, key, old, new):
        """Keeps dependents[owner uid] = {(gr, key)} for garbage collection."""
        for ref in ((old or {}).get("metadata", {}).get("ownerReferences") or []):
            deps = self.dependents.get(ref.get("uid"))
            if deps is not None:
                deps.discard((gr, key))
                if not deps:
                    del self.dependents[ref.get("uid")]
        for ref in ((new or {}).get("metadata", {}).get("ownerReferences") or []):
            self.dependents.setdefault(ref.get("uid"), set()).add((gr, key))

    def _put(self, res, ns, obj, etype="ADDED", old=None):
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        key = (ns or "", obj["metadata"]["name"])
        self._index_owners(res.gr, key, self.objects[res.gr].get(key), obj)
        self.objects[res.gr][key] = obj
        self.live_uids.add(obj["metadata"]["uid"])
        self._record(res, ns, etype, obj, old)
        return obj

    def get(self, res, ns, name):
        with self.lock:
            obj = self.objects[res.gr].get((ns or "", name))
            if obj is None:
                raise not_found(res, name)
            return obj

    def namespace_check(self, res, ns, for_create):
        if not res.namespaced or ns is None:
            return
        nsobj = self.objects[("", "namespaces")].get(("", ns))
        if nsobj is None:
            raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns,
                           {"name": ns, "kind": "namespaces"})
        if for_create and nsobj["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", '%s "%s" is forbidden: unable to create new content in '
                           "namespace %s because it is being terminated" % (res.plural, "", ns),
                           {"kind": res.plural, "causes": [{"reason": "NamespaceTerminating",
                                                             "message": "namespace %s is being terminated" % ns,
                                                             "field": "metadata.namespace"}]})

    # -- list / snapshot pagination
    def list(self, res, ns, label_pred, field_pred, limit, cont, rv_param):
        with self.lock:
            now = time.monotonic()
            self.snapshots = {k: v for k, v in self.snapshots.items() if now - v[0] < self.continue_ttl}
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont + "=" * (-len(cont) % 4)))
                    sid, offset = tok["s"], int(tok["o"])
                except Exception:
                    raise bad_request("continue key is not valid: illegal base64 data")
                snap = self.snapshots.get(sid)
                if snap is None:
                    raise ApiError(410, "Expired",
                                   "The provided continue parameter is too old to display a consistent "
                                   "list result. You can start a new list without the continue parameter, "
                                   "or use the continue token in this response to retrieve the remainder "
                                   "of the results. Continuing with the provided token results in an "
                                   "inconsistent list - objects that were created, modified, or deleted "
                                   "between the time the first chunk was returned and now may show up in "
                                   "the list.")
                _, list_rv, items = snap
            else:
                items = [o for (ons, _), o in sorted(self.objects[res.gr].items())
                         if (ns is None or ons == ns)
                         and label_pred(o["metadata"].get("labels")) and field_pred(o)]
                list_rv = self.rv
                offset, sid = 0, None
                if rv_param == "0":
                    limit = 0  # served from the "watch cache": limit is ignored
            if limit and offset + limit < len(items):
                if sid is None:
                    sid = uuid.uuid4().hex
                    self.snapshots[sid] = (now, list_rv, items)
                page = items[offset:offset + limit]
                token = base64.urlsafe_b64encode(json.dumps(
                    {"s": sid, "o": offset + limit, "rv": list_rv}).encode()).decode().rstrip("=")
                return page, list_rv, token, len(items) - offset - limit
            return items[offset:], list_rv, "", None

    # -- writes
    def create(self, res, version, ns, body, manager, dry_run=False, operation="Update"):
        with self.lock:
            md = body.setdefault("metadata", {})
            if not md.get("name"):
                if md.get("generateName"):
                    md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
                else:
                    raise invalid(res, "", [{"type": "FieldValueRequired", "field": "metadata.name",
                                             "message": "Required value: name or generateName is required"}])
            name = md["name"]
            self.namespace_check(res, ns, True)
            if (ns or "", name) in self.objects[res.gr]:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (_qualified(res), name),
                               {"name": name, "group": res.group, "kind": res.plural})
            for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation",
                      "managedFields", "selfLink"):
                md.pop(k, None)
            if res.status_sub:
                body.pop("status", None)
            if res.plural == "secrets":
                self._fold_string_data(body)
                body["type"] = body.get("type") or "Opaque"
            causes = validate(res, body)
            if causes:
                raise invalid(res, name, causes)
            obj = self._new_meta_obj(res, version, body, ns, manager)
            self._set_managed(obj, None, manager, operation, res.gv(version))
            if dry_run:
                obj["metadata"]["resourceVersion"] = ""
                return obj
            created = self._put(res, ns, obj)
            # The garbage collector deletes a dependent whose owners are all gone
            # (a create that raced the owner's deletion); the real one does it
            # shortly after, this double right after the create is answered.
            owners = obj["metadata"].get("ownerReferences") or []
            if owners and not any(o.get("uid") in self.live_uids for o in owners):
                threading.Thread(target=self._collect_orphan, args=(res, ns, obj["metadata"]["name"],
                                                                    obj["metadata"]["uid"]), daemon=True).start()
            return created

    def _collect_orphan(self, res, ns, name, uid):
        with self.lock:
            cur = self.objects[res.gr].get((ns or "", name))
            if cur is None or cur["metadata"]["uid"] != uid:
                return
            owners = cur["metadata"].get("ownerReferences") or []
            if owners and not any(o.get("uid") in self.live_uids for o in owners):
                self.delete(res, ns, name, "Background")

    @staticmethod
    def _fold_string_data(body):
        sd = body.pop("stringData", None)
        if sd:
            data = body.setdefault("data", {}) or {}
            body["data"] = data
            for k, v in sd.items():
                data[k] = base64.b64encode(str(v).encode()).decode()

    def _set_managed(self, new, old, manager, operation, api_version, subresource=None,
                     applied_paths=None):
        """Updates metadata.managedFields on new for a write by manager."""
        entries = list((old or new)["metadata"].get("managedFields") or []) if old else []
        include_status = subresource == "status"
        new_paths = leaf_paths(new, include_status)
        old_paths = leaf_paths(old, include_status) if old else {}
        if applied_paths is not None:
            changed = set(applied_paths)
        else:
            changed = {p for p, v in new_paths.items() if old_paths.get(p, object()) != v}
        if include_status:
            changed = {p for p in changed if p[0] == "status"}
        out = []
        mine = None
        for e in entries:
            paths = fields_to_paths(e.get("fieldsV1")) & set(new_paths)
            if e.get("manager") == manager and e.get("operation") == operation and \
                    e.get("subresource") == subresource:
                mine = e
                if applied_paths is None:
                    changed |= paths
                continue
            # A changed value moves ownership to the writer (Update) or, for an
            # Apply, only where the value actually changed (shared otherwise).
            if applied_paths is not None:
                paths -= {p for p in changed if old_paths.get(p, object()) != new_paths.get(p)}
            else:
                paths -= changed
            if paths:
                e = dict(e)
                e["fieldsV1"] = paths_to_fields(paths)
                out.append(e)
        changed &= set(new_paths)
        if changed or (mine is not None and applied_paths is not None):
            entry = {"manager": manager, "operation": operation, "apiVersion": api_version,
                     "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": paths_to_fields(changed)}
            if subresource:
                entry["subresource"] = subresource
            out.append(entry)
        elif mine is not None:
            out.append(mine)
        if out:
            new["metadata"]["managedFields"] = out
        else:
            new["metadata"].pop("managedFields", None)

    @staticmethod
    def _strip_for_compare(obj):
        o = dict(obj)
        md = dict(o["metadata"])
        md.pop("managedFields", None)
        md.pop("resourceVersion", None)
        o["metadata"] = md
        return o

    def update(self, res, version, ns, name, body, manager, subresource=None, dry_run=False,
               operation="Update", applied_paths=None, from_patch=False):
        """Full replacement (PUT) semantics, also the last step of every patch."""
        with self.lock:
            old = self.objects[res.gr].get((ns or "", name))
            if old is None:
                raise not_found(res, name)
            md = body.get("metadata")
            if not isinstance(md, dict):
                md = body["metadata"] = {}
            if md.get("name", name) != name:
                raise bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                  % (md.get("name"), name))
            if res.namespaced and md.get("namespace", ns) != ns:
                raise bad_request("the namespace of the provided object does not match the namespace "
                                  "sent on the request")
            want_rv = md.get("resourceVersion")
            if want_rv:
                if want_rv != old["metadata"]["resourceVersion"]:
                    raise conflict(res, name)
            elif res.crd and not from_patch:
                raise invalid(res, name, [{"type": "FieldValueInvalid", "field": "metadata.resourceVersion",
                                           "message": "Invalid value: 0x0: must be specified for an update"}])
            new = jcopy(body)
            new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
            nmd = new["metadata"]
            omd = old["metadata"]
            nmd["name"] = name
            if res.namespaced:
                nmd["namespace"] = ns
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "generation"):
                if k in omd:
                    nmd[k] = omd[k]
                else:
                    nmd.pop(k, None)
            if "managedFields" in omd:
                nmd["managedFields"] = omd["managedFields"]
            if subresource == "status":
                # Only .status is taken from the body.
                new = jcopy(old)
                if "status" in body:
                    new["status"] = jcopy(body["status"])
                else:
                    new.pop("status", None)
            elif res.status_sub:
                if "status" in old:
                    new["status"] = jcopy(old["status"])
                else:
                    new.pop("status", None)
            if res.plural == "secrets":
                self._fold_string_data(new)
                new["type"] = new.get("type") or "Opaque"
                causes = []
                if new.get("type") != old.get("type", "Opaque"):
                    causes.append({"type": "FieldValueInvalid", "field": "type",
                                   "message": 'Invalid value: "%s": field is immutable' % new.get("type")})
                if old.get("immutable") and (new.get("data") != old.get("data") or not new.get("immutable")):
                    causes.append({"type": "FieldValueForbidden", "field": "data",
                                   "message": "Forbidden: field is immutable when `immutable` is set"})
                if causes:
                    raise invalid(res, name, causes)
            if omd.get("deletionTimestamp"):
                added = set(nmd.get("finalizers") or []) - set(omd.get("finalizers") or [])
                if added:
                    raise invalid(res, name, [{"type": "FieldValueForbidden", "field": "metadata.finalizers",
                                               "message": "Forbidden: no new finalizers can be added if the "
                                               "object is being deleted, found new finalizers %s" % json.dumps(sorted(added))}])
            causes = validate(res, new)
            if causes:
                raise invalid(res, name, causes)
            if res.generation:
                strip = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}
                if strip(new) != strip(old):
                    nmd["generation"] = int(omd.get("generation", 1)) + 1
            self._set_managed(new, old, manager, operation, res.gv(version), subresource, applied_paths)
            if self._strip_for_compare(new) == self._strip_for_compare(old) and \
                    (applied_paths is None or new["metadata"].get("managedFields") == omd.get("managedFields")):
                return old  # no-op write: no new resourceVersion, no watch event
            if dry_run:
                return new
            if omd.get("deletionTimestamp") and not nmd.get("finalizers"):
                return self._remove(res, ns, name, new, "Background")
            return self._put(res, ns, new, "MODIFIED", old)

    def apply(self, res, version, ns, name, cfg, manager, force, subresource=None, dry_run=False):
        with self.lock:
            md = cfg.get("metadata") or {}
            if md.get("name", name) != name:
                raise bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                  % (md.get("name"), name))
            old = self.objects[res.gr].get((ns or "", name))
            if old is None:
                body = jcopy(cfg)
                body.setdefault("metadata", {})["name"] = name
                return self.create(res, version, ns, body, manager, dry_run, operation="Apply")
            include_status = subresource == "status"
            applied = leaf_paths(cfg, include_status)
            if include_status:
                applied = {p: v for p, v in applied.items() if p[0] == "status"}
            cur_paths = leaf_paths(old, include_status)
            conflicts = []
            prior = set()
            for e in old["metadata"].get("managedFields") or []:
                paths = fields_to_paths(e.get("fieldsV1"))
                if e.get("manager") == manager and e.get("operation") == "Apply":
                    prior = paths
                    continue
                for p in paths:
                    if p in applied and p in cur_paths and cur_paths[p] != applied[p]:
                        conflicts.append((e.get("manager"), e.get("apiVersion", ""), p))
            if conflicts and not force:
                causes = [{"type": "FieldManagerConflict",
                           "message": 'conflict with "%s" using %s' % (m, av),
                           "field": "." + ".".join(p)} for m, av, p in conflicts]
                msg = "Apply failed with %d conflict%s: %s" % (
                    len(causes), "" if len(causes) == 1 else "s",
                    "\n".join("%s: %s" % (c["message"], c["field"]) for c in causes))
                raise ApiError(409, "Conflict", msg, {"causes": causes})
            new = jcopy(old)
            if include_status:
                new["status"] = deep_merge_apply(old.get("status"), cfg.get("status"))
            else:
                merged_cfg = {k: v for k, v in cfg.items() if k not in ("apiVersion", "kind", "status")}
                merged_cfg.setdefault("metadata", {})
                merged_cfg["metadata"] = {k: v for k, v in merged_cfg["metadata"].items()
                                          if k not in _SYSTEM_META}
                new = deep_merge_apply(new, merged_cfg)
            others = set()
            for e in old["metadata"].get("managedFields") or []:
                if not (e.get("manager") == manager and e.get("operation") == "Apply"):
                    others |= fields_to_paths(e.get("fieldsV1"))
            for p in prior - set(applied):
                if p not in others:
                    _del_path(new, p)
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return self.update(res, version, ns, name, new, manager, subresource, dry_run,
                               operation="Apply", applied_paths=set(applied), from_patch=True)

    def delete(self, res, ns, name, propagation=None, preconditions=None, dry_run=False):
        with self.lock:
            old = self.objects[res.gr].get((ns or "", name))
            if old is None:
                raise not_found(res, name)
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise ApiError(409, "Conflict",
                               'Operation cannot be fulfilled on %s "%s": Precondition failed: UID in '
                               "precondition: %s, UID in object meta: %s"
                               % (_qualified(res), name, pre["uid"], old["metadata"]["uid"]),
                               {"name": name, "group": res.group, "kind": res.plural})
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict",
                               'Operation cannot be fulfilled on %s "%s": Precondition failed: '
                               "ResourceVersion in precondition: %s, ResourceVersion in object meta: %s"
                               % (_qualified(res), name, pre["resourceVersion"],
                                  old["metadata"]["resourceVersion"]),
                               {"name": name, "group": res.group, "kind": res.plural})
            if dry_run:
                return ("deleted", old)
            finalizers = list(old["metadata"].get("finalizers") or [])
            if res.plural == "namespaces":
                return ("pending", self._delete_namespace(res, old))
            if finalizers:
                if old["metadata"].get("deletionTimestamp"):
                    return ("pending", old)
                new = jcopy(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                return ("pending", self._put(res, ns, new, "MODIFIED", old))
            self._remove(res, ns, name, old, propagation or "Background")
            return ("deleted", old)

    def _delete_namespace(self, res, old):
        name = old["metadata"]["name"]
        if not old["metadata"].get("deletionTimestamp"):
            new = jcopy(old)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["status"] = {"phase": "Terminating"}
            old = self._put(res, None, new, "MODIFIED", old)
        for r in self.resources:
            if not r.namespaced:
                continue
            for (ons, oname) in [k for k in self.objects[r.gr] if k[0] == name]:
                o = self.objects[r.gr].get((ons, oname))
                if o is not None and not o["metadata"].get("deletionTimestamp"):
                    self.delete(r, ons, oname)
        return self._maybe_finalize_namespace(name) or old

    def _maybe_finalize_namespace(self, ns):
        nsres = self.by_gr[("", "namespaces")]
        nsobj = self.objects[nsres.gr].get(("", ns))
        if nsobj is None or not nsobj["metadata"].get("deletionTimestamp"):
            return None
        for r in self.resources:
            if r.namespaced and any(k[0] == ns for k in self.objects[r.gr]):
                return None
        return self._remove(nsres, None, ns, nsobj, "Background")

    def _remove(self, res, ns, name, obj, propagation):
        del self.objects[res.gr][(ns or "", name)]
        self.live_uids.discard(obj["metadata"]["uid"])
        self._index_owners(res.gr, (ns or "", name), obj, None)
        final = jcopy(obj)
        final["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record(res, ns, "DELETED", final, obj)
        uid = obj["metadata"]["uid"]
        # Garbage collection of dependents (synchronous here; asynchronous in
        # Kubernetes).
        for gr, key in sorted(self.dependents.get(uid, ())):
            r = self.by_gr[gr]
            dep = self.objects[gr].get(key)
            if dep is not None:
                refs = dep["metadata"].get("ownerReferences") or []
                if propagation == "Orphan":
                    new = jcopy(dep)
                    new["metadata"]["ownerReferences"] = [x for x in refs if x.get("uid") != uid]
                    if not new["metadata"]["ownerReferences"]:
                        del new["metadata"]["ownerReferences"]
                    self._put(r, key[0] or None, new, "MODIFIED", dep)
                elif key in self.objects[r.gr]:
                    self.delete(r, key[0] or None, key[1], propagation)
        if ns:
            self._maybe_finalize_namespace(ns)
        return final


# --------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------


def _status_for_fault(rule, method, path):
    code = rule["status"]
    reasons = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
               409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests",
               500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
    msg = rule.get("message") or {
        409: "Operation cannot be fulfilled: the object has been modified; please apply your changes to "
             "the latest version and try again",
        429: "Too many requests, please try again later.",
        500: "Internal error occurred: injected by test double",
        503: "the server is currently unable to handle the request"}.get(code, "injected failure")
    details = None
    headers = {}
    if rule.get("retry_after") is not None:
        headers["Retry-After"] = str(rule["retry_after"])
        details = {"causes": [{"message": "injected"}], "retryAfterSeconds": int(rule["retry_after"])}
    return ApiError(code, reasons.get(code, "Unknown"), msg, details, headers)


class K8sHandler(BaseDoubleHandler):
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = BaseDoubleHandler.dispatch
    admin_post_only = True

    # -- helpers
    def send_error_status(self, e):
        self.send_json(e.code, e.status(), e.headers)

    def serve_api(self, path, q, body):
        d = self.server.double
        accept = (self.headers.get("Accept") or "").split(",")[0]
        self.partial = "as=PartialObjectMetadata" in accept
        if body and "protobuf" in (self.headers.get("Content-Type") or ""):
            try:
                body = json.dumps(decode_k8s_protobuf(body)).encode()
            except (ValueError, KeyError, UnicodeDecodeError) as e:
                return self.send_error_status(ApiError(
                    415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                    "media types include: application/json, application/yaml (%s)" % e))
        if d.faults.down == "503":
            d.counters.add(self.command, path)
            return self.send_error_status(ApiError(503, "ServiceUnavailable",
                                                   "the server is currently unable to handle the request"))
        if path in ("/healthz", "/readyz", "/livez"):
            return self.send_bytes(200, b"ok", "text/plain")
        if path in ("/.well-known/openid-configuration", "/openid/v1/jwks"):
            # Service-account issuer discovery: public, as a cluster binding
            # system:service-account-issuer-discovery to unauthenticated users serves it.
            return self.route(path, q, body)
        if d.tokens or d.client_ca:
            auth = self.headers.get("Authorization") or ""
            ok = auth.startswith("Bearer ") and auth[7:].strip() in d.tokens
            if not ok and d.client_ca and not auth:
                try:
                    ok = bool(self.connection.getpeercert())  # verified against client_ca
                except (AttributeError, ValueError):
                    ok = False
            if not ok:
                d.counters.add(self.command, path, "unauthorized")
                return self.send_error_status(ApiError(401, "Unauthorized", "Unauthorized"))
        if self.command in ("POST", "PUT", "PATCH", "DELETE"):
            auth = self.headers.get("Authorization") or ""
            with d.write_log_lock:
                d.write_log.append({"t": time.monotonic(), "method": self.command, "path": path,
                                    "token": auth[7:].strip() if auth.startswith("Bearer ") else ""})
        try:
            self.route(path, q, body)
        except ApiError as e:
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def admin_extra(self, path, q, arg):
        d = self.server.double
        if path == "/_double/expire-watches" and self.command == "POST":
            d.store.expire_history(kick=arg.get("kick", True))
            self.send_json(200, {"compactedResourceVersion": str(d.store.compacted_rv)})
        elif path == "/_double/close-watches" and self.command == "POST":
            d.store.close_watches()
            self.send_json(200, {})
        elif path == "/_double/watch-limit" and self.command == "POST":
            d.watch_limit = float(arg.get("seconds") or 0) or None
            self.send_json(200, {})
        elif path == "/_double/bookmark" and self.command == "POST":
            d.store.bookmark_now()
            self.send_json(200, {})
        elif path == "/_double/token-expiry" and self.command == "POST":
            # Caps the lifetime of the ServiceAccount tokens issued from now
            # on (the API server's --service-account-max-token-expiration;
            # shorter than Kubernetes allows, so that tests see expiry).
            d.token_max_seconds = float(arg.get("seconds") or 0) or None
            self.send_json(200, {})
        elif path == "/_double/state" and self.command == "GET":
            with d.store.lock:
                self.send_json(200, {"resourceVersion": str(d.store.rv),
                                     "compactedResourceVersion": str(d.store.compacted_rv),
                                     "watches": d.open_watches,
                                     "objects": {"/".join(filter(None, gr)): len(v)
                                                 for gr, v in d.store.objects.items()}})
        else:
            return False
        return True

    # -- routing
    def route(self, path, q, body):
        d = self.server.double
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            d.counters.add("GET", path, "discovery")
            return self.send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-rootseal-double",
                                        "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                                        "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"})
        if path == "/.well-known/openid-configuration" and self.command == "GET":
            d.counters.add("GET", path, "discovery")
            return self.send_json(200, {"issuer": SA_ISSUER, "jwks_uri": d.url + "/openid/v1/jwks",
                                        "response_types_supported": ["id_token"], "subject_types_supported":
                                        ["public"], "id_token_signing_alg_values_supported": ["RS256"]})
        if path == "/openid/v1/jwks" and self.command == "GET":
            d.counters.add("GET", path, "discovery")
            return self.send_json(200, {"keys": [d.sa_key().jwk()]}, ctype="application/jwk-set+json")
        if parts == ["apis", "authentication.k8s.io", "v1", "tokenreviews"] and self.command == "POST":
            d.counters.add("POST", path, "create", "tokenreviews")
            rule = self.take_fault(path, "POST")
            if rule:
                raise _status_for_fault(rule, "POST", path)
            return self.send_json(201, d.token_review(self._decode(body)))
        if parts[:1] == ["openapi"]:
            d.counters.add("GET", path, "discovery")
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if parts == ["api"]:
            d.counters.add("GET", path, "discovery")
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                                        "serverAddress": "127.0.0.1:%d" % d.port}]})
        if parts == ["apis"]:
            d.counters.add("GET", path, "discovery")
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": d.group_list()})
        if len(parts) == 2 and parts[0] == "apis":
            d.counters.add("GET", path, "discovery")
            g = next((x for x in d.group_list() if x["name"] == parts[1]), None)
            if g is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self.send_json(200, dict(g, kind="APIGroup", apiVersion="v1"))
        if parts == ["api", "v1"] or (len(parts) == 3 and parts[0] == "apis"):
            d.counters.add("GET", path, "discovery")
            group = "" if parts[0] == "api" else parts[1]
            version = parts[-1]
            rl = d.resource_list(group, version)
            if rl is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self.send_json(200, rl)
        # resource paths
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        res = d.find(group, version, plural)
        if res is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub == "token" and res.plural == "serviceaccounts" and name is not None:
            if self.command != "POST":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            d.counters.add("POST", path, "create", "serviceaccounts/token")
            rule = self.take_fault(path, "POST")
            if rule:
                raise _status_for_fault(rule, "POST", path)
            return self.send_json(201, d.token_request(ns, name, self._decode(body)))
        if sub is not None and not (sub == "status" and res.status_sub) and \
                not (sub == "finalize" and res.plural == "namespaces"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub == "finalize":
            sub = None
        if ns is not None and not res.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if res.namespaced and name is not None and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self.resource(res, version, ns, name, sub, q, body)

    def _manager(self, q):
        fm = q.get("fieldManager")
        if fm:
            return fm
        ua = self.headers.get("User-Agent") or "unknown"
        return ua.split("/")[0]

    def _decode(self, body):
        try:
            obj = json.loads(body or b"null")
        except ValueError as e:
            raise bad_request("the body of the request was in an unknown format - accepted media types "
                              "include: application/json, application/yaml, application/vnd.kubernetes.protobuf "
                              "(%s)" % e)
        return obj

    def _out_full(self, res, version, obj):
        if obj.get("apiVersion") == res.gv(version):
            return obj
        o = dict(obj)
        o["apiVersion"] = res.gv(version)
        return o

    def _out(self, res, version, obj):
        """What a response carries: the object, or only its metadata when the
        client asked for PartialObjectMetadata (metadata-only informers)."""
        if getattr(self, "partial", False):
            return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
        return self._out_full(res, version, obj)

    def resource(self, res, version, ns, name, sub, q, body):
        d = self.server.double
        m = self.command
        verb = {"GET": "get" if name else ("watch" if q.get("watch") in ("1", "true") else "list"),
                "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}[m]
        d.counters.add(m, self.path.split("?")[0], verb, res.plural + ("/" + sub if sub else ""),
                       self.path.partition("?")[2])
        rule = self.take_fault(self.path.split("?")[0], m)
        if rule:
            raise _status_for_fault(rule, m, self.path)
        dry = q.get("dryRun") == "All"
        store = d.store
        if verb == "watch":
            return self.watch(res, version, ns, q)
        if verb == "list":
            lp = parse_label_selector(q.get("labelSelector"))
            fp = parse_field_selector(q.get("fieldSelector"), res)
            try:
                limit = int(q.get("limit") or 0)
            except ValueError:
                raise bad_request("invalid limit")
            items, rv, cont, remaining = store.list(res, ns, lp, fp, limit, q.get("continue"),
                                                     q.get("resourceVersion"))
            meta = {"resourceVersion": str(rv)}
            if cont:
                meta["continue"] = cont
                if remaining is not None:
                    meta["remainingItemCount"] = remaining
            out = {"kind": res.kind + "List", "apiVersion": res.gv(version), "metadata": meta,
                   "items": [self._out(res, version, o) for o in items]}
            if getattr(self, "partial", False):
                out["kind"], out["apiVersion"] = "PartialObjectMetadataList", "meta.k8s.io/v1"
            return self.send_json(200, out)
        if verb == "get":
            return self.send_json(200, self._out(res, version, store.get(res, ns, name)))
        if verb == "create":
            if sub:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            obj = self._decode(body)
            if not isinstance(obj, dict):
                raise bad_request("Object 'Kind' is missing in '%s'" % (body[:100].decode(errors="replace")))
            self._check_kind(res, version, obj)
            if res.namespaced:
                bns = (obj.get("metadata") or {}).get("namespace")
                if bns and bns != ns:
                    raise bad_request("the namespace of the provided object does not match the namespace "
                                      "sent on the request")
            created = store.create(res, version, ns, obj, self._manager(q), dry)
            return self.send_json(201, self._out(res, version, created))
        if verb == "update":
            obj = self._decode(body)
            if not isinstance(obj, dict):
                raise bad_request("Object 'Kind' is missing")
            self._check_kind(res, version, obj)
            updated = store.update(res, version, ns, name, obj, self._manager(q), sub, dry)
            return self.send_json(200, self._out(res, version, updated))
        if verb == "patch":
            return self.patch(res, version, ns, name, sub, q, body, dry)
        if verb == "delete":
            opts = self._decode(body) if body else {}
            opts = opts or {}
            prop = q.get("propagationPolicy") or opts.get("propagationPolicy")
            if opts.get("orphanDependents") is True:
                prop = "Orphan"
            state, obj = store.delete(res, ns, name, prop, opts.get("preconditions"), dry)
            if state == "pending":
                return self.send_json(200, self._out(res, version, obj))
            return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                        "status": "Success",
                                        "details": {"name": name, "group": res.group, "kind": res.plural,
                                                    "uid": obj["metadata"]["uid"]}})
        if verb == "deletecollection":
            lp = parse_label_selector(q.get("labelSelector"))
            fp = parse_field_selector(q.get("fieldSelector"), res)
            with store.lock:
                items, rv, _, _ = store.list(res, ns, lp, fp, 0, None, None)
                for o in items:
                    try:
                        store.delete(res, o["metadata"].get("namespace"), o["metadata"]["name"])
                    except ApiError:
                        pass
            return self.send_json(200, {"kind": res.kind + "List", "apiVersion": res.gv(version),
                                        "metadata": {"resourceVersion": str(store.rv)},
                                        "items": [self._out(res, version, o) for o in items]})

    def _check_kind(self, res, version, obj):
        kind, av = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != res.kind:
            raise bad_request("the API version in the data (%s) does not match the expected API version (%s)"
                              % (av, res.gv(version)) if av != res.gv(version) else
                              "kind %s does not match the expected kind %s" % (kind, res.kind))
        if av and av != res.gv(version):
            raise bad_request("the API version in the data (%s) does not match the expected API version (%s)"
                              % (av, res.gv(version)))

    def patch(self, res, version, ns, name, sub, q, body, dry):
        store = self.server.double.store
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        manager = self._manager(q)
        if ctype == "application/apply-patch+yaml":
            if not q.get("fieldManager"):
                raise bad_request("PATCH, application/apply-patch+yaml requests must supply a fieldManager "
                                  "(fieldManager is required for apply requests)")
            try:
                cfg = json.loads(body)
            except ValueError:
                try:
                    import yaml  # optional; JSON is accepted without it
                    cfg = yaml.safe_load(body)
                except Exception as e:
                    raise bad_request("error decoding YAML: %s" % e)
            if not isinstance(cfg, dict):
                raise bad_request("apply patch must be an object")
            self._check_kind(res, version, cfg)
            if not cfg.get("apiVersion") or not cfg.get("kind"):
                raise bad_request("invalid object type: apiVersion and kind must be set for apply")
            out = store.apply(res, version, ns, name, cfg, q["fieldManager"],
                              q.get("force") in ("true", "1"), sub, dry)
            return self.send_json(200, self._out(res, version, out))
        if ctype not in ("application/json-patch+json", "application/merge-patch+json",
                         "application/strategic-merge-patch+json"):
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media types include: "
                           "application/json-patch+json, application/merge-patch+json, "
                           "application/apply-patch+yaml" + ("" if res.crd else
                                                            ", application/strategic-merge-patch+json"))
        if ctype == "application/strategic-merge-patch+json" and res.crd:
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media types include: "
                           "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
        p = self._decode(body)
        with store.lock:
            cur = store.get(res, ns, name)
            cur_v = self._out_full(res, version, cur)  # patch base: never partial
            if ctype == "application/json-patch+json":
                try:
                    new = apply_json_patch(cur_v, p)
                except ValueError as e:
                    raise ApiError(422, "Invalid", str(e), {"name": name, "group": res.group, "kind": res.kind})
            else:
                if not isinstance(p, dict):
                    raise bad_request("json: cannot unmarshal into object: patch must be a JSON object")
                # A resourceVersion in the patch is a precondition.
                prv = (p.get("metadata") or {}).get("resourceVersion")
                if prv and prv != cur["metadata"]["resourceVersion"]:
                    raise conflict(res, name)
                new = (merge_patch if ctype == "application/merge-patch+json" else strategic_merge)(cur_v, p)
            if not isinstance(new, dict):
                raise bad_request("patch produced a non-object")
            md = new.setdefault("metadata", {})
            if not md.get("resourceVersion"):
                md["resourceVersion"] = cur["metadata"]["resourceVersion"]
            elif md["resourceVersion"] != cur["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            if sub == "status" and "status" not in new:
                new["status"] = None
                new.pop("status")
            out = store.update(res, version, ns, name, new, manager, sub, dry, from_patch=True)
        return self.send_json(200, self._out(res, version, out))

    # -- watch
    def _event_bytes(self, etype, obj):
        return (json.dumps({"type": etype, "object": obj}) + "\n").encode()

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, res, version, ns, q):
        d = self.server.double
        store = d.store
        lp = parse_label_selector(q.get("labelSelector"))
        fp = parse_field_selector(q.get("fieldSelector"), res)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        try:
            timeout = float(q.get("timeoutSeconds") or 0) or None
        except ValueError:
            raise bad_request("invalid timeoutSeconds")
        rvp = q.get("resourceVersion") or ""
        send_initial = q.get("sendInitialEvents") == "true"
        limit = d.watch_limit  # /_double/watch-limit: the server ends every watch early
        if limit:
            timeout = min(timeout, limit) if timeout else limit
        deadline = time.monotonic() + timeout if timeout else None

        def matches(o):
            if o is None:
                return False
            if ns is not None and o["metadata"].get("namespace") != ns:
                return False
            return lp(o["metadata"].get("labels")) and fp(o)

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.close_connection = True
        pending = []
        with store.lock:
            if rvp in ("", "0") or send_initial:
                for (ons, _), o in sorted(store.objects[res.gr].items()):
                    if matches(o):
                        pending.append(self._event_bytes("ADDED", self._out(res, version, o)))
                last = store.rv
                if send_initial and bookmarks:
                    pending.append(self._event_bytes("BOOKMARK", {
                        "kind": res.kind, "apiVersion": res.gv(version),
                        "metadata": {"resourceVersion": str(last),
                                     "annotations": {"k8s.io/initial-events-end": "true"}}}))
            else:
                try:
                    last = int(rvp)
                except ValueError:
                    last = -1
                if last < store.compacted_rv:
                    err = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": "too old resource version: %s (%d)" % (rvp, store.compacted_rv + 1),
                           "reason": "Expired", "code": 410}
                    try:
                        self._chunk(self._event_bytes("ERROR", err))
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        pass
                    return
            kick, close, bgen = store.kick_generation, store.close_generation, store.bookmark_generation
            d.open_watches += 1
        try:
            for ev in pending:
                self._chunk(ev)
            last_sent = time.monotonic()
            while True:
                out = []
                end = None
                with store.lock:
                    while True:
                        if store.kick_generation != kick:
                            end = "kick"
                            break
                        if store.close_generation != close or d.stopping:
                            end = "close"
                            break
                        if store.rv > last and store.history and store.history[-1][0] > last:
                            break
                        if store.bookmark_generation != bgen:
                            break
                        now = time.monotonic()
                        if deadline and now >= deadline:
                            end = "timeout"
                            break
                        wait = 0.5
                        if bookmarks:
                            wait = min(wait, max(0.0, last_sent + store.bookmark_interval - now))
                            if wait == 0.0:
                                break
                        if deadline:
                            wait = min(wait, max(0.0, deadline - now))
                        store.cond.wait(wait)
                    if end is None:
                        if last < store.compacted_rv:
                            end = "kick"
                        else:
                            start = bisect.bisect_right(store.history, last, key=lambda e: e[0])
                            for (erv, gr, ens, etype, obj, old, _) in store.history[start:]:
                                if gr != res.gr:
                                    continue
                                now_match, was_match = matches(obj), matches(old)
                                if etype == "MODIFIED" and was_match and not now_match:
                                    out.append(("DELETED", obj))
                                elif etype == "MODIFIED" and now_match and not was_match and old is not None:
                                    out.append(("ADDED", obj))
                                elif now_match:
                                    out.append((etype, obj))
                            last = store.rv
                            if bookmarks and (not out and (time.monotonic() - last_sent >= store.bookmark_interval
                                                           or store.bookmark_generation != bgen)):
                                out.append(("BOOKMARK", {
                                    "kind": res.kind, "apiVersion": res.gv(version),
                                    "metadata": {"resourceVersion": str(last)}}))
                            bgen = store.bookmark_generation
                    cur_compacted = store.compacted_rv
                if end == "kick":
                    self._chunk(self._event_bytes("ERROR", {
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "too old resource version: %d (%d)" % (last, cur_compacted),
                        "reason": "Expired", "code": 410}))
                if end:
                    if end != "close" or not d.faults.down:
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.drop_connection()
                    return
                # Stored objects are never mutated, so they are encoded
                # outside the store lock.
                if out:
                    self._chunk(b"".join(self._event_bytes(t, o if t == "BOOKMARK" else self._out(res, version, o))
                                         for t, o in out))
                if out:
                    last_sent = time.monotonic()
        except (OSError, ssl.SSLError):
            return
        finally:
            with store.lock:
                d.open_watches -= 1


class K8sApiServerDouble(DoubleServer):
    """In-process handle: start(), stop(), url, port, store, faults, counters."""
    handler = K8sHandler

    def __init__(self, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, tokens=None,
                 serve_v1beta1=True, bookmark_interval=1.0, history_window=300.0, max_history=200000,
                 continue_ttl=300.0, verbose=False, client_ca=None):
        self.resources = default_resources(serve_v1beta1)
        self.client_ca = client_ca
        self.store = Store(self.resources, history_window, max_history, continue_ttl, bookmark_interval)
        self.tokens = set(tokens or [])
        self.open_watches = 0
        self.stopping = False
        self.watch_limit = None  # seconds: every watch ends this early (/_double/watch-limit)
        self.token_max_seconds = None  # cap of issued ServiceAccount tokens (/_double/token-expiry)
        self._sa_key = None
        self.token_reviews = []  # every TokenReview: authenticated, username or error, t
        self.token_requests = []  # every TokenRequest answered: namespace, name, audiences, expirationSeconds as asked, token, t
        # Every authenticated write request (POST, PUT, PATCH, DELETE), as it
        # arrived: {"t": time.monotonic(), "method", "path", "token"} (the
        # bearer token tells which client wrote: one per rootseald host).
        self.write_log = []
        self.write_log_lock = threading.Lock()
        self._sa_key_lock = threading.Lock()
        super().__init__(host, port, tls_cert, tls_key, verbose, client_ca)

    def sa_key(self):
        """The ServiceAccount token signing key, made at first use."""
        with self._sa_key_lock:
            if self._sa_key is None:
                self._sa_key = jwtlib.RsaKey()
            return self._sa_key

    def token_request(self, ns, name, body):
        """POST .../serviceaccounts/<name>/token: a TokenRequest answered as
        the real API does (authentication.k8s.io/v1; 404 for a missing
        ServiceAccount, 422 for an expiry under 10 minutes)."""
        if not isinstance(body, dict) or body.get("kind") not in (None, "TokenRequest"):
            raise bad_request("the body of the request is not a TokenRequest")
        spec = body.get("spec") or {}
        sa = self.store.get(self.find("", "v1", "serviceaccounts"), ns, name)  # NotFound as the API says it
        req_exp = spec.get("expirationSeconds")
        if req_exp is None:
            req_exp = 3600
        if not isinstance(req_exp, int) or isinstance(req_exp, bool):
            raise bad_request("spec.expirationSeconds must be an integer")
        if req_exp < 600:
            raise ApiError(422, "Invalid", 'TokenRequest.authentication.k8s.io "%s" is invalid: spec.expirationSeconds: '
                           "Invalid value: %d: may not specify a duration less than 10 minutes" % (name, req_exp),
                           {"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest"})
        if req_exp > 1 << 32:
            raise ApiError(422, "Invalid", 'TokenRequest.authentication.k8s.io "%s" is invalid: spec.expirationSeconds: '
                           "Invalid value: %d: may not specify a duration larger than 2^32 seconds" % (name, req_exp),
                           {"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest"})
        audiences = spec.get("audiences") or [SA_ISSUER]
        if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
            raise bad_request("spec.audiences must be a list of strings")
        lifetime = float(req_exp)
        if self.token_max_seconds is not None:
            lifetime = min(lifetime, self.token_max_seconds)
        now = time.time()
        iat = int(now)
        exp = now + lifetime
        claims = {"aud": audiences, "exp": int(exp), "iat": iat, "iss": SA_ISSUER, "jti": str(uuid.uuid4()),
                  "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}},
                  "nbf": iat, "sub": "system:serviceaccount:%s:%s" % (ns, name)}
        token = self.sa_key().sign(claims)
        with self._sa_key_lock:
            self.token_requests.append({"namespace": ns, "name": name, "audiences": spec.get("audiences"),
                                        "expirationSeconds": spec.get("expirationSeconds"), "token": token,
                                        "t": now})
        return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": None},
                "spec": {"audiences": audiences, "expirationSeconds": int(lifetime), "boundObjectRef": None},
                "status": {"token": token,
                           "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))}}

    def token_review(self, body):
        """POST /apis/authentication.k8s.io/v1/tokenreviews: authenticates a
        ServiceAccount token this double issued (signature, expiry, the
        ServiceAccount still there with the same uid, an audience in common)."""
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            raise bad_request("the body of the request is not a TokenReview")
        spec = body["spec"]
        want_aud = spec.get("audiences") or [SA_ISSUER]
        out = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": spec, "status": {"user": {}}}
        try:
            claims = jwtlib.verify(spec.get("token") or "", [self.sa_key().jwk()])
            if claims.get("iss") != SA_ISSUER:
                raise ValueError("invalid issuer")
            if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
                raise ValueError("service account token has expired")
            aud = claims.get("aud") or []
            common = [a for a in want_aud if a in aud]
            if not common:
                raise ValueError("token audiences %s is invalid for the target audiences %s"
                                 % (json.dumps(aud), json.dumps(want_aud)))
            k = claims.get("kubernetes.io") or {}
            ns, sa = k.get("namespace"), (k.get("serviceaccount") or {})
            try:
                cur = self.store.get(self.find("", "v1", "serviceaccounts"), ns, sa.get("name"))
            except ApiError:
                raise ValueError('serviceaccounts "%s" not found' % sa.get("name"))
            if cur["metadata"]["uid"] != sa.get("uid"):
                raise ValueError("service account UID (%s) does not match claim (%s)"
                                 % (cur["metadata"]["uid"], sa.get("uid")))
        except ValueError as e:
            out["status"] = {"user": {}, "error": "[invalid bearer token, %s]" % e}
            with self._sa_key_lock:
                self.token_reviews.append({"authenticated": False, "error": out["status"]["error"], "t": time.time()})
            return out
        with self._sa_key_lock:
            self.token_reviews.append({"authenticated": True, "username": claims["sub"], "t": time.time()})
        out["status"] = {"authenticated": True, "audiences": common,
                         "user": {"username": claims["sub"], "uid": sa["uid"],
                                  "groups": ["system:serviceaccounts", "system:serviceaccounts:" + ns,
                                             "system:authenticated"],
                                  "extra": {"authentication.kubernetes.io/credential-id": ["JTI=" + claims["jti"]]}}}
        return out

    def find(self, group, version, plural):
        for r in self.resources:
            if r.group == group and r.plural == plural and version in r.versions:
                return r
        return None

    def group_list(self):
        groups = {}
        for r in self.resources:
            if not r.group:
                continue
            g = groups.setdefault(r.group, {"name": r.group, "versions": [], "preferredVersion": None})
            for v in r.versions:
                gv = {"groupVersion": r.gv(v), "version": v}
                if gv not in g["versions"]:
                    g["versions"].append(gv)
            if g["preferredVersion"] is None:
                g["preferredVersion"] = {"groupVersion": r.gv(r.storage), "version": r.storage}
        auth = {"groupVersion": "authentication.k8s.io/v1", "version": "v1"}  # TokenReview (create only)
        groups["authentication.k8s.io"] = {"name": "authentication.k8s.io", "versions": [auth],
                                           "preferredVersion": auth}
        return list(groups.values())

    def resource_list(self, group, version):
        if (group, version) == ("authentication.k8s.io", "v1"):
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "authentication.k8s.io/v1",
                    "resources": [{"name": "tokenreviews", "singularName": "tokenreview", "namespaced": False,
                                   "kind": "TokenReview", "verbs": ["create"]}]}
        rs = [r for r in self.resources if r.group == group and version in r.versions]
        if not rs:
            return None
        out = []
        for r in rs:
            e = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                 "verbs": VERBS if r.plural != "namespaces" else
                 ["create", "delete", "get", "list", "patch", "update", "watch"]}
            if r.short:
                e["shortNames"] = r.short
            if r.crd:
                e["categories"] = ["external-secrets"]
            out.append(e)
            if r.plural == "serviceaccounts":
                out.append({"name": "serviceaccounts/token", "singularName": "", "namespaced": True,
                            "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest",
                            "verbs": ["create"]})
            if r.status_sub:
                out.append({"name": r.plural + "/status", "singularName": "", "namespaced": r.namespaced,
                            "kind": r.kind, "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": version if not group else group + "/" + version, "resources": out}

    def go_down(self, mode="503"):
        super().go_down(mode)
        self.store.close_watches()

    def stop(self):
        self.stopping = True
        self.store.close_watches()
        super().stop()


def main(argv=None):
    ap = arg_parser(__doc__)
    ap.add_argument("--token", action="append", help="accepted bearer token (repeatable); none = no auth")
    ap.add_argument("--client-ca", help="CA file: TLS client certificates it signed authenticate too")
    ap.add_argument("--no-v1beta1", action="store_true", help="serve external-secrets.io v1 only")
    ap.add_argument("--bookmark-interval", type=float, default=1.0)
    ap.add_argument("--history-window", type=float, default=300.0)
    ap.add_argument("--max-history", type=int, default=200000)
    ap.add_argument("--continue-ttl", type=float, default=300.0)
    a = parse_args(ap, argv)
    d = K8sApiServerDouble(a.host, a.port, a.tls_cert, a.tls_key, a.token, not a.no_v1beta1,
                           a.bookmark_interval, a.history_window, a.max_history, a.continue_ttl, a.verbose,
                           a.client_ca)
    return d.serve_main()


if __name__ == "__main__":
    sys.exit(main())
