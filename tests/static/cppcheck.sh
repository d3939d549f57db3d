#!/bin/sh
# cppcheck over the code keyway ships: lib/, backends/, plugins/, cli/,
# daemon/ and conformance/.  Fails on any finding that neither
# tests/static/cppcheck.supp nor a `cppcheck-suppress` comment (each with
# its reason) lets through.
#
#   tests/static/cppcheck.sh BUILD-DIR    # where configure wrote config.h
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: cppcheck.sh BUILD-DIR}" && pwd)
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

command -v cppcheck >/dev/null 2>&1 ||
	{ echo "cppcheck: not installed (Debian: cppcheck)" >&2; exit 1; }
cd "$src" || exit 1
cppcheck -q -j"$jobs" --std=c11 --library=posix \
	--enable=warning,portability,performance --error-exitcode=1 \
	--inline-suppr --suppressions-list=tests/static/cppcheck.supp \
	--template='{file}:{line}: {severity}: {message} [{id}]' \
	-I include -I lib -I "$build" \
	lib backends plugins cli daemon conformance ||
	{ echo "cppcheck: findings above" >&2; exit 1; }
echo "cppcheck: no findings"
