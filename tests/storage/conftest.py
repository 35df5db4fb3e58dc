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

import sqlite3
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from brickrun.storage import StorageBackend, open_storage

from ..conftest import POSTGRES_DSN, SESSION, drop_schemas, with_query  # noqa: F401


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
