#!/usr/bin/env bash
# Times `waymark simulate` on a generated script: USERS users (default 2,000), each identified
# and abandoning a cart 37 s after the previous one, through the cart journey (push, then email
# 4 h later). Prints the time and the peak memory; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-2000}
cargo build --release -p waymark-cli >/dev/null 2>&1 || cargo build --release -p waymark-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/journeys"
cp examples/journeys/cart_abandonment.yaml "$work/journeys/"
python3 - "$USERS" >"$work/events.jsonl" <<'PY'
import datetime, json, sys
t0 = datetime.datetime(2026, 12, 1, 10, 0, 0)
for i in range(int(sys.argv[1])):
    at = (t0 + datetime.timedelta(seconds=37 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(json.dumps({"at": at, "type": "identify", "userId": f"u{i}",
                      "traits": {"email": f"u{i}@example.com",
                                 "push_tokens": [{"platform": "fcm", "token": f"t{i}"}]}}))
    print(json.dumps({"at": at, "type": "track", "userId": f"u{i}", "event": "cart_abandoned",
                      "messageId": f"cart-{i}",
                      "properties": {"cart_id": f"c{i}", "total": 10, "currency": "EUR",
                                     "items": [{"name": "Socks", "price": 10, "stock": 2}]}}))
PY
# Timed, and its peak memory read from the kernel's accounting of the finished child
# (ru_maxrss, in KB), by a small Python parent started before the clock.
python3 - "$work/measured" target/release/waymark simulate --journeys "$work/journeys" \
    --events "$work/events.jsonl" >"$work/out.jsonl" <<'PY'
import resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[2:], check=True)
took = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[1], "w").write(f"{took} {peak}")
PY
python3 - "$USERS" "$work/out.jsonl" $(cat "$work/measured") <<'PY'
import json, sys
users, out, took, peak = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
lines = [json.loads(l) for l in open(out)]
messages = sum(1 for l in lines if l.get("type") == "message")
print(f"waymark simulate: {users} users ({users * 2} script lines), {len(lines)} output lines "
      f"of which {messages} messages, in {took:.2f} s, peak memory {peak} kB")
PY
