"""brickrun: a runtime for declarative YAML bricks (public API; everything else is private)."""

from __future__ import annotations

__version__ = "0.1.0"
