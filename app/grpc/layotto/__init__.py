"""Layotto's ``spec.proto.runtime.v1.Runtime`` service, for Layotto SDK users.

``runtime.proto``/``appcallback.proto`` are this project's own definitions of the services and messages
served, matching Layotto's wire format (package, method, message and field names and numbers; checked by
``tests/grpc/test_layotto_wire.py``); ``*_pb2*.py`` are generated from them (``make proto``) and committed.
"""
