"""Daily aggregates of a telemetry database (SPEC §8 "Aggregates and retention").

Per UTC day, event name and *context* (the event's ``context`` — an anonymised page, an action,
an API endpoint — else its anonymised URL path, else the starter brick), the aggregate holds
``count``, ``errors``, ``errorRate`` (errors / count), and ``avgMs``, ``p50Ms``, ``p95Ms``,
``p99Ms`` of ``duration_ms`` over the events that have one (nearest-rank percentiles; zero
durations count). Record-brick records (``{url, email, timestamp, event, data}``) aggregate
under their ``event`` name and anonymised URL.

:func:`compute_aggregates` aggregates records; :func:`aggregate_database` reads a stored
database grouped inside the store instead (:meth:`StorageBackend.group_events`: a million
events come back as a few thousand groups, no record decoded) and :func:`aggregate_groups`
turns the groups into the same aggregates, anonymising each distinct URL once.

Aggregates are stored as records of ``<database>-aggregates`` keyed ``<day>|<name>|<context>``;
recomputing is idempotent: an unchanged aggregate is not rewritten. Aggregates leave the team
database (the query API, exports), so contexts pass the URL anonymiser and never hold a user.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..storage import EventGroup, PutItem, StorageBackend
from ._privacy import anonymize_url

__all__ = [
    "Aggregate",
    "aggregate_database",
    "aggregate_groups",
    "aggregates_database",
    "compute_aggregates",
]


_MAX_FLOAT = sys.float_info.max


def aggregates_database(database: str) -> str:
    """Where the aggregates of ``database`` are stored."""
    return f"{database}-aggregates"


def nearest_rank(ordered: list[float], percent: float) -> float:
    """The nearest-rank percentile of an ascending list (``percent`` in 0-100)."""
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Aggregate:
    """One day's figures for one event name in one context."""

    day: str
    name: str
    context: str
    count: int
    errors: int
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def key(self) -> str:
        return f"{self.day}|{self.name}|{self.context}"

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    def to_data(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "name": self.name,
            "context": self.context,
            "count": self.count,
            "errors": self.errors,
            "errorRate": round(self.error_rate, 6),
            "avgMs": None if self.avg_ms is None else round(self.avg_ms, 3),
            "p50Ms": self.p50_ms,
            "p95Ms": self.p95_ms,
            "p99Ms": self.p99_ms,
        }


def _duration(value: Any) -> float | None:
    """``value`` as a duration: a number (not a boolean) that is not negative, as a finite
    float; else ``None`` (an integer too large for a float is no duration either)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    try:
        duration = float(value)
    except OverflowError:
        return None
    return duration if math.isfinite(duration) else None


def _label(starter: Any, component: Any) -> str:
    """The context of an event with neither a context nor a URL: its source's starter brick
    name, else its mod component label."""
    return str(starter or component or "")


def _fact(data: Mapping[str, Any]) -> tuple[str, str, str, float | None, bool] | None:
    """(day, name, context, duration, is_error) of one stored record, or None if it is not an
    event (an aggregate, say)."""
    timestamp = data.get("timestamp")
    if not isinstance(timestamp, str) or len(timestamp) < 10:
        return None
    if isinstance(data.get("name"), str):  # a TelemetryEvent
        name = data["name"]
        context = data.get("context")
        if not isinstance(context, str) or not context:
            url = data.get("url")
            if url:
                context = anonymize_url(url)
            else:
                source = data.get("source")
                if not isinstance(source, Mapping):
                    source = {}
                context = _label(source.get("starterBrickName"), source.get("modComponentLabel"))
        duration = data.get("duration_ms")
        if duration is not None:
            kind = type(duration)
            # The common case inline (this runs once per record): a plain number in range.
            if (kind is int or kind is float) and 0 <= duration <= _MAX_FLOAT:
                duration = float(duration)
            else:
                duration = _duration(duration)
        error = data.get("error") is not None
    elif isinstance(data.get("event"), str):  # a record-brick record
        name = data["event"]
        context = anonymize_url(data["url"]) if data.get("url") else ""
        duration = None
        error = False
    else:
        return None
    return timestamp[:10], name, context, duration, error


# Per (day, name, context): the durations and [count, errors].
_Groups = dict[tuple[str, str, str], tuple[list[float], list[int]]]


def compute_aggregates(records: Iterable[Mapping[str, Any]]) -> list[Aggregate]:
    """Aggregate stored records (``{id, data, ...}``) by UTC day, name and context."""
    groups: _Groups = defaultdict(lambda: ([], [0, 0]))
    for record in records:
        data = record.get("data")
        if not isinstance(data, Mapping):
            continue
        fact = _fact(data)
        if fact is None:
            continue
        day, name, context, duration, error = fact
        durations, counts = groups[(day, name, context)]
        counts[0] += 1
        counts[1] += error
        if duration is not None:
            durations.append(duration)
    return _finish(groups)


def aggregate_groups(groups: Iterable[EventGroup]) -> list[Aggregate]:
    """What :func:`compute_aggregates` returns for the records that ``groups`` (of
    :meth:`StorageBackend.group_events`) hold, without the records: equal, field by field.

    A URL is anonymised once per distinct URL (groups repeat pages across days and names).
    """
    pages: dict[str, str] = {}

    def page(url: Any) -> str:
        if type(url) is not str:
            return anonymize_url(url)
        found = pages.get(url)
        if found is None:
            found = pages[url] = anonymize_url(url)
        return found

    merged: _Groups = defaultdict(lambda: ([], [0, 0]))
    for group in groups:
        name, context, details = group.name, group.context, group.details
        if isinstance(name, str):  # TelemetryEvents
            if context is None:
                assert details is not None  # the contract of EventGroup
                _, url, starter, label = details
                context = page(url) if url else _label(starter, label)
            errors = group.errors
            durations = _durations(group.durations)
        elif details is not None and isinstance(details[0], str):  # record-brick records
            name, url = details[0], details[1]
            context = page(url) if url else ""
            errors = 0
            durations = []
        else:
            continue
        into, counts = merged[(group.day, name, context)]
        counts[0] += group.count
        counts[1] += errors
        into += durations
    return _finish(merged)


def _durations(values: list[int | float]) -> list[float]:
    """:func:`_duration` of each of ``values`` (numbers that are not negative), dropping the
    ``None``s; the common case in one pass of ``float``."""
    try:
        durations = list(map(float, values))
    except OverflowError:
        durations = [d for d in map(_duration, values) if d is not None]
    if not all(map(math.isfinite, durations)):
        durations = [d for d in durations if math.isfinite(d)]
    return durations


def _finish(groups: _Groups) -> list[Aggregate]:
    """The aggregates of ``groups``, ordered by (day, name, context)."""
    out = []
    for (day, name, context), (durations, (count, errors)) in sorted(groups.items()):
        # Summed in sorted order, so that the average does not depend on the records' order.
        durations.sort()
        has = bool(durations)
        out.append(
            Aggregate(
                day=day,
                name=name,
                context=context,
                count=count,
                errors=errors,
                avg_ms=sum(durations) / len(durations) if has else None,
                p50_ms=nearest_rank(durations, 50) if has else None,
                p95_ms=nearest_rank(durations, 95) if has else None,
                p99_ms=nearest_rank(durations, 99) if has else None,
            )
        )
    return out


async def aggregate_database(
    storage: StorageBackend,
    database: str,
    *,
    days: int | None = None,
    now: datetime | None = None,
) -> tuple[list[Aggregate], int]:
    """Recompute and store the daily aggregates of ``database`` (the last ``days`` UTC days, or
    all of them); returns the aggregates and how many stored aggregates changed.

    ``days`` counts records by when they were stored (``created_at``, as ``list_records``'
    ``since``), today (of ``now``) included. The records are read grouped inside the store
    (:meth:`StorageBackend.group_events`), never whole; the aggregates are those
    :func:`compute_aggregates` computes from the records. Only changed aggregates are written,
    in one ``put_many``; a refused one raises its :class:`~brickrun.errors.StorageError` after
    the others were written.
    """
    since = None
    if days is not None:
        today = (now or datetime.now(UTC)).astimezone(UTC)
        since = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=days - 1)
    aggregates = aggregate_groups(await storage.group_events(database, since=since))
    target = aggregates_database(database)
    existing = {r["id"]: r["data"] for r in await storage.list_records(target)}
    changed = []
    for aggregate in aggregates:
        data = aggregate.to_data()
        if existing.get(aggregate.key) != data:
            changed.append(PutItem(target, aggregate.key, data))
    if changed:
        for outcome in await storage.put_many(changed):
            if outcome is not None:
                raise outcome
    return aggregates, len(changed)
