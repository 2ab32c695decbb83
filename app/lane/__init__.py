"""The protocol lane: the hot routes served on uvicorn's httptools protocol, below the ASGI app.

``app.lane.protocol.LaneProtocol`` is the API port's (and the internal listener's) protocol class. When a
request's head is complete it asks its ``Lane`` (``app.lane.api``, ``app.lane.hop``) whether it serves the
request; what the lane does not claim runs through the ASGI app exactly as before, on the same connection.
"""

from __future__ import annotations
