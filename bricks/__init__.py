"""Built-in bricks (``brickrun.bricks``). They use only brickrun's public API.

``builtin_bricks()`` lists them; the runtime registers them in every registry.
"""

from __future__ import annotations

from brickrun import Brick

from . import async_state, basic, context, control, data, http, state, telemetry

__all__ = ["builtin_bricks"]


def builtin_bricks() -> list[Brick]:
    """Every built-in brick, in a stable order."""
    return [
        *basic.BRICKS,
        *context.BRICKS,
        *data.BRICKS,
        *http.BRICKS,
        *control.BRICKS,
        *state.BRICKS,
        *async_state.BRICKS,
        *telemetry.BRICKS,
    ]
