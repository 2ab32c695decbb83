"""docs/components.md's metadata tables are the components' own declarations: generated from the registry and
each component's typed metadata, so the reference cannot drift from the code. ``python -m tests.test_docs``
rewrites them."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

import building_blocks._common.metadata as metadata_module
from building_blocks.component import Metadata
from building_blocks.registry import COMPONENTS, resolve

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "components.md"
BEGIN, END = "<!-- generated: python -m tests.test_docs -->", "<!-- end of generated -->"


class _Declared(Exception):
    def __init__(self, declaration: type[Any]) -> None:
        self.declaration = declaration


def declaration_of(component_type: str) -> type[Any] | None:
    """The metadata declaration a component parses at construction (caught before it connects anywhere)."""
    cls = resolve(component_type, "v1")
    original = metadata_module._values

    def record(declaration: type[Any], meta: Metadata) -> dict[str, Any]:
        raise _Declared(declaration)

    metadata_module._values = record
    try:
        cls("doc", Metadata({}, "doc"))
    except _Declared as declared:
        return declared.declaration
    except Exception:  # a component that reads nothing before failing on empty metadata
        return None
    finally:
        metadata_module._values = original
    return None


def _rows(declaration: type[Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for f in dataclasses.fields(declaration):
        spec = f.metadata[metadata_module._KEY]
        if isinstance(spec, metadata_module._Group):
            rows.extend(_rows(spec.declaration))
            continue
        default = "**required**" if spec.required else ("" if spec.default in ("", None) else f"`{spec.default}`")
        if isinstance(spec.default, bool):
            default = f"`{str(spec.default).lower()}`"
        aliases = ", ".join(f"`{alias}`" for alias in spec.aliases)
        rows.append((f"`{spec.name}`", default, aliases))
    return rows


def generated() -> str:
    parts = [BEGIN]
    for component_type in sorted(COMPONENTS):
        declaration = declaration_of(component_type)
        rows = _rows(declaration) if declaration is not None else []
        parts.append(f"\n### `{component_type}`\n")
        if not rows:
            parts.append("No metadata of its own.\n")
            continue
        parts.append("| metadata | default | also accepted |\n|---|---|---|")
        parts.extend(f"| {name} | {default} | {aliases} |" for name, default, aliases in rows)
    parts.append(END)
    return "\n".join(parts)


def _current() -> str:
    text = DOC.read_text()
    return text[text.index(BEGIN) : text.index(END) + len(END)]


def test_component_reference_is_generated_from_the_declarations() -> None:
    assert _current() == generated(), "docs/components.md is stale: python -m tests.test_docs"


def test_every_registered_component_is_documented() -> None:
    documented = set(re.findall(r"^### `([\w.-]+)`$", _current(), re.MULTILINE))
    assert documented == set(COMPONENTS)


def test_links_between_the_docs_resolve() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_coming_from_dapr_names_every_refused_flag_and_unserved_api() -> None:
    from app.cli import NOT_HONOURED
    from app.routers.unserved import UNSERVED

    text = (ROOT / "docs" / "coming-from-dapr.md").read_text()
    for key in NOT_HONOURED:
        flag, _, value = key.partition(" ")
        assert f"`{flag}" in text and (not value or f"`{value}`" in text), key
    for _template, _methods, api in UNSERVED:
        assert f"naming `{api}`" in text or f"the {api} API" in text, api


if __name__ == "__main__":
    text = DOC.read_text()
    DOC.write_text(text[: text.index(BEGIN)] + generated() + text[text.index(END) + len(END) :])
    sys.exit(0)
