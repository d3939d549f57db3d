#!/bin/sh
# clang's static analyzer over the code keyway ships: what `make` builds
# (lib/, backends/, plugins/, cli/, daemon/, conformance/), in a build
# directory of its own (the tests are not built).  Fails when it reports
# anything; its HTML reports stay in DIR/report/.
#
#   tests/static/scan-build.sh DIR
#
# There is no list of exceptions: what it cannot see (a status returned
# from another file, an invariant) is made visible in the code.
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:?usage: scan-build.sh BUILD-DIR}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

command -v scan-build >/dev/null 2>&1 ||
	{ echo "scan-build: not installed (Debian: clang-tools)" >&2; exit 1; }
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir" || exit 1
if ! scan-build -o "$dir/report" "$src/configure" -q >configure.out 2>&1; then
	cat configure.out >&2
	exit 1
fi
scan-build --status-bugs -o "$dir/report" make -s -j"$jobs" >make.out 2>&1
rc=$?
found=$(grep -c ': warning: .*\[[a-zA-Z.]*\]$' make.out)
if [ "$rc" -ne 0 ]; then
	grep -E ': (warning|error): ' make.out >&2
	grep 'scan-build:' make.out >&2
	echo "scan-build: $found findings; see $dir/report" >&2
	exit 1
fi
echo "scan-build: no findings"
