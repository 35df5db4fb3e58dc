"""TelemetryService: lifecycle order, loss policy, bounds, fork safety, exit budget, no leaks.

Process-level scenarios (``fork()``, interpreter exit) run in a subprocess with a timeout, so
a deadlock or a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from brickrun import BrickrunError
from brickrun.storage import open_storage
from brickrun.telemetry._service import ServiceState, TelemetryService

from ..conftest import DISABLE_CASES

REFUSED = "postgresql://127.0.0.1:1/x"  # nothing listens on port 1: connection refused


def count_records(url: str, database: str = "brickrun-telemetry") -> int:
    async def go() -> int:
        async with open_storage(url) as storage:
            return await storage.count(database)

    return anyio.run(go)


def baseline_threads() -> set[threading.Thread]:
    """The live threads, once the AnyIO worker threads of this test's own ``anyio.run`` calls
    (told to stop when their loop ended, not joined) have finished."""
    for thread in threading.enumerate():
        if thread.name == "AnyIO worker thread":
            thread.join(2.0)
    return set(threading.enumerate())


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/service.sqlite"


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A PostgreSQL URL whose server accepts TCP connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)  # never accept(): the kernel completes handshakes, nobody replies
    port = server.getsockname()[1]
    yield f"postgresql://127.0.0.1:{port}/x?connect_timeout=30"
    server.close()


@pytest.fixture
def service() -> Iterator[TelemetryService]:
    """A fresh service with test-sized budgets; destroyed after the test."""
    made: list[TelemetryService] = []

    def make(**kwargs: Any) -> TelemetryService:
        made.append(TelemetryService(**kwargs))
        return made[-1]

    yield make  # type: ignore[misc]
    for each in made:
        each.destroy(2.0)


# -- lifecycle order -----------------------------------------------------------------------------


def test_lifecycle_order_and_idempotence(sqlite_url: str) -> None:
    service = TelemetryService(database_url=sqlite_url)
    assert service.destroy().done, "destroy() before register() is fine"
    service = TelemetryService(database_url=sqlite_url)
    assert service.send("early") is None, "send() before register() is dropped"
    with pytest.raises(BrickrunError, match=r"register\(\) first"):
        service.bootstrap()
    assert service.register() and service.register(), "register() is idempotent"
    service.bootstrap()
    service.bootstrap()
    assert [t.name for t in threading.enumerate()].count("brickrun-telemetry") == 1
    assert service.send("during") is not None
    first = service.destroy(2.0)
    second = service.destroy(2.0)
    assert first.done and second.done and not second.worker_alive
    assert service.send("late") is None, "send() after destroy() is dropped, never queued"
    with pytest.raises(BrickrunError, match="destroyed"):
        service.bootstrap()
    metrics = service.metrics()
    assert metrics["dropped:not_registered"] == metrics["dropped:destroyed"] == 1
    assert (metrics["queued"], metrics["stored"], metrics["pending"]) == (1, 1, 0)
    # A new cycle on the same service.
    assert service.register()
    service.bootstrap()
    service.send("again")
    assert service.flush(5.0).done
    service.destroy(2.0)
    assert service.metrics()["stored"] == 2
    assert count_records(sqlite_url) == 2


def test_send_before_bootstrap_is_queued_then_stored(sqlite_url: str) -> None:
    service = TelemetryService(database_url=sqlite_url)
    service.register()
    assert service.send("queued.early", {"n": 1}) is not None
    assert service.flush(0.2).queued == 1, "no worker yet: flush returns and says so"
    service.bootstrap()
    assert service.flush(5.0).done
    service.destroy()
    assert count_records(sqlite_url) == 1


# -- disabled ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "value", "disabled"), DISABLE_CASES)
def test_disabled_starts_nothing_and_stores_nothing(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, disabled: bool
) -> None:
    monkeypatch.setenv(variable, value)
    before = baseline_threads()
    service = TelemetryService(database_url=sqlite_url)
    assert service.register() is not disabled
    service.bootstrap()
    sent = service.send("some.event", {"n": 1})
    report = service.flush(5.0)
    if disabled:
        assert service.state is ServiceState.DISABLED
        assert service.disabled_reason == f"{variable} is set"
        assert set(threading.enumerate()) == before, "no worker thread when disabled"
        assert sent is None and report.done
        assert service.metrics()["dropped:disabled"] == 1
    else:
        assert sent is not None and report.done
    service.destroy()
    assert set(threading.enumerate()) == before
    if disabled:
        assert not os.path.exists(sqlite_url.removeprefix("sqlite:///")), "no store opened"
    else:
        assert count_records(sqlite_url) == 1


def test_disabled_by_configuration(sqlite_url: str) -> None:
    service = TelemetryService(database_url=sqlite_url)
    assert service.register({"disabled": True}) is False
    assert service.disabled_reason == "disabled by configuration"


def test_configuration_comes_from_config_then_arguments_then_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_url = f"sqlite:///{tmp_path}/env.sqlite"
    monkeypatch.setenv("BRICKRUN_DB_URL", env_url)
    monkeypatch.setenv("BRICKRUN_TELEMETRY_DATABASE", "telemetry-env")
    service = TelemetryService()
    service.register()
    assert (service.database_url, service.database) == (env_url, "telemetry-env")
    service.bootstrap()
    service.send("from.env")
    service.flush(5.0)
    service.destroy()
    assert count_records(env_url, "telemetry-env") == 1
    service = TelemetryService(database="telemetry-arg")
    service.register({"database_url": "sqlite:///:memory:", "max_queue": 5})
    assert (service.database_url, service.database, service.max_queue) == (
        "sqlite:///:memory:",
        "telemetry-arg",
        5,
    )
    with pytest.raises(ValueError, match="max_queue must be a positive integer"):
        TelemetryService().register({"max_queue": 0})


# -- storing, on both backends -------------------------------------------------------------------


def test_send_flush_destroy_stores_everything_from_many_threads(storage_url: str) -> None:
    service = TelemetryService(database_url=storage_url, database="telemetry-svc")
    service.register()
    service.bootstrap()
    ids: list[str | None] = []

    def send(n: int) -> None:
        for i in range(250):
            ids.append(service.send("bulk.event", {"thread": n, "i": i, "tag": "x"}))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    service.recorder.page_view("https://example.com/docs/7")
    report = service.flush(10.0)
    assert report.done and report.pending == 0
    final = service.destroy(5.0)
    assert final.done and not final.worker_alive
    metrics = service.metrics()
    assert (metrics["queued"], metrics["stored"], metrics["dropped"]) == (1001, 1001, 0)
    assert None not in ids and len(set(ids)) == 1000
    assert count_records(storage_url, "telemetry-svc") == 1001


def test_queue_full_drops_new_events_exactly(sqlite_url: str) -> None:
    service = TelemetryService(database_url=sqlite_url, max_queue=10)
    service.register()  # not bootstrapped: nothing drains the queue
    results = [service.send("burst.event", {"i": i}) for i in range(15)]
    assert [r is not None for r in results] == [True] * 10 + [False] * 5, "the newest are dropped"
    assert service.metrics()["dropped:queue_full"] == 5
    service.bootstrap()
    assert service.flush(5.0).done
    service.destroy()
    metrics = service.metrics()
    assert (metrics["queued"], metrics["stored"], metrics["dropped"]) == (10, 10, 5)
    assert count_records(sqlite_url) == 10


def test_invalid_sends_are_counted_not_raised(sqlite_url: str) -> None:
    service = TelemetryService(database_url=sqlite_url)
    service.register()
    assert service.send("bad name") is None
    assert service.send("ok", ["not", "a", "mapping"]) is None  # type: ignore[arg-type]
    assert service.send(None) is None  # type: ignore[arg-type]
    assert service.metrics()["dropped:invalid"] == 3
    service.destroy()


class FakeExporter:
    """An exporter loop that counts what it would export, until told to stop."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.exported = 0
        self.runs = 0
        self.stopped = 0
        self.flushes = 0

    async def run(self, stop: anyio.Event) -> None:
        self.runs += 1
        await stop.wait()
        self.stopped += 1

    async def flush(self, timeout: float) -> None:
        self.flushes += 1
        self.exported = await self.storage.count("brickrun-telemetry")

    def metrics(self) -> dict[str, int]:
        return {"exported": self.exported}


def test_an_exporter_loop_runs_inside_the_worker(sqlite_url: str) -> None:
    made: list[FakeExporter] = []

    def factory(storage: Any) -> FakeExporter:
        made.append(FakeExporter(storage))
        return made[-1]

    service = TelemetryService(database_url=sqlite_url, exporter_factory=factory)
    service.register()
    service.bootstrap()
    for i in range(5):
        service.send("exported.event", {"i": i})
    assert service.flush(5.0).done
    assert service.metrics()["exported"] == 5
    report = service.destroy(2.0)
    assert report.done and not report.worker_alive
    [exporter] = made
    assert (exporter.runs, exporter.stopped, exporter.flushes) == (1, 1, 1), "stopped, not killed"
    assert service.metrics()["exported"] == 5, "kept after the worker stopped"


def test_a_failing_exporter_does_not_stop_storing(sqlite_url: str) -> None:
    def factory(storage: Any) -> FakeExporter:
        raise RuntimeError("no collector configured")

    service = TelemetryService(database_url=sqlite_url, exporter_factory=factory)
    service.register()
    service.bootstrap()
    service.send("still.stored")
    assert service.flush(5.0).done
    service.destroy()
    assert service.metrics()["stored"] == 1


# -- an unreachable or stalled store: bounded, counted ---------------------------------------------


def test_store_refusing_connections_counts_failed(service: Any) -> None:
    svc = service(database_url=REFUSED)
    svc.register()
    svc.bootstrap()
    started = time.monotonic()
    for i in range(20):
        svc.send("lost.event", {"i": i})
    send_time = time.monotonic() - started
    report = svc.flush(5.0)
    assert report.done, "failed events are finished (counted), not pending"
    metrics = svc.metrics()
    assert (metrics["queued"], metrics["failed"], metrics["stored"]) == (20, 20, 0)
    assert send_time < 0.5, "sending never waits for the store"


def test_flush_and_destroy_are_bounded_with_a_stalled_store(service: Any, black_hole: str) -> None:
    before = baseline_threads()
    svc = service(database_url=black_hole)
    svc.register()
    svc.bootstrap()
    for i in range(10):
        svc.send("stalled.event", {"i": i})
    started = time.monotonic()
    report = svc.flush(0.5)
    flushed = time.monotonic() - started
    assert 0.45 <= flushed < 1.0, flushed
    assert (report.done, report.pending, report.worker_alive) == (False, 10, True)
    started = time.monotonic()
    final = svc.destroy(1.0)
    destroyed = time.monotonic() - started
    assert destroyed < 1.5, destroyed  # the budget, plus scheduling noise on a busy machine
    assert (final.pending, final.worker_alive) == (10, False)
    assert svc.metrics()["dropped:shutdown"] == 10
    assert set(threading.enumerate()) == before, "no thread left behind"


# -- leaks ---------------------------------------------------------------------------------------


def test_1000_cycles_leave_threads_and_memory_flat(sqlite_url: str) -> None:
    def cycle() -> TelemetryService:
        svc = TelemetryService(database_url=sqlite_url)
        svc.register()
        svc.bootstrap()
        report = svc.destroy(2.0)
        assert report.done and not report.worker_alive
        return svc

    for _ in range(20):  # warm up: imports, caches, the allocator's arenas
        cycle()
    gc.collect()
    threads, rss = baseline_threads(), rss_bytes()
    first = weakref.ref(cycle())
    for _ in range(999):
        cycle()
    gc.collect()
    growth = rss_bytes() - rss
    assert set(threading.enumerate()) == threads
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert first() is None, "a destroyed service is garbage-collected"


# -- processes: fork and exit --------------------------------------------------------------------


FORK_SCRIPT = """
import json, os, sys, threading, time
from brickrun.telemetry._service import TelemetryService

url, out = sys.argv[1], sys.argv[2]
service = TelemetryService(database_url=url, exit_timeout_s=5)
service.register()
service.bootstrap()
stop = threading.Event()

def hammer():  # keeps the service lock busy while the main thread forks
    while not stop.is_set():
        service.send("parent.event", {"n": 1})
        time.sleep(0)

sender = threading.Thread(target=hammer)
sender.start()
children = []
for i in range(4):
    time.sleep(0.05)
    pid = os.fork()
    if pid == 0:
        inherited = service.metrics()
        sent = sum(1 for _ in range(20) if service.send("child.event", {"i": i}))
        report = service.flush(10)
        metrics = service.metrics()
        final = service.destroy(5)
        with open(os.path.join(out, f"child-{i}.json"), "w") as f:
            json.dump({"inherited": inherited, "sent": sent, "metrics": metrics,
                       "threads": threading.active_count(), "done": final.done}, f)
        os._exit(0 if report.done else 3)
    children.append(pid)
stop.set()
sender.join()
report = service.flush(10)
metrics = service.metrics()
service.destroy(5)
statuses = []
deadline = time.monotonic() + 15
for pid in children:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            statuses.append(os.waitstatus_to_exitcode(status))
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            statuses.append("deadlock")
            break
        time.sleep(0.01)
print(json.dumps({"parent": metrics, "done": report.done, "children": statuses}))
"""


def test_fork_after_bootstrap_sends_nothing_twice_and_never_deadlocks(
    storage_url: str, tmp_path: Any
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, storage_url, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["children"] == [0, 0, 0, 0], outcome
    parent = outcome["parent"]
    assert outcome["done"] and parent["pending"] == 0
    assert parent["stored"] == parent["queued"] and parent["failed"] == 0
    stored = parent["stored"]
    for i in range(4):
        with open(tmp_path / f"child-{i}.json") as f:
            child = json.load(f)
        metrics = child["metrics"]
        assert child["sent"] == metrics["queued"] == metrics["stored"] == 20, child
        assert child["inherited"]["queued"] == 0, "counters start from zero in the child"
        # Whatever the parent had queued or in flight at the fork is dropped in the child.
        assert metrics["dropped:forked"] == child["inherited"].get("dropped:forked", 0)
        assert child["done"] and child["threads"] == 1
        stored += metrics["stored"]
    # Every event was stored exactly once: the records (keyed by event id) are the sum of
    # what each process stored; a child resending the parent's queue would store more.
    assert count_records(storage_url) == stored
    assert stored == parent["stored"] + 80


UNSAFE_FORK_SCRIPT = """
import json, os, sys
from brickrun.telemetry import _service
from brickrun.telemetry._service import TelemetryService

_service.FORK_PAUSE_S = 0.0  # the store "stays busy": no time to park before the fork
service = TelemetryService(database_url=sys.argv[1])
service.register()
service.bootstrap()
service.send("parent.event")
service.flush(10)  # the worker now holds an open Runtime (and SQLite connection)
pid = os.fork()
if pid == 0:
    sent = service.send("child.event")
    print(json.dumps({"state": service.state.name, "sent": sent, "metrics": service.metrics(),
                      "register": service.register()}), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
service.send("parent.after")
service.flush(10)
print(json.dumps({"parent": service.metrics()}), flush=True)
service.destroy()
"""


def test_a_child_forked_mid_sqlite_write_does_not_record(tmp_path: Any, sqlite_url: str) -> None:
    """If the SQLite store could not be parked in time, the child must not open it: its sends
    are dropped as ``fork_unsafe``, and re-registering does not bring the danger back."""
    result = subprocess.run(
        [sys.executable, "-c", UNSAFE_FORK_SCRIPT, sqlite_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    child, parent = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    assert (child["state"], child["sent"], child["register"]) == ("FORK_UNSAFE", None, False)
    assert child["metrics"]["dropped:fork_unsafe"] == 1
    assert parent["parent"]["stored"] == 2, "the parent goes on"
    assert count_records(sqlite_url) == 2


EXIT_SCRIPT = """
import atexit, json, sys, time
state = {}

def report():  # registered before brickrun's exit hook, so it runs after it
    elapsed = time.monotonic() - state["end"]
    print(json.dumps({"exit_s": elapsed, "metrics": state["service"].metrics()}), flush=True)

atexit.register(report)
from brickrun.telemetry._service import TelemetryService

service = TelemetryService(database_url=sys.argv[1], exit_timeout_s=float(sys.argv[2]))
service.register()
service.bootstrap()
for i in range(10):
    service.send("short.lived", {"i": i})
state["service"] = service
state["end"] = time.monotonic()
"""


@pytest.mark.parametrize("store", ["sqlite", "refused", "black_hole"])
def test_a_short_lived_process_exits_within_its_budget(
    store: str, sqlite_url: str, request: pytest.FixtureRequest
) -> None:
    url = {"sqlite": sqlite_url, "refused": REFUSED}.get(store) or request.getfixturevalue(
        "black_hole"
    )
    budget = 1.0
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, url, str(budget)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["exit_s"] < budget + 0.5, outcome  # plus scheduling noise
    metrics = outcome["metrics"]
    # Every event is accounted for: stored, failed or dropped (with its reason).
    assert metrics["queued"] == 10
    assert metrics["stored"] + metrics["failed"] + metrics["dropped"] == 10, metrics
    assert metrics["pending"] == 0
    if store == "sqlite":
        assert metrics["stored"] == 10
        assert count_records(sqlite_url) == 10
    elif store == "refused":
        assert metrics["failed"] == 10
    else:
        assert metrics["dropped:shutdown"] == 10
    assert wall < 15, "interpreter start-up plus the budget"
