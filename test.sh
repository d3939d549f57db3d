#!/bin/bash
# Build keyway and run every test: the plain build (warnings are errors),
# a bounded run of the fuzz targets (where clang is installed), the same
# suite under AddressSanitizer and UndefinedBehaviorSanitizer, the thread
# tests under ThreadSanitizer, the unit suites under valgrind's memcheck,
# the whole suite again in a build with gcov's counters (then the coverage
# per folder, held to tests/coverage.floor), cppcheck and clang's
# scan-build over the shipped code, and `make distcheck`.  Prints how long
# each part took, and ends with the line "N passed, N failed"; exits
# non-zero when anything failed.  It builds in _test/ and leaves build/,
# where one builds by hand, alone.
set -u
cd "$(dirname "$0")"
top=$PWD
jobs=$(nproc 2>/dev/null || echo 2)

./scripts/deps.sh || { echo "cannot install dependencies" >&2; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
failures=()

# Count the results automake's test driver wrote for one build tree.
count() {
	local dir=$1 label=$2 trs res name
	while IFS= read -r trs; do
		name=${trs#"$dir"/}
		name=${name%.trs}
		while IFS= read -r res; do
			case $res in
			PASS | XFAIL | SKIP) passed=$((passed + 1)) ;;
			*)
				failed=$((failed + 1))
				failures+=("$label: $name: $res")
				;;
			esac
		done < <(sed -n 's/^:test-result: \([A-Z]*\).*/\1/p' "$trs")
	done < <(find "$dir" -name '*.trs' | sort)
}

# A step that is not a test suite of its own counts as one test.
step() {
	local label=$1 start=$SECONDS
	shift
	if "$@"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failures+=("$label")
	fi
	echo "time: $label: $((SECONDS - start)) s"
}

# suite DIR LABEL "MAKE ARGS" CONFIGURE-ARGS...: configure and build one
# tree, run its tests, count them.
suite() {
	local dir=$1 label=$2 make_args=$3 start=$SECONDS
	shift 3
	_suite "$dir" "$label" "$make_args" "$@"
	echo "time: $label: $((SECONDS - start)) s"
}

_suite() {
	local dir=$1 label=$2 make_args=$3
	shift 3
	rm -rf "$dir"
	mkdir -p "$dir"
	if ! (cd "$dir" && "$top/configure" -q "$@" >configure.out 2>&1); then
		cat "$dir/configure.out" >&2
		failed=$((failed + 1))
		failures+=("$label: configure")
		return
	fi
	if ! make -C "$dir" -s -j"$jobs" >"$dir/build.out" 2>&1; then
		cat "$dir/build.out" >&2
		failed=$((failed + 1))
		failures+=("$label: build")
		return
	fi
	# shellcheck disable=SC2086
	make -C "$dir" -s -j"$jobs" $make_args || true
	count "$dir" "$label"
}

autogen() {
	./autogen.sh >autogen.out 2>&1 || { cat autogen.out >&2; return 1; }
	rm -f autogen.out
}

# The fuzz targets built with clang's libFuzzer and run for $FUZZ_TIME
# seconds each (40 here: six targets, the library built once, stay under
# six minutes on two cores; tests/fuzz/run.sh), in the plain tree; each
# prints its line of execs, execs a second and coverage.
fuzz() {
	make -C _test/plain -s fuzz FUZZ_TIME="${FUZZ_TIME:-40}"
}

# The allocation torture's figures, from the suite run in _test/plain: the
# points run in process and in keywayd (tests/torture/).
torture_points() {
	local d=_test/plain/tests/torture
	sed -n 's/^# \([0-9]* torture points in all\).*/torture: \1 (in process)/p' "$d/torture.log" 2>/dev/null
	sed -n 's/^ok 1 - keywayd [^:]*: \([0-9]* torture points\).*/torture: \1 in keywayd/p' "$d/daemon.log" 2>/dev/null
	return 0
}

# Line and branch coverage per folder, from the suite run in _test/coverage;
# fails below a folder's floor (tests/coverage.floor).
coverage() {
	make -C _test/coverage -s coverage
}

# Static analysis of the shipped code: cppcheck (with config.h from the
# plain tree) and clang's analyzer (a build of its own).
static_cppcheck() {
	sh tests/static/cppcheck.sh _test/plain
}

static_scanbuild() {
	sh tests/static/scan-build.sh "$top/_test/scan-build"
}

distcheck() {
	make -C _test/plain -s -j"$jobs" distcheck >_test/plain/distcheck.out 2>&1 ||
		{ tail -40 _test/plain/distcheck.out >&2; return 1; }
}

total_start=$SECONDS
step "autoreconf" autogen
suite _test/plain "plain" "check" --enable-werror
torture_points
if command -v clang >/dev/null 2>&1; then
	step "fuzz" fuzz
fi
suite _test/asan "asan" "check" --enable-werror --enable-sanitizers=address
suite _test/tsan "tsan" "check TESTS=tests/unit/test_threads" --enable-sanitizers=thread
suite _test/valgrind "valgrind" "check-valgrind" --enable-werror
suite _test/coverage "coverage-suite" "check" --enable-coverage
step "coverage" coverage
step "cppcheck" static_cppcheck
step "scan-build" static_scanbuild
step "distcheck" distcheck

echo "time: all: $((SECONDS - total_start)) s"
for f in "${failures[@]}"; do
	echo "FAILED: $f"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
