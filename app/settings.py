"""The runtime's settings: the one place that reads the environment.

Precedence: command-line flags, then the environment variables Dapr uses (``APP_ID``, ``APP_PORT``,
``DAPR_HTTP_PORT``, ``DAPR_API_TOKEN``, ``APP_API_TOKEN``, ``NAMESPACE``...) and Layotto's own
(``LAYOTTO_INTERNAL_*``, the sidecar-to-sidecar hop's credentials), then defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any

__all__ = ("DEFAULT_RESOURCES_PATH", "Settings")


def _embedded_specs() -> Path:
    """The folder of the ``component_specs`` package: in a checkout, an editable or a wheel install alike.

    Found by the import system's spec, not ``importlib.resources``, which imports ``zipfile``, ``tempfile``,
    ``shutil`` and the compression modules for what a sidecar reads from a plain folder (0.3-0.4 MB of
    idle RSS)."""
    spec = find_spec("component_specs")
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    root = Path(locations[0]) if locations else None
    if root is None or not root.is_dir():  # pragma: no cover - a zipped install; pip and the image never make one
        raise RuntimeError(f"the embedded component_specs must be on a file system, not in {locations}")
    return root


#: The embedded default components, used when no ``--resources-path`` is given.
DEFAULT_RESOURCES_PATH = _embedded_specs()


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def _port(value: str | None, default: int) -> int:
    port = _int(value)
    return default if port is None else port


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


@dataclass(frozen=True, slots=True)
class Settings:
    app_id: str = ""
    app_port: int | None = None
    app_protocol: str = "http"
    app_channel_address: str = "127.0.0.1"
    http_port: int = 3500
    listen_address: str = "127.0.0.1"
    resources_paths: tuple[Path, ...] = (DEFAULT_RESOURCES_PATH,)
    log_level: str = "info"
    namespace: str = ""
    api_token: str = ""
    app_api_token: str = ""
    max_body_size: int = 4 << 20
    #: Largest request head (request line and headers), daprd's ``--read-buffer-size``.
    read_buffer_size: int = 4 << 10
    graceful_shutdown_seconds: float = 5.0
    #: App health checks (Dapr's flags; interval and timeout in seconds here).
    enable_app_health_check: bool = False
    app_health_check_path: str = "/healthz"
    app_health_probe_interval: float = 5.0
    app_health_probe_timeout: float = 0.5
    app_health_threshold: int = 3
    #: The address other sidecars reach this one at (``DAPR_HOST_IP``); "" = the listen address, or
    #: 127.0.0.1 when listening on every interface.
    host_address: str = ""
    #: The internal listener for the sidecar-to-sidecar hop (``--dapr-internal-grpc-port``; HTTP/1.1 here);
    #: 0 = a free port chosen at start. Its credentials: ``app.invocation.hop_security``.
    internal_port: int = 0
    internal_token: str = field(default="", repr=False)
    internal_token_file: Path | None = None
    internal_tls_cert_file: Path | None = None
    internal_tls_key_file: Path | None = None
    internal_tls_ca_file: Path | None = None
    #: Dapr's ``--config``: a ``kind: Configuration`` file (tracing, metrics, features...).
    config_file: Path | None = None
    #: Dapr's gRPC API port (``--dapr-grpc-port`` / ``DAPR_GRPC_PORT``).
    grpc_port: int = 50001
    #: Metrics: Prometheus exporter port (``--metrics-port`` / ``DAPR_METRICS_PORT``) and switch.
    metrics_port: int = 9090
    enable_metrics: bool = True
    #: Logging: one line per API call (``--enable-api-logging``), JSON log lines (``--log-as-json``).
    enable_api_logging: bool | None = None  # None: not given, ``spec.logging.apiLogging.enabled`` decides
    log_as_json: bool = False
    #: Most requests delivered to the app at once (``--app-max-concurrency``); -1 = unlimited, as in Dapr.
    app_max_concurrency: int = -1
    #: Folder of the Unix domain sockets of the API (``--unix-domain-socket``); None = TCP only.
    unix_domain_socket: Path | None = None
    #: Profiling endpoint (``--enable-profiling``, ``--profile-port``).
    enable_profiling: bool = False
    profile_port: int = 7777
    #: Control-plane addresses of Dapr's actor placement and job scheduler services.
    placement_host_address: str = ""
    scheduler_host_address: str = ""
    #: Which lane serves the hot routes (``LAYOTTO_HTTP_LANE``, hidden ``--http-lane``): ``protocol`` (the
    #: default) = state get/save, publish and invocation on the protocol lane below the ASGI app
    #: (``app.lane``), the rest through the ASGI app; ``asgi`` = every request through the ASGI app.
    http_lane: str = "protocol"
    #: The environment as the sidecar saw it at start, for ``envRef`` and child processes.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        """Settings from ``environ`` (default: this process's), overridden by non-None ``flags``."""
        env = dict(os.environ if environ is None else environ)
        from_env: dict[str, Any] = {
            "app_id": env.get("APP_ID", ""),
            "app_port": _int(env.get("APP_PORT")),
            "app_protocol": env.get("APP_PROTOCOL") or "http",
            "app_channel_address": env.get("APP_CHANNEL_ADDRESS") or "127.0.0.1",
            "http_port": _int(env.get("DAPR_HTTP_PORT")) or 3500,
            "namespace": env.get("NAMESPACE", ""),
            "api_token": env.get("DAPR_API_TOKEN", ""),
            "app_api_token": env.get("APP_API_TOKEN", ""),
            "host_address": env.get("DAPR_HOST_IP", ""),
            "internal_port": _int(env.get("DAPR_INTERNAL_GRPC_PORT")) or 0,
            "grpc_port": _port(env.get("DAPR_GRPC_PORT"), 50001),  # 0: a free port
            "metrics_port": _port(env.get("DAPR_METRICS_PORT"), 9090),
            "internal_token": env.get("LAYOTTO_INTERNAL_TOKEN", ""),
            "internal_token_file": _path(env.get("LAYOTTO_INTERNAL_TOKEN_FILE")),
            "internal_tls_cert_file": _path(env.get("LAYOTTO_INTERNAL_TLS_CERT_FILE")),
            "internal_tls_key_file": _path(env.get("LAYOTTO_INTERNAL_TLS_KEY_FILE")),
            "internal_tls_ca_file": _path(env.get("LAYOTTO_INTERNAL_TLS_CA_FILE")),
            "http_lane": env.get("LAYOTTO_HTTP_LANE") or "protocol",
        }
        settings = cls(environ=env, **from_env)
        return replace(settings, **{name: value for name, value in flags.items() if value is not None})

    def unix_socket(self, api: str) -> Path | None:
        """Dapr's socket file of ``api`` (``http`` or ``grpc``) under ``--unix-domain-socket``; the API then
        listens there instead of on TCP, as daprd does."""
        if self.unix_domain_socket is None:
            return None
        return self.unix_domain_socket / f"dapr-{self.app_id}-{api}.socket"

    @property
    def advertised_host(self) -> str:
        """The host other sidecars use to reach this one."""
        if self.host_address:
            return self.host_address
        first = self.listen_address.split(",")[0].strip()  # Dapr's list: the first host is advertised
        return "127.0.0.1" if first in ("", "0.0.0.0", "::", "[::]") else first
