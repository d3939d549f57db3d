#!/bin/bash
# kit.sh - TAP test of the plugin kit outside the source tree: keyway is
# installed into a temporary directory (make install DESTDIR=...), the
# installed skeleton is built there with its own Makefile, which uses only
# pkg-config, and also with the one-line recipe, and the installed
# keyway-conformance passes on the result.

. "$(dirname -- "$0")/lib.sh" || exit 99

MAKE=${KEYWAY_MAKE:-make}
command -v pkg-config >/dev/null 2>&1 || {
	echo "1..0 # SKIP pkg-config is not installed (scripts/deps.sh)"
	exit 0
}

DEST=$TMPD/dest
run "$MAKE" -C "$KEYWAY_BUILDDIR" install DESTDIR="$DEST"
expect_exit 0 "make install DESTDIR=\$TMP/dest"
[ "$RC" = 0 ] || { cat -- "$ERR" | sed 's/^/# /'; done_testing; exit; }

pc=$(find "$DEST" -name keyway-module.pc | head -n 1)
skel=$(find "$DEST" -type d -path '*/examples/skeleton' | head -n 1)
kc=$(find "$DEST" -type f -name keyway-conformance | head -n 1)
libdir=$(dirname -- "$(find "$DEST" -name 'libkeyway.so*' | head -n 1)")
expect_eq "$([ -n "$pc" ] && [ -n "$skel" ] && [ -x "$kc" ] && echo yes)" yes \
	"keyway-module.pc, the skeleton and keyway-conformance are installed"
man=$(find "$DEST" -name keyway-conformance.1 | head -n 1)
expect_eq "$([ -n "$man" ] && echo yes)" yes "keyway-conformance(1) is installed"

export PKG_CONFIG_PATH=${pc%/*} PKG_CONFIG_SYSROOT_DIR=$DEST
unset PKG_CONFIG_LIBDIR

# The skeleton's own Makefile, in a copy of the installed directory.
W=$TMPD/work
cp -R "$skel" "$W" && chmod -R u+w "$W"
run "$MAKE" -C "$W" CC="${CC:-cc}"
expect_exit 0 "the installed skeleton builds with its Makefile"

# The recipe README, the guide and keyway-module.pc give.
run bash -c "cd '$W' && \${CC:-cc} -o kw_skeleton.so skeleton.c \$(pkg-config --cflags --libs keyway-module)"
expect_exit 0 "cc -o kw_skeleton.so skeleton.c \$(pkg-config --cflags --libs keyway-module)"
run pkg-config --cflags --libs keyway-module
expect_stdout_match "-I$DEST/.*/include -fPIC -fvisibility=hidden -shared -Wl,-z,defs *" \
	"keyway-module.pc: the flags of the one recipe"

# The installed tool on what was built there.
mkdir -p -m 700 "$SECRETD/keys/user/kwconf-user"
printf 'sk-ant-kit-test-0001-abcdefghijkl\n' >"$SECRETD/keys/user/kwconf-user/anthropic"
chmod 600 "$SECRETD/keys/user/kwconf-user/anthropic"
secret sk-ant-kit-test-0001-abcdefghijkl
write_conf "$SECRETD/keyway.conf" <<'EOF'
backends: { creds: { module = "skeleton"; dir = "keys"; scope = "user"; }; };
chains: { default = ( { backend = "creds"; control = "required"; } ); };
EOF
run env LD_LIBRARY_PATH="$libdir" "$kc" "$W/kw_skeleton.so" \
	--config "$SECRETD/keyway.conf" --found anthropic --notfound openai
expect_exit 0 "the installed keyway-conformance passes the skeleton built out of tree"
[ "$RC" = 0 ] || sed 's/^/# /' "$OUT"

expect_no_leaks
done_testing
