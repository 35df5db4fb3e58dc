"""The pipeline reducer: runs steps in order against a context (SPEC §3).

Per step: refresh ``@mod``; evaluate ``if`` (false → skipped and traced); render the config;
apply integration inputs and schema defaults; validate; run the brick (or start it in the
background for ``async: true``); check the output schema (logged, never raised); bind
``@<outputKey>``. Errors get the step's frame attached on the way out by ``_step_boundary``,
the one place that knows where a step lives.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from time import perf_counter
from typing import Any

import anyio

from ._bricks import Brick, BrickContext
from ._expressions import PipelineExpression
from ._model import Pipeline, Step
from ._registry import Registry
from ._render import is_truthy
from ._run import RunState, _wrap
from .errors import Frame, RunError, UnknownBrickError

__all__ = ["run_body", "run_pipeline"]

log = logging.getLogger("brickrun.pipeline")

_NOTHING = object()  # the step gave the pipeline no value: skipped, an effect, or async


def _framed(exc: Exception, step: Step, run: RunState) -> BaseException:
    """The error to raise for a step failure: run errors gain the step's frame; anything else
    is wrapped in ``BrickError`` first. Unknown bricks already carry their location."""
    if isinstance(exc, UnknownBrickError):
        return exc
    error = exc if isinstance(exc, RunError) else _wrap(exc)
    error.add_frame(Frame(step.path_text, step.brick_id, step.location), run.run_id)
    return error


def _resolve(step: Step, run: RunState) -> Brick:
    """The step's brick, cached on the step until the registry changes (or another registry
    runs it); an unknown id raises ``UnknownBrickError`` with the step's location."""
    registry = run.registry
    version = registry.version
    found = registry.find(step.brick_id)
    if found is None:
        registry.get(step.brick_id, location=step.location, path=step.path + ("id",))
    assert found is not None
    if found._validator is None:
        found._prepare()
    step.resolved = (registry, version, found)
    return found


async def _call(brick: Brick, args: Any, step: Step, run: RunState) -> Any:
    """Run the brick itself; an effect's value is discarded (``_NOTHING``)."""
    started = perf_counter()
    context = BrickContext(run, brick.id, step.path_text)
    if brick._is_async:
        output = await brick.run(args, context)
    else:
        output = brick.run(args, context)
        if hasattr(output, "__await__"):  # a plain function that returned an awaitable
            output = await output
    return _finish(brick, output, step, run, started)


def _finish(brick: Brick, output: Any, step: Step, run: RunState, started: float) -> Any:
    """After the brick returned: the outputSchema check and the ``exit`` trace."""
    duration = (perf_counter() - started) * 1000
    if brick.kind == "effect":
        output = _NOTHING
    elif brick._output_validator is not None:
        problems = brick.output_errors(output)
        if problems:
            # SPEC §3: an outputSchema mismatch is logged and traced, not raised.
            log.warning(
                "output of %s at %s does not match its outputSchema: %s",
                brick.id,
                step.path_text,
                "; ".join(f"{p['path']}: {p['message']}" for p in problems),
            )
            run.record("output-mismatch", step.path_text, step.brick_id, problems)
    run.record(
        "exit", step.path_text, step.brick_id, None if output is _NOTHING else output, duration
    )
    return output


async def _background_call(brick: Brick, args: Any, step: Step, run: RunState) -> None:
    try:
        await _call(brick, args, step, run)
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as exc:
        framed = _framed(exc, step, run)
        if framed is exc:
            raise
        raise framed from exc


async def run_pipeline(
    pipeline: Pipeline, context: dict[str, Any], run: RunState, *, sub: bool = False
) -> Any:
    """Run ``pipeline`` in ``context`` (mutated: output keys are bound into it).

    A top-level pipeline returns the last step's output when that step ran, has no
    ``outputKey``, and is neither an effect nor async; else ``{}``. A sub-pipeline
    (``sub=True``) returns the last step's output regardless of ``outputKey``, ``None`` when
    it was skipped, was an effect or async, or the pipeline is empty.
    """
    # One loop, no coroutine per step unless the brick itself is async: this is the hot path
    # of every mod (a telemetry record is seven steps), so per-step work is kept minimal.
    last: Any = _NOTHING
    record = run.record
    mod_state = run.mod_state
    for step in pipeline.steps:
        try:
            context["@mod"] = mod_state.snapshot()
            cached = step.resolved
            if cached is not None and cached[0] is run.registry and cached[1] == Registry._epoch:
                brick: Brick = cached[2]
            else:
                brick = _resolve(step, run)
            condition = step.condition
            if condition is not None and not is_truthy(condition(context)):
                record("skip", step.path_text, step.brick_id, "if condition was false")
                output = _NOTHING
            else:
                args = step.render(context)
                if not brick._plain_input:
                    args = brick.prepare_input(args, run)
                record("enter", step.path_text, step.brick_id, args)
                if step.is_async:
                    run.start_background(
                        _background_call, step.path_text, brick.id, brick, args, step, run
                    )
                    output = _NOTHING
                elif brick._is_async:
                    output = await _call(brick, args, step, run)
                else:
                    # A plain-function brick runs inline: no coroutine for the step at all.
                    started = perf_counter()
                    output = brick.run(args, BrickContext(run, brick.id, step.path_text))
                    if hasattr(output, "__await__"):
                        output = await output
                    output = _finish(brick, output, step, run, started)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            framed = _framed(exc, step, run)
            record("error", step.path_text, step.brick_id, _error_data(framed))
            if framed is exc:
                raise
            raise framed from exc
        if output is not _NOTHING and step.output_key is not None:
            context["@" + step.output_key] = output
            last = output if sub else _NOTHING
        else:
            last = output
    if last is _NOTHING:
        return None if sub else {}
    return last


def _error_data(error: BaseException) -> dict[str, str]:
    name = getattr(error, "name", type(error).__name__)
    return {"name": str(name), "message": getattr(error, "message", str(error))}


async def run_body(
    body: PipelineExpression, run: RunState, extra_context: Mapping[str, Any] | None = None
) -> Any:
    """Run a ``!pipeline`` value as a sub-pipeline in its closure plus ``extra_context``."""
    context = dict(body.env or {})
    if extra_context:
        context.update(extra_context)
    run.depth += 1
    try:
        return await run_pipeline(body.pipeline, context, run, sub=True)
    finally:
        run.depth -= 1
