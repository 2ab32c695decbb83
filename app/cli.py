"""``layotto run [flags] [-- COMMAND ARGS...]``: the sidecar, and optionally the app it serves.

With a command, the app is started with the variables ``dapr run`` gives it (``APP_ID``, ``APP_PORT``,
``DAPR_HTTP_PORT``...), Ctrl-C/SIGTERM are forwarded to it, and the sidecar stops when it exits, with its
exit code. Without one, the sidecar runs until stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from pathlib import Path

import uvicorn

from app.http_server import bounded_protocol
from app.invocation.hop_server import bind_internal, internal_config
from app.main import create_app
from app.runtime import Runtime
from app.settings import Settings
from building_blocks.errors import SpecError

__all__ = ("main", "parse_size")

log = logging.getLogger("layotto")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 1 << 10,
    "mi": 1 << 20,
    "gi": 1 << 30,
    "ti": 1 << 40,
}
FORCE_SHUTDOWN_DELAY = 0.1


def parse_size(text: str) -> int:
    """Bytes in a size like ``4Mi``, ``512Ki``, ``10MB`` or a bare number."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (use e.g. 4Mi, 16MB, 1048576)")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layotto", description="Layotto for Python: a Dapr-compatible sidecar.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the sidecar (and an app command after --)")
    run.add_argument("--app-id", "-a", help="the app's id (default: $APP_ID)")
    run.add_argument("--app-port", "-p", type=int, help="port the app listens on (default: $APP_PORT)")
    run.add_argument("--app-protocol", "-P", choices=["http"], help="protocol of the app channel")
    run.add_argument("--app-channel-address", help="address of the app (default 127.0.0.1)")
    run.add_argument("--dapr-http-port", "-H", type=int, help="HTTP API port (default: $DAPR_HTTP_PORT or 3500)")
    run.add_argument("--dapr-listen-addresses", help="address the API listens on (default 127.0.0.1)")
    run.add_argument(
        "--dapr-internal-grpc-port",
        "-I",
        type=int,
        help="port other sidecars call this one on, HTTP/1.1 here (default: $DAPR_INTERNAL_GRPC_PORT or a free port)",
    )
    run.add_argument(
        "--internal-token-file",
        type=Path,
        help="the hop secret shared by the sidecars (default ~/.layotto/internal-token)",
    )
    run.add_argument("--internal-tls-cert-file", type=Path, help="this sidecar's certificate for mutual TLS on the hop")
    run.add_argument("--internal-tls-key-file", type=Path, help="the private key of --internal-tls-cert-file")
    run.add_argument("--internal-tls-ca-file", type=Path, help="the CA that signs every sidecar's certificate")
    run.add_argument(
        "--resources-path",
        "--components-path",
        "-d",
        action="append",
        type=Path,
        help="folder of component/resource YAML files; repeatable (default: the embedded component_specs)",
    )
    run.add_argument("--log-level", choices=["debug", "info", "warn", "warning", "error"], help="default info")
    run.add_argument("--max-body-size", type=parse_size, help="largest request body (default 4Mi)")
    run.add_argument(
        "--read-buffer-size", type=parse_size, help="largest request head: request line and headers (default 4Ki)"
    )
    run.add_argument("--dapr-http-read-buffer-size", type=int, help="legacy form of --read-buffer-size, in KB")
    run.add_argument("--dapr-graceful-shutdown-seconds", type=float, help="drain time on shutdown (default 5)")
    run.add_argument("--enable-app-health-check", action="store_true", default=None, help="probe the app's health path")
    run.add_argument("--app-health-check-path", help="path probed on the app (default /healthz)")
    run.add_argument("--app-health-probe-interval", type=int, help="seconds between probes (default 5)")
    run.add_argument("--app-health-probe-timeout", type=int, help="milliseconds a probe may take (default 500)")
    run.add_argument("--app-health-threshold", type=int, help="failed probes that make the app unhealthy (default 3)")
    return parser


def _milliseconds(value: int | None) -> float | None:
    return None if value is None else value / 1000


def _read_buffer_size(args: argparse.Namespace) -> int | None:
    legacy: int | None = args.dapr_http_read_buffer_size
    return args.read_buffer_size if legacy is None else legacy << 10


def _settings(args: argparse.Namespace) -> Settings:
    level = {"warn": "warning"}.get(args.log_level, args.log_level)
    return Settings.from_environment(
        app_id=args.app_id,
        app_port=args.app_port,
        app_protocol=args.app_protocol,
        app_channel_address=args.app_channel_address,
        http_port=args.dapr_http_port,
        listen_address=args.dapr_listen_addresses,
        internal_port=args.dapr_internal_grpc_port,
        internal_token_file=args.internal_token_file,
        internal_tls_cert_file=args.internal_tls_cert_file,
        internal_tls_key_file=args.internal_tls_key_file,
        internal_tls_ca_file=args.internal_tls_ca_file,
        resources_paths=tuple(args.resources_path) if args.resources_path else None,
        log_level=level,
        max_body_size=args.max_body_size,
        read_buffer_size=_read_buffer_size(args),
        graceful_shutdown_seconds=args.dapr_graceful_shutdown_seconds,
        enable_app_health_check=args.enable_app_health_check,
        app_health_check_path=args.app_health_check_path,
        app_health_probe_interval=args.app_health_probe_interval,
        app_health_probe_timeout=_milliseconds(args.app_health_probe_timeout),
        app_health_threshold=args.app_health_threshold,
    )


def _app_environment(settings: Settings) -> dict[str, str]:
    env = dict(settings.environ)
    env.pop("LAYOTTO_INTERNAL_TOKEN", None)  # the hop secret is the sidecars', never the app's
    env.update(
        APP_ID=settings.app_id,
        APP_CHANNEL_ADDRESS=settings.app_channel_address,
        APP_PROTOCOL=settings.app_protocol,
        DAPR_HTTP_PORT=str(settings.http_port),
    )
    if settings.app_port:
        env["APP_PORT"] = str(settings.app_port)
    return env


class _Server(uvicorn.Server):
    """uvicorn's server, with signals left to ``_serve`` (which may forward them to the app)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve(settings: Settings, command: Sequence[str]) -> int:
    try:
        internal_socket = bind_internal(settings)
    except OSError as exc:
        print(f"layotto: cannot listen on internal port {settings.internal_port}: {exc.strerror}", file=sys.stderr)
        return 1
    settings = replace(settings, internal_port=internal_socket.getsockname()[1])  # advertised as bound
    runtime = Runtime(settings)
    try:
        await runtime.prepare()
    except SpecError as exc:
        print(f"layotto: {exc}", file=sys.stderr)
        await runtime.close()
        internal_socket.close()
        return 1
    config = uvicorn.Config(
        create_app(settings, runtime),
        host=settings.listen_address,
        port=settings.http_port,
        http=bounded_protocol(settings.read_buffer_size),
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

    def on_signal(signum: int) -> None:
        if child is not None and child.returncode is None:
            child.send_signal(signum)  # the app decides; the sidecar stops when it exits
        else:
            stop(0)

    def on_shutdown_request(force: bool) -> None:
        if force:
            loop.call_later(FORCE_SHUTDOWN_DELAY, os._exit, 1)
        if child is not None and child.returncode is None:
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
        exit_code = code if code >= 0 else 128 - code
        server.should_exit = internal.should_exit = True

    watcher: asyncio.Task[None] | None = None
    if command:
        try:
            child = await asyncio.create_subprocess_exec(*command, env=_app_environment(settings))
        except OSError as exc:
            print(f"layotto: cannot start {command[0]}: {exc.strerror}", file=sys.stderr)
            await runtime.close()
            return 127
        runtime.extended.update(appPID=str(child.pid), appCommand=" ".join(command))
        watcher = asyncio.create_task(watch_child(child))
    runtime.extended["cliPID"] = str(os.getpid())
    hop = asyncio.create_task(internal.serve(sockets=[internal_socket]))
    hop.add_done_callback(lambda _: None if server.should_exit else stop(1))  # the hop's listener failed
    try:
        await server.serve()
    finally:
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
    if not (server.started and internal.started) and not exit_code:
        exit_code = 1  # e.g. the port was taken; uvicorn has said why
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in args_list:
        split = args_list.index("--")
        args_list, command = args_list[:split], args_list[split + 1 :]
    args = _parser().parse_args(args_list)
    settings = _settings(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    loop_factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve(settings, command))


if __name__ == "__main__":
    sys.exit(main())
