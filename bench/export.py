"""Export throughput: events/s from record (stored with its outbox row) to collector ack.

Run: ``.venv/bin/python bench/export.py [--events N] [--no-postgres] [--rounds R]
[--latency-ms MS]`` (the OpenTelemetry SDK baseline needs the ``bench`` extra: ``pip install -e
'.[bench]'``). Prints, in one run, against one fast collector (a raw asyncio HTTP server in its
own process that reads each body, counts the records in it and answers 200; ``--latency-ms``
makes it answer each export that late, as a collector across a network would):

(a) brickrun on SQLite and on PostgreSQL (``BRICKRUN_TEST_POSTGRES_DSN``): N default-mode
    ``TriggerRun`` events recorded the way the product records telemetry — a ``Runtime``'s
    telemetry recorder with export on (each event stored with its outbox row in one
    transaction) — while an :class:`Exporter` with its default options runs in the same
    process (one lane, ``x1``, or two, ``x2``); the clock stops when the collector counted all
    N (and the store then reports them acknowledged). Also with the exporter in a second
    process (the deployment shape the durable outbox allows: the store is the hand-off);
(b) the hand-written baseline: the same events as dicts, encoded to the same OTLP JSON and
    POSTed in batches of 500 (no store, no privacy filter, no retries);
(c) the OpenTelemetry SDK: ``BatchLogRecordProcessor`` + ``OTLPLogExporter`` (protobuf over
    HTTP) emitting the same events with the same attributes, its queue sized to hold all N (so
    its rate is the delivered rate; with the default queue of 2,048 it drops most of a burst,
    which is reported too); the clock stops when ``force_flush`` returns and the collector
    counted all N.

Waiting for the collector's count is one request it answers when the count is reached, so no
variant pays for polling. Every wait is bounded (``WAIT_S``). ``--rounds R`` runs every variant
R times, in turn, and prints the medians with their range: on a shared machine one round is
noisy. Then the ratios. No thresholds are asserted here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx

from brickrun import Runtime
from brickrun.storage import StorageBackend, open_storage
from brickrun.telemetry import TelemetryEvent
from brickrun.telemetry._export import Exporter, OtlpHttpSink, export_payload
from brickrun.telemetry._otlp import encode_log_record, encode_request
from brickrun.telemetry._privacy import PrivacySettings

PG_DSN = os.environ.get("BRICKRUN_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
DB = "bench-telemetry"
PRIVACY = PrivacySettings(install_secret=bytes(range(32)))
WAIT_S = 120.0  # the longest any one delivery may take before the run fails (bounded time)


# --- the collector ----------------------------------------------------------------------------


def _serve(port: int, ready: Any, latency: float = 0.0) -> None:
    """A minimal HTTP/1.1 keep-alive server: count ``event.id`` occurrences, answer 200
    (``latency`` seconds after reading an export, as a collector across a network would).

    ``GET /count`` answers the number of records received so far; ``GET /wait/<n>`` answers
    it once it reaches ``n`` (so that waiting for delivery costs the measured process no
    polling); ``POST /reset`` zeroes it.
    """
    count = 0
    waiters: list[tuple[int, asyncio.Future[None]]] = []

    def wake() -> None:
        for waiter in [w for w in waiters if w[0] <= count]:
            waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(None)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"GET /wait/"):
                    target = int(head[10 : head.index(b" ", 10)])
                    if count < target:
                        future = asyncio.get_running_loop().create_future()
                        waiters.append((target, future))
                        await future
                    reply = str(count).encode()
                elif head.startswith(b"GET"):
                    reply = str(count).encode()
                elif head.startswith(b"POST /reset"):
                    count, reply = 0, b"0"
                else:
                    if latency:
                        await asyncio.sleep(latency)
                    # JSON ("key":"event.id") and protobuf (the key's bytes) both hold the
                    # attribute key once per record.
                    count += body.count(b"event.id")
                    reply = b"{}"
                    wake()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(reply)).encode()
                    + b"\r\n\r\n"
                    + reply
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)
        ready.set()
        await server.serve_forever()

    asyncio.run(main())


class CollectorProcess:
    def __init__(self, latency: float = 0.0) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        self.process = context.Process(target=_serve, args=(self.port, ready, latency), daemon=True)
        self.process.start()
        if not ready.wait(30):
            raise RuntimeError("the bench collector did not start")
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client()

    def count(self) -> int:
        return int(self.client.get(self.url + "/count").text)

    def wait(self, count: int, timeout: float = WAIT_S) -> int:
        """The count once it reaches ``count``, or after ``timeout`` seconds."""
        try:
            return int(self.client.get(f"{self.url}/wait/{count}", timeout=timeout).text)
        except httpx.TimeoutException:
            return self.count()

    def reset(self) -> None:
        self.client.post(self.url + "/reset")

    def close(self) -> None:
        self.client.close()
        self.process.kill()
        self.process.join()


# --- events -----------------------------------------------------------------------------------


def make_events(count: int) -> list[TelemetryEvent]:
    now = datetime.now(UTC)
    return [
        TelemetryEvent(
            name="TriggerRun",
            timestamp=now,
            source={
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
            user="ada@example.com",
            duration_ms=12.5,
        )
        for n in range(count)
    ]


async def record_all(runtime: Runtime, events: list[TelemetryEvent]) -> None:
    """Record every event through the runtime's telemetry recorder (it never blocks: events
    are queued and stored in the background) and wait until all are stored."""
    recorder = runtime.telemetry
    for n, event in enumerate(events):
        if not recorder.record(event, database=DB):
            raise RuntimeError(f"event {n} was not accepted: {dict(recorder.counters)}")
        if n % 100 == 99:
            await anyio.sleep(0)  # a host does other work between events
    await runtime.drain()
    if recorder.counters["failed"]:
        raise RuntimeError(f"events failed to store: {dict(recorder.counters)}")


async def wait_delivered(collector: str, count: int, timeout: float = WAIT_S) -> None:
    """Until the collector counted ``count`` records: one request the collector answers when
    it has (no polling, so waiting costs the measured process nothing)."""
    async with httpx.AsyncClient(timeout=timeout + 5) as client:
        with anyio.fail_after(timeout):
            await client.get(f"{collector}/wait/{count}")


async def reset(collector: str) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(collector + "/reset")


async def check_exported(storage: StorageBackend, count: int) -> None:
    """Every record was acknowledged in the store, none dead (the collector may count a
    batch a moment before its acknowledgement commits)."""
    with anyio.fail_after(30):
        while (status := await storage.outbox_status(DB, dead_letter_limit=0)).unexported:
            assert status.counts["dead"] == 0, status
            await anyio.sleep(0.01)
    assert status.exported >= count, status


def exporter_for(storage: StorageBackend, url: str) -> Exporter:
    """The exporter as the product ships it: default batch and request sizes."""
    return Exporter(storage, OtlpHttpSink(url), privacy=PRIVACY)


# --- (a) brickrun -----------------------------------------------------------------------------


async def brickrun_in_process(url: str, collector: str, count: int, concurrency: int) -> float:
    events = make_events(count)
    async with Runtime(database_url=url, entry_points=False, export=True) as runtime:
        storage = await runtime.storage()
        await storage.put(DB, "warm-up", {}, outbox=True)
        exporter = exporter_for(storage, collector)
        await exporter.run_once()
        await reset(collector)
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: exporter.run(stop, interval=0.005, concurrency=concurrency))
            start = time.perf_counter()
            await record_all(runtime, events)
            await wait_delivered(collector, count)
            elapsed = time.perf_counter() - start
            await check_exported(storage, count)
            stop.set()
        await exporter.sink.aclose()
    return count / elapsed


def _exporter_process(url: str, collector: str, started: Any, stop: Any) -> None:
    async def main() -> None:
        async with open_storage(url) as storage:
            exporter = exporter_for(storage, collector)
            done = anyio.Event()

            async def watch() -> None:
                await anyio.to_thread.run_sync(stop.wait)
                done.set()

            async with anyio.create_task_group() as group:
                group.start_soon(watch)
                started.set()
                await exporter.run(done, interval=0.005)
            await exporter.sink.aclose()

    anyio.run(main)


async def brickrun_two_processes(url: str, collector: str, count: int) -> float:
    events = make_events(count)
    context = multiprocessing.get_context("spawn")
    started, stop = context.Event(), context.Event()
    async with Runtime(database_url=url, entry_points=False, export=True) as runtime:
        storage = await runtime.storage()
        process = context.Process(target=_exporter_process, args=(url, collector, started, stop))
        process.start()
        try:
            await anyio.to_thread.run_sync(started.wait, 60)
            await storage.put(DB, "warm-up", {}, outbox=True)
            await wait_delivered(collector, 1)
            await reset(collector)
            start = time.perf_counter()
            await record_all(runtime, events)
            await wait_delivered(collector, count)
            elapsed = time.perf_counter() - start
            await check_exported(storage, count)
        finally:
            stop.set()
            await anyio.to_thread.run_sync(process.join, 30)
    return count / elapsed


# --- (b) hand-written -------------------------------------------------------------------------


def handwritten(collector: CollectorProcess, count: int) -> float:
    events = make_events(count)
    template = export_payload({"id": "x", "data": events[0].to_data()}, PRIVACY)
    observed = datetime.now(UTC).isoformat()
    collector.reset()
    with httpx.Client() as client:
        start = time.perf_counter()
        for first in range(0, count, 500):
            records = [
                encode_log_record(template | {"id": event.id}, observed=observed)
                for event in events[first : first + 500]
            ]
            body = encode_request([(DB, records)], service_version="0.1.0")
            client.post(
                collector.url + "/v1/logs",
                content=body,
                headers={"Content-Type": "application/json"},
            ).raise_for_status()
        elapsed = time.perf_counter() - start
    assert collector.count() == count, collector.count()
    return count / elapsed


# --- (c) the OpenTelemetry SDK ----------------------------------------------------------------


def otel_sdk(collector: CollectorProcess, count: int, *, queue: int | None) -> tuple[float, int]:
    """Events/s delivered and how many were delivered (``queue=None``: the SDK's default)."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    events = make_events(count)
    payload = export_payload({"id": "x", "data": events[0].to_data()}, PRIVACY)
    attributes: dict[str, Any] = {"event.name": "TriggerRun", "user.id": payload["user"]}
    attributes["brickrun.platform"] = payload["platform"]
    attributes["event.duration_ms"] = payload["duration_ms"]
    attributes.update({f"source.{k}": v for k, v in payload["source"].items()})

    collector.reset()
    exporter = OTLPLogExporter(endpoint=collector.url + "/v1/logs")
    options = {} if queue is None else {"max_queue_size": queue}
    processor = BatchLogRecordProcessor(exporter, **options)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(processor)
    logger = provider.get_logger("brickrun.telemetry")
    stamp = time.time_ns()
    start = time.perf_counter()
    for event in events:
        logger.emit(
            timestamp=stamp,
            observed_timestamp=stamp,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body="TriggerRun",
            event_name="TriggerRun",
            attributes={"event.id": event.id, **attributes},
        )
    processor.force_flush(int(WAIT_S * 1000))
    # force_flush returns once the SDK's last export was answered, so the count is final; with
    # a queue holding all, wait for all the same (bounded) in case that ever changes.
    delivered = collector.wait(count) if queue is not None else collector.count()
    elapsed = time.perf_counter() - start
    provider.shutdown()
    return delivered / elapsed, delivered


# --- main -------------------------------------------------------------------------------------


def postgres_url() -> str | None:
    import psycopg

    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.Error as error:
        print(f"PostgreSQL unavailable ({error}); skipping it", file=sys.stderr)
        return None
    schema = f"bench_export_{uuid.uuid4().hex[:8]}"
    return f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}"


def drop_schema(url: str) -> None:
    import psycopg
    from psycopg import sql

    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


HAND = "hand-written (dicts -> batched POSTs)"
SDK = "OpenTelemetry SDK (queue holds all)"


def one_round(collector: CollectorProcess, count: int, postgres: bool) -> dict[str, float]:
    """Every variant once, in a fixed order: events/s by name."""
    results: dict[str, float] = {HAND: handwritten(collector, count)}
    try:
        results[SDK], _ = otel_sdk(collector, count, queue=count)
        rate, delivered = otel_sdk(collector, count, queue=None)
        print(
            f"OpenTelemetry SDK with its default queue (2,048): delivered {delivered:,} of "
            f"{count:,} ({rate:,.0f} delivered events/s); the rest were dropped"
        )
    except ImportError:
        print("OpenTelemetry SDK not installed (pip install -e '.[bench]'); skipped")
    with tempfile.TemporaryDirectory() as directory:
        for concurrency in (1, 2):
            url = f"sqlite:///{directory}/one-{concurrency}.sqlite"
            results[f"brickrun SQLite, in-process exporter x{concurrency}"] = anyio.run(
                brickrun_in_process, url, collector.url, count, concurrency
            )
        url = f"sqlite:///{directory}/two.sqlite"
        results["brickrun SQLite, exporter in its own process"] = anyio.run(
            brickrun_two_processes, url, collector.url, count
        )
    if postgres:
        for concurrency in (1, 2, 0):  # 0: the exporter in its own process
            pg = postgres_url()
            assert pg is not None
            try:
                if concurrency:
                    name = f"brickrun PostgreSQL, in-process exporter x{concurrency}"
                    rate = anyio.run(brickrun_in_process, pg, collector.url, count, concurrency)
                else:
                    name = "brickrun PostgreSQL, exporter in its own process"
                    rate = anyio.run(brickrun_two_processes, pg, collector.url, count)
                results[name] = rate
            finally:
                drop_schema(pg)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every variant this many times; print medians"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="the collector answers each export this late (a collector across a network)",
    )
    args = parser.parse_args()
    count = args.events
    postgres = not args.no_postgres and postgres_url() is not None
    collector = CollectorProcess(latency=args.latency_ms / 1000)
    rounds: list[dict[str, float]] = []
    try:
        for _ in range(max(1, args.rounds)):
            rounds.append(one_round(collector, count, postgres))
    finally:
        collector.close()
    results = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}

    latency = f", collector latency {args.latency_ms:g} ms" if args.latency_ms else ""
    median = f", median of {len(rounds)} rounds (range)" if len(rounds) > 1 else ""
    print(f"\n{count:,} events, record -> collector acknowledgement (events/s{latency}{median})")
    width = max(len(name) for name in results)
    for name, rate in results.items():
        spread = ""
        if len(rounds) > 1:
            low, high = min(r[name] for r in rounds), max(r[name] for r in rounds)
            spread = f"  ({low:,.0f} - {high:,.0f})"
        print(f"  {name:<{width}}  {rate:>10,.0f}{spread}")
    sdk = results.get(SDK)
    print("\nratios")
    for name, rate in results.items():
        if name.startswith("brickrun"):
            line = f"  {name:<{width}}  {rate / results[HAND]:5.2f}x hand-written"
            if sdk:
                line += f"  {rate / sdk:5.2f}x OpenTelemetry SDK"
            print(line)
    print(json.dumps({name: round(rate) for name, rate in results.items()}))


if __name__ == "__main__":
    main()
