#!/bin/bash
# cli_vault.sh - TAP tests of keyway(1) on a vault backend, against the
# Vault API stand-in tests/vault/vault_double.py over TLS: what each
# answer and fault of Vault (404, 403, sealed, down, slow, 500 or 429 or
# 412 then 200, 501) makes of a lookup, through the exit status and the
# chain's actions; put, rotate, disable, enable, rm and ls on KV v2 (with
# check-and-set) and KV v1; settings refused at load with one line; and
# neither the token nor a key in anything keyway or the stand-in wrote.
# Run by `make check`, or by hand as lib.sh says.

. "$(dirname -- "$0")/lib.sh" || exit 99

DOUBLE=$KEYWAY_SRCDIR/tests/vault/vault_double.py
MKCERTS=$KEYWAY_SRCDIR/tests/vault/mkcerts.sh
if ! command -v openssl >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
	echo "1..0 # SKIP openssl and curl are needed to run the Vault stand-in"
	exit 0
fi

ROOT=hvs.cli-vault-root-token-0042aa
BAD=hvs.cli-vault-wrong-token-0077bb
K_ACME=sk-ant-cli-vault-org-acme-0001aaaa
K_BETA=sk-ant-cli-vault-org-beta-0002bbbb
K_BETA2=sk-ant-cli-vault-org-beta-0003cccc
K_V1=sk-ant-cli-vault-kv1-org-0004dddd
K_V1B=sk-ant-cli-vault-kv1-org-0005eeee
K_ENV=sk-ant-cli-vault-env-fallback-06ff
secret "$ROOT" "$BAD" "$K_ACME" "$K_BETA" "$K_BETA2" "$K_V1" "$K_V1B" "$K_ENV"

CERTS=$SECRETD/certs
sh "$MKCERTS" "$CERTS" || bail_out "cannot make certificates"
cp "$CERTS/ca.pem" "$CERTS/other-ca.pem" "$TMPD/" || bail_out "cannot copy the CA"

# The stand-in, on an ephemeral port; its log is searched for leaks too.
# It refuses, as a Vault Proxy may, every request without X-Vault-Request.
/usr/bin/python3 "$DOUBLE" --cert "$CERTS/server.pem" --key "$CERTS/server.key" \
	--port-file "$TMPD/port" --root-token "$ROOT" \
	--fault '{"require_request_header": true}' \
	>"$TMPD/double.out" 2>"$TMPD/double.err" &
DPID=$!
trap 'kill "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; tap_cleanup' EXIT
for _ in $(seq 100); do
	[ -s "$TMPD/port" ] && break
	sleep 0.1
done
[ -s "$TMPD/port" ] || bail_out "the Vault stand-in did not start: $(cat "$TMPD/double.err")"
PORT=$(cat "$TMPD/port")
ADDR=https://127.0.0.1:$PORT

# ctl WHAT JSON: steer the stand-in through /__double/WHAT.
ctl()
{
	curl -sS --fail --cacert "$TMPD/ca.pem" -X POST "$ADDR/__double/$1" \
		-H 'Content-Type: application/json' -d "$2" >/dev/null ||
		bail_out "the stand-in refused $1 $2"
}

# vault METHOD PATH [JSON]: Vault's own API, as the root token.
vault()
{
	curl -sS --cacert "$TMPD/ca.pem" -X "$1" -H "X-Vault-Token: $ROOT" \
		-H 'X-Vault-Request: true' \
		"$ADDR/v1/$2" ${3:+-d "$3"} >/dev/null ||
		bail_out "vault $1 $2 failed"
}

# The stand-in's request log: forget it, or count the requests whose
# method and path (a Python regular expression) match.
forget() { curl -sS --cacert "$TMPD/ca.pem" -X DELETE "$ADDR/__double/requests" >/dev/null; }
count()
{
	curl -sS --cacert "$TMPD/ca.pem" "$ADDR/__double/requests" |
		/usr/bin/python3 -c '
import json, re, sys
log = json.load(sys.stdin)["requests"]
print(sum(1 for r in log if r["method"] == sys.argv[1] and re.search(sys.argv[2], r["path"])))' "$1" "$2"
}
# What the request log says of every request: KEY=VALUE lines.
requests_json() { curl -sS --cacert "$TMPD/ca.pem" "$ADDR/__double/requests" >"$TMPD/requests.json"; }

reset_faults() { ctl fault '{"sealed": false, "delay_ms": 0, "clear_rules": true, "require_request_header": true}'; }

printf '%s\n' "$ROOT" >"$SECRETD/token"
printf '%s\n' "$BAD" >"$SECRETD/bad-token"
chmod 600 "$SECRETD/token" "$SECRETD/bad-token"
ctl seed '{"mount": "secret", "path": "keyway/org/acme/anthropic", "data": {"api_key": "'"$K_ACME"'"}}'

# conf FILE [EXTRA SETTINGS] [CONTROL]: a vault backend "v" for org keys,
# with an env backend "fallback" after it.
conf()
{
	write_conf "$1" <<EOF
backends: {
	v: { module = "vault"; address = "$ADDR"; scope = "org";
	     ca_file = "ca.pem"; timeout_ms = 1500; retries = 2;
	     auth = { method = "token"; token_file = "$SECRETD/token"; };
	     $2 };
	fallback: { module = "env"; vars = { anthropic = "FALLBACK_KEY"; }; };
};
chains: {
	default = ( { backend = "v"; control = "required"; } );
	soft = ( { backend = "v"; control = "sufficient"; },
		 { backend = "fallback"; control = "required"; } );
};
EOF
}

C=$TMPD/v.conf
conf "$C"

# ---- found, not found, check ----

run "$KW" -c "$C" check
expect_exit 0
expect_stderr ""

run -s "$KW" -c "$C" get anthropic --org acme --reveal
expect_exit 0
expect_stdout "$K_ACME" "get: the key from Vault"

run "$KW" -c "$C" get anthropic --org nobody
expect_exit 3 "get of a key Vault does not have: exit 3 (not found)"

run "$KW" -c "$C" explain anthropic --org nobody
if grep -q 'v (vault): notfound -> continue: no org key of "nobody" for anthropic in Vault: Vault GET secret/data/keyway/org/nobody/anthropic: HTTP 404 (not found)' "$OUT"; then
	pass "explain: notfound names the Vault path and the HTTP status"
else
	fail "explain: notfound names the Vault path and the HTTP status" "$(cat "$OUT")"
fi

# ---- statuses and faults ----

# lookup_is EXIT WORDS NAME: get anthropic for acme exits EXIT and its one
# line on stderr holds WORDS.
lookup_is()
{
	run "$KW" -c "${CONF_USED:-$C}" get anthropic --org acme
	expect_exit "$1" "$3: exit $1"
	if [ "$(wc -l <"$ERR")" -eq 1 ] && grep -qF -- "$2" "$ERR"; then
		pass "$3: one line with \"$2\""
	else
		fail "$3: one line with \"$2\"" "$(cat "$ERR")"
	fi
}

conf "$TMPD/bad.conf" 'auth = { method = "token"; token_file = "'"$SECRETD/bad-token"'"; };'
sed -i "s|auth = { method = \"token\"; token_file = \"$SECRETD/token\"; };||" "$TMPD/bad.conf"
CONF_USED=$TMPD/bad.conf lookup_is 1 "GET secret/data/keyway/org/acme/anthropic: HTTP 403" \
	"a token Vault refuses"

run "$KW" -c "$TMPD/bad.conf" check
expect_exit 1 "check with a token Vault refuses: exit 1"
if grep -q 'health check: permission denied: Vault GET sys/internal/ui/mounts/secret: HTTP 403 (permission denied: .*): permission denied; the token cannot read mount "secret"$' "$ERR"; then
	pass "check says the token cannot read the mount"
else
	fail "check says the token cannot read the mount" "$(cat "$ERR")"
fi

ctl fault '{"sealed": true}'
lookup_is 5 "HTTP 503 (Vault is sealed or in maintenance): Vault is sealed (after 3 attempts)" \
	"sealed Vault"
run "$KW" -c "$C" check
expect_exit 1 "check of a sealed Vault: exit 1"
if grep -q 'health check: unavail: Vault GET sys/health: HTTP 503: Vault at .* is sealed' "$ERR"; then
	pass "check says Vault is sealed"
else
	fail "check says Vault is sealed" "$(cat "$ERR")"
fi
reset_faults

forget
ctl fault '{"rules": [{"path": "/v1/secret/data/keyway/org/acme/anthropic$", "method": "GET", "status": 500, "count": 1}]}'
run -s "$KW" -c "$C" get anthropic --org acme --reveal
expect_exit 0 "500 then 200: found"
expect_eq "$(count GET 'secret/data/keyway/org/acme/anthropic$')" 2 "500 then 200: asked twice"
reset_faults

forget
ctl fault '{"rules": [{"path": "/v1/secret/data/keyway/org/acme/anthropic$", "method": "GET", "status": 429, "count": 1}]}'
run -s "$KW" -c "$C" get anthropic --org acme --reveal
expect_exit 0 "429 then 200: found"
expect_eq "$(count GET 'secret/data/keyway/org/acme/anthropic$')" 2 "429 then 200: asked twice"
reset_faults

forget
ctl fault '{"rules": [{"path": "/v1/secret/data/keyway/org/acme/anthropic$", "method": "GET", "status": 412, "count": 1}]}'
run -s "$KW" -c "$C" get anthropic --org acme --reveal
expect_exit 0 "412 then 200: found"
expect_eq "$(count GET 'secret/data/keyway/org/acme/anthropic$')" 2 "412 then 200: asked twice"
reset_faults

forget
ctl fault '{"rules": [{"path": "/v1/secret/data/keyway/org/acme/anthropic$", "method": "GET", "status": 500, "count": -1}]}'
lookup_is 5 "HTTP 500 (internal error)" "500 every time"
expect_eq "$(count GET 'secret/data/keyway/org/acme/anthropic$')" 3 "500 every time: 1 + retries = 3 requests"
reset_faults

forget
ctl fault '{"rules": [{"path": "/v1/secret/data/keyway/org/acme/anthropic$", "method": "GET", "status": 501, "count": 1}]}'
lookup_is 1 "HTTP 501 (Vault is not initialized)" "501"
expect_eq "$(count GET 'secret/data/keyway/org/acme/anthropic$')" 1 "501 is not asked again"
reset_faults

forget
ctl fault '{"rules": [{"path": "/v1/secret/data/keyway/org/acme/anthropic$", "method": "GET", "status": 400, "count": 1}]}'
lookup_is 1 "HTTP 400 (bad request)" "400"
expect_eq "$(count GET 'secret/data/keyway/org/acme/anthropic$')" 1 "400 is not asked again"
reset_faults

# Connections that break: closed before an answer, an answer cut short
# (both sent again), a kept-alive connection the server dropped after
# answering (a new one is made), a proxy's page instead of Vault's JSON.
for fault in '"close": true' '"truncate": true'; do
	forget
	ctl fault '{"rules": [{"path": "/v1/secret/data/keyway/org/acme/anthropic$", "method": "GET", '"$fault"', "count": 1}]}'
	run -s "$KW" -c "$C" get anthropic --org acme --reveal
	expect_exit 0 "{$fault} then an answer: found"
	expect_eq "$(count GET 'secret/data/keyway/org/acme/anthropic$')" 2 "{$fault} then an answer: asked twice"
	reset_faults
done
ctl fault '{"rules": [{"path": "/v1/secret/data/keyway/org/acme/anthropic$", "method": "GET", "status": 200, "raw": "<html>proxy login</html>", "content_type": "text/html", "count": 1}]}'
lookup_is 1 "HTTP 200 with a body that is not a JSON object" "a proxy's page with 200"
reset_faults
ctl fault '{"rules": [{"path": "/v1/secret/data/keyway/org/acme/anthropic$", "method": "GET", "status": 502, "raw": "<html>bad gateway</html>", "content_type": "text/html", "count": -1}]}'
lookup_is 5 "HTTP 502 (bad gateway) (after 3 attempts)" "a proxy's page with 502"
reset_faults

# Slow past the timeout: every call ends within timeout_ms, retries and
# backoff included.
conf "$TMPD/slow.conf" 'timeout_ms = 600; connect_timeout_ms = 300;'
sed -i 's/timeout_ms = 1500; retries = 2;/retries = 2;/' "$TMPD/slow.conf"
ctl fault '{"delay_ms": 3000}'
start=$(date +%s%N)
CONF_USED=$TMPD/slow.conf lookup_is 5 "no answer within timeout_ms = 600" "Vault slower than timeout_ms"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [ "$ms" -lt 1500 ]; then
	pass "a slow Vault costs no more than the timeout (${ms} ms)"
else
	fail "a slow Vault costs no more than the timeout" "took $ms ms"
fi
reset_faults

# Down: nothing listens on the port.
conf "$TMPD/down.conf"
python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' >"$TMPD/free"
sed -i "s|$ADDR|https://127.0.0.1:$(cat "$TMPD/free")|" "$TMPD/down.conf"
CONF_USED=$TMPD/down.conf lookup_is 5 "Couldn't connect to server" "Vault down"
run "$KW" -c "$TMPD/down.conf" check
expect_exit 1 "check of a Vault that is down: exit 1"
if grep -q "health check: unavail: Vault GET sys/health?standbyok=true&perfstandbyok=true: Couldn't connect to server" "$ERR"; then
	pass "check says Vault cannot be reached"
else
	fail "check says Vault cannot be reached" "$(cat "$ERR")"
fi

# ---- chain actions ----

export FALLBACK_KEY=$K_ENV
ctl fault '{"sealed": true}'
run -s "$KW" -c "$C" get anthropic --org acme --chain soft --reveal
expect_exit 0 "sealed Vault, sufficient: the chain goes on to the fallback"
expect_stdout "$K_ENV" "sealed Vault, sufficient: the fallback's key"
run "$KW" -c "$C" explain anthropic --org acme --chain soft
if grep -q '1. v (vault): unavail -> continue' "$OUT"; then
	pass "explain: unavail -> continue"
else
	fail "explain: unavail -> continue" "$(cat "$OUT")"
fi
lookup_is 5 "sealed" "sealed Vault, required: the chain dies unavailable"
reset_faults
run "$KW" -c "$TMPD/bad.conf" get anthropic --org acme --chain soft
expect_exit 1 "a refused token, sufficient: the chain dies with the error"
run "$KW" -c "$TMPD/bad.conf" explain anthropic --org acme --chain soft
if grep -q '1. v (vault): error -> die' "$OUT"; then
	pass "explain: error -> die"
else
	fail "explain: error -> die" "$(cat "$OUT")"
fi
unset FALLBACK_KEY

# ---- TLS ----

conf "$TMPD/otherca.conf"
sed -i 's|ca_file = "ca.pem"|ca_file = "other-ca.pem"|' "$TMPD/otherca.conf"
CONF_USED=$TMPD/otherca.conf lookup_is 1 "SSL peer certificate or SSH remote key was not OK" \
	"a certificate the CA did not sign"
conf "$TMPD/skip.conf" 'tls_skip_verify = true;'
sed -i 's|ca_file = "ca.pem";||' "$TMPD/skip.conf"
cat >>"$TMPD/skip.conf" <<'EOF'
keyway: { log: { stderr = true; }; };
EOF
run -s "$KW" -c "$TMPD/skip.conf" get anthropic --org acme --reveal
expect_exit 0 "tls_skip_verify = true: found"
run "$KW" -c "$TMPD/skip.conf" check
expect_exit 0 "check with tls_skip_verify = true: exit 0"
if grep -q 'WARNING\|tls_skip_verify = true' "$ERR"; then
	pass "check warns of tls_skip_verify"
else
	fail "check warns of tls_skip_verify" "$(cat "$ERR")"
fi

# ---- headers ----

ctl namespace '{"path": "team-a"}'
ctl seed '{"namespace": "team-a", "mount": "secret", "path": "keyway/org/nsorg/anthropic", "data": {"api_key": "'"$K_BETA"'"}}'
conf "$TMPD/ns.conf" 'namespace = "team-a";'
run -s "$KW" -c "$TMPD/ns.conf" get anthropic --org nsorg --reveal
expect_exit 0 "namespace: found"
expect_stdout "$K_BETA" "namespace: the namespace's key"
requests_json
expect_eq "$(python3 -c '
import json, sys
log = json.load(open(sys.argv[1]))["requests"]
print([(r["namespace"], r["x_vault_request"]) for r in log if "nsorg" in r["path"]])' "$TMPD/requests.json")" \
	"[('team-a', 'true')]" "X-Vault-Namespace and X-Vault-Request sent"
expect_eq "$(python3 -c '
import json, sys
log = json.load(open(sys.argv[1]))["requests"]
print(all(r["x_vault_request"] == "true" for r in log if r["path"].startswith("/v1/")))' "$TMPD/requests.json")" \
	"True" "X-Vault-Request: true on every request keyway sent"

# ---- managing keys: KV v2 ----

forget
printf '%s\n' "$K_BETA" | "$KW" -c "$C" put v anthropic --scope org --owner beta --name "beta key" >"$TMPD/put.out" 2>"$TMPD/put.err"
expect_eq "$?" 0 "put: exit 0"
expect_file "$TMPD/put.out" 'stored org key of beta for anthropic in v (sk-a****bbbb)' "put: what it says"
requests_json
expect_eq "$(python3 -c '
import json, sys
log = json.load(open(sys.argv[1]))["requests"]
print([r["cas"] for r in log if r["method"] in ("POST", "PUT") and "/data/" in r["path"]])' "$TMPD/requests.json")" \
	"[0]" "put writes with cas = 0"
printf '%s\n' "$K_BETA" | "$KW" -c "$C" put v anthropic --scope org --owner beta >"$TMPD/put2.out" 2>"$TMPD/put2.err"
expect_eq "$?" 1 "put of a key that exists: exit 1"
# Told before the key is read, from the listing (the store's own refusal,
# with cas = 0, is for a key that appears after that).
expect_file "$TMPD/put2.err" 'keyway: put: backend "v" already holds an org key of "beta" for anthropic; rotate it instead' \
	"put of a key that exists: one line"

run "$KW" -c "$C" ls
expect_exit 0
if grep -q '^v  *org  *beta  *anthropic  *beta key  *active  *sk-a\*\*\*\*bbbb' "$OUT" &&
	grep -q '^v  *org  *acme  *anthropic  *-  *active' "$OUT"; then
	pass "ls shows both keys, masked, with the name"
else
	fail "ls shows both keys, masked, with the name" "$(cat "$OUT")"
fi

run "$KW" -c "$C" disable v anthropic --scope org --owner beta
expect_exit 0 "disable: exit 0"
run "$KW" -c "$C" get anthropic --org beta
expect_exit 4 "get of a disabled key: exit 4 (denied)"
FALLBACK_KEY=$K_ENV run -s "$KW" -c "$C" get anthropic --org beta --chain soft --reveal
expect_stdout "$K_ENV" "a disabled key, sufficient: the chain goes on to the fallback"
FALLBACK_KEY=$K_ENV run "$KW" -c "$C" explain anthropic --org beta --chain soft
if grep -q '1. v (vault): denied -> continue: the org key of "beta" for anthropic is disabled in Vault' "$OUT"; then
	pass "explain: denied -> continue"
else
	fail "explain: denied -> continue" "$(cat "$OUT")"
fi
run "$KW" -c "$C" ls --json
expect_eq "$(python3 -c 'import json,sys; print([r["active"] for r in json.load(open(sys.argv[1])) if r["owner"] == "beta"])' "$OUT")" \
	"[False]" "ls --json: the key is disabled"
run "$KW" -c "$C" enable v anthropic --scope org --owner beta
expect_exit 0 "enable: exit 0"

forget
printf '%s\n' "$K_BETA2" | "$KW" -c "$C" rotate v anthropic --scope org --owner beta >"$TMPD/rot.out" 2>"$TMPD/rot.err"
expect_eq "$?" 0 "rotate: exit 0"
requests_json
expect_eq "$(python3 -c '
import json, sys
log = json.load(open(sys.argv[1]))["requests"]
print([r["cas"] for r in log if r["method"] in ("POST", "PUT") and "/data/" in r["path"]])' "$TMPD/requests.json")" \
	"[1]" "rotate writes with cas = the version it read"
run -s "$KW" -c "$C" get anthropic --org beta --reveal
expect_exit 0
expect_stdout "$K_BETA2" "get after rotate: the new key"

# Another writer between the read and the write: nothing is overwritten.
ctl fault '{"rules": [{"path": "/v1/secret/data/keyway/org/beta/anthropic$", "method": "POST", "status": 400, "errors": ["check-and-set parameter did not match the current version"]}]}'
printf '%s\n' "$K_BETA" | "$KW" -c "$C" rotate v anthropic --scope org --owner beta >"$TMPD/rot2.out" 2>"$TMPD/rot2.err"
expect_eq "$?" 5 "rotate that loses the check-and-set: exit 5"
if grep -q 'changed in Vault at secret/keyway/org/beta/anthropic while it was rotated (check-and-set on version 2, HTTP 400); nothing was written' "$TMPD/rot2.err"; then
	pass "rotate that loses the check-and-set says so"
else
	fail "rotate that loses the check-and-set says so" "$(cat "$TMPD/rot2.err")"
fi
reset_faults

run "$KW" -c "$C" rm v anthropic --scope org --owner beta
expect_exit 0 "rm: exit 0"
expect_eq "$(count DELETE 'secret/metadata/keyway/org/beta/anthropic$')" 1 "rm deletes the metadata (every version)"
run "$KW" -c "$C" get anthropic --org beta
expect_exit 3 "get after rm: exit 3"
run "$KW" -c "$C" rm v anthropic --scope org --owner beta
expect_exit 3 "rm of a key that is gone: exit 3"

# Names Vault's paths would read otherwise are escaped, one segment each.
ODD='zoë?#%2F'
printf '%s\n' "$K_BETA" | "$KW" -c "$C" put v anthropic --scope org --owner "$ODD" >/dev/null 2>"$TMPD/odd.err"
expect_eq "$?" 0 "put for an org named $ODD"
# The stand-in logs the path as Vault reads it: unescaped, whole.
expect_eq "$(count POST '^/v1/secret/data/keyway/org/zoë\?#%2F/anthropic$')" 1 \
	"its path is escaped"
run -s "$KW" -c "$C" get anthropic --org "$ODD" --reveal
expect_stdout "$K_BETA" "get for an org named $ODD"
run "$KW" -c "$C" ls --json
expect_eq "$(python3 -c 'import json,sys; print(sorted(r["owner"] for r in json.load(open(sys.argv[1]))))' "$OUT")" \
	"['acme', '$ODD']" "ls reads the names back"
run "$KW" -c "$C" rm v anthropic --scope org --owner "$ODD"
expect_exit 0 "rm for an org named $ODD"

# A latest version deleted outside keyway is no key.
ctl seed '{"mount": "secret", "path": "keyway/org/gamma/anthropic", "data": {"api_key": "'"$K_BETA"'"}}'
vault DELETE secret/data/keyway/org/gamma/anthropic
run "$KW" -c "$C" explain anthropic --org gamma
if grep -q 'its latest version (1) is deleted' "$OUT"; then
	pass "a soft-deleted latest version is not found, and explain says why"
else
	fail "a soft-deleted latest version is not found, and explain says why" "$(cat "$OUT")"
fi
run "$KW" -c "$C" get anthropic --org gamma
expect_exit 3 "get of a soft-deleted key: exit 3"

# A secret at a key's path without the field is bad data, not a miss.
ctl seed '{"mount": "secret", "path": "keyway/org/nofield/anthropic", "data": {"token": "x"}}'
run "$KW" -c "$C" get anthropic --org nofield
expect_exit 1 "a secret without the field: exit 1 (error)"
if grep -qF 'the secret at secret/keyway/org/nofield/anthropic has no field "api_key"' "$ERR"; then
	pass "a secret without the field: says which field"
else
	fail "a secret without the field: says which field" "$(cat "$ERR")"
fi

# System keys: a segment that is only {owner} is left out.
write_conf "$TMPD/sys.conf" <<EOF
backends: {
	sys: { module = "vault"; address = "$ADDR"; scope = "system"; ca_file = "ca.pem";
	       auth = { method = "token"; token_file = "$SECRETD/token"; }; };
	sys2: { module = "vault"; address = "$ADDR"; scope = "system"; ca_file = "ca.pem";
		path = "kw2/{scope}-{owner}x/{provider}";
		auth = { method = "token"; token_file = "$SECRETD/token"; }; };
};
chains: { default = ( { backend = "sys"; control = "sufficient"; } );
	  two = ( { backend = "sys2"; control = "sufficient"; } ); };
EOF
forget
printf '%s\n' "$K_V1" | "$KW" -c "$TMPD/sys.conf" put sys anthropic --scope system >/dev/null 2>"$TMPD/sysput.err"
expect_eq "$?" 0 "system key: put"
expect_eq "$(count POST '^/v1/secret/data/keyway/system/anthropic$')" 1 "system key: at keyway/system/PROVIDER"
run -s "$KW" -c "$TMPD/sys.conf" get anthropic --reveal
expect_stdout "$K_V1" "system key: get"
printf '%s\n' "$K_V1B" | "$KW" -c "$TMPD/sys.conf" put sys2 anthropic --scope system >/dev/null 2>"$TMPD/sysput2.err"
expect_eq "$?" 0 "system key, {owner} inside a segment: put"
expect_eq "$(count POST '^/v1/secret/data/kw2/system-x/anthropic$')" 1 "system key, {owner} inside a segment: its path"
run "$KW" -c "$TMPD/sys.conf" ls
if grep -q '^sys  *system  *-  *anthropic  *-  *active  *sk-a\*\*\*\*dddd' "$OUT" &&
	grep -q '^sys2  *system  *-  *anthropic  *-  *active  *sk-a\*\*\*\*eeee' "$OUT"; then
	pass "system keys: ls finds both"
else
	fail "system keys: ls finds both" "$(cat "$OUT")"
fi

# ---- managing keys: KV v1, and "auto" ----

for kv in 1 '"auto"'; do
	conf "$TMPD/v1.conf" "mount = \"kv\"; kv_version = $kv;"
	printf '%s\n' "$K_V1" | "$KW" -c "$TMPD/v1.conf" put v anthropic --scope org --owner acme >/dev/null 2>"$TMPD/v1put.err"
	expect_eq "$?" 0 "KV v1 ($kv): put"
	run -s "$KW" -c "$TMPD/v1.conf" get anthropic --org acme --reveal
	expect_stdout "$K_V1" "KV v1 ($kv): get"
	run "$KW" -c "$TMPD/v1.conf" disable v anthropic --scope org --owner acme
	expect_exit 0 "KV v1 ($kv): disable"
	run "$KW" -c "$TMPD/v1.conf" get anthropic --org acme
	expect_exit 4 "KV v1 ($kv): get of a disabled key: exit 4"
	run "$KW" -c "$TMPD/v1.conf" enable v anthropic --scope org --owner acme
	printf '%s\n' "$K_V1B" | "$KW" -c "$TMPD/v1.conf" rotate v anthropic --scope org --owner acme >/dev/null 2>&1
	expect_eq "$?" 0 "KV v1 ($kv): rotate"
	run -s "$KW" -c "$TMPD/v1.conf" get anthropic --org acme --reveal
	expect_stdout "$K_V1B" "KV v1 ($kv): get after rotate"
	run "$KW" -c "$TMPD/v1.conf" ls
	if grep -q '^v  *org  *acme  *anthropic  *-  *active  *sk-a\*\*\*\*eeee' "$OUT"; then
		pass "KV v1 ($kv): ls"
	else
		fail "KV v1 ($kv): ls" "$(cat "$OUT")"
	fi
	run "$KW" -c "$TMPD/v1.conf" rm v anthropic --scope org --owner acme
	expect_exit 0 "KV v1 ($kv): rm"
	run "$KW" -c "$TMPD/v1.conf" get anthropic --org acme
	expect_exit 3 "KV v1 ($kv): get after rm"
done
# Anyone with write access to Vault can store names keyway never takes:
# an escape sequence in a key's name or owner reaches no terminal.
conf "$TMPD/v1.conf" 'mount = "kv"; kv_version = 1;'
ctl seed '{"mount": "kv", "path": "keyway/org/acme/anthropic", "data": {"api_key": "'"$K_V1"'", "keyway_name": "evil\u001b[31mred"}}'
ctl seed '{"mount": "kv", "path": "keyway/org/ev\u001b[2Jil/anthropic", "data": {"api_key": "'"$K_V1"'"}}'
run "$KW" -c "$TMPD/v1.conf" ls
if grep -q "$(printf '\033')" "$OUT" "$ERR"; then
	fail "ls: no escape sequence from Vault reaches the terminal" "$(od -c "$OUT" | head)"
else
	pass "ls: no escape sequence from Vault reaches the terminal"
fi
if grep -q '^v  *org  *acme  *anthropic' "$OUT"; then
	fail "ls: a key named with an escape sequence is left out" "$(cat "$OUT")"
else
	pass "ls: a key named with an escape sequence is left out"
fi
# A template may name {owner} many times, and an owner may be long.
conf "$TMPD/many.conf" 'path = "k/{owner}.{owner}.{owner}.{owner}.{owner}.{owner}/{provider}";'
long=$(printf 'o%.0s' $(seq 250))
run "$KW" -c "$TMPD/many.conf" get anthropic --org "$long"
expect_exit 3 "a path naming a 250-byte owner six times: not found, and no overrun"
conf "$TMPD/auto2.conf" 'kv_version = "auto";'
run -s "$KW" -c "$TMPD/auto2.conf" get anthropic --org acme --reveal
expect_stdout "$K_ACME" "kv_version = \"auto\" on a KV v2 mount"
conf "$TMPD/mismatch.conf" 'mount = "kv"; kv_version = 2;'
run "$KW" -c "$TMPD/mismatch.conf" check
expect_exit 1 "check of a KV v1 mount with kv_version = 2: exit 1"
if grep -q 'mount "kv" is KV v1, but kv_version = 2' "$ERR"; then
	pass "check says the KV version is wrong"
else
	fail "check says the KV version is wrong" "$(cat "$ERR")"
fi

# ---- settings refused at load ----

# refused EXTRA WORDS NAME: a config with EXTRA fails check with one line
# holding WORDS.
refused()
{
	conf "$TMPD/refused.conf" "$1"
	run "$KW" -c "$TMPD/refused.conf" check
	expect_exit 1 "$3: refused"
	if [ "$(wc -l <"$ERR")" -eq 1 ] && grep -qF -- "$2" "$ERR"; then
		pass "$3: one line with \"$2\""
	else
		fail "$3: one line with \"$2\"" "$(cat "$ERR")"
	fi
}
refused 'colour = "blue";' 'unknown setting "colour"' "an unknown setting"
refused 'kv_version = 3;' 'kv_version must be 1, 2 or "auto", not 3' "kv_version = 3"
refused 'kv_version = "latest";' 'kv_version must be 1, 2 or "auto", not "latest"' "kv_version = \"latest\""
refused 'kv_version = true;' 'kv_version must be an integer or a string, not a boolean' "kv_version = true"
refused 'connect_timeout_ms = 0;' 'connect_timeout_ms must be between 1 and 1500, not 0' "connect_timeout_ms = 0"
refused 'cache_ttl = "30";' 'cache_ttl must be an integer, not a string' "cache_ttl as a string"
refused 'path = "keyway/{owner}";' 'path must hold {provider}' "a path without {provider}"
refused 'path = "keyway/{provider}";' 'path must hold {owner}' "an org path without {owner}"
refused 'path = "keyway/{user}/{provider}";' 'unknown placeholder at "{user}' "an unknown placeholder"
refused 'path = "keyway//{owner}/{provider}";' 'path has an empty segment' "an empty segment"
refused 'field = "";' 'field must name' "an empty field"
refused 'path = "keyway/../{owner}/{provider}";' 'path may not hold a "." or ".." segment' "a path with .."
refused 'path = "keyway/x}/{owner}/{provider}";' "path has a '}' without its '{'" "a path with a } alone"
refused 'path = "keyway/{owner}{provider}";' 'path: two placeholders must be kept apart by some text' "two placeholders together"
refused 'client_cert = "ca.pem";' 'client_cert and client_key go together' "client_cert without client_key"
refused 'mount = "/secret";' 'mount must name a secrets engine, such as "secret"' "a mount that starts with /"
refused 'mount = "kv/../secret";' 'mount may not hold "." or ".."' "a mount with .."
refused 'namespace = "";' 'namespace must be one line' "an empty namespace"
refused "client_cert = \"$CERTS/client.pem\"; client_key = \"$TMPD/none.key\";" \
	"client_key $TMPD/none.key does not exist" "a client_key that is not there"
: >"$TMPD/empty.key"
chmod 600 "$TMPD/empty.key"
refused "client_cert = \"$CERTS/client.pem\"; client_key = \"$TMPD/empty.key\";" \
	"client_key $TMPD/empty.key must be a PEM private key of at most 64 KiB" \
	"an empty client_key"

# refused_sed SED WORDS NAME: the usual config changed by SED fails check
# with one line holding WORDS.
refused_sed()
{
	conf "$TMPD/refused.conf"
	sed -i "$1" "$TMPD/refused.conf"
	run "$KW" -c "$TMPD/refused.conf" check
	expect_exit 1 "$3: refused"
	if [ "$(wc -l <"$ERR")" -eq 1 ] && grep -qF -- "$2" "$ERR"; then
		pass "$3: one line with \"$2\""
	else
		fail "$3: one line with \"$2\"" "$(cat "$ERR")"
	fi
}
refused_sed 's|ca_file = "ca.pem"|ca_file = "none.pem"|' \
	"ca_file $TMPD/none.pem: No such file or directory" "a ca_file that is not there"
refused_sed "s|ca_file = \"ca.pem\"|ca_file = \"$TMPD\"|" \
	"ca_file $TMPD is not a regular file" "a ca_file that is a directory"
refused_sed "s|ca_file = \"ca.pem\"|ca_path = \"$CERTS/ca.pem\"|" \
	"ca_path $CERTS/ca.pem is not a directory" "a ca_path that is a file"
refused_sed 's|address = "[^"]*"|address = "vault.example:8200"|' \
	'address must be a URL such as "https://vault.internal:8200", not "vault.example:8200"' \
	"an address without a scheme"
# auth settings that cannot work, and token files that hold no token.
A='s|auth = {[^}]*};|auth = {'
refused_sed "$A method = \"token\"; token_file = \"$SECRETD/none\"; };|" \
	"auth.token_file: $SECRETD/none does not exist" "a token_file that is not there"
printf 'hvs.one\nhvs.two\n' >"$SECRETD/two-lines" && chmod 600 "$SECRETD/two-lines"
refused_sed "$A method = \"token\"; token_file = \"$SECRETD/two-lines\"; };|" \
	"auth.token_file: $SECRETD/two-lines must hold one line of visible ASCII characters, and nothing else" \
	"a token_file of two lines"
head -c 1100 /dev/zero | tr '\0' t >"$SECRETD/long-token" && chmod 600 "$SECRETD/long-token"
refused_sed "$A method = \"token\"; token_file = \"$SECRETD/long-token\"; };|" \
	"auth.token_file: $SECRETD/long-token is longer than 1023 bytes: it must hold one line" \
	"a token_file too long"
refused_sed "$A method = \"ldap\"; };|" 'auth.method must be "token" or "approle", not "ldap"' \
	"an unknown auth.method"
refused_sed "$A colour = \"blue\"; };|" 'unknown setting auth.colour (auth takes method, token_file, role_id_file, secret_id_file, mount)' \
	"an unknown auth setting"
refused_sed "$A method = \"token\"; role_id_file = \"/x\"; };|" \
	'role_id_file and secret_id_file belong to method = "approle"' "role_id_file with method = token"
refused_sed "$A method = \"approle\"; token_file = \"/x\"; };|" \
	'token_file belongs to method = "token"; an AppRole login makes its own token' "token_file with method = approle"
refused_sed "$A method = \"approle\"; role_id_file = \"/x\"; secret_id_file = \"/y\"; mount = \"a/b\"; };|" \
	'auth.mount must be the name of an auth mount, such as "approle"' "an auth.mount with a slash"
conf "$TMPD/refused.conf"
sed -i "$A method = \"token\"; };|" "$TMPD/refused.conf"
run env VAULT_TOKEN="$(printf 'hvs.a\tb')" "$KW" -c "$TMPD/refused.conf" check
expect_exit 1 "a VAULT_TOKEN with a tab: refused"
if [ "$(wc -l <"$ERR")" -eq 1 ] &&
	grep -qF 'backend "v": VAULT_TOKEN must be one line of visible ASCII characters' "$ERR"; then
	pass "a VAULT_TOKEN with a tab: one line saying so"
else
	fail "a VAULT_TOKEN with a tab: one line saying so" "$(cat "$ERR")"
fi
conf "$TMPD/refused.conf"
sed -i 's|address = "[^"]*"|address = "http://vault.example:8200"|' "$TMPD/refused.conf"
run "$KW" -c "$TMPD/refused.conf" check
expect_exit 1 "plain http to another host: refused"
# Addresses that look like loopback and are not, and a user part, which
# libcurl would take as the part before the host.
for a in "http://localhost:x@192.0.2.2:8200" "http://127.evil.example:8200" \
	"http://127.0.0.1.nip.io:8200" "https://user:pw@127.0.0.1:8200"; do
	conf "$TMPD/refused.conf"
	sed -i "s|address = \"[^\"]*\"|address = \"$a\"|" "$TMPD/refused.conf"
	run "$KW" -c "$TMPD/refused.conf" check
	if grep -qF 'address must' "$ERR"; then
		pass "address $a: refused"
	else
		fail "address $a: refused" "$(cat "$ERR")"
	fi
done
for a in "http://127.0.0.2:1" "http://[::1]:1" "http://localhost:1"; do
	conf "$TMPD/refused.conf"
	sed -i "s|address = \"[^\"]*\"|address = \"$a\"|" "$TMPD/refused.conf"
	run "$KW" -c "$TMPD/refused.conf" check
	if grep -qF 'address must' "$ERR"; then
		fail "address $a: taken as loopback" "$(cat "$ERR")"
	else
		pass "address $a: taken as loopback"
	fi
done
conf "$TMPD/refused.conf"
sed -i 's|auth = {[^}]*};|auth = { method = "token"; token_file = "tok"; };|' "$TMPD/refused.conf"
run "$KW" -c "$TMPD/refused.conf" check
if grep -qF 'auth.token_file must be an absolute path' "$ERR"; then
	pass "a relative auth.token_file: refused"
else
	fail "a relative auth.token_file: refused" "$(cat "$ERR")"
fi
chmod 640 "$SECRETD/bad-token"
run "$KW" -c "$TMPD/bad.conf" check
expect_exit 1 "a token file others can read: refused"
if [ "$(wc -l <"$ERR")" -eq 1 ] && grep -qF "bad-token" "$ERR"; then
	pass "a token file others can read: one line naming it"
else
	fail "a token file others can read: one line naming it" "$(cat "$ERR")"
fi
chmod 600 "$SECRETD/bad-token"
conf "$TMPD/refused.conf"
sed -i 's|auth = {[^}]*};|auth = { method = "approle"; role_id_file = "/x"; };|' "$TMPD/refused.conf"
run "$KW" -c "$TMPD/refused.conf" check
if grep -qF 'method = "approle" needs role_id_file and secret_id_file' "$ERR"; then
	pass "approle without secret_id_file: refused"
else
	fail "approle without secret_id_file: refused" "$(cat "$ERR")"
fi
conf "$TMPD/refused.conf"
sed -i 's|auth = {[^}]*};||' "$TMPD/refused.conf"
(unset VAULT_TOKEN; run "$KW" -c "$TMPD/refused.conf" check; grep -qF 'no Vault token: set auth.token_file, or VAULT_TOKEN' "$ERR") &&
	pass "no token at all: refused" || fail "no token at all: refused"
VAULT_TOKEN=$ROOT run -s "$KW" -c "$TMPD/refused.conf" get anthropic --org acme --reveal
expect_stdout "$K_ACME" "the token from VAULT_TOKEN"
VAULT_TOKEN=$ROOT run "$KW" -c "$TMPD/refused.conf" exec -p anthropic --org acme -- sh -c 'echo "${VAULT_TOKEN:-unset}"'
expect_exit 0 "exec with the token from VAULT_TOKEN"
expect_stdout "unset" "exec: VAULT_TOKEN is not handed to the program it runs"

# ---- AppRole ----

ROLE_ID=role-cli-vault-0001-aaaa
SECRET_ID=secret-cli-vault-0001-bbbb
secret "$ROLE_ID" "$SECRET_ID"
printf '%s\n' "$ROLE_ID" >"$SECRETD/role_id"
printf '%s\n' "$SECRET_ID" >"$SECRETD/secret_id"
chmod 600 "$SECRETD/role_id" "$SECRETD/secret_id"
ctl policy '{"name": "kw", "policy": {"path": {"secret/*": {"capabilities": ["create", "read", "update", "delete", "list"]}}}}'
ctl approle '{"name": "kw", "role_id": "'"$ROLE_ID"'", "secret_id": "'"$SECRET_ID"'", "policies": ["kw"], "token_ttl": 60}'
conf "$TMPD/approle.conf"
sed -i "s|auth = {[^}]*};|auth = { method = \"approle\"; role_id_file = \"$SECRETD/role_id\"; secret_id_file = \"$SECRETD/secret_id\"; };|" "$TMPD/approle.conf"
cat >>"$TMPD/approle.conf" <<'EOF'
keyway: { log: { stderr = true; level = "debug"; }; };
EOF
forget
run -s "$KW" -c "$TMPD/approle.conf" get anthropic --org acme --reveal
expect_exit 0 "AppRole: found"
expect_stdout "$K_ACME" "AppRole: the key"
expect_stderr_line 'keyway: backend "v": logged in to Vault through auth/approle/login (token TTL 60s)' \
	"AppRole: the login is logged, without the token"
expect_eq "$(count POST 'auth/approle/login$')" 1 "AppRole: one login"
printf '%s\n' "secret-wrong-0002" >"$SECRETD/secret_id"
run "$KW" -c "$TMPD/approle.conf" get anthropic --org acme
expect_exit 1 "AppRole with a wrong secret id: exit 1"
if grep -qF 'Vault POST auth/approle/login: HTTP 400 (bad request): invalid role or secret ID' "$ERR"; then
	pass "AppRole with a wrong secret id: the login's answer, named"
else
	fail "AppRole with a wrong secret id: the login's answer, named" "$(cat "$ERR")"
fi

# ---- a client certificate ----

/usr/bin/python3 "$DOUBLE" --cert "$CERTS/server.pem" --key "$CERTS/server.key" \
	--client-ca "$CERTS/ca.pem" --require-client-cert \
	--port-file "$TMPD/port2" --root-token "$ROOT" \
	>"$TMPD/double2.out" 2>"$TMPD/double2.err" &
DPID2=$!
trap 'kill "$DPID" "$DPID2" 2>/dev/null; wait 2>/dev/null; tap_cleanup' EXIT
for _ in $(seq 100); do
	[ -s "$TMPD/port2" ] && break
	sleep 0.1
done
[ -s "$TMPD/port2" ] || bail_out "the second Vault stand-in did not start"
ADDR2=https://127.0.0.1:$(cat "$TMPD/port2")
curl -sS --fail --cacert "$TMPD/ca.pem" --cert "$CERTS/client.pem" --key "$CERTS/client.key" \
	-X POST "$ADDR2/__double/seed" -d '{"mount": "secret", "path": "keyway/org/acme/anthropic", "data": {"api_key": "'"$K_ACME"'"}}' \
	>/dev/null || bail_out "cannot seed the second stand-in"
conf "$TMPD/nocert.conf"
sed -i "s|$ADDR|$ADDR2|" "$TMPD/nocert.conf"
run "$KW" -c "$TMPD/nocert.conf" get anthropic --org acme
expect_exit 5 "a Vault that wants a client certificate, without one: unavailable"
conf "$TMPD/cert.conf" "client_cert = \"$CERTS/client.pem\"; client_key = \"$CERTS/client.key\";"
sed -i "s|$ADDR|$ADDR2|" "$TMPD/cert.conf"
run -s "$KW" -c "$TMPD/cert.conf" get anthropic --org acme --reveal
expect_exit 0 "with client_cert and client_key: found"
expect_stdout "$K_ACME" "with client_cert and client_key: the key"
chmod 644 "$CERTS/client.key"
run "$KW" -c "$TMPD/cert.conf" check
if [ "$RC" = 1 ] && grep -qF "client.key" "$ERR"; then
	pass "a client key others can read: refused"
else
	fail "a client key others can read: refused" "$(cat "$ERR")"
fi
chmod 600 "$CERTS/client.key"
kill "$DPID2" 2>/dev/null

# ---- the audit trail and every log line ----

conf "$TMPD/audit.conf"
cat >>"$TMPD/audit.conf" <<EOF
keyway: { master_key = { source = "env"; };
	  audit: { sink = "jsonl"; path = "$TMPD/audit.jsonl"; };
	  log: { stderr = true; level = "debug"; }; };
EOF
export KEYWAY_MASTER_KEY=5e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff0
printf '%s\n' "$K_BETA" | "$KW" -c "$TMPD/audit.conf" put v anthropic --scope org --owner audited >"$TMPD/a1.out" 2>"$TMPD/a1.err"
expect_eq "$?" 0 "audited put"
run -s "$KW" -c "$TMPD/audit.conf" get anthropic --org audited --reveal
expect_stdout "$K_BETA" "audited get"
printf '%s\n' "$K_BETA2" | "$KW" -c "$TMPD/audit.conf" rotate v anthropic --scope org --owner audited >"$TMPD/a2.out" 2>"$TMPD/a2.err"
run "$KW" -c "$TMPD/audit.conf" explain anthropic --org audited
run "$KW" -c "$TMPD/audit.conf" disable v anthropic --scope org --owner audited
run "$KW" -c "$TMPD/audit.conf" ls --json
run "$KW" -c "$TMPD/audit.conf" rm v anthropic --scope org --owner audited
expect_exit 0 "audited rm"
if [ "$(wc -l <"$TMPD/audit.jsonl")" -ge 5 ]; then
	pass "the audit trail has the events"
else
	fail "the audit trail has the events" "$(cat "$TMPD/audit.jsonl")"
fi
unset KEYWAY_MASTER_KEY

# ---- a plain http:// address on loopback ----

# A second stand-in, over plain HTTP.  http_proxy names a port where
# nothing listens: keyway must not send the token (in clear) to a proxy.
/usr/bin/python3 "$DOUBLE" --http --port-file "$TMPD/hport" --root-token "$ROOT" \
	--cert "$CERTS/server.pem" --key "$CERTS/server.key" \
	>"$TMPD/hdouble.out" 2>"$TMPD/hdouble.err" &
HPID=$!
for _ in $(seq 100); do
	[ -s "$TMPD/hport" ] && break
	sleep 0.1
done
HADDR=http://127.0.0.1:$(cat "$TMPD/hport")
curl -sS --fail --noproxy '*' -X POST "$HADDR/__double/seed" -H 'Content-Type: application/json' \
	-d '{"mount": "secret", "path": "keyway/org/plain/anthropic", "data": {"api_key": "'"$K_ACME"'"}}' >/dev/null ||
	bail_out "the plain HTTP stand-in did not start: $(cat "$TMPD/hdouble.err")"
conf "$TMPD/plain.conf"
sed -i "s|address = \"$ADDR\"|address = \"$HADDR\"|; s|ca_file = \"ca.pem\";||" "$TMPD/plain.conf"
http_proxy=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 ALL_PROXY=http://127.0.0.1:9 \
	run -s "$KW" -c "$TMPD/plain.conf" get anthropic --org plain --reveal
expect_exit 0 "an http:// address on loopback goes through no proxy"
expect_stdout "$K_ACME" "an http:// address on loopback: the key"
kill "$HPID" 2>/dev/null
wait "$HPID" 2>/dev/null

# ---- nothing leaked ----

kill "$DPID" 2>/dev/null
wait "$DPID" 2>/dev/null
expect_no_leaks "neither the token nor a key in any output, error or the stand-in's log"

done_testing
