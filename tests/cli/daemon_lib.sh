# daemon_lib.sh - what the tests of keywayd(8) share, on top of lib.sh:
# the daemon built, a socket directory, starting keywayd and asking it
# with curl.  Sourced after lib.sh, never run.
#
#     . "$(dirname -- "$0")/lib.sh" || exit 99
#     . "$(dirname -- "$0")/daemon_lib.sh" || exit 99
#     need_curl
#     sock_dir                  # $SOCKD, $SOCK
#     start                     # keywayd -c $CONF --socket $SOCK
#     ask POST /v1/resolve '{"provider":"anthropic"}'
#     expect_eq "$CODE $(jget key)" "200 ..." NAME

KWD=$KEYWAY_BUILDDIR/daemon/keywayd
[ -x "$KWD" ] || bail_out "$KWD is not built"
LOG=$TMPD/daemon.log

# need_curl: skip the whole test without curl.
need_curl()
{
	if ! command -v curl >/dev/null 2>&1; then
		echo "1..0 # SKIP curl is not installed"
		exit 0
	fi
}

# past_midnight SECONDS: wait for midnight UTC when it is nearer than
# SECONDS, so that daily quotas do not roll over during the test.
past_midnight()
{
	local left=$((86400 - $(date -u +%s) % 86400))

	if [ "$left" -lt "$1" ]; then
		echo "# waiting ${left}s for midnight UTC to pass"
		sleep $((left + 2))
	fi
}

# sock_dir: $SOCKD for the sockets and $SOCK, the main one, in it; both
# reachable by an unprivileged caller.
sock_dir()
{
	chmod 711 "$TMPD"
	SOCKD=$TMPD/sock
	mkdir -m 755 "$SOCKD" || bail_out "cannot create $SOCKD"
	SOCK=$SOCKD/keyway.sock
}

# wait_for CONDITION: true once the shell condition holds, false when it
# still does not after 10 s.
wait_for()
{
	local i

	for i in $(seq 1 100); do
		eval "$1" && return 0
		sleep 0.1
	done
	return 1
}

# start [ARG...]: keywayd on $CONF and $SOCK with ARGs, with the variables
# KWD_ENV holds (NAME=VALUE each) in its environment; its stderr goes to
# $LOG, its pid in $PID.  Bails out unless its socket appears.
KWD_ENV=()
start()
{
	env "${KWD_ENV[@]}" "$KWD" -c "$CONF" --socket "$SOCK" "$@" \
		2>>"$LOG" &
	PID=$!
	wait_for '[ -S "$SOCK" ]' || bail_out "keywayd did not start: $(cat "$LOG")"
}

# ask_on SOCKET METHOD PATH [BODY]: the answer's body in $OUT, its HTTP
# status in $CODE, its headers in $HDRS.  Answers on $ADM, the admin
# socket, are not under $SECRETD: they must never hold a key.
CODE=
HDRS=
ask_on()
{
	local s=$1 m=$2 p=$3 dir=-s data=()

	shift 3
	[ "$s" = "${ADM:-}" ] && dir=
	[ $# -gt 0 ] &&
		data=(-H 'Content-Type: application/json' --data-binary "$1")
	HDRS=$TMPD/hdrs.$run_n
	run $dir curl -sS --max-time 10 --unix-socket "$s" -X "$m" \
		-D "$HDRS" "${data[@]}" -w '%{http_code}' "http://keyway$p"
	CODE=$(tail -n 1 -- "$OUT")
	sed -i '$d' "$OUT"
}

# ask METHOD PATH [BODY]: ask_on the main socket.
ask() { ask_on "$SOCK" "$@"; }

# jget FIELD: a field of the last answer; a.b.0 goes down objects and
# arrays.
jget()
{
	python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v.get(k)
print("" if v is None else v)' "$OUT" "$1" 2>/dev/null
}

# expect_answer CODE STATUS NAME: the last answer's HTTP status, and the
# keyway status of its one-line JSON error.
expect_answer()
{
	local lines

	lines=$(wc -l <"$OUT")
	if [ "$CODE" = "$1" ] && [ "$(jget status)" = "$2" ] &&
		[ "$lines" -eq 1 ] && [ -n "$(jget error)" ]; then
		pass "$3"
	else
		fail "$3" "HTTP $CODE, expected $1 with status $2: $(cat "$OUT")"
	fi
}
