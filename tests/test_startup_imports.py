"""A plain ``layotto run`` (the embedded default, no ``--config``) does not import what it does not use.

Each module below cost start-up time (and memory) before it was made lazy; this keeps it so. The check runs
in a fresh interpreter: the server stack is imported, uvicorn's configuration loaded as ``app.serve`` makes
it, and the app's runtime and gRPC front started and stopped on the embedded default as the server's
lifespan does (on free ports).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

#: Loaded on first use only: uvicorn's command line (click, the reloader and worker supervisors), the
#: WebSocket protocols (until an upgrade), the pipeline and API-rule governance (with a ``--config`` using
#: them), the state query language (at the first query), difflib (for a did-you-mean); the gRPC front's
#: services, their generated modules and protobuf (at the first gRPC call; ``app.grpc.server``); and never
#: ``importlib.resources`` with its zip and compression modules (the embedded specs are a folder).
LAZY = (
    "click",
    "uvicorn.main",
    "uvicorn.supervisors",
    "multiprocessing",
    "uvicorn.protocols.websockets.auto",
    "wsproto",
    "websockets",
    "h11",
    "app.governance.api_access",
    "app.governance.app_pipeline",
    "app.governance.pipeline",
    "building_blocks.state.query",
    "difflib",
    "app.grpc.dapr.service",
    "app.grpc.layotto.service",
    "app.grpc.proxy",
    "app.grpc.app_channel",
    "app.grpc.status",
    "dapr.proto",
    "google.protobuf",
    "google.rpc",
    "grpc_health.v1.health",
    "importlib.resources",
    "zipfile",
)

_PROBE = textwrap.dedent(
    """
    import asyncio, json, sys

    import app.serve
    from app._uvicorn import Config, websockets_protocol
    from app.main import create_app
    from app.settings import Settings

    async def main() -> None:
        door = create_app(Settings(app_id="imports", http_port=0, grpc_port=0, metrics_port=0))
        Config(door, ws=websockets_protocol(), lifespan="off", log_config=None).load()  # as app.serve's
        async with door.lifespan(grpc=True):
            pass

    asyncio.run(main())
    print(json.dumps(sorted(sys.modules)))
    """
)


def test_a_plain_start_leaves_the_optional_modules_unimported(tmp_path: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    loaded = set(json.loads(probe.stdout.splitlines()[-1]))
    assert "app.routing" in loaded and "building_blocks.state.sqlite" in loaded  # the probe did start
    assert "app.grpc.server" in loaded and "grpc.aio" in loaded  # with its gRPC front
    assert sorted(name for name in LAZY if name in loaded) == []


def test_uvicorn_without_its_command_line_is_still_the_whole_package() -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, app._uvicorn, uvicorn, uvicorn.config, uvicorn.server\n"
            "assert 'click' not in sys.modules\n"
            "assert uvicorn.Config is uvicorn.config.Config and uvicorn.Server is uvicorn.server.Server\n"
            "assert 'click' not in sys.modules\n"
            "assert callable(uvicorn.run) and uvicorn.__version__ and 'click' in sys.modules\n"
            "from uvicorn.main import Server\n"
            "assert Server is uvicorn.Server and uvicorn.main.name == 'main'\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
