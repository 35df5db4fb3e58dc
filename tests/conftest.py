"""Shared fixtures: an anyio backend, a started runtime, and helpers to run YAML snippets."""

from __future__ import annotations

import itertools
import os
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql

from brickrun import Runtime
from brickrun._definitions import compile_text
from brickrun.storage import redact_url

# Property tests judge behaviour, not speed: on a shared 2-core CI machine a slow example must not
# fail a run (hypothesis' default 200 ms deadline and "too slow" health check would, at random).
settings.register_profile(
    "brickrun", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("brickrun")


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the runtime is anyio-only; asyncio is what hosts use)."""
    return "asyncio"


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    """A started runtime with the built-ins and shipped bricks, no entry points."""
    async with Runtime(entry_points=False) as rt:
        yield rt


def component_yaml(
    pipeline: str, *, input_schema: str = "{}", brick_id: str = "@test/subject"
) -> str:
    """A component definition around a YAML ``pipeline:`` body (indented two spaces)."""
    body = textwrap.indent(textwrap.dedent(pipeline).strip("\n"), "  ")
    return (
        "apiVersion: v3\nkind: component\n"
        f'metadata:\n  id: "{brick_id}"\n  name: Subject\n'
        f"inputSchema: {input_schema}\n"
        f"pipeline:\n{body}\n"
    )


def register(runtime: Runtime, yaml_text: str, file: str = "subject.yaml") -> str:
    """Compile ``yaml_text`` and register its definitions; returns the first id."""
    result = compile_text(yaml_text, file)
    assert not result.errors, "\n".join(str(e) for e in result.errors)
    for definition in result.definitions:
        runtime.registry.register_definition(definition)
    return result.definitions[0].id


async def run_pipeline_yaml(
    runtime: Runtime, pipeline: str, input: Any = None, **kwargs: Any
) -> Any:
    """Run a pipeline given as YAML steps (wrapped in a component) and return its output."""
    brick_id = register(runtime, component_yaml(pipeline))
    result = await runtime.run_brick(brick_id, input if input is not None else {}, **kwargs)
    return result.output


# -- team-database stores: every storage-dependent test can run on SQLite and PostgreSQL ---------
#
# PostgreSQL isolation: every test gets its own schema, ``brickrun_test_<session>_<n>``, selected
# with the storage URL's ``?schema=`` parameter (the backend creates it on open) and dropped when
# the test ends. If the server is unreachable, PostgreSQL tests skip locally and fail when
# ``CI=true`` (a skipped PostgreSQL test in CI would hide a whole backend).

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


async def gather(*calls: Any) -> list[Any]:
    """Run awaitables concurrently; return each one's result or exception, in order."""
    import anyio

    results: list[Any] = [None] * len(calls)

    async def run(index: int, call: Any) -> None:
        try:
            results[index] = await call
        except Exception as error:
            results[index] = error

    async with anyio.create_task_group() as group:
        for index, call in enumerate(calls):
            group.start_soon(run, index, call)
    return results


# SPEC §8: BRICKRUN_TELEMETRY_DISABLED or DO_NOT_TRACK set to anything but empty, 0 or false
# disables telemetry. One table for every recording path (variable, value, disabled?).
DISABLE_CASES = [
    ("DO_NOT_TRACK", "1", True),
    ("DO_NOT_TRACK", "yes", True),
    ("DO_NOT_TRACK", "anything", True),
    ("BRICKRUN_TELEMETRY_DISABLED", "true", True),
    ("BRICKRUN_TELEMETRY_DISABLED", "TRUE", True),
    ("DO_NOT_TRACK", "0", False),
    ("DO_NOT_TRACK", "false", False),
    ("BRICKRUN_TELEMETRY_DISABLED", "false", False),
    ("DO_NOT_TRACK", "", False),
    ("BRICKRUN_TELEMETRY_DISABLED", "", False),
]
