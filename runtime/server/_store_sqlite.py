"""The server tables in SQLite: a file beside the team store's (see :func:`._store.server_file`)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

import anyio.to_thread

from ..errors import StorageError
from ._store import (
    SCHEMA,
    SESSIONS,
    TOKEN_COLUMNS,
    TOKENS,
    WINDOWS,
    Hit,
    ServerStore,
    TokenInfo,
    decide,
    hash_secret,
    token_from_row,
)

__all__ = ["SQLiteServerStore"]

T = TypeVar("T")

_BUSY_TIMEOUT_S: Final = 30.0


class SQLiteServerStore(ServerStore):
    """The tables in a SQLite file beside the team store's (see :func:`server_file`).

    The connection uses ``synchronous=NORMAL``: a rate window or session lost to a power cut
    costs nothing, while token changes come from the CLI, whose commits are durable as usual.
    """

    def __init__(self, path: str | None, *, url: str, default_rate: int, durable: bool) -> None:
        super().__init__(url, default_rate=default_rate)
        self._path = path
        self._durable = durable
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open_sync)

    def _open_sync(self) -> None:
        try:
            conn = sqlite3.connect(
                self._path or ":memory:",
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as error:
            raise self._error("opening it", error) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            if self._path is not None:
                _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute(f"PRAGMA synchronous = {'FULL' if self._durable else 'NORMAL'}")
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            conn.close()
            raise self._error("creating the server tables", error) from None
        self._conn = conn

    async def close(self) -> None:
        def run() -> None:
            with self._lock:
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.close()

        await anyio.to_thread.run_sync(run)

    def _error(self, action: str, error: sqlite3.Error) -> StorageError:
        return StorageError(f"SQLite database {self.url}: {action} failed: {error}")

    async def _run(self, action: str, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        def run() -> T:
            with self._lock:
                conn = self._conn
                if conn is None:
                    raise StorageError(f"server store {self.url} is not open")
                try:
                    if not write:
                        return fn(conn)
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = fn(conn)
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                    return result
                except sqlite3.Error as error:
                    raise self._error(action, error) from None

        return await anyio.to_thread.run_sync(run)

    async def _insert_token(self, info: TokenInfo, token_hash: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO {TOKENS} (id, hash, kind, name, rate_per_second, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (info.id, token_hash, info.kind, info.name, info.rate_per_second, info.created_at),
            )

        await self._run("creating a token", run, True)

    async def list_tokens(self) -> list[TokenInfo]:
        def run(conn: sqlite3.Connection) -> list[TokenInfo]:
            rows = conn.execute(
                f"SELECT {TOKEN_COLUMNS} FROM {TOKENS} ORDER BY created_at, id"
            ).fetchall()
            return [token_from_row(row) for row in rows]

        return await self._run("listing tokens", run, False)

    async def _revoke(self, token_id: str, now: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                f"UPDATE {TOKENS} SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, token_id),
            )
            conn.execute(f"DELETE FROM {SESSIONS} WHERE token_id = ?", (token_id,))
            return cursor.rowcount > 0

        return await self._run("revoking a token", run, True)

    async def find_token(self, secret: str) -> TokenInfo | None:
        token_hash = hash_secret(secret)

        def run(conn: sqlite3.Connection) -> TokenInfo | None:
            row = conn.execute(
                f"SELECT {TOKEN_COLUMNS} FROM {TOKENS} WHERE hash = ?", (token_hash,)
            ).fetchone()
            return token_from_row(row) if row is not None else None

        return await self._run("reading a token", run, False)

    async def _insert_session(
        self, session_hash: str, token_id: str, expires_at: int, now: int
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM {SESSIONS} WHERE expires_at < ?", (now,))
            conn.execute(
                f"INSERT INTO {SESSIONS} (hash, token_id, expires_at) VALUES (?, ?, ?)",
                (session_hash, token_id, expires_at),
            )

        await self._run("starting a session", run, True)

    async def _session_token(self, session_hash: str, now: int) -> TokenInfo | None:
        def run(conn: sqlite3.Connection) -> TokenInfo | None:
            row = conn.execute(
                f"SELECT {', '.join('t.' + c for c in TOKEN_COLUMNS.split(', '))}"
                f" FROM {SESSIONS} s JOIN {TOKENS} t ON t.id = s.token_id"
                " WHERE s.hash = ? AND s.expires_at > ? AND t.revoked_at IS NULL"
                " AND t.kind = 'admin'",
                (session_hash, now),
            ).fetchone()
            return token_from_row(row) if row is not None else None

        return await self._run("reading a session", run, False)

    async def end_session(self, secret: str) -> None:
        session_hash = hash_secret(secret)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM {SESSIONS} WHERE hash = ?", (session_hash,))

        await self._run("ending a session", run, True)

    async def _admit_group(self, group: list[Hit], window: int, prune_before: int | None) -> None:
        hashes = json.dumps(sorted({hit.token_hash for hit in group}))
        default_rate = self.default_rate

        def run(conn: sqlite3.Connection) -> None:
            rows = conn.execute(
                f"SELECT hash, {TOKEN_COLUMNS} FROM {TOKENS}"
                " WHERE hash IN (SELECT value FROM json_each(?))",
                (hashes,),
            ).fetchall()
            tokens = {row[0]: token_from_row(row[1:]) for row in rows}
            ids = [t.id for t in tokens.values() if t.active and t.kind == "ingest"]
            counts: dict[str, int] = {}
            if ids:
                counts = dict(
                    conn.execute(
                        f"SELECT token_id, count FROM {WINDOWS} WHERE window_start = ?"
                        " AND token_id IN (SELECT value FROM json_each(?))",
                        (window, json.dumps(ids)),
                    ).fetchall()
                )
            added = decide(group, tokens, counts, default_rate)
            if added:
                conn.executemany(
                    f"INSERT INTO {WINDOWS} (token_id, window_start, count) VALUES (?, ?, ?)"
                    " ON CONFLICT (token_id, window_start)"
                    " DO UPDATE SET count = count + excluded.count",
                    [(token_id, window, n) for token_id, n in added.items()],
                )
            if prune_before is not None:
                conn.execute(f"DELETE FROM {WINDOWS} WHERE window_start < ?", (prune_before,))

        await self._run("checking tokens and rate limits", run, True)


def _retry_locked(fn: Callable[[], object]) -> None:
    # Switching a new file to WAL takes an exclusive lock that the busy handler does not wait
    # for: processes opening a new file at once can see "database is locked" here.
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            fn()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
