#!/bin/bash
# daemon_admin.sh - TAP tests of keywayd(8)'s admin socket, its refusals in
# the audit trail, quota denials as 429, TCP and the socket's group: keys
# stored, listed, rotated, disabled, enabled and removed through the admin
# socket and resolved through the main one; a caller who is not an admin
# refused and audited, then let in by daemon.admin_group; a quota used up
# answered 429 with Retry-After; TCP only on loopback, only with its token;
# floods of refusals (on the admin socket, wrong TCP tokens) counted in a
# record a second, wrong tokens under daemon.rate_limit, one for all TCP;
# daemon.socket_group and socket_mode; and a search for the keys in
# everything written.  Run by `make check`, or by hand as lib.sh says.

. "$(dirname -- "$0")/lib.sh" || exit 99
. "$(dirname -- "$0")/daemon_lib.sh" || exit 99
need_curl
[ -n "$PY" ] || {
	echo "1..0 # SKIP python3 is not installed"
	exit 0
}

MASTER=6b1c2d3e4f5061728394a5b6c7d8e9f00e1d2c3b4a5968778695a4b3c2d1e0ff
K1=sk-ant-admin-first-key-0001aaaabbbbcccc
K2=sk-ant-admin-rotated-key-0002ddddeeeeffff
K3=sk-ant-admin-nobody-key-0003gggghhhhiiii
K_ENV=sk-ant-daemon-metered-key-0004jjjjkkkk
TOKEN=tcp-token-5f1e2d3c4b5a69788796a5b4c3d2e1f0
secret "$MASTER" "$K1" "$K2" "$K3" "$K_ENV" "$TOKEN"
export KEYWAY_MASTER_KEY=$MASTER
export ANTHROPIC_API_KEY=$K_ENV

# The daily quota must not roll over during the test.
past_midnight 60

ROOTY=
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1 &&
	[ -x /usr/bin/python3 ] &&
	id nobody >/dev/null 2>&1 && getent group nogroup >/dev/null &&
	id daemon >/dev/null 2>&1; then
	ROOTY=1
fi

sock_dir
ADM=$SOCKD/admin.sock
CONF=$TMPD/daemon.conf
AUDIT=$TMPD/audit.jsonl
TOKFILE=$SECRETD/tcp.token
printf '%s\n' "$TOKEN" >"$TOKFILE"
chmod 600 "$TOKFILE"

# A port nobody listens on, for TCP.
PORT=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')

# conf [DAEMON_EXTRA]: the configuration, on stdout.
conf()
{
	cat <<EOF
keyway: {
	master_key = { source = "env"; };
	ledger: { module = "sqlite"; path = "ledger.db"; };
	audit: { sink = "jsonl"; path = "audit.jsonl"; };
};
backends: {
	user_keys: { module = "sqlite"; path = "keys.db"; scope = "user"; };
	metered_env: { module = "env";
		quota = ( { limit = 2; period = "day"; per = "user"; } ); };
	open_env: { module = "env"; };
};
chains: {
	default = ( { backend = "user_keys"; control = "required"; } );
	metered = ( { backend = "metered_env"; control = "required"; } );
	open = ( { backend = "open_env"; control = "required"; } );
};
daemon: {
	socket_mode = "0666";
	admin_socket = "$SOCKD/from-conf.sock";
	admin_socket_mode = "0666";
	clients = ( { user = "nobody"; chains = ( "open" ); } );
	$1
};
EOF
}

# ---- the configuration ----
conf | write_conf "$CONF"
run "$KW" -c "$CONF" init
expect_exit 0 "keyway init makes the store, the ledger and the audit trail"
TCPSET="tcp = \"127.0.0.1:$PORT\"; tcp_token_file = \"$TOKFILE\"; tcp_chains = ( \"open\" );"
conf "$TCPSET" | write_conf "$TMPD/tcp.conf"
run "$KWD" -c "$TMPD/tcp.conf" --check
expect_exit 0 "keywayd --check: admin socket and TCP settings"
expect_stderr ""
run "$KWD" -c "$TMPD/tcp.conf" --socket "$SOCKD/never.sock" --max-connections 451
expect_exit 1 "with daemon.tcp, --max-connections past 450 is refused"
expect_stderr_line "keywayd: --max-connections 451: with daemon.tcp the main socket and TCP hold up to 902 connections together, past the 900 keywayd can serve; give --max-connections 450 or fewer" \
	"with daemon.tcp, --max-connections past 450: one line saying why"

# refused_at_load NAME DAEMON_EXTRA MESSAGE: keywayd does not start.
refused_at_load()
{
	conf "$2" | write_conf "$TMPD/bad.conf"
	# A keywayd that starts after all is stopped: a test that fails,
	# not one that hangs.
	run timeout -s TERM 5 "$KWD" -c "$TMPD/bad.conf" --socket "$SOCKD/bad.sock"
	if [ "$RC" = 1 ] && grep -qF -- "$3" "$ERR" && [ ! -e "$SOCKD/bad.sock" ]; then
		pass "$1"
	else
		fail "$1" "exit $RC: $(cat "$ERR")"
	fi
}
refused_at_load "daemon.tcp on 0.0.0.0 is refused at load" \
	"tcp = \"0.0.0.0:$PORT\"; tcp_token_file = \"$TOKFILE\"; tcp_chains = ( \"open\" );" \
	"daemon.tcp: 0.0.0.0:$PORT is not a loopback address"
refused_at_load "daemon.tcp on another host's address is refused at load" \
	"tcp = \"192.0.2.7:$PORT\"; tcp_token_file = \"$TOKFILE\"; tcp_chains = ( \"open\" );" \
	"daemon.tcp: 192.0.2.7:$PORT is not a loopback address"
refused_at_load "daemon.tcp on [::] is refused at load" \
	"tcp = \"[::]:$PORT\"; tcp_token_file = \"$TOKFILE\"; tcp_chains = ( \"open\" );" \
	"is not a loopback address"
refused_at_load "daemon.tcp by host name is refused at load" \
	"tcp = \"localhost:$PORT\"; tcp_token_file = \"$TOKFILE\"; tcp_chains = ( \"open\" );" \
	"is not ADDRESS:PORT with a numeric address"
refused_at_load "daemon.tcp without a token file is refused at load" \
	"tcp = \"127.0.0.1:$PORT\"; tcp_chains = ( \"open\" );" \
	"daemon.tcp needs daemon.tcp_token_file"
refused_at_load "daemon.tcp without tcp_chains is refused at load" \
	"tcp = \"127.0.0.1:$PORT\"; tcp_token_file = \"$TOKFILE\";" \
	"daemon.tcp needs daemon.tcp_chains"
cp "$TOKFILE" "$SECRETD/open.token"
chmod 644 "$SECRETD/open.token"
refused_at_load "a token file others may read is refused at load" \
	"tcp = \"127.0.0.1:$PORT\"; tcp_token_file = \"$SECRETD/open.token\"; tcp_chains = ( \"open\" );" \
	"is accessible by group or others (mode 0644); it holds secrets: chmod 600 it"
refused_at_load "daemon.tcp_token_file without daemon.tcp is refused at load" \
	"tcp_token_file = \"$TOKFILE\";" \
	"are for daemon.tcp, which is not set"
refused_at_load "daemon.tcp_chains naming no chain is refused at load" \
	"tcp = \"127.0.0.1:$PORT\"; tcp_token_file = \"$TOKFILE\"; tcp_chains = ( \"open\", \"opne\" );" \
	"$TMPD/bad.conf:22: daemon.tcp_chains: no chain \"opne\" in the chains section; name one of its chains, or add it"
refused_at_load "daemon.admin_group naming no group is refused at load" \
	"admin_group = \"no-such-group-here\";" \
	"daemon.admin_group: no such group \"no-such-group-here\""

# ---- asking ----

# ask_on, ask (daemon_lib.sh), and admin METHOD PATH [BODY] on $ADM.
admin() { ask_on "$ADM" "$@"; }

# The answer, with a user's name: ASUSER USER SOCKET METHOD PATH [BODY].
as_user()
{
	local u=$1 s=$2 m=$3 p=$4 dir=-s

	shift 4
	[ "$s" = "$ADM" ] && dir=
	run $dir setpriv --reuid "$u" --regid "$(id -g "$u")" --clear-groups \
		curl -sS --unix-socket "$s" -X "$m" ${1:+--data-binary "$1"} \
		-w '%{http_code}' "http://keyway$p"
	CODE=$(tail -n 1 -- "$OUT")
	sed -i '$d' "$OUT"
}

# stop NAME: SIGTERM, and keywayd exits with status 0 (under a sanitizer,
# nothing it found).
stop()
{
	local rc

	kill -TERM "$PID"
	wait "$PID"
	rc=$?
	if [ "$rc" -eq 0 ]; then
		pass "$1"
	else
		fail "$1" "exit status $rc: $(tail -n 20 "$LOG")"
	fi
}

# Does process $1 listen on TCP?  The inodes of its sockets against those
# listening in /proc/net/tcp and tcp6.
listens_tcp()
{
	python3 - "$1" <<'PYEOF'
import os, sys
pid = sys.argv[1]
mine = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        t = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if t.startswith("socket:["):
        mine.add(t[8:-1])
n = 0
for f in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        lines = open(f).read().splitlines()[1:]
    except OSError:
        continue
    for l in lines:
        p = l.split()
        if p[3] == "0A" and p[9] in mine:
            n += 1
print(n)
PYEOF
}

start --admin-socket "$ADM"
trap 'kill -TERM $PID 2>/dev/null; tap_cleanup' EXIT

if [ -S "$ADM" ] && [ ! -e "$SOCKD/from-conf.sock" ]; then
	pass "--admin-socket wins over daemon.admin_socket"
else
	fail "--admin-socket wins over daemon.admin_socket" "$(ls -l "$SOCKD")"
fi
expect_eq "$(listens_tcp "$PID")" 0 "without daemon.tcp no TCP listener"

# ---- the round trip ----
admin GET /v1/keys
expect_eq "$CODE $(cat "$OUT")" '200 {"keys":[]}' "GET /v1/keys: none yet"
admin POST /v1/keys "{\"backend\":\"user_keys\",\"owner\":\"alice\",\"provider\":\"anthropic\",\"name\":\"first\",\"key\":\"$K1\"}"
expect_eq "$CODE $(jget done) $(jget scope) $(jget owner) $(jget masked)" \
	"201 stored user alice sk-a****cccc" "POST /v1/keys: 201 stored, masked"
admin POST /v1/keys "{\"backend\":\"user_keys\",\"owner\":\"alice\",\"provider\":\"anthropic\",\"key\":\"$K2\"}"
expect_answer 409 conflict "POST /v1/keys of a key that exists: 409"
ask POST /v1/resolve '{"provider":"anthropic","user":"alice"}'
expect_eq "$CODE $(jget key) $(jget backend)" "200 $K1 user_keys" \
	"the key stored on the admin socket resolves on the main one"
admin GET '/v1/keys?owner=alice&provider=anthropic&scope=user&backend=user_keys'
expect_eq "$CODE $(jget keys.0.owner) $(jget keys.0.name) $(jget keys.0.active) $(jget keys.0.masked)" \
	"200 alice first True sk-a****cccc" "GET /v1/keys with filters: the key, masked"
admin GET '/v1/keys?provider=openai'
expect_eq "$CODE $(cat "$OUT")" '200 {"keys":[]}' "GET /v1/keys?provider=openai: none"
admin GET '/v1/keys/user_keys/anthropic?owner=alice'
expect_eq "$CODE $(jget provider) $(jget owner) $(jget active)" \
	"200 anthropic alice True" "GET /v1/keys/BACKEND/PROVIDER: one key"
admin POST '/v1/keys/user_keys/anthropic/rotate?owner=alice' "{\"key\":\"$K2\"}"
expect_eq "$CODE $(jget done) $(jget masked)" "200 rotated sk-a****ffff" "rotate: 200"
ask POST /v1/resolve '{"provider":"anthropic","user":"alice"}'
expect_eq "$CODE $(jget key)" "200 $K2" "after rotate: the new key"
admin POST '/v1/keys/user_keys/anthropic/disable?owner=alice'
expect_eq "$CODE $(jget done)" "200 disabled" "disable: 200"
ask POST /v1/resolve '{"provider":"anthropic","user":"alice"}'
expect_answer 403 denied "a disabled key: 403 denied"
# A body of blanks is no body (read to its length: under ASan, a read
# past it fails the test).
admin POST '/v1/keys/user_keys/anthropic/enable?owner=alice' "$(printf '%1024s' '')"
expect_eq "$CODE $(jget done)" "200 enabled" "enable with a body of 1024 blanks: 200"
ask POST /v1/resolve '{"provider":"anthropic","user":"alice"}'
expect_eq "$CODE $(jget key)" "200 $K2" "enabled again: resolves"
admin DELETE '/v1/keys/user_keys/anthropic?owner=alice'
expect_eq "$CODE $(jget done)" "200 deleted" "DELETE: 200"
ask POST /v1/resolve '{"provider":"anthropic","user":"alice"}'
expect_answer 404 notfound "a deleted key: 404"
admin GET '/v1/keys/user_keys/anthropic?owner=alice'
expect_answer 404 notfound "GET of a deleted key: 404"
admin DELETE '/v1/keys/user_keys/anthropic?owner=alice'
expect_answer 404 notfound "DELETE of a deleted key: 404"
admin POST '/v1/keys/user_keys/anthropic/rotate?owner=alice' "{\"key\":\"$K1\"}"
expect_answer 404 notfound "rotate of no key: 404"

# ---- malformed requests; none repeats the key ----
admin POST /v1/keys "{\"backend\":\"user_keys\",\"provider\":\"anthropic\",\"key\":\"$K1\"}"
expect_answer 400 invalid "put without owner for a user key: 400"
expect_stdout_match '\{"error":"missing owner \(backend \\"user_keys\\" holds user keys: name the user\)",.*' \
	"put without owner: says what is missing"
admin POST /v1/keys "{\"backend\":\"nosuch\",\"owner\":\"alice\",\"provider\":\"anthropic\",\"key\":\"$K1\"}"
expect_answer 400 invalid "put to an unknown backend: 400"
admin POST /v1/keys "{\"backend\":\"open_env\",\"provider\":\"anthropic\",\"key\":\"$K1\"}"
expect_answer 400 invalid "put to a backend that stores no keys: 400"
admin POST /v1/keys '{"backend":"user_keys","owner":"alice","provider":"anthropic","key":"not-a-key-of-anthropic-format"}'
expect_answer 400 invalid "put of a key in the wrong format: 400"
admin POST /v1/keys "{\"backend\":\"user_keys\",\"owner\":\"alice\",\"provider\":\"anthropic\",\"key\":$K1}"
expect_answer 400 invalid "a body that is not JSON: 400, without repeating it"
admin POST /v1/keys "{\"backend\":\"user_keys\",\"owner\":\"alice\",\"provider\":\"anthropic\",\"$K1\":\"x\"}"
expect_answer 400 invalid "a key as a field name: 400, not repeated"
admin POST /v1/keys '{"backend":"user_keys","owner":"alice","provider":"anthropic"}'
expect_answer 400 invalid "put without a key: 400"
admin POST /v1/keys '{"backend":"user_keys","owner":"alice","provider":"anthropic","key":"x","scope":"galaxy"}'
expect_answer 400 invalid "an unknown scope: 400"
admin GET '/v1/keys?colour=red'
expect_answer 400 invalid "an unknown query parameter: 400"
admin GET /v1/nosuch
expect_answer 404 invalid "an unknown path on the admin socket: 404"
admin PUT /v1/keys/user_keys/anthropic
expect_answer 405 invalid "PUT of a key: 405"
admin GET /v1/health
expect_eq "$CODE $(jget status)" "200 ok" "GET /v1/health on the admin socket"
ask GET /v1/keys
expect_answer 404 invalid "the main socket serves no key management"

audit_has "the audit trail records the put, with root as actor" \
	'e["event"] == "put" and e["actor"]["user"] == "root" and e["actor"]["role"] == "sysadmin" and e["owner"] == "alice" and e["result"] == "ok"'
audit_has "the audit trail records the rotate" 'e["event"] == "rotate" and e["result"] == "ok"'
audit_has "the audit trail records the delete" 'e["event"] == "delete" and e["result"] == "ok"'

# ---- 429 for a quota used up ----
ask POST /v1/resolve '{"provider":"anthropic","user":"bob","chain":"metered"}'
ask POST /v1/resolve '{"provider":"anthropic","user":"bob","chain":"metered"}'
expect_eq "$CODE" 200 "the second of a quota of 2"
ask POST /v1/resolve '{"provider":"anthropic","user":"bob","chain":"metered"}'
expect_answer 429 denied "a quota used up: 429 denied"
expect_stdout_match '\{"error":".*quota metered_env 2/day per user used up for user bob \(2 of 2\); resets [0-9T:Z-]+","status":"denied"\}' \
	"429: the error names the quota"
ra=$(tr -d '\r' <"$HDRS" | sed -n 's/^[Rr]etry-[Aa]fter: //p')
now=$(date -u +%s)
want=$((86400 - now % 86400))
if [ -n "$ra" ] && [ "$ra" -ge $((want - 5)) ] && [ "$ra" -le $((want + 5)) ]; then
	pass "429: Retry-After is the seconds to the window's end"
else
	fail "429: Retry-After is the seconds to the window's end" "Retry-After \"$ra\", expected about $want"
fi
ask POST /v1/resolve '{"provider":"anthropic","chain":"metered"}'
expect_answer 403 denied "a quota that cannot count the request (no user): 403"

admin GET '/v1/usage?user=bob'
expect_eq "$CODE $(jget rows.0.user) $(jget rows.0.outcome) $(jget rows.2.outcome) $(jget truncated)" \
	"200 bob admitted denied False" "GET /v1/usage: the rows of the usage log"
admin GET '/v1/usage?since=yesterday'
expect_answer 400 invalid "GET /v1/usage with a bad since: 400"
admin GET '/v1/usage?backend=nosuch'
expect_answer 400 invalid "GET /v1/usage of an unknown backend: 400"

# ---- callers that are not admins ----
if [ -z "$ROOTY" ]; then
	for t in "not an admin: refused on the admin socket" \
		"the refusal is logged" \
		"the refusal is in the audit trail" \
		"a refused resolve is in the audit trail" \
		"200 requests of a caller not an admin at once: each refused" \
		"200 refusals on the admin socket: every one counted, in a record a second" \
		"daemon.admin_group: a member is served" \
		"a member acts under its own name"; do
		skip "$t" "needs root, setpriv, nobody, nogroup and daemon"
	done
else
	as_user nobody "$ADM" GET /v1/keys
	expect_answer 403 refused "not an admin: refused on the admin socket"
	if grep -q "audit: refused ls to nobody: not root, keywayd's user or in daemon.admin_group" "$LOG"; then
		pass "the refusal is logged"
	else
		fail "the refusal is logged" "$(cat "$LOG")"
	fi
	audit_has "the refusal is in the audit trail" \
		"e[\"event\"] == \"refused\" and e[\"op\"] == \"ls\" and e[\"caller\"][\"name\"] == \"nobody\" and e[\"caller\"][\"uid\"] == $(id -u nobody) and e[\"caller\"][\"pid\"] > 0"
	as_user nobody "$SOCK" POST /v1/resolve '{"provider":"anthropic","user":"dan"}'
	audit_has "a refused resolve is in the audit trail" \
		'e["event"] == "refused" and e["op"] == "resolve" and e["caller"]["name"] == "nobody" and e["chain"] == "default" and e["provider"] == "anthropic" and e["reason"] == "not allowed by daemon.clients"'

	# A flood of refusals on the admin socket: each counted, in a
	# record a second.
	sleep 1.1
	from=$(wc -l <"$AUDIT")
	run setpriv --reuid nobody --regid "$(id -g nobody)" --clear-groups \
		/usr/bin/python3 -c "$FLOOD_PY" 200 "$ADM" /v1/keys '{}'
	expect_stdout "403:200" "200 requests of a caller not an admin at once: each refused"
	ADM_REFUSED="e['op'] == 'put' and e['caller'].get('uid') == $(id -u nobody)"
	wait_for '[ "$(refusals "$from" "$ADM_REFUSED" | cut -d" " -f2)" -ge 200 ]'
	read -r recs total <<<"$(refusals "$from" "$ADM_REFUSED")"
	if [ "$total" -eq 200 ] && [ "$recs" -le 4 ]; then
		pass "200 refusals on the admin socket: every one counted, in a record a second"
	else
		fail "200 refusals on the admin socket: every one counted, in a record a second" "$recs records of $total refusals"
	fi

	conf 'admin_group = "nogroup";' | write_conf "$CONF"
	kill -HUP "$PID"
	wait_for 'grep -q "reloaded" "$LOG"'
	as_user nobody "$ADM" POST /v1/keys "{\"backend\":\"user_keys\",\"owner\":\"carol\",\"provider\":\"anthropic\",\"key\":\"$K3\"}"
	expect_eq "$CODE $(jget done)" "201 stored" "daemon.admin_group: a member is served"
	audit_has "a member acts under its own name" \
		'e["event"] == "put" and e["actor"]["user"] == "nobody" and e["owner"] == "carol"'
fi
stop "keywayd with an admin socket exits with status 0"
expect_missing "$ADM" "SIGTERM: the admin socket is removed"
trap tap_cleanup EXIT

# ---- TCP ----
conf "$TCPSET" | write_conf "$CONF"
start
trap 'kill -TERM $PID 2>/dev/null; tap_cleanup' EXIT
expect_eq "$(listens_tcp "$PID")" 1 "with daemon.tcp: one TCP listener"
if [ -S "$SOCKD/from-conf.sock" ]; then
	pass "without --admin-socket: daemon.admin_socket"
else
	fail "without --admin-socket: daemon.admin_socket" "$(ls -l "$SOCKD")"
fi
stop "keywayd serving TCP, first start, exits with status 0"

# Without admin_group and admin_socket_mode, only root and keywayd's own
# user need the admin socket: it is 0600.
conf "$TCPSET" | sed '/admin_socket_mode = /d' | write_conf "$CONF"
start
expect_eq "$(stat -c '%a' "$SOCKD/from-conf.sock")" 600 \
	"without admin_group: the admin socket is 0600"

# tcp [CURL_ARGS...] PATH [BODY]
tcp()
{
	local p=$1

	shift
	run -s curl -sS -D "$TMPD/hdrs.tcp" "${CURL_AUTH[@]}" \
		${1:+--data-binary "$1"} -w '%{http_code}' "http://127.0.0.1:$PORT$p"
	CODE=$(tail -n 1 -- "$OUT")
	sed -i '$d' "$OUT"
}
CURL_AUTH=()
tcp /v1/resolve '{"provider":"anthropic","chain":"open"}'
expect_answer 401 refused "TCP without a token: 401"
CURL_AUTH=(-H "Authorization: Bearer tcp-token-wrong-wrong-wrong-wrong-wrongwrong")
tcp /v1/resolve '{"provider":"anthropic","chain":"open"}'
expect_answer 401 refused "TCP with a wrong token: 401"
expect_lacks "$OUT" "$TOKEN" "TCP with a wrong token: the token is not in the answer"
CURL_AUTH=(-H "Authorization: Bearer ${TOKEN%?}")
tcp /v1/health
expect_answer 401 refused "TCP with the token less its last character: 401"
CURL_AUTH=(-H "Authorization: Basic $TOKEN")
tcp /v1/health
expect_answer 401 refused "TCP with the token as Basic: 401"
audit_has "a TCP request with a wrong token is in the audit trail" \
	'e["event"] == "refused" and e["caller"]["name"].startswith("tcp 127.0.0.1:") and e["reason"].startswith("a wrong token") and "uid" not in e["caller"]'
# A flood of wrong tokens: each counted, in a record a second.  The two
# wrong tokens above are written first (the second is held back until
# keywayd's next tick, a second or two on a busy machine).
TCP_REFUSED="e['caller']['name'].startswith('tcp 127.0.0.1:') and e['reason'].startswith('a wrong token')"
wait_for '[ "$(refusals 0 "$TCP_REFUSED" | cut -d" " -f2)" -ge 2 ]'
sleep 1.1
from=$(wc -l <"$AUDIT")
logfrom=$(wc -l <"$LOG")
run python3 -c "$FLOOD_PY" 300 "127.0.0.1:$PORT" /v1/resolve \
	'{"provider":"anthropic","chain":"open"}' "Authorization: Bearer not-the-token"
expect_stdout "401:300" "300 TCP requests with a wrong token at once: each answered 401"
wait_for '[ "$(refusals "$from" "$TCP_REFUSED" | cut -d" " -f2)" -ge 300 ]'
read -r recs total <<<"$(refusals "$from" "$TCP_REFUSED")"
expect_eq "$total" 300 "300 wrong tokens: every one counted in the audit trail"
lines=$(tail -n +$((logfrom + 1)) "$LOG" | grep -c "audit: refused resolve to tcp 127.0.0.1:")
if [ "$recs" -le 4 ] && [ "$lines" -eq "$recs" ]; then
	pass "300 wrong tokens: in a record and a log line a second, not one each"
else
	fail "300 wrong tokens: in a record and a log line a second, not one each" "$recs records, $lines log lines"
fi
CURL_AUTH=(-H "Authorization: Bearer $TOKEN")
tcp /v1/resolve '{"provider":"anthropic","chain":"open"}'
expect_eq "$CODE $(jget key)" "200 $K_ENV" "TCP with the token: 200 and the key"
L=$(jget lease)
tcp /v1/report "{\"lease\":\"$L\",\"outcome\":\"unused\"}"
expect_eq "$CODE $(jget outcome)" "200 unused" "TCP: a lease reported"
tcp /v1/resolve '{"provider":"anthropic","user":"bob","chain":"metered"}'
expect_answer 403 refused "TCP: a chain not in daemon.tcp_chains is refused"
audit_has "a TCP caller refused a chain is in the audit trail" \
	'e["event"] == "refused" and e["op"] == "resolve" and e["chain"] == "metered" and e["reason"] == "not in daemon.tcp_chains"'
tcp /v1/keys
expect_answer 404 invalid "TCP serves no key management"
tcp /v1/health
leases=$(jget leases)
expect_eq "$CODE $(jget status) ${leases:+leases}" "200 ok leases" \
	"TCP: health with the token, and the leases held"
stop "keywayd serving TCP exits with status 0"
trap tap_cleanup EXIT

# A wrong token takes from TCP's daemon.rate_limit, as a request served
# does.
conf "$TCPSET rate_limit = 5;" | sed '/admin_socket_mode = /d' | write_conf "$CONF"
start
trap 'kill -TERM $PID 2>/dev/null; tap_cleanup' EXIT
run python3 -c "$FLOOD_PY" 50 "127.0.0.1:$PORT" /v1/resolve \
	'{"provider":"anthropic","chain":"open"}' "Authorization: Bearer not-the-token"
read -r refused limited <<<"$(sed -E 's/401:([0-9]+) 429:([0-9]+)/\1 \2/' "$OUT")"
if [ "${refused:-x}" -ge 5 ] 2>/dev/null && [ "${limited:-x}" -ge 1 ] 2>/dev/null &&
	[ $((refused + limited)) -eq 50 ]; then
	pass "TCP, daemon.rate_limit = 5: of 50 wrong tokens at once, those past the rate answered 429"
else
	fail "TCP, daemon.rate_limit = 5: of 50 wrong tokens at once, those past the rate answered 429" "$(cat "$OUT")"
fi
sleep 1.2
# Every 127.x.y.z is loopback, and any local user may bind one: the
# rate is that of all TCP callers, not of an address.
lim=0
for i in $(seq 2 21); do
	c=$(curl -s -o /dev/null -w '%{http_code}' --interface "127.0.0.$i" \
		-H "Authorization: Bearer not-the-token" \
		-d '{"provider":"anthropic","chain":"open"}' \
		"http://127.0.0.1:$PORT/v1/resolve")
	[ "$c" = 429 ] && lim=$((lim + 1))
done
# (A rate per address would answer every one of them: none 429.)
if [ "$lim" -ge 1 ]; then
	pass "TCP, daemon.rate_limit = 5: 20 wrong tokens from 20 loopback addresses share one rate"
else
	fail "TCP, daemon.rate_limit = 5: 20 wrong tokens from 20 loopback addresses share one rate" "429 answered $lim times"
fi
sleep 1.2
CURL_AUTH=(-H "Authorization: Bearer $TOKEN")
tcp /v1/resolve '{"provider":"anthropic","chain":"open"}'
expect_eq "$CODE $(jget key)" "200 $K_ENV" "TCP: a second later, the token is served again"
stop "keywayd serving TCP with a rate exits with status 0"
trap tap_cleanup EXIT

# ---- daemon.socket_group and socket_mode ----
if [ -z "$ROOTY" ]; then
	for t in "daemon.socket_group and socket_mode: the socket's group and mode" \
		"daemon.admin_group and admin_socket_mode: the admin socket's group and mode" \
		"a member of the group may connect" "anyone else may not" \
		"keywayd with a socket group exits with status 0"; do
		skip "$t" "needs root, setpriv, nobody, nogroup and daemon"
	done
else
	conf 'socket_group = "nogroup"; admin_group = "nogroup";' |
		sed -e 's/admin_socket_mode = "0666"/admin_socket_mode = "0640"/' \
			-e 's/	socket_mode = "0666"/	socket_mode = "0660"/' |
		write_conf "$CONF"
	start
	trap 'kill -TERM $PID 2>/dev/null; tap_cleanup' EXIT
	expect_eq "$(stat -c '%a %G' "$SOCK")" "660 nogroup" \
		"daemon.socket_group and socket_mode: the socket's group and mode"
	expect_eq "$(stat -c '%a %G' "$SOCKD/from-conf.sock")" "640 nogroup" \
		"daemon.admin_group and admin_socket_mode: the admin socket's group and mode"
	as_user nobody "$SOCK" POST /v1/resolve '{"provider":"anthropic","chain":"open"}'
	expect_eq "$CODE" 200 "a member of the group may connect"
	# /usr/bin's: a python3 of root's own may be out of daemon's reach.
	run setpriv --reuid daemon --regid "$(id -g daemon)" --clear-groups \
		/usr/bin/python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    print("connected")
except OSError as e:
    print(type(e).__name__)' "$SOCK"
	expect_stdout "PermissionError" "anyone else may not"
	stop "keywayd with a socket group exits with status 0"
	trap tap_cleanup EXIT
fi

if grep -qF -e "$K1" -e "$K2" -e "$K3" -e "$TOKEN" "$LOG" "$AUDIT"; then
	fail "no key or token in keywayd's log or the audit trail"
else
	pass "no key or token in keywayd's log or the audit trail"
fi
expect_no_leaks
done_testing
