"""Daily aggregates: 35 seeded days with day edges and zero durations vs a reference."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from brickrun.storage import open_storage
from brickrun.telemetry import TelemetryEvent
from brickrun.telemetry._aggregates import (
    aggregate_database,
    aggregates_database,
    compute_aggregates,
    nearest_rank,
)

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def reference(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """A deliberately plain recomputation: sort, index with the nearest-rank formula."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        groups[(e["timestamp"][:10], e["name"], e["context"])].append(e)
    out = {}
    for key, items in groups.items():
        durations = sorted(e["duration_ms"] for e in items if e["duration_ms"] is not None)

        def rank(p: float, d: list[float] = durations) -> float | None:
            return d[math.ceil(p / 100 * len(d)) - 1] if d else None

        out[key] = {
            "count": len(items),
            "errors": sum(1 for e in items if e["error"]),
            "p50Ms": rank(50),
            "p95Ms": rank(95),
            "p99Ms": rank(99),
            "avgMs": round(sum(durations) / len(durations), 3) if durations else None,
        }
    return out


def seeded_events() -> list[dict[str, Any]]:
    rng = random.Random(7)
    events = []
    for day in range(35):
        base = datetime(2026, 10, 20, tzinfo=UTC) + timedelta(days=day)
        # day edges: the first and the last millisecond of the UTC day
        stamps = [base, base + timedelta(days=1, milliseconds=-1)]
        stamps += [
            base + timedelta(seconds=rng.randrange(86400)) for _ in range(rng.randrange(5, 40))
        ]
        for stamp in stamps:
            name = rng.choice(["api_call", "page_view"])
            duration = rng.choice([0, 0, None, rng.randrange(1, 2000), rng.random() * 50])
            event = TelemetryEvent(
                name=name,
                timestamp=stamp,
                duration_ms=duration,
                context=rng.choice(["/docs/[id]", "GET /api/items"]),
                error={"name": "HTTPError", "message": "503"} if rng.random() < 0.1 else None,
            )
            events.append(event.to_data())
    return events


def test_nearest_rank() -> None:
    assert nearest_rank([1.0], 99) == 1.0
    assert nearest_rank([0.0, 0.0, 10.0, 20.0], 50) == 0.0
    assert nearest_rank([float(i) for i in range(1, 101)], 95) == 95.0
    assert nearest_rank([float(i) for i in range(1, 11)], 99) == 10.0


async def test_aggregates_equal_reference_and_are_idempotent(storage_url: str) -> None:
    events = seeded_events()
    async with open_storage(storage_url) as storage:
        for data in events:
            when = datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00"))
            await storage.put("telemetry-agg", data["id"], data, now=when)
        aggregates, changed = await aggregate_database(storage, "telemetry-agg", now=NOW)
        assert changed == len(aggregates) > 35
        got = {(a.day, a.name, a.context): a.to_data() for a in aggregates}
        want = reference(events)
        assert set(got) == set(want)
        for key, figures in want.items():
            for field, value in figures.items():
                assert got[key][field] == value, (key, field)
        assert {a.day for a in aggregates} == {
            (datetime(2026, 10, 20, tzinfo=UTC) + timedelta(days=d)).strftime("%Y-%m-%d")
            for d in range(35)
        }
        stored = await storage.list_records(aggregates_database("telemetry-agg"))
        assert len(stored) == len(aggregates)
        before = {r["id"]: (r["data"], r["updated_at"]) for r in stored}

        again, changed_again = await aggregate_database(storage, "telemetry-agg", now=NOW)
        assert changed_again == 0, "a second run changes nothing"
        assert again == aggregates
        after = {
            r["id"]: (r["data"], r["updated_at"])
            for r in await storage.list_records(aggregates_database("telemetry-agg"))
        }
        assert after == before


def test_record_brick_records_aggregate_by_event_and_anonymised_page() -> None:
    records = [
        {"id": "k1", "data": {"url": "https://ex.com/case/42?x=1", "email": "a@b.c",
                              "timestamp": "2026-11-23T10:00:00.000Z", "event": "translate",
                              "data": {"words": 1}}},
        {"id": "k2", "data": {"url": "https://ex.com/case/43", "email": "a@b.c",
                              "timestamp": "2026-11-23T11:00:00.000Z", "event": "translate",
                              "data": {}}},
    ]  # fmt: skip
    [only] = compute_aggregates(records)
    assert (only.day, only.name, only.count, only.errors, only.p50_ms) == (
        "2026-11-23", "translate", 2, 0, None,
    )  # fmt: skip
    assert "42" not in only.context and "a@b.c" not in only.context
