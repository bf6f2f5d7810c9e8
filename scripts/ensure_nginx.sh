#!/usr/bin/env bash
# Make sure an nginx binary exists for `make deploy-check`: the Debian package,
# installed with apt-get when missing. Prints the binary's path on stdout.
#
# The package's post-install script would start the system nginx service (on port
# 80, all interfaces); the check only ever runs its own nginx on a free loopback
# port. So the install runs under a policy-rc.d that forbids starting services
# (Docker images ship one already; otherwise one is put in place for the install
# and removed after).
set -euo pipefail

find_nginx() {
    command -v nginx 2>/dev/null || { test -x /usr/sbin/nginx && echo /usr/sbin/nginx; }
}

if found=$(find_nginx); then
    echo "$found"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "ensure_nginx: nginx is not installed and apt-get needs root: run 'apt-get install nginx'" >&2
    exit 1
fi

POLICY=/usr/sbin/policy-rc.d
placed=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    placed=1
fi
cleanup() { if [ "$placed" -eq 1 ]; then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT

echo "ensure_nginx: installing the Debian nginx package (apt-get)" >&2
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >&2

find_nginx || { echo "ensure_nginx: nginx still not found after apt-get install" >&2; exit 1; }
