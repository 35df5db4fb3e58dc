"""``@pixiebrix/telemetry`` (Send Telemetry): what it stores, what it refuses, and that a store
that is down or disabled never fails or slows the mod."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import brickrun
from brickrun import Brick, PropError, Runtime, VirtualClock
from brickrun.telemetry import TelemetryEvent
from tests.conftest import run_pipeline_yaml

from ..conftest import DISABLE_CASES

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 23, 15, 0, 0, 123000, tzinfo=UTC)


def send_telemetry_brick() -> Brick:
    """The brick, imported the way the built-ins are. Until ``brickrun`` exports
    ``TelemetryEvent`` (the brick uses the public API only), lend it for the import."""
    if "TelemetryEvent" in brickrun.__all__:
        from brickrun.bricks.telemetry import send_telemetry
    else:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(brickrun, "TelemetryEvent", TelemetryEvent, raising=False)
            from brickrun.bricks.telemetry import send_telemetry
    return send_telemetry


def with_brick(runtime: Runtime) -> Runtime:
    """Register the brick in this runtime (until it is one of the built-ins)."""
    if runtime.registry.find("@pixiebrix/telemetry") is None:
        runtime.register(send_telemetry_brick())
    return runtime


async def events(runtime: Runtime) -> list[dict[str, Any]]:
    await runtime.drain()
    storage = await runtime.storage()
    return [r["data"] for r in await storage.list_records(runtime.telemetry.database)]


async def test_stores_a_custom_event_with_metadata_split(storage_url: str) -> None:
    async with Runtime(
        database_url=storage_url, clock=VirtualClock(NOW), entry_points=False
    ) as runtime:
        with_brick(runtime)
        runtime.sign_in("ada@example.com")
        runtime.visit("https://example.com/translate?doc=7")
        session = runtime.host.page.session_id  # type: ignore[union-attr]
        data = {
            "words": 120,
            "ratio": 0.5,
            "cached": False,
            "lang": "fr",
            "detail": {"pages": [1, 2]},
            "missing": None,
        }
        result = await runtime.run_brick(
            "@pixiebrix/telemetry", {"eventName": "translate.done", "data": data}
        )
        [event] = await events(runtime)
    assert result.output == {}, "an effect: its output is discarded"
    assert event["name"] == "translate.done"
    assert event["metadata"] == {"words": 120, "ratio": 0.5, "cached": False}
    assert event["private_metadata"] == {
        "lang": "fr",
        "detail": {"pages": [1, 2]},
        "missing": None,
    }
    assert (event["user"], event["session_id"]) == ("ada@example.com", session)
    assert event["url"] == "https://example.com/translate?doc=7"
    assert event["timestamp"] == "2026-11-23T15:00:00.123Z"
    assert event["source"]["runId"] == result.run_id
    assert event["source"]["brickId"] == "@pixiebrix/telemetry"


async def test_from_a_yaml_pipeline_without_data(tmp_path: Any) -> None:
    async with Runtime(database_url=f"sqlite:///{tmp_path}/t.sqlite", entry_points=False) as rt:
        with_brick(rt)
        await run_pipeline_yaml(
            rt,
            """
            - id: "@pixiebrix/telemetry"
              config:
                eventName: !nunjucks "feature:{{ @input.what }}"
            """,
            {"what": "opened"},
        )
        [event] = await events(rt)
    assert (event["name"], event["metadata"], event["private_metadata"]) == (
        "feature:opened",
        {},
        {},
    )
    assert (event["user"], event["url"]) == (None, None), "no user or page: recorded without"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"eventName": "ok", "data": {"$eventName": "x"}},
            "$eventName is a reserved value for eventName",
        ),
        ({"eventName": "has space"}, "invalid telemetry event name"),
        ({"eventName": ""}, "invalid telemetry event name"),
        ({"eventName": "x" * 65}, "invalid telemetry event name"),
        ({"eventName": "TriggerRun"}, "reserved for the runtime's starter-brick telemetry"),
    ],
)
async def test_refusals_are_prop_errors(
    tmp_path: Any, config: dict[str, Any], message: str
) -> None:
    async with Runtime(database_url=f"sqlite:///{tmp_path}/t.sqlite", entry_points=False) as rt:
        with_brick(rt)
        with pytest.raises(PropError) as caught:
            await rt.run_brick("@pixiebrix/telemetry", config)
        assert await events(rt) == []
    assert message in str(caught.value)
    assert caught.value.prop == "eventName"


async def test_missing_event_name_is_an_input_error(tmp_path: Any) -> None:
    async with Runtime(database_url=f"sqlite:///{tmp_path}/t.sqlite", entry_points=False) as rt:
        with_brick(rt)
        with pytest.raises(Exception, match="eventName"):
            await rt.run_brick("@pixiebrix/telemetry", {"data": {}})


async def test_non_finite_numbers_stay_private_and_storable(tmp_path: Any) -> None:
    async with Runtime(database_url=f"sqlite:///{tmp_path}/t.sqlite", entry_points=False) as rt:
        with_brick(rt)
        data = {"nan": float("nan"), "inf": float("inf"), "big": 2**70, "n": 1}
        await rt.run_brick("@pixiebrix/telemetry", {"eventName": "odd", "data": data})
        [event] = await events(rt)
        assert rt.telemetry.counters["failed"] == 0
    assert event["metadata"] == {"n": 1}
    assert event["private_metadata"] == {"nan": "NaN", "inf": "Infinity", "big": 2**70}


@pytest.mark.parametrize(("variable", "value", "disabled"), DISABLE_CASES)
async def test_disabled_records_nothing_and_the_mod_goes_on(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, disabled: bool
) -> None:
    monkeypatch.setenv(variable, value)
    async with Runtime(database_url=f"sqlite:///{tmp_path}/t.sqlite", entry_points=False) as rt:
        with_brick(rt)
        result = await rt.run_brick("@pixiebrix/telemetry", {"eventName": "e", "data": {"n": 1}})
        stored = await events(rt)
    assert result.output == {}
    assert len(stored) == (0 if disabled else 1)


async def test_a_store_that_is_down_never_fails_or_slows_the_run() -> None:
    """Loss policy when the team database is unreachable at record time: the run finishes at
    once; the event is counted as ``failed`` (and logged without payload), not retried."""
    async with Runtime(database_url="postgresql://127.0.0.1:1/x", entry_points=False) as rt:
        with_brick(rt)
        # The run's deadline is shorter than any wait for the store: it would fail if the
        # brick waited for the store.
        result = await rt.run_brick(
            "@pixiebrix/telemetry", {"eventName": "e", "data": {"n": 1}}, timeout=0.5
        )
        assert await rt.drain(5.0)
        assert result.output == {}
        assert (rt.telemetry.counters["queued"], rt.telemetry.counters["failed"]) == (1, 1)
        assert list(rt.background_errors) == [], "never reported as a mod error"


async def test_a_mod_deployment_is_the_events_source(tmp_path: Any) -> None:
    mod = """
apiVersion: v3
kind: recipe
metadata: {id: "@test/telemetry-mod", name: Telemetry mod, version: 1.2.0}
extensionPoints:
  - id: "@test/on-custom"
    label: On custom
    config:
      action:
        - id: "@pixiebrix/telemetry"
          config:
            eventName: custom.seen
            data: {count: 1}
definitions:
  "@test/on-custom":
    kind: extensionPoint
    definition:
      type: trigger
      trigger: custom
      customEvent: {eventName: go}
      reportMode: never
"""
    path = tmp_path / "mod.yaml"
    path.write_text(mod)
    async with Runtime(database_url=f"sqlite:///{tmp_path}/t.sqlite", entry_points=False) as rt:
        with_brick(rt)
        await rt.activate(str(path), deployment_id="dep-42")
        rt.visit("https://example.com/")
        rt.dispatch_custom("go", {})
        await rt.settle()
        [event] = await events(rt)
    assert event["name"] == "custom.seen"
    assert event["source"]["deploymentId"] == "dep-42"
    assert event["source"]["modId"] == "@test/telemetry-mod"
