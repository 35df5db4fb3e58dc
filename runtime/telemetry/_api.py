"""The host recorder (SPEC §8 *Recording paths*): ``record(feature, action)`` and typed helpers.

``Recorder(target)`` turns a host's calls into :class:`TelemetryEvent`\\ s and hands them to a
*sink*, which queues them for storing::

    recorder = Recorder(runtime)              # an async host, on the runtime's event loop
    recorder = Recorder(service)              # any thread: a TelemetryService (see _service)
    recorder.record("search", "submitted", metadata={"results": 12})
    recorder.page_view("https://example.com/docs/42", duration_ms=830)
    recorder.api_call("/api/items/7", "GET", 200, 41.5)

**Contract of every recording method**: it returns the new event's id (fixed at record time;
the idempotency key everywhere downstream) or ``None`` when the event was not accepted. It never
raises and never blocks beyond building the event and one enqueue. An event that is not accepted
is counted in :attr:`Recorder.counters` (and, when the sink has ``count_dropped``, in the sink's
self-metrics) as ``dropped:<reason>``:

- ``invalid``: a bad argument (name, metadata value, URL type, status, ...), or data that cannot
  be stored (no JSON form);
- ``size``: the event's JSON is larger than ``max_event_bytes`` (default 64 KiB);
- ``wrong_thread``: a ``Runtime`` target called from outside its event loop (its recorder is
  loop-bound; use a ``TelemetryService`` from other threads);
- ``error``: an unexpected failure while building the event (a bug; logged with a traceback);
- whatever the sink counts itself (``disabled``, ``queue_full``, ``destroyed``, ...).

Drops are logged by method and reason, never with the payload: the first of each kind at
WARNING, later ones at DEBUG.

**Event names.** ``record(feature, action)`` records ``"<feature>:<action>"``: each part is
letters, digits, ``_ . -`` (the feature starting with a letter), no ``:``, so the name splits
unambiguously at its colon, and the whole name obeys the SPEC rule (1-64 characters, letters,
digits, ``_ . : -``). The typed helpers use fixed names without a colon, so they never collide
with ``record``'s: :data:`PAGE_VIEW`, :data:`ACTION`, :data:`ERROR`, :data:`API_CALL`,
:data:`SESSION_START`, :data:`SESSION_END`. :meth:`Recorder.event` records any valid name.

**Fields taken from the host** when the target has one: ``user`` (the signed-in user's email, as
for ``TriggerRun``), ``session_id`` (the page visit's) and ``url`` (the current page, unless the
call names one). ``context`` is what daily aggregates group by, and it never holds a user: the
anonymised path for page views (``/docs/[id]``), the action name for actions, ``"<METHOD>
<anonymised path>"`` for API calls, the error's class name for errors.

**Metadata** (exported after the privacy filter) holds finite numbers and booleans only.
``record(metadata=...)`` is strict: anything else makes the event ``invalid``. ``action(**data)``
and ``event(name, data)`` take one bag of values and split it: finite numbers and booleans go to
``metadata``, everything else to ``private_metadata`` (never exported unless allowlisted).
Private values are copied at record time into JSON form (later changes by the caller do not
leak into the stored event): tuples and sets become lists, dates ISO strings, ``Decimal`` and
``UUID`` strings, bytes UTF-8 text, NaN and infinities the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"``, integers beyond 64 bits strings, cycles ``"[circular]"``, nesting beyond 32
levels ``"[too deep]"``, NUL characters and lone surrogates U+FFFD, and any other object the
marker ``"[<TypeName>]"`` (never its ``str()``, which may be large, slow or secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import json
import logging
import math
import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from ..errors import BusinessError
from ._events import TelemetryEvent, validate_name

if TYPE_CHECKING:
    from .._clock import Clock
    from .._host import Host

__all__ = [
    "ACTION",
    "API_CALL",
    "ERROR",
    "PAGE_VIEW",
    "SESSION_END",
    "SESSION_START",
    "Recorder",
    "TelemetrySink",
    "split_data",
]

log = logging.getLogger("brickrun.telemetry")

PAGE_VIEW = "page_view"
ACTION = "action"
ERROR = "error"
API_CALL = "api_call"
SESSION_START = "session_start"
SESSION_END = "session_end"

DEFAULT_MAX_EVENT_BYTES = 64 * 1024
_MAX_DEPTH = 32
_MAX_INT = 2**63 - 1
_MAX_MESSAGE_CHARS = 2000
_FEATURE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_ACTION_PART = re.compile(r"^[A-Za-z0-9_.\-]+$")
_METHOD = re.compile(r"^[A-Za-z]{1,16}$")
_ERROR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


@runtime_checkable
class TelemetrySink(Protocol):
    """Where a :class:`Recorder` hands its events: ``record(event)`` queues one and returns
    whether it was accepted, without blocking or raising. ``TelemetryRecorder`` (a runtime's)
    and ``TelemetryService`` are sinks. A sink may also offer ``count_dropped(reason)`` (so the
    recorder's drops appear in its self-metrics), ``host`` and ``clock``."""

    def record(self, event: TelemetryEvent) -> bool: ...


class _Invalid(ValueError):
    """A bad argument; the message names the field and the type found, never the value."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


_UNSET: Any = object()


class Recorder:
    """Records host telemetry into ``target``: a ``Runtime`` (its telemetry recorder, its host
    and clock; call from the runtime's event loop) or a :class:`TelemetrySink` such as a
    ``TelemetryService`` (thread-safe; its ``host``/``clock`` when it has them).

    ``host`` and ``clock`` override the target's. ``source`` is merged into every event's
    ``source`` (e.g. ``{"deploymentId": ...}``, which ``brickrun events --deployment`` filters
    on). ``max_event_bytes`` bounds one event's JSON size.

    ``counters`` counts this recorder's own drops (``dropped:<reason>``), unsynchronised; a
    sink with ``count_dropped`` (a ``TelemetryService``) keeps the authoritative, thread-safe
    count. Accepted events are counted by the sink.
    """

    def __init__(
        self,
        target: Any,
        *,
        host: Host | None = None,
        clock: Clock | None = None,
        source: Mapping[str, Any] | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        if hasattr(target, "record"):
            self._sink: TelemetrySink = target
            self._loop_bound = False
        elif hasattr(target, "telemetry") and hasattr(target.telemetry, "record"):
            self._sink = target.telemetry
            self._loop_bound = True  # a Runtime's recorder starts tasks in its task group
        else:
            raise TypeError(
                f"Recorder needs a Runtime or a telemetry sink with record(event), "
                f"got {type(target).__name__}"
            )
        self._target = target
        self._host = host
        self._clock = clock
        self.source = dict(source or {})
        self.max_event_bytes = max_event_bytes
        self.counters: Counter[str] = Counter()
        self._warned: set[tuple[str, str]] = set()

    # -- recording methods -----------------------------------------------------------------------

    def record(
        self,
        feature: str,
        action: str,
        *,
        metadata: Mapping[str, int | float | bool] | None = None,
        private_metadata: Mapping[str, Any] | None = None,
        duration_ms: float | None = None,
        url: str | None = None,
    ) -> str | None:
        """Record the event ``"<feature>:<action>"``. ``metadata``: finite numbers and booleans
        only (exportable); ``private_metadata``: any JSON-able data (stays in the team database
        unless allowlisted). ``url`` defaults to the host's current page."""
        try:
            name = _feature_action(feature, action)
            return self._emit(
                "record",
                name,
                metadata=_strict_metadata(metadata),
                private=_private(private_metadata),
                duration_ms=duration_ms,
                url=_UNSET if url is None else url,
            )
        except Exception as exc:
            self._dropped("record", exc)
            return None

    def event(
        self,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        duration_ms: float | None = None,
        url: str | None = None,
    ) -> str | None:
        """Record a custom event ``name`` (any valid event name); ``data`` is split as
        :func:`split_data` does (numbers/booleans exportable, the rest private)."""
        try:
            metadata, private = split_data(data)
            return self._emit(
                "event",
                _valid_name(name, "name"),
                metadata=metadata,
                private=private,
                duration_ms=duration_ms,
                url=_UNSET if url is None else url,
            )
        except Exception as exc:
            self._dropped("event", exc)
            return None

    def page_view(
        self, url: str, title: str | None = None, duration_ms: float | None = None
    ) -> str | None:
        """A page was viewed: ``url`` is stored as the event's url (anonymised on export);
        ``context`` is its anonymised path; ``title`` is private (titles can name people)."""
        try:
            if not isinstance(url, str) or not url:
                raise _Invalid(f"url must be a non-empty string, got {_kind(url)}")
            if title is not None and not isinstance(title, str):
                raise _Invalid(f"title must be a string or None, got {_kind(title)}")
            return self._emit(
                "page_view",
                PAGE_VIEW,
                private=_private({"title": title} if title is not None else None),
                duration_ms=duration_ms,
                url=url,
                context=_page_context(url),
            )
        except Exception as exc:
            self._dropped("page_view", exc)
            return None

    def action(self, name: str, **data: Any) -> str | None:
        """A user action ``name`` (an event-name-like identifier, e.g. ``"button_click"``),
        which becomes the ``context``; ``data`` is split as :func:`split_data` does."""
        try:
            context = _valid_name(name, "action name")
            metadata, private = split_data(data)
            return self._emit("action", ACTION, metadata=metadata, private=private, context=context)
        except Exception as exc:
            self._dropped("action", exc)
            return None

    def error(self, exc_or_message: BaseException | str, *, business: bool = False) -> str | None:
        """An error: ``{name, message, business}`` with the exception's class name (``"Error"``
        for a message). ``business`` is also true for a brickrun ``BusinessError``. The context
        is the class name; the message (at most 2,000 characters) is redacted on export."""
        try:
            if isinstance(exc_or_message, BaseException):
                name = type(exc_or_message).__name__
                message = _message(exc_or_message)
                business = business or isinstance(exc_or_message, BusinessError)
            elif isinstance(exc_or_message, str):
                name, message = "Error", exc_or_message
            else:
                raise _Invalid(
                    f"error needs an exception or a message, got {_kind(exc_or_message)}"
                )
            if not _ERROR_NAME.match(name):
                name = "Error"
            return self._emit(
                "error",
                ERROR,
                error={
                    "name": name,
                    "message": _clean_text(message[:_MAX_MESSAGE_CHARS]),
                    "business": bool(business),
                },
                context=name,
            )
        except Exception as exc:
            self._dropped("error", exc)
            return None

    def api_call(self, endpoint: str, method: str, status: int, duration_ms: float) -> str | None:
        """An API call answered with HTTP ``status`` after ``duration_ms``. The context is
        ``"<METHOD> <anonymised path>"``; the raw endpoint (which may hold ids or tokens in its
        path or query) is not stored. ``metadata``: ``{status}``."""
        try:
            if not isinstance(endpoint, str) or not endpoint:
                raise _Invalid(f"endpoint must be a non-empty string, got {_kind(endpoint)}")
            if not isinstance(method, str) or not _METHOD.match(method):
                raise _Invalid(f"method must be 1-16 letters, got {_kind(method)}")
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
                raise _Invalid(f"status must be an HTTP status (100-599), got {_kind(status)}")
            if duration_ms is None:
                raise _Invalid("duration_ms is required for an API call")
            return self._emit(
                "api_call",
                API_CALL,
                metadata={"status": status},
                duration_ms=duration_ms,
                context=f"{method.upper()} {_page_context(endpoint)}",
            )
        except Exception as exc:
            self._dropped("api_call", exc)
            return None

    def session_start(self) -> str | None:
        """A session started (the host's page visit gives ``session_id``)."""
        try:
            return self._emit("session_start", SESSION_START)
        except Exception as exc:
            self._dropped("session_start", exc)
            return None

    def session_end(self, duration_ms: float | None = None) -> str | None:
        """A session ended, after ``duration_ms`` when known."""
        try:
            return self._emit("session_end", SESSION_END, duration_ms=duration_ms)
        except Exception as exc:
            self._dropped("session_end", exc)
            return None

    # -- building and handing over ---------------------------------------------------------------

    def _emit(
        self,
        method: str,
        name: str,
        *,
        metadata: dict[str, int | float | bool] | None = None,
        private: dict[str, Any] | None = None,
        duration_ms: Any = None,
        url: Any = _UNSET,
        context: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> str | None:
        if self._loop_bound and not _in_event_loop():
            raise _Invalid(
                "a Runtime's recorder was called outside its event loop; use a "
                "TelemetryService from other threads",
                reason="wrong_thread",
            )
        if duration_ms is not None and (
            isinstance(duration_ms, bool)
            or not isinstance(duration_ms, int | float)
            or not math.isfinite(duration_ms)
            or duration_ms < 0
        ):
            raise _Invalid(f"duration_ms must be a finite number >= 0, got {_kind(duration_ms)}")
        user, session_id, page_url = self._from_host()
        if url is _UNSET:
            url = page_url
        elif not isinstance(url, str):
            raise _Invalid(f"url must be a string or None, got {_kind(url)}")
        event = TelemetryEvent(
            name=name,
            timestamp=self._now(),
            source=dict(self.source),
            user=user,
            session_id=session_id,
            url=_clean_text(url) if url is not None else None,
            duration_ms=duration_ms,
            metadata=metadata or {},
            private_metadata=private or {},
            error=error,
            context=context,
        )
        size = _estimated_size(event)
        if size > self.max_event_bytes:
            raise _Invalid(
                f"the event's JSON is about {size} bytes, over the limit of {self.max_event_bytes}",
                reason="size",
            )
        return event.id if self._sink.record(event) else None

    def _from_host(self) -> tuple[str | None, str | None, str | None]:
        host = self._host if self._host is not None else getattr(self._target, "host", None)
        if host is None:
            return None, None, None
        try:
            user, page = host.user, host.page
            email = user.email if user is not None else None
            if page is None:
                return email, None, None
            return email, page.session_id, page.url
        except Exception:  # a host application's bug must not cost the event
            log.debug("telemetry: the host failed to say who and where; recorded without")
            return None, None, None

    def _now(self) -> dt.datetime:
        clock = self._clock if self._clock is not None else getattr(self._target, "clock", None)
        if clock is not None:
            now: dt.datetime = clock.now()
            return now
        return dt.datetime.now(dt.UTC)

    def _dropped(self, method: str, exc: Exception) -> None:
        """Count (here and in the sink) and log a refused event: kind and reason, no payload."""
        reason = exc.reason if isinstance(exc, _Invalid) else "error"
        self.counters[f"dropped:{reason}"] += 1
        count = getattr(self._sink, "count_dropped", None)
        if callable(count):
            with contextlib.suppress(Exception):  # a sink's counter must not make a drop raise
                count(reason)
        first = (method, reason) not in self._warned
        if first and len(self._warned) < 1000:
            self._warned.add((method, reason))
        if isinstance(exc, _Invalid):
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "telemetry %s dropped (%s): %s",
                method,
                reason,
                exc,
            )
        else:
            # Unexpected: the traceback is for us; exception text may quote the payload.
            log.log(
                logging.ERROR if first else logging.DEBUG,
                "telemetry %s dropped (error): %s",
                method,
                type(exc).__name__,
                exc_info=first,
            )


# -- validation and JSON-safe copies -------------------------------------------------------------


def _kind(value: Any) -> str:
    """How a value is described in messages: its type, and a length for strings — no value."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def _feature_action(feature: Any, action: Any) -> str:
    if not isinstance(feature, str) or not _FEATURE.match(feature):
        raise _Invalid(
            "feature must be letters, digits, '_', '.' or '-' starting with a letter, got "
            + _kind(feature)
        )
    if not isinstance(action, str) or not _ACTION_PART.match(action):
        raise _Invalid(f"action must be letters, digits, '_', '.' or '-', got {_kind(action)}")
    return _valid_name(f"{feature}:{action}", "feature:action")


def _valid_name(name: Any, what: str) -> str:
    try:
        return validate_name(name)
    except ValueError:
        raise _Invalid(
            f"{what} must be 1-64 letters, digits, '_', '.', ':' or '-' starting with a "
            f"letter, got {_kind(name)}"
        ) from None


def _exportable(value: Any) -> bool:
    kind = type(value)
    if kind is bool:
        return True
    if kind is int:
        return bool(-_MAX_INT - 1 <= value <= _MAX_INT)
    if kind is float:
        return math.isfinite(value)
    if isinstance(value, bool | int):  # subclasses (IntEnum, numpy-like ints)
        return -_MAX_INT - 1 <= int(value) <= _MAX_INT
    return isinstance(value, float) and math.isfinite(value)


def _strict_metadata(values: Any) -> dict[str, int | float | bool]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise _Invalid(f"metadata must be a mapping, got {_kind(values)}")
    out: dict[str, int | float | bool] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise _Invalid(f"metadata keys must be non-empty strings, got {_kind(key)}")
        if not _exportable(value):
            raise _Invalid(
                f"metadata {_kind(key)} key holds {_kind(value)}: only finite numbers (64-bit "
                "integers) and booleans are exportable; put other values in private_metadata"
            )
        out[_clean_text(key)] = value
    return out


def split_data(data: Any) -> tuple[dict[str, int | float | bool], dict[str, Any]]:
    """Split a bag of values: finite numbers (64-bit integers) and booleans into ``metadata``,
    everything else into ``private_metadata`` (as a JSON-safe copy). ``None`` is empty; a
    non-mapping raises ``ValueError``. Keys become strings as JSON would make them."""
    if data is None:
        return {}, {}
    if type(data) is not dict and not isinstance(data, Mapping):
        raise _Invalid(f"data must be a mapping, got {_kind(data)}")
    metadata: dict[str, int | float | bool] = {}
    rest: dict[Any, Any] = {}
    for key, value in data.items():
        if type(key) is str and key and _exportable(value):
            metadata[_clean_text(key)] = value
        else:
            rest[key] = value
    return metadata, _private(rest) if rest else {}


def _private(values: Any) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise _Invalid(f"private_metadata must be a mapping, got {_kind(values)}")
    copied = _json_safe(values, 0, set())
    assert isinstance(copied, dict)
    return copied


def _clean_text(text: str) -> str:
    """Stores refuse NUL characters and lone surrogates: replace them (rare, so check first)."""
    if _BAD_CHARS.search(text) is None:
        return text
    return _BAD_CHARS.sub("\ufffd", text)


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return _clean_text(key)
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)  # JSON's own key rule: True -> "true", 1.5 -> "1.5"
    return f"[{type(key).__name__}]"


_SIMPLE_TO_TEXT: dict[type, Callable[[Any], str]] = {
    uuid.UUID: str,
    decimal.Decimal: str,
    dt.datetime: lambda v: v.isoformat(),
    dt.date: lambda v: v.isoformat(),
    dt.time: lambda v: v.isoformat(),
    dt.timedelta: lambda v: f"{v.total_seconds()}s",
}


def _json_safe(value: Any, depth: int, active: set[int]) -> Any:
    """A JSON-safe copy of ``value`` (see the module docstring); never raises."""
    kind = type(value)
    # Exact types first: this runs on the caller's thread for every private value.
    if kind is str:
        return _clean_text(value)
    if value is None or kind is bool:
        return value
    if kind is int:
        return value if -_MAX_INT - 1 <= value <= _MAX_INT else str(value)
    if kind is float:
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if depth >= _MAX_DEPTH:
        return "[too deep]"
    if kind is dict or kind is list or kind is tuple:
        return _json_container(value, depth, active)
    if isinstance(value, enum.Enum):  # before str/int: str- and int-valued enums
        return _json_safe(value.value, depth + 1, active)
    if isinstance(value, str | int | float):  # subclasses: as their base type
        base = str if isinstance(value, str) else float if isinstance(value, float) else int
        return _json_safe(base(value), depth, active)
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return _json_container(value, depth, active)
    if isinstance(value, bytes | bytearray | memoryview):
        return _clean_text(bytes(value).decode("utf-8", "replace"))
    for simple, convert in _SIMPLE_TO_TEXT.items():
        if isinstance(value, simple):
            try:
                return convert(value)
            except Exception:
                break
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _json_safe(
            {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)},
            depth + 1,
            active,
        )
    return f"[{kind.__name__}]"


def _json_container(value: Any, depth: int, active: set[int]) -> Any:
    if id(value) in active:
        return "[circular]"
    active.add(id(value))
    try:
        if isinstance(value, Mapping):
            return {_json_key(k): _json_safe(v, depth + 1, active) for k, v in value.items()}
        return [_json_safe(item, depth + 1, active) for item in value]
    finally:
        active.discard(id(value))


def _estimated_size(event: TelemetryEvent) -> int:
    """About the UTF-8 size of the event's JSON: exact for the private part (the one that can
    be large), estimated for the bounded rest — far cheaper than encoding the whole event."""
    size = 600 + len(event.url or "") + len(event.context or "")
    size += sum(len(key) + 28 for key in event.metadata)
    if event.error is not None:
        size += len(str(event.error.get("message", "")))
    if event.private_metadata:
        text = json.dumps(event.private_metadata, ensure_ascii=False, separators=(",", ":"))
        size += len(text) if text.isascii() else len(text.encode("utf-8"))
    return size


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def _page_context(url: str) -> str:
    """The anonymised path of ``url`` (``/docs/[id]``): what aggregates group page views by."""
    from ._privacy import anonymize_url  # lazy: only page views and API calls need it

    anonymised = anonymize_url(url)
    if anonymised.startswith("["):  # the fail-closed placeholder, e.g. "[invalid-url]"
        return anonymised
    return urlsplit(anonymised).path or "/"


def _in_event_loop() -> bool:
    """True on a thread that runs an async event loop (where a Runtime's recorder may run)."""
    if asyncio._get_running_loop() is not None:  # the fast path (~0.05 µs, asyncio hosts)
        return True
    from anyio.lowlevel import current_token  # any other anyio backend (~2 µs)

    try:
        current_token()
    except Exception:
        return False
    return True
