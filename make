#!/bin/sh
# The README's first command on a bare Debian 12, where even make is
# missing: installs the packages deploy/debian-packages.txt lists for
# building and testing (make among them), then runs make with the same
# arguments. Once make is there, `./make run` and `make run` are the same.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v make >/dev/null 2>&1; then
    sh "$here/scripts/deps.sh" build test
fi
exec make -C "$here" "$@"
