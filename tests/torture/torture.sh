#!/bin/bash
# torture.sh - the allocation torture (tests/torture/torture.c) of every
# scenario: the store modules on their own, the vault module against
# tests/vault/vault_double.py and the redis ledger against a redis-server
# on loopback, both started here.  Without python3 or redis-server, their
# scenarios are skipped and say why.  TAP on stdout: one line per
# scenario with its number of torture points, and a total.
#
# TORTURE_ARGS picks scenarios by a part of their names
# (TORTURE_ARGS="sqlite"); KWT_MAX_POINTS caps each sweep.
set -u

: "${KEYWAY_BUILDDIR:?run it through make check}"
: "${KEYWAY_SRCDIR:?run it through make check}"
TORTURE=$KEYWAY_BUILDDIR/tests/torture/torture
[ -x "$TORTURE" ] || { echo "Bail out! $TORTURE is not built"; exit 99; }

TMPD=$(mktemp -d "${TMPDIR:-/tmp}/keyway-torture-sh.XXXXXX") || exit 99
chmod 700 "$TMPD"
VPID=
RPID_FILE=$TMPD/redis/redis.pid
cleanup()
{
	[ -n "$VPID" ] && kill "$VPID" 2>/dev/null && wait "$VPID" 2>/dev/null
	if [ -s "$RPID_FILE" ]; then
		kill "$(cat "$RPID_FILE")" 2>/dev/null
		for _ in $(seq 100); do
			kill -0 "$(cat "$RPID_FILE" 2>/dev/null)" 2>/dev/null ||
				break
			sleep 0.05
		done
	fi
	rm -rf -- "$TMPD"
}
trap cleanup EXIT

free_port()
{
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- the Vault stand-in ----
if command -v python3 >/dev/null 2>&1 &&
	sh "$KEYWAY_SRCDIR/tests/vault/mkcerts.sh" "$TMPD/certs" >/dev/null 2>&1; then
	python3 "$KEYWAY_SRCDIR/tests/vault/vault_double.py" \
		--cert "$TMPD/certs/server.pem" --key "$TMPD/certs/server.key" \
		--port-file "$TMPD/vport" --root-token torture-root \
		>/dev/null 2>"$TMPD/vault.log" &
	VPID=$!
	for _ in $(seq 100); do
		[ -s "$TMPD/vport" ] && break
		sleep 0.1
	done
	if [ -s "$TMPD/vport" ]; then
		printf 'torture-root\n' >"$TMPD/token"
		chmod 600 "$TMPD/token"
		export KWT_VAULT_ADDR="https://127.0.0.1:$(cat "$TMPD/vport")"
		export KWT_VAULT_CA=$TMPD/certs/ca.pem
		export KWT_VAULT_TOKEN_FILE=$TMPD/token
	else
		echo "# the Vault stand-in did not start: $(tail -1 "$TMPD/vault.log")"
	fi
else
	echo "# no python3, or no certificates: the vault scenarios are skipped"
fi

# ---- Redis ----
if command -v redis-server >/dev/null 2>&1 &&
	command -v redis-cli >/dev/null 2>&1 && command -v python3 >/dev/null; then
	RPORT=$(free_port)
	RPASS=kw-torture-$RANDOM$RANDOM$RANDOM
	mkdir -m 700 "$TMPD/redis"
	cat >"$TMPD/redis/redis.conf" <<CONF
port $RPORT
bind 127.0.0.1
requirepass $RPASS
dir $TMPD/redis
save ""
appendonly no
daemonize yes
pidfile $RPID_FILE
logfile $TMPD/redis/redis.log
CONF
	if redis-server "$TMPD/redis/redis.conf" >/dev/null; then
		for _ in $(seq 100); do
			[ "$(REDISCLI_AUTH=$RPASS redis-cli -p "$RPORT" \
				--no-auth-warning PING 2>/dev/null)" = PONG ] && break
			sleep 0.05
		done
		printf '%s\n' "$RPASS" >"$TMPD/redis.pass"
		chmod 600 "$TMPD/redis.pass"
		export KWT_REDIS_PORT=$RPORT
		export KWT_REDIS_PASS_FILE=$TMPD/redis.pass
	else
		echo "# redis-server did not start: the redis scenarios are skipped"
	fi
else
	echo "# redis-server is not installed: the redis scenarios are skipped"
fi

start=$(date +%s)
# shellcheck disable=SC2086
"$TORTURE" ${TORTURE_ARGS:-} | tee "$TMPD/out"
rc=${PIPESTATUS[0]}
total=$(sed -n 's/^ok [0-9]* - [^:]*: \([0-9]*\) torture points.*/\1/p' "$TMPD/out" |
	awk '{ n += $1 } END { print n + 0 }')
echo "# $total torture points in all, $(($(date +%s) - start)) s"
exit "$rc"
