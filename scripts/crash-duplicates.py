#!/usr/bin/env python3
"""Kills `acp-local` (durable store) with SIGKILL under load, restarts it on the same data
directory, and counts what a crash costs at a webhook receiver: events lost (accepted by the
API, never delivered) and events sent twice (by webhook-id).

    scripts/crash-duplicates.py target/release/acp-local [--kills 3] [--every 3.5] [--buyers 10]
        [--receiver-takes 0] [--load-for 0]

Buyers create checkout sessions back to back (one event each) on keep-alive connections, and
carry on across restarts. With --load-for N they stop after N seconds and the kills then fall
while the backlog drains with no API call coming; --receiver-takes makes the receiver hold each
delivery that long, so a backlog builds up. Standard library only.
"""
import argparse
import collections
import http.client
import http.server
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid

KEY = "sk_crash"

parser = argparse.ArgumentParser()
parser.add_argument("binary")
parser.add_argument("--kills", type=int, default=3)
parser.add_argument("--every", type=float, default=3.5, help="seconds between kills")
parser.add_argument("--buyers", type=int, default=10)
parser.add_argument("--receiver-takes", type=float, default=0.0, help="seconds per delivery")
parser.add_argument("--load-for", type=float, default=0.0, help="stop the buyers after this long")
parser.add_argument("--port", type=int, default=8098)
args = parser.parse_args()

lock = threading.Lock()
arrivals = collections.Counter()  # webhook-id -> copies received
sessions_delivered = set()


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if args.receiver_takes:
            time.sleep(args.receiver_takes)
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        with lock:
            arrivals[self.headers.get("webhook-id")] += 1
            if event.get("type") == "checkout.session.created":
                sessions_delivered.add(event.get("session_id"))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
receiver.daemon_threads = True
# A delivery cut off by the kill is expected: no traceback for it.
receiver.handle_error = lambda *_: None
threading.Thread(target=receiver.serve_forever, daemon=True).start()

data_dir = tempfile.mkdtemp(prefix="acp-crash-")
env = dict(os.environ, ACP_ALLOW_LOOPBACK_WEBHOOKS="1", ACP_DEMO_API_KEY=KEY, RUST_LOG="warn",
           DISPATCHER_MERCHANT_RATE_LIMIT="1000000")
log = open(os.path.join(data_dir, "acp-local.log"), "a")


def start():
    process = subprocess.Popen([args.binary, "--listen", f"127.0.0.1:{args.port}", "--data-dir", data_dir],
                               env=env, stdout=log, stderr=log)
    for _ in range(500):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=1)
            conn.request("GET", "/")
            conn.getresponse().read()
            return process
        except OSError:
            time.sleep(0.02)
    raise SystemExit("acp-local did not start")


def call(conn, path, body):
    conn.request("POST", path, body=json.dumps(body), headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json",
        "Idempotency-Key": str(uuid.uuid4()), "API-Version": "2026-04-17"})
    response = conn.getresponse()
    return response.status, response.read()


process = start()
status, body = call(http.client.HTTPConnection("127.0.0.1", args.port, timeout=5), "/webhook_endpoints",
                    {"url": f"http://127.0.0.1:{receiver.server_address[1]}/hook"})
assert status == 201, (status, body)

accepted = []
stop = threading.Event()


def buyer():
    conn = None
    while not stop.is_set():
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", args.port, timeout=5)
            status, body = call(conn, "/checkout_sessions",
                                {"currency": "usd", "line_items": [{"id": "test_1", "quantity": 1}]})
            if status == 201:
                with lock:
                    accepted.append(json.loads(body)["id"])
        except (OSError, http.client.HTTPException):
            # The process died under the call: its session may or may not have been accepted.
            conn = None
            time.sleep(0.02)


buyers = [threading.Thread(target=buyer) for _ in range(args.buyers)]
for b in buyers:
    b.start()
if args.load_for:
    time.sleep(args.load_for)
    stop.set()
    for b in buyers:
        b.join()
    with lock:
        print(f"buyers stopped: {len(accepted)} accepted, {len(arrivals)} delivered", flush=True)
for _ in range(args.kills):
    time.sleep(args.every)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process = start()
time.sleep(args.every)
stop.set()
for b in buyers:
    b.join()
# Until nothing more arrives.
seen = -1
while True:
    time.sleep(2)
    with lock:
        now = sum(arrivals.values())
    if now == seen:
        break
    seen = now
process.send_signal(signal.SIGTERM)
process.wait()
shutil.rmtree(data_dir, ignore_errors=True)
with lock:
    lost = sum(1 for s in accepted if s not in sessions_delivered)
    twice = sum(n - 1 for n in arrivals.values())
    distinct = len(arrivals)
print(f"{args.kills} kills: {len(accepted)} events accepted, {distinct} delivered, lost {lost}, "
      f"sent twice {twice} ({100.0 * twice / max(distinct, 1):.2f} %)")
