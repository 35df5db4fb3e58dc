"""The PostgreSQL backend: team databases shared by several hosts (psycopg 3, async).

Each backend holds two connections: one for writes (batches, deletes, limits, cleanup) and one
for reads, each used by one operation at a time, so a read never runs inside a write's
transaction. A batch of puts takes two round trips in pipeline mode (BEGIN with its reads;
its writes with COMMIT), three when it merges into keys that did not exist: keys that are only
replaced are not read but upserted, which also tells their ``created_at``. A connection that
breaks (server restart, ``pg_terminate_backend``) is dropped and replaced on the next call;
reads are retried once on a fresh connection, writes are not (their transaction rolled back,
so nothing of them was applied, and the caller is told).

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
import json
import time
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
from ._batch import (
    PendingPut,
    RowWrite,
    StoredRow,
    TokenBuckets,
    keys_to_read,
    outbox_keys,
    plan_batch,
)
from ._groups import EventGroup, GroupDecoder
from ._migrations import POSTGRES_MIGRATIONS, SCHEMA_VERSION_TABLE, pending_migrations
from ._outbox import OutboxItem, OutboxStatus, build_status
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
_DEFAULT_LIMITS = DatabaseLimits()


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

    async def _transaction(
        self,
        action: str,
        fn: Callable[[Conn], Awaitable[T]],
        *,
        durable: bool = True,
        pipeline: bool = False,
    ) -> T:
        """Run ``fn`` in a transaction on the write connection, re-running it on a deadlock.

        A broken connection is replaced on the next call, never retried here: the caller gets
        a :class:`StorageError` and the transaction's effects are all rolled back.
        ``durable=False`` commits without waiting for the WAL flush (``synchronous_commit =
        off``): for outbox transitions only, whose loss in a server crash is harmless (a lost
        lease or schedule makes rows due again, a lost ack re-sends: at-least-once).
        ``pipeline=True`` runs it in pipeline mode: statements are sent without waiting for
        their results until ``fn`` fetches one, and COMMIT goes with the last of them.
        """
        async with self._write_lock:
            for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
                if self._write_conn is None or self._write_conn.broken or self._write_conn.closed:
                    await self._discard_write()
                    self._write_conn = await self._connect()
                conn = self._write_conn
                try:
                    async with contextlib.AsyncExitStack() as stack:
                        if pipeline:
                            await stack.enter_async_context(conn.pipeline())
                        async with conn.transaction():
                            if not durable:
                                await conn.execute("SET LOCAL synchronous_commit = off")
                            result = await fn(conn)
                    return result
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
        upserted: list[psycopg.AsyncCursor[Any]] = []

        async def apply(conn: Conn) -> None:
            # A retried attempt starts over: forget the outcomes of the rolled-back one.
            self._buckets.refund(spent)
            spent.clear()
            upserted.clear()
            for op in ops:
                op.reset()
            names = sorted({op.database for op in ops})
            # Only merged keys are read (and locked, in one global order; see _insert_new for
            # those missing): replaced keys are upserted, which tells their created_at.
            merged = sorted(
                (database, key)
                for database, keys in keys_to_read(ops, records=False).items()
                for key in keys
            )
            # Pipeline mode: the reads go with BEGIN in one round trip, and the writes with
            # COMMIT in another (a third only if new merged keys must be checked).
            limits_cursor = await _load_limits(conn, names)
            existing = await _load_rows(conn, merged) if merged else {}
            limits = {row[0]: _limits(row[1:]) for row in await limits_cursor.fetchall()}
            writes, tokens = plan_batch(
                ops, existing, {n: limits.get(n) or _DEFAULT_LIMITS for n in names}, self._buckets
            )
            spent.extend(tokens)
            created = sorted({w.database for w in writes} - limits.keys())
            if created:
                await conn.execute(
                    f"INSERT INTO databases (id, {_LIMIT_COLUMNS})"
                    " SELECT n, %s, %s, %s FROM unnest(%s::text[]) AS t(n)"
                    " ON CONFLICT (id) DO NOTHING",
                    (*_limits_row(_DEFAULT_LIMITS), created),
                )
            merged_set = set(merged)
            updates, inserts, replaced = [], [], []
            for write in writes:
                ident = (write.database, write.key)
                if ident not in merged_set:
                    replaced.append(write)
                elif ident in existing:
                    updates.append(write)
                else:
                    inserts.append(write)
            if updates:
                await conn.execute(
                    "UPDATE records AS r SET data = e->2, merge_strategy = e->>3,"
                    " updated_at = (e->>5)::timestamptz"
                    " FROM jsonb_array_elements(%s::jsonb) AS t(e)"
                    " WHERE r.database_id = e->>0 AND r.key = e->>1",
                    (_rows_json(updates),),
                )
            if replaced:
                returning = any(op.wants_record and op.written for op in ops)
                upserted.append(await _upsert(conn, replaced, returning))
            queued = outbox_keys(ops)
            if queued:
                # Wall-clock time, not the puts' now: a replay on a virtual clock must not
                # schedule its exports years away.
                wall = time.time_ns() // 1_000_000
                await conn.execute(_ENQUEUE_SQL, (wall, wall, json.dumps(queued)))
            await _insert_new(conn, inserts)

        try:
            await self._transaction(f"writing {describe_batch(len(ops))}", apply, pipeline=True)
        except BaseException:
            self._buckets.refund(spent)
            raise
        if upserted and upserted[0].description is not None:
            # The created_at of replaced keys, as the upsert kept or set it (plan_batch took
            # every replaced key for new). Read after the commit: no round trip of its own.
            created_at = {
                (database, key): format_timestamp(created)
                for database, key, created in await upserted[0].fetchall()
            }
            for op in ops:
                if op.wants_record and op.written and (op.database, op.key) in created_at:
                    op.created_at = created_at[(op.database, op.key)]

    async def _delete(self, database: str, key: str) -> bool:
        async def run(conn: Conn) -> bool:
            cursor = await conn.execute(
                "DELETE FROM records WHERE database_id = %s AND key = %s", (database, key)
            )
            await conn.execute(
                "DELETE FROM outbox WHERE database_id = %s AND key = %s", (database, key)
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
            limits = (await _read_limits(conn, [database])).get(database)
            if limits is None or limits.retention_days is None:
                return 0
            cutoff = format_millis(now - limits.retention_days * _DAY_MS)
            # Records still in the outbox (pending, leased or dead) are not exported yet.
            cursor = await conn.execute(
                "DELETE FROM records r WHERE r.database_id = %s"
                " AND r.updated_at < %s::timestamptz AND NOT EXISTS"
                " (SELECT 1 FROM outbox o WHERE o.database_id = r.database_id AND o.key = r.key)",
                (database, cutoff),
            )
            return cursor.rowcount

        return await self._transaction(f"cleaning up database {database!r}", run)

    # --- outbox --------------------------------------------------------------------------------

    async def _outbox_claim(
        self, limit: int, database: str | None, now: int, until: int, lease: str
    ) -> list[OutboxItem]:
        where = "state = 'pending' AND next_attempt_at <= %s"
        params: tuple[Any, ...] = (now,)
        if database is not None:
            where, params = where + " AND database_id = %s", (now, database)

        async def run(conn: Conn) -> list[OutboxItem]:
            # SKIP LOCKED: rows another claimer is leasing right now are passed over, so
            # concurrent exporters split the due rows instead of queueing behind each other.
            cursor = await conn.execute(
                "WITH due AS (SELECT id, next_attempt_at FROM outbox WHERE " + where + " ORDER BY"
                " next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED),"
                " claimed AS (UPDATE outbox o SET lease = %s, next_attempt_at = %s,"
                " attempts = o.attempts + 1 FROM due WHERE o.id = due.id"
                " RETURNING o.id, o.database_id, o.key, o.attempts, o.version,"
                " due.next_attempt_at AS due_at)"
                " SELECT c.id, c.database_id, c.key, c.attempts, c.version, r.data::text,"
                " r.merge_strategy, r.created_at, r.updated_at FROM claimed c"
                " LEFT JOIN records r ON r.database_id = c.database_id AND r.key = c.key"
                " ORDER BY c.due_at, c.id",
                (*params, limit, lease, until),
            )
            rows = await cursor.fetchall()
            return [_outbox_item(row, lease) for row in rows]

        return await self._transaction("claiming outbox rows", run, durable=False, pipeline=True)

    async def _outbox_ack(self, items: list[OutboxItem], now: int) -> int:
        claims = _claims_json(items)

        async def run(conn: Conn) -> int:
            cursor = await conn.execute(
                f"DELETE FROM outbox o USING {_CLAIMS} WHERE {_HELD} AND o.version = t.version"
                " RETURNING o.database_id",
                (claims,),
            )
            exported: dict[str, int] = {}
            for (database,) in await cursor.fetchall():
                exported[database] = exported.get(database, 0) + 1
            if sum(exported.values()) < len(items):
                # Still held after that: put again since the claim; the new version is due now.
                await conn.execute(
                    f"UPDATE outbox o SET lease = NULL, next_attempt_at = %s FROM {_CLAIMS}"
                    f" WHERE {_HELD}",
                    (now, claims),
                )
            for database, count in sorted(exported.items()):
                await conn.execute(
                    "INSERT INTO outbox_exports AS e (database_id, last_export_at, exported)"
                    " VALUES (%s, %s, %s) ON CONFLICT (database_id) DO UPDATE SET"
                    " last_export_at = greatest(e.last_export_at, excluded.last_export_at),"
                    " exported = e.exported + excluded.exported",
                    (database, now, count),
                )
            return sum(exported.values())

        return await self._transaction(
            f"acknowledging {len(items)} outbox row(s)", run, durable=False, pipeline=True
        )

    async def _outbox_retry(
        self, items: list[OutboxItem], next_attempt_at: int, error: str, count_attempt: bool
    ) -> int:
        claims = _claims_json(items)
        refund = 0 if count_attempt else 1

        async def run(conn: Conn) -> int:
            cursor = await conn.execute(
                "UPDATE outbox o SET lease = NULL, next_attempt_at = %s, last_error = %s,"
                f" attempts = greatest(0, o.attempts - %s) FROM {_CLAIMS} WHERE {_HELD}",
                (next_attempt_at, error, refund, claims),
            )
            return cursor.rowcount

        return await self._transaction(
            f"rescheduling {len(items)} outbox row(s)", run, durable=False
        )

    async def _outbox_dead(self, items: list[OutboxItem], reason: str, now: int) -> int:
        claims = _claims_json(items)

        async def run(conn: Conn) -> int:
            cursor = await conn.execute(
                "UPDATE outbox o SET state = 'dead', lease = NULL, next_attempt_at = %s,"
                f" last_error = %s FROM {_CLAIMS} WHERE {_HELD} AND o.version = t.version",
                (now, reason, claims),
            )
            if cursor.rowcount < len(items):
                # Put again since the claim: the verdict was about an older version.
                await conn.execute(
                    f"UPDATE outbox o SET lease = NULL, next_attempt_at = %s FROM {_CLAIMS}"
                    f" WHERE {_HELD}",
                    (now, claims),
                )
            return cursor.rowcount

        return await self._transaction(
            f"dead-lettering {len(items)} outbox row(s)", run, durable=False
        )

    async def _outbox_requeue(self, database: str | None, now: int) -> int:
        where = "state = 'dead'" + ("" if database is None else " AND database_id = %s")
        params = (now,) if database is None else (now, database)

        async def run(conn: Conn) -> int:
            cursor = await conn.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = %s,"
                f" last_error = NULL WHERE {where}",
                params,
            )
            return cursor.rowcount

        return await self._transaction("requeueing dead outbox rows", run)

    async def _outbox_status(self, database: str | None, now: int, limit: int) -> OutboxStatus:
        where = "" if database is None else " AND database_id = %s"
        params: tuple[Any, ...] = () if database is None else (database,)

        async def run(conn: Conn) -> OutboxStatus:
            # One snapshot for every figure.
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor = await conn.execute(
                    "SELECT CASE WHEN state = 'pending' AND lease IS NOT NULL"
                    " AND next_attempt_at > %s THEN 'leased' ELSE state END, count(*)"
                    f" FROM outbox WHERE true{where} GROUP BY 1",
                    (now, *params),
                )
                counts = await cursor.fetchall()
                cursor = await conn.execute(
                    f"SELECT min(queued_at) FROM outbox WHERE state = 'pending'{where}", params
                )
                oldest = await cursor.fetchone()
                cursor = await conn.execute(
                    "SELECT max(last_export_at), coalesce(sum(exported), 0) FROM outbox_exports"
                    f" WHERE true{where}",
                    params,
                )
                exports = await cursor.fetchone()
                cursor = await conn.execute(
                    "SELECT database_id, key, attempts, last_error, next_attempt_at FROM outbox"
                    f" WHERE state = 'dead'{where} ORDER BY next_attempt_at, id LIMIT %s",
                    (*params, limit),
                )
                dead = await cursor.fetchall()
            assert oldest is not None and exports is not None
            return build_status(
                [(state, int(count)) for state, count in counts],
                None if oldest[0] is None else int(oldest[0]),
                (None if exports[0] is None else int(exports[0]), int(exports[1])),
                [(d, k, int(a), e, int(t)) for d, k, a, e, t in dead],
                now,
            )

        return await self._read("reading the outbox status", run)

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

    async def _group_events(self, database: str, since: str | None) -> list[EventGroup]:
        statement = _GROUP_EVENTS_SQL.format(since="" if since is None else " AND created_at >= %s")
        params = (database,) if since is None else (database, since)

        async def run(conn: Conn) -> list[EventGroup]:
            async with conn.transaction():
                for setting in _GROUP_EVENTS_SETTINGS:
                    await conn.execute(setting)
                cursor = await conn.execute(statement, params)
                rows = await cursor.fetchall()
            decoder = GroupDecoder()
            return [decoder.group(*row) for row in rows]

        return await self._read(f"grouping the events of database {database!r}", run)

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
            return (await _read_limits(conn, [database])).get(database)

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


# Upsert of outbox rows from a JSON array of [database, key], sorted so that concurrent batches
# lock them in one order: a row queued again stays as it is (keeping its lease and schedule)
# but gets a new version; a dead row starts over.
_ENQUEUE_SQL = (
    "INSERT INTO outbox AS o (database_id, key, state, attempts, next_attempt_at, lease,"
    " version, queued_at, last_error)"
    " SELECT e->>0, e->>1, 'pending', 0, %s, NULL, 0, %s, NULL"
    " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS t(e, n) ORDER BY n"
    " ON CONFLICT (database_id, key) DO UPDATE SET version = o.version + 1,"
    " state = 'pending',"
    " attempts = CASE WHEN o.state = 'dead' THEN 0 ELSE o.attempts END,"
    " next_attempt_at = CASE WHEN o.state = 'dead' THEN excluded.next_attempt_at"
    " ELSE o.next_attempt_at END,"
    " queued_at = CASE WHEN o.state = 'dead' THEN excluded.queued_at ELSE o.queued_at END,"
    " last_error = CASE WHEN o.state = 'dead' THEN NULL ELSE o.last_error END"
)
# Claims as a JSON array of [id, lease, version] (JSON: psycopg adapts a list of strings
# ~25 times slower than the same strings in one JSON text), and the rows still held under them.
_CLAIMS = (
    "(SELECT (e->>0)::bigint AS id, e->>1 AS lease, (e->>2)::bigint AS version"
    " FROM jsonb_array_elements(%s::jsonb) AS x(e)) AS t"
)
_HELD = "o.id = t.id AND o.lease = t.lease"


# group_events (see _groups.EventGroup). The innermost query reads each field once (OFFSET 0
# keeps PostgreSQL from inlining it, which would repeat the reads for every mention); groups
# are by JSONB values, cast to text only for the few rows out (psycopg would decode JSON with
# json.loads; GroupDecoder decodes each distinct text once). A NULL test counts as false.
_GROUP_EVENTS_SQL = (
    "SELECT day, nm::text, cx::text, details::text, n, errors, durations FROM ("
    " SELECT day, nm, cx, details, count(*) AS n, count(*) FILTER (WHERE er) AS errors,"
    " string_agg(du::text, ',') FILTER (WHERE jsonb_typeof(du) = 'number' AND du >= '0')"
    " AS durations FROM ("
    " SELECT substr(ts #>> '{{}}', 1, 10) AS day, nm, CASE WHEN usable THEN cx END AS cx,"
    " CASE WHEN usable THEN NULL ELSE jsonb_build_array(data->'event', data->'url',"
    " data#>'{{source,starterBrickName}}', data#>'{{source,modComponentLabel}}') END AS details,"
    " coalesce(jsonb_typeof(er), 'null') <> 'null' AS er, du FROM ("
    " SELECT data, data->'timestamp' AS ts, data->'name' AS nm, data->'context' AS cx,"
    " data->'error' AS er, data->'duration_ms' AS du,"
    " coalesce(jsonb_typeof(data->'name') = 'string' AND jsonb_typeof(data->'context') ="
    " 'string' AND data->>'context' <> '', false) AS usable"
    " FROM records WHERE database_id = %s{since} OFFSET 0) AS r"
    " WHERE jsonb_typeof(ts) = 'string' AND length(ts #>> '{{}}') >= 10) AS f"
    " GROUP BY day, nm, cx, details) AS g"
)
# Without statistics (a table just filled, or autovacuum off) the planner sorts the rows to
# group them, on disk past work_mem: seconds for a million. Hashing keeps the few groups in
# memory (and spills, if ever, without sorting every row first).
_GROUP_EVENTS_SETTINGS = ("SET LOCAL work_mem = '64MB'", "SET LOCAL enable_sort = off")


def _claims_json(items: list[OutboxItem]) -> str:
    return json.dumps([[item.id, item.lease, item.version] for item in items])


def _outbox_item(row: Sequence[Any], lease: str) -> OutboxItem:
    ident, database, key, attempts, version, data, strategy, created, updated = row
    record: Record | None = None
    if strategy is not None:
        record = {
            "id": key,
            "data": decode_json(data),
            "merge_strategy": strategy,
            "created_at": format_timestamp(created),
            "updated_at": format_timestamp(updated),
        }
    return OutboxItem(int(ident), database, key, int(attempts), record, lease, int(version))


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


async def _load_limits(conn: Conn, names: list[str]) -> psycopg.AsyncCursor[Any]:
    """The cursor of the query for the stored limits of ``names``: fetch its rows when needed
    (in pipeline mode, the query is only sent until then)."""
    return await conn.execute(
        f"SELECT id, {_LIMIT_COLUMNS} FROM databases WHERE id = ANY(%s::text[])", (names,)
    )


async def _read_limits(conn: Conn, names: list[str]) -> dict[str, DatabaseLimits]:
    cursor = await _load_limits(conn, names)
    return {row[0]: _limits(row[1:]) for row in await cursor.fetchall()}


def _limits_row(limits: DatabaseLimits) -> tuple[Any, ...]:
    return (limits.max_record_bytes, limits.writes_per_second_per_user, limits.retention_days)


async def _upsert(conn: Conn, writes: list[RowWrite], returning: bool) -> psycopg.AsyncCursor[Any]:
    """Insert or update the rows of keys that were not read (only replaced by their puts);
    with ``returning``, the cursor yields each row's (database, key, created_at)."""
    # Sorted, as every batch writes: concurrent batches lock the same keys in one order.
    writes = sorted(writes, key=lambda w: (w.database, w.key))
    return await conn.execute(
        "INSERT INTO records AS r (database_id, key, data, merge_strategy, created_at,"
        " updated_at)"
        " SELECT e->>0, e->>1, e->2, e->>3, (e->>4)::timestamptz, (e->>5)::timestamptz"
        " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS t(e, n) ORDER BY n"
        " ON CONFLICT (database_id, key) DO UPDATE SET data = excluded.data,"
        " merge_strategy = excluded.merge_strategy, updated_at = excluded.updated_at"
        + (" RETURNING r.database_id, r.key, r.created_at" if returning else ""),
        (_rows_json(writes),),
    )


async def _load_rows(conn: Conn, idents: list[tuple[str, str]]) -> dict[tuple[str, str], StoredRow]:
    # FOR UPDATE: concurrent batches, deletes and cleanups of these rows wait for this one, so
    # the merge reads the latest record and nobody overwrites it in between. ORDER BY makes
    # every batch take its locks in the same order.
    cursor = await conn.execute(
        "SELECT r.database_id, r.key, r.data::text, r.merge_strategy, r.created_at, r.updated_at"
        " FROM records r JOIN (SELECT e->>0 AS d, e->>1 AS k"
        " FROM jsonb_array_elements(%s::jsonb) AS x(e)) AS t"
        " ON r.database_id = t.d AND r.key = t.k"
        " ORDER BY r.database_id, r.key FOR UPDATE OF r",
        (json.dumps(idents),),
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
