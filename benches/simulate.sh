#!/usr/bin/env bash
# Times `waymark simulate` on a generated script: USERS users (default 2,000), each identified
# and abandoning a cart 37 s after the previous one, through the cart journey (push, then email
# 4 h later). Prints the figure; asserts nothing.
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
start=$(date +%s.%N)
lines=$(target/release/waymark simulate --journeys "$work/journeys" --events "$work/events.jsonl" | wc -l)
end=$(date +%s.%N)
messages=$(( USERS * 2 ))
python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); print(f'waymark simulate: {sys.argv[3]} users ({int(sys.argv[3])*2} script lines), {sys.argv[4]} output lines, {sys.argv[5]} messages expected, in {t:.2f} s')" "$start" "$end" "$USERS" "$lines" "$messages"
