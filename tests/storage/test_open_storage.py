"""``open_storage``: which URLs pick which backend, and how they are shown (no passwords)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from brickrun.errors import StorageError
from brickrun.storage import open_storage, redact_url

pytestmark = pytest.mark.anyio


async def test_default_is_a_sqlite_file_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRICKRUN_DB_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    storage = open_storage()
    expected = tmp_path / "data" / "brickrun" / "brickrun.sqlite"
    assert storage.url == f"sqlite:///{expected}"
    assert expected.parent.is_dir()  # created
    async with storage:
        await storage.put("db", "k", {})
    assert expected.is_file()


async def test_env_overrides_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/from-env.sqlite"
    monkeypatch.setenv("BRICKRUN_DB_URL", url)
    storage = open_storage(None)
    assert storage.url == url
    async with storage:
        await storage.put("db", "k", {})
    assert (tmp_path / "from-env.sqlite").is_file()
    # An explicit URL wins over the environment.
    assert open_storage("sqlite:///:memory:").url == "sqlite:///:memory:"


async def test_relative_and_absolute_sqlite_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    async with open_storage("sqlite:///sub/relative.sqlite") as storage:
        await storage.put("db", "k", {})
    assert (tmp_path / "sub" / "relative.sqlite").is_file()
    absolute = tmp_path / "absolute.sqlite"
    async with open_storage(f"sqlite:///{absolute}?synchronous=normal") as storage:
        await storage.put("db", "k", {})
    assert absolute.is_file()
    assert f"sqlite:///{absolute}".startswith("sqlite:////")


async def test_memory_databases_are_private_to_their_backend() -> None:
    async with open_storage("sqlite:///:memory:") as one, open_storage("sqlite:///:memory:") as two:
        await one.put("db", "k", {"a": 1})
        assert await one.count("db") == 1
        assert await two.count("db") == 0
        records = await one.list_records("db")
        assert [r["data"] for r in records] == [{"a": 1}]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://admin:pw@db.example/telemetry",
            "unsupported storage URL 'mysql://admin:***@db.example/telemetry' (scheme 'mysql'); "
            "expected sqlite:///PATH, sqlite:///:memory:, postgresql://... or postgres://...",
        ),
        ("brickrun.sqlite", "unsupported storage URL 'brickrun.sqlite' (no scheme); expected"),
        ("sqlite://host/file.sqlite", "must start with 'sqlite:///' (no host)"),
        ("sqlite:///", "SQLite URL 'sqlite:///' names no file"),
        (
            "sqlite:///x.sqlite?journal=off",
            "SQLite URL 'sqlite:///x.sqlite?journal=off' has unknown parameter(s) journal",
        ),
        ("sqlite:///x.sqlite?synchronous=off", "synchronous must be FULL, NORMAL or EXTRA"),
        (
            "postgresql://u:pw@h/db?schema=bad-name",
            "schema 'bad-name' in 'postgresql://u:***@h/db?schema=bad-name' is not a plain",
        ),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(StorageError) as caught:
        open_storage(url)
    assert message in str(caught.value)
    assert "pw@" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:s3cret@host:5432/db", "postgresql://u:***@host:5432/db"),
        ("postgres://u:p%40ss@host/db?schema=x", "postgres://u:***@host/db?schema=x"),
        (
            "postgresql://u@host/db?password=s3cret&sslmode=require",
            "postgresql://u@host/db?password=***&sslmode=require",
        ),
        ("postgresql://host/db", "postgresql://host/db"),
        ("sqlite:////tmp/x.sqlite", "sqlite:////tmp/x.sqlite"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_postgres_url_forms_are_accepted() -> None:
    for url in (
        "postgresql://postgres@127.0.0.1:5432/test",
        "postgres://postgres:pw@127.0.0.1/test?schema=brickrun&sslmode=disable",
        "POSTGRESQL://postgres@localhost/test",
    ):
        storage = open_storage(url)
        assert type(storage).__name__ == "PostgresBackend"
        assert "pw" not in storage.url


def test_default_data_dir_that_cannot_be_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRICKRUN_DB_URL", raising=False)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_DATA_HOME", os.fspath(tmp_path / "file"))
    with pytest.raises(StorageError, match=r"cannot create the data directory .*file/brickrun"):
        open_storage()


async def test_an_open_sqlite_store_keeps_the_thread_switch_interval_short(tmp_path: Any) -> None:
    """The writer thread must win the GIL back quickly (see storage._switch); the host's own
    interval comes back when the last store closes."""
    import sys

    from brickrun.storage import _switch

    others_open = _switch._users  # stores left open by the test session itself, if any
    before = sys.getswitchinterval()
    async with open_storage(f"sqlite:///{tmp_path}/a.sqlite") as first:
        async with open_storage(f"sqlite:///{tmp_path}/b.sqlite"):
            assert sys.getswitchinterval() <= _switch.SHORT_SWITCH_INTERVAL
        assert sys.getswitchinterval() <= _switch.SHORT_SWITCH_INTERVAL, "one store is open still"
        await first.put("db", "k", {"v": 1})
    if not others_open:
        assert sys.getswitchinterval() == before


async def test_a_closed_sqlite_store_is_whole_in_its_file(tmp_path: Path) -> None:
    """The write-ahead log may hold many commits while the store is open (checkpoints are
    rare, for ingest speed); closing folds them into the file, which alone then holds every
    record (a copy of just the .sqlite file is a complete backup)."""
    import sqlite3

    path = tmp_path / "whole.sqlite"
    async with open_storage(f"sqlite:///{path}") as storage:
        for chunk in range(20):  # 20 commits, ~3,000 pages in all
            items = [("db", f"k{chunk}-{i:04}", {"pad": "x" * 500}) for i in range(1000)]
            assert await storage.put_many(items) == [None] * 1000
        probe = sqlite3.connect(path)
        try:
            _, frames, _ = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            probe.close()
        # Still in the log, well past SQLite's default checkpoint point (1,000 pages).
        assert frames > 2000
    assert not Path(f"{path}-wal").exists()
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(path.read_bytes())
    conn = sqlite3.connect(copy)
    try:
        (count,) = conn.execute("SELECT count(*) FROM records WHERE database_id = 'db'").fetchone()
    finally:
        conn.close()
    assert count == 20_000
