"""Daily aggregates: 35 seeded days with day edges and zero durations vs a reference; the
grouped read of a stored database vs :func:`compute_aggregates` of its records, for any record
shape (a property test on both backends)."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brickrun.errors import StorageError
from brickrun.storage import StorageBackend, open_storage
from brickrun.telemetry import TelemetryEvent, _aggregates
from brickrun.telemetry._aggregates import (
    Aggregate,
    aggregate_database,
    aggregate_groups,
    aggregates_database,
    compute_aggregates,
    nearest_rank,
)
from brickrun.telemetry._privacy import anonymize_url

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


def test_odd_shapes_that_used_to_raise() -> None:
    """A ``source`` that is not an object has no labels; a duration that no float holds is
    no duration."""
    records = [
        {"id": "a", "data": {"timestamp": "2026-11-23T10:00:00.000Z", "name": "x",
                             "source": "Button", "duration_ms": 10**400}},
        {"id": "b", "data": {"timestamp": "2026-11-23T11:00:00.000Z", "name": "x",
                             "source": [1], "duration_ms": 3}},
    ]  # fmt: skip
    assert compute_aggregates(records) == [
        Aggregate("2026-11-23", "x", "", 2, 0, 3.0, 3.0, 3.0, 3.0),
    ]


# --- the grouped read (what aggregate_database runs) equals compute_aggregates of the records --

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=8)
ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(-1e300, 1e300, allow_nan=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(TEXT, inner, max_size=2),
    max_leaves=3,
)
STAMPS = st.sampled_from(
    ["2026-11-23T10:00:00.000Z", "2026-11-23T23:59:59.999Z", "2026-11-24T00:00:00.000Z",
     "2026-11-23", "2026-11-2", 'x"\\\n\x01\u00e9\U0001f600abcdef']
)  # fmt: skip
URLS = st.sampled_from(
    ["https://ex.com/case/42?x=1", "https://ex.com/case/43", "/docs/7#top", "", "not a url",
     "https://a:b@ex.com/p", " /padded "]
)  # fmt: skip
DURATIONS = st.one_of(
    st.integers(-5, 3000),
    st.sampled_from([-1, -1e-9, 0, 0.0, -0.0, 0.5, 1e300, 10**30, 10**400, True, "5", None]),
    st.floats(-10, 1e300, allow_nan=False),
)
MISSING = object()


def field(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value 6 times in 10, else missing or any JSON value."""
    return st.integers(0, 9).flatmap(
        lambda n: plausible if n < 6 else st.just(MISSING) if n < 8 else ANY
    )


FIELDS = {
    "timestamp": field(STAMPS),
    "name": field(st.sampled_from(["page_view", "api_call", ""])),
    "event": field(st.sampled_from(["translate", ""])),
    "context": field(st.sampled_from(["/a", "", "GET /x", '"q', "!", " "])),
    "url": field(URLS),
    "source": field(
        st.fixed_dictionaries(
            {"starterBrickName": field(st.sampled_from(["Button", "", 0])),
             "modComponentLabel": field(st.sampled_from(["Label", ""]))}
        )
    ),
    "duration_ms": field(DURATIONS),
    "error": field(st.sampled_from([None, {"name": "E"}, False, 0, "", "null"])),
}  # fmt: skip


def present(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without its missing fields, at any depth of objects."""
    return {
        k: present(v) if isinstance(v, dict) else v for k, v in data.items() if v is not MISSING
    }


RECORDS = st.lists(st.fixed_dictionaries(FIELDS).map(present), max_size=30)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=RECORDS)
async def test_grouped_read_equals_computing_from_the_records(
    storage: StorageBackend, records: list[dict[str, Any]]
) -> None:
    run = await storage.count("runs")
    await storage.put("runs", f"r{run}", {})
    database = f"telemetry-{run}"
    outcomes = await storage.put_many(
        [(database, f"k{i}", data) for i, data in enumerate(records)], now=T0
    )
    assert outcomes == [None] * len(records)
    expected = compute_aggregates(await storage.list_records(database))
    assert aggregate_groups(await storage.group_events(database)) == expected

    aggregates, changed = await aggregate_database(storage, database, now=T0)
    assert aggregates == expected
    assert changed == len(expected)
    stored = await storage.list_records(aggregates_database(database))
    assert {r["id"]: r["data"] for r in stored} == {a.key: a.to_data() for a in expected}
    assert await aggregate_database(storage, database, now=T0) == (expected, 0)


# Each way a record finds (or lacks) its name and context, with the context expected.
STAMP = "2026-11-23T10:00:00.000Z"
SHAPES: list[tuple[dict[str, Any], str | None]] = [
    ({"name": "a", "context": "/c", "url": "https://ex.com/x"}, "/c"),
    ({"name": "a", "context": "", "url": "https://ex.com/case/42?x=1"}, "https://ex.com/case/[id]"),
    ({"name": "a", "url": "https://ex.com/case/43", "source": {"starterBrickName": "B"}},
     "https://ex.com/case/[id]"),
    ({"name": "a", "source": {"starterBrickName": "Button", "modComponentLabel": "L"}}, "Button"),
    ({"name": "a", "source": {"starterBrickName": "", "modComponentLabel": "Label"}}, "Label"),
    ({"name": "a", "source": {"starterBrickName": 0, "modComponentLabel": ""}}, ""),
    ({"name": "a", "source": {"starterBrickName": {"x": [1, 2.5]}}}, "{'x': [1, 2.5]}"),
    ({"name": "a", "url": "", "source": {"modComponentLabel": 7}}, "7"),
    ({"name": "a", "url": 0, "source": {"modComponentLabel": "L"}}, "L"),
    ({"name": "a", "url": [], "source": {"modComponentLabel": "L"}}, "L"),
    ({"name": "a", "url": {}, "source": {"modComponentLabel": "L"}}, "L"),
    ({"name": "a", "url": False, "source": "Button"}, ""),
    ({"name": "a", "url": 5}, "[invalid-url]"),
    ({"name": "a", "url": ["/x"]}, "[invalid-url]"),
    ({"name": "a", "url": True}, "[invalid-url]"),
    ({"name": "", "context": "/c"}, "/c"),
    ({"event": "translate", "url": "https://ex.com/case/44?x=1"}, "https://ex.com/case/[id]"),
    ({"event": "translate", "url": ""}, ""),
    ({"event": "translate"}, ""),
    ({"name": 5, "event": "e", "context": "/c", "url": "/p"}, "/p"),
    ({"name": None, "event": 5}, None),
    ({"event": ""}, ""),
]  # fmt: skip


async def test_every_shape_aggregates_as_from_the_records(storage: StorageBackend) -> None:
    await storage.put_many(
        [("events", f"k{i}", {"timestamp": STAMP, **data}) for i, (data, _) in enumerate(SHAPES)]
    )
    expected = compute_aggregates(await storage.list_records("events"))
    assert {a.context for a in expected} == {c for _, c in SHAPES if c is not None}
    assert aggregate_groups(await storage.group_events("events")) == expected


@pytest.fixture
async def storage(storage_url: str) -> Any:
    """An open store on each backend, shared by a property test's examples."""
    async with open_storage(storage_url) as opened:
        yield opened


async def test_days_counts_records_stored_since_the_start_of_the_day(
    storage: StorageBackend,
) -> None:
    data = {"timestamp": "2026-11-01T10:00:00.000Z", "name": "a", "context": "c"}
    await storage.put("events", "before", data, now=NOW - timedelta(days=2))
    await storage.put("events", "first", data, now=datetime(2026, 11, 22, tzinfo=UTC))
    await storage.put("events", "today", data, now=NOW)
    [aggregate], _ = await aggregate_database(storage, "events", days=2, now=NOW)
    assert aggregate.count == 2
    [aggregate], _ = await aggregate_database(storage, "events", days=1, now=NOW)
    assert aggregate.count == 1


async def test_each_url_is_anonymised_once_per_run(
    storage: StorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = [f"https://ex.com/case/{i % 3}?q={i}" for i in range(30)]
    await storage.put_many(
        [("events", f"k{i}", {"timestamp": f"2026-11-{10 + i % 5}T10:00:00.000Z", "name": "a",
                              "url": url}) for i, url in enumerate(urls)]
    )  # fmt: skip
    calls: list[Any] = []

    def counting(url: Any) -> str:
        calls.append(url)
        return anonymize_url(url)

    monkeypatch.setattr(_aggregates, "anonymize_url", counting)
    aggregates, _ = await aggregate_database(storage, "events")
    assert sorted(calls) == sorted(set(urls))
    assert {a.context for a in aggregates} == {"https://ex.com/case/[id]"}
    assert sum(a.count for a in aggregates) == 30


async def test_a_refused_aggregate_raises_after_the_others_are_stored(
    storage: StorageBackend,
) -> None:
    stamp = "2026-11-23T10:00:00.000Z"
    await storage.put("events", "ok", {"timestamp": stamp, "name": "a", "context": "/ok"})
    await storage.put("events", "long", {"timestamp": stamp, "name": "a", "context": "x" * 1100})
    with pytest.raises(StorageError, match=r"record key is \d+ bytes long"):
        await aggregate_database(storage, "events")
    assert [r["id"] for r in await storage.list_records(aggregates_database("events"))] == [
        "2026-11-23|a|/ok"
    ]
