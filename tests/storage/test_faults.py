"""Faults: unwritable files, a full disk, an unreachable or restarted PostgreSQL, a killed
writer. Each gives a clear :class:`StorageError` naming the store (password redacted), and no
acknowledged record is ever lost.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import psycopg
import pytest

from brickrun.errors import StorageError
from brickrun.storage import StorageBackend, open_storage

from ..conftest import gather
from ._writers import write_until_killed
from .conftest import with_query

pytestmark = pytest.mark.anyio

SECRET = "hunter2-secret"


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    user = user.split(":", 1)[0] or "postgres"
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


# --- SQLite --------------------------------------------------------------------------------------


async def test_database_in_a_path_that_is_not_a_directory(tmp_path: Any) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    url = f"sqlite:///{tmp_path}/a-file/brickrun.sqlite"
    with pytest.raises(StorageError) as caught:
        async with open_storage(url):
            pass
    assert str(caught.value) == (
        f"SQLite database {url}: opening it failed: unable to open database file "
        f"(directory {tmp_path}/a-file does not exist or is not a directory)"
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
async def test_database_in_a_directory_nobody_can_write() -> None:
    # /proc refuses new files even to root, unlike a chmod-ed directory.
    url = f"sqlite:////proc/brickrun-{uuid.uuid4().hex}.sqlite"
    with pytest.raises(StorageError, match="unable to open database file") as caught:
        async with open_storage(url):
            pass
    assert str(caught.value).startswith(f"SQLite database {url}: opening it failed")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
async def test_database_in_a_read_only_directory(tmp_path: Any) -> None:
    directory = tmp_path / "locked"
    directory.mkdir()
    directory.chmod(stat.S_IRUSR | stat.S_IXUSR)
    url = f"sqlite:///{directory}/brickrun.sqlite"
    try:
        with pytest.raises(StorageError, match=f"directory {directory} is not writable"):
            async with open_storage(url):
                pass
    finally:
        directory.chmod(stat.S_IRWXU)


def _cap_file_size(storage: StorageBackend) -> None:
    """Simulate a full disk: let the file grow no further (SQLite's max_page_count).

    The pragma holds per connection, so it must go on the backend's own write connection.
    """
    conn: sqlite3.Connection = storage._write_conn  # type: ignore[attr-defined]
    with storage._write_lock:  # type: ignore[attr-defined]
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")


def _uncap_file_size(storage: StorageBackend) -> None:
    conn: sqlite3.Connection = storage._write_conn  # type: ignore[attr-defined]
    with storage._write_lock:  # type: ignore[attr-defined]
        conn.execute("PRAGMA max_page_count = 1073741823")


async def test_a_full_disk_fails_the_batch_and_keeps_what_was_acknowledged(
    tmp_path: Any,
) -> None:
    url = f"sqlite:///{tmp_path}/full.sqlite"
    async with open_storage(url) as storage:
        acknowledged = [await storage.put("db", f"k{i}", {"i": i}) for i in range(20)]
        await anyio.to_thread.run_sync(_cap_file_size, storage)
        results = await gather(
            *(storage.put("db", f"big{i}", {"blob": f"{i}" * 4000}) for i in range(30))
        )
        assert all(isinstance(r, StorageError) for r in results), results
        message = str(results[0])
        assert message.startswith(f"SQLite database {url}: writing a batch of ")
        assert "database or disk is full" in message
        assert "(the disk is full, or the database reached its maximum size)" in message
        # Nothing of a failed batch was written; reads still work.
        assert await storage.count("db") == 20
        # Space comes back: the same backend writes again.
        await anyio.to_thread.run_sync(_uncap_file_size, storage)
        await storage.put("db", "after", {"ok": True})
    async with open_storage(url) as fresh:
        for record in acknowledged:
            assert await fresh.get("db", record["id"]) == record
        assert await fresh.count("db") == 21


async def test_a_full_disk_fails_a_put_many_as_a_whole(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/full.sqlite"
    async with open_storage(url) as storage:
        await storage.put_many([("db", f"k{i}", {"i": i}) for i in range(20)])
        await anyio.to_thread.run_sync(_cap_file_size, storage)
        with pytest.raises(StorageError) as caught:
            await storage.put_many([("db", f"big{i}", {"blob": f"{i}" * 4000}) for i in range(30)])
        message = str(caught.value)
        assert message.startswith(f"SQLite database {url}: writing a batch of 30 puts failed")
        assert "(the disk is full, or the database reached its maximum size)" in message
        assert await storage.count("db") == 20
        await anyio.to_thread.run_sync(_uncap_file_size, storage)
        assert await storage.put_many([("db", "after", {})]) == [None]


async def test_acknowledged_writes_survive_a_killed_process(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/killed.sqlite"
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=write_until_killed, args=(url, sender))
    process.start()
    sender.close()
    acknowledged: list[str] = []

    def collect() -> None:
        assert receiver.poll(30), "the writer did not start"
        assert receiver.recv() == "ready"
        deadline = time.monotonic() + 0.7
        while time.monotonic() < deadline:
            if receiver.poll(0.05):
                acknowledged.append(receiver.recv())
        process.kill()  # SIGKILL: no cleanup, no flush, mid-batch
        process.join(10)
        while receiver.poll(0):
            try:
                acknowledged.append(receiver.recv())
            except EOFError:
                break

    try:
        await anyio.to_thread.run_sync(collect)
    finally:
        if process.is_alive():
            process.kill()
            process.join()
        process.close()
        receiver.close()
    assert len(acknowledged) > 100, "the writer wrote too little to prove anything"
    async with open_storage(url) as fresh:
        stored = {r["id"]: r["data"] for r in await fresh.list_records("db")}
    missing = [key for key in acknowledged if key not in stored]
    assert missing == []
    for key in acknowledged:
        s, i = key[1:].split("-")
        assert stored[key] == {"s": int(s), "i": int(i)}


# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{SECRET}@127.0.0.1:1/test",
        f"postgres://postgres@127.0.0.1:1/test?password={SECRET}&connect_timeout=5",
    ],
)
async def test_unreachable_postgres(url: str) -> None:
    storage = open_storage(url)
    assert SECRET not in storage.url and "***" in storage.url
    assert SECRET not in repr(storage)
    with pytest.raises(StorageError) as caught:
        await storage.open()
    message = str(caught.value)
    assert message.startswith(f"cannot connect to PostgreSQL database {storage.url}: ")
    assert "127.0.0.1" in message and "port 1" in message
    assert "***" in message
    assert SECRET not in message
    assert SECRET not in repr(caught.value.__reduce__())
    await storage.close()


def _terminate(dsn: str, application_name: str) -> int:
    """Kill the server processes serving ``application_name``; wait until they are gone."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            ).fetchall()
        ]
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
            ).fetchone()
            if not row or not row[0]:
                break
            time.sleep(0.01)
    return len(pids)


@pytest.mark.postgres
async def test_postgres_connection_killed_mid_run(postgres_dsn: str, postgres_url: str) -> None:
    app = f"brickrun_test_{uuid.uuid4().hex[:8]}"
    url = with_password(with_query(postgres_url, application_name=app), SECRET)
    async with open_storage(url) as storage:
        acknowledged = [await storage.put("db", f"k{i}", {"i": i}) for i in range(30)]
        assert await anyio.to_thread.run_sync(_terminate, postgres_dsn, app) == 2

        # A write on the dead connection fails as a whole, naming the store, not the password.
        results = await gather(*(storage.put("db", f"lost{i}", {"i": i}) for i in range(10)))
        assert all(isinstance(r, StorageError) for r in results), results
        message = str(results[0])
        assert message.startswith(f"PostgreSQL database {storage.url}: writing a batch of 10 puts")
        assert "the connection failed or was lost" in message
        assert "***" in message and SECRET not in message

        # A read on a dead connection is retried once, on a new connection.
        record = await storage.get("db", "k3")
        assert record == acknowledged[3]
        # The next write reconnects.
        acknowledged.append(await storage.put("db", "after", {"ok": True}))
        assert await storage.count("db") == 31  # nothing of the failed batch

        # Killed again between calls: both kinds of call recover.
        assert await anyio.to_thread.run_sync(_terminate, postgres_dsn, app) == 2
        assert len(await storage.list_records("db")) == 31
        with pytest.raises(StorageError):
            await storage.put("db", "lost-again", {})
        acknowledged.append(await storage.put("db", "after-again", {"ok": True}))

        # A put_many on a dead connection fails as a whole: raised, not reported per item.
        assert await storage.count("db") == 32  # the read connection is alive again
        assert await anyio.to_thread.run_sync(_terminate, postgres_dsn, app) == 2
        with pytest.raises(StorageError) as caught:
            await storage.put_many([("db", f"lost-many{i}", {}) for i in range(5)])
        assert str(caught.value).startswith(
            f"PostgreSQL database {storage.url}: writing a batch of 5 puts failed: "
            "the connection failed or was lost"
        )
        assert await storage.put_many([("db", "after-many", {})], records=True) == [
            await storage.get("db", "after-many")
        ]

    async with open_storage(postgres_url) as fresh:
        for record in acknowledged:
            assert await fresh.get("db", record["id"]) == record
        assert await fresh.count("db") == 33


@pytest.mark.postgres
async def test_no_acknowledged_write_is_lost_while_connections_die(
    postgres_dsn: str, postgres_url: str
) -> None:
    app = f"brickrun_test_{uuid.uuid4().hex[:8]}"
    url = with_query(postgres_url, application_name=app)
    acknowledged: dict[str, Any] = {}
    failures: list[StorageError] = []

    async with open_storage(url) as storage:

        async def stream(s: int) -> None:
            for i in range(60):
                key = f"s{s}-{i}"
                try:
                    acknowledged[key] = (await storage.put("db", key, {"i": i}, "shallow"))["data"]
                    await storage.put("db", "shared", {key: i}, "shallow")
                    acknowledged.setdefault("shared", {})[key] = i
                except StorageError as error:
                    failures.append(error)

        async def killer() -> None:
            for _ in range(4):
                await anyio.sleep(0.1)
                await anyio.to_thread.run_sync(_terminate, postgres_dsn, app)

        async with anyio.create_task_group() as group:
            for s in range(20):
                group.start_soon(stream, s)
            group.start_soon(killer)

    assert failures, "no connection died during the run; the test proved nothing"
    assert all("the connection failed or was lost" in str(f) for f in failures)
    async with open_storage(postgres_url) as fresh:
        stored = {r["id"]: r["data"] for r in await fresh.list_records("db")}
    shared = acknowledged.pop("shared")
    for key, data in acknowledged.items():
        assert stored.get(key) == data, key
    # Every acknowledged shallow merge into the shared record is in it.
    assert shared.items() <= stored["shared"].items()
