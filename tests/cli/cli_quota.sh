#!/bin/bash
# cli_quota.sh - TAP tests of keyway(1) with quotas: get and exec denied
# with exit status 4 and the quota's own line, explain as a dry run,
# `keyway usage` (the summary, --json, filters, --alerts against rows put
# into the ledger at past times), a quota per user and provider and a per
# it does not know, `keyway check` with a ledger, healthy and
# damaged; that the installed library has no test seam; and a search for
# keys in everything the tests wrote, the ledger and the audit trail
# included.  Run by `make check`, or by hand as lib.sh says.

. "$(dirname -- "$0")/lib.sh" || exit 99

MASTER=5a1b2c3d4e5f60718293a4b5c6d7e8f90f1e2d3c4b5a69788796a5b4c3d2e1f0
K_ENV=sk-ant-cli-quota-server-key-0001aaaa
secret "$MASTER" "$K_ENV"
export KEYWAY_MASTER_KEY=$MASTER
export ANTHROPIC_API_KEY=$K_ENV

# The daily quota must not roll over between the requests that fill it and
# the one it denies: keep clear of midnight UTC.
left=$((86400 - $(date -u +%s) % 86400))
if [ "$left" -lt 120 ]; then
	echo "# waiting ${left}s for midnight UTC to pass"
	sleep $((left + 2))
fi
TOMORROW=$(date -u -d tomorrow +%F)

# The sqlite3 shell, to read the ledger and to write rows into it.
if command -v sqlite3 >/dev/null 2>&1; then
	SQLITE=sqlite3
else
	SQLITE=
fi

CONF=$TMPD/quota.conf
LEDGER=$TMPD/ledger.db
AUDIT=$TMPD/audit.jsonl
write_conf "$CONF" <<'EOF'
keyway: {
	master_key = { source = "env"; };
	ledger: { module = "sqlite"; path = "ledger.db"; };
	audit: { sink = "jsonl"; path = "audit.jsonl"; };
};
backends: {
	# The server's key: 3 requests per user per day.
	server_env: { module = "env";
		quota = ( { limit = 3; period = "day"; per = "user"; } ); };
};
chains: {
	default = ( { backend = "server_env"; control = "required"; } );
};
EOF

USED_UP_BOB="quota server_env 3/day per user used up for user bob (3 of 3); resets ${TOMORROW}T00:00:00Z"
NO_USER="quota server_env 3/day per user: the request names no user"
HEADER="USER  ORG  BACKEND  PROVIDER  ADMITTED  DENIED  REFUNDED  LAST"

# ---- the installed library has no test seam ----

LIB=$KEYWAY_BUILDDIR/lib/.libs/libkeyway.so
TEST_LIB=$KEYWAY_BUILDDIR/lib/.libs/libkeyway_test.a
if ! command -v nm >/dev/null 2>&1 || [ ! -f "$LIB" ]; then
	why="nm is not installed"
	[ -f "$LIB" ] || why="$LIB is not built (--disable-shared?)"
	for t in "nm lists the library" "exports kw_open" \
		"exports no kwi_test_set_clock" "exports only kw_ names" \
		"holds no kwi_test_set_clock" "the test library has the seam"; do
		skip "libkeyway.so: $t" "$why"
	done
else
	run nm -D --defined-only "$LIB"
	expect_exit 0 "libkeyway.so: nm lists the library"
	cp -- "$OUT" "$TMPD/nm-dynamic"
	if grep -Eq ' T kw_open(@|$)' "$TMPD/nm-dynamic"; then
		pass "libkeyway.so: exports kw_open"
	else
		fail "libkeyway.so: exports kw_open" "$(cat "$TMPD/nm-dynamic")"
	fi
	if grep -q 'kwi_test_set_clock' "$TMPD/nm-dynamic"; then
		fail "libkeyway.so: exports no kwi_test_set_clock" \
			"$(grep kwi_test_set_clock "$TMPD/nm-dynamic")"
	else
		pass "libkeyway.so: exports no kwi_test_set_clock"
	fi
	# Only kw_* and the version node.
	others=$(awk '{ sub(/@.*/, "", $3); print $3 }' "$TMPD/nm-dynamic" |
		grep -v -e '^kw_' -e '^KEYWAY_[0-9]*$')
	expect_eq "$others" "" "libkeyway.so: exports only kw_ names"
	# Not even hidden: the seam is not compiled in.
	if nm "$LIB" 2>/dev/null | grep -q 'kwi_test_set_clock'; then
		fail "libkeyway.so: holds no kwi_test_set_clock" \
			"the production library has the test clock"
	else
		pass "libkeyway.so: holds no kwi_test_set_clock"
	fi
	# The same search finds it where it belongs.
	if [ ! -f "$TEST_LIB" ]; then
		skip "libkeyway.so: the test library has the seam" \
			"$TEST_LIB is not built"
	elif nm "$TEST_LIB" 2>/dev/null | grep -q ' T kwi_test_set_clock$'; then
		pass "libkeyway.so: the test library has the seam"
	else
		fail "libkeyway.so: the test library has the seam" \
			"nm finds no kwi_test_set_clock in $TEST_LIB"
	fi
fi

# ---- check creates nothing; init creates what is missing ----

# A store, the ledger and the audit file, none of them there yet.
NEW=$TMPD/new
mkdir -m 700 "$NEW" || bail_out "cannot create $NEW"
write_conf "$NEW/keyway.conf" <<'EOF'
keyway: {
	master_key = { source = "env"; };
	ledger: { module = "sqlite"; path = "ledger.db"; };
	audit: { sink = "jsonl"; path = "audit.jsonl"; };
};
backends: {
	keys: { module = "sqlite"; path = "keys.db"; scope = "user"; };
};
chains: { default = ( { backend = "keys"; control = "sufficient"; } ); };
EOF
run "$KW" -c "$NEW/keyway.conf" check
expect_exit 1
expect_stderr "$NEW/keyway.conf:3: keyway.ledger: ledger $NEW/ledger.db does not exist: create it with keyway init
$NEW/keyway.conf:4: keyway.audit: $NEW/audit.jsonl does not exist: create it with keyway init
$NEW/keyway.conf:7: backend \"keys\": store $NEW/keys.db does not exist: create it with keyway init (or a first keyway put)" \
	"check: each missing file named, with its line and how to make it, in file order"
expect_stdout ""
expect_eq "$(ls -A "$NEW")" "keyway.conf" "check created no file"

run "$KW" -c "$NEW/keyway.conf" init
expect_exit 0
expect_stdout "created $NEW/ledger.db (keyway.ledger)
created $NEW/keys.db (backend \"keys\")
created $NEW/audit.jsonl (keyway.audit)"
expect_stderr ""
expect_eq "$(stat -c '%a %n' "$NEW/keys.db" "$NEW/ledger.db" "$NEW/audit.jsonl" 2>&1)" \
	"600 $NEW/keys.db
600 $NEW/ledger.db
600 $NEW/audit.jsonl" "init: every file made with mode 600"

run "$KW" -c "$NEW/keyway.conf" init
expect_exit 0
expect_stdout "" "init again: nothing to create"
expect_stderr ""

# Without a master key, every part that needs one says so: the audit
# trail and the store that seals keys, each on its line.
write_conf "$NEW/nomaster.conf" <<'EOF'
keyway: {
	ledger: { module = "sqlite"; path = "ledger.db"; };
	audit: { sink = "jsonl"; path = "audit.jsonl"; };
};
backends: {
	keys: { module = "sqlite"; path = "keys.db"; scope = "user"; };
};
chains: { default = ( { backend = "keys"; control = "sufficient"; } ); };
EOF
run "$KW" -c "$NEW/nomaster.conf" check
expect_exit 1
expect_stderr "$NEW/nomaster.conf:3: keyway.audit: key fingerprints are keyed with the master key: set keyway.master_key
$NEW/nomaster.conf:6: backend \"keys\": module \"sqlite\" seals the keys it stores: set keyway.master_key" \
	"check without a master key: the audit trail and the store say so"

# A misspelt setting is one problem, not also the setting it misses.
write_conf "$NEW/typo.conf" <<'EOF'
keyway: { master_key = { source = "env"; }; };
backends: {
	keys: { module = "sqlite"; path = "keys.db"; scop = "user"; };
};
chains: { default = ( { backend = "keys"; control = "sufficient"; } ); };
EOF
run "$KW" -c "$NEW/typo.conf" check
expect_exit 1
expect_stderr "$NEW/typo.conf:3: backend \"keys\": unknown setting \"scop\" (module \"sqlite\" takes scope, path, busy_timeout_ms)" \
	"check of a misspelt scope: one line"

# init tells what check would: a ledger nobody answers for (port 1 of
# the loopback), which init cannot make, is a problem of init too.
if [ -e "$KEYWAY_MODULE_DIR/kw_redis.so" ]; then
	write_conf "$NEW/redis.conf" <<'EOF'
keyway: {
	master_key = { source = "env"; };
	ledger: { module = "redis"; address = "127.0.0.1:1"; };
};
backends: { keys: { module = "sqlite"; path = "keys.db"; scope = "user"; }; };
chains: { default = ( { backend = "keys"; control = "sufficient"; } ); };
EOF
	run "$KW" -c "$NEW/redis.conf" check
	expect_exit 1
	check_err=$(cat -- "$ERR")
	run "$KW" -c "$NEW/redis.conf" init
	expect_exit 1
	expect_stderr "$check_err" "init of an unreachable ledger: the lines check prints"
	expect_stderr_line "$NEW/redis.conf:3: keyway.ledger: health check: unavail: redis 127.0.0.1:1: cannot connect: Connection refused (is redis-server running there?)"
else
	for t in "exit status" "the lines check prints" "the line"; do
		skip "init of an unreachable ledger: $t" "the redis module is not built"
	done
fi

# A client of keywayd has nothing to make here, and says so; its check
# is that of its daemon, here one that is not there.
write_conf "$NEW/client.conf" <<'EOF'
keyway: { daemon = "/nonexistent/keyway.sock"; };
EOF
run "$KW" -c "$NEW/client.conf" init
expect_exit 1
expect_stderr "$NEW/client.conf:1: keyway.daemon: keywayd at /nonexistent/keyway.sock cannot be reached: No such file or directory; start keywayd, or correct keyway.daemon in $NEW/client.conf
keyway: init: nothing to initialise here: $NEW/client.conf is a client of keywayd (keyway.daemon); the daemon's configuration is initialised where keywayd runs, with keyway init -c ITS-FILE" \
	"init of a client: the check's line, and nothing to initialise here"
expect_stdout ""

run "$KW" -c "$NEW/keyway.conf" check
expect_exit 0
expect_stdout "ok" "check after init: ok"
expect_stderr ""

# check reads the store and the ledger without writing to them, and
# without making their -wal and -shm files again once they are gone.
files_of()
{
	# shellcheck disable=SC2046
	(cd -- "$1" && ls -A && sha256sum -- $(ls -A))
}
before=$(files_of "$NEW")
run "$KW" -c "$NEW/keyway.conf" check
expect_exit 0
expect_stdout "ok" "check of files in WAL mode: ok"
expect_eq "$(files_of "$NEW")" "$before" \
	"check changed no byte of the store and the ledger, and made no file"
# The WAL may hold what the file does not yet: copy it in first, and only
# then remove them.
if [ -n "$SQLITE" ]; then
	$SQLITE "$NEW/keys.db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null &&
		$SQLITE "$NEW/ledger.db" "PRAGMA wal_checkpoint(TRUNCATE);" \
			>/dev/null || bail_out "cannot checkpoint $NEW"
	rm -f -- "$NEW/keys.db-wal" "$NEW/keys.db-shm" \
		"$NEW/ledger.db-wal" "$NEW/ledger.db-shm"
	before=$(files_of "$NEW")
	run "$KW" -c "$NEW/keyway.conf" check
	expect_exit 0
	expect_stdout "ok" "check with no -wal and -shm files: ok"
	expect_eq "$(files_of "$NEW")" "$before" \
		"check with no -wal and -shm files made none"
else
	skip "check with no -wal and -shm files" \
		"the sqlite3 shell is not installed"
fi

# A -wal with frames and no -shm beside it: reading it would make one.
if [ -n "$SQLITE" ]; then
	$SQLITE "$NEW/keys.db" "INSERT INTO meta (k, v) VALUES ('check', x'00');" \
		".shell cp -p -- '$NEW/keys.db-wal' '$NEW/wal.kept'" &&
		mv -- "$NEW/wal.kept" "$NEW/keys.db-wal" &&
		rm -f -- "$NEW/keys.db-shm" ||
		bail_out "cannot make a -wal without its -shm"
	before=$(files_of "$NEW")
	run "$KW" -c "$NEW/keyway.conf" check
	expect_exit 1
	expect_stderr "$NEW/keyway.conf:7: backend \"keys\": store $NEW/keys.db: its -wal holds changes and its -shm is missing, which a check does not create: run keyway init" \
		"check: a -wal without its -shm named"
	expect_eq "$(files_of "$NEW")" "$before" \
		"check left the -wal without its -shm as it was"
	run "$KW" -c "$NEW/keyway.conf" init
	expect_exit 0
	expect_stderr ""
	run "$KW" -c "$NEW/keyway.conf" check
	expect_exit 0
	expect_stdout "ok" "check after init read the -wal: ok"
	$SQLITE "$NEW/keys.db" "DELETE FROM meta WHERE k = 'check';" ||
		bail_out "cannot clean $NEW/keys.db"
else
	skip "check: a -wal without its -shm" "the sqlite3 shell is not installed"
fi

# An empty store is reported, not given a schema; init gives it one.
: >"$NEW/keys.db"
before=$(files_of "$NEW")
run "$KW" -c "$NEW/keyway.conf" check
expect_exit 1
expect_stderr "$NEW/keyway.conf:7: backend \"keys\": store $NEW/keys.db is empty: run keyway init" \
	"check: an empty store named, with how to fill it"
expect_eq "$(files_of "$NEW")" "$before" "check left the empty store empty"
run "$KW" -c "$NEW/keyway.conf" init
expect_exit 0
expect_stderr ""
run "$KW" -c "$NEW/keyway.conf" check
expect_exit 0
expect_stdout "ok" "check after init filled the empty store: ok"

# A ledger at an older schema version (1: with the usage_user_time index)
# is reported, not migrated; init migrates it.
if [ -n "$SQLITE" ]; then
	$SQLITE "$NEW/ledger.db" "CREATE INDEX usage_user_time ON usage (user, time); PRAGMA user_version = 1;" ||
		bail_out "cannot make $NEW/ledger.db older"
	before=$(files_of "$NEW")
	run "$KW" -c "$NEW/keyway.conf" check
	expect_exit 1
	expect_stderr "$NEW/keyway.conf:3: keyway.ledger: ledger $NEW/ledger.db: schema version 1 needs an update: run keyway init" \
		"check: a ledger at an older schema version named"
	expect_eq "$(files_of "$NEW")" "$before" \
		"check left the older ledger as it was"
	run "$KW" -c "$NEW/keyway.conf" init
	expect_exit 0
	expect_stderr ""
	expect_eq "$($SQLITE "$NEW/ledger.db" "PRAGMA user_version; SELECT count(*) FROM sqlite_master WHERE name = 'usage_user_time';" 2>&1)" \
		"2
0" "init migrated the older ledger"
	run "$KW" -c "$NEW/keyway.conf" check
	expect_exit 0
	expect_stdout "ok" "check after init migrated the ledger: ok"
else
	skip "check: a ledger at an older schema version" \
		"the sqlite3 shell is not installed"
fi

# A store keyway cannot write to is flagged.
chmod 400 "$NEW/keys.db"
run "$KW" -c "$NEW/keyway.conf" check
expect_exit 1
expect_stderr_line "$NEW/keyway.conf:7: backend \"keys\": health check: permission denied: store $NEW/keys.db is read-only (mode 0400); keyway writes to it: chmod 600 it"
chmod 600 "$NEW/keys.db"

# So is a directory where SQLite may not make the -wal and -shm files, for
# a user other than root, who writes anywhere.
RO=
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
	RO=$(mktemp -d /tmp/keyway-ro.XXXXXX) || bail_out "cannot make a directory"
fi
if [ -n "$RO" ] && chmod 755 "$RO" &&
	cp -- "$NEW/keyway.conf" "$RO/keyway.conf" &&
	"$KW" -c "$RO/keyway.conf" init >/dev/null &&
	chown 65534 "$RO"/*; then
	run setpriv --reuid 65534 --regid 65534 --clear-groups \
		"$KW" -c "$RO/keyway.conf" check
	expect_exit 1
	expect_stderr "$RO/keyway.conf:3: keyway.ledger: health check: permission denied: directory $RO cannot be written by uid 65534 (Permission denied), and SQLite makes the ledger's -wal and -shm files there: give uid 65534 a directory for the ledger
$RO/keyway.conf:7: backend \"keys\": health check: permission denied: directory $RO cannot be written by uid 65534 (Permission denied), and SQLite makes the store's -wal and -shm files there: give uid 65534 a directory for the store" \
		"check as another user: a directory it cannot write to, named"
else
	skip "check as another user: a directory it cannot write to, named" \
		"needs root and setpriv"
fi
[ -z "$RO" ] || rm -rf -- "$RO"

# ---- check, and an empty log ----

run "$KW" -c "$CONF" init
expect_exit 0
expect_stdout "created $LEDGER (keyway.ledger)
created $AUDIT (keyway.audit)"

run "$KW" -c "$CONF" check
expect_exit 0
expect_stdout "ok"
expect_stderr ""
if [ -f "$LEDGER" ]; then
	expect_eq "$(stat -c %a "$LEDGER")" "600" "the ledger was created with mode 600"
else
	fail "the ledger was created with mode 600" "$LEDGER does not exist"
fi

# A holder keeps the ledger open from outside, so that its WAL stays, to
# be searched for keys at the end with the database itself.
HOLD_FIFO=$TMPD/hold.fifo
HOLD_PID=
if [ -n "$SQLITE" ] && [ -f "$LEDGER" ] && mkfifo -m 600 "$HOLD_FIFO"; then
	$SQLITE "$LEDGER" <"$HOLD_FIFO" >/dev/null 2>&1 &
	HOLD_PID=$!
	exec 9>"$HOLD_FIFO"
	echo "SELECT count(*) FROM usage;" >&9
fi

run "$KW" -c "$CONF" usage
expect_exit 0
expect_stdout "$HEADER" "usage with no request yet: the header alone"
expect_stderr ""

run "$KW" -c "$CONF" usage --json
expect_exit 0
expect_stdout "[]" "usage --json with no request yet: an empty list"

run "$KW" -c "$CONF" usage --alerts
expect_exit 0
expect_stdout "USER  TODAY  MEAN-7D  RATIO" "usage --alerts with no request yet: the header alone"
expect_stderr ""

run "$KW" -c "$CONF" usage --alerts --json
expect_exit 0
expect_stdout "[]" "usage --alerts --json with no request yet: an empty list"

# ---- get: three, then denied ----

for i in 1 2 3; do
	run -s "$KW" -c "$CONF" get anthropic --user bob
	expect_exit 0
	expect_stdout "$K_ENV" "get $i of 3 for bob: the server's key"
	expect_stderr ""
done

run -s "$KW" -c "$CONF" get anthropic --user bob
expect_exit 4
expect_stderr_line "keyway: chain \"default\", provider \"anthropic\": server_env answered denied: $USED_UP_BOB"
expect_stdout "" "get 4 for bob: no key on stdout"

# No user, nothing to count by: denied, and not counted.
run -s "$KW" -c "$CONF" get anthropic
expect_exit 4
expect_stderr_line "keyway: chain \"default\", provider \"anthropic\": server_env answered denied: $NO_USER"
expect_stdout "" "get with no user: no key on stdout"

run -s "$KW" -c "$CONF" get anthropic --user alice --org acme
expect_exit 0
expect_stdout "$K_ENV" "get for alice at acme: the server's key"

# exec is denied alike, and runs nothing.
run "$KW" -c "$CONF" exec --user bob -p anthropic -- touch "$TMPD/marker"
expect_exit 4
expect_stderr_line "keyway: chain \"default\", provider \"anthropic\": server_env answered denied: $USED_UP_BOB"
expect_missing "$TMPD/marker" "exec denied by the quota runs nothing"

# A command that cannot be run costs nothing: its charge is refunded.  One
# that runs is charged.
run "$KW" -c "$CONF" exec --user dave -p anthropic -- "$TMPD/no-such-command"
expect_exit 127
expect_stderr_line "keyway: exec: $TMPD/no-such-command: No such file or directory"
run "$KW" -c "$CONF" exec --user erin -p anthropic -- true
expect_exit 0
expect_stderr ""

# ---- explain: a dry run ----

run "$KW" -c "$CONF" explain anthropic --user bob
expect_exit 4
expect_stdout "chain \"default\": provider \"anthropic\", user \"bob\", org -
  1. server_env (env): denied -> continue: $USED_UP_BOB
result: denied: server_env answered denied: $USED_UP_BOB"
expect_stderr ""

for i in 1 2 3 4; do
	run "$KW" -c "$CONF" explain anthropic --user carol
done
expect_exit 0
expect_stdout "chain \"default\": provider \"anthropic\", user \"carol\", org -
  1. server_env (env): found -> done: \$ANTHROPIC_API_KEY from the environment; within quota (explain charges nothing) [sk-a****aaaa]
result: found by server_env" "explain for carol, four times: within quota"
# Carol's three are all hers still.
for i in 1 2 3; do
	run -s "$KW" -c "$CONF" get anthropic --user carol
	expect_exit 0 "get $i of 3 for carol after four explains: exit status 0"
done
run -s "$KW" -c "$CONF" get anthropic --user carol
expect_exit 4 "get 4 for carol: denied"

# ---- usage: the summary ----

# last_time USER: the time of USER's last row, as the LAST column shows
# it; "" without the sqlite3 shell.
last_time()
{
	local t

	[ -n "$SQLITE" ] || return 0
	t=$($SQLITE "$LEDGER" "SELECT max(time) FROM usage WHERE user = '$1'") &&
		date -u -d "@$t" '+%F %TZ'
}

# expect_table TEXT NAME: stdout is TEXT, where each "<LAST:user>" is
# that user's last time.  Without the sqlite3 shell the LAST column is
# only checked to be a UTC time.
expect_table()
{
	local want=$1 name=$2 user got

	if [ -n "$SQLITE" ]; then
		for user in alice bob carol dave erin; do
			want=${want//"<LAST:$user>"/$(last_time "$user")}
		done
		expect_stdout "$want" "$name"
		return
	fi
	want=$(printf '%s\n' "$want" | sed -E 's/<LAST:[a-z]+>$/<time>/')
	got=$(sed -E 's/[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}Z$/<time>/' "$OUT")
	expect_eq "$got" "$want" "$name (LAST as a pattern)"
}

run "$KW" -c "$CONF" usage
expect_exit 0
expect_table "USER   ORG   BACKEND     PROVIDER   ADMITTED  DENIED  REFUNDED  LAST
alice  acme  server_env  anthropic  1         0       0         <LAST:alice>
bob    -     server_env  anthropic  3         2       0         <LAST:bob>
carol  -     server_env  anthropic  3         1       0         <LAST:carol>
dave   -     server_env  anthropic  0         0       1         <LAST:dave>
erin   -     server_env  anthropic  1         0       0         <LAST:erin>" \
	"usage: the summary of today"
expect_stderr ""

run "$KW" -c "$CONF" usage --user bob
expect_exit 0
expect_table "USER  ORG  BACKEND     PROVIDER   ADMITTED  DENIED  REFUNDED  LAST
bob   -    server_env  anthropic  3         2       0         <LAST:bob>" \
	"usage --user bob: bob's line"

run "$KW" -c "$CONF" usage --org acme
expect_exit 0
expect_table "USER   ORG   BACKEND     PROVIDER   ADMITTED  DENIED  REFUNDED  LAST
alice  acme  server_env  anthropic  1         0       0         <LAST:alice>" \
	"usage --org acme: alice's line"

# An unknown backend is refused as put refuses it, not shown unused.
run "$KW" -c "$CONF" usage --backend nope
expect_exit 1
expect_stderr_line "keyway: $CONF: no backend \"nope\""
expect_stdout "" "usage --backend nope: no table"

run "$KW" -c "$CONF" usage --since 2099-01-01
expect_exit 0
expect_stdout "$HEADER" "usage --since 2099-01-01: the header alone"

run "$KW" -c "$CONF" usage --since yesterday
expect_exit 2
expect_stderr_line "keyway: usage: --since: \"yesterday\" is not a date (YYYY-MM-DD), a UTC time (YYYY-MM-DDTHH:MM:SSZ) or a duration (30m, 24h, 7d) (try 'keyway usage --help')"

# ---- usage --json: every row, in the order of the log ----

if [ -n "$SQLITE" ]; then
	want="["
	sep=
	while IFS='|' read -r t user org outcome; do
		[ -n "$org" ] && org="\"$org\"" || org=null
		want+="$sep
  {
    \"time\": \"$(date -u -d "@$t" +%FT%TZ)\",
    \"chain\": \"default\",
    \"backend\": \"server_env\",
    \"provider\": \"anthropic\",
    \"user\": \"$user\",
    \"org\": $org,
    \"outcome\": \"$outcome\"
  }"
		sep=,
	done < <($SQLITE "$LEDGER" "SELECT time, user, ifnull(org, ''), outcome FROM usage ORDER BY time, id")
	want+="
]"
	run "$KW" -c "$CONF" usage --json
	expect_exit 0
	expect_stdout "$want" "usage --json: every row"
	expect_eq "$(grep -c '"outcome": "admitted"' "$OUT") $(grep -c '"outcome": "denied"' "$OUT") $(grep -c '"outcome": "refunded"' "$OUT")" \
		"8 3 1" "usage --json: 8 admitted, 3 denied, 1 refunded"
else
	run "$KW" -c "$CONF" usage --json
	expect_exit 0
	skip "usage --json: every row" "the sqlite3 shell is not installed"
	expect_eq "$(grep -c '"outcome": "admitted"' "$OUT") $(grep -c '"outcome": "denied"' "$OUT") $(grep -c '"outcome": "refunded"' "$OUT")" \
		"8 3 1" "usage --json: 8 admitted, 3 denied, 1 refunded"
fi

run "$KW" -c "$CONF" usage --json --user nobody
expect_exit 0
expect_stdout "[]" "usage --json --user nobody: an empty list"

# ---- usage --alerts ----

# Today's users with no past are new; then rows written into the ledger
# at past times: heavy had 1 a day for the last 7 days and 10 today,
# steady 2 a day and 2 today (and denials, and rows older than the week,
# which do not count).
run "$KW" -c "$CONF" usage --alerts
expect_exit 0
expect_stdout "USER   TODAY  MEAN-7D  RATIO
bob    3      0.0      new
carol  3      0.0      new
alice  1      0.0      new
erin   1      0.0      new" "usage --alerts: today's users are new"

if [ -n "$SQLITE" ]; then
	now=$(date -u +%s)
	day0=$((now - now % 86400))
	sql="BEGIN;"
	row()
	{
		sql+="INSERT INTO usage (time, chain, backend, provider, user, org, outcome) VALUES ($1, 'default', 'server_env', 'anthropic', '$2', NULL, '$3');"
	}
	for k in 1 2 3 4 5 6 7; do
		row $((day0 - k * 86400 + 3600)) heavy admitted
		row $((day0 - k * 86400 + 7200)) steady admitted
		row $((day0 - k * 86400 + 7300)) steady admitted
	done
	for k in $(seq 10); do
		row $((day0 + k - 1)) heavy admitted
	done
	for k in 1 2; do
		row "$day0" steady admitted
	done
	for k in $(seq 5); do
		row "$day0" steady denied
		row $((day0 - 8 * 86400)) steady admitted
	done
	sql+="COMMIT;"
	run $SQLITE "$LEDGER" "$sql"
	expect_exit 0 "rows written into the ledger at past times"

	run "$KW" -c "$CONF" usage --alerts
	expect_exit 0
	expect_stdout "USER   TODAY  MEAN-7D  RATIO
heavy  10     1.0      10.0x
bob    3      0.0      new
carol  3      0.0      new
alice  1      0.0      new
erin   1      0.0      new" "usage --alerts: heavy at 10.0x, steady not listed"
	expect_stderr ""

	run "$KW" -c "$CONF" usage --alerts --json
	expect_exit 0
	expect_stdout '[
  {
    "user": "heavy",
    "today": 10,
    "mean_7d": 1.0,
    "ratio": 10.0
  },
  {
    "user": "bob",
    "today": 3,
    "mean_7d": 0.0,
    "ratio": null
  },
  {
    "user": "carol",
    "today": 3,
    "mean_7d": 0.0,
    "ratio": null
  },
  {
    "user": "alice",
    "today": 1,
    "mean_7d": 0.0,
    "ratio": null
  },
  {
    "user": "erin",
    "today": 1,
    "mean_7d": 0.0,
    "ratio": null
  }
]' "usage --alerts --json"

	run "$KW" -c "$CONF" usage --alerts --user steady
	expect_exit 0
	expect_stdout "USER  TODAY  MEAN-7D  RATIO" "usage --alerts --user steady: not listed"
else
	for t in "rows written" "exit status" "heavy at 10.0x" "stderr" \
		"--json exit status" "--json" "--user steady exit status" \
		"--user steady"; do
		skip "usage --alerts: $t" "the sqlite3 shell is not installed"
	done
fi

# ---- check, with a ledger in use ----

run "$KW" -c "$CONF" check
expect_exit 0
expect_stdout "ok" "check with a ledger in use: ok"
expect_stderr ""

# A ledger others can read is refused: it holds who asked for what.
cp -p -- "$LEDGER" "$TMPD/open.db" || bail_out "cannot copy the ledger"
chmod 644 "$TMPD/open.db"
sed 's/"ledger.db"/"open.db"/' "$CONF" | write_conf "$TMPD/open.conf"
run "$KW" -c "$TMPD/open.conf" check
expect_exit 1
expect_stderr_line "$TMPD/open.conf:3: keyway.ledger: $TMPD/open.db is accessible by group or others (mode 0644); it holds the usage log: chmod 600 it"
expect_stdout ""

# A damaged ledger fails its health check: some of its pages zeroed, past
# what opening it reads.
if [ -n "$SQLITE" ]; then
	# The WAL outlives the last close: copy through SQLite, not cp.
	$SQLITE "$LEDGER" ".backup '$TMPD/damaged.db'" &&
		chmod 600 "$TMPD/damaged.db" || bail_out "cannot copy the ledger"
	$SQLITE "$TMPD/damaged.db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO usage (time, chain, backend, provider, user, org, outcome) SELECT 1700000000 + i, 'default', 'server_env', 'anthropic', 'user' || (i % 50), NULL, 'admitted' FROM n" ||
		bail_out "cannot fill $TMPD/damaged.db"
	dd if=/dev/zero of="$TMPD/damaged.db" bs=1024 seek=60 count=100 \
		conv=notrunc 2>/dev/null || bail_out "cannot damage $TMPD/damaged.db"
	sed 's/"ledger.db"/"damaged.db"/' "$CONF" |
		write_conf "$TMPD/damaged.conf"
	run "$KW" -c "$TMPD/damaged.conf" check
	expect_exit 1 "check with a damaged ledger: exit status 1"
	slurp "$ERR"
	if [[ $REPLY =~ ^"$TMPD/damaged.conf:3: keyway.ledger: health check: backend error: $TMPD/damaged.db is damaged: "[^$'\n']+$'\n'$ ]]; then
		pass "check with a damaged ledger: the health check's line"
	else
		fail "check with a damaged ledger: the health check's line" \
			"$(show_mismatch "$TMPD/damaged.conf:3: keyway.ledger: health check: backend error: $TMPD/damaged.db is damaged: ..." "$REPLY")"
	fi
	expect_stdout "" "check with a damaged ledger: stdout is empty"
else
	for t in "exit status" "the health check's line" "stdout"; do
		skip "check with a damaged ledger: $t" "the sqlite3 shell is not installed"
	done
fi

# ---- per user+provider: each provider counted on its own ----

K_OAI=sk-cli-quota-openai-server-key-0002bbbb
secret "$K_OAI"
PCONF=$TMPD/provider.conf
write_conf "$PCONF" <<'EOF'
keyway: {
	ledger: { module = "sqlite"; path = "provider-ledger.db"; };
};
backends: {
	server_env: { module = "env";
		quota = ( { limit = 2; period = "day"; per = "user+provider"; } ); };
};
chains: {
	default = ( { backend = "server_env"; control = "required"; } );
};
EOF
export OPENAI_API_KEY=$K_OAI
for p in anthropic openai; do
	[ "$p" = openai ] && key=$K_OAI || key=$K_ENV
	for i in 1 2; do
		run -s "$KW" -c "$PCONF" get "$p" --user alice
		expect_exit 0 "per user+provider: get $p $i of 2 for alice: exit status 0"
		expect_stdout "$key" "per user+provider: get $p $i of 2 for alice: the server's key"
	done
	run -s "$KW" -c "$PCONF" get "$p" --user alice
	expect_exit 4 "per user+provider: get $p 3 for alice: exit status 4"
	expect_stderr_line "keyway: chain \"default\", provider \"$p\": server_env answered denied: quota server_env 2/day per user+provider used up for user alice and provider $p (2 of 2); resets ${TOMORROW}T00:00:00Z"
done
unset OPENAI_API_KEY

run "$KW" -c "$PCONF" usage
expect_exit 0 "per user+provider: usage: exit status 0"
got=$(sed -E 's/[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}Z$/<time>/' "$OUT")
expect_eq "$got" "USER   ORG  BACKEND     PROVIDER   ADMITTED  DENIED  REFUNDED  LAST
alice  -    server_env  anthropic  2         1       0         <time>
alice  -    server_env  openai     2         1       0         <time>" \
	"per user+provider: usage has a line per provider"

# A word per does not know is refused at load, on its line.
sed 's/per = "user+provider"/per = "user+model"/' "$PCONF" |
	write_conf "$TMPD/badper.conf"
run "$KW" -c "$TMPD/badper.conf" get anthropic --user alice
expect_exit 1
expect_stderr_line "keyway: $TMPD/badper.conf:6: backend \"server_env\": quota 1: per must be \"user\", \"org\", \"global\", \"provider\", \"user+provider\" or \"org+provider\""
expect_stdout ""

# ---- no ledger, no log ----

NOLEDGER=$TMPD/noledger.conf
write_conf "$NOLEDGER" <<'EOF'
backends: { server_env: { module = "env"; }; };
chains: { default = ( { backend = "server_env"; control = "required"; } ); };
EOF
run "$KW" -c "$NOLEDGER" usage
expect_exit 1
expect_stderr_line "keyway: $NOLEDGER: no usage log (set keyway.ledger)"
expect_stdout ""

# ---- the audit trail, and no key anywhere ----

# One line per resolve: bob 3 + 1 + exec 1, the anonymous one, alice 1,
# dave and erin 1 each, carol 3 + 1; explain writes none.
expect_eq "$(wc -l <"$AUDIT")" "13" "the audit trail has a line per resolve"
expect_eq "$(grep -c '"result":"denied"' "$AUDIT")" "4" \
	"the audit trail has the 4 denials"
expect_eq "$(grep -c '"fingerprint":"[0-9a-f]\{32\}"' "$AUDIT")" "9" \
	"the audit trail has a fingerprint per key handed out"
expect_eq "$(grep -o '"fingerprint":"[0-9a-f]*"' "$AUDIT" | sort -u | wc -l)" "1" \
	"one key, one fingerprint"
expect_eq "$(stat -c %a "$AUDIT")" "600" "the audit trail has mode 600"
for f in "$AUDIT" "$LEDGER" "$LEDGER-wal"; do
	if [ -f "$f" ]; then
		expect_lacks "$f" "$K_ENV" "$(basename -- "$f") holds no key"
	else
		skip "$(basename -- "$f") holds no key" "$(basename -- "$f") does not exist"
	fi
done
expect_lacks "$AUDIT" "$MASTER" "the audit trail holds no master key"
if [ -n "$HOLD_PID" ] && [ -s "$LEDGER-wal" ]; then
	pass "the ledger's WAL was kept for the search"
elif [ -n "$HOLD_PID" ]; then
	fail "the ledger's WAL was kept for the search" "the WAL was missing or empty"
else
	skip "the ledger's WAL was kept for the search" "the sqlite3 shell is not installed"
fi
for f in "$LEDGER" "$LEDGER-wal" "$LEDGER-shm"; do
	if [ -f "$f" ]; then
		expect_eq "$(stat -c %a "$f")" "600" "$(basename -- "$f") has mode 600"
	else
		skip "$(basename -- "$f") has mode 600" "$(basename -- "$f") does not exist"
	fi
done
if [ -n "$HOLD_PID" ]; then
	exec 9>&-
	wait "$HOLD_PID"
fi

# ---- exec hands a command no key but those the chain resolved ----

# Bob, his quota used up, gets the server's key through exec neither: the
# variable the env backend reads never reaches a command, whether the chain
# denied it or never asked that backend, nor does the master key, under
# any name.  (Last: the denial is not in the counts above.)
run env OPENAI_API_KEY="$K_ENV" "$KW" -c "$CONF" exec --user bob -p openai -- \
	sh -c 'env | sed "s/=.*//" >"$1"' sh "$TMPD/bob-names"
expect_exit 4
expect_stderr_line "keyway: chain \"default\", provider \"openai\": server_env answered denied: $USED_UP_BOB"
expect_missing "$TMPD/bob-names" "exec -p openai denied by the quota runs nothing"

K_OWN=sk-mis-cli-quota-bobs-own-key-0002bbbb
secret "$K_OWN"
OWN_CONF=$SECRETD/own.conf # bob's own key, in the configuration
write_conf "$OWN_CONF" <<EOF
keyway: { master_key = { source = "env"; var = "KWTEST_OWN_MASTER"; };
	ledger: { module = "sqlite"; path = "$LEDGER"; }; };
backends: {
	server_env: { module = "env";
		quota = ( { limit = 3; period = "day"; per = "user"; } ); };
	own: { module = "fake"; answer = "found"; providers = "mistral";
		value = "$K_OWN"; };
};
chains: {
	default = ( { backend = "server_env"; control = "required"; } );
	own = ( { backend = "own"; control = "requisite"; } );
};
EOF
run env OPENAI_API_KEY="$K_ENV" KWTEST_OWN_MASTER="$MASTER" "$KW" \
	-c "$OWN_CONF" exec --chain own --user bob -p mistral -- \
	sh -c 'env | sed "s/=.*//" >"$1"; printf %s "$MISTRAL_API_KEY" >"$2"' \
	sh "$TMPD/own-names" "$SECRETD/own-key"
expect_exit 0
expect_stderr ""
expect_eq "$(cat "$SECRETD/own-key" 2>/dev/null)" "$K_OWN" \
	"exec --chain own -p mistral: the child has the key the chain resolved"
for v in ANTHROPIC_API_KEY OPENAI_API_KEY KEYWAY_MASTER_KEY KWTEST_OWN_MASTER; do
	if [ ! -s "$TMPD/own-names" ]; then
		fail "exec --chain own: the child has no \$$v" "the child listed nothing"
	elif grep -qx -- "$v" "$TMPD/own-names"; then
		fail "exec --chain own: the child has no \$$v" "it is in its environment"
	else
		pass "exec --chain own: the child has no \$$v"
	fi
done

expect_no_leaks

done_testing
