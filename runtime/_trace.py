"""Run traces: per step an enter record (rendered config) and an exit, skip or error record.

Records are cheap to make (the hot path appends one small object per event); redaction and
formatting happen only when a trace is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TraceRecord", "format_trace", "redact"]

# Keys whose values never appear in a trace: integration secrets and credentials.
_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|pwd|secret|token|api[-_]?key|apikey|authorization|cookie|private[-_]?key|"
    r"credential)",
    re.IGNORECASE,
)
REDACTED = "***"


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-looking keys and integration configs masked."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "__service" or (isinstance(key, str) and _SECRET_KEY.search(key)):
                out[key] = REDACTED
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


@dataclass(slots=True)
class TraceRecord:
    """One trace event.

    ``event`` is ``enter`` (``data`` = rendered config), ``exit`` (``data`` = output),
    ``skip`` (``data`` = reason), ``error`` (``data`` = ``{name, message}``) or
    ``background`` (the step was started in the background). ``depth`` counts sub-pipeline
    nesting; ``duration_ms`` is set on exit and error records.
    """

    run_id: str
    step_path: str
    brick_id: str
    event: str
    data: Any = None
    duration_ms: float | None = None
    depth: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "stepPath": self.step_path,
            "brickId": self.brick_id,
            "event": self.event,
            "data": redact(self.data),
            "durationMs": None if self.duration_ms is None else round(self.duration_ms, 3),
            "depth": self.depth,
        }


def format_trace(records: list[TraceRecord]) -> str:
    """Human-readable trace, one line per record, indented by sub-pipeline depth."""
    lines = []
    for r in records:
        indent = "  " * r.depth
        data = json.dumps(redact(r.data), default=str, ensure_ascii=False)
        if len(data) > 200:
            data = data[:197] + "..."
        took = f" ({r.duration_ms:.3f} ms)" if r.duration_ms is not None else ""
        lines.append(f"{indent}{r.event:<10} {r.step_path} {r.brick_id}{took} {data}")
    return "\n".join(lines)
