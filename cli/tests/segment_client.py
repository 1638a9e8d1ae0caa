"""Segment's own Python library (segment-analytics-python==2.4.0) against a running `waymark dev`.

Run by cli/tests/segment.rs. Env: WAYMARK_URL, WAYMARK_WRITE_KEY, WAYMARK_ADMIN_KEY. Sends every
call type in three modes (background batches, gzip, sync_mode), then reads each user's profile
back with the admin key. Exits 1 on any library error or a profile still incomplete after 15 s."""
import json, os, sys, time, urllib.error, urllib.request, uuid
from segment.analytics.client import Client

URL, KEY, ADMIN = (os.environ[f'WAYMARK_{k}'] for k in ('URL', 'WRITE_KEY', 'ADMIN_KEY'))
errors = []
# What each call leaves in the history (the test's journeys name these events).
EVENTS = ['cart_abandoned', 'page_viewed', 'screen_viewed', 'group_joined']
ITEMS = [{'name': 'Trail shoes', 'price': 79.9, 'stock': 3}]


def send(uid, mode, **options):
    def on_error(e, batch):
        errors.append(f'{mode}: {e!r} on a batch of {[m.get("type") for m in batch]}')
    c = Client(KEY, host=URL, on_error=on_error, max_retries=2, **options)
    calls = [
        ('identify', lambda: c.identify(uid, {
            'email': f'{uid}@example.com', 'phone': '+1 (415) 555-0123', 'timezone': 'Europe/Paris',
            'push_tokens': [{'platform': 'fcm', 'token': f'fcm-{uid}'}]})),
        ('track', lambda: c.track(uid, 'cart_abandoned', {'total': 89.9, 'currency': 'EUR', 'items': ITEMS},
                                  context={'locale': 'fr-FR'}, integrations={'All': True})),
        ('page', lambda: c.page(uid, 'Docs', 'Getting started', {'url': 'https://example.com/docs'})),
        ('screen', lambda: c.screen(uid, 'Onboarding', 'Step 1', {'variant': 'a'})),
        ('alias', lambda: c.alias(f'legacy-{uid}', uid)),
        ('group', lambda: c.group(uid, 'acme', {'name': 'Acme', 'plan': 'enterprise'})),
    ]
    for name, call in calls:
        if name == 'group' and c.consumers:
            c.flush()  # group in a batch of its own, so a refusal names only it
        try:  # sync_mode raises (APIError) where the background thread calls on_error
            call()
        except Exception as e:
            errors.append(f'{mode} {name}: {e!r}')
    if c.consumers:  # Client.join() fails in sync_mode in 2.4.0 (consumers is None)
        c.flush()
        c.join()


def user(uid):
    req = urllib.request.Request(f'{URL.rstrip("/")}/v1/users/{uid}', headers={'Authorization': f'Bearer {ADMIN}'})
    try:
        return json.load(urllib.request.urlopen(req, timeout=10))
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {}
        sys.exit(f'GET /v1/users/{uid}: {e.code} {e.read()[:300]!r}')


def missing(uid, u):
    p = u.get('profile', {})
    t = p.get('traits', {})
    entered = {e['journey']: e['trigger'].get('properties', {}) for e in u.get('enrollments', [])}
    want = {'traits': (t.get('email'), t.get('phone'), t.get('timezone'))
            == (f'{uid}@example.com', '+14155550123', 'Europe/Paris'),
            'device': any(d.get('token') == f'fcm-{uid}' for d in p.get('devices', [])),
            'alias id': f'legacy-{uid}' in p.get('anonymous_ids', []),
            'cart items': entered.get('on_cart_abandoned', {}).get('items') == ITEMS,
            # The journey's `where` asks for the group's id and traits as the event's properties.
            'group_joined enrollment': 'on_group_joined' in entered}
    want.update({f'history {e}': e in p.get('history', {}) for e in EVENTS})
    return [k for k, ok in want.items() if not ok]


users = [f'compat-py-{uuid.uuid4().hex[:8]}-{mode}' for mode in ('batch', 'gzip', 'sync')]
send(users[0], 'default')  # a background thread posting /v1/batch
send(users[1], 'gzip', gzip=True)
send(users[2], 'sync_mode', gzip=True, sync_mode=True)  # one request per call

deadline = time.monotonic() + 15
for uid in users:
    while (lack := missing(uid, u := user(uid))) and time.monotonic() < deadline:
        time.sleep(0.2)
    if lack:
        errors.append(f'{uid}: profile lacks {", ".join(lack)}: {json.dumps(u)[:600]}')

for e in errors:
    print('ERROR', e, file=sys.stderr)
print(f'{len(users)} users, {len(errors)} error(s)')
sys.exit(1 if errors else 0)
