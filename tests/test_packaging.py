"""Packaging: the wheel as a user installs it, in a fresh venv, away from the checkout.

The core (no extras) must serve the embedded default, found as package data; a component whose driver is an
extra that is not installed fails start-up with one line naming the extra; the metadata says the licence and
the extras; ``make run`` installs the runtime only and ``make test`` the dev tools. Needs PyPI (or pip's
cache) for the fresh venv's dependencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import free_port, stop, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(900)  # a fresh venv downloads and installs the core's dependencies


def _pip(python: Path, *args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _pip(Path(sys.executable), "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(ROOT))
    [built] = out.glob("layotto_python-*.whl")
    return built


@pytest.fixture(scope="module")
def core(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and no extras: the bin folder."""
    env = tmp_path_factory.mktemp("core-venv")
    venv.create(env, with_pip=True)
    _pip(env / "bin" / "python", "install", "--quiet", str(wheel))
    return env / "bin"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {"HOME": str(tmp_path), "DAPR_HTTP_PORT": str(free_port()), "PATH": os.environ["PATH"]}


def test_wheel_ships_the_embedded_default_and_its_profiles(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for spec in (ROOT / "component_specs").rglob("*.yaml"):
        assert spec.relative_to(ROOT).as_posix() in names
    assert not any(name.startswith("tests/") for name in names)


def test_wheel_metadata_licence_and_extras(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in archive.namelist())
    assert "License-Expression: Apache-2.0" in text
    extras = {line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Provides-Extra: ")}
    assert {"redis", "postgresql", "kafka", "cel", "bearer", "all", "dev"} <= extras
    core = [line for line in text.splitlines() if line.startswith("Requires-Dist: ") and "extra ==" not in line]
    drivers = ("redis", "asyncpg", "confluent-kafka", "common-expression-language", "pyjwt", "pytest", "matplotlib")
    for driver in drivers:
        assert not any(line.split()[1].lower().startswith(driver) for line in core), (driver, core)


def test_core_install_runs_the_embedded_default_from_anywhere(core: Path, home: dict[str, str], tmp_path: Path) -> None:
    version = subprocess.run([str(core / "layotto"), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("layotto "), version.stderr
    missing = subprocess.run(
        [
            str(core / "python"),
            "-c",
            "import importlib.util as u; print([m for m in ('redis', 'asyncpg', "
            "'confluent_kafka', 'cel', 'pytest', 'mypy', 'matplotlib') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
    )
    assert missing.stdout.strip() == "[]", "the core installed an extra's or a dev tool's package"
    port = int(home["DAPR_HTTP_PORT"])
    sidecar = subprocess.Popen(
        [str(core / "layotto"), "run", "--app-id", "wheel"],
        cwd=tmp_path,  # not the checkout: component_specs must come from site-packages
        env=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_healthy(port, process=sidecar)
        base = f"http://127.0.0.1:{port}"
        types = {c["name"]: c["type"] for c in httpx.get(f"{base}/v1.0/metadata").json()["components"]}
        assert types["statestore"] == "state.sqlite"
        assert httpx.post(f"{base}/v1.0/state/statestore", json=[{"key": "k", "value": 1}]).status_code == 204
        assert httpx.get(f"{base}/v1.0/state/statestore/k").json() == 1
    finally:
        code, stderr = stop(sidecar)
    assert code == 0, stderr
    assert "site-packages/component_specs" not in stderr or "not a directory" not in stderr


@pytest.mark.parametrize(
    ("component", "extra"),
    [
        ("state.redis\n  metadata: [{name: redisHost, value: '127.0.0.1:6379'}]", "redis"),
        ("state.postgresql\n  metadata: [{name: connectionString, value: 'host=127.0.0.1'}]", "postgresql"),
        ("pubsub.kafka\n  metadata: [{name: brokers, value: '127.0.0.1:9092'}]", "kafka"),
        (
            "pubsub.in-memory\n---\napiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: s}\nspec:\n"
            "  pubsubname: store\n  topic: t\n  routes: {rules: [{match: 'event.type == \"x\"', path: /x}], default: /d}",
            "cel",
        ),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    core: Path, home: dict[str, str], tmp_path: Path, component: str, extra: str
) -> None:
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / "c.yaml").write_text(
        f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: store}}\nspec:\n  version: v1\n  type: {component}\n"
    )
    done = subprocess.run(
        [str(core / "layotto"), "run", "--resources-path", str(resources)],
        env=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"layotto: {resources / 'c.yaml'}: ") and line.endswith(
        f"needs the '{extra}' extra: pip install 'layotto-python[{extra}]'"
    ), line


def _make_dry_run(target: str, tmp_path: Path) -> str:
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'fresh'}"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_run_installs_the_runtime_without_dev_tools(tmp_path: Path) -> None:
    commands = _make_dry_run("run", tmp_path)
    assert "python3 -m venv" in commands and "-e '.[all]'" in commands and "[dev]" not in commands
    assert "layotto run" in commands


def test_make_demo_installs_the_runtime_and_the_node_example_and_runs_the_run_file(tmp_path: Path) -> None:
    commands = _make_dry_run("demo", tmp_path)
    assert "-e '.[all]'" in commands and "[dev]" not in commands
    assert "npm ci --prefix examples/node" in commands or (ROOT / "examples/node/node_modules").is_dir()
    recipe = [line for line in commands.splitlines() if not line.startswith("make")]
    assert recipe[-1].endswith("/bin/layotto run -f examples")


def test_make_test_installs_the_dev_tools(tmp_path: Path) -> None:
    commands = _make_dry_run("test", tmp_path)
    assert "python3 -m venv" in commands and "-e '.[dev]'" in commands and "pytest" in commands


def test_dev_extra_brings_every_runtime_extra() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    [everything] = extras["all"]
    runtime_extras = set(everything.removeprefix("layotto-python[").removesuffix("]").split(","))
    assert runtime_extras == set(extras) - {"all", "dev"}  # every runtime extra, and only those
    assert "layotto-python[all]" in extras["dev"]
    assert json.dumps(project["license"]) == '"Apache-2.0"'
