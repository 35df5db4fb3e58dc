"""The query side: ``GET /api/telemetry`` (the seed's ``{summary, aggregates, period}``) and the
dashboard's report (top pages, API latency per endpoint, errors, daily series, deployments).

Both read one telemetry database for a period of whole UTC days ending today. Daily aggregates
are computed from the raw events of the period (:func:`~brickrun.telemetry._aggregates.
compute_aggregates`) and completed with the stored ones (``<database>-aggregates``, written
by ``brickrun aggregate``) for days whose raw events retention has already deleted: per
(day, name, context) the figure with the larger count wins, since a stored aggregate can only
be older (fewer events) and raw events can only have been deleted (fewer events).

Nothing here returns an event, a user or a session: only counts and durations per name and
context, and contexts are anonymised pages, action names, endpoints and error names.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ..storage import StorageBackend
from ..telemetry._aggregates import aggregates_database, compute_aggregates, nearest_rank

__all__ = ["MAX_DAYS", "Period", "PeriodData", "load_period", "report", "telemetry_response"]

MAX_DAYS: Final = 366
_PAGE: Final = 5000
_TOP: Final = 10


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Period:
    """``days`` whole UTC days ending with today: ``start`` 00:00:00.000, ``end`` 23:59:59.999."""

    days: int
    start: datetime
    end: datetime

    @classmethod
    def ending(cls, now: datetime, days: int) -> Period:
        today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today - timedelta(days=days - 1)
        return cls(days, start, today + timedelta(days=1, milliseconds=-1))

    def day_names(self) -> list[str]:
        return [(self.start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(self.days)]

    def to_json(self) -> dict[str, Any]:
        return {"days": self.days, "startDate": _iso(self.start), "endDate": _iso(self.end)}


@dataclass
class PeriodData:
    """What a period's answers are computed from: its raw event data and merged aggregates."""

    period: Period
    events: list[Mapping[str, Any]]
    aggregates: list[dict[str, Any]]  # Aggregate.to_data() shape


async def _records(storage: StorageBackend, database: str, since: datetime) -> list[Any]:
    records: list[Any] = []
    while True:
        page = await storage.list_records(database, limit=_PAGE, offset=len(records), since=since)
        records.extend(page)
        if len(page) < _PAGE:
            return records


async def load_period(
    storage: StorageBackend, database: str, days: int, now: datetime
) -> PeriodData:
    """Read the period's raw events and stored aggregates and merge the daily aggregates."""
    period = Period.ending(now, days)
    first, last = period.start.strftime("%Y-%m-%d"), period.end.strftime("%Y-%m-%d")
    raw = [
        record
        for record in await _records(storage, database, period.start)
        if isinstance(record.get("data"), Mapping)
        and isinstance(record["data"].get("timestamp"), str)
        and first <= record["data"]["timestamp"][:10] <= last
    ]
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in await _records(storage, aggregates_database(database), period.start):
        data = record.get("data")
        if (
            isinstance(data, Mapping)
            and isinstance(data.get("day"), str)
            and first <= data["day"] <= last
            and isinstance(data.get("count"), int)
        ):
            merged[(data["day"], str(data.get("name")), str(data.get("context") or ""))] = dict(
                data
            )
    for aggregate in compute_aggregates(raw):
        key = (aggregate.day, aggregate.name, aggregate.context)
        stored = merged.get(key)
        if stored is None or aggregate.count >= stored["count"]:
            merged[key] = aggregate.to_data()
    return PeriodData(
        period,
        [record["data"] for record in raw],
        sorted(merged.values(), key=lambda a: (a["day"], a["name"], -a["count"], a["context"])),
    )


def _count(aggregates: Iterable[Mapping[str, Any]], name: str) -> int:
    return sum(int(a["count"]) for a in aggregates if a["name"] == name)


def _weighted_avg(aggregates: Iterable[Mapping[str, Any]], name: str) -> float | None:
    total = weight = 0.0
    for a in aggregates:
        if a["name"] == name and a.get("avgMs") is not None:
            total += float(a["avgMs"]) * int(a["count"])
            weight += int(a["count"])
    return total / weight if weight else None


def _seed_item(a: Mapping[str, Any]) -> dict[str, Any]:
    count = int(a["count"])
    errors = int(a.get("errors") or 0)
    return {
        "date": a["day"],
        "type": a["name"],
        "context": a.get("context") or None,
        "count": count,
        "errors": errors,
        "errorRate": round(errors / count * 100, 2) if count else 0.0,
        "avgDuration": a.get("avgMs"),
        "p50Duration": a.get("p50Ms"),
        "p95Duration": a.get("p95Ms"),
        "p99Duration": a.get("p99Ms"),
    }


def telemetry_response(data: PeriodData, type_filter: str | None) -> dict[str, Any]:
    """The seed's ``GET /api/telemetry`` answer.

    ``summary``: ``pageViews``, ``actions``, ``apiCalls``, ``sessions`` (``session_start``
    events) count events of those types; ``errors`` counts events with an error (``error``
    events, ``TriggerError``, ...); ``avgApiLatency`` is the mean ``api_call`` duration (ms, one
    decimal); ``errorRate`` is errors per 100 actions, as the seed defines it (two decimals;
    ``null`` without actions); ``avgSessionLength`` is the mean ``session_end`` duration (ms).
    ``aggregates``: one item per day, type and context (``type_filter`` keeps one type), with
    ``avgDuration``/``p50``/``p95``/``p99Duration`` in ms (``null`` when no event had a
    duration) and ``errorRate`` in percent of ``count``. The summary ignores ``type_filter``.
    """
    aggregates = data.aggregates
    actions = _count(aggregates, "action")
    errors = sum(int(a.get("errors") or 0) for a in aggregates)
    latency = _weighted_avg(aggregates, "api_call")
    session = _weighted_avg(aggregates, "session_end")
    summary = {
        "pageViews": _count(aggregates, "page_view"),
        "actions": actions,
        "errors": errors,
        "apiCalls": _count(aggregates, "api_call"),
        "sessions": _count(aggregates, "session_start"),
        "avgApiLatency": round(latency, 1) if latency is not None else None,
        "errorRate": round(errors / actions * 100, 2) if actions else None,
        "avgSessionLength": round(session) if session is not None else None,
    }
    items = [_seed_item(a) for a in aggregates if type_filter is None or a["name"] == type_filter]
    return {"summary": summary, "aggregates": items, "period": data.period.to_json()}


def _latency(durations: list[float]) -> dict[str, float | None]:
    if not durations:
        return {"avgMs": None, "p50Ms": None, "p95Ms": None, "p99Ms": None}
    durations.sort()
    return {
        "avgMs": round(sum(durations) / len(durations), 1),
        "p50Ms": nearest_rank(durations, 50),
        "p95Ms": nearest_rank(durations, 95),
        "p99Ms": nearest_rank(durations, 99),
    }


def report(data: PeriodData) -> dict[str, Any]:
    """The dashboard's breakdowns of a period (the ``GET /api/telemetry/report`` answer).

    ``topPages``: page views per anonymised page, the top 10. ``endpoints``: per API endpoint,
    calls, errors (status >= 500 or an error) and latency (mean and nearest-rank p50/p95/p99
    over the period's raw events, so days already deleted by retention are not in them).
    ``errors``: error events per error name, and other events' errors per event name.
    ``daily``: per day of the period, counts per type. ``deployments``: per deployment,
    ``events`` (events without an error: engagement) and ``errors``.
    """
    aggregates = data.aggregates
    pages: dict[str, int] = defaultdict(int)
    error_kinds: dict[str, int] = defaultdict(int)
    days: dict[str, dict[str, Any]] = {
        day: {
            "date": day,
            "pageViews": 0,
            "actions": 0,
            "errors": 0,
            "apiCalls": 0,
            "sessions": 0,
            "events": 0,
        }
        for day in data.period.day_names()
    }
    columns = {
        "page_view": "pageViews",
        "action": "actions",
        "api_call": "apiCalls",
        "session_start": "sessions",
    }
    for a in aggregates:
        count, errors = int(a["count"]), int(a.get("errors") or 0)
        if a["name"] == "page_view":
            pages[a.get("context") or "(unknown)"] += count
        if errors:
            label = (a.get("context") or "error") if a["name"] == "error" else a["name"]
            error_kinds[label] += errors
        day = days.get(a["day"])
        if day is not None:
            day["events"] += count
            day["errors"] += errors
            column = columns.get(a["name"])
            if column is not None:
                day[column] += count

    calls: dict[str, list[float]] = defaultdict(list)
    call_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    deployments: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for event in data.events:
        failed = event.get("error") is not None
        if event.get("name") == "api_call":
            endpoint = str(event.get("context") or "(unknown)")
            counts = call_counts[endpoint]
            counts[0] += 1
            status = (event.get("metadata") or {}).get("status")
            if failed or (isinstance(status, int) and status >= 500):
                counts[1] += 1
            duration = event.get("duration_ms")
            if isinstance(duration, int | float) and not isinstance(duration, bool):
                calls[endpoint].append(float(duration))
        source = event.get("source")
        deployment = source.get("deploymentId") if isinstance(source, Mapping) else None
        if isinstance(deployment, str) and deployment:
            deployments[deployment][1 if failed else 0] += 1

    endpoints = [
        {"endpoint": name, "calls": n, "errors": e, **_latency(calls[name])}
        for name, (n, e) in call_counts.items()
    ]
    endpoints.sort(key=lambda row: (-int(row["calls"] or 0), str(row["endpoint"])))
    return {
        "period": data.period.to_json(),
        "topPages": [
            {"page": page, "views": views}
            for page, views in sorted(pages.items(), key=lambda kv: (-kv[1], kv[0]))[:_TOP]
        ],
        "endpoints": endpoints,
        "errors": [
            {"name": name, "count": count}
            for name, count in sorted(error_kinds.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "daily": list(days.values()),
        "deployments": [
            {"deployment": name, "events": ok, "errors": failed}
            for name, (ok, failed) in sorted(deployments.items())
        ],
    }
