"""``put_many`` (part of the storage contract): run identically against SQLite and PostgreSQL.

``put_many`` must behave exactly like the same puts made in order, be refused item by item,
commit all its items in one transaction, and be cancelled like ``put``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brickrun.errors import RecordTooLargeError, StorageError, ThrottledError
from brickrun.storage import (
    MERGE_STRATEGIES,
    DatabaseLimits,
    PutItem,
    StorageBackend,
    open_storage,
)
from brickrun.storage._batch import MAX_BATCH, MAX_BATCH_BYTES, PendingPut

from ..conftest import gather

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 23, 15, 0, 0, 123456, tzinfo=UTC)
T0_TEXT = "2026-11-23T15:00:00.123Z"


async def test_writes_every_item_and_reports_none_for_each(backend: StorageBackend) -> None:
    items = [("db", f"k{i}", {"i": i}) for i in range(10)]
    assert await backend.put_many(items, now=T0) == [None] * 10
    records = await backend.list_records("db")
    assert [r["id"] for r in records] == sorted(f"k{i}" for i in range(10))
    assert all(r["created_at"] == r["updated_at"] == T0_TEXT for r in records)
    assert {r["id"]: r["data"] for r in records} == {f"k{i}": {"i": i} for i in range(10)}


async def test_records_are_returned_only_when_asked_for(backend: StorageBackend) -> None:
    await backend.put("db", "old", {"a": 1}, now=T0 - timedelta(days=1))
    results = await backend.put_many(
        [PutItem("db", "old", {"b": 2}, "shallow"), ("db", "new", {"c": 3})],
        now=T0,
        records=True,
    )
    assert results == [
        {
            "id": "old",
            "data": {"a": 1, "b": 2},
            "merge_strategy": "shallow",
            "created_at": "2026-11-22T15:00:00.123Z",
            "updated_at": T0_TEXT,
        },
        {
            "id": "new",
            "data": {"c": 3},
            "merge_strategy": "replace",
            "created_at": T0_TEXT,
            "updated_at": T0_TEXT,
        },
    ]
    assert [await backend.get("db", "old"), await backend.get("db", "new")] == results


async def test_items_may_name_several_databases(backend: StorageBackend) -> None:
    outcomes = await backend.put_many([("a", "k", {"n": 1}), ("b", "k", {"n": 2})])
    assert outcomes == [None, None]
    assert [info.name for info in await backend.list_databases()] == ["a", "b"]
    stored = await backend.get("b", "k")
    assert stored is not None and stored["data"] == {"n": 2}


async def test_an_item_now_overrides_the_call_now(backend: StorageBackend) -> None:
    later = T0 + timedelta(hours=1)
    await backend.put_many(
        [("db", "own", {}, "replace", later), ("db", "call", {}, "replace", None)], now=T0
    )
    own, call = await backend.get("db", "own"), await backend.get("db", "call")
    assert own is not None and own["created_at"] == "2026-11-23T16:00:00.123Z"
    assert call is not None and call["created_at"] == T0_TEXT


async def test_no_items_is_nothing_to_do(backend: StorageBackend) -> None:
    assert await backend.put_many([]) == []
    assert await backend.put_many(iter(()), records=True) == []
    assert await backend.list_databases() == []


# --- in order, as if put one by one --------------------------------------------------------------

# Each case: a list of (key, value, strategy) written to one database, in order.
SEQUENCES: list[list[tuple[str, dict[str, Any], str]]] = [
    [("k", {"l": [i]}, "deep_append") for i in range(5)],
    [("k", {"a": 1, "o": {"x": 1}}, "replace"), ("k", {"o": {"y": 2}}, "deep")],
    [("k", {"a": 1}, "shallow"), ("k", {"b": 2}, "replace"), ("k", {"c": 3}, "shallow")],
    [("k", {"l": [1]}, "deep_append"), ("j", {"l": [2]}, "deep_append"), ("k", {"l": [3]}, "deep")],
    [("k", {"a": {"b": 1}}, "deep"), ("k", {"a": None}, "deep"), ("k", {"a": {"c": 2}}, "deep")],
]


@pytest.mark.parametrize("sequence", SEQUENCES)
async def test_items_apply_in_order_like_puts(
    backend: StorageBackend, sequence: list[tuple[str, dict[str, Any], str]]
) -> None:
    await backend.put("one-by-one", "k", {"l": [0], "a": 0}, now=T0)
    await backend.put("at-once", "k", {"l": [0], "a": 0}, now=T0)
    expected = [
        await backend.put("one-by-one", key, value, strategy, now=T0 + timedelta(seconds=1))
        for key, value, strategy in sequence
    ]
    got = await backend.put_many(
        [("at-once", key, value, strategy) for key, value, strategy in sequence],
        now=T0 + timedelta(seconds=1),
        records=True,
    )
    assert got == expected
    assert await backend.list_records("at-once") == await backend.list_records("one-by-one")


VALUES = st.dictionaries(
    st.sampled_from(["a", "b", "l"]),
    st.one_of(
        st.integers(-3, 3),
        st.lists(st.integers(0, 9), max_size=3),
        st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 9), max_size=2),
    ),
    max_size=3,
)
OPS = st.lists(
    st.tuples(st.sampled_from(["k1", "k2", "k3"]), VALUES, st.sampled_from(MERGE_STRATEGIES)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, limit=st.sampled_from([30, 60, 1000]), records=st.booleans())
async def test_put_many_equals_sequential_puts(
    backend: StorageBackend,
    ops: list[tuple[str, dict[str, Any], str]],
    limit: int,
    records: bool,
) -> None:
    """Any sequence, with a size limit that refuses some items: the same outcomes, records
    and stored rows as the same puts awaited one by one (asking for records or not: the
    batch is planned differently without them)."""
    run = await backend.count("runs")
    await backend.put("runs", f"r{run}", {})
    one, many = f"one-{run}", f"many-{run}"
    for database in (one, many):
        await backend.set_limits(database, DatabaseLimits(max_record_bytes=limit))
    expected: list[Any] = []
    for key, value, strategy in ops:
        try:
            expected.append(await backend.put(one, key, value, strategy, now=T0))
        except StorageError as error:
            expected.append(error)
    got = await backend.put_many(
        [(many, key, value, strategy) for key, value, strategy in ops], now=T0, records=records
    )
    if not records:
        expected = [e if isinstance(e, StorageError) else None for e in expected]
    assert [_outcome(r) for r in got] == [_outcome(r) for r in expected]
    assert await backend.list_records(many) == await backend.list_records(one)


def _outcome(result: Any) -> Any:
    if isinstance(result, StorageError):
        return type(result).__name__, str(result).replace("many-", "one-")
    return result


# --- refusals ------------------------------------------------------------------------------------


async def test_a_refused_item_is_refused_alone(backend: StorageBackend) -> None:
    await backend.set_limits("db", DatabaseLimits(max_record_bytes=40))
    outcomes = await backend.put_many(
        [
            ("db", "k", {"a": 1}),
            ("db", "k", {"big": "x" * 50}, "shallow"),
            ("db", "k", {"b": 2}, "shallow"),
            ("db", "other", {"big": "y" * 50}),
            ("db", "last", {}),
        ],
        records=True,
    )
    assert isinstance(outcomes[1], RecordTooLargeError)
    assert str(outcomes[1]) == (
        "record 'k' in database 'db' would be 66 bytes (JSON-encoded), over the database's "
        "limit of 40 bytes; nothing was written"
    )
    assert isinstance(outcomes[3], RecordTooLargeError)
    assert [type(o).__name__ for o in outcomes] == [
        "dict",
        "RecordTooLargeError",
        "dict",
        "RecordTooLargeError",
        "dict",
    ]
    # The item after the refused one merged on the record as if it had never been attempted.
    stored = await backend.get("db", "k")
    assert stored is not None and stored["data"] == {"a": 1, "b": 2}
    assert await backend.get("db", "other") is None
    assert await backend.count("db") == 2


async def test_throttled_items_are_refused_alone(backend: StorageBackend) -> None:
    await backend.set_limits("db", DatabaseLimits(writes_per_second_per_user=3))
    outcomes = await backend.put_many(
        [("db", f"k{i}", {"i": i}) for i in range(5)], user="ada", now=T0
    )
    assert outcomes[:3] == [None, None, None]
    assert all(isinstance(o, ThrottledError) for o in outcomes[3:])
    assert str(outcomes[3]) == (
        "user 'ada' exceeded 3 writes per second on database 'db'; retry in 0.333 s"
    )
    assert await backend.count("db") == 3
    # Without a user nothing is throttled, as with put.
    assert await backend.put_many([("db", f"n{i}", {}) for i in range(5)], now=T0) == [None] * 5


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (("", "k", {}), "database id must be a non-empty string, got ''"),
        (("db", "", {}), "record key must be a non-empty string, got '' (database 'db')"),
        (("db", "k" * 1025, {}), "record key is 1025 bytes long (UTF-8); the limit is 1024"),
        (("db", "k", [1]), "value of record 'k' in database 'db' must be a JSON object"),
        (("db", "k", {"n": float("nan")}), "is not JSON: Out of range float values"),
        (("db", "k", {"s": "a\x00b"}), "value of record 'k' in database 'db' contains a NUL"),
        (("db", "k", {}, "merge"), "unknown merge strategy 'merge'; expected one of"),
        (("db", "k", {}, "replace", "2026"), "now must be a datetime or None, got '2026'"),
        ((["unhashable"], "k", {}), "database id must be a non-empty string, got ['unhashable']"),
    ],
)
async def test_an_item_put_would_reject_is_refused_alone(
    backend: StorageBackend, item: tuple[Any, ...], message: str
) -> None:
    outcomes = await backend.put_many([("db", "before", {}), item, ("db", "after", {})])
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], StorageError)
    assert message in str(outcomes[1])
    assert await backend.count("db") == 2


async def test_nothing_valid_to_write(backend: StorageBackend) -> None:
    outcomes = await backend.put_many([("db", "", {}), ("db", "k", "not an object")])
    assert all(isinstance(o, StorageError) for o in outcomes)
    assert await backend.list_databases() == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda b: b.put_many([("db", "k", {}), ["db", "k2", {}]]),
            "item 1 of put_many must be a (database, key, value[, merge_strategy[, now]]) "
            "tuple, got list; nothing was written",
        ),
        (
            lambda b: b.put_many([("db", "k")]),
            "item 0 of put_many must be a (database, key, value[, merge_strategy[, now]]) "
            "tuple, got a tuple of 2; nothing was written",
        ),
        (lambda b: b.put_many(42), "items must be an iterable of (database, key, value"),
        (lambda b: b.put_many([], user=7), "user must be a string or None, got 7"),
        (lambda b: b.put_many([], now="today"), "now must be a datetime or None, got 'today'"),
    ],
)
async def test_a_wrong_call_raises_and_writes_nothing(
    backend: StorageBackend, call: Any, message: str
) -> None:
    with pytest.raises(StorageError, match=re.escape(message)):
        await call(backend)
    assert await backend.count("db") == 0


async def test_closed_backend(backend: StorageBackend) -> None:
    await backend.close()
    with pytest.raises(StorageError, match=r"storage .* is closed"):
        await backend.put_many([("db", "k", {})])


# --- one transaction ---------------------------------------------------------------------------


def spy_batches(backend: StorageBackend) -> list[list[str]]:
    """Record the keys of every batch the backend writes from now on."""
    batches: list[list[str]] = []
    write = backend._batcher._write

    async def spy(ops: list[PendingPut]) -> None:
        batches.append([op.key for op in ops])
        await write(ops)

    backend._batcher._write = spy  # type: ignore[method-assign]
    return batches


async def test_a_call_larger_than_a_batch_is_one_transaction(backend: StorageBackend) -> None:
    batches = spy_batches(backend)
    count = MAX_BATCH * 2 + 500
    outcomes = await backend.put_many([("db", f"k{i}", {"i": i}) for i in range(count)])
    assert outcomes == [None] * count
    assert [len(batch) for batch in batches] == [count]
    assert await backend.count("db") == count


async def test_concurrent_calls_share_transactions_but_are_never_split(
    backend: StorageBackend,
) -> None:
    batches = spy_batches(backend)
    calls = [backend.put_many([("db", f"c{c}-{i}", {}) for i in range(300)]) for c in range(10)] + [
        backend.put("db", f"single{i}", {}) for i in range(50)
    ]
    results = await gather(*calls)
    assert all(r == [None] * 300 for r in results[:10])
    assert await backend.count("db") == 3050
    assert len(batches) < 20, [len(batch) for batch in batches]  # coalesced
    # Each call's items are in one batch, together and in order.
    for c in range(10):
        call = [f"c{c}-{i}" for i in range(300)]
        [batch] = [batch for batch in batches if call[0] in batch]
        start = batch.index(call[0])
        assert batch[start : start + 300] == call


async def test_readers_see_all_of_a_call_or_none(backend: StorageBackend, storage_url: str) -> None:
    seen: set[int] = set()
    done = anyio.Event()
    async with open_storage(storage_url) as reader:

        async def read() -> None:
            while not done.is_set():
                seen.add(await reader.count("db"))
                await anyio.sleep(0)

        async with anyio.create_task_group() as group:
            group.start_soon(read)
            for call in range(5):
                await backend.put_many([("db", f"{call}-{i}", {"i": i}) for i in range(400)])
            done.set()
    assert seen <= {0, 400, 800, 1200, 1600, 2000}, sorted(seen)


async def test_concurrent_writers_never_interleave_within_a_call(storage_url: str) -> None:
    """Two backends (two connections, as two processes would have) write the same 200 keys
    at once, each stamping its name: afterwards every key has the same last writer."""
    keys = [f"k{i}" for i in range(200)]
    async with open_storage(storage_url) as one, open_storage(storage_url) as two:

        async def write(storage: StorageBackend, name: str) -> None:
            for round_ in range(5):
                items = [("db", key, {"by": name, "round": round_}) for key in keys]
                assert await storage.put_many(items) == [None] * len(keys)

        async with anyio.create_task_group() as group:
            group.start_soon(write, one, "one")
            group.start_soon(write, two, "two")
        final = await one.list_records("db")
    assert len(final) == 200
    assert len({(r["data"]["by"], r["data"]["round"]) for r in final}) == 1


# --- outbox --------------------------------------------------------------------------------------


async def test_outbox_rows_for_written_items_only(backend: StorageBackend) -> None:
    await backend.set_limits("db", DatabaseLimits(max_record_bytes=30))
    outcomes = await backend.put_many(
        [("db", "a", {"n": 1}), ("db", "big", {"text": "x" * 40}), ("db", "b", {"n": 2})],
        outbox=True,
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], RecordTooLargeError)
    await backend.put_many([("db", "plain", {})])
    claimed = await backend.outbox_claim(10, now=datetime.now(UTC))
    assert sorted(item.key for item in claimed) == ["a", "b"]
    assert {item.key: item.record["data"] for item in claimed if item.record} == {
        "a": {"n": 1},
        "b": {"n": 2},
    }


@pytest.mark.parametrize("verdict", ["ack", "dead"])
async def test_a_verdict_on_a_batch_spares_records_put_again_since_the_claim(
    backend: StorageBackend, verdict: str
) -> None:
    """Most claims are current and leave the outbox; the two put again since the claim stay
    queued for their new version, due at once."""
    await backend.put_many([("db", f"k{i}", {"v": 1}) for i in range(6)], outbox=True)
    claimed = await backend.outbox_claim(10)
    await backend.put_many([("db", "k1", {"v": 2}), ("db", "k4", {"v": 2})], outbox=True)
    if verdict == "ack":
        assert await backend.outbox_ack(claimed) == 4
    else:
        assert await backend.outbox_dead(claimed, "400") == 4
    status = await backend.outbox_status("db")
    assert status.counts == {
        "pending": 2,
        "leased": 0,
        "dead": 4 if verdict == "dead" else 0,
    }
    again = await backend.outbox_claim(10)
    assert [(item.key, item.record and item.record["data"]) for item in again] == [
        ("k1", {"v": 2}),
        ("k4", {"v": 2}),
    ]


# --- cancellation, as for put ------------------------------------------------------------------


def hold_first_batch(backend: StorageBackend) -> tuple[anyio.Event, anyio.Event]:
    """Make the next batch wait, once it started writing, until ``release`` is set; ``started``
    is set when it starts."""
    started, release = anyio.Event(), anyio.Event()
    write = backend._batcher._write
    held = False

    async def slow(ops: list[PendingPut]) -> None:
        nonlocal held
        if not held:
            held = True
            started.set()
            await release.wait()
        await write(ops)

    backend._batcher._write = slow  # type: ignore[method-assign]
    return started, release


@pytest.mark.parametrize("single", [True, False], ids=["put", "put_many"])
async def test_cancelled_while_queued_writes_nothing(backend: StorageBackend, single: bool) -> None:
    started, release = hold_first_batch(backend)
    async with anyio.create_task_group() as group:
        group.start_soon(backend.put, "db", "first", {})
        await started.wait()  # the first batch is being written; ours will queue behind it
        with anyio.move_on_after(0.05) as scope:
            if single:
                await backend.put("db", "queued", {})
            else:
                await backend.put_many([("db", "queued", {}), ("db", "queued-2", {})])
        assert scope.cancelled_caught
        release.set()
    assert [r["id"] for r in await backend.list_records("db")] == ["first"]


@pytest.mark.parametrize("single", [True, False], ids=["put", "put_many"])
async def test_cancelled_while_written_is_written(backend: StorageBackend, single: bool) -> None:
    started, release = hold_first_batch(backend)

    async def release_soon() -> None:
        await started.wait()
        await anyio.sleep(0.1)
        release.set()

    async with anyio.create_task_group() as group:
        group.start_soon(release_soon)
        # Cancelled while its batch is being written: the call may return or be cancelled,
        # but what it wrote is written.
        with anyio.move_on_after(0.05):
            if single:
                await backend.put("db", "k", {})
            else:
                await backend.put_many([("db", "k", {}), ("db", "k2", {})])
    expected = ["k"] if single else ["k", "k2"]
    assert [r["id"] for r in await backend.list_records("db")] == expected


async def test_a_put_many_joining_a_batch_is_withdrawn_whole(backend: StorageBackend) -> None:
    started, release = hold_first_batch(backend)
    batches = spy_batches(backend)
    async with anyio.create_task_group() as group:
        group.start_soon(backend.put, "db", "first", {})
        await started.wait()
        group.start_soon(backend.put, "db", "captain", {})  # starts the next batch
        await anyio.sleep(0.01)
        with anyio.move_on_after(0.05) as scope:
            await backend.put_many([("db", f"joined{i}", {}) for i in range(3)])
        assert scope.cancelled_caught
        release.set()
    assert sorted(r["id"] for r in await backend.list_records("db")) == ["captain", "first"]
    assert batches == [["first"], ["captain"]]


# --- batches of every size and the created_at of replaced records ------------------------------


async def test_batches_of_every_size_store_every_record(backend: StorageBackend) -> None:
    """SQLite writes a batch with statements of a few fixed sizes, padding the last one; no
    size may lose or duplicate a record."""
    total = 0
    for size in [*range(1, 40), 255, 257, 511, 513, 1000]:
        items = [("db", f"s{size}-{i}", {"i": i}) for i in range(size)]
        assert await backend.put_many(items) == [None] * size
        total += size
    assert await backend.count("db") == total
    stored = await backend.get("db", "s37-36")
    assert stored is not None and stored["data"] == {"i": 36}


async def test_replacing_keeps_created_at_in_what_is_returned(backend: StorageBackend) -> None:
    """Replaced records are upserted without being read on PostgreSQL: the created_at of the
    ones that existed must still come back as stored, in one batch with new ones."""
    await backend.put_many([("db", f"old{i}", {"v": 0}) for i in range(3)], now=T0)
    later = T0 + timedelta(minutes=1)
    items = [("db", f"old{i}", {"v": 1}) for i in range(3)]
    items += [("db", f"new{i}", {"v": 1}) for i in range(3)]
    items.append(("db", "old0", {"v": 2}))  # twice in one call
    results = await backend.put_many(items, now=later, records=True)
    assert [r["created_at"] for r in results] == [T0_TEXT] * 3 + [
        "2026-11-23T15:01:00.123Z"
    ] * 3 + [T0_TEXT]
    stored = {record["id"]: record for record in await backend.list_records("db")}
    assert results[1:] == [stored[record["id"]] for record in results[1:]]
    assert results[0]["data"] == {"v": 1}  # old0 as the first of its two items left it
    single = await gather(
        backend.put("db", "old1", {"v": 3}, now=later), backend.put("db", "new9", {}, now=later)
    )
    assert single[0]["created_at"] == T0_TEXT
    assert single[1]["created_at"] == "2026-11-23T15:01:00.123Z"


async def test_batches_are_bounded_in_bytes(backend: StorageBackend) -> None:
    await backend.set_limits("db", DatabaseLimits(max_record_bytes=1024 * 1024))
    batches = spy_batches(backend)
    value = {"blob": "x" * (300 * 1024)}
    results = await gather(*(backend.put("db", f"k{i}", value) for i in range(20)))
    assert all(isinstance(r, dict) for r in results)
    assert sum(len(batch) for batch in batches) == 20
    assert max(len(batch) for batch in batches) * 300 * 1024 <= MAX_BATCH_BYTES
    # A single call is never split, however large.
    batches.clear()
    assert await backend.put_many([("db", f"m{i}", value) for i in range(20)]) == [None] * 20
    assert [len(batch) for batch in batches] == [20]
