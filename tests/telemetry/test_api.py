"""The host recorder: names, typed helpers, host fields, the split of data, and never raising."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from brickrun import BusinessError, Runtime
from brickrun.telemetry import TelemetryEvent
from brickrun.telemetry._api import Recorder, split_data

from ..conftest import DISABLE_CASES

pytestmark = pytest.mark.anyio

CANARY = "canary.person@example.com"


class ListSink:
    """A sink that keeps what it is given (``accept=False`` refuses everything)."""

    def __init__(self, accept: bool = True) -> None:
        self.events: list[TelemetryEvent] = []
        self.accept = accept
        self.dropped: list[str] = []

    def record(self, event: TelemetryEvent) -> bool:
        if self.accept:
            self.events.append(event)
        return self.accept

    def count_dropped(self, reason: str) -> None:
        self.dropped.append(reason)


@pytest.fixture
async def store_runtime(tmp_path: Any) -> AsyncIterator[Runtime]:
    async with Runtime(database_url=f"sqlite:///{tmp_path}/api.sqlite", entry_points=False) as rt:
        yield rt


async def stored(runtime: Runtime) -> dict[str, Any]:
    """Every stored event of the runtime's telemetry database, by id."""
    await runtime.drain()
    storage = await runtime.storage()
    return {r["id"]: r["data"] for r in await storage.list_records(runtime.telemetry.database)}


# -- record(feature, action) ---------------------------------------------------------------------


async def test_record_stores_feature_action_with_host_fields(store_runtime: Runtime) -> None:
    store_runtime.sign_in("ada@example.com")
    store_runtime.visit("https://example.com/search?q=1")
    session = store_runtime.host.page.session_id  # type: ignore[union-attr]
    recorder = Recorder(store_runtime, source={"deploymentId": "dep-1"})
    event_id = recorder.record(
        "search",
        "submitted",
        metadata={"results": 12, "exact": True, "score": 0.5},
        private_metadata={"query": "red shoes"},
        duration_ms=41.5,
    )
    assert event_id is not None and uuid.UUID(event_id).version == 4
    data = (await stored(store_runtime))[event_id]
    assert data["id"] == event_id, "the record key is the event id, fixed at record time"
    assert data["name"] == "search:submitted"
    assert data["metadata"] == {"results": 12, "exact": True, "score": 0.5}
    assert data["private_metadata"] == {"query": "red shoes"}
    assert (data["user"], data["session_id"]) == ("ada@example.com", session)
    assert data["url"] == "https://example.com/search?q=1"
    assert (data["duration_ms"], data["context"]) == (41.5, None)
    assert data["source"] == {"deploymentId": "dep-1"}


@pytest.mark.parametrize(
    ("feature", "action", "name"),
    [
        ("search", "submitted", "search:submitted"),
        ("myFeature", "myAction", "myFeature:myAction"),
        ("cody.chat", "v2-open_1", "cody.chat:v2-open_1"),
        ("a", "1", "a:1"),
        ("f" * 32, "a" * 31, "f" * 32 + ":" + "a" * 31),  # exactly 64 characters
    ],
)
def test_valid_names(feature: str, action: str, name: str) -> None:
    sink = ListSink()
    assert Recorder(sink).record(feature, action) is not None
    assert sink.events[0].name == name


@pytest.mark.parametrize(
    ("feature", "action"),
    [
        ("", "x"),
        ("x", ""),
        ("1feature", "x"),  # must start with a letter
        ("a:b", "c"),  # a colon in a part would make the name ambiguous
        ("a", "b:c"),
        ("has space", "x"),
        ("f" * 32, "a" * 32),  # 65 characters
        ("é", "x"),
        (None, "x"),
        (3, "x"),
    ],
)
def test_invalid_names_are_dropped_and_counted(feature: Any, action: Any) -> None:
    sink = ListSink()
    recorder = Recorder(sink)
    assert recorder.record(feature, action) is None
    assert sink.events == []
    assert recorder.counters == {"dropped:invalid": 1}
    assert sink.dropped == ["invalid"], "the sink's self-metrics see the drop too"


@pytest.mark.parametrize(
    "metadata",
    [
        {"email": CANARY},  # a string is not exportable
        {"n": float("nan")},
        {"n": float("inf")},
        {"n": 2**70},
        {"nested": {"a": 1}},
        {1: 2},
        {"": 1},
        ["not", "a", "mapping"],
    ],
)
def test_record_metadata_is_strict(metadata: Any, caplog: pytest.LogCaptureFixture) -> None:
    sink = ListSink()
    recorder = Recorder(sink)
    with caplog.at_level(logging.DEBUG, logger="brickrun.telemetry"):
        assert recorder.record("f", "a", metadata=metadata) is None
    assert recorder.counters == {"dropped:invalid": 1}
    assert CANARY not in caplog.text, "logs never contain payloads"
    assert "metadata" in caplog.text


# -- typed helpers -------------------------------------------------------------------------------


def test_page_view_context_is_the_anonymised_path() -> None:
    sink = ListSink()
    recorder = Recorder(sink)
    assert recorder.page_view("https://ex.com/docs/42?token=abc", title="Ada's page", duration_ms=0)
    [event] = sink.events
    assert (event.name, event.context) == ("page_view", "/docs/[id]")
    assert event.url == "https://ex.com/docs/42?token=abc", "stored as is; anonymised on export"
    assert event.private_metadata == {"title": "Ada's page"}, "titles are private"
    assert (event.duration_ms, event.metadata) == (0, {})


def test_api_call_context_is_method_and_anonymised_path() -> None:
    sink = ListSink()
    assert Recorder(sink).api_call("/api/users/ada@example.com/items?key=s3cret", "get", 503, 12)
    [event] = sink.events
    assert (event.name, event.context) == ("api_call", "GET /api/users/[id]/items")
    assert (event.metadata, event.duration_ms) == ({"status": 503}, 12)
    assert "s3cret" not in json.dumps(event.to_data()), "the raw endpoint is not stored"


@pytest.mark.parametrize(
    ("endpoint", "method", "status", "duration"),
    [
        ("", "GET", 200, 1),
        ("/x", "", 200, 1),
        ("/x", "GET POST", 200, 1),
        ("/x", "GET", 99, 1),
        ("/x", "GET", True, 1),
        ("/x", "GET", "200", 1),
        ("/x", "GET", 200, None),
        ("/x", "GET", 200, -1),
        ("/x", "GET", 200, float("nan")),
    ],
)
def test_api_call_rejects_bad_arguments(
    endpoint: Any, method: Any, status: Any, duration: Any
) -> None:
    recorder = Recorder(ListSink())
    assert recorder.api_call(endpoint, method, status, duration) is None
    assert recorder.counters == {"dropped:invalid": 1}


def test_action_splits_its_data() -> None:
    sink = ListSink()
    assert Recorder(sink).action("button_click", clicks=2, primary=True, label="Buy", n=2**70)
    [event] = sink.events
    assert (event.name, event.context) == ("action", "button_click")
    assert event.metadata == {"clicks": 2, "primary": True}
    assert event.private_metadata == {"label": "Buy", "n": str(2**70)}


def test_action_name_must_be_name_like() -> None:
    recorder = Recorder(ListSink())
    assert recorder.action("click on ada@example.com") is None
    assert recorder.counters == {"dropped:invalid": 1}


def test_error_from_exceptions_and_messages() -> None:
    sink = ListSink()
    recorder = Recorder(sink)
    assert recorder.error(ValueError("bad value"))
    assert recorder.error(BusinessError("no credit"))
    assert recorder.error("disk full", business=True)
    assert recorder.error(RuntimeError("x" * 5000))
    errors = [e.error for e in sink.events]
    assert errors[:3] == [
        {"name": "ValueError", "message": "bad value", "business": False},
        {"name": "BusinessError", "message": "no credit", "business": True},
        {"name": "Error", "message": "disk full", "business": True},
    ]
    assert errors[3] is not None and len(errors[3]["message"]) == 2000
    assert [e.context for e in sink.events] == [
        "ValueError",
        "BusinessError",
        "Error",
        "RuntimeError",
    ]
    assert {e.name for e in sink.events} == {"error"}


def test_error_with_an_unprintable_exception() -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    sink = ListSink()
    assert Recorder(sink).error(Nasty())
    assert sink.events[0].error == {
        "name": "Nasty",
        "message": "<unprintable Nasty>",
        "business": False,
    }


async def test_sessions_use_the_host_session(store_runtime: Runtime) -> None:
    store_runtime.visit("https://example.com/")
    recorder = Recorder(store_runtime)
    start = recorder.session_start()
    end = recorder.session_end(duration_ms=423_000)
    data = await stored(store_runtime)
    session = store_runtime.host.page.session_id  # type: ignore[union-attr]
    assert start is not None and end is not None
    assert (data[start]["name"], data[start]["session_id"]) == ("session_start", session)
    assert (data[end]["name"], data[end]["duration_ms"]) == ("session_end", 423_000)


def test_without_a_host_the_fields_are_empty() -> None:
    sink = ListSink()
    Recorder(sink).session_start()
    [event] = sink.events
    assert (event.user, event.session_id, event.url) == (None, None, None)


def test_a_failing_host_costs_the_fields_not_the_event() -> None:
    class BrokenHost:
        @property
        def user(self) -> Any:
            raise RuntimeError("host bug")

        page = None

    sink = ListSink()
    assert Recorder(sink, host=BrokenHost()).record("f", "a") is not None  # type: ignore[arg-type]
    assert sink.events[0].user is None


def test_event_uses_any_valid_name_and_splits_data() -> None:
    sink = ListSink()
    recorder = Recorder(sink)
    assert recorder.event("TranslateDone", {"words": 3, "lang": "fr"})
    assert sink.events[0].metadata == {"words": 3}
    assert sink.events[0].private_metadata == {"lang": "fr"}
    assert recorder.event("bad name") is None


# -- never raising, whatever the input -----------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("boom")

    __repr__ = __str__


def hostile_values() -> dict[str, Any]:
    cycle: dict[str, Any] = {"a": 1}
    cycle["self"] = cycle
    deep: Any = []
    for _ in range(100):
        deep = [deep]
    return {
        "cycle": cycle,
        "set": {3, 1, 2},
        "decimal": decimal.Decimal("1.10"),
        "bytes": b"\xffabc",
        "aware": dt.datetime(2026, 11, 23, 15, tzinfo=dt.UTC),
        "naive": dt.datetime(2026, 11, 23, 15),
        "nan": float("nan"),
        "inf": float("-inf"),
        "big": 2**70,
        "surrogate": "bad \udc80 text",
        "nul": "a\x00b",
        "enum": Color.RED,
        "uuid": uuid.UUID(int=5),
        "object": Unprintable(),
        "deep": deep,
        "keys": {None: 1, 2.5: 2, True: 3, (1, 2): 4},
    }


def test_private_data_becomes_storable_json() -> None:
    metadata, private = split_data(hostile_values())
    assert metadata == {}
    text = json.dumps(private, allow_nan=False, ensure_ascii=False)  # strict: no NaN
    text.encode("utf-8")  # no lone surrogates left
    assert "\x00" not in text
    assert private["cycle"] == {"a": 1, "self": "[circular]"}
    assert sorted(private["set"]) == [1, 2, 3]
    assert (private["decimal"], private["bytes"]) == ("1.10", "\ufffdabc")
    assert (private["aware"], private["naive"]) == (
        "2026-11-23T15:00:00+00:00",
        "2026-11-23T15:00:00",
    )
    assert (private["nan"], private["inf"], private["big"]) == ("NaN", "-Infinity", str(2**70))
    assert (private["enum"], private["uuid"]) == ("red", str(uuid.UUID(int=5)))
    assert private["object"] == "[Unprintable]", "never str() of an unknown object"
    assert "[too deep]" in text
    assert private["keys"] == {"null": 1, "2.5": 2, "true": 3, "[tuple]": 4}


def test_private_data_is_copied_at_record_time() -> None:
    sink = ListSink()
    data = {"items": ["a"]}
    Recorder(sink).record("f", "a", private_metadata=data)
    data["items"].append("b")
    assert sink.events[0].private_metadata == {"items": ["a"]}


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.record(object(), object()),
        lambda r: r.record("f", "a", metadata=object()),
        lambda r: r.record("f", "a", private_metadata=object()),
        lambda r: r.record("f", "a", private_metadata=hostile_values()),
        lambda r: r.record("f", "a", duration_ms="5"),
        lambda r: r.record("f", "a", url=5),
        lambda r: r.event(None, None),
        lambda r: r.event("n", ["x"]),
        lambda r: r.page_view(None),
        lambda r: r.page_view("/x", title=5),
        lambda r: r.page_view("not a url at all ::"),
        lambda r: r.action(None),
        lambda r: r.action("a", **{"": 1}),
        lambda r: r.error(None),
        lambda r: r.error(12),
        lambda r: r.api_call(None, None, None, None),
        lambda r: r.session_end(duration_ms=float("inf")),
        lambda r: r.record("f", "a", private_metadata={"big": "x" * 1_000_000}),
    ],
)
def test_the_recorder_never_raises(call: Any, caplog: pytest.LogCaptureFixture) -> None:
    sink = ListSink()
    recorder = Recorder(sink)
    with caplog.at_level(logging.DEBUG, logger="brickrun.telemetry"):
        result = call(recorder)
    assert result is None or isinstance(result, str)
    if result is None:
        assert sum(recorder.counters.values()) == 1
    else:
        json.dumps(sink.events[0].to_data(), allow_nan=False)
    assert "xxxxxxxxxx" not in caplog.text, "no payload in logs"


def test_an_oversized_event_is_dropped_as_size() -> None:
    recorder = Recorder(ListSink(), max_event_bytes=10_000)
    assert recorder.record("f", "a", private_metadata={"blob": "é" * 6_000}) is None
    assert recorder.counters == {"dropped:size": 1}


def test_a_refusing_sink_gives_none() -> None:
    recorder = Recorder(ListSink(accept=False))
    assert recorder.record("f", "a") is None
    assert recorder.counters == {}, "the sink counts its own refusals"


def test_a_bad_target_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Runtime or a telemetry sink"):
        Recorder(object())


async def test_a_runtime_recorder_outside_its_loop_drops_as_wrong_thread(
    store_runtime: Runtime,
) -> None:
    recorder = Recorder(store_runtime)
    results: list[str | None] = []
    thread = threading.Thread(target=lambda: results.append(recorder.record("f", "a")))
    thread.start()
    thread.join()
    assert results == [None]
    assert recorder.counters == {"dropped:wrong_thread": 1}
    assert await stored(store_runtime) == {}


@pytest.mark.parametrize(("variable", "value", "disabled"), DISABLE_CASES)
async def test_disabled_by_the_environment_stores_nothing(
    store_runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    disabled: bool,
) -> None:
    monkeypatch.setenv(variable, value)
    recorder = Recorder(store_runtime)
    result = recorder.page_view("https://example.com/")
    events = await stored(store_runtime)
    if disabled:
        assert (result, events) == (None, {})
        assert store_runtime.telemetry.counters["dropped:disabled"] == 1
    else:
        assert result is not None and list(events) == [result]


async def test_recording_on_postgres_and_sqlite(storage_url: str) -> None:
    """The stored event shape is the same on both backends (garbage input included)."""
    async with Runtime(database_url=storage_url, entry_points=False) as runtime:
        recorder = Recorder(runtime)
        event_id = recorder.record("f", "a", metadata={"n": 1}, private_metadata=hostile_values())
        data = await stored(runtime)
    assert event_id is not None
    assert data[event_id]["private_metadata"]["nan"] == "NaN"
    assert data[event_id]["private_metadata"]["surrogate"] == "bad \ufffd text"
    assert data[event_id]["metadata"] == {"n": 1}
