"""Our Layotto definitions (``app/grpc/layotto/*.proto``) against Layotto's wire format: package, services,
methods (with their streaming kinds), messages, field names, numbers and types must be Layotto's, or its SDKs
would talk past this sidecar. The facts below were read from Layotto's ``spec/proto/runtime/v1/runtime.proto``
and ``appcallback.proto`` (mosn/layotto at f9681450) by compiling them; they are data, not Layotto's files.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2

from app.grpc.layotto import appcallback_pb2, runtime_pb2

PACKAGE = "spec.proto.runtime.v1"

MESSAGES = {
    "BulkStateItem": {
        "data": (2, "bytes"),
        "error": (4, "string"),
        "etag": (3, "string"),
        "key": (1, "string"),
        "metadata": (5, "map"),
    },
    "CommonInvokeRequest": {
        "content_type": (3, "string"),
        "data": (2, "message:Any"),
        "http_extension": (4, "message:HTTPExtension"),
        "method": (1, "string"),
    },
    "ConfigurationItem": {
        "content": (2, "string"),
        "group": (3, "string"),
        "key": (1, "string"),
        "label": (4, "string"),
        "metadata": (6, "map"),
        "tags": (5, "map"),
    },
    "DelFileRequest": {"request": (1, "message:FileRequest")},
    "DeleteBulkStateRequest": {"states": (2, "repeated message:StateItem"), "store_name": (1, "string")},
    "DeleteConfigurationRequest": {
        "app_id": (2, "string"),
        "group": (3, "string"),
        "keys": (5, "repeated string"),
        "label": (4, "string"),
        "metadata": (6, "map"),
        "store_name": (1, "string"),
    },
    "DeleteStateRequest": {
        "etag": (3, "message:Etag"),
        "key": (2, "string"),
        "metadata": (5, "map"),
        "options": (4, "message:StateOptions"),
        "store_name": (1, "string"),
    },
    "Etag": {"value": (1, "string")},
    "ExecuteStateTransactionRequest": {
        "metadata": (3, "map"),
        "operations": (2, "repeated message:TransactionalStateOperation"),
        "storeName": (1, "string"),
    },
    "FileInfo": {
        "file_name": (1, "string"),
        "last_modified": (3, "string"),
        "metadata": (4, "map"),
        "size": (2, "int64"),
    },
    "FileMeta": {"metadata": (1, "map")},
    "FileMetaValue": {"value": (1, "repeated string")},
    "FileRequest": {"metadata": (3, "map"), "name": (2, "string"), "store_name": (1, "string")},
    "GetBulkSecretRequest": {"metadata": (2, "map"), "store_name": (1, "string")},
    "GetBulkSecretResponse": {"data": (1, "map")},
    "GetBulkStateRequest": {
        "keys": (2, "repeated string"),
        "metadata": (4, "map"),
        "parallelism": (3, "int32"),
        "store_name": (1, "string"),
    },
    "GetBulkStateResponse": {"items": (1, "repeated message:BulkStateItem")},
    "GetConfigurationRequest": {
        "app_id": (2, "string"),
        "group": (3, "string"),
        "keys": (5, "repeated string"),
        "label": (4, "string"),
        "metadata": (6, "map"),
        "store_name": (1, "string"),
        "subscribe_update": (7, "bool"),
    },
    "GetConfigurationResponse": {"items": (1, "repeated message:ConfigurationItem")},
    "GetFileMetaRequest": {"request": (1, "message:FileRequest")},
    "GetFileMetaResponse": {"last_modified": (2, "string"), "response": (3, "message:FileMeta"), "size": (1, "int64")},
    "GetFileRequest": {"metadata": (3, "map"), "name": (2, "string"), "store_name": (1, "string")},
    "GetFileResponse": {"data": (1, "bytes")},
    "GetNextIdRequest": {
        "key": (2, "string"),
        "metadata": (4, "map"),
        "options": (3, "message:SequencerOptions"),
        "store_name": (1, "string"),
    },
    "GetNextIdResponse": {"next_id": (1, "int64")},
    "GetSecretRequest": {"key": (2, "string"), "metadata": (3, "map"), "store_name": (1, "string")},
    "GetSecretResponse": {"data": (1, "map")},
    "GetStateRequest": {
        "consistency": (3, "enum:StateConsistency"),
        "key": (2, "string"),
        "metadata": (4, "map"),
        "store_name": (1, "string"),
    },
    "GetStateResponse": {"data": (1, "bytes"), "etag": (2, "string"), "metadata": (3, "map")},
    "HTTPExtension": {"querystring": (2, "string"), "verb": (1, "enum:Verb")},
    "InvokeBindingRequest": {
        "data": (2, "bytes"),
        "metadata": (3, "map"),
        "name": (1, "string"),
        "operation": (4, "string"),
    },
    "InvokeBindingResponse": {"data": (1, "bytes"), "metadata": (2, "map")},
    "InvokeResponse": {"content_type": (2, "string"), "data": (1, "message:Any")},
    "InvokeServiceRequest": {"id": (1, "string"), "message": (3, "message:CommonInvokeRequest")},
    "ListFileRequest": {"marker": (3, "string"), "page_size": (2, "int32"), "request": (1, "message:FileRequest")},
    "ListFileResp": {"files": (1, "repeated message:FileInfo"), "is_truncated": (3, "bool"), "marker": (2, "string")},
    "ListTopicSubscriptionsResponse": {"subscriptions": (1, "repeated message:TopicSubscription")},
    "LockKeepAliveRequest": {
        "expire": (4, "int32"),
        "lock_owner": (3, "string"),
        "resource_id": (2, "string"),
        "store_name": (1, "string"),
    },
    "LockKeepAliveResponse": {"status": (1, "enum:Status")},
    "PublishEventRequest": {
        "data": (3, "bytes"),
        "data_content_type": (4, "string"),
        "metadata": (5, "map"),
        "pubsub_name": (1, "string"),
        "topic": (2, "string"),
    },
    "PutFileRequest": {
        "data": (3, "bytes"),
        "metadata": (4, "map"),
        "name": (2, "string"),
        "store_name": (1, "string"),
    },
    "SaveConfigurationRequest": {
        "app_id": (2, "string"),
        "items": (3, "repeated message:ConfigurationItem"),
        "metadata": (4, "map"),
        "store_name": (1, "string"),
    },
    "SaveStateRequest": {"states": (2, "repeated message:StateItem"), "store_name": (1, "string")},
    "SayHelloRequest": {"data": (3, "message:Any"), "name": (2, "string"), "service_name": (1, "string")},
    "SayHelloResponse": {"data": (2, "message:Any"), "hello": (1, "string")},
    "SecretResponse": {"secrets": (1, "map")},
    "SequencerOptions": {"increment": (1, "enum:AutoIncrement")},
    "StateItem": {
        "etag": (3, "message:Etag"),
        "key": (1, "string"),
        "metadata": (4, "map"),
        "options": (5, "message:StateOptions"),
        "value": (2, "bytes"),
    },
    "StateOptions": {"concurrency": (1, "enum:StateConcurrency"), "consistency": (2, "enum:StateConsistency")},
    "SubscribeConfigurationRequest": {
        "app_id": (2, "string"),
        "group": (3, "string"),
        "keys": (5, "repeated string"),
        "label": (4, "string"),
        "metadata": (6, "map"),
        "store_name": (1, "string"),
    },
    "SubscribeConfigurationResponse": {
        "app_id": (2, "string"),
        "items": (3, "repeated message:ConfigurationItem"),
        "store_name": (1, "string"),
    },
    "SubscribeTopicEventsRequest": {
        "event_processed": (2, "message:SubscribeTopicEventsRequestProcessed"),
        "initial_request": (1, "message:SubscribeTopicEventsRequestInitial"),
    },
    "SubscribeTopicEventsRequestInitial": {
        "dead_letter_topic": (4, "string"),
        "metadata": (3, "map"),
        "pubsub_name": (1, "string"),
        "topic": (2, "string"),
    },
    "SubscribeTopicEventsRequestProcessed": {"id": (1, "string"), "status": (2, "message:TopicEventResponse")},
    "SubscribeTopicEventsResponse": {
        "event_message": (2, "message:TopicEventRequest"),
        "initial_response": (1, "message:SubscribeTopicEventsResponseInitial"),
    },
    "SubscribeTopicEventsResponseInitial": {},
    "TopicEventRequest": {
        "data": (7, "bytes"),
        "data_content_type": (5, "string"),
        "id": (1, "string"),
        "metadata": (10, "map"),
        "pubsub_name": (8, "string"),
        "source": (2, "string"),
        "spec_version": (4, "string"),
        "topic": (6, "string"),
        "type": (3, "string"),
    },
    "TopicEventResponse": {"status": (1, "enum:TopicEventResponseStatus")},
    "TopicSubscription": {"metadata": (3, "map"), "pubsub_name": (1, "string"), "topic": (2, "string")},
    "TransactionalStateOperation": {"operationType": (1, "string"), "request": (2, "message:StateItem")},
    "TryLockRequest": {
        "expire": (4, "int32"),
        "lock_owner": (3, "string"),
        "resource_id": (2, "string"),
        "store_name": (1, "string"),
    },
    "TryLockResponse": {"success": (1, "bool")},
    "UnlockRequest": {"lock_owner": (3, "string"), "resource_id": (2, "string"), "store_name": (1, "string")},
    "UnlockResponse": {"status": (1, "enum:Status")},
}

SERVICES = {
    "AppCallback": {
        "ListTopicSubscriptions": ("Empty", "ListTopicSubscriptionsResponse", False, False),
        "OnTopicEvent": ("TopicEventRequest", "TopicEventResponse", False, False),
    },
    "Runtime": {
        "DelFile": ("DelFileRequest", "Empty", False, False),
        "DeleteBulkState": ("DeleteBulkStateRequest", "Empty", False, False),
        "DeleteConfiguration": ("DeleteConfigurationRequest", "Empty", False, False),
        "DeleteState": ("DeleteStateRequest", "Empty", False, False),
        "ExecuteStateTransaction": ("ExecuteStateTransactionRequest", "Empty", False, False),
        "GetBulkSecret": ("GetBulkSecretRequest", "GetBulkSecretResponse", False, False),
        "GetBulkState": ("GetBulkStateRequest", "GetBulkStateResponse", False, False),
        "GetConfiguration": ("GetConfigurationRequest", "GetConfigurationResponse", False, False),
        "GetFile": ("GetFileRequest", "GetFileResponse", False, True),
        "GetFileMeta": ("GetFileMetaRequest", "GetFileMetaResponse", False, False),
        "GetNextId": ("GetNextIdRequest", "GetNextIdResponse", False, False),
        "GetSecret": ("GetSecretRequest", "GetSecretResponse", False, False),
        "GetState": ("GetStateRequest", "GetStateResponse", False, False),
        "InvokeBinding": ("InvokeBindingRequest", "InvokeBindingResponse", False, False),
        "InvokeService": ("InvokeServiceRequest", "InvokeResponse", False, False),
        "ListFile": ("ListFileRequest", "ListFileResp", False, False),
        "LockKeepAlive": ("LockKeepAliveRequest", "LockKeepAliveResponse", False, False),
        "PublishEvent": ("PublishEventRequest", "Empty", False, False),
        "PutFile": ("PutFileRequest", "Empty", True, False),
        "SaveConfiguration": ("SaveConfigurationRequest", "Empty", False, False),
        "SaveState": ("SaveStateRequest", "Empty", False, False),
        "SayHello": ("SayHelloRequest", "SayHelloResponse", False, False),
        "SubscribeConfiguration": ("SubscribeConfigurationRequest", "SubscribeConfigurationResponse", True, True),
        "SubscribeTopicEvents": ("SubscribeTopicEventsRequest", "SubscribeTopicEventsResponse", True, True),
        "TryLock": ("TryLockRequest", "TryLockResponse", False, False),
        "Unlock": ("UnlockRequest", "UnlockResponse", False, False),
    },
}


_TYPES = {value: name for name, value in descriptor_pb2.FieldDescriptorProto.Type.items()}


def _facts() -> tuple[dict[str, dict[str, tuple[int, str]]], dict[str, dict[str, tuple[str, str, bool, bool]]]]:
    """The same facts, read off our generated descriptors."""
    messages: dict[str, dict[str, tuple[int, str]]] = {}
    services: dict[str, dict[str, tuple[str, str, bool, bool]]] = {}

    def walk(prefix: str, found: Any) -> None:
        for message in found:
            if message.options.map_entry:
                continue
            fields: dict[str, tuple[int, str]] = {}
            for field in message.field:
                kind = _TYPES[field.type].removeprefix("TYPE_").lower()
                if field.type_name.endswith("Entry"):
                    kind = "map"
                elif field.type_name:
                    kind += ":" + field.type_name.split(".")[-1]
                repeated = "repeated " if field.label == 3 and kind != "map" else ""
                fields[field.name] = (field.number, repeated + kind)
            messages[prefix + message.name] = fields
            walk(prefix + message.name + ".", message.nested_type)

    for module in (runtime_pb2, appcallback_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        assert proto.package == PACKAGE
        walk("", proto.message_type)
        for service in proto.service:
            services[service.name] = {
                method.name: (
                    method.input_type.split(".")[-1],
                    method.output_type.split(".")[-1],
                    method.client_streaming,
                    method.server_streaming,
                )
                for method in service.method
            }
    return messages, services


def test_services_and_methods_are_layottos() -> None:
    assert _facts()[1] == SERVICES


def test_messages_fields_and_numbers_are_layottos() -> None:
    ours = _facts()[0]
    assert sorted(ours) == sorted(MESSAGES)
    for name, fields in MESSAGES.items():
        assert ours[name] == fields, name


def test_topic_event_field_10_differs_from_daprs() -> None:
    """Layotto's field 10 is a string map, Dapr's a Struct: the two event messages are not interchangeable."""
    from dapr.proto.runtime.v1 import appcallback_pb2 as dapr

    assert MESSAGES["TopicEventRequest"]["metadata"] == (10, "map")
    extensions = dapr.TopicEventRequest.DESCRIPTOR.fields_by_number[10].message_type
    assert extensions is not None and extensions.full_name == "google.protobuf.Struct"
