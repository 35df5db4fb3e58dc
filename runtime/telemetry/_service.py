"""The telemetry service for non-async hosts (SPEC §8 *Service lifecycle*): Strapi's shape, made
safe for threads, ``fork()`` and interpreter exit.

::

    telemetry = TelemetryService()
    telemetry.register()            # reads configuration; does nothing when disabled
    telemetry.bootstrap()           # starts the worker thread
    telemetry.send("exportStarted", {"rows": 1200, "format": "csv"})
    telemetry.recorder.page_view("https://example.com/reports/42")
    telemetry.flush(timeout=1.0)    # bounded; reports what is still pending
    telemetry.destroy()             # idempotent, bounded, no threads left

**Lifecycle** (:class:`ServiceState`). ``register(config)`` resolves the configuration (the
``config`` mapping, then the constructor's arguments, then ``$BRICKRUN_DB_URL`` and
``$BRICKRUN_TELEMETRY_DATABASE``, then the defaults) and checks the opt-out
(``BRICKRUN_TELEMETRY_DISABLED`` / ``DO_NOT_TRACK``, see ``telemetry_disabled``, or
``config["disabled"]``): when disabled the service stays ``DISABLED`` — no thread, no store, no
queue — and every ``send`` returns ``None``. ``bootstrap()`` starts one daemon worker thread
running an anyio event loop with a ``Runtime`` (its team-database storage and its telemetry
recorder; built when the first event arrives, or at once with an exporter); it is idempotent, a
no-op when disabled, and an error before ``register()``. It first imports, on the caller's
thread, what the worker will need: a ``fork()`` while the worker thread is importing would leave
the child a half-initialised module. ``destroy()`` ends a cycle; ``register()`` may start the
next one.

**Worker.** ``send``/``record`` append to a bounded in-process queue under a lock (no I/O, no
waiting) and wake the worker at most once per batch. The worker hands queued events to the
runtime's recorder, at most ``max_in_flight`` unstored at a time, so a slow store backs up into
the bounded queue instead of into memory. With an ``exporter_factory``, the worker also runs
``exporter_factory(storage).run(stop)`` as a background task on the Runtime's opened store (see
:class:`ExporterLoop`); the exporter is rebuilt whenever the worker reopens its Runtime (after a
``fork()``), so it must keep its state in the store (the outbox), not in memory.

**Loss policy** — every event that is not stored is counted under exactly one reason:

- ``dropped:queue_full``: the queue held ``max_queue`` events (the *new* event is dropped);
- ``dropped:disabled``: telemetry is disabled (at ``register()``, or later by the environment);
- ``dropped:not_registered`` / ``dropped:destroyed``: sent before ``register()`` / after
  ``destroy()`` (never queued forever);
- ``dropped:invalid``, ``dropped:size``, ``dropped:error``: refused by the recorder (see
  ``Recorder``);
- ``dropped:forked``: in a child process after ``fork()``, the copies of the parent's queued and
  in-flight events (the parent stores them; the child never sends them twice);
- ``dropped:fork_unsafe``: in a child forked while its SQLite store stayed busy (see below);
- ``dropped:shutdown``: still queued or in flight when ``destroy()``/the exit budget ran out
  (an in-flight one may have reached the store just before);
- ``failed``: the store refused or could not be reached (the team database is down, a record
  is too large, ...): the event is not retried and not spooled; the log line says how many and
  why, never what.

**Self-metrics** (:meth:`TelemetryService.metrics`): ``queued`` (accepted), ``stored``,
``exported`` (from the exporter's ``metrics()``), ``failed``, ``dropped`` (total) and
``dropped:<reason>``, ``pending`` (queued + in flight now). Counts are cumulative over the
service's cycles, and restart from zero in a forked child.

**fork()**: module-level ``os.register_at_fork`` hooks. Before the fork, a worker writing to
SQLite *parks*: it stops handing events to the store, waits (at most ``FORK_PAUSE_S``, 1 s) for
what it handed to commit, and closes its ``Runtime`` — so the child inherits no SQLite
connection. (SQLite keeps per-process lock bookkeeping; a child that inherits an open
connection, even one it never touches, can find the database locked or lose its own writes.)
The parent reopens on its next event. Should the store stay busy past that second, the child
does not record at all: its sends are dropped as ``dropped:fork_unsafe``. In the child, every
live service is reset: a new lock (the parent's may have been held by a thread that does not
exist in the child), an empty queue (the dropped copies counted as ``dropped:forked``), no
worker. The parent's worker, event loop and any PostgreSQL connections are never touched in
the child: they are kept referenced, so not even their finalizers run. A service that was
bootstrapped starts a fresh worker on its next ``send`` or ``bootstrap``.

**Exit**: a module-level ``atexit`` hook flushes every live service within one shared budget
(the largest ``exit_timeout_s``, default 2 s), then destroys them. The worker is a daemon thread,
so a store that hangs cannot hold the interpreter past the budget; what is left is counted as
``dropped:shutdown``. Exit is best effort by design; only the team database is durable.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import enum
import logging
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

import anyio
import anyio.lowlevel

from ..errors import BrickrunError
from ._api import Recorder
from ._events import DEFAULT_TELEMETRY_DATABASE, TelemetryEvent, telemetry_disabled

if TYPE_CHECKING:
    from .._clock import Clock
    from .._host import Host
    from .._runtime import Runtime
    from ..storage import StorageBackend

__all__ = [
    "ENV_TELEMETRY_DATABASE",
    "ExporterLoop",
    "PendingReport",
    "ServiceState",
    "TelemetryService",
    "TelemetryServiceConfig",
    "disabled_reason",
]

log = logging.getLogger("brickrun.telemetry")

ENV_DB_URL = "BRICKRUN_DB_URL"
ENV_TELEMETRY_DATABASE = "BRICKRUN_TELEMETRY_DATABASE"
_OPT_OUT = ("BRICKRUN_TELEMETRY_DISABLED", "DO_NOT_TRACK")


def disabled_reason(
    environ: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None
) -> str | None:
    """Why telemetry is off (``None`` when it is on): the opt-out variable that is set (its
    name, never its value), or ``disabled`` in ``config``."""
    if config is not None and config.get("disabled"):
        return "disabled by configuration"
    env = os.environ if environ is None else environ
    for variable in _OPT_OUT:
        if telemetry_disabled({variable: env.get(variable, "")}):
            return f"{variable} is set"
    return None


class ServiceState(enum.Enum):
    """Where a :class:`TelemetryService` is in its lifecycle."""

    NEW = "new (register() not called)"
    DISABLED = "disabled"
    REGISTERED = "registered (not bootstrapped)"
    RUNNING = "running"
    DESTROYED = "destroyed"
    FORK_UNSAFE = "forked while the SQLite store was mid-transaction (not recording)"


class TelemetryServiceConfig(TypedDict, total=False):
    """What ``register(config)`` accepts; every key is optional."""

    database_url: str | None
    """Team-database URL (``sqlite:///...``, ``postgresql://...``); default ``$BRICKRUN_DB_URL``,
    else the user's default SQLite file."""
    database: str
    """Telemetry database id; default ``$BRICKRUN_TELEMETRY_DATABASE``, else
    ``brickrun-telemetry``."""
    disabled: bool
    """Turn telemetry off whatever the environment says."""
    max_queue: int
    """Events the in-process queue holds before new ones are dropped (default 10,000)."""
    max_in_flight: int
    """Events handed to the store and not yet stored, at most (default 1,000)."""
    exit_timeout_s: float
    """Budget in seconds of the flush and destroy at interpreter exit (default 2)."""


class ExporterLoop(Protocol):
    """What ``exporter_factory(storage)`` returns: the export side of the worker. The
    outbox exporter (``Exporter`` in ``_export``) fits as it is.

    ``run(stop)`` exports until ``stop`` (an ``anyio.Event``) is set, then returns promptly,
    handing back what it holds; it is cancelled if it has not returned by the deadline of a
    ``destroy()`` (or within ``FORK_PAUSE_S`` before a ``fork()``). Optional:
    ``async flush(timeout)`` exports what is due now within ``timeout`` seconds
    (``TelemetryService.flush`` calls it once the queue is stored), and ``metrics()`` returns
    counters (``exported``, ``dead_letter``, ...) merged into the service's; it is called from
    other threads and must only read.
    """

    async def run(self, stop: anyio.Event) -> object: ...


ExporterFactory = Callable[["StorageBackend"], ExporterLoop]
"""Builds the exporter for an opened team-database backend (the worker's ``Runtime``'s)."""


@dataclass(frozen=True)
class PendingReport:
    """What ``flush``/``destroy`` leave behind.

    ``queued``: events in the in-process queue; ``in_flight``: handed to the store but not yet
    stored or failed; ``done``: nothing pending (and, after ``destroy``, the worker thread
    joined); ``worker_alive``: the worker thread still runs; ``counters``: the self-metrics.
    """

    done: bool
    queued: int
    in_flight: int
    worker_alive: bool
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return self.queued + self.in_flight


# Live services, for the fork and exit hooks (weak: a forgotten service can be collected).
_LIVE: weakref.WeakSet[TelemetryService] = weakref.WeakSet()
# In a forked child: the parent's workers (threads, loops, connections), kept referenced so that
# nothing in the child ever finalises — closes, flushes — what belongs to the parent.
_ORPHANS: list[_Worker] = []


class TelemetryService:
    """Telemetry for a non-async host: ``register`` → ``bootstrap`` → ``send``/``recorder`` →
    ``flush`` → ``destroy`` (see the module docstring for the contracts and the loss policy).

    Constructor arguments are the defaults that ``register(config)`` may override.
    ``host``/``clock`` give the recorder's events their user, session, page and time.
    ``exporter_factory(storage)`` builds an :class:`ExporterLoop` run inside the worker.
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        database: str | None = None,
        host: Host | None = None,
        clock: Clock | None = None,
        max_queue: int = 10_000,
        max_in_flight: int = 1_000,
        exit_timeout_s: float = 2.0,
        exporter_factory: ExporterFactory | None = None,
    ) -> None:
        self.host = host
        self.clock = clock
        self._defaults: TelemetryServiceConfig = {
            "database_url": database_url,
            "max_queue": max_queue,
            "max_in_flight": max_in_flight,
            "exit_timeout_s": exit_timeout_s,
        }
        if database is not None:
            self._defaults["database"] = database
        self.database_url: str | None = database_url
        self.database: str = database or DEFAULT_TELEMETRY_DATABASE
        self.max_queue = max_queue
        self.max_in_flight = max_in_flight
        self.exit_timeout_s = exit_timeout_s
        self.disabled_reason: str | None = None
        self._exporter_factory = exporter_factory
        self._lock = threading.Lock()
        self._state = ServiceState.NEW
        self._queue: deque[TelemetryEvent] = deque()
        self._counters: Counter[str] = Counter()
        self._folded: Counter[str] = Counter()
        self._worker: _Worker | None = None
        self._start_on_send = False
        self._fork_unsafe = False
        self._warned: set[str] = set()
        self.recorder = Recorder(self)
        """Typed helpers (``record``, ``page_view``, ``action``, ...) that send through here."""
        _LIVE.add(self)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def state(self) -> ServiceState:
        return self._state

    @property
    def enabled(self) -> bool:
        """Registered and not disabled (events are accepted)."""
        return self._state in (ServiceState.REGISTERED, ServiceState.RUNNING)

    def register(self, config: Mapping[str, Any] | None = None) -> bool:
        """Read the configuration and the opt-out; returns whether telemetry is enabled.

        Idempotent while registered. Disabled → nothing is started and ``send`` returns
        ``None``. A configuration value of the wrong type raises ``ValueError``.
        """
        with self._lock:
            if self._state in (ServiceState.REGISTERED, ServiceState.RUNNING):
                return True
            if self._fork_unsafe:
                self._state = ServiceState.FORK_UNSAFE
                return False
            merged: dict[str, Any] = dict(self._defaults)
            merged.update(config or {})
            url = merged.get("database_url") or os.environ.get(ENV_DB_URL) or None
            database = (
                merged.get("database")
                or os.environ.get(ENV_TELEMETRY_DATABASE)
                or DEFAULT_TELEMETRY_DATABASE
            )
            self.database_url, self.database = url, database
            self.max_queue = _positive_int(merged, "max_queue")
            self.max_in_flight = _positive_int(merged, "max_in_flight")
            self.exit_timeout_s = _seconds(merged, "exit_timeout_s")
            self.disabled_reason = disabled_reason(config=merged)
            if self.disabled_reason is not None:
                self._state = ServiceState.DISABLED
                log.info("telemetry disabled: %s", self.disabled_reason)
                return False
            self._state = ServiceState.REGISTERED
            return True

    def bootstrap(self) -> None:
        """Start the worker thread (idempotent; a no-op when disabled).

        Raises ``BrickrunError`` before ``register()`` (or after ``destroy()``): a host that
        skipped ``register()`` should find out at startup, not by missing data.
        """
        with self._lock:
            if self._state in (ServiceState.DISABLED, ServiceState.FORK_UNSAFE):
                return
            if self._state in (ServiceState.NEW, ServiceState.DESTROYED):
                raise BrickrunError(
                    f"TelemetryService.bootstrap() needs register() first (the service is "
                    f"{self._state.value})"
                )
            self._state = ServiceState.RUNNING
            worker = self._new_worker_locked()
        if worker is not None:
            _preload(worker.database_url)
            worker.start()

    def send(self, event_name: str, payload: Mapping[str, Any] | None = None) -> str | None:
        """Queue the custom event ``event_name``; ``payload``'s finite numbers and booleans
        become its exportable ``metadata``, everything else its ``private_metadata``.

        Thread-safe; returns the event id, or ``None`` when it was dropped (counted). Never
        blocks beyond the enqueue and never raises.
        """
        return self.recorder.event(event_name, payload)

    def record(self, event: TelemetryEvent) -> bool:
        """Queue a built event (the :class:`TelemetrySink` interface); ``True`` if accepted.
        Thread-safe; never blocks beyond a short lock, never raises."""
        try:
            start: _Worker | None = None
            wake: _Worker | None = None
            reason: str | None = None
            with self._lock:
                state = self._state
                if state is ServiceState.RUNNING or state is ServiceState.REGISTERED:
                    if len(self._queue) >= self.max_queue:
                        reason = "queue_full"
                    else:
                        self._queue.append(event)
                        self._counters["queued"] += 1
                        worker = self._worker
                        if state is ServiceState.RUNNING:
                            if worker is None:
                                if self._start_on_send:  # a forked child's first send
                                    start = self._new_worker_locked()
                            elif not worker.wake_requested and worker.loop is not None:
                                worker.wake_requested = True
                                wake = worker
                else:
                    reason = _STATE_DROP[state]
                if reason is not None:
                    self._counters[f"dropped:{reason}"] += 1
            if start is not None:
                start.start()
            elif wake is not None:
                wake.wake_threadsafe()
            if reason is not None:
                self._log_drop(reason)
                return False
            return True
        except Exception:  # recording must never break the caller
            self.count_dropped("error")
            log.exception("telemetry service failed to queue an event")
            return False

    def count_dropped(self, reason: str) -> None:
        """Count an event dropped before it reached the queue (the recorder's refusals)."""
        with self._lock:
            self._counters[f"dropped:{reason}"] += 1

    def flush(self, timeout: float = 5.0) -> PendingReport:
        """Wait at most ``timeout`` seconds until every accepted event is stored (or failed),
        then let the exporter (if any, and if it has ``flush``) export within what is left.

        Returns at once when there is nothing to wait for: no worker (not bootstrapped,
        disabled, destroyed, or the worker died). Never raises.
        """
        end = time.monotonic() + _timeout(timeout)
        worker = self._worker
        if worker is not None:
            worker.wake_threadsafe()
        delay = 0.001
        report = self._report()
        while report.pending and report.worker_alive:
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.02)
            report = self._report()
        if not report.pending and worker is not None and report.worker_alive:
            exported = worker.flush_exporter(end - time.monotonic())
            report = self._report(done=exported)
        return report

    def destroy(self, timeout: float = 2.0) -> PendingReport:
        """Stop: store what is queued while ``timeout`` seconds allow, stop the exporter, close
        the store, join the worker and its helper threads. Idempotent (also before
        ``register()``), bounded by ``timeout`` (plus scheduling noise), never raises.

        What could not be stored in time is counted as ``dropped:shutdown`` and reported.
        Afterwards ``send`` drops with ``dropped:destroyed`` until ``register()`` again.
        """
        try:
            return self._destroy(_timeout(timeout))
        except Exception:  # a bug here must not break the host's shutdown
            log.exception("telemetry service failed to stop cleanly")
            return PendingReport(False, 0, 0, False, self.metrics())

    def _destroy(self, timeout: float) -> PendingReport:
        end = time.monotonic() + timeout
        with self._lock:
            self._state = ServiceState.DESTROYED
            self._start_on_send = False
            worker = self._worker
            if worker is not None and worker.stop_at is None:
                # Leave a little of the budget for the loop to close and the thread to end.
                worker.stop_at = end - min(0.25, timeout * 0.2)
                worker.exit_by = end
        alive = False
        if worker is not None:
            worker.wake_threadsafe()
            alive = worker.join(end)
            if alive:  # stuck past its deadline (a blocking call): cancel outright, briefly
                worker.cancel_threadsafe()
                alive = worker.join(time.monotonic() + 0.05)
        queued = in_flight = 0
        with self._lock:
            queued = len(self._queue)
            self._queue.clear()
            if worker is not None:
                if not worker.accounted:  # still running past its deadline: count it now
                    worker.lost = worker.in_flight()
                    worker.accounted = True
                    self._counters["dropped:shutdown"] += worker.lost
                in_flight = worker.lost
            lost = queued + in_flight
            if queued:
                self._counters["dropped:shutdown"] += queued
            if worker is self._worker:
                self._worker = None
        if lost:
            log.warning("telemetry stopped with %d event(s) not stored (dropped:shutdown)", lost)
        return PendingReport(
            done=not lost and not alive,
            queued=queued,
            in_flight=in_flight,
            worker_alive=alive,
            counters=self.metrics(),
        )

    # -- self-metrics ----------------------------------------------------------------------------

    def metrics(self) -> dict[str, int]:
        """``queued``, ``stored``, ``exported``, ``failed``, ``dropped`` (total),
        ``dropped:<reason>`` and ``pending``; cumulative over cycles. Thread-safe."""
        with self._lock:
            totals = Counter(self._counters)
            totals.update(self._folded)
            worker = self._worker
            live = worker is not None and not worker.folded
        if worker is not None and live:
            # Read after the snapshot: a worker folding meanwhile is still counted once (its
            # final numbers stay readable here and are not in the snapshot).
            totals.update(worker.live_counters())
        report = self._report()
        out = {"queued": 0, "stored": 0, "exported": 0, "failed": 0}
        out.update(totals)
        out["dropped"] = sum(v for k, v in totals.items() if k.startswith("dropped:"))
        out["pending"] = report.pending
        return out

    def _report(self, *, done: bool = True) -> PendingReport:
        worker = self._worker
        # The worker's finished count first, then the queue and what it took, under the lock:
        # an event is always in one of them, so pending is never under-reported.
        finished = worker.finished_count() if worker is not None else 0
        with self._lock:
            queued = len(self._queue)
            taken = worker.taken if worker is not None and not worker.accounted else finished
        in_flight = max(0, taken - finished)
        alive = worker is not None and worker.running()
        return PendingReport(
            done=done and not (queued or in_flight), queued=queued, in_flight=in_flight,
            worker_alive=alive,
        )  # fmt: skip

    # -- internals -------------------------------------------------------------------------------

    def _new_worker_locked(self) -> _Worker | None:
        """A new worker unless one is starting or running (call with the lock held)."""
        if self._worker is not None and not self._worker.finished.is_set():
            return None
        self._start_on_send = False
        self._worker = _Worker(self)
        return self._worker

    def _worker_finished(self, worker: _Worker) -> None:
        """Fold a finished worker's counters into the totals; count what it left unstored."""
        final = worker.live_counters()
        lost = 0
        with self._lock:
            self._folded.update(final)
            worker.folded = True
            if not worker.accounted:
                lost = worker.lost = worker.in_flight()
                worker.accounted = True
                if lost:
                    self._counters["dropped:shutdown"] += lost
        if lost:
            log.warning("telemetry worker stopped with %d event(s) not stored", lost)

    def _park_for_fork(self) -> None:
        """Before a fork: a worker writing to SQLite stores what it was handed and closes its
        Runtime (so the store's connections), within ``FORK_PAUSE_S``."""
        worker = self._worker
        if worker is None or not worker.sqlite or not worker.running():
            return
        with self._lock:
            worker.park_requested = True
            if worker._gen[2] is not None:
                worker.parked.clear()  # a Runtime is open: wait for the worker to close it
        worker.wake_threadsafe()
        if not worker.parked.wait(FORK_PAUSE_S):
            log.warning(
                "telemetry: fork() while the SQLite store was busy for over %.1f s; the child "
                "process will not record (dropped:fork_unsafe)",
                FORK_PAUSE_S,
            )

    def _resume_after_fork(self) -> None:
        worker = self._worker
        if worker is not None and worker.park_requested:
            with self._lock:
                worker.park_requested = False
            worker.wake_threadsafe()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        lost = len(self._queue)
        self._queue = deque()
        worker = self._worker
        if worker is not None:
            if not worker.accounted:
                lost += worker.in_flight()
            if worker.sqlite and worker.running() and not worker.parked.is_set():
                # SQLite's lock bookkeeping came over with an open connection: this process
                # must not open that database (it could find it locked, or lose writes).
                self._state = ServiceState.FORK_UNSAFE
                self._fork_unsafe = True
            _ORPHANS.append(worker)
            self._worker = None
        self._counters = Counter()
        self._folded = Counter()
        if lost:
            self._counters["dropped:forked"] = lost
        self._start_on_send = self._state is ServiceState.RUNNING
        self._warned = set()
        self.recorder.counters.clear()

    def _at_exit(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if self._state is ServiceState.RUNNING:
            self.flush(max(0.0, left - min(0.25, left * 0.25)))
        self.destroy(max(0.0, deadline - time.monotonic()))

    def _log_drop(self, reason: str) -> None:
        first = reason not in self._warned
        self._warned.add(reason)
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "telemetry event dropped: %s (counted as dropped:%s)",
            _DROP_TEXT.get(reason, reason),
            reason,
        )

    def __repr__(self) -> str:
        return f"<TelemetryService {self.database} ({self._state.name.lower()})>"


_STATE_DROP = {
    ServiceState.FORK_UNSAFE: "fork_unsafe",
    ServiceState.NEW: "not_registered",
    ServiceState.DISABLED: "disabled",
    ServiceState.DESTROYED: "destroyed",
}
_DROP_TEXT = {
    "queue_full": "the telemetry queue is full",
    "not_registered": "send() before register()",
    "disabled": "telemetry is disabled",
    "destroyed": "send() after destroy()",
    "fork_unsafe": "this process was forked while the SQLite store was mid-transaction",
}


class _Abandon(Exception):
    """The stop deadline passed before the store caught up: close without waiting more."""


class _Worker:
    """One worker thread with its event loop; one per bootstrap (and per forked child).

    The worker serves with a ``Runtime`` while there is work and no fork is pending; before a
    fork of a process writing to SQLite it *parks*: stores what it was handed, closes the
    Runtime (and the store's connections) and waits for the fork to pass. Fields that caller
    threads read or write are guarded by the service lock (``wake_requested``, ``taken``,
    ``stop_at``, ``park_requested``, ``accounted``, ``folded``); ``_gen`` is replaced whole,
    so other threads — and a forked child — read it without a lock.
    """

    def __init__(self, service: TelemetryService) -> None:
        self.service = service
        self.database_url = service.database_url
        self.database = service.database
        self.max_in_flight = service.max_in_flight
        self.exporter_factory = service._exporter_factory
        scheme = (self.database_url or os.environ.get(ENV_DB_URL) or "sqlite:").split(":", 1)[0]
        self.sqlite = scheme.lower() == "sqlite"
        self.thread = threading.Thread(target=self._run, name="brickrun-telemetry", daemon=True)
        self.started = False
        self.finished = threading.Event()
        self.parked = threading.Event()  # set: no Runtime (no store connection) open now
        self.parked.set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake_requested = False
        self.park_requested = False
        self.stop_at: float | None = None  # time.monotonic() deadline, set by destroy()
        self.exit_by: float | None = None
        self.taken = 0
        self.accounted = False
        self.lost = 0  # in flight when it stopped: counted once as dropped:shutdown
        self.folded = False
        # (recorder counters of closed Runtimes, exporter metrics of stopped exporters, the
        # current Runtime, the current exporter)
        self._gen: tuple[dict[str, int], dict[str, int], Runtime | None, Any] = ({}, {}, None, None)
        self._wake: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._task_group: Any = None

    # -- called from other threads -------------------------------------------------------------

    def start(self) -> None:
        try:
            self.thread.start()
            self.started = True
        except RuntimeError as exc:  # e.g. "can't start new thread": telemetry goes quiet
            log.error("telemetry worker could not start: %s", exc)
            self.finished.set()

    def running(self) -> bool:
        return self.started and not self.finished.is_set()

    def join(self, until: float) -> bool:
        """Wait for the thread until ``until`` (monotonic); True if it still runs."""
        if not self.started:
            return False
        self.thread.join(max(0.0, until - time.monotonic()))
        return self.thread.is_alive()

    def wake_threadsafe(self) -> None:
        self._call_soon(self._on_wake)

    def cancel_threadsafe(self) -> None:
        self._call_soon(self._on_cancel)

    def _call_soon(self, callback: Callable[[], None]) -> None:
        loop = self.loop
        if loop is None:
            return  # not started yet: it looks at the queue and stop_at before waiting
        with contextlib.suppress(RuntimeError):  # a closed loop: the worker is finishing anyway
            loop.call_soon_threadsafe(callback)

    def recorder_counters(self) -> dict[str, int]:
        """Recorder counters of every Runtime this worker used, minus ``queued`` (the service
        counts acceptance): ``stored``, ``failed``, ``dropped:<reason>``."""
        past, _, runtime, _ = self._gen
        out = Counter(past)
        if runtime is not None:
            out.update(_snapshot(runtime.telemetry.counters))
        out.pop("queued", None)
        return dict(out)

    def exporter_metrics(self) -> dict[str, int]:
        _, past, _, exporter = self._gen
        out = Counter(past)
        out.update(_exporter_metrics(exporter))
        return dict(out)

    def finished_count(self) -> int:
        """Events the recorders have finished with: stored, failed or dropped."""
        return sum(self.recorder_counters().values())

    def in_flight(self) -> int:
        return max(0, self.taken - self.finished_count())

    def live_counters(self) -> Counter[str]:
        out: Counter[str] = Counter(self.recorder_counters())
        out.update(self.exporter_metrics())
        return out

    def flush_exporter(self, timeout: float) -> bool:
        """Run the exporter's ``flush(timeout)`` on the loop; True when it finished in time
        (or there is nothing to flush)."""
        exporter_flush = getattr(self._gen[3], "flush", None)
        if not callable(exporter_flush) or timeout <= 0:
            return not callable(exporter_flush)
        done = threading.Event()

        async def run() -> None:
            try:
                with anyio.move_on_after(timeout):
                    await exporter_flush(timeout)
            except Exception:
                log.warning("telemetry exporter flush failed", exc_info=True)
            finally:
                done.set()

        def schedule() -> None:
            if self._task_group is None:
                done.set()
            else:
                self._task_group.start_soon(run)

        self._call_soon(schedule)
        return done.wait(timeout)

    # -- the worker thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            anyio.run(self._main, backend="asyncio")
        except BaseException as exc:  # a worker thread must end quietly, counted
            log.error("telemetry worker stopped: %s", type(exc).__name__)
            log.debug("telemetry worker failure", exc_info=True)
        finally:
            try:
                self._join_helpers()
                self.service._worker_finished(self)
            finally:
                self.parked.set()
                self.finished.set()

    def _join_helpers(self) -> None:
        """Join the anyio worker threads of this loop (SQLite calls run in them): they were
        told to stop when the loop ended; waiting here leaves no thread behind a destroy()."""
        loop = self.loop
        if loop is None:
            return
        until = self.exit_by if self.exit_by is not None else time.monotonic() + 1.0
        for thread in threading.enumerate():
            try:
                if (
                    thread is not threading.current_thread()
                    and getattr(thread, "loop", None) is loop
                ):
                    thread.join(max(0.0, until - time.monotonic()))
            except Exception:
                continue

    async def _main(self) -> None:
        with anyio.CancelScope() as scope:
            self._scope = scope
            self._wake = anyio.Event()
            with self.service._lock:
                self.loop = asyncio.get_running_loop()
            with contextlib.suppress(_Abandon):  # the store did not catch up before the deadline
                # Building a Runtime costs ~10 ms (its brick registry): without an exporter to
                # run, wait for an event first, so register/bootstrap/destroy cycles stay cheap.
                while await self._ready(need_event=self.exporter_factory is None):
                    await self._serve()

    async def _ready(self, *, need_event: bool) -> bool:
        """Wait until there is something to serve and no fork is pending (True), or a stop is
        requested with nothing queued (False). While waiting no Runtime is open: ``parked``
        says so."""
        assert self._wake is not None
        while True:
            with self.service._lock:
                self.wake_requested = False
                if self.stop_at is not None:  # store what is queued, within the deadline
                    return bool(self.service._queue)
                parking = self.park_requested
                if not parking and (self.service._queue or not need_event):
                    self.parked.clear()
                    return True
            if parking:
                self.parked.set()
            await self._wake.wait()
            self._wake = anyio.Event()

    async def _serve(self) -> None:
        """One Runtime's life: until a stop (draining within the deadline) or a park."""
        from .._runtime import Runtime  # preloaded by bootstrap(); see _preload

        async with Runtime(
            database_url=self.database_url,
            telemetry_database=self.database,
            entry_points=False,
        ) as runtime:
            runtime.telemetry.max_queue = self.max_in_flight
            past_recorder, past_exporter, _, _ = self._gen
            self._gen = (past_recorder, past_exporter, runtime, None)
            stop_export, exported = anyio.Event(), anyio.Event()
            try:
                async with anyio.create_task_group() as task_group:
                    self._task_group = task_group
                    if self.exporter_factory is not None:
                        task_group.start_soon(self._export, runtime, stop_export, exported)
                    else:
                        exported.set()
                    await self._pump(runtime)
                    # Stopping or parking: the exporter hands back what it holds meanwhile.
                    stop_export.set()
                    drained = True
                    if self.stop_at is not None:
                        drained = await self._drain(runtime)
                    with anyio.move_on_after(self._time_left()):
                        await exported.wait()
                    task_group.cancel_scope.cancel()
            finally:
                self._task_group = None
            if not drained:
                raise _Abandon  # the runtime then closes without draining again
        # Closed: its counters are final. Fold them; a reader sees either tuple, never both.
        exporter = self._gen[3]
        recorder = Counter(past_recorder)
        recorder.update(_snapshot(runtime.telemetry.counters))
        export_totals = Counter(past_exporter)
        export_totals.update(_exporter_metrics(exporter))
        self._gen = (dict(recorder), dict(export_totals), None, None)

    def _time_left(self) -> float:
        """Seconds left for closing: before the stop deadline, or the fork pause."""
        if self.stop_at is not None:
            return max(0.0, self.stop_at - time.monotonic())
        return FORK_PAUSE_S / 2

    async def _export(self, runtime: Runtime, stop: anyio.Event, done: anyio.Event) -> None:
        """Open the store, build the exporter and run it until ``stop``; failures stop the
        export only (storing goes on), logged without payloads."""
        assert self.exporter_factory is not None
        try:
            storage = await runtime.storage()
            exporter = self.exporter_factory(storage)
            recorder_past, exporter_past, current, _ = self._gen
            self._gen = (recorder_past, exporter_past, current, exporter)
            await exporter.run(stop)
        except Exception as exc:
            log.error("telemetry exporter stopped: %s", type(exc).__name__)
            log.debug("telemetry exporter failure", exc_info=True)
        finally:
            done.set()

    async def _pump(self, runtime: Runtime) -> None:
        """Move events from the service queue to the runtime's recorder; return on a stop
        (queue empty) or a park (what was handed is finished)."""
        service, recorder = self.service, runtime.telemetry
        while True:
            finished = self.finished_count()
            with service._lock:
                self.wake_requested = False
                stopping = self.stop_at is not None
                parking = self.park_requested and not stopping
                room = 0 if parking else self.max_in_flight - (self.taken - finished)
                queue = service._queue
                count = min(room, len(queue)) if room > 0 else 0
                batch = [queue.popleft() for _ in range(count)]
                self.taken += count
                left = len(queue)
            if stopping:
                self._arm_deadline()
            for event in batch:
                recorder.record(event)
            if stopping and not left:
                return
            if parking:
                if not self.taken - finished:
                    return
                await anyio.sleep(0.001)  # let the store commit what it has
            elif left:
                # The store is behind: give it a moment; the bounded queue absorbs the rest.
                await anyio.sleep(0.005)
            elif batch:
                await anyio.lowlevel.checkpoint()
            else:
                assert self._wake is not None
                await self._wake.wait()
                self._wake = anyio.Event()

    async def _drain(self, runtime: Runtime) -> bool:
        """Let the store finish what it was handed, until shortly before the stop deadline."""
        assert self.stop_at is not None
        grace = self.stop_at - time.monotonic()
        with anyio.move_on_after(max(0.0, grace)):
            await runtime.drain()
            return True
        return False

    def _arm_deadline(self) -> None:
        """Past ``exit_by`` everything in the loop is cancelled, closing included."""
        if self._scope is not None and self.exit_by is not None:
            left = self.exit_by - time.monotonic() - 0.02
            deadline = anyio.current_time() + max(0.0, left)
            if deadline < self._scope.deadline:
                self._scope.deadline = deadline

    def _on_wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _on_cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()


def _exporter_metrics(exporter: Any) -> dict[str, int]:
    metrics = getattr(exporter, "metrics", None)
    if not callable(metrics):
        return {}
    try:
        return {str(k): int(v) for k, v in dict(metrics()).items()}
    except Exception:
        log.debug("telemetry exporter metrics unavailable", exc_info=True)
        return {}


# -- helpers and process hooks ---------------------------------------------------------------------


def _snapshot(counter: Counter[str]) -> dict[str, int]:
    """A copy of a counter another thread updates (a key added mid-copy: try again)."""
    for _ in range(5):
        try:
            return dict(counter)
        except RuntimeError:
            continue
    return {}


def _timeout(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 0.0
    return seconds if seconds > 0 else 0.0


def _positive_int(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"telemetry {key} must be a positive integer, got {value!r}")
    return value


def _seconds(config: Mapping[str, Any], key: str) -> float:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"telemetry {key} must be a number of seconds >= 0, got {value!r}")
    return float(value)


_PRELOADED: set[str] = set()


def _preload(database_url: str | None) -> None:
    """Import, on the caller's thread, what the worker would otherwise import lazily.

    A ``fork()`` while the worker thread is in the middle of an import leaves the child a
    half-initialised module that fails every later import of it; preloaded, the worker never
    imports. Building one ``Runtime`` imports whatever its constructor needs (the built-in
    bricks, the shipped definitions); the storage module is chosen by the URL's scheme.
    """
    import importlib

    scheme = (database_url or os.environ.get(ENV_DB_URL) or "sqlite:").split(":", 1)[0]
    backend = "_postgres" if scheme.lower() in ("postgresql", "postgres") else "_sqlite"
    try:
        if "runtime" not in _PRELOADED:
            importlib.import_module("anyio._backends._asyncio")
            from .._runtime import Runtime

            Runtime(entry_points=False, database_url="sqlite:///:memory:")
            _PRELOADED.add("runtime")
        if backend not in _PRELOADED:
            importlib.import_module(f"brickrun.storage.{backend}")
            _PRELOADED.add(backend)
    except Exception:  # the worker imports lazily then, and reports what fails
        log.debug("telemetry preload failed", exc_info=True)


# How long fork() may wait for the worker's SQLite writes in flight to commit.
FORK_PAUSE_S = 1.0


def _before_fork() -> None:
    """Quiesce SQLite writes: SQLite keeps per-process lock bookkeeping, and a child that
    inherits it from a transaction in flight finds the database locked forever (the inherited
    connection never commits). PostgreSQL connections are sockets: nothing to wait for."""
    for service in list(_LIVE):
        with contextlib.suppress(Exception):
            service._park_for_fork()


def _after_fork_in_parent() -> None:
    for service in list(_LIVE):
        with contextlib.suppress(Exception):
            service._resume_after_fork()


def _after_fork_in_child() -> None:
    for service in list(_LIVE):
        with contextlib.suppress(Exception):  # never break the child over telemetry
            service._after_fork_in_child()


def _exit_all() -> None:
    services = [s for s in list(_LIVE) if s.enabled]
    if not services:
        return
    deadline = time.monotonic() + max(s.exit_timeout_s for s in services)
    for service in services:
        with contextlib.suppress(Exception):  # exit goes on whatever telemetry does
            service._at_exit(deadline)


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
atexit.register(_exit_all)
