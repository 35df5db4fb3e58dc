"""Fixtures for the storage tests: every contract test runs once per backend.

``backend`` is an open backend, parametrized over SQLite (a file in ``tmp_path``) and
PostgreSQL (``$BRICKRUN_TEST_POSTGRES_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``).

PostgreSQL isolation: every test gets its own schema, ``brickrun_test_<session>_<n>``, selected
with the storage URL's ``?schema=`` parameter (the backend creates it on open); the test drops it
when it ends, and the session drops any of its schemas left over. If the server is unreachable,
PostgreSQL tests are skipped locally and fail when ``CI=true`` (a skipped PostgreSQL test in CI
would hide a whole backend).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from brickrun.storage import StorageBackend, open_storage, redact_url

POSTGRES_DSN = os.environ.get(
    "BRICKRUN_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
SESSION = uuid.uuid4().hex[:8]
_schema_numbers = itertools.count(1)


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to (or replacing those in) its query string."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def drop_schemas(dsn: str, pattern: str) -> None:
    """Drop every schema whose name matches the SQL LIKE ``pattern``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (pattern,)
        ).fetchall()
        for (name,) in names:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def anyio_backend() -> str:
    """Storage tests run on asyncio."""
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The test server's DSN; skips (locally) or fails (``CI=true``) when it is unreachable."""
    try:
        psycopg.connect(POSTGRES_DSN, connect_timeout=3).close()
    except psycopg.Error as error:
        message = f"PostgreSQL at {redact_url(POSTGRES_DSN)} is unreachable: {error}".strip()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: PostgreSQL tests must run in CI)")
        pytest.skip(message)
    yield POSTGRES_DSN
    drop_schemas(POSTGRES_DSN, f"brickrun\\_test\\_{SESSION}\\_%")


@pytest.fixture
def postgres_url(postgres_dsn: str) -> Iterator[str]:
    """A storage URL whose tables live in a fresh schema, dropped after the test."""
    schema = f"brickrun_test_{SESSION}_{next(_schema_numbers)}"
    yield with_query(postgres_dsn, schema=schema)
    drop_schemas(postgres_dsn, schema.replace("_", "\\_"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """The URL of an empty store, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{os.fspath(tmp_path)}/brickrun.sqlite"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def backend(storage_url: str) -> AsyncIterator[StorageBackend]:
    """An open backend on an empty store, closed after the test."""
    async with open_storage(storage_url) as storage:
        yield storage


def run_sql(storage_url: str, statement: str) -> list[tuple[object, ...]]:
    """Run one SQL statement directly on the store behind ``storage_url``; return its rows.

    For tests that inspect or tamper with the schema; it opens its own connection.
    """
    if storage_url.startswith("sqlite:///"):
        lite = sqlite3.connect(storage_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return list(lite.execute(statement).fetchall())
        finally:
            lite.close()
    with postgres_connect(storage_url, autocommit=True) as conn:
        cursor = conn.execute(statement.encode())
        return list(cursor.fetchall()) if cursor.description else []


def postgres_connect(storage_url: str, *, autocommit: bool) -> psycopg.Connection[Any]:
    """A plain psycopg connection to a PostgreSQL storage URL, in its ``schema``."""
    parts = urlsplit(storage_url)
    pairs = parse_qsl(parts.query)
    schema = dict(pairs).get("schema")
    dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in pairs if k != "schema"])))
    conn = psycopg.connect(dsn, autocommit=autocommit)
    if schema:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return conn
