"""An app written with the SDK's gRPC extension (``dapr.ext.grpc.App``), run by ``layotto run --app-protocol
grpc``: it records every delivery and invocation it gets as a JSON line in ``$RECORD`` and answers as the
test asks (a topic event whose data says ``"answer": "retry"`` gets RETRY the first time it is seen)."""

from __future__ import annotations

import json
import os
import threading

from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App, InvokeMethodRequest, InvokeMethodResponse

TOPIC = os.environ["TOPIC"]
RECORD = os.environ["RECORD"]
app = App()
_lock = threading.Lock()
_seen: set[str] = set()


def record(entry: dict[str, object]) -> None:
    with _lock, open(RECORD, "a") as out:
        out.write(json.dumps(entry) + "\n")


@app.subscribe(pubsub_name="pubsub", topic=TOPIC)  # type: ignore[untyped-decorator]
def orders(event: object) -> TopicEventResponse:
    data = json.loads(event.Data())  # type: ignore[attr-defined]
    event_id = event.EventID()  # type: ignore[attr-defined]
    first = event_id not in _seen
    _seen.add(event_id)
    record({"kind": "event", "id": event_id, "topic": event.Subject(), "data": data})  # type: ignore[attr-defined]
    if data.get("answer") == "retry" and first:
        return TopicEventResponse("retry")
    if data.get("answer") == "drop":
        return TopicEventResponse("drop")
    return TopicEventResponse("success")


@app.method(name="echo")  # type: ignore[untyped-decorator]
def echo(request: InvokeMethodRequest) -> InvokeMethodResponse:
    given = request.metadata.get("dapr-caller-app-id") or ""
    caller = str(given[0] if isinstance(given, list) else given)
    record({"kind": "invoke", "data": request.text(), "caller": caller})
    answer = {"echo": request.text(), "content_type": request.content_type, "caller": caller}
    return InvokeMethodResponse(json.dumps(answer).encode(), "application/json")


@app.method(name="fail")  # type: ignore[untyped-decorator]
def fail(request: InvokeMethodRequest) -> InvokeMethodResponse:
    raise ValueError("the app failed")


if __name__ == "__main__":
    app.register_health_check(lambda: None)
    app.run(int(os.environ["APP_PORT"]), "127.0.0.1")
