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

from ._bricks import Brick, BrickContext, BrickKind, brick
from ._clock import Clock, SystemClock, VirtualClock
from ._expressions import DeferExpression, PipelineExpression
from ._render import is_truthy
from ._runtime import RunResult, Runtime
from ._state import ModVariables
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

__version__ = "0.1.0"

__all__ = [
    "Brick",
    "BrickContext",
    "BrickError",
    "BrickKind",
    "BrickrunError",
    "BusinessError",
    "Clock",
    "DeferExpression",
    "DefinitionError",
    "DefinitionErrors",
    "HostError",
    "InputValidationError",
    "InvalidPathError",
    "InvalidTemplateError",
    "Location",
    "ModVariables",
    "PipelineExpression",
    "PropError",
    "RecordNotFoundError",
    "RecordTooLargeError",
    "RegistrationError",
    "RunCancelledError",
    "RunError",
    "RunResult",
    "RunTimeoutError",
    "Runtime",
    "StorageError",
    "SystemClock",
    "ThrottledError",
    "TraceRecord",
    "UnknownBrickError",
    "VirtualClock",
    "__version__",
    "brick",
    "is_truthy",
    "validate_paths",
]
