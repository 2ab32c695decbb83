"""The pub/sub quickstart's FastAPI subscriber (Python SDK): ``DaprApp`` serves ``/dapr/subscribe`` and routes
the topic's events to the handler, whose pydantic model requires every CloudEvent field daprd sends
(``tracestate`` and ``traceid`` included), with ``data`` a JSON object.

Started as the quickstart says: ``uvicorn app:app --port <app port>``. ``ORDERS_TOPIC`` (default ``orders``)
lets a test subscribe to a topic of its own."""

import os

from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
dapr_app = DaprApp(app)


class CloudEvent(BaseModel):
    datacontenttype: str
    source: str
    topic: str
    pubsubname: str
    data: dict[str, object]
    id: str
    specversion: str
    tracestate: str
    type: str
    traceid: str


@dapr_app.subscribe(pubsub="orderpubsub", topic=os.environ.get("ORDERS_TOPIC", "orders"))
def orders_subscriber(event: CloudEvent) -> dict[str, bool]:
    print(f"Subscriber received : {event.data['orderId']}", flush=True)
    return {"success": True}
