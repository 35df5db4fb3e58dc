"""``kind: component`` bricks: a definition's pipeline wrapped as a transformer brick.

The inner pipeline sees a fresh context — ``@input`` (the validated arguments),
``@options = {}`` and ``@mod`` — never the caller's bindings. ``!pipeline`` arguments keep the
caller's context as their closure (they were bound when the caller's config was rendered), so a
component that runs a body it was given runs it where it was written.
"""

from __future__ import annotations

from typing import Any

from ._bricks import Brick, BrickContext
from ._model import ComponentDefinition
from ._pipeline import run_pipeline

__all__ = ["component_brick"]


def component_brick(definition: ComponentDefinition) -> Brick:
    """The brick for a component definition (always a transformer, SPEC §13)."""

    async def run(args: Any, ctx: BrickContext) -> Any:
        state = ctx._run
        state.depth += 1
        try:
            return await run_pipeline(definition.pipeline, {"@input": args, "@options": {}}, state)
        finally:
            state.depth -= 1

    return Brick(
        id=definition.id,
        name=definition.name,
        run=run,
        kind="transformer",
        description=definition.description,
        input_schema=definition.input_schema,
        output_schema=definition.output_schema,
        default_output_key=definition.default_output_key,
        version=definition.version,
        source=definition.location,
    )
