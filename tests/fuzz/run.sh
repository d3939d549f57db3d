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
#   FUZZ_TARGET      the target (default file: fuzz_file.c)
#   FUZZ_ARGS        more libFuzzer options (-jobs=2, -runs=N, ...)
#   CLANG            the compiler (default clang)
# and, from make: KEYWAY_SRCDIR, KEYWAY_BUILDDIR, FUZZ_LIB_SOURCES (the
# library's sources, relative to the source tree), FUZZ_TARGET_SOURCES,
# FUZZ_CFLAGS and FUZZ_LIBS (the libraries' flags from configure),
# FUZZ_MODULEDIR and FUZZ_SYSCONFDIR.
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
	-I"$src/tests/fuzz" $FUZZ_CFLAGS)

# Rebuild when anything it is built from is newer than the target.
stale() {
	[ -x "$bin" ] || return 0
	[ -n "$(find "$src/lib" "$src/include" "$src/backends" "$src/tests/fuzz" \
		"$build/config.h" -newer "$bin" \( -name '*.c' -o -name '*.h' \) \
		-print -quit)" ]
}

# compile SRC [FLAGS...]: one object under $objs.
compile() {
	local s=$1 o
	shift
	o=$objs/$(echo "${s%.c}" | tr / _).o
	"$clang" "${common[@]}" "$@" -c "$src/$s" -o "$o"
}

build() {
	local s pids=() rc=0 n=0 lib=()

	rm -rf "$objs"
	mkdir -p "$objs"
	for s in $FUZZ_LIB_SOURCES; do
		case $s in *.c) lib+=("$s") ;; esac
	done
	# The library only sanitized; the target's own sources also give the
	# fuzzer its coverage, so that it steers by the parser's branches.
	for s in "${lib[@]}"; do
		compile "$s" &
		pids+=($!)
		n=$((n + 1))
		if [ $((n % jobs)) -eq 0 ]; then
			for p in "${pids[@]}"; do wait "$p" || rc=1; done
			pids=()
		fi
	done
	for s in $FUZZ_TARGET_SOURCES; do
		case $s in
		*.c) compile "$s" -fsanitize=fuzzer-no-link -Wall -Wextra ||
			rc=1 ;;
		esac
	done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	[ "$rc" -eq 0 ] || return 1
	# shellcheck disable=SC2086 # flags from configure
	"$clang" -fsanitize=fuzzer,address,undefined -o "$bin" "$objs"/*.o \
		$FUZZ_LIBS
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

# The env module the target's context loads; the library's known leaks.
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
