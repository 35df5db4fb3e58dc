"""``@pixies/async`` (Run with Async Mod Variable): run a body in the background and keep its
progress, result or error in a mod variable (PixieBrix's state shape and stale-request rule)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from brickrun import BrickContext, PropError, RunError, brick

from .control import serialize_error

__all__ = ["BRICKS"]

log = logging.getLogger("brickrun.bricks.async")


@brick(
    id="@pixies/async",
    name="Run with Async Mod Variable",
    description="Starts the body in the background and returns {requestId} at once. The mod "
    "variable stateKey tracks it: isLoading, isFetching, isSuccess, isError, currentData, data, "
    "requestId, error. A newer request makes older completions stale (ignored). "
    "telemetryMode 'error' reports body errors as mod errors; 'never' (default) does not.",
    input_schema={
        "type": "object",
        "properties": {
            "body": {"$ref": "https://app.pixiebrix.com/schemas/pipeline#"},
            "stateKey": {"type": "string", "title": "Mod Variable Name"},
            "telemetryMode": {"type": "string", "enum": ["never", "error"], "default": "never"},
        },
        "required": ["body", "stateKey"],
    },
    default_output_key="async",
)
async def run_with_async_mod_variable(args: dict[str, Any], ctx: BrickContext) -> dict[str, str]:
    key = args["stateKey"].strip()
    if not key:
        raise PropError("Mod Variable Name is required", prop="stateKey")
    variables = ctx.state("blueprint")
    request_id = str(uuid.uuid4())
    previous = variables.get().get(key)
    if isinstance(previous, dict) and previous:
        variables.assign(
            key, {**previous, "requestId": request_id, "isFetching": True, "currentData": None}
        )
    else:
        variables.assign(
            key,
            {
                "isLoading": True,
                "isFetching": True,
                "isSuccess": False,
                "isError": False,
                "currentData": None,
                "data": None,
                "requestId": request_id,
                "error": None,
            },
        )

    def is_current() -> bool:
        stored = variables.get().get(key)
        return not isinstance(stored, dict) or stored.get("requestId") in (None, request_id)

    async def body() -> None:
        try:
            value = await ctx.run_pipeline(args["body"])
        except RunError as error:
            if is_current():
                variables.assign(
                    key,
                    {
                        "isLoading": False,
                        "isFetching": False,
                        "isSuccess": False,
                        "isError": True,
                        "currentData": None,
                        "data": None,
                        "requestId": request_id,
                        "error": serialize_error(error),
                    },
                )
            if args["telemetryMode"] == "error":
                raise  # reported as a mod error by the runtime
            log.info(
                "@pixies/async body failed (not reported, telemetryMode never): %s: %s",
                error.name,
                error.message,
            )
            return
        if is_current():
            variables.assign(
                key,
                {
                    "isLoading": False,
                    "isFetching": False,
                    "isSuccess": True,
                    "isError": False,
                    "currentData": value,
                    "data": value,
                    "requestId": request_id,
                    "error": None,
                },
            )

    ctx.start_task(body)
    return {"requestId": request_id}


BRICKS = [run_with_async_mod_variable]
