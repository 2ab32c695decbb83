"""The server side of ``layotto run``: binds the ports, prepares the runtime, serves, runs the app command.

Imported by ``app.cli`` only when a sidecar starts, so ``--help``, ``--version``, ``list`` and ``stop`` never
load the server stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from app import instances
from app._uvicorn import Config, Server, websockets_protocol
from app.http_server import api_protocol
from app.invocation.hop_server import bind_internal, internal_config
from app.main import create_app
from app.observability.logs import configure_logging
from app.runtime import Runtime
from app.settings import Settings
from building_blocks.errors import SpecError

__all__ = ("FORCE_SHUTDOWN_DELAY", "app_environment", "run")

log = logging.getLogger("layotto")
FORCE_SHUTDOWN_DELAY = 0.1


def app_environment(settings: Settings) -> dict[str, str]:
    """The app command's environment: the sidecar's, with the variables ``dapr run`` sets."""
    env = dict(settings.environ)
    env.pop("LAYOTTO_INTERNAL_TOKEN", None)  # the hop secret is the sidecars', never the app's
    env.update(
        APP_ID=settings.app_id,
        APP_CHANNEL_ADDRESS=settings.app_channel_address,
        APP_PROTOCOL=settings.app_protocol,
        DAPR_HTTP_PORT=str(settings.http_port),
        DAPR_GRPC_PORT=str(settings.grpc_port),  # the SDKs' gRPC clients dial it
        DAPR_METRICS_PORT=str(settings.metrics_port),
    )
    if settings.app_port:
        env["APP_PORT"] = str(settings.app_port)
    return env


def _cannot_listen(what: str, host: str, port: int, exc: OSError) -> int:
    reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()  # create_server adds the address
    print(f"layotto: cannot listen on {host}:{port} ({what}): {reason}", file=sys.stderr)
    return 1


_ALL_INTERFACES = ("0.0.0.0", "::", "")


def listen_hosts(listen_address: str) -> list[str]:
    """The hosts of ``--dapr-listen-addresses`` (Dapr's comma-separated list, IPv6 in brackets or not); one
    that means every interface replaces the others, which could not share its port."""
    hosts = [host.strip().strip("[]") for host in listen_address.split(",") if host.strip()]
    if not hosts or any(host in _ALL_INTERFACES for host in hosts):
        return ["0.0.0.0"] if not hosts or "0.0.0.0" in hosts or "" in hosts else ["::"]
    return hosts


def _bind(host: str, port: int) -> socket.socket:
    return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET, backlog=2048)


def _bind_unix(path: Path) -> socket.socket:
    """A Unix socket at ``path``; a file left there by a sidecar that died is replaced, a live one is not."""
    if path.is_socket():
        with socket.socket(socket.AF_UNIX) as probe:
            if probe.connect_ex(str(path)) == 0:
                raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


class _Listeners:
    """Every socket of the sidecar, bound before anything starts, so a taken port is one line and nothing
    else runs: the API's and the internal port's on each listen host; the gRPC port is only checked (the
    gRPC front binds it later, in the lifespan, where a failure would be a traceback among uvicorn's lines)."""

    def __init__(self) -> None:
        self.api: list[socket.socket] = []
        self.internal: list[socket.socket] = []

    def bind(self, settings: Settings) -> int | None:
        """None when every port is ours, else the exit code after saying why in one line."""
        hosts = listen_hosts(settings.listen_address)
        what, host, port = "HTTP API", hosts[0], settings.http_port
        uds = settings.unix_socket("http")
        try:
            if uds is not None:
                self.api.append(_bind_unix(uds))
            for host in hosts if uds is None else ():
                self.api.append(_bind(host, port))
            what, port = "internal port", settings.internal_port
            for host in hosts:
                self.internal.append(bind_internal(replace(settings, listen_address=host, internal_port=port)))
                port = self.internal[0].getsockname()[1]  # every host on the port the first one got
            what, port = "gRPC API", settings.grpc_port
            for host in hosts if port > 0 and settings.unix_domain_socket is None else ():
                _bind(host, port).close()
        except OSError as exc:
            self.close()
            if what == "HTTP API" and uds is not None:
                reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
                print(f"layotto: cannot listen on {uds} (HTTP API): {reason}", file=sys.stderr)
                return 1
            return _cannot_listen(what, f"[{host}]" if ":" in host else host, port, exc)
        return None

    def close(self) -> None:
        for sock in (*self.api, *self.internal):
            if sock.family == socket.AF_UNIX:
                with contextlib.suppress(OSError):
                    os.unlink(sock.getsockname())
            sock.close()


class _Server(Server):
    """uvicorn's server, with signals left to ``_serve`` (which may forward them to the app)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve(settings: Settings, command: Sequence[str]) -> int:
    listeners = _Listeners()
    failed = listeners.bind(settings)
    if failed is not None:
        return failed
    settings = replace(settings, internal_port=listeners.internal[0].getsockname()[1])  # advertised as bound
    runtime = Runtime(settings)
    try:
        await runtime.prepare()
    except SpecError as exc:
        print(f"layotto: {exc}", file=sys.stderr)
        await runtime.close()
        listeners.close()
        return 1
    app = create_app(settings, runtime)
    config = Config(
        app,
        host=settings.listen_address,
        port=settings.http_port,
        http=api_protocol(settings, app),
        ws=websockets_protocol(),  # as ws="auto", imported at the first upgrade
        lifespan="on",
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
        log_config=None,
        proxy_headers=False,  # a sidecar on loopback has no proxy in front; the check costs on every request
        server_header=False,
        timeout_keep_alive=600,  # daprd never closes idle connections; closing one races a client reusing it
    )
    server = _Server(config)
    internal = _Server(internal_config(settings, runtime))
    exit_code = 0
    child: asyncio.subprocess.Process | None = None
    loop = asyncio.get_running_loop()

    def stop(code: int) -> None:
        nonlocal exit_code
        exit_code = exit_code or code
        server.should_exit = internal.should_exit = True

    stopping = False  # the sidecar asked the app to stop: how the app ends is then a success, as for ``dapr run``

    def on_signal(signum: int) -> None:
        nonlocal stopping
        if child is not None and child.returncode is None:
            stopping = True
            child.send_signal(signum)  # the app decides; the sidecar stops when it exits
        else:
            stop(0)

    def on_shutdown_request(force: bool) -> None:
        nonlocal stopping
        if force:
            loop.call_later(FORCE_SHUTDOWN_DELAY, os._exit, 1)
        if child is not None and child.returncode is None:
            stopping = True
            child.terminate()
        stop(0)

    runtime.on_failure = lambda reason: stop(1)
    runtime.shutdown_handler = on_shutdown_request
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    async def watch_child(process: asyncio.subprocess.Process) -> None:
        nonlocal exit_code
        code = await process.wait()
        log.info("app command exited with code %d", code)
        if code == 0 or stopping:
            status_event(True, "Exited App successfully", settings.log_as_json)
        elif code < 0:
            reason = signal.strsignal(-code) or f"signal {-code}"
            status_event(False, f"The App process was terminated by signal: {reason.lower()}", settings.log_as_json)
        else:
            status_event(False, f"The App process exited with error code: {code}", settings.log_as_json)
        exit_code = code if code >= 0 else 128 - code
        server.should_exit = internal.should_exit = True

    watcher: asyncio.Task[None] | None = None
    if command:
        try:
            child = await asyncio.create_subprocess_exec(*command, env=app_environment(settings))
        except OSError as exc:
            print(f"layotto: cannot start {command[0]}: {exc.strerror}", file=sys.stderr)
            await runtime.close()
            listeners.close()
            return 127
        runtime.extended.update(appPID=str(child.pid), appCommand=" ".join(command))
        watcher = asyncio.create_task(watch_child(child))
    runtime.extended["cliPID"] = str(os.getpid())
    hop = asyncio.create_task(internal.serve(sockets=listeners.internal))
    hop.add_done_callback(lambda _: None if server.should_exit else stop(1))  # the hop's listener failed
    record = instances.register(settings, command, child.pid if child is not None else None)
    try:
        await server.serve(sockets=listeners.api)
    finally:
        record.unlink(missing_ok=True)
        for api in ("http", "grpc"):
            path = settings.unix_socket(api)
            if path is not None:
                path.unlink(missing_ok=True)
        internal.should_exit = True
        await hop
        if child is not None and child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), settings.graceful_shutdown_seconds)
            except TimeoutError:
                child.kill()
        if watcher is not None:
            await watcher
    if not (server.started and internal.started):
        return exit_code or 1  # a listener failed after binding; uvicorn has said why
    status_event(True, "Exited Dapr successfully", settings.log_as_json)
    return exit_code


def status_event(success: bool, message: str, as_json: bool) -> None:
    """One of ``dapr run``'s status lines (✅ on stdout, ❌ on stderr; JSON with ``--log-as-json``), so scripts
    that wait for them, as the quickstarts' README checks wait for "Exited App successfully", work unchanged."""
    stream = sys.stdout if success else sys.stderr
    if as_json:
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        line = json.dumps({"time": stamp, "status": "success" if success else "failure", "msg": message})
    else:
        line = f"{'✅' if success else '❌'}  {message}"
    print(line, file=stream, flush=True)


def run(settings: Settings, command: Sequence[str]) -> int:
    """Serve until stopped (or until the app command exits); the process's exit code."""
    configure_logging(settings.log_level, settings.log_as_json, settings.app_id)
    loop_factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve(settings, command))
