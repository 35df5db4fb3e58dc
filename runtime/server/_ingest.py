"""Ingest: the wire format of ``POST /api/telemetry``, its validation, and the stored event.

A request body is one event (a JSON object) or a batch (a JSON array of them). Every event
is checked before anything is stored: the first problem fails the whole request with
:class:`IngestError`, whose ``field`` names where (``duration``, or ``[3].duration`` in a
batch). An accepted event becomes the stored data of a
:class:`~brickrun.telemetry.TelemetryEvent` (the shape of its ``to_data()``) passed through
:func:`~brickrun.telemetry._privacy.filter_event` first (the ``strict`` privacy setting: what
is stored is already what may leave; applied as ``filter_checked_event``, which skips the checks
the fields passed here), so raw user ids, session ids, emails, tokens, query strings and
id-like path segments are never stored.

Fields of an event (camelCase, as in the seed's API; anything else is refused):

==============  ===========================================================================
``type``        required; an event name (``page_view``, ``action``, ``error``, ``api_call``,
                ``session_start``, ``session_end``, or any name of 1-64 letters, digits,
                ``_ . : -`` starting with a letter)
``id``          a UUID: the idempotency key (a repeated id is stored once). Default: new
``timestamp``   ISO-8601 with a time zone, at most 30 days old and 1 day ahead; default: now
``page``        the page's path or URL (anonymised: no query, fragment or ids)
``action``      an action name (name rules as ``type``); required for ``action`` events
``endpoint``    an API path or URL (anonymised); required for ``api_call`` events
``status``      an HTTP status (100-599), for ``api_call`` events
``duration``    milliseconds, a number from 0 to 10^9
``sessionId``   a random per-session id (stored only as a keyed pseudonym)
``platform``    a short label such as ``web`` or ``mobile``
``deployment``  a deployment id (name rules), for engagement per deployment
``metadata``    an object of at most 32 numbers and booleans (sensitive keys are dropped)
``error``       ``{name, message?}``: a category (name rules) and a message (redacted)
``user``        a user id; stored only as a keyed pseudonym
==============  ===========================================================================

The aggregation *context* of an event is derived here: the anonymised page of a page view,
the action of an action, the anonymised endpoint of an API call, the error's name for an
error, else the anonymised page, else nothing.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .._host import iso_millis
from ..telemetry._privacy import PrivacySettings, anonymize_url, filter_checked_event

__all__ = ["IngestError", "StoredEvent", "parse_body", "to_stored"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]{0,63}\Z")
_PLATFORM = re.compile(r"[A-Za-z0-9_.\-]{1,32}\Z")
_MAX_TEXT: Final = 2048
_MAX_METADATA: Final = 32
_MAX_PAST: Final = timedelta(days=30)
_MAX_FUTURE: Final = timedelta(days=1)
_ERROR_FIELDS: Final = frozenset({"name", "message"})
_FIELDS: Final = frozenset(
    {
        "type",
        "id",
        "timestamp",
        "page",
        "action",
        "endpoint",
        "status",
        "duration",
        "sessionId",
        "platform",
        "deployment",
        "metadata",
        "error",
        "user",
    }
)


class IngestError(Exception):
    """A request the API refuses; ``status`` is the HTTP status, ``field`` where (or ``None``).

    The message says what was found and what was expected, and never quotes a value that
    could be personal data (only types and lengths).
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _invalid(field: str, message: str) -> IngestError:
    return IngestError(400, "invalid_field", f"{field}: {message}", field)


def parse_body(body: bytes, max_batch: int) -> tuple[list[Any], bool]:
    """The events of a request body and whether it was a batch.

    Raises :class:`IngestError`: 400 for a body that is not JSON, not UTF-8, or neither an
    object nor an array, or an empty batch; 413 for a batch of more than ``max_batch``.
    """
    try:
        value = json.loads(body)
    except UnicodeDecodeError:
        raise IngestError(400, "malformed_json", "the body is not UTF-8 text", "body") from None
    except RecursionError:
        raise IngestError(400, "malformed_json", "the body is nested too deeply", "body") from None
    except ValueError as error:
        # JSONDecodeError's position helps; its message never includes the document.
        where = getattr(error, "pos", None)
        at = f" at character {where}" if isinstance(where, int) else ""
        raise IngestError(
            400, "malformed_json", f"the body is not valid JSON{at}", "body"
        ) from None
    if isinstance(value, dict):
        return [value], False
    if isinstance(value, list):
        if not value:
            raise IngestError(400, "empty_batch", "the batch holds no events", "body")
        if len(value) > max_batch:
            raise IngestError(
                413,
                "batch_too_large",
                f"the batch holds {len(value)} events; at most {max_batch} are accepted per "
                "request",
                "body",
            )
        return value, True
    raise IngestError(
        400,
        "invalid_body",
        f"the body must be an event object or an array of them, found {_kind(value)}",
        "body",
    )


def _number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(field, f"must be a number, found {_kind(value)}")
    if not (math.isfinite(value) and low <= value <= high):
        raise _invalid(field, f"must be from {low:g} to {high:g}")
    return value


def _timestamp(value: Any, field: str, now: datetime) -> datetime:
    if not isinstance(value, str):
        raise _invalid(field, f"must be an ISO-8601 date-time string, found {_kind(value)}")
    try:
        moment = datetime.fromisoformat(value) if len(value) <= 40 else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _invalid(
            field, "must be an ISO-8601 date-time with a time zone, e.g. 2026-11-23T15:00:00Z"
        )
    moment = moment.astimezone(UTC)
    if not now - _MAX_PAST <= moment <= now + _MAX_FUTURE:
        raise _invalid(field, "must be within the last 30 days (and at most 1 day ahead)")
    return moment


class StoredEvent:
    """An accepted event: its key (the event id), stored data and time."""

    __slots__ = ("data", "id", "timestamp")

    def __init__(self, id: str, data: dict[str, Any], timestamp: datetime) -> None:
        self.id = id
        self.data = data
        self.timestamp = timestamp


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def _event_id(value: Any, where: str) -> str:
    if value is None:
        return str(uuid.uuid4())
    if not isinstance(value, str):
        raise _invalid(where + "id", f"must be a UUID string, found {_kind(value)}")
    if len(value) == 36 and _CANONICAL_UUID.match(value):
        return value  # already what str(UUID(value)) gives: most clients send this form
    if len(value) <= 45:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise _invalid(where + "id", "must be a UUID, e.g. 3f0c2a52-8f7e-4b2e-9c61-0d1e2f3a4b5c")


_last_now: tuple[datetime, str] | None = None


def _now_text(now: datetime) -> str:
    """``iso_millis(now)``, remembered for the last ``now``: every event of a batch without a
    timestamp of its own shares it."""
    global _last_now
    last = _last_now
    if last is not None and last[0] is now:
        return last[1]
    text = iso_millis(now)
    _last_now = (now, text)
    return text


def to_stored(
    event: Any,
    where: str,
    *,
    now: datetime,
    settings: PrivacySettings,
    ingest: str,
    scratch: dict[tuple[str, str], str] | None = None,
) -> StoredEvent:
    """Validate one wire event and build what is stored (privacy-filtered event data).

    ``where`` prefixes field names in errors (``"[3]."`` in a batch); ``ingest`` is the id of
    the token that sent it, kept in ``source.ingest``. Raises :class:`IngestError`. The data
    is :func:`filter_event` of the event in ``TelemetryEvent.to_data()``'s shape, with
    ``url`` (the page, else the endpoint) last; the fields are checked here, so the filter's
    own checks are skipped (:func:`filter_checked_event`; a test keeps the two equal).

    ``scratch``: one dict per request, shared by its events and dropped with it: pseudonyms
    and anonymised URLs of the raw values seen in the request (a batch mostly comes from one
    session and a few pages), kept no longer than the request body holds those values anyway.
    """
    if not isinstance(event, dict):
        raise _invalid(where.rstrip(".") or "body", f"must be an object, found {_kind(event)}")
    if not event.keys() <= _FIELDS:
        # Keys are echoed only when short identifier-like names, never free text.
        first = min(event.keys() - _FIELDS)
        shown = repr(first) if _NAME.match(first) else "a key"
        raise _invalid(
            where + (first if _NAME.match(first) else "<key>"),
            f"unknown field {shown}; expected one of {', '.join(sorted(_FIELDS))}",
        )
    get = event.get
    name = get("type")
    if name is None:
        raise _invalid(where + "type", "is required (the event name, e.g. 'page_view')")
    _check_name(name, "type", where)
    event_id = _event_id(get("id"), where)
    stamp = get("timestamp")
    if stamp is None:
        moment, timestamp = now, _now_text(now)
    else:
        moment = _timestamp(stamp, where + "timestamp", now)
        timestamp = iso_millis(moment)
    # Each field is read once and checked only when present (most events have a few).
    page = get("page")
    if page is not None:
        _check_text(page, "page", where)
    action = get("action")
    if action is not None:
        _check_name(action, "action", where)
    endpoint = get("endpoint")
    if endpoint is not None:
        _check_text(endpoint, "endpoint", where)
    session = get("sessionId")
    if session is not None:
        _check_text(session, "sessionId", where, 128)
    user = get("user")
    if user is not None:
        _check_text(user, "user", where, 256)
    deployment = get("deployment")
    if deployment is not None:
        _check_name(deployment, "deployment", where)
    platform = get("platform")
    if platform is not None:
        _check_text(platform, "platform", where, 32)
        if not _PLATFORM.match(platform):
            raise _invalid(where + "platform", "must be 1-32 letters, digits, '_', '.' or '-'")
    duration = get("duration")
    if duration is not None:
        duration = _number(duration, where + "duration", 0, 1e9)
    metadata: dict[str, int | float | bool] = {}
    raw_metadata = get("metadata")
    if raw_metadata is not None:
        metadata = _metadata(raw_metadata, where)
    status = get("status")
    if status is not None:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise _invalid(where + "status", "must be an HTTP status code (an integer 100-599)")
        metadata["status"] = status
    error: dict[str, Any] | None = None
    raw_error = get("error")
    if raw_error is not None:
        error = _error(raw_error, where)
    elif name == "error":
        error = {"name": "error", "business": False}

    if name == "action" and action is None:
        raise _invalid(where + "action", "is required for 'action' events")
    if name == "api_call" and endpoint is None:
        raise _invalid(where + "endpoint", "is required for 'api_call' events")

    # anonymize_url is the filter's rule for urls; the context is made of anonymised or
    # name-checked parts, and filter_checked_event makes it safe once more all the same.
    raw_url = page if page is not None else endpoint
    url = None
    if raw_url is not None:
        url = scratch.get(("url", raw_url)) if scratch is not None else None
        if url is None:
            url = anonymize_url(raw_url)
            if scratch is not None:
                scratch["url", raw_url] = url
    context: str | None = None
    if name == "page_view" and page is not None:
        context = url
    elif name == "api_call" and endpoint is not None:
        context = url if page is None else anonymize_url(endpoint)
    elif name == "error" and error is not None:
        context = str(error["name"])
    elif action is not None:
        context = action
    elif page is not None:
        context = url

    source = {"ingest": ingest}
    if deployment is not None:
        source["deploymentId"] = deployment
    data = filter_checked_event(
        settings,
        event_id=event_id,
        name=name,
        timestamp=timestamp,
        source=source,
        user=user,
        session_id=session,
        platform=platform,
        duration_ms=duration,
        metadata=metadata,
        error=error,
        context=context,
        scratch=scratch,
    )
    if url is not None:
        data["url"] = url
    return StoredEvent(event_id, data, moment)


def _check_text(value: Any, key: str, where: str, limit: int = _MAX_TEXT) -> None:
    if not isinstance(value, str):
        raise _invalid(where + key, f"must be a string, found {_kind(value)}")
    if not value or len(value) > limit:
        raise _invalid(where + key, f"must be 1-{limit} characters, found {len(value)}")


def _check_name(value: Any, key: str, where: str) -> None:
    _check_text(value, key, where, 64)
    if not _NAME.match(value):
        raise _invalid(
            where + key,
            "must be 1-64 letters, digits, '_', '.', ':' or '-', starting with a letter",
        )


def _metadata(value: Any, where: str) -> dict[str, int | float | bool]:
    if not isinstance(value, dict):
        raise _invalid(where + "metadata", f"must be an object, found {_kind(value)}")
    if len(value) > _MAX_METADATA:
        raise _invalid(where + "metadata", f"must have at most {_MAX_METADATA} keys")
    metadata: dict[str, int | float | bool] = {}
    for key, item in value.items():
        if not _NAME.match(key):
            raise _invalid(
                f"{where}metadata", "keys must be 1-64 letters, digits, '_', '.', ':' or '-'"
            )
        if isinstance(item, bool):
            metadata[key] = item
        else:
            metadata[key] = _number(item, f"{where}metadata.{key}", -1e15, 1e15)
    return metadata


def _error(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(where + "error", f"must be an object, found {_kind(value)}")
    if not value.keys() <= _ERROR_FIELDS:
        raise _invalid(where + "error", "may only have 'name' and 'message'")
    error_name = value.get("name")
    if error_name is not None:
        _check_name(error_name, "name", where + "error.")
    message = value.get("message")
    if message is not None:
        _check_text(message, "message", where + "error.", 1000)
    error: dict[str, Any] = {"name": error_name or "error", "business": False}
    if message is not None:
        error["message"] = message
    return error
