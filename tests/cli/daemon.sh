#!/bin/bash
# daemon.sh - TAP tests of keywayd(8), started on a socket in a temporary
# directory and asked with curl: resolve, explain, report (a refund gives
# the quota back; a lease reported twice, unknown or expired is refused),
# HTTP statuses for keyway's statuses, malformed requests and a body too
# large, a caller of another uid refused or given only its chains (a
# refused chain's name logged on one line, cut short, never in a UTF-8
# character), health's leases only to a caller allowed a chain, a flood
# of refusals counted in a record a second, group rights by the groups
# the caller's process holds, a chain daemon.clients names that is not
# declared, SIGHUP with a good and a broken configuration, 3 processes of
# 8 clients each against one quota, SIGTERM, a full lease table (the
# caller's own oldest lease let go, or that of one past its half, else
# 503), refusals under
# daemon.rate_limit; and a search for keys in everything written.
# Run by `make check`, or by hand as lib.sh says.

. "$(dirname -- "$0")/lib.sh" || exit 99
. "$(dirname -- "$0")/daemon_lib.sh" || exit 99
need_curl

MASTER=5a1b2c3d4e5f60718293a4b5c6d7e8f90f1e2d3c4b5a69788796a5b4c3d2e1f0
K_ENV=sk-ant-daemon-server-key-0001bbbbcccc
secret "$MASTER" "$K_ENV"
export KEYWAY_MASTER_KEY=$MASTER
export ANTHROPIC_API_KEY=$K_ENV

# The daily quotas must not roll over during the test.
past_midnight 120

sock_dir
CONF=$TMPD/daemon.conf
HAMMER_LIMIT=20

# conf [EXTRA_CHAIN_LINE] [DAEMON_EXTRA]: the configuration, on stdout.
conf()
{
	cat <<EOF
keyway: {
	master_key = { source = "env"; };
	ledger: { module = "sqlite"; path = "ledger.db"; };
	audit: { sink = "jsonl"; path = "audit.jsonl"; };
};
backends: {
	server_env: { module = "env";
		quota = ( { limit = 3; period = "day"; per = "user"; } ); };
	hammer_env: { module = "env";
		quota = ( { limit = $HAMMER_LIMIT; period = "day"; per = "user"; } ); };
	limited_env: { module = "env"; };
};
chains: {
	default = ( { backend = "server_env"; control = "required"; } );
	hammer = ( { backend = "hammer_env"; control = "required"; } );
	limited = ( { backend = "limited_env"; control = "required"; } );
	$1
};
daemon: {
	socket_mode = "0666";
	clients = ( { user = "nobody"; chains = ( "limited" ); }$GROUPCLIENT );
	$2
};
EOF
}

# A group of the test's own, that nobody is a member of in /etc/group
# and daemon is not, may use the hammer chain: a caller's groups are
# those its process holds, not those /etc/group lists.
KWGROUP=
GROUPCLIENT=
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1 &&
	command -v groupadd >/dev/null 2>&1 && id nobody >/dev/null 2>&1 &&
	id daemon >/dev/null 2>&1; then
	KWGROUP=kwd-test-$$
	if groupadd "$KWGROUP" && gpasswd -a nobody "$KWGROUP" >/dev/null; then
		GROUPCLIENT=", { group = \"$KWGROUP\"; chains = ( \"hammer\" ); }"
		eval "lib_$(declare -f tap_cleanup)"
		tap_cleanup()
		{
			groupdel "$KWGROUP" 2>/dev/null
			lib_tap_cleanup
		}
	else
		groupdel "$KWGROUP" 2>/dev/null
		KWGROUP=
	fi
fi

conf | write_conf "$CONF"
run "$KW" -c "$CONF" init
expect_exit 0 "keyway init makes the ledger and the audit trail"
run "$KWD" --version
expect_exit 0 "keywayd --version"
expect_stdout_match "keywayd [0-9]+\.[0-9]+\.[0-9]+.*" "keywayd --version: its version"
run "$KWD" -c "$CONF" --check
expect_exit 0 "keywayd --check: a good configuration"
expect_stdout "ok" "keywayd --check: a good configuration says ok"
expect_stderr ""
printf 'keyway: {\n' | write_conf "$TMPD/trunc.conf"
run "$KWD" -c "$TMPD/trunc.conf" --check
expect_exit 1 "keywayd --check: a file cut short"
expect_stderr_line "$TMPD/trunc.conf:2: syntax error at the end of the file (a missing } or )?)" \
	"keywayd --check: a file cut short is told once, as keyway check tells it"
run "$KWD" -c "$TMPD/absent.conf" --check
expect_exit 1 "keywayd --check: no such file"
expect_stderr_line "$TMPD/absent.conf: cannot open configuration: No such file or directory" \
	"keywayd --check: no such file is told once"
run "$KWD" -c "$TMPD/trunc.conf" --socket "$TMPD/never.sock"
expect_exit 1 "keywayd does not start on a file cut short"
expect_stderr_line "keywayd: $TMPD/trunc.conf:2: syntax error at the end of the file (a missing } or )?)" \
	"keywayd on a file cut short: libkeyway's line, once"
conf '' 'lease_tll = 5;' | write_conf "$TMPD/typo.conf"
run "$KWD" -c "$TMPD/typo.conf" --check
expect_exit 1 "keywayd --check: a typo in the daemon section"
expect_stderr "$TMPD/typo.conf:22: daemon: unknown setting \"lease_tll\" (expected socket, socket_mode, socket_group, lease_ttl, max_leases, rate_limit, clients, admin_socket, admin_socket_mode, admin_group, tcp, tcp_token_file or tcp_chains)"
conf | sed 's/nobody/no-such-user-here/' | write_conf "$TMPD/nouser.conf"
run "$KWD" -c "$TMPD/nouser.conf"
expect_exit 1 "keywayd does not start with a client that does not exist"
expect_stderr "keywayd: $TMPD/nouser.conf:21: daemon.clients: no such user \"no-such-user-here\""
conf | sed 's/"limited" )/"limted" )/' | write_conf "$TMPD/nochain.conf"
run "$KWD" -c "$TMPD/nochain.conf" --check
expect_exit 1 "keywayd --check: daemon.clients naming no chain"
expect_stderr "$TMPD/nochain.conf:21: daemon.clients: no chain \"limted\" in the chains section; name one of its chains, or add it"

start
trap 'kill -TERM $PID 2>/dev/null; tap_cleanup' EXIT

expect_eq "$(stat -c %a "$SOCK")" 666 "the socket has daemon.socket_mode"

# ---- health ----
ask GET /v1/health
expect_eq "$CODE $(jget status)" "200 ok" "GET /v1/health: 200 ok"

# ---- resolve, report, refund ----
ask POST /v1/resolve '{"provider":"anthropic","user":"bob"}'
expect_eq "$CODE $(jget key) $(jget backend)" "200 $K_ENV server_env" \
	"resolve: 200 with the key and the backend"
L1=$(jget lease)
expect_eq "${#L1}" 32 "resolve: a lease id of 32 characters"
ask POST /v1/resolve '{"provider":"anthropic","user":"bob"}'
ask POST /v1/resolve '{"provider":"anthropic","user":"bob","org":"acme"}'
expect_eq "$CODE" 200 "resolve: the third of a quota of 3"
ask POST /v1/resolve '{"provider":"anthropic","user":"bob"}'
expect_answer 429 denied "resolve past the quota: 429 denied"
expect_stdout_match '\{"error":".*quota server_env 3/day per user used up for user bob .*' \
	"the error says which quota"
ask GET /v1/health
expect_eq "$(jget leases)" 3 "health: 3 leases held"

ask POST /v1/report "{\"lease\":\"$L1\",\"outcome\":\"unused\"}"
expect_eq "$CODE $(jget outcome)" "200 unused" "report unused: 200"
ask POST /v1/resolve '{"provider":"anthropic","user":"bob"}'
expect_eq "$CODE" 200 "the refund gives the quota back"
ask POST /v1/resolve '{"provider":"anthropic","user":"bob"}'
expect_answer 429 denied "and only one request's worth"
ask POST /v1/report "{\"lease\":\"$L1\",\"outcome\":\"unused\"}"
expect_answer 409 conflict "a lease reported twice: 409"
ask POST /v1/report '{"lease":"00000000000000000000000000000000","outcome":"used"}'
expect_answer 404 notfound "an unknown lease: 404"
ask POST /v1/report "{\"lease\":\"$L1\",\"outcome\":\"maybe\"}"
expect_answer 400 invalid "an outcome other than used or unused: 400"

# ---- explain ----
ask POST /v1/explain '{"provider":"anthropic","user":"carol"}'
expect_eq "$CODE $(jget result) $(jget backend) $(jget chain)" \
	"200 found server_env default" "explain: 200 with the trace"
expect_lacks "$OUT" "$K_ENV" "explain: no key in the trace"
ask POST /v1/explain '{"provider":"anthropic","user":"bob"}'
expect_eq "$CODE $(jget result)" "200 denied" "explain of a used-up quota"
ask POST /v1/resolve '{"provider":"anthropic","user":"carol"}'
expect_eq "$CODE" 200 "explain charges nothing"

# ---- statuses and malformed requests ----
ask POST /v1/resolve '{"provider":"anthropic","chain":"nosuch"}'
expect_answer 400 invalid "an unknown chain: 400"
ask POST /v1/resolve '{"provider":"openai","chain":"limited"}'
expect_answer 404 notfound "no key: 404 notfound"
ask POST /v1/resolve '{"provider":"anthropic","user":"bob",'
expect_answer 400 invalid "invalid JSON: 400"
expect_stdout_match '\{"error":"invalid JSON at line 1 column [0-9]+: .*' \
	"invalid JSON: says where"
ask POST /v1/resolve '{"provider":"anthropic","colour":"red"}'
expect_answer 400 invalid "an unknown field: 400"
expect_stdout_match '\{"error":"unknown field \\"colour\\"",.*' \
	"an unknown field: named"
ask POST /v1/resolve '{"provider":1}'
expect_answer 400 invalid "a field that is not a string: 400"
ask POST /v1/resolve '{"user":"bob"}'
expect_answer 400 invalid "no provider: 400"
ask POST /v1/resolve '[]'
expect_answer 400 invalid "a body that is not an object: 400"
# keywayd reads plain bodies itself and leaves the rest to jansson: both
# must take and refuse the same bodies.
ask POST /v1/resolve '{"provider":"anthropic","chain":"limited","chain":"limited"}'
expect_answer 400 invalid "a field given twice: 400"
ask POST /v1/resolve '{"provider":"anthropic","chain":"limited"} x'
expect_answer 400 invalid "bytes after the object: 400"
ask POST /v1/resolve '{"provider":"anthropic","chain":"limited",}'
expect_answer 400 invalid "a comma before the closing brace: 400"
ask POST /v1/resolve '{"provider":"anthropic","chain":nul}'
expect_answer 400 invalid "a bare word that is not null: 400"
ask POST /v1/explain ' { "provider" : "anthropic" ,
	"user" : null , "org":null, "chain" : "limited" } '
expect_eq "$CODE $(jget result)" "200 found" \
	"spaces, a newline and null fields: read"
ask POST /v1/explain '{"provider":"anthr\u006fpic","chain":"limi\qed"}'
expect_answer 400 invalid "an escape that is not JSON's: 400"
ask POST /v1/explain '{"provider":"anthr\u006fpic","chain":"limited"}'
expect_eq "$CODE $(jget result)" "200 found" "a name with an escape: read"
ask GET /v1/resolve
expect_answer 405 invalid "GET /v1/resolve: 405"
ask GET /v1/nosuch
expect_answer 404 invalid "an unknown path: 404"
ask GET '/v1/%C3%28'
expect_answer 404 invalid "an unknown path that is not UTF-8: 404, not 500"
ask POST /v1/resolve "{\"provider\":\"anthropic\",\"a$(printf '\303\251%.0s' $(seq 40))\":\"x\"}"
expect_answer 400 invalid "an unknown field cut in a character: 400, not 500"
head -c 10485760 /dev/zero | tr '\0' x >"$TMPD/big"
ask POST /v1/resolve "@$TMPD/big"
expect_answer 413 invalid "a body of 10 MB: 413"
run -s curl -sS --unix-socket "$SOCK" -H 'Transfer-Encoding: chunked' \
	--data-binary "@$TMPD/big" -w '%{http_code}' http://keyway/v1/resolve
CODE=$(tail -n 1 -- "$OUT")
sed -i '$d' "$OUT"
expect_answer 413 invalid "a body of 10 MB in chunks, without its length: 413"
ask GET /v1/health
expect_eq "$CODE" 200 "still serving after the large bodies"

# ---- who asks ----
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null 2>&1 ||
	! id nobody >/dev/null 2>&1; then
	for t in "another uid: refused the default chain" \
		"the refusal is logged" \
		"another uid: refused a chain with a newline in its name" \
		"a refused chain's newline and length: one log line, the name cut to 64 bytes" \
		"another uid: its own chain" \
		"another uid: may not report a lease of another" \
		"a chain's name of 2-byte characters past 64 bytes: refused" \
		"a refused chain's name cut in a character: the record keeps it, cut before the character" \
		"and so does the log line" \
		"health to a caller allowed a chain: the leases held" \
		"health to a caller allowed no chain: ok" \
		"health to a caller allowed no chain: not the leases held" \
		"300 refused resolves of one caller at once: each answered 403" \
		"300 refusals: every one counted in the audit trail" \
		"300 refusals: in a record a second, not one each" \
		"300 refusals: in a log line a second, not one each"; do
		skip "$t" "needs root, setpriv and a user nobody"
	done
else
	asnobody()
	{
		run -s setpriv --reuid nobody --regid "$(id -g nobody)" \
			--clear-groups curl -sS --unix-socket "$SOCK" \
			--data-binary "$1" -w '%{http_code}' "http://keyway$2"
		CODE=$(tail -n 1 -- "$OUT")
		sed -i '$d' "$OUT"
	}
	asnobody '{"provider":"anthropic","user":"dan"}' /v1/resolve
	expect_answer 403 refused "another uid: refused the default chain"
	if grep -q "audit: refused resolve of chain \"default\" to uid $(id -u nobody) (nobody)" "$LOG"; then
		pass "the refusal is logged"
	else
		fail "the refusal is logged" "$(cat "$LOG")"
	fi
	before=$(wc -l <"$LOG")
	long=$(printf 'x%.0s' $(seq 1 200))
	asnobody "{\"provider\":\"anthropic\",\"chain\":\"nope\\nkeywayd: forged\\r$long\"}" /v1/resolve
	expect_answer 403 refused "another uid: refused a chain with a newline in its name"
	wait_for '[ "$(wc -l <"$LOG")" -gt "$before" ]'
	added=$(tail -n +$((before + 1)) "$LOG")
	if [ "$(printf '%s\n' "$added" | wc -l)" -eq 1 ] &&
		! grep -q '^keywayd: forged' "$LOG" &&
		printf '%s\n' "$added" | grep -q 'chain "nope keywayd: forged x\{43\}" to uid'; then
		pass "a refused chain's newline and length: one log line, the name cut to 64 bytes"
	else
		fail "a refused chain's newline and length: one log line, the name cut to 64 bytes" "$added"
	fi
	asnobody '{"provider":"anthropic","chain":"limited"}' /v1/resolve
	expect_eq "$CODE $(jget key)" "200 $K_ENV" "another uid: its own chain"
	ask POST /v1/resolve '{"provider":"anthropic","user":"erin"}'
	asnobody "{\"lease\":\"$(jget lease)\",\"outcome\":\"unused\"}" /v1/report
	expect_answer 404 notfound "another uid: may not report a lease of another"

	# A name cut at 64 bytes is cut before the character byte 64 falls
	# in: the audit record keeps a chain that is UTF-8.
	x63=$(printf 'x%.0s' $(seq 1 63))
	asnobody "{\"provider\":\"anthropic\",\"chain\":\"${x63}\u00e9-and-more\"}" /v1/resolve
	expect_answer 403 refused "a chain's name of 2-byte characters past 64 bytes: refused"
	audit_has "a refused chain's name cut in a character: the record keeps it, cut before the character" \
		"e['event'] == 'refused' and e.get('chain') == '$x63'"
	if wait_for 'grep -q "chain \"$x63\" to uid" "$LOG"'; then
		pass "and so does the log line"
	else
		fail "and so does the log line" "$(tail -n 3 "$LOG")"
	fi

	# health: the leases held, only to a caller allowed some chain.
	run -s setpriv --reuid nobody --regid "$(id -g nobody)" --clear-groups \
		curl -sS --unix-socket "$SOCK" http://keyway/v1/health
	leases=$(jget leases)
	expect_eq "$(jget status) ${leases:+held}" "ok held" \
		"health to a caller allowed a chain: the leases held"
	run -s setpriv --reuid daemon --regid "$(id -g daemon)" --clear-groups \
		curl -sS --unix-socket "$SOCK" http://keyway/v1/health
	expect_eq "$(jget status)" ok "health to a caller allowed no chain: ok"
	expect_eq "$(python3 -c 'import json, sys; print("leases" in json.load(open(sys.argv[1])))' "$OUT")" False \
		"health to a caller allowed no chain: not the leases held"

	# A flood of refusals: each answered, each counted, but in a record
	# (and a log line) a second rather than one each.  A refusal held
	# back from before is written at keywayd's next tick: wait past it.
	sleep 2.2
	from=$(wc -l <"$TMPD/audit.jsonl")
	logfrom=$(wc -l <"$LOG")
	run setpriv --reuid nobody --regid "$(id -g nobody)" --clear-groups \
		/usr/bin/python3 -c "$FLOOD_PY" 300 "$SOCK" /v1/resolve \
		'{"provider":"anthropic","user":"flood"}'
	expect_stdout "403:300" "300 refused resolves of one caller at once: each answered 403"
	NOBODY_REFUSED="e['caller'].get('uid') == $(id -u nobody) and e.get('provider') == 'anthropic'"
	wait_for '[ "$(refusals "$from" "$NOBODY_REFUSED" | cut -d" " -f2)" -ge 300 ]'
	read -r recs total <<<"$(refusals "$from" "$NOBODY_REFUSED")"
	expect_eq "$total" 300 "300 refusals: every one counted in the audit trail"
	if [ "$recs" -le 4 ]; then
		pass "300 refusals: in a record a second, not one each"
	else
		fail "300 refusals: in a record a second, not one each" "$recs records"
	fi
	lines=$(tail -n +$((logfrom + 1)) "$LOG" | grep -c "audit: refused resolve of chain \"default\" to uid $(id -u nobody)")
	if [ "$lines" -le 4 ] && [ "$lines" -eq "$recs" ]; then
		pass "300 refusals: in a log line a second, not one each"
	else
		fail "300 refusals: in a log line a second, not one each" "$lines lines for $recs records"
	fi
fi

# ---- a caller's groups: those of its process ----
GT=("a group's member in /etc/group, its groups cleared: refused the group's chain"
	"a group's member in /etc/group, given the group: served"
	"a user given a group it is no member of in /etc/group: served the group's chain"
	"that user without the group: refused")
if [ -z "$KWGROUP" ]; then
	for t in "${GT[@]}"; do
		skip "$t" "needs root, setpriv, groupadd and users nobody and daemon"
	done
else
	# asuser USER SETPRIV_GROUPS_OPTION BODY: a resolve as USER.
	asuser()
	{
		run -s setpriv --reuid "$1" --regid "$(id -g "$1")" $2 \
			curl -sS --unix-socket "$SOCK" --data-binary "$3" \
			-w '%{http_code}' http://keyway/v1/resolve
		CODE=$(tail -n 1 -- "$OUT")
		sed -i '$d' "$OUT"
	}
	B='{"provider":"anthropic","user":"grp","chain":"hammer"}'
	asuser nobody --clear-groups "$B"
	expect_answer 403 refused "${GT[0]}"
	asuser nobody "--groups=$KWGROUP" "$B"
	expect_eq "$CODE $(jget key)" "200 $K_ENV" "${GT[1]}"
	asuser daemon "--groups=$KWGROUP" "$B"
	expect_eq "$CODE $(jget key)" "200 $K_ENV" "${GT[2]}"
	asuser daemon --clear-groups "$B"
	expect_answer 403 refused "${GT[3]}"
fi

# ---- 3 processes of 8 clients each against a quota of $HAMMER_LIMIT ----
for p in 1 2 3; do
	seq 1 40 | xargs -P 8 -I{} curl -sS --unix-socket "$SOCK" \
		-o /dev/null -w '%{http_code}\n' \
		-d '{"provider":"anthropic","user":"hammer","chain":"hammer"}' \
		http://keyway/v1/resolve >"$TMPD/hammer.$p" 2>&1 &
	pids[p]=$!
done
wait "${pids[@]}"
got=$(cat "$TMPD"/hammer.* | sort | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')
expect_eq "$got" "200:$HAMMER_LIMIT 429:$((120 - HAMMER_LIMIT)) " \
	"120 requests from 3x8 clients: exactly $HAMMER_LIMIT admitted"

# ---- 500 connections at once, past --max-connections (256) ----
if [ -z "$PY" ]; then
	skip "500 connections at once: every one answered" "no python3"
else
	cat >"$TMPD/many.py" <<'PYEOF'
import socket, sys, threading
path, codes, lock = sys.argv[1], {}, threading.Lock()
def one():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    try:
        s.connect(path)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        code = data.split(b" ")[1].decode() if data else "none"
    except OSError as e:
        code = type(e).__name__
    with lock:
        codes[code] = codes.get(code, 0) + 1
    s.close()
ts = [threading.Thread(target=one) for _ in range(500)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(" ".join(f"{k}:{v}" for k, v in sorted(codes.items())))
PYEOF
	run python3 "$TMPD/many.py" "$SOCK"
	expect_stdout "200:500" "500 connections at once: every one answered"
fi

# ---- SIGHUP ----
ask POST /v1/resolve '{"provider":"anthropic","chain":"extra"}'
expect_answer 400 invalid "before the reload: no chain extra"
ask GET /v1/health
held=$(jget leases)
conf 'extra = ( { backend = "limited_env"; control = "required"; } );' \
	'lease_ttl = 1;' | write_conf "$CONF"
kill -HUP "$PID"
wait_for 'grep -q "reloaded" "$LOG"'
ask POST /v1/resolve '{"provider":"anthropic","chain":"extra"}'
expect_eq "$CODE" 200 "SIGHUP with a good configuration: the new chain"
ask POST /v1/resolve '{"provider":"anthropic","user":"bob"}'
expect_answer 429 denied "the quota counted before the reload still holds"

# Reloads while 3x8 clients ask: every request is answered, by the one
# configuration or the other.
for p in 1 2 3; do
	seq 1 60 | xargs -P 8 -I{} curl -sS --unix-socket "$SOCK" \
		-o /dev/null -w '%{http_code}\n' \
		-d '{"provider":"anthropic","chain":"limited"}' \
		http://keyway/v1/resolve >"$TMPD/reload.$p" 2>&1 &
	pids[p]=$!
done
for i in 1 2 3 4 5; do
	kill -HUP "$PID"
	sleep 0.2
done
wait "${pids[@]}"
got=$(cat "$TMPD"/reload.* | sort | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')
expect_eq "$got" "200:180 " "5 reloads under 180 requests: every one answered 200"
wait_for '[ "$(grep -c "reloaded" "$LOG")" -ge 6 ]'
expect_eq "$(grep -c reloaded "$LOG")" 6 "and each reload logged"

ask POST /v1/resolve '{"provider":"anthropic","user":"frank"}'
L2=$(jget lease)
sleep 2.5
ask POST /v1/report "{\"lease\":\"$L2\",\"outcome\":\"unused\"}"
expect_answer 409 conflict "a lease past daemon.lease_ttl: 409"
ask GET /v1/health
expect_eq "$(jget leases)" "$held" "leases past their time are let go"

echo 'chains: { default = ( ; };' | write_conf "$CONF"
kill -HUP "$PID"
wait_for 'grep -q "kept the configuration in use" "$LOG"'
if grep -q "daemon.conf:1: .*" "$LOG" &&
	grep -q "kept the configuration in use: $CONF could not be loaded" "$LOG"; then
	pass "SIGHUP with a broken configuration: the error is logged"
else
	fail "SIGHUP with a broken configuration: the error is logged" "$(cat "$LOG")"
fi
ask POST /v1/resolve '{"provider":"anthropic","chain":"extra"}'
expect_eq "$CODE" 200 "and the configuration in use stays"
conf '' | sed 's/"limited" )/"limted" )/' | write_conf "$CONF"
kill -HUP "$PID"
wait_for 'grep -q "no chain \"limted\"" "$LOG"'
if grep -q "^keywayd: $CONF:21: daemon.clients: no chain \"limted\" in the chains section" "$LOG"; then
	pass "SIGHUP with daemon.clients naming no chain: the error is logged"
else
	fail "SIGHUP with daemon.clients naming no chain: the error is logged" "$(cat "$LOG")"
fi
ask POST /v1/resolve '{"provider":"anthropic","chain":"extra"}'
expect_eq "$CODE" 200 "and the configuration in use stays"

# ---- a second keywayd on the same socket ----
# It must not take a socket that is served: it refuses to start, and the
# first keeps serving.
conf | write_conf "$TMPD/second.conf"
run "$KWD" -c "$TMPD/second.conf" --socket "$SOCK"
expect_exit 1 "a second keywayd on a served socket does not start"
expect_stderr_line "keywayd: socket $SOCK: another process is serving it (a keywayd already running?); stop it, or choose another --socket" \
	"a second keywayd on a served socket: one line saying why"
ask GET /v1/health
expect_eq "$CODE" 200 "the first keywayd still serves its socket"

# ---- SIGTERM ----
kill -TERM "$PID"
wait "$PID"
expect_eq "$?" 0 "SIGTERM: keywayd exits with status 0"
expect_missing "$SOCK" "SIGTERM: the socket is removed"
expect_eq "$(tail -n 1 "$LOG")" "keywayd: stopped" "SIGTERM: logged"
trap tap_cleanup EXIT

# ---- a socket left behind, and one another process bound since ----
# A keywayd killed with SIGKILL leaves its socket: the next one takes it
# over.  A keywayd whose socket was replaced (another process bound the
# path since) leaves the replacement in place when it stops.
conf | write_conf "$CONF"
start
kill -KILL "$PID"
wait "$PID" 2>/dev/null
expect_eq "$([ -S "$SOCK" ] && echo left)" left "SIGKILL leaves the socket"
# The socket is there before the new keywayd binds it: wait for answers.
start
wait_for 'curl -sf --unix-socket "$SOCK" http://keyway/v1/health >/dev/null' ||
	diag "no answer on $SOCK: $(tail -n 3 "$LOG")"
ask GET /v1/health
expect_eq "$CODE" 200 "a keywayd takes over a socket nothing serves"
rm -f "$SOCK"
python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])' "$SOCK"
kill -TERM "$PID"
wait "$PID"
expect_eq "$([ -S "$SOCK" ] && echo kept)" kept \
	"keywayd stopping leaves a socket another process bound at its path"
rm -f "$SOCK"

# ---- a full lease table ----
# Past daemon.max_leases the caller's own oldest lease counts as used,
# whatever lease_ttl it was made with; after a reload that shortens
# lease_ttl, each answer must still carry its key.
conf '' 'max_leases = 3; lease_ttl = 300;' | write_conf "$CONF"
start
trap 'kill -TERM $PID 2>/dev/null; tap_cleanup' EXIT
for i in 1 2 3; do
	ask POST /v1/resolve '{"provider":"anthropic","chain":"limited"}'
done
F1=$(jget lease)
conf '' 'max_leases = 3; lease_ttl = 5;' |
	sed 's/socket_mode = "0666"/socket_mode = "0660"/' | write_conf "$CONF"
reloads=$(grep -c "reloaded" "$LOG")
kill -HUP "$PID"
wait_for '[ "$(grep -c "reloaded" "$LOG")" -gt "$reloads" ]' ||
	bail_out "keywayd did not reload: $(tail -n 3 "$LOG")"
expect_eq "$(grep -c "daemon.socket_mode changed in $CONF: the sockets stay as they were made; restart keywayd to take it" "$LOG")" 1 \
	"a reload that changes socket_mode says it is not taken"
expect_eq "$(stat -c %a "$SOCK")" 666 "and the socket keeps its mode"
for i in 1 2 3 4; do
	ask POST /v1/resolve '{"provider":"anthropic","chain":"limited"}'
	expect_eq "$CODE $(jget key) $(jget backend)" "200 $K_ENV limited_env" \
		"a full lease table, after lease_ttl shortened: answer $i holds the key"
done
F7=$(jget lease)
ask GET /v1/health
expect_eq "$(jget leases)" 3 "daemon.max_leases: 3 keys held at most"
ask POST /v1/report "{\"lease\":\"$F1\",\"outcome\":\"unused\"}"
expect_answer 409 conflict "a full lease table: the caller's oldest lease counted as used, though of the longer lease_ttl"
ask POST /v1/report "{\"lease\":\"$F7\",\"outcome\":\"unused\"}"
expect_eq "$CODE" 200 "and its newest is held"
kill -TERM "$PID"
wait "$PID"
expect_eq "$?" 0 "keywayd with a full lease table exits with status 0"
trap tap_cleanup EXIT

# ---- a full lease table shared by two callers ----
# While others hold leases, a caller holds at most half of the table: past
# it, it gives up its own oldest.  When the table is full, a caller that
# holds none of it takes the oldest lease of one past its half; when no one
# is past it, it is refused (503) before any key is resolved.  A caller
# never makes another's lease count as used otherwise.
LT=("two callers: the second's resolve answered"
	"a caller past its half of the table gives up its own oldest lease"
	"two callers: the other caller's lease is still its to report"
	"a full table: the caller's own oldest lease makes room"
	"a full table held by one caller: another's resolve is answered"
	"a full table held by one caller: its oldest lease made room"
	"a full table, no one past half: 503 unavail"
	"a full table: the refusal says which setting"
	"a full table: no key in the refusal"
	"a full table: nothing resolved, nothing charged"
	"a full table: its keys are still their caller's to report")
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null 2>&1 ||
	! id nobody >/dev/null 2>&1; then
	for t in "${LT[@]}"; do
		skip "$t" "needs root, setpriv and a user nobody"
	done
else
	conf '' 'max_leases = 4; lease_ttl = 300;' | write_conf "$CONF"
	start
	trap 'kill -TERM $PID 2>/dev/null; tap_cleanup' EXIT
	asnobody '{"provider":"anthropic","chain":"limited"}' /v1/resolve
	NL=$(jget lease)
	expect_eq "$CODE ${#NL}" "200 32" "${LT[0]}"
	for i in 1 2 3; do
		ask POST /v1/resolve '{"provider":"anthropic","chain":"limited"}'
		R[i]=$(jget lease)
	done
	ask POST /v1/report "{\"lease\":\"${R[1]}\",\"outcome\":\"unused\"}"
	expect_answer 409 conflict "${LT[1]}"
	asnobody "{\"lease\":\"$NL\",\"outcome\":\"unused\"}" /v1/report
	expect_eq "$CODE $(jget outcome)" "200 unused" "${LT[2]}"
	# root alone now: it may fill the table.
	for i in 4 5 6; do
		ask POST /v1/resolve '{"provider":"anthropic","chain":"limited"}'
		R[i]=$(jget lease)
	done
	ask POST /v1/report "{\"lease\":\"${R[2]}\",\"outcome\":\"unused\"}"
	expect_answer 409 conflict "${LT[3]}"
	# root holds all 4, past its half: nobody is answered, root's oldest
	# (R[3]) counted as used.
	asnobody '{"provider":"anthropic","chain":"limited"}' /v1/resolve
	expect_eq "$CODE $(jget key)" "200 $K_ENV" "${LT[4]}"
	ask POST /v1/report "{\"lease\":\"${R[3]}\",\"outcome\":\"unused\"}"
	expect_answer 409 conflict "${LT[5]}"
	kill -TERM "$PID"
	wait "$PID"
	# A table of 1: its holder is at its half, and keeps it.
	conf '' 'max_leases = 1; lease_ttl = 300;' | write_conf "$CONF"
	start
	ask POST /v1/resolve '{"provider":"anthropic","chain":"limited"}'
	R[7]=$(jget lease)
	asnobody '{"provider":"anthropic","chain":"limited"}' /v1/resolve
	expect_answer 503 unavail "${LT[6]}"
	expect_eq "$(jget error)" "keywayd holds daemon.max_leases (1) keys unreported; report leases, or raise it" \
		"${LT[7]}"
	expect_lacks "$OUT" "$K_ENV" "${LT[8]}"
	ask GET /v1/health
	expect_eq "$(jget leases)" 1 "${LT[9]}"
	ask POST /v1/report "{\"lease\":\"${R[7]}\",\"outcome\":\"unused\"}"
	expect_eq "$CODE $(jget outcome)" "200 unused" "${LT[10]}"
	kill -TERM "$PID"
	wait "$PID"
	trap tap_cleanup EXIT
fi

# ---- limits: connections, slow clients, a rate; no daemon.clients ----
conf '' 'rate_limit = 5;' | grep -v 'clients = ' | write_conf "$CONF"
start --timeout 2 --max-connections 30
trap 'kill -TERM $PID 2>/dev/null; tap_cleanup' EXIT
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null 2>&1 ||
	! id nobody >/dev/null 2>&1; then
	skip "without daemon.clients: another uid is refused" \
		"needs root, setpriv and a user nobody"
	skip "daemon.rate_limit = 5: of 50 refused requests at once, those past the rate answered 429" \
		"needs root, setpriv and a user nobody"
else
	asnobody '{"provider":"anthropic","chain":"limited"}' /v1/resolve
	expect_answer 403 refused "without daemon.clients: another uid is refused"
	# Refusals take from the caller's rate as requests served do.
	sleep 1.2
	run setpriv --reuid nobody --regid "$(id -g nobody)" --clear-groups \
		/usr/bin/python3 -c "$FLOOD_PY" 50 "$SOCK" /v1/resolve \
		'{"provider":"anthropic","chain":"limited"}'
	read -r refused limited <<<"$(sed -E 's/403:([0-9]+) 429:([0-9]+)/\1 \2/' "$OUT")"
	if [ "${refused:-x}" -ge 5 ] 2>/dev/null && [ "${limited:-x}" -ge 1 ] 2>/dev/null &&
		[ $((refused + limited)) -eq 50 ]; then
		pass "daemon.rate_limit = 5: of 50 refused requests at once, those past the rate answered 429"
	else
		fail "daemon.rate_limit = 5: of 50 refused requests at once, those past the rate answered 429" "$(cat "$OUT")"
	fi
fi
ask POST /v1/resolve '{"provider":"anthropic","chain":"limited"}'
expect_eq "$CODE" 200 "without daemon.clients: root is served"
# hold N: open N connections that send half a request and stop; print how
# many the daemon closed within 1 second, then within 5 more.  Those past
# --max-connections wait in the socket's backlog for a free place.
hold()
{
	python3 - "$SOCK" "$1" <<'PYEOF'
import socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
conns = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b"POST /v1/resolve HTTP/1.1\r\nHost: k\r\n")
    conns.append(s)
def closed(wait):
    end = time.time() + wait
    out = 0
    for s in conns:
        s.settimeout(max(0.01, end - time.time()))
        try:
            if s.recv(1) == b"":
                out += 1
        except socket.timeout:
            pass
        except OSError:
            out += 1
    return out
print(closed(1), closed(5), flush=True)
PYEOF
}
if [ -z "$PY" ]; then
	skip "slow clients are not cut off at once" "no python3"
	skip "a slow client is cut off after --timeout" "no python3"
else
	run hold 40
	read -r early late <"$OUT"
	expect_eq "$early" 0 "slow clients are not cut off at once"
	expect_eq "$late" 40 "40 clients that stop half-way, 10 past --max-connections: all cut off after --timeout"
fi
ask GET /v1/health
expect_eq "$CODE" 200 "then everyone else is served"
sleep 1.2
seq 1 20 | xargs -P 8 -I{} curl -sS --unix-socket "$SOCK" \
	-w '\n%{http_code}\n' -d '{"provider":"anthropic","chain":"limited"}' \
	http://keyway/v1/resolve >"$SECRETD/rate" 2>&1
ok=$(grep -c '^200$' "$SECRETD/rate")
limited=$(grep -c '^429$' "$SECRETD/rate")
said=$(grep -c '^{"error":"uid [0-9]* is over daemon.rate_limit (5 requests a second)","status":"limited"}$' "$SECRETD/rate")
name="daemon.rate_limit = 5: of 20 requests at once, 5 or more answered, the rest 429 limited"
if [ "$ok" -ge 5 ] && [ "$limited" -ge 1 ] && [ $((ok + limited)) -eq 20 ] &&
	[ "$said" -eq "$limited" ]; then
	pass "$name"
else
	fail "$name" "$(grep -E '^[0-9]+$' "$SECRETD/rate" | sort | uniq -c)"
fi
kill -TERM "$PID"
wait "$PID"
expect_eq "$?" 0 "keywayd with limits exits on SIGTERM"
trap tap_cleanup EXIT

expect_no_leaks
done_testing
