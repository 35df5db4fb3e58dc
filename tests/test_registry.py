"""The registry: declarations are validated on entry and rejections say precisely why."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from brickrun import Brick, BrickContext, DefinitionErrors, RegistrationError, Runtime, brick
from brickrun._registry import Registry, builtin_registry


async def ok_run(args: Any, ctx: BrickContext) -> Any:
    return args


def sync_run(args: Any, ctx: BrickContext) -> Any:
    return args


async def one_arg(args: Any) -> Any:
    return args


REJECTIONS = [
    (dict(id="acme/greet"), "id 'acme/greet' is not a brick id; expected @scope/name"),
    (dict(id="@Acme/Greet"), "id '@Acme/Greet' is not a brick id"),
    (dict(name=" "), "name must be a non-empty string, found ' '"),
    (dict(kind="renderer"), "kind 'renderer' is not one of: reader, transformer, effect"),
    (dict(run="greet"), "run must be a function (async def run(input, ctx), or def"),
    (dict(run=one_arg), "run must accept two arguments: (input, ctx)"),
    (dict(input_schema={"type": "objekt"}), "input_schema/type: invalid JSON Schema"),
    (
        dict(input_schema={"type": "object", "properties": {"x": {"$ref": "https://x.test/s"}}}),
        "unknown schema $ref 'https://x.test/s'",
    ),
    (dict(input_schema=[1]), "input_schema must be a JSON Schema object, found list"),
]


@pytest.mark.parametrize(("override", "message"), REJECTIONS)
def test_registration_is_validated(override: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = dict(id="@acme/greet", name="Greet", run=ok_run)
    fields.update(override)
    with pytest.raises(RegistrationError) as info:
        Registry().register(Brick(**fields))
    assert message in str(info.value)
    assert str(info.value).startswith(f"cannot register brick {fields['id']!r}")


@pytest.mark.anyio
async def test_a_plain_function_brick_runs_inline_and_may_return_an_awaitable() -> None:
    async def later(args: Any) -> Any:
        return {"later": args["n"]}

    def maybe_later(args: Any, ctx: BrickContext) -> Any:
        return later(args) if args["n"] > 1 else {"now": args["n"]}

    async with Runtime(entry_points=False) as runtime:
        runtime.register(Brick(id="@acme/sync", name="Sync", run=sync_run))
        runtime.register(Brick(id="@acme/maybe", name="Maybe", run=maybe_later))
        assert (await runtime.run_brick("@acme/sync", {"a": 1})).output == {"a": 1}
        assert (await runtime.run_brick("@acme/maybe", {"n": 1})).output == {"now": 1}
        assert (await runtime.run_brick("@acme/maybe", {"n": 2})).output == {"later": 2}


def test_duplicate_id_is_refused_naming_the_first() -> None:
    registry = Registry()
    first = brick(id="@acme/dup", name="First")(ok_run)
    registry.register(first)
    with pytest.raises(RegistrationError, match=r"already registered \(by .*ok_run\)"):
        registry.register(brick(id="@acme/dup", name="Second")(ok_run))


def test_child_registry_sees_and_shadows_its_parent() -> None:
    parent = builtin_registry()
    child = Registry(parent=parent)
    mine = brick(id="@pixiebrix/identity", name="My identity")(ok_run)
    child.register(mine)
    assert child.get("@pixiebrix/identity") is mine
    assert parent.get("@pixiebrix/identity") is not mine
    assert "@pixiebrix/timestamp" in child


def test_builtins_and_shipped_bricks_are_registered() -> None:
    ids = builtin_registry().ids()
    for expected in [
        "@pixiebrix/identity", "@pixiebrix/error", "@pixiebrix/run", "@pixiebrix/if-else",
        "@pixiebrix/for-each", "@pixiebrix/try-catch", "@pixiebrix/retry",
        "@pixiebrix/timestamp", "@pixiebrix/uuid", "@pixiebrix/state/assign",
        "@pixiebrix/state/set", "@pixiebrix/state/get", "@pixiebrix/reflect/run-metadata",
    ]:  # fmt: skip
        assert expected in ids


def test_loading_a_broken_folder_reports_every_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("apiVersion: v2\nkind: component\n")
    (tmp_path / "b.yaml").write_text("apiVersion: v3\nkind: nope\n")
    with pytest.raises(DefinitionErrors) as info:
        Registry().load_path(tmp_path)
    assert [e.location.file.rsplit("/", 1)[-1] for e in info.value.errors if e.location] == [
        "a.yaml",
        "b.yaml",
    ]


@pytest.mark.anyio
async def test_entry_point_bricks_are_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real distribution on sys.path advertising a brick in the brickrun.bricks group."""
    (tmp_path / "acme_bricks.py").write_text(
        textwrap.dedent(
            """
            from brickrun import brick

            @brick(id="@acme/shout", name="Shout", input_schema={"text": {"type": "string"}})
            async def shout(args, ctx):
                return {"text": args["text"].upper()}
            """
        )
    )
    dist = tmp_path / "acme_bricks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-bricks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[brickrun.bricks]\nshout = acme_bricks:shout\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    async with Runtime() as runtime:
        result = await runtime.run_brick("@acme/shout", {"text": "hi"})
    assert result.output == {"text": "HI"}
    sys.modules.pop("acme_bricks", None)


def test_broken_entry_point_names_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "broken_bricks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-bricks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[brickrun.bricks]\nbad = no_such_module:thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistrationError, match=r"entry point 'bad' \(no_such_module:thing\)"):
        Registry().load_entry_points()
