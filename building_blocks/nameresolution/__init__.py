"""Name resolution: how a sidecar finds the sidecars of another app id (``nameresolution.*`` components)."""
