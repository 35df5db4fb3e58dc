"""``brickrun events`` and ``brickrun telemetry status`` against real stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from brickrun import Runtime, VirtualClock
from brickrun.cli import _telemetry as cli_telemetry
from brickrun.cli import main
from brickrun.storage import open_storage
from brickrun.telemetry._api import Recorder

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
# The seeded events, oldest first (see seed()).
ALL = ["page_view", "api_call", "page_view", "search:submitted", "error", "action", "translate"]


def seed(url: str, database: str = "brickrun-telemetry") -> None:
    """Six runtime events over three days (two deployments) and one record-brick record."""

    async def go() -> None:
        clock = VirtualClock(T0)
        async with Runtime(
            database_url=url, clock=clock, telemetry_database=database, entry_points=False
        ) as runtime:
            runtime.sign_in("ada@example.com")
            runtime.visit("https://example.com/docs/1")
            dep1 = Recorder(runtime, source={"deploymentId": "dep-1"})
            dep2 = Recorder(runtime, source={"deploymentId": "dep-2"})
            dep1.page_view("https://example.com/docs/1", duration_ms=10)  # 11-20 12:00
            clock.advance(3600)
            dep1.api_call("/api/items/3", "GET", 200, 41)  # 11-20 13:00
            clock.advance(86400)
            dep2.page_view("https://example.com/docs/2")  # 11-21 13:00
            clock.advance(3600)
            dep2.record("search", "submitted", metadata={"results": 4})  # 11-21 14:00
            clock.advance(86400)
            dep1.error(ValueError("bad"))  # 11-22 14:00
            clock.advance(60)
            dep2.action("button_click", clicks=1)  # 11-22 14:01
            await runtime.drain()
            clock.advance(0.001)
            await runtime.run_brick(
                "@pixies/telemetry/record",
                {"databaseId": database, "eventName": "translate", "data": {"words": 3}},
            )  # 11-22 14:01:00.001, the record brick's shape
            await runtime.drain()

    anyio.run(go)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def seeded(storage_url: str) -> str:
    seed(storage_url)
    return storage_url


def test_events_lists_both_shapes_oldest_first(
    seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = run_json(capsys, "events", "--db", seeded, "--json")
    assert [r["name"] for r in rows] == ALL
    assert [r["shape"] for r in rows] == ["event"] * 6 + ["record"]
    first, last = rows[0], rows[-1]
    assert (first["timestamp"], first["deploymentId"], first["context"]) == (
        "2026-11-20T12:00:00.000Z",
        "dep-1",
        "/docs/[id]",
    )
    assert first["user"] == "ada@example.com" and first["data"]["id"] == first["id"]
    assert (last["user"], last["data"]["data"]) == ("ada@example.com", {"words": 3})
    assert rows[1]["context"] == "GET /api/items/[id]"


@pytest.mark.parametrize(
    ("filters", "names"),
    [
        (["--name", "page_view"], ["page_view", "page_view"]),
        (["--name", "search:*"], ["search:submitted"]),
        (["--name", "*_*"], ["page_view", "api_call", "page_view"]),
        (["--name", "nothing"], []),
        (["--deployment", "dep-1"], ["page_view", "api_call", "error"]),
        (["--since", "2026-11-21"], ALL[2:]),
        (["--until", "2026-11-21T13:00:00Z"], ALL[:2]),  # --until is exclusive
        (["--since", "2026-11-21T13:00:00Z", "--until", "2026-11-22"], ALL[2:4]),
        (["--deployment", "dep-2", "--since", "2026-11-22"], ["action"]),
        (["--limit", "2"], ["action", "translate"]),  # the newest two, oldest first
        (["--limit", "0"], ALL),
    ],
)
def test_events_filters(
    seeded: str, capsys: pytest.CaptureFixture[str], filters: list[str], names: list[str]
) -> None:
    rows = run_json(capsys, "events", "--db", seeded, "--json", *filters)
    assert [r["name"] for r in rows] == names


def test_events_text_output(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/text.sqlite"
    seed(url)
    assert main(["events", "--db", url, "--limit", "3"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].split("\t") == [
        "2026-11-22T14:00:00.000Z",
        "error",
        "dep-1",
        "ada@example.com",
        "ValueError",
        "{}",
    ]
    assert lines[1].split("\t")[1:] == [
        "action",
        "dep-2",
        "ada@example.com",
        "button_click",
        '{"clicks": 1}',
    ]
    assert lines[2].split("\t")[1:] == [
        "translate",
        "-",
        "ada@example.com",
        "https://example.com/docs/1",
        '{"words": 3}',
    ]
    assert "3 event(s) in brickrun-telemetry (the newest 3; --limit 0 for all)" in err


def test_events_default_store_and_database_come_from_the_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/env.sqlite"
    seed(url, database="telemetry-env")
    monkeypatch.setenv("BRICKRUN_DB_URL", url)
    monkeypatch.setenv("BRICKRUN_TELEMETRY_DATABASE", "telemetry-env")
    assert len(run_json(capsys, "events", "--json")) == 7
    assert run_json(capsys, "events", "--json", "--database", "other") == []


def test_events_usage_and_store_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "--since", "yesterday", "--db", "sqlite:///:memory:"]) == 2
    assert "--since 'yesterday' is not an ISO-8601 date or time" in capsys.readouterr().err
    assert main(["events", "--limit", "-1", "--db", "sqlite:///:memory:"]) == 2
    capsys.readouterr()
    assert main(["events", "--db", "postgresql://127.0.0.1:1/x", "--json"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["name"] == "StorageError" and "cannot connect" in error["message"]


def test_status_reports_enabled_records_and_outbox(
    seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(capsys, "telemetry", "status", "--db", seeded, "--json")
    assert (report["enabled"], report["disabledReason"]) == (True, None)
    assert (report["database"], report["records"]) == ("brickrun-telemetry", 7)
    assert report["latestRecordAt"] is not None and report["queue"] is None
    storage_has_outbox = hasattr(open_storage(seeded), "outbox_status")
    assert (report["outbox"] is not None) == storage_has_outbox
    assert main(["telemetry", "status", "--db", seeded]) == 0
    out = capsys.readouterr().out
    assert out.startswith("telemetry: enabled\nstore: ")
    assert "database: brickrun-telemetry (7 record(s), latest written " in out
    assert "queue: in-process" in out
    assert ("outbox: not configured" in out) != storage_has_outbox


def test_status_without_an_outbox(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def no_outbox(storage: Any, database: str) -> None:
        return None

    monkeypatch.setattr(cli_telemetry, "_outbox", no_outbox)
    assert main(["telemetry", "status", "--db", f"sqlite:///{tmp_path}/s.sqlite"]) == 0
    assert "outbox: not configured" in capsys.readouterr().out
    assert anyio.run(cli_telemetry._outbox, object(), "db") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("DO_NOT_TRACK", "1", "DO_NOT_TRACK is set"),
        ("BRICKRUN_TELEMETRY_DISABLED", "yes", "BRICKRUN_TELEMETRY_DISABLED is set"),
        ("DO_NOT_TRACK", "0", None),
        ("BRICKRUN_TELEMETRY_DISABLED", "false", None),
    ],
)
def test_status_says_why_telemetry_is_disabled(
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    reason: str | None,
) -> None:
    monkeypatch.setenv(variable, value)
    url = f"sqlite:///{tmp_path}/s.sqlite"
    report = run_json(capsys, "telemetry", "status", "--db", url, "--json")
    assert (report["enabled"], report["disabledReason"]) == (reason is None, reason)
    assert main(["telemetry", "status", "--db", url]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("telemetry: enabled" if reason is None else f"telemetry: disabled ({reason})")


def test_status_with_the_store_down(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://u:secret@127.0.0.1:1/x"
    assert main(["telemetry", "status", "--db", url, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["enabled"] is True and report["records"] is None
    assert report["store"] == "postgresql://u:***@127.0.0.1:1/x"
    assert "cannot connect" in report["error"]["message"]
    assert main(["telemetry", "status", "--db", url]) == 1
    captured = capsys.readouterr()
    assert "telemetry: enabled\nstore: postgresql://u:***@127.0.0.1:1/x" in captured.out
    assert "secret" not in captured.out + captured.err
