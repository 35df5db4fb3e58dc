"""Versioned schema migrations for both backends, applied when a backend opens.

Each backend has an ordered list of :class:`Migration`; ``schema_version`` records the ones
applied. A backend applies the missing ones in one transaction that it holds exclusively
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), so several
processes may open the same store at once: the first migrates, the others wait and then find
nothing to do. Never edit a released migration; append a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import StorageError

__all__ = [
    "POSTGRES_MIGRATIONS",
    "SCHEMA_VERSION_TABLE",
    "SQLITE_MIGRATIONS",
    "Migration",
    "pending_migrations",
]


@dataclass(frozen=True, slots=True)
class Migration:
    """Schema version ``version``: statements run in order, in the migration transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " description TEXT NOT NULL,"
    " applied_at TEXT NOT NULL)"
)

SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "databases and records",
        (
            # Timestamps are TEXT in the one fixed-width format records use, so that text
            # order is time order; data is compact JSON text.
            "CREATE TABLE databases ("
            " id TEXT PRIMARY KEY,"
            " max_record_bytes INTEGER NOT NULL,"
            " writes_per_second_per_user REAL,"
            " retention_days INTEGER)",
            "CREATE TABLE records ("
            " database_id TEXT NOT NULL,"
            " key TEXT NOT NULL,"
            " data TEXT NOT NULL,"
            " merge_strategy TEXT NOT NULL,"
            " created_at TEXT NOT NULL,"
            " updated_at TEXT NOT NULL,"
            " PRIMARY KEY (database_id, key))",
            # list_records' order. No index on updated_at: every index slows ingestion by
            # about a third, and cleanup (rare) can scan one database's rows instead.
            "CREATE INDEX records_by_created ON records (database_id, created_at, key)",
        ),
    ),
    Migration(
        2,
        "outbox",
        (
            # One row per record waiting to leave the store (see _outbox.py). Times are
            # milliseconds since the epoch; next_attempt_at doubles as the lease's end while
            # lease is set, so "due" is one indexed range test. version counts re-puts, so an
            # ack never drops a row whose record changed after the claim.
            "CREATE TABLE outbox ("
            " id INTEGER PRIMARY KEY,"
            " database_id TEXT NOT NULL,"
            " key TEXT NOT NULL,"
            " state TEXT NOT NULL,"
            " attempts INTEGER NOT NULL,"
            " next_attempt_at INTEGER NOT NULL,"
            " lease TEXT,"
            " version INTEGER NOT NULL,"
            " queued_at INTEGER NOT NULL,"
            " last_error TEXT,"
            " UNIQUE (database_id, key))",
            "CREATE INDEX outbox_due ON outbox (state, next_attempt_at, id)",
            # Acknowledged rows are deleted; what status reports about them is kept here.
            "CREATE TABLE outbox_exports ("
            " database_id TEXT PRIMARY KEY,"
            " last_export_at INTEGER NOT NULL,"
            " exported INTEGER NOT NULL)",
        ),
    ),
    Migration(
        3,
        "shorter records_by_created index",
        (
            # Without the key: index entries half the size, so a batch of inserts dirties
            # fewer pages (~1.2x the ingest rows/s at 500,000 records). Listing still reads in
            # (created_at, key) order from it, sorting only records created in the same ms.
            "DROP INDEX records_by_created",
            "CREATE INDEX records_by_created ON records (database_id, created_at)",
        ),
    ),
)

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "databases and records",
        (
            # COLLATE "C": ids and keys sort by code point, exactly as SQLite's BINARY does,
            # whatever the server's locale.
            "CREATE TABLE databases ("
            ' id TEXT COLLATE "C" PRIMARY KEY,'
            " max_record_bytes BIGINT NOT NULL,"
            " writes_per_second_per_user DOUBLE PRECISION,"
            " retention_days INTEGER)",
            "CREATE TABLE records ("
            ' database_id TEXT COLLATE "C" NOT NULL,'
            ' key TEXT COLLATE "C" NOT NULL,'
            " data JSONB NOT NULL,"
            " merge_strategy TEXT NOT NULL,"
            " created_at TIMESTAMPTZ NOT NULL,"
            " updated_at TIMESTAMPTZ NOT NULL,"
            " PRIMARY KEY (database_id, key))",
            # list_records' order. No index on updated_at: every index slows ingestion by
            # about a third, and cleanup (rare) can scan one database's rows instead.
            "CREATE INDEX records_by_created ON records (database_id, created_at, key)",
        ),
    ),
    Migration(
        2,
        "outbox",
        (
            # As in SQLite (see there). GENERATED ... AS IDENTITY gives the claim order.
            "CREATE TABLE outbox ("
            " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            ' database_id TEXT COLLATE "C" NOT NULL,'
            ' key TEXT COLLATE "C" NOT NULL,'
            " state TEXT NOT NULL,"
            " attempts INTEGER NOT NULL,"
            " next_attempt_at BIGINT NOT NULL,"
            " lease TEXT,"
            " version BIGINT NOT NULL,"
            " queued_at BIGINT NOT NULL,"
            " last_error TEXT,"
            " UNIQUE (database_id, key))",
            "CREATE INDEX outbox_due ON outbox (state, next_attempt_at, id)",
            "CREATE TABLE outbox_exports ("
            ' database_id TEXT COLLATE "C" PRIMARY KEY,'
            " last_export_at BIGINT NOT NULL,"
            " exported BIGINT NOT NULL)",
        ),
    ),
    Migration(
        3,
        "shorter records_by_created index",
        (
            "DROP INDEX records_by_created",  # as in SQLite (see there)
            "CREATE INDEX records_by_created ON records (database_id, created_at)",
        ),
    ),
)


def pending_migrations(
    current: int, migrations: Sequence[Migration], *, url: str
) -> list[Migration]:
    """The migrations after version ``current``; raise if the store is newer than this code."""
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise StorageError(
            f"storage {url} has schema version {current}, newer than this brickrun supports "
            f"({latest}); upgrade brickrun"
        )
    return [m for m in migrations if m.version > current]
