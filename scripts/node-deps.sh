#!/bin/sh
# Install the npm packages the tests use, from the committed lock files, only
# when node_modules is missing or older than its lock.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
for dir in "$here/tests/integration/node" "$here/tests/integration/contract" "$here/tests/proto" \
    "$here/clients/node"; do
    lock="$dir/package-lock.json"
    stamp="$dir/node_modules/.commsgate-installed"
    if [ -f "$stamp" ] && [ ! "$lock" -nt "$stamp" ]; then
        continue
    fi
    echo "node-deps: npm ci in ${dir#"$here"/}" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$stamp"
done
