"""The state management quickstart's order processor (Python SDK): each order is saved, read back and deleted
through ``DaprClient()``, which finds the sidecar's gRPC API from ``DAPR_GRPC_PORT``.

As in the quickstart the orders are numbered from 1, one a second; ``FIRST_ORDER_ID``, ``ORDER_COUNT`` and
``ORDER_PAUSE`` let a test use numbers of its own, fewer orders and no pause."""

import os
import time

from dapr.clients import DaprClient

STORE_NAME = "statestore"
first = int(os.environ.get("FIRST_ORDER_ID", "1"))
count = int(os.environ.get("ORDER_COUNT", "99"))
pause = float(os.environ.get("ORDER_PAUSE", "1"))

with DaprClient() as client:
    for number in range(first, first + count):
        order_id = str(number)
        order = {"orderId": order_id}

        client.save_state(STORE_NAME, order_id, str(order))
        print(f"Saving Order: {order}", flush=True)

        stored = client.get_state(STORE_NAME, order_id)
        print(f"Result after get: {stored.data}", flush=True)

        client.delete_state(store_name=STORE_NAME, key=order_id)
        print(f"Deleting Order: {order}", flush=True)
        time.sleep(pause)
