"""The pipeline reducer, rule by rule (SPEC §3): each case fails if its rule is broken."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from brickrun import (
    BrickContext,
    InputValidationError,
    InvalidPathError,
    Runtime,
    RunTimeoutError,
    UnknownBrickError,
    brick,
)
from brickrun.errors import BusinessError

from .conftest import component_yaml, register, run_pipeline_yaml

pytestmark = pytest.mark.anyio

# -- return value and output keys -------------------------------------------------------------

RETURN_CASES = [
    pytest.param(
        """
        - id: "@pixiebrix/identity"
          config: {a: 1}
        """,
        {"a": 1},
        id="last step without outputKey returns its output",
    ),
    pytest.param(
        """
        - id: "@pixiebrix/identity"
          config: {a: 1}
          outputKey: x
        """,
        {},
        id="last step with outputKey returns {}",
    ),
    pytest.param(
        """
        - id: "@pixiebrix/identity"
          config: {a: 1}
        - id: "@pixiebrix/state/assign"
          config: {variableName: v, value: 1}
        """,
        {},
        id="effect in last position returns {}",
    ),
    pytest.param(
        """
        - id: "@pixiebrix/identity"
          config: {a: 1}
        - id: "@pixiebrix/identity"
          if: false
          config: {b: 2}
        """,
        {},
        id="skipped last step returns {}",
    ),
    pytest.param(
        """
        - id: "@pixiebrix/identity"
          config: {a: 1}
          outputKey: first
        - id: "@pixiebrix/identity"
          config: {seen: !var "@first.a"}
        """,
        {"seen": 1},
        id="outputKey binds @key for later steps",
    ),
    pytest.param(
        """
        - id: "@pixiebrix/identity"
          config: {x: 1}
        - id: "@pixiebrix/identity"
          config: {y: 2}
        """,
        {"y": 2},
        id="output of a non-last step without outputKey is discarded",
    ),
]


@pytest.mark.parametrize(("pipeline", "expected"), RETURN_CASES)
async def test_return_value(runtime: Runtime, pipeline: str, expected: Any) -> None:
    assert await run_pipeline_yaml(runtime, pipeline) == expected


async def test_output_key_shadows_earlier_binding(runtime: Runtime) -> None:
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/identity"
          config: {v: 1}
          outputKey: k
        - id: "@pixiebrix/identity"
          config: {v: 2}
          outputKey: k
        - id: "@pixiebrix/identity"
          config: {v: !var "@k.v"}
        """,
    )
    assert out == {"v": 2}


# -- if ----------------------------------------------------------------------------------------

IF_CASES = [
    ("true", True), ("'true'", True), ("' TRUE '", True), ("t", True), ("yes", True),
    ("y", True), ("on", True), ("'1'", True), ("1", True), ("2.5", True), ("-1", True),
    ("false", False), ("'false'", False), ("'no'", False), ("'0'", False), ("''", False),
    ("'off'", False), ("0", False), ("0.0", False), ("~", False), ("{a: 1}", False),
    ("[1]", False), ("'{{ x }}'", False), ("!var '@input.flag'", True),
    ("!var '@input.missing'", False), ("!nunjucks '{{ true if @input.flag }}'", True),
    ("!nunjucks '{{ true if @input.missing }}'", False),
]  # fmt: skip


@pytest.mark.parametrize(("condition", "runs"), IF_CASES, ids=[c for c, _ in IF_CASES])
async def test_if_coercion(runtime: Runtime, condition: str, runs: bool) -> None:
    out = await run_pipeline_yaml(
        runtime,
        f"""
        - id: "@pixiebrix/identity"
          config: {{ran: false}}
          outputKey: r
        - id: "@pixiebrix/identity"
          if: {condition}
          config: {{ran: true}}
          outputKey: r
        - id: "@pixiebrix/identity"
          config: !var "@r"
        """,
        {"flag": True},
    )
    assert out == {"ran": runs}


async def test_if_with_broken_path_fails_instead_of_skipping(runtime: Runtime) -> None:
    with pytest.raises(InvalidPathError, match=r"@input.a.b undefined \(missing a\)"):
        await run_pipeline_yaml(
            runtime,
            """
            - id: "@pixiebrix/identity"
              if: !var "@input.a.b"
            """,
        )


async def test_skipped_step_is_traced_with_reason(runtime: Runtime) -> None:
    brick_id = register(runtime, component_yaml('- id: "@pixiebrix/identity"\n  if: false\n'))
    result = await runtime.run_brick(brick_id, {})
    skips = [r for r in result.trace if r.event == "skip"]
    assert [(r.step_path, r.data) for r in skips] == [("pipeline[0]", "if condition was false")]


# -- rendering ---------------------------------------------------------------------------------

RENDER_CASES = [
    pytest.param("{a: null, b: 1}", {"b": 1}, id="null literal dropped from objects"),
    pytest.param("{a: !var '@input.missing', b: 1}", {"b": 1}, id="null expression dropped"),
    pytest.param("{a: [1, null, !var '@input.missing']}", {"a": [1, None, None]},
                 id="nulls stay in arrays"),
    pytest.param("!var '@input'", {"x": 1, "nested": {"y": [1, 2]}},
                 id="config that is an expression yields the value as is"),
    pytest.param("{t: '{{ @input.x }}'}", {"t": "{{ @input.x }}"},
                 id="plain strings are literals, never rendered"),
    pytest.param("{n: !nunjucks '{{ @input.x }}', v: !var '@input.x'}", {"n": "1", "v": 1},
                 id="templates give strings, !var keeps types"),
    pytest.param("{len: !var '@input.nested.y.length'}", {"len": 2}, id="array length"),
    pytest.param("{d: {deep: {none: null, keep: 0}}}", {"d": {"deep": {"keep": 0}}},
                 id="nulls dropped at any depth of a static object"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "expected"), RENDER_CASES)
async def test_config_rendering(runtime: Runtime, config: str, expected: Any) -> None:
    out = await run_pipeline_yaml(
        runtime,
        f"""
        - id: "@pixiebrix/identity"
          config: {config}
        """,
        {"x": 1, "nested": {"y": [1, 2]}},
    )
    assert out == expected


async def test_brick_may_mutate_its_input_without_changing_the_definition(
    runtime: Runtime,
) -> None:
    @brick(id="@test/mutate", name="Mutate", input_schema={})
    async def mutate(args: Any, ctx: BrickContext) -> Any:
        args["list"].append(99)
        return args

    runtime.register(mutate)
    pipeline = """
    - id: "@test/mutate"
      config: {list: [1]}
    """
    brick_id = register(runtime, component_yaml(pipeline))
    first = (await runtime.run_brick(brick_id, {})).output
    second = (await runtime.run_brick(brick_id, {})).output
    assert first == second == {"list": [1, 99]}


# -- input schema: defaults, validation, no coercion -------------------------------------------


@brick(
    id="@test/typed",
    name="Typed",
    input_schema={
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "mode": {"type": "string", "default": "fast"},
            "nested": {
                "type": "object",
                "properties": {"level": {"type": "integer", "default": 3}},
            },
        },
        "required": ["count"],
    },
)
async def typed(args: Any, ctx: BrickContext) -> Any:
    return args


async def test_schema_defaults_applied_before_validation(runtime: Runtime) -> None:
    runtime.register(typed)
    out = await run_pipeline_yaml(
        runtime, '- id: "@test/typed"\n  config: {count: 1, nested: {}}\n'
    )
    assert out == {"count": 1, "mode": "fast", "nested": {"level": 3}}


async def test_validation_lists_every_failing_path_without_coercion(runtime: Runtime) -> None:
    runtime.register(typed)
    with pytest.raises(InputValidationError) as info:
        await run_pipeline_yaml(
            runtime,
            """
            - id: "@test/typed"
              config:
                count: !nunjucks "{{ 42 }}"
                mode: 7
            """,
        )
    assert info.value.errors == [
        {"path": "count", "message": "'42' is not of type 'integer'"},
        {"path": "mode", "message": "7 is not of type 'string'"},
    ]
    assert info.value.step_path == "pipeline[0]"
    assert info.value.brick_id == "@test/typed"


async def test_missing_required_property_is_reported(runtime: Runtime) -> None:
    runtime.register(typed)
    with pytest.raises(InputValidationError, match="'count' is a required property"):
        await run_pipeline_yaml(runtime, '- id: "@test/typed"\n')


# -- sub-pipelines -----------------------------------------------------------------------------

SUB_CASES = [
    pytest.param(
        """
        body: !pipeline
          - id: "@pixiebrix/identity"
            config: {v: 1}
            outputKey: ignored
        """,
        {"v": 1},
        id="sub-pipeline returns last output regardless of outputKey",
    ),
    pytest.param(
        """
        body: !pipeline
          - id: "@pixiebrix/identity"
            config: {v: 1}
          - id: "@pixiebrix/identity"
            if: false
        """,
        None,
        id="skipped last step gives null",
    ),
    pytest.param("body: !pipeline []", None, id="empty body gives null"),
    pytest.param(
        """
        body: !pipeline
          - id: "@pixiebrix/state/assign"
            config: {variableName: a, value: 1}
        """,
        None,
        id="effect last step gives null",
    ),
    pytest.param(
        """
        body: !pipeline
          - id: "@pixiebrix/identity"
            config: {seen: !var "@outer.v", input: !var "@input.x"}
        """,
        {"seen": 1, "input": 5},
        id="body sees the parent's context at the point of the call",
    ),
]


@pytest.mark.parametrize(("config", "expected"), SUB_CASES)
async def test_sub_pipeline(runtime: Runtime, config: str, expected: Any) -> None:
    import textwrap

    config_block = textwrap.indent(textwrap.dedent(config).strip("\n"), "    ")
    out = await run_pipeline_yaml(
        runtime,
        f"""
- id: "@pixiebrix/identity"
  config: {{v: 1}}
  outputKey: outer
- id: "@pixiebrix/run"
  config:
{config_block}
  outputKey: result
- id: "@pixiebrix/identity"
  config: {{result: !var "@result"}}
""",
        {"x": 5},
    )
    assert out == ({"result": expected} if expected is not None else {})


async def test_sub_pipeline_output_keys_do_not_leak(runtime: Runtime) -> None:
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/run"
          config:
            body: !pipeline
              - id: "@pixiebrix/identity"
                config: {secret: 1}
                outputKey: inner
        - id: "@pixiebrix/identity"
          config: {leaked: !var "@inner"}
        """,
    )
    assert out == {}


async def test_sub_pipeline_closure_is_a_snapshot(runtime: Runtime) -> None:
    """Bindings made after the body was handed over are not visible inside it."""
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/for-each"
          config:
            elements: [1, 2]
            body: !pipeline
              - id: "@pixiebrix/identity"
                config: {element: !var "@element", later: !var "@later"}
          outputKey: loop
        - id: "@pixiebrix/identity"
          config: {v: 1}
          outputKey: later
        - id: "@pixiebrix/identity"
          config: !var "@loop"
        """,
    )
    assert out == {"element": 2}


# -- components --------------------------------------------------------------------------------


async def test_component_sees_only_its_input_options_and_mod(runtime: Runtime) -> None:
    register(
        runtime,
        component_yaml(
            """
            - id: "@pixiebrix/identity"
              config:
                input: !var "@input"
                options: !var "@options"
                mod: !var "@mod"
                callerBinding: !var "@outer"
            """,
            input_schema="{type: object, properties: {n: {type: integer}}}",
            brick_id="@test/inner",
        ),
        file="inner.yaml",
    )
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/identity"
          config: {v: 1}
          outputKey: outer
        - id: "@test/inner"
          config: {n: 3}
        """,
        {"callerInput": True},
        options={"opt": 1},
        mod_variables={"counter": 7},
    )
    assert out == {"input": {"n": 3}, "options": {}, "mod": {"counter": 7}}


async def test_component_pipeline_argument_runs_in_the_callers_context(
    runtime: Runtime,
) -> None:
    register(
        runtime,
        component_yaml(
            """
            - id: "@pixiebrix/run"
              config:
                body: !var "@input.body"
            """,
            input_schema="{type: object, properties: {body: "
            "{$ref: 'https://app.pixiebrix.com/schemas/pipeline#'}}}",
            brick_id="@test/runner",
        ),
        file="runner.yaml",
    )
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@test/runner"
          config:
            body: !pipeline
              - id: "@pixiebrix/identity"
                config: {who: !var "@input.who"}
        """,
        {"who": "caller"},
    )
    assert out == {"who": "caller"}


async def test_component_input_is_validated_before_its_pipeline_runs(
    runtime: Runtime,
) -> None:
    register(
        runtime,
        component_yaml(
            '- id: "@pixiebrix/state/assign"\n  config: {variableName: ran, value: true}\n',
            input_schema="{type: object, properties: {n: {type: integer}}, required: [n]}",
            brick_id="@test/strict",
        ),
        file="strict.yaml",
    )
    with pytest.raises(InputValidationError, match="'n' is a required property"):
        await runtime.run_brick("@test/strict", {})


# -- @mod ---------------------------------------------------------------------------------------


async def test_mod_snapshot_is_refreshed_before_every_step(runtime: Runtime) -> None:
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/state/assign"
          config: {variableName: count, value: 1}
        - id: "@pixiebrix/identity"
          config: {count: !var "@mod.count"}
        """,
    )
    assert out == {"count": 1}


# -- async steps and @pixiebrix/run async --------------------------------------------------------

_gate: dict[str, anyio.Event] = {}


@brick(id="@test/wait", name="Wait for the gate", input_schema={})
async def wait_for_gate(args: Any, ctx: BrickContext) -> Any:
    await _gate["gate"].wait()
    ctx.state("blueprint").assign("done", True)
    return {"waited": True}


@brick(id="@test/fail", name="Fail", input_schema={})
async def fail(args: Any, ctx: BrickContext) -> Any:
    raise ValueError("boom in the background")


async def test_async_step_returns_at_once_and_drain_waits(runtime: Runtime) -> None:
    _gate["gate"] = anyio.Event()
    runtime.register(wait_for_gate)
    from brickrun import ModVariables

    state = ModVariables()
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@test/wait"
          async: true
        - id: "@pixiebrix/identity"
          config: {continued: true}
        """,
        mod_variables=state,
    )
    assert out == {"continued": True}
    assert runtime.pending == 1 and "done" not in state.get()
    _gate["gate"].set()
    assert await runtime.drain(timeout=5)
    assert state.get() == {"done": True}


async def test_run_brick_async_returns_empty_object_bound_to_output_key(
    runtime: Runtime,
) -> None:
    _gate["gate"] = anyio.Event()
    runtime.register(wait_for_gate)
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@pixiebrix/run"
          config:
            async: true
            body: !pipeline
              - id: "@test/wait"
          outputKey: started
        - id: "@pixiebrix/identity"
          config: {started: !var "@started"}
        """,
    )
    assert out == {"started": {}}
    _gate["gate"].set()
    await runtime.drain()


async def test_background_failure_never_fails_the_caller(runtime: Runtime) -> None:
    runtime.register(fail)
    out = await run_pipeline_yaml(
        runtime,
        """
        - id: "@test/fail"
          async: true
        - id: "@pixiebrix/identity"
          config: {ok: true}
        """,
    )
    assert out == {"ok": True}
    await runtime.drain()
    [error] = list(runtime.background_errors)
    assert (error.name, error.message, error.step_path) == (
        "ValueError",
        "boom in the background",
        "pipeline[0]",
    )


# -- errors ------------------------------------------------------------------------------------


async def test_error_carries_step_path_brick_run_and_location(runtime: Runtime) -> None:
    register(
        runtime,
        component_yaml(
            """
            - id: "@pixiebrix/identity"
            - id: "@pixiebrix/identity"
            - id: "@pixiebrix/run"
              config:
                body: !pipeline
                  - id: "@pixiebrix/error"
                    config: {message: "innermost reason"}
            - id: "@pixiebrix/state/assign"
              config: {variableName: after, value: true}
            """
        ),
        file="errors.yaml",
    )
    from brickrun import ModVariables

    state = ModVariables()
    with pytest.raises(BusinessError) as info:
        await runtime.run_brick("@test/subject", {}, mod_variables=state)
    error = info.value
    assert error.message == "innermost reason"
    assert error.step_path == "pipeline[2].config.body[0]"
    assert error.brick_id == "@pixiebrix/error"
    assert error.run_id is not None and len(error.run_id) == 36
    assert error.location is not None
    assert (error.location.file, error.location.line) == ("errors.yaml", 13)
    assert [f.step_path for f in error.frames] == [
        "pipeline[2].config.body[0]",
        "pipeline[2]",
        "",
    ]
    assert state.get() == {}, "steps after a failure must not run"


async def test_unknown_brick_names_closest_ids(runtime: Runtime) -> None:
    with pytest.raises(UnknownBrickError) as info:
        await run_pipeline_yaml(runtime, '- id: "@pixiebrix/identiti"\n')
    assert info.value.suggestions[0] == "@pixiebrix/identity"
    assert "did you mean '@pixiebrix/identity'" in str(info.value)


async def test_python_exception_is_wrapped_with_its_class_name(runtime: Runtime) -> None:
    runtime.register(fail)
    from brickrun import BrickError

    with pytest.raises(BrickError) as info:
        await run_pipeline_yaml(runtime, '- id: "@test/fail"\n')
    assert info.value.name == "ValueError"
    assert isinstance(info.value.__cause__, ValueError)


# -- cancellation and deadlines ----------------------------------------------------------------


@brick(id="@test/sleep", name="Sleep", input_schema={"seconds": {"type": "number"}})
async def sleep(args: Any, ctx: BrickContext) -> Any:
    await anyio.sleep(args["seconds"])
    ctx.state("blueprint").assign("slept", True)
    return {}


async def test_deadline_stops_the_run_and_its_background_steps(runtime: Runtime) -> None:
    runtime.register(sleep)
    from brickrun import ModVariables

    state = ModVariables()
    with pytest.raises(RunTimeoutError):
        await run_pipeline_yaml(
            runtime,
            """
            - id: "@test/sleep"
              async: true
              config: {seconds: 0.3}
            - id: "@test/sleep"
              config: {seconds: 5}
            """,
            mod_variables=state,
            timeout=0.1,
        )
    assert await runtime.drain(timeout=2)
    await anyio.sleep(0.3)
    assert state.get() == {}, "the background step was cancelled at the run's deadline"


async def test_cancel_a_run_by_id(runtime: Runtime) -> None:
    from brickrun import RunCancelledError

    runtime.register(sleep)
    brick_id = register(runtime, component_yaml('- id: "@test/sleep"\n  config: {seconds: 5}\n'))
    run = runtime.new_run()
    outcome: list[BaseException] = []

    async def go() -> None:
        try:
            await runtime.run_brick(brick_id, {}, run=run)
        except RunCancelledError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(go)
        await anyio.sleep(0.05)
        assert runtime.cancel(run.run_id)
    assert len(outcome) == 1


# -- traces ------------------------------------------------------------------------------------


async def test_trace_has_enter_and_exit_records_nested_for_sub_pipelines(
    runtime: Runtime,
) -> None:
    seen: list[str] = []
    runtime.subscribe(lambda record: seen.append(record.event))
    brick_id = register(
        runtime,
        component_yaml(
            """
            - id: "@pixiebrix/run"
              config:
                body: !pipeline
                  - id: "@pixiebrix/identity"
                    config: {a: 1}
            """
        ),
    )
    result = await runtime.run_brick(brick_id, {})
    shape = [(r.event, r.step_path, r.depth) for r in result.trace]
    assert shape == [
        ("enter", "", 0),
        ("enter", "pipeline[0]", 1),
        ("enter", "pipeline[0].config.body[0]", 2),
        ("exit", "pipeline[0].config.body[0]", 2),
        ("exit", "pipeline[0]", 1),
        ("exit", "", 0),
    ]
    enter = result.trace[2]
    assert enter.data == {"a": 1}
    assert all(
        r.duration_ms is not None and r.duration_ms >= 0 for r in result.trace if r.event == "exit"
    )
    assert seen == [r.event for r in result.trace]


async def test_a_long_run_keeps_its_latest_trace_records_and_counts_the_rest(
    runtime: Runtime,
) -> None:
    """A run's trace is bounded in memory (TRACE_LIMIT): the latest records stay, the earlier
    ones are counted, and trace subscribers still receive every record."""
    from brickrun._run import TRACE_LIMIT

    seen: list[Any] = []
    runtime.subscribe(seen.append)
    brick_id = register(
        runtime,
        component_yaml(
            """
            - id: "@pixiebrix/for-each"
              config:
                elements: !var "@input.items"
                body: !pipeline
                  - id: "@pixiebrix/identity"
                    config: {n: !var "@element"}
            """
        ),
    )
    result = await runtime.run_brick(brick_id, {"items": list(range(TRACE_LIMIT))})
    assert result.output == {"n": TRACE_LIMIT - 1}
    total = len([r for r in seen if r.run_id == result.run_id])
    assert total > TRACE_LIMIT
    assert len(result.trace) == TRACE_LIMIT
    assert result.trace_dropped == total - TRACE_LIMIT
    last = {"n": TRACE_LIMIT - 1}
    assert [(r.event, r.brick_id, r.data) for r in result.trace[-3:]] == [
        ("exit", "@pixiebrix/identity", last),
        ("exit", "@pixiebrix/for-each", last),
        ("exit", brick_id, last),
    ]
    # Dropped: the component's and the loop's enter records, then 2 records per element.
    first_kept = (result.trace_dropped - 2) // 2
    assert [(r.event, r.data) for r in result.trace[:1]] == [("enter", {"n": first_kept})]
