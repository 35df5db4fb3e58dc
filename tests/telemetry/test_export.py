"""The exporter against a real local collector (``collector.py``) and real stores.

Each test runs on SQLite and PostgreSQL (``storage_url``). Delays are tiny (backoff of
milliseconds, sub-second timeouts), so the whole file takes well under a minute.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from brickrun.storage import StorageBackend, open_storage
from brickrun.telemetry import TelemetryEvent
from brickrun.telemetry._export import (
    Exporter,
    JsonlSink,
    OtlpHttpSink,
    export_payload,
    parse_retry_after,
)
from brickrun.telemetry._otlp import any_value, encode_log_record, encode_request
from brickrun.telemetry._privacy import PrivacySettings

from .collector import Collector, Delay, Drop, Hang, Reply, log_records

pytestmark = pytest.mark.anyio

DB = "brickrun-telemetry"
SECRET = bytes(range(32))
PRIVACY = PrivacySettings(install_secret=SECRET)
CANARY = "canary.person@example.com"
FAST = {"base_delay": 0.01, "max_delay": 0.05, "request_timeout": 2.0, "lease_seconds": 5.0}


@pytest.fixture
async def store(storage_url: str) -> AsyncIterator[StorageBackend]:
    """An open store; after the test, every sink made by :func:`exporter` is closed too (an
    unclosed HTTP client warns, and warnings fail)."""
    async with open_storage(storage_url) as storage:
        yield storage
        while _SINKS:
            await _SINKS.pop().aclose()


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


_SINKS: list[OtlpHttpSink] = []


def trigger_run(n: int = 0, **changes: Any) -> TelemetryEvent:
    """A default-mode ``TriggerRun`` as ``_mods._report`` records it (the user signed in)."""
    values: dict[str, Any] = {
        "name": "TriggerRun",
        "timestamp": datetime(2026, 11, 23, 15, 0, 0, n * 1000 % 1_000_000, tzinfo=UTC),
        "source": {
            "modId": "@acme/tracker",
            "modVersion": "1.0.0",
            "modComponentId": "@acme/tracker:on-load",
            "modComponentLabel": "On load",
            "starterBrickId": "@acme/page-load",
            "starterBrickName": "Page load",
            "trigger": "load",
            "deploymentId": "dep-1",
            "runId": f"run-{n}",
        },
        "user": CANARY,
        "duration_ms": 12.5,
    }
    values.update(changes)
    return TelemetryEvent(**values)


async def record(storage: StorageBackend, count: int, *, start: int = 0) -> list[str]:
    """Store ``count`` events with their outbox rows, 200 puts in flight; their ids."""
    events = [trigger_run(n) for n in range(start, start + count)]

    async def writer(part: list[TelemetryEvent]) -> None:
        for event in part:
            await storage.put(DB, event.id, event.to_data(), now=event.timestamp, outbox=True)

    async with anyio.create_task_group() as group:
        for offset in range(200):
            group.start_soon(writer, events[offset::200])
    return [event.id for event in events]


def exporter(storage: StorageBackend, collector: Collector, **options: Any) -> Exporter:
    settings = {**FAST, **options}
    sink = OtlpHttpSink(collector.url)
    _SINKS.append(sink)
    return Exporter(storage, sink, privacy=PRIVACY, **settings)


async def drain(exp: Exporter, until: Callable[[], bool], *, timeout: float = 20.0) -> None:
    """Run ``exp`` until ``until()`` holds (checked every 10 ms), failing after ``timeout``."""
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: exp.run(stop, interval=0.01))
        with anyio.fail_after(timeout):
            while not until():
                await anyio.sleep(0.01)
        stop.set()
    await exp.sink.aclose()


# --- encoding ---------------------------------------------------------------------------------


def test_any_value_encoding_traps() -> None:
    assert any_value(True) == {"boolValue": True}
    assert any_value(7) == {"intValue": "7"}
    assert any_value(2**70) == {"stringValue": str(2**70)}
    assert any_value("abc") == {"stringValue": "abc"}
    assert any_value(float("nan")) == {"doubleValue": "NaN"}
    assert any_value(float("-inf")) == {"doubleValue": "-Infinity"}
    assert any_value([1, "x"]) == {
        "arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "x"}]}
    }
    assert any_value({"a": {"b": None}}) == {
        "kvlistValue": {
            "values": [
                {"key": "a", "value": {"kvlistValue": {"values": [{"key": "b", "value": {}}]}}}
            ]
        }
    }


def test_encoded_requests_are_valid_otlp_json() -> None:
    event = trigger_run(
        metadata={"words": 3, "ok": True, "ratio": 0.5},
        error={"name": "TypeError", "message": "boom", "business": False},
        url="https://example.com/orders/12345?token=x",
    )
    payload = export_payload({"id": event.id, "data": event.to_data()}, PRIVACY)
    records = [
        encode_log_record(payload, observed="2026-11-23T15:00:01.000Z"),
        encode_log_record({"id": "k_1", "name": "record", "data": {"n": [1, {"x": None}]}}),
    ]
    body = encode_request([(DB, records), ("empty", [])], service_version="1.2.3")
    parsed = json_format.Parse(body.decode(), ExportLogsServiceRequest())  # strict: no unknowns
    assert len(parsed.resource_logs[0].scope_logs) == 1
    first = json.loads(records[0])
    assert first["timeUnixNano"] == "1795446000000000000"
    assert first["observedTimeUnixNano"] == "1795446001000000000"
    assert (first["severityNumber"], first["severityText"]) == (17, "ERROR")
    attributes = {a["key"]: a["value"] for a in first["attributes"]}
    assert attributes["event.id"] == {"stringValue": event.id}
    assert attributes["metadata.ok"] == {"boolValue": True}
    assert attributes["metadata.words"] == {"intValue": "3"}
    assert attributes["url.full"] == {"stringValue": "https://example.com/orders/[id]"}
    assert attributes["error.business"] == {"boolValue": False}
    keys = [a["key"] for a in first["attributes"]]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2", 2.0),
        ("0", 0.0),
        ("86400", 86400.0),
        ("garbage", None),
        ("-3", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
    ],
)
def test_retry_after_forms(header: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(header, now) == expected


# --- the default payload and privacy ----------------------------------------------------------

# What a default-mode TriggerRun exports, exactly (SPEC §6/§8: starter brick name, time, user;
# mod id/version, component, starter brick and deployment ids; plus run id, duration and the
# platform, which the privacy filter lets through; the time is timeUnixNano).
DEFAULT_ATTRIBUTES = {
    "event.id",
    "event.name",
    "user.id",
    "brickrun.platform",
    "event.duration_ms",
    "source.modId",
    "source.modVersion",
    "source.modComponentId",
    "source.modComponentLabel",
    "source.starterBrickId",
    "source.starterBrickName",
    "source.trigger",
    "source.deploymentId",
    "source.runId",
}


async def test_default_trigger_run_exports_exactly_the_documented_fields(
    store: StorageBackend, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    event = trigger_run(private_metadata={"contact": CANARY}, session_id=CANARY)
    await store.put(DB, event.id, event.to_data(), outbox=True)
    # The first request is refused with the payload echoed in the collector's message.
    collector.script.append(Reply(400, body={"code": 3, "message": f"bad record {CANARY}"}))
    exp = exporter(store, collector)
    report = await exp.run_once()
    assert report.dead == 1
    await store.outbox_requeue(DB)
    report = await exp.run_once()
    assert report.delivered == 1
    await exp.sink.aclose()

    (record_,) = log_records(collector.requests[-1].body)
    assert {a["key"] for a in record_["attributes"]} == DEFAULT_ATTRIBUTES | {"session.id"}
    assert set(record_) == {
        "timeUnixNano",
        "observedTimeUnixNano",
        "severityNumber",
        "severityText",
        "eventName",
        "body",
        "attributes",
    }
    attributes = {a["key"]: a["value"] for a in record_["attributes"]}
    assert attributes["event.id"] == {"stringValue": event.id}
    assert attributes["user.id"]["stringValue"].startswith("u_")
    assert record_["body"] == {"stringValue": "TriggerRun"}
    everything = b"".join(r.raw for r in collector.requests)
    assert CANARY.encode() not in everything
    assert CANARY not in caplog.text
    status = await store.outbox_status(DB)
    assert CANARY not in repr(status)
    assert collector.invalid == []


async def test_without_a_session_the_default_payload_is_the_documented_set(
    store: StorageBackend, collector: Collector
) -> None:
    await record(store, 3)
    report = await exporter(store, collector).run_once()
    assert report.delivered == 3
    for record_ in log_records(collector.requests[0].body):
        assert {a["key"] for a in record_["attributes"]} == DEFAULT_ATTRIBUTES


# --- the status matrix ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "min_gap", "max_gap"),
    [
        (Reply(429, {"Retry-After": "1"}), 0.95, 3.0),  # delay-seconds, honoured
        (Reply(429, {"Retry-After": "86400"}), 0.25, 2.0),  # clamped to retry_after_cap
        (Reply(429, {"Retry-After": "soon"}), 0.0, 1.0),  # garbage: backoff instead
        (Reply(502), 0.0, 1.0),
        (Reply(503, {"Retry-After": "0"}), 0.0, 1.0),
        (Reply(504), 0.0, 1.0),
    ],
    ids=["429-seconds", "429-capped", "429-garbage", "502", "503", "504"],
)
async def test_retryable_statuses_are_retried(
    store: StorageBackend, collector: Collector, reply: Reply, min_gap: float, max_gap: float
) -> None:
    ids = await record(store, 5)
    collector.script.append(reply)
    exp = exporter(store, collector, retry_after_cap=0.3 if min_gap == 0.25 else 120)
    await drain(exp, lambda: collector.distinct_accepted == set(ids))
    first, second = collector.requests[:2]
    assert min_gap <= second.at - first.at <= max_gap
    assert sorted(first.ids) == sorted(ids)
    resent = [i for r in collector.requests[1:] for i in r.ids]
    assert sorted(resent) == sorted(ids), [(r.ids, r.behaviour) for r in collector.requests]
    status = await store.outbox_status(DB)
    assert status.unexported == 0 and status.exported == 5


async def test_retry_after_as_an_http_date_is_honoured(
    store: StorageBackend, collector: Collector
) -> None:
    ids = await record(store, 3)
    # HTTP-dates have whole seconds: 2 s ahead is at least 1 s ahead.
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    collector.script.append(Reply(503, {"Retry-After": format_datetime(when, usegmt=True)}))
    await drain(exporter(store, collector), lambda: collector.distinct_accepted == set(ids))
    first, second = collector.requests[:2]
    assert 0.95 <= second.at - first.at <= 3.5


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "HTTP 400 Bad Request: no such field"),
        (500, "HTTP 500 Internal Server Error: no such field"),
        (401, "HTTP 401 Unauthorized: no such field"),
        (413, "HTTP 413 Request Entity Too Large: no such field (even alone)"),
    ],
)
async def test_other_statuses_are_dead_lettered_without_a_retry(
    store: StorageBackend, collector: Collector, status: int, reason: str
) -> None:
    await record(store, 1)
    collector.default = Reply(status, body={"code": 3, "message": "no such field"})
    exp = exporter(store, collector)
    report = await exp.run_once()
    assert (report.dead, report.requests) == (1, 1)
    assert await exp.run_once() == type(report)()  # nothing left to send
    await exp.sink.aclose()
    (letter,) = (await store.outbox_status(DB)).dead_letters
    assert letter.reason == reason
    assert len(collector.requests) == 1


async def test_413_splits_the_batch_in_halves(store: StorageBackend, collector: Collector) -> None:
    ids = await record(store, 10)
    collector.rule = lambda received: Reply(413) if len(received.ids) > 3 else None
    exp = exporter(store, collector)
    report = await exp.run_once()
    await exp.sink.aclose()
    assert (report.delivered, report.dead) == (10, 0)
    assert collector.distinct_accepted == set(ids)
    assert [len(r.ids) for r in collector.requests] == [10, 5, 2, 3, 5, 2, 3]


async def test_413_dead_letters_only_the_records_too_large_alone(
    store: StorageBackend, collector: Collector
) -> None:
    ids = await record(store, 8)
    big = ids[5]
    collector.rule = lambda received: Reply(413) if big in received.ids else None
    exp = exporter(store, collector)
    report = await exp.run_once()
    await exp.sink.aclose()
    assert (report.delivered, report.dead) == (7, 1)
    assert collector.distinct_accepted == set(ids) - {big}
    (letter,) = (await store.outbox_status(DB)).dead_letters
    assert letter.key == big and "(even alone)" in letter.reason


async def test_partial_success_dead_letters_the_request_with_the_collectors_message(
    store: StorageBackend, collector: Collector
) -> None:
    await record(store, 5)
    collector.script.append(
        Reply(
            200,
            body={"partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "bad attribute"}},
        )
    )
    exp = exporter(store, collector)
    report = await exp.run_once()
    await exp.sink.aclose()
    assert (report.delivered, report.dead, report.requests) == (0, 5, 1)
    status = await store.outbox_status(DB)
    assert {d.reason for d in status.dead_letters} == {
        "collector rejected 2 of 5 log records: bad attribute"
    }
    # Requeueing re-sends them with the same ids (for the collector to deduplicate).
    assert await store.outbox_requeue(DB) == 5
    report = await exporter(store, collector).run_once()
    assert report.delivered == 5
    assert collector.requests[0].ids == collector.requests[1].ids


async def test_a_partial_success_rejecting_nothing_is_a_warning(
    store: StorageBackend, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    await record(store, 2)
    collector.script.append(Reply(200, body={"partialSuccess": {"errorMessage": "deprecated"}}))
    report = await exporter(store, collector).run_once()
    assert report.delivered == 2
    assert "collector accepted a batch with a warning: deprecated" in caplog.text


# --- faults -----------------------------------------------------------------------------------


async def test_collector_down_while_5000_events_are_recorded_then_recovering(
    store: StorageBackend, collector: Collector
) -> None:
    collector.down()
    stop = anyio.Event()
    exp = exporter(store, collector, max_batch=500, base_delay=0.05, max_delay=0.2)
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: exp.run(stop, interval=0.01))
        ids = await record(store, 5000)
        await anyio.sleep(0.2)  # several refused attempts
        assert collector.received_ids == []
        status = await store.outbox_status(DB)
        assert status.unexported == 5000 and status.counts["dead"] == 0
        collector.up()
        with anyio.fail_after(30):
            while collector.distinct_accepted != set(ids):
                await anyio.sleep(0.02)
        stop.set()
    await exp.sink.aclose()
    assert len(set(collector.accepted_ids)) == 5000
    status = await store.outbox_status(DB)
    assert status.unexported == 0 and status.exported == 5000


async def test_a_collector_that_never_answers(store: StorageBackend, collector: Collector) -> None:
    await record(store, 20)
    collector.default = Hang()
    exp = exporter(store, collector, request_timeout=0.3)
    # Each attempt ends at the request timeout.
    started = time.monotonic()
    report = await exp.run_once()
    assert 0.25 <= time.monotonic() - started < 1.5
    assert report.retried == 20 and "no reply within 0.3 s" in next(iter(report.reasons))
    # run() stops within its budget even in the middle of a request, rows still queued.
    exp = exporter(store, collector, request_timeout=30, lease_seconds=60)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: exp.run(stop, interval=0.01, shutdown_timeout=0.5))
        assert await anyio.to_thread.run_sync(collector.wait_for_request, 10)
        collector.request_arrived.clear()
        while not collector.request_arrived.wait(0):
            await anyio.sleep(0.01)
        started = time.monotonic()
        stop.set()
    assert time.monotonic() - started < 0.5 + 2.0
    await exp.sink.aclose()
    status = await store.outbox_status(DB)
    assert status.counts == {"pending": 20, "leased": 0, "dead": 0}  # handed back, not leased
    assert collector.accepted_ids == []


async def test_a_lost_acknowledgement_is_resent_with_the_same_ids(
    store: StorageBackend, collector: Collector
) -> None:
    ids = await record(store, 7)
    collector.script.append(Drop())  # stores the batch, then drops the connection
    exp = exporter(store, collector)
    await drain(exp, lambda: len(collector.accepted_ids) >= 14)
    resent = [i for r in collector.requests[1:] for i in r.ids]
    assert sorted(collector.requests[0].ids) == sorted(resent) == sorted(ids)
    assert len(collector.accepted_ids) == 14 and collector.distinct_accepted == set(ids)
    assert (await store.outbox_status(DB)).unexported == 0


async def test_a_poison_row_is_quarantined_while_the_rest_flows(
    store: StorageBackend, collector: Collector
) -> None:
    ids = await record(store, 60)
    poison = ids[0]
    # The collector fails every request holding the poison (as a crashing collector behind a
    # proxy does) and accepts all others; new events keep arriving meanwhile.
    collector.rule = lambda received: Reply(502) if poison in received.ids else None
    exp = exporter(store, collector, max_batch=16, max_attempts=8)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: exp.run(stop, interval=0.01))
        with anyio.fail_after(30):
            n = 60
            while not (await store.outbox_status(DB)).dead_letters:
                ids += await record(store, 1, start=n)
                n += 1
                await anyio.sleep(0.01)
            while not set(ids) - {poison} <= collector.distinct_accepted:
                await anyio.sleep(0.01)
        stop.set()
    status = await store.outbox_status(DB)
    assert [(d.key, d.attempts) for d in status.dead_letters] == [(poison, 8)]
    assert status.dead_letters[0].reason == "quarantined after 8 attempts: HTTP 502 Bad Gateway"
    assert status.unexported == 1
    # The poison ended up alone: failed requests were split in halves.
    assert [len(r.ids) for r in collector.requests if poison in r.ids][-3:] == [1, 1, 1]


async def test_an_outage_answering_502_dead_letters_nothing(
    store: StorageBackend, collector: Collector
) -> None:
    ids = await record(store, 12)
    collector.default = Reply(502)
    exp = exporter(store, collector, max_batch=8, max_attempts=3, max_delay=0.01)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: exp.run(stop, interval=0.01))
        with anyio.fail_after(10):
            # Failed requests are split, down to single records, that fail several times.
            while sum(len(r.ids) == 1 for r in collector.requests) < 6:
                await anyio.sleep(0.01)
        status = await store.outbox_status(DB)
        assert status.counts["dead"] == 0
        collector.default = Reply()
        with anyio.fail_after(10):
            while collector.distinct_accepted != set(ids):
                await anyio.sleep(0.01)
        stop.set()
    assert (await store.outbox_status(DB)).unexported == 0


async def test_unsendable_rows_are_dead_lettered_at_once(
    store: StorageBackend, collector: Collector
) -> None:
    ids = await record(store, 5)
    huge = trigger_run(99, source={"modId": "x" * 5000})
    await store.put(DB, huge.id, huge.to_data(), outbox=True)
    await store.put(DB, "not-an-event", {"event": "Opened", "email": CANARY}, outbox=True)
    exp = exporter(store, collector, max_bytes=4096)
    report = await exp.run_once()
    await exp.sink.aclose()
    assert (report.delivered, report.dead) == (6, 1)
    (letter,) = (await store.outbox_status(DB)).dead_letters
    assert letter.key == huge.id and "over max_bytes (4096)" in letter.reason
    assert collector.distinct_accepted - set(ids) == {
        next(i for i in collector.accepted_ids if i.startswith("k_"))
    }
    assert CANARY.encode() not in b"".join(r.raw for r in collector.requests)


# --- the pipeline (Exporter.run) -------------------------------------------------------------


async def test_a_backlog_is_delivered_once_each_when_the_collector_is_healthy(
    store: StorageBackend, collector: Collector
) -> None:
    ids = await record(store, 1_234)
    exp = exporter(store, collector, max_batch=100)
    await drain(exp, lambda: len(collector.accepted_ids) >= 1_234)
    assert sorted(collector.accepted_ids) == sorted(ids)  # no duplicates
    status = await store.outbox_status(DB)
    assert status.unexported == 0 and status.exported == 1_234


async def test_a_lane_holds_at_most_two_claims_and_hands_all_back_on_stop(
    store: StorageBackend, collector: Collector
) -> None:
    await record(store, 300)
    collector.default = Hang()
    exp = exporter(store, collector, max_batch=50, request_timeout=30, lease_seconds=60)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: exp.run(stop, interval=0.01, shutdown_timeout=0.5))
        # One claim in flight (its request hangs) and the next one prepared: then the producer
        # waits for the sender.
        with anyio.fail_after(10):
            while (await store.outbox_status(DB)).counts["leased"] < 100:
                await anyio.sleep(0.01)
        await anyio.sleep(0.2)  # a chance to claim more, which it must not take
        assert (await store.outbox_status(DB)).counts == {"pending": 200, "leased": 100, "dead": 0}
        stop.set()
    status = await store.outbox_status(DB)
    assert status.counts == {"pending": 300, "leased": 0, "dead": 0}
    assert len(collector.requests) == 1 and collector.accepted_ids == []


async def test_a_pause_hands_back_the_claim_held_ahead_at_once(
    store: StorageBackend, collector: Collector
) -> None:
    await record(store, 300)
    collector.default = Reply(503, {"Retry-After": "30"})
    # A lease far longer than the test: rows can only become pending by being handed back.
    exp = exporter(store, collector, max_batch=50, lease_seconds=600)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: exp.run(stop, interval=0.01))
        assert await anyio.to_thread.run_sync(collector.wait_for_request, 10)
        with anyio.fail_after(10):
            while (await store.outbox_status(DB)).counts["pending"] < 300:
                await anyio.sleep(0.01)
        stop.set()
    status = await store.outbox_status(DB)
    assert status.counts == {"pending": 300, "leased": 0, "dead": 0}
    assert len(collector.requests) == 1  # nothing else was sent during the pause


async def test_stopping_lets_the_request_in_flight_finish_and_acknowledges_it(
    store: StorageBackend, collector: Collector
) -> None:
    ids = await record(store, 300)
    collector.script.append(Delay(0.3))
    exp = exporter(store, collector, max_batch=50)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: exp.run(stop, interval=0.01, shutdown_timeout=10))
        assert await anyio.to_thread.run_sync(collector.wait_for_request, 10)
        stop.set()
    await exp.sink.aclose()
    (request,) = collector.requests
    assert len(request.ids) == 50 and set(request.ids) <= set(ids)
    status = await store.outbox_status(DB)
    assert status.exported == 50
    assert status.counts == {"pending": 250, "leased": 0, "dead": 0}


# The exporter process, killed with SIGKILL while its request is in flight (the collector hangs
# on it), then restarted: every event is delivered, none is left half-marked.
_EXPORTER_SCRIPT = textwrap.dedent(
    """
    import sys, anyio
    from brickrun.storage import open_storage
    from brickrun.telemetry._export import Exporter, OtlpHttpSink
    from brickrun.telemetry._privacy import PrivacySettings

    async def main():
        async with open_storage(sys.argv[1]) as storage:
            exporter = Exporter(
                storage, OtlpHttpSink(sys.argv[2]),
                privacy=PrivacySettings(install_secret=bytes.fromhex(sys.argv[3])),
                max_batch=50, request_timeout=30, lease_seconds=31,
            )
            await exporter.run(anyio.Event(), interval=0.01)

    anyio.run(main)
    """
)


async def test_the_exporter_process_killed_mid_batch_loses_nothing(
    store: StorageBackend, collector: Collector, storage_url: str, tmp_path: Path
) -> None:
    ids = await record(store, 120)
    collector.script.extend([Reply(), Hang()])  # the second batch never gets its reply
    script = tmp_path / "exporter.py"
    script.write_text(_EXPORTER_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), storage_url, collector.url, SECRET.hex()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with anyio.fail_after(30):
            # The second request hangs; the first one's acknowledgement runs meanwhile.
            while len(collector.requests) < 2 or (await store.outbox_status(DB)).exported < 50:
                await anyio.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert await anyio.to_thread.run_sync(process.wait, 10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        assert process.stderr is not None
        process.stderr.close()
    # Killed mid-batch: the first batch acknowledged, the second still leased, and the last 20
    # pending, or leased too (the pipeline claims the next rows while a request is in flight).
    status = await store.outbox_status(DB)
    assert status.exported == 50
    assert status.counts["dead"] == 0
    assert status.counts["pending"] + status.counts["leased"] == 70
    assert status.counts["leased"] >= 50
    first_two = collector.received_ids
    assert len(first_two) == 100 and set(first_two) <= set(ids)

    # Restarted: pending rows go at once, leased ones when the lease ends (31 s; a claim
    # "later" here).
    exp = exporter(store, collector, max_batch=50)
    while (await exp.run_once()).claimed:
        pass
    later = time.time() + 32
    exp = exporter(store, collector, max_batch=50, clock=lambda: later)
    while (await exp.run_once()).claimed:
        pass
    await exp.sink.aclose()
    assert collector.distinct_accepted == set(ids)
    # Each row not acknowledged before the kill was sent once more, with its id; the killed
    # batch among them.
    assert len(collector.received_ids) == 170
    assert set(first_two[50:100]) <= set(collector.received_ids[100:])
    status = await store.outbox_status(DB)
    assert status.unexported == 0 and status.exported == 120


# --- JSON Lines -------------------------------------------------------------------------------


async def test_jsonl_sink_writes_each_event_once(store: StorageBackend, tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    ids = await record(store, 30)
    exp = Exporter(store, JsonlSink(path), privacy=PRIVACY, max_batch=8)
    while (await exp.run_once()).claimed:
        pass
    # A torn last line (a crash mid-write), and a record exported again (same id).
    with path.open("ab") as handle:
        handle.write(b'{"database":"x","id":"torn')
    event = trigger_run(0)
    data = event.to_data() | {"id": ids[0]}
    await store.put(DB, ids[0], data, outbox=True)
    exp = Exporter(store, JsonlSink(path), privacy=PRIVACY)
    assert (await exp.run_once()).delivered == 1
    lines = path.read_bytes().split(b"\n")
    entries = [json.loads(line) for line in lines if line and not line.endswith(b"torn")]
    assert sorted(e["id"] for e in entries) == sorted(ids)
    assert all(e["database"] == DB and e["user"].startswith("u_") for e in entries)
    assert CANARY.encode() not in path.read_bytes()
    assert set(entries[0]) == {
        "database",
        "id",
        "name",
        "timestamp",
        "source",
        "user",
        "platform",
        "duration_ms",
    }


async def test_jsonl_sink_retries_when_it_cannot_write(
    store: StorageBackend, tmp_path: Path
) -> None:
    await record(store, 2)
    blocked = tmp_path / "file"
    blocked.write_text("")
    exp = Exporter(store, JsonlSink(blocked / "x.jsonl"), privacy=PRIVACY, **FAST)
    report = await exp.run_once()
    assert report.retried == 2 and report.dead == 0


# --- seams ------------------------------------------------------------------------------------


async def test_mock_transport_seam_and_headers(store: StorageBackend) -> None:
    await record(store, 2)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    sink = OtlpHttpSink(
        "http://collector.invalid:4318/",
        headers={"Authorization": "Bearer abc"},
        transport=httpx.MockTransport(handler),
    )
    _SINKS.append(sink)
    report = await Exporter(store, sink, privacy=PRIVACY).run_once()
    await sink.aclose()
    assert report.delivered == 2
    assert str(seen[0].url) == "http://collector.invalid:4318/v1/logs"
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].headers["authorization"] == "Bearer abc"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch": 0}, "max_batch must be a positive integer"),
        ({"max_bytes": 10}, "max_bytes must be an integer of at least 1024"),
        ({"base_delay": -1}, "base_delay must be a positive number of seconds"),
        ({"request_timeout": 10, "lease_seconds": 5}, "lease_seconds \\(5\\) must exceed"),
    ],
)
def test_exporter_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Exporter(object(), JsonlSink("x"), privacy=PRIVACY, **options)  # type: ignore[arg-type]
