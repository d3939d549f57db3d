#!/bin/bash
# daemon_client.sh - TAP tests of libkeyway and keyway(1) as clients of
# keywayd(8): a configuration with keyway.daemon, and no master key or
# provider key in the client's environment.  A keywayd started on a
# socket in a temporary directory holds them.  The client resolves the
# key the library resolves in-process, with the same exit statuses and
# the same error lines; the daemon counts the quota (a quota of 2: the
# third resolve is denied), a key reported unused is refunded, a key freed
# lets its lease go; explain prints the trace in-process prints; check
# asks the daemon's health; management says it is not served; the
# daemon down, a daemon that does not answer, a caller refused and one
# over daemon.rate_limit each give their status and one line; a client
# configuration that declares chains is refused, and keywayd refuses a
# client configuration.  And no key in anything written but the keys
# printed.  Run by `make check`, or by hand as lib.sh says.

. "$(dirname -- "$0")/lib.sh" || exit 99
. "$(dirname -- "$0")/daemon_lib.sh" || exit 99
need_curl

API=$KEYWAY_BUILDDIR/tests/client_api
HAMMER=$KEYWAY_BUILDDIR/tests/hammer
for p in "$API" "$HAMMER"; do
	[ -x "$p" ] || bail_out "$p is not built"
done

MASTER=6b2c3d4e5f60718293a4b5c6d7e8f90f1e2d3c4b5a69788796a5b4c3d2e1f0a5
K_ENV=sk-ant-client-server-key-0002ddddeeee
# What kw_fake.so hands out for a backend named team.
K_TEAM=sk-fake-team-0123456789abcdef
secret "$MASTER" "$K_ENV" "$K_TEAM"
unset KEYWAY_MASTER_KEY

# The daily quotas must not roll over during the test.
past_midnight 120

sock_dir
DCONF=$TMPD/daemon.conf
CCONF=$TMPD/client.conf

# dconf [DAEMON_EXTRA]: keywayd's configuration, on stdout.
dconf()
{
	cat <<EOF
keyway: {
	master_key = { source = "env"; };
	ledger: { module = "sqlite"; path = "ledger.db"; };
};
backends: {
	server_env: { module = "env";
		quota = ( { limit = 2; period = "day"; per = "user"; } ); };
	nokey: { module = "fake"; answer = "notfound"; };
	down: { module = "fake"; answer = "unavail"; };
	broken: { module = "fake"; answer = "error"; };
	badseal: { module = "fake"; answer = "error"; status = 5; };
	noio: { module = "fake"; answer = "error"; status = 10; };
	team: { module = "fake"; answer = "found"; };
};
chains: {
	default = ( { backend = "server_env"; control = "required"; } );
	nokey = ( { backend = "nokey"; control = "required"; } );
	down = ( { backend = "down"; control = "required"; } );
	broken = ( { backend = "broken"; control = "required"; } );
	badseal = ( { backend = "badseal"; control = "required"; } );
	noio = ( { backend = "noio"; control = "required"; } );
	mixed = ( { backend = "nokey"; control = "sufficient"; },
		  { backend = "down"; control = "optional"; },
		  { backend = "team"; control = "sufficient"; } );
};
daemon: {
	socket_mode = "0666";
	$1
};
EOF
}

dconf | write_conf "$DCONF"
printf 'keyway: { daemon = "%s"; };\n' "$SOCK" | write_conf "$CCONF" 644

# inproc ARGS...: keyway with keywayd's configuration and its keys.
inproc()
{
	env KEYWAY_MASTER_KEY="$MASTER" ANTHROPIC_API_KEY="$K_ENV" \
		"$KW" -c "$DCONF" "$@"
}

# keywayd has the keys the client has not.
# shellcheck disable=SC2034 # read by start (daemon_lib.sh)
CONF=$DCONF
# shellcheck disable=SC2034
KWD_ENV=(KEYWAY_MASTER_KEY="$MASTER" ANTHROPIC_API_KEY="$K_ENV")

# leases: how many keys keywayd holds unreported.
leases()
{
	curl -sS --unix-socket "$SOCK" http://keyway/v1/health |
		sed -n 's/.*"leases":\([0-9]*\).*/\1/p'
}

run inproc init
expect_exit 0 "keyway init makes keywayd's ledger"
start
trap 'kill -TERM $PID 2>/dev/null; tap_cleanup' EXIT

# ---- the client's configuration ----
run "$KW" -c "$CCONF" check
expect_exit 0 "check of a client configuration: keywayd answers its health"
expect_stdout "ok"
run "$KW" -c "$CCONF" init
expect_exit 0 "init of a client configuration makes nothing"
expect_stdout ""

printf 'keyway: { daemon = "%s";\n\tmaster_key = { source = "env"; }; };\nchains: { default = ( { backend = "x"; } ); };\n' \
	"$SOCK" | write_conf "$TMPD/both.conf" 644
run "$KW" -c "$TMPD/both.conf" get anthropic
expect_exit 1 "a client configuration that declares a master key and chains is refused"
expect_stderr "keyway: $TMPD/both.conf:2: keyway.master_key: a configuration with keyway.daemon is a client of keywayd and takes nothing else; move keyway.master_key to keywayd's configuration"
run "$KW" -c "$TMPD/both.conf" check
expect_exit 1 "check lists both"
expect_stderr "$TMPD/both.conf:2: keyway.master_key: a configuration with keyway.daemon is a client of keywayd and takes nothing else; move keyway.master_key to keywayd's configuration
$TMPD/both.conf:3: chains: a configuration with keyway.daemon is a client of keywayd and takes nothing else; move chains to keywayd's configuration"
printf 'keyway: { daemon: { socket = "%s"; timeout = 5; }; };\n' "$SOCK" |
	write_conf "$TMPD/typo.conf" 644
run "$KW" -c "$TMPD/typo.conf" get anthropic
expect_exit 1 "keyway.daemon with a typo is refused"
expect_stderr "keyway: $TMPD/typo.conf:1: keyway.daemon: unknown setting \"timeout\" (expected socket or timeout_ms)"
run "$KWD" -c "$CCONF" --check
expect_exit 1 "keywayd refuses a client configuration"
expect_stderr "$CCONF:1: keyway.daemon: this configuration makes libkeyway a client of keywayd; give keywayd the configuration that declares the backends and chains"

# ---- the same key, the same statuses, the same lines ----
run -s inproc get anthropic --user alice
expect_stdout "$K_ENV" "in-process: the key"
run -s "$KW" -c "$CCONF" get anthropic --user carol
expect_exit 0 "client: get exits 0"
expect_stdout "$K_ENV" "client: the key in-process resolves"
expect_stderr ""
run -s "$KW" -c "$CCONF" get anthropic --chain mixed
expect_stdout "$K_TEAM" "client: a chain whose third entry answers"

for chain in nokey down broken nosuch; do
	run inproc get anthropic --chain "$chain"
	want_rc=$RC
	cp -- "$ERR" "$TMPD/inproc.err"
	run "$KW" -c "$CCONF" get anthropic --chain "$chain"
	expect_exit "$want_rc" "chain $chain: the client exits $want_rc as in-process"
	expect_file "$ERR" "$(cat "$TMPD/inproc.err")" \
		"chain $chain: the client's error line is in-process's"
done
# The C API's status, not only the CLI's exit status (1 for every error):
# a sealed value that does not open (5, KW_ERR_CRYPTO) and a file error
# (10, KW_ERR_IO) are told apart through keywayd as in-process.
for chain in broken badseal noio; do
	run env KEYWAY_MASTER_KEY="$MASTER" ANTHROPIC_API_KEY="$K_ENV" \
		"$API" "$DCONF" alice "$chain"
	cp -- "$OUT" "$TMPD/inproc.out"
	run "$API" "$CCONF" alice "$chain"
	expect_exit 0 "client_api, chain $chain: through keywayd"
	expect_file "$OUT" "$(cat "$TMPD/inproc.out")" \
		"client_api, chain $chain: the status and line in-process gives"
done
expect_eq "$(grep -c '^noio: i/o error: ' "$OUT")" 1 \
	"client_api through keywayd: chain noio fails with KW_ERR_IO"
expect_eq "$(cat "$TMPD/inproc.err")" "keyway: $DCONF: no chain \"nosuch\"" \
	"an unknown chain is named as in-process names it"
run inproc get anthropic --user 'bad user'
want_rc=$RC
cp -- "$ERR" "$TMPD/inproc.err"
run "$KW" -c "$CCONF" get anthropic --user 'bad user'
expect_exit "$want_rc" "a user name keyway does not take: exit $want_rc as in-process"
expect_file "$ERR" "$(cat "$TMPD/inproc.err")" "a user name keyway does not take: in-process's line"

for chain in default mixed down; do
	run inproc explain anthropic --user alice --chain "$chain"
	want_rc=$RC
	cp -- "$OUT" "$TMPD/inproc.out"
	run "$KW" -c "$CCONF" explain anthropic --user alice --chain "$chain"
	expect_exit "$want_rc" "explain of chain $chain: the client exits $want_rc as in-process"
	expect_file "$OUT" "$(cat "$TMPD/inproc.out")" \
		"explain of chain $chain: the client prints in-process's trace"
done
run "$KW" -c "$CCONF" explain anthropic --user alice --chain mixed --json
expect_exit 0 "explain --json through keywayd"
expect_lacks "$OUT" "$K_TEAM" "explain --json: no key in the trace"

# ---- the quota is keywayd's ----
run -s "$KW" -c "$CCONF" get anthropic --user bob
expect_exit 0 "bob: the first of a quota of 2"
run -s "$KW" -c "$CCONF" get anthropic --user bob
expect_exit 0 "bob: the second"
run -s "$KW" -c "$CCONF" get anthropic --user bob
expect_exit 4 "bob: the third is denied through the client"
expect_stdout "" "denied: no key"
cp -- "$ERR" "$TMPD/client.err"
run inproc get anthropic --user bob
expect_exit 4 "and in-process, counted in the same ledger"
expect_file "$TMPD/client.err" "$(cat "$ERR")" \
	"the client's denial is in-process's line, which names the quota"
expect_eq "$(leases)" 0 "every key the client freed let its lease go"

# ---- the C API: report unused refunds; free after kw_close() ----
run -s "$API" "$CCONF" dave
expect_exit 0 "client_api: every step as a client's"
expect_stdout "open: ok
sensitive_env: none
resolve: ok
backend: server_env
value: $K_ENV
len: right
report unused: ok
report again: invalid argument: kw_secret_report: this secret was already reported
list: not supported: management is not available through keywayd at $SOCK (keyway.daemon in $CCONF); use keywayd's admin socket, or a configuration that opens the stores
resolve again: ok
freed after close"
expect_eq "$(leases)" 0 "a secret freed after kw_close() still lets its lease go"
run -s "$KW" -c "$CCONF" get anthropic --user dave
expect_exit 0 "dave: the refund left one of 2"
run -s "$KW" -c "$CCONF" get anthropic --user dave
expect_exit 4 "dave: and only one"

tty_why=$(tty_unavailable)
if [ -n "$tty_why" ]; then
	skip "get on a terminal through keywayd: masked" "$tty_why"
	skip "get on a terminal through keywayd: refunded" "$tty_why"
else
	for i in 1 2 3; do
		run -s -t "$KW" -c "$CCONF" get anthropic --user erin
	done
	expect_stdout "sk-a****eeee" "get on a terminal through keywayd: masked"
	run -s "$KW" -c "$CCONF" get anthropic --user erin
	run -s "$KW" -c "$CCONF" get anthropic --user erin
	expect_exit 0 "get on a terminal through keywayd: refunded (3 shown, 2 left)"
fi

# ---- exec ----
run -s "$KW" -c "$CCONF" exec -p anthropic --user fay -- \
	sh -c 'test "$ANTHROPIC_API_KEY" = "$1" && echo same' sh "$K_ENV"
expect_exit 0 "exec through keywayd"
expect_stdout "same" "exec: the command gets the key"

# ---- threads of one process ----
run "$HAMMER" -c "$CCONF" -T 4 -u 3 -n 5 -P hm
got=$(cut -d' ' -f1 "$OUT" | sort | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')
expect_eq "$got" "A:6 D:54 " "4 threads x 3 users x 5 through one client context: 2 admitted per user"
# Two threads hold at most two charges at once: none is denied.
run "$HAMMER" -c "$CCONF" -T 2 -u 1 -n 10 -P refund -U
got=$(cut -d' ' -f1 "$OUT" | sort | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')
expect_eq "$got" "R:20 " "20 resolves from 2 threads, each reported unused: every one refunded"
run -s "$KW" -c "$CCONF" get anthropic --user refund0
run -s "$KW" -c "$CCONF" get anthropic --user refund0
expect_exit 0 "after 20 refunds the quota of 2 is whole"
expect_eq "$(leases)" 0 "no lease held after the threads"
if ! command -v strace >/dev/null 2>&1 ||
	! strace -o /dev/null true >/dev/null 2>&1; then
	skip "100 requests from 2 threads over 2 connections kept alive" \
		"strace is not installed or may not trace here"
else
	run strace -f -e trace=connect -o "$TMPD/strace" \
		"$HAMMER" -c "$CCONF" -T 2 -u 1 -n 25 -P conn -U
	expect_eq "$(grep -c "connect(.*$SOCK" "$TMPD/strace")" 2 \
		"100 requests from 2 threads over 2 connections kept alive"
fi

# ---- management is not served ----
run "$KW" -c "$CCONF" ls
expect_exit 1 "ls through keywayd: exit 1"
expect_stderr "keyway: management is not available through keywayd at $SOCK (keyway.daemon in $CCONF); use keywayd's admin socket, or a configuration that opens the stores"
run "$KW" -c "$CCONF" usage
expect_exit 1 "usage through keywayd: exit 1, the same line"
run "$KW" -c "$CCONF" put store anthropic --scope org --owner acme
expect_exit 1 "put through keywayd: refused before a key is read"
expect_stderr "keyway: management is not available through keywayd at $SOCK (keyway.daemon in $CCONF); use keywayd's admin socket, or a configuration that opens the stores"

# ---- a caller keywayd refuses ----
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null 2>&1 ||
	! id nobody >/dev/null 2>&1; then
	skip "a caller keywayd refuses: exit 1, one line" \
		"needs root, setpriv and a user nobody"
else
	run setpriv --reuid nobody --regid "$(id -g nobody)" --clear-groups \
		"$KW" -c "$CCONF" get anthropic
	expect_exit 1 "a caller keywayd refuses: exit 1"
	expect_stderr "keyway: keywayd at $SOCK: uid $(id -u nobody) (nobody) may not use chain \"default\" (HTTP 403)"
fi

# ---- over daemon.rate_limit ----
dconf 'rate_limit = 1;' >"$DCONF.new" && chmod 600 "$DCONF.new" &&
	mv -- "$DCONF.new" "$DCONF"
kill -HUP "$PID"
wait_for 'grep -q "reloaded" "$LOG"'
for i in 1 2 3 4; do
	run "$KW" -c "$CCONF" get anthropic --chain nokey
	[ "$RC" -eq 4 ] && break
done
expect_exit 4 "over daemon.rate_limit: denied, exit 4"
expect_stderr "keyway: keywayd at $SOCK: uid $(id -u) is over daemon.rate_limit (1 requests a second) (HTTP 429)"

# ---- keywayd down ----
kill -TERM "$PID"
wait "$PID"
trap tap_cleanup EXIT
run "$KW" -c "$CCONF" get anthropic --user gil
expect_exit 5 "keywayd stopped: unavail, exit 5"
expect_stderr "keyway: keywayd at $SOCK cannot be reached: No such file or directory; start keywayd, or correct keyway.daemon in $CCONF"
run "$KW" -c "$CCONF" check
expect_exit 1 "check: keywayd stopped"
expect_stderr "$CCONF:1: keyway.daemon: keywayd at $SOCK cannot be reached: No such file or directory; start keywayd, or correct keyway.daemon in $CCONF"
run "$API" "$CCONF" gil
expect_exit 1 "client_api: kw_open() of a client does not need keywayd up"
first_line_is "open: ok" "kw_open() succeeds with keywayd stopped"

start
{ kill -KILL "$PID" && wait "$PID"; } 2>/dev/null
trap tap_cleanup EXIT
run "$KW" -c "$CCONF" get anthropic --user gil
expect_exit 5 "keywayd killed, its socket left: exit 5"
expect_stderr "keyway: keywayd at $SOCK cannot be reached: Connection refused; start keywayd, or correct keyway.daemon in $CCONF"

# A socket that takes connections but never answers: timeout_ms.
if [ -z "$PY" ]; then
	skip "keywayd that does not answer: exit 5 after timeout_ms" "no python3"
else
	rm -f -- "$SOCK"
	python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
conns = []
while True:
    c, _ = s.accept()
    conns.append(c)' "$SOCK" &
	MUTE=$!
	trap 'kill $MUTE 2>/dev/null; tap_cleanup' EXIT
	wait_for '[ -S "$SOCK" ]'
	printf 'keyway: { daemon: { socket = "%s"; timeout_ms = 300; }; };\n' \
		"$SOCK" | write_conf "$TMPD/slow.conf" 644
	start_ms=$(date +%s%3N)
	run "$KW" -c "$TMPD/slow.conf" get anthropic
	took=$(($(date +%s%3N) - start_ms))
	expect_exit 5 "keywayd that does not answer: exit 5"
	expect_stderr "keyway: keywayd at $SOCK did not answer within 300 ms; see its log, or raise keyway.daemon's timeout_ms in $TMPD/slow.conf"
	if [ "$took" -ge 300 ] && [ "$took" -lt 3000 ]; then
		pass "after timeout_ms (${took} ms)"
	else
		fail "after timeout_ms" "took $took ms"
	fi
	kill "$MUTE"
	trap tap_cleanup EXIT
fi

expect_no_leaks
done_testing
