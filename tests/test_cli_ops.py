"""``brickrun aggregate`` and ``brickrun export --backfill`` (cli/_ops.py) against real stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from brickrun.cli import main
from brickrun.storage import DatabaseLimits, open_storage
from brickrun.telemetry._aggregates import compute_aggregates

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def store(url: str, database: str, records: list[dict[str, Any]]) -> list[Any]:
    """Write ``records`` (data) as ``k0``, ``k1``, ... without queueing them; return them as
    ``list_records`` does."""

    async def go() -> list[Any]:
        async with open_storage(url) as storage:
            items = [(database, f"k{i}", data) for i, data in enumerate(records)]
            assert await storage.put_many(items, now=T0) == [None] * len(items)
            return await storage.list_records(database)

    return anyio.run(go)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_aggregate_stores_each_aggregate_once(
    storage_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    records = store(
        storage_url,
        "events",
        [
            {"timestamp": f"2026-11-{20 + i % 3}T10:00:00.000Z", "name": "api_call",
             "context": f"GET /api/{i % 2}", "duration_ms": i, "error": None if i % 5 else {}}
            for i in range(40)
        ]
        + [{"timestamp": "2026-11-22T10:00:00.000Z", "event": "translate", "url": "/case/42"}],
    )  # fmt: skip
    argv = ("aggregate", "--db", storage_url, "--database", "events", "--json")
    first = run_json(capsys, *argv)
    expected = [a.to_data() for a in compute_aggregates(records)]
    assert first == {"database": "events", "changed": 7, "aggregates": expected}
    assert run_json(capsys, *argv) == {**first, "changed": 0}


def test_backfill_queues_every_record_for_export(
    storage_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More records than one page of the backfill: each exported once."""
    monkeypatch.setenv("BRICKRUN_INSTALL_SECRET", "ab" * 32)
    store(
        storage_url,
        "brick-events",
        [
            {"url": "https://ex.com/a", "email": "ada@example.com",
             "timestamp": "2026-11-23T10:00:00.000Z", "event": "translate", "data": {"n": i}}
            for i in range(2100)
        ],
    )  # fmt: skip
    out = tmp_path / "events.jsonl"
    argv = ["export", "--db", storage_url, "--jsonl", str(out), "--backfill", "brick-events"]
    result = run_json(capsys, *argv, "--json")
    assert result["delivered"] == 2100 and result["dead"] == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2100
    assert sorted(line["data"]["data"]["n"] for line in lines) == list(range(2100))


def test_backfill_reports_a_refused_record(
    storage_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRICKRUN_INSTALL_SECRET", "ab" * 32)
    store(storage_url, "brick-events", [{"event": "e", "data": {"text": "x" * 200}}])

    async def shrink() -> None:
        async with open_storage(storage_url) as storage:
            await storage.set_limits("brick-events", DatabaseLimits(max_record_bytes=100))

    anyio.run(shrink)
    argv = ["export", "--db", storage_url, "--jsonl", str(tmp_path / "out.jsonl")]
    assert main([*argv, "--backfill", "brick-events"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("brickrun export: record 'k0' in database 'brick-events' would be")
    assert "over the database's limit of 100 bytes" in err
