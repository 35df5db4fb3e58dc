"""The storage outbox (``put(..., outbox=True)`` and ``outbox_*``) on SQLite and PostgreSQL.

Every test runs once per backend (``storage_url``). Times: rows are queued at wall-clock time,
so tests that need a lease to end or a retry to come due pass a ``now`` in the future.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from brickrun.errors import RecordTooLargeError, StorageError
from brickrun.storage import DatabaseLimits, OutboxItem, StorageBackend, open_storage

from ..conftest import gather
from ..storage.conftest import run_sql

pytestmark = pytest.mark.anyio

DB = "telemetry-test"


def later(seconds: float) -> datetime:
    """Wall-clock time ``seconds`` from now (rows are queued in wall-clock time)."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.fixture
async def store(storage_url: str) -> AsyncIterator[StorageBackend]:
    async with open_storage(storage_url) as storage:
        yield storage


async def queue(storage: StorageBackend, count: int, *, prefix: str = "e") -> list[str]:
    keys = [f"{prefix}{i:05d}" for i in range(count)]
    async with anyio.create_task_group() as group:
        for key in keys:
            group.start_soon(lambda k: storage.put(DB, k, {"n": k}, outbox=True), key)
    return keys


async def test_put_with_outbox_queues_the_record(store: StorageBackend) -> None:
    await store.put(DB, "plain", {"n": 0})
    await store.put(DB, "queued", {"n": 1}, outbox=True)
    status = await store.outbox_status(DB)
    assert status.counts == {"pending": 1, "leased": 0, "dead": 0}
    assert status.unexported == 1 and status.exported == 0 and status.last_export is None
    assert status.oldest_pending is not None and status.oldest_pending_age is not None
    assert 0 <= status.oldest_pending_age < 60

    items = await store.outbox_claim(10)
    assert [(i.database, i.key, i.attempts) for i in items] == [(DB, "queued", 1)]
    record = items[0].record
    assert record is not None and record["data"] == {"n": 1} and record["id"] == "queued"


async def test_many_concurrent_puts_queue_every_record_once(store: StorageBackend) -> None:
    keys = await queue(store, 1500)
    # Putting some again while they wait queues nothing more.
    await queue(store, 100)
    assert (await store.outbox_status()).counts["pending"] == 1500
    claimed = await store.outbox_claim(5000)
    assert sorted(i.key for i in claimed) == keys
    assert [i.id for i in claimed] == sorted(i.id for i in claimed)  # the order queued


async def test_a_refused_put_queues_nothing(store: StorageBackend) -> None:
    await store.set_limits(DB, DatabaseLimits(max_record_bytes=50))
    results = await gather(
        store.put(DB, "small", {"n": 1}, outbox=True),
        store.put(DB, "big", {"text": "x" * 100}, outbox=True),
    )
    assert isinstance(results[1], RecordTooLargeError)
    assert [i.key for i in await store.outbox_claim(10)] == ["small"]


async def test_record_and_outbox_row_commit_together_or_not_at_all(
    store: StorageBackend, storage_url: str
) -> None:
    await anyio.to_thread.run_sync(run_sql, storage_url, "ALTER TABLE outbox RENAME TO gone")
    with pytest.raises(StorageError, match="writing a batch of 1 put failed"):
        await store.put(DB, "k", {"n": 1}, outbox=True)
    assert await store.get(DB, "k") is None  # the record rolled back with its outbox row
    await anyio.to_thread.run_sync(run_sql, storage_url, "ALTER TABLE gone RENAME TO outbox")
    await store.put(DB, "k", {"n": 2}, outbox=True)
    assert [i.key for i in await store.outbox_claim(10)] == ["k"]


async def test_a_claim_leases_its_rows_until_the_lease_ends(store: StorageBackend) -> None:
    await queue(store, 5)
    first = await store.outbox_claim(3, lease_seconds=30)
    second = await store.outbox_claim(10, lease_seconds=30)
    assert [i.key for i in first] == ["e00000", "e00001", "e00002"]
    assert [i.key for i in second] == ["e00003", "e00004"]
    assert await store.outbox_claim(10) == []
    status = await store.outbox_status()
    assert status.counts == {"pending": 0, "leased": 5, "dead": 0}
    # The claimer died: when the lease ends the rows are due again, one attempt counted.
    again = await store.outbox_claim(10, now=later(31))
    assert [(i.key, i.attempts) for i in again] == [(f"e0000{n}", 2) for n in range(5)]


async def test_ack_deletes_rows_and_records_the_export(store: StorageBackend) -> None:
    await queue(store, 4)
    items = await store.outbox_claim(10)
    moment = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert await store.outbox_ack(items[:3], now=moment) == 3
    status = await store.outbox_status(DB)
    assert status.exported == 3 and status.last_export == moment
    assert status.counts == {"pending": 0, "leased": 1, "dead": 0}
    assert await store.outbox_ack(items[:3]) == 0  # already gone: a no-op
    assert await store.outbox_ack([]) == 0
    assert await store.count(DB) == 4  # exporting deletes no record


async def test_a_lost_lease_cannot_mark_rows(store: StorageBackend) -> None:
    await queue(store, 2)
    stale = await store.outbox_claim(10, lease_seconds=1)
    fresh = await store.outbox_claim(10, now=later(2))
    assert [i.key for i in fresh] == ["e00000", "e00001"]
    assert await store.outbox_ack(stale) == 0
    assert await store.outbox_dead(stale, "too late") == 0
    assert await store.outbox_retry(stale, next_attempt_at=later(0), error="x") == 0
    assert (await store.outbox_status(now=later(2))).counts["leased"] == 2
    assert await store.outbox_ack(fresh) == 2


async def test_retry_reschedules_and_can_give_the_attempt_back(store: StorageBackend) -> None:
    await queue(store, 2)
    first, second = await store.outbox_claim(10)
    assert await store.outbox_retry([first], next_attempt_at=later(60), error="503 busy") == 1
    assert (
        await store.outbox_retry(
            [second], next_attempt_at=later(60), error="connection refused", count_attempt=False
        )
        == 1
    )
    assert await store.outbox_claim(10) == []  # not due yet
    status = await store.outbox_status()
    assert status.counts == {"pending": 2, "leased": 0, "dead": 0}
    due = await store.outbox_claim(10, now=later(61))
    assert [(i.key, i.attempts) for i in due] == [("e00000", 2), ("e00001", 1)]


async def test_dead_letters_keep_their_reason_until_requeued(store: StorageBackend) -> None:
    await queue(store, 3)
    items = await store.outbox_claim(10)
    reason = "HTTP 400 Bad Request: " + "x" * 1000 + "\nsecond line"
    assert await store.outbox_dead(items[:2], reason) == 2
    assert await store.outbox_ack(items[2:]) == 1
    assert await store.outbox_claim(10, now=later(3600)) == []  # dead rows are never claimed
    status = await store.outbox_status(DB)
    assert status.counts == {"pending": 0, "leased": 0, "dead": 2}
    assert status.oldest_pending is None and status.oldest_pending_age is None
    assert [(d.key, d.attempts) for d in status.dead_letters] == [("e00000", 1), ("e00001", 1)]
    stored = status.dead_letters[0].reason
    assert stored.startswith("HTTP 400 Bad Request: xxx") and len(stored) == 500
    assert "\n" not in stored
    assert len((await store.outbox_status(dead_letter_limit=1)).dead_letters) == 1
    assert (await store.outbox_status("other-db")).unexported == 0

    assert await store.outbox_requeue(DB) == 2
    again = await store.outbox_claim(10)
    assert [(i.key, i.attempts) for i in again] == [("e00000", 1), ("e00001", 1)]


async def test_a_record_put_again_after_its_claim_is_sent_again(store: StorageBackend) -> None:
    await store.put(DB, "k", {"v": 1}, outbox=True)
    (old,) = await store.outbox_claim(10)
    await store.put(DB, "k", {"v": 2}, outbox=True)
    assert await store.outbox_ack([old]) == 0  # the row stays for the new version, due now
    (new,) = await store.outbox_claim(10)
    assert new.record is not None and new.record["data"] == {"v": 2}
    assert await store.outbox_ack([new]) == 1
    assert (await store.outbox_status()).unexported == 0


async def test_a_dead_row_starts_over_when_its_record_is_put_again(store: StorageBackend) -> None:
    await store.put(DB, "k", {"v": 1}, outbox=True)
    (item,) = await store.outbox_claim(10)
    await store.outbox_dead([item], "400")
    await store.put(DB, "k", {"v": 2}, outbox=True)
    (again,) = await store.outbox_claim(10)
    assert again.attempts == 1 and again.record is not None and again.record["data"] == {"v": 2}


async def test_deleting_a_record_drops_its_outbox_row(store: StorageBackend) -> None:
    await queue(store, 2)
    assert await store.delete(DB, "e00000")
    assert [i.key for i in await store.outbox_claim(10)] == ["e00001"]


async def test_a_claimed_row_whose_record_vanished_has_no_record(
    store: StorageBackend, storage_url: str
) -> None:
    await queue(store, 1)
    await anyio.to_thread.run_sync(run_sql, storage_url, "DELETE FROM records")
    (item,) = await store.outbox_claim(10)
    assert item.record is None


async def test_cleanup_never_deletes_unexported_records(store: StorageBackend) -> None:
    await store.set_limits(DB, DatabaseLimits(retention_days=1))
    old = datetime(2020, 1, 1, tzinfo=UTC)
    for key in ("exported", "pending", "dead", "leased"):
        await store.put(DB, key, {"k": key}, now=old, outbox=True)
    await store.put(DB, "never-queued", {}, now=old)
    items = {i.key: i for i in await store.outbox_claim(10)}
    await store.outbox_ack([items["exported"]])
    await store.outbox_dead([items["dead"]], "500")
    await store.outbox_retry([items["pending"]], next_attempt_at=later(0), error="503")
    assert await store.cleanup(DB, now=datetime(2021, 1, 1, tzinfo=UTC)) == 2
    remaining = sorted(r["id"] for r in await store.list_records(DB))
    assert remaining == ["dead", "leased", "pending"]


async def test_claims_filter_by_database(store: StorageBackend) -> None:
    await store.put("one", "a", {}, outbox=True)
    await store.put("two", "b", {}, outbox=True)
    assert [i.key for i in await store.outbox_claim(10, database="two")] == ["b"]
    assert [i.key for i in await store.outbox_claim(10)] == ["a"]
    assert (await store.outbox_status("two")).counts["leased"] == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.outbox_claim(0), "limit must be a positive integer, got 0"),
        (lambda s: s.outbox_claim(1, lease_seconds=0), "lease_seconds must be a positive"),
        (lambda s: s.outbox_claim(1, database=""), "database id must be a non-empty string"),
        (lambda s: s.outbox_ack([object()]), "outbox_ack takes the OutboxItem objects"),
        (lambda s: s.outbox_status(dead_letter_limit=-1), "dead_letter_limit must be"),
    ],
)
async def test_outbox_arguments_are_checked(
    store: StorageBackend, call: object, message: str
) -> None:
    with pytest.raises(StorageError, match=message):
        await call(store)  # type: ignore[operator]


async def test_concurrent_claimers_never_share_a_row(storage_url: str) -> None:
    async with open_storage(storage_url) as writer:
        await queue(writer, 600)
    claimed: list[OutboxItem] = []

    async def claimer() -> None:
        async with open_storage(storage_url) as storage:
            while items := await storage.outbox_claim(25):
                claimed.extend(items)
                await storage.outbox_ack(items)

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(claimer)
    keys = [i.key for i in claimed]
    assert len(keys) == 600 and len(set(keys)) == 600


# A claimer killed between claim and ack (SIGKILL: no cleanup runs) leaves its rows leased;
# they are due again when the lease ends, nothing lost and nothing half-marked.
_CLAIM_AND_DIE = textwrap.dedent(
    """
    import os, signal, sys, anyio
    from brickrun.storage import open_storage

    async def main():
        async with open_storage(sys.argv[1]) as storage:
            items = await storage.outbox_claim(40, lease_seconds=5)
            print(len(items), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    anyio.run(main)
    """
)


async def test_a_claimer_killed_before_its_ack_loses_nothing(
    store: StorageBackend, storage_url: str, tmp_path: Path
) -> None:
    await queue(store, 100)
    script = tmp_path / "claim_and_die.py"
    script.write_text(_CLAIM_AND_DIE)
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, str(script), storage_url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ},
        )
    )
    assert done.returncode == -9, done.stderr
    assert done.stdout.strip() == "40"
    status = await store.outbox_status()
    assert status.counts == {"pending": 60, "leased": 40, "dead": 0}
    rest = await store.outbox_claim(1000)
    assert len(rest) == 60 and all(i.attempts == 1 for i in rest)
    await store.outbox_ack(rest)
    revived = await store.outbox_claim(1000, now=later(6))
    assert len(revived) == 40 and all(i.attempts == 2 for i in revived)
    await store.outbox_ack(revived)
    assert (await store.outbox_status()).unexported == 0
    assert (await store.outbox_status()).exported == 100
