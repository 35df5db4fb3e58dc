"""Storage write throughput: records/s through ``put`` and ``put_many`` against raw drivers.

Run: ``.venv/bin/python bench/storage.py [--records N] [--no-postgres]``. Prints, in one run,
for SQLite (a file in a temporary directory, WAL, ``synchronous=FULL``) and PostgreSQL
(``BRICKRUN_TEST_POSTGRES_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``, in a
schema of its own that is dropped afterwards):

(a) ``put``: N records of the record brick's shape from 256 tasks, each awaiting its puts in
    turn (the record brick keeps up to 256 in flight);
(b) ``gather``: the same records as groups of 100 concurrent puts, 32 groups in flight (how a
    caller with batches wrote before ``put_many``);
(c) ``put_many``: the same records in calls of 100, 32 calls in flight;
(d) the hand-written baseline: the same rows built in Python and inserted with the driver's
    ``executemany`` in transactions of 1,000 rows into a table of the store's schema (SQLite:
    same pragmas; PostgreSQL: a JSONB column), one batch at a time, no event loop;

then the ratios to the baseline. Every variant writes fresh keys into an empty store and is
timed from its first write to its last commit. No thresholds are asserted here: the machine
may be shared, so compare the ratios of one run rather than figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from brickrun.storage import StorageBackend, open_storage

PG_DSN = os.environ.get("BRICKRUN_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
DB = "bench-telemetry"
PUT_IN_FLIGHT = 256
MANY_SIZE = 100
MANY_IN_FLIGHT = 32
BASELINE_BATCH = 1000
T0 = datetime(2026, 11, 23, 15, 0, 0, tzinfo=UTC)

Item = tuple[str, dict[str, Any], datetime]


def make_items(count: int, tag: str) -> list[Item]:
    """``count`` records as the record brick writes them: key ``<email>-<timestamp>-<uuid>``."""
    items = []
    for n in range(count):
        when = T0 + timedelta(milliseconds=n)
        stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        email = f"user{n % 50}@example.com"
        value = {
            "url": f"https://app.example.com/projects/{n % 200}/board",
            "email": email,
            "timestamp": stamp,
            "event": "translate",
            "data": {"words": n % 500, "source": "en", "target": "de"},
        }
        items.append((f"{email}-{stamp}-{tag}{uuid.uuid4()}", value, when))
    return items


# --- brickrun ---------------------------------------------------------------------------------


async def run_puts(storage: StorageBackend, items: list[Item]) -> None:
    async def worker(part: list[Item]) -> None:
        for key, value, when in part:
            await storage.put(DB, key, value, now=when)

    async with anyio.create_task_group() as group:
        for first in range(PUT_IN_FLIGHT):
            group.start_soon(worker, items[first::PUT_IN_FLIGHT])


def chunks(items: list[Item]) -> list[list[Item]]:
    return [items[i : i + MANY_SIZE] for i in range(0, len(items), MANY_SIZE)]


async def run_in_calls(items: list[Item], call: Callable[[list[Item]], Awaitable[None]]) -> None:
    """``call`` on chunks of MANY_SIZE items, MANY_IN_FLIGHT calls at a time."""
    pending = chunks(items)
    pending.reverse()

    async def worker() -> None:
        while pending:
            await call(pending.pop())

    async with anyio.create_task_group() as group:
        for _ in range(MANY_IN_FLIGHT):
            group.start_soon(worker)


async def run_gathers(storage: StorageBackend, items: list[Item]) -> None:
    async def put(key: str, value: dict[str, Any], when: datetime) -> None:
        await storage.put(DB, key, value, now=when)

    async def call(chunk: list[Item]) -> None:
        async with anyio.create_task_group() as group:
            for key, value, when in chunk:
                group.start_soon(put, key, value, when)

    await run_in_calls(items, call)


async def run_put_many(storage: StorageBackend, items: list[Item]) -> None:
    async def call(chunk: list[Item]) -> None:
        outcomes = await storage.put_many(
            [(DB, key, value, "replace", when) for key, value, when in chunk]
        )
        assert not any(outcomes), outcomes

    await run_in_calls(items, call)


VARIANTS: dict[str, Callable[[StorageBackend, list[Item]], Awaitable[None]]] = {
    f"put, {PUT_IN_FLIGHT} in flight": run_puts,
    f"gather of {MANY_SIZE} puts, {MANY_IN_FLIGHT} in flight": run_gathers,
    f"put_many of {MANY_SIZE}, {MANY_IN_FLIGHT} in flight": run_put_many,
}


async def brickrun_rate(url: str, variant: str, count: int) -> float:
    items = make_items(count, variant[:3])
    async with open_storage(url) as storage:
        await storage.put(DB, "warm-up", {})
        start = time.perf_counter()
        await VARIANTS[variant](storage, items)
        elapsed = time.perf_counter() - start
        assert await storage.count(DB) == count + 1
    return count / elapsed


# --- baselines --------------------------------------------------------------------------------


def _rows(items: list[Item]) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for key, value, when in items:
        stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        rows.append((DB, key, data, "replace", stamp, stamp))
    return rows


def sqlite_baseline(path: str, count: int) -> float:
    items = make_items(count, "base")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE records (database_id TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,"
        " merge_strategy TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " PRIMARY KEY (database_id, key))"
    )
    conn.execute("CREATE INDEX records_by_created ON records (database_id, created_at)")
    start = time.perf_counter()
    for first in range(0, count, BASELINE_BATCH):
        rows = _rows(items[first : first + BASELINE_BATCH])
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return count / elapsed


def postgres_baseline(dsn: str, schema: str, count: int) -> float:
    import psycopg
    from psycopg import sql

    items = make_items(count, "base")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(
            'CREATE TABLE records (database_id TEXT COLLATE "C" NOT NULL,'
            ' key TEXT COLLATE "C" NOT NULL, data JSONB NOT NULL, merge_strategy TEXT NOT NULL,'
            " created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL,"
            " PRIMARY KEY (database_id, key))"
        )
        conn.execute("CREATE INDEX records_by_created ON records (database_id, created_at)")
        start = time.perf_counter()
        for first in range(0, count, BASELINE_BATCH):
            rows = _rows(items[first : first + BASELINE_BATCH])
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO records VALUES (%s, %s, %s::jsonb, %s, %s, %s)", rows
                )
        elapsed = time.perf_counter() - start
    return count / elapsed


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# --- report -----------------------------------------------------------------------------------


def report(name: str, baseline: float, rates: dict[str, float]) -> None:
    print(f"\n{name}")
    print(f"  {'hand-written executemany, 1,000 per transaction':<48} {baseline:>9,.0f} records/s")
    for variant, rate in rates.items():
        print(f"  {'brickrun ' + variant:<48} {rate:>9,.0f} records/s  {rate / baseline:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="records per variant")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    count = args.records

    with tempfile.TemporaryDirectory() as directory:
        baseline = sqlite_baseline(os.path.join(directory, "baseline.sqlite"), count)
        rates = {}
        for n, variant in enumerate(VARIANTS):
            url = f"sqlite:///{directory}/brickrun-{n}.sqlite"
            rates[variant] = anyio.run(brickrun_rate, url, variant, count)
    report(f"SQLite {sqlite3.sqlite_version}, {count:,} records per row", baseline, rates)

    if args.no_postgres:
        return
    session = uuid.uuid4().hex[:8]
    schemas = [f"brickrun_bench_{session}_{n}" for n in range(len(VARIANTS) + 1)]
    try:
        baseline = postgres_baseline(PG_DSN, schemas[0], count)
        rates = {}
        for schema, variant in zip(schemas[1:], VARIANTS, strict=True):
            separator = "&" if "?" in PG_DSN else "?"
            url = f"{PG_DSN}{separator}schema={schema}"
            rates[variant] = anyio.run(brickrun_rate, url, variant, count)
    finally:
        for schema in schemas:
            drop_schema(PG_DSN, schema)
    report(f"PostgreSQL, {count:,} records per row", baseline, rates)


if __name__ == "__main__":
    main()
