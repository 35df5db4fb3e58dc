"""The pipeline reducer: runs steps in order against a context (SPEC §3).

Per step: refresh ``@mod``; evaluate ``if`` (false → skipped and traced); render the config;
apply integration inputs and schema defaults; validate; run the brick (or start it in the
background for ``async: true``); check the output schema (logged, never raised); bind
``@<outputKey>``. Errors get the step's frame attached on the way out by ``_step_boundary``,
the one place that knows where a step lives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio

from ._bricks import Brick, BrickContext
from ._expressions import PipelineExpression
from ._model import Pipeline, Step
from ._render import is_truthy
from ._run import RunState, _wrap
from ._trace import TraceRecord
from .errors import Frame, RunError, UnknownBrickError

__all__ = ["run_body", "run_pipeline"]

log = logging.getLogger("brickrun.pipeline")

_NOTHING = object()  # a step that was skipped, or produced no value for the pipeline


def _resolve(step: Step, run: RunState) -> Brick:
    """The step's brick, cached on the step until the registry changes."""
    registry = run.runtime.registry
    if step.brick is not None and step.brick_generation == (id(registry), registry.generation):
        return step.brick
    brick: Brick = registry.get(step.brick_id, location=step.location, path=step.path + ("id",))
    step.brick = brick
    step.brick_generation = (id(registry), registry.generation)
    return brick


def _framed(exc: Exception, step: Step, run: RunState) -> BaseException:
    """The error to raise for a step failure: run errors gain the step's frame; anything else
    is wrapped in ``BrickError`` first. Unknown bricks already carry their location."""
    if isinstance(exc, UnknownBrickError):
        return exc
    error = exc if isinstance(exc, RunError) else _wrap(exc)
    error.add_frame(Frame(step.path_text, step.brick_id, step.location), run.run_id)
    return error


async def _call(brick: Brick, args: Any, step: Step, run: RunState) -> Any:
    """Run the brick itself; effects return ``None`` (their value is discarded)."""
    started = time.perf_counter()
    output = await brick.run(args, BrickContext(run, brick.id, step.path_text))
    duration = (time.perf_counter() - started) * 1000
    if brick.kind == "effect":
        output = None
    elif brick._output_validator is not None:
        problems = brick.output_errors(output)
        if problems:
            # SPEC §3: an outputSchema mismatch is logged and traced, not raised.
            log.warning(
                "output of %s at %s does not match its outputSchema: %s",
                brick.id, step.path_text, "; ".join(f"{p['path']}: {p['message']}" for p in problems),
            )
            run.record(
                TraceRecord(run.run_id, step.path_text, step.brick_id, "output-mismatch",
                            problems, None, run.depth)
            )
    run.record(
        TraceRecord(run.run_id, step.path_text, step.brick_id, "exit", output, duration, run.depth)
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


async def _run_step(step: Step, context: dict[str, Any], run: RunState) -> Any:
    """Run one step; returns its output, ``None`` for effects and async steps, or ``_NOTHING``
    when the ``if`` condition was false."""
    context["@mod"] = run.mod_state.snapshot()
    brick = _resolve(step, run)
    if step.condition is not None and not is_truthy(step.condition(context)):
        run.record(
            TraceRecord(run.run_id, step.path_text, step.brick_id, "skip",
                        "if condition was false", None, run.depth)
        )
        return _NOTHING
    args = brick.prepare_input(step.render(context), run)
    run.record(
        TraceRecord(run.run_id, step.path_text, step.brick_id, "enter", args, None, run.depth)
    )
    if step.is_async:
        run.start_background(
            lambda: _background_call(brick, args, step, run), step.path_text, brick.id
        )
        return None
    return await _call(brick, args, step, run)


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
            output = await _run_step(step, context, run)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            framed = _framed(exc, step, run)
            run.record(
                TraceRecord(run.run_id, step.path_text, step.brick_id, "error",
                            _error_data(framed), None, run.depth)
            )
            if framed is exc:
                raise
            raise framed from exc
        if output is _NOTHING:
            last = _NOTHING
            continue
        assert step.brick is not None
        produces = not step.is_async and step.brick.kind != "effect"
        if step.output_key is not None and produces:
            context["@" + step.output_key] = output
        if sub:
            last = output if produces else None
        else:
            last = output if produces and step.output_key is None else _NOTHING
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
