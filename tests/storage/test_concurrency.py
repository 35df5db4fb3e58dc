"""No lost updates: 8 writers merging into the same two records at once, on both backends.

SQLite: 8 processes (``spawn``) sharing one file. PostgreSQL: 8 backends (8 write
connections) in one event loop. Each writer applies 500 ``shallow`` merges (a distinct key
each, into one record) and 500 ``deep_append`` merges (one item each, onto one array); in the
end all 4,000 keys and all 4,000 items must be there, each writer's items in its order.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import anyio
import pytest

from brickrun.storage import StorageBackend, open_storage

from ._writers import STREAMS, WRITES, run_writer, write_all
from .conftest import postgres_connect

pytestmark = pytest.mark.anyio

WRITERS = 8


async def check_nothing_lost(storage: StorageBackend) -> None:
    shallow = await storage.get("shared", "shallow")
    append = await storage.get("shared", "append")
    assert shallow is not None and append is not None
    expected = {f"w{w}-{i}": i for w in range(WRITERS) for i in range(WRITES)}
    assert len(shallow["data"]) == WRITERS * WRITES
    assert shallow["data"] == expected
    items = append["data"]["items"]
    assert len(items) == WRITERS * WRITES
    assert sorted(items) == sorted(expected)
    # Within a stream puts are sequential, so its items must appear in its order.
    for w in range(WRITERS):
        for s in range(STREAMS):
            mine = [
                x
                for x in items
                if x.startswith(f"w{w}-") and int(x[len(f"w{w}-") :]) % STREAMS == s
            ]
            assert mine == [f"w{w}-{i}" for i in range(s, WRITES, STREAMS)]


async def test_sqlite_processes_lose_no_update(tmp_path: os.PathLike[str]) -> None:
    url = f"sqlite:///{os.fspath(tmp_path)}/shared.sqlite"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    processes = [context.Process(target=run_writer, args=(url, w, barrier)) for w in range(WRITERS)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            await anyio.to_thread.run_sync(process.join, 60)
        assert [p.exitcode for p in processes] == [0] * WRITERS
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
            process.close()
    async with open_storage(url) as storage:
        await check_nothing_lost(storage)


@pytest.mark.postgres
async def test_postgres_connections_lose_no_update(postgres_url: str) -> None:
    backends: list[Any] = [open_storage(postgres_url) for _ in range(WRITERS)]
    try:
        for storage in backends:
            await storage.open()
        async with anyio.create_task_group() as group:
            for w, storage in enumerate(backends):
                group.start_soon(write_all, storage, w)
    finally:
        for storage in backends:
            await storage.close()
    async with open_storage(postgres_url) as storage:
        await check_nothing_lost(storage)


@pytest.mark.postgres
async def test_postgres_key_created_by_another_writer_meanwhile(postgres_url: str) -> None:
    async with open_storage(postgres_url) as storage:
        await storage.put("db", "other", {})  # the tables exist
        raw = postgres_connect(postgres_url, autocommit=False)
        try:
            # Another writer has inserted "k" but not committed: the batch sees no record,
            # so it plans an insert, which waits for that writer.
            raw.execute(
                "INSERT INTO records VALUES ('db', 'k', '{\"a\": 1}', 'replace', now(), now())"
            )
            async with anyio.create_task_group() as group:
                results: list[Any] = []

                async def put() -> None:
                    results.append(await storage.put("db", "k", {"b": 2}, "shallow"))

                group.start_soon(put)
                await anyio.sleep(0.3)
                assert results == []  # still waiting on the other writer's insert
                await anyio.to_thread.run_sync(raw.commit)
        finally:
            raw.close()
        # The batch ran again and merged into the record the other writer created.
        assert results[0]["data"] == {"a": 1, "b": 2}
        stored = await storage.get("db", "k")
        assert stored is not None and stored["data"] == {"a": 1, "b": 2}
