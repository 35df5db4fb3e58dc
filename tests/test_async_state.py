"""``@pixies/async`` (Run with Async Mod Variable): state shape, stale requests, telemetry mode."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from brickrun import BrickContext, ModVariables, PropError, Runtime, brick

from .conftest import run_pipeline_yaml

pytestmark = pytest.mark.anyio

gates: dict[str, anyio.Event] = {}


@brick(id="@test/gate", name="Gate", input_schema={"name": {"type": "string"}})
async def gate(args: Any, ctx: BrickContext) -> Any:
    await gates[args["name"]].wait()
    return {"from": args["name"]}


ASYNC = """
- id: "@pixies/async"
  config:
    stateKey: result
    telemetryMode: {mode}
    body: !pipeline
      - id: "@test/gate"
        config: {{name: {name}}}
      - id: "@pixiebrix/error"
        if: {fail}
        config: {{message: body failed}}
      - id: "@pixiebrix/identity"
        config: !var "@input"
  outputKey: started
- id: "@pixiebrix/identity"
  config: {{requestId: !var "@started.requestId", state: !var "@mod.result"}}
"""


def pipeline(name: str, *, fail: bool = False, mode: str = "never") -> str:
    return ASYNC.format(name=name, fail=str(fail).lower(), mode=mode)


async def test_loading_then_success(runtime: Runtime) -> None:
    runtime.register(gate)
    gates["a"] = anyio.Event()
    state = ModVariables()
    out = await run_pipeline_yaml(runtime, pipeline("a"), {"x": 1}, mod_variables=state)
    request_id = out["requestId"]
    assert out["state"] == {
        "isLoading": True, "isFetching": True, "isSuccess": False, "isError": False,
        "currentData": None, "data": None, "requestId": request_id, "error": None,
    }  # fmt: skip
    gates["a"].set()
    await runtime.drain()
    assert state.get()["result"] == {
        "isLoading": False, "isFetching": False, "isSuccess": True, "isError": False,
        "currentData": {"x": 1}, "data": {"x": 1}, "requestId": request_id, "error": None,
    }  # fmt: skip


async def test_error_is_stored_and_not_reported_by_default(runtime: Runtime) -> None:
    runtime.register(gate)
    gates["b"] = anyio.Event()
    gates["b"].set()
    state = ModVariables()
    await run_pipeline_yaml(runtime, pipeline("b", fail=True), mod_variables=state)
    await runtime.drain()
    result = state.get()["result"]
    assert (result["isError"], result["data"], result["error"]["message"]) == (
        True,
        None,
        "body failed",
    )
    assert list(runtime.background_errors) == []


async def test_telemetry_mode_error_reports_the_body_error(runtime: Runtime) -> None:
    runtime.register(gate)
    gates["c"] = anyio.Event()
    gates["c"].set()
    await run_pipeline_yaml(runtime, pipeline("c", fail=True, mode="error"))
    await runtime.drain()
    [error] = list(runtime.background_errors)
    assert (error.name, error.message) == ("BusinessError", "body failed")


async def test_stale_completion_is_ignored(runtime: Runtime) -> None:
    runtime.register(gate)
    gates["old"], gates["new"] = anyio.Event(), anyio.Event()
    state = ModVariables()
    first = await run_pipeline_yaml(runtime, pipeline("old"), {"v": "old"}, mod_variables=state)
    second = await run_pipeline_yaml(runtime, pipeline("new"), {"v": "new"}, mod_variables=state)
    refetch = second["state"]
    assert refetch["requestId"] == second["requestId"] != first["requestId"]
    assert (refetch["isFetching"], refetch["isLoading"]) == (True, True)
    gates["new"].set()
    await anyio.sleep(0.01)
    gates["old"].set()
    await runtime.drain()
    final = state.get()["result"]
    assert (final["requestId"], final["data"]) == (second["requestId"], {"v": "new"})


async def test_previous_data_is_kept_while_refetching(runtime: Runtime) -> None:
    runtime.register(gate)
    gates["d"] = anyio.Event()
    gates["d"].set()
    state = ModVariables()
    await run_pipeline_yaml(runtime, pipeline("d"), {"v": 1}, mod_variables=state)
    await runtime.drain()
    gates["e"] = anyio.Event()
    out = await run_pipeline_yaml(runtime, pipeline("e"), {"v": 2}, mod_variables=state)
    assert (out["state"]["data"], out["state"]["currentData"], out["state"]["isSuccess"]) == (
        {"v": 1},
        None,
        True,
    )
    gates["e"].set()
    await runtime.drain()


async def test_blank_state_key_is_a_prop_error(runtime: Runtime) -> None:
    with pytest.raises(PropError, match="Mod Variable Name is required"):
        await run_pipeline_yaml(
            runtime,
            """
            - id: "@pixies/async"
              config: {stateKey: "  ", body: !pipeline []}
            """,
        )
