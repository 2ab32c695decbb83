"""``layotto``: ``run`` (Dapr's ``dapr run`` flags), ``list``, ``stop``, ``dashboard``, ``version``.

``layotto run [flags] [--] [COMMAND ARGS...]`` starts the sidecar and, with a command, the app it serves, with
the variables ``dapr run`` gives it (``APP_ID``, ``APP_PORT``, ``DAPR_HTTP_PORT``...); Ctrl-C/SIGTERM are
forwarded to the app, and the sidecar stops when it exits, with its exit code.

Imports stay cheap: the server stack (``app.serve``) is loaded only when a sidecar starts, so ``--help``,
``--version``, ``list`` and ``stop`` answer at once.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from app import __version__
from app.settings import Settings

__all__ = ("NOT_HONOURED", "main", "parse_size")

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

_NOT_YET = "is not supported yet"
#: ``dapr run`` flags that are parsed but not honoured: using one (explicitly; a default never counts) stops
#: ``layotto run`` with ``layotto: <flag> <reason>``. A key is the flag's long name, or ``"<flag> <value>"``
#: when only that value is refused. Whoever wires a flag removes it here.
NOT_HONOURED: dict[str, str] = {
    "--app-protocol grpcs": _NOT_YET,
    "--app-protocol https": "is not supported yet (the app channel speaks plain HTTP)",
    "--app-protocol h2c": "is not supported yet (the app channel speaks HTTP/1.1)",
    "--app-ssl": "is not supported yet (the app channel speaks plain HTTP)",
    "--enable-profiling": "is not supported: there is no pprof endpoint in a Python runtime",
    "--profile-port": "is not supported: there is no pprof endpoint in a Python runtime",
    "--placement-host-address": "is not supported: actors are not served",
    "--scheduler-host-address": "is not supported: jobs and workflows are not served",
    "--kubernetes": "is not supported: layotto runs sidecars on this machine (see docker-compose.yml for containers)",
    "--image": "is not supported: layotto runs sidecars on this machine (see docker-compose.yml for containers)",
    "--runtime-path": "is not supported: there is no Dapr installation to point at (layotto is a Python package)",
}


def parse_size(text: str) -> int:
    """Bytes in a size like ``4Mi``, ``512Ki``, ``10MB`` or a bare number."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (use e.g. 4Mi, 16MB, 1048576)")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


#: Go's flag booleans, as pflag takes them after ``=`` (``--enable-metrics=false``).
_BOOLEANS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


def _switch(parser: argparse.ArgumentParser, *names: str, help: str) -> None:
    """A boolean flag as pflag has them: bare is true, ``--flag=false`` sets a value, and never does it take the
    next word (that may be the app command); None when absent. The ``=value`` forms are option strings of
    their own, which argparse matches whole before splitting at ``=``."""
    dest = names[0].lstrip("-").replace("-", "_")
    parser.add_argument(*names, dest=dest, action="store_const", const=True, help=f"{help} (or {names[0]}=false)")
    for text, value in _BOOLEANS.items():
        spellings = {text, text.upper(), text.capitalize()}
        forms = [f"{name}={spelling}" for name in names if name.startswith("--") for spelling in sorted(spellings)]
        parser.add_argument(*forms, dest=dest, action="store_const", const=value, help=argparse.SUPPRESS)


def _run_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="run a sidecar, and the app command that follows the flags",
        usage="layotto run [flags] [--] [COMMAND ARGS...]",
        allow_abbrev=False,  # as pflag: a flag is spelt in full
        description="Run a sidecar, and optionally an app, side by side (Dapr's `dapr run`).",
    )
    add = run.add_argument
    add("--app-id", "-a", help="the app's id (default: $APP_ID)")
    add("--app-port", "-p", type=int, help="port the app listens on (default: $APP_PORT)")
    add("--app-protocol", "-P", choices=["http", "grpc", "https", "grpcs", "h2c"], help="app channel (default http)")
    add("--app-channel-address", help="address of the app (default 127.0.0.1)")
    add("--app-max-concurrency", type=int, help="most requests delivered to the app at once (default -1: unlimited)")
    _switch(run, "--app-ssl", help="deprecated form of --app-protocol https")
    add("--dapr-http-port", "-H", type=int, help="HTTP API port (default: $DAPR_HTTP_PORT or 3500)")
    add("--dapr-grpc-port", "-G", type=int, help="gRPC API port (default: $DAPR_GRPC_PORT or 50001)")
    add(
        "--dapr-internal-grpc-port",
        "-I",
        type=int,
        help="port other sidecars call this one on, HTTP/1.1 here (default: $DAPR_INTERNAL_GRPC_PORT or a free port)",
    )
    add("--dapr-listen-addresses", help="address the API listens on (default 127.0.0.1)")
    add("--unix-domain-socket", "-u", type=Path, help="folder for the API's Unix domain sockets")
    add(
        "--resources-path",
        "--components-path",
        "-d",
        action="append",
        type=Path,
        help="folder of component/resource YAML files; repeatable (default: the embedded component_specs)",
    )
    add("--config", "-c", type=Path, help="a Dapr Configuration file (tracing, metrics, features)")
    add("--run-file", "-f", type=Path, help="a multi-app run file (dapr.yaml) or its folder")
    add("--log-level", choices=["debug", "info", "warn", "warning", "error", "fatal", "panic"], help="default info")
    _switch(run, "--log-as-json", help="log JSON lines")
    _switch(run, "--enable-api-logging", help="log every API call")
    add("--metrics-port", "-M", type=int, help="Prometheus metrics port (default: $DAPR_METRICS_PORT or 9090)")
    _switch(run, "--enable-metrics", help="serve metrics (default true)")
    _switch(run, "--enable-profiling", help="serve a profiling endpoint")
    add("--profile-port", type=int, help="profiling port (default 7777)")
    add("--placement-host-address", help="actor placement service address")
    add("--scheduler-host-address", help="job scheduler service address")
    _switch(run, "--kubernetes", "-k", help="run on Kubernetes (with --run-file)")
    add("--image", help="container image of the app (with --kubernetes)")
    add("--runtime-path", type=Path, help="the dapr CLI's folder of Dapr binaries")
    add("--internal-token-file", type=Path, help="the hop secret shared by the sidecars (default ~/.layotto/...)")
    add("--internal-tls-cert-file", type=Path, help="this sidecar's certificate for mutual TLS on the hop")
    add("--internal-tls-key-file", type=Path, help="the private key of --internal-tls-cert-file")
    add("--internal-tls-ca-file", type=Path, help="the CA that signs every sidecar's certificate")
    add("--max-body-size", type=parse_size, help="largest request body (default 4Mi)")
    add("--dapr-http-max-request-size", type=int, help="legacy form of --max-body-size, in MB")
    add("--read-buffer-size", type=parse_size, help="largest request head: request line and headers (default 4Ki)")
    add("--dapr-http-read-buffer-size", type=int, help="legacy form of --read-buffer-size, in KB")
    add("--dapr-graceful-shutdown-seconds", type=float, help="drain time on shutdown (default 5)")
    # app.lane: "protocol" (the default) or "asgi"; $LAYOTTO_HTTP_LANE. Not Dapr's: hidden, in the README.
    add("--http-lane", choices=["asgi", "protocol"], help=argparse.SUPPRESS)
    _switch(run, "--enable-app-health-check", help="probe the app's health path")
    add("--app-health-check-path", help="path probed on the app (default /healthz)")
    add("--app-health-probe-interval", type=int, help="seconds between probes (default 5)")
    add("--app-health-probe-timeout", type=int, help="milliseconds a probe may take (default 500)")
    add("--app-health-threshold", type=int, help="failed probes that make the app unhealthy (default 3)")
    add("command", nargs=argparse.REMAINDER, metavar="COMMAND ARGS", help="the app command (a leading -- is optional)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layotto", description="Layotto for Python: a Dapr-compatible sidecar.")
    parser.add_argument("--version", "-v", action="version", version=f"layotto {__version__}")
    commands = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    _run_parser(commands)
    listing = commands.add_parser("list", help="the sidecars running on this machine")
    listing.add_argument("--output", "-o", choices=["table", "json"], default="table", help="default table")
    stop = commands.add_parser("stop", help="stop the sidecars (and their apps) of an app id or a run file")
    targets = stop.add_mutually_exclusive_group(required=True)
    targets.add_argument("--app-id", "-a", action="append", help="repeatable")
    targets.add_argument("--run-file", "-f", type=Path, help="every app of a multi-app run file (or its folder)")
    stop.add_argument("--timeout", type=float, default=30, help="seconds to wait for them to exit (default 30)")
    commands.add_parser("version", help="print the version")
    dashboard = commands.add_parser("dashboard", help="a page over the sidecars on this machine (as dapr dashboard)")
    dashboard.add_argument("--port", "-p", type=int, default=8080, help="port to serve it on (default 8080)")
    dashboard.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    return parser


def not_honoured(args: argparse.Namespace) -> str | None:
    """The refusal for the first flag of ``NOT_HONOURED`` given on the command line, if any."""
    for key, reason in NOT_HONOURED.items():
        flag, _, value = key.partition(" ")
        given = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if given is not None and given is not False and (not value or str(given) == value):
            return f"{key} {reason}" if value else f"{flag} {reason}"
    return None


def _milliseconds(value: int | None) -> float | None:
    return None if value is None else value / 1000


def _read_buffer_size(args: argparse.Namespace) -> int | None:
    legacy: int | None = args.dapr_http_read_buffer_size
    return args.read_buffer_size if legacy is None else legacy << 10


def _max_body_size(args: argparse.Namespace) -> int | None:
    legacy: int | None = args.dapr_http_max_request_size
    return args.max_body_size if legacy is None else legacy << 20


_LOG_LEVELS = {"warn": "warning", "fatal": "critical", "panic": "critical"}


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings of a parsed ``run``: flags over the environment."""
    return Settings.from_environment(
        app_id=args.app_id,
        app_port=args.app_port,
        app_protocol=args.app_protocol,
        app_channel_address=args.app_channel_address,
        app_max_concurrency=args.app_max_concurrency,
        http_port=args.dapr_http_port,
        grpc_port=args.dapr_grpc_port,
        listen_address=args.dapr_listen_addresses,
        unix_domain_socket=args.unix_domain_socket,
        internal_port=args.dapr_internal_grpc_port,
        internal_token_file=args.internal_token_file,
        internal_tls_cert_file=args.internal_tls_cert_file,
        internal_tls_key_file=args.internal_tls_key_file,
        internal_tls_ca_file=args.internal_tls_ca_file,
        resources_paths=tuple(args.resources_path) if args.resources_path else None,
        config_file=args.config,
        log_level=_LOG_LEVELS.get(args.log_level, args.log_level),
        log_as_json=args.log_as_json,
        enable_api_logging=args.enable_api_logging,
        metrics_port=args.metrics_port,
        enable_metrics=args.enable_metrics,
        enable_profiling=args.enable_profiling,
        profile_port=args.profile_port,
        placement_host_address=args.placement_host_address,
        scheduler_host_address=args.scheduler_host_address,
        max_body_size=_max_body_size(args),
        read_buffer_size=_read_buffer_size(args),
        graceful_shutdown_seconds=args.dapr_graceful_shutdown_seconds,
        enable_app_health_check=args.enable_app_health_check,
        app_health_check_path=args.app_health_check_path,
        app_health_probe_interval=args.app_health_probe_interval,
        app_health_probe_timeout=_milliseconds(args.app_health_probe_timeout),
        app_health_threshold=args.app_health_threshold,
        http_lane=args.http_lane,
    )


def _command(args: argparse.Namespace) -> list[str]:
    command: list[str] = args.command
    return command[1:] if command[:1] == ["--"] else command


def _run_file(args: argparse.Namespace) -> int:
    """``-f``: Dapr's multi-app run file; every other setting comes from the file."""
    given = sorted(
        name for name, value in vars(args).items() if value not in (None, [], False) and name not in _RUN_FILE_OWN
    )
    if given:
        flag = "--" + given[0].replace("_", "-") if given[0] != "command" else "an app command"
        print(f"layotto: --run-file takes every setting from the file; drop {flag}", file=sys.stderr)
        return 2
    from app.run_file import RunFileError, load, run

    try:
        apps = load(args.run_file)
    except RunFileError as exc:
        print(f"layotto: {exc}", file=sys.stderr)
        return 1
    return run(apps)


_RUN_FILE_OWN = {"run_file", "subcommand"}


def _run(args: argparse.Namespace) -> int:
    if args.run_file is not None:
        return _run_file(args)
    refusal = not_honoured(args)
    if refusal is not None:
        print(f"layotto: {refusal}", file=sys.stderr)
        return 2
    settings = settings_from(args)
    from app.serve import run  # the server stack, only now

    return run(settings, _command(args))


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _list(args: argparse.Namespace) -> int:
    import json

    from app.instances import running

    found = running()
    if args.output == "json":
        print(
            json.dumps(
                [
                    {
                        "appId": i.app_id,
                        "httpPort": i.http_port,
                        "grpcPort": i.grpc_port,
                        "internalPort": i.internal_port,
                        "appPort": i.app_port or 0,
                        "command": i.command,
                        "age": _age(time.time() - i.created),
                        "created": time.strftime("%Y-%m-%d %H:%M.%S", time.localtime(i.created)),
                        "cliPid": i.pid,
                        "appPid": i.app_pid or 0,
                    }
                    for i in found
                ],
                indent=2,
            )
        )
        return 0
    if not found:
        print("No layotto sidecars found.")
        return 0
    now = time.time()
    rows = [("APP ID", "HTTP PORT", "GRPC PORT", "INTERNAL PORT", "APP PORT", "COMMAND", "AGE", "PID")] + [
        (
            i.app_id,
            str(i.http_port),
            str(i.grpc_port or ""),
            str(i.internal_port),
            str(i.app_port or ""),
            i.command,
            _age(now - i.created),
            str(i.pid),
        )
        for i in found
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _stop(args: argparse.Namespace) -> int:
    from app.instances import find, terminate

    app_ids: list[str] = args.app_id or []
    if args.run_file is not None:
        from app.run_file import RunFileError, load

        try:
            app_ids = [app.app_id for app in load(args.run_file)]
        except RunFileError as exc:
            print(f"layotto: {exc}", file=sys.stderr)
            return 1
    code = 0
    for app_id in app_ids:
        found = find(app_id)
        if not found:
            print(f"layotto: no sidecar with app id {app_id!r} is running on this machine", file=sys.stderr)
            code = 1
            continue
        left = terminate(found, args.timeout)
        if left:
            pids = ", ".join(str(i.pid) for i in left)
            print(f"layotto: {app_id}: still running after {args.timeout:g}s (pid {pids})", file=sys.stderr)
            code = 1
        else:
            print(f"app stopped successfully: {app_id}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.subcommand == "version":
        print(f"layotto {__version__}")
        return 0
    if args.subcommand == "list":
        return _list(args)
    if args.subcommand == "stop":
        return _stop(args)
    if args.subcommand == "dashboard":
        from app.dashboard.server import serve

        return serve(args.port, args.address)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
