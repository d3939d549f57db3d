#!/usr/bin/python3
"""A stand-in for a HashiCorp Vault server, for keyway's tests.

Usage (the certificates come from tests/vault/mkcerts.sh DIR):

    /usr/bin/python3 tests/vault/vault_double.py \\
        --cert DIR/server.pem --key DIR/server.key \\
        [--client-ca DIR/ca.pem [--require-client-cert]] \\
        [--port 0] [--port-file FILE] [--config CONFIG.json] \\
        [--root-token root | --root-token-file FILE] [--fault JSON]...
        [--http] [--verbose]

It listens on 127.0.0.1 (or --host, ::1 too), on an ephemeral port unless
--port is given, and once listening prints the port alone on a line on
stdout and writes it to --port-file (renamed into place, so a reader never
sees half of it).  --http serves plain HTTP instead of TLS (for debugging
with curl).  Without --config it has a KV v2 mount at secret/, a KV v1
mount at kv/ and the root token --root-token (default "root").

From a shell test:

    sh tests/vault/mkcerts.sh "$tmp"
    /usr/bin/python3 tests/vault/vault_double.py --cert "$tmp/server.pem" \
        --key "$tmp/server.key" --port-file "$tmp/port" >/dev/null &
    pid=$!
    while [ ! -s "$tmp/port" ]; do sleep 0.1; done
    addr=https://127.0.0.1:$(cat "$tmp/port")      # CA: $tmp/ca.pem
    curl -s --cacert "$tmp/ca.pem" -d '{"sealed": true}' "$addr/__double/fault"
    ...
    kill "$pid"

What it serves is Vault's documented HTTP API under /v1/:
  KV v2 mounts (default "secret/"): data/, metadata/, delete/, undelete/,
    destroy/, subkeys/, config; LIST or GET ?list=true on metadata/
  KV v1 mounts (default "kv/"): GET/POST/PUT/DELETE/LIST
  sys/health, sys/seal-status, sys/leader, sys/mounts,
    sys/internal/ui/mounts and sys/internal/ui/mounts/PATH
  auth/token/lookup-self, renew-self, revoke-self, create, lookup;
    auth/approle/login; auth/cert/login (needs --client-ca)
  namespaces through X-Vault-Namespace and path prefixes
The token is taken from X-Vault-Token or "Authorization: Bearer".

Tests steer it through /__double/ (no token needed; JSON in, JSON out):
  POST /__double/fault     {"sealed": bool, "standby": bool,
                            "perf_standby": bool, "dr_secondary": bool,
                            "initialized": bool,
                            "require_request_header": bool (412 without
                             X-Vault-Request, as a Vault Proxy answers),
                            "delay_ms": N, "keepalive": bool,
                            "renew_fail": {"status": S, "errors": [...]} | null,
                            "rules": [{"path": REGEX, "method": M,
                                       "namespace": NS, "status": S,
                                       "count": N (default 1, -1 = always),
                                       "errors": [...], "body": {...},
                                       "headers": {...}, "delay_ms": D,
                                       "delay_after_ms": D,
                                       "raw": TEXT, "content_type": CT,
                                       "close": bool, "truncate": bool,
                                       "close_after": bool}],
                            "clear_rules": bool}
       A rule matches the request's path with re.search (the path as sent,
       with /v1/, without the query); a rule that has "close" closes the
       connection without answering; "truncate" sends the headers and half
       the body, then closes; "close_after" answers in full and then closes
       without saying so (as a server whose idle timeout struck would);
       "raw" answers TEXT instead of JSON (a proxy's HTML error page); a
       rule without "status" answers as Vault would, after "delay_ms";
       "delay_after_ms" sends the answer D ms after it was made (what a
       client then gets is Vault's state from before the wait).
  POST /__double/token     {"id": T, "policies": [...], "ttl": S,
                            "max_ttl": S, "renewable": bool,
                            "namespace": NS}  creates or changes a token;
                           {"id": T, "expire": true} expires it now;
                           {"id": T, "revoke": true} removes it.
  POST /__double/policy    {"name": P, "policy": {"path": {GLOB:
                            {"capabilities": [...]}}}}
  POST /__double/namespace {"path": "ns1/child"}
  POST /__double/approle   {"name": R, "role_id": ..., "secret_id": ...,
                            "policies": [...], "token_ttl": S,
                            "token_max_ttl": S, "namespace": NS}
  POST /__double/cert      {"name": R, "policies": [...], "ttl": S,
                            "max_ttl": S, "allowed_common_names": [...],
                            "namespace": NS}  a role of auth/cert
  POST /__double/seed      {"namespace": NS, "mount": "secret",
                            "path": "a/b", "data": {...}}
  POST /__double/reset     back to how it started (data, tokens, faults),
                           the log and the counters kept
  GET  /__double/requests[?since=SEQ]  (only the entries after SEQ)
                           {"connections": N, "tls_failures": N,
                            "requests": [{"seq", "conn", "method", "path",
                            "query", "status", "namespace",
                            "x_vault_request", "token" ("header", "bearer"
                            or null; never the value), "headers" (names
                            sent), "content_type", "body_keys", "cas",
                            "client_cert", "fault"}]}
  DELETE /__double/requests  empties the log (the counters stay).
--fault JSON applies what POST /__double/fault takes at start.
The same settings can be given at start in --config, a JSON object with
"root_token", "mounts" ({"secret": {"type": "kv", "version": 2}}),
"namespaces", "policies", "tokens", "approle" and "cert" ({NAME: {...}},
as /__double/approle and /__double/cert take), and any of
the keys of /__double/fault.  "keepalive": false answers every request
with "Connection: close".

Policies follow Vault's JSON policy form: "GLOB" is a path relative to the
token's namespace, ending in "*" for a prefix, "+" standing for one
segment; capabilities are create, read, update, patch, delete, list, sudo
and deny. "root" allows everything; "default" allows the token's own
auth/token/*-self paths.
"""

import argparse
import copy
import datetime
import json
import os
import re
import secrets
import socket
import ssl
import string
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "1.15.6"
DEFAULT_MAX_TTL = 2764800          # Vault's system max lease TTL: 768h
KV1_LEASE = 2764800
PERMISSION_DENIED = "1 error occurred:\n\t* permission denied\n\n"

REASONS = {
    400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 412: "Precondition Failed",
    415: "Unsupported Media Type", 429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable",
}

FAULT_ERRORS = {
    412: ["required index state not present"],
    500: ["1 error occurred:\n\t* internal error\n\n"],
    502: ["bad gateway"],
    503: ["Vault is sealed"],
}


def now():
    return time.time()


def rfc3339(t):
    if t is None:
        return ""
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%06dZ" % d.microsecond


def go_duration(sec):
    """Seconds as Go's time.Duration.String() writes them: 1h0m0s."""
    sec = int(sec)
    if sec == 0:
        return "0s"
    h, rest = divmod(sec, 3600)
    m, s = divmod(rest, 60)
    if h:
        return "%dh%dm%ds" % (h, m, s)
    if m:
        return "%dm%ds" % (m, s)
    return "%ds" % s


_DUR = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60,
         "h": 3600, "d": 86400}


def parse_duration(v):
    """A TTL as Vault takes it: an int of seconds, or "90", "1h30m"."""
    if v is None or v == "":
        return 0
    if isinstance(v, bool):
        raise ValueError("not a duration")
    if isinstance(v, (int, float)):
        return int(v)
    v = str(v).strip()
    if re.fullmatch(r"\d+", v):
        return int(v)
    pos, total = 0, 0.0
    for mt in _DUR.finditer(v):
        if mt.start() != pos:
            raise ValueError("bad duration %r" % v)
        total += float(mt.group(1)) * _UNIT[mt.group(2)]
        pos = mt.end()
    if pos != len(v) or pos == 0:
        raise ValueError("bad duration %r" % v)
    return int(total)


def rand_id(n=24):
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


class Fail(Exception):
    """An answer other than success: status and Vault's error list."""

    def __init__(self, status, errors=None, body=None):
        super().__init__(status)
        self.status = status
        self.errors = [] if errors is None else errors
        self.body = body


def denied():
    return Fail(403, [PERMISSION_DENIED])


# ---------------------------------------------------------------- stores

class KV2Key:
    def __init__(self):
        t = now()
        self.versions = {}          # n -> dict(data, created, deleted, destroyed)
        self.current = 0
        self.oldest = 0
        self.custom_metadata = None
        self.max_versions = 0
        self.cas_required = False
        self.delete_version_after = 0
        self.created = t
        self.updated = t


class Mount:
    def __init__(self, path, mtype="kv", version=2, description=None):
        self.path = path.strip("/") + "/"
        self.type = mtype
        self.version = int(version)
        self.description = description if description is not None else \
            "key/value secret storage"
        self.accessor = "%s_%s" % (mtype, secrets.token_hex(4))
        self.uuid = str(uuid.uuid4())
        self.config = {"max_versions": 0, "cas_required": False,
                       "delete_version_after": 0}
        self.kv1 = {}               # path -> dict
        self.kv2 = {}               # path -> KV2Key

    def info(self):
        return {
            "accessor": self.accessor,
            "config": {"default_lease_ttl": 0, "force_no_cache": False,
                       "max_lease_ttl": 0},
            "description": self.description,
            "external_entropy_access": False,
            "local": False,
            "options": {"version": str(self.version)},
            "path": self.path,
            "plugin_version": "",
            "running_plugin_version": "v0.16.1+builtin",
            "running_sha256": "",
            "seal_wrap": False,
            "type": self.type,
            "uuid": self.uuid,
        }


class Namespace:
    def __init__(self, path, mounts):
        self.path = path
        self.id = rand_id(5) if path else "root"
        self.mounts = {}
        for name, spec in mounts.items():
            m = Mount(name, spec.get("type", "kv"), spec.get("version", 2),
                      spec.get("description"))
            self.mounts[m.path] = m

    def find_mount(self, rel):
        best = None
        for mp, m in self.mounts.items():
            if rel == mp[:-1] or rel.startswith(mp):
                if best is None or len(mp) > len(best.path):
                    best = m
        return best


class Token:
    def __init__(self, tid, policies, ttl=0, max_ttl=0, renewable=None,
                 namespace="", path="auth/token/create", display="token",
                 meta=None):
        self.id = tid
        self.accessor = rand_id(24)
        self.policies = sorted(set(policies))
        self.ttl = int(ttl)
        self.max_ttl = int(max_ttl)
        self.issue = now()
        self.expire = self.issue + self.ttl if self.ttl else None
        self.renewable = bool(self.ttl) if renewable is None else renewable
        self.namespace = namespace
        self.path = path
        self.display = display
        self.meta = meta
        self.entity_id = str(uuid.uuid4()) if path != "auth/token/root" else ""

    def expired(self):
        return self.expire is not None and now() >= self.expire

    def remaining(self):
        if self.expire is None:
            return 0
        return max(0, int(round(self.expire - now())))


# ---------------------------------------------------------------- policies

ALL_CAPS = {"create", "read", "update", "patch", "delete", "list", "sudo"}


def glob_match(pattern, path):
    if pattern.endswith("*"):
        head = pattern[:-1]
        return glob_match_plus(head, path[:len(head)]) and len(path) >= len(head)
    return glob_match_plus(pattern, path)


def glob_match_plus(pattern, path):
    if "+" not in pattern:
        return pattern == path
    ps, xs = pattern.split("/"), path.split("/")
    if len(ps) != len(xs):
        return False
    return all(p == "+" or p == x for p, x in zip(ps, xs))


def mount_reachable(pattern, mount_path):
    """Whether a policy path can name anything under a mount."""
    head = pattern[:-1] if pattern.endswith("*") else pattern
    head = head.split("+")[0]
    return head.startswith(mount_path) or mount_path.startswith(head) \
        or head == mount_path[:-1]


# ---------------------------------------------------------------- state

class State:
    def __init__(self, cfg, root_token, faults=()):
        self.lock = threading.RLock()
        self.cfg = cfg
        self.root_token = root_token
        self.start_faults = list(faults)
        self.log = []
        self.seq = 0
        self.connections = 0
        self.tls_failures = 0
        self.cluster_id = str(uuid.uuid4())
        self.reset()

    def reset(self):
        """Back to how it started: data, tokens, faults; not the log."""
        cfg = self.cfg
        self.cfg_mounts = cfg.get("mounts") or {
            "secret": {"type": "kv", "version": 2},
            "kv": {"type": "kv", "version": 1},
        }
        self.namespaces = {"": Namespace("", self.cfg_mounts)}
        self.policies = {}
        self.tokens = {}
        self.approles = {}
        self.sealed = False
        self.standby = False
        self.perf_standby = False
        self.dr_secondary = False
        self.require_request_header = False
        self.initialized = True
        self.delay_ms = 0
        self.keepalive = True
        self.renew_fail = None
        self.rules = []
        root = Token(self.root_token, ["root"], path="auth/token/root",
                     display="root")
        root.renewable = False
        self.tokens[root.id] = root
        for ns in cfg.get("namespaces", []):
            self.add_namespace(ns)
        for name, pol in (cfg.get("policies") or {}).items():
            self.set_policy(name, pol)
        for t in cfg.get("tokens", []):
            self.set_token(t)
        for name, r in (cfg.get("approle") or {}).items():
            self.set_approle(dict(r, name=name))
        self.cert_roles = {}
        for name, r in (cfg.get("cert") or {}).items():
            self.set_cert_role(dict(r, name=name))
        self.set_faults(cfg)
        for f in self.start_faults:
            self.set_faults(f)

    # -- setup, from the config or from /__double/
    def add_namespace(self, path):
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in self.namespaces:
                self.namespaces[p] = Namespace(p, self.cfg_mounts)
        return self.namespaces[path]

    def set_policy(self, name, pol):
        rules = {}
        for pattern, spec in (pol.get("path") or {}).items():
            caps = set(spec.get("capabilities", []))
            bad = caps - ALL_CAPS - {"deny"}
            if bad:
                raise Fail(400, ["unknown capabilities %s" % sorted(bad)])
            rules[pattern] = caps
        self.policies[name] = rules

    def set_token(self, t):
        tid = t.get("id") or "hvs." + rand_id(24)
        tok = self.tokens.get(tid)
        if t.get("revoke"):
            self.tokens.pop(tid, None)
            return None
        if tok is None:
            tok = Token(tid, t.get("policies", ["default"]),
                        parse_duration(t.get("ttl", 0)),
                        parse_duration(t.get("max_ttl", 0)),
                        t.get("renewable"),
                        t.get("namespace", "").strip("/"))
            self.tokens[tid] = tok
        else:
            if "policies" in t:
                tok.policies = sorted(set(t["policies"]))
            if "max_ttl" in t:
                tok.max_ttl = parse_duration(t["max_ttl"])
            if "renewable" in t:
                tok.renewable = bool(t["renewable"])
            if "ttl" in t:
                tok.ttl = parse_duration(t["ttl"])
                tok.expire = now() + tok.ttl if tok.ttl else None
        if t.get("expire"):
            tok.expire = now() - 1
        return tok

    def set_approle(self, r):
        name = r.get("name") or "role"
        self.approles[name] = {
            "role_id": r.get("role_id") or str(uuid.uuid4()),
            "secret_ids": set([r["secret_id"]] if r.get("secret_id") else []) |
            set(r.get("secret_ids", [])),
            "policies": r.get("policies", ["default"]),
            "token_ttl": parse_duration(r.get("token_ttl", 1200)),
            "token_max_ttl": parse_duration(r.get("token_max_ttl", 0)),
            "namespace": r.get("namespace", "").strip("/"),
        }
        return name

    def set_cert_role(self, r):
        name = r.get("name") or "cert"
        self.cert_roles[name] = {
            "policies": r.get("policies", ["default"]),
            "allowed_common_names": r.get("allowed_common_names", []),
            "ttl": parse_duration(r.get("ttl", 1200)),
            "max_ttl": parse_duration(r.get("max_ttl", 0)),
            "namespace": r.get("namespace", "").strip("/"),
        }
        return name

    def set_faults(self, f):
        for key in ("sealed", "standby", "perf_standby", "dr_secondary",
                    "initialized", "keepalive", "require_request_header"):
            if key in f:
                setattr(self, key, bool(f[key]))
        if "delay_ms" in f:
            self.delay_ms = int(f["delay_ms"])
        if "renew_fail" in f:
            rf = f["renew_fail"]
            if rf is True:
                rf = {"status": 403}
            self.renew_fail = rf or None
        if f.get("clear_rules"):
            self.rules = []
        for r in f.get("rules", []):
            r = dict(r)
            re.compile(r.get("path", ""))
            r.setdefault("count", 1)
            self.rules.append(r)

    def take_fault(self, method, path, ns):
        for r in self.rules:
            if r.get("method") and r["method"].upper() != method:
                continue
            if "namespace" in r and r["namespace"].strip("/") != ns:
                continue
            if not re.search(r.get("path", ""), path):
                continue
            if r["count"] > 0:
                r["count"] -= 1
                if r["count"] == 0:
                    self.rules.remove(r)
            return r
        return None

    # -- tokens and policies
    def token_for(self, tid, ns):
        """The live token named tid, usable in namespace ns, or None."""
        if not tid:
            return None
        tok = self.tokens.get(tid)
        if tok is None:
            return None
        if tok.expired():
            del self.tokens[tid]
            return None
        if tok.namespace and ns != tok.namespace and \
                not ns.startswith(tok.namespace + "/"):
            return None
        return tok

    def caps(self, tok, ns, rel):
        """The capabilities tok has on rel (a path inside namespace ns)."""
        if "root" in tok.policies:
            return set(ALL_CAPS)
        full = rel
        if ns != tok.namespace:
            inner = ns[len(tok.namespace):].strip("/")
            full = inner + "/" + rel
        merged = {}
        for p in tok.policies:
            for pattern, c in self.policies.get(p, {}).items():
                merged.setdefault(pattern, set()).update(c)
        best, best_key = None, None
        for pattern, c in merged.items():
            if not glob_match(pattern, full):
                continue
            key = (not pattern.endswith("*"), len(pattern) - pattern.count("+"))
            if best_key is None or key > best_key:
                best, best_key = c, key
        if best is None or "deny" in best:
            return set()
        return best

    def any_access_under(self, tok, ns, mount_path):
        if "root" in tok.policies:
            return True
        prefix = ""
        if ns != tok.namespace:
            prefix = ns[len(tok.namespace):].strip("/") + "/"
        for p in tok.policies:
            for pattern, c in self.policies.get(p, {}).items():
                if c and "deny" not in c and \
                        mount_reachable(pattern, prefix + mount_path):
                    return True
        return False


# ---------------------------------------------------------------- requests

SELF_PATHS = ("auth/token/lookup-self", "auth/token/renew-self",
              "auth/token/revoke-self")
UNAUTH_PATHS = ("sys/health", "sys/seal-status", "sys/leader",
                "auth/approle/login", "auth/cert/login")
SEALED_OK = ("sys/health", "sys/seal-status", "sys/leader")
KNOWN_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "LIST")
MAX_BODY = 32 * 1024 * 1024        # Vault's default max_request_size


class Request:
    def __init__(self, method, path, query, headers, body, raw_body):
        self.method = method          # GET, POST, PUT, DELETE, PATCH, LIST
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.raw_body = raw_body
        self.ns = ""
        self.rel = ""
        self.token = None
        self.peer_cert = None       # the verified client certificate, if any

    def op(self):
        if self.method == "LIST" or (self.method == "GET" and
                                     self.query.get("list") == "true"):
            return "list"
        return {"GET": "read", "HEAD": "read", "POST": "update",
                "PUT": "update", "DELETE": "delete",
                "PATCH": "patch"}.get(self.method, "read")


class Vault:
    """Vault's answers; every method returns (status, body or None)."""

    def __init__(self, state):
        self.s = state

    # -- envelope
    @staticmethod
    def envelope(data=None, auth=None, warnings=None, lease=0,
                 mount_type=None):
        body = {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": lease,
            "data": data,
            "wrap_info": None,
            "warnings": warnings,
            "auth": auth,
        }
        if mount_type:
            body["mount_type"] = mount_type
        return body

    def route(self, req):
        s = self.s
        rel = req.path[len("/v1/"):]
        while "//" in rel:
            rel = rel.replace("//", "/")
        # namespace: the header, then any path segments naming a child
        ns = (req.headers.get("X-Vault-Namespace") or "").strip("/")
        if ns and ns not in s.namespaces:
            raise Fail(404, ['no handler for route "%s/%s". route entry not found.'
                             % (ns, rel)])
        while True:
            first, _, rest = rel.partition("/")
            cand = (ns + "/" + first) if ns else first
            if rest and cand in s.namespaces:
                ns, rel = cand, rest
            else:
                break
        req.ns, req.rel = ns, rel

        if s.sealed and not rel.startswith(SEALED_OK):
            raise Fail(503, ["Vault is sealed"])

        if rel == "sys/health":
            return self.health(req)
        if req.method not in KNOWN_METHODS:
            raise Fail(405)
        if rel == "sys/seal-status":
            return 200, self.seal_status()
        if rel == "sys/leader":
            return 200, {"ha_enabled": True, "is_self": not s.standby,
                         "active_time": rfc3339(now()),
                         "leader_address": "https://127.0.0.1:8200",
                         "leader_cluster_address": "https://127.0.0.1:8201",
                         "performance_standby": s.perf_standby,
                         "raft_committed_index": 0,
                         "raft_applied_index": 0}
        if rel == "auth/approle/login":
            return self.approle_login(req)
        if rel == "auth/cert/login":
            return self.cert_login(req)

        tok = s.token_for(req.token, ns)
        if tok is None:
            raise denied()
        if rel in SELF_PATHS:
            return self.token_self(req, tok)
        if rel.startswith("sys/internal/ui/mounts"):
            return self.ui_mounts(req, tok)

        ns_obj = s.namespaces[ns]
        mount = ns_obj.find_mount(rel)
        op = req.op()
        if mount is not None and mount.type == "kv" and op in ("update",) \
                and not self.exists(mount, rel):
            op = "create"
        if op not in s.caps(tok, ns, rel):
            raise denied()

        if rel == "sys/mounts":
            if req.method != "GET":
                raise Fail(405, ["1 error occurred:\n\t* unsupported operation\n\n"])
            data = {m.path: m.info() for m in ns_obj.mounts.values()}
            data.update(self.builtin_mounts())
            body = self.envelope(data)
            body.update(data)
            return 200, body
        if rel.startswith("auth/token/"):
            return self.token_admin(req, tok, rel[len("auth/token/"):])
        if mount is None:
            raise Fail(404, ['no handler for route "%s". route entry not found.'
                             % rel])
        sub = rel[len(mount.path):] if rel.startswith(mount.path) else ""
        if mount.version == 2:
            return self.kv2(req, mount, sub)
        return self.kv1(req, mount, sub)

    @staticmethod
    def builtin_mounts():
        def one(path, mtype, desc):
            return {"accessor": "%s_%s" % (mtype, secrets.token_hex(4)),
                    "config": {"default_lease_ttl": 0, "force_no_cache": False,
                               "max_lease_ttl": 0},
                    "description": desc, "external_entropy_access": False,
                    "local": mtype == "cubbyhole", "options": None,
                    "path": path, "seal_wrap": mtype == "system",
                    "type": mtype, "uuid": str(uuid.uuid4())}
        return {"sys/": one("sys/", "system", "system endpoints used for control, policy and debugging"),
                "cubbyhole/": one("cubbyhole/", "cubbyhole", "per-token private secret storage"),
                "identity/": one("identity/", "identity", "identity store")}

    @staticmethod
    def exists(mount, rel):
        sub = rel[len(mount.path):] if rel.startswith(mount.path) else ""
        if mount.version == 1:
            return sub in mount.kv1
        for pre in ("data/", "metadata/"):
            if sub.startswith(pre):
                return sub[len(pre):] in mount.kv2
        return True

    # -- sys
    def health(self, req):
        s = self.s
        q = req.query

        def code(name, default):
            try:
                return int(q[name]) if name in q else default
            except ValueError:
                raise Fail(400, ["unable to parse %s parameter: %s" %
                                 (name, q[name])])
        def ok(name):
            if name not in q:
                return False
            v = q[name]
            if v in ("", "1", "t", "T", "TRUE", "true", "True"):
                return True
            if v in ("0", "f", "F", "FALSE", "false", "False"):
                return False
            raise Fail(400, ["bad value for %s parameter: %s" % (name, v)])
        if not s.initialized:
            status = code("uninitcode", 501)
        elif s.sealed:
            status = code("sealedcode", 503)
        elif s.dr_secondary:
            status = code("drsecondarycode", 472)
        elif s.perf_standby:
            status = code("activecode", 200) if ok("perfstandbyok") else \
                code("performancestandbycode", 473)
        elif s.standby:
            status = code("activecode", 200) if ok("standbyok") else \
                code("standbycode", 429)
        else:
            status = code("activecode", 200)
        body = {
            "initialized": s.initialized,
            "sealed": s.sealed,
            "standby": s.standby or s.perf_standby,
            "performance_standby": s.perf_standby,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "secondary" if s.dr_secondary else "disabled",
            "server_time_utc": int(now()),
            "version": VERSION,
            "enterprise": False,
            "echo_duration_ms": 0,
            "clock_skew_ms": 0,
        }
        if not s.sealed:
            body["cluster_name"] = "vault-cluster-double"
            body["cluster_id"] = s.cluster_id
        return status, body

    def seal_status(self):
        s = self.s
        body = {"type": "shamir", "initialized": s.initialized,
                "sealed": s.sealed, "t": 1, "n": 1, "progress": 0,
                "nonce": "", "version": VERSION,
                "build_date": "2024-01-01T00:00:00Z", "migration": False,
                "recovery_seal": False, "storage_type": "inmem"}
        if not s.sealed:
            body["cluster_name"] = "vault-cluster-double"
            body["cluster_id"] = s.cluster_id
        return body

    def ui_mounts(self, req, tok):
        s = self.s
        ns_obj = s.namespaces[req.ns]
        rest = req.rel[len("sys/internal/ui/mounts"):].strip("/")
        if req.method != "GET":
            raise Fail(405, ["1 error occurred:\n\t* unsupported operation\n\n"])
        if not rest:
            secret = {}
            for m in ns_obj.mounts.values():
                if s.any_access_under(tok, req.ns, m.path):
                    secret[m.path] = m.info()
            return 200, self.envelope({"auth": {}, "secret": secret})
        m = ns_obj.find_mount(rest)
        pre = ("preflight capability check returned 403, please ensure "
               "client's policies grant access to path \"%s/\"" % rest)
        if m is None or not s.any_access_under(tok, req.ns, m.path):
            raise Fail(403, [pre])
        return 200, self.envelope(m.info())

    # -- auth
    def auth_block(self, tok, warnings=None):
        return {
            "client_token": tok.id,
            "accessor": tok.accessor,
            "policies": tok.policies,
            "token_policies": tok.policies,
            "identity_policies": None,
            "metadata": tok.meta,
            "lease_duration": tok.remaining(),
            "renewable": tok.renewable,
            "entity_id": tok.entity_id,
            "token_type": "service",
            "orphan": tok.path != "auth/token/create",
            "mfa_requirement": None,
            "num_uses": 0,
        }

    def approle_login(self, req):
        s = self.s
        if req.method not in ("POST", "PUT"):
            raise Fail(405, ["1 error occurred:\n\t* unsupported operation\n\n"])
        b = req.body or {}
        role_id = b.get("role_id")
        if not role_id:
            raise Fail(400, ["missing role_id"])
        for name, r in s.approles.items():
            if r["role_id"] == role_id and r["namespace"] == req.ns:
                break
        else:
            raise Fail(400, ["invalid role or secret ID"])
        if b.get("secret_id") not in r["secret_ids"]:
            raise Fail(400, ["invalid role or secret ID"])
        tok = Token("hvs." + rand_id(24), ["default"] + list(r["policies"]),
                    r["token_ttl"], r["token_max_ttl"], True, req.ns,
                    path="auth/approle/login", display="approle",
                    meta={"role_name": name})
        s.tokens[tok.id] = tok
        return 200, self.envelope(None, auth=self.auth_block(tok))

    def cert_login(self, req):
        """TLS certificate auth: a role whose allowed_common_names (all when
        absent) holds the CN of the certificate the client presented."""
        s = self.s
        if req.method not in ("POST", "PUT"):
            raise self.unsupported()
        if not req.peer_cert:
            raise Fail(400, ["client certificate must be supplied"])
        cn = ""
        for rdn in req.peer_cert.get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    cn = v
        want = (req.body or {}).get("name")
        for name, r in sorted(s.cert_roles.items()):
            if want and name != want:
                continue
            if r["namespace"] != req.ns:
                continue
            if r["allowed_common_names"] and cn not in r["allowed_common_names"]:
                continue
            break
        else:
            raise Fail(400, ["invalid certificate or no client certificate supplied"])
        tok = Token("hvs." + rand_id(24), ["default"] + list(r["policies"]),
                    r["ttl"], r["max_ttl"], True, req.ns,
                    path="auth/cert/login", display="cert-" + name,
                    meta={"cert_name": name, "common_name": cn,
                          "serial_number": req.peer_cert.get("serialNumber", "")})
        s.tokens[tok.id] = tok
        return 200, self.envelope(None, auth=self.auth_block(tok))

    def lookup_data(self, tok):
        return {
            "accessor": tok.accessor,
            "creation_time": int(tok.issue),
            "creation_ttl": tok.ttl,
            "display_name": tok.display,
            "entity_id": tok.entity_id,
            "expire_time": rfc3339(tok.expire) if tok.expire else None,
            "explicit_max_ttl": tok.max_ttl,
            "id": tok.id,
            "issue_time": rfc3339(tok.issue),
            "meta": tok.meta,
            "num_uses": 0,
            "orphan": tok.path != "auth/token/create",
            "path": tok.path,
            "policies": tok.policies,
            "renewable": tok.renewable,
            "ttl": tok.remaining(),
            "type": "service",
        }

    def renew(self, tok, body):
        s = self.s
        if s.renew_fail:
            rf = s.renew_fail
            st = int(rf.get("status", 403))
            raise Fail(st, rf.get("errors") or
                       ([PERMISSION_DENIED] if st == 403 else
                        FAULT_ERRORS.get(st, ["renewal failed"])))
        if not tok.renewable or tok.expire is None:
            raise Fail(400, ["lease is not renewable"])
        try:
            inc = parse_duration((body or {}).get("increment")) or tok.ttl
        except ValueError:
            raise Fail(400, ["invalid increment"])
        limit = tok.max_ttl or DEFAULT_MAX_TTL
        left = int(tok.issue + limit - now())
        warnings = None
        if inc > left:
            warnings = ['TTL of "%s" exceeded the effective max_ttl of "%s"; '
                        'TTL value is capped accordingly'
                        % (go_duration(inc), go_duration(max(left, 0)))]
            inc = max(left, 0)
        tok.expire = now() + inc
        return 200, self.envelope(None, auth=self.auth_block(tok),
                                  warnings=warnings)

    def token_self(self, req, tok):
        name = req.rel[len("auth/token/"):]
        if name == "lookup-self":
            if req.method not in ("GET", "POST", "PUT"):
                raise Fail(405, ["1 error occurred:\n\t* unsupported operation\n\n"])
            return 200, self.envelope(self.lookup_data(tok))
        if req.method not in ("POST", "PUT"):
            raise Fail(405, ["1 error occurred:\n\t* unsupported operation\n\n"])
        if name == "renew-self":
            return self.renew(tok, req.body)
        self.s.tokens.pop(tok.id, None)          # revoke-self
        return 204, None

    def token_admin(self, req, tok, name):
        s = self.s
        b = req.body or {}
        if name in ("create", "create-orphan") and req.method in ("POST", "PUT"):
            pols = b.get("policies") or tok.policies
            if "root" in pols and "root" not in tok.policies:
                raise Fail(400, ["root tokens may not be created without parent token being root"])
            try:
                ttl = parse_duration(b.get("ttl")) or \
                    (0 if "root" in pols else 2764800)
                mx = parse_duration(b.get("explicit_max_ttl"))
            except ValueError as e:
                raise Fail(400, [str(e)])
            t = Token(b.get("id") or "hvs." + rand_id(24),
                      (["default"] if not b.get("no_default_policy") and
                       "root" not in pols else []) + list(pols),
                      ttl, mx, b.get("renewable", True) if ttl else False,
                      req.ns, display="token", meta=b.get("meta"))
            s.tokens[t.id] = t
            return 200, self.envelope(None, auth=self.auth_block(t))
        if name == "lookup" and req.method in ("POST", "PUT"):
            other = s.token_for(b.get("token"), req.ns)
            if other is None:
                raise Fail(403, ["bad token"])
            return 200, self.envelope(self.lookup_data(other))
        raise Fail(405, ["1 error occurred:\n\t* unsupported operation\n\n"])

    # -- KV version 1
    def kv1(self, req, m, sub):
        op = req.op()
        if op == "list":
            prefix = sub if not sub or sub.endswith("/") else sub + "/"
            keys = set()
            for k in m.kv1:
                if k.startswith(prefix):
                    rest = k[len(prefix):]
                    head, slash, _ = rest.partition("/")
                    keys.add(head + slash)
            if not keys:
                raise Fail(404)
            return 200, self.envelope({"keys": sorted(keys)}, lease=KV1_LEASE,
                                      mount_type="kv")
        if not sub:
            raise Fail(405, ["1 error occurred:\n\t* unsupported operation\n\n"])
        if op == "read":
            if sub not in m.kv1:
                raise Fail(404)
            data = copy.deepcopy(m.kv1[sub])
            lease = KV1_LEASE
            if "ttl" in data:
                try:
                    lease = parse_duration(data["ttl"])
                except ValueError:
                    pass
            return 200, self.envelope(data, lease=lease, mount_type="kv")
        if op in ("update", "create"):
            if not isinstance(req.body, dict) or not req.body:
                raise Fail(400, ["missing data fields"])
            m.kv1[sub] = copy.deepcopy(req.body)
            return 204, None
        if op == "delete":
            m.kv1.pop(sub, None)
            return 204, None
        raise Fail(405, ["1 error occurred:\n\t* unsupported operation\n\n"])

    # -- KV version 2
    def kv2(self, req, m, sub):
        op = req.op()
        if sub == "config":
            return self.kv2_config(req, m, op)
        for pre in ("data", "metadata", "delete", "undelete", "destroy",
                    "subkeys"):
            if sub == pre or sub.startswith(pre + "/"):
                key = sub[len(pre) + 1:]
                return getattr(self, "kv2_" + pre)(req, m, key, op)
        raise Fail(404, ["Invalid path for a versioned K/V secrets engine. See "
                         "the API docs for the appropriate API endpoints to use. "
                         "If using the Vault CLI, use 'vault kv get' for this "
                         "operation."])

    @staticmethod
    def unsupported():
        return Fail(405, ["1 error occurred:\n\t* unsupported operation\n\n"])

    def kv2_config(self, req, m, op):
        if op == "read":
            c = m.config
            return 200, self.envelope({
                "cas_required": c["cas_required"],
                "delete_version_after": go_duration(c["delete_version_after"]),
                "max_versions": c["max_versions"]}, mount_type="kv")
        if op in ("update", "create"):
            b = req.body or {}
            try:
                if "max_versions" in b:
                    m.config["max_versions"] = int(b["max_versions"])
                if "cas_required" in b:
                    m.config["cas_required"] = bool(b["cas_required"])
                if "delete_version_after" in b:
                    m.config["delete_version_after"] = \
                        parse_duration(b["delete_version_after"])
            except ValueError as e:
                raise Fail(400, [str(e)])
            return 204, None
        raise self.unsupported()

    @staticmethod
    def version_deleted(v):
        return v["deleted"] is not None and v["deleted"] <= now()

    def version_meta(self, k, n):
        v = k.versions[n]
        return {"created_time": rfc3339(v["created"]),
                "custom_metadata": copy.deepcopy(k.custom_metadata),
                "deletion_time": rfc3339(v["deleted"]),
                "destroyed": v["destroyed"],
                "version": n}

    def read_version(self, req, m, key):
        """The key and version a read names, or raise its 404."""
        k = m.kv2.get(key)
        if k is None or not key:
            raise Fail(404)
        try:
            n = int(req.query.get("version", 0) or 0)
        except ValueError:
            raise Fail(400, ["invalid version"])
        if n == 0:
            n = k.current
        if n not in k.versions:
            raise Fail(404)
        v = k.versions[n]
        if v["destroyed"] or self.version_deleted(v):
            return k, n, False
        return k, n, True

    def write_checks(self, k, m, b):
        opts = b.get("options") or {}
        if not isinstance(opts, dict):
            raise Fail(400, ["options must be a map"])
        cas = opts.get("cas")
        required = m.config["cas_required"] or (k is not None and k.cas_required)
        if cas is None:
            if required:
                raise Fail(400, ["check-and-set parameter required for this call"])
            return
        try:
            cas = int(cas)
        except (TypeError, ValueError):
            raise Fail(400, ["invalid cas value"])
        if cas != (k.current if k is not None else 0):
            raise Fail(400, ["check-and-set parameter did not match the current version"])

    def new_version(self, m, key, k, data):
        t = now()
        if k is None:
            k = KV2Key()
            m.kv2[key] = k
        n = k.current + 1
        after = k.delete_version_after or m.config["delete_version_after"]
        if k.delete_version_after and m.config["delete_version_after"]:
            after = min(k.delete_version_after, m.config["delete_version_after"])
        k.versions[n] = {"data": data, "created": t,
                         "deleted": t + after if after else None,
                         "destroyed": False}
        k.current = n
        k.updated = t
        keep = k.max_versions or m.config["max_versions"] or 10
        while len(k.versions) > keep:
            del k.versions[min(k.versions)]
        k.oldest = min(k.versions)
        if k.oldest == 1 and len(k.versions) == k.current:
            k.oldest = 0
        return k, n

    def kv2_data(self, req, m, key, op):
        if op == "list":
            raise self.unsupported()
        if op == "read":
            k, n, live = self.read_version(req, m, key)
            body = {"data": copy.deepcopy(k.versions[n]["data"]) if live else None,
                    "metadata": self.version_meta(k, n)}
            if not live:
                raise Fail(404, body=self.envelope(body, mount_type="kv"))
            return 200, self.envelope(body, mount_type="kv")
        if not key:
            raise self.unsupported()
        k = m.kv2.get(key)
        if op in ("update", "create"):
            b = req.body or {}
            data = b.get("data")
            if not isinstance(data, dict):
                raise Fail(400, ["no data provided"])
            self.write_checks(k, m, b)
            k, n = self.new_version(m, key, k, copy.deepcopy(data))
            return 200, self.envelope(self.write_meta(k, n), mount_type="kv")
        if op == "patch":
            ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/merge-patch+json":
                raise Fail(415, ["PATCH requires Content-Type of "
                                 "application/merge-patch+json, provided %s"
                                 % ctype])
            b = req.body or {}
            data = b.get("data")
            if not isinstance(data, dict):
                raise Fail(400, ["no data provided"])
            if k is None or k.current not in k.versions:
                raise Fail(404)
            cur = k.versions[k.current]
            if cur["destroyed"] or self.version_deleted(cur):
                raise Fail(404)
            self.write_checks(k, m, b)
            merged = merge_patch(copy.deepcopy(cur["data"]), data)
            k, n = self.new_version(m, key, k, merged)
            return 200, self.envelope(self.write_meta(k, n), mount_type="kv")
        if op == "delete":
            if k is not None and k.current in k.versions:
                v = k.versions[k.current]
                if not v["destroyed"] and not self.version_deleted(v):
                    v["deleted"] = now()
                    k.updated = now()
            return 204, None
        raise self.unsupported()

    def write_meta(self, k, n):
        meta = self.version_meta(k, n)
        return meta

    def versions_arg(self, req):
        vs = (req.body or {}).get("versions")
        if isinstance(vs, (int, str)):
            vs = [vs]
        if not vs:
            raise Fail(400, ["no version number provided"])
        try:
            return [int(v) for v in vs]
        except (TypeError, ValueError):
            raise Fail(400, ["invalid version number"])

    def kv2_versions_op(self, req, m, key, op, what):
        if op not in ("update", "create"):
            raise self.unsupported()
        if not key:
            raise self.unsupported()
        vs = self.versions_arg(req)
        k = m.kv2.get(key)
        if k is None:
            return 204, None
        t = now()
        for n in vs:
            v = k.versions.get(n)
            if v is None:
                continue
            if what == "delete" and not v["destroyed"] and \
                    not self.version_deleted(v):
                v["deleted"] = t
            elif what == "undelete" and not v["destroyed"]:
                v["deleted"] = None
            elif what == "destroy":
                v["destroyed"] = True
                v["data"] = None
        k.updated = t
        return 204, None

    def kv2_delete(self, req, m, key, op):
        return self.kv2_versions_op(req, m, key, op, "delete")

    def kv2_undelete(self, req, m, key, op):
        return self.kv2_versions_op(req, m, key, op, "undelete")

    def kv2_destroy(self, req, m, key, op):
        return self.kv2_versions_op(req, m, key, op, "destroy")

    def kv2_subkeys(self, req, m, key, op):
        if op != "read":
            raise self.unsupported()
        k, n, live = self.read_version(req, m, key)
        try:
            depth = int(req.query.get("depth", 0) or 0)
        except ValueError:
            raise Fail(400, ["invalid depth"])
        body = {"subkeys": subkeys(k.versions[n]["data"], depth, 1) if live
                else None, "metadata": self.version_meta(k, n)}
        if not live:
            raise Fail(404, body=self.envelope(body, mount_type="kv"))
        return 200, self.envelope(body, mount_type="kv")

    def kv2_metadata(self, req, m, key, op):
        if op == "list":
            prefix = key if not key or key.endswith("/") else key + "/"
            keys = set()
            for name in m.kv2:
                if name.startswith(prefix):
                    head, slash, _ = name[len(prefix):].partition("/")
                    keys.add(head + slash)
            if not keys:
                raise Fail(404)
            return 200, self.envelope({"keys": sorted(keys)}, mount_type="kv")
        if not key:
            raise self.unsupported()
        k = m.kv2.get(key)
        if op == "read":
            if k is None:
                raise Fail(404)
            return 200, self.envelope(self.metadata(k), mount_type="kv")
        if op in ("update", "create", "patch"):
            b = req.body or {}
            if op == "patch":
                ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype != "application/merge-patch+json":
                    raise Fail(415, ["PATCH requires Content-Type of "
                                     "application/merge-patch+json, provided %s"
                                     % ctype])
                if k is None:
                    raise Fail(404)
            cm = None
            if "custom_metadata" in b:
                cm = parse_custom_metadata(b["custom_metadata"], op == "patch")
            try:
                dva = parse_duration(b["delete_version_after"]) \
                    if "delete_version_after" in b else None
                mv = int(b["max_versions"]) if "max_versions" in b else None
            except (TypeError, ValueError) as e:
                raise Fail(400, [str(e)])
            if k is None:
                k = KV2Key()
                m.kv2[key] = k
            if mv is not None:
                k.max_versions = mv
            if "cas_required" in b:
                k.cas_required = bool(b["cas_required"])
            if dva is not None:
                k.delete_version_after = dva
            if "custom_metadata" in b:
                if op == "patch":
                    cm = merge_patch(copy.deepcopy(k.custom_metadata or {}), cm)
                k.custom_metadata = cm or None
            k.updated = now()
            return 204, None
        if op == "delete":
            m.kv2.pop(key, None)
            return 204, None
        raise self.unsupported()

    def metadata(self, k):
        return {
            "cas_required": k.cas_required,
            "created_time": rfc3339(k.created),
            "current_version": k.current,
            "custom_metadata": copy.deepcopy(k.custom_metadata),
            "delete_version_after": go_duration(k.delete_version_after),
            "max_versions": k.max_versions,
            "oldest_version": k.oldest,
            "updated_time": rfc3339(k.updated),
            "versions": {str(n): {"created_time": rfc3339(v["created"]),
                                  "deletion_time": rfc3339(v["deleted"]),
                                  "destroyed": v["destroyed"]}
                         for n, v in sorted(k.versions.items())},
        }


def multierror(errs):
    """An error list as Go's go-multierror writes it."""
    return "%d error%s occurred:\n%s\n\n" % (
        len(errs), "" if len(errs) == 1 else "s",
        "\n".join("\t* " + e for e in errs))


def parse_custom_metadata(raw, patch):
    """custom_metadata as KV v2 takes it: values weakly made strings (a
    null is "" on a write, a deletion in a patch), then at most 64 keys,
    keys of 1 to 128 bytes, values of 1 to 512, all printable."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Fail(400, [multierror(["custom_metadata: expected a map, got %s"
                                     % type(raw).__name__])])
    out = {}
    for k, v in raw.items():
        if v is None:
            out[k] = None if patch else ""
        elif isinstance(v, bool):
            out[k] = "1" if v else "0"
        elif isinstance(v, (int, float, str)):
            out[k] = v if isinstance(v, str) else json.dumps(v)
        else:
            raise Fail(400, [multierror(["'%s' expected type 'string', got "
                                         "unconvertible type '%s'" %
                                         (k, type(v).__name__)])])
    pre = "custom_metadata validation failed"
    if len(out) > 64:
        raise Fail(400, [multierror(["%s: payload must contain at most 64 "
                                     "keys, provided %d" % (pre, len(out))])])
    errs = []
    for k, v in out.items():
        kl = len(k.encode())
        if kl == 0 or kl > 128:
            errs.append("%s: length of key %s is %d but must be 0 < len(key) "
                        "<= 128" % (pre, json.dumps(k), kl))
        if v is not None:
            vl = len(v.encode())
            if vl == 0 or vl > 512:
                errs.append("%s: length of value for key %s is %d but must be "
                            "0 < len(value) <= 512" % (pre, json.dumps(k), vl))
        if not k.isprintable():
            errs.append("%s: key %s (%s) contains unprintable characters"
                        % (pre, json.dumps(k), k))
        if v is not None and not v.isprintable():
            errs.append("%s: value for key %s contains unprintable characters"
                        % (pre, json.dumps(k)))
    if errs:
        raise Fail(400, [multierror(errs)])
    return out


def clean_path(p):
    """Go's path.Clean as http.ServeMux applies it: no empty, "." or ".."
    segments; a trailing slash kept."""
    out = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    c = "/" + "/".join(out)
    if p.endswith("/") and c != "/":
        c += "/"
    return c


def merge_patch(target, patch):
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, val in patch.items():
        if val is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), val)
    return target


def subkeys(data, depth, level):
    out = {}
    for key, val in (data or {}).items():
        if isinstance(val, dict) and val and (depth == 0 or level < depth):
            out[key] = subkeys(val, depth, level + 1)
        else:
            out[key] = None
    return out


# ---------------------------------------------------------------- HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm
    # the body waits for the client's delayed ACK, 40 ms an answer on a
    # kept-alive connection.  Vault (Go) sets TCP_NODELAY too.
    disable_nagle_algorithm = True
    server_version = "vault-double"
    sys_version = ""

    def setup(self):
        super().setup()
        self.conn_id = self.server.conn_ids.get(self.client_address, 0)
        self.tls_ok = True
        self.client_cert = False
        self.peer_cert = None
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
                self.peer_cert = self.request.getpeercert() or None
                self.client_cert = bool(self.peer_cert)
            except (ssl.SSLError, OSError) as e:
                self.tls_ok = False
                with self.server.state.lock:
                    self.server.state.tls_failures += 1
                if self.server.verbose:
                    sys.stderr.write("vault double: TLS handshake: %s\n" % e)

    def handle(self):
        if self.tls_ok:
            try:
                super().handle()
            except (ConnectionError, ssl.SSLError, socket.timeout):
                pass

    def finish(self):
        try:
            super().finish()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        self.server.conn_ids.pop(self.client_address, None)

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("vault double: %s\n" % (fmt % args))

    # every method lands here
    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_LIST(self):
        self.dispatch("LIST")

    def __getattr__(self, name):
        # any other method reaches Vault's router, which answers 405
        if name.startswith("do_") and name[3:].isalpha():
            return lambda: self.dispatch(name[3:])
        raise AttributeError(name)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self.too_large = True
            self.close_connection = True
            return b""
        return self.rfile.read(n) if n > 0 else b""

    def send(self, status, body, extra=None, fault=None):
        """Answer; a fault rule may give a raw body, cut the body short
        ("truncate") or close the connection after answering
        ("close_after", with no "Connection: close" to warn the client)."""
        fault = fault or {}
        payload = b""
        ctype = "application/json"
        if fault.get("raw") is not None:
            payload = str(fault["raw"]).encode()
            ctype = fault.get("content_type", "text/html; charset=utf-8")
        elif body is not None:
            payload = (json.dumps(body, separators=(",", ":")) + "\n").encode()
        self.send_response(status, REASONS.get(status))
        if status != 204:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Strict-Transport-Security",
                         "max-age=31536000; includeSubDomains")
        for k, v in (extra or {}).items():
            self.send_header(k, str(v))
        if not self.server.state.keepalive:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if fault.get("truncate"):
            payload = payload[:len(payload) // 2]
        if self.command != "HEAD" and status != 204:
            self.wfile.write(payload)
        if fault.get("truncate") or fault.get("close_after"):
            self.wfile.flush()
            self.close_connection = True
            try:
                self.request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def redirect(self, where):
        body = b""
        if self.command in ("GET", "HEAD"):
            body = ('<a href="%s">Moved Permanently</a>.\n\n' % where).encode()
        self.send_response(301, "Moved Permanently")
        self.send_header("Location", where)
        if body:
            self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if not self.server.state.keepalive:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def dispatch(self, method):
        state = self.server.state
        self.too_large = False
        raw = self.read_body()
        if self.too_large:
            return self.send(413, {"errors": ["error parsing JSON"]})
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = {k: v[-1] for k, v in
                 urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        if path.startswith("/__double/"):
            return self.control(method, path[len("/__double/"):], raw, query)

        body, bad_json = None, None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as e:
                bad_json = str(e)
            if bad_json is None and not isinstance(body, dict):
                bad_json = ("json: cannot unmarshal %s into Go value of type "
                            "map[string]interface {}" % type(body).__name__)
                body = None
        tok, via = self.headers.get("X-Vault-Token"), None
        if tok:
            via = "header"
        else:
            auth = self.headers.get("Authorization") or ""
            if auth[:7].lower() == "bearer ":
                tok, via = auth[7:].strip(), "bearer"
        hdr_ns = (self.headers.get("X-Vault-Namespace") or "").strip("/")
        entry = {
            "conn": self.conn_id,
            "method": method,
            "path": path,
            "query": url.query,
            "namespace": self.headers.get("X-Vault-Namespace"),
            "x_vault_request": self.headers.get("X-Vault-Request"),
            "token": via,
            "headers": sorted({k.lower() for k in self.headers.keys()}),
            "content_type": self.headers.get("Content-Type"),
            "body_keys": sorted(body) if isinstance(body, dict) else None,
            "client_cert": self.client_cert,
            "time": rfc3339(now()),
        }
        if isinstance(body, dict) and isinstance(body.get("options"), dict) \
                and "cas" in body["options"]:
            entry["cas"] = body["options"]["cas"]

        clean = clean_path(path)
        if clean != path:
            # Vault's /v1/ sits behind Go's http.ServeMux, which sends any
            # path with "//", "." or ".." (once decoded) to its clean form
            entry["status"] = 301
            entry["redirect"] = clean
            self.record(entry)
            return self.redirect(urllib.parse.quote(clean) +
                                 ("?" + url.query if url.query else ""))

        with state.lock:
            fault = state.take_fault(method, path, hdr_ns)
            delay = state.delay_ms
        if fault and fault.get("delay_ms"):
            delay += int(fault["delay_ms"])
        if delay:
            time.sleep(delay / 1000.0)
        if fault and fault.get("close"):
            entry["fault"] = "close"
            entry["status"] = None
            self.record(entry)
            self.close_connection = True
            try:
                self.request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault and fault.get("status"):
            st = int(fault["status"])
            entry["fault"] = st
            entry["status"] = st
            self.record(entry)
            fb = fault.get("body")
            if fb is None:
                default = FAULT_ERRORS.get(st, ["error %d" % st])
                if st == 429:
                    default = ['request path "%s": rate limit quota exceeded'
                               % path[len("/v1/"):]]
                fb = {"errors": fault.get("errors", default)}
            return self.send(st, fb, fault.get("headers"), fault)

        if state.require_request_header and \
                self.headers.get("X-Vault-Request") is None:
            # what a Vault Proxy with require_request_header answers
            status, out = 412, {"errors": ["missing 'X-Vault-Request' header"]}
        elif bad_json is not None:
            status, out = 400, {"errors": ["failed to parse JSON input: %s"
                                           % bad_json]}
        elif not path.startswith("/v1/"):
            status, out = 404, {"errors": []}
        else:
            req = Request(method, path, query, self.headers, body, raw)
            req.token = tok
            req.peer_cert = self.peer_cert
            try:
                with state.lock:
                    status, out = Vault(state).route(req)
            except Fail as f:
                status = f.status
                out = f.body if f.body is not None else {"errors": f.errors}
            except Exception:
                import traceback
                traceback.print_exc(file=sys.stderr)
                status, out = 500, {"errors": [
                    "1 error occurred:\n\t* internal error\n\n"]}
            entry["namespace_resolved"] = req.ns
        entry["status"] = status
        if fault:
            for what in ("truncate", "close_after"):
                if fault.get(what):
                    entry["fault"] = what
            if fault.get("delay_after_ms"):
                time.sleep(int(fault["delay_after_ms"]) / 1000.0)
        self.record(entry)
        self.send(status, out, None, fault)

    def record(self, entry):
        st = self.server.state
        with st.lock:
            st.seq += 1
            entry["seq"] = st.seq
            st.log.append(entry)
            if len(st.log) > 10000:
                del st.log[:1000]

    def control(self, method, what, raw, query):
        state = self.server.state
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            return self.send(400, {"errors": ["bad JSON: %s" % e]})
        try:
            with state.lock:
                if what == "requests" and method == "GET":
                    since = int(query.get("since", 0) or 0)
                    return self.send(200, {"connections": state.connections,
                                           "tls_failures": state.tls_failures,
                                           "requests": [e for e in state.log
                                                        if e["seq"] > since]})
                if what == "reset" and method in ("POST", "PUT"):
                    state.reset()
                    return self.send(204, None)
                if what == "requests" and method == "DELETE":
                    state.log = []
                    return self.send(204, None)
                if method not in ("POST", "PUT"):
                    return self.send(405, {"errors": ["unsupported"]})
                if what == "fault":
                    state.set_faults(body)
                    return self.send(200, {"sealed": state.sealed,
                                           "standby": state.standby,
                                           "rules": state.rules})
                if what == "token":
                    tok = state.set_token(body)
                    if tok is None:
                        return self.send(204, None)
                    return self.send(200, {"id": tok.id, "accessor": tok.accessor,
                                           "ttl": tok.remaining(),
                                           "policies": tok.policies})
                if what == "policy":
                    state.set_policy(body["name"], body["policy"])
                    return self.send(204, None)
                if what == "namespace":
                    state.add_namespace(body["path"])
                    return self.send(204, None)
                if what == "approle":
                    name = state.set_approle(body)
                    return self.send(200, {"name": name,
                                           "role_id": state.approles[name]["role_id"]})
                if what == "cert":
                    return self.send(200, {"name": state.set_cert_role(body)})
                if what == "seed":
                    ns = state.add_namespace(body["namespace"]) \
                        if body.get("namespace") else state.namespaces[""]
                    m = ns.mounts[body["mount"].strip("/") + "/"]
                    if m.version == 1:
                        m.kv1[body["path"]] = body["data"]
                        return self.send(200, {})
                    v = Vault(state)
                    k, n = v.new_version(m, body["path"], m.kv2.get(body["path"]),
                                         copy.deepcopy(body["data"]))
                    if "custom_metadata" in body:
                        k.custom_metadata = body["custom_metadata"]
                    return self.send(200, {"version": n})
        except Fail as f:
            return self.send(f.status, {"errors": f.errors})
        except (KeyError, TypeError, ValueError, re.error) as e:
            return self.send(400, {"errors": ["bad control request: %r" % e]})
        return self.send(404, {"errors": ["no such control: %s" % what]})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, state, ctx, verbose, idle):
        self.state = state
        self.ctx = ctx
        self.verbose = verbose
        self.conn_ids = {}
        Handler.timeout = idle
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        with self.state.lock:
            self.state.connections += 1
            self.conn_ids[addr] = self.state.connections
        if self.ctx is not None:
            sock = self.ctx.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description="A Vault API stand-in for tests.")
    ap.add_argument("--cert", help="server certificate (PEM)")
    ap.add_argument("--key", help="server private key (PEM)")
    ap.add_argument("--client-ca", help="CA that signs client certificates")
    ap.add_argument("--require-client-cert", action="store_true")
    ap.add_argument("--http", action="store_true", help="plain HTTP, no TLS")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--config", help="JSON file of mounts, tokens, faults")
    ap.add_argument("--root-token", default="root")
    ap.add_argument("--root-token-file",
                    help="read the root token from this file (not argv)")
    ap.add_argument("--fault", action="append", default=[], metavar="JSON",
                    help="what POST /__double/fault takes, applied at start")
    ap.add_argument("--idle-timeout", type=float, default=60.0,
                    help="seconds an idle kept-alive connection stays open")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    cfg = {}
    if a.config:
        with open(a.config) as f:
            cfg = json.load(f)
    faults = []
    for f in a.fault:
        try:
            faults.append(json.loads(f))
            State({}, "x", faults[-1:])
        except (ValueError, re.error, TypeError, AttributeError) as e:
            ap.error("--fault %s: %s" % (f, e))
    root_token = a.root_token
    if a.root_token_file:
        with open(a.root_token_file, encoding="utf-8") as f:
            root_token = f.read().strip()
    state = State(cfg, cfg.get("root_token", root_token), faults)

    ctx = None
    if not a.http:
        if not a.cert or not a.key:
            ap.error("--cert and --key are needed unless --http is given")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(a.cert, a.key)
        ctx.set_alpn_protocols(["http/1.1"])
        if a.client_ca:
            ctx.load_verify_locations(a.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED if a.require_client_cert \
                else ssl.CERT_OPTIONAL
        elif a.require_client_cert:
            ap.error("--require-client-cert needs --client-ca")

    srv = Server((a.host, a.port), state, ctx, a.verbose, a.idle_timeout)
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, a.port_file)
    sys.stdout.write("%d\n" % port)
    sys.stdout.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
