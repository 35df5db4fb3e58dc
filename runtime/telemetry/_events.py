"""The telemetry event (SPEC §8): fields, name rules, and its record form in a database."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._host import iso_millis

__all__ = ["DEFAULT_TELEMETRY_DATABASE", "TelemetryEvent", "telemetry_disabled", "validate_name"]

DEFAULT_TELEMETRY_DATABASE = "brickrun-telemetry"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:\-]{0,63}$")


def validate_name(name: Any) -> str:
    """An event name: letters, digits, ``_ . : -``, 1–64 characters, starting with a letter."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid telemetry event name {name!r}: expected 1-64 letters, digits, '_', '.', "
            "':' or '-', starting with a letter (e.g. 'translate' or 'page:view')"
        )
    return name


_SWITCHES = ("BRICKRUN_TELEMETRY_DISABLED", "DO_NOT_TRACK")
_ENCODED_SWITCHES = tuple(os.fsencode(name) for name in _SWITCHES)


def _switches_unset() -> bool:
    """True when neither variable is in ``os.environ`` (``False``: not known to be unset).

    The recorder asks for every event. ``os.environ`` keeps its variables in a dict keyed by
    encoded names on POSIX; looking there costs ~50 ns, against ~1 µs per variable through
    the mapping (which raises and catches a KeyError for an unset one). Any other layout
    takes the mapping's way.
    """
    data = getattr(os.environ, "_data", None)
    if os.name != "posix" or type(data) is not dict:
        return False
    return _ENCODED_SWITCHES[0] not in data and _ENCODED_SWITCHES[1] not in data


def telemetry_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``BRICKRUN_TELEMETRY_DISABLED`` or ``DO_NOT_TRACK`` is set to anything but
    empty, ``0`` or ``false`` (fail safe: any other value disables)."""
    if environ is None and _switches_unset():
        return False
    env = os.environ if environ is None else environ
    for variable in _SWITCHES:
        value = env.get(variable, "").strip().lower()
        if value not in ("", "0", "false"):
            return True
    return False


def _metadata(values: Mapping[str, Any] | None) -> dict[str, int | float | bool]:
    """Exportable metadata holds numbers and booleans only; anything else is refused loudly."""
    out: dict[str, int | float | bool] = {}
    for key, value in (values or {}).items():
        if not isinstance(value, bool | int | float):
            raise ValueError(
                f"metadata {key!r} must be a number or a boolean (found "
                f"{type(value).__name__}); put other values in private_metadata"
            )
        out[str(key)] = value
    return out


@dataclass
class TelemetryEvent:
    """One event. ``id`` is fixed at creation and is the idempotency key everywhere."""

    name: str
    timestamp: datetime
    source: dict[str, Any] = field(default_factory=dict)
    user: str | None = None
    session_id: str | None = None
    url: str | None = None
    platform: str = "brickrun"
    duration_ms: float | None = None
    metadata: dict[str, int | float | bool] = field(default_factory=dict)
    private_metadata: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    context: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        validate_name(self.name)
        self.metadata = _metadata(self.metadata)

    def to_data(self) -> dict[str, Any]:
        """The record ``data`` stored in a telemetry database (key: ``id``)."""
        return {
            "id": self.id,
            "name": self.name,
            "timestamp": iso_millis(self.timestamp),
            "source": {k: v for k, v in self.source.items() if v is not None},
            "user": self.user,
            "session_id": self.session_id,
            "url": self.url,
            "platform": self.platform,
            "duration_ms": self.duration_ms,
            "metadata": dict(self.metadata),
            "private_metadata": dict(self.private_metadata),
            "error": self.error,
            "context": self.context,
        }
