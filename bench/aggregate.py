"""Daily aggregation of 1,000,000 events: brickrun's aggregator vs a hand-written baseline.

Run: ``.venv/bin/python bench/aggregate.py [--events N] [--stored M]``. Prints the time to
aggregate N in-memory event records (the computation ``brickrun aggregate`` runs), a
hand-written group-and-sort baseline over the same records, their ratio, and the end-to-end time
of ``aggregate_database`` over M events stored in SQLite (reading them back dominates). The
target is 1,000,000 events aggregated in under 5 s. No thresholds are asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from brickrun.storage import open_storage
from brickrun.telemetry._aggregates import aggregate_database, compute_aggregates


def make_records(n: int) -> list[dict[str, Any]]:
    rng = random.Random(1)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    names = ["page_view", "action", "api_call", "error"]
    contexts = [f"/page/{i}" for i in range(40)]
    records = []
    for i in range(n):
        stamp = start + timedelta(seconds=rng.randrange(35 * 86400))
        data = {
            "id": str(i),
            "name": rng.choice(names),
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "context": rng.choice(contexts),
            "duration_ms": rng.choice([0, None, rng.randrange(1, 3000)]),
            "error": None if rng.random() > 0.02 else {"name": "E", "message": "m"},
        }
        records.append({"id": str(i), "data": data})
    return records


def baseline(records: list[dict[str, Any]]) -> int:
    groups: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for r in records:
        d = r["data"]
        groups[(d["timestamp"][:10], d["name"], d["context"])].append(d)
    for items in groups.values():
        durations = sorted(d["duration_ms"] for d in items if d["duration_ms"] is not None)
        for p in (50, 95, 99):
            if durations:
                durations[max(1, math.ceil(p / 100 * len(durations))) - 1]
    return len(groups)


async def stored(m: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        async with open_storage(f"sqlite:///{os.path.join(folder, 'agg.sqlite')}") as storage:
            async with anyio.create_task_group() as tg:
                for record in make_records(m):
                    tg.start_soon(storage.put, "bench-agg", record["id"], record["data"])
            start = time.perf_counter()
            await aggregate_database(storage, "bench-agg")
            return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--stored", type=int, default=50_000)
    args = parser.parse_args()
    records = make_records(args.events)
    t0 = time.perf_counter()
    aggregates = compute_aggregates(records)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    groups = baseline(records)
    base = time.perf_counter() - t0
    assert len(aggregates) == groups
    print(f"aggregate {args.events:,} events into {groups:,} daily aggregates")
    print(f"  brickrun compute_aggregates   {ours:8.2f} s   (target < 5 s)")
    print(f"  hand-written baseline         {base:8.2f} s")
    print(f"  ratio                         {ours / base:8.2f}x")
    seconds = anyio.run(stored, args.stored)
    print(f"  aggregate_database over {args.stored:,} stored SQLite events: {seconds:.2f} s")


if __name__ == "__main__":
    main()
