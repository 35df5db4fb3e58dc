"""The exporter: from the storage outbox to an OTLP/HTTP collector or a JSON Lines file.

An :class:`Exporter` claims due outbox rows (:meth:`StorageBackend.outbox_claim`), runs each
record through the privacy filter, encodes it with its sink, sends batches bounded by
``max_batch`` records and ``max_bytes`` encoded bytes, and records each row's outcome in the
store: acknowledged (the row is deleted), retried later, or dead with a reason.

**At-least-once, here**: a row leaves the outbox only after the sink confirmed its batch (a
2xx without rejections, or an fsync'd file). A crash or kill anywhere before that — mid-request,
after the collector stored the batch but before its reply arrived (a lost acknowledgement), or
between the reply and the acknowledgement's commit — leaves the row queued; it is sent again
once its lease ends (``lease_seconds``). So a collector may receive a record more than once,
always byte-identical and with the same ``event.id`` (the event UUID fixed at record time), on
which it can deduplicate; it never silently misses one. Rows whose records are deleted before
they were sent are not sent.

**What is retried** (the OTLP/HTTP rules): HTTP 429, 502, 503 and 504, and network failures
(connection refused or reset, a timeout, a connection dropped before the reply). The exporter
then pauses all sending: for ``Retry-After`` when the reply has one (delay-seconds or an
HTTP-date; capped at ``retry_after_cap``; an unparseable one is ignored), else for an
exponential backoff with full jitter (a uniformly random wait up to ``base_delay * 2**n``,
capped at ``max_delay``, ``n`` counting consecutive failed requests). The batch's rows come due
again when the pause ends.

Quarantine: a row is dead-lettered after ``max_attempts`` attempts. 429, 503 and connection
failures say the collector is busy or unreachable, so they never count against rows. 502, 504,
timeouts and dropped connections may be caused by a record (a collector that crashes on it), so
they count — but only right after a request succeeded: when every request fails, that is an
outage, and an outage never dead-letters anything (rows wait in the outbox, and retention keeps
their records). A batch failing that way is split: its rows go out in halves next time (``n``
counted or uncounted failures: requests of at most ``max_batch >> n`` rows), so a record that
breaks every request it is in ends up alone while the others get through, and then runs out of
attempts as long as other records keep flowing (each of its counted failures follows a success).
A claim whose process died counts as an attempt too, so a row that crashes its exporter is
dead-lettered instead of crash-looping. (:meth:`Exporter.run` holds up to two claims per
lane — one being sent, the next being prepared — so a crash counts an attempt for the rows of
both.)

**What is dead-lettered at once**, with a one-line reason that never holds a payload:

- HTTP 400, 500 and every other status that is not retried (``HTTP <status> <phrase>`` and
  the collector's message, privacy-redacted and shortened);
- HTTP 413: the batch is split in halves and each half sent on its own, down to single
  records; a record refused alone is dead (``HTTP 413 ... even alone``);
- a 2xx whose ``partialSuccess`` rejects records: OTLP does not say which, and must not be
  retried, so **every row of that request** is dead-lettered with the count and the collector's
  ``errorMessage``. Rows it accepted are then delivered *and* dead: nothing is lost, and
  requeueing them (:meth:`StorageBackend.outbox_requeue`) re-sends them with their ids for the
  collector to deduplicate. A ``partialSuccess`` rejecting nothing is a warning in the log;
- a record that encodes to more than ``max_bytes``, that the privacy filter leaves empty, or
  that fails to encode.

**Pipelining** (:meth:`Exporter.run`): while a request is in flight, the next rows are
claimed, filtered and encoded, and the store acknowledges delivered rows in the background
(rows delivered while an acknowledgement runs are acknowledged together in the next). None of
that changes what is sent or when a row leaves the outbox: only after its request was
delivered. When a pause starts, a claim held ahead is handed back unsent, its attempt given
back.

**Deadlines**: every request is bounded by ``request_timeout`` (connect to last byte); a run
stops sending when the lease it holds would end before another request could finish; every
pause and sleep is bounded; :meth:`Exporter.run` stops within ``shutdown_timeout`` of being
asked, handing the rows it holds back to the queue (with their attempt given back).

Logs carry counts, statuses, reasons and database ids — never payloads.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import os
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeGuard

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..errors import StorageError
from ..storage import OutboxItem, StorageBackend
from ._events import validate_name
from ._otlp import LOGS_PATH, encode_log_record, encode_request, parse_partial_success
from ._privacy import PrivacySettings, filter_event, filter_record, redact_value

__all__ = [
    "Delivery",
    "Encoded",
    "ExportReport",
    "Exporter",
    "JsonlSink",
    "OtlpHttpSink",
    "Outcome",
    "Sink",
    "export_payload",
    "parse_retry_after",
]

log = logging.getLogger("brickrun.telemetry.export")

_REQUEST_OVERHEAD = 1024  # bytes of envelope around the records, counted against max_bytes
_RELEASE_GRACE = 2.0  # seconds a cancelled run may take to hand its rows back
_MAX_REASON = 300
_PREPARE_SLICE = 128  # rows prepared between two checkpoints of the event loop


class Outcome(enum.Enum):
    """What a sink reports for one request."""

    DELIVERED = "delivered"
    """Stored by the receiver: acknowledge every row."""
    RETRY = "retry"
    """Not stored, for a reason that may pass: retry later (see :class:`Delivery`)."""
    TOO_LARGE = "too_large"
    """Refused for its size (HTTP 413): split the request."""
    REJECTED = "rejected"
    """Refused for good: dead-letter every row."""
    PARTIAL = "partial"
    """Stored except ``rejected`` records the receiver did not name: dead-letter every row."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A sink's verdict on one request.

    ``reason`` is one line for people and logs (a status and a short message, never a
    payload). For :attr:`Outcome.RETRY`: ``retry_after`` is the receiver's ``Retry-After`` in
    seconds, if any, and ``row_fault`` says whether the failure may be caused by the rows (502,
    504, timeouts, dropped connections) rather than the receiver being busy or unreachable
    (429, 503, connection failures), which never counts against rows.
    """

    outcome: Outcome
    reason: str = ""
    status: int | None = None
    retry_after: float | None = None
    row_fault: bool = False
    rejected: int = 0


@dataclass(slots=True)
class Encoded:
    """One claimed row, privacy-filtered and encoded by a sink, ready to batch."""

    item: OutboxItem
    event_id: str
    data: bytes


@dataclass
class ExportReport:
    """What one :meth:`Exporter.run_once` (or a whole :meth:`Exporter.run`) did.

    ``delivered``, ``retried`` and ``dead`` count rows by outcome (``released`` counts rows
    handed back unsent: the run stopped early); ``reasons`` counts dead-letter and retry
    reasons; ``next_wait`` is how long the exporter wants to pause before sending again
    (``None``: no pause).
    """

    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    requests: int = 0
    bytes_sent: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    next_wait: float | None = None

    def add(self, other: ExportReport) -> None:
        """Add ``other``'s counts to this report (``next_wait`` becomes ``other``'s)."""
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.retried += other.retried
        self.dead += other.dead
        self.released += other.released
        self.requests += other.requests
        self.bytes_sent += other.bytes_sent
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count
        self.next_wait = other.next_wait

    def _reason(self, reason: str, count: int) -> None:
        if len(self.reasons) < 100 or reason in self.reasons:
            self.reasons[reason] = self.reasons.get(reason, 0) + count


# --- payloads ---------------------------------------------------------------------------------


def _is_event(data: Any) -> TypeGuard[Mapping[str, Any]]:
    return (
        isinstance(data, Mapping)
        and "id" in data
        and "name" in data
        and "timestamp" in data
        and "email" not in data
        and "event" not in data
    )


def export_payload(record: Mapping[str, Any], privacy: PrivacySettings) -> dict[str, Any]:
    """What leaves of a record: always privacy-filtered, with an ``id`` and a ``name``.

    A telemetry event (``TelemetryEvent.to_data()`` shape) becomes :func:`filter_event`'s
    output. Any other record (e.g. the record brick's ``{url, email, timestamp, event, data}``)
    becomes ``{id, name, timestamp, data}``: ``id`` the record key's keyed hash, ``name`` its
    ``event`` when that is a valid event name (else ``"record"``), ``timestamp`` its own or the
    record's creation time, and ``data`` :func:`filter_record`'s filtered data. ``{}`` when the
    filter could not read it.
    """
    data = record.get("data")
    if _is_event(data):
        return filter_event(data, privacy)
    filtered = filter_record(record, privacy)
    if "id" not in filtered:
        return {}
    body = filtered.get("data")
    name = "record"
    if isinstance(body, Mapping) and isinstance(body.get("event"), str):
        with contextlib.suppress(ValueError):
            name = validate_name(body["event"])
    stamp = body.get("timestamp") if isinstance(body, Mapping) else None
    payload: dict[str, Any] = {"id": filtered["id"], "name": name}
    timestamp = stamp if isinstance(stamp, str) else filtered.get("created_at")
    if timestamp is not None:
        payload["timestamp"] = timestamp
    if body is not None:
        payload["data"] = body
    return payload


# --- sinks ------------------------------------------------------------------------------------


class Sink(ABC):
    """Where exported records go. The exporter calls :meth:`encode` once per claimed record and
    :meth:`send` once per request, one request at a time per lane of :meth:`Exporter.run`.

    A sink never raises from :meth:`send` for a delivery problem: it returns a
    :class:`Delivery`. :meth:`encode` may raise :class:`TypeError`/:class:`ValueError` for a
    record it cannot encode (the row is dead-lettered).
    """

    @abstractmethod
    def encode(self, database: str, payload: Mapping[str, Any], observed: str | None) -> bytes:
        """``payload`` (privacy-filtered) of a record of ``database``, stored at ``observed``."""

    @abstractmethod
    async def send(self, batch: Sequence[Encoded], *, timeout: float) -> Delivery:
        """Deliver ``batch`` within ``timeout`` seconds (the exporter also enforces it)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook: most sinks hold nothing
        """Release connections or files. Idempotent."""


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds from ``now`` (epoch seconds): delay-seconds or an HTTP-date
    (a past date gives 0); ``None`` if absent or unparseable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def _short(text: str) -> str:
    """A collector's message as a short, privacy-redacted single line."""
    line = " ".join(redact_value(text).split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def _status_reason(status: int, message: str = "") -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown Status"
    reason = f"HTTP {status} {phrase}"
    return f"{reason}: {_short(message)}" if message.strip() else reason


def _error_message(body: bytes) -> str:
    """The ``message`` of a ``google.rpc.Status`` JSON body, or ``""``."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    message = parsed.get("message") if isinstance(parsed, dict) else None
    return message if isinstance(message, str) else ""


def _service_version() -> str:
    try:
        from importlib.metadata import version

        return version("brickrun")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        return "0"


class OtlpHttpSink(Sink):
    """POST batches as OTLP/HTTP JSON logs to ``url`` (``.../v1/logs`` is appended unless
    ``url`` already ends with it). ``headers`` are sent with every request (e.g. an API key;
    they are never logged). ``transport`` is the test seam (e.g. ``httpx.MockTransport``).

    Status mapping: 2xx delivered (a ``partialSuccess`` rejecting records: :attr:`Outcome.PARTIAL`);
    429/503 and connection failures retry without blaming the rows; 502/504, timeouts and
    connections dropped before the reply retry and may blame them; 413 too large; anything else
    rejected.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith(LOGS_PATH) else base + LOGS_PATH
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._service_version = _service_version()

    def encode(self, database: str, payload: Mapping[str, Any], observed: str | None) -> bytes:
        return encode_log_record(payload, observed=observed)

    def _body(self, batch: Sequence[Encoded]) -> bytes:
        groups: dict[str, list[bytes]] = {}
        for entry in batch:
            groups.setdefault(entry.item.database, []).append(entry.data)
        return encode_request(list(groups.items()), service_version=self._service_version)

    async def send(self, batch: Sequence[Encoded], *, timeout: float) -> Delivery:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._transport, follow_redirects=False)
        body = self._body(batch)
        try:
            response = await self._client.post(
                self.url, content=body, headers=self._headers, timeout=timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            return Delivery(Outcome.RETRY, f"collector unreachable ({type(error).__name__})")
        except httpx.TimeoutException as error:
            return Delivery(
                Outcome.RETRY,
                f"no reply within {timeout:g} s ({type(error).__name__})",
                row_fault=True,
            )
        except (httpx.TransportError, OSError) as error:
            # Reset or closed after the request went out: the collector may have stored it.
            return Delivery(
                Outcome.RETRY,
                f"connection lost before the reply ({type(error).__name__})",
                row_fault=True,
            )
        status = response.status_code
        if 200 <= status < 300:
            partial = parse_partial_success(response.content)
            if partial is not None and partial[0] > 0:
                rejected, message = partial
                reason = f"collector rejected {rejected} of {len(batch)} log records"
                if message.strip():
                    reason += f": {_short(message)}"
                return Delivery(Outcome.PARTIAL, reason, status, rejected=rejected)
            if partial is not None and partial[1].strip():
                log.warning("collector accepted a batch with a warning: %s", _short(partial[1]))
            return Delivery(Outcome.DELIVERED, status=status)
        message = _error_message(response.content)
        reason = _status_reason(status, message)
        if status in (429, 502, 503, 504):
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock())
            return Delivery(
                Outcome.RETRY, reason, status, retry_after, row_fault=status in (502, 504)
            )
        if status == 413:
            return Delivery(Outcome.TOO_LARGE, reason, status)
        return Delivery(Outcome.REJECTED, reason, status)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()


class JsonlSink(Sink):
    """Append one privacy-filtered JSON object per line to ``path``: the export payload plus
    ``"database"``. Each batch is written and fsync'd before it counts as delivered.

    Idempotent per event id within the file: ids already in the file (read once, on the first
    send) and ids written since are skipped, so re-sent records are not duplicated. A torn last
    line (a crash mid-write) is ignored when reading and terminated before appending.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._written: set[str] | None = None
        self._lock = anyio.Lock()

    def encode(self, database: str, payload: Mapping[str, Any], observed: str | None) -> bytes:
        line = json.dumps(
            {"database": database, **payload},
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
        )
        return line.encode("utf-8") + b"\n"

    def _load(self) -> set[str]:
        ids: set[str] = set()
        try:
            with self.path.open("rb") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue  # a torn line: its records were never acknowledged
                    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                        ids.add(entry["id"])
        except FileNotFoundError:
            pass
        return ids

    def _append(self, batch: Sequence[Encoded], written: set[str]) -> int:
        lines = []
        fresh = []
        for entry in batch:
            if entry.event_id in written or entry.event_id in fresh:
                continue
            fresh.append(entry.event_id)
            lines.append(entry.data)
        if not lines:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")
            data = b"".join(lines)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        written.update(fresh)
        return len(lines)

    async def send(self, batch: Sequence[Encoded], *, timeout: float) -> Delivery:
        async with self._lock:
            try:
                if self._written is None:
                    self._written = await anyio.to_thread.run_sync(self._load)
                written = self._written
                await anyio.to_thread.run_sync(self._append, batch, written)
            except OSError as error:
                return Delivery(
                    Outcome.RETRY, f"cannot write {self.path}: {error.strerror or error}"
                )
        return Delivery(Outcome.DELIVERED)


# --- the exporter -----------------------------------------------------------------------------


class Exporter:
    """Moves queued records from ``storage``'s outbox to ``sink`` (policy: module docstring).

    ``database`` limits it to one team database (default: every queued record). ``clock``
    returns the time in seconds since the epoch (claims, schedules, HTTP-dates); ``rng`` draws
    the jitter. ``lease_seconds`` (default: ``max(60, 6 * request_timeout)``) bounds how long a
    claim holds its rows; rows of a dead exporter are sent again after it. ``max_batch`` rows
    are claimed at a time and sent in requests of at most that many rows and ``max_bytes``
    bytes. By default 1,000 rows (fewer, bigger claims cost the store less per row) and 1 MB
    (what a proxy in front of a collector accepts by default, e.g. nginx; OTLP receivers
    commonly accept 20 MiB): a default-mode event encodes to about 1.1 kB, so a claim goes out
    in one or two requests.
    """

    def __init__(
        self,
        storage: StorageBackend,
        sink: Sink,
        *,
        privacy: PrivacySettings,
        database: str | None = None,
        max_batch: int = 1000,
        max_bytes: int = 1_000_000,
        max_attempts: int = 8,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        retry_after_cap: float = 120.0,
        request_timeout: float = 10.0,
        lease_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        for name, value in (("max_batch", max_batch), ("max_attempts", max_attempts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
            raise ValueError(f"max_bytes must be an integer of at least 1024, got {max_bytes!r}")
        for name, number in (
            ("base_delay", base_delay),
            ("max_delay", max_delay),
            ("retry_after_cap", retry_after_cap),
            ("request_timeout", request_timeout),
        ):
            if not isinstance(number, int | float) or not math.isfinite(number) or number <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {number!r}")
        self.storage = storage
        self.sink = sink
        self.privacy = privacy
        self.database = database
        self.max_batch = max_batch
        self.max_bytes = max_bytes
        self.max_attempts = max_attempts
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.retry_after_cap = float(retry_after_cap)
        self.request_timeout = float(request_timeout)
        self.lease_seconds = (
            float(lease_seconds) if lease_seconds is not None else max(60.0, 6 * request_timeout)
        )
        if self.lease_seconds <= self.request_timeout:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must exceed request_timeout "
                f"({self.request_timeout:g}): a claim must outlive one request"
            )
        self._clock = clock
        self._rng = rng or random.Random()
        self._failures = 0  # consecutive failed requests
        self._healthy = True  # the previous request reached a working receiver
        self._paused_until = 0.0
        # Row id -> halvings of its request size after failures that did not count (kept in
        # memory only: a restarted exporter starts from the counted attempts).
        self._split: dict[int, int] = {}

    # --- scheduling ---------------------------------------------------------------------------

    def _backoff(self, exponent: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**exponent)]."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(exponent, 62))
        return self._rng.uniform(0, ceiling)

    def _datetime(self, seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)

    # --- one claim ----------------------------------------------------------------------------

    async def run_once(self) -> ExportReport:
        """Claim up to ``max_batch`` due rows and send them; return what happened.

        Returns at once (with ``next_wait``) while a pause after a retryable failure lasts.
        Cancelling it hands the rows it holds back to the queue.
        """
        report = ExportReport()
        now = self._clock()
        if now < self._paused_until:
            report.next_wait = self._paused_until - now
            return report
        claim = await self._claim(report)
        if claim is not None:
            await self._prepare_claim(claim, report)
            try:
                await self._send_all(claim, report, None)
            finally:
                await self._finish(claim, report)
        if self._paused_until > self._clock():
            report.next_wait = self._paused_until - self._clock()
        return report

    async def _claim(self, report: ExportReport) -> _Claim | None:
        """Claim up to ``max_batch`` due rows (``None``: nothing was due)."""
        now = self._clock()
        items = await self.storage.outbox_claim(
            self.max_batch,
            database=self.database,
            now=self._datetime(now),
            lease_seconds=self.lease_seconds,
        )
        report.claimed += len(items)
        if not items:
            return None
        return _Claim(items, {item.id: item for item in items}, now + self.lease_seconds)

    async def _prepare_claim(self, claim: _Claim, report: ExportReport) -> None:
        """Prepare the claim's requests; its rows are handed back if that fails or is
        cancelled."""
        try:
            claim.requests = await self._prepare(claim.items, claim.open, report)
        except BaseException:
            await self._finish(claim, report)
            raise

    async def _finish(self, claim: _Claim, report: ExportReport) -> None:
        """Hand back the claim's rows that have no outcome (the run stopped early)."""
        if claim.open:
            rows = list(claim.open.values())
            claim.open.clear()
            await self._release(rows, report)

    async def _prepare(
        self, items: list[OutboxItem], open_items: dict[int, OutboxItem], report: ExportReport
    ) -> list[list[Encoded]]:
        """Filter and encode every row; dead-letter what cannot be sent; group the rest."""
        ready: list[Encoded] = []
        dead: dict[str, list[OutboxItem]] = {}
        gone: list[OutboxItem] = []
        limit = self.max_bytes - _REQUEST_OVERHEAD
        privacy, encode = self.privacy, self.sink.encode
        for count, item in enumerate(items, 1):
            if count % _PREPARE_SLICE == 0:
                # Let the event loop run (a request in flight, the host's own tasks): a claim
                # of thousands of rows takes tens of milliseconds to prepare.
                await anyio.lowlevel.checkpoint()
            if item.attempts > self.max_attempts:
                reason = (
                    f"quarantined after {item.attempts - 1} attempts without an outcome "
                    "(the exporter stopped while sending it)"
                )
                dead.setdefault(reason, []).append(item)
                continue
            record = item.record
            if record is None:
                gone.append(item)  # deleted since it was queued: nothing may leave
                continue
            payload = export_payload(record, privacy)
            if not payload:
                dead.setdefault("the privacy filter left nothing to export", []).append(item)
                continue
            try:
                data = encode(item.database, payload, record.get("created_at"))
            except (TypeError, ValueError, RecursionError) as error:
                dead.setdefault(f"cannot encode the record ({type(error).__name__})", []).append(
                    item
                )
                continue
            if len(data) > limit:
                reason = f"record encodes to {len(data)} bytes, over max_bytes ({self.max_bytes})"
                dead.setdefault(reason, []).append(item)
                continue
            ready.append(Encoded(item, str(payload.get("id")), data))
        if gone:
            await self.storage.outbox_ack(gone)
            for item in gone:
                open_items.pop(item.id, None)
        for reason, group in dead.items():
            await self._dead(group, reason, open_items, report)
        return self._group(ready)

    def _group(self, ready: list[Encoded]) -> list[list[Encoded]]:
        """Requests of at most ``max_batch >> failures`` rows and ``max_bytes`` bytes; rows
        grouped by how often they failed, fresh rows first."""
        by_failures: dict[int, list[Encoded]] = {}
        split = self._split
        for entry in ready:
            item = entry.item
            level = item.attempts - 1
            if split:
                level = max(level, split.get(item.id, 0))
            by_failures.setdefault(min(level, 62), []).append(entry)
        limit = self.max_bytes - _REQUEST_OVERHEAD
        requests: list[list[Encoded]] = []
        for failures in sorted(by_failures):
            most = max(1, self.max_batch >> failures)
            current: list[Encoded] = []
            size = 0
            for entry in by_failures[failures]:
                extra = len(entry.data) + 1
                if current and (len(current) >= most or size + extra > limit):
                    requests.append(current)
                    current, size = [], 0
                current.append(entry)
                size += extra
            if current:
                requests.append(current)
        return requests

    async def _send_all(self, claim: _Claim, report: ExportReport, acks: _Acks | None) -> None:
        """Send the claim's requests in order until one is to be retried (a pause starts), the
        claim's lease would end during the next request, or all are done. ``acks``: delivered
        rows are acknowledged in the background (else before the next request)."""
        queue = list(reversed(claim.requests))  # a stack: 413 halves go first, in order
        claim.requests = []
        open_items = claim.open
        while queue:
            if self._clock() + self.request_timeout >= claim.lease_end:
                log.info("export run stopped: the claim's lease ends before another request")
                return  # the rest is handed back by _finish
            if self._paused_until > self._clock():
                return
            batch = queue.pop()
            delivery = await self._send(batch, report)
            rows = [entry.item for entry in batch]
            if delivery.outcome is Outcome.DELIVERED:
                self._healthy, self._failures = True, 0
                if acks is None:
                    await self._ack(rows, report)
                    self._settled(rows, open_items)
                else:
                    # Cancelled while waiting, the rows are still open and handed back (sent
                    # again: at-least-once); once settled, nothing awaits before they are queued.
                    await acks.room()
                    self._settled(rows, open_items)
                    acks.add(rows)
            elif delivery.outcome is Outcome.TOO_LARGE and len(batch) > 1:
                self._healthy, self._failures = True, 0
                half = len(batch) // 2
                queue.append(batch[half:])
                queue.append(batch[:half])
                log.info("collector refused %d records as too large; sending halves", len(batch))
            elif delivery.outcome in (Outcome.TOO_LARGE, Outcome.REJECTED, Outcome.PARTIAL):
                self._healthy, self._failures = True, 0
                reason = delivery.reason
                if delivery.outcome is Outcome.TOO_LARGE:
                    reason += " (even alone)"
                await self._dead(rows, reason, open_items, report)
            else:
                await self._retry(batch, delivery, open_items, report)
                return

    async def _ack(self, rows: list[OutboxItem], report: ExportReport) -> None:
        """Acknowledge delivered rows. Cancelled meanwhile, it acknowledges them once more
        under a shield (:meth:`_acknowledge_shielded`), so that delivered rows are not sent
        again when the run stops."""
        try:
            await self._acknowledge(rows, report)
        except anyio.get_cancelled_exc_class():
            await self._acknowledge_shielded(rows, report)
            raise

    async def _acknowledge(self, rows: list[OutboxItem], report: ExportReport) -> None:
        await self.storage.outbox_ack(rows, now=self._datetime(self._clock()))
        for item in rows:
            self._split.pop(item.id, None)
        report.delivered += len(rows)

    async def _acknowledge_shielded(self, rows: list[OutboxItem], report: ExportReport) -> None:
        """:meth:`_acknowledge` for a run being cancelled: shielded, within ``_RELEASE_GRACE``
        (acknowledging is idempotent); if it cannot finish, the rows come back when their
        lease ends."""
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + _RELEASE_GRACE
            with contextlib.suppress(StorageError):
                await self._acknowledge(rows, report)

    async def _send(self, batch: list[Encoded], report: ExportReport) -> Delivery:
        report.requests += 1
        report.bytes_sent += sum(len(entry.data) for entry in batch)
        # The sink's own timeouts cover each phase; this covers the whole request.
        with anyio.move_on_after(self.request_timeout) as scope:
            delivery = await self.sink.send(batch, timeout=self.request_timeout)
        if scope.cancelled_caught:
            return Delivery(
                Outcome.RETRY, f"no reply within {self.request_timeout:g} s", row_fault=True
            )
        return delivery

    async def _retry(
        self,
        batch: list[Encoded],
        delivery: Delivery,
        open_items: dict[int, OutboxItem],
        report: ExportReport,
    ) -> None:
        now = self._clock()
        counted = delivery.row_fault and self._healthy
        if delivery.row_fault and len(batch) > 1:
            if len(self._split) > 100_000:
                self._split.clear()  # only a hint; never let it grow without bound
            # The smallest request-size level that halves this batch.
            halved, target = 0, max(1, len(batch) // 2)
            while self.max_batch >> halved > target:
                halved += 1
            for entry in batch:
                self._split[entry.item.id] = max(self._split.get(entry.item.id, 0), halved)
        if delivery.retry_after is not None:
            wait = min(delivery.retry_after, self.retry_after_cap)
        else:
            wait = self._backoff(self._failures)
        self._failures += 1
        self._healthy = False
        self._paused_until = now + wait
        rows = [entry.item for entry in batch]
        reason = delivery.reason
        log.warning(
            "export of %d records failed (%s); pausing %.3f s%s",
            len(rows),
            reason,
            wait,
            "" if counted else " (not counted against the records)",
        )
        if not counted:
            await self.storage.outbox_retry(
                rows,
                next_attempt_at=self._datetime(self._paused_until),
                error=reason,
                count_attempt=False,
            )
            self._settled(rows, open_items)
            report.retried += len(rows)
            report._reason(reason, len(rows))
            return
        spent = [item for item in rows if item.attempts >= self.max_attempts]
        if spent:
            await self._dead(
                spent,
                f"quarantined after {self.max_attempts} attempts: {reason}",
                open_items,
                report,
            )
        again = [item for item in rows if item.attempts < self.max_attempts]
        # A row's own backoff grows with its failures, so a row that keeps failing comes back
        # less and less often and never holds up the others. One draw per failure count keeps
        # the rows of a batch together.
        by_attempts: dict[int, list[OutboxItem]] = {}
        for item in again:
            by_attempts.setdefault(item.attempts, []).append(item)
        for attempts, group in by_attempts.items():
            due = now + max(wait, self._backoff(attempts))
            await self.storage.outbox_retry(
                group, next_attempt_at=self._datetime(due), error=reason
            )
            self._settled(group, open_items)
            report.retried += len(group)
        if again:
            report._reason(reason, len(again))

    async def _dead(
        self,
        rows: list[OutboxItem],
        reason: str,
        open_items: dict[int, OutboxItem],
        report: ExportReport,
    ) -> None:
        await self.storage.outbox_dead(rows, reason, now=self._datetime(self._clock()))
        self._settled(rows, open_items)
        for item in rows:
            self._split.pop(item.id, None)
        report.dead += len(rows)
        report._reason(reason, len(rows))
        databases = sorted({item.database for item in rows})
        log.error("dead-lettered %d records of %s: %s", len(rows), ", ".join(databases), reason)

    def _settled(self, rows: list[OutboxItem], open_items: dict[int, OutboxItem]) -> None:
        for item in rows:
            open_items.pop(item.id, None)

    async def _release(self, rows: list[OutboxItem], report: ExportReport) -> None:
        """Hand unsent rows back (due when the pause ends, or now), attempt given back.

        Shielded and bounded: it also runs when the run is cancelled. If it cannot finish, the
        rows come due anyway when their lease ends.
        """
        due = max(self._clock(), self._paused_until)
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + _RELEASE_GRACE
            await self.storage.outbox_retry(
                rows,
                next_attempt_at=self._datetime(due),
                error="released unsent: the export run stopped early",
                count_attempt=False,
            )
            report.released += len(rows)

    # --- the loop -----------------------------------------------------------------------------

    async def run(
        self,
        stop: anyio.Event,
        *,
        interval: float = 1.0,
        shutdown_timeout: float = 5.0,
        concurrency: int = 1,
    ) -> ExportReport:
        """Export until ``stop`` is set; return the totals.

        Each of ``concurrency`` lanes is a pipeline whose stages run at once: one claims the
        next due rows and prepares them (filters and encodes), one sends the claim before, and
        the store acknowledges delivered rows meanwhile, one transaction at a time. A lane
        holds at most two claims (one being sent, one prepared or being prepared); the outbox
        leases keep lanes from sending a row twice. When nothing is due a lane checks again
        every ``interval`` seconds; while more is due it goes on at once; during a pause it
        waits for the pause. Once ``stop`` is set, the run returns within ``shutdown_timeout``
        seconds (plus at most 2 s to hand rows back and acknowledge delivered ones): a request
        still in flight then is abandoned and its rows stay queued.
        """
        if not isinstance(interval, int | float) or not math.isfinite(interval) or interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        total = ExportReport()
        with anyio.CancelScope() as outer:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    await stop.wait()
                    outer.deadline = min(outer.deadline, anyio.current_time() + shutdown_timeout)

                group.start_soon(watch)
                async with anyio.create_task_group() as lanes:
                    for _ in range(max(1, concurrency)):
                        lanes.start_soon(self._lane, stop, interval, total)
                group.cancel_scope.cancel()
        return total

    async def _lane(self, stop: anyio.Event, interval: float, total: ExportReport) -> None:
        # A rendezvous channel: the producer holds at most one prepared claim until the sender
        # takes it. (Claiming in a stage of its own as well was measured to cost more CPU —
        # the store's thread and the filter contend for the GIL — than it hid.)
        prepared_in, prepared_out = anyio.create_memory_object_stream[_Claim](0)
        async with anyio.create_task_group() as group:
            group.start_soon(self._produce, stop, interval, prepared_in, total)
            await self._deliveries(stop, prepared_out, total)

    async def _produce(
        self,
        stop: anyio.Event,
        interval: float,
        prepared: MemoryObjectSendStream[_Claim],
        total: ExportReport,
    ) -> None:
        """The first stage: claim due rows and prepare them (filter and encode), until
        ``stop``."""
        async with prepared:
            store_failures = 0
            while not stop.is_set():
                now = self._clock()
                if now < self._paused_until:
                    await _wait(stop, self._paused_until - now)  # bounded by the pause's cap
                    continue
                report = ExportReport()
                try:
                    claim = await self._claim(report)
                    if claim is not None:
                        await self._prepare_claim(claim, report)
                except StorageError as error:
                    # The store is down or locked: keep going, slower, rather than die. (Rows
                    # of a claim that could not be handed back come due when the lease ends.)
                    store_failures += 1
                    wait = max(interval, self._backoff(store_failures))
                    log.error("export run failed; next try in %.3f s: %s", wait, error)
                    total.add(report)
                    await _wait(stop, wait)
                    continue
                store_failures = 0
                total.add(report)
                if claim is not None and claim.open:
                    await self._hand_on(claim, prepared, total)
                if report.claimed >= self.max_batch:
                    await anyio.lowlevel.checkpoint()
                else:
                    await _wait(stop, interval)

    async def _hand_on(
        self, claim: _Claim, stage: MemoryObjectSendStream[_Claim], total: ExportReport
    ) -> None:
        """Pass ``claim`` to the next stage; hand its rows back if that never takes it."""
        try:
            await stage.send(claim)
        except BaseException:
            await self._finish(claim, total)
            raise

    async def _deliveries(
        self, stop: anyio.Event, claims: MemoryObjectReceiveStream[_Claim], total: ExportReport
    ) -> None:
        """The last stage: send each prepared claim, acknowledging in the background; hand
        back what is left."""
        async with claims, anyio.create_task_group() as group:
            acks = _Acks(self, group, total, 4 * self.max_batch)
            async for claim in claims:
                report = ExportReport()
                try:
                    try:
                        if not stop.is_set():
                            await self._send_all(claim, report, acks)
                    finally:
                        await self._finish(claim, report)
                except StorageError as error:
                    # Rows without an outcome stay leased and come back when the lease ends.
                    log.error("export run failed: %s", error)
                total.add(report)


async def _wait(stop: anyio.Event, seconds: float) -> None:
    """Until ``stop`` is set or ``seconds`` have passed."""
    with anyio.move_on_after(seconds):
        await stop.wait()


@dataclass(slots=True)
class _Claim:
    """One claim's rows on their way: the claimed rows, those without an outcome yet (by
    outbox id), when the claim's lease ends (epoch seconds) and the prepared requests."""

    items: list[OutboxItem]
    open: dict[int, OutboxItem]
    lease_end: float
    requests: list[list[Encoded]] = field(default_factory=list)


class _Acks:
    """Acknowledgements of a lane's delivered rows, in its task group, one transaction at a
    time: the store deletes delivered rows while the next requests are in flight, and rows
    delivered meanwhile are acknowledged together in the next transaction (each costs the
    store a fixed part besides its rows). At most ``limit`` rows wait (:meth:`room`). A failed
    acknowledgement is logged; its rows come back when their lease ends (sent again:
    at-least-once)."""

    def __init__(
        self, exporter: Exporter, group: TaskGroup, report: ExportReport, limit: int
    ) -> None:
        self._exporter = exporter
        self._group = group
        self._report = report
        self._limit = limit
        self._pending: list[OutboxItem] = []
        self._running: anyio.Event | None = None  # set when the running task ends

    async def room(self) -> None:
        """Wait while ``limit`` rows or more wait for their acknowledgement."""
        while len(self._pending) >= self._limit and self._running is not None:
            await self._running.wait()

    def add(self, rows: list[OutboxItem]) -> None:
        """Acknowledge ``rows`` in the background."""
        self._pending += rows
        if self._running is None:
            self._running = anyio.Event()
            self._group.start_soon(self._run, self._running)

    async def _run(self, done: anyio.Event) -> None:
        exporter, rows = self._exporter, []
        try:
            while self._pending:
                rows, self._pending = self._pending, []
                try:
                    await exporter._acknowledge(rows, self._report)
                except StorageError as error:
                    log.error("acknowledging %d delivered records failed: %s", len(rows), error)
                rows = []
        except anyio.get_cancelled_exc_class():
            rows, self._pending = rows + self._pending, []
            await exporter._acknowledge_shielded(rows, self._report)
            raise
        finally:
            self._running = None
            done.set()
