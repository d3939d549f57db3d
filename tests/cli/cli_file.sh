#!/bin/bash
# cli_file.sh - TAP tests of keyway(1) on a file backend: put, ls, get,
# disable and rm through an encrypted flat file, with exact output and
# exit statuses; the file's refusals (unsafe mode, symlink, damage, a
# master key that is not the file's) as one line each; and the file read
# back without keyway, by tests/file_reader.py and Debian's
# python3-cryptography (python3-argon2 for a passphrase), under a master
# key from the environment and under a passphrase.  Run by `make check`,
# or by hand as lib.sh says.

. "$(dirname -- "$0")/lib.sh" || exit 99

MASTER=5e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff0
OTHER=0a1b2c3d4e5f60718293a4b5c6d7e8f90f1e2d3c4b5a69788796a5b4c3d2e1f0
PASS='file backend passphrase 42'
K_ORG=sk-ant-cli-file-org-acme-0001aaaa
K_ALICE=sk-ant-cli-file-user-alice-02bb
K_SYS=sk-ant-cli-file-system-00003ccc
secret "$MASTER" "$OTHER" "$PASS" "$K_ORG" "$K_ALICE" "$K_SYS"
export KEYWAY_MASTER_KEY=$MASTER

READER=$KEYWAY_SRCDIR/tests/file_reader.py
PYCRYPTO=
if /usr/bin/python3 -c 'import cryptography.hazmat.primitives.ciphers.aead, argon2.low_level' 2>/dev/null; then
	PYCRYPTO=1
fi

FILE=$TMPD/keys.kwf
CONF=$TMPD/file.conf
write_conf "$CONF" <<'EOF2'
keyway: { master_key = { source = "env"; }; };
backends: {
	org_keys: { module = "file"; path = "keys.kwf"; scope = "org"; };
	user_keys: { module = "file"; path = "keys.kwf"; scope = "user"; };
};
chains: {
	default = ( { backend = "org_keys"; control = "sufficient"; },
		    { backend = "user_keys"; control = "sufficient"; } );
};
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

# ---- check, put, get, ls ----

run "$KW" -c "$CONF" check
expect_exit 1
expect_stdout ""
expect_stderr "$CONF:3: backend \"org_keys\": $FILE does not exist: create it with keyway init (or a first keyway put)
$CONF:4: backend \"user_keys\": $FILE does not exist: create it with keyway init (or a first keyway put)"
expect_missing "$FILE" "keyway check creates no file"

run from "$(keyfile org.in "$K_ORG")" \
	"$KW" -c "$CONF" put org_keys anthropic --owner acme --name prod
expect_exit 0
expect_stdout "stored key of acme for anthropic in org_keys (sk-a****aaaa)"
expect_stderr ""
expect_eq "$(stat -c %a "$FILE")" "600" "the file was created with mode 600"

run from "$(keyfile alice.in "$K_ALICE")" \
	"$KW" -c "$CONF" put user_keys anthropic --owner alice
expect_exit 0
expect_stdout "stored key of alice for anthropic in user_keys (sk-a****02bb)"
expect_stderr ""

run from "$(keyfile org2.in "$K_ORG")" \
	"$KW" -c "$CONF" put org_keys anthropic --owner acme
expect_exit 1
expect_stdout ""
expect_stderr_line "keyway: put: backend \"org_keys\" already holds an org key of \"acme\" for anthropic; rotate it instead"

run -s "$KW" -c "$CONF" get anthropic --org acme --user alice
expect_exit 0
expect_stdout "$K_ORG"
expect_stderr ""

run -s "$KW" -c "$CONF" get anthropic --org globex --user alice
expect_exit 0
expect_stdout "$K_ALICE"
expect_stderr ""

run "$KW" -c "$CONF" ls
expect_exit 0
expect_stdout "BACKEND    SCOPE  OWNER  PROVIDER   NAME  STATE   KEY           USES  LAST-USED   ROTATED
org_keys   org    acme   anthropic  prod  active  sk-a****aaaa  1     $(date +%F)  $(date +%F)
user_keys  user   alice  anthropic  -     active  sk-a****02bb  1     $(date +%F)  $(date +%F)"
expect_stderr ""

run "$KW" -c "$CONF" disable org_keys anthropic --owner acme
expect_exit 0
expect_stdout "disabled key of acme for anthropic in org_keys"
expect_stderr ""

run -s "$KW" -c "$CONF" get anthropic --org acme --user alice
expect_exit 0
expect_stdout "$K_ALICE"
expect_stderr ""

run "$KW" -c "$CONF" rm user_keys anthropic --owner alice
expect_exit 0
expect_stdout "deleted key of alice for anthropic in user_keys"
expect_stderr ""

run "$KW" -c "$CONF" get anthropic --org acme --user alice
expect_exit 4
expect_stdout ""
expect_stderr_line "keyway: chain \"default\", provider \"anthropic\": org_keys answered denied: the org key of \"acme\" for anthropic is disabled"

run "$KW" -c "$CONF" enable org_keys anthropic --owner acme
expect_exit 0
expect_stdout "enabled key of acme for anthropic in org_keys"
expect_stderr ""

# A write that fails (here: no file may grow, as on a full disk) leaves
# the file as it was, and says so.  Only keyway runs under the limit.
cp -p "$FILE" "$TMPD/before.kwf"
run from "$(keyfile zeta.in "$K_ALICE")" bash -c \
	'(ulimit -f 0 && exec "$@") 2>&1 >/dev/null | cat >&2; exit "${PIPESTATUS[0]}"' \
	limited "$KW" -c "$CONF" put user_keys anthropic --owner zeta
expect_exit 1
expect_stdout ""
expect_stderr_line "keyway: backend \"user_keys\": cannot write $FILE: File too large; the file is unchanged (the process may not write files this large: raise its file size limit, ulimit -f)"
expect_eq "$(cmp "$FILE" "$TMPD/before.kwf" && echo same)" "same" \
	"a failed write leaves the file as it was"
expect_eq "$(find "$TMPD" -name 'keys.kwf.tmp.*' | wc -l)" "0" \
	"a failed write leaves no temporary file"

# ---- read without keyway ----

if [ -n "$PYCRYPTO" ]; then
	run -s env KEYWAY_MASTER_KEY="$MASTER" /usr/bin/python3 "$READER" "$FILE"
	expect_exit 0
	expect_eq "$(cut -d' ' -f1-5,8,10 "$OUT")" \
		"org acme anthropic prod active 1 $K_ORG" \
		"file_reader.py reads the file under the master key"
	expect_stderr ""
else
	skip "file_reader.py under the master key" "no python3-cryptography and python3-argon2"
fi

PCONF=$TMPD/pass.conf
PFILE=$TMPD/pass.kwf
write_conf "$PCONF" <<'EOF2'
keyway: { master_key = { source = "passphrase"; }; };
backends: {
	system_keys: { module = "file"; path = "pass.kwf"; scope = "system"; };
};
chains: { default = ( { backend = "system_keys"; control = "sufficient"; } ); };
EOF2
run from "$(keyfile sys.in "$K_SYS")" \
	env KEYWAY_PASSPHRASE="$PASS" "$KW" -c "$PCONF" put system_keys anthropic --scope system
expect_exit 0
expect_stdout "stored system key for anthropic in system_keys (sk-a****3ccc)"
expect_stderr ""
expect_eq "$(od -An -tx1 -j10 -N14 "$PFILE" | tr -d ' \n')" "01000000000200004c0000000001" \
	"the header names Argon2id with t=2, m=19456 KiB, p=1"

if [ -n "$PYCRYPTO" ]; then
	run -s env -u KEYWAY_MASTER_KEY KEYWAY_PASSPHRASE="$PASS" /usr/bin/python3 "$READER" "$PFILE"
	expect_exit 0
	expect_eq "$(cut -d' ' -f1-5,8,10 "$OUT")" \
		"system - anthropic - active 0 $K_SYS" \
		"file_reader.py reads the file under a passphrase (Argon2id)"
	expect_stderr ""
else
	skip "file_reader.py under a passphrase" "no python3-cryptography and python3-argon2"
fi

# And under PBKDF2-HMAC-SHA256.
P2CONF=$TMPD/pbkdf2.conf
P2FILE=$TMPD/pbkdf2.kwf
write_conf "$P2CONF" <<'EOF2'
keyway: { master_key = { source = "passphrase"; kdf = "pbkdf2-sha256"; }; };
backends: {
	system_keys: { module = "file"; path = "pbkdf2.kwf"; scope = "system"; };
};
chains: { default = ( { backend = "system_keys"; control = "sufficient"; } ); };
EOF2
run from "$(keyfile sys2.in "$K_SYS")" \
	env KEYWAY_PASSPHRASE="$PASS" "$KW" -c "$P2CONF" put system_keys anthropic --scope system
expect_exit 0
expect_stdout "stored system key for anthropic in system_keys (sk-a****3ccc)"
expect_stderr ""
expect_eq "$(od -An -tx1 -j10 -N6 "$P2FILE" | tr -d ' \n')" "0200000927c0" \
	"the header names PBKDF2 with 600000 iterations"

if [ -n "$PYCRYPTO" ]; then
	run -s env -u KEYWAY_MASTER_KEY KEYWAY_PASSPHRASE="$PASS" /usr/bin/python3 "$READER" "$P2FILE"
	expect_exit 0
	expect_eq "$(cut -d' ' -f1-5,8,10 "$OUT")" \
		"system - anthropic - active 0 $K_SYS" \
		"file_reader.py reads the file under a passphrase (PBKDF2)"
	expect_stderr ""
else
	skip "file_reader.py under a PBKDF2 passphrase" "no python3-cryptography and python3-argon2"
fi

run env KEYWAY_PASSPHRASE="not the passphrase" "$KW" -c "$PCONF" get anthropic
expect_exit 1
expect_stdout ""
expect_stderr_line "keyway: $PCONF:3: backend \"system_keys\": $PFILE is sealed under master key $(od -An -tx1 -j65 -N8 "$PFILE" | tr -d ' \n'), which neither keyway.master_key nor keyway.old_master_keys holds: configure that key (or its passphrase)"

# ---- refusals ----

cp -p "$FILE" "$TMPD/good.kwf"

chmod 644 "$FILE"
run "$KW" -c "$CONF" get anthropic --org acme
expect_exit 1
expect_stdout ""
expect_stderr_line "keyway: $CONF:3: backend \"org_keys\": $FILE is accessible by group or others (mode 0644); it holds secrets: chmod 600 it"
chmod 600 "$FILE"

mv "$FILE" "$TMPD/real.kwf"
ln -s "$TMPD/real.kwf" "$FILE"
run "$KW" -c "$CONF" get anthropic --org acme
expect_exit 1
expect_stdout ""
expect_stderr_line "keyway: $CONF:3: backend \"org_keys\": $FILE is a symbolic link; point the setting at the file itself"
rm -f "$FILE"

head -c 50 "$TMPD/good.kwf" >"$FILE"
chmod 600 "$FILE"
run "$KW" -c "$CONF" get anthropic --org acme
expect_exit 1
expect_stdout ""
expect_stderr_line "keyway: $CONF:3: backend \"org_keys\": $FILE is truncated (50 bytes; a keyway file has at least 101): restore it from a backup"
expect_eq "$(stat -c %s "$FILE")" "50" "a truncated file is left as it was"

cp "$TMPD/good.kwf" "$FILE"
# One bit of the ciphertext flipped: a byte written over it might be the
# same byte.
byte=$(od -An -tu1 -j120 -N1 "$FILE" | tr -d ' ')
# shellcheck disable=SC2059
printf "\\$(printf %03o $((byte ^ 1)))" | dd of="$FILE" bs=1 seek=120 conv=notrunc status=none
expect_eq "$(cmp -s "$FILE" "$TMPD/good.kwf" || echo changed)" "changed" "byte 120 was flipped"
run "$KW" -c "$CONF" get anthropic --org acme
expect_exit 1
expect_stdout ""
expect_stderr_line "keyway: $CONF:3: backend \"org_keys\": $FILE cannot be opened: it was altered or damaged (authentication failed: the sealed value was altered or belongs to another record): restore it from a backup"

cp "$TMPD/good.kwf" "$FILE"
run env KEYWAY_MASTER_KEY="$OTHER" "$KW" -c "$CONF" get anthropic --org acme
expect_exit 1
expect_stdout ""
expect_stderr_line "keyway: $CONF:3: backend \"org_keys\": $FILE is sealed under master key $(od -An -tx1 -j65 -N8 "$FILE" | tr -d ' \n'), which neither keyway.master_key nor keyway.old_master_keys holds: configure that key (or its passphrase)"
expect_eq "$(cmp "$FILE" "$TMPD/good.kwf" && echo same)" "same" "a refused file is left as it was"

run -s "$KW" -c "$CONF" get anthropic --org acme
expect_exit 0
expect_stdout "$K_ORG"
expect_stderr ""

expect_no_leaks
done_testing
