"""Loading Dapr resource files: what loads, what is skipped, and the one-line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from app.runtime import Runtime
from app.settings import Settings
from building_blocks.errors import SpecError
from building_blocks.registry import resolve
from building_blocks.specs import load_resources


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def component(name: str, component_type: str, metadata: str = "", extra: str = "") -> str:
    return (
        textwrap.dedent(
            f"""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: {name}
        spec:
          type: {component_type}
          version: v1
          metadata:
        """
        )
        + (textwrap.indent(textwrap.dedent(metadata), "    ") if metadata else "    []\n")
        + textwrap.dedent(extra)
    )


async def prepared(directory: Path, app_id: str = "app1", **environ: str) -> Runtime:
    runtime = Runtime(Settings(app_id=app_id, resources_paths=(directory,), environ=environ))
    await runtime.prepare()
    return runtime


def test_multi_document_files_scopes_and_foreign_documents(tmp_path: Path) -> None:
    write(
        tmp_path,
        "all.yaml",
        component("a", "state.in-memory")
        + "---\n"
        + component("b", "state.in-memory", extra="scopes:\n  - app2\n")
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n"
        + component("c", "state.in-memory", extra="scopes: [app1]\n"),
    )
    write(tmp_path, "notes.txt", "not a resource")
    names = [spec.name for spec in load_resources([tmp_path], "app1").components]
    assert names == ["a", "c"]


def test_unknown_type_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"unknown component type 'state.rediss'; did you mean 'state.redis'\?"):
        resolve("state.rediss")


async def test_unknown_type_error_names_the_file_and_component(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", component("mystore", "state.mongo-typo"))
    with pytest.raises(SpecError) as caught:
        await prepared(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and "mystore" in message and "state.mongo-typo" in message


async def test_missing_required_metadata_names_the_field(tmp_path: Path) -> None:
    write(tmp_path, "redis.yaml", component("cache", "state.redis"))
    with pytest.raises(
        SpecError, match=r"redis.yaml: component 'cache' \(state.redis\): metadata 'redisHost' is required"
    ):
        await prepared(tmp_path)


async def test_malformed_yaml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    write(tmp_path, "broken.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: [unclosed\n")
    with pytest.raises(SpecError, match=r"broken.yaml: malformed YAML") as caught:
        await prepared(tmp_path)
    assert "\n" not in str(caught.value)


async def test_duplicate_names_in_one_block_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "one.yaml", component("s", "state.in-memory"))
    write(tmp_path, "two.yaml", component("s", "state.in-memory"))
    with pytest.raises(SpecError, match="already in"):
        await prepared(tmp_path)


async def test_bad_key_prefix_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", component("s", "state.in-memory", "- name: keyPrefix\n  value: 'a||b'\n"))
    with pytest.raises(SpecError, match="keyPrefix"):
        await prepared(tmp_path)


async def test_secret_key_ref_env_ref_and_templates(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text('{"redis": {"password": "pw"}}')
    write(
        tmp_path,
        "secrets.yaml",
        component("vault", "secretstores.local.file", f"- name: secretsFile\n  value: {secrets}\n"),
    )
    write(
        tmp_path,
        "state.yaml",
        component(
            "s",
            "state.in-memory",
            """\
            - name: password
              secretKeyRef:
                name: "redis:password"
                key: "redis:password"
            - name: fromEnv
              envRef: MY_SETTING
            - name: consumer
              value: "{appID}-x"
            - name: number
              value: 42
            """,
            extra="auth:\n  secretStore: vault\n",
        ),
    )
    runtime = await prepared(tmp_path, MY_SETTING="from-env")
    store = next(c.component for c in runtime.components if c.spec.name == "s")
    assert store.metadata["password"] == "pw"
    assert store.metadata["fromenv"] == "from-env"  # names are case-insensitive
    assert store.metadata["consumer"] == "app1-x"
    assert store.metadata["number"] == "42"
    await runtime.close()


async def test_secret_key_ref_to_a_missing_secret_fails_start_up(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text("{}")
    write(
        tmp_path,
        "secrets.yaml",
        component("vault", "secretstores.local.file", f"- name: secretsFile\n  value: {secrets}\n"),
    )
    write(
        tmp_path,
        "state.yaml",
        component(
            "s", "state.in-memory", "- name: password\n  secretKeyRef: {name: nope}\n", "auth:\n  secretStore: vault\n"
        ),
    )
    with pytest.raises(SpecError, match=r"component 's' \(state.in-memory\): secretKeyRef nope/nope"):
        await prepared(tmp_path)


def test_embedded_default_specs_load() -> None:
    from app.settings import DEFAULT_RESOURCES_PATH

    specs = load_resources([DEFAULT_RESOURCES_PATH], "any").components
    assert sorted((s.name, s.type) for s in specs) == [
        ("configstore", "configuration.sqlite"),
        ("lockstore", "lock.sqlite"),
        ("pubsub", "pubsub.in-memory"),
        ("sequencer", "sequencer.sqlite"),
        ("statestore", "state.sqlite"),
    ]
