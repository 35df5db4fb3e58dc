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
from functools import partial
from time import perf_counter
from typing import Any

import anyio

from ._bricks import Brick, BrickContext
from ._expressions import PipelineExpression
from ._model import Pipeline, Step
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


async def _call(brick: Brick, args: Any, step: Step, run: RunState) -> Any:
    """Run the brick itself; an effect's value is discarded (``_NOTHING``)."""
    started = perf_counter()
    output = await brick.run(args, BrickContext(run, brick.id, step.path_text))
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


def _prepare(step: Step, context: dict[str, Any], run: RunState) -> tuple[Brick, Any] | None:
    """Everything before the brick runs: refresh ``@mod``, resolve the brick, evaluate ``if``,
    render, default and validate. ``None`` when the ``if`` condition is false. (Synchronous:
    one coroutine less per step matters on the hot path.)"""
    context["@mod"] = run.mod_state.snapshot()
    brick = run.registry.find(step.brick_id)
    if brick is None:
        run.registry.get(step.brick_id, location=step.location, path=step.path + ("id",))
    assert brick is not None
    if step.condition is not None and not is_truthy(step.condition(context)):
        run.record("skip", step.path_text, step.brick_id, "if condition was false")
        return None
    args = brick.prepare_input(step.render(context), run)
    run.record("enter", step.path_text, step.brick_id, args)
    return brick, args


async def run_pipeline(
    pipeline: Pipeline, context: dict[str, Any], run: RunState, *, sub: bool = False
) -> Any:
    """Run ``pipeline`` in ``context`` (mutated: output keys are bound into it).

    A top-level pipeline returns the last step's output when that step ran, has no
    ``outputKey``, and is neither an effect nor async; else ``{}``. A sub-pipeline
    (``sub=True``) returns the last step's output regardless of ``outputKey``, ``None`` when
    it was skipped, was an effect or async, or the pipeline is empty.
    """
    last: Any = _NOTHING
    for step in pipeline.steps:
        try:
            prepared = _prepare(step, context, run)
            if prepared is None:
                output = _NOTHING
            elif step.is_async:
                brick, args = prepared
                run.start_background(
                    partial(_background_call, brick, args, step, run), step.path_text, brick.id
                )
                output = _NOTHING
            else:
                output = await _call(prepared[0], prepared[1], step, run)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            framed = _framed(exc, step, run)
            run.record("error", step.path_text, step.brick_id, _error_data(framed))
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
