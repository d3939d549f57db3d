#!/bin/bash
# make_corpus.sh - write the seed corpus of the file target
# (tests/fuzz/corpus/file/) from files keyway(1) writes, under the master
# keys of fuzz_file.c.  Each file gives two inputs: mode 0 (the file as it
# is) and mode 1 (the envelope's plaintext, opened with
# python3-cryptography); one plaintext also gives a mode 2 input, its
# made-up secret over a record's name.  Run from
# a build directory, after make:
#
#     KEYWAY_SRCDIR=/path/to/keyway bash /path/to/keyway/tests/fuzz/make_corpus.sh
#
# Needed only when the format or those keys change; the corpus is kept in
# the source tree.
set -eu

src=${KEYWAY_SRCDIR:?set KEYWAY_SRCDIR to the source tree}
kw=$PWD/cli/keyway
out=$src/tests/fuzz/corpus/file
[ -x "$kw" ] || { echo "run from a build directory: no $kw" >&2; exit 1; }

# The two keys of fuzz_file.c, each on two lines there.
master=$(sed -n '/^#define FZ_MASTER/,/"$/p' "$src/tests/fuzz/fuzz_file.c" |
	grep -o '[0-9a-f]\{32\}' | tr -d '\n')
old=$(sed -n '/^#define FZ_OLD/,/"$/p' "$src/tests/fuzz/fuzz_file.c" |
	grep -o '[0-9a-f]\{32\}' | tr -d '\n')
if [ ${#master} -ne 64 ] || [ ${#old} -ne 64 ]; then
	echo "cannot read the keys of fuzz_file.c" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export KEYWAY_MODULE_DIR=$PWD/modules/.libs
unset KEYWAY_CONFIG KEYWAY_PASSPHRASE

# conf NAME FILE [old]: a configuration of three file backends on FILE, one
# per scope, under the current key (and the old one, with "old").
conf() {
	local olds=
	[ "${3:-}" = old ] && olds='old_master_keys = ( { source = "env"; var = "KWF_OLD"; } );'
	cat >"$tmp/$1" <<EOF
keyway: { master_key = { source = "env"; var = "KWF_KEY"; }; $olds };
backends: {
	org: { module = "file"; path = "$2"; scope = "org"; };
	user: { module = "file"; path = "$2"; scope = "user"; };
	sys: { module = "file"; path = "$2"; scope = "system"; };
};
chains: { default = ( { backend = "org"; control = "sufficient"; } ); };
EOF
	chmod 600 "$tmp/$1"
}

# put CONF VALUE ARGS...: store VALUE (read from a file, as a user would).
put() {
	local c=$1 v=$2
	shift 2
	printf '%s\n' "$v" >"$tmp/value"
	"$kw" -c "$tmp/$c" put "$@" <"$tmp/value" >/dev/null
}

export KWF_KEY=$master KWF_OLD=$old

conf empty.conf empty.kwf
"$kw" -c "$tmp/empty.conf" init >/dev/null

conf one.conf one.kwf
put one.conf sk-ant-one-SECRET-key-0001 org anthropic --owner acme

conf many.conf many.kwf
put many.conf sk-ant-org-SECRET-key-0001 org anthropic --owner acme --name prod
put many.conf sk-org-SECRET-key-0002 org openai --owner acme
put many.conf sk-ant-org-SECRET-key-0003 org anthropic --owner globex
put many.conf sk-ant-usr-SECRET-key-0004 user anthropic --owner alice \
	--name "a name long enough to hold the planted secret"
put many.conf sk-ant-usr-SECRET-key-0005 user anthropic --owner "bob@example.org" --name "laptop ü"
put many.conf sk-ant-sys-SECRET-key-0006 sys anthropic --scope system
"$kw" -c "$tmp/many.conf" disable org openai --owner acme >/dev/null
"$kw" -c "$tmp/many.conf" rotate org anthropic --owner globex <"$tmp/value" >/dev/null

# Records sealed under the old key, the envelope under the current one.
KWF_KEY=$old
conf mixed-old.conf mixed.kwf
put mixed-old.conf sk-old-SECRET-key-0007 user openai --owner carol
KWF_KEY=$master
conf mixed.conf mixed.kwf old
put mixed.conf sk-new-SECRET-key-0008 user openai --owner dave

# Only what this script writes: the inputs named by their SHA-1 are the
# fuzzer's, kept with `fuzz_file -merge=1` (HACKING.md).
mkdir -p "$out"
rm -f "$out"/file-* "$out"/plain-* "$out"/mark-*
for f in empty one many mixed; do
	{ printf '\0'; cat "$tmp/$f.kwf"; } >"$out/file-$f"
done
KWF_KEY=$master /usr/bin/python3 - "$tmp" "$out" <<'EOF'
import os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
import struct

tmp, out = sys.argv[1:3]
key = bytes.fromhex(os.environ["KWF_KEY"])
for f in ("empty", "one", "many", "mixed"):
    data = open(f"{tmp}/{f}.kwf", "rb").read()
    header, env = data[:64], data[64:]
    def field(s):
        return struct.pack(">I", len(s)) + s
    aad = (b"keyway seal v1" + env[:21] + field(header.hex().encode())
           + field(b"none") + field(b"") + field(b""))
    plain = AESGCM(key).decrypt(env[9:21], env[21:], aad)
    open(f"{out}/plain-{f}", "wb").write(b"\x01" + plain)
    if f == "many":
        # mode 2: the made-up secret written over the first record's name
        at = plain.index(b"a name long")
        open(f"{out}/mark-{f}", "wb").write(b"\x02" + bytes([at]) + plain)
EOF
ls -l "$out"/file-* "$out"/plain-* "$out"/mark-*
