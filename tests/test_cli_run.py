"""``brickrun run`` (the example mod, bad input, --strict, options) and ``brickrun stats``."""

from __future__ import annotations

import json
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from brickrun.cli import main
from brickrun.storage import open_storage

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "mods" / "telemetry-mod.yaml"
SESSION = ROOT / "examples" / "mods" / "session.jsonl"
NOW = "2026-11-23T15:00:00Z"
TYPES = "visit, navigate, user, event, custom, invoke, wait"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.sqlite'}"


def stored(tmp_path: Path) -> dict[str, list[Any]]:
    """Every database in the test store with its records' data (nothing when no file)."""
    if not (tmp_path / "x.sqlite").exists():
        return {}

    async def read() -> dict[str, list[Any]]:
        async with open_storage(db_url(tmp_path)) as storage:
            return {
                info.name: [r["data"] for r in await storage.list_records(info.name)]
                for info in await storage.list_databases()
            }

    return anyio.run(read)


def replay_example(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str
) -> tuple[int, str, str]:
    return run(
        capsys,
        "run",
        str(EXAMPLE),
        "--events",
        str(SESSION),
        "--db",
        db_url(tmp_path),
        "--now",
        NOW,
        *extra,
    )


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def events(tmp_path: Path, *lines: dict[str, Any]) -> str:
    return write(tmp_path, "events.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")


# -- the example -----------------------------------------------------------------------------------


def test_example_replay_json_summary_and_records(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = replay_example(capsys, tmp_path, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert list(summary) == ["runs", "reported", "errors"]
    runs, reported = summary["runs"], summary["reported"]
    for entry in runs:
        assert list(entry) == ["component", "runId", "visit", "status"]
        assert entry["status"] == "success"
    for entry in reported:
        assert list(entry) == ["name", "component", "visit", "runId", "eventId"]
    # In session order: visit 1 (load, click, custom, navigate: load, click, custom), visit 2.
    assert [r["component"] for r in runs] == [
        "Count page loads",
        "Record clicks",
        "Record translations",
        "Count page loads",
        "Record clicks",
        "Record translations",
        "Count page loads",
        "Record clicks",
    ]
    visits = list(dict.fromkeys(r["visit"] for r in runs))
    assert len(visits) == 2 and [r["visit"] for r in runs] == [visits[0]] * 6 + [visits[1]] * 2
    assert len({r["runId"] for r in runs}) == 8
    # pageLoad is `once` (first run per visit), buttonClick `all`, translated `error-once`.
    assert Counter((e["name"], e["component"]) for e in reported) == {
        ("TriggerRun", "Count page loads"): 2,
        ("TriggerRun", "Record clicks"): 3,
    }
    by_id = {r["runId"]: r for r in runs}
    for event in reported:
        assert by_id[event["runId"]]["component"] == event["component"]
        assert by_id[event["runId"]]["visit"] == event["visit"]
    assert summary["errors"] == []

    records = stored(tmp_path)
    assert sorted(records) == ["brickrun-telemetry", "telemetry-dev"]
    assert sorted(e["eventId"] for e in reported) == sorted(
        d["id"] for d in records["brickrun-telemetry"]
    )
    assert {d["source"]["runId"] for d in records["brickrun-telemetry"]} == {
        e["runId"] for e in reported
    }
    business = sorted(
        (d["timestamp"], d["event"], json.dumps(d["data"], sort_keys=True), d["url"])
        for d in records["telemetry-dev"]
    )
    assert business == [
        ("2026-11-23T15:00:00.000Z", "click", '{"target": "#translate"}', "https://example.com/docs/intro"),
        ("2026-11-23T15:00:00.000Z", "translate", '{"language": "fr", "words": 120}', "https://example.com/docs/intro"),
        ("2026-11-23T15:00:01.500Z", "click", '{"target": "#buy"}', "https://example.com/pricing"),
        ("2026-11-23T15:00:01.500Z", "click", '{"target": "#copy"}', "https://example.com/docs/setup"),
        ("2026-11-23T15:00:01.500Z", "translate", '{"language": "de", "words": 48}', "https://example.com/docs/setup"),
    ]  # fmt: skip
    assert {d["email"] for d in records["telemetry-dev"]} == {"ada@example.com"}


EXPECTED_SUMMARY = """\
Replayed 10 events against @examples/telemetry-mod 1.0.0 (no deployment)

Runs
component            runs  successes  errors
Count page loads        3          3       0
Record clicks           3          3       0
Record translations     2          2       0

Errors
none

Reported
event       component         count
TriggerRun  Count page loads      2
TriggerRun  Record clicks         3

8 runs: 8 succeeded, 0 failed; 5 events reported
"""


def test_example_replay_human_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = replay_example(capsys, tmp_path)
    assert code == 0
    assert out == EXPECTED_SUMMARY
    assert (ROOT / "examples" / "mods" / "README.md").read_text().count(EXPECTED_SUMMARY) == 1


def test_a_terminal_gets_rich_tables(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = replay_example(capsys, tmp_path)
    assert code == 0
    assert "┏━" in out and "│ Record translations │    2 │" in out
    assert out.rstrip().endswith("8 runs: 8 succeeded, 0 failed; 5 events reported")


def test_trace_goes_to_stderr_grouped_by_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = replay_example(capsys, tmp_path, "--json", "--trace")
    assert code == 0
    runs = json.loads(out)["runs"]
    headers = [line for line in err.splitlines() if line.startswith("run ")]
    assert headers == [
        f"run {r['runId']} {r['component']} ({trigger}): success"
        for r, trigger in zip(
            runs,
            ["load", "click", "custom", "load", "click", "custom", "load", "click"],
            strict=True,
        )
    ]
    assert "  enter      extensionPoints[0].config.action[0] @pixiebrix/state/assign" in err


# -- bad input: a clear error with a location, and nothing recorded --------------------------------

UNKNOWN_STARTER = """
apiVersion: v3
kind: recipe
metadata: {id: "@test/unknown-starter", name: Unknown starter}
extensionPoints:
  - id: "@test/nope"
    label: Broken
    config:
      action:
        - id: "@pixiebrix/identity"
"""

REQUIRED_OPTION = """
apiVersion: v3
kind: recipe
metadata: {id: "@test/required", name: Required option}
options:
  schema:
    type: object
    properties:
      db: {type: string}
    required: [db]
definitions:
  loaded: {kind: extensionPoint, definition: {type: trigger, trigger: load}}
extensionPoints:
  - id: loaded
    label: On load
    config:
      action:
        - id: "@pixiebrix/identity"
"""


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "unknown starter brick",
            ["mod.yaml:5:5: extensionPoints[0].id: unknown starter brick '@test/nope'"],
        ),
        ("missing required option", ["mod.yaml:8:11: options.db: missing required option 'db'"]),
        (
            "option of the wrong type",
            [
                f"{EXAMPLE}:16:9: options.telemetryDatabase: option 'telemetryDatabase': 5 is "
                "not of type 'string'"
            ],
        ),
        (
            "malformed line",
            [
                "events.jsonl:3:36: malformed JSON (Expecting ',' delimiter); expected one JSON "
                "object per line"
            ],
        ),
        (
            "unknown event type",
            [f"events.jsonl:2:1: unknown event type 'scroll'; expected one of {TYPES}"],
        ),
        (
            "unknown starter brick to invoke",
            [
                "events.jsonl:2:1: 'invoke' of unknown starter brick 'menu'; expected the id of "
                "a menuItem, quickBar or contextMenu starter brick of the activated mod, and it "
                "has none"
            ],
        ),
    ],
)
def test_bad_input_is_a_located_error_and_nothing_is_recorded(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    expected: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    visit = {"type": "visit", "url": "https://example.com/"}
    argv = [str(EXAMPLE), "--events", "events.jsonl", "--db", db_url(tmp_path), "--now", NOW]
    events(tmp_path, visit, {"type": "event", "event": "click", "target": "#a"})
    if case == "unknown starter brick":
        write(tmp_path, "mod.yaml", UNKNOWN_STARTER)
        argv[0] = "mod.yaml"
    elif case == "missing required option":
        write(tmp_path, "mod.yaml", REQUIRED_OPTION)
        argv[0] = "mod.yaml"
    elif case == "option of the wrong type":
        argv += ["--options", "telemetryDatabase=5"]
    elif case == "malformed line":
        write(
            tmp_path,
            "events.jsonl",
            f"{json.dumps(visit)}\n"
            '{"type": "event", "event": "click"}\n'
            '{"type": "event", "event": "click" "target": "#b"}\n',
        )
    elif case == "unknown event type":
        events(tmp_path, visit, {"type": "scroll", "y": 300})
    else:
        events(tmp_path, visit, {"type": "invoke", "starterBrick": "menu"})

    code, out, err = run(capsys, "run", *argv)
    assert (code, out) == (1, "")
    count = "1 definition error"
    assert err.splitlines() == [*expected, f"brickrun run: {count}; nothing ran"]
    assert stored(tmp_path) == {}, "nothing recorded for runs that never started"

    code, out, _ = run(capsys, "run", *argv, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["error"]["name"] == "DefinitionError"
    assert report["error"]["message"] == count
    assert [
        f"{e['file']}:{e['line']}:{e['column']}: "
        + (f"{e['path']}: " if e["path"] else "")
        + e["message"]
        for e in report["errors"]
    ] == expected
    assert stored(tmp_path) == {}


def test_every_bad_line_is_listed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "events.jsonl", '{"type": "scroll"}\n{"type": "wait"}\n')
    code, _, err = run(capsys, "run", str(EXAMPLE), "--events", path, "--db", db_url(tmp_path))
    assert code == 1
    assert err.splitlines() == [
        f"{path}:1:1: unknown event type 'scroll'; expected one of {TYPES}",
        f"{path}:2:1: missing field 'ms' in a 'wait' event; expected a non-negative number of "
        "milliseconds",
        "brickrun run: 2 definition errors; nothing ran",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--options", "nokey"], "--options: expected KEY=VALUE, found 'nokey'"),
        (["--options", "=5"], "--options: expected KEY=VALUE, found '=5'"),
        (["--now", "yesterday"], "--now: not an ISO-8601 instant: 'yesterday' (e.g. " + NOW + ")"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "run", str(EXAMPLE), "--db", db_url(tmp_path), *argv)
    assert (code, out, err) == (2, "", f"brickrun run: error: {message}\n")


def test_bad_database_url_is_an_error_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "run", str(EXAMPLE), "--events", str(SESSION), "--db", "foo://x")
    assert (code, out) == (1, "")
    assert err.startswith("brickrun run: StorageError: unsupported storage URL 'foo://x'")


# -- --strict --------------------------------------------------------------------------------------

FAILING = """
apiVersion: v3
kind: recipe
metadata: {id: "@test/failing", name: Failing, version: 0.1.0}
definitions:
  clicked:
    kind: extensionPoint
    definition: {type: trigger, trigger: click, reportMode: all}
extensionPoints:
  - id: clicked
    label: Fail on click
    config:
      action:
        - id: "@pixiebrix/error"
          if: !var "@input.event.fail"
          config: {message: !nunjucks "no handler for {{ @input.event.target }}"}
"""


def test_failed_runs_are_data_unless_strict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mod = write(tmp_path, "failing.yaml", FAILING)
    session = events(
        tmp_path,
        {"type": "visit", "url": "https://example.com/"},
        {"type": "event", "event": "click", "target": "#ok"},
        {"type": "event", "event": "click", "target": "#buy", "data": {"fail": True}},
    )
    argv = ["run", mod, "--events", session, "--db", db_url(tmp_path), "--now", NOW]
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    summary = json.loads(out)
    ok, failed = summary["runs"]
    assert ok["status"] == "success"
    assert failed["status"] == "error"
    assert failed["error"] == {"name": "BusinessError", "message": "no handler for #buy"}
    assert summary["errors"] == [
        {
            "component": "Fail on click",
            "runId": failed["runId"],
            "visit": failed["visit"],
            "name": "BusinessError",
            "message": "no handler for #buy",
        }
    ]
    assert [(e["name"], e["runId"]) for e in summary["reported"]] == [
        ("TriggerRun", ok["runId"]),
        ("TriggerError", failed["runId"]),
    ]

    code, out, _ = run(capsys, *argv, "--strict")
    assert code == 1
    lines = out.splitlines()
    errors = lines[lines.index("Errors") + 1 : lines.index("Errors") + 3]
    assert errors[0].split() == ["component", "run", "id", "error"]
    assert errors[1].startswith("Fail on click  ")
    assert errors[1].endswith("  BusinessError: no handler for #buy")
    assert lines[-1] == "2 runs: 1 succeeded, 1 failed; 2 events reported"

    clean = events(tmp_path, {"type": "visit", "url": "https://example.com/"})
    code, _, _ = run(capsys, "run", mod, "--events", clean, "--db", db_url(tmp_path), "--strict")
    assert code == 0


# -- options ---------------------------------------------------------------------------------------

TYPED_OPTIONS = """
apiVersion: v3
kind: recipe
metadata: {id: "@test/options", name: Options}
options:
  schema:
    type: object
    properties:
      count: {type: integer}
      enabled: {type: boolean}
      name: {type: string}
      tags: {type: array, items: {type: string}}
      literal: {type: string}
definitions:
  loaded: {kind: extensionPoint, definition: {type: trigger, trigger: load}}
extensionPoints:
  - id: loaded
    label: Echo options
    config:
      action:
        - id: "@pixiebrix/identity"
          config: {options: !var "@options"}
"""


def echoed_options(err: str) -> Any:
    [line] = [
        line for line in err.splitlines() if "enter" in line and "@pixiebrix/identity" in line
    ]
    return json.loads(line.split("@pixiebrix/identity ", 1)[1])["options"]


def test_options_values_are_json_when_they_parse(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mod = write(tmp_path, "options.yaml", TYPED_OPTIONS)
    session = events(tmp_path, {"type": "visit", "url": "https://example.com/"})
    argv = ["run", mod, "--events", session, "--db", db_url(tmp_path), "--json", "--trace"]
    code, _, err = run(
        capsys,
        *argv,
        "--options",
        "count=5",
        "--options",
        "enabled=true",
        "--options",
        "name=ada",
        "--options",
        'tags=["a", "b"]',
        "--options",
        "literal=NaN",
    )
    assert code == 0, err
    assert echoed_options(err) == {
        "count": 5,
        "enabled": True,
        "name": "ada",
        "tags": ["a", "b"],
        "literal": "NaN",
    }

    code, _, err = run(capsys, *argv[:-2], "--options", "name=5")
    assert code == 1
    assert "options.name: option 'name': 5 is not of type 'string'" in err

    options_file = write(tmp_path, "options.yaml.in", "count: 1\nname: from-file\n")
    code, _, err = run(capsys, *argv, "--options-file", options_file, "--options", "count=2")
    assert code == 0, err
    assert echoed_options(err) == {"count": 2, "name": "from-file"}


def test_options_file_must_hold_an_object(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    options_file = write(tmp_path, "options.json", '["telemetry-dev"]')
    code, _, err = run(capsys, "run", str(EXAMPLE), "--options-file", options_file)
    assert code == 1
    assert err.splitlines() == [
        f"{options_file}:1:1: found an array; expected an object of option values (name: value)",
        "brickrun run: 1 definition error; nothing ran",
    ]


# -- time, user-invoked starter bricks -------------------------------------------------------------

TIMERS = """
apiVersion: v3
kind: recipe
metadata: {id: "@test/timers", name: Timers}
definitions:
  tick:
    kind: extensionPoint
    definition: {type: trigger, trigger: interval, intervalMillis: 1000}
  typed:
    kind: extensionPoint
    definition: {type: trigger, trigger: keyup, debounce: {waitMillis: 300}}
  menu: {kind: extensionPoint, definition: {type: menuItem}}
extensionPoints:
  - {id: tick, label: Tick, config: {action: []}}
  - {id: typed, label: Typed, config: {action: []}}
  - {id: menu, label: Menu, config: {action: []}}
"""


def test_wait_drives_interval_and_debounce_and_invoke_runs_a_menu_item(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mod = write(tmp_path, "timers.yaml", TIMERS)
    keyup = {"type": "event", "event": "keyup", "target": "#q"}
    session = events(
        tmp_path,
        {"type": "visit", "url": "https://example.com/"},
        keyup,
        {"type": "wait", "ms": 200},
        keyup,
        {"type": "wait", "ms": 200},
        keyup,
        {"type": "wait", "ms": 2100},  # 2500 ms: the debounce fired at 700, ticks at 1000, 2000
        {"type": "invoke", "starterBrick": "menu"},
    )
    code, out, err = run(
        capsys, "run", mod, "--events", session, "--db", db_url(tmp_path), "--json"
    )
    assert code == 0, err
    assert [r["component"] for r in json.loads(out)["runs"]] == ["Typed", "Tick", "Tick", "Menu"]


# -- brickrun stats --------------------------------------------------------------------------------


def test_stats_after_replays_with_deployments(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, _ = replay_example(capsys, tmp_path, "--deployment", "d-1")
    assert code == 0
    failing = write(tmp_path, "failing.yaml", FAILING)
    session = events(
        tmp_path,
        {"type": "visit", "url": "https://example.com/"},
        {"type": "event", "event": "click", "data": {"fail": True}},
        {"type": "event", "event": "click", "data": {"fail": True}},
        {"type": "event", "event": "click"},
    )
    code, _, _ = run(
        capsys, "run", failing, "--events", session, "--db", db_url(tmp_path), "--deployment", "d-2"
    )
    assert code == 0

    code, out, _ = run(capsys, "stats", "--db", db_url(tmp_path), "--json")
    assert code == 0
    assert json.loads(out) == [
        {
            "deploymentId": "d-1",
            "starterBrickId": "@examples/telemetry-mod/buttonClick",
            "starterBrickName": "buttonClick",
            "runs": 3,
            "errors": 0,
        },
        {
            "deploymentId": "d-1",
            "starterBrickId": "@examples/telemetry-mod/pageLoad",
            "starterBrickName": "pageLoad",
            "runs": 2,
            "errors": 0,
        },
        {
            "deploymentId": "d-2",
            "starterBrickId": "@test/failing/clicked",
            "starterBrickName": "clicked",
            "runs": 1,
            "errors": 2,
        },
    ]

    code, out, _ = run(capsys, "stats", "--db", db_url(tmp_path))
    assert code == 0
    assert out == textwrap.dedent(
        """\
        Engagement (brickrun-telemetry)
        deployment  starter brick                                      runs
        d-1         buttonClick (@examples/telemetry-mod/buttonClick)     3
        d-1         pageLoad (@examples/telemetry-mod/pageLoad)           2
        d-2         clicked (@test/failing/clicked)                       1

        Errors (brickrun-telemetry)
        deployment  starter brick                    errors
        d-2         clicked (@test/failing/clicked)       2
        """
    )


def test_stats_of_an_empty_database(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "stats", "--db", db_url(tmp_path), "--database", "nothing-here")
    assert (code, out, err) == (0, "", "no starter-brick telemetry in nothing-here\n")
    code, out, _ = run(capsys, "stats", "--db", db_url(tmp_path), "--json")
    assert (code, json.loads(out)) == (0, [])


BACKGROUND_FAILURE = """
apiVersion: v3
kind: recipe
metadata: {id: "@test/background", name: Background}
definitions:
  clicked: {kind: extensionPoint, definition: {type: trigger, trigger: click}}
extensionPoints:
  - id: clicked
    label: Later
    config:
      action:
        - id: "@pixiebrix/error"
          async: true
          config: {message: failed later}
"""


def test_a_failed_background_step_is_an_error_of_its_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mod = write(tmp_path, "background.yaml", BACKGROUND_FAILURE)
    session = events(
        tmp_path,
        {"type": "visit", "url": "https://example.com/"},
        {"type": "event", "event": "click"},
    )
    argv = ["run", mod, "--events", session, "--db", db_url(tmp_path)]
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    summary = json.loads(out)
    [ran] = summary["runs"]
    assert ran["status"] == "success", "the run itself went on"
    assert summary["errors"] == [
        {
            "component": "Later",
            "runId": ran["runId"],
            "visit": ran["visit"],
            "name": "BusinessError",
            "message": "failed later",
            "background": True,
        }
    ]
    assert [e["name"] for e in summary["reported"]] == ["TriggerRun", "TriggerError"]

    code, out, _ = run(capsys, *argv, "--strict")
    assert code == 1
    assert "BusinessError: failed later (background step)" in out
    assert out.splitlines()[-1] == (
        "1 run: 1 succeeded, 0 failed; 1 background step failed; 2 events reported"
    )
