"""Built-in bricks that need no host or database: outputs exactly as SPEC §4 lists them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from brickrun import BusinessError, ModVariables, Runtime, VirtualClock

from .conftest import run_pipeline_yaml

pytestmark = pytest.mark.anyio


async def test_timestamp_is_iso_utc_with_millis_and_epoch_from_one_instant() -> None:
    instant = datetime(2026, 11, 23, 15, 4, 5, 678901, tzinfo=UTC)
    async with Runtime(clock=VirtualClock(instant), entry_points=False) as runtime:
        out = (await runtime.run_brick("@pixiebrix/timestamp", {})).output
    assert out == {"timestamp": "2026-11-23T15:04:05.678Z", "epochMillis": 1795446245678}


async def test_uuid_is_a_fresh_v4_each_call(runtime: Runtime) -> None:
    first = (await runtime.run_brick("@pixiebrix/uuid", {})).output["uuid"]
    second = (await runtime.run_brick("@pixiebrix/uuid", {})).output["uuid"]
    assert first != second
    assert uuid.UUID(first).version == 4


async def test_identity_returns_its_arguments(runtime: Runtime) -> None:
    assert (await runtime.run_brick("@pixiebrix/identity", {"a": [1, {"b": None}]})).output == {
        "a": [1, {"b": None}]
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [("{message: 'Order is closed'}", "Order is closed"), ("{}", "Unknown business error")],
)
async def test_error_brick_raises_business_error(
    runtime: Runtime, config: str, message: str
) -> None:
    with pytest.raises(BusinessError) as info:
        await run_pipeline_yaml(runtime, f'- id: "@pixiebrix/error"\n  config: {config}\n')
    assert info.value.message == message and info.value.name == "BusinessError"


async def test_run_metadata_outside_a_mod(runtime: Runtime) -> None:
    result = await runtime.run_brick("@pixiebrix/reflect/run-metadata", {})
    assert result.output == {
        "mod": {"id": None, "version": None},
        "deploymentId": None,
        "modComponentId": None,
        "runId": result.run_id,
    }


IF_ELSE = [
    ("true", {"branch": "if"}),
    ("'no'", {"branch": "else"}),
    ("!var '@input.flag'", {"branch": "if"}),
]


@pytest.mark.parametrize(("condition", "expected"), IF_ELSE)
async def test_if_else(runtime: Runtime, condition: str, expected: Any) -> None:
    out = await run_pipeline_yaml(
        runtime,
        f"""
        - id: "@pixiebrix/if-else"
          config:
            condition: {condition}
            if: !pipeline
              - id: "@pixiebrix/identity"
                config: {{branch: if}}
            else: !pipeline
              - id: "@pixiebrix/identity"
                config: {{branch: else}}
        """,
        {"flag": True},
    )
    assert out == expected


async def test_if_else_without_else_gives_null(runtime: Runtime) -> None:
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/if-else"
          config:
            condition: false
            if: !pipeline [{id: "@pixiebrix/identity"}]
          outputKey: r
        - id: "@pixiebrix/identity"
          config: {r: !var "@r", was_null: true}
        """,
    )
    assert out == {"was_null": True}


async def test_for_each_binds_element_key_and_returns_last(runtime: Runtime) -> None:
    state = ModVariables()
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/for-each"
          config:
            elements: [a, b, c]
            elementKey: letter
            body: !pipeline
              - id: "@pixiebrix/state/set"
                config:
                  data: {seen: [!var "@letter"]}
                  mergeStrategy: deep
              - id: "@pixiebrix/identity"
                config: {last: !var "@letter"}
        """,
        mod_variables=state,
    )
    assert out == {"last": "c"}
    # deep merges arrays index by index (PixieBrix page state): each write replaces item 0
    assert state.get() == {"seen": ["c"]}


async def test_for_each_over_empty_list_gives_null(runtime: Runtime) -> None:
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/for-each"
          config: {elements: [], body: !pipeline [{id: "@pixiebrix/identity"}]}
          outputKey: r
        - id: "@pixiebrix/identity"
          config: {r: !var "@r"}
        """,
    )
    assert out == {}


async def test_try_catch_binds_the_serialized_error(runtime: Runtime) -> None:
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/try-catch"
          config:
            errorKey: problem
            try: !pipeline
              - id: "@pixiebrix/error"
                config: {message: nope}
            except: !pipeline
              - id: "@pixiebrix/identity"
                config:
                  name: !var "@problem.name"
                  message: !var "@problem.message"
                  brick: !var "@problem.brickId"
        """,
    )
    assert out == {"name": "BusinessError", "message": "nope", "brick": "@pixiebrix/error"}


async def test_try_catch_returns_try_value_when_nothing_fails(runtime: Runtime) -> None:
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/try-catch"
          config:
            try: !pipeline [{id: "@pixiebrix/identity", config: {ok: 1}}]
            except: !pipeline [{id: "@pixiebrix/identity", config: {ok: 0}}]
        """,
    )
    assert out == {"ok": 1}


async def test_retry_succeeds_after_failures(runtime: Runtime) -> None:
    state = ModVariables({"attempts": 0})
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/retry"
          config:
            maxRetries: 5
            body: !pipeline
              - id: "@pixiebrix/state/set"
                config: {data: {attempts: !nunjucks "{{ (@mod.attempts | int) + 1 }}"}}
              - id: "@pixiebrix/error"
                if: !nunjucks "{{ @mod.attempts | int < 3 }}"
              - id: "@pixiebrix/identity"
                config: {attempts: !var "@mod.attempts"}
        """,
        mod_variables=state,
    )
    assert out == {"attempts": "3"}


async def test_retry_is_bounded_by_default_and_raises_the_last_error(runtime: Runtime) -> None:
    state = ModVariables({"attempts": 0})
    with pytest.raises(BusinessError, match="still failing"):
        await run_pipeline_yaml(
            runtime,
            """
            - id: "@pixiebrix/retry"
              config:
                body: !pipeline
                  - id: "@pixiebrix/state/set"
                    config: {data: {attempts: !nunjucks "{{ (@mod.attempts | int) + 1 }}"}}
                  - id: "@pixiebrix/error"
                    config: {message: still failing}
            """,
            mod_variables=state,
        )
    assert state.get() == {"attempts": "4"}, "default maxRetries is 3 (4 attempts)"


STATE_CASES = [
    ("shallow", {"a": {"x": 1}, "list": [1, 2, 3]}, {"a": {"y": 2}, "list": [9]},
     {"a": {"y": 2}, "list": [9]}),
    ("replace", {"a": 1, "b": 2}, {"c": 3}, {"c": 3}),
    ("deep", {"a": {"x": 1}, "list": [1, 2, 3]}, {"a": {"y": 2}, "list": [9]},
     {"a": {"x": 1, "y": 2}, "list": [9, 2, 3]}),
    ("deep", {"a": {"x": 1}}, {"a": None}, {"a": None}),
]  # fmt: skip


@pytest.mark.parametrize(("strategy", "old", "new", "expected"), STATE_CASES)
async def test_state_set_merge_strategies(
    runtime: Runtime, strategy: str, old: Any, new: Any, expected: Any
) -> None:
    state = ModVariables(old)
    result = await runtime.run_brick(
        "@pixiebrix/state/set", {"data": new, "mergeStrategy": strategy}, mod_variables=state
    )
    assert result.output == expected
    assert state.get() == expected


async def test_state_namespaces_are_separate(runtime: Runtime) -> None:
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/state/set"
          config: {data: {where: private}, namespace: extension}
        - id: "@pixiebrix/state/assign"
          config: {variableName: where, value: mod}
        - id: "@pixiebrix/state/get"
          config: {namespace: extension}
          outputKey: private
        - id: "@pixiebrix/identity"
          config: {private: !var "@private.where", mod: !var "@mod.where"}
        """,
    )
    assert out == {"private": "private", "mod": "mod"}


def test_builtins_use_only_the_public_api() -> None:
    """bricks/ may import brickrun's public names only (SPEC layout: bricks → public API)."""
    import ast
    from pathlib import Path

    import brickrun

    for path in Path(__file__).parent.parent.joinpath("bricks").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("brickrun")
            ):
                assert node.module == "brickrun", f"{path.name} imports {node.module}"
                for alias in node.names:
                    assert alias.name in brickrun.__all__, f"{path.name}: {alias.name}"
    assert re.match(r"^\d+\.\d+\.\d+$", brickrun.__version__)
