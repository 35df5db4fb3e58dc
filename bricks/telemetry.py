"""``@pixiebrix/telemetry`` (Send Telemetry): a custom event into the runtime's telemetry store."""

from __future__ import annotations

import math
from typing import Any

from brickrun import BrickContext, PropError, TelemetryEvent, brick, telemetry_disabled

__all__ = ["BRICKS"]

# The runtime's own event names: a custom event must not pose as a starter-brick run or error
# (``brickrun stats`` counts those).
_RESERVED = frozenset({"TriggerRun", "TriggerError"})
_MAX_INT = 2**63 - 1


def _exportable(value: Any) -> bool:
    """Finite numbers (64-bit integers) and booleans: what exportable metadata may hold."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_MAX_INT - 1 <= value <= _MAX_INT
    return isinstance(value, float) and math.isfinite(value)


def _storable(value: Any) -> Any:
    """Stores refuse NaN and infinities: keep them as the proto-JSON strings (as the host
    recorder does). Everything else in ``data`` is already JSON (a rendered brick input)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


@brick(
    id="@pixiebrix/telemetry",
    name="Send Telemetry",
    kind="effect",
    description="Records a custom event in the runtime's telemetry database (default "
    "brickrun-telemetry). The numbers and booleans of `data` become the event's exportable "
    "metadata; every other value stays private to the team database. Never waits for the "
    "store; when telemetry is disabled (BRICKRUN_TELEMETRY_DISABLED, DO_NOT_TRACK) nothing is "
    "recorded and the mod goes on.",
    input_schema={
        "type": "object",
        "properties": {
            "eventName": {
                "type": "string",
                "description": "A unique name for the event: 1-64 letters, digits, '_', '.', "
                "':' or '-', starting with a letter",
            },
            "data": {
                "type": "object",
                "additionalProperties": True,
                "description": "Data to send with the event",
            },
        },
        "required": ["eventName"],
    },
)
async def send_telemetry(args: Any, ctx: BrickContext) -> None:
    """Record ``eventName`` with ``data``: its finite numbers and booleans as ``metadata``, the
    rest as ``private_metadata``; the signed-in user, the page visit's session and URL, and the
    run's mod, component, deployment and run ids as the source.

    Raises ``PropError`` for a ``$eventName`` key in ``data`` (reserved, as in PixieBrix), for an
    invalid event name, and for the runtime's own names (``TriggerRun``, ``TriggerError``).
    Storing happens in the background: a store failure is counted by the runtime's recorder
    (``failed``), never raised into the mod.
    """
    event_name = args["eventName"]
    data = args.get("data") or {}
    if "$eventName" in data:
        raise PropError("$eventName is a reserved value for eventName", prop="eventName")
    if event_name in _RESERVED:
        raise PropError(
            f"eventName {event_name!r} is reserved for the runtime's starter-brick telemetry",
            prop="eventName",
        )
    metadata = {k: v for k, v in data.items() if _exportable(v)}
    host = ctx.host
    user, page = host.user, host.page
    try:
        # Built before the opt-out check, so a bad name is an error whether or not telemetry
        # is on; metadata holds only exportable values, so a ValueError is about the name.
        event = TelemetryEvent(
            name=event_name,
            timestamp=ctx.now(),
            source={
                "modId": ctx.mod.get("id"),
                "modVersion": ctx.mod.get("version"),
                "modComponentId": ctx.mod_component_id,
                "deploymentId": ctx.deployment_id,
                "runId": ctx.run_id,
                "brickId": ctx.brick_id,
            },
            user=user.email if user is not None else None,
            session_id=page.session_id if page is not None else None,
            url=page.url if page is not None else None,
            metadata=metadata,
            private_metadata={k: _storable(v) for k, v in data.items() if k not in metadata},
        )
    except ValueError as exc:
        raise PropError(str(exc), prop="eventName") from None
    if telemetry_disabled():
        ctx.logger.info(
            "event %s not recorded: telemetry is disabled (BRICKRUN_TELEMETRY_DISABLED or "
            "DO_NOT_TRACK)",
            event_name,
        )
        return
    ctx.runtime.telemetry.record(event)


BRICKS = [send_telemetry]
