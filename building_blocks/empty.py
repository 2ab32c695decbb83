"""The one shared empty mapping: a safe default for metadata parameters and dataclass fields.

Immutable and hashable, so sharing one instance across every request and frozen dataclass is safe
(a shared ``{}`` could be mutated by any holder) and a default allocates nothing per request.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

__all__ = ("NO_METADATA",)


class _NoMetadata(Mapping[str, str]):
    """An empty mapping that cannot be changed and hashes like any other empty one."""

    __slots__ = ()

    def __getitem__(self, key: str) -> str:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "NO_METADATA"


NO_METADATA: Mapping[str, str] = _NoMetadata()
