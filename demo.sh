#!/bin/bash
# A tour of keyway on a throwaway install: build, install under ./demo-root,
# write a configuration with two chains, and resolve keys through them.
set -euo pipefail
cd "$(dirname "$0")"
top=$PWD
root=$top/demo-root
jobs=$(nproc 2>/dev/null || echo 2)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() {
	printf '$'
	printf ' %q' "$@"
	printf '\n'
	"$@" || printf '(exit status %d)\n' "$?"
}

say "installing dependencies and building"
./scripts/deps.sh
[ -x configure ] || ./autogen.sh >/dev/null 2>&1
mkdir -p build-demo
if ! (cd build-demo && "$top/configure" -q --prefix="$root" &&
	make -s -j"$jobs" && make -s install) >build-demo.log 2>&1; then
	cat build-demo.log >&2
	exit 1
fi
rm -f build-demo.log
export PATH=$root/bin:$PATH

work=$(mktemp -d /tmp/keyway-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

# The team's keys live in a dotenv file only root can read; the server's own
# key comes from the environment.
umask 077
cat >team.env <<'ENV'
# keys the team pays for
OPENAI_API_KEY=sk-team-openai-demo-0000000000000001
ENV
cat >keyway.conf <<'CONF'
backends: {
  team:   { module = "env"; dotenv = "team.env"; environment = false; };
  server: { module = "env"; };
};
chains: {
  # the team's key, else the server's
  default = ( { backend = "team";   control = "sufficient"; },
              { backend = "server"; control = "required"; } );
  # a batch job that must never fall back to the server's key
  batch   = ( { backend = "team";   control = "requisite"; } );
};
CONF
chmod 644 keyway.conf
export KEYWAY_CONFIG=$work/keyway.conf
export ANTHROPIC_API_KEY=sk-ant-server-demo-0000000000000002
export OPENAI_API_KEY=sk-server-openai-demo-0000000000000003

say "the configuration"
cat keyway.conf

say "keyway check: every backend opened and healthy"
run keyway check

say "openai: the team key (from team.env) wins over the server's"
run keyway get openai --reveal

say "anthropic: the team has none, the server's key answers"
run keyway get anthropic --reveal
run keyway explain anthropic --user alice

say "the batch chain refuses to fall back (exit status 3: not found)"
run keyway explain anthropic --chain batch

say "keyway exec hands the key to a child through its environment only"
run keyway exec -p anthropic -- sh -c 'echo "child got a key of ${#ANTHROPIC_API_KEY} characters"'

say "a typo in the configuration is refused with its line"
sed 's/backend = "server"/backend = "servre"/' keyway.conf >typo.conf
chmod 644 typo.conf
run keyway -c typo.conf check

say "done: keyway is installed under $root"
