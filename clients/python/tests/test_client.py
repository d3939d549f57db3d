"""The Python client against a real keywayd (conftest.py starts it).

Each test that counts against the quota (2 a day per user on org_keys)
asks as a user of its own.  Assertions never print a key: pytest runs with
--assert=plain, and every message names what differs, not the values.
"""

import json
import os
import pickle
import pwd
import socket
import threading

import pytest

import keyway
from conftest import KEY_ORG, KEY_USER


def connected_to(path):
    """How many of this process's sockets are connected to path."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink("/proc/self/fd/" + fd).startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue
        try:
            if s.family == socket.AF_UNIX and s.getpeername() == path:
                n += 1
        except OSError:
            pass
        finally:
            s.close()
    return n


# ---- resolve, explain, health ----

def test_resolve_an_org_key(client):
    r = client.resolve("anthropic", user="res", org="acme")
    assert r.key == KEY_ORG, "resolve returned another key than acme's"
    assert r.backend == "org_keys", "backend %r" % r.backend
    assert len(r.lease) == 32, "lease id %r" % r.lease
    r.report_used()
    assert r.outcome == "used"


def test_resolve_falls_through_to_the_user_key(client):
    r = client.resolve("anthropic", user="alice")
    assert r.key == KEY_USER, "resolve returned another key than alice's"
    assert r.backend == "user_keys", "backend %r" % r.backend
    r.report_unused()


def test_module_functions_use_KEYWAY_SOCKET(daemon, monkeypatch):
    monkeypatch.setenv("KEYWAY_SOCKET", daemon.socket)
    assert keyway.health()["status"] == "ok"
    r = keyway.resolve("anthropic", user="alice")
    assert r.key == KEY_USER, "keyway.resolve returned another key"
    keyway.report(r.lease, "unused")
    assert keyway.Client().socket == daemon.socket


def test_socket_argument_wins_over_KEYWAY_SOCKET(daemon, monkeypatch, tmp_path):
    monkeypatch.setenv("KEYWAY_SOCKET", str(tmp_path / "nothing-here.sock"))
    r = keyway.resolve("anthropic", user="alice", socket=daemon.socket)
    r.report_unused()
    with pytest.raises(keyway.Unavailable):
        keyway.health()


def test_default_socket(monkeypatch):
    monkeypatch.delenv("KEYWAY_SOCKET", raising=False)
    assert keyway.Client().socket == "/run/keyway/keyway.sock"


def test_health(client):
    h = client.health()
    assert h["status"] == "ok" and isinstance(h["leases"], int), repr(h)


def test_explain_charges_nothing_and_holds_no_key(client):
    for _ in range(3):
        e = client.explain("anthropic", user="expl", org="acme")
        assert e["result"] == "found" and e["backend"] == "org_keys", \
            "explain: result %r backend %r" % (e["result"], e["backend"])
        assert e["chain"] == "default" and e["steps"], "explain: no steps"
        assert KEY_ORG not in json.dumps(e), "explain holds the key"
    # 3 explains, and still the whole quota of 2.
    a = client.resolve("anthropic", user="expl", org="acme")
    b = client.resolve("anthropic", user="expl", org="acme")
    a.report_used()
    b.report_used()
    e = keyway.explain("anthropic", user="expl", org="acme",
                       socket=client.socket)
    assert e["result"] == "denied", "explain of a used-up quota: %r" % \
        e["result"]


# ---- report: a refund gives the quota back ----

def test_report_unused_refunds_the_quota(client):
    a = client.resolve("anthropic", user="refund", org="acme")
    b = client.resolve("anthropic", user="refund", org="acme")
    with pytest.raises(keyway.Denied):
        client.resolve("anthropic", user="refund", org="acme")
    a.report_unused()
    c = client.resolve("anthropic", user="refund", org="acme")
    assert c.key == KEY_ORG, "the resolve after the refund: another key"
    with pytest.raises(keyway.Denied):
        client.resolve("anthropic", user="refund", org="acme")
    b.report_used()
    with pytest.raises(keyway.Denied):
        client.resolve("anthropic", user="refund", org="acme")
    c.report_used()


def test_a_lease_reported_twice_is_a_conflict(client):
    r = client.resolve("anthropic", user="twice", org="acme")
    r.report_unused()
    with pytest.raises(keyway.Conflict) as ei:
        r.report_unused()
    assert ei.value.http_status == 409
    assert r.lease in ei.value.message
    with pytest.raises(keyway.NotFound):
        client.report("0" * 32, "used")
    with pytest.raises(ValueError):
        r.report("maybe")


# ---- the context manager ----

def test_with_block_that_reads_the_key_reports_used(client):
    with client.resolve("anthropic", user="ctx-used", org="acme") as r:
        assert r.key == KEY_ORG, "another key in the block"
    assert r.outcome == "used" and r.report_error is None
    with client.resolve("anthropic", user="ctx-used", org="acme") as r:
        r.key
    with pytest.raises(keyway.Denied):
        client.resolve("anthropic", user="ctx-used", org="acme")


def test_with_block_that_raises_before_reading_the_key_reports_unused(client):
    for _ in range(4):
        with pytest.raises(ZeroDivisionError):
            with client.resolve("anthropic", user="ctx-raise",
                                org="acme") as r:
                1 / 0
        assert r.outcome == "unused", "outcome %r" % r.outcome
    # 4 with a quota of 2: each was refunded.
    client.resolve("anthropic", user="ctx-raise", org="acme").report_used()


def test_with_block_that_raises_after_reading_the_key_reports_used(client):
    with pytest.raises(ConnectionError):
        with client.resolve("anthropic", user="ctx-late", org="acme") as r:
            _ = r.key
            raise ConnectionError("the upstream request failed")
    assert r.outcome == "used", "outcome %r" % r.outcome


def test_with_block_that_never_reads_the_key_reports_unused(client):
    for _ in range(3):
        with client.resolve("anthropic", user="ctx-unread", org="acme") as r:
            pass
        assert r.outcome == "unused", "outcome %r" % r.outcome


def test_with_block_that_reports_itself_is_not_reported_again(client):
    with client.resolve("anthropic", user="ctx-self", org="acme") as r:
        _ = r.key
        r.report_unused()
    assert r.outcome == "unused" and r.report_error is None
    # The refund stands: 2 more are admitted.
    client.resolve("anthropic", user="ctx-self", org="acme").report_used()
    client.resolve("anthropic", user="ctx-self", org="acme").report_used()


def test_with_block_whose_report_fails_raises_nothing(client, caplog):
    r = client.resolve("anthropic", user="ctx-gone", org="acme")
    client.report(r.lease, "used")      # behind the Lease's back
    with r:
        pass
    assert isinstance(r.report_error, keyway.Conflict), repr(r.report_error)
    assert r.lease in caplog.text


def test_a_lease_is_reported_by_the_process_that_resolved_it(client):
    r = client.resolve("anthropic", user="forker", org="acme")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        # The child: a report raises, leaving the block reports nothing.
        os.close(rfd)
        word = b"none"
        try:
            r.report_unused()
        except keyway.Error as e:
            word = b"raised" if "before fork()" in e.message else b"other"
        with r:
            r.key
        if r.outcome is not None:
            word += b"+reported"
        os.write(wfd, word)
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        got = f.read()
    os.waitpid(pid, 0)
    assert got == b"raised", got
    # The parent's report is the only one keywayd got.
    r.report_unused()
    assert r.outcome == "unused"


# ---- errors ----

def test_denied_by_quota(client):
    client.resolve("anthropic", user="deny", org="acme").report_used()
    client.resolve("anthropic", user="deny", org="acme").report_used()
    with pytest.raises(keyway.Denied) as ei:
        client.resolve("anthropic", user="deny", org="acme")
    e = ei.value
    assert e.status == "denied" and e.http_status == 429, repr(e)
    # Until the day's window ends.
    assert isinstance(e.retry_after, int) and \
        0 < e.retry_after <= 86400, e.retry_after
    assert "quota org_keys 2/day per user used up for user deny" in e.message, \
        e.message
    assert str(e).startswith("denied: chain "), str(e)
    assert isinstance(e, keyway.Error)
    assert "\n" not in str(e)


def test_a_provider_without_a_key_is_notfound(client):
    with pytest.raises(keyway.NotFound) as ei:
        client.resolve("openai", user="nf", org="acme")
    assert ei.value.retry_after is None
    assert ei.value.http_status == 404
    assert ei.value.message == \
        'chain "default": no backend has a key for provider "openai"', \
        ei.value.message
    with pytest.raises(keyway.NotFound):
        client.resolve("nosuchprovider", user="nf", org="acme")


def test_invalid_names_and_chains(client):
    with pytest.raises(keyway.Invalid) as ei:
        client.resolve("Not A Provider!", user="inv")
    assert ei.value.http_status == 400
    with pytest.raises(keyway.Invalid) as ei:
        client.resolve("anthropic", user="inv", chain="nosuchchain")
    assert 'no chain "nosuchchain"' in ei.value.message, ei.value.message
    with pytest.raises(TypeError):
        client.resolve(None)
    with pytest.raises(TypeError):
        client.resolve("anthropic", user=7)


def test_daemon_down_no_socket(tmp_path):
    path = str(tmp_path / "keyway.sock")
    with pytest.raises(keyway.Unavailable) as ei:
        keyway.resolve("anthropic", user="down", socket=path)
    e = ei.value
    assert e.http_status is None and e.status == "unavail"
    assert e.message == ("cannot reach keywayd: no socket %s (is keywayd "
                         "running? the socket is KEYWAY_SOCKET or socket=)"
                         % path), e.message


def test_daemon_down_nothing_listens(tmp_path):
    path = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()
    with pytest.raises(keyway.Unavailable) as ei:
        keyway.health(socket=path)
    assert ei.value.message == \
        "cannot reach keywayd: nothing listens on %s (is keywayd running?)" \
        % path, ei.value.message


def test_refused_for_another_user(daemon):
    """A caller of another uid, not in daemon.clients, is refused."""
    if os.getuid() != 0:
        pytest.skip("needs root, to become nobody")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    d = os.path.dirname(daemon.socket)
    while d != "/":
        if not os.stat(d).st_mode & 0o001:
            pytest.skip("nobody cannot reach the socket: %s is not o+x" % d)
        d = os.path.dirname(d)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        status = "nothing"
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            keyway.resolve("anthropic", user="other", org="acme",
                           socket=daemon.socket).report_unused()
            status = "resolved"
        except keyway.Error as e:
            status = "%s %s %s" % (type(e).__name__, e.http_status, e.status)
        except BaseException as e:
            status = type(e).__name__
        finally:
            os.write(wfd, status.encode())
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        got = f.read().decode()
    os.waitpid(pid, 0)
    assert got == "Refused 403 refused", got


def test_no_key_in_repr_str_or_pickle(client):
    r = client.resolve("anthropic", user="repr", org="acme")
    for s in (repr(r), str(r), "%s %r" % (r, r)):
        assert KEY_ORG not in s, "the key is in repr() or str()"
    assert not hasattr(r, "__dict__"), "a Lease has a __dict__"
    assert r.key_read is False
    with pytest.raises(TypeError):
        pickle.dumps(r)
    r.report_unused()


# ---- processes and threads ----

def test_no_socket_is_kept_between_calls(client):
    r = client.resolve("anthropic", user="fds", org="acme")
    client.explain("anthropic", user="fds", org="acme")
    client.health()
    n = connected_to(client.socket)
    r.report_unused()
    assert n == 0, "%d sockets still connected to keywayd after the calls" % n


def test_fork_resolve_in_parent_then_in_child(client):
    """A Client made before fork() serves parent and child; both count
    against the one quota."""
    a = client.resolve("anthropic", user="fork", org="acme")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        status = "nothing"
        try:
            n = connected_to(client.socket)
            if n:
                raise RuntimeError("%d sockets to keywayd inherited" % n)
            c = client.resolve("anthropic", user="fork", org="acme")
            ok = c.key == KEY_ORG and c.backend == "org_keys" \
                and c.lease != a.lease
            c.report_unused()
            status = "resolved" if ok else "another key"
        except BaseException as e:
            status = "%s: %s" % (type(e).__name__, e)
        finally:
            os.write(wfd, status.encode())
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        got = f.read().decode()
    os.waitpid(pid, 0)
    assert got == "resolved", "the child: " + got
    # The child's refund: one more for the parent, then the quota is used.
    b = client.resolve("anthropic", user="fork", org="acme")
    with pytest.raises(keyway.Denied):
        client.resolve("anthropic", user="fork", org="acme")
    a.report_used()
    b.report_used()


def test_threads_share_a_client_and_the_quota_is_exact(client):
    got = []
    lock = threading.Lock()

    def one():
        try:
            r = client.resolve("anthropic", user="threads", org="acme")
            out = "ok" if r.key == KEY_ORG else "another key"
        except keyway.Error as e:
            out = e.status
        with lock:
            got.append(out)

    ts = [threading.Thread(target=one) for _ in range(12)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(got) == ["denied"] * 10 + ["ok"] * 2, repr(sorted(got))
