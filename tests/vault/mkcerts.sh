#!/bin/sh
# Make the certificates the Vault tests use, in DIR:
#   ca.pem, ca.key          a CA made for this run only
#   server.pem, server.key  for 127.0.0.1, ::1 and localhost, signed by the CA
#   client.pem, client.key  a client certificate (TLS client auth), same CA
#   other-ca.pem            a second CA that signed none of them
# Usage: tests/vault/mkcerts.sh DIR
set -eu

dir=${1:?usage: mkcerts.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077

ossl() {
	openssl "$@" 2>openssl.err || { cat openssl.err >&2; exit 1; }
}

cat >ext.cnf <<'EOF'
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF

ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout ca.key -out ca.pem -days 2 -subj "/CN=keyway test CA" \
	-addext basicConstraints=critical,CA:TRUE \
	-addext keyUsage=critical,keyCertSign,cRLSign
for who in server client; do
	ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$who.key" -out "$who.csr" -subj "/CN=keyway test $who"
	ossl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key \
		-CAcreateserial -days 2 -out "$who.pem" \
		-extfile ext.cnf -extensions "$who"
done
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout other-ca.key -out other-ca.pem -days 2 -subj "/CN=another CA"
rm -f server.csr client.csr ca.srl ext.cnf openssl.err
