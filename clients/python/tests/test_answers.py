"""Every answer keywayd documents (docs/daemon-protocol.md, Statuses),
and answers it never gives, from a stand-in on a Unix socket: each maps to
its exception, with the daemon's status word and its one line.  The
statuses a real keywayd gives in the tests of test_client.py are here too,
so that the table is whole."""

import http.server
import socketserver
import threading
import time

import pytest

import keyway


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def address_string(self):
        return "unix"

    def answer(self):
        code, body, delay = self.server.answer
        n = int(self.headers.get("Content-Length") or 0)
        self.server.got.append((self.command, self.path,
                                self.rfile.read(n) if n else b""))
        if delay:
            self.server.release.wait(delay)
        data = body.encode() if isinstance(body, str) else body
        if data == b"cut":
            # says 100 bytes, sends 10, and hangs up
            self.send_response(code)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"status":')
            self.close_connection = True
            return
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = answer


@pytest.fixture
def stand_in(tmp_path):
    """A server that answers every request with server.answer: (HTTP
    status, body, seconds to wait first)."""
    path = str(tmp_path / "stand-in.sock")
    srv = _Server(path, _Handler)
    srv.answer = (200, "{}", 0)
    srv.got = []
    srv.release = threading.Event()
    t = threading.Thread(target=srv.serve_forever, args=(0.05,),
                         daemon=True)
    t.start()
    yield srv, keyway.Client(socket=path, timeout=2)
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def _err(word, msg):
    return '{"error":"%s","status":"%s"}\n' % (msg, word)


@pytest.mark.parametrize("code,word,cls", [
    (404, "notfound", keyway.NotFound),
    (403, "denied", keyway.Denied),
    (503, "unavail", keyway.Unavailable),
    (400, "invalid", keyway.Invalid),
    (403, "refused", keyway.Refused),
    (413, "invalid", keyway.Invalid),
    (429, "limited", keyway.Limited),
    (404, "invalid", keyway.Invalid),
    (405, "invalid", keyway.Invalid),
    (409, "conflict", keyway.Conflict),
    (500, "error", keyway.Error),
])
def test_each_documented_status(stand_in, code, word, cls):
    srv, c = stand_in
    srv.answer = (code, _err(word, "what is wrong, on one line"), 0)
    with pytest.raises(keyway.Error) as ei:
        c.resolve("anthropic", user="u")
    e = ei.value
    assert type(e) is cls, "HTTP %d %s: %s" % (code, word, type(e).__name__)
    assert (e.status, e.http_status, e.message) == \
        (word, code, "what is wrong, on one line"), repr(e)
    assert str(e) == "%s: what is wrong, on one line" % word


def test_a_status_word_it_does_not_know_keeps_the_word(stand_in):
    srv, c = stand_in
    srv.answer = (418, _err("teapot", "short and stout"), 0)
    with pytest.raises(keyway.Error) as ei:
        c.health()
    assert type(ei.value) is keyway.Error
    assert (ei.value.status, ei.value.http_status) == ("teapot", 418)


def test_an_error_without_a_json_body_goes_by_its_http_status(stand_in):
    srv, c = stand_in
    srv.answer = (503, "<html>Service Unavailable</html>", 0)
    with pytest.raises(keyway.Unavailable) as ei:
        c.resolve("anthropic")
    assert ei.value.message == \
        "keywayd answered POST /v1/resolve with HTTP 503", ei.value.message
    srv.answer = (502, "", 0)
    with pytest.raises(keyway.Error) as ei:
        c.resolve("anthropic")
    assert ei.value.status == "error" and ei.value.http_status == 502


def test_a_message_of_many_lines_is_made_one(stand_in):
    srv, c = stand_in
    srv.answer = (500, '{"error":"one\\ntwo\\r\\nthree","status":"error"}', 0)
    with pytest.raises(keyway.Error) as ei:
        c.resolve("anthropic")
    assert ei.value.message == "one two three", ei.value.message


def test_an_error_names_which_error_in_code(stand_in):
    srv, c = stand_in
    srv.answer = (500, '{"error":"sealed value does not open",'
                  '"status":"error","code":"crypto"}', 0)
    with pytest.raises(keyway.Error) as ei:
        c.resolve("anthropic")
    assert (ei.value.status, ei.value.code) == ("error", "crypto")
    srv.answer = (404, _err("notfound", "no key"), 0)
    with pytest.raises(keyway.NotFound) as ei:
        c.resolve("anthropic")
    assert ei.value.code is None


def test_a_200_that_is_not_an_answer(stand_in):
    srv, c = stand_in
    for body in ("not json", "[1, 2]", '{"key":"k","backend":"b"}',
                 '{"key":"","backend":"b","lease":"l"}'):
        srv.answer = (200, body, 0)
        with pytest.raises(keyway.Error) as ei:
            c.resolve("anthropic")
        assert type(ei.value) is keyway.Error, body
        assert ei.value.http_status == 200


def test_an_answer_too_large(stand_in):
    srv, c = stand_in
    srv.answer = (200, "x" * (keyway.MAX_ANSWER + 10), 0)
    with pytest.raises(keyway.Error) as ei:
        c.health()
    assert "more than %d bytes" % keyway.MAX_ANSWER in ei.value.message


def test_no_answer_in_time(stand_in):
    srv, c = stand_in
    srv.answer = (200, "{}", 3)
    c.timeout = 0.3
    t = time.monotonic()
    with pytest.raises(keyway.Unavailable) as ei:
        c.resolve("anthropic")
    assert time.monotonic() - t < 2.5
    assert ei.value.message == ("keywayd on %s did not answer POST "
                                "/v1/resolve within 0.3s" % c.socket), \
        ei.value.message


def test_an_answer_cut_short(stand_in):
    srv, c = stand_in
    srv.answer = (200, "cut", 0)
    with pytest.raises(keyway.Unavailable) as ei:
        c.health()
    assert ei.value.message == ("keywayd on %s: GET /v1/health failed: the "
                                "connection closed before the whole answer "
                                "came" % c.socket), ei.value.message


def test_what_is_sent(stand_in):
    srv, c = stand_in
    srv.answer = (200, '{"key":"k","backend":"b","lease":"l"}', 0)
    c.resolve("anthropic", user="alice", org="acme", chain="batch")
    c.resolve("anthropic")
    c.explain("openai", org="acme")
    srv.answer = (200, '{"status":"ok"}', 0)
    c.health()
    c.report("l", "unused")
    import json
    got = [(m, p, json.loads(b) if b else None) for m, p, b in srv.got]
    assert got == [
        ("POST", "/v1/resolve", {"provider": "anthropic", "user": "alice",
                                 "org": "acme", "chain": "batch"}),
        ("POST", "/v1/resolve", {"provider": "anthropic"}),
        ("POST", "/v1/explain", {"provider": "openai", "org": "acme"}),
        ("GET", "/v1/health", None),
        ("POST", "/v1/report", {"lease": "l", "outcome": "unused"}),
    ], repr(got)
