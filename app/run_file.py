"""``layotto run -f dapr.yaml``: Dapr's multi-app run file, one sidecar and one app per entry.

The file is Dapr's (``version: 1``, ``common:`` and ``apps:``), so a quickstart's ``dapr.yaml`` runs unchanged.
Each app becomes a ``layotto run`` child process with its flags; relative paths are resolved from the file's
folder, the command runs in ``appDirPath``, ``common`` gives defaults (env merged, the app's winning), and an
app without ``resourcesPath`` or ``configFilePath`` uses ``<appDirPath>/.dapr/resources`` or
``.dapr/config.yaml`` when they exist (Dapr's convention), else the embedded default. Ports not given are
free ones (Dapr picks random ports too), so several sidecars never fight over 3500 or 50001. Every output
line is prefixed ``== <appID> ==``; with ``appLogDestination: file`` or ``fileAndConsole`` it is also written
to ``<appDirPath>/.dapr/logs/<appID>.log`` (a sidecar and its app share one stream here, so
``daprdLogDestination`` is accepted without effect). Ctrl-C (or SIGTERM) stops every sidecar, which stops its app.

A field this runtime does not know, or a value of the wrong type, fails with one line naming the file, the
app and the field.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ("App", "RunFileError", "load", "run")

#: run-file field -> ``layotto run`` flag (a switch when the flag is in ``_SWITCHES``)
_FLAGS: dict[str, str] = {
    "appID": "--app-id",
    "appPort": "--app-port",
    "appProtocol": "--app-protocol",
    "appChannelAddress": "--app-channel-address",
    "appMaxConcurrency": "--app-max-concurrency",
    "appSSL": "--app-ssl",
    "daprHTTPPort": "--dapr-http-port",
    "daprGRPCPort": "--dapr-grpc-port",
    "daprInternalGRPCPort": "--dapr-internal-grpc-port",
    "metricsPort": "--metrics-port",
    "enableMetrics": "--enable-metrics",
    "logLevel": "--log-level",
    "enableApiLogging": "--enable-api-logging",
    "logAsJson": "--log-as-json",
    "enableProfiling": "--enable-profiling",
    "profilePort": "--profile-port",
    "maxBodySize": "--max-body-size",
    "readBufferSize": "--read-buffer-size",
    "daprHTTPMaxRequestSize": "--dapr-http-max-request-size",
    "daprHTTPReadBufferSize": "--dapr-http-read-buffer-size",
    "unixDomainSocket": "--unix-domain-socket",
    "enableAppHealthCheck": "--enable-app-health-check",
    "appHealthCheckPath": "--app-health-check-path",
    "appHealthProbeInterval": "--app-health-probe-interval",
    "appHealthProbeTimeout": "--app-health-probe-timeout",
    "appHealthThreshold": "--app-health-threshold",
    "placementHostAddress": "--placement-host-address",
    "schedulerHostAddress": "--scheduler-host-address",
    "daprListenAddresses": "--dapr-listen-addresses",
    "daprGracefulShutdownSeconds": "--dapr-graceful-shutdown-seconds",
}
_SWITCHES = {"appSSL", "enableMetrics", "enableApiLogging", "logAsJson", "enableProfiling", "enableAppHealthCheck"}
_PATHS = {"unixDomainSocket"}
#: fields with a meaning of their own (not a flag)
_OWN = {
    "appDirPath",
    "command",
    "env",
    "resourcesPath",
    "resourcesPaths",
    "configFilePath",
    "appLogDestination",
    "daprdLogDestination",
}
_DESTINATIONS = ("console", "file", "fileAndConsole")
#: port fields a sidecar must not share with another one: a free port when not given, through Dapr's variable
_OWN_PORTS = {"daprHTTPPort": "DAPR_HTTP_PORT", "daprGRPCPort": "DAPR_GRPC_PORT", "metricsPort": "DAPR_METRICS_PORT"}
RUN_FILE_NAMES = ("dapr.yaml", "dapr.yml")


class RunFileError(Exception):
    """A run file this runtime cannot run; the message is one line naming the file and the field."""


@dataclass(frozen=True, slots=True)
class App:
    """One entry of ``apps:``, resolved: the ``layotto run`` arguments, where and with what it runs."""

    app_id: str
    arguments: tuple[str, ...]
    directory: Path
    environment: Mapping[str, str] = field(repr=False)
    log_file: Path | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _file_of(path: Path) -> Path:
    if path.is_dir():
        for name in RUN_FILE_NAMES:
            if (path / name).is_file():
                return path / name
        raise RunFileError(f"{path}: no dapr.yaml in this folder")
    if not path.is_file():
        raise RunFileError(f"{path}: no such run file")
    return path


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RunFileError(f"{where}: must be a string or a number, not {type(value).__name__}")
    return str(value)


def _switch(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise RunFileError(f"{where}: must be true or false")


def _paths(entry: Mapping[str, Any], base: Path, where: str) -> list[Path] | None:
    single, several = entry.get("resourcesPath"), entry.get("resourcesPaths")
    if single is None and several is None:
        return None
    values = ([single] if single is not None else []) + (list(several) if isinstance(several, list) else [])
    if several is not None and not isinstance(several, list):
        raise RunFileError(f"{where}: resourcesPaths must be a list of folders")
    return [base / _text(value, f"{where}: resourcesPath") for value in values]


def _environment(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RunFileError(f"{where}: env must be a mapping of names to values")
    return {str(name): _text(item, f"{where}: env {name}") for name, item in value.items()}


def _app(entry: Any, common: Mapping[str, Any], base: Path, where: str, environ: Mapping[str, str]) -> App:
    if not isinstance(entry, dict):
        raise RunFileError(f"{where}: each app must be a mapping")
    merged = {**{k: v for k, v in common.items() if k not in ("env", "command")}, **entry}
    if "appDirPath" not in entry:
        raise RunFileError(f"{where}: appDirPath is required")
    directory = (base / _text(entry["appDirPath"], f"{where}: appDirPath")).resolve()
    app_id = _text(entry.get("appID") or directory.name, f"{where}: appID")
    where = f"{where} ({app_id})"
    unknown = sorted(set(merged) - set(_FLAGS) - _OWN)
    if unknown:
        raise RunFileError(f"{where}: unknown field {unknown[0]!r}")
    if not directory.is_dir():
        raise RunFileError(f"{where}: appDirPath {directory} is not a folder")
    arguments: list[str] = []
    for name, flag in _FLAGS.items():
        if name not in merged:
            continue
        if name in _SWITCHES:
            arguments.append(f"{flag}={str(_switch(merged[name], f'{where}: {name}')).lower()}")
        else:
            value = _text(merged[name], f"{where}: {name}")
            arguments += [flag, str(base / value) if name in _PATHS else value]
    if "appID" not in merged:
        arguments += ["--app-id", app_id]
    resources = _paths(entry, base, where) or _paths(common, base, f"{where}: common")
    if resources is None and (directory / ".dapr" / "resources").is_dir():
        resources = [directory / ".dapr" / "resources"]
    for path in resources or []:
        arguments += ["--resources-path", str(path)]
    config = merged.get("configFilePath")
    if config is not None:
        arguments += ["--config", str(base / _text(config, f"{where}: configFilePath"))]
    elif (directory / ".dapr" / "config.yaml").is_file():
        arguments += ["--config", str(directory / ".dapr" / "config.yaml")]
    env = {**environ, **_environment(common.get("env"), f"{where}: common"), **_environment(entry.get("env"), where)}
    for name, variable in _OWN_PORTS.items():
        if name not in merged and variable not in env:
            env[variable] = str(_free_port())
    destination = _text(merged.get("appLogDestination", "console"), f"{where}: appLogDestination")
    if destination not in _DESTINATIONS:
        raise RunFileError(f"{where}: appLogDestination must be one of {', '.join(_DESTINATIONS)}")
    log_file = directory / ".dapr" / "logs" / f"{app_id}.log" if destination != "console" else None
    command = entry.get("command", common.get("command"))
    if command is not None:
        if not isinstance(command, list) or not command or not all(isinstance(part, str) for part in command):
            raise RunFileError(f"{where}: command must be a non-empty list of strings")
        arguments += ["--", *command]
    return App(app_id, tuple(arguments), directory, env, log_file)


def load(path: Path, environ: Mapping[str, str] | None = None) -> list[App]:
    """The apps of a run file (or of the ``dapr.yaml`` in a folder)."""
    import yaml

    file = _file_of(path)
    try:
        document = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RunFileError(f"{file}: {' '.join(str(exc).split())}") from None
    if not isinstance(document, dict):
        raise RunFileError(f"{file}: a run file is a mapping with version, common and apps")
    if document.get("version") != 1:
        raise RunFileError(f"{file}: version must be 1")
    unknown = sorted(set(document) - {"version", "common", "apps"})
    if unknown:
        raise RunFileError(f"{file}: unknown field {unknown[0]!r}")
    common = document.get("common") or {}
    entries = document.get("apps")
    if not isinstance(common, dict):
        raise RunFileError(f"{file}: common must be a mapping")
    if not isinstance(entries, list) or not entries:
        raise RunFileError(f"{file}: apps must be a non-empty list")
    base = file.parent.resolve()
    env = dict(os.environ if environ is None else environ)
    apps = [_app(entry, common, base, f"{file}: apps[{i}]", env) for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for app in apps:
        if app.app_id in seen:
            raise RunFileError(f"{file}: appID {app.app_id!r} appears twice")
        seen.add(app.app_id)
    return apps


def _pump(app: App, stream: IO[bytes], lock: threading.Lock, write: Callable[[bytes], None]) -> None:
    prefix = f"== {app.app_id} == ".encode()
    log = None
    if app.log_file is not None:
        app.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = app.log_file.open("ab")
    with contextlib.ExitStack() as stack:
        if log is not None:
            stack.enter_context(log)
        for line in iter(stream.readline, b""):
            with lock:
                write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
            if log is not None:
                log.write(line)
                log.flush()


def _stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


#: exit codes of a sidecar stopped by the runner: SIGTERM forwarded to its app, which ended by it
_STOPPED = {-signal.SIGTERM, 128 + signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGINT}


def run(apps: list[App], write: Callable[[bytes], None] = _stdout) -> int:
    """Runs every app's ``layotto run`` until all have exited; Ctrl-C/SIGTERM stop them all. The first
    failure's exit code (a stop asked for is no failure), else 0."""
    lock = threading.Lock()
    children: list[subprocess.Popen[bytes]] = []
    pumps: list[threading.Thread] = []
    stopping = threading.Event()

    def stop_all(signum: int, frame: object) -> None:
        stopping.set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # each sidecar stops its app, then itself

    previous = {signum: signal.signal(signum, stop_all) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for app in apps:
            child = subprocess.Popen(
                # -P: the app's folder is not on sys.path, so a quickstart's own app.py never shadows ``app``
                [sys.executable, "-P", "-m", "app.cli", "run", *app.arguments],
                cwd=app.directory,
                env=dict(app.environment),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the runner only, which stops each sidecar
            )
            children.append(child)
            assert child.stdout is not None
            pump = threading.Thread(target=_pump, args=(app, child.stdout, lock, write), daemon=True)
            pump.start()
            pumps.append(pump)
        codes = [child.wait() for child in children]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for pump in pumps:
            pump.join(timeout=5)
    failed = [code for code in codes if code != 0 and not (stopping.is_set() and code in _STOPPED)]
    return failed[0] if failed else 0
