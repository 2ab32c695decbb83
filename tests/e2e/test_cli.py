"""``layotto run`` as a real process: the embedded default, an app command, signals, several sidecars."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.settings import DEFAULT_RESOURCES_PATH, Settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def layotto(*args: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", *args],
        cwd=ROOT,
        # a gRPC port of its own (unless the test gives one): several sidecars run at once, 50001 is one
        env={**os.environ, "DAPR_GRPC_PORT": str(free_port()), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


class PortTaken(AssertionError):
    """The sidecar could not bind its port: ``free_port`` gave it back and someone else took it meanwhile."""


def _serves(http: httpx.Client, process: subprocess.Popen[str]) -> bool:
    """Whether the sidecar answering on ``http`` is ``process``."""
    try:
        return bool(http.get("/v1.0/metadata").json()["extended"]["cliPID"] == str(process.pid))
    except (ValueError, KeyError, TypeError):
        return False


def wait_healthy(port: int, timeout: float = 60, process: subprocess.Popen[str] | None = None) -> float:
    """Seconds until /healthz answers 204. ``timeout`` only bounds a failure (a busy machine starts slowly).

    With ``process``: the answer must come from that process (its ``cliPID``), not from another sidecar that
    took the port, and a process that exits meanwhile fails at once, with its stderr."""
    started = time.monotonic()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:  # one client: each costs CPU
        while time.monotonic() - started < timeout:
            if process is not None and process.poll() is not None:
                _, stderr = process.communicate()
                error = PortTaken if "address already in use" in stderr else AssertionError
                raise error(f"sidecar on {port} exited with {process.returncode} before healthy:\n{stderr}")
            try:
                if http.get("/v1.0/healthz").status_code == 204 and (process is None or _serves(http, process)):
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise AssertionError(f"sidecar on {port} not healthy after {timeout}s")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh HOME, so the embedded default's SQLite file lives in the test's directory."""
    yield {"HOME": str(tmp_path), "DAPR_HTTP_PORT": str(free_port()), "DAPR_GRPC_PORT": str(free_port())}


def stop(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """SIGTERM, then the exit code and stderr; a process still running after ``timeout`` is killed (and fails)."""
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        stderr += f"\n(still running {timeout}s after SIGTERM: killed)"
    return process.returncode, stderr


def test_defaults_are_the_embedded_specs_on_3500() -> None:
    settings = Settings.from_environment({})
    assert settings.http_port == 3500
    assert settings.resources_paths == (DEFAULT_RESOURCES_PATH,)


def test_embedded_default_saves_gets_and_survives_a_restart(home: dict[str, str]) -> None:
    port = int(home["DAPR_HTTP_PORT"])
    sidecar = layotto(env=home)
    try:
        wait_healthy(port)
        base = f"http://127.0.0.1:{port}/v1.0/state/statestore"
        saved = httpx.post(base, content=b'[{"key":"a","value":{"x":1}}]')
        assert saved.status_code == 204
        got = httpx.get(f"{base}/a")
        assert got.status_code == 200 and got.content == b'{"x":1}' and got.headers["etag"]
    finally:
        code, stderr = stop(sidecar)
    assert code == 0, stderr
    assert (Path(home["HOME"]) / ".layotto" / "data" / "state.db").exists()

    again = layotto(env=home)
    try:
        wait_healthy(port)
        assert httpx.get(f"http://127.0.0.1:{port}/v1.0/state/statestore/a").json() == {"x": 1}
    finally:
        stop(again)


APP = textwrap.dedent(
    """
    import os, signal, sys, time, httpx
    port = os.environ["DAPR_HTTP_PORT"]
    assert os.environ["APP_ID"] == "orders", os.environ["APP_ID"]
    assert os.environ["APP_PORT"] == "9999" and os.environ["APP_CHANNEL_ADDRESS"] == "127.0.0.1"
    expected = os.environ.get("EXPECTED_GRPC_PORT", os.environ["DAPR_GRPC_PORT"])
    assert os.environ["DAPR_GRPC_PORT"] == expected, os.environ["DAPR_GRPC_PORT"]
    assert int(os.environ["DAPR_METRICS_PORT"]) >= 0
    for _ in range(500):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1.0/healthz/outbound").status_code == 204:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    httpx.post(f"http://127.0.0.1:{port}/v1.0/state/statestore", json=[{"key": "from-app", "value": "hi"}]).raise_for_status()
    if sys.argv[1] == "wait":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print("ready", flush=True)
        time.sleep(60)
    sys.exit(int(sys.argv[1]))
    """
)


def test_app_command_gets_dapr_environment_and_its_exit_code_is_returned(home: dict[str, str]) -> None:
    grpc = str(free_port())
    env = {**home, "EXPECTED_GRPC_PORT": grpc}
    argv = ("--app-id", "orders", "--app-port", "9999", "-G", grpc, "--", sys.executable, "-c", APP, "7")
    sidecar = layotto(*argv, env=env)
    stdout, stderr = sidecar.communicate(timeout=30)
    assert sidecar.returncode == 7, stderr
    # dapr run's status lines: the app's failure on stderr, the sidecar's clean exit on stdout
    assert "❌  The App process exited with error code: 7\n" in stderr
    assert stdout.endswith("✅  Exited Dapr successfully\n"), stdout
    assert "Exited App successfully" not in stdout


def test_sigterm_is_forwarded_to_the_app_and_the_sidecar_follows(home: dict[str, str]) -> None:
    sidecar = layotto("--app-id", "orders", "--app-port", "9999", "--", sys.executable, "-c", APP, "wait", env=home)
    assert sidecar.stdout is not None
    assert sidecar.stdout.readline().strip() == "ready"
    sidecar.send_signal(signal.SIGTERM)
    stdout, stderr = sidecar.communicate(timeout=60)
    assert sidecar.returncode == 0, stderr
    assert stdout.splitlines()[-2:] == ["✅  Exited App successfully", "✅  Exited Dapr successfully"], stdout


def test_bad_spec_fails_start_up_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: cache}\nspec: {type: state.redis, version: v1}\n"
    )
    sidecar = layotto("--resources-path", str(tmp_path), "--dapr-http-port", str(free_port()))
    _, stderr = sidecar.communicate(timeout=30)
    assert sidecar.returncode == 1
    lines = stderr.strip().splitlines()
    assert lines == [
        f"layotto: {tmp_path / 'bad.yaml'}: component 'cache' (state.redis): metadata 'redisHost' is required"
    ]


def test_component_that_cannot_connect_stops_the_sidecar(tmp_path: Path) -> None:
    (tmp_path / "pg.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: db}\nspec:\n  type: state.postgresql\n"
        "  version: v1\n  metadata:\n  - {name: connectionString, value: 'host=127.0.0.1 port=1 user=x connect_timeout=1'}\n"
    )
    sidecar = layotto("--resources-path", str(tmp_path), "--dapr-http-port", str(free_port()))
    _, stderr = sidecar.communicate(timeout=30)
    assert sidecar.returncode == 1
    assert f"{tmp_path / 'pg.yaml'}: component 'db' (state.postgresql): init failed" in stderr


COUNTER = textwrap.dedent(
    """
    import os, sys, httpx
    base = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0/state/statestore"
    with httpx.Client() as client:
        done = 0
        while done < int(sys.argv[1]):
            got = client.get(f"{base}/counter")
            value = got.json() if got.status_code == 200 else 0
            item = {"key": "counter", "value": value + 1}
            if got.status_code == 200:
                item["etag"] = got.headers["etag"]
            else:
                item["options"] = {"concurrency": "first-write"}
            answer = client.post(base, json=[item])
            if answer.status_code == 204:
                done += 1
            else:
                assert answer.status_code == 409, answer.text
    """
)


def test_two_sidecar_processes_share_the_sqlite_file_without_lost_updates(tmp_path: Path) -> None:
    (tmp_path / "state.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: statestore}\nspec:\n  type: state.sqlite\n"
        f"  version: v1\n  metadata:\n  - {{name: connectionString, value: '{tmp_path / 'shared.db'}'}}\n"
    )
    ports = [free_port(), free_port()]
    sidecars = [
        layotto("--app-id", "counter", "--resources-path", str(tmp_path), "--dapr-http-port", str(port))
        for port in ports
    ]
    try:
        for port in ports:
            wait_healthy(port)
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", COUNTER, "100"], env={**os.environ, "DAPR_HTTP_PORT": str(port)}, text=True
            )
            for port in ports
        ]
        for worker in workers:
            assert worker.wait(timeout=120) == 0
        assert httpx.get(f"http://127.0.0.1:{ports[0]}/v1.0/state/statestore/counter").json() == 200
    finally:
        for sidecar in sidecars:
            stop(sidecar)


# ---- `dapr run` flag parity --------------------------------------------------------------------------------

DAPR_RUN_FLAGS = [
    ["--app-id", "a"],
    ["-a", "a"],
    ["--app-port", "1"],
    ["-p", "1"],
    ["--app-protocol", "http"],
    ["-P", "http"],
    ["--app-max-concurrency", "2"],
    ["--app-ssl"],
    ["--dapr-http-port", "1"],
    ["-H", "1"],
    ["--dapr-grpc-port", "1"],
    ["-G", "1"],
    ["--dapr-internal-grpc-port", "1"],
    ["-I", "1"],
    ["--dapr-listen-addresses", "0.0.0.0"],
    ["--unix-domain-socket", "/tmp"],
    ["-u", "/tmp"],
    ["--resources-path", "x"],
    ["--components-path", "x"],
    ["-d", "x"],
    ["--config", "c.yaml"],
    ["-c", "c.yaml"],
    ["--run-file", "dapr.yaml"],
    ["-f", "dapr.yaml"],
    ["--log-level", "fatal"],
    ["--log-as-json"],
    ["--enable-api-logging"],
    ["--metrics-port", "1"],
    ["-M", "1"],
    ["--enable-metrics=false"],
    ["--enable-profiling"],
    ["--profile-port", "1"],
    ["--placement-host-address", "x:1"],
    ["--scheduler-host-address", "x:1"],
    ["--kubernetes"],
    ["-k"],
    ["--image", "x"],
    ["--runtime-path", "x"],
    ["--max-body-size", "1Mi"],
    ["--dapr-http-max-request-size", "1"],
    ["--read-buffer-size", "1Ki"],
    ["--dapr-http-read-buffer-size", "1"],
    ["--dapr-graceful-shutdown-seconds", "1"],
    ["--enable-app-health-check"],
    ["--app-health-check-path", "/h"],
    ["--app-health-probe-interval", "1"],
    ["--app-health-probe-timeout", "1"],
    ["--app-health-threshold", "1"],
]


@pytest.mark.parametrize("flag", DAPR_RUN_FLAGS, ids=lambda flag: " ".join(flag))
def test_every_dapr_run_flag_parses(flag: list[str]) -> None:
    from app.cli import _parser, settings_from

    args = _parser().parse_args(["run", *flag, "python", "app.py"])
    assert args.command == ["python", "app.py"]  # a switch never swallows the app command
    settings_from(args)


def test_flags_reach_settings() -> None:
    from app.cli import _parser, settings_from

    argv = "run -c cfg.yaml -M 9191 --enable-metrics=false --enable-api-logging --log-as-json -G 50009 -H 3999"
    argv += " --app-max-concurrency 4 --dapr-http-max-request-size 2 --log-level fatal -d a -d b"
    settings = settings_from(_parser().parse_args(argv.split()))
    assert settings.config_file == Path("cfg.yaml")
    assert (settings.metrics_port, settings.enable_metrics, settings.enable_api_logging) == (9191, False, True)
    assert (settings.log_as_json, settings.grpc_port, settings.http_port) == (True, 50009, 3999)
    assert (settings.app_max_concurrency, settings.max_body_size) == (4, 2 << 20)
    assert settings.log_level == "critical" and settings.resources_paths == (Path("a"), Path("b"))


def test_defaults_come_from_daprs_environment_variables() -> None:
    settings = Settings.from_environment({"DAPR_GRPC_PORT": "50101", "DAPR_METRICS_PORT": "9191"})
    assert (settings.grpc_port, settings.metrics_port) == (50101, 9191)
    defaults = Settings.from_environment({})
    assert (defaults.grpc_port, defaults.metrics_port, defaults.app_max_concurrency) == (50001, 9090, -1)
    assert defaults.config_file is None and defaults.enable_metrics and not defaults.log_as_json


def _run_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(subparsers.choices["run"]._actions)


def test_not_honoured_flags_are_refused_only_when_given() -> None:
    from app.cli import NOT_HONOURED, _parser, not_honoured

    parser = _parser()
    assert not_honoured(parser.parse_args(["run", "-a", "x", "-P", "http", "--enable-metrics=false"])) is None
    for key in NOT_HONOURED:
        flag, _, value = key.partition(" ")
        action = next(a for a in _run_actions(parser) if flag in a.option_strings)
        argv = [flag] if action.const is True else [flag, value or "1"]
        assert not_honoured(parser.parse_args(["run", *argv])) == f"{key} {NOT_HONOURED[key]}"


def test_a_not_honoured_flag_stops_with_one_line() -> None:
    from app.cli import NOT_HONOURED

    flag = "--placement-host-address"  # actors are not served: this one stays refused
    process = layotto("--app-id", "x", flag, "127.0.0.1:50005", "--dapr-http-port", str(free_port()))
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [f"layotto: {flag} {NOT_HONOURED[flag]}"]


def test_unknown_flag_is_still_an_argparse_error() -> None:
    process = layotto("--no-such-flag")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2 and "unrecognized arguments: --no-such-flag" in stderr


# ---- the CLI as the `dapr` CLI: command without --, --version, list/stop, cheap imports, taken port ------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_app_command_needs_no_double_dash(home: dict[str, str]) -> None:
    sidecar = layotto("--app-id", "orders", "--app-port", "9999", sys.executable, "-c", APP, "0", env=home)
    stdout, stderr = sidecar.communicate(timeout=60)
    assert sidecar.returncode == 0, stderr
    assert stdout.splitlines()[-2:] == ["✅  Exited App successfully", "✅  Exited Dapr successfully"], stdout


def test_usage_shows_the_app_command() -> None:
    assert cli("run", "--help").stdout.startswith("usage: layotto run [flags] [--] [COMMAND ARGS...]")


def test_version() -> None:
    from app import __version__

    for argv in (["--version"], ["version"]):
        done = cli(*argv)
        assert (done.returncode, done.stdout.strip()) == (0, f"layotto {__version__}")


SERVER_STACK = ("uvicorn", "starlette", "httpx", "app.serve", "app.runtime", "building_blocks.runtime", "yaml")


@pytest.mark.parametrize(
    "argv", [["--help"], ["run", "--help"], ["--version"], ["version"], ["list"], ["stop", "-a", "x"]]
)
def test_cli_commands_that_serve_nothing_import_no_server_stack(argv: list[str], tmp_path: Path) -> None:
    code = (
        "import sys, contextlib, app.cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(None), contextlib.redirect_stderr(None):\n"
        f"    app.cli.main({argv!r})\n"
        f"print(sorted(m for m in {SERVER_STACK!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_a_taken_port_is_one_line(home: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = layotto("--dapr-http-port", str(port), env=home)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert stderr.strip().splitlines() == [
        f"layotto: cannot listen on 127.0.0.1:{port} (HTTP API): address already in use"
    ]


def test_a_taken_grpc_port_is_one_line(home: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = layotto(env={**home, "DAPR_GRPC_PORT": str(port)})
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert stderr.strip().splitlines() == [
        f"layotto: cannot listen on 127.0.0.1:{port} (gRPC API): address already in use"
    ]


def test_listen_addresses_take_daprs_comma_separated_list(home: dict[str, str]) -> None:
    port = int(home["DAPR_HTTP_PORT"])
    sidecar = layotto("--app-id", "two", "--dapr-listen-addresses", "127.0.0.1,127.0.0.2", env=home)
    try:
        wait_healthy(port, process=sidecar)
        for host in ("127.0.0.1", "127.0.0.2"):
            assert httpx.get(f"http://{host}:{port}/v1.0/healthz").status_code == 204, host
        [listed] = json.loads(cli("list", "-o", "json", env=home).stdout)
        for host in ("127.0.0.1", "127.0.0.2"):  # the internal port too, on the same port
            with socket.create_connection((host, listed["internalPort"]), timeout=5):
                pass
    finally:
        code, stderr = stop(sidecar)
    assert code == 0, stderr


def test_unix_domain_socket_serves_the_apis_on_daprs_socket_files(home: dict[str, str], tmp_path: Path) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    folder = Path(tempfile.mkdtemp(prefix="uds-", dir="/tmp"))  # short: a socket path has ~100 bytes at most
    sidecar = layotto("--app-id", "sock", "--unix-domain-socket", str(folder), env=home)
    http_socket, grpc_socket = folder / "dapr-sock-http.socket", folder / "dapr-sock-grpc.socket"
    try:
        deadline = time.monotonic() + 60
        while not http_socket.is_socket():  # bound before anything else starts
            assert sidecar.poll() is None, sidecar.communicate()[1]
            assert time.monotonic() < deadline, "no socket file"
            time.sleep(0.05)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(http_socket)), base_url="http://unix") as http:
            while http.get("/v1.0/healthz").status_code != 204:
                assert sidecar.poll() is None and time.monotonic() < deadline, "not healthy on the socket"
                time.sleep(0.1)
            assert http.post("/v1.0/state/statestore", json=[{"key": "k", "value": 7}]).status_code == 204
            assert http.get("/v1.0/state/statestore/k").json() == 7
        with grpc.insecure_channel(f"unix:{grpc_socket}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)  # type: ignore[attr-defined]
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(httpx.TransportError):  # instead of TCP, as daprd
            httpx.get(f"http://127.0.0.1:{home['DAPR_HTTP_PORT']}/v1.0/healthz", timeout=2)
    finally:
        code, stderr = stop(sidecar)
    assert code == 0, stderr
    assert not http_socket.exists() and not grpc_socket.exists()  # removed on the way out
    folder.rmdir()


def test_listen_hosts() -> None:
    from app.serve import listen_hosts

    assert listen_hosts("127.0.0.1, [::1]") == ["127.0.0.1", "::1"]
    assert listen_hosts("127.0.0.1,0.0.0.0") == ["0.0.0.0"]  # every interface: the others cannot share its port
    assert listen_hosts("") == ["0.0.0.0"] and listen_hosts("[::]") == ["::"]
    assert Settings(listen_address="10.0.0.5,127.0.0.1").advertised_host == "10.0.0.5"


def test_port_zero_from_the_environment_means_a_free_port() -> None:
    settings = Settings.from_environment({"DAPR_GRPC_PORT": "0", "DAPR_METRICS_PORT": "0"})
    assert (settings.grpc_port, settings.metrics_port) == (0, 0)


def test_list_shows_running_sidecars_and_stop_stops_them(home: dict[str, str]) -> None:
    port = int(home["DAPR_HTTP_PORT"])
    assert cli("list", env=home).stdout.strip() == "No layotto sidecars found."
    sidecar = layotto("--app-id", "orders", "--app-port", "9999", sys.executable, "-c", APP, "wait", env=home)
    try:
        assert sidecar.stdout is not None
        assert sidecar.stdout.readline().strip() == "ready", sidecar.communicate()[1]
        [listed] = json.loads(cli("list", "-o", "json", env=home).stdout)
        assert (listed["appId"], listed["httpPort"], listed["appPort"]) == ("orders", port, 9999)
        assert listed["grpcPort"] == int(home["DAPR_GRPC_PORT"]) and listed["age"].endswith("s")
        assert listed["cliPid"] == sidecar.pid and listed["command"].startswith(sys.executable)
        table = cli("list", env=home).stdout.splitlines()
        assert table[0].split()[:4] == ["APP", "ID", "HTTP", "PORT"]
        assert table[1].split()[:3] == ["orders", str(port), home["DAPR_GRPC_PORT"]]

        missing = cli("stop", "--app-id", "nobody", env=home)
        assert missing.returncode == 1
        assert missing.stderr.strip() == "layotto: no sidecar with app id 'nobody' is running on this machine"

        stopped = cli("stop", "--app-id", "orders", env=home)
        assert (stopped.returncode, stopped.stdout.strip()) == (0, "app stopped successfully: orders"), stopped.stderr
        _, stderr = sidecar.communicate(timeout=60)
        assert sidecar.returncode == 0, stderr  # the app exited 0 on SIGTERM, the sidecar followed it
    finally:
        if sidecar.poll() is None:
            stop(sidecar)
    assert json.loads(cli("list", "-o", "json", env=home).stdout) == []


def test_list_forgets_a_killed_sidecar(home: dict[str, str]) -> None:
    sidecar = layotto("--app-id", "killed", env=home)
    try:
        wait_healthy(int(home["DAPR_HTTP_PORT"]), process=sidecar)
        assert [i["appId"] for i in json.loads(cli("list", "-o", "json", env=home).stdout)] == ["killed"]
    finally:
        sidecar.kill()
        sidecar.communicate()
    assert json.loads(cli("list", "-o", "json", env=home).stdout) == []
    assert not list((Path(home["HOME"]) / ".layotto" / "run").glob("*.json"))
