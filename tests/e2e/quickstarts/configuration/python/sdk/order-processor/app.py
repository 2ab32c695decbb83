"""The configuration quickstart's order processor (Python SDK): ``get_configuration`` per key, then
``subscribe_configuration`` on both keys, updates printed by the handler, then ``unsubscribe_configuration``.

The quickstart stays subscribed for 20 seconds while someone changes the keys in Redis; here the app stays
subscribed until it has seen an update of every key (or ``SUBSCRIBED_SECONDS``, default 20, have passed), so a
test changes the keys once it sees the subscription id. ``CONFIGURATION_KEY_SUFFIX`` gives a test keys of its
own (``orderId1<suffix>``, ``orderId2<suffix>``)."""

import asyncio
import os
import threading

from dapr.clients import DaprClient
from dapr.clients.grpc._response import ConfigurationResponse

STORE_NAME = "configstore"
suffix = os.environ.get("CONFIGURATION_KEY_SUFFIX", "")
KEYS = [f"orderId1{suffix}", f"orderId2{suffix}"]
updated: set[str] = set()
all_updated = threading.Event()

with DaprClient() as client:
    for key in KEYS:
        response = client.get_configuration(store_name=STORE_NAME, keys=[key], config_metadata={})
        print(f"Configuration for {key} : {response.items[key].value}", flush=True)


def handler(subscription_id: str, response: ConfigurationResponse) -> None:
    for key in response.items:
        print(f"Configuration update {key} : {response.items[key].value}", flush=True)
        updated.add(key)
    if updated >= set(KEYS):
        all_updated.set()


async def subscribe_config() -> None:
    with DaprClient() as client:
        subscription_id = client.subscribe_configuration(
            store_name=STORE_NAME, keys=KEYS, handler=handler, config_metadata={}
        )
        print("Subscription ID is", subscription_id, flush=True)
        all_updated.wait(float(os.environ.get("SUBSCRIBED_SECONDS", "20")))

        if client.unsubscribe_configuration(store_name=STORE_NAME, id=subscription_id):
            print("App unsubscribed from config changes", flush=True)
        else:
            print("Error unsubscribing from config updates", flush=True)


asyncio.run(subscribe_config())
