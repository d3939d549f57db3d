#!/bin/bash
# clients.sh - TAP: the Python and node clients of keywayd (clients/), each
# run by its own test runner (pytest, node --test) against the keywayd built
# here, which their tests start on a socket in a directory of $TMPD with a
# SQLite store and a quota (clients/testdata/keywayd.conf).  Every test of
# theirs is a test point here, and so is each runner's exit status; then a
# search for the keys and the master key, made up for this run, in
# everything written: the runners' output, the daemons' logs, audit trails
# and stores.  pytest and node are required: without them the test fails
# and says to run scripts/deps.sh.  Run by `make check`, or by hand as
# lib.sh says.

. "$(dirname -- "$0")/lib.sh" || exit 99

KWD=$KEYWAY_BUILDDIR/daemon/keywayd
[ -x "$KWD" ] || bail_out "$KWD is not built"
CLIENTS=$KEYWAY_SRCDIR/clients

# Debian's pytest is for Debian's python3, which may not be the first on
# the PATH.
PYTEST=
for py in /usr/bin/python3 python3; do
	if command -v "$py" >/dev/null 2>&1 &&
		"$py" -c 'import pytest' >/dev/null 2>&1; then
		PYTEST=$py
		break
	fi
done
[ -n "$PYTEST" ] ||
	bail_out "pytest is not installed (Debian's python3-pytest): run scripts/deps.sh"
command -v node >/dev/null 2>&1 ||
	bail_out "node is not installed (Debian's nodejs): run scripts/deps.sh"
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)
[ "${node_major:-0}" -ge 18 ] 2>/dev/null ||
	bail_out "node $(node --version 2>/dev/null) is too old for the node client's tests (18 or later): run scripts/deps.sh"

# Keys made up for this run: the tests put them in their stores, and
# nothing but the stores, sealed, may hold them.
rnd() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
KWCLIENT_MASTER=$(rnd 32)
KWCLIENT_KEY_ORG=sk-ant-clients-org-acme-$(rnd 8)
KWCLIENT_KEY_USER=sk-ant-clients-user-alice-$(rnd 8)
secret "$KWCLIENT_MASTER" "$KWCLIENT_KEY_ORG" "$KWCLIENT_KEY_USER"
# The tests' directories stay for the search below ($TMPD goes at exit).
KWCLIENT_KEEP=1
export KWCLIENT_MASTER KWCLIENT_KEY_ORG KWCLIENT_KEY_USER KWCLIENT_KEEP
# Nothing may be written into the source tree, which distcheck makes
# read-only.
export PYTHONDONTWRITEBYTECODE=1
unset KEYWAY_SOCKET

# The socket's directory must be reachable by the user the tests refuse.
chmod 711 "$TMPD"
mkdir -m 711 "$TMPD/py" "$TMPD/node" || bail_out "cannot populate $TMPD"

# points RUNNER FILE: a test point for each line of FILE that gives a
# test's result, in pytest's -v form (PATH::NAME PASSED) or TAP's (at any
# depth, as node --test nests them).
points()
{
	local runner=$1 line name verdict

	while IFS= read -r line; do
		if [[ $line =~ ^([^[:space:]]+)::([^[:space:]]+)\ (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)(\ \((.*)\))? ]]; then
			# the file's name without its directory, which is
			# wherever the source tree is
			name=${BASH_REMATCH[1]##*/}::${BASH_REMATCH[2]}
			verdict=${BASH_REMATCH[3]}
			case $verdict in
			PASSED | XFAIL) pass "$runner: $name" ;;
			SKIPPED) skip "$runner: $name" "${BASH_REMATCH[5]:-skipped}" ;;
			*) fail "$runner: $name ($verdict)" ;;
			esac
		elif [[ $line =~ ^\ *(not\ ok|ok)\ [0-9]+\ -\ (.*)$ ]]; then
			verdict=${BASH_REMATCH[1]}
			name=${BASH_REMATCH[2]}
			if [[ $name =~ ^(.*)\ \#\ (SKIP|skip|TODO|todo)\ ?(.*)$ ]]; then
				skip "$runner: ${BASH_REMATCH[1]}" "${BASH_REMATCH[3]:-skipped}"
			elif [ "$verdict" = ok ]; then
				pass "$runner: $name"
			else
				fail "$runner: $name"
			fi
		fi
	done <"$2"
}

# finished RUNNER: a test point for the last run's exit status, with its
# output as the diagnostic when it failed.
finished()
{
	local summary

	summary=$(grep -E '^(=+ .* in [0-9.]+s.* =+|# (pass|fail|skipped) [0-9]+)$' "$OUT" |
		sed -E 's/^=+ (.*) =+$/\1/; s/^# //' | paste -sd, - | sed 's/,/, /g')
	if [ "$RC" -eq 0 ]; then
		pass "$1: exit status 0 ($summary)"
	else
		fail "$1: exit status $RC" "$(cat -- "$OUT" "$ERR")"
	fi
}

# ---- Python ----
run timeout 600 "$PYTEST" -m pytest -p no:cacheprovider --assert=plain -v \
	--basetemp="$TMPD/py/tmp" --rootdir="$CLIENTS/python" \
	-c "$CLIENTS/python/pyproject.toml" "$CLIENTS/python/tests"
points pytest "$OUT"
finished pytest

# ---- node ----
reporter=
if node --help 2>/dev/null | grep -q -- '--test-reporter'; then
	reporter=--test-reporter=tap
fi
run env TMPDIR="$TMPD/node" timeout 600 node --test $reporter \
	"$CLIENTS/node/test/client.test.js" "$CLIENTS/node/test/answers.test.js"
points node "$OUT"
finished node

expect_no_leaks
done_testing
