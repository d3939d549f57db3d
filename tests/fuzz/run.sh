#!/bin/bash
# run.sh - build a fuzz target with clang's libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer, and run it for a bounded time.  `make fuzz`
# runs it from a build directory, with the settings below; it ends with
# one line:
#
#     fuzz file: 81234 execs in 60 s (1353/s), cov 412, 0 crashes
#
# and exits non-zero when the target crashed, leaked or aborted, with the
# input that did it kept under tests/fuzz/crashes/TARGET/ of the build
# directory, named in the message.  New inputs the fuzzer found go to
# tests/fuzz/work/TARGET/ there; copy the useful ones (and every crash,
# once fixed) to tests/fuzz/regress/TARGET/ of the source tree, which
# `make check` runs.
#
# Settings (environment):
#   FUZZ_TIME        seconds to run (default 60)
#   FUZZ_TARGET      the target (default file: fuzz_file.c); `make fuzz`
#                    runs each of FUZZ_TARGETS in turn
#   FUZZ_ARGS        more libFuzzer options (-jobs=2, -runs=N, ...)
#   CLANG            the compiler (default clang)
# and, from make: KEYWAY_SRCDIR, KEYWAY_BUILDDIR, FUZZ_LIB_SOURCES (the
# library's sources, relative to the source tree), FUZZ_TARGET_SOURCES
# (the target and the parsers it reaches, compiled with coverage; one of
# the library's stands for its object in the library), FUZZ_CFLAGS and
# FUZZ_LIBS (the libraries' flags from configure), FUZZ_MODULEDIR and
# FUZZ_SYSCONFDIR.  The library is compiled once, into
# tests/fuzz/obj-lib/, for every target; again when a source changes.
set -u

target=${FUZZ_TARGET:-file}
time=${FUZZ_TIME:-60}
clang=${CLANG:-clang}
src=${KEYWAY_SRCDIR:?run by make fuzz, which sets KEYWAY_SRCDIR}
build=${KEYWAY_BUILDDIR:?run by make fuzz, which sets KEYWAY_BUILDDIR}
jobs=$(nproc 2>/dev/null || echo 2)

out=$build/tests/fuzz
bin=$out/fuzz_$target
objs=$out/obj-$target
# The library's objects, the same for every target: built once.
libobjs=$out/obj-lib
work=$out/work/$target
crashes=$out/crashes/$target
log=$out/fuzz-$target.log

fail() {
	echo "fuzz $target: $*" >&2
	exit 1
}

command -v "$clang" >/dev/null 2>&1 ||
	fail "$clang is not installed (scripts/deps.sh installs it)"
case $time in
'' | *[!0-9]*) fail "FUZZ_TIME must be a number of seconds, not \"$time\"" ;;
esac

# Word splitting is wanted (flags from configure), and the commas.
# shellcheck disable=SC2206,SC2054
common=(-std=gnu11 -g -O1 -fno-omit-frame-pointer
	-fsanitize=address,undefined -fno-sanitize-recover=all
	-DKW_TEST_SEAMS -DKW_MODULEDIR="\"$FUZZ_MODULEDIR\""
	-DKW_SYSCONFDIR="\"$FUZZ_SYSCONFDIR\""
	-I"$build" -I"$src/include" -I"$src/lib" -I"$src/backends/file"
	-I"$src/backends/env" -I"$src/backends/vault" -I"$src/daemon"
	-I"$src/tests/fuzz" $FUZZ_CFLAGS)

# newer STAMP DIR...: is any source under DIR newer than STAMP (or is
# there no STAMP)?
newer() {
	local stamp=$1
	shift
	[ -e "$stamp" ] || return 0
	[ -n "$(find "$@" "$build/config.h" -newer "$stamp" \
		\( -name '*.c' -o -name '*.h' \) -print -quit)" ]
}

# compile SRC DIR [FLAGS...]: one object under DIR.
compile() {
	local s=$1 d=$2 o
	shift 2
	o=$d/$(echo "${s%.c}" | tr / _).o
	"$clang" "${common[@]}" "$@" -c "$src/$s" -o "$o"
}

# The library only sanitized; the target's own sources also give the
# fuzzer its coverage, so that it steers by the parser's branches.
build_lib() {
	local s pids=() rc=0 n=0

	rm -rf "$libobjs"
	mkdir -p "$libobjs"
	for s in $FUZZ_LIB_SOURCES; do
		case $s in *.c) ;; *) continue ;; esac
		compile "$s" "$libobjs" &
		pids+=($!)
		n=$((n + 1))
		if [ $((n % jobs)) -eq 0 ]; then
			for p in "${pids[@]}"; do wait "$p" || rc=1; done
			pids=()
		fi
	done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	[ "$rc" -eq 0 ] && touch "$libobjs/.built"
}

build() {
	local s o rc=0 lib=()

	rm -rf "$objs"
	mkdir -p "$objs"
	for s in $FUZZ_TARGET_SOURCES; do
		case $s in
		*.c) compile "$s" "$objs" -fsanitize=fuzzer-no-link -Wall \
			-Wextra || rc=1 ;;
		esac
	done
	[ "$rc" -eq 0 ] || return 1
	# The library's own parsers among the target's sources (with
	# coverage) stand for their plain objects.
	for o in "$libobjs"/*.o; do
		[ -e "$objs/${o##*/}" ] || lib+=("$o")
	done
	# shellcheck disable=SC2086 # flags from configure
	"$clang" -fsanitize=fuzzer,address,undefined -o "$bin" "$objs"/*.o \
		"${lib[@]}" $FUZZ_LIBS
}

mkdir -p "$out"
if newer "$libobjs/.built" "$src/lib" "$src/include"; then
	build_lib >"$out/build-lib.log" 2>&1 || {
		cat "$out/build-lib.log" >&2
		fail "cannot build the library with $clang (see above)"
	}
fi
stale() {
	[ -x "$bin" ] || return 0
	[ "$libobjs/.built" -nt "$bin" ] && return 0
	newer "$bin" "$src/lib" "$src/include" "$src/backends" "$src/daemon" \
		"$src/tests/fuzz"
}

if stale; then
	build >"$out/build-$target.log" 2>&1 || {
		cat "$out/build-$target.log" >&2
		fail "cannot build the target with $clang (see above)"
	}
fi

mkdir -p "$work" "$crashes"
dict=$src/tests/fuzz/$target.dict
dictarg=()
[ -f "$dict" ] && dictarg=(-dict="$dict")

# The modules a target's context loads (fuzz_config.c copies the few it
# may load from here); the library's known leaks.
export KEYWAY_MODULE_DIR=$build/modules/.libs
LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$src/tests/lsan.supp"
UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1"
export LSAN_OPTIONS UBSAN_OPTIONS

# shellcheck disable=SC2086 # FUZZ_ARGS is a list of options
"$bin" -max_total_time="$time" -max_len=8192 -timeout=20 -print_final_stats=1 \
	-artifact_prefix="$crashes/" "${dictarg[@]}" ${FUZZ_ARGS:-} \
	"$work" "$src/tests/fuzz/corpus/$target" \
	"$src/tests/fuzz/regress/$target" >"$log" 2>&1
rc=$?

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | sed 's/cov: //')
execs=${execs:-0}
secs=${secs:-$time}
rate=$((execs / (secs > 0 ? secs : 1)))

if [ "$rc" -ne 0 ]; then
	# What went wrong, and where: the target's own line, or the
	# sanitizer's report.
	grep -a -A30 -m1 -e "^fuzz_$target: " -e '^==[0-9]*== *ERROR' \
		-e 'runtime error:' "$log" >&2
	kept=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
	echo "fuzz $target: $execs execs, crashed (exit $rc); input kept" \
		"in ${kept:-$crashes/}; log in $log" >&2
	exit 1
fi
echo "fuzz $target: $execs execs in $secs s ($rate/s), cov ${cov:-?}, 0 crashes"
