"""The "orders" app of the two-app demo: plain Python (standard library only) against Dapr's HTTP API.

Every ``ORDER_INTERVAL`` seconds (``ORDERS`` times; 0 = forever) it takes an order id from the sequencer,
holds a lock on the order while it saves it to the state store, asks the "checkout" app to accept it
(service invocation through both sidecars), publishes it to the ``orders`` topic of ``$EVENTS_PUBSUB``
(``kafka-pubsub``) and an audit event on ``pubsub``. It subscribes to ``receipts`` (published by checkout)
and ``audit``, and to the ``discount`` configuration key, which it then changes (Layotto's configuration
save). ``GET /status`` shows what it saw.

    REDIS_HOST=localhost:6379 KAFKA_BROKERS=localhost:9092 layotto run --app-id orders --app-port 6001 \\
        -d component_specs/redis -d component_specs/kafka python examples/python/app.py

(with Redis only: ``EVENTS_PUBSUB=pubsub`` and no Kafka profile; ``examples/dapr.yaml`` runs both apps so).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

APP_PORT = int(os.environ.get("APP_PORT", "6001"))
DAPR = f"http://127.0.0.1:{os.environ.get('DAPR_HTTP_PORT', '3500')}"
ORDERS = int(os.environ.get("ORDERS", "0"))
INTERVAL = float(os.environ.get("ORDER_INTERVAL", "2"))
STATE, LOCKS, SEQUENCER, CONFIG = "statestore", "lockstore", "sequencer", "configstore"
# between the apps: Kafka in the compose stack, or any pub/sub both sidecars share; the audit trail: Redis Streams
EVENTS = os.environ.get("EVENTS_PUBSUB", "kafka-pubsub")
AUDIT = "pubsub"

seen: dict[str, Any] = {"orders": [], "accepted": [], "receipts": [], "audits": [], "discounts": [], "errors": []}
lock = threading.Lock()


def record(kind: str, value: Any) -> None:
    with lock:
        seen[kind].append(value)
    print(f"orders: {kind} {json.dumps(value)}", flush=True)


def dapr(method: str, path: str, body: Any = None) -> Any:
    """One call to the sidecar; the decoded JSON answer (None for an empty one)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(DAPR + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


class Handler(BaseHTTPRequestHandler):
    """What the sidecar calls: subscriptions, deliveries, configuration updates; and /status for people."""

    def _answer(self, status: int, body: Any = None) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path == "/dapr/subscribe":
            self._answer(
                200,
                [
                    {"pubsubname": EVENTS, "topic": "receipts", "route": "/receipts"},
                    {"pubsubname": AUDIT, "topic": "audit", "route": "/audit"},
                ],
            )
        elif self.path == "/status":
            with lock:
                self._answer(200, seen)
        elif self.path == "/healthz":
            self._answer(200, {"status": "ok"})
        else:
            self._answer(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"null")
        if self.path == "/receipts":
            record("receipts", body["data"])  # a CloudEvent: the order is its data
        elif self.path == "/audit":
            record("audits", body["data"])
        elif self.path.startswith(f"/configuration/{CONFIG}/"):
            record("discounts", {key: item["value"] for key, item in body["items"].items()})
        else:
            self._answer(404)
            return
        self._answer(200, {"status": "SUCCESS"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


def wait_for_sidecar() -> None:
    while True:
        try:
            dapr("GET", "/v1.0/healthz/outbound")
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)


def place_order() -> None:
    order_id = dapr("POST", f"/v1.0-alpha1/sequencer/{SEQUENCER}", {"key": "order"})["nextId"]
    order = {"orderId": order_id, "item": "coffee", "quantity": 1}
    owner = f"orders-{os.getpid()}"
    resource = f"order-{order_id}"
    held = dapr(
        "POST", f"/v1.0-alpha1/lock/{LOCKS}", {"resourceId": resource, "lockOwner": owner, "expiryInSeconds": 30}
    )
    if not held["success"]:
        raise RuntimeError(f"order {order_id} is locked by another owner")
    try:
        dapr("POST", f"/v1.0/state/{STATE}", [{"key": resource, "value": order}])
        record("accepted", dapr("POST", "/v1.0/invoke/checkout/method/checkout", order))
        dapr("POST", f"/v1.0/publish/{EVENTS}/orders", order)
        dapr("POST", f"/v1.0/publish/{AUDIT}/audit", {"orderId": order_id, "event": "placed"})
    finally:
        dapr("POST", f"/v1.0-alpha1/unlock/{LOCKS}", {"resourceId": resource, "lockOwner": owner})
    record("orders", order_id)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # docker stop, layotto stop: a clean exit
    server = ThreadingHTTPServer(("127.0.0.1", APP_PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wait_for_sidecar()
    subscription = dapr("GET", f"/v1.0/configuration/{CONFIG}/subscribe?key=discount")
    print(f"orders: subscribed to configuration as {subscription['id']}", flush=True)
    dapr("POST", f"/v1.0-alpha1/configuration/{CONFIG}", {"items": [{"key": "discount", "value": "10%"}]})
    placed = 0
    while ORDERS == 0 or placed < ORDERS:
        try:
            place_order()
            placed += 1
        except (urllib.error.URLError, OSError, RuntimeError, KeyError) as exc:
            record("errors", str(exc))  # e.g. checkout not up yet; the next round tries again
        time.sleep(INTERVAL)
    while True:  # keep serving deliveries until stopped
        time.sleep(3600)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
