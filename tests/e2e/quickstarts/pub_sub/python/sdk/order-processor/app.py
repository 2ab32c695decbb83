"""The pub/sub quickstart's Flask subscriber (Python SDK variant): ``/dapr/subscribe`` lists the subscription
with a route relative to the app (``orders``), and each delivery is read with the CloudEvents SDK.

The quickstart reads events with cloudevents 2 (``cloudevents.core.bindings.http.from_http_event``); this
project keeps cloudevents 1 (the Dapr SDK's ``dapr.ext.grpc`` imports ``cloudevents.sdk``, gone in 2), so the
same reading is done with cloudevents 1's ``from_http``. ``ORDERS_TOPIC`` (default ``orders``) lets a test
subscribe to a topic of its own; the port is ``APP_PORT``, which the sidecar gives its app."""

import json
import os

from cloudevents.http import from_http
from flask import Flask, Response, jsonify, request

app = Flask(__name__)

app_port = os.getenv("APP_PORT", "6002")
topic = os.getenv("ORDERS_TOPIC", "orders")


@app.route("/dapr/subscribe", methods=["GET"])
def subscribe() -> Response:
    subscriptions = [{"pubsubname": "orderpubsub", "topic": topic, "route": "orders"}]
    print("Dapr pub/sub is subscribed to: " + json.dumps(subscriptions), flush=True)
    return jsonify(subscriptions)


@app.route("/orders", methods=["POST"])
def orders_subscriber() -> tuple[str, int, dict[str, str]]:
    event = from_http(dict(request.headers), request.get_data())
    print(f"Subscriber received : {event.data['orderId']}", flush=True)
    return json.dumps({"success": True}), 200, {"ContentType": "application/json"}


app.run(port=int(app_port))
