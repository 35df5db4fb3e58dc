"""Daily aggregation of 1,000,000 events: in memory, and end to end over stored databases.

Run: ``.venv/bin/python bench/aggregate.py [--events N] [--no-postgres] [--records-path]
[--full-events]``. Prints, in one run, for N events (default 1,000,000; 35 days, 4 names, 40
contexts, a third without a duration, 2% errors, UUID keys; ``--full-events``: with every field
a recorded event has, ~400 bytes each instead of ~120):

(a) in memory: ``compute_aggregates`` over N records, against a hand-written group-and-sort
    baseline over the same records;
(b) end to end on SQLite (a file in a temporary directory) and PostgreSQL
    (``BRICKRUN_TEST_POSTGRES_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``, in
    a schema of its own, dropped afterwards; ``--no-postgres`` skips it): the N events are
    stored with ``put_many`` (timed apart, not counted), then ``aggregate_database`` runs
    twice: first storing every aggregate, then again finding nothing changed (what
    ``brickrun aggregate`` costs day to day). Its baseline is a hand-written query over the
    same store: one GROUP BY of the bench's own record shape (no odd shapes, no URLs, nothing
    stored), durations sorted in Python. With ``--records-path``, also the old way:
    ``compute_aggregates(list_records(...))``.

Every result is checked equal to (a). The target is 1,000,000 events aggregated in under 5 s
end to end on SQLite. No thresholds are asserted: the machine may be shared (the load average
is printed), so compare the ratios of one run rather than figures across runs; CPU time of
this process is printed too (for SQLite it is nearly all of the work).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sqlite3
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread

from brickrun.storage import StorageBackend, open_storage
from brickrun.telemetry._aggregates import Aggregate, aggregate_database, compute_aggregates

PG_DSN = os.environ.get("BRICKRUN_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
DB = "bench-agg"
SEED_CHUNK = 4096


def make_records(n: int, *, full: bool = False) -> list[dict[str, Any]]:
    """``n`` events; ``full``: with every field a recorded ``TelemetryEvent`` stores (~400
    bytes of JSON each instead of ~120, the context last)."""
    rng = random.Random(1)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    names = ["page_view", "action", "api_call", "error"]
    contexts = [f"/page/{i}" for i in range(40)]
    records = []
    for _ in range(n):
        key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        stamp = start + timedelta(seconds=rng.randrange(35 * 86400))
        data: dict[str, Any] = {
            "id": key,
            "name": rng.choice(names),
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "context": rng.choice(contexts),
            "duration_ms": rng.choice([0, None, rng.randrange(1, 3000)]),
            "error": None if rng.random() > 0.02 else {"name": "E", "message": "m"},
        }
        if full:
            context = data.pop("context")
            data.update(
                source={"modId": "@acme/mod", "modVersion": "1.0.0", "deploymentId": "dep-1"},
                user=f"u_{rng.getrandbits(64):016x}",
                session_id=f"s{rng.randrange(1000)}",
                url=f"https://example.com{context}/{rng.randrange(1000)}",
                platform="brickrun",
                metadata={"n": rng.randrange(10)},
                private_metadata={},
                context=context,
            )
        records.append({"id": key, "data": data})
    return records


def percentiles(durations: list[float]) -> tuple[float, ...]:
    return tuple(durations[max(1, math.ceil(p / 100 * len(durations))) - 1] for p in (50, 95, 99))


def baseline(records: list[dict[str, Any]]) -> int:
    groups: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for r in records:
        d = r["data"]
        groups[(d["timestamp"][:10], d["name"], d["context"])].append(d)
    for items in groups.values():
        durations = sorted(d["duration_ms"] for d in items if d["duration_ms"] is not None)
        if durations:
            percentiles(durations)
    return len(groups)


def finish(rows: list[tuple[Any, ...]]) -> int:
    """The baselines' Python half: each group's durations sorted, its percentiles taken."""
    for *_, durations in rows:
        if durations:
            ordered = sorted(map(float, durations.split(",")))
            percentiles(ordered)
    return len(rows)


# Hand-written, for this bench's records only: events that all have a string timestamp, name
# and context, a duration or null, an error or null.
SQLITE_BASELINE = (
    "SELECT substr(data ->> '$.timestamp', 1, 10), data ->> '$.name', data ->> '$.context',"
    " count(*), count(*) FILTER (WHERE data ->> '$.error' IS NOT NULL),"
    " group_concat(data ->> '$.duration_ms') FROM records WHERE database_id = ? GROUP BY 1, 2, 3"
)
POSTGRES_BASELINE = (
    "SELECT substr(data->>'timestamp', 1, 10), data->>'name', data->>'context', count(*),"
    " count(*) FILTER (WHERE data->>'error' IS NOT NULL), string_agg(data->>'duration_ms', ',')"
    " FROM records WHERE database_id = %s GROUP BY 1, 2, 3"
)


def sqlite_baseline(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return finish(conn.execute(SQLITE_BASELINE, (DB,)).fetchall())
    finally:
        conn.close()


def postgres_baseline(url: str) -> int:
    import psycopg
    from psycopg import sql

    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(PG_DSN) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        # The settings brickrun's query runs with (without them the planner, lacking
        # statistics on a table just filled, sorts every row on disk to group them).
        conn.execute("SET work_mem = '64MB'")
        conn.execute("SET enable_sort = off")
        return finish(conn.execute(POSTGRES_BASELINE, (DB,)).fetchall())


class Timer:
    """Wall and process CPU time of a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:7.2f} s  (cpu {self.cpu:6.2f} s)"


async def end_to_end(
    label: str,
    url: str,
    records: list[dict[str, Any]],
    expected: list[Aggregate],
    hand_written: Callable[[], int],
    records_path: bool,
) -> None:
    async with open_storage(url) as storage:
        with Timer() as seeding:
            await seed(storage, records)
        print(f"{label}: {len(records):,} events stored with put_many in {seeding.wall:.1f} s")
        first = await timed(storage, expected, changed=len(expected))
        again = await timed(storage, expected, changed=0)
        with Timer() as base:
            groups = await anyio.to_thread.run_sync(hand_written)
        assert groups == len(expected)
        print(f"  aggregate_database, storing all    {first}")
        print(f"  aggregate_database, none changed   {again}   (target < 5 s on SQLite)")
        print(f"  hand-written GROUP BY baseline     {base}")
        print(f"  ratio (none changed / baseline)    {again.wall / base.wall:7.2f}x")
        if records_path:
            with Timer() as old:
                assert compute_aggregates(await storage.list_records(DB)) == expected
            print(f"  old path: list_records + compute   {old}")


async def seed(storage: StorageBackend, records: list[dict[str, Any]]) -> None:
    for start in range(0, len(records), SEED_CHUNK):
        chunk = records[start : start + SEED_CHUNK]
        outcomes = await storage.put_many([(DB, r["id"], r["data"]) for r in chunk])
        assert outcomes == [None] * len(chunk)


async def timed(storage: StorageBackend, expected: list[Aggregate], *, changed: int) -> Timer:
    with Timer() as timer:
        aggregates, count = await aggregate_database(storage, DB)
    assert aggregates == expected and count == changed
    return timer


def postgres_url() -> str | None:
    import psycopg

    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.Error as error:
        print(f"PostgreSQL skipped: {error}".strip())
        return None
    schema = f"bench_aggregate_{uuid.uuid4().hex[:8]}"
    return f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}"


def drop_schema(url: str) -> None:
    import psycopg
    from psycopg import sql

    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def run(step: Callable[[], Awaitable[None]]) -> None:
    anyio.run(step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--records-path", action="store_true", help="also time list_records + compute_aggregates"
    )
    parser.add_argument(
        "--full-events", action="store_true", help="events with every TelemetryEvent field"
    )
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    records = make_records(args.events, full=args.full_events)

    with Timer() as ours:
        expected = compute_aggregates(records)
    with Timer() as base:
        groups = baseline(records)
    assert len(expected) == groups
    print(f"aggregate {args.events:,} events into {groups:,} daily aggregates")
    print("in memory:")
    print(f"  brickrun compute_aggregates        {ours}")
    print(f"  hand-written baseline              {base}")
    print(f"  ratio                              {ours.wall / base.wall:7.2f}x")

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "aggregate.sqlite")
        run(
            lambda: end_to_end(
                "SQLite",
                f"sqlite:///{path}",
                records,
                expected,
                lambda: sqlite_baseline(path),
                args.records_path,
            )
        )
    url = None if args.no_postgres else postgres_url()
    if url is not None:
        try:
            run(
                lambda: end_to_end(
                    "PostgreSQL",
                    url,
                    records,
                    expected,
                    lambda: postgres_baseline(url),
                    args.records_path,
                )
            )
        finally:
            drop_schema(url)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
