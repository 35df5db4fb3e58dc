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
    from ._aggregates import aggregate_database
    from ._api import Recorder
    from ._export import Exporter, ExportReport, JsonlSink, OtlpHttpSink
    from ._privacy import PrivacySettings, load_install_secret
    from ._service import TelemetryService


_LAZY = {
    "Recorder": "._api",
    "TelemetryService": "._service",
    "Exporter": "._export",
    "ExportReport": "._export",
    "OtlpHttpSink": "._export",
    "JsonlSink": "._export",
    "PrivacySettings": "._privacy",
    "load_install_secret": "._privacy",
    "aggregate_database": "._aggregates",
}


def __getattr__(name: str) -> Any:
    # Host-facing pieces load on first use (the service pulls in threads, the exporter httpx).
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'brickrun.telemetry' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


__all__ = [
    "DEFAULT_TELEMETRY_DATABASE",
    "ExportReport",
    "Exporter",
    "JsonlSink",
    "OtlpHttpSink",
    "PrivacySettings",
    "Recorder",
    "TelemetryEvent",
    "TelemetryRecorder",
    "TelemetryService",
    "aggregate_database",
    "load_install_secret",
    "telemetry_disabled",
    "validate_name",
]
