"""Control flow over ``!pipeline`` bodies: run, if-else, for-each, try-catch, retry."""

from __future__ import annotations

from typing import Any

import anyio

from brickrun import BrickContext, BrickrunError, RunError, brick, is_truthy

__all__ = ["BRICKS", "serialize_error"]

PIPELINE = {"$ref": "https://app.pixiebrix.com/schemas/pipeline#"}


def serialize_error(error: BaseException) -> dict[str, Any]:
    """What ``@error`` holds in a try-catch ``except`` body: ``{name, message, ...}``."""
    if isinstance(error, BrickrunError):
        data = error.to_dict()
        data.pop("location", None)
        return {k: v for k, v in data.items() if v is not None}
    return {"name": type(error).__name__, "message": str(error)}


@brick(
    id="@pixiebrix/run",
    name="Run Bricks",
    description="Runs a body of steps; with async: true, starts it in the background and "
    "returns {} at once.",
    input_schema={
        "type": "object",
        "properties": {
            "body": PIPELINE,
            "async": {"type": "boolean", "default": False},
        },
        "required": ["body"],
    },
    default_output_key="runOutput",
)
def run(args: dict[str, Any], ctx: BrickContext) -> Any:
    # A plain function: with async: true the step returns at once without a coroutine (the
    # record brick's hot path); otherwise the body's coroutine is returned and awaited.
    if args.get("async"):
        ctx.start_pipeline(args["body"])
        return {}
    return ctx.run_pipeline(args["body"])


@brick(
    id="@pixiebrix/if-else",
    name="If-Else",
    description="Runs the if body when condition is truthy, else the else body (null without).",
    input_schema={
        "type": "object",
        "properties": {
            "condition": {"type": ["string", "boolean", "null", "number"]},
            "if": PIPELINE,
            "else": PIPELINE,
        },
        "required": ["if"],
    },
    default_output_key="ifElseOutput",
)
async def if_else(args: dict[str, Any], ctx: BrickContext) -> Any:
    if is_truthy(args.get("condition")):
        return await ctx.run_pipeline(args["if"])
    if "else" in args:
        return await ctx.run_pipeline(args["else"])
    return None


@brick(
    id="@pixiebrix/for-each",
    name="For-Each Loop",
    description="Runs the body once per element with @<elementKey> bound; returns the last "
    "iteration's value (null for an empty list).",
    input_schema={
        "type": "object",
        "properties": {
            "elements": {"type": "array"},
            "body": PIPELINE,
            "elementKey": {"type": "string", "default": "element", "pattern": r"^[A-Za-z_]\w*$"},
        },
        "required": ["elements", "body"],
    },
    default_output_key="forEachOutput",
)
async def for_each(args: dict[str, Any], ctx: BrickContext) -> Any:
    last = None
    key = "@" + args["elementKey"]
    for element in args["elements"]:
        last = await ctx.run_pipeline(args["body"], {key: element})
    return last


@brick(
    id="@pixiebrix/try-catch",
    name="Try-Except",
    description="Runs try; on error runs except with @<errorKey> = {name, message, ...}.",
    input_schema={
        "type": "object",
        "properties": {
            "try": PIPELINE,
            "except": PIPELINE,
            "errorKey": {"type": "string", "default": "error", "pattern": r"^[A-Za-z_]\w*$"},
        },
        "required": ["try"],
    },
    default_output_key="tryOutput",
)
async def try_catch(args: dict[str, Any], ctx: BrickContext) -> Any:
    try:
        return await ctx.run_pipeline(args["try"])
    except RunError as error:
        if "except" not in args:
            return None
        return await ctx.run_pipeline(
            args["except"], {"@" + args["errorKey"]: serialize_error(error)}
        )


@brick(
    id="@pixiebrix/retry",
    name="Retry",
    description="Runs the body until it succeeds, at most maxRetries extra times, waiting "
    "intervalMillis between attempts; raises the last error when every attempt failed.",
    input_schema={
        "type": "object",
        "properties": {
            "body": PIPELINE,
            "maxRetries": {"type": "integer", "minimum": 0, "maximum": 100, "default": 3},
            "intervalMillis": {"type": "number", "minimum": 0, "default": 0},
        },
        "required": ["body"],
    },
    default_output_key="retryOutput",
)
async def retry(args: dict[str, Any], ctx: BrickContext) -> Any:
    attempts = args["maxRetries"] + 1
    for attempt in range(attempts):
        try:
            return await ctx.run_pipeline(args["body"])
        except RunError:
            if attempt == attempts - 1:
                raise
            await anyio.sleep(args["intervalMillis"] / 1000)
    raise AssertionError("unreachable")  # pragma: no cover


BRICKS = [run, if_else, for_each, try_catch, retry]
