"""The storage contract (SPEC §7), run identically against SQLite and PostgreSQL.

Every test takes the ``backend`` fixture, so it runs once per backend; a behaviour that differs
between the two fails here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from brickrun.errors import RecordNotFoundError, RecordTooLargeError, StorageError, ThrottledError
from brickrun.storage import DatabaseInfo, DatabaseLimits, Record, StorageBackend, open_storage
from brickrun.storage._migrations import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS

from ..conftest import gather
from .conftest import run_sql

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 23, 15, 0, 0, 123456, tzinfo=UTC)
T0_TEXT = "2026-11-23T15:00:00.123Z"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# --- records -----------------------------------------------------------------------------------


async def test_put_returns_the_stored_record(backend: StorageBackend) -> None:
    record = await backend.put("telemetry-dev", "k1", {"a": 1, "b": [1, "x"]}, now=T0)
    assert record == {
        "id": "k1",
        "data": {"a": 1, "b": [1, "x"]},
        "merge_strategy": "replace",
        "created_at": T0_TEXT,
        "updated_at": T0_TEXT,
    }
    assert await backend.get("telemetry-dev", "k1") == record


async def test_get_of_a_missing_record_is_none(backend: StorageBackend) -> None:
    assert await backend.get("telemetry-dev", "nope") is None
    await backend.put("telemetry-dev", "k", {})
    assert await backend.get("telemetry-dev", "nope") is None
    assert await backend.get("other-db", "k") is None


async def test_get_or_raise_names_the_key_and_database(backend: StorageBackend) -> None:
    with pytest.raises(RecordNotFoundError) as caught:
        await backend.get_or_raise("telemetry-dev", "missing-key")
    assert str(caught.value) == "no record with key 'missing-key' in database 'telemetry-dev'"
    assert caught.value.database == "telemetry-dev"


async def test_delete(backend: StorageBackend) -> None:
    await backend.put("db", "k", {"a": 1})
    assert await backend.delete("db", "k") is True
    assert await backend.get("db", "k") is None
    assert await backend.delete("db", "k") is False
    assert await backend.delete("never-written", "k") is False
    assert await backend.count("db") == 0


async def test_count_per_database(backend: StorageBackend) -> None:
    assert await backend.count("db-a") == 0
    for i in range(5):
        await backend.put("db-a", f"k{i}", {"i": i})
    await backend.put("db-b", "k0", {})
    assert await backend.count("db-a") == 5
    assert await backend.count("db-b") == 1


async def test_values_round_trip_through_json(backend: StorageBackend) -> None:
    value = {
        "tuple": (1, 2),
        "unicode": "日本語 ✓ é",
        "nested": {"deep": {"er": [None, True, False, 1.5, -0.0, 2**53]}},
        "empty": {},
        "escapes": 'quote " backslash \\ newline \n \\u0000 literal',
    }
    record = await backend.put("db", "k", value)
    expected = {**value, "tuple": [1, 2]}
    assert record["data"] == expected
    stored = await backend.get("db", "k")
    assert stored is not None and stored["data"] == expected


async def test_numbers_read_back_as_the_same_type_and_value(backend: StorageBackend) -> None:
    # PostgreSQL's JSONB would turn 1e+16 into an int and -0.0 into 0.0 if stored as spelled.
    numbers = [0, -7, 2**70, 0.1, 2.0, -0.0, 1e-7, 1e16, -2.5e20, 1.5e300, 1.7976931348623157e308]
    await backend.put("db", "k", {"n": numbers})
    stored = await backend.get("db", "k")
    assert stored is not None
    back = stored["data"]["n"]
    assert back == numbers
    assert [type(n) for n in back] == [type(n) for n in numbers]
    assert str(back[5]) == "0.0"  # the sign of zero is not kept, on either backend


async def test_unicode_keys_and_database_ids(backend: StorageBackend) -> None:
    database = "équipe-données"
    key = "user@example.com-2026-11-23T15:00:00.123Z-🙂"
    await backend.put(database, key, {"ok": True})
    record = await backend.get(database, key)
    assert record is not None and record["id"] == key
    assert [info.name for info in await backend.list_databases()] == [database]


async def test_a_uuid_is_a_database_id(backend: StorageBackend) -> None:
    database = "2b6bcbd5-3b5c-4a8a-9a77-0b5bdf1f7bd4"
    await backend.put(database, "k", {"a": 1})
    assert await backend.count(database) == 1


async def test_put_copies_the_value(backend: StorageBackend) -> None:
    value: dict[str, Any] = {"list": [1], "obj": {"a": 1}}
    record = await backend.put("db", "k", value)
    value["list"].append(2)
    value["obj"]["b"] = 2
    assert record["data"] == {"list": [1], "obj": {"a": 1}}
    stored = await backend.get("db", "k")
    assert stored is not None and stored["data"] == {"list": [1], "obj": {"a": 1}}


# --- merge strategies ----------------------------------------------------------------------------

MERGES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # (strategy, old, new, expected)
    ("replace", {"a": 1, "b": {"c": 1}}, {"b": {"d": 2}}, {"b": {"d": 2}}),
    ("shallow", {"a": 1, "b": {"c": 1}}, {"b": {"d": 2}}, {"a": 1, "b": {"d": 2}}),
    ("shallow", {"a": 1}, {"a": None}, {"a": None}),
    (
        "deep",
        {"a": 1, "b": {"c": 1, "l": [1, 2]}},
        {"b": {"d": 2, "l": [3]}},
        {"a": 1, "b": {"c": 1, "d": 2, "l": [3]}},
    ),
    ("deep", {"a": {"b": 1}}, {"a": None}, {"a": None}),
    ("deep", {"a": {"b": 1}}, {"a": {"b": None}}, {"a": {"b": None}}),
    ("deep", {"a": [1, 2, 3]}, {"a": [9]}, {"a": [9]}),
    ("deep", {"a": {"b": 1}}, {"a": 5}, {"a": 5}),
    (
        "deep_append",
        {"l": [1, 2], "o": {"m": [1], "k": 1}},
        {"l": [3], "o": {"m": [2], "n": 1}},
        {"l": [1, 2, 3], "o": {"m": [1, 2], "k": 1, "n": 1}},
    ),
    ("deep_append", {"l": [1]}, {"l": "x"}, {"l": "x"}),
    ("deep_append", {"l": "x"}, {"l": [1]}, {"l": [1]}),
    ("deep_append", {"l": [{"a": 1}]}, {"l": [{"a": 2}]}, {"l": [{"a": 1}, {"a": 2}]}),
    ("deep_append", {"l": [1]}, {"l": None}, {"l": None}),
    ("deep_append", {"l": []}, {"l": []}, {"l": []}),
]


@pytest.mark.parametrize(("strategy", "old", "new", "expected"), MERGES)
async def test_merge_strategies(
    backend: StorageBackend,
    strategy: str,
    old: dict[str, Any],
    new: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    await backend.put("db", "k", old)
    record = await backend.put("db", "k", new, strategy)
    assert record["data"] == expected
    assert record["merge_strategy"] == strategy
    stored = await backend.get("db", "k")
    assert stored is not None and stored["data"] == expected


@pytest.mark.parametrize("strategy", ["replace", "shallow", "deep", "deep_append"])
async def test_without_a_record_every_strategy_stores_the_value(
    backend: StorageBackend, strategy: str
) -> None:
    record = await backend.put("db", "k", {"l": [1], "o": {"a": None}}, strategy)
    assert record["data"] == {"l": [1], "o": {"a": None}}
    assert record["merge_strategy"] == strategy


async def test_merge_after_delete_starts_over(backend: StorageBackend) -> None:
    await backend.put("db", "k", {"l": [1]})
    await backend.delete("db", "k")
    record = await backend.put("db", "k", {"l": [2]}, "deep_append")
    assert record["data"] == {"l": [2]}


# --- timestamps --------------------------------------------------------------------------------


async def test_created_at_is_kept_and_updated_at_moves(backend: StorageBackend) -> None:
    first = await backend.put("db", "k", {"a": 1}, now=T0)
    later = T0 + timedelta(minutes=5, milliseconds=7)
    second = await backend.put("db", "k", {"b": 2}, "shallow", now=later)
    assert first["created_at"] == first["updated_at"] == T0_TEXT
    assert second["created_at"] == T0_TEXT
    assert second["updated_at"] == "2026-11-23T15:05:00.130Z"
    assert await backend.get("db", "k") == second


async def test_timestamps_are_utc_with_milliseconds(backend: StorageBackend) -> None:
    record = await backend.put("db", "now", {})
    assert TIMESTAMP.match(record["created_at"]), record
    stamp = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
    assert abs(stamp - datetime.now(UTC)) < timedelta(seconds=30)

    paris = timezone(timedelta(hours=1))
    aware = await backend.put("db", "aware", {}, now=datetime(2026, 11, 23, 16, 0, 0, 5000, paris))
    assert aware["created_at"] == "2026-11-23T15:00:00.005Z"
    naive = await backend.put("db", "naive", {}, now=datetime(2026, 11, 23, 15, 0, 0, 999999))
    assert naive["created_at"] == "2026-11-23T15:00:00.999Z"
    stored = await backend.get("db", "naive")
    assert stored is not None and stored["created_at"] == "2026-11-23T15:00:00.999Z"


# --- listing -----------------------------------------------------------------------------------


async def test_list_records_orders_by_created_at_then_key(backend: StorageBackend) -> None:
    await backend.put("db", "b", {"n": 1}, now=T0)
    await backend.put("db", "a", {"n": 2}, now=T0)
    await backend.put("db", "c", {"n": 3}, now=T0 - timedelta(seconds=1))
    await backend.put("db", "B", {"n": 4}, now=T0)  # code point order: "B" < "a"
    await backend.put("other", "x", {}, now=T0)
    # An update keeps the record's place: order is by creation.
    await backend.put("db", "c", {"n": 5}, now=T0 + timedelta(hours=1))
    records = await backend.list_records("db")
    assert [r["id"] for r in records] == ["c", "B", "a", "b"]
    assert records[0]["data"] == {"n": 5}
    assert all(
        set(r) == {"id", "data", "merge_strategy", "created_at", "updated_at"} for r in records
    )


async def test_list_records_pages_and_filters(backend: StorageBackend) -> None:
    for i in range(10):
        await backend.put("db", f"k{i:02d}", {"i": i}, now=T0 + timedelta(seconds=i))
    ids = [r["id"] for r in await backend.list_records("db", limit=3, offset=2)]
    assert ids == ["k02", "k03", "k04"]
    assert [r["id"] for r in await backend.list_records("db", offset=8)] == ["k08", "k09"]
    assert await backend.list_records("db", limit=0) == []
    since = [r["id"] for r in await backend.list_records("db", since=T0 + timedelta(seconds=7))]
    assert since == ["k07", "k08", "k09"]
    page = await backend.list_records("db", since=T0 + timedelta(seconds=3), limit=2, offset=1)
    assert [r["id"] for r in page] == ["k04", "k05"]
    assert await backend.list_records("nothing-here") == []


async def test_list_records_of_thousands(backend: StorageBackend) -> None:
    count = 2500  # more than one page of the SQLite backend's reads
    await gather(
        *(
            backend.put("db", f"k{i:05d}", {"i": i}, now=T0 + timedelta(milliseconds=i // 3))
            for i in range(count)
        )
    )
    records = await backend.list_records("db")
    assert [r["data"]["i"] for r in records] == list(range(count))
    page = await backend.list_records("db", limit=2100, offset=300)
    assert [r["data"]["i"] for r in page] == list(range(300, 2400))
    since = await backend.list_records("db", since=T0 + timedelta(milliseconds=500))
    assert [r["data"]["i"] for r in since] == list(range(1500, count))


async def test_list_databases(backend: StorageBackend) -> None:
    assert await backend.list_databases() == []
    await backend.put("zeta", "k", {})
    await backend.put("alpha", "k1", {})
    await backend.put("alpha", "k2", {})
    limits = DatabaseLimits(max_record_bytes=1000, writes_per_second_per_user=5, retention_days=3)
    await backend.set_limits("limited", limits)
    assert await backend.list_databases() == [
        DatabaseInfo("alpha", 2, DatabaseLimits()),
        DatabaseInfo("limited", 0, limits),
        DatabaseInfo("zeta", 1, DatabaseLimits()),
    ]


# --- limits ------------------------------------------------------------------------------------


async def test_limits_round_trip(backend: StorageBackend) -> None:
    assert await backend.get_limits("db") == DatabaseLimits()
    limits = DatabaseLimits(
        max_record_bytes=4096, writes_per_second_per_user=2.5, retention_days=30
    )
    await backend.set_limits("db", limits)
    assert await backend.get_limits("db") == limits
    await backend.set_limits("db", DatabaseLimits())
    assert await backend.get_limits("db") == DatabaseLimits()


async def test_limits_are_shared_through_the_store(
    backend: StorageBackend, storage_url: str
) -> None:
    await backend.set_limits("db", DatabaseLimits(max_record_bytes=64))
    async with open_storage(storage_url) as other:
        assert await other.get_limits("db") == DatabaseLimits(max_record_bytes=64)
        with pytest.raises(RecordTooLargeError):
            await other.put("db", "k", {"x": "y" * 100})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_record_bytes": 0}, "max_record_bytes must be an integer of at least 2"),
        ({"max_record_bytes": 1.5}, "max_record_bytes must be an integer"),
        ({"writes_per_second_per_user": 0}, "writes_per_second_per_user must be a positive"),
        ({"writes_per_second_per_user": float("inf")}, "writes_per_second_per_user must be"),
        ({"retention_days": 0}, "retention_days must be a positive integer or None"),
        ({"retention_days": True}, "retention_days must be a positive integer or None"),
    ],
)
def test_invalid_limits_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(StorageError, match=re.escape(message)):
        DatabaseLimits(**kwargs)


async def test_a_record_over_the_size_limit_is_refused(backend: StorageBackend) -> None:
    await backend.set_limits("db", DatabaseLimits(max_record_bytes=100))
    await backend.put("db", "k", {"text": "a" * 50})
    with pytest.raises(RecordTooLargeError) as caught:
        await backend.put("db", "k", {"more": "b" * 50}, "shallow")
    # {"text":"aaa...","more":"bbb..."}: 2 + 59 + 1 + 59 = 121 bytes
    assert str(caught.value) == (
        "record 'k' in database 'db' would be 121 bytes (JSON-encoded), over the database's "
        "limit of 100 bytes; nothing was written"
    )
    assert caught.value.database == "db"
    stored = await backend.get("db", "k")
    assert stored is not None and stored["data"] == {"text": "a" * 50}


async def test_size_counts_utf8_bytes_of_the_merged_data(backend: StorageBackend) -> None:
    await backend.set_limits("db", DatabaseLimits(max_record_bytes=20))
    # {"t":"ééééé"}: 8 + 5 * 2 = 18 bytes, 13 characters
    await backend.put("db", "fits", {"t": "ééééé"})
    with pytest.raises(RecordTooLargeError, match="would be 22 bytes"):
        await backend.put("db", "too-big", {"t": "ééééééé"})
    assert await backend.count("db") == 1


async def test_size_is_checked_exactly_at_the_limit(backend: StorageBackend) -> None:
    # Appending grows the record by 2 bytes per put ("[1]" -> "[1,1]" ...); the batcher's
    # size bound is loose, so the exact size must decide near the limit.
    await backend.set_limits("db", DatabaseLimits(max_record_bytes=15))
    sizes: list[int | None] = []
    for _ in range(6):
        try:
            record = await backend.put("db", "k", {"l": [1]}, "deep_append")
            sizes.append(len(record["data"]["l"]))
        except RecordTooLargeError:
            sizes.append(None)
    # {"l":[1,1,1,1]} is 15 bytes; one more would be 17.
    assert sizes == [1, 2, 3, 4, None, None]


async def test_a_refused_first_write_creates_no_database(backend: StorageBackend) -> None:
    await backend.put("other", "k", {})
    big = {"x": "y" * (256 * 1024)}
    with pytest.raises(RecordTooLargeError, match="over the database's limit of 262144 bytes"):
        await backend.put("fresh", "k", big)
    assert [info.name for info in await backend.list_databases()] == ["other"]


async def test_throttling_per_user(backend: StorageBackend) -> None:
    await backend.set_limits("db", DatabaseLimits(writes_per_second_per_user=2))
    await backend.put("db", "k1", {}, user="ada", now=T0)
    await backend.put("db", "k2", {}, user="ada", now=T0)
    with pytest.raises(ThrottledError) as caught:
        await backend.put("db", "k3", {}, user="ada", now=T0)
    assert str(caught.value) == (
        "user 'ada' exceeded 2 writes per second on database 'db'; retry in 0.500 s"
    )
    assert caught.value.database == "db"
    assert await backend.get("db", "k3") is None
    # Other users, and writes without a user, are not affected.
    await backend.put("db", "k3", {}, user="grace", now=T0)
    await backend.put("db", "k4", {}, now=T0)
    # Half a second refills one token (2 per second).
    await backend.put("db", "k5", {}, user="ada", now=T0 + timedelta(milliseconds=500))
    with pytest.raises(ThrottledError, match=r"retry in 0\.400 s"):
        await backend.put("db", "k6", {}, user="ada", now=T0 + timedelta(milliseconds=600))
    # Limits of other databases are not shared.
    for i in range(5):
        await backend.put("unlimited", f"k{i}", {}, user="ada", now=T0)


async def test_throttling_in_one_batch(backend: StorageBackend) -> None:
    await backend.set_limits("db", DatabaseLimits(writes_per_second_per_user=3))
    results = await gather(*(backend.put("db", f"k{i}", {}, user="ada", now=T0) for i in range(5)))
    assert [type(r).__name__ for r in results] == ["dict"] * 3 + ["ThrottledError"] * 2
    assert await backend.count("db") == 3


async def test_cleanup_deletes_by_updated_at(backend: StorageBackend) -> None:
    await backend.set_limits("db", DatabaseLimits(retention_days=7))
    await backend.put("db", "old", {}, now=T0 - timedelta(days=10))
    await backend.put("db", "edge", {}, now=T0 - timedelta(days=7))
    await backend.put("db", "touched", {}, now=T0 - timedelta(days=10))
    await backend.put("db", "touched", {"a": 1}, "shallow", now=T0 - timedelta(days=1))
    await backend.put("db", "new", {}, now=T0)
    await backend.put("keep-forever", "old", {}, now=T0 - timedelta(days=1000))
    assert await backend.cleanup("db", now=T0) == 1
    assert [r["id"] for r in await backend.list_records("db")] == ["touched", "edge", "new"]
    assert await backend.cleanup("db", now=T0) == 0
    assert await backend.cleanup("keep-forever", now=T0) == 0
    assert await backend.cleanup("no-such-db", now=T0) == 0
    assert await backend.count("keep-forever") == 1


# --- argument errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("database", "message"),
    [
        ("", "database id must be a non-empty string, got ''"),
        (None, "database id must be a non-empty string, got None"),
        ("x" * 256, "database id is 256 characters long; the limit is 255"),
        ("tab\there", "database id 'tab\\there' contains a control character"),
    ],
)
async def test_bad_database_ids(backend: StorageBackend, database: Any, message: str) -> None:
    for call in (
        backend.put(database, "k", {}),
        backend.get(database, "k"),
        backend.delete(database, "k"),
        backend.count(database),
        backend.list_records(database),
        backend.get_limits(database),
        backend.set_limits(database, DatabaseLimits()),
        backend.cleanup(database),
    ):
        with pytest.raises(StorageError, match=re.escape(message)):
            await call


async def test_longest_database_id_and_key(backend: StorageBackend) -> None:
    database, key = "d" * 255, "é" * 512  # 1024 bytes
    await backend.put(database, key, {"ok": 1})
    record = await backend.get(database, key)
    assert record is not None and record["data"] == {"ok": 1}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "record key must be a non-empty string, got '' (database 'db')"),
        (42, "record key must be a non-empty string, got 42 (database 'db')"),
        ("k" * 1025, "record key is 1025 bytes long (UTF-8); the limit is 1024"),
        ("é" * 513, "record key is 1026 bytes long (UTF-8); the limit is 1024"),
        ("nul\x00", "record key 'nul\\x00' contains a NUL character (database 'db')"),
        ("\ud800", "record key '\\ud800' is not valid Unicode (it contains a lone surrogate)"),
    ],
)
async def test_bad_keys(backend: StorageBackend, key: Any, message: str) -> None:
    for call in (backend.put("db", key, {}), backend.get("db", key), backend.delete("db", key)):
        with pytest.raises(StorageError, match=re.escape(message)):
            await call


async def test_unknown_merge_strategy(backend: StorageBackend) -> None:
    with pytest.raises(StorageError) as caught:
        await backend.put("db", "k", {}, "merge")
    assert str(caught.value) == (
        "unknown merge strategy 'merge'; expected one of 'replace', 'shallow', 'deep', "
        "'deep_append'"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2], "value of record 'k' in database 'db' must be a JSON object (a dict), got list"),
        ("text", "must be a JSON object (a dict), got str"),
        (None, "must be a JSON object (a dict), got NoneType"),
        ({"s": {1, 2}}, "value of record 'k' in database 'db' is not JSON: Object of type set"),
        ({"n": float("nan")}, "is not JSON: Out of range float values are not JSON compliant"),
        ({"s": "a\x00b"}, "value of record 'k' in database 'db' contains a NUL character"),
        ({"s\x00": 1}, "contains a NUL character"),
        ({"s": "\udc80"}, "is not valid Unicode (it contains a lone surrogate)"),
    ],
)
async def test_bad_values(backend: StorageBackend, value: Any, message: str) -> None:
    with pytest.raises(StorageError, match=re.escape(message)):
        await backend.put("db", "k", value)
    assert await backend.count("db") == 0


async def test_bad_list_arguments(backend: StorageBackend) -> None:
    with pytest.raises(StorageError, match="limit must be a non-negative integer or None"):
        await backend.list_records("db", limit=-1)
    with pytest.raises(StorageError, match=r"offset must be a non-negative integer, got 1\.5"):
        await backend.list_records("db", offset=1.5)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="now must be a datetime or None, got '2026-11-23'"):
        await backend.put("db", "k", {}, now="2026-11-23")  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="user must be a string or None, got 7"):
        await backend.put("db", "k", {}, user=7)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="limits must be a DatabaseLimits"):
        await backend.set_limits("db", {"max_record_bytes": 5})  # type: ignore[arg-type]


# --- batching ----------------------------------------------------------------------------------


async def test_concurrent_puts_share_batches_and_get_their_own_results(
    backend: StorageBackend,
) -> None:
    batches: list[int] = []
    write = backend._batcher._write  # spy on the batcher's writes

    async def spy(ops: list[Any]) -> None:
        batches.append(len(ops))
        await write(ops)

    backend._batcher._write = spy
    results = await gather(*(backend.put("db", f"k{i}", {"i": i}) for i in range(300)))
    assert [r["data"] for r in results] == [{"i": i} for i in range(300)]
    assert [r["id"] for r in results] == [f"k{i}" for i in range(300)]
    assert sum(batches) == 300
    assert len(batches) <= 3, batches  # coalesced, not one transaction per put
    assert await backend.count("db") == 300


async def test_puts_to_one_key_in_one_batch_apply_in_order(backend: StorageBackend) -> None:
    results = await gather(
        *(backend.put("db", "k", {"l": [i], f"k{i}": i}, "deep_append") for i in range(50))
    )
    for i, record in enumerate(results):
        assert record["data"]["l"] == list(range(i + 1))
        assert len(record["data"]) == i + 2
    # What was stored was encoded before any caller saw its record.
    results[49]["data"]["l"].append("mutated")
    stored = await backend.get("db", "k")
    assert stored is not None and stored["data"]["l"] == list(range(50))


async def test_a_refused_put_does_not_fail_its_batch(backend: StorageBackend) -> None:
    await backend.set_limits("db", DatabaseLimits(max_record_bytes=50))
    calls = []
    for i in range(20):
        value = {"big": "x" * 100} if i % 5 == 2 else {"i": i}
        calls.append(backend.put("db", "shared" if i % 2 else f"k{i}", value, "shallow"))
    results = await gather(*calls)
    for i, result in enumerate(results):
        if i % 5 == 2:
            assert isinstance(result, RecordTooLargeError), result
        else:
            assert isinstance(result, dict), result
    shared = await backend.get("db", "shared")
    assert shared is not None and shared["data"] == {"i": 19}
    assert await backend.count("db") == 1 + len([i for i in range(0, 20, 2) if i % 5 != 2])


async def test_refusals_in_a_batch_leave_the_record_as_it_was(backend: StorageBackend) -> None:
    await backend.set_limits("db", DatabaseLimits(max_record_bytes=40))
    results = await gather(
        backend.put("db", "k", {"a": 1}),
        backend.put("db", "k", {"big": "x" * 50}, "shallow"),
        backend.put("db", "k", {"b": 2}, "shallow"),
    )
    assert isinstance(results[1], RecordTooLargeError)
    assert results[2]["data"] == {"a": 1, "b": 2}


# --- lifecycle ---------------------------------------------------------------------------------


async def test_records_survive_reopening(backend: StorageBackend, storage_url: str) -> None:
    await backend.put("db", "k", {"a": 1}, now=T0)
    await backend.set_limits("db", DatabaseLimits(retention_days=9))
    await backend.close()
    async with open_storage(storage_url) as again:
        record = await again.get("db", "k")
        assert record is not None and record["data"] == {"a": 1}
        assert record["created_at"] == T0_TEXT
        assert (await again.get_limits("db")).retention_days == 9


async def test_close_is_idempotent_and_final(backend: StorageBackend) -> None:
    await backend.close()
    await backend.close()
    with pytest.raises(StorageError, match=r"storage .* is closed"):
        await backend.get("db", "k")
    with pytest.raises(StorageError, match=r"storage .* is closed"):
        await backend.put("db", "k", {})
    with pytest.raises(StorageError, match="was closed; open a new backend"):
        await backend.open()


async def test_close_waits_for_pending_puts(backend: StorageBackend, storage_url: str) -> None:
    url = storage_url
    done: list[Record] = []

    async def put(i: int) -> None:
        done.append(await backend.put("db", f"k{i}", {"i": i}))

    async with anyio.create_task_group() as group:
        for i in range(100):
            group.start_soon(put, i)
        await anyio.sleep(0)  # the puts are queued, not yet committed
        await backend.close()
    assert len(done) == 100
    async with open_storage(url) as again:
        assert await again.count("db") == 100


async def test_using_a_backend_before_open(storage_url: str) -> None:
    storage = open_storage(storage_url)
    with pytest.raises(
        StorageError, match=r"is not open yet \(call open\(\) or use 'async with'\)"
    ):
        await storage.put("db", "k", {})
    await storage.close()


async def test_opening_twice_is_a_no_op(backend: StorageBackend) -> None:
    await backend.open()
    await backend.put("db", "k", {})
    assert await backend.count("db") == 1


async def test_migrations_are_recorded_and_not_reapplied(
    backend: StorageBackend, storage_url: str
) -> None:
    url = storage_url
    async with open_storage(url) as second, open_storage(url) as third:
        await second.put("db", "k", {})
        assert await third.count("db") == 1
    assert await schema_versions(url) == LATEST_VERSIONS


async def test_concurrent_opens_of_a_new_store(storage_url: str) -> None:
    backends = [open_storage(storage_url) for _ in range(6)]
    async with anyio.create_task_group() as group:
        for storage in backends:
            group.start_soon(storage.open)
    try:
        await gather(*(b.put("db", f"k{i}", {}) for i, b in enumerate(backends)))
        assert await backends[0].count("db") == 6
        assert await schema_versions(storage_url) == LATEST_VERSIONS
    finally:
        for storage in backends:
            await storage.close()


async def test_a_store_from_a_newer_brickrun_is_refused(
    backend: StorageBackend, storage_url: str
) -> None:
    await anyio.to_thread.run_sync(
        run_sql, storage_url, "INSERT INTO schema_version VALUES (99, 'future', 'x')"
    )
    url = storage_url
    with pytest.raises(StorageError, match="has schema version 99, newer than this brickrun"):
        async with open_storage(url):
            pass


async def test_two_backends_in_one_process_do_not_interfere(storage_url: str) -> None:
    async with open_storage(storage_url) as one, open_storage(storage_url) as two:
        await one.set_limits("db", DatabaseLimits(writes_per_second_per_user=1))
        await one.put("db", "k1", {}, user="ada", now=T0)
        # Token buckets belong to each backend instance.
        await two.put("db", "k2", {}, user="ada", now=T0)
        results = await gather(
            *(one.put("db", f"a{i}", {"i": i}) for i in range(20)),
            *(two.put("db", f"b{i}", {"i": i}) for i in range(20)),
        )
        assert all(isinstance(r, dict) for r in results)
        assert await one.count("db") == 42


# Every migration, in order (the same versions on both backends).
LATEST_VERSIONS = [m.version for m in SQLITE_MIGRATIONS]
assert [m.version for m in POSTGRES_MIGRATIONS] == LATEST_VERSIONS


async def schema_versions(storage_url: str) -> list[object]:
    rows = await anyio.to_thread.run_sync(
        run_sql, storage_url, "SELECT version FROM schema_version ORDER BY version"
    )
    return [row[0] for row in rows]


async def test_a_version_2_store_is_upgraded_in_place(storage_url: str) -> None:
    """A store written by a brickrun before migration 3 (the longer records_by_created index)
    opens as the latest version with every record, listed in the same order."""
    async with open_storage(storage_url) as storage:
        await storage.put_many([("old", f"k{i}", {"i": i}, "replace", T0) for i in range(50)])
        await storage.put("old", "late", {"i": 50}, now=T0 + timedelta(seconds=1))
    for statement in (
        "DROP INDEX records_by_created",
        "CREATE INDEX records_by_created ON records (database_id, created_at, key)",
        "DELETE FROM schema_version WHERE version = 3",
    ):
        await anyio.to_thread.run_sync(run_sql, storage_url, statement)
    assert await schema_versions(storage_url) == [1, 2]
    async with open_storage(storage_url) as storage:
        listed = [r["id"] for r in await storage.list_records("old")]
    assert await schema_versions(storage_url) == LATEST_VERSIONS
    assert listed == sorted(f"k{i}" for i in range(50)) + ["late"]
    catalog = (
        "SELECT sql FROM sqlite_master WHERE name = 'records_by_created'"
        if storage_url.startswith("sqlite")
        else "SELECT indexdef FROM pg_indexes WHERE indexname = 'records_by_created'"
        " AND schemaname = current_schema()"
    )
    [(definition,)] = await anyio.to_thread.run_sync(run_sql, storage_url, catalog)
    assert "(database_id, created_at)" in str(definition)


async def test_listing_many_records_pages_without_loss_or_repeats(backend: StorageBackend) -> None:
    """More records than one read page, many sharing a timestamp: every record exactly once, in
    (created_at, key) order, also through limit/offset windows that straddle pages."""
    keys = [f"k{i:05d}" for i in range(4500)]
    await gather(*(backend.put("paged", key, {"n": i}, now=T0) for i, key in enumerate(keys)))
    listed = await backend.list_records("paged")
    assert [r["id"] for r in listed] == sorted(keys)
    window = await backend.list_records("paged", limit=2500, offset=1500)
    assert [r["id"] for r in window] == sorted(keys)[1500:4000]
