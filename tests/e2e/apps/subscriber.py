"""A plain FastAPI subscriber app, as a Dapr user writes one: ``/dapr/subscribe`` plus a route.

Environment: PORT, PUBSUB, TOPIC, OUT (file that receives one line per delivery: the event's data),
DELAY_MS (time spent per message), PROGRAMMATIC=0 to leave subscribing to a YAML ``kind: Subscription``.
"""

from __future__ import annotations

import asyncio
import os

import uvicorn
from fastapi import FastAPI, Request

app = FastAPI()
OUT = os.environ["OUT"]
DELAY = int(os.environ.get("DELAY_MS", "0")) / 1000


@app.get("/dapr/subscribe")
def subscribe() -> list[dict[str, str]]:
    if os.environ.get("PROGRAMMATIC") == "0":
        return []
    return [{"pubsubname": os.environ.get("PUBSUB", "pubsub"), "topic": os.environ["TOPIC"], "route": "/messages"}]


@app.post("/messages")
async def messages(request: Request) -> dict[str, str]:
    event = await request.json()
    if DELAY:
        await asyncio.sleep(DELAY)
    with open(OUT, "a") as out:
        out.write(f"{event['data']}\n")
    return {"status": "SUCCESS"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
