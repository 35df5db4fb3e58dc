"""Telemetry: the event model, the non-blocking recorder, and (later stages) privacy and export.

Every telemetry event is a record in a *telemetry database* — a team database (SPEC §7) whose
records have the event shape (SPEC §8). The runtime's own events (``TriggerRun``,
``TriggerError``, the host recorder, Send Telemetry) go to the configured telemetry database
(default ``brickrun-telemetry``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._events import DEFAULT_TELEMETRY_DATABASE, TelemetryEvent, telemetry_disabled, validate_name
from ._recorder import TelemetryRecorder

if TYPE_CHECKING:
    from ._api import Recorder
    from ._service import TelemetryService


def __getattr__(name: str) -> Any:
    # The host-facing pieces load on first use (the service pulls in threads and the runtime).
    if name == "Recorder":
        from ._api import Recorder

        return Recorder
    if name == "TelemetryService":
        from ._service import TelemetryService

        return TelemetryService
    raise AttributeError(f"module 'brickrun.telemetry' has no attribute {name!r}")


__all__ = [
    "DEFAULT_TELEMETRY_DATABASE",
    "Recorder",
    "TelemetryEvent",
    "TelemetryRecorder",
    "TelemetryService",
    "telemetry_disabled",
    "validate_name",
]
