"""The secrets management quickstart's order processor (Python SDK): one secret read with ``get_secret`` from
the local file secret store, whose ``secrets.json`` is found from the working directory."""

from dapr.clients import DaprClient

SECRET_STORE = "localsecretstore"
SECRET_NAME = "secret"

with DaprClient() as client:
    fetched = client.get_secret(store_name=SECRET_STORE, key=SECRET_NAME)
    print(f"Fetched Secret: {fetched.secret}", flush=True)
