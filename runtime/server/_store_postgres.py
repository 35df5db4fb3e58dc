"""The server tables in PostgreSQL: in the database and ``?schema=`` of the store's URL."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

import anyio

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

__all__ = ["PostgresServerStore"]


class PostgresServerStore(ServerStore):
    """The tables in the PostgreSQL database (and ``?schema=``) of the store's URL."""

    def __init__(
        self, dsn: str, schema: str | None, *, url: str, default_rate: int, durable: bool
    ) -> None:
        super().__init__(url, default_rate=default_rate)
        self._durable = durable
        self._dsn = dsn
        self._schema = schema
        self._conn: Any = None
        self._lock = anyio.Lock()

    async def open(self) -> None:
        import psycopg
        from psycopg import sql

        try:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=10
            )
        except psycopg.Error as error:
            raise StorageError(
                f"cannot connect to PostgreSQL database {self.url}: {type(error).__name__}"
            ) from None
        try:
            await conn.execute("SET TIME ZONE 'UTC'")
            if not self._durable:
                # Rate windows and sessions need no flush to disk before the commit returns
                # (a crash loses at most the last moment's counts); token changes come from
                # the CLI, whose store is durable.
                await conn.execute("SET synchronous_commit TO off")
            lock = int.from_bytes(
                hashlib.blake2b(
                    f"brickrun-server\x00{self._schema or ''}".encode(), digest_size=8
                ).digest(),
                "big",
                signed=True,
            )
            async with conn.transaction():
                # Serialises concurrent first starts: CREATE ... IF NOT EXISTS alone can fail
                # against a concurrent CREATE of the same table.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                if self._schema is not None:
                    await conn.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                            sql.Identifier(self._schema)
                        )
                    )
                    await conn.execute(
                        sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self._schema))
                    )
                for statement in SCHEMA:
                    await conn.execute(statement)
            if self._schema is not None:
                await conn.execute(
                    sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema))
                )
        except psycopg.Error as error:
            await conn.close()
            raise StorageError(
                f"PostgreSQL database {self.url}: creating the server tables failed: "
                f"{str(error).strip()}"
            ) from None
        self._conn = conn

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _run(self, action: str, fn: Callable[[Any], Any], write: bool) -> Any:
        import psycopg

        async with self._lock:
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                if conn is not None:
                    self._conn = None
                    with contextlib.suppress(Exception):
                        await conn.close()
                await self.open()
                conn = self._conn
            try:
                if write:
                    async with conn.transaction():
                        return await fn(conn)
                return await fn(conn)
            except psycopg.Error as error:
                raise StorageError(
                    f"PostgreSQL database {self.url}: {action} failed: {str(error).strip()}"
                ) from None

    async def _insert_token(self, info: TokenInfo, token_hash: str) -> None:
        async def run(conn: Any) -> None:
            await conn.execute(
                f"INSERT INTO {TOKENS} (id, hash, kind, name, rate_per_second, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (info.id, token_hash, info.kind, info.name, info.rate_per_second, info.created_at),
            )

        await self._run("creating a token", run, True)

    async def list_tokens(self) -> list[TokenInfo]:
        async def run(conn: Any) -> list[TokenInfo]:
            cursor = await conn.execute(
                f"SELECT {TOKEN_COLUMNS} FROM {TOKENS} ORDER BY created_at, id"
            )
            return [token_from_row(row) for row in await cursor.fetchall()]

        result: list[TokenInfo] = await self._run("listing tokens", run, False)
        return result

    async def _revoke(self, token_id: str, now: str) -> bool:
        async def run(conn: Any) -> bool:
            cursor = await conn.execute(
                f"UPDATE {TOKENS} SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (now, token_id),
            )
            revoked = bool(cursor.rowcount > 0)
            await conn.execute(f"DELETE FROM {SESSIONS} WHERE token_id = %s", (token_id,))
            return revoked

        result: bool = await self._run("revoking a token", run, True)
        return result

    async def find_token(self, secret: str) -> TokenInfo | None:
        token_hash = hash_secret(secret)

        async def run(conn: Any) -> TokenInfo | None:
            cursor = await conn.execute(
                f"SELECT {TOKEN_COLUMNS} FROM {TOKENS} WHERE hash = %s", (token_hash,)
            )
            row = await cursor.fetchone()
            return token_from_row(row) if row is not None else None

        result: TokenInfo | None = await self._run("reading a token", run, False)
        return result

    async def _insert_session(
        self, session_hash: str, token_id: str, expires_at: int, now: int
    ) -> None:
        async def run(conn: Any) -> None:
            await conn.execute(f"DELETE FROM {SESSIONS} WHERE expires_at < %s", (now,))
            await conn.execute(
                f"INSERT INTO {SESSIONS} (hash, token_id, expires_at) VALUES (%s, %s, %s)",
                (session_hash, token_id, expires_at),
            )

        await self._run("starting a session", run, True)

    async def _session_token(self, session_hash: str, now: int) -> TokenInfo | None:
        async def run(conn: Any) -> TokenInfo | None:
            cursor = await conn.execute(
                f"SELECT {', '.join('t.' + c for c in TOKEN_COLUMNS.split(', '))}"
                f" FROM {SESSIONS} s JOIN {TOKENS} t ON t.id = s.token_id"
                " WHERE s.hash = %s AND s.expires_at > %s AND t.revoked_at IS NULL"
                " AND t.kind = 'admin'",
                (session_hash, now),
            )
            row = await cursor.fetchone()
            return token_from_row(row) if row is not None else None

        result: TokenInfo | None = await self._run("reading a session", run, False)
        return result

    async def end_session(self, secret: str) -> None:
        session_hash = hash_secret(secret)

        async def run(conn: Any) -> None:
            await conn.execute(f"DELETE FROM {SESSIONS} WHERE hash = %s", (session_hash,))

        await self._run("ending a session", run, True)

    async def _admit_group(self, group: list[Hit], window: int, prune_before: int | None) -> None:
        hashes = sorted({hit.token_hash for hit in group})
        default_rate = self.default_rate

        async def run(conn: Any) -> None:
            # One round trip: the group's tokens, and for the active ingest ones this window's
            # row, created if missing and locked (the no-op DO UPDATE locks an existing row;
            # rows are taken in id order, so two processes cannot deadlock). The
            # read-decide-write below is then atomic against every other process.
            cursor = await conn.execute(
                f"WITH tok AS (SELECT hash, {TOKEN_COLUMNS} FROM {TOKENS}"
                "  WHERE hash = ANY(%s::text[])),"
                f" win AS (INSERT INTO {WINDOWS} AS w (token_id, window_start, count)"
                "  SELECT id, %s, 0 FROM tok WHERE revoked_at IS NULL AND kind = 'ingest'"
                "  ORDER BY id"
                "  ON CONFLICT (token_id, window_start) DO UPDATE SET count = w.count"
                "  RETURNING token_id, count)"
                " SELECT tok.*, win.count FROM tok LEFT JOIN win ON win.token_id = tok.id",
                (hashes, window),
            )
            tokens = {}
            counts: dict[str, int] = {}
            for row in await cursor.fetchall():
                token = token_from_row(row[1:7])
                tokens[row[0]] = token
                if row[7] is not None:
                    counts[token.id] = int(row[7])
            added = decide(group, tokens, counts, default_rate)
            if added:
                names = sorted(added)
                await conn.execute(
                    f"UPDATE {WINDOWS} AS w SET count = w.count + u.n"
                    " FROM unnest(%s::text[], %s::bigint[]) AS u(t, n)"
                    " WHERE w.token_id = u.t AND w.window_start = %s",
                    (names, [added[n] for n in names], window),
                )
            if prune_before is not None:
                await conn.execute(
                    f"DELETE FROM {WINDOWS} WHERE window_start < %s", (prune_before,)
                )

        await self._run("checking tokens and rate limits", run, True)
