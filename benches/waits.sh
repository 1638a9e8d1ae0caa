#!/usr/bin/env bash
# How late `waymark dev`'s waits end under a burst of users: USERS users (150) enter a journey
# `order_delivered` → `wait: 30m` → push → `wait: 30m` → in-app at once, on a clock SPEED (3600)
# times real time. Prints how many outbox messages a real second the engine wrote while it worked
# through them, and how late each wait ended in virtual minutes (median and worst). Asserts
# nothing. BIN picks the binary (default: the release build, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-150}
SPEED=${SPEED:-3600}
BIN=${BIN:-target/release/waymark}
if [ "$BIN" = target/release/waymark ]; then
    cargo build --release -p waymark-cli >/dev/null 2>&1 || cargo build --release -p waymark-cli
fi
data=$(mktemp -d)
mkdir "$data/j"
cat >"$data/j/rate.yaml" <<'YAML'
id: rate_order
name: Rate your order
trigger: {event: order_delivered}
steps:
  - id: w
    wait: 30m
  - id: ask
    send: {push: {title: "Rate {{ event.restaurant }}", body: "How was it?"}}
  - id: w2
    wait: 30m
  - id: ask2
    send: {in_app: {title: "Rate {{ event.restaurant }}", body: "Still time to rate"}}
YAML
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" dev --journeys "$data/j" --port "$port" --data "$data/d" --speed "$SPEED" >"$data/dev.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    [ -f "$data/d/keys.json" ] && curl -s -o /dev/null "http://127.0.0.1:$port/v1/journeys" && break
    sleep 0.1
done
python3 - "$data/d" "$port" "$USERS" "$SPEED" <<'PY'
import base64, json, statistics, sys, time, urllib.request
from datetime import datetime, timedelta
data, port, users, speed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
keys = json.load(open(f"{data}/keys.json"))
url = f"http://127.0.0.1:{port}"
def call(method, path, body=None, admin=False):
    auth = ("Bearer " + keys["admin_key"]) if admin else \
        "Basic " + base64.b64encode((keys["write_key"] + ":").encode()).decode()
    req = urllib.request.Request(url + path, method=method, data=body and json.dumps(body).encode(),
                                 headers={"authorization": auth, "content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
# Every user identified with a push device, then delivered an order, 100 events a request.
events = []
for i in range(1, users + 1):
    events.append({"type": "identify", "userId": f"u{i}",
                   "traits": {"push_tokens": [{"platform": "fcm", "token": f"t{i}"}]}})
    events.append({"type": "track", "userId": f"u{i}", "event": "order_delivered",
                   "properties": {"restaurant": f"R{i}"}, "messageId": f"d{i}"})
for k in range(0, len(events), 100):
    call("POST", "/v1/batch", {"batch": events[k:k + 100]})
outbox = f"{data}/outbox.jsonl"
def lines():
    with open(outbox) as f:
        return [json.loads(l) for l in f if l.strip()]
# Wall-clock times at which the outbox held n pushes (the first wait's), to time the writing.
seen, deadline = [], time.time() + 600
while time.time() < deadline:
    got = lines()
    seen.append((time.time(), sum(1 for l in got if l["step"] == "ask")))
    if len(got) >= 2 * users:
        break
    time.sleep(0.01)
def ts(s): return datetime.fromisoformat(s.replace("Z", "+00:00"))
entered = {}
for i in range(1, users + 1):
    view = call("GET", f"/v1/users/u{i}", admin=True)
    for e in view.get("timeline", []):
        if e.get("what") == "entered" or e.get("type") == "entered" or e.get("kind") == "entered":
            entered[f"u{i}"] = ts(e["at"])
            break
push = {l["user_id"]: ts(l["at"]) for l in got if l["step"] == "ask"}
inapp = {l["user_id"]: ts(l["at"]) for l in got if l["step"] == "ask2"}
half = timedelta(minutes=30)
first = sorted((push[u] - entered[u] - half).total_seconds() / 60 for u in push if u in entered)
second = sorted((inapp[u] - push[u] - half).total_seconds() / 60 for u in inapp if u in push)
# Messages a real second while the first wait's wake-ups, all due within a few real
# milliseconds, were worked through: over the span in which their middle 80% was written.
lo, hi = int(0.1 * users), int(0.9 * users)
t_lo = next(t for t, n in seen if n >= lo)
t_hi = next(t for t, n in seen if n >= hi)
rate = (hi - lo) / (t_hi - t_lo) if t_hi > t_lo else float("inf")
def said(xs):
    return f"median {statistics.median(xs):.1f}, worst {max(xs):.1f}" if xs else "none"
print(f"{users} users at --speed {speed:g}: {len(got)} of {2*users} messages, "
      f"{rate:.0f} outbox messages a real second")
print(f"first 30m wait late by (virtual minutes): {said(first)} ({len(first)} users)")
print(f"second 30m wait late by (virtual minutes): {said(second)} ({len(second)} users)")
PY
