#!/bin/bash
# daemon.sh - allocation torture of keywayd's requests: keywayd linked on
# the torture build (tests/torture/keywayd) is started once per N with
# KWT_PROCESS_FAIL_AT=N, which fails the Nth allocation keyway's code
# makes in the threads that serve requests (kwt.h), and asked
# /v1/resolve, /v1/report with the lease it gave, and /v1/explain.  Each
# answer must be right (200, the key) or a clean error: an HTTP status of
# 500 or more with a JSON body that holds no key.  After SIGTERM nothing
# those threads allocated may be left, and the daemon must exit 0.  Ends
# when a run fails no allocation.  TAP; skipped without curl.
set -u

: "${KEYWAY_BUILDDIR:?run it through make check}"
KWD=$KEYWAY_BUILDDIR/tests/torture/keywayd
[ -x "$KWD" ] || { echo "Bail out! $KWD is not built"; exit 99; }
if ! command -v curl >/dev/null 2>&1; then
	echo "1..0 # SKIP curl is not installed"
	exit 0
fi
echo "1..1"

TMPD=$(mktemp -d "${TMPDIR:-/tmp}/keyway-torture-d.XXXXXX") || exit 99
chmod 700 "$TMPD"
PID=
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf -- "$TMPD"' EXIT

export KEYWAY_MODULE_DIR=$KEYWAY_BUILDDIR/tests/torture/modules/.libs
export KEYWAY_MASTER_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
KEY=sk-ant-SECRET-torture-daemon-000001
export ANTHROPIC_API_KEY=$KEY
unset KEYWAY_CONFIG API_KEY_ENCRYPTION_KEY KEYWAY_PASSPHRASE

SOCK=$TMPD/keyway.sock
cat >"$TMPD/keyway.conf" <<CONF
keyway: {
	master_key = { source = "env"; };
	ledger: { module = "sqlite"; path = "ledger.db"; };
	audit: { sink = "jsonl"; path = "audit.jsonl"; };
};
backends: {
	server_env: { module = "env";
		quota = ( { limit = 100000000; period = "day"; per = "user"; } ); };
};
chains: { default = ( { backend = "server_env"; control = "required"; } ); };
daemon: { socket = "$SOCK"; };
CONF
chmod 600 "$TMPD/keyway.conf"

# ask PATH BODY: CODE and BODY of the answer; code 000 when there was none.
ask()
{
	BODY=$(curl -sS --max-time 10 --unix-socket "$SOCK" -X POST \
		-H 'Content-Type: application/json' --data-binary "$2" \
		-w '\n%{http_code}' "http://keyway$1" 2>/dev/null)
	CODE=${BODY##*$'\n'}
	BODY=${BODY%$'\n'*}
	[ -n "$CODE" ] || CODE=000
}

BAD=0
# clean WHAT: the last answer was right (200 and want in the body) or a
# clean failure.
clean()
{
	local what=$1 want=$2

	if [ "$CODE" = 200 ]; then
		case $BODY in *"$want"*) return 0 ;; esac
		echo "# N=$n: $what answered 200 without $want: $BODY"
	elif [ "$CODE" -ge 500 ] 2>/dev/null &&
		python3 -c 'import json, sys; j = json.loads(sys.argv[1]); sys.exit(0 if isinstance(j.get("status"), str) and isinstance(j.get("error"), str) else 1)' "$BODY" 2>/dev/null; then
		case $BODY in *SECRET*)
			echo "# N=$n: $what: a key in the error: $BODY"
			return 1 ;;
		esac
		return 0
	else
		echo "# N=$n: $what answered $CODE: ${BODY:-nothing}"
	fi
	return 1
}

run()
{
	local ok=0 lease

	rm -f -- "$TMPD/report" "$SOCK"
	KWT_PROCESS_FAIL_AT=$n KWT_REPORT=$TMPD/report \
		"$KWD" -c "$TMPD/keyway.conf" --threads 1 \
		>"$TMPD/out" 2>"$TMPD/err" &
	PID=$!
	for _ in $(seq 200); do
		[ -S "$SOCK" ] && break
		sleep 0.05
	done
	[ -S "$SOCK" ] || { echo "# N=$n: keywayd did not start: $(tail -1 "$TMPD/err")"; return 1; }
	ask /v1/resolve '{"provider": "anthropic", "user": "alice"}'
	clean resolve "\"key\":\"$KEY\"" || ok=1
	lease=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get("lease", ""))' "$BODY" 2>/dev/null)
	if [ -n "$lease" ]; then
		ask /v1/report "{\"lease\": \"$lease\", \"outcome\": \"unused\"}"
		clean report "\"outcome\":\"unused\"" || ok=1
	fi
	ask /v1/explain '{"provider": "anthropic", "user": "alice"}'
	clean explain '"server_env"' || ok=1
	kill -TERM "$PID"
	wait "$PID"
	rc=$?
	PID=
	if [ "$rc" -ne 0 ]; then
		echo "# N=$n: keywayd exited $rc: $(grep -v '^keywayd: \(serving\|stopping\|stopped\)' "$TMPD/err" | head -5)"
		ok=1
	fi
	if [ "$ok" -ne 0 ]; then
		echo "# N=$n failed $(sed -n 's/^where //p' "$TMPD/report" 2>/dev/null)"
	fi
	if ! [ -s "$TMPD/report" ]; then
		echo "# N=$n: keywayd wrote no report"
		return 1
	fi
	if ! grep -qx 'live 0' "$TMPD/report"; then
		echo "# N=$n: left after exit:"
		sed -n 's/^#/#/p' "$TMPD/report"
		ok=1
	fi
	return $ok
}

start=$(date +%s)
n=0
run || BAD=$((BAD + 1))
total=$(sed -n 's/^counted //p' "$TMPD/report" 2>/dev/null)
points=0
n=1
while :; do
	run || BAD=$((BAD + 1))
	grep -qx 'failed 1' "$TMPD/report" 2>/dev/null || break
	points=$n
	n=$((n + 1))
done
msg="keywayd resolve, report, explain: $points torture points (${total:-?} counted without a failure), $(($(date +%s) - start)) s"
if [ "$BAD" -eq 0 ]; then
	echo "ok 1 - $msg"
else
	echo "not ok 1 - $msg, $BAD bad"
fi
