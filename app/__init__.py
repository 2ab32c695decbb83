"""Layotto for Python: the HTTP side of the runtime (FastAPI app, routers, CLI)."""

__version__ = "0.1.0"
