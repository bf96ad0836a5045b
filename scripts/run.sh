#!/bin/sh
# `make run`: a local redis-server, the Twilio simulator when no Twilio
# credentials are in the environment, and commsgate in the foreground.
# Ctrl-C (or SIGTERM) stops everything this script started.
set -eu
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
case $build in
    /*) bin="$build/bin" ;; # an absolute build directory (the README test)
    *) bin="$here/$build/bin" ;;
esac
state=${COMMSGATE_RUN_DIR:-$here/.run} # logs and redis.url
mkdir -p "$state"

say() { printf 'make run: %s\n' "$*" >&2; }

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pids=""
cleanup() {
    trap - INT TERM EXIT
    for pid in $pids; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $pids; do
        wait "$pid" 2>/dev/null || true
    done
    say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Redis: our own, always, on a free port: never a Redis someone else runs
# (Debian's redis-server package starts one on 6379). Nothing is persisted.
if [ -z "${REDIS_URL:-}" ]; then
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$state" --logfile "$state/redis.log" &
    redis_pid=$!
    pids="$pids $redis_pid"
    tries=0
    until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do
        tries=$((tries + 1))
        if ! kill -0 "$redis_pid" 2>/dev/null || [ "$tries" -gt 50 ]; then
            say "redis-server did not start on 127.0.0.1:$redis_port; its log, .run/redis.log:"
            tail -n 5 "$state/redis.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    export REDIS_URL="redis://127.0.0.1:$redis_port/0"
    echo "$REDIS_URL" > "$state/redis.url" # for redis-cli -u in another terminal
    say "redis-server on 127.0.0.1:$redis_port, ours alone (log: .run/redis.log)"
fi

# Twilio: real credentials if the environment has them, else the simulator.
if [ -z "${TWILIO_ACCOUNT_SID:-}" ]; then
    sim_port=${TWILIO_SIM_PORT:-$(free_port)}
    export TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000
    export TWILIO_AUTH_TOKEN=simulator-auth-token
    export TWILIO_PHONE_NUMBER=${TWILIO_PHONE_NUMBER:-+15005550006}
    export TWILIO_WHATSAPP_NUMBER=${TWILIO_WHATSAPP_NUMBER:-+15005550006}
    export TWILIO_VERIFY_SERVICE_SID=${TWILIO_VERIFY_SERVICE_SID:-VA00000000000000000000000000000000}
    export TWILIO_API_BASE_URL="http://127.0.0.1:$sim_port"
    export TWILIO_VERIFY_BASE_URL="http://127.0.0.1:$sim_port"
    "$bin/twilio-sim" --listen "127.0.0.1:$sim_port" &
    pids="$pids $!"
    say "no TWILIO_ACCOUNT_SID in the environment: using the bundled Twilio simulator on 127.0.0.1:$sim_port"
fi

export COMMSGATE_GRPC_ADDR=${COMMSGATE_GRPC_ADDR:-127.0.0.1:50051}
export COMMSGATE_HTTP_ADDR=${COMMSGATE_HTTP_ADDR:-127.0.0.1:8080}
# As in the Dockerfile: GnuTLS, loaded by libcurl but unused, skips its
# start-up work (1 MB of memory).
export GNUTLS_NO_IMPLICIT_INIT=1
say "commsgate on $COMMSGATE_GRPC_ADDR (gRPC), webhooks on $COMMSGATE_HTTP_ADDR; Ctrl-C stops everything"
say "try it: $build/bin/commsctl health   (commsctl --help lists the commands)"
"$bin/commsgate" &
daemon=$!
pids="$daemon $pids"
# The daemon ending (on its own, or from Ctrl-C reaching the whole process
# group) ends the run; cleanup then stops redis and the simulator.
set +e
wait "$daemon"
rc=$?
set -e
pids=$(echo "$pids" | sed "s/^$daemon //")
exit "$rc"
