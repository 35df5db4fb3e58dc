"""``@pixies/telemetry/record`` cost: caller blocking time and end-to-end records per second.

Run: ``.venv/bin/python bench/record.py [--calls N] [--no-postgres]``. Prints, in one run:

(a) how long the calling coroutine is blocked by one record call through the runtime (median
    and p99 over N calls; the body runs in the background): a mod pipeline's record step, and
    for comparison a host's whole ``run_brick`` call (a new run each time);
(b) sustained records per second persisted end to end, on SQLite and on PostgreSQL
    (``BRICKRUN_TEST_POSTGRES_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``);
(c) the same workload hand-written — dicts into a queue, batched ``executemany`` into one
    table — as the baseline, and the ratios. No thresholds are asserted here.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio

from brickrun import Runtime

PG_DSN = os.environ.get("BRICKRUN_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
INPUT = {"databaseId": "bench-telemetry", "eventName": "translate", "data": {"words": 120}}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


CALLER = """
apiVersion: v3
kind: component
metadata: {id: "@bench/caller", name: Caller}
inputSchema: {}
pipeline:
  - id: "@pixies/telemetry/record"
    config: {databaseId: bench-telemetry, eventName: translate, data: {words: 120}}
"""


async def blocking_and_throughput(
    database_url: str, calls: int
) -> tuple[list[float], list[float], float]:
    """Per call: the time a pipeline's record step blocks its caller, and a host's run_brick;
    plus records/s from the first call to the last commit."""
    from brickrun._definitions import compile_text
    from brickrun._pipeline import run_pipeline

    [caller] = compile_text(CALLER, "caller.yaml").definitions
    async with Runtime(database_url=database_url, entry_points=False) as runtime:
        runtime.host.visit("https://example.com/docs", "Docs")  # type: ignore[attr-defined]
        runtime.host.sign_in("ada@example.com")  # type: ignore[attr-defined]
        storage = await runtime.storage()
        await runtime.run_brick("@pixies/telemetry/record", INPUT)  # warm up
        await runtime.drain()
        before = await storage.count("bench-telemetry")
        step, whole = [], []
        run = runtime.new_run()
        start = time.perf_counter()
        for i in range(calls):
            t0 = time.perf_counter()
            await run_pipeline(caller.pipeline, {"@input": {}, "@options": {}}, run)  # type: ignore[attr-defined]
            step.append(time.perf_counter() - t0)
            if i % 1000 == 0:
                await anyio.sleep(0)  # let the background bodies and the writer make progress
        await runtime.drain()
        elapsed = time.perf_counter() - start
        stored = await storage.count("bench-telemetry") - before
        assert stored == calls, f"expected {calls} records, found {stored}"
        for _ in range(min(calls, 5000)):
            t0 = time.perf_counter()
            await runtime.run_brick("@pixies/telemetry/record", INPUT)
            whole.append(time.perf_counter() - t0)
        await runtime.drain()
    return step, whole, calls / elapsed


def baseline_sqlite(calls: int) -> float:
    """Hand-written: build the same record dicts, queue them, executemany in batches of 1000."""
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(os.path.join(folder, "baseline.sqlite"))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE records (db TEXT, key TEXT, data TEXT, PRIMARY KEY (db, key))")
        start = time.perf_counter()
        queue: list[tuple[str, str, str]] = []
        for _ in range(calls):
            now = datetime.now(UTC)
            stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
            value = {
                "url": "https://example.com/docs",
                "email": "ada@example.com",
                "timestamp": stamp,
                "event": "translate",
                "data": {"words": 120},
            }
            key = f"ada@example.com-{stamp}-{uuid.uuid4()}"
            queue.append(("bench", key, json.dumps(value)))
            if len(queue) == 1000:
                with db:
                    db.executemany("INSERT INTO records VALUES (?, ?, ?)", queue)
                queue.clear()
        with db:
            db.executemany("INSERT INTO records VALUES (?, ?, ?)", queue)
        elapsed = time.perf_counter() - start
        db.close()
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{os.path.join(folder, 'bench.sqlite')}"
        step, whole, sqlite_rate = anyio.run(blocking_and_throughput, url, args.calls)
    results["sqlite"] = sqlite_rate
    print(f"(a) caller blocked per record call, {args.calls} calls (SQLite runtime)")
    print(
        f"    pipeline step: median {statistics.median(step) * 1e6:8.1f} µs, "
        f"p99 {percentile(step, 0.99) * 1e6:8.1f} µs"
    )
    print(
        f"    host run_brick: median {statistics.median(whole) * 1e6:8.1f} µs, "
        f"p99 {percentile(whole, 0.99) * 1e6:8.1f} µs (a new run per call)"
    )
    base = baseline_sqlite(args.calls)
    print("(b) records/s persisted end to end")
    print(f"    SQLite via brickrun       {sqlite_rate:10,.0f} /s")
    if not args.no_postgres:
        schema = f"brickrun_bench_{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in PG_DSN else "?"
        try:
            _, _, pg_rate = anyio.run(
                blocking_and_throughput, f"{PG_DSN}{sep}schema={schema}", min(args.calls, 50_000)
            )
            print(f"    PostgreSQL via brickrun   {pg_rate:10,.0f} /s")
        finally:
            _drop_schema(schema)
    print("(c) hand-written baseline (dicts, queue, executemany batches of 1000, SQLite)")
    print(f"    baseline                  {base:10,.0f} /s")
    print(f"    ratio brickrun / baseline {sqlite_rate / base:10.2f}x")


def _drop_schema(schema: str) -> None:
    try:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except Exception as exc:  # the bench must not hide its results behind cleanup
        print(f"    (could not drop schema {schema}: {exc})")


if __name__ == "__main__":
    main()
