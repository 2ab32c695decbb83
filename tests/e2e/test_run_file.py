"""``layotto run -f``: Dapr's multi-app run file, on the layout of Dapr's pub/sub quickstart (Python, HTTP):
``pub_sub/components/pubsub.yaml`` and ``pub_sub/python/http/dapr.yaml`` with an order processor
(subscriber) and a checkout app (publisher), the apps written here with the standard library."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from app.run_file import RunFileError, load
from tests.e2e.test_cli import ROOT, cli
from tests.services import require_redis

DAPR_YAML = """\
version: 1
common:
  resourcesPath: ../../components/
  env:
    TOPIC: {topic}
apps:
  - appID: order-processor-http
    appDirPath: ./order-processor/
    appPort: {app_port}
    command: ["{python}", "app.py"]
  - appID: checkout-http
    appDirPath: ./checkout/
    command: ["{python}", "app.py"]
"""

PUBSUB = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: orderpubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: {redis}
  - name: redisPassword
    value: ""
"""

ORDER_PROCESSOR = textwrap.dedent(
    """
    import json, os
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _json(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._json([{"pubsubname": "orderpubsub", "topic": os.environ["TOPIC"], "route": "orders"}])

        def do_POST(self):
            event = json.loads(self.rfile.read(int(self.headers["content-length"])))
            print("Subscriber received :", json.dumps(event["data"]), flush=True)
            self._json({"success": True})

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler).serve_forever()
    """
)

CHECKOUT = textwrap.dedent(
    """
    import json, os, time, urllib.request
    base = f"http://localhost:{os.environ['DAPR_HTTP_PORT']}"
    while True:
        try:
            urllib.request.urlopen(base + "/v1.0/healthz/outbound", timeout=2)
            break
        except OSError:
            time.sleep(0.1)
    for i in range(1, 11):
        order = {"orderId": i}
        request = urllib.request.Request(
            f"{base}/v1.0/publish/orderpubsub/{os.environ['TOPIC']}", data=json.dumps(order).encode(),
            headers={"content-type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=10)
        print("Published data:", json.dumps(order), flush=True)
    """
)


def quickstart(root: Path, redis: str, topic: str, app_port: int) -> Path:
    (root / "pub_sub" / "components").mkdir(parents=True)
    (root / "pub_sub" / "components" / "pubsub.yaml").write_text(PUBSUB.format(redis=redis))
    http = root / "pub_sub" / "python" / "http"
    for name, code in (("order-processor", ORDER_PROCESSOR), ("checkout", CHECKOUT)):
        (http / name).mkdir(parents=True)
        (http / name / "app.py").write_text(code)
    (http / "dapr.yaml").write_text(DAPR_YAML.format(topic=topic, app_port=app_port, python=sys.executable))
    return http


def test_dapr_quickstart_layout_runs_both_apps_prefixed_and_ctrl_c_stops_all(tmp_path: Path) -> None:
    from tests.e2e.test_cli import free_port

    topic = f"orders-{uuid.uuid4().hex[:8]}"
    folder = quickstart(tmp_path, require_redis(), topic, free_port())
    home = {**os.environ, "HOME": str(tmp_path)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "-f", str(folder)],
        cwd=ROOT,
        env=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    received: list[dict[str, int]] = []
    published = 0
    lines: list[str] = []
    try:
        assert runner.stdout is not None
        deadline = time.monotonic() + 180
        while (len(received) < 10 or published < 10) and time.monotonic() < deadline:
            line = runner.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("== order-processor-http == Subscriber received :"):
                received.append(json.loads(line.split(":", 1)[1]))
            elif line.startswith("== checkout-http == Published data:"):
                published += 1
            else:
                assert line.startswith(("== order-processor-http == ", "== checkout-http == ")), line
        assert sorted(r["orderId"] for r in received) == list(range(1, 11)), "".join(lines[-40:])
        assert published == 10

        def listed() -> dict[str, dict[str, int]]:
            return {i["appId"]: i for i in json.loads(cli("list", "-o", "json", env={"HOME": str(tmp_path)}).stdout)}

        while set(listed()) != {"order-processor-http"}:  # checkout published its ten orders and exits
            assert runner.poll() is None and time.monotonic() < deadline, listed()
            time.sleep(0.2)
        assert "order-processor-http" in listed()
        assert listed()["order-processor-http"]["httpPort"] != 3500  # no port given: a free one
    finally:
        runner.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            _, stderr = runner.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.communicate()
            raise
    assert runner.returncode == 0, stderr
    assert json.loads(cli("list", "-o", "json", env={"HOME": str(tmp_path)}).stdout) == []


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_paths_are_relative_to_the_file_and_common_gives_defaults(tmp_path: Path) -> None:
    (tmp_path / "a" / ".dapr" / "resources").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "shared").mkdir()
    run_file = _write(
        tmp_path / "dapr.yaml",
        """
        version: 1
        common:
          resourcesPath: ./shared
          logLevel: debug
          enableApiLogging: true
          env: {A: "1", B: "1"}
        apps:
          - appDirPath: ./a
            appPort: 7001
            daprHTTPPort: 3601
            env: {B: "2"}
            command: ["python3", "app.py", "--flag"]
          - appID: bee
            appDirPath: b
            resourcesPaths: [./shared, ./b]
            configFilePath: ./b/config.yaml
            appLogDestination: fileAndConsole
        """,
    )
    first, second = load(run_file, environ={"PATH": "/bin"})
    assert first.app_id == "a" and first.directory == tmp_path / "a"
    args = list(first.arguments)
    assert args[args.index("--app-port") + 1] == "7001" and args[args.index("--dapr-http-port") + 1] == "3601"
    assert args[args.index("--log-level") + 1] == "debug" and "--enable-api-logging=true" in args
    assert args[args.index("--resources-path") + 1] == str(tmp_path / "shared")  # common's wins over .dapr
    assert args[-4:] == ["--", "python3", "app.py", "--flag"]
    assert (first.environment["A"], first.environment["B"], first.environment["PATH"]) == ("1", "2", "/bin")
    assert "DAPR_HTTP_PORT" not in first.environment and int(first.environment["DAPR_GRPC_PORT"]) > 0
    assert second.app_id == "bee" and "--" not in second.arguments  # no command: the sidecar only
    paths = [second.arguments[i + 1] for i, a in enumerate(second.arguments) if a == "--resources-path"]
    assert paths == [str(tmp_path / "shared"), str(tmp_path / "b")]
    assert second.arguments[second.arguments.index("--config") + 1] == str(tmp_path / "b" / "config.yaml")
    assert second.log_file == tmp_path / "b" / ".dapr" / "logs" / "bee.log"
    assert int(second.environment["DAPR_HTTP_PORT"]) != int(first.environment["DAPR_GRPC_PORT"])


def test_dapr_convention_folders_are_used_when_nothing_is_given(tmp_path: Path) -> None:
    (tmp_path / "a" / ".dapr" / "resources").mkdir(parents=True)
    _write(tmp_path / "a" / ".dapr" / "config.yaml", "kind: Configuration\n")
    [app] = load(_write(tmp_path / "dapr.yaml", "version: 1\napps:\n  - appDirPath: a\n"), environ={})
    assert app.arguments[app.arguments.index("--resources-path") + 1] == str(tmp_path / "a" / ".dapr" / "resources")
    assert app.arguments[app.arguments.index("--config") + 1] == str(tmp_path / "a" / ".dapr" / "config.yaml")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("version: 2\napps: [{appDirPath: a}]\n", "version must be 1"),
        ("version: 1\napps: []\n", "apps must be a non-empty list"),
        ("version: 1\nexperiments: 1\napps: [{appDirPath: a}]\n", "unknown field 'experiments'"),
        ("version: 1\napps: [{appDirPath: a, appPrt: 1}]\n", "apps[0] (a): unknown field 'appPrt'"),
        ("version: 1\napps: [{appID: x}]\n", "apps[0]: appDirPath is required"),
        ("version: 1\napps: [{appDirPath: nowhere}]\n", "is not a folder"),
        ("version: 1\napps: [{appDirPath: a, command: python app.py}]\n", "command must be a non-empty list"),
        ("version: 1\napps: [{appDirPath: a, enableApiLogging: maybe}]\n", "enableApiLogging: must be true or false"),
        ("version: 1\napps: [{appDirPath: a}, {appDirPath: a}]\n", "appID 'a' appears twice"),
        ("version: 1\napps: [{appDirPath: a, appLogDestination: syslog}]\n", "appLogDestination must be one of"),
        ("version: [1\n", "while parsing"),
    ],
)
def test_a_bad_run_file_is_one_line_naming_file_app_and_field(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "a").mkdir()
    run_file = _write(tmp_path / "dapr.yaml", body)
    with pytest.raises(RunFileError) as caught:
        load(run_file, environ={})
    assert str(caught.value).startswith(str(run_file)) and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cli_reports_a_bad_run_file_and_refuses_other_flags(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    _write(tmp_path / "dapr.yaml", "version: 1\napps: [{appDirPath: a, appPrt: 1}]\n")
    bad = cli("run", "-f", str(tmp_path))
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"layotto: {tmp_path / 'dapr.yaml'}: apps[0] (a): unknown field 'appPrt'"
    mixed = cli("run", "-f", str(tmp_path), "--app-id", "x")
    assert mixed.returncode == 2
    assert mixed.stderr.strip() == "layotto: --run-file takes every setting from the file; drop --app-id"
    missing = cli("run", "-f", str(tmp_path / "none"))
    assert missing.stderr.strip() == f"layotto: {tmp_path / 'none'}: no such run file"
