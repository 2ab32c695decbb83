"""Every registered component type has a conformance case: adding one means joining its block's suite.

Each suite in this folder declares ``COMPONENT_TYPES``, the types its cases run (derived from its case
table, so it cannot claim a type it does not test).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from building_blocks.registry import COMPONENTS, block_of

HERE = Path(__file__).parent


def suites() -> dict[str, ModuleType]:
    names = sorted(path.stem for path in HERE.glob("test_*.py") if path.stem != Path(__file__).stem)
    return {name: importlib.import_module(f"tests.conformance.{name}") for name in names}


def test_every_suite_declares_the_types_it_covers() -> None:
    found = suites()
    assert found, "no conformance suites found"
    for name, module in found.items():
        types = getattr(module, "COMPONENT_TYPES", None)
        assert isinstance(types, frozenset) and types, f"{name} declares no COMPONENT_TYPES"
        assert len({block_of(t) for t in types}) == 1, f"{name} covers several blocks: {sorted(types)}"


def test_every_registered_type_has_a_conformance_case() -> None:
    covered = set().union(*(module.COMPONENT_TYPES for module in suites().values()))
    assert sorted(set(COMPONENTS) - covered) == [], "registered types without a conformance case"
    assert sorted(covered - set(COMPONENTS)) == [], "conformance cases of types that are not registered"
