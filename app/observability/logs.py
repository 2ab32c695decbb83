"""The sidecar's log lines: plain or JSON (``--log-as-json``, daprd's fields), under our own logger names, and
one line per API call (``--enable-api-logging``, ``spec.logging.apiLogging``).

JSON lines carry daprd's fields, keys in alphabetical order as logrus writes them: ``app_id``, ``instance``
(the host name), ``level`` (``warning`` for warnings, as logrus spells it), ``msg``, ``scope`` (the logger:
``layotto.runtime``, ``layotto.api``...), ``time`` (RFC 3339 with nanoseconds), ``type`` (``log``), ``ver``;
an API line adds its own fields. uvicorn's own lines (start-up, shutdown) are logged as ``layotto.http``,
not ``uvicorn.error``.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson

from app import __version__
from building_blocks.configuration_spec import ApiLoggingSpec

__all__ = ("API_LOGGER", "ApiLog", "JsonFormatter", "OurNames", "configure_logging")

API_LOGGER = "layotto.api"
_LEVELS = {"WARNING": "warning", "CRITICAL": "fatal"}
_RENAMED = {"uvicorn.error": "layotto.http", "uvicorn": "layotto.http", "uvicorn.access": "layotto.http"}
#: The record attributes every ``LogRecord`` has; anything else was passed in ``extra`` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class OurNames(logging.Filter):
    """Logs uvicorn's lines under ``layotto.http``: a user reads one product's names."""

    def filter(self, record: logging.LogRecord) -> bool:
        renamed = _RENAMED.get(record.name)
        if renamed is not None:
            record.name = renamed
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """daprd's JSON log line (logrus ``JSONFormatter``)."""

    def __init__(self, app_id: str) -> None:
        super().__init__()
        self.app_id = app_id
        self.instance = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        moment = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            **_fields(record),
            "app_id": self.app_id,
            "instance": self.instance,
            "level": _LEVELS.get(record.levelname, record.levelname.lower()),
            "msg": message,
            "scope": record.name,
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.created % 1 * 1e9):09d}Z",
            "type": "log",
            "ver": __version__,
        }
        return orjson.dumps(line, option=orjson.OPT_SORT_KEYS, default=str).decode()


class PlainFormatter(logging.Formatter):
    """``time LEVEL logger: message`` plus an API line's fields as ``name=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if fields:
            text += " " + " ".join(
                f"{name}={orjson.dumps(value, default=str).decode()}" for name, value in fields.items()
            )
        return text


def configure_logging(level: str, as_json: bool, app_id: str) -> None:
    """The root handler on stderr, at ``level`` (the ``--log-level``), plain or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(app_id) if as_json else PlainFormatter())
    handler.addFilter(OurNames())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # daprd forces its API logger to info, so API lines show whatever --log-level says
    logging.getLogger(API_LOGGER).setLevel(logging.INFO)


class ApiLog:
    """One ``HTTP API Called`` line per API call, with daprd's fields (and ``caller``, the client address)."""

    HEALTH_CHECKS = frozenset({"/v1.0/healthz", "/v1.0/healthz/outbound"})

    def __init__(self, spec: ApiLoggingSpec) -> None:
        self.obfuscate = spec.obfuscate_urls
        self.omit_health_checks = spec.omit_health_checks
        self.log = logging.getLogger(API_LOGGER)

    def request(self, method: str, path: str, template: str | None, status: int, size: int, seconds: float,
                scope: MutableMapping[str, Any]) -> None:  # fmt: skip
        """Log one call; ``template`` is the matched route's (what ``obfuscateURLs`` shows instead of the path)."""
        if self.omit_health_checks and path in self.HEALTH_CHECKS:
            return
        fields: dict[str, Any] = {
            "method": f"{method} {template.replace(':path}', '}') if self.obfuscate and template else path}",
            "code": status,
            "duration": int(seconds * 1000),
            "size": size,
        }
        for name, value in scope["headers"]:
            if name == b"user-agent":
                fields["useragent"] = value.decode("latin-1")
                break
        client = scope.get("client")
        if client:
            fields["caller"] = f"{client[0]}:{client[1]}"
        self.log.info("HTTP API Called", extra=fields)
