#!/bin/sh
# Install the Debian packages in deploy/debian-packages.txt that are missing.
# Usage: scripts/deps.sh [ROLE...]   (default: build test)
# Runs apt-get only when something is missing, so a ready machine pays nothing.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
list="$here/deploy/debian-packages.txt"
roles=${*:-build test}

missing=""
for pkg in $(awk -v roles="$roles" '
    /^[[:space:]]*(#|$)/ { next }
    {
        cmd = ""
        for (i = 2; i <= NF; i++) if ($i ~ /^cmd=/) cmd = substr($i, 5)
        n = split(roles, want, " ")
        for (i = 2; i <= NF; i++) for (j = 1; j <= n; j++)
            if ($i == want[j]) { print $1 "|" cmd; next }
    }' "$list"); do
    name=${pkg%%|*}
    cmd=${pkg#*|}
    if [ -n "$cmd" ] && command -v "$cmd" >/dev/null 2>&1; then
        continue
    fi
    if dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'install ok installed'; then
        continue
    fi
    missing="$missing $name"
done

if [ -z "$missing" ]; then
    exit 0
fi
echo "deps: installing$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
