#!/bin/bash
# conformance.sh - TAP tests of keyway-conformance(1): every module keyway
# ships passes it (the redis ledger against a redis-server started here,
# when one is installed; the vault module against tests/vault/vault_double.py),
# and each module of tests/modules/broken.c, which
# breaks one rule, is reported with its one-line reason.

. "$(dirname -- "$0")/lib.sh" || exit 99

KC=$KEYWAY_BUILDDIR/conformance/keyway-conformance
[ -x "$KC" ] || bail_out "$KC is not built"
MODS=$KEYWAY_MODULE_DIR

MASTER=6a1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff1
export KEYWAY_MASTER_KEY=$MASTER
K_ENV=sk-proj-conformance-env-0001-abcdefghijkl
K_SKEL=sk-ant-conformance-skeleton-0001-abcd
K_FAKE=sk-ant-conformance-fake-0001-abcdefgh
K_BR=sk-ant-conformance-broken-0001-abcd
secret "$K_ENV" "$K_SKEL" "$K_FAKE" "$K_BR" "$MASTER"

# conform MODULE ARGS...: run keyway-conformance on kw_MODULE.so.
conform()
{
	local m=$1

	shift
	run "$KC" "$MODS/kw_$m.so" "$@"
}

# expect_line LINE [NAME]: stdout holds LINE as one whole line.
expect_line()
{
	local name=${2:-"$LABEL: prints: $1"}

	if grep -qxF -- "$1" "$OUT"; then
		pass "$name"
	else
		fail "$name" "no such line in:
$(cat -- "$OUT")"
	fi
}

# expect_fails N [NAME]: stdout has exactly N FAIL lines, and says so last.
expect_fails()
{
	local n name=${2:-"$LABEL: $1 checks fail"}

	n=$(grep -c '^FAIL [^:]' "$OUT")
	if [ "$n" = "$1" ] &&
		[ "$(tail -n 1 "$OUT")" = "$([ "$1" = 0 ] && echo PASS || echo FAIL): $1 check$([ "$1" = 1 ] || echo s) failed" ]; then
		pass "$name"
	else
		fail "$name" "$n FAIL lines in:
$(cat -- "$OUT")"
	fi
}

# expect_stdout_match_line ERE NAME: stdout has a line matching ERE whole.
expect_stdout_match_line()
{
	if grep -qxE -- "$1" "$OUT"; then
		pass "$2"
	else
		fail "$2" "no line matching $1 in:
$(cat -- "$OUT")"
	fi
}

# ---- usage ----

run "$KC"
expect_exit 2 "no module: exit status 2"
run "$KC" "$MODS/kw_env.so"
expect_exit 2 "no --config: exit status 2"
expect_eq "$(head -n 1 "$ERR")" "keyway-conformance: --config is required" \
	"no --config: says so"

# ---- the modules keyway ships ----

D=$SECRETD/env
mkdir -m 700 "$D"
printf 'OPENAI_API_KEY=%s\n' "$K_ENV" >"$D/server.env"
chmod 600 "$D/server.env"
write_conf "$D/keyway.conf" <<'EOF'
backends: { server_env: { module = "env"; dotenv = "server.env"; }; };
chains: { default = ( { backend = "server_env"; control = "required"; } ); };
EOF
conform env --config "$D/keyway.conf" --found openai --notfound anthropic
expect_exit 0 "env passes"
expect_fails 0 "env: no check fails"
expect_line "ok openai answers found"
expect_line "ok anthropic answers notfound"
expect_line "ok 8 threads × 200 lookups agree"
expect_line "ok an unknown setting is refused"
expect_line "ok no secret in any message"

D=$SECRETD/skeleton
mkdir -p -m 700 "$D/keys/user/kwconf-user"
printf '%s\n' "$K_SKEL" >"$D/keys/user/kwconf-user/anthropic"
chmod 600 "$D/keys/user/kwconf-user/anthropic"
write_conf "$D/keyway.conf" <<'EOF'
backends: { creds: { module = "skeleton"; dir = "keys"; scope = "user"; }; };
chains: { default = ( { backend = "creds"; control = "required"; } ); };
EOF
conform skeleton --config "$D/keyway.conf" --found anthropic --notfound openai
expect_exit 0 "skeleton passes"
expect_fails 0 "skeleton: no check fails"
expect_line 'ok a missing required setting "dir" is refused'

for m in sqlite file; do
	D=$SECRETD/$m
	mkdir -m 700 "$D"
	f=keys.db
	[ $m = file ] && f=keys.kwf
	write_conf "$D/keyway.conf" <<EOF
keyway: { master_key = { source = "env"; }; };
backends: { user_keys: { module = "$m"; path = "$f"; scope = "user"; }; };
chains: { default = ( { backend = "user_keys"; control = "required"; } ); };
EOF
	run "$KW" -c "$D/keyway.conf" init
	expect_exit 0 "$m: keyway init"
	conform $m --config "$D/keyway.conf" --notfound openai
	expect_exit 0 "$m passes"
	expect_fails 0 "$m: no check fails"
	expect_line "ok store: the stored value resolves"
	expect_line "ok store: a removed key is notfound"
done

# sqlite again, as keyway.ledger: exactly the limit admitted from threads.
D=$SECRETD/ledger
mkdir -m 700 "$D"
write_conf "$D/keyway.conf" <<'EOF'
keyway: { ledger: { module = "sqlite"; path = "ledger.db"; }; };
backends: { server_env: { module = "env"; }; };
chains: { default = ( { backend = "server_env"; control = "required"; } ); };
EOF
run "$KW" -c "$D/keyway.conf" init
expect_exit 0 "sqlite ledger: keyway init"
conform sqlite --config "$D/keyway.conf" --backend keyway.ledger
expect_exit 0 "sqlite as keyway.ledger passes"
expect_fails 0 "sqlite ledger: no check fails"
expect_line "ok ledger: 8 threads admit exactly 40 of 81 requests"
expect_line "ok ledger: a refund gives the request back"

# The fake module: every status, one backend each.
D=$SECRETD/fake
mkdir -m 700 "$D"
write_conf "$D/keyway.conf" <<EOF
backends: {
	team: { module = "fake"; answer = "found"; providers = "anthropic";
		value = "$K_FAKE"; };
	quota: { module = "fake"; answer = "denied"; };
	down: { module = "fake"; answer = "unavail"; };
	broken: { module = "fake"; answer = "error"; };
};
chains: { default = ( { backend = "team"; control = "required"; } ); };
EOF
conform fake --config "$D/keyway.conf" --backend team --found anthropic \
	--notfound openai
expect_exit 0 "fake passes"
for a in quota:denied down:unavail broken:error; do
	conform fake --config "$D/keyway.conf" --backend "${a%%:*}" \
		"--${a#*:}" anthropic
	expect_exit 1 "fake answering ${a#*:}: found and notfound are missing"
	expect_line "ok anthropic answers ${a#*:}"
done

# ---- modules that break a rule ----

D=$SECRETD/broken
mkdir -m 700 "$D"
write_conf "$D/keyway.conf" <<EOF
backends: {
	good: { module = "unbroken"; value = "$K_BR"; };
	misnamed: { module = "misnamed"; value = "$K_BR"; };
	leakdetail: { module = "leakdetail"; value = "$K_BR"; };
	capnoop: { module = "capnoop"; value = "$K_BR"; };
	leaky: { module = "leaky"; value = "$K_BR"; };
	racy: { module = "racy"; value = "$K_BR"; };
	late: { module = "lateerror"; value = "$K_BR"; };
	nullorg: { module = "nullorg"; value = "$K_BR"; };
	emptykey: { module = "emptykey"; value = "$K_BR"; };
	crashy: { module = "crashy"; value = "$K_BR"; };
	hangs: { module = "hangs"; value = "$K_BR"; };
	secleak: { module = "secleak"; value = "$K_BR"; };
	partial: { module = "partialdetail"; value = "$K_BR"; };
};
chains: { default = ( { backend = "good"; control = "required"; } ); };
EOF
B=(--config "$D/keyway.conf" --found anthropic --found openai --notfound google)

conform unbroken "${B[@]}" --backend good
expect_exit 0 "a module that keeps every rule passes"
expect_fails 0 "unbroken: no check fails"
expect_line "ok lookups with no user"
expect_line "ok lookups with neither user nor org"
expect_line "skip status denied — no --denied given" \
	"a status not asked for: the skip names its option"
expect_line "ok 16 opens and closes leave no guarded memory"
n=$(grep -c '^note: ' "$OUT")
expect_eq "$n" 0 "unbroken: two found values, nothing noted"

conform badabi "${B[@]}"
expect_exit 1 "another ABI: exit status 1"
expect_line "FAIL ABI handshake — the descriptor says ABI 99, this keyway serves ABI 1: start the descriptor with KW_MODULE_HEADER and rebuild against this keyway's module.h"

conform noentry "${B[@]}"
expect_exit 1 "no entry point: exit status 1"
expect_line "FAIL entry point kw_module_entry — kw_noentry.so exports no kw_module_entry: end the module with KW_MODULE_EXPORT(descriptor)"

# A ledger that admits everything.
write_conf "$D/echo.conf" <<'EOF'
keyway: { ledger: { module = "echoledger"; }; };
backends: { server_env: { module = "env"; }; };
chains: { default = ( { backend = "server_env"; control = "required"; } ); };
EOF
conform echoledger --config "$D/echo.conf"
expect_exit 1 "a ledger that counts nothing: exit status 1"
expect_line "FAIL ledger: 8 threads admit exactly 40 of 81 requests — 81 were admitted, 0 denied, 0 failed otherwise: charge() must check and count every slot in one atomic step, and deny with KW_ERR_DENIED when a slot is full"

# keyway loads a module whose descriptor names it otherwise: noted.
conform misnamed "${B[@]}" --backend misnamed
expect_exit 0 "wrong name: keyway loads it, so it passes"
expect_fails 0 "wrong name: no check fails"
expect_line "note: the descriptor's name is \"wrongname\" but the file is kw_misnamed.so: keyway loads it, but names it \"wrongname\" in its messages; name the file kw_wrongname.so or set .name to match it"
write_conf "$D/misnamed.conf" <<EOF
backends: { misnamed: { module = "misnamed"; value = "$K_BR"; }; };
chains: { default = ( { backend = "misnamed"; control = "required"; } ); };
EOF
expect_line "note: the description is not one line of printable text: keyway does not show it, but write one line for the tools that will"
run "$KW" -c "$D/misnamed.conf" check
expect_exit 0 "wrong name: keyway check takes it too"

# A name that is not a module name (here one holding a newline) would
# reach keyway's messages as it is: refused.
write_conf "$D/badname.conf" <<EOF
backends: { badname: { module = "badname"; value = "$K_BR"; }; };
chains: { default = ( { backend = "badname"; control = "required"; } ); };
EOF
run "$KW" -c "$D/badname.conf" check
expect_exit 1 "a descriptor name that is not a name: keyway check refuses the module"
expect_stderr_line "$D/badname.conf:1: backend \"badname\": module $KEYWAY_MODULE_DIR/kw_badname.so names itself with something that is not a module name (1 to 64 of a-z, 0-9, '_' and '-'); set its descriptor's .name to its file's kw_NAME.so" \
	"a descriptor name that is not a name: one line, nothing forged"

conform leakdetail "${B[@]}" --backend leakdetail
expect_exit 1 "secret in a detail: exit status 1"
expect_fails 1 "secret in a detail: one check fails"
expect_stdout_match_line "FAIL no secret in any message — [0-9]+ of [0-9]+ messages hold a value the module handed out \(first in a trace's detail\): never pass a secret to reply_detail\(\), error\(\) or log\(\)" \
	"secret in a detail: reported"

conform capnoop "${B[@]}" --backend capnoop
expect_exit 1 "capability without its operation: exit status 1"
expect_line "FAIL capability KW_CAP_STORE matches its operations — the descriptor claims KW_CAP_STORE but does not set put, set_active and remove: set them, or drop KW_CAP_STORE from .caps"

conform leaky "${B[@]}" --backend leaky
SANITIZED=
if grep -qx 'skip 16 opens and closes leave no memory — .*' "$OUT"; then
	SANITIZED=1
	# A sanitizer's heap: LeakSanitizer reports the leak at exit.
	expect_eq "$([ "$RC" != 0 ] && grep -q LeakSanitizer "$ERR" && echo yes)" yes \
		"a leak on close: LeakSanitizer reports it"
else
	expect_exit 1 "a leak on close: exit status 1"
	expect_fails 1 "a leak on close: one check fails"
	expect_stdout_match_line "FAIL 16 opens and closes leave no memory — the heap grew by [0-9]+ bytes a cycle: close\(\) must free everything open\(\) made \(run under valgrind or ASan to see where it was allocated\)" \
		"a leak on close: reported"
fi

conform racy "${B[@]}" --backend racy
expect_exit 1 "a thread-unsafe lookup: exit status 1"
expect_fails 1 "a thread-unsafe lookup: one check fails"
expect_stdout_match_line "FAIL 8 threads × 200 lookups agree — [0-9]+ of 1600 answers differed \(.*\): lookup\(\) runs on many threads at once on one state; keep per-lookup data on the stack or guard shared state with a lock" \
	"a thread-unsafe lookup: reported"
# One value cannot show a shared buffer: said.
conform racy --config "$D/keyway.conf" --backend racy --found anthropic \
	--notfound google
expect_line "note: fewer than two providers answered found with different values: the thread check cannot see lookups that share a buffer; give two with --found" \
	"one found provider: the thread check says what it cannot see"

# Lookups without a user or an org (module.h: they may be NULL).
conform nullorg "${B[@]}" --backend nullorg
expect_exit 3 "strlen(q->org): exit status 3"
expect_fails 1 "strlen(q->org): one check fails"
expect_stdout_match_line "FAIL lookups with no org — the module (crashed|ended) the process \(.*\), looking up anthropic: .*the checks after it did not run" \
	"strlen(q->org): the crash names the check and the provider"

# What the host knows of a broken answer is in the line.
conform emptykey "${B[@]}" --backend emptykey --denied google
expect_exit 1 "found with an empty key: exit status 1"
expect_line "FAIL anthropic answers found — it answered error (backend error: module \"emptykey\" answered found with an empty key): return found for this configuration"
expect_line "skip status found — the provider given with --found did not answer found (above)" \
	"found with an empty key: no second failure for status found"
expect_line "FAIL google answers denied — it answered notfound (notfound: no key for google): return denied for this configuration" \
	"a status given but not answered: its own line fails"
expect_line "skip status denied — the provider given with --denied did not answer denied (above)" \
	"a status given but not answered: not told to give it"
expect_fails 3 "found with an empty key: three checks fail, no follow-on"

# A crash or a hang is a FAIL line, and no copy is left beside the file.
conform crashy "${B[@]}" --backend crashy
expect_exit 3 "a crash in lookup(): exit status 3"
expect_fails 1 "a crash in lookup(): one check fails"
expect_stdout_match_line "FAIL google answers notfound — the module (crashed|ended) the process \(.*\), looking up google: .*" \
	"a crash in lookup(): the line names the check and the provider"
expect_eq "$(find "$D" -name 'conformance-*')" "" \
	"a crash in lookup(): no copy of the configuration is left"
conform hangs "${B[@]}" --backend hangs --timeout 2
expect_exit 3 "a lookup() that never returns: exit status 3"
expect_line "FAIL google answers notfound — it did not end in 2 seconds, looking up google: the module hangs (make every wait it does end, with a timeout), or give it longer with --timeout; the checks after it did not run"
expect_eq "$(find "$D" -name 'conformance-*')" "" \
	"a hang: no copy of the configuration is left"
# Killed while the module hangs: the copies go too.
"$KC" "$MODS/kw_hangs.so" "${B[@]}" --backend hangs >"$TMPD/sig.out" 2>&1 &
kpid=$!
for _ in $(seq 100); do
	grep -q '^ok google answers notfound\|^ok openai answers found' "$TMPD/sig.out" && break
	sleep 0.1
done
kill -TERM "$kpid"
wait "$kpid"
expect_eq "$?" 143 "killed with SIGTERM: it dies of it"
expect_eq "$(find "$D" -name 'conformance-*')" "" \
	"killed with SIGTERM: no copy of the configuration is left"

# A problem is told at the line of FILE, not of the copy that is gone.
write_conf "$D/typo.conf" <<EOF
# A comment, and a blank line, that the copy does not keep.

backends: {
	typo: { module = "unbroken";
		value = 7; };
};
EOF
conform unbroken --config "$D/typo.conf" --found anthropic
expect_exit 1 "a setting of the wrong type in FILE: exit status 1"
expect_line "# $D/typo.conf:5: backend \"typo\": value must be a string, not an integer" \
	"a problem in FILE: told at its line of FILE"
expect_line "FAIL kw_open() opens the backend — $D/typo.conf:5: backend \"typo\": value must be a string, not an integer" \
	"kw_open()'s error: told at its line of FILE"

# Guarded memory open() took and close() did not give back.
conform secleak "${B[@]}" --backend secleak
expect_exit 1 "guarded memory left on close: exit status 1"
expect_fails 1 "guarded memory left on close: one check fails"
expect_line "FAIL 16 opens and closes leave no guarded memory — 32 of 32 closes left guarded memory (64 bytes the first time): close() must secure_free() everything open() took with secure_alloc()"
write_conf "$D/secleak.conf" <<EOF
keyway: { log: { stderr = true; }; };
backends: { secleak: { module = "secleak"; value = "$K_BR"; }; };
chains: { default = ( { backend = "secleak"; control = "required"; } ); };
EOF
run -s "$KW" -c "$D/secleak.conf" get anthropic
expect_exit 0 "guarded memory left on close: the lookup still answers"
expect_stderr_line "keyway: backend \"secleak\": module \"secleak\" left 64 bytes of guarded memory allocated after close(): secure_free() everything it took with secure_alloc()"

# Part of a key in a detail.
conform partialdetail "${B[@]}" --backend partial
expect_exit 1 "part of a key in a detail: exit status 1"
expect_fails 1 "part of a key in a detail: one check fails"
expect_stdout_match_line "FAIL no secret in any message — [0-9]+ of [0-9]+ messages hold part of a value the module handed out \(first in a trace's detail: 20 of its [0-9]+ characters\): .*" \
	"part of a key in a detail: reported"

# Under valgrind the module is still loaded at exit: its frames are named.
if [ -n "$SANITIZED" ]; then
	skip "under valgrind: a leak record names the module's function" \
		"a sanitizer's build does not run under valgrind"
elif command -v valgrind >/dev/null 2>&1; then
	run "$KEYWAY_BUILDDIR/libtool" --mode=execute valgrind --leak-check=full \
		"$KC" "$MODS/kw_leaky.so" "${B[@]}" --backend leaky \
		--threads 1 --lookups 1 --cycles 1
	expect_eq "$(grep -c 'by 0x[0-9A-F]*: br_open (broken.c:[0-9]*)' "$ERR" | sed 's/^[1-9][0-9]*$/named/')" named \
		"under valgrind: a leak record names the module's function"
else
	skip "under valgrind: a leak record names the module's function" \
		"valgrind is not installed"
fi

# host->error() after open(): logged, no effect, reported.
conform lateerror "${B[@]}" --backend late
expect_exit 1 "error() after open(): exit status 1, not a crash"
expect_fails 1 "error() after open(): one check fails"
expect_stdout_match_line "FAIL host services are called in their window — host->error\(\) was called [0-9]+ times after open\(\) returned, where it does nothing: explain a lookup's answer with reply_detail\(\), report later trouble with log\(\)" \
	"error() after open(): reported"
write_conf "$D/late.conf" <<EOF
keyway: { log: { stderr = true; }; };
backends: { late: { module = "lateerror"; value = "$K_BR"; }; };
chains: { default = ( { backend = "late"; control = "required"; } ); };
EOF
run -s "$KW" -c "$D/late.conf" get anthropic
expect_exit 0 "error() after open(): the lookup still answers"
expect_stderr_line "keyway: backend \"late\": module \"lateerror\" called host->error() outside open(), where it does nothing (use reply_detail() or log()): called after open()"

# ---- the vault module, against tests/vault/vault_double.py over TLS ----

if command -v openssl >/dev/null 2>&1 && [ -x /usr/bin/python3 ]; then
	VD=$SECRETD/vault
	mkdir -m 700 "$VD"
	sh "$KEYWAY_SRCDIR/tests/vault/mkcerts.sh" "$VD/certs" >/dev/null 2>&1 ||
		bail_out "cannot make certificates"
	VROOT=hvs.conformance-root-token-0099cc
	secret "$VROOT"
	printf '%s\n' "$VROOT" >"$VD/token" && chmod 600 "$VD/token"
	/usr/bin/python3 "$KEYWAY_SRCDIR/tests/vault/vault_double.py" \
		--cert "$VD/certs/server.pem" --key "$VD/certs/server.key" \
		--port-file "$TMPD/vault.port" --root-token "$VROOT" \
		>"$TMPD/vault.out" 2>"$TMPD/vault.err" &
	VPID=$!
	for _ in $(seq 100); do
		[ -s "$TMPD/vault.port" ] && break
		sleep 0.1
	done
	[ -s "$TMPD/vault.port" ] ||
		bail_out "the Vault stand-in did not start: $(cat "$TMPD/vault.err")"
	write_conf "$VD/keyway.conf" <<EOF
backends: {
	v: { module = "vault"; address = "https://127.0.0.1:$(cat "$TMPD/vault.port")";
	     scope = "org"; ca_file = "certs/ca.pem"; timeout_ms = 2000;
	     auth = { method = "token"; token_file = "$VD/token"; }; };
};
chains: { default = ( { backend = "v"; control = "required"; } ); };
EOF
	conform vault --config "$VD/keyway.conf" --notfound openai
	expect_exit 0 "vault passes"
	expect_fails 0 "vault: no check fails"
	expect_line "ok store: the stored value resolves"
	expect_line 'ok setting "kv_version" of the wrong type is refused'
	kill "$VPID" 2>/dev/null
	wait "$VPID" 2>/dev/null
else
	skip "vault passes" "openssl and python3 run the Vault stand-in"
fi

# ---- the redis ledger, against a redis-server of its own ----

if command -v redis-server >/dev/null 2>&1; then
	RDIR=$TMPD/redis
	mkdir -m 700 "$RDIR"
	redis-server --port 0 --unixsocket "$RDIR/redis.sock" \
		--unixsocketperm 700 --dir "$RDIR" --save '' \
		--daemonize yes --pidfile "$RDIR/redis.pid" \
		--logfile "$RDIR/redis.log" >/dev/null ||
		bail_out "redis-server does not start"
	trap 'kill "$(cat "$RDIR/redis.pid" 2>/dev/null)" 2>/dev/null; tap_cleanup' EXIT
	for _ in $(seq 100); do
		[ -S "$RDIR/redis.sock" ] && break
		sleep 0.05
	done
	D=$SECRETD/redis
	mkdir -m 700 "$D"
	write_conf "$D/keyway.conf" <<EOF
keyway: { ledger: { module = "redis"; address = "$RDIR/redis.sock"; }; };
backends: { server_env: { module = "env"; }; };
chains: { default = ( { backend = "server_env"; control = "required"; } ); };
EOF
	conform redis --config "$D/keyway.conf"
	expect_exit 0 "redis passes"
	expect_fails 0 "redis: no check fails"
	expect_line 'ok a missing required setting "address" is refused'
	expect_line "ok ledger: 8 threads admit exactly 40 of 81 requests"
	expect_line "ok ledger: a refund gives the request back"
else
	skip "redis passes" "redis-server is not installed (scripts/deps.sh)"
fi

expect_no_leaks
done_testing
