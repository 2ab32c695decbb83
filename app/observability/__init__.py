"""Metrics, API logging and tracing, as daprd configures and names them.

``Observability.configure`` turns the flags and the ``--config`` file into what is switched on; what is off
costs nothing (no layer, no instrument, no import of OpenTelemetry). It is measured in two places only:
``front.ObservedFrontDoor`` around every API call (through the route table), and ``Layer``s around every
component call (``Block.operation``); the app channel, pub/sub deliveries and invocation hops call into it
through one small hook each.
"""
