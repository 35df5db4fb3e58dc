"""The PostgreSQL backend: team databases shared by several hosts (psycopg 3, async).

Each backend holds two connections: one for writes (batches, deletes, limits, cleanup) and one
for reads, each used by one operation at a time, so a read never runs inside a write's
transaction. A connection that breaks (server restart, ``pg_terminate_backend``) is dropped
and replaced on the next call; reads are retried once on a fresh connection, writes are not
(their transaction rolled back, so nothing of them was applied, and the caller is told).

Records' data is a JSONB column. JSONB does not keep the order of an object's keys (it sorts
them, shorter first), so ``get`` and ``list_records`` return objects whose keys iterate in that
order, where SQLite keeps the order they were written in; the records are equal as values. (The
numbers JSONB would change, it cannot: see :func:`._records.encode_json`.)

With ``schema=NAME`` in the URL, every connection's ``search_path`` is that schema alone and
opening creates it if missing; the test suite gives each test its own schema this way.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import unquote

import anyio
import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ..errors import StorageError
from ._base import StorageBackend
from ._batch import PendingPut, RowWrite, StoredRow, TokenBuckets, plan_batch
from ._migrations import POSTGRES_MIGRATIONS, SCHEMA_VERSION_TABLE, pending_migrations
from ._records import (
    DatabaseInfo,
    DatabaseLimits,
    Record,
    decode_json,
    describe_batch,
    encode_json,
    format_millis,
    format_timestamp,
)

__all__ = ["PostgresBackend"]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]

CONNECT_TIMEOUT_S = 10
# A transaction that rolled back entirely can simply run again: after a deadlock (batches lock
# their keys in one order, but a cleanup deleting many rows may not), or when a key the batch
# found missing was created meanwhile (each retry sees more of them exist).
_CONFLICT_ATTEMPTS = 5

_DAY_MS = 86_400_000
_RECORD_COLUMNS = "key, data::text, merge_strategy, created_at, updated_at"
_LIMIT_COLUMNS = "max_record_bytes, writes_per_second_per_user, retention_days"


class PostgresBackend(StorageBackend):
    """Team databases in a PostgreSQL database (tables in ``schema`` if given).

    ``dsn`` is a libpq URL and may hold a password; ``url`` is its display form, used in every
    message, and ``secrets`` are scrubbed from any server or driver message quoted.
    """

    def __init__(
        self,
        dsn: str,
        *,
        url: str,
        schema: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        super().__init__(url)
        self._dsn = dsn
        self._schema = schema
        self._secrets = sorted({*secrets, *(unquote(s) for s in secrets)}, key=len, reverse=True)
        self._write_conn: Conn | None = None
        self._read_conn: Conn | None = None
        self._write_lock = anyio.Lock()
        self._read_lock = anyio.Lock()
        self._buckets = TokenBuckets()

    # --- connections ---------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _fail(self, action: str, error: BaseException) -> StorageError:
        detail = self._scrub(str(error).strip()) or type(error).__name__
        if isinstance(error, psycopg.OperationalError):
            detail = f"the connection failed or was lost: {detail}"
        return StorageError(f"PostgreSQL database {self.url}: {action} failed: {detail}")

    async def _connect(self) -> Conn:
        options: dict[str, Any] = {}
        try:
            if "connect_timeout" not in conninfo_to_dict(self._dsn):
                options["connect_timeout"] = CONNECT_TIMEOUT_S
            conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, **options)
        except psycopg.Error as error:
            message = self._scrub(str(error).strip())
            raise StorageError(
                f"cannot connect to PostgreSQL database {self.url}: {message}"
            ) from None
        try:
            # UTC sessions, so timestamps come back in UTC whatever the server's TimeZone is.
            await conn.execute("SET TIME ZONE 'UTC'")
            if self._schema is not None:
                await conn.execute(
                    sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema))
                )
        except BaseException as error:
            await _close_quietly(conn)
            if isinstance(error, psycopg.Error):
                raise self._fail("setting up the connection", error) from None
            raise
        return conn

    async def _open(self) -> None:
        try:
            self._write_conn = await self._connect()
            try:
                await self._migrate(self._write_conn)
            except psycopg.Error as error:
                raise self._fail("migrating the schema", error) from None
            self._read_conn = await self._connect()
        except BaseException:
            await self._close()
            raise

    async def _migrate(self, conn: Conn) -> None:
        # The advisory lock serializes concurrent openers (CREATE ... IF NOT EXISTS alone is
        # not safe against a concurrent CREATE); it is released when the transaction ends.
        lock = _lock_id("brickrun-migrations", self._schema or "")
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            if self._schema is not None:
                await conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema))
                )
            await conn.execute(SCHEMA_VERSION_TABLE)
            cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            row = await cursor.fetchone()
            current = int(row[0]) if row else 0
            for migration in pending_migrations(current, POSTGRES_MIGRATIONS, url=self.url):
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version VALUES (%s, %s, %s)",
                    (
                        migration.version,
                        migration.description,
                        format_timestamp(datetime.now(UTC)),
                    ),
                )

    async def _close(self) -> None:
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                conn, self._write_conn = self._write_conn, None
                if conn is not None:
                    await _close_quietly(conn)
            async with self._read_lock:
                conn, self._read_conn = self._read_conn, None
                if conn is not None:
                    await _close_quietly(conn)

    async def _read(self, action: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` on the read connection; retry once on a fresh one if it broke."""
        async with self._read_lock:
            for attempt in (1, 2):
                if self._read_conn is None or self._read_conn.broken or self._read_conn.closed:
                    await self._discard_read()
                    self._read_conn = await self._connect()
                conn = self._read_conn
                try:
                    return await fn(conn)
                except psycopg.OperationalError as error:
                    broken = conn.broken or conn.closed
                    await self._discard_read()
                    if broken and attempt == 1:
                        continue
                    raise self._fail(action, error) from None
                except psycopg.Error as error:
                    raise self._fail(action, error) from None
                except BaseException:
                    # Cancelled mid-query: the connection's state is unknown.
                    await self._discard_read()
                    raise
        raise AssertionError("unreachable")

    async def _discard_read(self) -> None:
        conn, self._read_conn = self._read_conn, None
        if conn is not None:
            await _close_quietly(conn)

    async def _transaction(self, action: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` in a transaction on the write connection, re-running it on a deadlock.

        A broken connection is replaced on the next call, never retried here: the caller gets
        a :class:`StorageError` and the transaction's effects are all rolled back.
        """
        async with self._write_lock:
            for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
                if self._write_conn is None or self._write_conn.broken or self._write_conn.closed:
                    await self._discard_write()
                    self._write_conn = await self._connect()
                conn = self._write_conn
                try:
                    async with conn.transaction():
                        return await fn(conn)
                except (
                    psycopg.errors.DeadlockDetected,
                    psycopg.errors.SerializationFailure,
                    _KeyCreatedMeanwhile,
                ) as error:
                    if attempt == _CONFLICT_ATTEMPTS:
                        raise self._fail(action, error) from None
                except psycopg.Error as error:
                    if conn.broken or conn.closed:
                        await self._discard_write()
                    raise self._fail(action, error) from None
                except BaseException:
                    await self._discard_write()
                    raise
        raise AssertionError("unreachable")

    async def _discard_write(self) -> None:
        conn, self._write_conn = self._write_conn, None
        if conn is not None:
            await _close_quietly(conn)

    # --- writes --------------------------------------------------------------------------------

    async def _write_batch(self, ops: list[PendingPut]) -> None:
        spent: list[tuple[str, str]] = []

        async def apply(conn: Conn) -> None:
            # A retried attempt starts over: forget the outcomes of the rolled-back one.
            self._buckets.refund(spent)
            spent.clear()
            for op in ops:
                op.result = op.error = None
            idents = sorted({(op.database, op.key) for op in ops})
            names = sorted({op.database for op in ops})
            limits = await _load_limits(conn, names)
            # Locks the records that exist, in one global order; see _insert_new for the others.
            existing = await _load_rows(conn, idents)
            writes, tokens = plan_batch(
                ops, existing, {n: limits.get(n) or DatabaseLimits() for n in names}, self._buckets
            )
            spent.extend(tokens)
            created = sorted({w.database for w in writes} - limits.keys())
            if created:
                defaults = DatabaseLimits()
                await conn.execute(
                    f"INSERT INTO databases (id, {_LIMIT_COLUMNS})"
                    " SELECT n, %s, %s, %s FROM unnest(%s::text[]) AS t(n)"
                    " ON CONFLICT (id) DO NOTHING",
                    (
                        defaults.max_record_bytes,
                        defaults.writes_per_second_per_user,
                        defaults.retention_days,
                        created,
                    ),
                )
            updates = [w for w in writes if (w.database, w.key) in existing]
            if updates:
                await conn.execute(
                    "UPDATE records AS r SET data = e->2, merge_strategy = e->>3,"
                    " updated_at = (e->>5)::timestamptz"
                    " FROM jsonb_array_elements(%s::jsonb) AS t(e)"
                    " WHERE r.database_id = e->>0 AND r.key = e->>1",
                    (_rows_json(updates),),
                )
            await _insert_new(conn, [w for w in writes if (w.database, w.key) not in existing])

        try:
            await self._transaction(f"writing {describe_batch(len(ops))}", apply)
        except BaseException:
            self._buckets.refund(spent)
            raise

    async def _delete(self, database: str, key: str) -> bool:
        async def run(conn: Conn) -> bool:
            cursor = await conn.execute(
                "DELETE FROM records WHERE database_id = %s AND key = %s", (database, key)
            )
            return cursor.rowcount > 0

        return await self._transaction(f"deleting record {key!r} of database {database!r}", run)

    async def _set_limits(self, database: str, limits: DatabaseLimits) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(
                f"INSERT INTO databases (id, {_LIMIT_COLUMNS}) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET max_record_bytes = excluded.max_record_bytes,"
                " writes_per_second_per_user = excluded.writes_per_second_per_user,"
                " retention_days = excluded.retention_days",
                (
                    database,
                    limits.max_record_bytes,
                    limits.writes_per_second_per_user,
                    limits.retention_days,
                ),
            )

        await self._transaction(f"setting the limits of database {database!r}", run)

    async def _cleanup(self, database: str, now: int) -> int:
        async def run(conn: Conn) -> int:
            limits = (await _load_limits(conn, [database])).get(database)
            if limits is None or limits.retention_days is None:
                return 0
            cutoff = format_millis(now - limits.retention_days * _DAY_MS)
            cursor = await conn.execute(
                "DELETE FROM records WHERE database_id = %s AND updated_at < %s::timestamptz",
                (database, cutoff),
            )
            return cursor.rowcount

        return await self._transaction(f"cleaning up database {database!r}", run)

    # --- reads ---------------------------------------------------------------------------------

    async def _get(self, database: str, key: str) -> Record | None:
        async def run(conn: Conn) -> Record | None:
            cursor = await conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE database_id = %s AND key = %s",
                (database, key),
            )
            row = await cursor.fetchone()
            return _record(row) if row is not None else None

        return await self._read(f"reading record {key!r} of database {database!r}", run)

    async def _list_records(
        self, database: str, limit: int | None, offset: int, since: str | None
    ) -> list[Record]:
        where = "database_id = %s" + ("" if since is None else " AND created_at >= %s")
        params = (database,) if since is None else (database, since)

        async def run(conn: Conn) -> list[Record]:
            cursor = await conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE {where}"
                " ORDER BY created_at, key LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
            return [_record(row) for row in await cursor.fetchall()]

        return await self._read(f"listing records of database {database!r}", run)

    async def _count(self, database: str) -> int:
        async def run(conn: Conn) -> int:
            cursor = await conn.execute(
                "SELECT count(*) FROM records WHERE database_id = %s", (database,)
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

        return await self._read(f"counting records of database {database!r}", run)

    async def _list_databases(self) -> list[DatabaseInfo]:
        async def run(conn: Conn) -> list[DatabaseInfo]:
            cursor = await conn.execute(
                f"SELECT id, {_LIMIT_COLUMNS},"
                " (SELECT count(*) FROM records r WHERE r.database_id = d.id)"
                " FROM databases d ORDER BY id"
            )
            return [
                DatabaseInfo(row[0], int(row[4]), _limits(row[1:4]))
                for row in await cursor.fetchall()
            ]

        return await self._read("listing databases", run)

    async def _get_limits(self, database: str) -> DatabaseLimits | None:
        async def run(conn: Conn) -> DatabaseLimits | None:
            return (await _load_limits(conn, [database])).get(database)

        return await self._read(f"reading the limits of database {database!r}", run)


async def _close_quietly(conn: Conn) -> None:
    with anyio.CancelScope(shield=True):
        # A broken connection may fail to close; there is nothing left to release then.
        with contextlib.suppress(psycopg.Error):
            await conn.close()


def _lock_id(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for ``parts`` (collisions only cost waiting)."""
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _rows_json(writes: list[RowWrite]) -> str:
    """``[[database, key, data, strategy, created_at, updated_at], ...]`` as JSON text."""
    return (
        "["
        + ",".join(
            f"[{encode_json(w.database)},{encode_json(w.key)},{w.data_json},"
            f'"{w.merge_strategy}","{w.created_at}","{w.updated_at}"]'
            for w in writes
        )
        + "]"
    )


def _limits(row: Sequence[Any]) -> DatabaseLimits:
    return DatabaseLimits(int(row[0]), row[1], row[2])


class _KeyCreatedMeanwhile(Exception):
    """A key the batch found missing was created by a concurrent transaction: run again."""


async def _insert_new(conn: Conn, writes: list[RowWrite]) -> None:
    """Insert the records of keys that had none when the batch read them.

    Nothing locks a row that does not exist, so another transaction may create one of these
    keys meanwhile; the insert then skips it (waiting for that transaction to commit) and
    :class:`_KeyCreatedMeanwhile` makes the batch run again, this time merging into the new
    record. Locking missing keys instead would take one lock-table entry per key (advisory
    locks) or write every new record twice (placeholder rows).
    """
    if not writes:
        return
    # Sorted, as every batch inserts: two batches creating the same keys wait on each other
    # in one order and cannot deadlock.
    writes = sorted(writes, key=lambda w: (w.database, w.key))
    cursor = await conn.execute(
        "INSERT INTO records (database_id, key, data, merge_strategy, created_at, updated_at)"
        " SELECT e->>0, e->>1, e->2, e->>3, (e->>4)::timestamptz, (e->>5)::timestamptz"
        " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS t(e, n) ORDER BY n"
        " ON CONFLICT (database_id, key) DO NOTHING RETURNING 1",
        (_rows_json(writes),),
    )
    if len(await cursor.fetchall()) != len(writes):
        raise _KeyCreatedMeanwhile("another writer created one of the batch's new keys")


async def _load_limits(conn: Conn, names: list[str]) -> dict[str, DatabaseLimits]:
    cursor = await conn.execute(
        f"SELECT id, {_LIMIT_COLUMNS} FROM databases WHERE id = ANY(%s::text[])", (names,)
    )
    return {row[0]: _limits(row[1:]) for row in await cursor.fetchall()}


async def _load_rows(conn: Conn, idents: list[tuple[str, str]]) -> dict[tuple[str, str], StoredRow]:
    # FOR UPDATE: concurrent batches, deletes and cleanups of these rows wait for this one, so
    # the merge reads the latest record and nobody overwrites it in between. ORDER BY makes
    # every batch take its locks in the same order.
    cursor = await conn.execute(
        "SELECT r.database_id, r.key, r.data::text, r.merge_strategy, r.created_at, r.updated_at"
        " FROM records r JOIN unnest(%s::text[], %s::text[]) AS t(d, k)"
        " ON r.database_id = t.d AND r.key = t.k"
        " ORDER BY r.database_id, r.key FOR UPDATE OF r",
        ([d for d, _ in idents], [k for _, k in idents]),
    )
    found: dict[tuple[str, str], StoredRow] = {}
    for database, key, data, strategy, created, updated in await cursor.fetchall():
        found[(database, key)] = StoredRow(
            data,
            len(data.encode("utf-8")),
            strategy,
            format_timestamp(created),
            format_timestamp(updated),
        )
    return found


def _record(row: Sequence[Any]) -> Record:
    key, data, strategy, created, updated = row
    return {
        "id": key,
        "data": decode_json(data),
        "merge_strategy": strategy,
        "created_at": format_timestamp(created),
        "updated_at": format_timestamp(updated),
    }
