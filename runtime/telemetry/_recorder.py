"""The recorder: enqueue now, store in the background, never block or raise into the caller.

``record(event)`` appends to a bounded in-process queue and returns; a writer task in the
runtime's task group stores queued events in their telemetry database, many puts in flight so
the storage layer batches them into few transactions. A full queue drops the *new* event and
counts the drop by reason; nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from functools import partial
from typing import TYPE_CHECKING, Any

from ._events import DEFAULT_TELEMETRY_DATABASE, TelemetryEvent, telemetry_disabled

if TYPE_CHECKING:
    from ._privacy import PrivacySettings


def filter_event(data: dict[str, Any], settings: PrivacySettings) -> dict[str, Any]:
    from ._privacy import filter_event as apply

    return apply(data, settings)


if TYPE_CHECKING:
    from .._runtime import Runtime

__all__ = ["TelemetryRecorder"]

log = logging.getLogger("brickrun.telemetry")


class TelemetryRecorder:
    """Per-runtime recorder of telemetry events.

    ``counters``: ``queued``, ``stored``, ``failed`` and ``dropped:<reason>`` (``queue_full``,
    ``disabled``). ``database`` is the default telemetry database id. ``outbox``: queue every
    stored event for export in the same transaction (on when an export destination is
    configured: queued rows are kept by retention until exported). ``privacy``: with
    ``strict`` settings, events are privacy-filtered before they are stored.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        database: str = DEFAULT_TELEMETRY_DATABASE,
        max_queue: int = 100_000,
        outbox: bool = False,
        privacy: PrivacySettings | None = None,
    ) -> None:
        self.runtime = runtime
        self.outbox = outbox
        self.privacy = privacy
        self.database = database
        self.max_queue = max_queue
        self.counters: Counter[str] = Counter()
        self._queue: deque[tuple[str, TelemetryEvent]] = deque()
        self._writer_running = False
        self._in_flight = 0

    @property
    def pending(self) -> int:
        """Events accepted but not yet stored (queued or being written)."""
        return len(self._queue) + self._in_flight

    def record(self, event: TelemetryEvent, *, database: str | None = None) -> bool:
        """Queue ``event`` for storing; True when accepted. Never blocks, never raises."""
        try:
            if telemetry_disabled():
                self.counters["dropped:disabled"] += 1
                return False
            if len(self._queue) >= self.max_queue:
                self.counters["dropped:queue_full"] += 1
                log.warning("telemetry queue full (%d); dropped event %s", self.max_queue, event.id)
                return False
            self._queue.append((database or self.database, event))
            self.counters["queued"] += 1
            self._ensure_writer()
            return True
        except Exception:  # recording must never break the caller
            self.counters["dropped:recorder_error"] += 1
            log.exception("telemetry recorder failed to queue an event")
            return False

    def _ensure_writer(self) -> None:
        if self._writer_running:
            return  # the running writer drains the queue before it stops
        self._writer_running = True
        self.runtime.submit(self._writer)

    async def _writer(self) -> None:
        """Hand the queued events to the worker pool in chunks, each stored with one
        ``put_many`` (one submission, one wait: per-event puts cost a coroutine and a wake-up
        each, more than storing the event)."""
        try:
            storage = await self.runtime.storage()
        except Exception as exc:
            # The store could not be opened: count every queued event as failed, loudly.
            failed = len(self._queue)
            self._queue.clear()
            self.counters["failed"] += failed
            log.error("telemetry store unavailable; %d event(s) not stored: %s", failed, exc)
            self._writer_running = False
            return
        queue = self._queue
        while queue:
            chunk = [queue.popleft() for _ in range(min(len(queue), _CHUNK))]
            self._in_flight += len(chunk)
            self.runtime.submit(partial(self._store, storage, chunk))
        self._writer_running = False

    async def _store(self, storage: Any, chunk: list[tuple[str, TelemetryEvent]]) -> None:
        items: list[tuple[str, str, dict[str, Any], str, Any]] = []
        events: list[TelemetryEvent] = []
        try:
            strict = self.privacy is not None and self.privacy.strict
            for database, event in chunk:
                try:
                    data = event.to_data()
                    if strict:
                        assert self.privacy is not None
                        data = filter_event(data, self.privacy)
                except Exception as exc:
                    self.counters["failed"] += 1
                    log.error("telemetry event %s (%s) not stored: %s", event.id, event.name, exc)
                    continue
                items.append((database, event.id, data, "replace", event.timestamp))
                events.append(event)
            if not items:
                return
            try:
                outcomes = await storage.put_many(items, outbox=self.outbox)
            except Exception as exc:  # the transaction failed: none of the chunk was stored
                self.counters["failed"] += len(items)
                log.error("%d telemetry event(s) not stored: %s", len(items), exc)
                return
            for event, outcome in zip(events, outcomes, strict=True):
                if outcome is None:
                    self.counters["stored"] += 1
                else:
                    self.counters["failed"] += 1
                    log.error(
                        "telemetry event %s (%s) not stored: %s", event.id, event.name, outcome
                    )
        finally:
            self._in_flight -= len(chunk)


_CHUNK = 500
"""Events per ``put_many``: big enough that per-call costs vanish, small enough that several
chunks are written concurrently (the store coalesces them into few transactions)."""
