"""``brickrun serve`` ingest throughput: HTTP on 127.0.0.1 against the Python API, one run.

Run: ``.venv/bin/python bench/serve.py [--seconds S] [--connections C] [--workers W]
[--db URL]``. Starts a real ``brickrun serve`` process on a free port of 127.0.0.1 over a fresh
SQLite file (or ``--db``), creates an ingest token with a rate above anything reachable, and
for each batch size (1 and 100 events per request) drives ``C`` keep-alive connections for
``S`` seconds with a minimal HTTP/1.1 client (so the client costs little of the two cores).
Every request body is built before the clock starts; every event has its own id.

Prints accepted events per second, requests per second and the p50/p99 request latency,
next to the baseline: the same events validated and privacy-filtered with the server's own
``to_stored`` and written directly with ``StorageBackend.put_many``, one call per "request"
and ``C`` calls in flight (what a Python API user writing batches would do, and what the
server does per request), in the same run, and the ratio. The load generator and the
baseline run on uvloop when it is installed, as the server does (the generator then takes
less of the two cores from the server). Targets on the 2-core machine class: 5,000
single-event requests/s and 50,000 events/s in batches of 100. Nothing is asserted. Every
wait is bounded: the whole run ends within about ``4 * S + 30`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRICKRUN = [sys.executable, "-m", "brickrun"]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def event(i: int) -> dict[str, Any]:
    kind = i % 4
    base: dict[str, Any] = {"id": str(uuid.uuid4()), "sessionId": "bench-session"}
    if kind == 0:
        return {**base, "type": "page_view", "page": f"/docs/{i % 50}", "platform": "web"}
    if kind == 1:
        return {**base, "type": "action", "action": "button_click", "page": "/dashboard"}
    if kind == 2:
        return {
            **base,
            "type": "api_call",
            "endpoint": "/api/user",
            "duration": i % 300,
            "status": 200,
        }
    return {**base, "type": "page_view", "page": "/profile/abc-123-def-456?tab=1"}


def bodies(count: int, batch: int) -> list[bytes]:
    out = []
    for r in range(count):
        items = [event(r * batch + j) for j in range(batch)]
        out.append(json.dumps(items[0] if batch == 1 else items).encode())
    return out


def request_bytes(body: bytes, token: str) -> bytes:
    return (
        b"POST /api/telemetry HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def drive(
    port: int, requests: list[bytes], connections: int, seconds: float, batch: int
) -> dict[str, Any]:
    """Send ``requests`` over ``connections`` keep-alive connections for ``seconds``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = 0
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal next_index
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout=5
        )
        try:
            while time.perf_counter() < deadline and next_index < len(requests):
                data = requests[next_index]
                next_index += 1
                t0 = time.perf_counter()
                writer.write(data)
                status = await asyncio.wait_for(read_response(reader), timeout=10)
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    ok = statuses.get(200, 0)
    latencies.sort()
    return {
        "requests_per_s": ok / elapsed,
        "events_per_s": ok * batch / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan"),
        "statuses": statuses,
        "exhausted": next_index >= len(requests),
    }


async def direct(url: str, batch: int, seconds: float, in_flight: int) -> dict[str, Any]:
    """The baseline: the same events, validated and filtered, put with the Python API."""
    from brickrun.server._ingest import to_stored
    from brickrun.storage import open_storage
    from brickrun.telemetry._privacy import PrivacySettings

    settings = PrivacySettings(install_secret=b"b" * 32, strict=True)
    now = datetime.now(UTC)
    latencies: list[float] = []
    stored = 0
    counter = 0
    async with open_storage(url) as storage:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal stored, counter
            while time.perf_counter() < deadline:
                counter += 1
                items = [event(counter * batch + j) for j in range(batch)]
                t0 = time.perf_counter()
                events = [
                    to_stored(e, "", now=now, settings=settings, ingest="bench") for e in items
                ]
                outcomes = await storage.put_many(
                    [("bench-direct", e.id, e.data, "replace", e.timestamp) for e in events]
                )
                if any(outcome is not None for outcome in outcomes):
                    raise SystemExit(f"the baseline's put_many refused an event: {outcomes}")
                latencies.append(time.perf_counter() - t0)
                stored += batch

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "events_per_s": stored / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on uvloop when installed (the server's loop), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"brickrun serve exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("brickrun serve did not become ready in time")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--db", default=None, help="store URL (default: a fresh SQLite file)")
    args = parser.parse_args(argv)

    folder = tempfile.mkdtemp(prefix="brickrun-bench-")
    url = args.db or f"sqlite:///{folder}/bench.sqlite"
    env = {**os.environ, "BRICKRUN_INSTALL_SECRET": "c" * 64}
    env.pop("DO_NOT_TRACK", None)
    env.pop("BRICKRUN_TELEMETRY_DISABLED", None)
    created = subprocess.run(
        [*BRICKRUN, "tokens", "create", "bench", "--rate", "100000000", "--db", url, "--json"],
        env=env,
        capture_output=True,
        check=True,
        timeout=30,
    )
    token = json.loads(created.stdout)["token"]
    port = free_port()
    server = subprocess.Popen(
        [
            *BRICKRUN,
            "serve",
            "--port",
            str(port),
            "--db",
            url,
            "--workers",
            str(args.workers),
            "--max-batch",
            "1000",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )
    rows = []
    try:
        wait_ready(port, server)
        for batch in (1, 100):
            # Enough bodies never to run out: 30,000 req/s or 3,000 batches/s at most.
            count = int(args.seconds * (30_000 if batch == 1 else 3_000))
            requests = [request_bytes(b, token) for b in bodies(count, batch)]
            run(drive(port, requests[:200], 4, 1.0, batch))  # warm up
            http = run(drive(port, requests[200:], args.connections, args.seconds, batch))
            baseline = run(direct(url, batch, args.seconds, args.connections))
            rows.append((batch, http, baseline))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)

    print(
        f"brickrun serve ingest, {args.connections} connections, {args.seconds:g} s per run, "
        f"{args.workers} worker(s), {url.split('?')[0] if args.db else 'SQLite'}, "
        f"{'uvloop' if importlib.util.find_spec('uvloop') else 'asyncio'} event loop"
    )
    print(
        f"{'batch':>5} {'path':<12} {'events/s':>10} {'requests/s':>11} {'p50 ms':>8} "
        f"{'p99 ms':>8}  statuses"
    )
    for batch, http, baseline in rows:
        print(
            f"{batch:>5} {'HTTP':<12} {http['events_per_s']:>10,.0f} "
            f"{http['requests_per_s']:>11,.0f} {http['p50_ms']:>8.2f} {http['p99_ms']:>8.2f}  "
            f"{http['statuses']}{' (ran out of bodies)' if http['exhausted'] else ''}"
        )
        print(
            f"{batch:>5} {'Python API':<12} {baseline['events_per_s']:>10,.0f} "
            f"{baseline['requests_per_s']:>11,.0f} {baseline['p50_ms']:>8.2f} "
            f"{baseline['p99_ms']:>8.2f}"
        )
        ratio = http["events_per_s"] / baseline["events_per_s"]
        print(f"{batch:>5} {'ratio':<12} {ratio:>10.2f}  (HTTP / Python API events per second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
