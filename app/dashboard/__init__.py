"""``layotto dashboard``: one self-contained page over every sidecar running on this machine (``dapr dashboard``)."""
