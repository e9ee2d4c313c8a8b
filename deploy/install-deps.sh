#!/bin/sh
# Install the Debian packages of deploy/packages.txt that are missing.
# Idempotent and quiet when everything is present. Needs root (or sudo).
set -e
here=$(dirname "$0")
missing=""
for p in $(grep -v '^#' "$here/packages.txt"); do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
