#!/bin/bash
# systemd.sh - TAP tests of keyway as systemd runs it, without systemd
# itself: the master key from a credential ($CREDENTIALS_DIRECTORY, as
# LoadCredential= gives it) for keyway(1) and keywayd(8); keywayd serving
# the socket systemd-socket-activate hands it (and leaving it in place at
# exit), refusing one that is not a listening Unix stream socket, picking
# its own by name among several, ignoring sockets meant for another
# process; what it tells $NOTIFY_SOCKET (a path, or an abstract name)
# when it is ready, reloads and stops; and the shipped units, checked by
# systemd-analyze verify, allowing chown() (socket_group, admin_group) and
# a writable /run/keyway-admin for the admin socket; and the keyway user
# and group systemd-sysusers makes from keyway.sysusers.
# Run by `make check`, or by hand as lib.sh says.

. "$(dirname -- "$0")/lib.sh" || exit 99
. "$(dirname -- "$0")/daemon_lib.sh" || exit 99

MASTER=0f1e2d3c4b5a69788796a5b4c3d2e1f05a1b2c3d4e5f60718293a4b5c6d7e8f9
K_SYS=sk-ant-systemd-credential-key-0001zzyy
secret "$MASTER" "$K_SYS"

# The credential, as systemd writes it: 0400 in a private directory.
CREDS=$SECRETD/creds
mkdir -m 700 "$CREDS" || bail_out "cannot create $CREDS"
printf '%s\n' "$MASTER" >"$CREDS/master.key" && chmod 400 "$CREDS/master.key" ||
	bail_out "cannot write $CREDS/master.key"

CONF=$TMPD/keyway.conf
write_conf "$CONF" <<EOF
keyway: {
	master_key = { source = "credential"; name = "master.key"; };
};
backends: {
	sys_keys: { module = "sqlite"; path = "$TMPD/keys.db"; scope = "system"; };
};
chains: { default = ( { backend = "sys_keys"; control = "required"; } ); };
daemon: { socket_mode = "0600"; };
EOF

# ---- the credential source, through keyway(1) ----

run "$KW" -c "$CONF" check
expect_exit 1 "check without \$CREDENTIALS_DIRECTORY: exit status 1"
expect_stderr_line "$CONF:2: keyway.master_key: source \"credential\" reads \$CREDENTIALS_DIRECTORY/master.key, but \$CREDENTIALS_DIRECTORY is not set: run keyway under systemd with LoadCredential=master.key:PATH, or set it to the directory that holds master.key"

printf '%s\n' "$K_SYS" >"$SECRETD/k.in"
run sh -c 'CREDENTIALS_DIRECTORY=$1 exec "$2" -c "$3" put sys_keys anthropic --scope system <"$4"' \
	sh "$CREDS" "$KW" "$CONF" "$SECRETD/k.in"
expect_exit 0 "put with the master key from a credential"
run -s env CREDENTIALS_DIRECTORY="$CREDS" "$KW" -c "$CONF" get anthropic
expect_exit 0
expect_stdout "$K_SYS" "get with the master key from a credential: the stored key"

mkdir -m 700 "$TMPD/nocreds"
run env CREDENTIALS_DIRECTORY="$TMPD/nocreds" "$KW" -c "$CONF" get anthropic
expect_exit 1
expect_stderr_line "keyway: $CONF:2: keyway.master_key: no credential \"master.key\" in \$CREDENTIALS_DIRECTORY ($TMPD/nocreds): give the service LoadCredential=master.key:PATH"

chmod 444 "$CREDS/master.key"
run env CREDENTIALS_DIRECTORY="$CREDS" "$KW" -c "$CONF" get anthropic
expect_exit 1
expect_stderr_line "keyway: $CONF:2: keyway.master_key: credential \"master.key\" ($CREDS/master.key) is accessible by others or writable by its group (mode 0444); it holds secrets: chmod 400 it"
chmod 400 "$CREDS/master.key"

sed 's|name = "master.key"; };|\n\t\tname = "../master.key"; };|' "$CONF" |
	write_conf "$TMPD/badname.conf"
run env CREDENTIALS_DIRECTORY="$CREDS" "$KW" -c "$TMPD/badname.conf" check
expect_exit 1
expect_stderr_line "$TMPD/badname.conf:3: keyway.master_key: name \"../master.key\" must be a plain file name of \$CREDENTIALS_DIRECTORY, as LoadCredential= gives it (no '/', not \".\" or \"..\", at most 255 bytes)"

# ---- keywayd on systemd's socket ----

if ! command -v systemd-socket-activate >/dev/null 2>&1; then
	skip "keywayd serves systemd's socket" \
		"systemd-socket-activate (Debian's systemd) is not installed"
	expect_no_leaks
	done_testing
fi
if [ -z "$PY" ]; then
	skip "keywayd serves systemd's socket" "no python3"
	expect_no_leaks
	done_testing
fi

NOTES=$TMPD/notes

# ask SOCK METHOD PATH [BODY]: ask_on (daemon_lib.sh) any socket.
ask() { ask_on "$@"; }

# The key of the last answer.
key_of()
{
	python3 -c 'import json, sys
print(json.load(open(sys.argv[1])).get("key", ""))' "$OUT" 2>/dev/null
}

# A stand-in for the service manager's end of $NOTIFY_SOCKET: each
# datagram as one line of $NOTES, its lines joined by '|'.
listen_notify()
{
	: >"$NOTES"
	python3 - "$1" "$NOTES" <<'PYEOF' &
import socket, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
with open(sys.argv[2], "a") as out:
    print("bound", file=out, flush=True)
    while True:
        msg = s.recv(4096).decode()
        print(msg.replace("\n", "|"), file=out, flush=True)
PYEOF
	NPID=$!
	wait_for 'grep -q bound "$NOTES"' || bail_out "the notify listener did not start"
}

# activate [ssa OPTIONS...] -- [keywayd OPTIONS...]: keywayd under
# systemd-socket-activate, which binds, waits for the first client and
# then runs keywayd with the socket(s); $PID is both.
activate()
{
	local ssa=()

	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		ssa+=("$1")
		shift
	done
	shift
	: >"$LOG"
	systemd-socket-activate -E KEYWAY_MODULE_DIR -E LC_ALL \
		-E CREDENTIALS_DIRECTORY="$CREDS" ${NOTIFY_SOCKET:+-E NOTIFY_SOCKET} \
		${LSAN_OPTIONS:+-E LSAN_OPTIONS} ${ASAN_OPTIONS:+-E ASAN_OPTIONS} \
		"${ssa[@]}" "$KWD" -c "$CONF" "$@" 2>>"$LOG" &
	PID=$!
}

# stop PID NAME: SIGTERM, and its exit status is 0.
stop()
{
	kill -TERM "$1"
	wait "$1"
	expect_eq "$?" 0 "$2"
}

SOCK=$TMPD/keyway.sock
listen_notify "$TMPD/notify"
export NOTIFY_SOCKET=$TMPD/notify
activate -l "$SOCK" -- --socket "$TMPD/not-this.sock"
trap 'kill -TERM $PID $NPID 2>/dev/null; tap_cleanup' EXIT
wait_for '[ -S "$SOCK" ]' || bail_out "systemd-socket-activate did not listen: $(cat "$LOG")"
inode=$(stat -c %i "$SOCK")
mode=$(stat -c %a "$SOCK")

# The first request starts keywayd, and waits for it in the socket's queue.
ask "$SOCK" POST /v1/resolve '{"provider":"anthropic"}'
expect_eq "$CODE" 200 "an activated socket: the first resolve starts keywayd and is answered"
expect_eq "$(key_of)" "$K_SYS" "an activated socket: the key, sealed under the credential's master key"
expect_eq "$(stat -c %i:%a "$SOCK")" "$inode:$mode" \
	"an activated socket is served as systemd made it: not bound again, mode kept (not daemon.socket_mode)"
if grep -q "^keywayd: serving $CONF on $SOCK from systemd (a thread per connection, at most 256)$" "$LOG" &&
	grep -q "^keywayd: --socket $TMPD/not-this.sock is not used: systemd passed the socket $SOCK$" "$LOG"; then
	pass "keywayd says it serves systemd's socket, and that --socket is not used"
else
	fail "keywayd says it serves systemd's socket, and that --socket is not used" "$(cat "$LOG")"
fi
expect_missing "$TMPD/not-this.sock" "--socket is not bound when systemd passed a socket"
wait_for 'grep -q "^READY=1" "$NOTES"'
expect_eq "$(sed -n 2p "$NOTES")" "READY=1|STATUS=serving $CONF on $SOCK" \
	"\$NOTIFY_SOCKET: READY=1 once keywayd serves"

kill -HUP "$PID"
wait_for '[ "$(grep -c "^READY=1" "$NOTES")" -ge 2 ]'
if sed -n 3p "$NOTES" | grep -Eq '^RELOADING=1\|MONOTONIC_USEC=[0-9]+$' &&
	[ "$(sed -n 4p "$NOTES")" = "READY=1|STATUS=serving $CONF on $SOCK" ]; then
	pass "\$NOTIFY_SOCKET: SIGHUP tells RELOADING=1, then READY=1"
else
	fail "\$NOTIFY_SOCKET: SIGHUP tells RELOADING=1, then READY=1" "$(cat "$NOTES")"
fi
# A configuration that fails to load: still ready, with the old one.
cp "$CONF" "$TMPD/keyway.conf.good"
echo 'backends: {' >>"$CONF"
kill -HUP "$PID"
wait_for '[ "$(grep -c "^READY=1" "$NOTES")" -ge 3 ]'
expect_eq "$(sed -n 6p "$NOTES")" \
	"READY=1|STATUS=serving the configuration of before: $CONF could not be loaded" \
	"\$NOTIFY_SOCKET: a reload that fails tells READY=1 and why"
cp "$TMPD/keyway.conf.good" "$CONF"
ask "$SOCK" GET /v1/health
expect_eq "$CODE" 200 "still served after the reloads"

stop "$PID" "keywayd on systemd's socket exits 0 on SIGTERM"
expect_eq "$(tail -n 1 "$NOTES")" "STOPPING=1|STATUS=finishing the requests under way" \
	"\$NOTIFY_SOCKET: STOPPING=1 on SIGTERM"
if [ -S "$SOCK" ] && [ "$(stat -c %i "$SOCK")" = "$inode" ]; then
	pass "keywayd leaves systemd's socket in place at exit"
else
	fail "keywayd leaves systemd's socket in place at exit" "$(ls -l "$TMPD")"
fi
kill "$NPID" 2>/dev/null
wait "$NPID" 2>/dev/null

# An abstract $NOTIFY_SOCKET ("@name"), with keywayd's own socket.
listen_notify "@keyway-test-notify-$$"
export NOTIFY_SOCKET=@keyway-test-notify-$$
OWN=$TMPD/own.sock
CREDENTIALS_DIRECTORY=$CREDS "$KWD" -c "$CONF" --socket "$OWN" 2>>"$LOG" &
PID=$!
wait_for 'grep -q "^READY=1" "$NOTES"'
expect_eq "$(sed -n 2p "$NOTES")" "READY=1|STATUS=serving $CONF on $OWN" \
	"an abstract \$NOTIFY_SOCKET (@name): READY=1"
stop "$PID" "keywayd on its own socket exits 0 on SIGTERM"
expect_eq "$(tail -n 1 "$NOTES")" "STOPPING=1|STATUS=finishing the requests under way" \
	"an abstract \$NOTIFY_SOCKET (@name): STOPPING=1"
expect_missing "$OWN" "keywayd removes a socket of its own at exit"
kill "$NPID" 2>/dev/null
wait "$NPID" 2>/dev/null
unset NOTIFY_SOCKET

# Sockets meant for another process ($LISTEN_PID) are not taken.
run_own()
{
	env LISTEN_PID=1 LISTEN_FDS=1 LISTEN_FDNAMES=keyway \
		CREDENTIALS_DIRECTORY="$CREDS" \
		"$KWD" -c "$CONF" --socket "$OWN" 2>>"$LOG" &
	PID=$!
}
run_own
if wait_for '[ -S "$OWN" ]'; then
	ask "$OWN" GET /v1/health
	expect_eq "$CODE" 200 "\$LISTEN_PID of another process: keywayd binds --socket itself"
else
	fail "\$LISTEN_PID of another process: keywayd binds --socket itself" "$(cat "$LOG")"
fi
stop "$PID" "keywayd with another process's \$LISTEN_PID exits 0 on SIGTERM"

# Its own socket among several, by name; none named "keyway" is refused.
A=$TMPD/admin.sock
B=$TMPD/named.sock
activate -l "$A" -l "$B" --fdname=admin:keyway --
wait_for '[ -S "$B" ]' || bail_out "systemd-socket-activate did not listen: $(cat "$LOG")"
ask "$B" POST /v1/resolve '{"provider":"anthropic"}'
expect_eq "$CODE" 200 "two sockets, named admin and keyway: keywayd serves \"keyway\""
stop "$PID" "keywayd on the socket named keyway exits 0 on SIGTERM"
rm -f "$A" "$B"

# activated_fails NAME LINE ssa-OPTIONS...: keywayd exits 1 with LINE
# after the first client comes (poke: a connection, or a datagram).
activated_fails()
{
	local name=$1 line=$2 rc

	shift 2
	activate "$@" --
	wait_for '[ -S "$POKE" ]' || bail_out "systemd-socket-activate did not listen: $(cat "$LOG")"
	python3 - "$POKE" "$DGRAM" <<'PYEOF'
import socket, sys
if sys.argv[2]:
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"x", sys.argv[1])
else:
    socket.socket(socket.AF_UNIX).connect(sys.argv[1])
PYEOF
	if ! wait_for '! kill -0 "$PID" 2>/dev/null'; then
		kill -KILL "$PID"
		echo "(still running after 10 s)" >>"$LOG"
	fi
	wait "$PID"
	rc=$?
	if [ "$rc" -eq 1 ] && [ "$(grep -c '^keywayd:' "$LOG")" -eq 1 ] &&
		grep -qxF -- "$line" "$LOG"; then
		pass "$name"
	else
		fail "$name" "exit status $rc: $(head -n 6 "$LOG")"
	fi
}
POKE=$TMPD/dgram.sock DGRAM=1
activated_fails "a datagram socket from systemd is refused" \
	"keywayd: socket activation: descriptor 3 (\"keyway\") is not a listening Unix stream socket; give the socket unit ListenStream=/run/keyway/keyway.sock" \
	-d -l "$POKE"
POKE=$TMPD/one.sock DGRAM=
activated_fails "two sockets, none named keyway: refused" \
	"keywayd: socket activation: none of the 2 sockets systemd passed is named \"keyway\"; set FileDescriptorName=keyway in its socket unit" \
	-l "$POKE" -l "$TMPD/two.sock" --fdname=one:two
# daemon.tcp's port from systemd (keyway-tcp.socket): held from boot, so
# that no other user binds it first.  keywayd takes it by its name, and
# refuses one that listens elsewhere than daemon.tcp.
TOKEN=tcp-token-0f1e2d3c4b5a6978879
secret "$TOKEN"
printf '%s\n' "$TOKEN" >"$SECRETD/tcp.token" && chmod 600 "$SECRETD/tcp.token"
free_port()
{
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
PORT=$(free_port)
PORT2=$(free_port)
sed "s|^daemon: {|daemon: { tcp = \"127.0.0.1:$PORT\"; tcp_token_file = \"$SECRETD/tcp.token\"; tcp_chains = ( \"default\" );|" \
	"$CONF" | write_conf "$TMPD/tcp.conf"
CONF_SAVED=$CONF
CONF=$TMPD/tcp.conf
TS=$TMPD/tcp-main.sock
activate -l "$TS" -l "127.0.0.1:$PORT" --fdname=keyway:keyway-tcp --
wait_for '[ -S "$TS" ]' || bail_out "systemd-socket-activate did not listen: $(cat "$LOG")"
run -s curl -sS -H "Authorization: Bearer $TOKEN" -w '%{http_code}' \
	"http://127.0.0.1:$PORT/v1/health"
expect_eq "$(tail -c 3 "$OUT")" 200 "TCP on the port systemd passed (keyway-tcp): answered"
if grep -q "^keywayd: serving TCP on 127.0.0.1:$PORT from systemd " "$LOG"; then
	pass "keywayd says it serves the TCP port systemd passed, and binds none"
else
	fail "keywayd says it serves the TCP port systemd passed, and binds none" "$(cat "$LOG")"
fi
stop "$PID" "keywayd with systemd's TCP port exits 0 on SIGTERM"
rm -f "$TS"
activate -l "$TS" -l "127.0.0.1:$PORT2" --fdname=keyway:keyway-tcp --
wait_for '[ -S "$TS" ]' || bail_out "systemd-socket-activate did not listen: $(cat "$LOG")"
python3 -c 'import socket, sys
socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$TS"
wait_for '! kill -0 "$PID" 2>/dev/null' || kill -KILL "$PID"
wait "$PID"
expect_eq "$?" 1 "a TCP port from systemd that is not daemon.tcp's: keywayd exits 1"
if grep -qxF "keywayd: socket activation: descriptor 4 (\"keyway-tcp\") listens on 127.0.0.1:$PORT2, not on daemon.tcp's 127.0.0.1:$PORT; make ListenStream= and daemon.tcp the same" "$LOG"; then
	pass "a TCP port from systemd that is not daemon.tcp's: one line saying so"
else
	fail "a TCP port from systemd that is not daemon.tcp's: one line saying so" "$(cat "$LOG")"
fi
rm -f "$TS"
CONF=$CONF_SAVED
# A port passed as keyway-tcp to a keywayd whose configuration serves no
# TCP: its callers would wait for nothing, so keywayd says so and stops.
activate -l "$TS" -l "127.0.0.1:$PORT" --fdname=keyway:keyway-tcp --
wait_for '[ -S "$TS" ]' || bail_out "systemd-socket-activate did not listen: $(cat "$LOG")"
python3 -c 'import socket, sys
socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$TS"
wait_for '! kill -0 "$PID" 2>/dev/null' || kill -KILL "$PID"
wait "$PID"
expect_eq "$?" 1 "a keyway-tcp socket without daemon.tcp: keywayd exits 1"
if grep -qxF "keywayd: socket activation: systemd passed a socket named \"keyway-tcp\" and $CONF sets no daemon.tcp; set daemon.tcp (with tcp_token_file and tcp_chains) or disable keyway-tcp.socket" "$LOG"; then
	pass "a keyway-tcp socket without daemon.tcp: one line saying so"
else
	fail "a keyway-tcp socket without daemon.tcp: one line saying so" "$(cat "$LOG")"
fi
rm -f "$TS"

# Malformed variables, for this very process.
run sh -c 'LISTEN_PID=$$ LISTEN_FDS=two exec "$0" -c "$1"' "$KWD" "$CONF"
expect_exit 1
expect_stderr_line "keywayd: socket activation: \$LISTEN_FDS (two) is not a number"
run sh -c 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=keyway:admin exec "$0" -c "$1" 3</dev/null' \
	"$KWD" "$CONF"
expect_exit 1
expect_stderr_line "keywayd: socket activation: \$LISTEN_FDNAMES has 2 names for 1 sockets"
run sh -c 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -c "$1" 3<&-' "$KWD" "$CONF"
expect_exit 1
expect_stderr_line "keywayd: socket activation: descriptor 3 of \$LISTEN_FDS (1) is not open"
trap tap_cleanup EXIT

# ---- the shipped units ----

UNITS=$KEYWAY_BUILDDIR/systemd
if grep -n '@[a-z_]*@' "$UNITS/keyway.socket" "$UNITS/keyway-tcp.socket" "$UNITS/keyway.service"; then
	fail "the units have every @dir@ replaced" "$(grep -n '@[a-z_]*@' "$UNITS"/keyway.*)"
else
	pass "the units have every @dir@ replaced"
fi
# The admin socket keywayd(8) suggests must be in a directory the service
# may write to under ProtectSystem=strict: a RuntimeDirectory= or a
# ReadWritePaths= of the unit.
ADMIN_DIR=/run/keyway-admin
if grep -qE "^RuntimeDirectory=(.* )?${ADMIN_DIR#/run/}( |\$)" "$UNITS/keyway.service" ||
	grep -qE "^ReadWritePaths=(.* )?$ADMIN_DIR( |\$)" "$UNITS/keyway.service"; then
	pass "keyway.service may bind the admin socket in $ADMIN_DIR"
else
	fail "keyway.service may bind the admin socket in $ADMIN_DIR" \
		"$(grep -E '^(ProtectSystem|RuntimeDirectory|ReadWritePaths)=' "$UNITS/keyway.service")"
fi
if grep -q '^#.*daemon\.tcp' "$UNITS/keyway.service"; then
	pass "keyway.service says what daemon.tcp needs"
else
	fail "keyway.service says what daemon.tcp needs"
fi

# in_filter SET SYSCALL: is SYSCALL in SET (a system call, or @group of
# systemd-analyze syscall-filter, and the groups within it)?
in_filter()
{
	local item

	for item in $1; do
		if [ "$item" = "$2" ]; then
			return 0
		fi
		case $item in
		@*)
			in_filter "$(systemd-analyze syscall-filter --no-pager "$item" |
				sed -n 's/^    \([@a-z0-9_]*\)$/\1/p')" "$2" && return 0
			;;
		esac
	done
	return 1
}
if ! command -v systemd-analyze >/dev/null 2>&1 ||
	! systemd-analyze syscall-filter --no-pager @chown >/dev/null 2>&1; then
	skip "keyway.service allows chown() and fchown(), for socket_group and admin_group" \
		"systemd-analyze (Debian's systemd) is not installed"
else
	# The SystemCallFilter= lines in order: the first an allow list
	# (what it holds, and nothing else), each later line adding to it
	# or, with ~, taking from it.
	denied=
	for sc in chown fchown; do
		allowed=
		n=0
		while IFS= read -r line; do
			n=$((n + 1))
			set -- ${line#SystemCallFilter=}
			neg=
			case $1 in "~"*) neg=1; set -- "${1#\~}" "${@:2}";; esac
			if in_filter "$*" "$sc"; then
				if [ -n "$neg" ]; then allowed=; else allowed=1; fi
			elif [ "$n" -eq 1 ]; then
				allowed=
			fi
		done < <(grep '^SystemCallFilter=' "$UNITS/keyway.service")
		[ -n "$allowed" ] || denied="$denied $sc"
	done
	expect_eq "$denied" "" "keyway.service allows chown() and fchown(), for socket_group and admin_group"
fi
# The user and group the service runs as, from the shipped sysusers.d
# file, made by systemd-sysusers in a root of the test's own.
SYSUSERS=$KEYWAY_SRCDIR/systemd/keyway.sysusers
if ! command -v systemd-sysusers >/dev/null 2>&1; then
	skip "systemd-sysusers makes the service's user and group" \
		"systemd-sysusers (Debian's systemd) is not installed"
else
	mkdir -p "$TMPD/sysroot/etc"
	run systemd-sysusers --root="$TMPD/sysroot" "$SYSUSERS"
	expect_exit 0 "systemd-sysusers takes keyway.sysusers"
	svc_user=$(sed -n 's/^User=//p' "$UNITS/keyway.service")
	svc_group=$(sed -n 's/^Group=//p' "$UNITS/keyway.service")
	svc_home=/var/lib/$(sed -n 's/^StateDirectory=//p' "$UNITS/keyway.service")
	expect_eq "$(awk -F: -v u="$svc_user" '$1 == u { print $6 ":" $7 }' \
		"$TMPD/sysroot/etc/passwd")" "$svc_home:/usr/sbin/nologin" \
		"systemd-sysusers makes keyway.service's User=, with its StateDirectory= for home and no shell"
	gid=$(awk -F: -v g="$svc_group" '$1 == g { print $3 }' "$TMPD/sysroot/etc/group")
	expect_eq "$(awk -F: -v u="$svc_user" '$1 == u { print $4 }' \
		"$TMPD/sysroot/etc/passwd")" "${gid:-none}" \
		"systemd-sysusers makes keyway.service's Group=, the user's group"
fi

if ! command -v systemd-analyze >/dev/null 2>&1; then
	skip "systemd-analyze verify: keyway.socket and keyway.service" \
		"systemd-analyze (Debian's systemd) is not installed"
else
	# verify wants ExecStart= to exist: the keywayd just built.
	mkdir "$TMPD/units"
	cp "$UNITS/keyway.socket" "$UNITS/keyway-tcp.socket" "$TMPD/units/"
	sed "s|^ExecStart=[^ ]*keywayd |ExecStart=$KWD |" "$UNITS/keyway.service" \
		>"$TMPD/units/keyway.service"
	run systemd-analyze verify --man=no "$TMPD/units/keyway.socket" \
		"$TMPD/units/keyway-tcp.socket" "$TMPD/units/keyway.service"
	if [ "$RC" -ne 0 ] && grep -qi 'failed to \(initialize\|set up\)\|not booted\|permission denied' "$ERR"; then
		skip "systemd-analyze verify: keyway.socket and keyway.service" \
			"systemd-analyze cannot run here: $(head -n 1 "$ERR")"
	else
		expect_exit 0 "systemd-analyze verify: keyway.socket and keyway.service"
		expect_stderr "" "systemd-analyze verify: no warning about the units"
	fi
fi

expect_no_leaks
done_testing
