#!/bin/bash
# daemon_slow.sh - TAP tests of keywayd(8) with a slow backend: a vault
# backend whose server (tests/vault/vault_double.py) answers after
# SLOW_MS, and an env chain.  While several resolves and an explain wait
# on Vault, a resolve through the env chain is answered at once; a client
# that goes away while its resolve waits leaves keywayd serving (and, in
# the sanitizer build, nothing leaked at exit); SIGHUP while a resolve
# waits leaves it on the configuration it started with; SIGTERM while one
# waits answers it before keywayd exits; --max-connections is at most
# 900.  keywayd runs with --threads 1, the fewest there ever were.  Run by
# `make check`, or by hand as lib.sh says.

. "$(dirname -- "$0")/lib.sh" || exit 99

KWD=$KEYWAY_BUILDDIR/daemon/keywayd
DOUBLE=$KEYWAY_SRCDIR/tests/vault/vault_double.py
MKCERTS=$KEYWAY_SRCDIR/tests/vault/mkcerts.sh
[ -x "$KWD" ] || bail_out "$KWD is not built"
if ! command -v openssl >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
	echo "1..0 # SKIP openssl and curl are needed to run the Vault stand-in"
	exit 0
fi

# How long Vault takes to answer a read of acme's key, and how soon a
# resolve that does not touch Vault must be answered meanwhile.
SLOW_MS=2500
PROMPT_MS=1000

ROOT=hvs.daemon-slow-root-token-0061aa
K_VAULT=sk-ant-daemon-slow-vault-0001aaaa
K_ENV=sk-ant-daemon-slow-env-0002bbbb
MASTER=5a1b2c3d4e5f60718293a4b5c6d7e8f90f1e2d3c4b5a69788796a5b4c3d2e1f0
secret "$ROOT" "$K_VAULT" "$K_ENV" "$MASTER"
export KEYWAY_MASTER_KEY=$MASTER
export ANTHROPIC_API_KEY=$K_ENV

CERTS=$SECRETD/certs
sh "$MKCERTS" "$CERTS" || bail_out "cannot make certificates"
cp "$CERTS/ca.pem" "$TMPD/" || bail_out "cannot copy the CA"

/usr/bin/python3 "$DOUBLE" --cert "$CERTS/server.pem" --key "$CERTS/server.key" \
	--port-file "$TMPD/port" --root-token "$ROOT" \
	>"$TMPD/double.out" 2>"$TMPD/double.err" &
DPID=$!
PID=
trap 'kill -TERM $PID 2>/dev/null; kill "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; tap_cleanup' EXIT
for _ in $(seq 100); do
	[ -s "$TMPD/port" ] && break
	sleep 0.1
done
[ -s "$TMPD/port" ] || bail_out "the Vault stand-in did not start: $(cat "$TMPD/double.err")"
ADDR=https://127.0.0.1:$(cat "$TMPD/port")

ctl()
{
	curl -sS --fail --cacert "$TMPD/ca.pem" -X POST "$ADDR/__double/$1" \
		-H 'Content-Type: application/json' -d "$2" >/dev/null ||
		bail_out "the stand-in refused $1 $2"
}
ctl seed '{"mount": "secret", "path": "keyway/org/acme/anthropic", "data": {"api_key": "'"$K_VAULT"'"}}'
ctl fault '{"rules": [{"path": "keyway/org/acme/", "delay_ms": '"$SLOW_MS"', "count": -1}]}'
printf '%s\n' "$ROOT" >"$SECRETD/token"
chmod 600 "$SECRETD/token"

SOCK=$TMPD/keyway.sock
LOG=$TMPD/daemon.log
CONF=$TMPD/daemon.conf

# conf SLOW_CHAIN: chains SLOW_CHAIN (Vault, slow for acme) and fast (env).
conf()
{
	write_conf "$CONF" <<EOF
backends: {
	v: { module = "vault"; address = "$ADDR"; scope = "org";
	     ca_file = "ca.pem"; timeout_ms = 10000; retries = 0; cache_ttl = 0;
	     auth = { method = "token"; token_file = "$SECRETD/token"; }; };
	env: { module = "env"; };
};
chains: {
	$1 = ( { backend = "v"; control = "required"; } );
	fast = ( { backend = "env"; control = "required"; } );
};
EOF
}

wait_for()
{
	local i

	for i in $(seq 1 100); do
		eval "$1" && return 0
		sleep 0.1
	done
	return 1
}

# post N PATH BODY: POST in the background; the answer's body and HTTP
# status go to $TMPD/a.N, curl's exit status to $TMPD/rc.N.  More curl
# options may follow BODY.
post()
{
	local n=$1 p=$2 b=$3

	shift 3
	( curl -sS --unix-socket "$SOCK" -X POST "$@" \
		-H 'Content-Type: application/json' --data-binary "$b" \
		-w '\n%{http_code}\n' "http://keyway$p" \
		>"$SECRETD/a.$n" 2>"$TMPD/e.$n"
	  echo $? >"$TMPD/rc.$n" ) &
}

# answer N: "CODE KEY" of the answer post N got (after it ended).
answer()
{
	wait_for "[ -s \"$TMPD/rc.$1\" ]" || { echo "none"; return; }
	python3 -c 'import json, sys
body, code = open(sys.argv[1]).read().rsplit("\n", 2)[:2]
try:
    k = json.loads(body).get("key") or json.loads(body).get("result")
except ValueError:
    k = body
print(code, k)' "$SECRETD/a.$1" 2>/dev/null || echo "bad $(cat "$TMPD/e.$1")"
}

# pending N...: none of posts N... has been answered yet.  (The double
# logs a request once it answered it, so its log cannot tell one under
# way; a post is given SENT_MS to be sent.)
SENT_MS=500
pending()
{
	local n

	for n in "$@"; do
		[ -e "$TMPD/rc.$n" ] && return 1
	done
	return 0
}
settle() { sleep "0.$((SENT_MS / 100))"; }

# fast: a resolve through the env chain, timed: "CODE KEY MS".
fast()
{
	local t0 t1 out

	t0=$(date +%s%N)
	out=$(curl -sS --max-time 20 --unix-socket "$SOCK" -X POST \
		-H 'Content-Type: application/json' \
		--data-binary '{"provider":"anthropic","user":"bob","chain":"fast"}' \
		-w '\n%{http_code}' "http://keyway/v1/resolve" 2>&1)
	t1=$(date +%s%N)
	printf '%s %s %d\n' "${out##*$'\n'}" \
		"$(printf '%s' "${out%$'\n'*}" | python3 -c 'import json, sys
print(json.load(sys.stdin).get("key"))' 2>/dev/null)" $(((t1 - t0) / 1000000))
}

# prompt NAME: a resolve through the env chain answers 200 with its key
# in less than PROMPT_MS.
prompt()
{
	local r code key ms

	r=$(fast)
	read -r code key ms <<<"$r"
	if [ "$code" = 200 ] && [ "$key" = "$K_ENV" ] && [ "$ms" -lt "$PROMPT_MS" ]; then
		pass "$1 (${ms} ms)"
	else
		fail "$1" "HTTP $code in $ms ms, wanted 200 with the env key in less than $PROMPT_MS ms"
	fi
}

start()
{
	rm -f "$SOCK"
	"$KWD" -c "$CONF" --socket "$SOCK" --threads 1 2>>"$LOG" &
	PID=$!
	wait_for '[ -S "$SOCK" ]' || bail_out "keywayd did not start: $(cat "$LOG")"
}

SLOW='{"provider":"anthropic","org":"acme","chain":"slow"}'

conf slow
run "$KWD" -c "$CONF" --socket "$SOCK" --max-connections 901
expect_exit 2 "--max-connections past 900 (a thread each, select()'s descriptors) is refused"
expect_stderr "keywayd: --max-connections 901: expected a number from 1 to 900"
start

# ---- resolves that wait on Vault stall no one else ----

prompt "an env resolve, nothing else under way"
for n in 1 2 3; do
	post "$n" /v1/resolve "$SLOW"
done
post 4 /v1/explain "$SLOW"
settle
prompt "an env resolve while 3 resolves and an explain wait on Vault"
prompt "and another, on a new connection"
if pending 1 2 3 4; then
	pass "the slow requests were still waiting"
else
	fail "the slow requests were still waiting" "one was answered before the env resolves"
fi
for n in 1 2 3; do
	expect_eq "$(answer "$n")" "200 $K_VAULT" "slow resolve $n: 200 with Vault's key"
done
expect_eq "$(answer 4)" "200 found" "the slow explain: 200, found"

# ---- a client that goes away while its resolve waits ----

post 5 /v1/resolve "$SLOW" --max-time 0.5
wait_for "[ -s \"$TMPD/rc.5\" ]"
expect_eq "$(cat "$TMPD/rc.5")" 28 "a client gives up on a slow resolve (curl: timed out)"
prompt "an env resolve after the client went away, its resolve still waiting"
sleep $((SLOW_MS / 1000 + 1))
if kill -0 "$PID" 2>/dev/null; then
	pass "keywayd lives on once the abandoned resolve ends"
else
	fail "keywayd lives on once the abandoned resolve ends" "$(tail -5 "$LOG")"
fi
prompt "an env resolve after the abandoned resolve ended"

# ---- SIGHUP while a resolve waits: it keeps its configuration ----

post 6 /v1/resolve "$SLOW"
settle
conf slow2
kill -HUP "$PID"
wait_for 'grep -q "reloaded" "$LOG"' || fail "SIGHUP: reloaded" "$(cat "$LOG")"
if pending 6; then
	pass "SIGHUP came while a resolve waited on Vault"
else
	fail "SIGHUP came while a resolve waited on Vault" "it was answered before"
fi
post 7 /v1/resolve "$SLOW"
expect_eq "$(answer 7 | cut -d' ' -f1)" 400 "after SIGHUP, chain \"slow\" is gone: 400"
prompt "an env resolve on the new configuration"
expect_eq "$(answer 6)" "200 $K_VAULT" \
	"the resolve under way at SIGHUP is answered on the configuration it began with"

# ---- SIGTERM while a resolve waits: it is answered, then keywayd exits ----

post 8 /v1/resolve '{"provider":"anthropic","org":"acme","chain":"slow2"}'
settle
kill -TERM "$PID"
if pending 8; then
	pass "SIGTERM came while a resolve waited on Vault"
else
	fail "SIGTERM came while a resolve waited on Vault" "it was answered before"
fi
wait "$PID"
rc=$?
PID=
expect_eq "$(answer 8)" "200 $K_VAULT" "SIGTERM: the resolve under way is answered"
expect_eq "$rc" 0 "SIGTERM: keywayd exits with status 0"
expect_eq "$(tail -n 1 "$LOG")" "keywayd: stopped" "SIGTERM: logged"
if grep -q 'Sanitizer\|runtime error' "$LOG"; then
	fail "nothing the sanitizers saw" "$(grep -A5 'Sanitizer\|runtime error' "$LOG" | head -20)"
else
	pass "nothing the sanitizers saw"
fi
expect_eq "$(grep -c 'is not used: each connection has a thread of its own' "$LOG")" 1 \
	"--threads is said to do nothing, once"

expect_no_leaks
done_testing
