"""``@pixies/telemetry/record`` end to end on SQLite and PostgreSQL (issue 3 acceptance)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from brickrun import Runtime, VirtualClock
from brickrun.cli import main
from brickrun.storage import open_storage

from .conftest import DISABLE_CASES

INPUT = {"databaseId": "telemetry-dev", "eventName": "translate", "data": {"words": 120}}


def list_records(url: str, database: str) -> list[Any]:
    async def go() -> list[Any]:
        async with open_storage(url) as storage:
            return list(await storage.list_records(database))

    return anyio.run(go)


def test_cli_records_then_data_list_shows_it(
    storage_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "brick", "@pixies/telemetry/record", "--input", json.dumps(INPUT),
            "--email", "ada@example.com", "--url", "https://example.com/x", "--db", storage_url,
        ]
    )  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {}, "the brick returns at once, with {}"
    assert main(["data", "list", "telemetry-dev", "--json", "--db", storage_url]) == 0
    [record] = json.loads(capsys.readouterr().out)
    email, _, rest = record["id"].partition("-")
    timestamp, unique = rest[:24], rest[25:]
    assert (email, rest[24]) == ("ada@example.com", "-")
    assert datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    assert uuid.UUID(unique).version == 4
    assert record["data"] == {
        "url": "https://example.com/x",
        "email": "ada@example.com",
        "timestamp": timestamp,
        "event": "translate",
        "data": {"words": 120},
    }
    assert record["merge_strategy"] == "replace"


@pytest.mark.anyio
async def test_burst_of_10000_in_one_millisecond_loses_nothing(storage_url: str) -> None:
    """A frozen clock makes every event share one timestamp: the UUID keeps keys apart."""
    clock = VirtualClock(datetime(2026, 11, 23, 15, 0, 0, 123000, tzinfo=UTC))
    async with Runtime(clock=clock, database_url=storage_url, entry_points=False) as runtime:
        runtime.sign_in("ada@example.com")
        runtime.visit("https://example.com/x")
        for n in range(10_000):
            await runtime.run_brick("@pixies/telemetry/record", {**INPUT, "data": {"n": n}})
        await runtime.drain()
        storage = await runtime.storage()
        assert await storage.count("telemetry-dev") == 10_000
        records = await storage.list_records("telemetry-dev")
    assert sorted(r["data"]["data"]["n"] for r in records) == list(range(10_000))
    assert {r["data"]["timestamp"] for r in records} == {"2026-11-23T15:00:00.123Z"}


@pytest.mark.anyio
async def test_seed_key_loses_a_burst_which_is_why_it_changed(tmp_path: Any) -> None:
    """The documented caveat of the seed's verbatim YAML: same-millisecond events collide."""
    from pathlib import Path

    seed = Path(__file__).parent.parent / "examples" / "telemetry" / "seed-record.yaml"
    clock = VirtualClock(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))
    url = f"sqlite:///{tmp_path / 'seed.sqlite'}"
    async with Runtime(
        clock=clock, database_url=url, definitions=[seed], entry_points=False
    ) as runtime:
        runtime.sign_in("ada@example.com")
        runtime.visit("https://example.com/x")
        for n in range(100):
            await runtime.run_brick("@pixies/telemetry/record", {**INPUT, "data": {"n": n}})
        await runtime.drain()
        storage = await runtime.storage()
        assert await storage.count("telemetry-dev") == 1


@pytest.mark.anyio
async def test_record_without_a_user_fails_in_the_background_only(tmp_path: Any) -> None:
    """The mod keeps going; the failure is reported, not raised into the caller."""
    url = f"sqlite:///{tmp_path / 'nouser.sqlite'}"
    async with Runtime(database_url=url, entry_points=False) as runtime:
        result = await runtime.run_brick("@pixies/telemetry/record", INPUT)
        assert result.output == {}
        await runtime.drain()
        [error] = list(runtime.background_errors)
    assert "needs a page visit" in error.message


@pytest.mark.anyio
@pytest.mark.parametrize(("variable", "value", "disabled"), DISABLE_CASES)
async def test_disabled_telemetry_records_nothing_and_says_so(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, disabled: bool
) -> None:
    monkeypatch.setenv(variable, value)
    url = f"sqlite:///{tmp_path / 'dnt.sqlite'}"
    async with Runtime(database_url=url, entry_points=False) as runtime:
        runtime.sign_in("ada@example.com")
        runtime.visit("https://example.com/x")
        result = await runtime.run_brick("@pixies/telemetry/record", INPUT)
        await runtime.drain()
        stored = await (await runtime.storage()).count("telemetry-dev")
        assert list(runtime.background_errors) == []
    if disabled:
        assert result.output == {
            "recorded": False,
            "reason": "telemetry disabled by BRICKRUN_TELEMETRY_DISABLED or DO_NOT_TRACK",
        }
        assert stored == 0
    else:
        assert (result.output, stored) == ({}, 1)
