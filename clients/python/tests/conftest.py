"""What the tests of the Python client share: a real keywayd.

The daemon is the one built in KEYWAY_BUILDDIR (with its modules from
KEYWAY_MODULE_DIR), serving clients/testdata/keywayd.conf from a directory
of pytest's temporary directory: a SQLite store holding an org's key and a
user's, and a quota of 2 a day per user on the org's.  The keys and the
master key come from KWCLIENT_MASTER, KWCLIENT_KEY_ORG and KWCLIENT_KEY_USER
when they are set (tests/cli/clients.sh sets them, and searches everything
written for them), else from the defaults below.  When the daemon stops,
every file of its directory is searched for them.

By hand, from a build directory:
    KEYWAY_BUILDDIR=$PWD KEYWAY_MODULE_DIR=$PWD/modules/.libs \
        python3 -m pytest -p no:cacheprovider SRCDIR/clients/python/tests
"""

import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
CONF = os.path.join(os.path.dirname(os.path.dirname(HERE)), "testdata",
                    "keywayd.conf")

MASTER = os.environ.get(
    "KWCLIENT_MASTER",
    "7c1d2e3f405162738495a6b7c8d9eaf00f1e2d3c4b5a69788796a5b4c3d2e1f0")
KEY_ORG = os.environ.get("KWCLIENT_KEY_ORG", "sk-ant-pyclient-org-acme-0001aa")
KEY_USER = os.environ.get("KWCLIENT_KEY_USER",
                          "sk-ant-pyclient-user-alice-02bb")
SECRETS = (MASTER, KEY_ORG, KEY_USER)


class Daemon:
    """A keywayd started for the tests: its socket, directory and log."""

    def __init__(self, dir_, socket, log):
        self.dir = dir_
        self.socket = socket
        self.log = log
        self.proc = None


def _builddir():
    b = os.environ.get("KEYWAY_BUILDDIR")
    if not b or not os.environ.get("KEYWAY_MODULE_DIR"):
        pytest.exit("KEYWAY_BUILDDIR and KEYWAY_MODULE_DIR must name a "
                    "build directory of keyway and its modules/.libs "
                    "(see clients/python/tests/conftest.py)", returncode=2)
    return b


def _wait_past_midnight():
    """The daily quota must not roll over during the tests."""
    left = 86400 - int(time.time()) % 86400
    if left < 60:
        time.sleep(left + 2)


def leaks(directory, secrets=SECRETS):
    """The files under directory that hold any of the secrets."""
    hits = []
    for root, _dirs, files in os.walk(directory):
        for f in files:
            p = os.path.join(root, f)
            try:
                with open(p, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if any(s.encode() in data for s in secrets):
                hits.append(p)
    return hits


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    build = _builddir()
    kw = os.path.join(build, "cli", "keyway")
    kwd = os.path.join(build, "daemon", "keywayd")
    for p in (kw, kwd):
        if not os.access(p, os.X_OK):
            pytest.exit("%s is not built" % p, returncode=2)
    _wait_past_midnight()
    base = tmp_path_factory.getbasetemp()
    d = tmp_path_factory.mktemp("keywayd")
    # Another user (the refused caller) must reach the socket.
    for p in (base, d):
        os.chmod(p, 0o711)
    conf = os.path.join(str(d), "keyway.conf")
    with open(CONF) as src, open(conf, "w") as dst:
        dst.write(src.read())
    os.chmod(conf, 0o600)
    env = dict(os.environ, KEYWAY_MASTER_KEY=MASTER, LC_ALL="C")
    for v in ("KEYWAY_CONFIG", "KEYWAY_SOCKET", "ANTHROPIC_API_KEY",
              "API_KEY_ENCRYPTION_KEY", "KEYWAY_PASSPHRASE"):
        env.pop(v, None)

    def kwrun(*args, key=None):
        r = subprocess.run([kw, "-c", conf] + list(args), env=env,
                           input=(key + "\n").encode() if key else None,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=60)
        if r.returncode != 0:
            pytest.exit("keyway %s failed: %s" % (" ".join(args),
                        r.stderr.decode(errors="replace").strip()),
                        returncode=2)

    kwrun("init")
    kwrun("put", "org_keys", "anthropic", "--scope", "org", "--owner",
          "acme", key=KEY_ORG)
    kwrun("put", "user_keys", "anthropic", "--scope", "user", "--owner",
          "alice", key=KEY_USER)

    dm = Daemon(str(d), os.path.join(str(d), "keyway.sock"),
                os.path.join(str(d), "keywayd.log"))
    with open(dm.log, "ab") as log:
        dm.proc = subprocess.Popen([kwd, "-c", conf, "--socket", dm.socket],
                                   env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=log)
    for _ in range(200):
        if os.path.exists(dm.socket) or dm.proc.poll() is not None:
            break
        time.sleep(0.05)
    if not os.path.exists(dm.socket):
        dm.proc.kill()
        with open(dm.log) as f:
            pytest.exit("keywayd did not start: " + f.read(), returncode=2)
    yield dm
    dm.proc.send_signal(signal.SIGTERM)
    rc = dm.proc.wait(timeout=30)
    assert rc == 0, "keywayd exited with status %d on SIGTERM" % rc
    found = leaks(dm.dir)
    assert not found, "a key or the master key is in %s" % ", ".join(found)


@pytest.fixture
def client(daemon):
    import keyway
    return keyway.Client(socket=daemon.socket, timeout=10)
