"""Put throughput with many puts in flight: batching must keep it far above one commit per put.

The floors are a third or less of what this 2-core machine measures (SQLite ~25,000-33,000/s,
PostgreSQL ~20,000-24,000/s), so the tests catch a lost batcher, not a noisy neighbour. Run with
``-s`` to see the rates.
"""

from __future__ import annotations

import time

import anyio
import pytest

from brickrun.storage import StorageBackend, open_storage

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

IN_FLIGHT = 1000


async def puts_per_second(storage: StorageBackend, count: int) -> float:
    """Put ``count`` small records from IN_FLIGHT tasks, each awaiting its puts in turn."""
    await storage.put("bench", "warm-up", {})

    async def worker(first: int) -> None:
        for i in range(first, count, IN_FLIGHT):
            await storage.put("bench", f"k{i}", {"i": i, "event": "click", "data": {"x": i}})

    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for first in range(IN_FLIGHT):
            group.start_soon(worker, first)
    elapsed = time.perf_counter() - start
    assert await storage.count("bench") == count + 1
    return count / elapsed


@pytest.mark.parametrize(
    ("backend_name", "count", "floor"),
    [
        ("sqlite", 20_000, 8_000),
        pytest.param("postgres", 10_000, 3_000, marks=pytest.mark.postgres),
    ],
)
async def test_throughput(
    request: pytest.FixtureRequest,
    tmp_path: object,
    backend_name: str,
    count: int,
    floor: int,
    record_property: object,
) -> None:
    if backend_name == "sqlite":
        url = f"sqlite:///{tmp_path}/bench.sqlite"
    else:
        url = request.getfixturevalue("postgres_url")
    async with open_storage(url) as storage:
        rate = await puts_per_second(storage, count)
    print(f"\n{backend_name}: {rate:,.0f} puts/s ({count} puts, {IN_FLIGHT} in flight)")
    request.node.user_properties.append(("puts_per_second", round(rate)))
    assert rate >= floor
