"""Small built-ins: identity, error, timestamp, uuid, run metadata."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from brickrun import BrickContext, BusinessError, brick, iso_millis, telemetry_disabled

__all__ = ["BRICKS"]


@brick(
    id="@pixiebrix/identity",
    name="Identity",
    description="Returns its rendered arguments unchanged.",
    input_schema={},
    default_output_key="identity",
)
def identity(args: Any, ctx: BrickContext) -> Any:
    return args


@brick(
    id="@pixiebrix/error",
    name="Raise Business Error",
    kind="effect",
    description="Stops the pipeline with a business error.",
    input_schema={
        "type": "object",
        "properties": {"message": {"type": "string", "description": "The error message"}},
    },
)
def raise_error(args: Any, ctx: BrickContext) -> None:
    raise BusinessError(args.get("message") or "Unknown business error")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@brick(
    id="@pixiebrix/timestamp",
    name="Generate a Timestamp",
    kind="reader",
    description="The current instant as ISO-8601 UTC (milliseconds, Z) and epoch milliseconds.",
    input_schema={},
    output_schema={
        "type": "object",
        "properties": {"timestamp": {"type": "string"}, "epochMillis": {"type": "integer"}},
        "required": ["timestamp", "epochMillis"],
    },
    default_output_key="instant",
)
def timestamp(args: Any, ctx: BrickContext) -> dict[str, Any]:
    instant = ctx.now()
    # Both fields come from one instant, truncated to the millisecond as JS Date does.
    millis = (instant - _EPOCH) // timedelta(milliseconds=1)
    return {"timestamp": iso_millis(instant), "epochMillis": millis}


@brick(
    id="@pixiebrix/uuid",
    name="Generate a UUID",
    description="A new random UUID (version 4) per call.",
    input_schema={},
    output_schema={
        "type": "object",
        "properties": {"uuid": {"type": "string"}},
        "required": ["uuid"],
    },
    default_output_key="uuid",
)
def new_uuid(args: Any, ctx: BrickContext) -> dict[str, str]:
    return {"uuid": str(uuid.uuid4())}


@brick(
    id="@pixiebrix/reflect/run-metadata",
    name="Run Metadata",
    description="The mod, deployment, mod component and run this step runs in.",
    input_schema={"type": "object", "properties": {}},
    default_output_key="meta",
)
def run_metadata(args: Any, ctx: BrickContext) -> dict[str, Any]:
    return {
        "mod": ctx.mod,
        "deploymentId": ctx.deployment_id,
        "modComponentId": ctx.mod_component_id,
        "runId": ctx.run_id,
    }


@brick(
    id="@pixies/telemetry/enabled",
    name="Is Telemetry Enabled",
    description="Whether telemetry may be recorded here: {enabled, disabled, reason}; disabled "
    "when BRICKRUN_TELEMETRY_DISABLED or DO_NOT_TRACK is set (to anything but empty, 0 or false).",
    input_schema={},
    default_output_key="telemetry",
)
def telemetry_enabled(args: Any, ctx: BrickContext) -> dict[str, Any]:
    if telemetry_disabled():
        return {
            "enabled": False,
            "disabled": True,
            "reason": "telemetry disabled by BRICKRUN_TELEMETRY_DISABLED or DO_NOT_TRACK",
        }
    return {"enabled": True, "disabled": False, "reason": None}


BRICKS = [identity, raise_error, timestamp, new_uuid, run_metadata, telemetry_enabled]
