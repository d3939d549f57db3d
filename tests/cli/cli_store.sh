#!/bin/bash
# cli_store.sh - TAP tests of the keyway(1) commands that manage stored
# keys: put, rotate, enable, disable, rm, ls and rekey, on a SQLite store
# seen as org, user and system keys, each checked for its exact output and
# exit status; then a search for keys in everything the tests wrote, the
# store's own files included.  Run by `make check`, or by hand as lib.sh
# says.

. "$(dirname -- "$0")/lib.sh" || exit 99
unset KWTEST_NEW_MASTER_KEY

# The master keys: the store's, and the one `rekey` moves it to.
MASTER_OLD=4f1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff0
MASTER_NEW=a0b1c2d3e4f5061728394a5b6c7d8e9f0f1e2d3c4b5a69788796a5b4c3d2e1f0
export KEYWAY_MASTER_KEY=$MASTER_OLD

# The keys the tests use.  Every one is searched for at the end.
K_ORG=sk-ant-cli-store-org-acme-0001aaaa
K_ORG2=sk-ant-cli-store-org-acme-0002bbbb      # acme's, rotated
K_GLOBEX=sk-ant-cli-store-org-globex-03cc
K_ALICE=sk-ant-cli-store-user-alice-04dd
K_ALICE_OAI=sk-proj-cli-store-alice-oai-05ee
K_SYS=sk-ant-cli-store-system-000006ff
K_ENV=sk-ant-cli-store-environment-07gg       # the server's, in its env
K_BOB=sk-ant-cli-store-user-bob-typed-08hh    # typed at the prompt
K_BAD=sk-proj-cli-store-not-anthropic-09ii    # not an anthropic key
K_ARGV=sk-ant-cli-store-on-the-argv-10jj      # given on the command line
K_CAROL=sk-ant-cli-store-user-carol-crlf11    # ends in CR LF
K_TWO=sk-ant-cli-store-two-lines-0012         # first line of two
secret "$MASTER_OLD" "$MASTER_NEW" "$K_ORG" "$K_ORG2" "$K_GLOBEX" \
	"$K_ALICE" "$K_ALICE_OAI" "$K_SYS" "$K_ENV" "$K_BOB" "$K_BAD" \
	"$K_ARGV" "$K_CAROL" "$K_TWO"
export ANTHROPIC_API_KEY=$K_ENV

# Key files, to feed on standard input: they hold keys, so under $SECRETD.
# keyfile NAME VALUE [END]: END is what follows VALUE (default a newline).
keyfile()
{
	printf '%s%s' "$2" "${3-$'\n'}" >"$SECRETD/$1" || bail_out "cannot write $1"
	printf '%s' "$SECRETD/$1"
}

# from FILE CMD...: run CMD with the contents of FILE on a pipe.
from()
{
	local file=$1

	shift
	cat -- "$file" | "$@"
}

# The store and its configuration: no key in either.
STORE=$TMPD/keys.db
CONF=$TMPD/store.conf
write_conf "$CONF" <<'EOF'
keyway: { master_key = { source = "env"; }; };
backends: {
	org_keys: { module = "sqlite"; path = "keys.db"; scope = "org"; };
	user_keys: { module = "sqlite"; path = "keys.db"; scope = "user"; };
	system_keys: { module = "sqlite"; path = "keys.db"; scope = "system"; };
	server_env: { module = "env"; };
};
chains: {
	# Pentographer: the org's key, else the user's, else the server's.
	default = ( { backend = "org_keys"; control = "sufficient"; },
		    { backend = "user_keys"; control = "sufficient"; },
		    { backend = "server_env"; control = "required"; } );
	# A disabled or missing org key ends the search.
	strict = ( { backend = "org_keys"; control = "requisite"; },
		   { backend = "server_env"; control = "required"; } );
	# Fovea: the user's key, else the system's, else the environment's.
	fovea = ( { backend = "user_keys"; control = "sufficient"; },
		  { backend = "system_keys"; control = "sufficient"; },
		  { backend = "server_env"; control = "required"; } );
};
EOF

# The same store under the new master key, with the old one to read what
# it sealed; and under the new one alone.  org_keys' path is on line 5.
REKEY_CONF=$TMPD/rekey.conf
NEW_CONF=$TMPD/new.conf
{
	echo 'keyway: {'
	echo '	master_key = { source = "env"; var = "KWTEST_NEW_MASTER_KEY"; };'
	echo '	old_master_keys = ( { source = "env"; } );'
	echo '};'
	sed 1d "$CONF"
} | write_conf "$REKEY_CONF"
{
	echo 'keyway: {'
	echo '	master_key = { source = "env"; var = "KWTEST_NEW_MASTER_KEY"; };'
	echo '};'
	sed 1d "$CONF"
} | write_conf "$NEW_CONF"

# ---- usage ----

for cmd in put rotate enable disable rm ls rekey; do
	case $cmd in
	put | rotate) usage="$cmd BACKEND PROVIDER [--scope S] [--owner O] [--name N]" ;;
	enable | disable | rm) usage="$cmd BACKEND PROVIDER [--scope S] [--owner O]" ;;
	ls) usage="ls [BACKEND] [--owner O] [--json] [--due[=DAYS]]" ;;
	rekey) usage="rekey BACKEND" ;;
	esac
	help_shows "$cmd" "$usage"
done

usage_error "keyway: put: missing BACKEND (try 'keyway put --help')" -c "$CONF" put
usage_error "keyway: put: missing PROVIDER (try 'keyway put --help')" \
	-c "$CONF" put org_keys
usage_error "keyway: put: empty BACKEND (try 'keyway put --help')" \
	-c "$CONF" put "" anthropic
usage_error "keyway: put: unknown scope \"team\" (user, org or system) (try 'keyway put --help')" \
	-c "$CONF" put org_keys anthropic --scope team
usage_error "keyway: put: invalid --owner: it is empty (try 'keyway put --help')" \
	-c "$CONF" put org_keys anthropic --owner=
usage_error "keyway: rotate: option \"--name\" needs an argument (try 'keyway rotate --help')" \
	-c "$CONF" rotate org_keys anthropic --name
usage_error "keyway: enable: unknown option \"--name\" (try 'keyway enable --help')" \
	-c "$CONF" enable org_keys anthropic --name x
usage_error "keyway: rm: unexpected argument \"extra\" (try 'keyway rm --help')" \
	-c "$CONF" rm org_keys anthropic extra
usage_error "keyway: disable: missing PROVIDER (try 'keyway disable --help')" \
	-c "$CONF" disable org_keys
usage_error "keyway: ls: unexpected argument \"user_keys\" (try 'keyway ls --help')" \
	-c "$CONF" ls org_keys user_keys
usage_error "keyway: ls: --due: \"soon\" is not a number of days (try 'keyway ls --help')" \
	-c "$CONF" ls --due=soon
usage_error "keyway: ls: --due: \"-1\" is not a number of days (try 'keyway ls --help')" \
	-c "$CONF" ls --due=-1
usage_error "keyway: rekey: missing BACKEND (try 'keyway rekey --help')" \
	-c "$CONF" rekey
usage_error "keyway: rekey: unexpected argument \"user_keys\" (try 'keyway rekey --help')" \
	-c "$CONF" rekey org_keys user_keys

# A key on the command line is refused, and not repeated.
for cmd in put rotate; do
	run from "$(keyfile argv.in "$K_ARGV")" \
		"$KW" -c "$CONF" "$cmd" org_keys anthropic "$K_ARGV" --owner acme
	expect_exit 2
	expect_stderr_line "keyway: $cmd: unexpected argument (keys are read from standard input, never from the command line) (try 'keyway $cmd --help')"
	expect_stdout ""
	expect_lacks "$ERR" "$K_ARGV" "$cmd with a key on the command line: the key is not on stderr"
done
# Nothing was stored, nor even a store made.
expect_missing "$STORE" "no store exists after usage errors"

# ---- put ----

run from "$(keyfile org.in "$K_ORG")" \
	"$KW" -c "$CONF" put org_keys anthropic --owner acme --name "acme production"
expect_exit 0
expect_stdout "stored key of acme for anthropic in org_keys (sk-a****aaaa)"
expect_stderr ""

if [ -f "$STORE" ]; then
	expect_eq "$(stat -c %a "$STORE")" "600" "the store was created with mode 600"
else
	fail "the store was created with mode 600" "$STORE does not exist"
fi

# A holder keeps a read transaction open from outside until the snapshot
# below, so that nothing can empty the WAL: it is searched for keys at the
# end with the database itself.  keyway empties it when the last program
# that changed a key closes the store, unless a reader holds it.
HOLD_FIFO=$TMPD/hold.fifo
HOLD_PID=
if [ -n "$PY" ] && mkfifo -m 600 "$HOLD_FIFO"; then
	$PY -c '
import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True,
                    isolation_level=None)
c.execute("BEGIN")
c.execute("SELECT count(*) FROM keys").fetchall()
sys.stdin.readline()
c.execute("COMMIT")
sys.stdin.read()
c.close()
' "$STORE" <"$HOLD_FIFO" &
	HOLD_PID=$!
	exec 9>"$HOLD_FIFO"
fi

run from "$(keyfile alice.in "$K_ALICE")" \
	"$KW" -c "$CONF" put user_keys anthropic --owner alice
expect_exit 0
expect_stdout "stored key of alice for anthropic in user_keys (sk-a****04dd)"
expect_stderr ""

run from "$(keyfile alice-oai.in "$K_ALICE_OAI")" \
	"$KW" -c "$CONF" put user_keys openai --owner alice --scope user
expect_exit 0
expect_stdout "stored user key of alice for openai in user_keys (sk-p****05ee)"
expect_stderr ""

run from "$(keyfile sys.in "$K_SYS")" \
	"$KW" -c "$CONF" put system_keys anthropic --scope system --name shared
expect_exit 0
expect_stdout "stored system key for anthropic in system_keys (sk-a****06ff)"
expect_stderr ""

# One key per owner and provider.
run from "$SECRETD/org.in" "$KW" -c "$CONF" put org_keys anthropic --owner acme
expect_exit 1
expect_stderr_line "keyway: put: backend \"org_keys\" already holds an org key of \"acme\" for anthropic; rotate it instead"
expect_stdout ""

run from "$(keyfile bad.in "$K_BAD")" \
	"$KW" -c "$CONF" put org_keys anthropic --owner globex
expect_exit 1
expect_stderr_line "keyway: anthropic keys start with \"sk-ant-\""
expect_stdout ""
expect_lacks "$ERR" "$K_BAD" "put of a malformed key: the key is not on stderr"

run from "$(keyfile empty.in "" "")" "$KW" -c "$CONF" put org_keys anthropic --owner globex
expect_exit 1
expect_stderr_line "keyway: put: empty key"

run from "$(keyfile newline.in "")" "$KW" -c "$CONF" put org_keys anthropic --owner globex
expect_exit 1
expect_stderr_line "keyway: put: empty key"

# Everything but one trailing newline is the key: a second line is part
# of it, and refused.
run from "$(keyfile two.in "$K_TWO" $'\nsecond line\n')" \
	"$KW" -c "$CONF" put org_keys anthropic --owner globex
expect_exit 1
expect_stderr_line "keyway: the anthropic key holds a blank or a character that is not printable ASCII (at byte 32)"
expect_lacks "$ERR" "$K_TWO" "put of two lines: the key is not on stderr"

# A CR LF line end is a line end.
run from "$(keyfile carol.in "$K_CAROL" $'\r\n')" \
	"$KW" -c "$CONF" put user_keys anthropic --owner carol
expect_exit 0
expect_stdout "stored key of carol for anthropic in user_keys (sk-a****lf11)"

run from "$SECRETD/org.in" "$KW" -c "$CONF" put server_env anthropic
expect_exit 1
expect_stderr_line "keyway: put: backend \"server_env\" does not store keys (keys are put in a backend of module file, sqlite or vault)"

run from "$SECRETD/org.in" "$KW" -c "$CONF" put nope anthropic --owner acme
expect_exit 1
expect_stderr_line "keyway: $CONF: no backend \"nope\""

run from "$SECRETD/org.in" "$KW" -c "$CONF" put org_keys anthropic --owner acme --scope user
expect_exit 2
expect_stderr_line "keyway: put: --scope user, but backend \"org_keys\" holds org keys (try 'keyway put --help')"

# A missing --owner is said before a key is read, as a usage error.
for cmd in put rotate enable disable rm; do
	run "$KW" -c "$CONF" $cmd org_keys anthropic </dev/null
	expect_exit 2 "$cmd without --owner of an org key"
	expect_stderr_line "keyway: $cmd: missing --owner (backend \"org_keys\" holds org keys: name the org) (try 'keyway $cmd --help')"
done
run from "$SECRETD/org.in" "$KW" -c "$CONF" put user_keys anthropic --scope user
expect_exit 2
expect_stderr_line "keyway: put: missing --owner (backend \"user_keys\" holds user keys: name the user) (try 'keyway put --help')"

run from "$SECRETD/org.in" "$KW" -c "$CONF" put org_keys anthropic --owner 'a b'
expect_exit 2
expect_stderr_line "keyway: put: invalid --owner: it holds a space (at byte 2); a name has no blanks or slashes (try 'keyway put --help')"

run from "$SECRETD/sys.in" "$KW" -c "$CONF" put system_keys openai --owner root
expect_exit 2
expect_stderr_line "keyway: put: --owner given, but backend \"system_keys\" holds system keys, which have none (try 'keyway put --help')"

# Names a terminal would act on are refused before anything is stored.
run from "$(keyfile esc.in "$K_GLOBEX")" \
	"$KW" -c "$CONF" put org_keys anthropic --owner umbrella --name $'\e[31mx'
expect_exit 2
expect_stderr_line "keyway: put: invalid --name: it holds a control character (at byte 1) (try 'keyway put --help')"
run from "$SECRETD/esc.in" \
	"$KW" -c "$CONF" put org_keys anthropic --owner $'\xe2\x80\xaeumbrella'
expect_exit 2
expect_stderr_line "keyway: put: invalid --owner: it holds a bidirectional text control (at byte 1) (try 'keyway put --help')"
run from "$SECRETD/esc.in" \
	"$KW" -c "$CONF" put org_keys anthropic --owner umbrella --name $'x\xc2\x9b31m'
expect_exit 2
expect_stderr_line "keyway: put: invalid --name: it holds a control character (at byte 2) (try 'keyway put --help')"
run "$KW" -c "$CONF" ls --owner umbrella
expect_exit 0
expect_stdout "BACKEND  SCOPE  OWNER  PROVIDER  NAME  STATE  KEY  USES  LAST-USED  ROTATED" \
	"nothing stored for a refused name"

# ---- ls ----

TODAY=$(date -u +%F)
# Keys stored so far, as ls shows them (never resolved: no uses yet).
LS_ALL="BACKEND      SCOPE   OWNER  PROVIDER   NAME             STATE   KEY           USES  LAST-USED  ROTATED
org_keys     org     acme   anthropic  acme production  active  sk-a****aaaa  0     never      $TODAY
user_keys    user    alice  anthropic  -                active  sk-a****04dd  0     never      $TODAY
user_keys    user    alice  openai     -                active  sk-p****05ee  0     never      $TODAY
user_keys    user    carol  anthropic  -                active  sk-a****lf11  0     never      $TODAY
system_keys  system  -      anthropic  shared           active  sk-a****06ff  0     never      $TODAY"

run "$KW" -c "$CONF" ls
expect_exit 0
expect_stdout "$LS_ALL" "ls: the table"
expect_stderr ""

run "$KW" -c "$CONF" ls user_keys --owner alice
expect_exit 0
expect_stdout "BACKEND    SCOPE  OWNER  PROVIDER   NAME  STATE   KEY           USES  LAST-USED  ROTATED
user_keys  user   alice  anthropic  -     active  sk-a****04dd  0     never      $TODAY
user_keys  user   alice  openai     -     active  sk-p****05ee  0     never      $TODAY" \
	"ls user_keys --owner alice: the table"

run "$KW" -c "$CONF" ls --owner nobody
expect_exit 0
expect_stdout "BACKEND  SCOPE  OWNER  PROVIDER  NAME  STATE  KEY  USES  LAST-USED  ROTATED" \
	"ls --owner nobody: the header alone"

run "$KW" -c "$CONF" ls server_env
expect_exit 1
expect_stderr_line "keyway: backend \"server_env\" (module \"env\") does not list keys"
expect_stdout ""

run "$KW" -c "$CONF" ls nope
expect_exit 1
expect_stderr_line "keyway: $CONF: no backend \"nope\""

# check_json FILE: every field of every key ls --json printed, one line
# per key ("ok" or what is wrong); the key id on a last line.
check_json()
{
	$PY - "$1" "$TODAY" <<'EOF'
import json, re, sys

want = [
    ("org_keys", "org", "acme", "anthropic", "acme production", "sk-a****aaaa"),
    ("user_keys", "user", "alice", "anthropic", None, "sk-a****04dd"),
    ("user_keys", "user", "alice", "openai", None, "sk-p****05ee"),
    ("user_keys", "user", "carol", "anthropic", None, "sk-a****lf11"),
    ("system_keys", "system", None, "anthropic", "shared", "sk-a****06ff"),
]
fields = ["backend", "scope", "owner", "provider", "name", "active",
          "masked", "usage_count", "last_used", "created", "rotated",
          "key_id"]
with open(sys.argv[1]) as f:
    keys = json.load(f)
today = sys.argv[2]
if not isinstance(keys, list) or len(keys) != len(want):
    print("not a list of %d keys" % len(want))
    sys.exit(0)
ids = set()
for k, w in zip(keys, want):
    bad = []
    if list(k) != fields:
        bad.append("fields %s" % list(k))
    for name, value in zip(fields[:5], w[:5]):
        if k.get(name) != value:
            bad.append("%s %r" % (name, k.get(name)))
    if k.get("active") is not True:
        bad.append("active %r" % k.get("active"))
    if k.get("masked") != w[5]:
        bad.append("masked %r" % k.get("masked"))
    if k.get("usage_count") != 0:
        bad.append("usage_count %r" % k.get("usage_count"))
    if k.get("last_used") is not None:
        bad.append("last_used %r" % k.get("last_used"))
    for t in ("created", "rotated"):
        if not re.fullmatch(re.escape(today) + r"T\d\d:\d\d:\d\dZ",
                            str(k.get(t))):
            bad.append("%s %r" % (t, k.get(t)))
    if k.get("created") != k.get("rotated"):
        bad.append("created is not rotated")
    if not re.fullmatch(r"[0-9a-f]{16}", str(k.get("key_id"))):
        bad.append("key_id %r" % k.get("key_id"))
    ids.add(k.get("key_id"))
    print("ok" if not bad else ", ".join(bad))
print(ids.pop() if len(ids) == 1 else "key ids differ: %r" % ids)
EOF
}

run "$KW" -c "$CONF" ls --json
expect_exit 0
expect_stderr ""
if [ -n "$PY" ]; then
	json=$(check_json "$OUT" 2>&1)
	i=0
	for what in "org key of acme" "user key of alice" "openai key of alice" \
		"user key of carol" "system key"; do
		i=$((i + 1))
		expect_eq "$(sed -n "${i}p" <<<"$json")" "ok" "ls --json: $what, field by field"
	done
	OLD_ID=$(sed -n 6p <<<"$json")
	if [[ $OLD_ID =~ ^[0-9a-f]{16}$ ]]; then
		pass "ls --json: one master key id for every key"
	else
		fail "ls --json: one master key id for every key" "$json"
	fi
else
	for i in 1 2 3 4 5 6; do
		skip "ls --json: field by field ($i)" "python3 with json is not available"
	done
	OLD_ID=
fi

# Keys due for rotation: none of these, unless any age will do.
run "$KW" -c "$CONF" ls --due
expect_exit 0
expect_stdout "BACKEND  SCOPE  OWNER  PROVIDER  NAME  STATE  KEY  USES  LAST-USED  ROTATED" \
	"ls --due: fresh keys are not due"
run "$KW" -c "$CONF" ls --due=1
expect_exit 0
expect_stdout "BACKEND  SCOPE  OWNER  PROVIDER  NAME  STATE  KEY  USES  LAST-USED  ROTATED" \
	"ls --due=1: fresh keys are not due"
run "$KW" -c "$CONF" ls --json --due=90
expect_exit 0
expect_stdout "[]" "ls --json --due=90: an empty list"
# Keys last set before this second are due at zero days.
sleep 1.1
run "$KW" -c "$CONF" ls --due=0
expect_exit 0
expect_stdout "$LS_ALL" "ls --due=0: every key"
run "$KW" -c "$CONF" ls --due=0 system_keys
expect_exit 0
expect_stdout "BACKEND      SCOPE   OWNER  PROVIDER   NAME    STATE   KEY           USES  LAST-USED  ROTATED
system_keys  system  -      anthropic  shared  active  sk-a****06ff  0     never      $TODAY" \
	"ls --due=0 system_keys: the system key"

# ---- get: the chains ----

run -s "$KW" -c "$CONF" get anthropic --user alice --org acme
expect_exit 0
expect_stdout "$K_ORG" "get for alice at acme: acme's key"
expect_stderr ""

run -s "$KW" -c "$CONF" get anthropic --user alice --org globex
expect_exit 0
expect_stdout "$K_ALICE" "get for alice at globex: alice's own key"

run -s "$KW" -c "$CONF" get anthropic --user alice
expect_exit 0
expect_stdout "$K_ALICE" "get for alice, no org: alice's own key"

run -s "$KW" -c "$CONF" get anthropic --user dave --org globex
expect_exit 0
expect_stdout "$K_ENV" "get for dave at globex: the server's key"

run -s "$KW" -c "$CONF" get anthropic --user carol --chain fovea
expect_exit 0
expect_stdout "$K_CAROL" "get --chain fovea for carol: carol's key, CR LF dropped"

run -s "$KW" -c "$CONF" get anthropic --user dave --chain fovea
expect_exit 0
expect_stdout "$K_SYS" "get --chain fovea for dave: the system key"

run -s "$KW" -c "$CONF" get openai --user alice --chain fovea
expect_exit 0
expect_stdout "$K_ALICE_OAI" "get openai --chain fovea for alice: her openai key"

run "$KW" -c "$CONF" explain anthropic --user alice --org acme
expect_exit 0
expect_stdout "chain \"default\": provider \"anthropic\", user \"alice\", org \"acme\"
  1. org_keys (sqlite): found -> done: org key of \"acme\" for anthropic in $STORE [sk-a****aaaa]
result: found by org_keys"
expect_stderr ""

run "$KW" -c "$CONF" explain anthropic --user alice
expect_exit 0
expect_stdout "chain \"default\": provider \"anthropic\", user \"alice\", org -
  1. org_keys (sqlite): notfound -> continue: the request names no org
  2. user_keys (sqlite): found -> done: user key of \"alice\" for anthropic in $STORE [sk-a****04dd]
result: found by user_keys"

# ---- rotate ----

run from "$(keyfile org2.in "$K_ORG2")" \
	"$KW" -c "$CONF" rotate org_keys anthropic --owner acme
expect_exit 0
expect_stdout "rotated key of acme for anthropic in org_keys (sk-a****bbbb)"
expect_stderr ""

run -s "$KW" -c "$CONF" get anthropic --user bob --org acme
expect_exit 0
expect_stdout "$K_ORG2" "get after rotate: the new key"

run "$KW" -c "$CONF" ls org_keys
expect_exit 0
expect_eq "$(sed -n 2p "$OUT" | awk '{ print $1, $3, $5, $6, $7, $8 }')" \
	"org_keys acme acme production active sk-a****bbbb" \
	"ls after rotate: the name kept, the new mask"

run from "$SECRETD/org2.in" \
	"$KW" -c "$CONF" rotate org_keys anthropic --owner acme --name "acme 2026"
expect_exit 0
expect_stdout "rotated key of acme for anthropic in org_keys (sk-a****bbbb)"
if [ -n "$PY" ]; then
	run "$KW" -c "$CONF" ls org_keys --json
	expect_eq "$($PY -c 'import json,sys; k = json.load(open(sys.argv[1]))[0]; print(k["name"], k["created"] < k["rotated"])' "$OUT")" \
		"acme 2026 True" "ls after rotate --name: the new name, rotated after created"
else
	skip "ls after rotate --name: the new name" "python3 with json is not available"
fi

run from "$SECRETD/org2.in" "$KW" -c "$CONF" rotate org_keys anthropic --owner globex
expect_exit 3
expect_stderr_line "keyway: rotate: backend \"org_keys\" holds no org key of \"globex\" for anthropic; put stores a new one"
expect_stdout ""

run from "$SECRETD/bad.in" "$KW" -c "$CONF" rotate org_keys anthropic --owner acme
expect_exit 1
expect_stderr_line "keyway: anthropic keys start with \"sk-ant-\""
run -s "$KW" -c "$CONF" get anthropic --org acme
expect_exit 0
expect_stdout "$K_ORG2" "a refused rotation leaves the key as it was"

# ---- disable and enable ----

run "$KW" -c "$CONF" disable org_keys anthropic --owner acme
expect_exit 0
expect_stdout "disabled key of acme for anthropic in org_keys"
expect_stderr ""

# Where the org entry is sufficient, the chain goes on...
run -s "$KW" -c "$CONF" get anthropic --user alice --org acme
expect_exit 0
expect_stdout "$K_ALICE" "get with acme's key disabled: alice's own key"

run "$KW" -c "$CONF" explain anthropic --user dave --org acme
expect_exit 0
expect_stdout "chain \"default\": provider \"anthropic\", user \"dave\", org \"acme\"
  1. org_keys (sqlite): denied -> continue: the org key of \"acme\" for anthropic is disabled
  2. user_keys (sqlite): notfound -> continue: no user key of \"dave\" for anthropic in $STORE
  3. server_env (env): found -> done: \$ANTHROPIC_API_KEY from the environment [sk-a****07gg]
result: found by server_env"

# ...where it is requisite, it stops: denied.
run "$KW" -c "$CONF" get anthropic --user alice --org acme --chain strict
expect_exit 4
expect_stderr_line "keyway: chain \"strict\", provider \"anthropic\": org_keys answered denied: the org key of \"acme\" for anthropic is disabled"
expect_stdout ""

run "$KW" -c "$CONF" explain anthropic --org acme --chain strict
expect_exit 4
expect_stdout "chain \"strict\": provider \"anthropic\", user -, org \"acme\"
  1. org_keys (sqlite): denied -> die: the org key of \"acme\" for anthropic is disabled
result: denied: org_keys answered denied: the org key of \"acme\" for anthropic is disabled"

run "$KW" -c "$CONF" ls org_keys
expect_exit 0
expect_eq "$(sed -n 2p "$OUT" | awk '{ print $1, $3, $7 }')" "org_keys acme disabled" \
	"ls: the disabled key shows disabled"

run "$KW" -c "$CONF" enable org_keys anthropic --scope org --owner acme
expect_exit 0
expect_stdout "enabled org key of acme for anthropic in org_keys"
expect_stderr ""

run -s "$KW" -c "$CONF" get anthropic --user alice --org acme --chain strict
expect_exit 0
expect_stdout "$K_ORG2" "get --chain strict after enable: acme's key"

run "$KW" -c "$CONF" disable system_keys anthropic
expect_exit 0
expect_stdout "disabled key for anthropic in system_keys"
run -s "$KW" -c "$CONF" get anthropic --user dave --chain fovea
expect_exit 0
expect_stdout "$K_ENV" "get --chain fovea with the system key disabled: the environment's"
run "$KW" -c "$CONF" enable system_keys anthropic --scope system
expect_exit 0
expect_stdout "enabled system key for anthropic in system_keys"

run "$KW" -c "$CONF" disable org_keys anthropic --owner globex
expect_exit 3
expect_stderr_line "keyway: backend \"org_keys\": no org key of \"globex\" for anthropic in $STORE"
expect_stdout ""

run "$KW" -c "$CONF" enable server_env anthropic
expect_exit 1
expect_stderr_line "keyway: backend \"server_env\" (module \"env\") does not store keys"

# The store's files as they are now, the WAL full of what was written (the
# holder keeps it from being checkpointed away), for the search at the end.
snapshot()
{
	local f

	mkdir -p "$TMPD/$1" || bail_out "cannot make $TMPD/$1"
	for f in "$STORE" "$STORE-wal" "$STORE-shm"; do
		[ -f "$f" ] && cp -- "$f" "$TMPD/$1/"
	done
}
snapshot snapshot-1
# The holder ends its transaction: erasing a key empties the WAL.
[ -n "$HOLD_PID" ] && echo >&9

# ---- rm ----

run "$KW" -c "$CONF" rm org_keys anthropic --owner acme
expect_exit 0
expect_stdout "deleted key of acme for anthropic in org_keys"
expect_stderr ""

run "$KW" -c "$CONF" get anthropic --org acme --chain strict
expect_exit 3
expect_stderr_line "keyway: chain \"strict\", provider \"anthropic\": org_keys answered notfound: no org key of \"acme\" for anthropic in $STORE"
expect_stdout ""

run -s "$KW" -c "$CONF" get anthropic --user alice --org acme
expect_exit 0
expect_stdout "$K_ALICE" "get after rm of acme's key: alice's own key"

run "$KW" -c "$CONF" rm org_keys anthropic --owner acme
expect_exit 3
expect_stderr_line "keyway: backend \"org_keys\": no org key of \"acme\" for anthropic in $STORE"

run "$KW" -c "$CONF" rm user_keys anthropic --owner carol
expect_exit 0
expect_stdout "deleted key of carol for anthropic in user_keys"
run -s "$KW" -c "$CONF" get anthropic --user carol --chain fovea
expect_exit 0
expect_stdout "$K_SYS" "get --chain fovea for carol after rm: the system key"
run "$KW" -c "$CONF" ls --owner carol
expect_exit 0
expect_stdout "BACKEND  SCOPE  OWNER  PROVIDER  NAME  STATE  KEY  USES  LAST-USED  ROTATED" \
	"ls --owner carol after rm: nothing"

# ---- the no-echo prompt ----

# type_key KEYFILE CMD...: run CMD on a terminal (script(1)), type the
# contents of KEYFILE once the prompt shows, and print what the terminal
# showed, carriage returns removed.
type_key()
{
	local keyfile=$1 screen=$TMPD/screen.$run_n cmd rc i

	shift
	cmd=$(printf '%q ' "$@")
	: >"$screen"
	{
		for i in $(seq 200); do
			grep -q 'Key for' "$screen" && break
			sleep 0.05
		done
		cat -- "$keyfile"
		# script(1) ends at the end of its input: hold it open until
		# the command is done.
		for i in $(seq 200); do
			grep -q -e '^stored' -e '^rotated' -e '^keyway:' \
				"$screen" && break
			sleep 0.05
		done
	} | SHELL=$BASH script -qefc "$cmd" /dev/null >"$screen" 2>&1
	rc=$?
	tr -d '\r' <"$screen"
	return $rc
}

tty_skip=$(tty_unavailable)
if [ -z "$tty_skip" ]; then
	run type_key "$(keyfile bob.typed "$K_BOB")" \
		"$KW" -c "$CONF" put user_keys anthropic --owner bob
	expect_exit 0 "put on a terminal: exit status 0"
	expect_stdout "Key for anthropic: 
stored key of bob for anthropic in user_keys (sk-a****08hh)" \
		"put on a terminal: the prompt, no echo, the stored line"
	expect_lacks "$OUT" "$K_BOB" "put on a terminal: the typed key was not shown"

	run -s "$KW" -c "$CONF" get anthropic --user bob
	expect_exit 0
	expect_stdout "$K_BOB" "get: the key typed at the prompt"
else
	for t in "exit status" "output" "no echo" "get"; do
		skip "put on a terminal: $t" "$tty_skip"
	done
	run from "$(keyfile bob.in "$K_BOB")" \
		"$KW" -c "$CONF" put user_keys anthropic --owner bob
fi

# What can be told without the key is told before anyone is asked for
# it: on a terminal, the refusal and no prompt.  (timeout ends a prompt
# nobody answers.)
# refused_at_once STATUS LINE ARGS...
refused_at_once()
{
	local status=$1 line=$2

	shift 2
	if [ -n "$tty_skip" ]; then
		skip "$(run_label "$KW" "$@") on a terminal" "$tty_skip"
		return
	fi
	run -t timeout 10 "$KW" -c "$CONF" "$@"
	expect_exit "$status"
	expect_stdout "$line" \
		"$(run_label "$KW" "$@") on a terminal: refused, no prompt"
}
refused_at_once 1 "keyway: put: backend \"server_env\" does not store keys (keys are put in a backend of module file, sqlite or vault)" \
	put server_env anthropic
refused_at_once 2 "keyway: put: invalid provider \"Anthropic\": a provider is lower-case letters, digits, '-', '_' and '.', and starts with a letter or digit (try 'keyway put --help')" \
	put org_keys Anthropic --owner acme
refused_at_once 2 "keyway: put: invalid --owner: it holds a space (at byte 2); a name has no blanks or slashes (try 'keyway put --help')" \
	put org_keys anthropic --owner 'a b'
refused_at_once 2 "keyway: put: --scope user, but backend \"org_keys\" holds org keys (try 'keyway put --help')" \
	put org_keys anthropic --owner acme --scope user
refused_at_once 2 "keyway: rotate: --owner given, but backend \"system_keys\" holds system keys, which have none (try 'keyway rotate --help')" \
	rotate system_keys anthropic --owner root
refused_at_once 3 "keyway: rotate: backend \"org_keys\" holds no org key of \"nobody\" for anthropic; put stores a new one" \
	rotate org_keys anthropic --owner nobody
refused_at_once 1 "keyway: put: backend \"user_keys\" already holds a user key of \"alice\" for anthropic; rotate it instead" \
	put user_keys anthropic --owner alice

# ---- rekey ----

export KWTEST_NEW_MASTER_KEY=$MASTER_NEW
run from "$(keyfile globex.in "$K_GLOBEX")" \
	"$KW" -c "$CONF" put org_keys anthropic --owner globex
expect_exit 0
run from "$SECRETD/org2.in" "$KW" -c "$CONF" put org_keys anthropic --owner acme
expect_exit 0

# Under the new master key alone, the store does not open yet.
run "$KW" -c "$NEW_CONF" get anthropic --user alice
expect_exit 1
if [ -n "$OLD_ID" ]; then
	expect_stderr_line "keyway: $NEW_CONF:5: backend \"org_keys\": $STORE holds keys sealed under master key $OLD_ID, which neither keyway.master_key nor keyway.old_master_keys holds"
else
	skip "get under the new master key alone: stderr line" "python3 with json is not available"
fi

run "$KW" -c "$REKEY_CONF" rekey org_keys
expect_exit 0
expect_stdout "re-sealed 2 keys of org_keys"
expect_stderr ""

# Half way, both kinds of keys resolve.
run -s "$KW" -c "$REKEY_CONF" get anthropic --org acme
expect_exit 0
expect_stdout "$K_ORG2" "get half way through rekey: a re-sealed key"
run -s "$KW" -c "$REKEY_CONF" get anthropic --user alice
expect_exit 0
expect_stdout "$K_ALICE" "get half way through rekey: a key not yet re-sealed"
run "$KW" -c "$NEW_CONF" get anthropic --org acme
expect_exit 1 "get under the new master key alone half way through rekey: refused"

run "$KW" -c "$REKEY_CONF" rekey user_keys
expect_exit 0
expect_stdout "re-sealed 3 keys of user_keys"
run "$KW" -c "$REKEY_CONF" rekey system_keys
expect_exit 0
expect_stdout "re-sealed 1 key of system_keys"
run "$KW" -c "$REKEY_CONF" rekey org_keys
expect_exit 0
expect_stdout "re-sealed 0 keys of org_keys"

run "$KW" -c "$REKEY_CONF" rekey server_env
expect_exit 1
expect_stderr_line "keyway: backend \"server_env\" (module \"env\") does not store keys"
run "$KW" -c "$REKEY_CONF" rekey nope
expect_exit 1
expect_stderr_line "keyway: $REKEY_CONF: no backend \"nope\""

# The new master key alone now opens every key.
unset KEYWAY_MASTER_KEY
for spec in "--org acme:$K_ORG2" "--org globex:$K_GLOBEX" \
	"--user alice:$K_ALICE" "--user bob:$K_BOB"; do
	# shellcheck disable=SC2086
	run -s "$KW" -c "$NEW_CONF" get anthropic ${spec%%:*}
	expect_exit 0
	expect_stdout "${spec#*:}" "get ${spec%%:*} under the new master key alone"
done
run -s "$KW" -c "$NEW_CONF" get openai --user alice --chain fovea
expect_exit 0
expect_stdout "$K_ALICE_OAI" "get openai --user alice under the new master key alone"
run -s "$KW" -c "$NEW_CONF" get anthropic --user dave --chain fovea
expect_exit 0
expect_stdout "$K_SYS" "get --chain fovea for dave under the new master key alone"

if [ -n "$PY" ]; then
	run "$KW" -c "$NEW_CONF" ls --json
	expect_exit 0
	new_ids=$($PY -c 'import json,sys; print(" ".join(sorted(set(k["key_id"] for k in json.load(open(sys.argv[1]))))))' "$OUT")
	if [[ $new_ids =~ ^[0-9a-f]{16}$ ]] && [ "$new_ids" != "$OLD_ID" ]; then
		pass "ls --json after rekey: one new master key id"
	else
		fail "ls --json after rekey: one new master key id" "ids: $new_ids, old: $OLD_ID"
	fi
else
	skip "ls --json after rekey: one new master key id" "python3 with json is not available"
fi

# And the old one alone no longer does.
run env KEYWAY_MASTER_KEY="$MASTER_OLD" "$KW" -c "$CONF" get anthropic --user alice
expect_exit 1
if [ -n "$PY" ]; then
	expect_stderr_line "keyway: $CONF:3: backend \"org_keys\": $STORE holds keys sealed under master key $new_ids, which neither keyway.master_key nor keyway.old_master_keys holds"
else
	skip "get under the old master key alone: stderr line" "python3 with json is not available"
fi

# ---- no key anywhere it should not be ----

snapshot snapshot-2
if [ -n "$HOLD_PID" ]; then
	exec 9>&-
	wait "$HOLD_PID"
fi
for snap in snapshot-1 snapshot-2; do
	for f in keys.db keys.db-wal keys.db-shm; do
		if [ ! -f "$TMPD/$snap/$f" ]; then
			skip "$snap/$f holds no key" "$f did not exist"
			continue
		fi
		leaked=
		for k in "$K_ORG" "$K_ORG2" "$K_GLOBEX" "$K_ALICE" \
			"$K_ALICE_OAI" "$K_SYS" "$K_BOB" "$K_CAROL" \
			"$MASTER_OLD" "$MASTER_NEW"; do
			grep -qF -- "$k" "$TMPD/$snap/$f" && leaked=1
		done
		if [ -z "$leaked" ]; then
			pass "$snap/$f holds no key"
		else
			fail "$snap/$f holds no key" "a key is in $snap/$f"
		fi
	done
done
if [ -n "$HOLD_PID" ] && [ -s "$TMPD/snapshot-1/keys.db-wal" ]; then
	pass "the WAL was kept for the search"
elif [ -n "$HOLD_PID" ]; then
	fail "the WAL was kept for the search" "the WAL was missing or empty"
else
	skip "the WAL was kept for the search" "python3 is not available"
fi
for f in "$STORE"*; do
	mode=$(stat -c %a "$f")
	expect_eq "$mode" "600" "$(basename -- "$f") has mode 600"
done

# A file size limit (ulimit -f) is a write error, not SIGXFSZ: keyway
# is not killed half-way through SQLite's write, and says why.
kill "$HOLD_PID" 2>/dev/null
wait "$HOLD_PID" 2>/dev/null
HOLD_PID=
printf '%s\n' "$K_SYS" >"$SECRETD/fsize.in"
run bash -c '(ulimit -f 1 && exec "$@" <"$0") 2>&1 >/dev/null | cat >&2; exit "${PIPESTATUS[0]}"' \
	"$SECRETD/fsize.in" "$KW" -c "$NEW_CONF" rotate system_keys anthropic --scope system
expect_exit 1 "past the file size limit: exit status 1, not killed by SIGXFSZ"
diag "past the file size limit: $(cat "$ERR")"
expect_eq "$(grep -c 'File too large\|disk\|full\|too large\|I/O' "$ERR")" 1 \
	"past the file size limit: one line saying why"

expect_no_leaks

done_testing
