"""Puts in flight together share transactions: the batcher, not one commit per put.

(How fast that is lives in bench/storage.py; here only the number of transactions is checked,
which does not depend on how loaded the machine is.)
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from brickrun.storage import open_storage

pytestmark = pytest.mark.anyio

IN_FLIGHT = 500


@pytest.mark.parametrize("count", [5_000])
async def test_concurrent_puts_share_few_transactions(storage_url: str, count: int) -> None:
    async with open_storage(storage_url) as storage:
        await storage.put("bench", "warm-up", {})
        batches: list[int] = []
        write_batch = storage._write_batch

        async def counting(ops: list[Any]) -> None:
            batches.append(len(ops))
            await write_batch(ops)

        storage._batcher._write = counting  # the batcher's hook: one call per transaction

        async def worker(first: int) -> None:
            for i in range(first, count, IN_FLIGHT):
                await storage.put("bench", f"k{i}", {"i": i, "event": "click"})

        async with anyio.create_task_group() as group:
            for first in range(IN_FLIGHT):
                group.start_soon(worker, first)
        assert await storage.count("bench") == count + 1
    assert sum(batches) == count
    # With IN_FLIGHT puts waiting, a transaction takes ~IN_FLIGHT of them; one commit per put
    # (a lost batcher) would make `count` transactions.
    assert len(batches) <= count // 50, (len(batches), max(batches))
