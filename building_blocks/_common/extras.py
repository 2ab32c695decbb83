"""Optional dependencies: which pip extra brings each driver, and the one-line message when it is missing.

The core installs with the embedded default only; ``pip install 'layotto-python[redis]'`` (or
``[postgresql]``, ``[kafka]``, ``[cel]``, ``[bearer]``, ``[all]``) adds a driver. A component whose driver
is absent fails start-up naming the extra, not with a bare ``No module named ...``.
"""

from __future__ import annotations

__all__ = ("DISTRIBUTION", "EXTRAS", "missing_extra")

DISTRIBUTION = "layotto-python"

#: top-level module -> the extra that installs it
EXTRAS: dict[str, str] = {
    "redis": "redis",
    "hiredis": "redis",
    "asyncpg": "postgresql",
    "confluent_kafka": "kafka",
    "cel": "cel",
    "jwt": "bearer",
}


def missing_extra(exc: ImportError) -> str | None:
    """``needs the 'redis' extra: pip install 'layotto-python[redis]'`` for an import of an extra's module
    that failed; None for any other import error (a bug, reported as is)."""
    extra = EXTRAS.get((exc.name or "").partition(".")[0])
    if extra is None:
        return None
    return f"needs the '{extra}' extra: pip install '{DISTRIBUTION}[{extra}]'"
