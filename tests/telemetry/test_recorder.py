"""The runtime's telemetry recorder: queued events are stored in chunks, and every event is
accounted for — stored, or failed with the reason logged — even when some of a chunk are refused;
the opt-out is read at every record."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from brickrun import Runtime
from brickrun.storage import DatabaseLimits
from brickrun.telemetry import TelemetryEvent, telemetry_disabled

pytestmark = pytest.mark.anyio


def event(n: int, size: int = 0) -> TelemetryEvent:
    return TelemetryEvent(
        name="TriggerRun",
        timestamp=datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC),
        source={"runId": f"run-{n}", "note": "x" * size},
    )


async def test_a_burst_is_stored_whole_with_the_events_own_ids_and_times(storage_url: str) -> None:
    async with Runtime(database_url=storage_url, entry_points=False, export=True) as rt:
        sent = [event(n) for n in range(1_234)]
        assert all(rt.telemetry.record(e) for e in sent)
        assert await rt.drain(30)
        storage = await rt.storage()
        stored = await storage.list_records(rt.telemetry.database)
        status = await storage.outbox_status(rt.telemetry.database)
    assert rt.telemetry.counters["stored"] == 1_234 and rt.telemetry.counters["failed"] == 0
    assert {r["id"] for r in stored} == {e.id for e in sent}
    assert {r["created_at"][:19] for r in stored} == {"2026-11-23T12:00:00"}
    assert status.unexported == 1_234, "each event queued for export with its record"


async def test_a_refused_event_fails_alone_and_is_logged(
    storage_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Runtime(database_url=storage_url, entry_points=False) as rt:
        storage = await rt.storage()
        await storage.set_limits(rt.telemetry.database, DatabaseLimits(max_record_bytes=2_000))
        sent = [event(0), event(1, size=5_000), event(2)]
        with caplog.at_level(logging.ERROR, logger="brickrun.telemetry"):
            for e in sent:
                rt.telemetry.record(e)
            assert await rt.drain(30)
        stored: Any = await storage.list_records(rt.telemetry.database)
    assert sorted(r["id"] for r in stored) == sorted([sent[0].id, sent[2].id])
    assert (rt.telemetry.counters["stored"], rt.telemetry.counters["failed"]) == (2, 1)
    [message] = [r.getMessage() for r in caplog.records if sent[1].id in r.getMessage()]
    assert "over the database's limit of 2000 bytes" in message


@pytest.mark.parametrize(
    ("variable", "value", "disabled"),
    [
        (None, None, False),
        ("DO_NOT_TRACK", "1", True),
        ("BRICKRUN_TELEMETRY_DISABLED", "yes", True),
        ("DO_NOT_TRACK", "0", False),
        ("BRICKRUN_TELEMETRY_DISABLED", "false", False),
        ("DO_NOT_TRACK", "", False),
    ],
)
async def test_the_opt_out_is_read_at_every_record(
    monkeypatch: pytest.MonkeyPatch, variable: str | None, value: str | None, disabled: bool
) -> None:
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    monkeypatch.delenv("BRICKRUN_TELEMETRY_DISABLED", raising=False)
    async with Runtime(entry_points=False) as rt:
        assert rt.telemetry.record(event(0))
        if variable is not None:
            monkeypatch.setenv(variable, value or "")
        assert telemetry_disabled() is disabled
        assert rt.telemetry.record(event(1)) is not disabled
        monkeypatch.delenv(variable or "DO_NOT_TRACK", raising=False)
        assert rt.telemetry.record(event(2))
    assert rt.telemetry.counters["dropped:disabled"] == int(disabled)
