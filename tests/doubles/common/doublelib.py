"""Plumbing shared by the HTTP test doubles under tests/doubles/ (Python 3
standard library only): fault injection and request counters behind the
/_double/ admin endpoints, a threaded HTTP(S) server, a request handler base,
the in-process handle base and the command-line entry point ("READY <port>").

Each double's server.py puts this folder on sys.path and imports from here,
so it still runs stand-alone from any directory. See docs/testing-doubles.md.
"""
import argparse
import datetime
import importlib.util
import os
import json
import re
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# Verbs that count as writes in the "writes" figure of /_double/stats (the
# Kubernetes verbs, and the lower-cased HTTP methods Vault and Azure count).
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection", "put", "post")


def load_double(name):
    """tests/doubles/<name>/server.py as the module "<name>_double" (every
    double's file is server.py: imported by name they would shadow each other)."""
    mod_name = name + "_double"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, name, "server.py")
    spec = importlib.util.spec_from_file_location(mod_name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


def jcopy(obj):
    """Deep copy of a JSON value (much faster than copy.deepcopy)."""
    return json.loads(json.dumps(obj))


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micros(ts=None):
    """UTC time with microseconds (Vault and Google timestamps); ts defaults to now."""
    dt = datetime.datetime.fromtimestamp(ts if ts is not None else time.time(), datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Faults:
    """Injected failures: rules {status, count, method, path (regex), retry_after}."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.down = None  # None | "503" | "close"

    def add(self, rule):
        r = {"status": int(rule.get("status", 500)), "count": int(rule.get("count", 1)),
             "method": (rule.get("method") or "").upper() or None,
             "path": re.compile(rule["path"]) if rule.get("path") else None,
             "retry_after": rule.get("retry_after"), "message": rule.get("message")}
        with self.lock:
            self.rules.append(r)
        return r

    def take(self, method, path):
        with self.lock:
            for r in self.rules:
                if r["count"] <= 0:
                    continue
                if r["method"] and r["method"] != method:
                    continue
                if r["path"] and not r["path"].search(path):
                    continue
                r["count"] -= 1
                return r
            self.rules = [r for r in self.rules if r["count"] > 0]
        return None

    def clear(self):
        with self.lock:
            self.rules = []
            self.down = None


class ConnectionDropped(ConnectionResetError):
    """Raised by take_fault() after it dropped the connection for a status-0
    fault rule; the handlers' existing ConnectionResetError clauses end the
    request there."""


def retry_after_header(rule):
    """{"Retry-After": n} when the fault rule sets retry_after, else {}."""
    return {"Retry-After": str(rule["retry_after"])} if rule.get("retry_after") is not None else {}


class Counters:
    """Request counters, and the request log: one entry per API request
    {"t": wall-clock seconds, "method", "path", "verb", "resource"}, the last
    LOG_MAX kept (GET /_double/log?since=T answers the entries after T)."""
    LOG_MAX = 200000

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.by_path = {}
            self.by_verb = {}
            self.by_resource = {}
            self.total = 0
            self.log = []

    def add(self, method, path, verb=None, resource=None, query=None):
        with self.lock:
            self.log.append({"t": time.time(), "method": method, "path": path, "verb": verb, "resource": resource,
                             "query": query})
            if len(self.log) > self.LOG_MAX:
                del self.log[:len(self.log) - self.LOG_MAX]
            self.total += 1
            k = method + " " + path
            self.by_path[k] = self.by_path.get(k, 0) + 1
            if verb:
                self.by_verb[verb] = self.by_verb.get(verb, 0) + 1
                if resource:
                    d = self.by_resource.setdefault(resource, {})
                    d[verb] = d.get(verb, 0) + 1

    def log_since(self, since=0.0):
        with self.lock:
            return [e for e in self.log if e["t"] > since]

    def snapshot(self):
        with self.lock:
            writes = sum(v for k, v in self.by_verb.items() if k in WRITE_VERBS)
            return {"total": self.total, "by_path": dict(self.by_path), "by_verb": dict(self.by_verb),
                    "by_resource": jcopy(self.by_resource), "writes": writes}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if getattr(self, "verbose", False):
            super().handle_error(request, client_address)


def make_http_server(host, port, handler_cls, tls_cert=None, tls_key=None, client_ca=None):
    srv = _HTTPServer((host, port), handler_cls)
    if tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls_cert, tls_key)
        if client_ca:
            # Client certificates are optional; the handler decides whether
            # a verified one authenticates the request.
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        # The handshake runs lazily on the handler thread's first read, so a
        # slow client cannot stall accept().
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    return srv


class BaseDoubleHandler(BaseHTTPRequestHandler):
    """Request handler base. A subclass binds the methods it serves to
    dispatch() (`do_GET = do_POST = BaseDoubleHandler.dispatch`), answers API
    requests in serve_api() and its own /_double/ endpoints in admin_extra()."""
    protocol_version = "HTTP/1.1"
    server_version = "rootseal-double/1"
    # Headers and body go out in separate writes; without TCP_NODELAY every
    # keep-alive request would wait out the peer's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    # True: /_double/stats/reset, /down and /up answer only POST (else 404).
    admin_post_only = False
    # True: POST /_double/expire-tokens forgets every access token the double
    # issued (server.double.state.tokens under state.lock).
    admin_expire_tokens = False

    def dispatch(self):
        req = self.read_api_request()
        if req is not None:
            self.serve_api(*req)

    def serve_api(self, path, q, body):
        """Answers an API request (not /_double/, not dropped by down mode)."""
        raise NotImplementedError

    def log_message(self, fmt, *args):
        if getattr(self.server, "verbose", False):
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n)
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def read_request(self):
        """(path, query {name: last value}, body); None when the body could not
        be read, after dropping the connection."""
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.drop_connection()
            return None
        return url.path, q, body

    def read_api_request(self):
        """read_request() that also serves /_double/ requests and drops the
        connection in down mode "close". (path, query, body) of an API request
        still to answer, else None."""
        req = self.read_request()
        if req is None:
            return None
        path, q, body = req
        if path.startswith("/_double/"):
            self.admin(path, q, body)
            return None
        if self.server.double.faults.down == "close":
            self.drop_connection()
            return None
        return req

    def take_fault(self, path, method=None):
        """The injected fault rule this request (method defaults to the
        request's) consumes, or None. A rule with status 0 drops the connection
        and raises ConnectionDropped."""
        rule = self.server.double.faults.take(method or self.command, path)
        if rule and rule["status"] == 0:
            self.drop_connection()
            raise ConnectionDropped()
        return rule

    def send_bytes(self, status, body, ctype="application/json", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, obj, headers=None, ctype="application/json"):
        self.send_bytes(status, json.dumps(obj).encode(), ctype, headers)

    def drop_connection(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def admin(self, path, q, body):
        """The /_double/ endpoints every double has; the rest go to admin_extra()."""
        d = self.server.double
        try:
            arg = json.loads(body) if body else {}
        except ValueError:
            return self.send_json(400, {"error": "admin body must be JSON"})
        post = self.command == "POST" or not self.admin_post_only
        if path == "/_double/stats" and self.command == "GET":
            return self.send_json(200, d.stats())
        if path == "/_double/log" and self.command == "GET":
            return self.send_json(200, {"entries": d.counters.log_since(float(q.get("since") or 0))})
        if path == "/_double/stats/reset" and post:
            d.counters.reset()
            return self.send_json(200, {})
        if path == "/_double/faults" and self.command == "POST":
            d.faults.add(arg)
            return self.send_json(200, {})
        if path == "/_double/faults" and self.command == "DELETE":
            d.faults.clear()
            return self.send_json(200, {})
        if path == "/_double/down" and post:
            d.go_down(arg.get("mode", "503"))
            return self.send_json(200, {})
        if path == "/_double/up" and post:
            d.faults.down = None
            return self.send_json(200, {})
        if path == "/_double/expire-tokens" and self.admin_expire_tokens:
            with d.state.lock:
                d.state.tokens.clear()
            return self.send_json(200, {})
        if self.admin_extra(path, q, arg):
            return None
        return self.send_json(404, {"error": "unknown admin endpoint %s %s" % (self.command, path)})

    def admin_extra(self, path, q, arg):
        """Serves a double-specific /_double/ endpoint; False if path is none."""
        return False


class DoubleServer:
    """In-process handle base: faults, counters, httpd, port, url, start(),
    stop(), stats(), go_down(). A subclass sets `handler` and its own state,
    then calls DoubleServer.__init__."""
    handler = BaseDoubleHandler

    def __init__(self, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, verbose=False, client_ca=None):
        self.faults = Faults()
        self.counters = Counters()
        self.httpd = make_http_server(host, port, self.handler, tls_cert, tls_key, client_ca)
        self.httpd.double = self
        self.httpd.verbose = verbose
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls_cert else "http"
        self.url = "%s://%s:%d" % (self.scheme, host, self.port)
        self.thread = None

    def go_down(self, mode="503"):
        """Every API request then gets a 503 ("503") or a dropped connection ("close")."""
        self.faults.down = mode

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def stats(self):
        """What GET /_double/stats answers."""
        return self.counters.snapshot()

    def serve_main(self):
        """Stand-alone run: prints "READY <port>", serves until interrupted."""
        print("READY %d" % self.port, flush=True)
        try:
            self.httpd.serve_forever(poll_interval=0.1)
        except KeyboardInterrupt:
            pass
        return 0


def arg_parser(doc):
    """The parser of a double's command line with --host, --port, --tls-cert, --tls-key."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    return ap


def parse_args(ap, argv):
    """Adds --verbose, parses argv and checks that the TLS files go together."""
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    return a
