#!/usr/bin/env bash
# Load test of `waymark dev` over HTTP, from a second process (wrk): events per second through
# /v1/track (one event a request) and /v1/batch (100 events a request), and the server's peak memory.
# Prints figures; asserts nothing. Needs wrk (installed from Debian's packages if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian package)"
    (apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }) >/dev/null
fi
cargo build --release -p waymark-cli >/dev/null 2>&1 || cargo build --release -p waymark-cli
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/waymark dev --journeys examples/journeys --port "$port" --data "$data" --speed 1 >"$data/dev.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    [ -f "$data/keys.json" ] && curl -s -o /dev/null "http://127.0.0.1:$port/v1/journeys" && break
    sleep 0.1
done
key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["write_key"])' "$data/keys.json")
auth=$(printf '%s:' "$key" | base64 -w0)

cat >"$data/track.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic $auth"
counter = 0
request = function()
  counter = counter + 1
  local body = '{"userId":"load-' .. (counter % 5000) .. '","event":"page_viewed","properties":{"path":"/p/' .. counter .. '"}}'
  return wrk.format(nil, "/v1/track", nil, body)
end
LUA
cat >"$data/batch.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic $auth"
counter = 0
request = function()
  counter = counter + 1
  local items = {}
  for i = 1, 100 do
    items[i] = '{"type":"track","userId":"load-' .. ((counter * 100 + i) % 5000) .. '","event":"page_viewed","properties":{"i":' .. i .. '}}'
  end
  return wrk.format(nil, "/v1/batch", nil, '{"batch":[' .. table.concat(items, ",") .. ']}')
end
LUA

rate() { awk '/Requests\/sec/ { print $2 }'; }
echo "waymark dev load test: $(nproc) cores, wrk -c$CONNECTIONS -t2 -d$DURATION, server and wrk on the same machine"
track=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$data/track.lua" "http://127.0.0.1:$port" | tee "$data/track.out" | rate)
batch=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$data/batch.lua" "http://127.0.0.1:$port" | tee "$data/batch.out" | rate)
errors=$(grep -h "Non-2xx" "$data/track.out" "$data/batch.out" || true)
peak=$(awk '/VmHWM/ { print $2 " " $3 }' "/proc/$pid/status")
printf 'POST /v1/track: %.0f events/s (one event a request)\n' "$track"
printf 'POST /v1/batch: %.0f events/s (100 events a request, %.0f requests/s)\n' "$(awk -v b="$batch" 'BEGIN { print b * 100 }')" "$batch"
echo "peak server memory (VmHWM): $peak"
[ -z "$errors" ] || echo "non-2xx responses: $errors"
