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
	local extras=0 before

	# The socket's file is there at bind(), before it listens; the admin
	# socket and TCP come after it: wait for answers, and for keywayd to
	# say it serves each of them.
	case " $* " in *" --admin-socket "*) extras=$((extras + 1)) ;; esac
	case " $* " in
	*" --admin-socket "*) ;;
	*) grep -Eq '^[[:space:]]*admin_socket[[:space:]]*=' "$CONF" &&
		extras=$((extras + 1)) ;;
	esac
	grep -Eq '^[[:space:]]*tcp[[:space:]]*=|; tcp = ' "$CONF" &&
		extras=$((extras + 1))
	before=$(grep -Ec '^keywayd: (admin socket on|serving TCP on) ' "$LOG" 2>/dev/null)
	env "${KWD_ENV[@]}" "$KWD" -c "$CONF" --socket "$SOCK" "$@" \
		2>>"$LOG" &
	PID=$!
	wait_for 'curl -s -o /dev/null --unix-socket "$SOCK" http://keyway/v1/health' ||
		bail_out "keywayd did not start: $(cat "$LOG")"
	wait_for '[ "$(grep -Ec "^keywayd: (admin socket on|serving TCP on) " "$LOG")" -ge $((${before:-0} + extras)) ]' ||
		bail_out "keywayd did not serve its admin socket or TCP: $(cat "$LOG")"
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

# audit_has NAME CONDITION: pass when a line of the audit trail ($AUDIT,
# else $TMPD/audit.jsonl), as e, meets the Python CONDITION within 10 s:
# a refusal that follows another of the same caller and reason within a
# second is written once the second is over.
audit_match()
{
	python3 -c 'import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if eval(sys.argv[2]):
        sys.exit(0)
sys.exit(1)' "${AUDIT:-$TMPD/audit.jsonl}" "$AUDIT_COND"
}
audit_has()
{
	AUDIT_COND=$2
	if wait_for audit_match; then
		pass "$1"
	else
		fail "$1" "no line of the audit trail with $2"
	fi
}

# flood N TARGET PATH BODY [HEADER]: N requests at once (8 at a time), each
# on its own connection, to TARGET (a Unix socket, or HOST:PORT); prints
# how many got each HTTP status ("403:500").  The program is given whole
# on the command line, so that any user may run it (setpriv ... flood).
FLOOD_PY='import socket, sys, threading
n, target, path, body = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].encode()
hdr = sys.argv[5] + "\r\n" if len(sys.argv) > 5 else ""
req = ("POST %s HTTP/1.1\r\nHost: k\r\nConnection: close\r\n%sContent-Length: %d\r\n\r\n"
       % (path, hdr, len(body))).encode() + body
codes, lock, left = {}, threading.Lock(), [n]
def one():
    while True:
        with lock:
            if left[0] == 0:
                return
            left[0] -= 1
        if target.startswith("/"):
            s = socket.socket(socket.AF_UNIX)
            addr = target
        else:
            h, p = target.rsplit(":", 1)
            s = socket.socket(socket.AF_INET)
            addr = (h, int(p))
        s.settimeout(30)
        try:
            s.connect(addr)
            s.sendall(req)
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
            code = data.split(b" ")[1].decode() if data else "none"
        except OSError as e:
            code = type(e).__name__
        s.close()
        with lock:
            codes[code] = codes.get(code, 0) + 1
ts = [threading.Thread(target=one) for _ in range(8)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(" ".join(f"{k}:{v}" for k, v in sorted(codes.items())))'

# refusals FROM CONDITION: of the audit trail's lines past line FROM, the
# refusals that meet the Python CONDITION (as e): "RECORDS REFUSALS", each
# record counting itself and the "(and N more ...)" its reason tells.
refusals()
{
	python3 -c 'import json, re, sys
recs = total = 0
for i, line in enumerate(open(sys.argv[1])):
    if i < int(sys.argv[2]):
        continue
    e = json.loads(line)
    if e["event"] != "refused" or not eval(sys.argv[3]):
        continue
    recs += 1
    m = re.search(r" \(and (\d+) more like it from this caller in the last [0-9.]+ s\)$", e["reason"])
    total += 1 + (int(m.group(1)) if m else 0)
print(recs, total)' "${AUDIT:-$TMPD/audit.jsonl}" "$1" "$2"
}
