"""The gRPC front: Dapr's ``dapr.proto.runtime.v1.Dapr`` service and Layotto's ``spec.proto.runtime.v1.Runtime``.

Same shape as the HTTP front: each servicer decodes protobuf into the block's typed requests, calls the
same block the HTTP routes call, and encodes the result; errors go through the one table (``app.errors``).
Imported only when the gRPC API is served: grpcio and the generated stubs cost start-up time.
"""
