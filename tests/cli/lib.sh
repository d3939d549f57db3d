# lib.sh - what the tests of keyway(1) share: the setting they run in and
# a small TAP library; sourced, never run.
#
#     . "$(dirname -- "$0")/lib.sh" || exit 99
#     secret "sk-ant-..."              # a key value: redacted, leak-checked
#     run "$KW" -c "$conf" get anthropic
#     expect_exit 0
#     expect_stdout "sk-ant-..."
#     expect_stderr ""
#     expect_no_leaks
#     done_testing
#
# `make check` (tap-driver) sets the variables a test needs; by hand, from
# a build directory:
#   KEYWAY_BUILDDIR=$PWD KEYWAY_SRCDIR=/path/to/keyway \
#   KEYWAY_MODULE_DIR=$PWD/modules/.libs bash /path/to/keyway/tests/cli/cli.sh
#
# $KW is the keyway built there.  It runs in English (LC_ALL=C), with no
# configuration, master key or provider key of the caller's.
#
# Every command that `run` starts has its stdout and stderr captured in
# files under $TMPD, a private directory removed on exit (kept when
# KEYWAY_TEST_KEEP is set).  Files that are meant to hold a key (a config
# with a key in it, a dotenv file, what `get` prints, what a child of
# `exec` dumps) belong under $SECRETD; expect_no_leaks searches everything
# else for every value given to `secret`.
#
# Each expect_* function is one TAP test point.  Text comparisons are exact:
# expect_stdout TEXT wants the file to be TEXT followed by one newline, or
# to be empty when TEXT is empty.

# ---- the setting ----

for v in KEYWAY_BUILDDIR KEYWAY_SRCDIR KEYWAY_MODULE_DIR; do
	if [ -z "${!v:-}" ]; then
		echo "Bail out! $v is not set"
		exit 99
	fi
done
export KEYWAY_MODULE_DIR

# strerror() and getopt in English; no key or config from the caller.
export LC_ALL=C
unset KEYWAY_CONFIG KEYWAY_PASSPHRASE API_KEY_ENCRYPTION_KEY \
	ANTHROPIC_API_KEY OPENAI_API_KEY

KW=$KEYWAY_BUILDDIR/cli/keyway
if [ ! -x "$KW" ]; then
	echo "Bail out! $KW is not built"
	exit 99
fi

# A python3 with its json module, for --json; empty without one.
# shellcheck disable=SC2034 # for the tests that source this file
if command -v python3 >/dev/null 2>&1 &&
	python3 -c 'import json' >/dev/null 2>&1; then
	PY=python3
else
	PY=
fi

tap_n=0
tap_failed=0
tap_planned=
tap_secrets=()
run_n=0

# The last `run`: its exit status, the files holding its output, and the
# command line for test names.
RC=
OUT=
ERR=
LABEL=

TMPD=$(mktemp -d "${TMPDIR:-/tmp}/keyway-cli.XXXXXX") || {
	echo "Bail out! cannot create a temporary directory"
	exit 99
}
SECRETD=$TMPD/secret
mkdir -m 700 "$SECRETD" "$TMPD/run" "$SECRETD/run" || {
	echo "Bail out! cannot populate $TMPD"
	exit 99
}

tap_cleanup()
{
	if [ -n "${KEYWAY_TEST_KEEP:-}" ]; then
		echo "# kept $TMPD"
	else
		rm -rf -- "$TMPD"
	fi
}
trap tap_cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# ---- TAP output ----

# Replace every registered key value in $1 by "<secret N>", so that a
# diagnostic never copies a key into the test log.
redact()
{
	local s=$1 i

	for i in "${!tap_secrets[@]}"; do
		s=${s//"${tap_secrets[$i]}"/<secret $((i + 1))>}
	done
	printf '%s' "$s"
}

# A test name: one line, redacted, without '#' (TAP's directive mark).
tap_name()
{
	local s

	s=$(redact "$1")
	s=${s//$'\n'/ }
	printf '%s' "${s//#/_}"
}

# Print each line of $1 as a TAP comment, redacted.
diag()
{
	local line

	while IFS= read -r line || [ -n "$line" ]; do
		printf '#   %s\n' "$(redact "$line")"
	done <<EOF
$1
EOF
}

plan()
{
	tap_planned=$1
	echo "1..$1"
}

pass()
{
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $(tap_name "$1")"
}

# fail NAME [DIAGNOSTIC]
fail()
{
	tap_n=$((tap_n + 1))
	tap_failed=$((tap_failed + 1))
	echo "not ok $tap_n - $(tap_name "$1")"
	[ -z "${2:-}" ] || diag "$2"
}

# skip NAME REASON
skip()
{
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $(tap_name "$1") # SKIP $(tap_name "$2")"
}

bail_out()
{
	echo "Bail out! $(tap_name "$1")"
	exit 99
}

# Print the plan if `plan` was not called, and exit 0 when every test point
# passed (the plan checks that none went missing).
done_testing()
{
	if [ -z "$tap_planned" ]; then
		echo "1..$tap_n"
	elif [ "$tap_planned" -ne "$tap_n" ]; then
		echo "# planned $tap_planned tests but ran $tap_n"
		exit 1
	fi
	[ "$tap_failed" -eq 0 ] || echo "# failed $tap_failed of $tap_n"
	[ "$tap_failed" -eq 0 ]
	exit
}

# ---- secrets ----

# Register key values: redacted in every test name and diagnostic, and
# searched for by expect_no_leaks.
secret()
{
	local v

	for v in "$@"; do
		[ -n "$v" ] && tap_secrets+=("$v")
	done
}

# ---- running commands ----

# run [-s] [-t] [--] CMD [ARG...]
#
# Run CMD with stdin from /dev/null; set RC, OUT (stdout file), ERR (stderr
# file) and LABEL.  -s: stdout is expected to hold a key, keep it under
# $SECRETD.  -t: run CMD on a terminal with script(1); OUT gets everything
# the terminal showed, carriage returns removed, and ERR stays empty.
run()
{
	local dir=$TMPD/run tty='' cmd n

	while [ $# -gt 0 ]; do
		case $1 in
		-s) dir=$SECRETD/run ;;
		-t) tty=1 ;;
		--) shift; break ;;
		*) break ;;
		esac
		shift
	done
	run_n=$((run_n + 1))
	n=$(printf '%03d' "$run_n")
	OUT=$dir/$n.out
	ERR=$TMPD/run/$n.err
	LABEL=$(run_label "$@")
	if [ -n "$tty" ]; then
		cmd=$(printf '%q ' "$@")
		# script(1) hands the line to $SHELL: make it the shell that
		# quoted it.
		SHELL=$BASH script -qec "$cmd" /dev/null </dev/null \
			>"$OUT.raw" 2>"$ERR"
		RC=$?
		tr -d '\r' <"$OUT.raw" >"$OUT"
		rm -f -- "$OUT.raw"
	else
		"$@" </dev/null >"$OUT" 2>"$ERR"
		RC=$?
	fi
	return 0
}

# The command line as a test name: the program's base name, $TMPD as $TMP.
run_label()
{
	local s a

	s=$(basename -- "$1")
	shift
	for a in "$@"; do
		case $a in
		*' '* | '') a="'$a'" ;;
		esac
		s="$s $a"
	done
	printf '%s' "${s//"$TMPD"/\$TMP}"
}

# The whole of file $1, trailing newlines included, in REPLY.
slurp()
{
	REPLY=$(cat -- "$1" 2>/dev/null; printf x)
	REPLY=${REPLY%x}
}

# Each line of $1 behind "| ", so that leading blanks show.
quote_lines()
{
	local line

	while IFS= read -r line || [ -n "$line" ]; do
		printf '  | %s\n' "$line"
	done <<EOF
$1
EOF
}

# What a file holds against what was wanted, for `fail`.
show_mismatch()
{
	local want=$1 got=$2

	echo "expected:"
	if [ -n "$want" ]; then
		quote_lines "${want%$'\n'}"
	else
		echo "  (nothing)"
	fi
	echo "got:"
	if [ -n "$got" ]; then
		quote_lines "${got%$'\n'}"
	else
		echo "  (nothing)"
	fi
	case $got in
	'' | *$'\n') ;;
	*) echo "(no newline at the end of what was got)" ;;
	esac
}

# ---- assertions ----

# expect_exit STATUS [NAME]
expect_exit()
{
	local name=${2:-"$LABEL: exit status $1"}

	if [ "$RC" = "$1" ]; then
		pass "$name"
	else
		fail "$name" "expected exit status $1, got $RC
stderr: $(cat -- "$ERR" 2>/dev/null)"
	fi
}

# expect_file FILE TEXT [NAME]: FILE is exactly TEXT and a newline (empty
# TEXT: FILE is empty).
expect_file()
{
	local file=$1 want=$2 name=${3:-"$1 holds the expected text"}

	[ -z "$want" ] || want=$want$'\n'
	if [ ! -f "$file" ]; then
		fail "$name" "$file does not exist"
		return
	fi
	slurp "$file"
	if [ "$REPLY" = "$want" ]; then
		pass "$name"
	else
		fail "$name" "$(show_mismatch "$want" "$REPLY")"
	fi
}

# expect_stdout TEXT [NAME]
expect_stdout()
{
	if [ -z "$1" ]; then
		expect_file "$OUT" "" "${2:-"$LABEL: stdout is empty"}"
	else
		expect_file "$OUT" "$1" "${2:-"$LABEL: stdout"}"
	fi
}

# expect_stderr TEXT [NAME]
expect_stderr()
{
	if [ -z "$1" ]; then
		expect_file "$ERR" "" "${2:-"$LABEL: stderr is empty"}"
	else
		expect_file "$ERR" "$1" "${2:-"$LABEL: stderr"}"
	fi
}

# expect_stderr_line LINE [NAME]: stderr is that one line and nothing else.
expect_stderr_line()
{
	case $1 in
	'' | *$'\n'*) bail_out "expect_stderr_line takes one non-empty line" ;;
	esac
	expect_file "$ERR" "$1" "${2:-"$LABEL: stderr line"}"
}

# expect_stdout_match ERE [NAME]: stdout is one line, matching ERE whole.
expect_stdout_match()
{
	local name=${2:-"$LABEL: stdout matches $1"}

	slurp "$OUT"
	if [ "$(wc -l <"$OUT")" -eq 1 ] && [[ $REPLY == *$'\n' ]] &&
		grep -Eqx -- "$1" "$OUT"; then
		pass "$name"
	else
		fail "$name" "$(show_mismatch "(a line matching $1)" "$REPLY")"
	fi
}

# expect_eq GOT WANT NAME
expect_eq()
{
	if [ "$1" = "$2" ]; then
		pass "$3"
	else
		fail "$3" "expected: $2
got: $1"
	fi
}

# expect_lacks FILE STRING [NAME]: STRING (a key, say) is not in FILE.
# The diagnostic names the file, never the string.
expect_lacks()
{
	local name=${3:-"$1 lacks the value"}

	if [ ! -e "$1" ]; then
		fail "$name" "$1 does not exist"
	elif grep -qF -- "$2" "$1"; then
		fail "$name" "found in $1"
	else
		pass "$name"
	fi
}

# expect_missing FILE [NAME]: FILE was not created.
expect_missing()
{
	local name=${2:-"$1 does not exist"}

	if [ -e "$1" ] || [ -L "$1" ]; then
		fail "$name" "$1 exists"
	else
		pass "$name"
	fi
}

# expect_no_leaks [NAME]: no file under $TMPD but outside $SECRETD holds
# any value given to `secret`.
expect_no_leaks()
{
	local name=${1:-"no key in any file the tests wrote outside secret/"}
	local args=() v hits

	for v in "${tap_secrets[@]}"; do
		args+=(-e "$v")
	done
	if [ ${#args[@]} -eq 0 ]; then
		fail "$name" "no secret was registered"
		return
	fi
	hits=$(find "$TMPD" -path "$SECRETD" -prune -o -type f -print0 |
		xargs -0 -r grep -lF "${args[@]}" --)
	if [ -z "$hits" ]; then
		pass "$name"
	else
		fail "$name" "keys found in:
${hits//"$TMPD"/\$TMP}"
	fi
}

# ---- keyway ----

# write_conf FILE [MODE]: standard input into FILE, with mode MODE (600 when
# not given: keyway refuses a configuration others may write to, and one
# that holds a key must be private).
write_conf()
{
	{ cat >"$1" && chmod "${2:-600}" "$1"; } || bail_out "cannot write $1"
}

# first_line_is TEXT NAME: the first line of the last run's stdout.
first_line_is()
{
	expect_eq "$(head -n 1 -- "$OUT")" "$1" "$2"
}

# help_shows CMD USAGE: keyway CMD --help exits with status 0, prints
# "Usage: keyway USAGE" first, and nothing on stderr.
help_shows()
{
	run "$KW" "$1" --help
	expect_exit 0
	first_line_is "Usage: keyway $2" "$1 --help: usage line"
	expect_stderr ""
}

# usage_error LINE ARGS...: keyway ARGS exits with status 2, that line alone
# on stderr, nothing on stdout.
usage_error()
{
	local line=$1

	shift
	run "$KW" "$@"
	expect_exit 2
	expect_stderr_line "$line"
	expect_stdout ""
}

# Why `run -t` cannot run a command on a terminal here; nothing when it can.
tty_unavailable()
{
	if ! command -v script >/dev/null 2>&1; then
		echo "script(1) from util-linux is not installed"
	elif ! SHELL=$BASH script -qec true /dev/null </dev/null >/dev/null 2>&1; then
		echo "script(1) cannot open a pseudo-terminal here"
	fi
}
