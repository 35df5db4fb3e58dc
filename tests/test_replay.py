"""Events files (parsing, checks, locations) and replaying them through the Runtime API."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brickrun import (
    BrickContext,
    DefinitionError,
    DefinitionErrors,
    Runtime,
    VirtualClock,
    brick,
)
from brickrun._replay import (
    CustomEvent,
    DomEvent,
    Invoke,
    Navigate,
    SignIn,
    Visit,
    Wait,
    check_events,
    load_events,
    parse_events,
    replay,
)
from brickrun.errors import Location

START = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
TYPES = "visit, navigate, user, event, custom, invoke, wait"
DOM = "click, dblclick, blur, hover, keydown, keyup, keypress, change, selectionchange"


def errors_of(text: str) -> list[str]:
    with pytest.raises(DefinitionErrors) as caught:
        parse_events(text, "events.jsonl")
    return [str(error) for error in caught.value.errors]


# -- parsing -------------------------------------------------------------------------------------


def test_every_event_type_parses_to_its_typed_event() -> None:
    text = "\n".join(
        [
            '{"type": "user", "email": "ada@example.com", "user": "u-ada", "groups": ["eng"]}',
            '{"type": "visit", "url": "https://example.com/", "title": "Home"}',
            "",
            '{"type": "navigate", "url": "https://example.com/docs"}',
            '{"type": "event", "event": "click", "target": "#buy", "data": {"x": 1}}',
            '{"type": "custom", "eventName": "translated"}',
            '{"type": "invoke", "starterBrick": "@acme/menu"}',
            '{"type": "wait", "ms": 1.5}',
        ]
    )
    at = [Location("s.jsonl", line, 1) for line in range(1, 9)]
    assert parse_events(text, "s.jsonl") == [
        SignIn(email="ada@example.com", user_id="u-ada", groups=("eng",), location=at[0]),
        Visit(url="https://example.com/", title="Home", location=at[1]),
        Navigate(url="https://example.com/docs", title=None, location=at[3]),
        DomEvent(event="click", target="#buy", data={"x": 1}, location=at[4]),
        CustomEvent(event_name="translated", detail={}, location=at[5]),
        Invoke(starter_brick="@acme/menu", location=at[6]),
        Wait(ms=1.5, location=at[7]),
    ]


@pytest.mark.parametrize(
    ("target", "data", "payload"),
    [
        ("#buy", None, {"target": "#buy"}),
        ("#buy", {"x": 1, "target": "old"}, {"x": 1, "target": "#buy"}),
        (None, {"x": 1}, {"x": 1}),
        (None, None, None),
    ],
)
def test_dom_event_payload_adds_the_target(
    target: str | None, data: dict[str, int] | None, payload: object
) -> None:
    event = DomEvent(event="click", target=target, data=data, location=Location(None))
    assert event.payload() == payload


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"type": "scroll"}', f"1:1: unknown event type 'scroll'; expected one of {TYPES}"),
        ('{"url": "x"}', f"1:1: missing field 'type'; expected one of {TYPES}"),
        ('{"type": 3}', f"1:1: field 'type' is the number 3; expected one of {TYPES}"),
        (
            '{"type": "visit" "url": "x"}',
            "1:18: malformed JSON (Expecting ',' delimiter); expected one JSON object per line",
        ),
        ("[1, 2]", "1:1: found an array; expected one JSON object per line"),
        ('"visit"', '1:1: found the string "visit"; expected one JSON object per line'),
        (
            '{"type": "wait", "ms": NaN}',
            "1:1: found NaN, which is not JSON; expected one JSON object per line",
        ),
        (
            '{"type": "visit"}',
            "1:1: missing field 'url' in a 'visit' event; expected a string (the page URL)",
        ),
        (
            '{"type": "visit", "url": 3}',
            "1:1: field 'url' of a 'visit' event is the number 3; expected a string (the page URL)",
        ),
        (
            '{"type": "visit", "url": "x", "titel": "y"}',
            "1:1: unknown field 'titel' in a 'visit' event (did you mean 'title'?); "
            "expected type, url, title",
        ),
        (
            '{"type": "user", "user": "u-ada"}',
            "1:1: missing field 'email' in a 'user' event; expected a string (the user's email)",
        ),
        (
            '{"type": "event", "event": "scroll"}',
            f"1:1: unknown DOM event 'scroll' in an 'event' event; expected one of {DOM} "
            '(custom events are {"type": "custom"} lines)',
        ),
        (
            '{"type": "event", "event": "click", "data": [1]}',
            "1:1: field 'data' of an 'event' event is an array; expected an object (the event "
            "data)",
        ),
        (
            '{"type": "custom", "eventName": "go", "detail": "x"}',
            "1:1: field 'detail' of a 'custom' event is the string \"x\"; expected an object "
            "(the event's detail)",
        ),
        (
            '{"type": "user", "email": "a@b.c", "groups": [1]}',
            "1:1: field 'groups' of a 'user' event is an array; expected an array of names or "
            "{id, name} objects",
        ),
        (
            '{"type": "invoke"}',
            "1:1: missing field 'starterBrick' in an 'invoke' event; expected a string (a "
            "starter brick id)",
        ),
        (
            '{"type": "wait", "ms": "10"}',
            "1:1: field 'ms' of a 'wait' event is the string \"10\"; expected a non-negative "
            "number of milliseconds",
        ),
        (
            '{"type": "wait", "ms": -1}',
            "1:1: field 'ms' of a 'wait' event is the number -1; expected a non-negative "
            "number of milliseconds",
        ),
        (
            '{"type": "wait", "ms": true}',
            "1:1: field 'ms' of a 'wait' event is true; expected a non-negative number of "
            "milliseconds",
        ),
    ],
)
def test_bad_lines_say_what_was_found_and_expected(line: str, message: str) -> None:
    assert errors_of(line) == [f"events.jsonl:{message}"]


def test_lines_end_at_newlines_only() -> None:
    text = '{"type": "visit", "url": "a\u2028b"}\r\n\x0c\n{"type": "wait", "ms": 1}'
    assert parse_events(text, "f") == [
        Visit(url="a\u2028b", location=Location("f", 1, 1)),
        Wait(ms=1, location=Location("f", 3, 1)),
    ]


def test_every_bad_line_is_reported_with_its_own_line_number() -> None:
    text = '{"type": "visit", "url": "x"}\n\n{"type": "scroll"}\n{"type": "wait"}\n'
    assert errors_of(text) == [
        f"events.jsonl:3:1: unknown event type 'scroll'; expected one of {TYPES}",
        "events.jsonl:4:1: missing field 'ms' in a 'wait' event; expected a non-negative "
        "number of milliseconds",
    ]


def test_load_events_reads_a_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    path.write_bytes(
        '{"type": "visit", "url": "é"}\n{"type": "wait", "x": "é'.encode() + b'\xff"}\n'
    )
    with pytest.raises(DefinitionErrors) as caught:
        load_events(path)
    assert str(caught.value) == (
        f"{path}:2:25: found byte 0xff, which is not UTF-8; expected UTF-8 text"
    )
    with pytest.raises(DefinitionErrors) as caught:
        load_events(tmp_path / "missing.jsonl")
    assert str(caught.value) == (
        f"{tmp_path / 'missing.jsonl'}: could not read the events file (No such file or directory)"
    )


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_parses_or_raises_definition_errors_with_a_line(text: str) -> None:
    try:
        events = parse_events(text, "f")
    except DefinitionErrors as exc:
        assert exc.errors
        for error in exc.errors:
            assert isinstance(error, DefinitionError)
            assert error.location is not None and error.location.line is not None
            assert 1 <= error.location.line <= text.count("\n") + 1
    else:
        assert len(events) <= text.count("\n") + 1


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(lambda url: {"type": "visit", "url": url}, st.text()),
            st.builds(lambda ms: {"type": "wait", "ms": ms}, st.integers(0, 10**9)),
            st.builds(
                lambda name, detail: {"type": "custom", "eventName": name, "detail": detail},
                st.text(),
                st.dictionaries(st.text(), st.integers()),
            ),
        )
    )
)
def test_valid_lines_round_trip(lines: list[dict[str, object]]) -> None:
    text = "\n".join(json.dumps(line) for line in lines)
    events = parse_events(text)
    assert [type(e).__name__ for e in events] == [
        {"visit": "Visit", "wait": "Wait", "custom": "CustomEvent"}[str(line["type"])]
        for line in lines
    ]


# -- replaying -----------------------------------------------------------------------------------


def mod(starters: str, components: str, mod_id: str = "@test/replay") -> str:
    """A mod with inner starter-brick definitions and its components (YAML bodies)."""
    return (
        f"apiVersion: v3\nkind: recipe\nmetadata: {{id: '{mod_id}', name: Replay}}\n"
        "definitions:\n"
        + textwrap.indent(textwrap.dedent(starters).strip("\n"), "  ")
        + "\nextensionPoints:\n"
        + textwrap.indent(textwrap.dedent(components).strip("\n"), "  ")
        + "\n"
    )


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with Runtime(
        clock=VirtualClock(START),
        database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
        entry_points=False,
    ) as rt:
        yield rt


async def activate(runtime: Runtime, tmp_path: Path, text: str) -> None:
    path = tmp_path / "mod.yaml"
    path.write_text(text)
    await runtime.activate(path)


def echo(starter: str, label: str) -> str:
    """A mod component whose output is its ``@input.event``."""
    return (
        f"- id: {starter}\n  label: {label}\n  config:\n    action:\n"
        "      - id: '@pixiebrix/identity'\n        config: {event: !var '@input.event'}\n"
    )


@pytest.mark.anyio
async def test_wait_drives_intervals_and_debounces(runtime: Runtime, tmp_path: Path) -> None:
    starters = """
    tick:
      kind: extensionPoint
      definition: {type: trigger, trigger: interval, intervalMillis: 1000}
    typed:
      kind: extensionPoint
      definition: {type: trigger, trigger: keyup, debounce: {waitMillis: 300}}
    """
    components = echo("tick", "Tick") + echo("typed", "Typed")
    await activate(runtime, tmp_path, mod(starters, components))
    lines = [
        {"type": "visit", "url": "https://example.com/"},
        {"type": "wait", "ms": 999},  # the first tick comes after one full interval
        *[
            step
            for key in "abc"
            for step in (
                {"type": "event", "event": "keyup", "target": f"#{key}"},
                {"type": "wait", "ms": 100},
            )
        ],
        {"type": "wait", "ms": 299},  # 1598 ms: the debounce fired at 1499 (last keyup + 300)
        {"type": "wait", "ms": 1000},  # 2598 ms: ticks at 1000 and 2000
    ]
    events = parse_events("\n".join(json.dumps(line) for line in lines))
    result = await replay(runtime, events)
    assert [(r.component, r.trigger) for r in result.runs] == [
        ("Tick", "interval"),
        ("Typed", "keyup"),
        ("Tick", "interval"),
    ]
    assert result.runs[1].output == {"event": {"target": "#c"}}, "trailing edge: the last call"
    assert result.events == len(lines)
    assert runtime.clock.now() == datetime(2026, 11, 23, 15, 0, 2, 598000, tzinfo=UTC)


@pytest.mark.anyio
async def test_invoke_runs_a_menu_item_by_key_or_id(runtime: Runtime, tmp_path: Path) -> None:
    starters = "menu: {kind: extensionPoint, definition: {type: menuItem}}"
    components = echo("menu", "From the menu")
    await activate(runtime, tmp_path, mod(starters, components))
    text = (
        '{"type": "visit", "url": "https://example.com/"}\n'
        '{"type": "invoke", "starterBrick": "menu"}'
    )
    result = await replay(runtime, parse_events(text))
    [run] = result.runs
    assert (run.component, run.trigger, run.status, run.output) == (
        "From the menu",
        "menuItem",
        "success",
        {},  # @input.event is null for user-invoked starter bricks; nulls are dropped
    )


@pytest.mark.anyio
async def test_invoke_of_an_unknown_starter_brick_runs_nothing(
    runtime: Runtime, tmp_path: Path
) -> None:
    starters = "menu: {kind: extensionPoint, definition: {type: menuItem}}"
    components = echo("menu", "From the menu")
    await activate(runtime, tmp_path, mod(starters, components))
    text = (
        '{"type": "visit", "url": "https://example.com/"}\n'
        '{"type": "invoke", "starterBrick": "menus"}'
    )
    events = parse_events(text, "s.jsonl")
    with pytest.raises(DefinitionErrors) as caught:
        check_events(runtime, events)
    assert str(caught.value) == (
        "s.jsonl:2:1: 'invoke' of unknown starter brick 'menus'; expected one of 'menu'"
    )
    ran: list[object] = []
    runtime.run_listeners.append(ran.append)
    with pytest.raises(DefinitionErrors):
        await replay(runtime, events)
    assert ran == [] and runtime.host.page is None, "nothing was applied, not even the visit"


@pytest.mark.anyio
async def test_runs_started_together_are_listed_in_start_order(
    runtime: Runtime, tmp_path: Path
) -> None:
    # The first component sleeps (in real time), the second is instant: without the replay's
    # ordering the second would be listed first, as it finishes first.
    @brick(id="@test/slow", name="Slow", input_schema={})
    async def slow(args: Any, ctx: BrickContext) -> Any:
        await anyio.sleep(0.02)
        return {}

    runtime.register(slow)
    starters = "loaded: {kind: extensionPoint, definition: {type: trigger, trigger: load}}"
    components = """
    - id: loaded
      label: Slow
      config:
        action:
          - id: "@test/slow"
    - id: loaded
      label: Fast
      config:
        action: []
    """
    await activate(runtime, tmp_path, mod(starters, components))
    result = await replay(runtime, parse_events('{"type": "visit", "url": "https://x.test/"}'))
    assert [r.component for r in result.runs] == ["Slow", "Fast"]


@pytest.mark.anyio
async def test_result_summary_has_runs_reported_events_and_errors(
    runtime: Runtime, tmp_path: Path
) -> None:
    starters = """
    go:
      kind: extensionPoint
      definition: {type: trigger, trigger: custom, customEvent: {eventName: go}, reportMode: all}
    """
    components = """
    - id: go
      label: Go
      config:
        action:
          - id: "@pixiebrix/error"
            if: !var "@input.event.fail"
            config: {message: asked to fail}
    """
    await activate(runtime, tmp_path, mod(starters, components))
    text = "\n".join(
        [
            '{"type": "user", "email": "ada@example.com"}',
            '{"type": "visit", "url": "https://example.com/"}',
            '{"type": "custom", "eventName": "go", "detail": {"fail": false}}',
            '{"type": "custom", "eventName": "go", "detail": {"fail": true}}',
        ]
    )
    result = await replay(runtime, parse_events(text))
    summary = result.to_dict()
    ok, failed = summary["runs"]
    visit = runtime.host.page.session_id if runtime.host.page else None
    assert ok == {"component": "Go", "runId": ok["runId"], "visit": visit, "status": "success"}
    assert failed == {
        "component": "Go",
        "runId": failed["runId"],
        "visit": visit,
        "status": "error",
        "error": {"name": "BusinessError", "message": "asked to fail"},
    }
    assert [(e["name"], e["runId"]) for e in summary["reported"]] == [
        ("TriggerRun", ok["runId"]),
        ("TriggerError", failed["runId"]),
    ]
    assert summary["errors"] == [
        {
            "component": "Go",
            "runId": failed["runId"],
            "visit": visit,
            "name": "BusinessError",
            "message": "asked to fail",
        }
    ]
    assert result.failed == [result.runs[1]]
    assert runtime.run_listeners == [] and runtime.report_listeners == [], "listeners removed"
