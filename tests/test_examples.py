"""Every example in examples/ runs as documented (the mod replay is in test_cli_run.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from brickrun.cli import main
from brickrun.storage import open_storage

EXAMPLES = Path(__file__).parent.parent / "examples"


def records(url: str, database: str) -> list[Any]:
    async def go() -> list[Any]:
        async with open_storage(url) as storage:
            return list(await storage.list_records(database))

    return anyio.run(go)


def test_host_app_records_telemetry_on_user_actions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location(
        "translator", EXAMPLES / "host_app" / "translator.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["translator"] = module
    spec.loader.exec_module(module)
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    assert module.main(["--db", url, "--email", "bo@example.com", "good morning", "see you"]) == 0
    assert capsys.readouterr().out.splitlines() == ["bon matin", "à bientôt"]
    stored = records(url, "telemetry-dev")
    by_event: dict[str, list[Any]] = {}
    for record in stored:
        by_event.setdefault(record["data"]["event"], []).append(record["data"])
    assert sorted(d["data"]["words"] for d in by_event["translate"]) == [2, 2]
    assert [d["data"] for d in by_event["click"]] == [{"target": "#translate"}] * 2
    assert all(d["email"] == "bo@example.com" for d in by_event["click"])
    assert all(r["id"].startswith("bo@example.com-") for r in stored)
    reported = records(url, "brickrun-telemetry")
    names = sorted(r["data"]["name"] for r in reported)
    # click is reported in "all" mode (2); load runs once; translated is error-only.
    assert names == ["TriggerRun", "TriggerRun", "TriggerRun"]


@pytest.mark.parametrize(
    "definition", ["telemetry/seed-record.yaml", "../definitions/pixies/telemetry/record.yaml"]
)
def test_record_brick_from_the_cli(
    definition: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped brick, and the seed's YAML verbatim, both record through the CLI."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    code = main(
        [
            "brick", str(EXAMPLES / definition), "--db", url, "--json",
            "--input", '{"databaseId": "telemetry-dev", "eventName": "translate", '
            '"data": {"words": 120}}',
            "--email", "ada@example.com", "--url", "https://example.com/x",
            "--now", "2026-11-23T15:00:00.123Z",
        ]
    )  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {}
    [record] = records(url, "telemetry-dev")
    assert record["data"] == {
        "url": "https://example.com/x",
        "email": "ada@example.com",
        "timestamp": "2026-11-23T15:00:00.123Z",
        "event": "translate",
        "data": {"words": 120},
    }
    if "seed" in definition:
        assert record["id"] == "ada@example.com-2026-11-23T15:00:00.123Z"
    else:
        email, _, unique = record["id"].partition("-2026-11-23T15:00:00.123Z-")
        assert email == "ada@example.com"
        assert uuid.UUID(unique).version == 4
