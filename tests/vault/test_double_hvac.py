#!/usr/bin/python3
"""The Vault double answers as Vault does, as Debian's python3-hvac sees it.

hvac is written against the real Vault; when it reads the double's answers
as it reads Vault's, the double has not drifted into agreeing with keyway
alone.  Each check is one TAP test point.  Runs from `make check` or by
hand: /usr/bin/python3 tests/vault/test_double_hvac.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLE = os.path.join(HERE, "vault_double.py")
MKCERTS = os.path.join(HERE, "mkcerts.sh")

try:
    import hvac
    import hvac.exceptions as hx
    import requests
except ImportError as e:
    print("1..0 # SKIP python3-hvac is not installed (%s)" % e)
    sys.exit(0)
if shutil.which("openssl") is None:
    print("1..0 # SKIP openssl is not installed")
    sys.exit(0)

ROOT = "root-token-for-tests"
ROLE_ID = "role-id-for-tests"
SECRET_ID = "secret-id-for-tests"

CONFIG = {
    "root_token": ROOT,
    "mounts": {"secret": {"type": "kv", "version": 2},
               "kv": {"type": "kv", "version": 1}},
    "namespaces": ["team-a", "team-b"],
    "policies": {
        "app-read": {"path": {"secret/data/app/*": {"capabilities": ["read"]},
                              "secret/metadata/app/*": {"capabilities": ["list", "read"]}}},
        "kv1-only": {"path": {"kv/*": {"capabilities": ["create", "read", "update",
                                                        "delete", "list"]}}},
    },
    "approle": {"app": {"role_id": ROLE_ID, "secret_id": SECRET_ID,
                        "policies": ["app-read"], "token_ttl": 600,
                        "token_max_ttl": 1800}},
    "cert": {"web": {"policies": ["app-read"],
                     "allowed_common_names": ["keyway test client"]},
             "other": {"allowed_common_names": ["someone else"]}},
}


STARTED = []


class Double:
    """One double, started over TLS on an ephemeral port."""

    def __init__(self, tmp, name, extra=()):
        self.port_file = os.path.join(tmp, name + ".port")
        cfg = os.path.join(tmp, name + ".json")
        with open(cfg, "w") as f:
            json.dump(CONFIG, f)
        self.err = open(os.path.join(tmp, name + ".err"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, DOUBLE, "--cert", os.path.join(tmp, "server.pem"),
             "--key", os.path.join(tmp, "server.key"), "--port-file",
             self.port_file, "--config", cfg] + list(extra),
            stdout=subprocess.PIPE, stderr=self.err, text=True)
        STARTED.append(self)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError("the double did not start: %r" % line)
        self.port = int(line)
        with open(self.port_file) as f:
            assert int(f.read()) == self.port
        self.url = "https://127.0.0.1:%d" % self.port
        self.ca = os.path.join(tmp, "ca.pem")

    def control(self, what, body=None, method="POST"):
        r = requests.request(method, self.url + "/__double/" + what,
                             json=body, verify=self.ca, timeout=10)
        if r.status_code >= 300:
            raise RuntimeError("control %s: %d %s" % (what, r.status_code, r.text))
        return r.json() if r.content else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.err.close()


class TAP:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def check(self, name, fn):
        self.n += 1
        try:
            fn()
            print("ok %d - %s" % (self.n, name))
        except Exception:
            self.failed += 1
            print("not ok %d - %s" % (self.n, name))
            for line in traceback.format_exc().splitlines():
                print("# " + line)
        sys.stdout.flush()


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    except Exception as e:
        raise AssertionError("expected %s, got %s: %s" % (exc.__name__,
                                                          type(e).__name__, e))
    raise AssertionError("expected %s, nothing raised" % exc.__name__)


def eq(got, want):
    if got != want:
        raise AssertionError("got %r, want %r" % (got, want))


def main():
    tmp = tempfile.mkdtemp(prefix="vault-double-")
    subprocess.run(["sh", MKCERTS, tmp], check=True)
    d = Double(tmp, "main")
    mtls = plain = None
    t = TAP()

    def client(token=ROOT, **kw):
        return hvac.Client(url=d.url, token=token, verify=d.ca, **kw)

    root = client()
    kv2 = root.secrets.kv.v2
    kv1 = root.secrets.kv.v1

    # ---- tokens
    def token_auth():
        assert root.is_authenticated()
        data = root.lookup_token()["data"]
        eq(data["id"], ROOT)
        eq(data["policies"], ["root"])
        eq(data["expire_time"], None)
    t.check("a token in X-Vault-Token authenticates; lookup-self describes it",
            token_auth)

    def bad_token():
        bad = client("not-a-token")
        assert not bad.is_authenticated()
        e = raises(hx.Forbidden, bad.secrets.kv.v2.read_secret_version, "x")
        assert "permission denied" in str(e), e
        raises(hx.Forbidden, client(None).secrets.kv.v2.read_secret_version, "x")
    t.check("a bad or missing token is Forbidden (403)", bad_token)

    def bearer():
        r = requests.get(d.url + "/v1/auth/token/lookup-self", verify=d.ca,
                         headers={"Authorization": "Bearer " + ROOT})
        eq(r.status_code, 200)
        eq(r.json()["data"]["id"], ROOT)
    t.check("Authorization: Bearer carries a token too", bearer)

    # ---- KV v2
    def kv2_write_read():
        w = kv2.create_or_update_secret("app/db", secret={"user": "u1", "pw": "p1"})
        eq(w["data"]["version"], 1)
        eq(w["data"]["deletion_time"], "")
        r = kv2.read_secret_version("app/db")
        eq(r["data"]["data"], {"user": "u1", "pw": "p1"})
        eq(r["data"]["metadata"]["version"], 1)
        for k in ("request_id", "lease_id", "renewable", "lease_duration",
                  "wrap_info", "warnings", "auth"):
            assert k in r, k
    t.check("KV v2 write then read, in Vault's envelope", kv2_write_read)

    def cas():
        e = raises(hx.InvalidRequest, kv2.create_or_update_secret, "app/db",
                   secret={"user": "u2"}, cas=0)
        assert "check-and-set parameter did not match the current version" in \
            str(e), e
        raises(hx.InvalidRequest, kv2.create_or_update_secret, "app/db",
               secret={"user": "u2"}, cas=5)
        w = kv2.create_or_update_secret("app/db", secret={"user": "u2", "pw": "p2"},
                                        cas=1)
        eq(w["data"]["version"], 2)
    t.check("check-and-set: a stale cas is InvalidRequest (400), the current one writes",
            cas)

    def patch():
        w = kv2.patch("app/db", {"pw": "p3"})
        eq(w["data"]["version"], 3)
        eq(kv2.read_secret_version("app/db")["data"]["data"],
           {"user": "u2", "pw": "p3"})
        r = root.adapter.request(
            "PATCH", "/v1/secret/data/app/db",
            json={"data": {"pw": None, "note": "n"}},
            headers={"Content-Type": "application/merge-patch+json"})
        eq(r["data"]["version"], 4)
        eq(kv2.read_secret_version("app/db")["data"]["data"],
           {"user": "u2", "note": "n"})
        e = raises(Exception, root.adapter.request, "PATCH",
                   "/v1/secret/data/app/db", json={"data": {"x": "1"}})
        assert "merge-patch" in str(e), e
        raises(hx.InvalidPath, root.adapter.request, "PATCH",
               "/v1/secret/data/app/none", json={"data": {"x": "1"}},
               headers={"Content-Type": "application/merge-patch+json"})
    t.check("patch: hvac's read-and-cas, and HTTP PATCH as a JSON merge patch",
            patch)

    def versions():
        eq(kv2.read_secret_version("app/db", version=1)["data"]["data"],
           {"user": "u1", "pw": "p1"})
        raises(hx.InvalidPath, kv2.read_secret_version, "app/db", version=9)
    t.check("read_secret_version reads an older version", versions)

    def listing():
        kv2.create_or_update_secret("app/sub/leaf", secret={"a": "b"})
        kv2.create_or_update_secret("other", secret={"a": "b"})
        eq(kv2.list_secrets("app")["data"]["keys"], ["db", "sub/"])
        eq(kv2.list_secrets("")["data"]["keys"], ["app/", "other"])
        r = requests.get(d.url + "/v1/secret/metadata/app?list=true",
                         headers={"X-Vault-Token": ROOT}, verify=d.ca)
        eq(r.json()["data"]["keys"], ["db", "sub/"])
        raises(hx.InvalidPath, kv2.list_secrets, "nothing-here")
    t.check("LIST and GET ?list=true on metadata/; folders end in /", listing)

    def metadata():
        # hvac 0.11 has no custom_metadata argument: the request by hand
        root.adapter.post("/v1/secret/metadata/app/db",
                          json={"custom_metadata": {"owner": "ops"}})
        m = kv2.read_secret_metadata("app/db")["data"]
        eq(m["custom_metadata"], {"owner": "ops"})
        eq(m["current_version"], 4)
        eq(sorted(m["versions"]), ["1", "2", "3", "4"])
        eq(m["versions"]["2"]["destroyed"], False)
        eq(kv2.read_secret_version("app/db")["data"]["metadata"]["custom_metadata"],
           {"owner": "ops"})
        # Vault's limits: values weakly made strings, 1..512 bytes, printable
        root.adapter.post("/v1/secret/metadata/app/db",
                          json={"custom_metadata": {"n": 1, "b": True}})
        eq(kv2.read_secret_metadata("app/db")["data"]["custom_metadata"],
           {"n": "1", "b": "1"})
        for bad in ({"empty": ""}, {"null": None}, {"k": "x" * 513},
                    {"": "v"}, {"k": "a\x01"}, {"k": {"nested": "map"}},
                    {"k%d" % i: "v" for i in range(65)}):
            e = raises(hx.InvalidRequest, root.adapter.post,
                       "/v1/secret/metadata/app/db",
                       json={"custom_metadata": bad})
            assert "error occurred" in str(e), (bad, e)
        root.adapter.post("/v1/secret/metadata/app/db",
                          json={"custom_metadata": {"owner": "ops"}})
        root.adapter.request("PATCH", "/v1/secret/metadata/app/db",
                             json={"custom_metadata": {"owner": None, "t": "x"}},
                             headers={"Content-Type": "application/merge-patch+json"})
        eq(kv2.read_secret_metadata("app/db")["data"]["custom_metadata"],
           {"t": "x"})
        root.adapter.post("/v1/secret/metadata/app/db",
                          json={"custom_metadata": {"owner": "ops"}})
        eq(kv2.read_secret_metadata("app/db")["data"]["custom_metadata"],
           {"owner": "ops"})
    t.check("metadata: custom_metadata (with Vault's limits), current_version, "
            "the versions map", metadata)

    def soft_delete():
        kv2.delete_latest_version_of_secret("app/db")
        raises(hx.InvalidPath, kv2.read_secret_version, "app/db")
        r = root.adapter.get("/v1/secret/data/app/db", raise_exception=False)
        eq(r.status_code, 404)
        body = r.json()
        eq(body["data"]["data"], None)
        eq(body["data"]["metadata"]["version"], 4)
        assert body["data"]["metadata"]["deletion_time"], body
        m = kv2.read_secret_metadata("app/db")["data"]
        assert m["versions"]["4"]["deletion_time"]
        assert "db" in kv2.list_secrets("app")["data"]["keys"]
    t.check("a soft-deleted version is InvalidPath (404), its metadata in the body",
            soft_delete)

    def undelete():
        kv2.undelete_secret_versions("app/db", versions=[4])
        eq(kv2.read_secret_version("app/db")["data"]["data"],
           {"user": "u2", "note": "n"})
        kv2.delete_secret_versions("app/db", versions=[1, 2])
        raises(hx.InvalidPath, kv2.read_secret_version, "app/db", version=2)
        kv2.undelete_secret_versions("app/db", versions=[2])
        eq(kv2.read_secret_version("app/db", version=2)["data"]["data"]["pw"], "p2")
    t.check("delete/ and undelete/ of chosen versions", undelete)

    def destroy():
        kv2.destroy_secret_versions("app/db", versions=[2])
        raises(hx.InvalidPath, kv2.read_secret_version, "app/db", version=2)
        kv2.undelete_secret_versions("app/db", versions=[2])
        raises(hx.InvalidPath, kv2.read_secret_version, "app/db", version=2)
        m = kv2.read_secret_metadata("app/db")["data"]
        eq(m["versions"]["2"]["destroyed"], True)
        r = root.adapter.get("/v1/secret/data/app/db?version=2",
                             raise_exception=False)
        eq(r.json()["data"]["metadata"]["destroyed"], True)
    t.check("destroy/ removes a version for good", destroy)

    def delete_metadata():
        kv2.delete_metadata_and_all_versions("app/db")
        raises(hx.InvalidPath, kv2.read_secret_metadata, "app/db")
        raises(hx.InvalidPath, kv2.read_secret_version, "app/db")
        eq(kv2.list_secrets("app")["data"]["keys"], ["sub/"])
        w = kv2.create_or_update_secret("app/db", secret={"a": "1"}, cas=0)
        eq(w["data"]["version"], 1)
    t.check("deleting metadata removes every version", delete_metadata)

    def kv2_config():
        eq(kv2.read_configuration()["data"]["max_versions"], 0)
        kv2.configure(max_versions=2, cas_required=True)
        e = raises(hx.InvalidRequest, kv2.create_or_update_secret, "cfg",
                   secret={"a": "1"})
        assert "check-and-set parameter required" in str(e), e
        for i in range(3):
            kv2.create_or_update_secret("cfg", secret={"a": str(i)}, cas=i)
        m = kv2.read_secret_metadata("cfg")["data"]
        eq(sorted(m["versions"]), ["2", "3"])
        eq(m["oldest_version"], 2)
        kv2.configure(max_versions=0, cas_required=False)
    t.check("config: cas_required and max_versions", kv2_config)

    def bad_paths():
        r = root.adapter.get("/v1/secret/app/db", raise_exception=False)
        eq(r.status_code, 404)
        assert "Invalid path for a versioned K/V" in r.json()["errors"][0]
        r = root.adapter.get("/v1/secret/data/nothing", raise_exception=False)
        eq((r.status_code, r.json()), (404, {"errors": []}))
        r = root.adapter.get("/v1/nomount/x", raise_exception=False)
        eq(r.status_code, 404)
        r = root.adapter.request("LIST", "/v1/secret/data/app",
                                 raise_exception=False)
        eq(r.status_code, 405)
        r = root.adapter.request("BREW", "/v1/secret/data/app",
                                 raise_exception=False)
        eq(r.status_code, 405)
        r = root.adapter.post("/v1/secret/data/app", data="[1]",
                              raise_exception=False)
        eq(r.status_code, 400)
        assert "failed to parse JSON input" in r.json()["errors"][0]
    t.check("404 and 405 bodies as Vault's", bad_paths)

    def unclean_paths():
        h = {"X-Vault-Token": ROOT}
        for sent, clean in (("/v1/secret/data/a//b", "/v1/secret/data/a/b"),
                            ("/v1/secret/data/a/%2E%2E/b?version=1",
                             "/v1/secret/data/b?version=1"),
                            ("/v1/secret/data/a/%2E/b/", "/v1/secret/data/a/b/")):
            r = requests.get(d.url + sent, headers=h, verify=d.ca,
                             allow_redirects=False)
            eq((r.status_code, r.headers.get("Location")), (301, clean))
        kv2.create_or_update_secret("a/b", secret={"v": "1"})
        r = requests.get(d.url + "/v1/secret/data/a/%2E/b", headers=h, verify=d.ca)
        eq(r.json()["data"]["data"], {"v": "1"})
    t.check("a path with //, . or .. is redirected (301) to its clean form",
            unclean_paths)

    # ---- KV v1
    def kv1_all():
        kv1.create_or_update_secret("svc/one", secret={"k": "v"}, mount_point="kv")
        kv1.create_or_update_secret("svc/two/x", secret={"k": "w"}, mount_point="kv")
        r = kv1.read_secret("svc/one", mount_point="kv")
        eq(r["data"], {"k": "v"})
        eq(r["lease_duration"], 2764800)
        eq(kv1.list_secrets("svc", mount_point="kv")["data"]["keys"],
           ["one", "two/"])
        kv1.create_or_update_secret("svc/ttl", secret={"k": "v", "ttl": "1h"},
                                    mount_point="kv")
        eq(kv1.read_secret("svc/ttl", mount_point="kv")["lease_duration"], 3600)
        kv1.delete_secret("svc/one", mount_point="kv")
        raises(hx.InvalidPath, kv1.read_secret, "svc/one", mount_point="kv")
    t.check("KV v1: write, read, list, delete", kv1_all)

    def ui_mounts():
        s = root.adapter.get("/v1/sys/internal/ui/mounts/secret/app/x")["data"]
        eq((s["type"], s["options"]["version"], s["path"]), ("kv", "2", "secret/"))
        s = root.adapter.get("/v1/sys/internal/ui/mounts/kv/svc")["data"]
        eq((s["type"], s["options"]["version"], s["path"]), ("kv", "1", "kv/"))
        e = raises(hx.Forbidden, root.adapter.get,
                   "/v1/sys/internal/ui/mounts/nomount/x")
        assert "preflight capability check returned 403" in str(e), e
        m = root.adapter.get("/v1/sys/mounts")["data"]
        eq(m["secret/"]["options"]["version"], "2")
    t.check("sys/internal/ui/mounts/PATH gives the mount's type and version",
            ui_mounts)

    # ---- AppRole and policies
    def approle():
        c = client(None)
        r = c.auth.approle.login(role_id=ROLE_ID, secret_id=SECRET_ID)
        a = r["auth"]
        eq(a["policies"], ["app-read", "default"])
        eq(a["lease_duration"], 600)
        eq(a["renewable"], True)
        assert a["accessor"] and a["client_token"].startswith("hvs.")
        eq(c.token, a["client_token"])
        kv2.create_or_update_secret("app/cfg", secret={"x": "1"})
        eq(c.secrets.kv.v2.read_secret_version("app/cfg")["data"]["data"], {"x": "1"})
        raises(hx.Forbidden, c.secrets.kv.v2.create_or_update_secret,
               "app/cfg", secret={"x": "2"})
        raises(hx.Forbidden, c.secrets.kv.v2.read_secret_version, "other")
        raises(hx.InvalidRequest, client(None).auth.approle.login,
               role_id=ROLE_ID, secret_id="wrong")
    t.check("AppRole login gives a token its policies restrict (read-only)", approle)

    def mount_policy():
        d.control("token", {"id": "kv1-token", "policies": ["kv1-only"],
                            "ttl": 600})
        c = client("kv1-token")
        c.secrets.kv.v1.create_or_update_secret("p", secret={"a": "b"},
                                                mount_point="kv")
        raises(hx.Forbidden, c.secrets.kv.v2.read_secret_version, "app/cfg")
        raises(hx.Forbidden, c.adapter.get, "/v1/sys/internal/ui/mounts/secret/x")
        eq(c.adapter.get("/v1/sys/internal/ui/mounts/kv/p")["data"]["path"], "kv/")
    t.check("a token limited to one mount is Forbidden elsewhere", mount_policy)

    def renew():
        d.control("token", {"id": "short", "policies": ["default"], "ttl": 30,
                            "max_ttl": 100})
        c = client("short")
        eq(c.lookup_token()["data"]["renewable"], True)
        r = c.auth.token.renew_self(increment=60)
        eq(r["auth"]["lease_duration"], 60)
        assert 55 <= c.lookup_token()["data"]["ttl"] <= 60
        r = c.auth.token.renew_self(increment=1000)
        assert r["auth"]["lease_duration"] <= 100, r
        assert r["warnings"] and "capped" in r["warnings"][0], r
        raises(hx.InvalidRequest, root.auth.token.renew_self)
        d.control("fault", {"renew_fail": {"status": 500}})
        raises(hx.InternalServerError, c.auth.token.renew_self)
        d.control("fault", {"renew_fail": None})
        c.auth.token.renew_self(increment=10)
    t.check("renew-self extends up to max_ttl; it can be made to fail", renew)

    def expiry():
        d.control("token", {"id": "brief", "policies": ["app-read"], "ttl": 1})
        c = client("brief")
        c.secrets.kv.v2.read_secret_version("app/cfg")
        time.sleep(1.2)
        raises(hx.Forbidden, c.secrets.kv.v2.read_secret_version, "app/cfg")
        d.control("token", {"id": "later", "policies": ["app-read"], "ttl": 600})
        c = client("later")
        c.secrets.kv.v2.read_secret_version("app/cfg")
        d.control("token", {"id": "later", "expire": True})
        raises(hx.Forbidden, c.secrets.kv.v2.read_secret_version, "app/cfg")
    t.check("a token past its TTL, or expired at once, is Forbidden", expiry)

    # ---- sys
    def sealed():
        h = root.sys.read_health_status(method="GET")
        eq((h["sealed"], h["initialized"], h["standby"]), (False, True, False))
        eq(root.sys.read_seal_status()["sealed"], False)
        d.control("fault", {"sealed": True})
        try:
            e = raises(hx.VaultDown, kv2.read_secret_version, "app/cfg")
            assert "Vault is sealed" in str(e), e
            assert root.sys.is_sealed()
            eq(root.sys.read_health_status(method="GET").status_code, 503)
            h = root.sys.read_health_status(method="GET", sealed_code=200)
            eq(h["sealed"], True)
            eq(root.sys.read_health_status(method="HEAD").status_code, 503)
        finally:
            d.control("fault", {"sealed": False})
        kv2.read_secret_version("app/cfg")
    t.check("sealed: VaultDown (503); health and seal-status say so", sealed)

    def standby():
        d.control("fault", {"standby": True})
        try:
            eq(root.sys.read_health_status(method="GET").status_code, 429)
            eq(root.sys.read_health_status(method="GET", standby_ok=True)["standby"],
               True)
            r = requests.get(d.url + "/v1/sys/health?standbycode=299", verify=d.ca)
            eq(r.status_code, 299)
            d.control("fault", {"dr_secondary": True})
            eq(root.sys.read_health_status(method="GET").status_code, 472)
        finally:
            d.control("fault", {"standby": False, "dr_secondary": False})
        eq(root.sys.read_health_status(method="GET")["standby"], False)
    t.check("standby: health is 429 unless standbyok or standbycode", standby)

    # ---- namespaces
    def namespaces():
        a = client(namespace="team-a")
        b = client(namespace="team-b")
        a.secrets.kv.v2.create_or_update_secret("shared", secret={"who": "a"})
        b.secrets.kv.v2.create_or_update_secret("shared", secret={"who": "b"})
        eq(a.secrets.kv.v2.read_secret_version("shared")["data"]["data"]["who"], "a")
        eq(b.secrets.kv.v2.read_secret_version("shared")["data"]["data"]["who"], "b")
        raises(hx.InvalidPath, kv2.read_secret_version, "shared")
        r = root.adapter.get("/v1/team-b/secret/data/shared")
        eq(r["data"]["data"]["who"], "b")
        d.control("token", {"id": "in-a", "policies": ["app-read"], "ttl": 600,
                            "namespace": "team-a"})
        a.secrets.kv.v2.create_or_update_secret("app/x", secret={"v": "1"})
        eq(client("in-a", namespace="team-a").secrets.kv.v2.read_secret_version(
            "app/x")["data"]["data"], {"v": "1"})
        raises(hx.Forbidden, client("in-a", namespace="team-b").secrets.kv.v2
               .read_secret_version, "app/x")
        raises(hx.Forbidden, client("in-a").secrets.kv.v2.read_secret_version, "app/x")
    t.check("namespaces (header and path prefix) keep their data apart", namespaces)

    # ---- faults
    def status_faults():
        d.control("fault", {"rules": [{"path": "^/v1/secret/data/app/cfg$",
                                       "method": "GET", "status": 500, "count": 2}]})
        raises(hx.InternalServerError, kv2.read_secret_version, "app/cfg")
        raises(hx.InternalServerError, kv2.read_secret_version, "app/cfg")
        kv2.read_secret_version("app/cfg")
        d.control("fault", {"rules": [{"path": "app/cfg", "status": 429},
                                      {"path": "app/cfg", "status": 412}]})
        e = raises(hx.RateLimitExceeded, kv2.read_secret_version, "app/cfg")
        assert 'request path "secret/data/app/cfg": rate limit quota exceeded' \
            in str(e), e
        r = root.adapter.get("/v1/secret/data/app/cfg", raise_exception=False)
        eq(r.status_code, 412)
        kv2.read_secret_version("app/cfg")
    t.check("the next N requests to a path can answer 500, 429, 412", status_faults)

    def close_and_delay():
        d.control("fault", {"rules": [{"path": "app/cfg", "close": True}]})
        raises(requests.exceptions.ConnectionError, kv2.read_secret_version, "app/cfg")
        kv2.read_secret_version("app/cfg")
        d.control("fault", {"rules": [{"path": "app/cfg", "delay_ms": 1500}]})
        t0 = time.monotonic()
        kv2.read_secret_version("app/cfg")
        assert time.monotonic() - t0 >= 1.5
        t0 = time.monotonic()
        kv2.read_secret_version("app/cfg")
        assert time.monotonic() - t0 < 1.5
    t.check("a connection can be closed unanswered, an answer delayed",
            close_and_delay)

    def broken_answers():
        d.control("fault", {"rules": [{"path": "app/cfg", "truncate": True}]})
        try:
            r = requests.get(d.url + "/v1/secret/data/app/cfg", verify=d.ca,
                             headers={"X-Vault-Token": ROOT})
            assert len(r.content) < int(r.headers["Content-Length"]), r.content
        except requests.exceptions.RequestException:
            pass            # a client that counts the bytes it was promised
        d.control("fault", {"rules": [{"path": "app/cfg", "status": 502,
                                       "raw": "<html>bad gateway</html>"}]})
        e = raises(hx.BadGateway, kv2.read_secret_version, "app/cfg")
        assert "<html>" in str(e), e
        d.control("requests", method="DELETE")
        d.control("fault", {"rules": [{"path": "app/cfg", "close_after": True}]})
        c = client()
        eq(c.secrets.kv.v2.read_secret_version("app/cfg")["data"]["data"],
           {"x": "1"})
        c.secrets.kv.v2.read_secret_version("app/cfg")
        reqs = d.control("requests", method="GET")["requests"]
        # One answer closed its connection; the next request came on
        # another (a client may also have tried the closed one first).
        faulted = [r for r in reqs if r.get("fault") == "close_after"]
        eq(len(faulted), 1)
        assert reqs[-1].get("fault") is None, reqs
        assert faulted[0]["conn"] != reqs[-1]["conn"], reqs
    t.check("an answer can be cut short, be a proxy's HTML, or close after",
            broken_answers)

    def request_log():
        d.control("requests", method="DELETE")
        c = client()
        for i in range(3):
            c.secrets.kv.v2.create_or_update_secret("log/x", secret={"v": str(i)},
                                                    cas=i)
        c.secrets.kv.v2.read_secret_version("log/x")
        client(namespace="team-a").secrets.kv.v2.create_or_update_secret(
            "log/y", secret={"v": "1"})
        log = d.control("requests", method="GET")
        reqs = log["requests"]
        eq(len(reqs), 5)
        eq([r["cas"] for r in reqs[:3]], [0, 1, 2])
        assert "cas" not in reqs[3]
        eq(len({r["conn"] for r in reqs[:4]}), 1)
        assert all(r["x_vault_request"] == "true" for r in reqs), reqs
        assert all(r["token"] == "header" for r in reqs)
        eq([r["namespace"] for r in reqs], [None] * 4 + ["team-a"])
        assert log["connections"] >= reqs[-1]["conn"]
        assert ROOT not in json.dumps(log), "the log holds a token's value"
    t.check("the request log: one connection kept alive, cas, headers, no token",
            request_log)

    def no_keepalive():
        d.control("fault", {"keepalive": False})
        try:
            d.control("requests", method="DELETE")
            s = requests.Session()
            for i in range(3):
                r = s.get(d.url + "/v1/sys/health", verify=d.ca)
                eq(r.headers.get("Connection"), "close")
            reqs = d.control("requests", method="GET")["requests"]
            eq(len({r["conn"] for r in reqs}), 3)
        finally:
            d.control("fault", {"keepalive": True})
    t.check("keepalive off: every answer closes its connection", no_keepalive)

    def wire():
        import http.client
        import ssl
        ctx = ssl.create_default_context(cafile=d.ca)
        conn = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx,
                                           timeout=10)
        d.control("requests", method="DELETE")
        h = {"X-Vault-Token": ROOT}
        sent = [("POST", "/v1/secret/data/wire", '{"data":{"a":"1"}}', 200),
                ("GET", "/v1/secret/data/wire", None, 200),
                ("HEAD", "/v1/sys/health", None, 200),
                ("LIST", "/v1/secret/metadata/", None, 200),
                ("DELETE", "/v1/secret/data/wire", None, 204),
                ("GET", "/v1/secret/data/wire", None, 404),
                ("GET", "/v1/secret/data/none", None, 404),
                ("POST", "/v1/secret/data/wire", "{bad json", 400),
                ("GET", "/v1/kv/none", None, 404)]
        for method, path, body, want in sent:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            eq((method, path, r.status), (method, path, want))
            eq(r.version, 11)
            if want == 204:
                eq((r.getheader("Content-Length"), data), (None, b""))
            else:
                assert r.getheader("Content-Length") is not None, (method, path)
                if method != "HEAD":
                    eq(int(r.getheader("Content-Length")), len(data))
                    eq(r.getheader("Content-Type"), "application/json")
            eq(r.getheader("Cache-Control"), "no-store")
        conn.request("GET", "/v1/secret/data/x", headers={"X-Vault-Token": "bad"})
        r = conn.getresponse()
        eq((r.status, json.loads(r.read())),
           (403, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}))
        conn.close()
        reqs = d.control("requests", method="GET")["requests"]
        eq(len(reqs), len(sent) + 1)
        eq(len({r["conn"] for r in reqs}), 1)
    t.check("on the wire: HTTP/1.1, Content-Length but on 204, one connection "
            "for every kind of answer", wire)

    def request_header():
        d.control("fault", {"require_request_header": True})
        try:
            r = requests.get(d.url + "/v1/auth/token/lookup-self", verify=d.ca,
                             headers={"X-Vault-Token": ROOT})
            eq(r.status_code, 412)
            assert "X-Vault-Request" in r.json()["errors"][0]
            eq(root.lookup_token()["data"]["id"], ROOT)
        finally:
            d.control("fault", {"require_request_header": False})
    t.check("X-Vault-Request can be required, as a Vault Proxy does",
            request_header)

    def since_and_reset():
        kv2.create_or_update_secret("reset/me", secret={"a": "1"})
        last = d.control("requests", method="GET")["requests"][-1]["seq"]
        d.control("fault", {"sealed": True})
        d.control("token", {"id": "gone-after-reset", "policies": ["default"],
                            "ttl": 600})
        d.control("reset")
        client("gone-after-reset").is_authenticated()
        raises(hx.InvalidPath, kv2.read_secret_version, "reset/me")
        reqs = d.control("requests?since=%d" % last, method="GET")["requests"]
        eq([(r["path"], r["status"]) for r in reqs],
           [("/v1/auth/token/lookup-self", 403),
            ("/v1/secret/data/reset/me", 404)])
    t.check("reset forgets data, tokens and faults; the log reads from a seq",
            since_and_reset)

    def client_cert():
        nonlocal mtls
        mtls = Double(tmp, "mtls", ["--client-ca", os.path.join(tmp, "ca.pem"),
                                    "--require-client-cert"])
        no = hvac.Client(url=mtls.url, token=ROOT, verify=mtls.ca)
        raises(requests.exceptions.RequestException, no.lookup_token)
        yes = hvac.Client(url=mtls.url, token=ROOT, verify=mtls.ca,
                          cert=(os.path.join(tmp, "client.pem"),
                                os.path.join(tmp, "client.key")))
        eq(yes.lookup_token()["data"]["id"], ROOT)
        r = requests.get(mtls.url + "/__double/requests", verify=mtls.ca,
                         cert=(os.path.join(tmp, "client.pem"),
                               os.path.join(tmp, "client.key"))).json()
        assert r["tls_failures"] >= 1
        eq(r["requests"][-1]["client_cert"], True)
    t.check("a required client certificate is required", client_cert)

    def cert_login():
        c = hvac.Client(url=mtls.url, verify=mtls.ca)
        # hvac 0.11 takes the CA from the client when cacert is not given
        r = c.auth.cert.login(name="web",
                              cert_pem=os.path.join(tmp, "client.pem"),
                              key_pem=os.path.join(tmp, "client.key"))
        eq(r["auth"]["policies"], ["app-read", "default"])
        eq(r["auth"]["metadata"]["common_name"], "keyway test client")
        eq(c.lookup_token()["data"]["path"], "auth/cert/login")
        raises(hx.InvalidRequest, c.auth.cert.login, name="other",
               cert_pem=os.path.join(tmp, "client.pem"),
               key_pem=os.path.join(tmp, "client.key"))
        e = raises(hx.InvalidRequest, hvac.Client(url=d.url, verify=d.ca)
                   .adapter.login, "/v1/auth/cert/login", json={})
        assert "client certificate must be supplied" in str(e), e
    t.check("TLS certificate auth logs in with the client certificate", cert_login)

    def start_faults():
        nonlocal plain
        plain = Double(tmp, "plain", [
            "--http", "--fault", '{"sealed": true}',
            "--fault", '{"rules": [{"path": "lookup-self", "status": 429}]}'])
        plain.url = plain.url.replace("https:", "http:")
        c = hvac.Client(url=plain.url, token=ROOT)
        raises(hx.VaultDown, c.secrets.kv.v2.read_secret_version, "x")
        assert c.sys.is_sealed()
        requests.post(plain.url + "/__double/fault", json={"sealed": False})
        raises(hx.RateLimitExceeded, c.lookup_token)
        eq(c.lookup_token()["data"]["id"], ROOT)
    t.check("faults given at start; plain HTTP with --http", start_faults)

    def server_cert():
        other = hvac.Client(url=d.url, token=ROOT,
                            verify=os.path.join(tmp, "other-ca.pem"))
        raises(requests.exceptions.SSLError, other.lookup_token)
    t.check("the server certificate is checked against the CA", server_cert)

    print("1..%d" % t.n)
    for dbl in STARTED:
        dbl.stop()
    if t.failed:
        for name in ("main.err", "mtls.err", "plain.err"):
            p = os.path.join(tmp, name)
            if os.path.exists(p):
                for line in open(p):
                    print("# %s: %s" % (name, line.rstrip()))
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if t.failed else 0


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        for dbl in STARTED:     # a double left running if main() broke off
            if dbl.proc.poll() is None:
                dbl.proc.kill()
    sys.exit(rc)
