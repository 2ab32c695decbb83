"""The pub/sub quickstart's publisher (Python SDK): orders published as JSON with ``publish_event``.

``ORDERS_TOPIC``, ``FIRST_ORDER_ID``, ``ORDER_COUNT`` and ``ORDER_PAUSE`` let a test publish on a topic of its
own, numbers of its own and without the quickstart's one-second pause (defaults: the quickstart's)."""

import json
import os
import time

from dapr.clients import DaprClient

topic = os.environ.get("ORDERS_TOPIC", "orders")
first = int(os.environ.get("FIRST_ORDER_ID", "1"))
count = int(os.environ.get("ORDER_COUNT", "9"))
pause = float(os.environ.get("ORDER_PAUSE", "1"))

with DaprClient() as client:
    for number in range(first, first + count):
        order = {"orderId": number}
        client.publish_event(
            pubsub_name="orderpubsub",
            topic_name=topic,
            data=json.dumps(order),
            data_content_type="application/json",
        )
        print("Published data: " + json.dumps(order), flush=True)
        time.sleep(pause)
