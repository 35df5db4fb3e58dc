"""Telemetry: the event model, the non-blocking recorder, and (later stages) privacy and export.

Every telemetry event is a record in a *telemetry database* — a team database (SPEC §7) whose
records have the event shape (SPEC §8). The runtime's own events (``TriggerRun``,
``TriggerError``, the host recorder, Send Telemetry) go to the configured telemetry database
(default ``brickrun-telemetry``).
"""

from __future__ import annotations

from ._events import DEFAULT_TELEMETRY_DATABASE, TelemetryEvent, telemetry_disabled, validate_name
from ._recorder import TelemetryRecorder

__all__ = [
    "DEFAULT_TELEMETRY_DATABASE",
    "TelemetryEvent",
    "TelemetryRecorder",
    "telemetry_disabled",
    "validate_name",
]
