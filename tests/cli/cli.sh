#!/bin/bash
# cli.sh - TAP tests of the keyway(1) command: usage, get, explain, exec,
# check and keygen, each checked for its exact output and exit status, and
# a final search for keys in everything the tests wrote.  Run by
# `make check`, or by hand as lib.sh says.  Long on purpose: every test
# shares cli.conf, its keys and the leak search at the end.

. "$(dirname -- "$0")/lib.sh" || exit 99
unset MISSING_API_KEY MY_KEY

# The keys the tests use.  Every one is searched for at the end.
K_ANT=sk-ant-cli-test-0001-abcdefghijkl     # team, in cli.conf
K_OAI=sk-proj-cli-test-0002-mnopqrstuvwx    # server.env
K_OLD=sk-ant-cli-test-0003-stale-inherited  # a caller's own variable
K_ORG=sk-org-acme-anthropic-0123456789      # fakestore's keys
K_USER=sk-user-alice-anthropic-0123456789
K_TINY=sk-tiny-015-xyz                      # tiny, in cli.conf: 15 bytes
secret "$K_ANT" "$K_OAI" "$K_OLD" "$K_ORG" "$K_USER" "$K_TINY"

# The configuration with its dotenv file, private as keyway wants them.
CONF=$SECRETD/cli.conf
if ! { cp -- "$KEYWAY_SRCDIR/tests/cli/cli.conf" "$CONF" &&
	printf 'OPENAI_API_KEY="%s"\nKWTEST_DOTENV_ONLY=1\n' "$K_OAI" \
		>"$SECRETD/server.env" &&
	chmod 600 "$CONF" "$SECRETD/server.env"; }; then
	bail_out "cannot set up $SECRETD"
fi

# flat_json FILE: a JSON document as one "path=value" line per leaf, in the
# document's order, so that its shape and contents compare exactly.
flat_json()
{
	$PY - "$1" <<'EOF'
import json, sys

def walk(path, v):
    if isinstance(v, dict):
        if not v:
            print(path + "={}")
        for k, x in v.items():
            walk(path + "." + k if path else k, x)
    elif isinstance(v, list):
        if not v:
            print(path + "=[]")
        for i, x in enumerate(v):
            walk("%s[%d]" % (path, i), x)
    else:
        print(path + "=" + json.dumps(v))

with open(sys.argv[1]) as f:
    walk("", json.load(f))
EOF
}

# ---- usage ----

for cmd in get explain exec check init keygen help; do
	case $cmd in
	get) usage="get PROVIDER [--user U] [--org O] [--chain C] [--reveal]" ;;
	explain) usage="explain PROVIDER [--user U] [--org O] [--chain C] [--json]" ;;
	exec) usage="exec [--user U] [--org O] [--chain C] -p PROVIDER[=VAR]... -- CMD [ARGS...]" ;;
	check) usage="check [--json]" ;;
	init) usage="init" ;;
	keygen) usage="keygen [-o FILE]" ;;
	help) usage="help [COMMAND]" ;;
	esac
	help_shows "$cmd" "$usage"
done

# Every long option a command's help lists is one the command takes.
for cmd in get explain exec check init keygen help put rotate enable \
	disable rm rekey ls usage; do
	"$KW" "$cmd" --help >"$TMPD/opt-help" 2>&1
	for opt in $(sed -n 's/^ *\(-., \)\{0,1\}\(--[a-z-]*\).*/\2/p' \
		"$TMPD/opt-help"); do
		"$KW" -c /nonexistent/keyway.conf "$cmd" "$opt" \
			</dev/null >/dev/null 2>"$TMPD/opt-err"
		if grep -q 'unknown option' "$TMPD/opt-err"; then
			fail "$cmd --help lists $opt" "$(cat "$TMPD/opt-err")"
		else
			pass "$cmd --help lists $opt"
		fi
	done
done

run "$KW" --help
expect_exit 0
first_line_is "Usage: keyway [-c CONFIG] COMMAND [ARGS]" "--help: usage line"
expect_stderr ""

run "$KW" help
expect_exit 0
first_line_is "Usage: keyway [-c CONFIG] COMMAND [ARGS]" "help: usage line"

run "$KW" get --help
cp -- "$OUT" "$TMPD/get-help"
run "$KW" help get
expect_exit 0
slurp "$TMPD/get-help"
expect_stdout "${REPLY%$'\n'}" "help get prints what get --help prints"
first_line_is "Usage: keyway get PROVIDER [--user U] [--org O] [--chain C] [--reveal]" \
	"help get: usage line"
expect_stderr ""

version=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"$/\1/p' \
	"$KEYWAY_BUILDDIR/config.h" 2>/dev/null)
[ -n "$version" ] || bail_out "no PACKAGE_VERSION in $KEYWAY_BUILDDIR/config.h"
for opt in --version -V; do
	run "$KW" $opt
	expect_exit 0
	expect_stdout "keyway $version"
	expect_stderr ""
done

usage_error "keyway: missing COMMAND (try 'keyway --help')"
usage_error "keyway: missing COMMAND (try 'keyway --help')" -c "$CONF"
usage_error "keyway: unknown command \"frob\" (try 'keyway --help')" frob
usage_error "keyway: unknown option \"--frob\" (try 'keyway --help')" --frob get x
usage_error "keyway: unknown option \"-x\" (try 'keyway --help')" -x get x
usage_error "keyway: option \"-c\" needs an argument (try 'keyway --help')" -c
usage_error "keyway: option \"--config\" needs an argument (try 'keyway --help')" --config
usage_error "keyway: empty value for -c (try 'keyway --help')" -c "" get x
usage_error "keyway: option \"--version\" takes no argument (try 'keyway --help')" --version=1
usage_error "keyway: help: unknown command \"frob\" (try 'keyway --help')" help frob
usage_error "keyway: help: unexpected argument \"exec\" (try 'keyway help --help')" help get exec
usage_error "keyway: get: missing PROVIDER (try 'keyway get --help')" -c "$CONF" get
usage_error "keyway: get: unexpected argument 2 (not repeated: it may be a key) (try 'keyway get --help')" \
	-c "$CONF" get anthropic sk-ant-pasted-after-the-provider-0123456789
usage_error "keyway: get: unexpected argument 2 (not repeated: it may be a key) (try 'keyway get --help')" \
	-c "$CONF" get anthropic $'\e[2J'
usage_error "keyway: get: unexpected argument 2 (not repeated: it may be a key) (try 'keyway get --help')" \
	-c "$CONF" get anthropic sk-Short0Key1
usage_error "keyway: get: unexpected argument \"openai\" (try 'keyway get --help')" \
	-c "$CONF" get anthropic openai
usage_error "keyway: get: empty PROVIDER (try 'keyway get --help')" -c "$CONF" get ""
usage_error "keyway: get: unknown option \"--frob\" (try 'keyway get --help')" \
	-c "$CONF" get --frob anthropic
usage_error "keyway: get: unknown option \"-p\" (try 'keyway get --help')" \
	-c "$CONF" get -p anthropic
usage_error "keyway: get: option \"--user\" needs an argument (try 'keyway get --help')" \
	-c "$CONF" get anthropic --user
usage_error "keyway: get: invalid --org: it is empty (try 'keyway get --help')" \
	-c "$CONF" get anthropic --org=
usage_error "keyway: get: option \"--reveal\" takes no argument (try 'keyway get --help')" \
	-c "$CONF" get anthropic --reveal=yes
usage_error "keyway: explain: missing PROVIDER (try 'keyway explain --help')" \
	-c "$CONF" explain
usage_error "keyway: explain: unknown option \"--reveal\" (try 'keyway explain --help')" \
	-c "$CONF" explain --reveal anthropic
usage_error "keyway: check: unexpected argument \"now\" (try 'keyway check --help')" \
	-c "$CONF" check now
usage_error "keyway: keygen: unexpected argument \"key\" (try 'keyway keygen --help')" \
	keygen key
usage_error "keyway: keygen: option \"-o\" needs an argument (try 'keyway keygen --help')" \
	keygen -o
usage_error "keyway: exec: missing -p PROVIDER (try 'keyway exec --help')" \
	-c "$CONF" exec -- true
usage_error "keyway: exec: missing CMD (try 'keyway exec --help')" \
	-c "$CONF" exec -p anthropic
usage_error "keyway: exec: missing CMD (try 'keyway exec --help')" \
	-c "$CONF" exec -p anthropic --
usage_error "keyway: exec: -p \"anthropic=1BAD\": \"1BAD\" is not a valid variable name (try 'keyway exec --help')" \
	-c "$CONF" exec -p anthropic=1BAD -- true
# Variables the loader or a shell reads and may print take no key.
for v in LD_PRELOAD LD_LIBRARY_PATH PATH IFS BASH_ENV ENV; do
	usage_error "keyway: exec: -p \"anthropic=$v\": $v is read by the dynamic loader or a shell, which may print the key; use another variable (try 'keyway exec --help')" \
		-c "$CONF" exec -p "anthropic=$v" -- true
done
usage_error "keyway: exec: -p \"anthropic=MY-KEY\": \"MY-KEY\" is not a valid variable name (try 'keyway exec --help')" \
	-c "$CONF" exec -p anthropic=MY-KEY -- true
usage_error "keyway: exec: -p \"9x\": no variable name can be made from it; use -p 9x=VAR (try 'keyway exec --help')" \
	-c "$CONF" exec -p 9x -- true
usage_error "keyway: exec: -p \"=MY_KEY\": missing PROVIDER (try 'keyway exec --help')" \
	-c "$CONF" exec -p =MY_KEY -- true
usage_error "keyway: exec: variable \"ANTHROPIC_API_KEY\" given twice (try 'keyway exec --help')" \
	-c "$CONF" exec -p anthropic -p openai=ANTHROPIC_API_KEY -- true

# ---- get ----

run -s "$KW" -c "$CONF" get anthropic
expect_exit 0
expect_stdout "$K_ANT"
expect_stderr ""

# The second entry of the chain, from the dotenv file.
run -s "$KW" -c "$CONF" get openai
expect_exit 0
expect_stdout "$K_OAI"
expect_stderr ""

# The environment wins over the dotenv file.
run -s env OPENAI_API_KEY="$K_OLD" "$KW" -c "$CONF" get openai
expect_exit 0
expect_stdout "$K_OLD"

# KEYWAY_CONFIG stands for -c.
run -s env KEYWAY_CONFIG="$CONF" "$KW" get anthropic
expect_exit 0
expect_stdout "$K_ANT"

# -c and --config may follow the command too; the last one wins.
run -s "$KW" get anthropic -c "$CONF"
expect_exit 0
expect_stdout "$K_ANT" "get PROVIDER -c CONFIG"
expect_stderr ""
run -s "$KW" get --config="$CONF" openai
expect_exit 0
expect_stdout "$K_OAI" "get --config=CONFIG PROVIDER"
run -s "$KW" -c "$TMPD/no-such.conf" get anthropic -c "$CONF"
expect_exit 0
expect_stdout "$K_ANT" "-c after the command wins over -c before it"
run -s "$KW" -c "$CONF" explain anthropic -c "$TMPD/no-such.conf"
expect_exit 1
expect_stderr_line "keyway: $TMPD/no-such.conf: cannot open configuration: No such file or directory"
run "$KW" check --config "$CONF"
expect_exit 0 "check --config CONFIG"
usage_error "keyway: get: option \"-c\" needs an argument (try 'keyway get --help')" \
	get anthropic -c
usage_error "keyway: usage: empty value for -c (try 'keyway usage --help')" \
	usage -c ""

run "$KW" -c "$CONF" get missing
expect_exit 3
expect_stderr_line "keyway: chain \"default\": no backend has a key for provider \"missing\""
expect_stdout ""

run "$KW" -c "$CONF" get --chain notfound anthropic
expect_exit 3
expect_stderr_line "keyway: chain \"notfound\", provider \"anthropic\": nokey answered notfound: fake notfound"
expect_stdout ""

run "$KW" -c "$CONF" get --chain denied anthropic
expect_exit 4
expect_stderr_line "keyway: chain \"denied\", provider \"anthropic\": quota answered denied: fake denied"
expect_stdout ""

run "$KW" -c "$CONF" get --chain=unavail anthropic
expect_exit 5
expect_stderr_line "keyway: chain \"unavail\", provider \"anthropic\": down answered unavail: fake unavail"
expect_stdout ""

run "$KW" -c "$CONF" get anthropic --chain error
expect_exit 1
expect_stderr_line "keyway: chain \"error\", provider \"anthropic\": broken answered backend error: fake error"
expect_stdout ""

run "$KW" -c "$CONF" get --chain nope anthropic
expect_exit 1
expect_stderr_line "keyway: $CONF: no chain \"nope\""
expect_stdout ""

# Names are checked before anything is opened, each as a usage error that
# names what is wrong and never repeats a control character.
run "$KW" -c "$CONF" get Anthropic
expect_exit 2
expect_stderr_line "keyway: get: invalid provider \"Anthropic\": a provider is lower-case letters, digits, '-', '_' and '.', and starts with a letter or digit (try 'keyway get --help')"
usage_error "keyway: get: invalid --org: it holds a space (at byte 2); a name has no blanks or slashes (try 'keyway get --help')" \
	-c "$CONF" get anthropic --org 'a b'
usage_error "keyway: get: invalid --org: it holds a '/' (at byte 2); a name has no blanks or slashes (try 'keyway get --help')" \
	-c "$CONF" get anthropic --org a/b
usage_error "keyway: get: invalid --org: it holds a control character (at byte 3) (try 'keyway get --help')" \
	-c "$CONF" get anthropic --org $'ac\x1bme'
usage_error "keyway: explain: invalid --user: it may not be \".\" or \"..\" (try 'keyway explain --help')" \
	-c "$CONF" explain anthropic --user ..
usage_error "keyway: get: invalid provider: it holds a control character (at byte 4) (try 'keyway get --help')" \
	-c "$CONF" get $'ant\x1b[2Jhropic'
usage_error "keyway: get: invalid provider: a provider is lower-case letters, digits, '-', '_' and '.', and starts with a letter or digit (try 'keyway get --help')" \
	-c "$CONF" get sk-ant-pasted-by-mistake-0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789
usage_error "keyway: get: invalid provider: a provider is lower-case letters, digits, '-', '_' and '.', and starts with a letter or digit (try 'keyway get --help')" \
	-c "$CONF" get sk-Short0Pasted1Key
usage_error "keyway: exec: invalid provider \"Open\": a provider is lower-case letters, digits, '-', '_' and '.', and starts with a letter or digit (try 'keyway exec --help')" \
	-c "$CONF" exec -p Open=OPENAI_API_KEY -- true
usage_error "keyway: usage: invalid --org: it is empty (try 'keyway usage --help')" \
	-c "$CONF" usage --org ''
usage_error "keyway: ls: invalid --owner: it holds a space (at byte 2); a name has no blanks or slashes (try 'keyway ls --help')" \
	-c "$CONF" ls --owner 'a b'
usage_error "keyway: ls: \"30\" is taken for a BACKEND; for a number of days, write --due=30 (try 'keyway ls --help')" \
	-c "$CONF" ls --due 30

# --user and --org pick the owner a scoped store looks up.
run -s "$KW" -c "$CONF" get --chain stores --user alice anthropic
expect_exit 0
expect_stdout "$K_USER"
expect_stderr ""

run -s "$KW" -c "$CONF" get --chain stores --org acme anthropic
expect_exit 0
expect_stdout "$K_ORG"
expect_stderr ""

run -s "$KW" -c "$CONF" get --chain stores --user alice --org acme anthropic
expect_exit 0
expect_stdout "$K_ORG" "get --chain stores --user --org: the org's key comes first"

run "$KW" -c "$CONF" get --chain stores anthropic
expect_exit 3
expect_stderr_line "keyway: chain \"stores\": no backend has a key for provider \"anthropic\""

run "$KW" -c "$CONF" get --chain stores --user ../alice anthropic
expect_exit 2
expect_stderr_line "keyway: get: invalid --user: it holds a '/' (at byte 3); a name has no blanks or slashes (try 'keyway get --help')"

# On a terminal the key is masked unless --reveal is given.
tty_skip=$(tty_unavailable)
if [ -z "$tty_skip" ]; then
	run -t "$KW" -c "$CONF" get anthropic
	expect_exit 0
	expect_stdout "sk-a****ijkl" "get on a terminal: the key is masked"

	run -t "$KW" -c "$CONF" get --chain stores --user alice anthropic
	expect_exit 0
	expect_stdout "sk-u****6789" "get --user on a terminal: the key is masked"

	run -t "$KW" -c "$CONF" get --chain tiny anthropic
	expect_exit 0
	expect_stdout "****-xyz" "get of a 15-byte key on a terminal: only its last four"

	run -s -t "$KW" -c "$CONF" get --reveal anthropic
	expect_exit 0
	expect_stdout "$K_ANT" "get --reveal on a terminal: the whole key"

	run -t "$KW" -c "$CONF" get --chain denied anthropic
	expect_exit 4
	expect_stdout "keyway: chain \"denied\", provider \"anthropic\": quota answered denied: fake denied" \
		"get --chain denied on a terminal: the error line"
else
	for t in "masked" "--user masked" "short masked" "--reveal" "denied"; do
		skip "get on a terminal: $t (exit status)" "$tty_skip"
		skip "get on a terminal: $t (output)" "$tty_skip"
	done
fi

# Output that does not arrive is an error.
# to_full CMD...: run CMD with stdout on /dev/full (every write: ENOSPC).
to_full()
{
	"$@" >/dev/full
}
# to_closed CMD...: run CMD with stdout closed.
to_closed()
{
	"$@" >&-
}
run to_full "$KW" -c "$CONF" get anthropic
expect_exit 1
expect_stderr_line "keyway: write error: No space left on device"
run to_closed "$KW" -c "$CONF" get anthropic
expect_exit 1
expect_stderr_line "keyway: write error: Bad file descriptor"
run to_full "$KW" -c "$CONF" explain anthropic
expect_exit 1
expect_stderr_line "keyway: write error: No space left on device"
run to_full "$KW" keygen
expect_exit 1
expect_stderr_line "keyway: write error: No space left on device"
run to_full "$KW" --help
expect_exit 1
expect_stderr_line "keyway: write error: No space left on device"

# A configuration with a typo fails closed, naming file and line.
typo=$TMPD/typo.conf
write_conf "$typo" <<'EOF'
backends: {
	team: { module = "fake"; answer = "found"; };
};
chains: {
	default = ( { backend = "team"; control = "sufficent"; } );
};
EOF
run "$KW" -c "$typo" get anthropic
expect_exit 1
expect_stderr_line "keyway: $typo:5: chain \"default\": entry 1: unknown control \"sufficent\" (expected required, requisite, sufficient, optional or [status=action ...])"
expect_stdout ""

unknown_backend=$TMPD/unknown-backend.conf
write_conf "$unknown_backend" <<'EOF'
backends: {
	team: { module = "fake"; answer = "found"; };
};
chains: {
	default = ( { backend = "team"; control = "sufficient"; },
		    { backend = "taem"; control = "required"; } );
};
EOF
run "$KW" -c "$unknown_backend" get anthropic
expect_exit 1
expect_stderr_line "keyway: $unknown_backend:6: chain \"default\": unknown backend \"taem\""

run "$KW" -c "$TMPD/no-such.conf" get anthropic
expect_exit 1
expect_stderr_line "keyway: $TMPD/no-such.conf: cannot open configuration: No such file or directory"

# ---- explain ----

run "$KW" -c "$CONF" explain --chain walk --user alice anthropic
expect_exit 0
expect_stdout 'chain "walk": provider "anthropic", user "alice", org -
  1. nokey (fake): notfound -> continue: fake notfound
  2. quota (fake): denied -> skip 1: fake denied
  4. team (fake): found -> done: fake found [sk-a****ijkl]
result: found by team'
expect_stderr ""

run "$KW" -c "$CONF" explain --chain denied --org acme anthropic
expect_exit 4
expect_stdout 'chain "denied": provider "anthropic", user -, org "acme"
  1. quota (fake): denied -> die: fake denied
result: denied: quota answered denied: fake denied'
expect_stderr ""

run "$KW" -c "$CONF" explain openai
expect_exit 0
expect_stdout "chain \"default\": provider \"openai\", user -, org -
  1. team (fake): notfound -> continue: fake notfound: provider \"openai\" is not in providers
  2. server_env (env): found -> done: \$OPENAI_API_KEY from $SECRETD/server.env [sk-p****uvwx]
result: found by server_env"
expect_stderr ""

run "$KW" -c "$CONF" explain missing
expect_exit 3
expect_stdout "chain \"default\": provider \"missing\", user -, org -
  1. team (fake): notfound -> continue: fake notfound: provider \"missing\" is not in providers
  2. server_env (env): notfound -> continue: \$MISSING_API_KEY is not set in the environment or in $SECRETD/server.env
result: notfound: no backend has a key for provider \"missing\""

run "$KW" -c "$CONF" explain --chain unavail anthropic
expect_exit 5
expect_stdout 'chain "unavail": provider "anthropic", user -, org -
  1. down (fake): unavail -> die: fake unavail
result: unavail: down answered unavail: fake unavail'

run "$KW" -c "$CONF" explain --chain tiny anthropic
expect_exit 0
expect_stdout 'chain "tiny": provider "anthropic", user -, org -
  1. tiny (fake): found -> done: fake found [****-xyz]
result: found by tiny'

run "$KW" -c "$CONF" explain --chain nope anthropic
expect_exit 1
expect_stderr_line "keyway: $CONF: no chain \"nope\""
expect_stdout ""

# --json: the same trace, in the shape keyway(1) documents, compared here
# field by field, in order.
if [ -n "$PY" ]; then
	run "$KW" -c "$CONF" explain --chain walk --user alice anthropic --json
	expect_exit 0
	expect_stderr ""
	expect_eq "$(flat_json "$OUT")" 'request.chain="walk"
request.provider="anthropic"
request.user="alice"
request.org=null
steps[0].entry=1
steps[0].backend="nokey"
steps[0].module="fake"
steps[0].status="notfound"
steps[0].action="continue"
steps[0].skip=null
steps[0].detail="fake notfound"
steps[0].masked=null
steps[1].entry=2
steps[1].backend="quota"
steps[1].module="fake"
steps[1].status="denied"
steps[1].action="skip"
steps[1].skip=1
steps[1].detail="fake denied"
steps[1].masked=null
steps[2].entry=4
steps[2].backend="team"
steps[2].module="fake"
steps[2].status="found"
steps[2].action="done"
steps[2].skip=null
steps[2].detail="fake found"
steps[2].masked="sk-a****ijkl"
result.status="found"
result.backend="team"
result.summary=null' "explain --json: a walk that skips"
	expect_lacks "$OUT" "$K_ANT" "explain --json: no key"

	run "$KW" -c "$CONF" explain --json --chain denied --org acme anthropic
	expect_exit 4 "explain --json: the exit status of the resolution"
	expect_eq "$(flat_json "$OUT")" 'request.chain="denied"
request.provider="anthropic"
request.user=null
request.org="acme"
steps[0].entry=1
steps[0].backend="quota"
steps[0].module="fake"
steps[0].status="denied"
steps[0].action="die"
steps[0].skip=null
steps[0].detail="fake denied"
steps[0].masked=null
result.status="denied"
result.backend=null
result.summary="quota answered denied: fake denied"' "explain --json: a denial"

	run "$KW" -c "$CONF" explain --json openai
	expect_exit 0
	expect_lacks "$OUT" "$K_OAI" "explain --json of a key from the env backend: no key"
else
	skip "explain --json" "python3 with json is not available"
fi

# ---- exec ----

# The child writes what it was given into files under $SECRETD (it may hold
# the key) or $TMPD (it must not).
run "$KW" -c "$CONF" exec -p anthropic -- \
	sh -c 'printf %s "$ANTHROPIC_API_KEY" >"$1"' sh "$SECRETD/env1"
expect_exit 0
expect_stdout ""
expect_stderr ""
expect_eq "$(cat "$SECRETD/env1" 2>/dev/null)" "$K_ANT" \
	"exec -p anthropic: the child has \$ANTHROPIC_API_KEY"

# A variable the caller set is replaced, not doubled.
run env ANTHROPIC_API_KEY="$K_OLD" "$KW" -c "$CONF" exec -p anthropic -- \
	sh -c 'printf %s "$ANTHROPIC_API_KEY" >"$1"; env | grep -c "^ANTHROPIC_API_KEY="' \
	sh "$SECRETD/env2"
expect_exit 0
expect_stdout "1" "exec replaces the caller's ANTHROPIC_API_KEY: one in the environment"
expect_eq "$(cat "$SECRETD/env2" 2>/dev/null)" "$K_ANT" \
	"exec replaces the caller's ANTHROPIC_API_KEY: the resolved key"

run "$KW" -c "$CONF" exec -p anthropic=MY_KEY -- \
	sh -c 'printf "%s|%s" "$MY_KEY" "${ANTHROPIC_API_KEY-unset}" >"$1"' \
	sh "$SECRETD/env3"
expect_exit 0
expect_eq "$(cat "$SECRETD/env3" 2>/dev/null)" "$K_ANT|unset" \
	"exec -p anthropic=MY_KEY: the key is in \$MY_KEY only"

run "$KW" -c "$CONF" exec -p anthropic --provider=openai -- \
	sh -c 'printf "%s|%s" "$ANTHROPIC_API_KEY" "$OPENAI_API_KEY" >"$1"' \
	sh "$SECRETD/env4"
expect_exit 0
expect_eq "$(cat "$SECRETD/env4" 2>/dev/null)" "$K_ANT|$K_OAI" \
	"exec with two providers: both keys"

# The child gets the keys the chain resolved and no other: not a key the
# env backend would hand out (its own quota and audit bypassed), not a
# variable the dotenv file sets, not a master key or passphrase.  Only
# names are written where a key may not go.
# child_lacks FILE VAR...: VAR is not among the names listed in FILE.
child_lacks()
{
	local file=$1 v

	shift
	for v; do
		if grep -qx -- "$v" "$file"; then
			fail "exec: the child has no \$$v" "$v is in its environment"
		else
			pass "exec: the child has no \$$v"
		fi
	done
}
run env OPENAI_API_KEY="$K_OLD" MISTRAL_API_KEY="$K_OLD" \
	KWTEST_DOTENV_ONLY=2 KEYWAY_MASTER_KEY="$K_OLD" \
	API_KEY_ENCRYPTION_KEY="$K_OLD" KEYWAY_PASSPHRASE="$K_OLD" \
	KWTEST_KEEP=kept "$KW" -c "$CONF" exec -p anthropic -- \
	sh -c 'env | sed "s/=.*//" >"$1"; printf "%s|%s" "$ANTHROPIC_API_KEY" "$KWTEST_KEEP" >"$2"' \
	sh "$TMPD/names1" "$SECRETD/env6"
expect_exit 0
expect_stderr ""
expect_eq "$(cat "$SECRETD/env6" 2>/dev/null)" "$K_ANT|kept" \
	"exec -p anthropic: the resolved key and the caller's other variables"
child_lacks "$TMPD/names1" OPENAI_API_KEY MISTRAL_API_KEY KWTEST_DOTENV_ONLY \
	KEYWAY_MASTER_KEY API_KEY_ENCRYPTION_KEY KEYWAY_PASSPHRASE

# However many master keys come from the environment, none reaches the
# child.  Distinct keys, each recognisable if one leaks.
MKCONF=$SECRETD/mk6.conf
sed 's/^backends: {/keyway: {\
	master_key = { source = "env"; var = "KWTEST_MK0"; };\
	old_master_keys = ( { source = "env"; var = "KWTEST_MK1"; },\
		{ source = "env"; var = "KWTEST_MK2"; },\
		{ source = "env"; var = "KWTEST_MK3"; },\
		{ source = "env"; var = "KWTEST_MK4"; },\
		{ source = "env"; var = "KWTEST_MK5"; } );\
};\
&/' "$CONF" | write_conf "$MKCONF"
mk_env=()
for i in 0 1 2 3 4 5; do
	mk=$(printf 'a%.0s' {1..63})$i
	secret "$mk"
	mk_env+=("KWTEST_MK$i=$mk")
done
run env "${mk_env[@]}" "$KW" -c "$MKCONF" exec -p anthropic -- \
	sh -c 'env | sed "s/=.*//" >"$1"' sh "$TMPD/names_mk"
expect_exit 0
expect_stderr ""
child_lacks "$TMPD/names_mk" KWTEST_MK0 KWTEST_MK1 KWTEST_MK2 KWTEST_MK3 \
	KWTEST_MK4 KWTEST_MK5

# Modules are loaded through /proc/self/fd: without /proc (a chroot, a
# small container) the error says so.  A mount namespace with an empty
# /proc stands for one; it needs root and unshare(1).
noproc="$CONF:9: backend \"team\": cannot load module $KEYWAY_MODULE_DIR/kw_fake.so: /proc/self/fd is not available; keyway loads modules through it (mount /proc)"
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 &&
	unshare -m sh -c 'mount -t tmpfs none /proc' 2>/dev/null; then
	run unshare -m sh -c 'mount -t tmpfs none /proc && exec "$@"' sh \
		"$KW" -c "$CONF" get anthropic
	expect_exit 1
	# A sanitizer's runtime warns of its own without /proc.
	sed -i '/^==[0-9]*==/d' "$ERR"
	expect_stderr "keyway: $noproc"
else
	skip "get without /proc: exit status" "needs root and unshare -m"
	skip "get without /proc: stderr" "needs root and unshare -m"
fi

# A key the env backend resolved reaches the child, once, as resolved.
run env OPENAI_API_KEY="$K_OLD" "$KW" -c "$CONF" exec -p openai -- \
	sh -c 'printf %s "$OPENAI_API_KEY" >"$1"; env | grep -c "^OPENAI_API_KEY="' \
	sh "$SECRETD/env7"
expect_exit 0
expect_stdout "1" "exec -p openai from the environment: one OPENAI_API_KEY"
expect_eq "$(cat "$SECRETD/env7" 2>/dev/null)" "$K_OLD" \
	"exec -p openai from the environment: the resolved key"

# --user reaches the chain too.
run "$KW" -c "$CONF" exec --chain stores --user alice -p anthropic -- \
	sh -c 'printf %s "$ANTHROPIC_API_KEY" >"$1"' sh "$SECRETD/env5"
expect_exit 0
expect_eq "$(cat "$SECRETD/env5" 2>/dev/null)" "$K_USER" \
	"exec --chain stores --user alice: the user's key"

# Neither in the child's argv nor on keyway's stdout or stderr.
run "$KW" -c "$CONF" exec -p anthropic -p openai -- \
	sh -c 'cat /proc/$$/cmdline >"$1"; echo child ran' sh "$TMPD/cmdline"
expect_exit 0
expect_stdout "child ran"
expect_stderr ""
if [ -s "$TMPD/cmdline" ]; then
	pass "exec: the child's command line was read"
else
	fail "exec: the child's command line was read" "$TMPD/cmdline is empty"
fi
expect_lacks "$TMPD/cmdline" "$K_ANT" "exec: the anthropic key is not in the child's argv"
expect_lacks "$TMPD/cmdline" "$K_OAI" "exec: the openai key is not in the child's argv"
expect_lacks "$OUT" "$K_ANT" "exec: the key is not on keyway's stdout"
expect_lacks "$ERR" "$K_ANT" "exec: the key is not on keyway's stderr"

# keyway ignores SIGPIPE for itself; the command gets what the caller gave.
# Signals 1 to 32 only: once a program has a thread, glibc handles its
# internal signal 33 (SIGSETXID) itself, and exec() resets a handled signal.
sigign='grep "^SigIgn:" /proc/$$/status | cut -c17-'
run sh -c "$sigign"
slurp "$OUT"
want=$REPLY
run "$KW" -c "$CONF" exec -p anthropic -- sh -c "$sigign"
expect_exit 0
expect_stdout "${want%$'\n'}" "exec: the command's ignored signals are the caller's"
ignore_pipe()
{
	(trap '' PIPE && exec "$@")
}
run ignore_pipe sh -c "$sigign"
slurp "$OUT"
want=$REPLY
run ignore_pipe "$KW" -c "$CONF" exec -p anthropic -- sh -c "$sigign"
expect_exit 0
expect_stdout "${want%$'\n'}" "exec: a SIGPIPE the caller ignores stays ignored"

# Options after CMD are CMD's, not keyway's.
run "$KW" -c "$CONF" exec -p anthropic sh -c 'echo "$1"' sh -p
expect_exit 0
expect_stdout "-p" "exec: options after CMD go to CMD"

# -c before CMD is keyway's; after it, CMD's.
run "$KW" exec -p anthropic -c "$CONF" -- sh -c 'echo "$1"' sh -c
expect_exit 0
expect_stdout "-c" "exec -c CONFIG -- CMD: -c after CMD goes to CMD"

# Nothing runs unless every key resolves.
run "$KW" -c "$CONF" exec -p anthropic -p missing -- touch "$TMPD/marker1"
expect_exit 3
expect_stderr_line "keyway: chain \"default\": no backend has a key for provider \"missing\""
expect_stdout ""
expect_missing "$TMPD/marker1" "exec with a provider not found runs nothing"

run "$KW" -c "$CONF" exec --chain denied -p anthropic -- touch "$TMPD/marker2"
expect_exit 4
expect_stderr_line "keyway: chain \"denied\", provider \"anthropic\": quota answered denied: fake denied"
expect_missing "$TMPD/marker2" "exec with a provider denied runs nothing"

run "$KW" -c "$CONF" exec --chain unavail -p anthropic -- touch "$TMPD/marker3"
expect_exit 5
expect_missing "$TMPD/marker3" "exec with a provider unavailable runs nothing"

run "$KW" -c "$typo" exec -p anthropic -- touch "$TMPD/marker4"
expect_exit 1
expect_stderr_line "keyway: $typo:5: chain \"default\": entry 1: unknown control \"sufficent\" (expected required, requisite, sufficient, optional or [status=action ...])"
expect_missing "$TMPD/marker4" "exec with a broken configuration runs nothing"

# A directory of PATH that cannot be searched turns ENOENT into EACCES (126),
# as for env(1): search only directories anyone may.
run env PATH=/usr/bin:/bin "$KW" -c "$CONF" exec -p anthropic -- \
	keyway-test-no-such-command
expect_exit 127
expect_stderr_line "keyway: exec: keyway-test-no-such-command: No such file or directory"
expect_stdout ""

run "$KW" -c "$CONF" exec -p anthropic -- "$TMPD/no-such-file"
expect_exit 127
expect_stderr_line "keyway: exec: $TMPD/no-such-file: No such file or directory"

printf '#!/bin/sh\ntouch "%s"\n' "$TMPD/marker5" >"$TMPD/not-executable"
chmod 644 "$TMPD/not-executable"
run "$KW" -c "$CONF" exec -p anthropic -- "$TMPD/not-executable"
expect_exit 126
expect_stderr_line "keyway: exec: $TMPD/not-executable: Permission denied"
expect_missing "$TMPD/marker5" "exec of a file that is not executable runs nothing"

run "$KW" -c "$CONF" exec -p anthropic -- "$TMPD"
expect_exit 126
expect_stderr_line "keyway: exec: $TMPD: Permission denied"

run "$KW" -c "$CONF" exec -p anthropic -- sh -c 'exit 42'
expect_exit 42 "exec: the child's exit status 42 is passed through"
run "$KW" -c "$CONF" exec -p anthropic -- false
expect_exit 1 "exec: the child's exit status 1 is passed through"

# ---- check ----

run "$KW" -c "$CONF" check
expect_exit 0
expect_stdout "ok"
expect_stderr ""

three=$TMPD/three.conf
write_conf "$three" <<'EOF'
colour = "blue";
backends: {
	team: { module = "fake"; answer = "found"; flavour = "mint"; };
};
chains: {
	default = ( { backend = "taem"; control = "sufficient"; } );
};
EOF
run "$KW" -c "$three" check
expect_exit 1
expect_stderr "$three:1: unknown setting \"colour\" (expected keyway, backends, chains or daemon)
$three:3: backend \"team\": unknown setting \"flavour\" (module \"fake\" takes answer, value, open_error, check_answer, providers, nul_at, status, log, usage_threads)
$three:6: chain \"default\": unknown backend \"taem\"" \
	"check: three errors, three lines"
expect_stdout ""

# check --json: {"ok", "problems": [{"file", "line", "message"}]} on
# stdout, nothing on stderr, the exit status of check.
if [ -n "$PY" ]; then
	run "$KW" -c "$CONF" check --json
	expect_exit 0
	expect_stderr ""
	expect_eq "$(flat_json "$OUT")" 'ok=true
problems=[]' "check --json: ok"

	run "$KW" check --json -c "$three"
	expect_exit 1
	expect_stderr ""
	expect_eq "$(flat_json "$OUT")" "ok=false
problems[0].file=\"$three\"
problems[0].line=1
problems[0].message=\"unknown setting \\\"colour\\\" (expected keyway, backends, chains or daemon)\"
problems[1].file=\"$three\"
problems[1].line=3
problems[1].message=\"backend \\\"team\\\": unknown setting \\\"flavour\\\" (module \\\"fake\\\" takes answer, value, open_error, check_answer, providers, nul_at, status, log, usage_threads)\"
problems[2].file=\"$three\"
problems[2].line=6
problems[2].message=\"chain \\\"default\\\": unknown backend \\\"taem\\\"\"" \
		"check --json: three problems, by file, line and message"

	run "$KW" -c "$TMPD/no-such.conf" check --json
	expect_exit 1
	expect_stderr ""
	expect_eq "$(flat_json "$OUT")" "ok=false
problems[0].file=\"$TMPD/no-such.conf\"
problems[0].line=null
problems[0].message=\"cannot open configuration: No such file or directory\"" \
		"check --json: a problem with the whole file has no line"
else
	skip "check --json" "python3 with json is not available"
fi

# check goes on to open and health-check every backend.
flaky=$TMPD/flaky.conf
write_conf "$flaky" <<'EOF'
backends: {
	flaky: { module = "fake"; answer = "found"; check_answer = "unavail"; };
	fine: { module = "fake"; answer = "found"; };
	closed: { module = "fake"; answer = "found"; open_error = true; };
};
chains: {
	default = ( { backend = "flaky"; control = "sufficient"; },
		    { backend = "fine"; control = "sufficient"; },
		    { backend = "closed"; control = "sufficient"; } );
};
EOF
run "$KW" -c "$flaky" check
expect_exit 1
expect_stderr "$flaky:2: backend \"flaky\": health check: unavail: fake check: unavail
$flaky:4: backend \"closed\": refusing to open as asked" \
	"check: a backend that will not open and a failed health check, in file order"
expect_stdout ""

# A copy of cli.conf: it holds a key.
gw=$SECRETD/group-writable.conf
cp -- "$CONF" "$gw"
chmod 620 "$gw"
run "$KW" -c "$gw" check
expect_exit 1
expect_stderr_line "$gw: refusing to read the configuration: it is writable by group (chmod go-w $gw)"
expect_stdout ""

run "$KW" -c "$gw" get anthropic
expect_exit 1
expect_stderr_line "keyway: $gw: refusing to read the configuration: it is writable by group (chmod go-w $gw)"
expect_stdout ""

chmod 602 "$gw"
run "$KW" -c "$gw" check
expect_exit 1
expect_stderr_line "$gw: refusing to read the configuration: it is writable by others (chmod go-w $gw)"

run "$KW" -c "$TMPD/no-such.conf" check
expect_exit 1
expect_stderr_line "$TMPD/no-such.conf: cannot open configuration: No such file or directory"

# A FIFO where the master key should be: refused at once, not waited on
# for a writer (timeout's status 124 would say it hung).
mkfifo -m 600 "$TMPD/master.fifo"
fifo=$TMPD/fifo.conf
write_conf "$fifo" <<EOF
keyway: {
	master_key = { source = "file"; path = "$TMPD/master.fifo"; };
};
backends: { team: { module = "fake"; answer = "found"; }; };
chains: { default = ( { backend = "team"; control = "sufficient"; } ); };
EOF
fifo_refused="$fifo:2: keyway.master_key: $TMPD/master.fifo is not a regular file"
run timeout 10 "$KW" -c "$fifo" check
expect_exit 1
expect_stderr_line "$fifo_refused"
run timeout 10 "$KW" -c "$fifo" get anthropic
expect_exit 1
expect_stderr_line "keyway: $fifo_refused"

# The shipped sample configuration.
run "$KW" -c "$KEYWAY_SRCDIR/etc/keyway.conf" check
expect_exit 0 "check of the shipped etc/keyway.conf: exit status 0"
expect_stdout "ok" "check of the shipped etc/keyway.conf: ok"
expect_stderr "" "check of the shipped etc/keyway.conf: nothing on stderr"

# ---- keygen ----

run -s "$KW" keygen
expect_exit 0
expect_stdout_match '[0-9a-f]{64}' "keygen: 64 lower-case hex digits and a newline"
expect_stderr ""
slurp "$OUT"
key1=${REPLY%$'\n'}
secret "$key1"

run -s "$KW" keygen
expect_exit 0
slurp "$OUT"
key2=${REPLY%$'\n'}
secret "$key2"
if [ -n "$key1" ] && [ "$key1" != "$key2" ]; then
	pass "keygen: two runs give two keys"
else
	fail "keygen: two runs give two keys"
fi

# The mode is keygen's, whatever the umask.
umask_run()
{
	local mask=$1

	shift
	(umask "$mask" && exec "$@")
}
run umask_run 000 "$KW" keygen -o "$SECRETD/master.key"
expect_exit 0
expect_stdout ""
expect_stderr ""
expect_eq "$(stat -c %a "$SECRETD/master.key" 2>/dev/null)" "600" \
	"keygen -o: the file has mode 0600"
OUT=$SECRETD/master.key
expect_stdout_match '[0-9a-f]{64}' "keygen -o: the file holds 64 lower-case hex digits and a newline"
slurp "$SECRETD/master.key"
key3=${REPLY%$'\n'}
secret "$key3"

run "$KW" keygen --output="$SECRETD/master.key"
expect_exit 1
expect_stderr_line "keyway: keygen: $SECRETD/master.key: File exists"
expect_stdout ""
expect_file "$SECRETD/master.key" "$key3" "keygen -o: an existing file is left alone"

ln -s "$TMPD/elsewhere" "$TMPD/link.key"
run "$KW" keygen -o "$TMPD/link.key"
expect_exit 1
expect_stderr_line "keyway: keygen: $TMPD/link.key: File exists"
expect_missing "$TMPD/elsewhere" "keygen -o does not follow a symbolic link"

# ---- leaks ----

expect_no_leaks

done_testing
