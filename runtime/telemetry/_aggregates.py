"""Daily aggregates of a telemetry database (SPEC §8 "Aggregates and retention").

Per UTC day, event name and *context* (the event's ``context`` — an anonymised page, an action,
an API endpoint — else its anonymised URL path, else the starter brick), the aggregate holds
``count``, ``errors``, ``errorRate`` (errors / count), and ``avgMs``, ``p50Ms``, ``p95Ms``,
``p99Ms`` of ``duration_ms`` over the events that have one (nearest-rank percentiles; zero
durations count). Record-brick records (``{url, email, timestamp, event, data}``) aggregate
under their ``event`` name and anonymised URL.

Aggregates are stored as records of ``<database>-aggregates`` keyed ``<day>|<name>|<context>``;
recomputing is idempotent: an unchanged aggregate is not rewritten. Aggregates leave the team
database (the query API, exports), so contexts pass the URL anonymiser and never hold a user.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from ..storage import StorageBackend

__all__ = ["Aggregate", "aggregate_database", "aggregates_database", "compute_aggregates"]


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


def _anonymize(url: Any) -> str:
    from ._privacy import anonymize_url

    return anonymize_url(url)


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
                context = _anonymize(url)
            else:
                source = data.get("source") or {}
                context = str(
                    source.get("starterBrickName") or source.get("modComponentLabel") or ""
                )
        duration = data.get("duration_ms")
        error = data.get("error") is not None
    elif isinstance(data.get("event"), str):  # a record-brick record
        name = data["event"]
        context = _anonymize(data["url"]) if data.get("url") else ""
        duration = None
        error = False
    else:
        return None
    if not isinstance(duration, int | float) or isinstance(duration, bool) or duration < 0:
        duration = None
    return timestamp[:10], name, context, float(duration) if duration is not None else None, error


def compute_aggregates(records: Iterable[Mapping[str, Any]]) -> list[Aggregate]:
    """Aggregate stored records (``{id, data, ...}``) by UTC day, name and context."""
    groups: dict[tuple[str, str, str], tuple[list[float], list[int]]] = defaultdict(
        lambda: ([], [0, 0])
    )
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
    out = []
    for (day, name, context), (durations, (count, errors)) in sorted(groups.items()):
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


async def _all_records(storage: StorageBackend, database: str, since: datetime | None) -> list[Any]:
    """Every record of ``database`` (created since ``since``), read as one snapshot."""
    return list(await storage.list_records(database, since=since))


async def aggregate_database(
    storage: StorageBackend,
    database: str,
    *,
    days: int | None = None,
    now: datetime | None = None,
) -> tuple[list[Aggregate], int]:
    """Recompute and store the daily aggregates of ``database`` (the last ``days`` UTC days, or
    all of them); returns the aggregates and how many stored aggregates changed."""
    since = None
    if days is not None:
        today = (now or datetime.now(UTC)).astimezone(UTC)
        since = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=days - 1)
    records = await _all_records(storage, database, since)
    aggregates = compute_aggregates(records)
    target = aggregates_database(database)
    existing = {r["id"]: r["data"] for r in await _all_records(storage, target, None)}
    changed = [a for a in aggregates if existing.get(a.key) != a.to_data()]
    # Concurrent puts share transactions (the storage layer batches them).
    async with anyio.create_task_group() as tg:
        for item in changed:
            tg.start_soon(storage.put, target, item.key, item.to_data(), "replace")
    return aggregates, len(changed)
