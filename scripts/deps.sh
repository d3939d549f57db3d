#!/bin/sh
# Install what building and testing keyway needs (Debian 12).  Does nothing
# when everything is already there.
set -eu

packages="build-essential autoconf automake libtool pkg-config autoconf-archive
libconfig-dev libsodium-dev libssl-dev libsqlite3-dev libjansson-dev
libcurl4-openssl-dev libcmocka-dev bsdutils sqlite3 python3 gdb
python3-cryptography python3-argon2 openssl python3-hvac
clang libclang-rt-14-dev libhiredis-dev redis-server
abigail-tools libmicrohttpd-dev curl util-linux python3-pytest nodejs
systemd valgrind gcovr cppcheck clang-tools"

missing=
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "installing:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
