"""Telemetry records grouped inside the store: what daily aggregates read instead of records.

:meth:`StorageBackend.group_events` reads a telemetry database (SPEC §8) in one SQL statement
that extracts the few fields aggregates need from each record's JSON and groups the records
there, so that no record is decoded in Python: a million records come back as a few thousand
:class:`EventGroup` values. Which fields, and how records group, is defined here once; each
backend writes it in its SQL dialect and hands its rows to :class:`GroupDecoder`.

The grouping is exact, not a summary: records that :func:`brickrun.telemetry._aggregates.
compute_aggregates` would put in different aggregates never share a group (groups may still be
finer than aggregates: equal values spelled differently, or a URL anonymised later, can land
in different groups of one aggregate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._records import decode_json

__all__ = ["EventGroup", "GroupDecoder"]

_UNSEEN = object()


@dataclass(frozen=True, slots=True)
class EventGroup:
    """Records of one database that aggregate alike, as :meth:`StorageBackend.group_events`
    returns them.

    Only records whose ``data`` holds a string ``timestamp`` of at least 10 characters are
    grouped. Fields are values as decoded from the stored JSON (``None`` also for a missing
    field); in a group, every record has:
    """

    day: str
    """The first 10 characters of its ``timestamp``."""
    name: Any
    """Its ``name``."""
    context: str | None
    """Its ``context`` if ``name`` is a string and ``context`` a non-empty string, else
    ``None``."""
    details: tuple[Any, Any, Any, Any] | None
    """``None`` when ``context`` is not; else its ``event``, ``url``, ``source.starterBrickName``
    and ``source.modComponentLabel`` (the last two ``None`` unless ``source`` is an object)."""
    count: int
    """How many records the group holds."""
    errors: int
    """How many of them have an ``error`` that is present and not ``null``."""
    durations: list[int | float]
    """Their ``duration_ms`` values that are numbers (not booleans) and not negative, in no
    particular order; one per record that has one."""


class GroupDecoder:
    """Turns one read's rows of JSON texts into :class:`EventGroup` values, decoding each
    distinct text once (names, contexts and details repeat across days)."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._details: dict[str, tuple[Any, Any, Any, Any]] = {}

    def group(
        self,
        day: str,
        name: str | None,
        context: str | None,
        details: str | None,
        count: int,
        errors: int,
        durations: str | None,
    ) -> EventGroup:
        """The group of one row: ``name``, ``context`` and ``details`` are JSON texts (``None``
        for SQL NULL; ``details`` a 4-element array); ``durations`` is the durations' JSON
        texts joined by commas (``None`` for none)."""
        return EventGroup(
            day,
            self._value(name),
            self._value(context),
            None if context is not None else self._tuple(details),
            int(count),
            int(errors),
            decode_json(f"[{durations}]") if durations else [],
        )

    # Misses are looked up with get, not by catching KeyError: with a URL per record, most
    # details are distinct, and an exception per group would cost more than decoding it.
    def _value(self, text: str | None) -> Any:
        if text is None:
            return None
        value = self._values.get(text, _UNSEEN)
        if value is _UNSEEN:
            value = self._values[text] = decode_json(text)
        return value

    def _tuple(self, text: str | None) -> tuple[Any, Any, Any, Any]:
        if text is None:
            return (None, None, None, None)
        found = self._details.get(text)
        if found is None:
            event, url, starter, label = decode_json(text)
            found = self._details[text] = (event, url, starter, label)
        return found
