"""``group_events``: telemetry records grouped inside the store, on both backends.

Each record shape of the table is stored in a database of its own; its group (or its absence)
is what :class:`~brickrun.storage.EventGroup` documents. Groups may be finer than the
documented fields (equal values spelled differently), so results are compared merged by them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from brickrun.errors import StorageError
from brickrun.storage import EventGroup, StorageBackend, open_storage

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
STAMP = "2026-11-23T10:00:00.000Z"
DAY = "2026-11-23"
NO_DETAILS = (None, None, None, None)

Key = tuple[str, Any, Any, Any]
"""(day, name, context, details) of a group, with names and details made hashable."""


def merged(groups: list[EventGroup]) -> dict[Key, tuple[int, int, list[float]]]:
    """Groups merged by their fields: {key: (count, errors, sorted durations)}."""
    out: dict[Key, list[Any]] = defaultdict(lambda: [0, 0, []])
    for group in groups:
        key = (group.day, repr(group.name), group.context, repr(group.details))
        out[key][0] += group.count
        out[key][1] += group.errors
        out[key][2] += group.durations
    return {key: (count, errors, sorted(d)) for key, (count, errors, d) in out.items()}


def key(day: str, name: Any, context: str | None, details: tuple[Any, ...] | None) -> Key:
    return (day, repr(name), context, repr(details))


# (id, data, expected key or None (not grouped), errors, durations)
CASES: list[tuple[str, dict[str, Any], Key | None, int, list[float]]] = [
    ("event with a context",
     {"timestamp": STAMP, "name": "page_view", "context": "/docs/[id]", "url": "/docs/1",
      "duration_ms": 12, "error": None},
     key(DAY, "page_view", "/docs/[id]", None), 0, [12]),
    ("context that starts with a quote or a character below it",
     {"timestamp": STAMP, "name": "a", "context": '"q'}, key(DAY, "a", '"q', None), 0, []),
    ("context of one space", {"timestamp": STAMP, "name": "a", "context": " "},
     key(DAY, "a", " ", None), 0, []),
    ("empty context: details instead",
     {"timestamp": STAMP, "name": "a", "context": "", "url": "https://ex.com/a?b=1"},
     key(DAY, "a", None, (None, "https://ex.com/a?b=1", None, None)), 0, []),
    ("context that is not a string",
     {"timestamp": STAMP, "name": "a", "context": 7, "event": "e"},
     key(DAY, "a", None, ("e", None, None, None)), 0, []),
    ("name that is not a string: the context is not used",
     {"timestamp": STAMP, "name": ["x"], "context": "/c", "event": "e", "url": "/u"},
     key(DAY, ["x"], None, ("e", "/u", None, None)), 0, []),
    ("record-brick record",
     {"url": "https://ex.com/case/42?x=1", "email": "a@b.c", "timestamp": STAMP,
      "event": "translate", "data": {"words": 1}},
     key(DAY, None, None, ("translate", "https://ex.com/case/42?x=1", None, None)), 0, []),
    ("source labels",
     {"timestamp": STAMP, "name": "TriggerRun",
      "source": {"starterBrickName": "Button", "modComponentLabel": {"a": [1, 2.5]}}},
     key(DAY, "TriggerRun", None, (None, None, "Button", {"a": [1, 2.5]})), 0, []),
    ("source that is not an object", {"timestamp": STAMP, "name": "a", "source": ["x"]},
     key(DAY, "a", None, NO_DETAILS), 0, []),
    ("url of any JSON type", {"timestamp": STAMP, "name": "a", "url": {"u": 1}},
     key(DAY, "a", None, (None, {"u": 1}, None, None)), 0, []),
    ("timestamp of exactly 10 characters", {"timestamp": "2026-11-23", "name": "a"},
     key("2026-11-23", "a", None, NO_DETAILS), 0, []),
    ("timestamp of 9 characters", {"timestamp": "2026-11-2", "name": "a"}, None, 0, []),
    ("timestamp that needs escapes",
     {"timestamp": 'a"b\\c\nd\x01e\u00e9fgh', "name": "a"},
     key('a"b\\c\nd\x01e\u00e9', "a", None, NO_DETAILS), 0, []),
    ("timestamp with escapes but 9 characters", {"timestamp": '"\\' * 4 + '"', "name": "a"},
     None, 0, []),
    ("timestamp beyond the BMP",
     {"timestamp": "\U0001f600" * 11, "name": "a"},
     key("\U0001f600" * 10, "a", None, NO_DETAILS), 0, []),
    ("timestamp that is a number", {"timestamp": 20261123100000, "name": "a"}, None, 0, []),
    ("timestamp that is an array", {"timestamp": ["2026-11-23T10:00"], "name": "a"}, None, 0, []),
    ("no timestamp (an aggregate)",
     {"day": DAY, "name": "a", "context": "/c", "count": 3}, None, 0, []),
    ("neither name nor event", {"timestamp": STAMP, "url": "/a"},
     key(DAY, None, None, (None, "/a", None, None)), 0, []),
    ("error object", {"timestamp": STAMP, "name": "a", "context": "c", "error": {"n": 1}},
     key(DAY, "a", "c", None), 1, []),
    ("error false", {"timestamp": STAMP, "name": "a", "context": "c", "error": False},
     key(DAY, "a", "c", None), 1, []),
    ("error 0", {"timestamp": STAMP, "name": "a", "context": "c", "error": 0},
     key(DAY, "a", "c", None), 1, []),
    ("error 'null'", {"timestamp": STAMP, "name": "a", "context": "c", "error": "null"},
     key(DAY, "a", "c", None), 1, []),
    ("duration 0", {"timestamp": STAMP, "name": "a", "context": "c", "duration_ms": 0},
     key(DAY, "a", "c", None), 0, [0]),
    ("duration 0.5", {"timestamp": STAMP, "name": "a", "context": "c", "duration_ms": 0.5},
     key(DAY, "a", "c", None), 0, [0.5]),
    ("duration -0.0", {"timestamp": STAMP, "name": "a", "context": "c", "duration_ms": -0.0},
     key(DAY, "a", "c", None), 0, [0.0]),
    ("duration 1e300", {"timestamp": STAMP, "name": "a", "context": "c", "duration_ms": 1e300},
     key(DAY, "a", "c", None), 0, [1e300]),
    ("duration 10**30", {"timestamp": STAMP, "name": "a", "context": "c", "duration_ms": 10**30},
     key(DAY, "a", "c", None), 0, [10**30]),
    ("negative duration", {"timestamp": STAMP, "name": "a", "context": "c", "duration_ms": -1},
     key(DAY, "a", "c", None), 0, []),
    ("negative tiny duration",
     {"timestamp": STAMP, "name": "a", "context": "c", "duration_ms": -1e-300},
     key(DAY, "a", "c", None), 0, []),
    ("boolean duration", {"timestamp": STAMP, "name": "a", "context": "c", "duration_ms": True},
     key(DAY, "a", "c", None), 0, []),
    ("string duration", {"timestamp": STAMP, "name": "a", "context": "c", "duration_ms": "5"},
     key(DAY, "a", "c", None), 0, []),
    ("array duration", {"timestamp": STAMP, "name": "a", "context": "c", "duration_ms": [5]},
     key(DAY, "a", "c", None), 0, []),
]  # fmt: skip


async def test_each_record_shape_groups_as_documented(backend: StorageBackend) -> None:
    for number, (case, data, expected, errors, durations) in enumerate(CASES):
        database = f"shape-{number}"
        await backend.put(database, "k", data, now=T0)
        got = merged(await backend.group_events(database))
        want = {} if expected is None else {expected: (1, errors, durations)}
        assert got == want, case
        if durations:
            [group] = await backend.group_events(database)
            assert [type(d) for d in group.durations] == [type(d) for d in durations], case


async def test_records_group_by_day_name_and_context(backend: StorageBackend) -> None:
    rows = [
        ("2026-11-23T00:00:00.000Z", "page_view", "/a", 5, None),
        ("2026-11-23T23:59:59.999Z", "page_view", "/a", 1, {"name": "E"}),
        ("2026-11-23T12:00:00.000Z", "page_view", "/a", None, None),
        ("2026-11-24T00:00:00.000Z", "page_view", "/a", 2, None),
        ("2026-11-23T12:00:00.000Z", "page_view", "/b", 3, None),
        ("2026-11-23T12:00:00.000Z", "api_call", "/a", 4, {"name": "E"}),
    ]
    await backend.put_many(
        [
            ("events", f"k{i}", {"timestamp": t, "name": n, "context": c, "duration_ms": d,
                                 "error": e})
            for i, (t, n, c, d, e) in enumerate(rows)
        ],
        now=T0,
    )  # fmt: skip
    assert merged(await backend.group_events("events")) == {
        key("2026-11-23", "page_view", "/a", None): (3, 1, [1, 5]),
        key("2026-11-24", "page_view", "/a", None): (1, 0, [2]),
        key("2026-11-23", "page_view", "/b", None): (1, 0, [3]),
        key("2026-11-23", "api_call", "/a", None): (1, 1, [4]),
    }


async def test_since_keeps_records_created_since(backend: StorageBackend) -> None:
    data = {"timestamp": STAMP, "name": "a", "context": "c"}
    await backend.put("events", "old", data, now=T0 - timedelta(days=2))
    await backend.put("events", "new", data, now=T0)
    await backend.put("events", "edge", data, now=T0 - timedelta(days=1))
    groups = await backend.group_events("events", since=T0 - timedelta(days=1))
    assert merged(groups) == {key(DAY, "a", "c", None): (2, 0, [])}
    assert merged(await backend.group_events("events", since=T0 + timedelta(1))) == {}


async def test_the_same_groups_whatever_else_the_store_holds(backend: StorageBackend) -> None:
    """A database that is most of the table and one that is not (the SQLite backend reads
    them differently) group alike."""
    items = [
        ("events", f"k{i}", {"timestamp": f"2026-11-{20 + i % 3}T10:00:00.000Z",
                             "name": "a", "context": f"/{i % 4}", "duration_ms": i})
        for i in range(60)
    ]  # fmt: skip
    await backend.put_many(items, now=T0)
    alone = merged(await backend.group_events("events"))
    assert sum(count for count, _, _ in alone.values()) == 60
    await backend.put_many([("other", f"k{i}", {"n": i}) for i in range(200)], now=T0)
    assert merged(await backend.group_events("events")) == alone


async def test_a_database_without_records_has_no_groups(backend: StorageBackend) -> None:
    assert await backend.group_events("missing") == []
    await backend.put("other", "k", {"timestamp": STAMP, "name": "a"})
    assert await backend.group_events("missing") == []


async def test_bad_arguments_and_a_closed_backend(backend: StorageBackend) -> None:
    with pytest.raises(StorageError, match="database id must be a non-empty string"):
        await backend.group_events("")
    with pytest.raises(StorageError, match="now must be a datetime"):
        await backend.group_events("events", since="2026-11-23")  # type: ignore[arg-type]
    await backend.close()
    with pytest.raises(StorageError, match="is closed"):
        await backend.group_events("events")


async def test_one_snapshot_while_writes_commit(backend: StorageBackend) -> None:
    """Groups read while batches of 50 records commit count whole batches only (the SQLite
    backend reads with two connections; both see the same commits)."""
    seen: list[int] = []

    async def write() -> None:
        for batch in range(40):
            await backend.put_many(
                [("events", f"b{batch}-{i}", {"timestamp": STAMP, "name": "a", "context": "c"})
                 for i in range(50)]
            )  # fmt: skip

    async def read() -> None:
        for _ in range(15):
            groups = await backend.group_events("events")
            seen.append(sum(group.count for group in groups))

    async with anyio.create_task_group() as group:
        group.start_soon(write)
        group.start_soon(read)
    assert all(count % 50 == 0 for count in seen), seen
    assert sum(g.count for g in await backend.group_events("events")) == 2000


async def test_an_in_memory_store_groups_with_its_one_connection() -> None:
    async with open_storage("sqlite:///:memory:") as storage:
        await storage.put_many(
            [("events", f"k{i}", {"timestamp": STAMP, "name": "a", "context": "c",
                                  "duration_ms": i}) for i in range(5)]
        )  # fmt: skip
        assert merged(await storage.group_events("events")) == {
            key(DAY, "a", "c", None): (5, 0, [0, 1, 2, 3, 4])
        }
