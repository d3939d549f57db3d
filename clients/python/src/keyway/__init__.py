"""keyway: ask keywayd(8) for API keys, with Python's standard library only.

    import keyway

    with keyway.resolve("anthropic", user="alice", org="acme") as r:
        call_the_api(r.key)

resolve() asks the daemon on its Unix socket (KEYWAY_SOCKET, else
/run/keyway/keyway.sock) and returns a Lease: the key, the backend that
answered and the lease id under which the daemon holds it until it is
reported used or unused (unused refunds the quota the resolve charged).
Every call opens its own connection and closes it before returning, so
nothing is shared between threads or across fork(): a gunicorn worker
forked from a master that has resolved keys starts with no socket of its
parent's.  The protocol is keyway's docs/daemon-protocol.md.
"""

import http.client
import json
import logging
import os
import re
import socket as _socket

__all__ = [
    "Client", "Lease", "resolve", "explain", "health", "report",
    "Error", "Denied", "NotFound", "Refused", "Unavailable", "Invalid",
    "Limited", "Conflict", "DEFAULT_SOCKET", "DEFAULT_TIMEOUT",
]

__version__ = "0.1.0"

DEFAULT_SOCKET = "/run/keyway/keyway.sock"
# Seconds a call may take, connect to last byte: a chain may wait for a
# backend's own timeouts and retries (Vault's), so it is not short.
DEFAULT_TIMEOUT = 30.0
# An answer is one short line of JSON; more is not keywayd.
MAX_ANSWER = 1 << 20

log = logging.getLogger("keyway")


# ---- errors ----

class Error(Exception):
    """A request keywayd did not answer with what was asked.

    status is keywayd's word for it ("denied", "notfound", "refused",
    "unavail", "invalid", "limited", "conflict", "error"), http_status the
    HTTP status of the answer (None when there was no answer), message the
    one line that says what is wrong.  str() is "status: message".  No
    message ever holds a key.  code says which error an "error" is
    ("backend", "crypto", "config", "module", "nomem", "io", "perm",
    "exists", "unsupported", "internal"), else None.  retry_after is the
    seconds keywayd said to wait (its Retry-After: a quota used up, until
    its window ends), else None.
    """

    status = "error"

    def __init__(self, message, status=None, http_status=None, code=None,
                 retry_after=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.http_status = http_status
        self.code = code
        self.retry_after = retry_after

    def __str__(self):
        return "%s: %s" % (self.status, self.message)


class Denied(Error):
    """429 or 403 denied: the key exists but may not be handed out (429: a
    quota used up; 403: a key disabled)."""
    status = "denied"


class NotFound(Error):
    """404 notfound: no backend of the chain has the key; or, from
    report(), no such lease for this caller."""
    status = "notfound"


class Refused(Error):
    """403 refused: this caller (its uid, as the kernel says) may not use
    the chain."""
    status = "refused"


class Unavailable(Error):
    """503 unavail: a backend could not be asked; or keywayd itself could
    not be reached (no socket, nobody listening, no answer in time), when
    http_status is None."""
    status = "unavail"


class Invalid(Error):
    """400 (also 404, 405, 413) invalid: a malformed request, an unknown
    chain, provider or name."""
    status = "invalid"


class Limited(Error):
    """429 limited: this caller is over daemon.rate_limit."""
    status = "limited"


class Conflict(Error):
    """409 conflict: the lease was already reported, or expired (and was
    counted as used)."""
    status = "conflict"


_BY_STATUS = {c.status: c for c in (Denied, NotFound, Refused, Unavailable,
                                    Invalid, Limited, Conflict)}
# When the answer carries no status word: what its HTTP status says.
_BY_HTTP = {400: Invalid, 403: Denied, 404: NotFound, 405: Invalid,
            409: Conflict, 413: Invalid, 429: Limited, 503: Unavailable}


def _error_from(code, body, what, retry_after=None):
    """The exception for a non-200 answer."""
    word, msg, kind = None, None, None
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            word, msg = doc.get("status"), doc.get("error")
            kind = doc.get("code")
    except ValueError:
        pass
    if not isinstance(msg, str) or not msg:
        msg = "keywayd answered %s with HTTP %d" % (what, code)
    msg = " ".join(msg.splitlines())
    cls = _BY_STATUS.get(word) or _BY_HTTP.get(code, Error)
    return cls(msg, status=word if isinstance(word, str) else None,
               http_status=code,
               code=kind if isinstance(kind, str) else None,
               retry_after=retry_after)


# ---- the transport ----

class _UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket; the host name is not used."""

    def __init__(self, path, timeout):
        super().__init__("keyway", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self.unix_path)
        except BaseException:
            s.close()
            raise
        self.sock = s


def _default_socket():
    return os.environ.get("KEYWAY_SOCKET") or DEFAULT_SOCKET


def _check_name(field, value, required=False):
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise TypeError("keyway: %s must be a str%s, not %s"
                        % (field, "" if required else " or None",
                           type(value).__name__))


class Client:
    """keywayd on one socket.

    socket: the socket's path (default: KEYWAY_SOCKET, else
    /run/keyway/keyway.sock, read when the Client is made).  timeout:
    seconds each call may take, from connect to the last byte of the answer.

    A Client holds no connection: each call opens one and closes it, so one
    Client may be shared by threads and used on both sides of fork().
    """

    def __init__(self, socket=None, timeout=DEFAULT_TIMEOUT):
        if socket is not None and not isinstance(socket, (str, bytes,
                                                          os.PathLike)):
            raise TypeError("keyway: socket must be a path, not %s"
                            % type(socket).__name__)
        self.socket = os.fsdecode(socket) if socket is not None \
            else _default_socket()
        self.timeout = timeout

    def __repr__(self):
        return "<keyway.Client socket=%r>" % self.socket

    def _call(self, method, path, doc=None):
        """(HTTP status, body bytes, Retry-After seconds or None) of one
        request on a fresh connection."""
        what = "%s %s" % (method, path)
        body = None
        headers = {"Connection": "close"}
        if doc is not None:
            body = json.dumps(doc).encode("utf-8")
            headers["Content-Type"] = "application/json"
        conn = _UnixHTTPConnection(self.socket, self.timeout)
        resp = None
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read(MAX_ANSWER + 1)
            code = resp.status
            retry = resp.getheader("Retry-After")
            retry = int(retry) if retry is not None and \
                re.fullmatch(r"[0-9]+", retry.strip()) else None
            if len(data) <= MAX_ANSWER and resp.length:
                # fewer bytes than its Content-Length said
                raise http.client.IncompleteRead(data, resp.length)
        except FileNotFoundError:
            raise Unavailable("cannot reach keywayd: no socket %s (is keywayd "
                              "running? the socket is KEYWAY_SOCKET or "
                              "socket=)" % self.socket) from None
        except ConnectionRefusedError:
            raise Unavailable("cannot reach keywayd: nothing listens on %s "
                              "(is keywayd running?)" % self.socket) from None
        except PermissionError:
            raise Unavailable("cannot reach keywayd: permission denied on %s "
                              "(the socket's mode and group, or a directory "
                              "above it, keep this user out)"
                              % self.socket) from None
        except http.client.IncompleteRead:
            raise Unavailable("keywayd on %s: %s failed: the connection closed "
                              "before the whole answer came"
                              % (self.socket, what)) from None
        except _socket.timeout:
            raise Unavailable("keywayd on %s did not answer %s within %gs"
                              % (self.socket, what, self.timeout)) from None
        except (http.client.HTTPException, OSError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror \
                else (str(e) or type(e).__name__)
            raise Unavailable("keywayd on %s: %s failed: %s"
                              % (self.socket, what, reason)) from None
        finally:
            if resp is not None:
                resp.close()
            conn.close()
        if len(data) > MAX_ANSWER:
            raise Error("keywayd on %s answered %s with more than %d bytes"
                        % (self.socket, what, MAX_ANSWER), http_status=code)
        return code, data, retry

    def _json(self, method, path, doc=None):
        """The answer's object when it is 200, else the exception."""
        code, data, retry = self._call(method, path, doc)
        if code != 200:
            raise _error_from(code, data, "%s %s" % (method, path), retry)
        try:
            out = json.loads(data)
        except ValueError:
            out = None
        if not isinstance(out, dict):
            raise Error("keywayd on %s answered %s %s with something that is "
                        "not a JSON object" % (self.socket, method, path),
                        http_status=code)
        return out

    @staticmethod
    def _request(provider, user, org, chain):
        _check_name("provider", provider, required=True)
        _check_name("user", user)
        _check_name("org", org)
        _check_name("chain", chain)
        doc = {"provider": provider}
        for k, v in (("user", user), ("org", org), ("chain", chain)):
            if v is not None:
                doc[k] = v
        return doc

    def resolve(self, provider, user=None, org=None, chain=None):
        """The key for provider, as a Lease; raises an Error subclass."""
        doc = self._request(provider, user, org, chain)
        out = self._json("POST", "/v1/resolve", doc)
        key, backend, lease = (out.get("key"), out.get("backend"),
                               out.get("lease"))
        if not all(isinstance(v, str) and v for v in (key, backend, lease)):
            raise Error("keywayd on %s answered resolve without a key, a "
                        "backend and a lease" % self.socket, http_status=200)
        return Lease(self, key, backend, lease)

    def explain(self, provider, user=None, org=None, chain=None):
        """How the request resolves, as keywayd's JSON object (chain,
        result, backend, summary, steps); charges nothing, holds no key."""
        return self._json("POST", "/v1/explain",
                          self._request(provider, user, org, chain))

    def health(self):
        """keywayd's health: {"status": "ok", "version": ..., "leases": N}
        ("leases" only to a caller allowed some chain)."""
        return self._json("GET", "/v1/health")

    def report(self, lease, outcome):
        """Report lease (its id) "used" or "unused"."""
        if isinstance(lease, Lease):
            lease = lease.lease
        _check_name("lease", lease, required=True)
        if outcome not in ("used", "unused"):
            raise ValueError("keyway: outcome must be \"used\" or \"unused\", "
                             "not %r" % (outcome,))
        return self._json("POST", "/v1/report",
                          {"lease": lease, "outcome": outcome})


class Lease:
    """A key keywayd handed out, held under a lease until reported.

    key: the key (reading it marks it read, see __exit__); backend: the
    chain entry that answered; lease: the lease id; outcome: None, "used"
    or "unused" once reported through this object.  repr() and str() never
    show the key.

    As a context manager, on leaving the block, unless the block reported
    the lease itself:
      - the key was never read (.key): reported "unused", whether the block
        raised or not: the key cannot have been sent, and the quota the
        resolve charged is refunded;
      - the key was read: reported "used", whether the block raised or not:
        keyway cannot tell whether the request that carried it went out,
        and a refund for a request that was sent would let a quota admit
        more than its limit.  A block that knows the request was not sent
        calls report_unused() itself.
    A report that fails there (keywayd gone, the lease expired) raises
    nothing: it is logged on the "keyway" logger and kept in report_error,
    and a lease never reported counts as used once daemon.lease_ttl passes.

    A lease belongs to the process that resolved it: in a child of fork()
    a report raises Error and leaving the block reports nothing, so that
    the parent's own report is the one keywayd gets (as libkeyway does).
    """

    __slots__ = ("_client", "_key", "_pid", "backend", "lease", "outcome",
                 "key_read", "report_error")

    def __init__(self, client, key, backend, lease):
        self._client = client
        self._key = key
        self._pid = os.getpid()
        self.backend = backend
        self.lease = lease
        self.outcome = None
        self.key_read = False
        self.report_error = None

    @property
    def key(self):
        self.key_read = True
        return self._key

    def __repr__(self):
        return "<keyway.Lease backend=%r lease=%r outcome=%r>" % (
            self.backend, self.lease, self.outcome)

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("keyway.Lease holds a key and is not pickled")

    def report(self, outcome):
        """Report the lease "used" or "unused" (once)."""
        if self._pid != os.getpid():
            raise Error("keyway: lease %s was resolved by process %d before "
                        "fork(); that process reports it"
                        % (self.lease, self._pid))
        self._client.report(self.lease, outcome)
        self.outcome = outcome

    def report_unused(self):
        """The request the key was for was never sent: refund the quota."""
        self.report("unused")

    def report_used(self):
        """The request was sent."""
        self.report("used")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.outcome is not None or self._pid != os.getpid():
            return False
        outcome = "used" if self.key_read else "unused"
        try:
            self.report(outcome)
        except Error as e:
            self.report_error = e
            log.warning("keyway: could not report lease %s %s: %s",
                        self.lease, outcome, e)
        return False


# ---- the module's functions, on the default socket ----

def _client(socket, timeout):
    return Client(socket=socket,
                  timeout=DEFAULT_TIMEOUT if timeout is None else timeout)


def resolve(provider, user=None, org=None, chain=None, socket=None,
            timeout=None):
    """The key for provider (for user and org, down chain) as a Lease.

    socket: keywayd's socket (default: KEYWAY_SOCKET, else
    /run/keyway/keyway.sock); timeout: seconds (default 30).  Raises
    Denied, NotFound, Refused, Unavailable, Invalid, Limited or Error.
    """
    return _client(socket, timeout).resolve(provider, user, org, chain)


def explain(provider, user=None, org=None, chain=None, socket=None,
            timeout=None):
    """How the request resolves, as keywayd's JSON object; no key."""
    return _client(socket, timeout).explain(provider, user, org, chain)


def health(socket=None, timeout=None):
    """keywayd's health: {"status": "ok", "version": ..., "leases": N}
    ("leases" only to a caller allowed some chain)."""
    return _client(socket, timeout).health()


def report(lease, outcome, socket=None, timeout=None):
    """Report a lease id "used" or "unused"."""
    return _client(socket, timeout).report(lease, outcome)
