"""``pubsub.kafka``'s metadata: the typed declaration, and the librdkafka settings it makes.

Read once at start-up by ``configure``, which fails with ``SpecError`` (Dapr's messages where Dapr has one)
before any client is created; the names are listed in the package's docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from building_blocks._common.metadata import PUBSUB, boolean, duration, integer, parse, text
from building_blocks.component import Metadata
from building_blocks.errors import SpecError

__all__ = ("KafkaConfig", "KafkaMetadata", "configure")

_INIT_TIMEOUT = 10.0
_PING_TIMEOUT = 5.0
_SASL_MECHANISMS = {
    "": "PLAIN",
    "PLAINTEXT": "PLAIN",
    "PLAIN": "PLAIN",
    "SHA-256": "SCRAM-SHA-256",
    "SCRAM-SHA-256": "SCRAM-SHA-256",
    "SHA-512": "SCRAM-SHA-512",
    "SCRAM-SHA-512": "SCRAM-SHA-512",
}
_ACKS = {"all": "all", "-1": "all", "waitforall": "all", "1": "1", "waitforlocal": "1", "0": "0", "noresponse": "0"}
_COMPRESSIONS = frozenset({"none", "gzip", "snappy", "lz4", "zstd"})
_STRATEGIES = {"range": "range", "roundrobin": "roundrobin", "sticky": "cooperative-sticky"}
_OFFSET_RESETS = {"": "latest", "newest": "latest", "oldest": "earliest"}
_UNSUPPORTED_AUTH = ("oidc", "oidc_private_key_jwt", "awsiam")
_PASSTHROUGH = "librdkafka."
#: Accepted and ignored (retrying is always on; librdkafka negotiates the protocol), and the pass-through prefix.
_ALSO_ACCEPTED = ("consumeRetryEnabled", "version", _PASSTHROUGH)


@dataclass(frozen=True, slots=True)
class KafkaMetadata:
    brokers: str = text("brokers", required=True)
    auth_type: str = text("authType")
    auth_required: str = text("authRequired")  # legacy; read as Dapr does (see ``_security``)
    sasl_username: str = text("saslUsername")
    sasl_password: str = text("saslPassword")
    sasl_mechanism: str = text("saslMechanism")
    client_cert: str = text("clientCert")
    client_key: str = text("clientKey")
    ca_cert: str = text("caCert")
    disable_tls: bool = boolean("disableTls", False)
    skip_verify: bool = boolean("skipVerify", False)
    client_id: str = text("clientID", "layotto")
    consumer_group: str = text("consumerGroup", "", "consumerID")
    initial_offset: str = text("initialOffset")
    metadata_refresh: float = duration("clientConnectionTopicMetadataRefreshInterval", 1.0)
    dial_timeout: float = duration("dialTimeout", 30.0)
    read_timeout: float = duration("readTimeout", 0.0)
    write_timeout: float = duration("writeTimeout", 0.0)
    metadata_timeout: float = duration("metadataTimeout", 0.0)
    publish_timeout: float = duration("publishTimeout", 30.0)
    producer_required_acks: str = text("producerRequiredAcks", "all")
    compression: str = text("compression", "none")
    max_message_bytes: int = integer("maxMessageBytes", 0)
    producer_retry_max: int = integer("producerRetryMax", -1)
    rebalance_strategy: str = text("consumerGroupRebalanceStrategy", "range")
    session_timeout: float = duration("sessionTimeout", 6.0)
    heartbeat_interval: float = duration("heartbeatInterval", 0.5)
    channel_buffer_size: int = integer("channelBufferSize", 256)
    partition_concurrency: int = integer("partitionConcurrency", 1)
    consumer_fetch_min: int = integer("consumerFetchMin", 1)
    consumer_fetch_default: int = integer("consumerFetchDefault", 1024 * 1024)
    consume_retry_interval: float = duration("consumeRetryInterval", 0.1)
    drain_timeout: float = duration("drainTimeout", 10.0)
    escape_headers: bool = boolean("escapeHeaders", False)
    exclude_header_meta_regex: str = text("excludeHeaderMetaRegex")
    partitions: int = integer("partitions", 4)
    replication_factor: int = integer("replicationFactor", -1)


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """What the component, its producer and its subscriptions use, all checked."""

    brokers: str
    producer: dict[str, Any]
    consumer: dict[str, Any]
    admin: dict[str, Any]
    init_timeout: float
    ping_timeout: float
    publish_timeout: float
    buffer_size: int
    partition_concurrency: int
    consumer_group: str
    retry_interval: float
    drain_timeout: float
    escape_headers: bool
    exclude_headers: re.Pattern[str] | None
    partitions: int
    replication_factor: int


def _ms(seconds: float) -> int:
    return max(round(seconds * 1000), 0)


def _is_pem(text: str) -> bool:
    return "-----BEGIN " in text and "-----END " in text


class _Problems:
    """``SpecError``s prefixed with the file and component."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __call__(self, problem: str) -> SpecError:
        return SpecError(f"{self.where}: {problem}" if self.where else problem)


def configure(meta: Metadata) -> KafkaConfig:
    """The component's settings from its metadata; ``SpecError`` on the first bad one."""
    m = parse(KafkaMetadata, meta, (*PUBSUB, *_ALSO_ACCEPTED))
    fail = _Problems(meta.where)
    brokers = [broker.strip() for broker in m.brokers.split(",") if broker.strip()]
    if not brokers:
        raise fail("kafka error: missing 'brokers' attribute")
    common: dict[str, Any] = {
        "bootstrap.servers": ",".join(brokers),
        "client.id": m.client_id,
        "topic.metadata.refresh.interval.ms": _ms(m.metadata_refresh or 1.0),
        "socket.keepalive.enable": True,
        "socket.connection.setup.timeout.ms": _ms(m.dial_timeout or 30.0),
        **_security(m, meta, fail),
    }
    socket_timeout = max(m.read_timeout, m.write_timeout)
    if socket_timeout > 0:
        common["socket.timeout.ms"] = max(_ms(socket_timeout), 10)
    passthrough = {
        name[len(_PASSTHROUGH) :]: value
        for name, value in meta.items()
        if name.lower().startswith(_PASSTHROUGH) and len(name) > len(_PASSTHROUGH)
    }
    producer, publish_timeout = _producer(m, fail)
    consumer = _consumer(m, fail)
    try:
        exclude = re.compile(m.exclude_header_meta_regex) if m.exclude_header_meta_regex else None
    except re.error as exc:
        raise fail(f"metadata 'excludeHeaderMetaRegex' is not a valid regex: {exc}") from None
    if m.partitions < 1:
        raise fail("metadata 'partitions' must be at least 1")
    return KafkaConfig(
        brokers=common["bootstrap.servers"],
        producer={**common, **producer, **passthrough},
        consumer={**common, **consumer, **passthrough},
        admin={**common, **passthrough},
        init_timeout=m.metadata_timeout if m.metadata_timeout > 0 else _INIT_TIMEOUT,
        ping_timeout=m.metadata_timeout if m.metadata_timeout > 0 else _PING_TIMEOUT,
        publish_timeout=publish_timeout,
        buffer_size=m.channel_buffer_size,
        partition_concurrency=m.partition_concurrency,
        consumer_group=m.consumer_group,
        retry_interval=m.consume_retry_interval,
        drain_timeout=m.drain_timeout,
        escape_headers=m.escape_headers,
        exclude_headers=exclude,
        partitions=m.partitions,
        replication_factor=m.replication_factor,
    )


def _producer(m: KafkaMetadata, fail: _Problems) -> tuple[dict[str, Any], float]:
    acks = _ACKS.get(m.producer_required_acks.strip().lower())
    if acks is None:
        raise fail("metadata 'producerRequiredAcks' must be all, 1 or 0")
    compression = m.compression.strip().lower()
    if compression not in _COMPRESSIONS:
        raise fail(f"metadata 'compression' must be one of {', '.join(sorted(_COMPRESSIONS))}")
    if m.publish_timeout <= 0:
        raise fail("metadata 'publishTimeout' must be positive")
    producer: dict[str, Any] = {
        "enable.idempotence": acks == "all",
        "acks": acks,
        "compression.type": compression,
        "linger.ms": 0,
        "message.timeout.ms": _ms(m.publish_timeout),
    }
    if m.max_message_bytes > 0:
        producer["message.max.bytes"] = max(m.max_message_bytes, 1000)
    retries = m.producer_retry_max
    if retries >= 0:
        if retries == 0 and acks == "all":
            raise fail("metadata 'producerRetryMax' must be positive with idempotent publishing")
        producer["retries"] = retries
    return producer, m.publish_timeout


def _consumer(m: KafkaMetadata, fail: _Problems) -> dict[str, Any]:
    offset_reset = _OFFSET_RESETS.get(m.initial_offset.strip().lower())
    if offset_reset is None:
        raise fail(f"kafka error: invalid initialOffset: {m.initial_offset}")
    strategy = _STRATEGIES.get(m.rebalance_strategy.strip().lower())
    if strategy is None:
        raise fail("metadata 'consumerGroupRebalanceStrategy' must be range, roundrobin or sticky")
    session, heartbeat = m.session_timeout, m.heartbeat_interval
    if not 0 < heartbeat < session:
        raise fail("metadata 'heartbeatInterval' must be positive and shorter than 'sessionTimeout'")
    if m.channel_buffer_size < 1 or m.partition_concurrency < 1:
        raise fail("metadata 'channelBufferSize' and 'partitionConcurrency' must be at least 1")
    if m.consumer_fetch_min < 1 or m.consumer_fetch_default < 1:
        raise fail("metadata 'consumerFetchMin' and 'consumerFetchDefault' must be positive")
    return {
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": offset_reset,
        "session.timeout.ms": _ms(session),
        "heartbeat.interval.ms": _ms(heartbeat),
        "partition.assignment.strategy": strategy,
        "fetch.min.bytes": m.consumer_fetch_min,
        "max.partition.fetch.bytes": m.consumer_fetch_default,
        "fetch.wait.max.ms": 100,
        "queued.min.messages": m.channel_buffer_size,
        "queued.max.messages.kbytes": 8192,
    }


def _security(m: KafkaMetadata, meta: Metadata, fail: _Problems) -> dict[str, Any]:
    """librdkafka's security settings for ``authType`` (and the legacy ``authRequired``), as Dapr maps them."""
    auth_type = m.auth_type.strip().lower()
    if not auth_type and m.auth_required.strip():
        try:
            required = meta.boolean("authRequired", False)
        except SpecError:
            raise fail("kafka error: invalid value for 'authRequired' attribute") from None
        auth_type = ("password" if m.sasl_password else "mtls") if required else "none"
    if not auth_type:
        raise fail("kafka error: 'authType' attribute was missing or empty")
    if auth_type in _UNSUPPORTED_AUTH:
        raise fail(
            f"kafka error: authType '{auth_type}' is not supported (supported: none, password, mtls, certificate)"
        )
    tls = auth_type != "none" and not m.disable_tls
    config: dict[str, Any] = {}
    if auth_type == "none":
        pass
    elif auth_type == "password":
        if not m.sasl_username:
            raise fail("kafka error: missing SASL Username for authType 'password'")
        if not m.sasl_password:
            raise fail("kafka error: missing SASL Password for authType 'password'")
        mechanism = _SASL_MECHANISMS.get(m.sasl_mechanism.strip().upper())
        if mechanism is None:
            raise fail(
                f"kafka error: unsupported saslMechanism '{m.sasl_mechanism}' (supported: PLAINTEXT, SHA-256, SHA-512)"
            )
        config |= {"sasl.mechanism": mechanism, "sasl.username": m.sasl_username, "sasl.password": m.sasl_password}
    elif auth_type == "mtls":
        cert, key = m.client_cert, m.client_key
        if not tls:
            raise fail("kafka error: cannot configure mTLS authentication when 'disableTls' is true")
        if bool(cert) != bool(key):
            raise fail("kafka error: clientKey or clientCert is missing")
        if cert and not (_is_pem(cert) and _is_pem(key)):
            raise fail("kafka error: invalid client certificate or key (PEM expected)")
        if cert:
            config |= {"ssl.certificate.pem": cert, "ssl.key.pem": key}
    elif auth_type == "certificate":
        if not m.ca_cert:
            raise fail("missing CA certificate property 'caCert' for authType 'certificate'")
    else:
        raise fail(f"kafka error: unsupported authType '{auth_type}' (supported: none, password, mtls, certificate)")
    sasl = auth_type == "password"
    config["security.protocol"] = ("sasl_ssl" if tls else "sasl_plaintext") if sasl else ("ssl" if tls else "plaintext")
    if tls:
        if m.ca_cert:
            if not _is_pem(m.ca_cert):
                raise fail("kafka error: invalid ca certificate")
            config["ssl.ca.pem"] = m.ca_cert
        if m.skip_verify:
            config |= {"enable.ssl.certificate.verification": False, "ssl.endpoint.identification.algorithm": "none"}
    return config
