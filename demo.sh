#!/bin/bash
# A tour of keyway on a throwaway install: build, install under ./demo-root,
# store org and user keys in a throwaway SQLite store, and resolve keys
# through a chain that falls back to the server's own key; then the same
# keys in one sealed flat file, org keys in HashiCorp Vault (a stand-in
# of its API, over TLS), one quota counted in Redis for two hosts, and
# keywayd answering applications over a Unix socket.
set -euo pipefail
cd "$(dirname "$0")"
top=$PWD
root=$top/demo-root
jobs=$(nproc 2>/dev/null || echo 2)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() {
	local a line='$'
	for a in "$@"; do
		case $a in
		*[!A-Za-z0-9_./=:@-]*) line+=" '$a'" ;;
		*) line+=" $a" ;;
		esac
	done
	printf '%s\n' "$line"
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
export PATH=$root/bin:$root/sbin:$PATH

work=$(mktemp -d /tmp/keyway-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
umask 077

# Keys at rest are sealed with a master key; here it lives in the
# environment, as KEYWAY_MASTER_KEY.
KEYWAY_MASTER_KEY=$(keyway keygen)
export KEYWAY_MASTER_KEY

cat >keyway.conf <<'CONF'
keyway: {
  master_key: { source = "env"; };       # $KEYWAY_MASTER_KEY
  ledger: { module = "sqlite"; path = "ledger.db"; };   # where quotas count
};
backends: {
  # one SQLite store, seen as the org keys and as the users' own keys
  org_keys:   { module = "sqlite"; path = "keys.db"; scope = "org"; };
  user_keys:  { module = "sqlite"; path = "keys.db"; scope = "user"; };
  # the server's own key, from its environment: 3 requests per user per day
  server_env: { module = "env";
                quota = ( { limit = 3; period = "day"; per = "user"; } ); };
};
chains: {
  # the org's key, else the user's own, else the server's
  default = ( { backend = "org_keys";   control = "sufficient"; },
              { backend = "user_keys";  control = "sufficient"; },
              { backend = "server_env"; control = "required"; } );
};
CONF
chmod 644 keyway.conf
export KEYWAY_CONFIG=$work/keyway.conf
export ANTHROPIC_API_KEY=sk-ant-server-demo-000000000000000000003

say "the configuration"
cat keyway.conf

say "keyway init: the store and the ledger the configuration names, mode 0600"
run keyway init

say "keyway check: every backend opened and healthy (it creates nothing)"
run keyway check

say "an admin stores acme's key, alice stores her own (values come from stdin)"
echo sk-ant-acme-demo-0000000000000000000001 | run keyway put org_keys anthropic --owner acme --name "acme production"
echo sk-ant-alice-demo-000000000000000000002 | run keyway put user_keys anthropic --owner alice
run keyway ls

say "alice at acme gets the org key; alice alone her own; bob the server's"
run keyway get anthropic --user alice --org acme --reveal
run keyway get anthropic --user alice --reveal
run keyway explain anthropic --user bob

say "bob has no key of his own: the server's key serves him 3 times a day"
for i in 1 2 3 4; do
	run keyway get anthropic --user bob --reveal
done
run keyway usage

say "acme's key leaks: disable it, and the next request falls through to alice's"
run keyway disable org_keys anthropic --owner acme
run keyway explain anthropic --user alice --org acme

say "rotate it, enable it again"
echo sk-ant-acme-demo-0000000000000000000004 | run keyway rotate org_keys anthropic --owner acme
run keyway enable org_keys anthropic --owner acme
run keyway get anthropic --user alice --org acme --reveal

say "the database holds no key in the clear"
if grep -c 'sk-ant-' keys.db* ledger.db* >/dev/null; then
	echo "a key was found in a database file!"
	exit 1
fi
echo "grep finds no key in keys.db or ledger.db (nor their -wal and -shm)"

say "a host with no database: the same keys in one sealed file"
cat >file.conf <<'CONF'
keyway: { master_key: { source = "env"; }; };
backends: {
  team_file: { module = "file"; path = "secrets.kwf"; scope = "org"; };
  user_file: { module = "file"; path = "secrets.kwf"; scope = "user"; };
};
chains: {
  default = ( { backend = "team_file"; control = "sufficient"; },
              { backend = "user_file"; control = "required"; } );
};
CONF
chmod 644 file.conf
run keyway -c file.conf init
echo sk-ant-acme-file-00000000000000000000005 | run keyway -c file.conf put team_file anthropic --owner acme
echo sk-ant-alice-file-0000000000000000000006 | run keyway -c file.conf put user_file anthropic --owner alice
run keyway -c file.conf ls
run keyway -c file.conf get anthropic --user alice --org acme --reveal
run keyway -c file.conf explain anthropic --user alice
run ls -l secrets.kwf
if grep -c 'sk-ant-' secrets.kwf >/dev/null; then
	echo "a key was found in the file!"
	exit 1
fi
echo "grep finds no key in secrets.kwf: it is one AES-256-GCM envelope (docs/file-format.md)"

say "org keys in HashiCorp Vault: put, get, disable, check"
# No Vault binary here: the test suite's stand-in for Vault's HTTP API,
# over TLS with a certificate made now, and a token in a private file.
sh "$top/tests/vault/mkcerts.sh" vault-tls >/dev/null
head -c 18 /dev/urandom | base64 | tr -d '/+=' >vault.token
/usr/bin/python3 "$top/tests/vault/vault_double.py" --cert vault-tls/server.pem \
	--key vault-tls/server.key --port-file vault.port \
	--root-token-file vault.token >/dev/null 2>&1 &
vault_pid=$!
trap 'kill "$vault_pid" 2>/dev/null; rm -rf "$work"' EXIT
for i in $(seq 100); do [ -s vault.port ] && break; sleep 0.1; done
cat >vault.conf <<CONF
keyway: { master_key: { source = "env"; }; };
backends: {
  team_vault: { module = "vault"; address = "https://127.0.0.1:$(cat vault.port)";
                mount = "secret"; kv_version = "auto"; scope = "org";
                path = "keyway/{scope}/{owner}/{provider}"; field = "api_key";
                ca_file = "$work/vault-tls/ca.pem"; cache_ttl = 30;
                auth = { method = "token"; token_file = "$work/vault.token"; }; };
  server_env: { module = "env"; };
};
chains: {
  default = ( { backend = "team_vault"; control = "sufficient"; },
              { backend = "server_env"; control = "required"; } );
};
CONF
chmod 644 vault.conf
run keyway -c vault.conf check
echo sk-ant-acme-vault-0000000000000000000007 | run keyway -c vault.conf put team_vault anthropic --owner acme
run keyway -c vault.conf ls team_vault
run keyway -c vault.conf explain anthropic --user alice --org acme
run keyway -c vault.conf disable team_vault anthropic --owner acme
run keyway -c vault.conf explain anthropic --user alice --org acme

say "a fleet: two hosts, one Redis, one count"
# A throwaway redis-server on a free loopback port, with a password that
# only its configuration and keyway's password file hold.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
head -c 24 /dev/urandom | base64 | tr -d '/+=' >redis.pass
mkdir redis
cat >redis/redis.conf <<CONF
port $port
bind 127.0.0.1
requirepass $(cat redis.pass)
dir $work/redis
save ""
daemonize yes
pidfile $work/redis/redis.pid
logfile $work/redis/redis.log
CONF
redis-server redis/redis.conf >/dev/null
trap 'kill "$vault_pid" "$(cat "$work/redis/redis.pid" 2>/dev/null)" 2>/dev/null; rm -rf "$work"' EXIT
for i in $(seq 100); do
	REDISCLI_AUTH=$(cat redis.pass) redis-cli -p "$port" --no-auth-warning PING 2>/dev/null | grep -q PONG && break
	sleep 0.05
done
for h in host_a host_b; do
	mkdir "$h"
	cat >"$h/keyway.conf" <<CONF
keyway: {
  master_key: { source = "env"; };
  ledger: { module = "redis"; address = "127.0.0.1:$port";
            password_file = "$work/redis.pass"; };
};
backends: {
  server_env: { module = "env";
                quota = ( { limit = 3; period = "day"; per = "user"; } ); };
};
chains: { default = ( { backend = "server_env"; control = "required"; } ); };
CONF
	chmod 644 "$h/keyway.conf"
done
run cat host_a/keyway.conf
run keyway -c host_a/keyway.conf check
echo "carol asks host A twice, then host B twice: 3 a day, whichever host counts"
run keyway -c host_a/keyway.conf get anthropic --user carol
run keyway -c host_a/keyway.conf get anthropic --user carol
run keyway -c host_b/keyway.conf get anthropic --user carol
run keyway -c host_b/keyway.conf get anthropic --user carol
run keyway -c host_b/keyway.conf usage --since 1d

say "keywayd: applications in any language ask one daemon over a Unix socket"
# keywayd holds the master key and counts the quotas; a caller needs
# neither, only the right to reach the socket (the kernel says who it is).
keywayd -c keyway.conf --socket "$work/keyway.sock" \
	--admin-socket "$work/admin.sock" 2>keywayd.log &
keywayd_pid=$!
trap 'kill "$vault_pid" "$keywayd_pid" "$(cat "$work/redis/redis.pid" 2>/dev/null)" 2>/dev/null; rm -rf "$work"' EXIT
for i in $(seq 100); do
	[ -S keyway.sock ] && break
	sleep 0.05
done
if [ ! -S keyway.sock ]; then
	echo "keywayd did not start:" >&2
	cat keywayd.log >&2
	exit 1
fi
ask() { # PATH BODY: one request, as an application would send it
	printf '$ curl --unix-socket keyway.sock -d %s http://keyway%s\n' "'$2'" "$1"
	curl -s --unix-socket keyway.sock -w '  (HTTP %{http_code})\n' -d "$2" "http://keyway$1"
}
ask /v1/resolve '{"provider":"anthropic","user":"alice","org":"acme"}'
echo "dave has no key of his own: the daemon counts his 3 a day"
for i in 1 2 3; do
	ask /v1/resolve '{"provider":"anthropic","user":"dave"}' | tee last.json
done
ask /v1/resolve '{"provider":"anthropic","user":"dave"}'
echo "his last request was never sent upstream: report its lease unused, and the quota gives it back"
lease=$(sed -n 's/.*"lease":"\([0-9a-f]*\)".*/\1/p' last.json)
ask /v1/report "{\"lease\":\"$lease\",\"outcome\":\"unused\"}"
ask /v1/resolve '{"provider":"anthropic","user":"dave"}'
echo "the same from Python, with the standard-library client in clients/python:"
run env PYTHONPATH="$top/clients/python/src" KEYWAY_SOCKET="$work/keyway.sock" \
	/usr/bin/python3 -c 'import keyway; r = keyway.resolve("anthropic", user="alice", org="acme"); print(r.backend, "answered with a key of", len(r.key), "characters"); r.report_unused()'
echo "dave is over his quota again: the client says how long to wait (Retry-After)"
run env PYTHONPATH="$top/clients/python/src" KEYWAY_SOCKET="$work/keyway.sock" \
	/usr/bin/python3 -c 'import keyway
try:
    keyway.resolve("anthropic", user="dave")
except keyway.Denied as e:
    print("denied, retry in", e.retry_after, "seconds")'
echo "a second keywayd does not take a socket that is served:"
run keywayd -c keyway.conf --socket "$work/keyway.sock"
echo "and keyway itself as a client: a configuration naming the socket, no master key"
printf 'keyway: { daemon = "%s/keyway.sock"; };\n' "$work" >client.conf
chmod 644 client.conf
run cat client.conf
run env -u KEYWAY_MASTER_KEY keyway -c client.conf get anthropic --user alice --org acme --reveal
run env -u KEYWAY_MASTER_KEY keyway -c client.conf ls
echo "management is on the admin socket (root, keywayd's user, daemon.admin_group), keys masked:"
printf '$ curl --unix-socket admin.sock %s\n' "'http://keyway/v1/keys?owner=acme'"
curl -s --unix-socket admin.sock 'http://keyway/v1/keys?owner=acme'
kill -TERM "$keywayd_pid"
wait "$keywayd_pid" || true
echo "keywayd's log holds no key:"
sed 's/^/  /' keywayd.log
if grep -q 'sk-ant-' keywayd.log; then
	echo "a key was found in keywayd's log!"
	exit 1
fi

say "keyway exec hands the key to a child through its environment only"
run keyway exec --user alice -p anthropic -- sh -c 'echo "child got a key of ${#ANTHROPIC_API_KEY} characters"'

say "bob's quota is used up: exec runs nothing, and no child sees the server's key"
run keyway exec --user bob -p anthropic -- sh -c 'echo "child ran"'
run keyway exec --user alice -p anthropic=ALICE_KEY -- sh -c 'echo "ANTHROPIC_API_KEY in the child: ${ANTHROPIC_API_KEY:-unset}; KEYWAY_MASTER_KEY: ${KEYWAY_MASTER_KEY:-unset}"'

say "a typo in the configuration is refused with its line"
sed 's/backend = "user_keys"/backend = "user_kyes"/' keyway.conf >typo.conf
chmod 644 typo.conf
run keyway -c typo.conf check
run keyway check --json -c typo.conf

say "done: keyway is installed under $root"
