"""uvicorn without its command line, for a sidecar's start-up.

``import uvicorn`` (or of any of its modules) runs ``uvicorn/__init__.py``, which imports ``uvicorn.main`` and
with it click, the reloader and the worker supervisors (multiprocessing...): 37 modules, 31 ms of CPU and
2.2 MB of RSS at import on the 2-core machine, for a command line the sidecar never runs.

Importing this module first registers the package without running its ``__init__``: ``uvicorn.config``,
``uvicorn.server`` and ``uvicorn.protocols`` import as usual, ``uvicorn.Config`` and ``uvicorn.Server`` are
the very classes the package exports (it takes them from those modules), and the first other attribute
asked of the package (``uvicorn.run``, ``uvicorn.main``...) runs the real ``__init__`` then, so whoever uses
``import uvicorn`` still sees the package it expects. When uvicorn is already imported, nothing changes.

``websockets_protocol()`` is ``ws="auto"`` imported at the first WebSocket upgrade rather than at start-up
(``Config.load`` imports wsproto with h11, or websockets: with wsproto, 27 modules, 45 ms of CPU, 1.6 MB).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from asyncio import Protocol
from typing import Any, Literal, cast

__all__ = ("Config", "Server", "websockets_protocol")

#: The package's attributes that are importable without its ``__init__``: name -> defining module.
_LIGHT = {"Config": "uvicorn.config", "Server": "uvicorn.server"}


def _register() -> None:
    if "uvicorn" in sys.modules:
        return
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or spec.loader is None:  # pragma: no cover - uvicorn is a dependency
        return
    package = importlib.util.module_from_spec(spec)

    def complete(name: str) -> Any:
        """PEP 562: an attribute the package has not got yet."""
        if name in _LIGHT:
            value = getattr(importlib.import_module(_LIGHT[name]), name)
            setattr(package, name, value)
            return value
        if name.startswith("__") and name.endswith("__") and name not in ("__version__", "__all__"):
            raise AttributeError(name)  # a probe (``__wrapped__``...) the real package would not answer either
        del package.__getattr__
        assert spec.loader is not None
        spec.loader.exec_module(package)  # the real __init__, in the registered module
        return getattr(package, name)

    package.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules["uvicorn"] = package


_register()

from uvicorn.config import Config  # noqa: E402  (after the package is registered)
from uvicorn.server import Server  # noqa: E402


def _auto_websockets(*args: Any, **kwargs: Any) -> Protocol:
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

    assert AutoWebSocketsProtocol is not None  # websockets_protocol() saw a library
    return AutoWebSocketsProtocol(*args, **kwargs)


def websockets_protocol() -> type[Protocol] | Literal["none"]:
    """``Config(ws=...)``: what ``ws="auto"`` picks, imported when an upgrade first needs it; ``"none"`` (no
    WebSocket support, as ``auto`` then) when neither websockets nor wsproto is installed."""
    if importlib.util.find_spec("websockets") is None and importlib.util.find_spec("wsproto") is None:
        return "none"
    return cast("type[Protocol]", _auto_websockets)  # uvicorn only calls it with the protocol's arguments
