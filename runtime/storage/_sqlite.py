"""The SQLite backend: team databases in one local file (the default store).

The file is in WAL mode, so readers never wait for the writer and the writer never waits for
readers; writers of several processes take turns through ``BEGIN IMMEDIATE`` and
``busy_timeout``. Every blocking call runs in a worker thread (``anyio.to_thread``), one batch
per call. Two connections per backend: one for writes, one for reads (an in-memory database
has a single connection, since a second one would open a different database); ``group_events``
adds a second reader, so that grouping a large database uses two cores.

The worker thread gives up the GIL inside every ``sqlite3_step`` and must win it back from the
event loop each time, which can take a whole switch interval (5 ms) when the loop is busy. So
the statements here are shaped to take few steps: many rows per ``INSERT`` (one statement per
512 rows, from a few dozen cached sizes), and multi-row reads folded into one
``json_group_array`` row (a batch reads its databases' limits and its stored rows in one).
With ``executemany`` a batch of 1,000 slowed down 20-fold while the event loop was busy.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

import anyio.to_thread

from ..errors import StorageError
from . import _switch
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
from ._migrations import SCHEMA_VERSION_TABLE, SQLITE_MIGRATIONS, pending_migrations
from ._outbox import OutboxItem, OutboxStatus, build_status
from ._records import (
    DatabaseInfo,
    DatabaseLimits,
    Record,
    decode_json,
    describe_batch,
    format_millis,
    format_timestamp,
    json_size,
)

__all__ = ["SQLiteBackend"]

T = TypeVar("T")

BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another process's write transaction before giving up."""

# Rows per INSERT statement: a power of two (so a multiple of 16 when halved, see
# _statement_rows), times 6 columns within SQLite's bound-parameter limit (32,766 since SQLite
# 3.32; 999 before).
_MAX_ROWS_PER_INSERT = 512
_DAY_MS = 86_400_000
_LIST_PAGE = 2000  # rows per read of list_records
_GROUP_PAGE = 2000  # groups per row of group_events
_RECORD_COLUMNS = "key, data, merge_strategy, created_at, updated_at"
_LIMIT_COLUMNS = "max_record_bytes, writes_per_second_per_user, retention_days"
_DEFAULT_LIMITS = DatabaseLimits()
WRITE_CACHE_KIB = 64 * 1024
"""The writing connection's page cache (SQLite's default is 2 MiB)."""
WAL_CHECKPOINT_PAGES = 10_000
"""Pages (4 KiB) the write-ahead log may reach before a commit copies it into the file."""


class SQLiteBackend(StorageBackend):
    """Team databases in the SQLite file ``path`` (``None``: a private in-memory database).

    ``synchronous`` is SQLite's ``PRAGMA synchronous``: ``FULL`` (default) makes every
    acknowledged batch survive a power cut; ``NORMAL`` survives a crash of the process only.
    """

    def __init__(self, path: str | None, *, url: str, synchronous: str = "FULL") -> None:
        super().__init__(url)
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise StorageError(
                f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r} ({url})"
            )
        self._path = path
        self._synchronous = synchronous.upper()
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._read_lock = self._write_lock if path is None else threading.Lock()
        # group_events' second reader (a file only), opened on first use.
        self._spare_conn: sqlite3.Connection | None = None
        self._spare_lock = threading.Lock()
        self._buckets = TokenBuckets()
        self._rows_per_insert = _MAX_ROWS_PER_INSERT
        self._switch_held = False

    # --- connections ---------------------------------------------------------------------------

    async def _open(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._open_sync)
        except BaseException:
            await self._close()
            raise
        _switch.acquire()  # see _switch: the writer thread must get the GIL back quickly
        self._switch_held = True

    def _open_sync(self) -> None:
        try:
            self._write_conn = self._connect()
            self._migrate(self._write_conn)
            try:
                self._write_conn.execute("SELECT json_array(1)")
            except sqlite3.OperationalError:
                raise StorageError(
                    f"SQLite database {self.url}: this SQLite ({sqlite3.sqlite_version}) lacks "
                    "the JSON functions brickrun needs (built in since SQLite 3.38)"
                ) from None
            variables = self._write_conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            while self._rows_per_insert * 6 > variables:
                self._rows_per_insert //= 2
            if self._path is not None:
                # Ingestion writes keys in random order (event ids), so every batch dirties
                # pages all over the key index. A bigger cache keeps them in memory, and a
                # checkpoint every WAL_CHECKPOINT_PAGES (not SQLite's 1,000) writes a page
                # modified by many commits into the file once: ~1.4x the rows/s at 300k rows.
                self._write_conn.execute(f"PRAGMA cache_size = -{WRITE_CACHE_KIB}")
                self._write_conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            self._read_conn = self._write_conn if self._path is None else self._connect()
        except sqlite3.Error as error:
            raise self._error("opening it", error) from error

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path if self._path is not None else ":memory:",
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # used from anyio's worker threads, one at a time
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if self._path is not None:
                self._enable_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock; processes opening the same new
        # file at once can see "database is locked" here without the busy handler helping.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock before reading schema_version, so two processes
        # opening a new file cannot both decide to create the tables.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(SCHEMA_VERSION_TABLE)
            (current,) = conn.execute(
                "SELECT coalesce(max(version), 0) FROM schema_version"
            ).fetchone()
            for migration in pending_migrations(current, SQLITE_MIGRATIONS, url=self.url):
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)",
                    (
                        migration.version,
                        migration.description,
                        format_timestamp(datetime.now(UTC)),
                    ),
                )
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    async def _close(self) -> None:
        if self._switch_held:
            self._switch_held = False
            _switch.release()
        await anyio.to_thread.run_sync(self._close_sync)

    def _close_sync(self) -> None:
        with self._write_lock:
            conn, self._write_conn = self._write_conn, None
            if conn is not None:
                conn.close()
        with self._read_lock:
            conn, self._read_conn = self._read_conn, None
            if conn is not None:
                conn.close()
        with self._spare_lock:
            conn, self._spare_conn = self._spare_conn, None
            if conn is not None:
                conn.close()

    def _error(self, action: str, error: sqlite3.Error) -> StorageError:
        """A :class:`StorageError` naming this database, what failed and the likely cause."""
        text = str(error)
        name = getattr(error, "sqlite_errorname", "")
        hint = ""
        if name == "SQLITE_FULL" or "disk is full" in text:
            hint = " (the disk is full, or the database reached its maximum size)"
        elif name == "SQLITE_CANTOPEN" or "unable to open" in text:
            hint = self._cant_open_hint()
        elif name in ("SQLITE_READONLY",) or "readonly" in text:
            hint = " (the file or its directory is not writable)"
        elif name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in text:
            hint = f" (another process held the write lock for more than {BUSY_TIMEOUT_S:g} s)"
        return StorageError(f"SQLite database {self.url}: {action} failed: {text}{hint}")

    def _cant_open_hint(self) -> str:
        if self._path is None:
            return ""
        directory = os.path.dirname(os.path.abspath(self._path))
        if not os.path.isdir(directory):
            return f" (directory {directory} does not exist or is not a directory)"
        if not os.access(directory, os.W_OK):
            return f" (directory {directory} is not writable)"
        return f" (cannot create or open the file or its -wal/-shm files in {directory})"

    async def _read(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            with self._read_lock:
                if self._read_conn is None:
                    raise StorageError(f"storage {self.url} is closed")
                try:
                    return fn(self._read_conn)
                except sqlite3.Error as error:
                    raise self._error(action, error) from error

        return await anyio.to_thread.run_sync(run)

    async def _write(
        self, action: str, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True
    ) -> T:
        """Run ``fn`` in a write transaction. ``durable=False`` commits without waiting for
        the disk (``synchronous = NORMAL``): for outbox transitions only, whose loss in a power
        cut is harmless (a lost lease or schedule makes rows due again, a lost ack re-sends:
        at-least-once), while the next durable commit makes them durable too (WAL order)."""

        def run() -> T:
            with self._write_lock:
                conn = self._write_conn
                if conn is None:
                    raise StorageError(f"storage {self.url} is closed")
                relaxed = not durable and self._synchronous != "NORMAL"
                try:
                    if relaxed:
                        conn.execute("PRAGMA synchronous = NORMAL")
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = fn(conn)
                        conn.execute("COMMIT")
                    except BaseException:
                        _rollback(conn)
                        raise
                    finally:
                        if relaxed:
                            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                except sqlite3.Error as error:
                    raise self._error(action, error) from error
                return result

        return await anyio.to_thread.run_sync(run)

    # --- writes --------------------------------------------------------------------------------

    async def _write_batch(self, ops: list[PendingPut]) -> None:
        spent: list[tuple[str, str]] = []

        def apply(conn: sqlite3.Connection) -> None:
            names = sorted({op.database for op in ops})
            limits, existing = _load_batch(conn, names, keys_to_read(ops))
            writes, tokens = plan_batch(
                ops, existing, {n: limits.get(n) or _DEFAULT_LIMITS for n in names}, self._buckets
            )
            spent.extend(tokens)
            created = sorted({w.database for w in writes} - limits.keys())
            if created:
                conn.executemany(_insert_database_sql(), [_limits_row(n, None) for n in created])
            _upsert(conn, writes, self._rows_per_insert)
            queued = outbox_keys(ops)
            if queued:
                # Wall-clock time, not the puts' now: a replay on a virtual clock must not
                # schedule its exports years away.
                wall = time.time_ns() // 1_000_000
                conn.execute(_ENQUEUE_SQL, (wall, wall, json.dumps(queued)))

        # Puts only reach here through the batcher, one batch at a time; BEGIN IMMEDIATE
        # (in _write) makes the read-merge-write of the whole batch atomic against other
        # processes, which would otherwise read the same old record and overwrite each other.
        try:
            await self._write(f"writing {describe_batch(len(ops))}", apply)
        except BaseException:
            self._buckets.refund(spent)
            raise

    async def _delete(self, database: str, key: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM records WHERE database_id = ? AND key = ?", (database, key)
            )
            conn.execute("DELETE FROM outbox WHERE database_id = ? AND key = ?", (database, key))
            return cursor.rowcount > 0

        return await self._write(f"deleting record {key!r} of database {database!r}", run)

    async def _set_limits(self, database: str, limits: DatabaseLimits) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                _insert_database_sql()
                + " ON CONFLICT (id) DO UPDATE SET max_record_bytes = excluded.max_record_bytes,"
                " writes_per_second_per_user = excluded.writes_per_second_per_user,"
                " retention_days = excluded.retention_days",
                _limits_row(database, limits),
            )

        await self._write(f"setting the limits of database {database!r}", run)

    async def _cleanup(self, database: str, now: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            limits = _load_limits(conn, [database]).get(database)
            if limits is None or limits.retention_days is None:
                return 0
            cutoff = format_millis(now - limits.retention_days * _DAY_MS)
            # Records still in the outbox (pending, leased or dead) are not exported yet.
            cursor = conn.execute(
                "DELETE FROM records WHERE database_id = ? AND updated_at < ? AND NOT EXISTS"
                " (SELECT 1 FROM outbox o"
                " WHERE o.database_id = records.database_id AND o.key = records.key)",
                (database, cutoff),
            )
            return cursor.rowcount

        return await self._write(f"cleaning up database {database!r}", run)

    # --- outbox --------------------------------------------------------------------------------

    async def _outbox_claim(
        self, limit: int, database: str | None, now: int, until: int, lease: str
    ) -> list[OutboxItem]:
        where = "state = 'pending' AND next_attempt_at <= ?"
        params: list[object] = [now]
        if database is not None:
            where, params = where + " AND database_id = ?", [now, database]
        # One row of JSON for the whole claim (one step, see the module docstring); json(data)
        # embeds each record's data as JSON, so one decoding yields every record.
        select = (
            "SELECT json_group_array(json_array(o.id, o.database_id, o.key, o.attempts,"
            " o.version, o.next_attempt_at, json(r.data), r.merge_strategy, r.created_at,"
            f" r.updated_at)) FROM (SELECT * FROM outbox WHERE {where}"
            " ORDER BY next_attempt_at, id LIMIT ?) o"
            " LEFT JOIN records r ON r.database_id = o.database_id AND r.key = o.key"
        )

        def run(conn: sqlite3.Connection) -> list[OutboxItem]:
            (text,) = conn.execute(select, (*params, limit)).fetchone()
            rows = decode_json(text)
            if not rows:
                return []
            rows.sort(key=lambda row: (row[5], row[0]))
            conn.execute(
                "UPDATE outbox SET lease = ?, next_attempt_at = ?, attempts = attempts + 1"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (lease, until, json.dumps([row[0] for row in rows])),
            )
            return [_outbox_item(row, lease) for row in rows]

        return await self._write("claiming outbox rows", run, durable=False)

    async def _outbox_ack(self, items: list[OutboxItem], now: int) -> int:
        groups: dict[str, list[OutboxItem]] = {}
        for item in items:
            groups.setdefault(item.database, []).append(item)

        def run(conn: sqlite3.Connection) -> int:
            total = 0
            for database, group in groups.items():
                claims = _claims_json(group)
                deleted = conn.execute(
                    f"DELETE FROM outbox WHERE id IN ({_HELD} AND o.version = j.value ->> 2)",
                    (claims,),
                ).rowcount
                if deleted < len(group):
                    # Still held after that: put again since the claim; the new version is due
                    # now. (Usually every claim was deleted, and this second pass is skipped.)
                    conn.execute(
                        "UPDATE outbox SET lease = NULL, next_attempt_at = ?"
                        f" WHERE id IN ({_HELD})",
                        (now, claims),
                    )
                if deleted:
                    conn.execute(_EXPORTED_SQL, (database, now, deleted))
                total += deleted
            return total

        return await self._write(f"acknowledging {len(items)} outbox row(s)", run, durable=False)

    async def _outbox_retry(
        self, items: list[OutboxItem], next_attempt_at: int, error: str, count_attempt: bool
    ) -> int:
        refund = 0 if count_attempt else 1

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE outbox SET lease = NULL, next_attempt_at = ?, last_error = ?,"
                f" attempts = max(0, attempts - ?) WHERE id IN ({_HELD})",
                (next_attempt_at, error, refund, _claims_json(items)),
            ).rowcount

        return await self._write(f"rescheduling {len(items)} outbox row(s)", run, durable=False)

    async def _outbox_dead(self, items: list[OutboxItem], reason: str, now: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            claims = _claims_json(items)
            dead = conn.execute(
                "UPDATE outbox SET state = 'dead', lease = NULL, next_attempt_at = ?,"
                f" last_error = ? WHERE id IN ({_HELD} AND o.version = j.value ->> 2)",
                (now, reason, claims),
            ).rowcount
            if dead < len(items):
                # Put again since the claim: the verdict was about an older version.
                conn.execute(
                    f"UPDATE outbox SET lease = NULL, next_attempt_at = ? WHERE id IN ({_HELD})",
                    (now, claims),
                )
            return dead

        return await self._write(f"dead-lettering {len(items)} outbox row(s)", run, durable=False)

    async def _outbox_requeue(self, database: str | None, now: int) -> int:
        where = "state = 'dead'"
        params: list[object] = [now]
        if database is not None:
            where, params = where + " AND database_id = ?", [now, database]

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?,"
                f" last_error = NULL WHERE {where}",
                params,
            ).rowcount

        return await self._write("requeueing dead outbox rows", run)

    async def _outbox_status(self, database: str | None, now: int, limit: int) -> OutboxStatus:
        where, params = ("", []) if database is None else (" AND database_id = ?", [database])

        def run(conn: sqlite3.Connection) -> OutboxStatus:
            conn.execute("BEGIN")  # one snapshot for every figure
            try:
                counts = conn.execute(
                    "SELECT CASE WHEN state = 'pending' AND lease IS NOT NULL"
                    " AND next_attempt_at > ? THEN 'leased' ELSE state END, count(*)"
                    f" FROM outbox WHERE 1 = 1{where} GROUP BY 1",
                    (now, *params),
                ).fetchall()
                (oldest,) = conn.execute(
                    f"SELECT min(queued_at) FROM outbox WHERE state = 'pending'{where}", params
                ).fetchone()
                exports = conn.execute(
                    "SELECT max(last_export_at), coalesce(sum(exported), 0) FROM outbox_exports"
                    f" WHERE 1 = 1{where}",
                    params,
                ).fetchone()
                dead = conn.execute(
                    "SELECT database_id, key, attempts, last_error, next_attempt_at FROM outbox"
                    f" WHERE state = 'dead'{where} ORDER BY next_attempt_at, id LIMIT ?",
                    (*params, limit),
                ).fetchall()
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
            return build_status(counts, oldest, (exports[0], exports[1]), dead, now)

        return await self._read("reading the outbox status", run)

    # --- reads ---------------------------------------------------------------------------------

    async def _get(self, database: str, key: str) -> Record | None:
        def run(conn: sqlite3.Connection) -> Record | None:
            row = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE database_id = ? AND key = ?",
                (database, key),
            ).fetchone()
            return _record(row) if row is not None else None

        return await self._read(f"reading record {key!r} of database {database!r}", run)

    async def _list_records(
        self, database: str, limit: int | None, offset: int, since: str | None
    ) -> list[Record]:
        where, params = "database_id = ?", [database]
        if since is not None:
            where, params = where + " AND created_at >= ?", [database, since]

        def page_query(extra: str, tail: str) -> str:
            return (
                f"SELECT json_group_array(json_array({_RECORD_COLUMNS})) FROM ("
                f" SELECT {_RECORD_COLUMNS} FROM records WHERE {where}{extra}"
                f" ORDER BY created_at, key LIMIT ?{tail})"
            )

        first = page_query("", " OFFSET ?")
        # After the first page, continue from the last row seen (keyset paging): an OFFSET would
        # rescan every row before it, quadratic over a large database.
        following = page_query(" AND (created_at, key) > (?, ?)", "")

        def run(conn: sqlite3.Connection) -> list[Record]:
            # Pages of rows folded into one JSON text each (one step per page, see the module
            # docstring), read in one transaction so that pages are of one snapshot.
            records: list[Record] = []
            last: tuple[str, str] | None = None
            conn.execute("BEGIN")
            try:
                while limit is None or len(records) < limit:
                    size = _LIST_PAGE if limit is None else min(_LIST_PAGE, limit - len(records))
                    if last is None:
                        args: tuple[Any, ...] = (*params, size, offset)
                        (text,) = conn.execute(first, args).fetchone()
                    else:
                        args = (*params, last[0], last[1], size)
                        (text,) = conn.execute(following, args).fetchone()
                    rows = decode_json(text)
                    # json_group_array does not promise to keep the subquery's order.
                    rows.sort(key=lambda row: (row[3], row[0]))
                    records.extend(_record(row) for row in rows)
                    if len(rows) < size:
                        break
                    last = (rows[-1][3], rows[-1][0])
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
            return records

        return await self._read(f"listing records of database {database!r}", run)

    async def _group_events(self, database: str, since: str | None) -> list[EventGroup]:
        def run(conn: sqlite3.Connection) -> list[EventGroup]:
            middle = _middle_rowid(conn, database) if since is None else None
            # Through the index costs a seek per record, ~10% of the whole read: when the
            # database is most of the table, one pass over the table (half each) is cheaper.
            table = "records" if middle is None else "records NOT INDEXED"
            if self._path is None:  # one connection: no second reader
                return _read_groups(conn, table, database, since, ("", ()))
            # Two readers, each grouping half of the records: with a second core free, the
            # read takes ~55% of one reader's time. Both read one snapshot.
            halves: list[_Part] = (
                [(" AND rowid % 2 = ?", (0,)), (" AND rowid % 2 = ?", (1,))]
                if middle is None
                else [(" AND rowid <= ?", (middle,)), (" AND rowid > ?", (middle,))]
            )
            with self._spare_lock:
                if self._spare_conn is None:
                    self._spare_conn = self._connect()
                readers = (conn, self._spare_conn)
                try:
                    self._begin_reads_at_one_snapshot(readers)
                    return _read_parts(readers, halves, table, database, since)
                finally:
                    for reader in readers:
                        if reader.in_transaction:
                            reader.execute("COMMIT")

        return await self._read(f"grouping the events of database {database!r}", run)

    def _begin_reads_at_one_snapshot(self, readers: tuple[sqlite3.Connection, ...]) -> None:
        """Start a read transaction on each of ``readers`` (in WAL mode, a read's snapshot is
        taken by its first statement) while holding the write lock, so that no commit, from
        this process or another, falls between them."""
        with self._write_lock:
            writer = self._write_conn
            if writer is None:
                raise StorageError(f"storage {self.url} is closed")
            writer.execute("BEGIN IMMEDIATE")
            try:
                for reader in readers:
                    reader.execute("BEGIN")
                    reader.execute("SELECT 1 FROM records LIMIT 1").fetchall()
            finally:
                _rollback(writer)

    async def _count(self, database: str) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (count,) = conn.execute(
                "SELECT count(*) FROM records WHERE database_id = ?", (database,)
            ).fetchone()
            return int(count)

        return await self._read(f"counting records of database {database!r}", run)

    async def _list_databases(self) -> list[DatabaseInfo]:
        def run(conn: sqlite3.Connection) -> list[DatabaseInfo]:
            rows = conn.execute(
                f"SELECT id, {_LIMIT_COLUMNS},"
                " (SELECT count(*) FROM records r WHERE r.database_id = d.id)"
                " FROM databases d ORDER BY id"
            ).fetchall()
            return [DatabaseInfo(row[0], int(row[4]), _limits(row[1:4])) for row in rows]

        return await self._read("listing databases", run)

    async def _get_limits(self, database: str) -> DatabaseLimits | None:
        def run(conn: sqlite3.Connection) -> DatabaseLimits | None:
            return _load_limits(conn, [database]).get(database)

        return await self._read(f"reading the limits of database {database!r}", run)


# Upsert of outbox rows from a JSON array of [database, key]: a row queued again stays as it
# is (keeping its lease and schedule) but gets a new version; a dead row starts over.
_ENQUEUE_SQL = (
    "INSERT INTO outbox (database_id, key, state, attempts, next_attempt_at, lease, version,"
    " queued_at, last_error)"
    " SELECT value ->> 0, value ->> 1, 'pending', 0, ?, NULL, 0, ?, NULL FROM json_each(?)"
    " WHERE true ON CONFLICT (database_id, key) DO UPDATE SET version = version + 1,"
    " state = 'pending',"
    " attempts = CASE WHEN state = 'dead' THEN 0 ELSE attempts END,"
    " next_attempt_at = CASE WHEN state = 'dead' THEN excluded.next_attempt_at"
    " ELSE next_attempt_at END,"
    " queued_at = CASE WHEN state = 'dead' THEN excluded.queued_at ELSE queued_at END,"
    " last_error = CASE WHEN state = 'dead' THEN NULL ELSE last_error END"
)
# The ids of the rows in a JSON array of claims [id, lease, version] still held under their
# lease (append "AND o.version = j.value ->> 2" to also require the claimed version).
_HELD = (
    "SELECT o.id FROM json_each(?) j JOIN outbox o ON o.id = j.value ->> 0"
    " WHERE o.lease = j.value ->> 1"
)
_EXPORTED_SQL = (
    "INSERT INTO outbox_exports (database_id, last_export_at, exported) VALUES (?, ?, ?)"
    " ON CONFLICT (database_id) DO UPDATE SET"
    " last_export_at = max(last_export_at, excluded.last_export_at),"
    " exported = exported + excluded.exported"
)


# group_events (see _groups.EventGroup) in two steps, then pages:
# - f: each record's fields as JSON texts (``->``), one JSON function call each: calls, more
#   than the parse (SQLite caches it per row), are what costs. MATERIALIZED keeps SQLite from
#   inlining f into g, which would repeat calls for every mention and sort whole records.
# - g: the groups, by name, context (or \x01 + the details), day. Tests on JSON texts by their
#   first character: '"' starts a string (x > '"' AND x < '#'), '"' + a character other than
#   '"' a non-empty one, a digit or '-' a number; "-0" style zeros are not negative. A
#   timestamp without escapes is its JSON text minus the quotes.
# The groups, durations joined as their JSON texts, are folded into one JSON text per
# _GROUP_PAGE groups (one step per page: see the module docstring).
_GROUP_EVENTS_SQL = (
    "WITH f AS MATERIALIZED (SELECT data -> '$.timestamp' AS ts, data -> '$.name' AS nm,"
    " data -> '$.context' AS cx, json_type(data, '$.error') AS er,"
    " data -> '$.duration_ms' AS du, json_extract(data, '$.event', '$.url',"
    " '$.source.starterBrickName', '$.source.modComponentLabel') AS details"
    " FROM {table} WHERE database_id = ?{since}{part}),"
    " g AS (SELECT nm, CASE WHEN nm > '\"' AND nm < '#' AND cx > '\"' AND cx < '#'"
    " AND cx <> '\"\"' THEN cx ELSE char(1) || details END AS cx,"
    " CASE WHEN instr(ts, '\\') = 0 THEN substr(ts, 2, 10)"
    " ELSE substr(json_extract(ts, '$'), 1, 10) END AS day,"
    " count(*) AS n, count(*) FILTER (WHERE er <> 'null') AS errors,"
    " group_concat(du) FILTER (WHERE (du >= '0' AND du < ':')"
    " OR (du > '-' AND du < '.' AND CAST(du AS REAL) = 0)) AS durations"
    " FROM f WHERE ts > '\"' AND ts < '#' AND CASE WHEN instr(ts, '\\') = 0"
    " THEN length(ts) >= 12 ELSE length(json_extract(ts, '$')) >= 10 END"
    " GROUP BY 1, 2, 3)"
    " SELECT json_group_array(json_array(day, nm, cx, n, errors, durations))"
    " FROM (SELECT *, (row_number() OVER () - 1) / ? AS page FROM g) GROUP BY page"
)


_Part = tuple[str, tuple[int, ...]]
"""A condition on ``rowid`` appended to group_events' WHERE, and its parameters."""


def _read_groups(
    conn: sqlite3.Connection, table: str, database: str, since: str | None, part: _Part
) -> list[EventGroup]:
    """The groups of ``database``'s records in ``table`` (created since ``since``) that meet
    the condition ``part``."""
    condition, values = part
    statement = _GROUP_EVENTS_SQL.format(
        table=table, since="" if since is None else " AND created_at >= ?", part=condition
    )
    params = (database, *(() if since is None else (since,)), *values, _GROUP_PAGE)
    decoder = GroupDecoder()
    groups = []
    for (text,) in conn.execute(statement, params):
        for day, name, field, count, errors, durations in decode_json(text):
            context, details = (None, field[1:]) if field[0] == "\x01" else (field, None)
            groups.append(decoder.group(day, name, context, details, count, errors, durations))
    return groups


def _read_parts(
    readers: tuple[sqlite3.Connection, ...],
    parts: list[_Part],
    table: str,
    database: str,
    since: str | None,
) -> list[EventGroup]:
    """:func:`_read_groups` of each of ``parts`` on the reader of the same index, each in a
    thread of its own (SQLite gives up the GIL while it steps); the first in this thread."""
    found: list[list[EventGroup] | BaseException] = [[] for _ in readers]

    def read(index: int) -> None:
        try:
            found[index] = _read_groups(readers[index], table, database, since, parts[index])
        except BaseException as error:  # raised again in the calling thread
            found[index] = error

    helpers = [
        threading.Thread(target=read, args=(index,), name="brickrun-group-events")
        for index in range(1, len(readers))
    ]
    for helper in helpers:
        helper.start()
    read(0)
    for helper in helpers:
        helper.join()
    groups: list[EventGroup] = []
    for result in found:
        if isinstance(result, BaseException):
            raise result
        groups += result
    return groups


def _middle_rowid(conn: sqlite3.Connection, database: str) -> int | None:
    """Half the records table's largest rowid if ``database`` holds at least that many rows
    (an estimate: rowids of deleted rows count too, so it errs towards ``None``), else
    ``None``. Rows added later have larger rowids."""
    (last,) = conn.execute("SELECT max(rowid) FROM records").fetchone()
    if not last:
        return None
    middle = int(last) // 2
    (found,) = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM records WHERE database_id = ? LIMIT ?)",
        (database, middle + 1),
    ).fetchone()
    return middle if found > middle else None


def _claims_json(items: list[OutboxItem]) -> str:
    return json.dumps([[item.id, item.lease, item.version] for item in items])


def _outbox_item(row: list[Any], lease: str) -> OutboxItem:
    ident, database, key, attempts, version, _, data, strategy, created, updated = row
    record: Record | None = None
    if strategy is not None:
        record = {
            "id": key,
            "data": data,
            "merge_strategy": strategy,
            "created_at": created,
            "updated_at": updated,
        }
    return OutboxItem(int(ident), database, key, int(attempts) + 1, record, lease, int(version))


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (e.g. after SQLITE_FULL).
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _insert_database_sql() -> str:
    return f"INSERT INTO databases (id, {_LIMIT_COLUMNS}) VALUES (?, ?, ?, ?)"


def _limits_row(name: str, limits: DatabaseLimits | None) -> tuple[Any, ...]:
    limits = limits or DatabaseLimits()
    return (
        name,
        limits.max_record_bytes,
        limits.writes_per_second_per_user,
        limits.retention_days,
    )


def _limits(row: tuple[Any, ...]) -> DatabaseLimits:
    return DatabaseLimits(int(row[0]), row[1], row[2])


def _load_limits(conn: sqlite3.Connection, names: list[str]) -> dict[str, DatabaseLimits]:
    rows = conn.execute(
        f"SELECT id, {_LIMIT_COLUMNS} FROM databases WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(names),),
    )
    return {row[0]: _limits(row[1:]) for row in rows}


# The limits of the batch's databases and the stored rows it needs, as two JSON texts from one
# statement (one step: see the module docstring). The databases go in as a JSON array, the keys
# as an object {database: [key, ...]}; CROSS JOIN keeps SQLite from scanning a database's rows
# for each key instead of finding each key through the primary key.
_LOAD_BATCH_SQL = (
    f"SELECT (SELECT json_group_array(json_array(id, {_LIMIT_COLUMNS})) FROM databases"
    " WHERE id IN (SELECT value FROM json_each(?))),"
    " (SELECT json_group_array(json_array(r.database_id, r.key, r.data, r.merge_strategy,"
    " r.created_at, r.updated_at)) FROM json_each(?) d CROSS JOIN json_each(d.value) k"
    " CROSS JOIN records r ON r.database_id = d.key AND r.key = k.value)"
)


def _load_batch(
    conn: sqlite3.Connection, names: list[str], keys: dict[str, list[str]]
) -> tuple[dict[str, DatabaseLimits], dict[tuple[str, str], StoredRow]]:
    """The stored limits of ``names`` and the stored rows of ``keys`` (those that exist)."""
    limits_text, rows_text = conn.execute(
        _LOAD_BATCH_SQL, (json.dumps(names), json.dumps(keys))
    ).fetchone()
    limits = {row[0]: _limits(row[1:]) for row in decode_json(limits_text)}
    found: dict[tuple[str, str], StoredRow] = {}
    for database, key, data, strategy, created, updated in decode_json(rows_text):
        found[(database, key)] = StoredRow(data, json_size(data), strategy, created, updated)
    return limits, found


@lru_cache(maxsize=64)
def _upsert_sql(rows: int) -> str:
    return (
        "INSERT INTO records (database_id, key, data, merge_strategy, created_at, updated_at)"
        " VALUES " + ",".join(["(?, ?, ?, ?, ?, ?)"] * rows) + " ON CONFLICT (database_id, key)"
        " DO UPDATE SET data = excluded.data, merge_strategy = excluded.merge_strategy,"
        " updated_at = excluded.updated_at"
    )


def _statement_rows(rows: int) -> int:
    """The row count of the statement that writes ``rows`` rows: a multiple of 16, or a power
    of two below 16, so that a few dozen cached statements serve every batch size."""
    if rows >= 16:
        return (rows + 15) // 16 * 16
    return 1 << (rows - 1).bit_length()


def _upsert(conn: sqlite3.Connection, writes: list[RowWrite], most: int) -> None:
    """Insert or update ``writes``, at most ``most`` rows (a multiple of 16) per statement.

    A chunk short of its statement's row count is padded by repeating its last row: the
    upsert then writes that row again with the same values, which changes nothing and costs
    far less than the extra statements (each one a GIL hand-over) of exact-size chunks.
    """
    for start in range(0, len(writes), most):
        chunk = writes[start : start + most]
        rows = _statement_rows(len(chunk))
        params: list[str] = [value for row in chunk for value in row]
        if rows > len(chunk):
            params += chunk[-1] * (rows - len(chunk))
        conn.execute(_upsert_sql(rows), params)


def _record(row: tuple[Any, ...]) -> Record:
    key, data, strategy, created, updated = row
    return {
        "id": key,
        "data": decode_json(data),
        "merge_strategy": strategy,
        "created_at": created,
        "updated_at": updated,
    }
