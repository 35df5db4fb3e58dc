"""The writer run by each process of the concurrency test (importable under ``spawn``)."""

from __future__ import annotations

from typing import Any

import anyio

from brickrun.storage import StorageBackend, open_storage

WRITES = 500  # per writer and per strategy
STREAMS = 25  # puts a writer keeps in flight: each stream awaits its puts in order


async def write_all(storage: StorageBackend, writer: int) -> None:
    """Apply writer ``writer``'s 500 shallow and 500 deep_append merges, 25 streams at once.

    Shallow: key ``w<writer>-<i>`` into record ``shallow``. Deep-append: one item
    ``w<writer>-<i>`` to the array ``items`` of record ``append``. Stream ``s`` handles the
    ``i`` with ``i % STREAMS == s`` in increasing order, alternating the two records.
    """

    async def stream(s: int) -> None:
        for i in range(s, WRITES, STREAMS):
            name = f"w{writer}-{i}"
            await storage.put("shared", "shallow", {name: i}, "shallow")
            await storage.put("shared", "append", {"items": [name]}, "deep_append")

    async with anyio.create_task_group() as group:
        for s in range(STREAMS):
            group.start_soon(stream, s)


def run_writer(url: str, writer: int, barrier: Any) -> None:
    """Process entry point: wait for every writer, open the new store at once, write, close."""

    async def main() -> None:
        barrier.wait(timeout=60)  # all processes create and migrate the file together
        async with open_storage(url) as storage:
            await write_all(storage, writer)

    anyio.run(main)


def write_until_killed(url: str, pipe: Any) -> None:
    """Process entry point: put records from 20 streams forever, sending each acknowledged key.

    A key is sent only after its ``put`` returned, so every key the parent receives must be
    in the store however the process dies.
    """

    async def main() -> None:
        async with open_storage(url) as storage:
            pipe.send("ready")

            async def stream(s: int) -> None:
                i = 0
                while True:
                    key = f"s{s}-{i}"
                    await storage.put("db", key, {"s": s, "i": i})
                    pipe.send(key)
                    i += 1

            async with anyio.create_task_group() as group:
                for s in range(20):
                    group.start_soon(stream, s)

    anyio.run(main)
