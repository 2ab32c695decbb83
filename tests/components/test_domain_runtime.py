"""``building_blocks.runtime`` builds, serves and closes the whole runtime with no front loaded.

A second front (gRPC) enters the same runtime, so it must stand alone: it runs here in a fresh interpreter
on the embedded default specs, and that interpreter must never have imported the HTTP side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, json, sys
from pathlib import Path

from building_blocks.errors import LayottoError
from building_blocks.nameresolution.base import ResolveRequest
from building_blocks.state.base import SaveItem
from building_blocks.runtime import Runtime, RuntimeConfig


async def resolve(runtime):
    try:
        return await runtime.resolver.resolve(ResolveRequest("domain-only", "", 0))
    except LayottoError as exc:
        return type(exc).__name__


async def main():
    specs = (Path(sys.argv[1]),)
    config = RuntimeConfig(app_id="domain-only", resources_paths=specs, internal_port=45999)
    report = {}
    async with Runtime(config) as runtime:
        await runtime.wait_settled()
        report["failure"] = runtime.failure
        report["ready"] = {c.spec.name: c.ready for c in runtime.components}
        await runtime.state.save("statestore", [SaveItem("k", b'"kept"')])
        report["value"] = (await runtime.state.get("statestore", "k")).value.decode()
        report["registered"] = await resolve(runtime)
    report["after_close"] = len(runtime.components)
    async with Runtime(RuntimeConfig(app_id="observer", resources_paths=specs)) as observer:
        await observer.wait_settled()
        report["deregistered"] = await resolve(observer)
    report["modules"] = sorted(
        name for name in sys.modules if name.split(".")[0] in ("app", "starlette", "fastapi", "uvicorn")
    )
    print(json.dumps(report))


asyncio.run(main())
"""


def test_the_domain_runtime_builds_and_closes_without_any_front(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "component_specs")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["failure"] == ""
    assert report["ready"] and all(report["ready"].values()), report["ready"]
    assert {"statestore", "lockstore"} <= set(report["ready"])
    assert report["value"] == '"kept"'
    assert report["registered"] == ["127.0.0.1:45999"]  # name resolution is the domain's: this sidecar registered
    assert report["after_close"] == 0
    assert report["deregistered"] == "NoHost"  # closing the stack closed the resolver, which deregistered
    assert report["modules"] == []
