#!/usr/bin/env bash
# Runs a local moto server for the integration tests.
#   infra/moto.sh start   stops any leftover server, starts one on a free loopback
#                         port, waits until it answers, writes target/moto.port
#                         and target/moto.pid (its log goes to target/moto.log)
#   infra/moto.sh stop    stops the server named in target/moto.pid
set -euo pipefail

cd "$(dirname "$0")/.."
pid_file=target/moto.pid
port_file=target/moto.port
log_file=target/moto.log

stop() {
    if [[ -f $pid_file ]]; then
        local pid
        pid=$(cat "$pid_file")
        # Only a process that is really our moto_server: the pid may have been reused.
        if kill -0 "$pid" 2>/dev/null && grep -q moto_server "/proc/$pid/cmdline" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            echo "moto: stopped pid $pid"
        fi
        rm -f "$pid_file"
    fi
    rm -f "$port_file"
}

start() {
    stop
    mkdir -p target
    local port
    port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # Its own session, output to a file: nothing holds the caller's terminal or pipe.
    setsid .venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$log_file" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$pid_file"

    local url="http://127.0.0.1:$port/moto-api/"
    for _ in $(seq 200); do
        if .venv/bin/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$url" 2>/dev/null; then
            echo "$port" >"$port_file"
            echo "moto: pid $pid listening on http://127.0.0.1:$port"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "moto: server exited; its log:" >&2
            cat "$log_file" >&2
            rm -f "$pid_file"
            return 1
        fi
        sleep 0.1
    done
    echo "moto: no answer from $url after 20 s; its log:" >&2
    cat "$log_file" >&2
    stop
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
