"""Sensitive keys and :func:`scrub`: any JSON-like value made safe to leave.

The rules, and what the memos here may remember, are in :mod:`._privacy`'s docs.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final

from ._redact import (
    MEMO_CHARS,
    MEMO_ENTRIES,
    REDACTED,
    _card_int,
    _clean_texts,
    _exact_str,
    _redact,
    anonymize_url,
    redact_value,
)

__all__ = ["MAX_DEPTH", "SENSITIVE_WORDS", "is_sensitive_key", "scrub"]

log = logging.getLogger("brickrun.telemetry.privacy")

MAX_DEPTH: Final = 32
"""Containers nested deeper than this are replaced by ``"[truncated]"``."""
_CYCLE = "[cycle]"
_TRUNCATED = "[truncated]"
_BINARY = "[binary]"
_UNSUPPORTED = "[unsupported]"

# --- keys -------------------------------------------------------------------------------------

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\d_A-Za-z]+")
_MAX_SPAN = 3
SENSITIVE_WORDS: Final = frozenset(
    {
        # SPEC §8
        *("email", "password", "passwd", "pwd", "token", "secret", "apikey"),
        *("authorization", "cookie", "session", "privatekey", "ssn"),
        # the brief
        *("auth", "credential", "credentials", "passphrase", "creditcard", "cardnumber"),
        *("cvv", "cvc", "iban", "phone", "address"),
        # seed 002's floor: "key"; user names, user ids and IP addresses are never tracked
        *("key", "username", "userid", "firstname", "lastname", "fullname"),
        *("ip", "ipaddr", "addr"),
        # more spellings of credentials and identity
        *("bearer", "jwt", "csrf", "xsrf", "otp", "passcode", "authorisation"),
        *("sessionid", "sessid", "jsessionid", "phpsessid", "telephone", "ccnumber"),
        *("birthdate", "dateofbirth", "dob"),
        # leaves only through filter_event's allowlist, never as part of scrubbed data
        "privatemetadata",
        # collections of the above (other plurals name counts: tokens_used, sessions_count)
        *("emails", "passwords", "secrets", "cookies", "apikeys", "privatekeys"),
    }
)
"""Compact (lower-case, separator-free) words and word sequences that make a key sensitive."""
_URL_WORDS = frozenset({"url", "uri", "href", "referrer", "referer"})

_KEEP, _DROP, _URL = 0, 1, 2


def _words(key: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(key)]


def _words_match(words: list[str], table: Collection[str], span: int) -> bool:
    for i in range(len(words)):
        compact = ""
        for word in words[i : i + span]:
            compact += word
            if compact in table:
                return True
    return False


_key_verdicts: dict[str, int] = {}
"""Verdicts of kept keys (``_KEEP``, ``_URL``) with the built-in list alone: such keys leave."""
_dropped_keys: set[int] = set()
"""``hash()`` of keys dropped with the built-in list alone. Not the keys: a dropped key may
hold what it names (``/cart;jsessionid=…`` used as a key). ``hash`` is salted per process, and
a collision can only drop a key, never keep one."""


@dataclass(frozen=True, slots=True)
class _Extra:
    """Extra sensitive keys, compiled: their compact forms, the longest word span, and the
    verdicts found with them (remembered as :data:`_key_verdicts` and :data:`_dropped_keys`
    are)."""

    compact: frozenset[str]
    span: int
    kept: dict[str, int] = field(default_factory=dict, compare=False, hash=False)
    dropped: set[int] = field(default_factory=set, compare=False, hash=False)

    @classmethod
    def of(cls, keys: Iterable[str]) -> _Extra:
        split = [_words(k) for k in keys if isinstance(k, str)]
        split = [w for w in split if w]
        if not split:
            return _NO_EXTRA
        return cls(frozenset("".join(w) for w in split), max(len(w) for w in split))


_NO_EXTRA = _Extra(frozenset(), 0, _key_verdicts, _dropped_keys)


def _remember_verdict(extra: _Extra, key: str, verdict: int) -> None:
    if verdict == _DROP:
        if len(extra.dropped) >= MEMO_ENTRIES:
            extra.dropped.clear()
        extra.dropped.add(hash(key))
    elif len(key) <= MEMO_CHARS:
        if len(extra.kept) >= MEMO_ENTRIES:
            extra.kept.clear()
        extra.kept[key] = verdict


def _verdict(key: str) -> int:
    """A key's verdict with the built-in list alone (remembered)."""
    if key not in _clean_texts and _redact(key) != key:
        verdict = _DROP  # the key holds an email, a token, ...
    else:
        words = _words(key)
        if _words_match(words, SENSITIVE_WORDS, _MAX_SPAN):
            verdict = _DROP
        else:
            verdict = _URL if any(w in _URL_WORDS for w in words) else _KEEP
    _remember_verdict(_NO_EXTRA, key, verdict)
    return verdict


def _key_verdict(key: str, extra: _Extra) -> int:
    """``_KEEP``, ``_DROP`` or ``_URL`` (a kept key whose string values are URLs)."""
    verdict = extra.kept.get(key)
    if verdict is not None:
        return verdict
    if hash(key) in extra.dropped:
        return _DROP
    if extra is _NO_EXTRA:
        return _verdict(key)
    verdict = _key_verdicts.get(key)
    if verdict is None:
        verdict = _DROP if hash(key) in _dropped_keys else _verdict(key)
    if verdict != _DROP and _words_match(_words(key), extra.compact, extra.span):
        verdict = _DROP
    _remember_verdict(extra, key, verdict)
    return verdict


def is_sensitive_key(key: str, extra: Collection[str] = ()) -> bool:
    """True when ``key`` names something that must not leave (rules in the privacy docs).

    ``extra`` adds names, matched the same way (``"tenant_id"`` also matches ``tenantId``).
    A key containing an email, token or other redactable value is sensitive too.
    """
    text = _exact_str(key)
    if text is None:
        return True
    try:
        return _key_verdict(text, _Extra.of(extra) if extra else _NO_EXTRA) == _DROP
    except Exception:
        return True


# --- scrubbing --------------------------------------------------------------------------------


def _int_text(number: int) -> str | None:
    """Decimal text of an integer; ``None`` beyond 100 digits (Python refuses huge ones)."""
    return str(int(number)) if -(10**100) < number < 10**100 else None


def _json_key(key: Any) -> str | None:
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return _int_text(key)
    if isinstance(key, float):
        return repr(float(key)) if math.isfinite(key) else None
    if key is None:
        return "null"
    return None


_CONTAINERS: Final = (Mapping, list, tuple, set, frozenset)


def _scrub(value: Any, extra: _Extra, depth: int, active: set[int]) -> Any:
    kind = type(value)
    if kind is str:  # the common types first, by exact type: isinstance on ABCs is slow
        return redact_value(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return redact_value(value)
    if isinstance(value, int):
        number = int(value)
        return REDACTED if _card_int(number) else number
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if kind is dict or kind is list or isinstance(value, _CONTAINERS):
        if depth >= MAX_DEPTH:
            return _TRUNCATED
        marker = id(value)
        if marker in active:
            return _CYCLE
        active.add(marker)
        try:
            if kind is dict or (kind is not list and isinstance(value, Mapping)):
                return _scrub_mapping(value, extra, depth, active)
            return [_scrub(item, extra, depth + 1, active) for item in value]
        except Exception:  # a container that cannot be walked (items() raises, mutated, ...)
            return _UNSUPPORTED
        finally:
            active.discard(marker)
    if isinstance(value, bytes | bytearray | memoryview):
        return _BINARY
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        as_float = float(value) if value.is_finite() else math.nan
        return as_float if math.isfinite(as_float) else None
    if isinstance(value, uuid.UUID):
        return str(value)
    return _UNSUPPORTED


def _scrub_mapping(
    value: Mapping[Any, Any], extra: _Extra, depth: int, active: set[int]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    verdicts, clean = extra.kept, _clean_texts  # this loop is hot: the memos are read inline
    for raw_key, item in value.items():
        key = raw_key if type(raw_key) is str else _json_key(raw_key)
        if key is None:
            continue
        verdict = verdicts.get(key)
        if verdict is None:
            verdict = _key_verdict(key, extra)
        if verdict == _DROP:
            continue
        if verdict == _URL and isinstance(item, str):
            out[key] = anonymize_url(item)
        elif type(item) is str:
            out[key] = item if item in clean else redact_value(item)
        else:
            out[key] = _scrub(item, extra, depth + 1, active)
    return out


def scrub(value: Any, extra_keys: Collection[str] = ()) -> Any:
    """A JSON-safe copy of ``value`` with sensitive keys removed at any depth and every string
    value redacted (rules in the privacy docs). Idempotent; never raises."""
    try:
        return _scrub(value, _Extra.of(extra_keys) if extra_keys else _NO_EXTRA, 0, set())
    except Exception as error:  # e.g. a Mapping whose items() raises
        log.debug("scrub replaced a value it could not walk (%s)", type(error).__name__)
        return REDACTED
