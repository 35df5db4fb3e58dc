"""Mods, starter bricks and telemetry modes (SPEC §6), end to end on a real SQLite store."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from brickrun import (
    ComponentRun,
    DefinitionErrors,
    Runtime,
    SyncRuntime,
    VirtualClock,
)

pytestmark = pytest.mark.anyio

START = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def mod_yaml(definition: str, action: str, *, options: str = "{}") -> str:
    return (
        "apiVersion: v3\nkind: recipe\n"
        "metadata: {id: '@test/mod', name: Test mod, version: 1.2.3}\n"
        f"options: {{schema: {options}}}\n"
        "definitions:\n"
        f"  starter:\n    kind: extensionPoint\n    definition: {definition}\n"
        "extensionPoints:\n"
        "  - id: starter\n    label: Subject\n    config:\n      action:\n"
        + textwrap.indent(textwrap.dedent(action).strip("\n"), "        ")
        + "\n"
    )


FAILING_ON_DEMAND = """
- id: "@pixiebrix/error"
  if: !var "@input.event.fail"
  config: {message: asked to fail}
"""


class Harness:
    """A started runtime with one mod, recording runs and reported events."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.runs: list[ComponentRun] = []
        self.reported: list[tuple[str, str | None]] = []
        runtime.run_listeners.append(self.runs.append)
        runtime.report_listeners.append(
            lambda run, event: self.reported.append((event.name, run.visit))
        )


@pytest.fixture
async def harness(tmp_path: Path) -> Any:
    async with Runtime(
        clock=VirtualClock(START),
        database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
        entry_points=False,
    ) as runtime:
        yield Harness(runtime)


async def activate(h: Harness, tmp_path: Path, text: str, **kwargs: Any) -> Any:
    path = tmp_path / "mod.yaml"
    path.write_text(text)
    return await h.runtime.activate(path, **kwargs)


# -- the telemetry-mode table ------------------------------------------------------------------

# Each sequence item: "ok" / "error" (a custom event whose run succeeds / fails),
# "visit" (a new page visit) or "navigate" (a navigation inside the visit).
ONE_VISIT = ["error", "navigate", "error", "ok", "navigate", "ok"]
TWO_VISITS = ["ok", "error", "visit", "ok", "error"]

MODES = [
    ("all", ONE_VISIT, ["TriggerError", "TriggerError", "TriggerRun", "TriggerRun"]),
    ("once", ONE_VISIT, ["TriggerError", "TriggerRun"]),
    ("error-once", ONE_VISIT, ["TriggerError"]),
    ("never", ONE_VISIT, []),
    ("all", TWO_VISITS, ["TriggerRun@1", "TriggerError@1", "TriggerRun@2", "TriggerError@2"]),
    ("once", TWO_VISITS, ["TriggerRun@1", "TriggerError@1", "TriggerRun@2", "TriggerError@2"]),
    ("error-once", TWO_VISITS, ["TriggerError@1", "TriggerError@2"]),
    ("never", TWO_VISITS, []),
]


@pytest.mark.parametrize(
    ("mode", "sequence", "expected"),
    MODES,
    ids=[f"{m}-{'one' if s is ONE_VISIT else 'two'}-visit(s)" for m, s, _ in MODES],
)
async def test_telemetry_modes(
    harness: Harness, tmp_path: Path, mode: str, sequence: list[str], expected: list[str]
) -> None:
    definition = (
        f"{{type: trigger, trigger: custom, customEvent: {{eventName: go}}, reportMode: {mode}}}"
    )
    await activate(harness, tmp_path, mod_yaml(definition, FAILING_ON_DEMAND))
    rt = harness.runtime
    rt.sign_in("ada@example.com")
    rt.visit("https://example.com/1")
    visits = [rt.host.page.session_id]  # type: ignore[union-attr]
    for item in sequence:
        if item == "visit":
            rt.visit("https://example.com/2")
            visits.append(rt.host.page.session_id)  # type: ignore[union-attr]
        elif item == "navigate":
            rt.navigate("https://example.com/1#more")
        else:
            rt.dispatch_custom("go", {"fail": item == "error"})
        await rt.settle()
    statuses = [r.status for r in harness.runs]
    assert statuses == [
        "error" if i == "error" else "success" for i in sequence if i in ("ok", "error")
    ]
    if sequence is TWO_VISITS:
        got = [f"{name}@{visits.index(visit) + 1}" for name, visit in harness.reported]
    else:
        got = [name for name, _ in harness.reported]
    assert got == expected
    storage = await rt.storage()
    stored = await storage.list_records("brickrun-telemetry")
    assert sorted(r["data"]["name"] for r in stored) == sorted(n.split("@")[0] for n in expected)


async def test_default_mode_is_once(harness: Harness, tmp_path: Path) -> None:
    definition = "{type: trigger, trigger: custom, customEvent: {eventName: go}}"
    await activate(harness, tmp_path, mod_yaml(definition, FAILING_ON_DEMAND))
    rt = harness.runtime
    rt.visit("https://example.com/")
    for fail in (False, False, True, True):
        rt.dispatch_custom("go", {"fail": fail})
        await rt.settle()
    assert [name for name, _ in harness.reported] == ["TriggerRun", "TriggerError"]


async def test_reported_event_holds_only_the_documented_fields(
    harness: Harness, tmp_path: Path
) -> None:
    definition = "{type: trigger, trigger: load, reportMode: all}"
    mod = await activate(
        harness,
        tmp_path,
        mod_yaml(definition, '- id: "@pixiebrix/identity"'),
        deployment_id="dep-1",
    )
    rt = harness.runtime
    rt.sign_in("ada@example.com", user_id="u-1")
    rt.visit("https://example.com/private/case/42?token=abc", "Secret case")
    await rt.settle()
    storage = await rt.storage()
    [record] = await storage.list_records("brickrun-telemetry")
    data = record["data"]
    component = mod.components[0]
    assert data == {
        "id": record["id"],
        "name": "TriggerRun",
        "timestamp": "2026-11-23T15:00:00.000Z",
        "source": {
            "modId": "@test/mod",
            "modVersion": "1.2.3",
            "modComponentId": component.id,
            "modComponentLabel": "Subject",
            "starterBrickId": "@test/mod/starter",
            "starterBrickName": "starter",
            "trigger": "load",
            "deploymentId": "dep-1",
            "runId": harness.runs[0].run_id,
        },
        "user": "ada@example.com",
        "session_id": None,
        "url": None,
        "platform": "brickrun",
        "duration_ms": 0.0,
        "metadata": {},
        "private_metadata": {},
        "error": None,
        "context": None,
    }


async def test_trigger_error_carries_innermost_error(harness: Harness, tmp_path: Path) -> None:
    definition = "{type: trigger, trigger: click, reportMode: all}"
    action = """
    - id: "@pixiebrix/run"
      config:
        body: !pipeline
          - id: "@pixiebrix/error"
            config: {message: deep failure}
    """
    await activate(harness, tmp_path, mod_yaml(definition, action))
    rt = harness.runtime
    rt.visit("https://example.com/")
    rt.dispatch("click", {"target": "#go"})
    await rt.settle()
    [run] = harness.runs
    assert (run.status, run.error) == (
        "error",
        {"name": "BusinessError", "message": "deep failure"},
    )
    storage = await rt.storage()
    [record] = await storage.list_records("brickrun-telemetry")
    assert record["data"]["error"] == {
        "name": "BusinessError",
        "message": "deep failure",
        "business": True,
    }


async def test_async_step_error_is_reported_under_the_same_mode(
    harness: Harness, tmp_path: Path
) -> None:
    definition = "{type: trigger, trigger: click, reportMode: error-once}"
    action = """
    - id: "@pixiebrix/error"
      async: true
      config: {message: background failure}
    - id: "@pixiebrix/identity"
    """
    await activate(harness, tmp_path, mod_yaml(definition, action))
    rt = harness.runtime
    rt.visit("https://example.com/")
    for _ in range(2):
        rt.dispatch("click")
        await rt.settle()
    assert [r.status for r in harness.runs] == ["success", "success"]
    assert [name for name, _ in harness.reported] == ["TriggerError"]


# -- inputs, triggers, options ------------------------------------------------------------------


async def test_input_is_event_plus_reader_output(harness: Harness, tmp_path: Path) -> None:
    definition = "{type: trigger, trigger: keydown, reader: '@pixiebrix/document-context'}"
    action = """
    - id: "@pixiebrix/state/assign"
      config: {variableName: seen, value: !var "@input"}
    """
    mod = await activate(harness, tmp_path, mod_yaml(definition, action))
    rt = harness.runtime
    rt.visit("https://example.com/form", "Form")
    rt.dispatch("keydown", {"key": "Enter", "keyCode": 13})
    await rt.settle()
    assert mod.variables.get()["seen"] == {
        "event": {"key": "Enter", "keyCode": 13},
        "url": "https://example.com/form",
        "title": "Form",
        "timestamp": "2026-11-23T15:00:00.000Z",
        "isFrame": False,
    }


async def test_load_runs_on_visit_and_navigation_with_null_event(
    harness: Harness, tmp_path: Path
) -> None:
    definition = "{type: trigger, trigger: load}"
    action = """
    - id: "@pixiebrix/state/set"
      config: {data: {events: [!var "@input.event"]}, mergeStrategy: shallow}
    """
    await activate(harness, tmp_path, mod_yaml(definition, action))
    rt = harness.runtime
    rt.visit("https://example.com/")
    rt.navigate("https://example.com/next")
    await rt.settle()
    assert [r.trigger for r in harness.runs] == ["load", "load"]
    assert len({r.run_id for r in harness.runs}) == 2, "each run gets a fresh run id"


async def test_options_defaults_and_bindings(harness: Harness, tmp_path: Path) -> None:
    options = "{type: object, properties: {db: {type: string, default: telemetry-dev}}}"
    definition = "{type: trigger, trigger: click}"
    action = """
    - id: "@pixiebrix/state/assign"
      config: {variableName: db, value: !var "@options.db"}
    """
    mod = await activate(harness, tmp_path, mod_yaml(definition, action, options=options))
    harness.runtime.visit("https://example.com/")
    harness.runtime.dispatch("click")
    await harness.runtime.settle()
    assert mod.options == {"db": "telemetry-dev"}
    assert mod.variables.get() == {"db": "telemetry-dev"}


async def test_activation_reports_every_problem_at_once(harness: Harness, tmp_path: Path) -> None:
    text = (
        "apiVersion: v3\nkind: recipe\nmetadata: {id: '@test/bad', name: Bad}\n"
        "options:\n  schema:\n    type: object\n    properties:\n"
        "      db: {type: string}\n      count: {type: integer}\n    required: [db]\n"
        "extensionPoints:\n"
        "  - id: '@test/no-such-starter'\n    config:\n      action:\n"
        "        - id: '@pixiebrix/identity'\n"
    )
    with pytest.raises(DefinitionErrors) as info:
        await activate(harness, tmp_path, text, options={"count": "three"})
    assert [str(e) for e in info.value.errors] == [
        f"{tmp_path / 'mod.yaml'}:8:11: options.db: missing required option 'db'",
        f"{tmp_path / 'mod.yaml'}:9:14: options.count: option 'count': "
        "'three' is not of type 'integer'",
        f"{tmp_path / 'mod.yaml'}:12:5: extensionPoints[0].id: "
        "unknown starter brick '@test/no-such-starter'",
    ]
    assert harness.runs == [], "nothing ran for a mod that never activated"


async def test_custom_event_detail_must_be_an_object(harness: Harness, tmp_path: Path) -> None:
    definition = "{type: trigger, trigger: custom, customEvent: {eventName: go}, reportMode: all}"
    await activate(harness, tmp_path, mod_yaml(definition, '- id: "@pixiebrix/identity"'))
    harness.runtime.visit("https://example.com/")
    harness.runtime.dispatch_custom("go", [1, 2])
    harness.runtime.dispatch_custom("other", {})
    await harness.runtime.settle()
    [run] = harness.runs
    assert run.error == {"name": "BusinessError", "message": "Custom event detail is not an object"}


async def test_interval_and_debounce_on_the_virtual_clock(harness: Harness, tmp_path: Path) -> None:
    rt = harness.runtime
    interval = mod_yaml(
        "{type: trigger, trigger: interval, intervalMillis: 1000}", '- id: "@pixiebrix/identity"'
    )
    await activate(harness, tmp_path, interval)
    rt.visit("https://example.com/")
    await rt.advance(999)
    assert harness.runs == [], "the first run comes after one full interval"
    await rt.advance(2001)
    assert [r.trigger for r in harness.runs] == ["interval"] * 3

    debounced = mod_yaml(
        "{type: trigger, trigger: click, debounce: {waitMillis: 300}}",
        '- id: "@pixiebrix/identity"',
    ).replace("@test/mod", "@test/debounced")
    (tmp_path / "d").mkdir()
    await activate(harness, tmp_path / "d", debounced)
    harness.runs.clear()
    for _ in range(5):
        rt.dispatch("click", {"n": 1})
        await rt.advance(100)
    clicks = [r for r in harness.runs if r.trigger == "click"]
    assert clicks == [], "trailing edge: nothing while clicks keep coming"
    await rt.advance(300)
    assert [r.trigger for r in harness.runs if r.trigger == "click"] == ["click"]


async def test_statechange_trigger_fires_on_mod_variable_change(
    harness: Harness, tmp_path: Path
) -> None:
    text = (
        "apiVersion: v3\nkind: recipe\nmetadata: {id: '@test/state', name: State}\n"
        "definitions:\n"
        "  onClick: {kind: extensionPoint, definition: {type: trigger, trigger: click}}\n"
        "  onState: {kind: extensionPoint, definition: {type: trigger, trigger: statechange}}\n"
        "extensionPoints:\n"
        "  - id: onClick\n    label: writer\n    config:\n      action:\n"
        "        - {id: '@pixiebrix/state/assign', config: {variableName: x, value: 1}}\n"
        "  - id: onState\n    label: watcher\n    config:\n      action:\n"
        "        - {id: '@pixiebrix/identity'}\n"
    )
    await activate(harness, tmp_path, text)
    rt = harness.runtime
    rt.visit("https://example.com/")
    rt.dispatch("click")
    await rt.settle()
    rt.dispatch("click")  # the same value again: no change, no statechange
    await rt.settle()
    assert [r.component for r in harness.runs] == ["writer", "watcher", "writer"]


async def test_user_invoked_starter_brick(harness: Harness, tmp_path: Path) -> None:
    await activate(harness, tmp_path, mod_yaml("{type: menuItem}", '- id: "@pixiebrix/identity"'))
    runs = harness.runtime.invoke("starter")
    await harness.runtime.settle()
    assert len(runs) == 1 and runs[0].status == "success"
    assert harness.runs[0].trigger == "menuItem"


async def test_concurrent_runs_of_one_component_are_isolated(
    harness: Harness, tmp_path: Path
) -> None:
    definition = "{type: trigger, trigger: custom, customEvent: {eventName: go}, reportMode: all}"
    action = """
    - id: "@pixiebrix/identity"
      config: {n: !var "@input.event.n"}
      outputKey: mine
    - id: "@pixiebrix/identity"
      config: !var "@mine"
    """
    await activate(harness, tmp_path, mod_yaml(definition, action))
    harness.runtime.visit("https://example.com/")
    for n in range(50):
        harness.runtime.dispatch_custom("go", {"n": n})
    await harness.runtime.settle()
    assert sorted(r.output["n"] for r in harness.runs) == list(range(50))


async def test_thousand_concurrent_trigger_runs_record_telemetry(
    harness: Harness, tmp_path: Path
) -> None:
    definition = "{type: trigger, trigger: custom, customEvent: {eventName: go}, reportMode: all}"
    action = """
    - id: "@pixies/telemetry/record"
      config:
        databaseId: load-test
        eventName: go
        data: {n: !var "@input.event.n"}
    """
    await activate(harness, tmp_path, mod_yaml(definition, action))
    rt = harness.runtime
    rt.sign_in("ada@example.com")
    rt.visit("https://example.com/")
    for n in range(1000):
        rt.dispatch_custom("go", {"n": n})
    await rt.settle()
    assert [r.status for r in harness.runs].count("success") == 1000
    storage = await rt.storage()
    records = await storage.list_records("load-test")
    assert sorted(r["data"]["data"]["n"] for r in records) == list(range(1000))
    assert await storage.count("brickrun-telemetry") == 1000


def test_sync_facade(tmp_path: Path) -> None:
    path = tmp_path / "mod.yaml"
    path.write_text(
        mod_yaml(
            "{type: trigger, trigger: click, reportMode: all}",
            """
            - id: "@pixiebrix/state/assign"
              config: {variableName: clicked, value: !var "@input.event.target"}
            """,
        )
    )
    with SyncRuntime(
        database_url=f"sqlite:///{tmp_path / 's.sqlite'}", entry_points=False
    ) as runtime:
        mod = runtime.activate(path)
        runtime.visit("https://example.com/")
        runtime.dispatch("click", {"target": "#buy"})
        assert runtime.drain(timeout=5)
        assert mod.variables.get() == {"clicked": "#buy"}
        assert runtime.run_brick("@pixiebrix/identity", {"a": 1}).output == {"a": 1}
    runtime.close()  # idempotent
