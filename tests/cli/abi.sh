#!/bin/bash
# abi.sh - TAP tests that the ABI did not change without its version:
# libkeyway.so against abi/libkeyway.abi, and the layouts of module.h's
# and types.h's types (through abi/module_probe.c, built here as
# kw_module_probe.so.KW_MODULE_ABI) against abi/module.abi.  Both are
# dumped with abidw(1) and compared with abidiff(1) (libabigail).
#
# The rule (HACKING.md, "The ABI"): a struct may grow at the end and an
# enum may gain values at the end, and libkeyway may export new functions;
# any other change fails unless the version moves with it (the soname,
# from -version-info in Makefile.am, or KW_MODULE_ABI), and a version that
# moves needs a new baseline: `make abi-baseline` writes both.
#
# With ABI_BASELINE=1 (what `make abi-baseline` sets) it writes the
# baselines into the source tree instead of comparing.

. "$(dirname -- "$0")/lib.sh" || exit 99

ABIDIR=$KEYWAY_SRCDIR/abi
SUPP=$ABIDIR/abi.supp
SRCABS=$(cd -- "$KEYWAY_SRCDIR" && pwd -P)
CC=${ABI_CC:-cc}

if ! command -v abidw >/dev/null 2>&1 ||
	! command -v abidiff >/dev/null 2>&1; then
	echo "1..0 # SKIP abidw and abidiff are not installed (Debian: abigail-tools, scripts/deps.sh)"
	exit 0
fi

# dump SO XML: the ABI of SO, without paths of this machine.
dump()
{
	abidw --no-corpus-path --no-comp-dir-path --no-show-locs \
		--out-file "$2.raw" "$1" &&
		sed -e "s|path='$SRCABS/|path='|" "$2.raw" >"$2"
}

# has_types SO: SO carries DWARF type information.
has_types()
{
	LC_ALL=C readelf -S "$1" 2>/dev/null | grep -q '\.debug_info'
}

# instrumented SO: SO was built with a sanitizer.
instrumented()
{
	LC_ALL=C readelf -s --dyn-syms "$1" 2>/dev/null |
		grep -qE '__(asan|tsan|ubsan)_'
}

# build_lib OUT: libkeyway.so again, with debug info and no sanitizer,
# for a build whose CFLAGS lack -g (or add a sanitizer), or when
# ABI_REBUILD is set.
build_lib()
{
	local out=$1 objd=$TMPD/lib-objs src obj objs=()

	[ -n "${ABI_LIB_SOURCES:-}" ] || return 1
	mkdir -p "$objd" || return 1
	for src in $ABI_LIB_SOURCES; do
		case $src in *.c) ;; *) continue ;; esac
		obj=$objd/$(basename "$src" .c).o
		# shellcheck disable=SC2086 # flag lists
		"$CC" -std=gnu11 -g -Og -fPIC -fvisibility=hidden \
			-I"$SRCABS/include" $ABI_CPPFLAGS \
			-DKW_MODULEDIR='"/nonexistent"' \
			-DKW_SYSCONFDIR='"/nonexistent"' \
			-c -o "$obj" "$SRCABS/$src" ||
			return 1
		objs+=("$obj")
	done
	# shellcheck disable=SC2086
	"$CC" -shared -o "$out" -Wl,-soname,"$ABI_LIB_SONAME" \
		-Wl,--version-script="$KEYWAY_SRCDIR/lib/libkeyway.map" \
		"${objs[@]}" $ABI_LIBS
}

# soname SO: the DT_SONAME of SO.
soname()
{
	LC_ALL=C readelf -d "$1" 2>/dev/null |
		sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'
}

# baseline_soname XML: the soname a baseline was taken of.
baseline_soname()
{
	sed -n "1s/.* soname='\([^']*\)'.*/\1/p" "$1"
}

# compare NAME BASELINE SO: the test point of SO against BASELINE.
compare()
{
	local name=$1 base=$2 so=$3 new=$TMPD/$1.abi was now rc

	if ! dump "$so" "$new"; then
		fail "$name: abidw reads $so"
		return
	fi
	if [ -n "${ABI_BASELINE:-}" ]; then
		cp -- "$new" "$base" && pass "$name: baseline written to $base"
		return
	fi
	if [ ! -f "$base" ]; then
		fail "$name: $base is missing; make abi-baseline writes it"
		return
	fi
	was=$(baseline_soname "$base")
	now=$(soname "$so")
	if [ "$was" != "$now" ]; then
		fail "$name: the version moved ($was to $now) but $base is of $was; record the new ABI with make abi-baseline"
		return
	fi
	# abi.supp lets a struct through that grew at the end, but also one
	# whose members only moved: those are the offsets of the full report.
	abidiff --suppressions "$SUPP" --no-added-syms \
		"$base" "$new" >"$TMPD/$name.diff" 2>&1
	rc=$?
	abidiff --no-added-syms "$base" "$new" >"$TMPD/$name.full" 2>&1
	if [ "$rc" -eq 0 ] && grep -q 'offset changed' "$TMPD/$name.full"; then
		rc=4
		cp -- "$TMPD/$name.full" "$TMPD/$name.diff"
	fi
	if [ "$rc" -eq 0 ]; then
		pass "$name: ABI of $now unchanged, or grown at the end"
	else
		fail "$name: the ABI of $now changed (abidiff exit $rc); move the version and run make abi-baseline, or undo the change" \
			"$(cat -- "$TMPD/$name.diff")"
	fi
}

# ---- the module ABI ----

MODABI=$("$CC" -E -dM -I"$KEYWAY_SRCDIR/include" \
	"$KEYWAY_SRCDIR/abi/module_probe.c" 2>/dev/null |
	sed -n 's/^#define KW_MODULE_ABI \([0-9]*\)$/\1/p')
[ -n "$MODABI" ] || bail_out "cannot read KW_MODULE_ABI from include/keyway/module.h"
PROBE=$TMPD/kw_module_probe.so
if "$CC" -std=gnu11 -g -O0 -fPIC -shared -I"$KEYWAY_SRCDIR/include" \
	-Wl,-soname,"kw_module_probe.so.$MODABI" -o "$PROBE" \
	"$KEYWAY_SRCDIR/abi/module_probe.c" 2>"$TMPD/probe.err"; then
	compare module "$ABIDIR/module.abi" "$PROBE"
else
	fail "module: abi/module_probe.c builds" "$(cat -- "$TMPD/probe.err")"
fi

# ---- libkeyway ----

LIB=$KEYWAY_BUILDDIR/lib/.libs/libkeyway.so
[ -f "$LIB" ] || bail_out "$LIB is not built"
ABI_LIB_SONAME=$(soname "$LIB")
if [ -n "${ABI_REBUILD:-}" ] || ! has_types "$LIB" || instrumented "$LIB"; then
	if build_lib "$TMPD/libkeyway.so" 2>"$TMPD/lib.err"; then
		LIB=$TMPD/libkeyway.so
	else
		fail "libkeyway: built again with debug info" \
			"$(tail -n 20 -- "$TMPD/lib.err")"
		LIB=
	fi
fi
[ -z "$LIB" ] || compare libkeyway "$ABIDIR/libkeyway.abi" "$LIB"

done_testing
