"""Replaying a host session (an events file, JSON Lines) against a runtime: parse, check, apply.

An events file holds one JSON object per line, each a host happening (SPEC §5, §9)::

    {"type": "visit", "url": "https://example.com/", "title": "Home"}
    {"type": "navigate", "url": "https://example.com/docs"}
    {"type": "user", "email": "ada@example.com", "user": "u-ada"}
    {"type": "event", "event": "click", "target": "#buy", "data": {"x": 1}}
    {"type": "custom", "eventName": "translated", "detail": {"words": 12}}
    {"type": "invoke", "starterBrick": "@acme/menu"}
    {"type": "wait", "ms": 1500}

Blank lines are skipped. :func:`parse_events` checks *every* line before anything runs and
raises ``DefinitionErrors`` (one error per bad line, located at ``file:line:column``), so a
malformed line means nothing ran and nothing was recorded. :func:`replay` applies the events in
order through the ``Runtime`` API, settling after each one so that the result does not depend
on task scheduling.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._mods import USER_INVOKED, ComponentRun
from ._run import RunState
from ._starters import DOM_EVENTS
from .errors import DefinitionError, DefinitionErrors, Location, RunError

if TYPE_CHECKING:
    from ._runtime import Runtime
    from .telemetry import TelemetryEvent

__all__ = [
    "EVENT_TYPES",
    "CustomEvent",
    "DomEvent",
    "Invoke",
    "Navigate",
    "ReplayEvent",
    "ReplayResult",
    "ReportedEvent",
    "SignIn",
    "Visit",
    "Wait",
    "check_events",
    "load_events",
    "parse_events",
    "replay",
]

EVENT_TYPES = ("visit", "navigate", "user", "event", "custom", "invoke", "wait")


# -- the events ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Event:
    location: Location


@dataclass(frozen=True, kw_only=True)
class Visit(_Event):
    """``{"type": "visit", "url", "title"?}``: a new page visit (a new session)."""

    url: str
    title: str = ""


@dataclass(frozen=True, kw_only=True)
class Navigate(_Event):
    """``{"type": "navigate", "url", "title"?}``: a navigation inside the visit."""

    url: str
    title: str | None = None


@dataclass(frozen=True, kw_only=True)
class SignIn(_Event):
    """``{"type": "user", "email", "user"?, "groups"?, "organizations"?}``: the signed-in user."""

    email: str
    user_id: str | None = None
    groups: tuple[Any, ...] = ()
    organizations: tuple[Any, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DomEvent(_Event):
    """``{"type": "event", "event", "target"?, "data"?}``: a DOM-like event reached the page.

    The event data dispatched is ``data`` with ``target`` added (``target`` wins)."""

    event: str
    target: str | None = None
    data: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any] | None:
        if self.target is None:
            return self.data
        return {**(self.data or {}), "target": self.target}


@dataclass(frozen=True, kw_only=True)
class CustomEvent(_Event):
    """``{"type": "custom", "eventName", "detail"?}``: a custom event with a detail object."""

    event_name: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Invoke(_Event):
    """``{"type": "invoke", "starterBrick"}``: the user invoked a menu item, quick bar entry,
    or context menu item (by starter brick id, or its key among the mod's inner definitions)."""

    starter_brick: str


@dataclass(frozen=True, kw_only=True)
class Wait(_Event):
    """``{"type": "wait", "ms"}``: time passes on the virtual clock (timers due in between
    fire: intervals, debounces)."""

    ms: float


ReplayEvent = Visit | Navigate | SignIn | DomEvent | CustomEvent | Invoke | Wait


# -- parsing -------------------------------------------------------------------------------------


class _LineError(Exception):
    """A problem with one line; becomes a ``DefinitionError`` located at that line."""

    def __init__(self, message: str, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


def _found(value: Any) -> str:
    """A short description of a JSON value for "found ..." messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {json.dumps(value)}"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        if len(text) > 40:
            text = text[:36] + '..."'
        return f"the string {text}"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str | dict) for v in value)


def _is_duration(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


# Per event type: field -> (required, check, what is expected). ``type`` is checked first.
_Check = Callable[[Any], bool]
_FIELDS: dict[str, dict[str, tuple[bool, _Check, str]]] = {
    "visit": {
        "url": (True, _is_string, "a string (the page URL)"),
        "title": (False, _is_string, "a string (the page title)"),
    },
    "navigate": {
        "url": (True, _is_string, "a string (the new URL)"),
        "title": (False, _is_string, "a string (the page title)"),
    },
    "user": {
        "email": (True, _is_string, "a string (the user's email)"),
        "user": (False, _is_string, "a string (the user id)"),
        "groups": (False, _is_named_list, "an array of names or {id, name} objects"),
        "organizations": (False, _is_named_list, "an array of names or {id, name} objects"),
    },
    "event": {
        "event": (True, _is_string, f"one of {', '.join(DOM_EVENTS)}"),
        "target": (False, _is_string, "a string (the event target, e.g. a selector)"),
        "data": (False, _is_object, "an object (the event data)"),
    },
    "custom": {
        "eventName": (True, _is_string, "a string (the custom event's name)"),
        "detail": (False, _is_object, "an object (the event's detail)"),
    },
    "invoke": {
        "starterBrick": (True, _is_string, "a string (a starter brick id)"),
    },
    "wait": {
        "ms": (True, _is_duration, "a non-negative number of milliseconds"),
    },
}


def _article(kind: str) -> str:
    return "an" if kind in ("event", "invoke") else "a"  # "a 'user' event": by sound


def _check_fields(kind: str, data: dict[str, Any]) -> None:
    spec = _FIELDS[kind]
    what = f"{_article(kind)} {kind!r} event"
    for name in data:
        if name != "type" and name not in spec:
            close = difflib.get_close_matches(name, list(spec), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _LineError(
                f"unknown field {name!r} in {what}{hint}; expected {', '.join(['type', *spec])}"
            )
    for name, (required, check, expected) in spec.items():
        if name not in data:
            if required:
                raise _LineError(f"missing field {name!r} in {what}; expected {expected}")
            continue
        value = data[name]
        if not check(value):
            raise _LineError(f"field {name!r} of {what} is {_found(value)}; expected {expected}")


def _reject_constant(name: str) -> Any:
    raise _LineError(f"found {name}, which is not JSON; expected one JSON object per line")


def _parse_line(text: str, location: Location) -> ReplayEvent:
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _LineError(
            f"malformed JSON ({exc.msg}); expected one JSON object per line", exc.colno
        ) from None
    except RecursionError:
        raise _LineError("found JSON nested too deeply; expected one event object") from None
    if not isinstance(data, dict):
        raise _LineError(f"found {_found(data)}; expected one JSON object per line")
    expected = f"expected one of {', '.join(EVENT_TYPES)}"
    if "type" not in data:
        raise _LineError(f"missing field 'type'; {expected}")
    kind = data["type"]
    if not isinstance(kind, str):
        raise _LineError(f"field 'type' is {_found(kind)}; {expected}")
    if kind not in _FIELDS:
        raise _LineError(f"unknown event type {kind!r}; {expected}")
    _check_fields(kind, data)
    if kind == "visit":
        return Visit(url=data["url"], title=data.get("title", ""), location=location)
    if kind == "navigate":
        return Navigate(url=data["url"], title=data.get("title"), location=location)
    if kind == "user":
        return SignIn(
            email=data["email"],
            user_id=data.get("user"),
            groups=tuple(data.get("groups", ())),
            organizations=tuple(data.get("organizations", ())),
            location=location,
        )
    if kind == "event":
        if data["event"] not in DOM_EVENTS:
            raise _LineError(
                f"unknown DOM event {data['event']!r} in an 'event' event; expected one of "
                f'{", ".join(DOM_EVENTS)} (custom events are {{"type": "custom"}} lines)'
            )
        return DomEvent(
            event=data["event"], target=data.get("target"), data=data.get("data"), location=location
        )
    if kind == "custom":
        return CustomEvent(
            event_name=data["eventName"], detail=data.get("detail", {}), location=location
        )
    if kind == "invoke":
        return Invoke(starter_brick=data["starterBrick"], location=location)
    return Wait(ms=data["ms"], location=location)


def parse_events(text: str, file: str | None = None) -> list[ReplayEvent]:
    """Parse events-file text (JSON Lines, ``\n`` or ``\r\n``; blank lines skipped) into events.

    Every line is checked; problems raise one ``DefinitionErrors`` listing each bad line as a
    ``DefinitionError`` at ``file:line:column`` (column 1, or the JSON error's column for
    malformed JSON) whose message says what was found and what was expected.
    """
    events: list[ReplayEvent] = []
    problems: list[DefinitionError] = []
    # Lines end at "\n" only (as editors count them): JSON strings may hold U+2028 and friends,
    # which str.splitlines() would split on.
    for number, line in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            events.append(_parse_line(line, Location(file, number, 1)))
        except _LineError as exc:
            problems.append(
                DefinitionError(exc.message, location=Location(file, number, exc.column))
            )
    if problems:
        raise DefinitionErrors(problems)
    return events


def load_events(path: str | os.PathLike[str]) -> list[ReplayEvent]:
    """Read and parse an events file (UTF-8); locations name the file as given.

    An unreadable file or a line that is not UTF-8 raises ``DefinitionErrors`` too.
    """
    file = os.fspath(path)
    try:
        with open(file, "rb") as stream:
            raw = stream.read()
    except OSError as exc:
        error = DefinitionError(
            f"could not read the events file ({exc.strerror or exc})", location=Location(file)
        )
        raise DefinitionErrors([error]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8", "replace")) + 1  # characters
        error = DefinitionError(
            f"found byte 0x{raw[exc.start]:02x}, which is not UTF-8; expected UTF-8 text",
            location=Location(file, line, column),
        )
        raise DefinitionErrors([error]) from None
    return parse_events(text, file)


def check_events(runtime: Runtime, events: Iterable[ReplayEvent]) -> None:
    """Check what depends on the activated mods: every ``invoke`` names a user-invoked
    starter brick (``menuItem``, ``quickBar``, ``contextMenu``) of one of them.

    Raises ``DefinitionErrors`` (one per bad line); runs nothing.
    """
    known: list[str] = []
    for mod in runtime.mods:
        for component in mod.components:
            if component.type in USER_INVOKED:
                for name in (component.definition.starter_brick_id, component.starter.id):
                    if name not in known:
                        known.append(name)
    problems = []
    for event in events:
        if isinstance(event, Invoke) and event.starter_brick not in known:
            expected = (
                f"expected one of {', '.join(repr(k) for k in known)}"
                if known
                else "expected the id of a menuItem, quickBar or contextMenu starter brick "
                "of the activated mod, and it has none"
            )
            problems.append(
                DefinitionError(
                    f"'invoke' of unknown starter brick {event.starter_brick!r}; {expected}",
                    location=event.location,
                )
            )
    if problems:
        raise DefinitionErrors(problems)


# -- replaying -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportedEvent:
    """A ``TriggerRun``/``TriggerError`` the telemetry mode let through for a run."""

    name: str
    component: str
    visit: str | None
    run_id: str
    event_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "component": self.component,
            "visit": self.visit,
            "runId": self.run_id,
            "eventId": self.event_id,
        }


@dataclass
class ReplayResult:
    """What a replay did: every mod component run, every reported event, background errors.

    ``runs`` are in the order of the events that started them (runs started by one event in
    the order they were started where the runtime says so, else as they finished).
    ``background_errors`` pairs each failed background step (``async: true``) with the id of
    the run that started it.
    """

    events: int = 0
    runs: list[ComponentRun] = field(default_factory=list)
    reported: list[ReportedEvent] = field(default_factory=list)
    background_errors: list[tuple[str, RunError]] = field(default_factory=list)

    @property
    def failed(self) -> list[ComponentRun]:
        """The runs whose status is ``error``."""
        return [run for run in self.runs if run.status == "error"]

    def errors(self) -> list[dict[str, Any]]:
        """``{component, runId, visit, name, message}`` per failed run, then per failed
        background step (with ``background: true``)."""
        out: list[dict[str, Any]] = []
        for run in self.failed:
            error = run.error or {}
            out.append(
                {
                    "component": run.component,
                    "runId": run.run_id,
                    "visit": run.visit,
                    "name": error.get("name"),
                    "message": error.get("message"),
                }
            )
        by_id = {run.run_id: run for run in self.runs}
        for run_id, exc in self.background_errors:
            owner = by_id.get(run_id)
            out.append(
                {
                    "component": owner.component if owner is not None else None,
                    "runId": run_id,
                    "visit": owner.visit if owner is not None else None,
                    "name": exc.name,
                    "message": exc.message,
                    "background": True,
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """The ``brickrun run --json`` summary: ``{runs, reported, errors}``."""
        return {
            "runs": [run.to_dict() for run in self.runs],
            "reported": [event.to_dict() for event in self.reported],
            "errors": self.errors(),
        }


def _order(
    result: ReplayResult, runs_from: int, reported_from: int, started: Sequence[ComponentRun]
) -> None:
    """Put the runs (and their reported events) that finished during one event in start order.

    ``started`` are the placeholders the Runtime API returned; after settling they carry their
    run ids. Runs it does not list (timers, statechange) keep their finishing order, after.
    """
    rank = {run.run_id: index for index, run in enumerate(started) if run.run_id}
    last = len(rank)
    result.runs[runs_from:] = sorted(
        result.runs[runs_from:], key=lambda r: rank.get(r.run_id, last)
    )
    position = {run.run_id: index for index, run in enumerate(result.runs)}
    end = len(position)
    result.reported[reported_from:] = sorted(
        result.reported[reported_from:], key=lambda e: position.get(e.run_id, end)
    )


async def _apply(runtime: Runtime, event: ReplayEvent) -> list[ComponentRun]:
    if isinstance(event, Visit):
        return runtime.visit(event.url, event.title)
    if isinstance(event, Navigate):
        return runtime.navigate(event.url, event.title)
    if isinstance(event, SignIn):
        runtime.sign_in(
            event.email,
            user_id=event.user_id,
            groups=list(event.groups),
            organizations=list(event.organizations),
        )
        return []
    if isinstance(event, DomEvent):
        return runtime.dispatch(event.event, event.payload())
    if isinstance(event, CustomEvent):
        return runtime.dispatch_custom(event.event_name, event.detail)
    if isinstance(event, Invoke):
        return runtime.invoke(event.starter_brick)
    await runtime.advance(event.ms)
    return []


async def replay(runtime: Runtime, events: Sequence[ReplayEvent]) -> ReplayResult:
    """Apply ``events`` in order to a started ``runtime`` whose mods are activated.

    Checks the events against the activated mods first (:func:`check_events`; nothing runs
    when that fails). After each event it awaits ``runtime.settle()``, so every run an event
    started has finished (and been reported) before the next event. ``wait`` needs the
    runtime's clock to be a ``VirtualClock``. Background work may still be pending on return
    (``await runtime.drain()``); background failures seen until then are in the result.
    """
    check_events(runtime, events)
    result = ReplayResult()

    def on_run(run: ComponentRun) -> None:
        result.runs.append(run)

    def on_report(run: ComponentRun, telemetry: TelemetryEvent) -> None:
        result.reported.append(
            ReportedEvent(telemetry.name, run.component, run.visit, run.run_id, telemetry.id)
        )

    def on_background_error(state: RunState, error: RunError) -> None:
        result.background_errors.append((state.run_id, error))

    runtime.run_listeners.append(on_run)
    runtime.report_listeners.append(on_report)
    runtime.background_error_handlers.append(on_background_error)
    try:
        for event in events:
            runs_from, reported_from = len(result.runs), len(result.reported)
            started = await _apply(runtime, event)
            await runtime.settle()
            _order(result, runs_from, reported_from, started)
            result.events += 1
    finally:
        runtime.run_listeners.remove(on_run)
        runtime.report_listeners.remove(on_report)
        runtime.background_error_handlers.remove(on_background_error)
    return result
