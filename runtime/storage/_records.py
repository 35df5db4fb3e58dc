"""What records are: their types, limits, merge strategies, argument checks and encodings.

Pure values and functions shared by the interface (:mod:`._base`), the batcher
(:mod:`._batch`) and both backends, so that every rule here holds identically on SQLite and
PostgreSQL. The checks run once per ``put`` on the event loop, so they have fast paths for the
common case (short ASCII keys, already-seen database ids).
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypedDict, cast

from ..errors import StorageError

__all__ = [
    "MAX_DATABASE_ID_CHARS",
    "MAX_KEY_BYTES",
    "MERGE_STRATEGIES",
    "DatabaseInfo",
    "DatabaseLimits",
    "Record",
    "check_database_id",
    "check_key",
    "check_strategy",
    "decode_json",
    "describe_batch",
    "encode_json",
    "encode_value",
    "format_millis",
    "format_timestamp",
    "json_size",
    "merge",
    "to_millis",
]

MERGE_STRATEGIES: tuple[str, ...] = ("replace", "shallow", "deep", "deep_append")
"""The merge strategies of ``put``, in the order the documentation lists them."""

MAX_DATABASE_ID_CHARS = 255
# Keys are limited in UTF-8 bytes, not characters: PostgreSQL's B-tree index refuses entries
# over ~2,700 bytes, and (id, key) must fit in one whatever script the key is written in.
MAX_KEY_BYTES = 1024


class Record(TypedDict):
    """A stored record, as ``put``, ``get`` and ``list_records`` return it.

    Timestamps are ISO-8601 UTC with milliseconds and ``Z`` (``2026-11-23T15:00:00.123Z``).
    """

    id: str
    data: Any
    merge_strategy: str
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class DatabaseLimits:
    """Per-database limits, stored in the store so that every process enforces the same ones.

    ``max_record_bytes`` bounds the UTF-8 size of the compact JSON encoding of a record's merged
    data. ``writes_per_second_per_user`` (``None``: unlimited) is a token bucket per user with a
    burst of ``max(1, rate)`` writes, kept per backend instance (see
    :class:`._batch.TokenBuckets`). ``retention_days`` (``None``: keep forever) is what
    ``cleanup`` enforces. Invalid values raise :class:`StorageError`.
    """

    max_record_bytes: int = 256 * 1024
    writes_per_second_per_user: float | None = None
    retention_days: int | None = None

    def __post_init__(self) -> None:
        size = self.max_record_bytes
        if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= 2**62:
            raise StorageError(
                f"max_record_bytes must be an integer of at least 2 (bytes), got {size!r}"
            )
        rate = self.writes_per_second_per_user
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or rate <= 0
        ):
            raise StorageError(
                f"writes_per_second_per_user must be a positive number or None, got {rate!r}"
            )
        days = self.retention_days
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3_000_000
        ):
            raise StorageError(f"retention_days must be a positive integer or None, got {days!r}")


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """One database as ``list_databases`` reports it."""

    name: str
    record_count: int
    limits: DatabaseLimits


# --- merging -----------------------------------------------------------------------------------


def merge(old: Any, new: Any, strategy: str) -> Any:
    """Return the value stored when ``new`` is written over ``old`` with ``strategy``.

    - ``replace``: ``new``.
    - ``shallow``: ``{**old, **new}`` when both are objects, else ``new``.
    - ``deep``: objects merged recursively; anything else (arrays included, and ``None``) in
      ``new`` replaces what ``old`` has at that place.
    - ``deep_append``: like ``deep``, but where both sides hold arrays the result is
      ``old + new``; an array meeting a non-array is replaced by the new value.

    ``old is None`` (no record yet) yields ``new`` for every strategy. Pure: neither argument is
    modified; the result may share unchanged sub-values with them. The compact JSON encoding of
    the result is never longer than those of ``old`` and ``new`` together (the batcher's size
    checks rely on that). An unknown strategy raises :class:`StorageError`.
    """
    if strategy == "replace":
        return new
    if strategy == "shallow":
        if isinstance(old, dict) and isinstance(new, dict):
            return {**old, **new}
        return new
    if strategy == "deep":
        return _merge_deep(old, new, False)
    if strategy == "deep_append":
        return _merge_deep(old, new, True)
    raise _unknown_strategy(strategy)


def _merge_deep(old: Any, new: Any, append: bool) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for name, value in new.items():
            out[name] = _merge_deep(old[name], value, append) if name in old else value
        return out
    if append and isinstance(old, list) and isinstance(new, list):
        return old + new
    return new


def _unknown_strategy(strategy: object) -> StorageError:
    accepted = ", ".join(repr(s) for s in MERGE_STRATEGIES)
    return StorageError(f"unknown merge strategy {strategy!r}; expected one of {accepted}")


# --- argument checks ---------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A NUL escape that is not itself an escaped backslash followed by "u0000".
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def check_database_id(database: object) -> str:
    """Return ``database`` if it is a usable database id, else raise :class:`StorageError`.

    An id is a non-empty string of at most 255 characters without control characters.
    """
    if not isinstance(database, str) or not database:
        raise StorageError(f"database id must be a non-empty string, got {database!r}")
    if len(database) > MAX_DATABASE_ID_CHARS:
        raise StorageError(
            f"database id is {len(database)} characters long; the limit is "
            f"{MAX_DATABASE_ID_CHARS}: {database[:40]!r}..."
        )
    if _CONTROL.search(database):
        raise StorageError(f"database id {database!r} contains a control character")
    _check_unicode(database, "database id", database)
    return database


def check_key(database: str, key: object) -> str:
    """Return ``key`` if it is a usable record key, else raise :class:`StorageError`.

    A key is a non-empty string of at most 1024 bytes in UTF-8 without NUL characters.
    """
    if type(key) is str and 0 < len(key) <= MAX_KEY_BYTES and key.isascii() and "\0" not in key:
        return key  # the common case, no encoding needed
    if not isinstance(key, str) or not key:
        raise StorageError(
            f"record key must be a non-empty string, got {key!r} (database {database!r})",
            database=database,
        )
    size = len(_check_unicode(key, "record key", database))
    if size > MAX_KEY_BYTES:
        raise StorageError(
            f"record key is {size} bytes long (UTF-8); the limit is {MAX_KEY_BYTES}: "
            f"{key[:40]!r}... (database {database!r})",
            database=database,
        )
    if "\x00" in key:
        raise StorageError(
            f"record key {key!r} contains a NUL character (database {database!r})",
            database=database,
        )
    return key


def check_strategy(strategy: object) -> str:
    """Return ``strategy`` if it is one of :data:`MERGE_STRATEGIES`, else raise."""
    if not isinstance(strategy, str) or strategy not in MERGE_STRATEGIES:
        raise _unknown_strategy(strategy)
    return strategy


def _check_unicode(text: str, what: str, database: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise StorageError(
            f"{what} {text[:40]!r} is not valid Unicode (it contains a lone surrogate)",
            database=database,
        ) from None


# --- JSON ---------------------------------------------------------------------------------------


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json.dumps builds a new C encoder on every call; building it once halves the cost of encoding
# small values. No circular-reference bookkeeping: a cycle ends in RecursionError instead.
try:
    from _json import make_encoder

    _encode_chunks: Callable[[Any, int], Any] | None = make_encoder(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
except ImportError:  # not CPython
    _encode_chunks = None
_encode_fallback = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False
).encode


# Numbers written so that PostgreSQL's JSONB gives back what SQLite's text does: JSONB keeps a
# number's decimal digits, not its spelling, and prints 1e+16 as 10000000000000000 (which reads
# back as an int) and -0.0 as 0.0. Strings are matched only to be skipped.
_JSONB_UNSAFE_NUMBER = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?e\+\d+|-0\.0(?![\d.e])')


def _jsonb_safe_number(match: re.Match[str]) -> str:
    token = match.group()
    if token[0] == '"':
        return token
    if token == "-0.0":
        return "0.0"
    return f"{int(float(token))}.0"  # exact: a float this large is an integer


def encode_json(value: Any) -> str:
    """Compact JSON (UTF-8 text, no NaN), the encoding used for storage and every size.

    Floats of 1e16 and more are written out in digits with ``.0`` and ``-0.0`` as ``0.0``, so
    that they read back as the same floats from either backend.
    """
    text = _encode_fallback(value) if _encode_chunks is None else "".join(_encode_chunks(value, 0))
    if "e+" in text or "-0.0" in text:
        text = _JSONB_UNSAFE_NUMBER.sub(_jsonb_safe_number, text)
    return text


# The C scanner json.loads uses, minus its whitespace handling: ~3x faster on small texts.
_scan_json = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))


def decode_json(text: str) -> Any:
    """Decode a JSON text that starts with its value (all texts stored here do)."""
    try:
        return _scan_json(text, 0)[0]
    except StopIteration as stop:
        raise ValueError(f"invalid JSON at character {stop.value}: {text[:40]!r}") from None


def json_size(text: str) -> int:
    """The UTF-8 size in bytes of an encoded JSON text."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def encode_value(database: str, key: str, value: object) -> tuple[str, int]:
    """Check that ``value`` is a JSON object; return its compact JSON text and UTF-8 size.

    The batcher stores that text and decodes it into a private copy, so what ``put`` returns is
    what a later ``get`` returns (tuples become lists, non-string object keys become strings).
    Strings may not contain NUL characters or lone surrogates on either backend, because
    PostgreSQL's JSONB cannot store them.
    """
    if not isinstance(value, dict):
        raise StorageError(
            f"value of record {key!r} in database {database!r} must be a JSON object "
            f"(a dict), got {type(value).__name__}",
            database=database,
        )
    try:
        text = encode_json(value)
    except (TypeError, ValueError) as error:
        raise StorageError(
            f"value of record {key!r} in database {database!r} is not JSON: {error}",
            database=database,
        ) from None
    except RecursionError:
        raise StorageError(
            f"value of record {key!r} in database {database!r} is not JSON: it is nested too "
            "deeply or contains itself",
            database=database,
        ) from None
    if text.isascii():
        if "\\u0000" in text and _NUL_ESCAPE.search(text):
            raise StorageError(
                f"value of record {key!r} in database {database!r} contains a NUL character",
                database=database,
            )
        return text, len(text)
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise StorageError(
            f"value of record {key!r} in database {database!r} contains a NUL character",
            database=database,
        )
    try:
        return text, len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise StorageError(
            f"value of record {key!r} in database {database!r} is not valid Unicode "
            "(it contains a lone surrogate)",
            database=database,
        ) from None


def describe_batch(size: int) -> str:
    """``a batch of 3 puts`` / ``a batch of 1 put``, for error messages."""
    return f"a batch of {size} put{'' if size == 1 else 's'}"


# --- timestamps --------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_millis(now: datetime | None) -> int:
    """``now`` as whole milliseconds since the epoch; the current time if ``None``.

    A naive datetime means UTC. Anything but a datetime raises :class:`StorageError`.
    """
    if now is None:
        return time.time_ns() // 1_000_000
    if not isinstance(now, datetime):
        raise StorageError(f"now must be a datetime or None, got {now!r}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (now - _EPOCH) // _MS


def format_millis(millis: int) -> str:
    """``2026-11-23T15:00:00.123Z``: the only timestamp format records use (UTC, ms, Z)."""
    seconds, ms = divmod(millis, 1000)
    return f"{_format_second(seconds)}.{ms:03d}Z"


# Every put formats its time, and events' times are rarely in the same millisecond but mostly
# in the same second: caching per second turns a datetime round trip into an f-string.
@lru_cache(maxsize=256)
def _format_second(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).replace(tzinfo=None).isoformat()


def format_timestamp(moment: datetime) -> str:
    """Format a datetime (naive means UTC) like :func:`format_millis`, truncating to ms."""
    # Through format_millis: a third of the cost of isoformat, which PostgreSQL's reads pay
    # twice per record.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_millis((moment - _EPOCH) // _MS)
