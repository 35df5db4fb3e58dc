"""brickrun: a runtime for declarative YAML bricks.

This module is the whole public API (``__all__``); everything in ``brickrun._*`` is private.

    import anyio
    from brickrun import Runtime

    async def main():
        async with Runtime(definitions=["examples/bricks"]) as runtime:
            result = await runtime.run_brick("@acme/greet", {"name": "Ada"})
            print(result.output)

    anyio.run(main)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._bricks import Brick, BrickContext, BrickKind, brick
    from ._clock import Clock, SystemClock, VirtualClock
    from ._expressions import DeferExpression, PipelineExpression
    from ._host import Host, InProcessHost, PageVisit, User, iso_millis
    from ._integrations import Integrations
    from ._mods import ActivatedMod, ComponentRun
    from ._render import is_truthy
    from ._runtime import RunResult, Runtime
    from ._state import ModVariables
    from ._sync import SyncRuntime
    from ._trace import TraceRecord
    from ._validate import validate_paths
    from .errors import (
        BrickError,
        BrickrunError,
        BusinessError,
        DefinitionError,
        DefinitionErrors,
        HostError,
        InputValidationError,
        InvalidPathError,
        InvalidTemplateError,
        Location,
        PropError,
        RecordNotFoundError,
        RecordTooLargeError,
        RegistrationError,
        RunCancelledError,
        RunError,
        RunTimeoutError,
        StorageError,
        ThrottledError,
        UnknownBrickError,
    )
    from .telemetry import Recorder, TelemetryEvent, TelemetryService, telemetry_disabled

__version__ = "0.1.0"

# Public names load on first use, so `brickrun --help` does not import the whole engine.
_LAZY = {
    "ActivatedMod": "._mods",
    "ComponentRun": "._mods",
    "Brick": "._bricks",
    "BrickContext": "._bricks",
    "BrickError": ".errors",
    "BrickKind": "._bricks",
    "BrickrunError": ".errors",
    "BusinessError": ".errors",
    "Clock": "._clock",
    "DeferExpression": "._expressions",
    "Host": "._host",
    "InProcessHost": "._host",
    "Integrations": "._integrations",
    "PageVisit": "._host",
    "User": "._host",
    "iso_millis": "._host",
    "DefinitionError": ".errors",
    "DefinitionErrors": ".errors",
    "HostError": ".errors",
    "InputValidationError": ".errors",
    "InvalidPathError": ".errors",
    "InvalidTemplateError": ".errors",
    "Location": ".errors",
    "ModVariables": "._state",
    "PipelineExpression": "._expressions",
    "PropError": ".errors",
    "RecordNotFoundError": ".errors",
    "RecordTooLargeError": ".errors",
    "RegistrationError": ".errors",
    "RunCancelledError": ".errors",
    "RunError": ".errors",
    "RunResult": "._runtime",
    "RunTimeoutError": ".errors",
    "Runtime": "._runtime",
    "StorageError": ".errors",
    "SyncRuntime": "._sync",
    "SystemClock": "._clock",
    "ThrottledError": ".errors",
    "TraceRecord": "._trace",
    "UnknownBrickError": ".errors",
    "VirtualClock": "._clock",
    "brick": "._bricks",
    "is_truthy": "._render",
    "Recorder": ".telemetry",
    "TelemetryEvent": ".telemetry",
    "TelemetryService": ".telemetry",
    "telemetry_disabled": ".telemetry",
    "validate_paths": "._validate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'brickrun' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ActivatedMod",
    "Brick",
    "BrickContext",
    "BrickError",
    "BrickKind",
    "BrickrunError",
    "BusinessError",
    "Clock",
    "ComponentRun",
    "DeferExpression",
    "DefinitionError",
    "DefinitionErrors",
    "Host",
    "HostError",
    "InProcessHost",
    "InputValidationError",
    "Integrations",
    "InvalidPathError",
    "InvalidTemplateError",
    "Location",
    "ModVariables",
    "PageVisit",
    "PipelineExpression",
    "PropError",
    "RecordNotFoundError",
    "RecordTooLargeError",
    "Recorder",
    "RegistrationError",
    "RunCancelledError",
    "RunError",
    "RunResult",
    "RunTimeoutError",
    "Runtime",
    "StorageError",
    "SyncRuntime",
    "SystemClock",
    "TelemetryEvent",
    "TelemetryService",
    "ThrottledError",
    "TraceRecord",
    "UnknownBrickError",
    "User",
    "VirtualClock",
    "__version__",
    "brick",
    "is_truthy",
    "iso_millis",
    "telemetry_disabled",
    "validate_paths",
]
