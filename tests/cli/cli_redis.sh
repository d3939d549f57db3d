#!/bin/bash
# cli_redis.sh - TAP tests of the redis ledger (kw_redis.so) against a real
# redis-server, started here on a free loopback port with a password, in a
# temporary directory, and stopped at the end.  Three processes, each with
# its own keyway.conf as three hosts would have, each resolving from
# several threads (tests/hammer), count one quota exactly; Redis stopped
# and started again mid-run; processes SIGKILLed mid-run; a refund seen by
# another host; a wrong password, a Redis that does not answer, settings
# refused; and the password searched for in everything keyway wrote.
# Skipped (1..0 # SKIP) only when redis-server is not installed, which
# scripts/deps.sh installs.

. "$(dirname -- "$0")/lib.sh" || exit 99

HAMMER=$KEYWAY_BUILDDIR/tests/hammer
if ! command -v redis-server >/dev/null 2>&1 ||
	! command -v redis-cli >/dev/null 2>&1; then
	echo "1..0 # SKIP redis-server is not installed (scripts/deps.sh)"
	exit 0
fi
[ -x "$HAMMER" ] || bail_out "$HAMMER is not built"

# The windows are days: keep clear of midnight UTC.
left=$((86400 - $(date -u +%s) % 86400))
if [ "$left" -lt 180 ]; then
	echo "# waiting ${left}s for midnight UTC to pass"
	sleep $((left + 2))
fi
DAY=$(($(date -u +%s) / 86400 * 86400))

KEY=sk-ant-redis-fleet-server-key-00001
PASS=kw-redis-pass-7Hq2xZ0pLm4Rt9
WRONG=kw-wrong-pass-Yb3Nc8Vd1Ke6
secret "$KEY" "$PASS" "$WRONG"
export ANTHROPIC_API_KEY=$KEY

# ---- the Redis server ----

free_port()
{
	local p

	if [ -n "$PY" ]; then
		$PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
		return
	fi
	while :; do
		p=$((20000 + RANDOM % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
			echo "$p"
			return
		}
	done
}

PORT=$(free_port)
RDIR=$TMPD/redis
RCONF=$SECRETD/redis.conf
mkdir -m 700 "$RDIR" || bail_out "cannot create $RDIR"
# Every write reaches the disk before Redis answers: a Redis stopped and
# started again has every count it acknowledged.
write_conf "$RCONF" <<EOF
port $PORT
bind 127.0.0.1 -::1
unixsocket $RDIR/redis.sock
unixsocketperm 700
requirepass $PASS
dir $RDIR
dbfilename dump.rdb
save ""
appendonly yes
appendfsync always
daemonize yes
pidfile $RDIR/redis.pid
logfile $RDIR/redis.log
EOF

rcli()
{
	REDISCLI_AUTH=$PASS redis-cli -p "$PORT" --no-auth-warning "$@"
}

redis_start()
{
	local i

	rm -f -- "$RDIR/redis.pid"
	redis-server "$RCONF" >/dev/null || bail_out "redis-server does not start"
	for i in $(seq 100); do
		[ "$(rcli PING 2>/dev/null)" = PONG ] && return 0
		sleep 0.05
	done
	bail_out "redis-server does not answer on port $PORT"
}

redis_pid()
{
	cat -- "$RDIR/redis.pid" 2>/dev/null
}

# Stop it as its service would (SIGTERM), and wait until it is gone.
redis_stop()
{
	local pid i

	pid=$(redis_pid)
	[ -n "$pid" ] || return 0
	kill -CONT "$pid" 2>/dev/null
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	rm -f -- "$RDIR/redis.pid"
}

trap 'redis_stop; tap_cleanup' EXIT
redis_start

# ---- three hosts ----

# host N [EXTRA]: a directory of its own, with its own keyway.conf and its
# own copy of the password file.
host()
{
	local d=$SECRETD/host$1

	mkdir -p -m 700 "$d"
	printf '%s\n' "${3:-$PASS}" >"$d/redis.pass" && chmod 600 "$d/redis.pass"
	write_conf "$d/keyway.conf" <<EOF
keyway: {
	ledger: { module = "redis"; address = "127.0.0.1:$PORT";
		password_file = "redis.pass"; $2 };
};
backends: {
	server_env: { module = "env";
		quota = ( { limit = 7; period = "day"; per = "user"; },
			  { limit = 100000; period = "day"; per = "global"; } ); };
};
chains: {
	default = ( { backend = "server_env"; control = "required"; } );
};
EOF
	echo "$d/keyway.conf"
}

H1=$(host 1)
H2=$(host 2)
H3=$(host 3)
HALLOW=$(host allow 'on_unavailable = "allow";')
HWRONG=$(host wrong '' "$WRONG")
HSLOW=$(host slow 'timeout_ms = 300; connect_timeout_ms = 300;')

# count FILES... KIND USER: lines "KIND USER" in the hammers' output.
count()
{
	local kind=$1 user=$2

	shift 2
	cat -- "$@" | grep -c "^$kind $user\$"
}

# has_line REGEX NAME: a line of the last run's stdout matches REGEX.
has_line()
{
	if grep -Eq -- "$1" "$OUT"; then
		pass "$2"
	else
		fail "$2" "no line matches $1 in:
$(cat -- "$OUT")"
	fi
}

# counter USER: the user's count in Redis today.
counter()
{
	rcli GET "keyway:q:server_env/0/user:$1:$DAY"
}

run "$KW" -c "$H1" check
expect_exit 0 "check: a healthy Redis ledger passes"

# ---- exact across hosts and threads ----

# Each of 3 processes, 4 threads each, asks 6 times per thread for each of
# 5 users: 72 asks per user against a limit of 7.
for h in 1 2 3; do
	eval "conf=\$H$h"
	"$HAMMER" -c "$conf" -T 4 -u 5 -n 6 -P u >"$TMPD/exact$h.out" \
		2>"$TMPD/exact$h.err" &
done
wait
ok=1
for u in 0 1 2 3 4; do
	n=$(count A "u$u" "$TMPD"/exact?.out)
	[ "$n" = 7 ] || { ok=; fail "3 hosts x 4 threads: u$u admitted 7 times" "admitted $n"; }
done
[ -n "$ok" ] && pass "3 hosts x 4 threads: every user admitted exactly 7 times"
others=$(grep -v -e '^A ' -e '^D ' "$TMPD"/exact?.out "$TMPD"/exact?.err)
expect_eq "$others" "" "3 hosts x 4 threads: nothing failed"
n=$(grep -c '^D ' "$TMPD"/exact?.out | awk -F: '{ s += $2 } END { print s }')
expect_eq "$n" 325 "3 hosts x 4 threads: the other 325 asks denied"
got=""
for u in 0 1 2 3 4; do
	got="$got$(counter "u$u") "
done
expect_eq "$got" "7 7 7 7 7 " "Redis counts 7 for each user"
expect_eq "$(rcli GET "keyway:q:server_env/1/global:*:$DAY")" 35 \
	"the global quota was charged with every admission, and only then"
expect_eq "$(rcli XLEN keyway:usage)" 360 "the usage log holds one row per charge"

# explain asks the ledger and writes nothing.
run "$KW" -c "$H2" explain --user u0 anthropic
has_line "quota server_env 7/day per user used up for user u0 \(7 of 7\)" \
	"explain: a user at the limit is shown used up, from Redis"
run "$KW" -c "$H2" explain --user fresh0 anthropic
has_line "within quota \(explain charges nothing\)" \
	"explain: a new user is within quota"
expect_eq "$(rcli EXISTS "keyway:q:server_env/0/user:fresh0:$DAY") $(rcli XLEN keyway:usage)" \
	"0 360" "explain: nothing written to Redis"

# keyway usage on a host that charged nothing of it reports the fleet's.
run "$KW" -c "$H3" usage --user u2
expect_exit 0
has_line "^u2 +- +server_env +anthropic +7 +65 +0 " \
	"usage: the fleet's admissions and denials of u2"
run "$KW" -c "$H1" usage --alerts
expect_exit 0 "usage --alerts reads the fleet's log"
# A period longer than the log keeps: said, on the terminal (and syslog).
run -t "$KW" -c "$H1" usage --since 60d --user u2
has_line "^keyway: keyway.ledger: redis 127.0.0.1:$PORT: the usage log keeps 35 days \(usage_days\): rows older than that are not reported$" \
	"usage --since 60d: says that the log keeps 35 days"
has_line "^u2 +- +server_env +anthropic +7 +65 +0 " \
	"usage --since 60d: reports what the log keeps"

# ---- threads that come and go ----

# conns: how many connections Redis has accepted since it started.
conns()
{
	rcli INFO stats | tr -d '\r' | sed -n 's/^total_connections_received://p'
}

# As a server with a thread per client: 10 rounds of 4 new threads, each
# thread resolving twice and ending.  4 threads at a time need 4
# connections: the next rounds take them again, rather than a connection
# per thread (40).  The INFO that reads the count after is one more.
before=$(conns)
"$HAMMER" -c "$H1" -T 4 -R 10 -u 1 -n 2 -P cg >"$TMPD/rounds.out" 2>&1
n=$(($(conns) - before - 1))
if [ "$n" -ge 1 ] && [ "$n" -le 4 ]; then
	pass "40 short-lived threads in rounds of 4: $n Redis connections"
else
	fail "40 short-lived threads in rounds of 4: at most 4 Redis connections" \
		"$n connections"
fi
expect_eq "$(grep -v -e '^A ' -e '^D ' "$TMPD/rounds.out")" "" \
	"short-lived threads: nothing failed"
expect_eq "$(count A cg0 "$TMPD/rounds.out") $(counter cg0)" "7 7" \
	"short-lived threads: admitted exactly 7 times"

# Connections idle between two rounds, which Redis closes meanwhile (as
# its idle timeout does): the next round finds them broken on use,
# connects again and sends the charge again, counted once.
"$HAMMER" -c "$H1" -T 3 -R 2 -p 2000 -u 1 -n 1 -P idle >"$TMPD/idle.out" 2>&1 &
pid=$!
for i in $(seq 100); do
	grep -q '^P 1$' "$TMPD/idle.out" && break
	sleep 0.05
done
killed=$(rcli CLIENT KILL TYPE normal SKIPME yes)
wait "$pid"
# As many as the first round ran charges at once: 3 at most, 1 at least
# (a thread's connection does not end with it).
if [ "$killed" -ge 1 ] && [ "$killed" -le 3 ]; then
	pass "between rounds, $killed connections wait idle for the next"
else
	fail "between rounds, 1 to 3 connections wait idle for the next" \
		"${killed:-no answer}"
fi
expect_eq "$(grep -v -e '^A ' -e '^P ' "$TMPD/idle.out")" "" \
	"idle connections closed by Redis: nothing failed"
expect_eq "$(count A idle0 "$TMPD/idle.out") $(counter idle0)" "6 6" \
	"idle connections closed by Redis: each charge counted once"

# ---- processes killed mid-run ----

# 3 hosts, 3 threads each, asking 5 ms apart; two are SIGKILLed while
# charging.  What each was told is in its output already.
{
for h in 1 2 3; do
	eval "conf=\$H$h"
	"$HAMMER" -c "$conf" -T 3 -u 3 -n 40 -d 5 -P k >"$TMPD/kill$h.out" \
		2>"$TMPD/kill$h.err" &
	eval "pid$h=\$!"
done
sleep 0.15
kill -KILL "$pid1" "$pid2" 2>/dev/null
wait
} 2>/dev/null
# A fourth host takes what is left.
"$HAMMER" -c "$H1" -T 2 -u 3 -n 10 -P k >"$TMPD/kill4.out" 2>&1
ok=1
for u in 0 1 2; do
	n=$(count A "k$u" "$TMPD"/kill?.out)
	c=$(counter "k$u")
	# Each killed process may have been admitted one charge per thread
	# that it never heard of: the slot is spent, never handed twice.
	if [ "$c" != 7 ] || [ "$n" -gt 7 ] || [ "$n" -lt 1 ]; then
		ok=
		fail "SIGKILL: k$u" "admitted $n, Redis counts $c"
	fi
done
[ -n "$ok" ] && pass "SIGKILL mid-run: no admission lost, none extra (Redis counts 7, hosts were told at most 7)"
others=$(grep -v -e '^A ' -e '^D ' "$TMPD"/kill?.out)
expect_eq "$others" "" "SIGKILL mid-run: the other hosts saw no failure"

# ---- Redis stopped mid-run ----

for h in 1 2; do
	eval "conf=\$H$h"
	"$HAMMER" -c "$conf" -T 2 -u 2 -n 40 -d 40 -P s >"$TMPD/stop$h.out" \
		2>"$TMPD/stop$h.err" &
	eval "pid$h=\$!"
done
sleep 0.4
redis_stop
run "$KW" -c "$H3" get --user s0 anthropic
expect_exit 4 "Redis down: get is denied"
expect_stderr "keyway: chain \"default\", provider \"anthropic\": server_env answered denied: ledger unavailable, denied (on_unavailable = deny): redis 127.0.0.1:$PORT: cannot connect: Connection refused (is redis-server running there?)" \
	"Redis down: the denial names the ledger and its address"
run -s "$KW" -c "$HALLOW" get --user s0 anthropic
expect_exit 0 "Redis down, on_unavailable = allow: admitted"
sleep 0.3
redis_start
wait "$pid1" "$pid2"
"$HAMMER" -c "$H3" -T 2 -u 2 -n 10 -P s >"$TMPD/stop3.out" 2>&1
lines=$(grep -h '^L ' "$TMPD"/stop?.out | head -n 1)
case $lines in
L\ s?\ *'ledger unavailable, denied (on_unavailable = deny): redis 127.0.0.1:'"$PORT"*)
	pass "Redis stopped mid-run: the hosts' denials name the ledger" ;;
*)	fail "Redis stopped mid-run: the hosts' denials name the ledger" "first: ${lines:-none}" ;;
esac
ok=1
for u in 0 1; do
	n=$(count A "s$u" "$TMPD"/stop?.out)
	c=$(counter "s$u")
	if [ "$n" != 7 ] || [ "$c" != 7 ]; then
		ok=
		fail "Redis restarted: s$u" "admitted $n, Redis counts $c"
	fi
done
[ -n "$ok" ] && pass "Redis started again: counting went on exactly (7 each)"
others=$(grep -v -e '^A ' -e '^D ' -e '^L ' "$TMPD"/stop?.out "$TMPD"/stop?.err)
expect_eq "$others" "" "Redis stopped mid-run: nothing else failed"

# ---- the address reaches a read-only replica ----

# As after a failover that kept clients connected: a charge gets READONLY.
# That is an outage, not a failure: on_unavailable decides, and once the
# address reaches a master again the count goes on.
run -s "$KW" -c "$H1" get --user ro0 anthropic
expect_exit 0 "before the replica: admitted"
rcli REPLICAOF 127.0.0.1 1 >/dev/null
run "$KW" -c "$H1" get --user ro0 anthropic
expect_exit 4 "a read-only replica: denied"
slurp "$ERR"
expect_eq "$([[ $REPLY == *"ledger unavailable, denied (on_unavailable = deny): redis 127.0.0.1:$PORT: the charge failed: READONLY"* ]] && echo says)" \
	"says" "a read-only replica: the ledger is unavailable, not failed"
run -s "$KW" -c "$HALLOW" get --user ro0 anthropic
expect_exit 0 "a read-only replica, on_unavailable = allow: admitted"
rcli REPLICAOF NO ONE >/dev/null
run -s "$KW" -c "$H1" get --user ro0 anthropic
expect_exit 0 "a master again: admitted"
expect_eq "$(counter ro0)" "2" "a master again: counted on from where it was"

# ---- Redis forgets the scripts ----

# Connections that loaded the scripts before SCRIPT FLUSH get NOSCRIPT,
# and send the script whole.
"$HAMMER" -c "$H1" -T 2 -u 2 -n 8 -d 40 -P f >"$TMPD/flush.out" 2>&1 &
pid=$!
sleep 0.3
rcli SCRIPT FLUSH >/dev/null
wait "$pid"
expect_eq "$(grep -v -e '^A ' -e '^D ' "$TMPD/flush.out")" "" \
	"SCRIPT FLUSH mid-run: nothing failed"
expect_eq "$(count A f0 "$TMPD/flush.out") $(count A f1 "$TMPD/flush.out") $(counter f0) $(counter f1)" \
	"7 7 7 7" "SCRIPT FLUSH mid-run: counting went on exactly"

# ---- refunds ----

# Host 1 reports 3 admitted keys unused; host 2 then gets those slots.
# Redis's MONITOR records the scripts as keyway sent them (it shows AUTH
# redacted), to send them again as a host does after a lost answer.
rcli MONITOR >"$TMPD/monitor.out" 2>&1 &
mon=$!
sleep 0.2
"$HAMMER" -c "$H1" -u 1 -n 3 -U -P r >"$TMPD/refund1.out" 2>&1
sleep 0.2
kill "$mon" 2>/dev/null
wait "$mon" 2>/dev/null
expect_eq "$(count R r0 "$TMPD/refund1.out") $(grep -vc '^R ' "$TMPD/refund1.out")" \
	"3 0" "refund: 3 keys reported unused, each refunded once"
expect_eq "$(counter r0)" 0 "refund: Redis gave the 3 slots back"

# sent KIND: the arguments of the last script keyway sent whose first key
# starts with keyway:KIND, one per line.
sent()
{
	$PY - "$TMPD/monitor.out" "$1" <<'PYEOF'
import shlex, sys
last = None
for line in open(sys.argv[1], errors="replace"):
    if '"EVALSHA"' not in line:
        continue
    args = shlex.split(line.split("] ", 1)[1])
    if len(args) > 3 and args[3].startswith("keyway:" + sys.argv[2]):
        last = args
if last:
    print("\n".join(last))
PYEOF
}
if [ -z "$PY" ]; then
	skip "refund: sent again, it gives nothing back twice" "no python3"
	skip "charge: sent again, it counts once" "no python3"
else
	mapfile -t args < <(sent c:)
	if [ ${#args[@]} -lt 5 ]; then
		fail "refund: sent again, it gives nothing back twice" \
			"no refund in $(head -c 2000 "$TMPD/monitor.out")"
	else
		rcli INCR "keyway:q:server_env/0/user:r0:$DAY" >/dev/null
		again=$(rcli "${args[@]}")
		expect_eq "$again $(counter r0)" "0 1" \
			"refund: sent again, it gives nothing back twice"
		rcli DECR "keyway:q:server_env/0/user:r0:$DAY" >/dev/null
	fi
	mapfile -t args < <(sent t:)
	if [ ${#args[@]} -lt 5 ]; then
		fail "charge: sent again, it counts once" "no charge seen"
	else
		before=$(rcli GET "keyway:q:server_env/1/global:*:$DAY")
		again=$(rcli "${args[@]}" | head -n 1)
		expect_eq "$again $(rcli GET "keyway:q:server_env/1/global:*:$DAY")" \
			"1 $before" "charge: sent again, it counts once"
	fi
fi
"$HAMMER" -c "$H2" -T 3 -u 1 -n 4 -P r >"$TMPD/refund2.out" 2>&1
expect_eq "$(count A r0 "$TMPD/refund2.out") $(counter r0)" "7 7" \
	"refund: another host is admitted 7 times, no more"
run "$KW" -c "$H3" usage --user r0
has_line "^r0 +- +server_env +anthropic +7 +5 +3 " \
	"usage: the refunded charges show on a third host"

# ---- a wrong password, a Redis that does not answer ----

start=$(date +%s%N)
run "$KW" -c "$HWRONG" check
t=$((($(date +%s%N) - start) / 1000000))
expect_exit 1 "wrong password: check fails"
expect_stderr "$HWRONG:2: keyway.ledger: health check: permission denied: redis 127.0.0.1:$PORT: Redis refuses the password of ${HWRONG%/keyway.conf}/redis.pass: put its requirepass in that file" \
	"wrong password: check says so in one line"
[ "$t" -lt 3000 ] && pass "wrong password: check answers at once (${t} ms)" ||
	fail "wrong password: check answers at once" "took $t ms"
run "$KW" -c "$HWRONG" get --user w0 anthropic
expect_exit 4 "wrong password: get is denied"
expect_stderr "keyway: chain \"default\", provider \"anthropic\": server_env answered denied: ledger failed, denied: redis 127.0.0.1:$PORT: Redis refuses the password of ${HWRONG%/keyway.conf}/redis.pass: put its requirepass in that file" \
	"wrong password: the denial says so in one line"

# No password at all.
write_conf "$SECRETD/nopass.conf" <<EOF
keyway: { ledger: { module = "redis"; address = "127.0.0.1:$PORT"; }; };
backends: { e: { module = "env"; quota = ( { limit = 1; period = "day"; per = "user"; } ); }; };
chains: { default = ( { backend = "e"; control = "required"; } ); };
EOF
run "$KW" -c "$SECRETD/nopass.conf" check
expect_exit 1
expect_stderr_line "$SECRETD/nopass.conf:1: keyway.ledger: health check: permission denied: redis 127.0.0.1:$PORT: Redis asks for a password: set password_file to a file that holds it" \
	"no password: check says Redis asks for one"

# A Redis that accepts connections but does not answer (stopped).
kill -STOP "$(redis_pid)"
start=$(date +%s%N)
run "$KW" -c "$HSLOW" get --user z0 anthropic
t=$((($(date +%s%N) - start) / 1000000))
kill -CONT "$(redis_pid)"
expect_exit 4 "Redis not answering: get is denied"
expect_stderr "keyway: chain \"default\", provider \"anthropic\": server_env answered denied: ledger unavailable, denied (on_unavailable = deny): redis 127.0.0.1:$PORT: no answer to the first commands within timeout_ms = 300" \
	"Redis not answering: the denial names the ledger and the timeout"
[ "$t" -lt 3000 ] && pass "Redis not answering: denied within the timeout (${t} ms)" ||
	fail "Redis not answering: denied within the timeout" "took $t ms"

# ---- other ways to reach Redis ----

# check_via NAME LEDGER-SETTINGS USER: keyway check passes, and a get for
# USER is counted in Redis.
check_via()
{
	local d=$SECRETD/via

	mkdir -p -m 700 "$d"
	write_conf "$d/keyway.conf" <<EOF
keyway: { ledger: { module = "redis"; $2 }; };
backends: { e: { module = "env"; quota = ( { limit = 5; period = "day"; per = "user"; } ); }; };
chains: { default = ( { backend = "e"; control = "required"; } ); };
EOF
	run "$KW" -c "$d/keyway.conf" check
	expect_exit 0 "$1: check passes"
	run -s "$KW" -c "$d/keyway.conf" get --user "$3" anthropic
	expect_exit 0 "$1: get is admitted"
	expect_eq "$(rcli GET "keyway:q:e/0/user:$3:$DAY")" 1 "$1: counted in Redis"
}
check_via "Unix socket" "address = \"$RDIR/redis.sock\"; password_file = \"$SECRETD/host1/redis.pass\";" via0
if [ "$(REDISCLI_AUTH=$PASS redis-cli -h ::1 -p "$PORT" --no-auth-warning PING 2>/dev/null)" = PONG ]; then
	check_via "[::1]:port" "address = \"[::1]:$PORT\"; password_file = \"$SECRETD/host1/redis.pass\";" via1
else
	for t in "check passes" "get is admitted" "counted in Redis"; do
		skip "[::1]:port: $t" "Redis does not listen on ::1 here"
	done
fi
# A Redis ACL user allowed only what keyway.conf(5) lists, on its keys.
printf '%s\n' "$PASS-acl" >"$SECRETD/acl.pass" && chmod 600 "$SECRETD/acl.pass"
secret "$PASS-acl"
rcli ACL SETUSER kwacl on ">$PASS-acl" resetkeys '~keyway:*' nocommands \
	+eval +evalsha '+script|load' +get +set +incr +decr +del +exists +expire \
	+xadd +xrange +xlen +ping +select >/dev/null
check_via "ACL user" "address = \"127.0.0.1:$PORT\"; username = \"kwacl\"; password_file = \"$SECRETD/acl.pass\"; db = 0;" via2
run "$KW" -c "$SECRETD/via/keyway.conf" usage --user via2
expect_exit 0 "ACL user: usage reads the log"
rcli ACL SETUSER kwacl -incr >/dev/null
run "$KW" -c "$SECRETD/via/keyway.conf" get --user via2 anthropic
expect_exit 4 "ACL user without INCR: get is denied"
expect_stderr_line "keyway: chain \"default\", provider \"anthropic\": e answered denied: ledger failed, denied: redis 127.0.0.1:$PORT: the ACL of user \"kwacl\" does not allow a command of the charge script: allow it what keyway.conf(5) lists" \
	"ACL user without INCR: the denial says what Redis refused"
# One not allowed to load the scripts: said at the first commands.
rcli ACL SETUSER kwacl +incr '-script|load' >/dev/null
rcli SCRIPT FLUSH >/dev/null
run "$KW" -c "$SECRETD/via/keyway.conf" check
expect_exit 1 "ACL user without SCRIPT LOAD: check fails"
if [ "$(wc -l <"$ERR")" -eq 1 ] &&
	grep -qF "redis 127.0.0.1:$PORT: the ACL of user \"kwacl\" does not allow SCRIPT LOAD: allow it what keyway.conf(5) lists, on the keys ~keyway:*" "$ERR"; then
	pass "ACL user without SCRIPT LOAD: one line saying what Redis refused"
else
	fail "ACL user without SCRIPT LOAD: one line saying what Redis refused" "$(cat "$ERR")"
fi
rcli ACL SETUSER kwacl '+script|load' >/dev/null

# A password_file for a Redis that has no password.
printf 'CONFIG SET requirepass ""\n' | rcli >/dev/null
run "$KW" -c "$H1" check
printf 'CONFIG SET requirepass %s\n' "$PASS" | redis-cli -p "$PORT" >/dev/null
expect_exit 1 "no password in Redis: check fails"
expect_stderr_line "$H1:2: keyway.ledger: health check: permission denied: redis 127.0.0.1:$PORT: Redis has no password set, though password_file names one: set requirepass in its redis.conf, or drop password_file" \
	"no password in Redis: check says to set one or drop password_file"
run "$KW" -c "$H1" check
expect_exit 0 "no password in Redis: check passes once it has one again"

# A password file written on Windows: its CR LF is not part of it.
printf '%s\r\n' "$PASS" >"$SECRETD/crlf.pass" && chmod 600 "$SECRETD/crlf.pass"
check_via "a password file ending in CR LF" "address = \"127.0.0.1:$PORT\"; password_file = \"$SECRETD/crlf.pass\";" via4

# A database other than 0: the counts go there, none into database 0.
write_conf "$SECRETD/via/keyway.conf" <<EOF
keyway: { ledger: { module = "redis"; address = "127.0.0.1:$PORT"; password_file = "$SECRETD/host1/redis.pass"; db = 3; }; };
backends: { e: { module = "env"; quota = ( { limit = 5; period = "day"; per = "user"; } ); }; };
chains: { default = ( { backend = "e"; control = "required"; } ); };
EOF
run "$KW" -c "$SECRETD/via/keyway.conf" check
expect_exit 0 "db = 3: check passes"
run -s "$KW" -c "$SECRETD/via/keyway.conf" get --user via3 anthropic
expect_exit 0 "db = 3: get is admitted"
expect_eq "$(rcli -n 3 GET "keyway:q:e/0/user:via3:$DAY")" 1 "db = 3: counted in database 3"
expect_eq "$(rcli GET "keyway:q:e/0/user:via3:$DAY")" "" "db = 3: nothing counted in database 0"
# A database Redis does not have.
sed -i 's/db = 3;/db = 99;/' "$SECRETD/via/keyway.conf"
run "$KW" -c "$SECRETD/via/keyway.conf" check
expect_exit 1 "db = 99: check fails"
if [ "$(wc -l <"$ERR")" -eq 1 ] &&
	grep -qF "redis 127.0.0.1:$PORT: SELECT failed: ERR DB index is out of range" "$ERR"; then
	pass "db = 99: one line saying Redis refused SELECT"
else
	fail "db = 99: one line saying Redis refused SELECT" "$(cat "$ERR")"
fi
# An ACL user given the wrong password.
sed -i "s|db = 99;|username = \"kwacl\";|; s|host1/redis.pass|hostwrong/redis.pass|" "$SECRETD/via/keyway.conf"
run "$KW" -c "$SECRETD/via/keyway.conf" check
expect_exit 1 "ACL user, wrong password: check fails"
expect_stderr_line "$SECRETD/via/keyway.conf:1: keyway.ledger: health check: permission denied: redis 127.0.0.1:$PORT: Redis refuses user \"kwacl\" with the password of $SECRETD/hostwrong/redis.pass: put the right password in that file, or fix the user's ACL" \
	"ACL user, wrong password: check says so in one line"

# A usage log that is not a stream (another program wrote the key): usage
# and check say so in one line that names the key.
write_conf "$SECRETD/via/keyway.conf" <<EOF
keyway: { ledger: { module = "redis"; address = "127.0.0.1:$PORT"; password_file = "$SECRETD/host1/redis.pass"; prefix = "kwbad:"; }; };
backends: { e: { module = "env"; quota = ( { limit = 5; period = "day"; per = "user"; } ); }; };
chains: { default = ( { backend = "e"; control = "required"; } ); };
EOF
rcli SET kwbad:usage not-a-stream >/dev/null
run "$KW" -c "$SECRETD/via/keyway.conf" usage
expect_exit 1 "a usage log of the wrong type: usage fails"
expect_stderr_line "keyway: keyway.ledger: redis 127.0.0.1:$PORT: XRANGE kwbad:usage failed: WRONGTYPE Operation against a key holding the wrong kind of value" \
	"a usage log of the wrong type: usage says so in one line"
run "$KW" -c "$SECRETD/via/keyway.conf" check
expect_exit 1 "a usage log of the wrong type: check fails"
expect_stderr_line "$SECRETD/via/keyway.conf:1: keyway.ledger: health check: backend error: redis 127.0.0.1:$PORT: XLEN kwbad:usage failed: WRONGTYPE Operation against a key holding the wrong kind of value" \
	"a usage log of the wrong type: check says so in one line"
rcli DEL kwbad:usage >/dev/null
# Entries keyway did not write (no time, no outcome) are passed over; the
# rows around them are read.
run -s "$KW" -c "$SECRETD/via/keyway.conf" get --user bad1 anthropic
expect_exit 0 "entries keyway did not write: a get is admitted"
rcli XADD kwbad:usage '*' note by-hand >/dev/null
rcli XADD kwbad:usage '*' time "$(date -u +%s)" user bad2 >/dev/null
run -s "$KW" -c "$SECRETD/via/keyway.conf" get --user bad3 anthropic
run "$KW" -c "$SECRETD/via/keyway.conf" usage
expect_exit 0 "entries keyway did not write: usage reads the log"
if grep -q bad1 "$OUT" && grep -q bad3 "$OUT" && ! grep -q bad2 "$OUT"; then
	pass "entries keyway did not write: passed over, the others reported"
else
	fail "entries keyway did not write: passed over, the others reported" "$(cat "$OUT")"
fi

# ---- settings ----

# bad_setting NAME SETTINGS LINE: keyway check refuses them with LINE.
bad_setting()
{
	write_conf "$SECRETD/bad.conf" <<EOF
keyway: { ledger: { module = "redis"; $2 }; };
backends: { e: { module = "env"; }; };
chains: { default = ( { backend = "e"; control = "required"; } ); };
EOF
	run "$KW" -c "$SECRETD/bad.conf" check
	expect_exit 1 "settings: $1 refused"
	expect_stderr_line "$3" "settings: $1: one line naming it"
}
B=$SECRETD/bad.conf
bad_setting "a password in the config" "address = \"127.0.0.1:$PORT\"; password = \"$PASS\";" \
	"$B:1: keyway.ledger: unknown setting \"password\" (module \"redis\" takes address, password_file, username, db, prefix, connect_timeout_ms, timeout_ms, usage_days, on_unavailable)"
bad_setting "no address" 'db = 1;' \
	"$B:1: keyway.ledger: missing address (module \"redis\" needs it)"
bad_setting "an IPv6 address without brackets" 'address = "::1:6379";' \
	"$B:1: keyway.ledger: address \"::1:6379\": write an IPv6 address in brackets, as \"[::1]:6379\""
bad_setting "a bad port" 'address = "localhost:99999";' \
	"$B:1: keyway.ledger: address \"localhost:99999\": the port must be a number from 1 to 65535"
bad_setting "a negative db" "address = \"127.0.0.1:$PORT\"; db = -1;" \
	"$B:1: keyway.ledger: db must be from 0 to 2147483647, not -1"
bad_setting "timeout_ms = 0" "address = \"127.0.0.1:$PORT\"; timeout_ms = 0;" \
	"$B:1: keyway.ledger: timeout_ms must be from 1 to 600000, not 0"
printf '%s\n' "$PASS" >"$SECRETD/public.pass" && chmod 644 "$SECRETD/public.pass"
bad_setting "a password file others may read" "address = \"127.0.0.1:$PORT\"; password_file = \"$SECRETD/public.pass\";" \
	"$B:1: keyway.ledger: $SECRETD/public.pass is accessible by group or others (mode 0644); it holds secrets: chmod 600 it"

bad_setting "an address without a host" 'address = ":6379";' \
	"$B:1: keyway.ledger: address \":6379\" is not HOST:PORT, [IPV6]:PORT or the absolute path of a Unix socket"
bad_setting "an IPv6 address not closed" 'address = "[::1:6379";' \
	"$B:1: keyway.ledger: address \"[::1:6379\" is not HOST:PORT, [IPV6]:PORT or the absolute path of a Unix socket"
bad_setting "db as a string" "address = \"127.0.0.1:$PORT\"; db = \"1\";" \
	"$B:1: keyway.ledger: db must be an integer, not a string"
bad_setting "an address as a number" 'address = 6379;' \
	"$B:1: keyway.ledger: address must be a string, not an integer"
bad_setting "an empty address" 'address = "";' \
	"$B:1: keyway.ledger: address is empty: write HOST:PORT, [IPV6]:PORT or the path of a Unix socket"
bad_setting "a username with a space" "address = \"127.0.0.1:$PORT\"; username = \"a b\";" \
	"$B:1: keyway.ledger: username must be a Redis ACL user name: not empty, no spaces"
bad_setting "a username without a password" "address = \"127.0.0.1:$PORT\"; username = \"keyway\";" \
	"$B:1: keyway.ledger: username needs a password_file"
bad_setting "a password file not there" "address = \"127.0.0.1:$PORT\"; password_file = \"$SECRETD/none.pass\";" \
	"$B:1: keyway.ledger: $SECRETD/none.pass does not exist: write Redis's password into it (mode 0600), or remove password_file"
printf 'one\ntwo\n' >"$SECRETD/two.pass" && chmod 600 "$SECRETD/two.pass"
bad_setting "a password file of two lines" "address = \"127.0.0.1:$PORT\"; password_file = \"$SECRETD/two.pass\";" \
	"$B:1: keyway.ledger: $SECRETD/two.pass must hold the password alone, on one line"
head -c 5000 /dev/zero | tr '\0' x >"$SECRETD/long.pass" && chmod 600 "$SECRETD/long.pass"
bad_setting "a password file too long" "address = \"127.0.0.1:$PORT\"; password_file = \"$SECRETD/long.pass\";" \
	"$B:1: keyway.ledger: $SECRETD/long.pass holds more than 4096 bytes: it must hold the password alone"

# The module named among the backends (in no chain, where nothing else
# refuses it).
write_conf "$SECRETD/bad.conf" <<EOF
backends: { r: { module = "redis"; address = "127.0.0.1:$PORT"; }; e: { module = "env"; }; };
chains: { default = ( { backend = "e"; control = "required"; } ); };
EOF
run "$KW" -c "$SECRETD/bad.conf" check
expect_exit 1 "settings: the module as a backend refused"
expect_stderr_line "$SECRETD/bad.conf:1: backend \"r\": the redis module counts quotas: name it in keyway.ledger, not among the backends" \
	"settings: the module as a backend: one line saying where it goes"

run "$KW" -c "$H1" check
expect_exit 0 "check: healthy again after all that"

expect_no_leaks "neither the password nor the key in anything keyway wrote"
done_testing
