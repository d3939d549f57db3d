#!/bin/bash
# cli_file_full.sh - TAP tests of keyway(1) on a file backend whose disk
# fills up or cannot be written: a real tmpfs of a few KiB, mounted in a
# private mount namespace (unshare -m), so that nothing of it is seen
# outside this test.
#
# Keys are put until a put fails: that put exits 1 with one line naming
# the file and saying there is no space, and leaves the file as it was,
# with every key acknowledged before it, and no temporary file.  With
# room again, the same put succeeds.  A file that cannot be created for
# want of space is not created.  On the file system remounted read-only,
# and in a directory a user who is not root may not write, a put fails
# the same way and keys are still read.
#
# Needs root (mount); the whole test is skipped, saying why, when not
# root or when the namespace or the mount is refused.  Run by `make
# check`, or by hand as lib.sh says.

if [ -z "${KEYWAY_TEST_UNSHARED:-}" ]; then
	# Under automake's TAP driver a skipped test says so in its plan
	# (exit status 77 would count as an error there).
	if [ "$(id -u)" -ne 0 ]; then
		echo "1..0 # SKIP not root: a tiny tmpfs needs mount(2), in a private mount namespace"
		exit 0
	fi
	if ! command -v unshare >/dev/null 2>&1; then
		echo "1..0 # SKIP no unshare(1) (util-linux) to make a private mount namespace"
		exit 0
	fi
	if ! why=$(unshare -m --propagation private true 2>&1); then
		echo "1..0 # SKIP unshare -m is refused here: ${why//$'\n'/ }"
		exit 0
	fi
	KEYWAY_TEST_UNSHARED=1 exec unshare -m --propagation private -- \
		"$BASH" "$0" "$@"
fi

. "$(dirname -- "$0")/lib.sh" || exit 99

MASTER=5e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff0
secret "$MASTER"
export KEYWAY_MASTER_KEY=$MASTER

FULL=$TMPD/full
mkdir -m 755 "$FULL" || bail_out "cannot make $FULL"
if ! why=$(mount -t tmpfs -o size=8k,mode=0755 keyway-test "$FULL" 2>&1); then
	echo "1..0 # SKIP mount -t tmpfs is refused here: ${why//$'\n'/ }"
	exit 0
fi
# The namespace ends with this process, and the mount with it; but the
# files on it go first, and rm cannot remove a mount point.
trap 'umount "$FULL" 2>/dev/null; tap_cleanup' EXIT

FILE=$FULL/keys.kwf
CONF=$TMPD/full.conf
write_conf "$CONF" <<EOF2
keyway: { master_key = { source = "env"; }; };
backends: {
	org_keys: { module = "file"; path = "$FILE"; scope = "org"; };
};
chains: { default = ( { backend = "org_keys"; control = "sufficient"; } ); };
EOF2

# from FILE CMD...: run CMD with the contents of FILE on a pipe.
from()
{
	local file=$1

	shift
	cat -- "$file" | "$@"
}

keyfile()
{
	printf '%s\n' "$2" >"$SECRETD/$1" || bail_out "cannot write $1"
	printf '%s' "$SECRETD/$1"
}

# The key of owner N.
key_of()
{
	printf 'sk-ant-cli-full-disk-%04d-0123456789abcdef' "$1"
}

tmp_files()
{
	find "$(dirname -- "$1")" -name "$(basename -- "$1").tmp.*" | wc -l
}

# ---- put until the disk is full ----

n=0
while [ "$n" -lt 200 ]; do
	key=$(key_of $((n + 1)))
	secret "$key"
	[ ! -f "$FILE" ] || cp -p "$FILE" "$TMPD/before.kwf"
	run from "$(keyfile "k$((n + 1)).in" "$key")" \
		"$KW" -c "$CONF" put org_keys anthropic --owner "own$((n + 1))"
	[ "$RC" -eq 0 ] || break
	n=$((n + 1))
done
expect_eq "$([ "$n" -gt 1 ] && [ "$n" -lt 200 ] && echo yes)" "yes" \
	"puts succeed until the disk is full ($n did)"
expect_exit 1
expect_stdout ""
expect_stderr_line "keyway: backend \"org_keys\": cannot write $FILE: No space left on device; the file is unchanged (free space on its file system and try again)"
expect_eq "$(cmp "$FILE" "$TMPD/before.kwf" && echo same)" "same" \
	"the put that found the disk full left the file as it was"
expect_eq "$(tmp_files "$FILE")" "0" \
	"the put that found the disk full left no temporary file"

bad=
for i in $(seq 1 "$n"); do
	run -s "$KW" -c "$CONF" get anthropic --org "own$i"
	slurp "$ERR"
	if [ "$RC" -ne 0 ] || [ "$(cat -- "$OUT")" != "$(key_of "$i")" ] ||
		[ -n "$REPLY" ]; then
		bad="$bad own$i (exit $RC: ${REPLY%$'\n'})"
	fi
done
expect_eq "$bad" "" "all $n keys acknowledged before the disk filled are read back"
run "$KW" -c "$CONF" ls
expect_exit 0
expect_eq "$(($(wc -l <"$OUT") - 1))" "$n" "keyway ls lists the $n keys"

# With room again, the same put is made.
mount -o remount,size=64k "$FULL" || bail_out "cannot remount $FULL larger"
key=$(key_of $((n + 1)))
run from "$SECRETD/k$((n + 1)).in" \
	"$KW" -c "$CONF" put org_keys anthropic --owner "own$((n + 1))"
expect_exit 0
expect_stdout "stored key of own$((n + 1)) for anthropic in org_keys (sk-a****cdef)"
expect_stderr ""
run -s "$KW" -c "$CONF" get anthropic --org "own$((n + 1))"
expect_exit 0
expect_stdout "$key"
expect_stderr ""

# ---- a file that cannot be created ----

NEW=$FULL/new.kwf
NCONF=$TMPD/new.conf
write_conf "$NCONF" <<EOF2
keyway: { master_key = { source = "env"; }; };
backends: {
	new_keys: { module = "file"; path = "$NEW"; scope = "org"; };
};
chains: { default = ( { backend = "new_keys"; control = "sufficient"; } ); };
EOF2
dd if=/dev/zero of="$FULL/filler" bs=4k status=none 2>/dev/null
run from "$SECRETD/k1.in" "$KW" -c "$NCONF" put new_keys anthropic --owner own1
expect_exit 1
expect_stdout ""
slurp "$ERR"
expect_eq "$(wc -l <"$ERR"):$([[ $REPLY == *"$NEW"*"No space left on device"* ]] && echo says)" \
	"1:says" "a file that cannot be made for want of space: one line, naming it and why"
expect_eq "$([[ $REPLY == *"the file is unchanged"* ]] || echo clear)" "clear" \
	"a file never made is not said to be unchanged"
expect_eq "$([[ $REPLY == *"; nothing was created (free space on its file system and try again)"* ]] && echo says)" \
	"says" "a file never made is said not to be, with what to do"
expect_missing "$NEW" "a file that cannot be made for want of space is not made"
expect_eq "$(tmp_files "$NEW")" "0" "nor is a temporary file left of it"
rm -f -- "$FULL/filler"

# ---- a read-only file system ----

cp -p "$FILE" "$TMPD/before.kwf"
mount -o remount,ro "$FULL" || bail_out "cannot remount $FULL read-only"
run from "$SECRETD/k1.in" "$KW" -c "$CONF" rotate org_keys anthropic --owner own1
expect_exit 1
expect_stdout ""
expect_stderr_line "keyway: backend \"org_keys\": cannot lock $FILE.lock: Read-only file system; nothing was written (its file system is mounted read-only)"
run -s "$KW" -c "$CONF" get anthropic --org own2
expect_exit 0
expect_stdout "$(key_of 2)"
expect_stderr ""
mount -o remount,rw "$FULL" || bail_out "cannot remount $FULL read-write"
expect_eq "$(cmp "$FILE" "$TMPD/before.kwf" && echo same)" "same" \
	"a put on a read-only file system leaves the file as it was"

# ---- a directory its user may not write ----

# Root may write any directory: this part runs keyway as nobody, from a
# directory of its own on the tmpfs.
RO=$FULL/ro
ROFILE=$RO/keys.kwf
ROCONF=$FULL/ro.conf
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
mkdir -m 700 "$RO" && chown 65534:65534 "$RO" || bail_out "cannot make $RO"
write_conf "$ROCONF" 644 <<EOF2
keyway: { master_key = { source = "env"; }; };
backends: {
	org_keys: { module = "file"; path = "$ROFILE"; scope = "org"; };
};
chains: { default = ( { backend = "org_keys"; control = "sufficient"; } ); };
EOF2
# nobody must reach $FULL, under $TMPD, and run the keyway built here.
chmod 711 "$TMPD"
if ! command -v setpriv >/dev/null 2>&1; then
	nobody_cannot="no setpriv(1) (util-linux) to run keyway as nobody"
elif ! "${NOBODY[@]}" "$KW" --version >/dev/null 2>&1; then
	nobody_cannot="nobody cannot run $KW"
else
	nobody_cannot=
fi
if [ -z "$nobody_cannot" ]; then
	run from "$SECRETD/k1.in" \
		"${NOBODY[@]}" "$KW" -c "$ROCONF" put org_keys anthropic --owner own1
	expect_exit 0
	expect_stderr ""
	cp -p "$ROFILE" "$TMPD/before.kwf"
	chmod 500 "$RO"
	run from "$SECRETD/k2.in" \
		"${NOBODY[@]}" "$KW" -c "$ROCONF" put org_keys anthropic --owner own2
	expect_exit 1
	expect_stdout ""
	expect_stderr_line "keyway: backend \"org_keys\": cannot create a temporary file for $ROFILE: Permission denied; the file is unchanged (uid $(id -u nobody) needs write access to $RO)"
	expect_eq "$(cmp "$ROFILE" "$TMPD/before.kwf" && echo same)" "same" \
		"a put in a read-only directory leaves the file as it was"
	expect_eq "$(tmp_files "$ROFILE")" "0" \
		"a put in a read-only directory leaves no temporary file"
	run -s "${NOBODY[@]}" "$KW" -c "$ROCONF" get anthropic --org own1
	expect_exit 0
	expect_stdout "$(key_of 1)"
	expect_stderr ""
	chmod 700 "$RO"
else
	skip "a put in a directory its user may not write" "$nobody_cannot"
fi
chmod 700 "$TMPD"

expect_no_leaks
done_testing
