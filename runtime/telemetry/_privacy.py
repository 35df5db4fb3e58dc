"""The privacy filter: what may leave a team database (SPEC §8 *Privacy*).

Everything that leaves a telemetry database — exports, aggregates, the HTTP query API — passes
:func:`filter_event` (an event's stored data) or :func:`filter_record` (a team-database record);
with ``PrivacySettings.strict`` the caller applies the same filter before storing. Both are
idempotent, so filtering a strictly stored event again on export changes nothing. Nothing here
raises on odd input, and nothing here logs a payload (only exception type names).

**What leaves, from an event** (``TelemetryEvent.to_data()`` shape). A field is omitted when it
is missing, ``None``, empty or of the wrong type; fields not listed here never leave.

========================  ===================================================================
``id``                    the event UUID as stored (any other id: :func:`hash_key`)
``name``                  the event name (an invalid one becomes ``"[invalid-name]"``)
``timestamp``             the ISO-8601 string as stored
``source``                scrubbed (:func:`scrub`): mod, component, starter brick, deployment
                          and run ids kept (they are not personal), labels value-redacted
``user``                  :func:`pseudonymize`: ``"u_"`` + 32 hex of a keyed HMAC-SHA256
``session_id``            a keyed pseudonym too (``"s_"`` + 32 hex): stable within an install,
                          unlinkable to the raw session id without the secret
``url``                   :func:`anonymize_url`
``platform``              value-redacted string
``duration_ms``           a finite number
``metadata``              numbers and booleans only, under keys that are not sensitive
``private_metadata``      only the keys ``allow_private[name]`` lists, each value scrubbed
                          (an allowlisted key that is itself sensitive is still dropped)
``error``                 ``{name, message, business}``: class name and message redacted,
                          ``business`` a boolean; anything else in it is dropped
``context``               what aggregates group by: a path (``/docs/[id]``) or ``METHOD
                          /path`` anonymised again with :func:`anonymize_url`, anything else
                          (an action name) value-redacted
========================  ===================================================================

**What leaves, from a record** (:func:`filter_record`): ``id`` as :func:`hash_key` (record keys
of the record brick embed the email; the keyed hash is stable so a collector can deduplicate);
``data`` — event-shaped data (a ``name`` and neither ``event`` nor ``email``) through
:func:`filter_event`, anything else (the record brick's ``{url, email, timestamp, event,
data}``) through :func:`scrub`, with a top-level ``email`` replaced by ``user``, its pseudonym;
``created_at`` and ``updated_at`` when they are ISO timestamps. ``merge_strategy`` and unknown
fields stay home.

**What never leaves**: raw users, emails and session ids; query strings, fragments, userinfo and
id-like path segments of URLs; private metadata that is not allowlisted; unknown event fields;
sensitive keys at any depth; email-, JWT-, card- and credential-shaped values under any key.

Rules, made precise:

* **URLs** (:func:`anonymize_url`, fail closed): ``http``/``https`` only, or a relative path
  starting with one ``/``; anything else (other schemes, ``//host``, unparseable text, invalid
  host or port, non-strings) is ``"[invalid-url]"``. Kept: lower-cased scheme, host (IDNA →
  punycode, lower case, trailing dot removed; IP literals normalised) and a non-default port.
  Dropped: userinfo, query, fragment and ``;params`` of each segment. Each path segment is
  judged percent-*decoded* and becomes ``[id]`` when it (1) contains ``@`` (emails, @handles);
  (2) is all digits, a UUID, or ≥ 12 hex digits; (3) contains anything :func:`redact_value`
  replaces (an email, JWT, card, credential, or an encoded URL); (4) has a *random-looking part* —
  splitting on non-alphanumerics, a part of ≥ 10 letters and digits mixing both, with both
  letter cases or ≥ 3 digits (``cus_NffrFeUfNV2Hib``); (5) is *token-shaped*: ≥ 20 characters of
  the base64/base64url/JWT alphabet ``[A-Za-z0-9_.~+=-]`` containing a letter and a digit, with
  some part mixing letters and digits; or (6) is a *compound id*: ≥ 2 parts of which at least
  half are numbers or hex strings of ≥ 4 characters containing a digit. So
  ``/profile/abc-123-def-456`` → ``/profile/[id]`` (2 of 4 parts numeric), ``user_42`` →
  ``[id]``, while ``2fa``, ``v1``, ``how-to-write-tests`` and ``getting-started`` stay. Known
  over-redaction (the safe side): slugs such as ``covid-19`` or ``ipv6-in-python-for-beginners``.
  Kept segments are re-encoded (RFC 3986 ``pchar`` minus ``@`` and ``'``), so the output never
  contains ``?``, ``#`` or ``@``.
* **Sensitive keys** (:func:`is_sensitive_key`): the key is split into words at ``-``, ``_``,
  ``.``, spaces and every other non-alphanumeric, at camelCase/PascalCase boundaries and between
  letters and digits; the key is sensitive when one word, or the concatenation of 2–3 adjacent
  words, is on the list. SPEC's list (``email password passwd pwd token secret apikey
  authorization cookie session privatekey ssn``), the brief's (``auth credential(s) passphrase
  creditcard cardnumber cvv cvc iban phone address``) and, as additions: ``key`` (seed 002's
  floor removes ``key``), ``username userid firstname lastname fullname ip ipaddr addr`` (seed
  002: names, user ids and IP addresses are never tracked), ``bearer jwt csrf xsrf otp passcode
  authorisation sessionid sessid jsessionid phpsessid telephone ccnumber birthdate dateofbirth
  dob`` (credential and identity spellings), ``privatemetadata`` (private metadata leaves only
  through :func:`filter_event`'s allowlist), and the plurals ``emails passwords secrets cookies
  apikeys privatekeys`` (collections of such things). Whole words only: ``keyboard``,
  ``monkey``, ``tokenizer`` and ``author`` do not match. Plurals not listed do not match —
  ``tokens_used``, ``sessions_count`` and ``keys_pressed`` are counts, not secrets — while
  ``session_duration`` and ``keyCode`` do. ``x-api-key``, ``refreshToken``, ``SESSION_ID``,
  ``user.email`` and ``Set-Cookie`` match. A key that itself contains a redactable value (an
  email used as a key) is dropped too.
* **Values** (:func:`redact_value`), under any key, whole or embedded in longer text, become
  ``"[redacted]"``: emails (``@`` + a dotted domain, after a non-empty local part of
  ``[\\w.%+'-]``, found even when glued to a preceding secret); JWTs (``eyJ…``, three
  dot-separated base64url parts, starting at a token boundary); payment cards (13–19 digits,
  optionally grouped by single spaces or dashes, first digit 2–6, Luhn-valid — so millisecond
  timestamps such as ``1700000000004`` never match; integers too); PEM private
  keys (to the END line, or to the end of the text if there is none); ``sk_``/``rk_``/``pk_``
  ``live_``/``test_``, ``whsec_``, ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``,
  ``github_pat_``, ``glpat-``, ``xox?-`` (Slack), ``AKIA``/``ASIA`` (AWS), ``AIza`` (Google),
  ``npm_``, ``sk-…`` (OpenAI-style), SendGrid ``SG.…`` and ``Bearer …`` credentials. URLs embedded
  in text are replaced by their anonymised form, because query strings carry tokens. The
  result is stable: redacting it again changes nothing.
* :func:`scrub` walks any JSON-like value: dict keys become strings (other key types are
  dropped), sensitive keys are removed, string values under URL-ish keys (words ``url uri href
  referrer referer``) are anonymised as URLs (so a non-URL there becomes ``"[invalid-url]"``),
  other strings redacted, tuples and sets become lists, non-finite floats ``None``,
  bytes ``"[binary]"``, dates ISO strings, other objects ``"[unsupported]"``; containers deeper
  than :data:`MAX_DEPTH` become ``"[truncated]"`` and cycles ``"[cycle]"``.

**Memory.** Labels, keys, pages and hosts repeat from event to event, so the filter remembers
results, in memos that are emptied whenever one reaches 4,096 entries and that never hold a raw
secret: they hold only text that the filter lets leave verbatim (or re-encoded) anyway — texts
:func:`redact_value` returns unchanged, URLs that are their own anonymised form, kept path
segments, hosts of URLs without userinfo, kept keys — and, for dropped keys, their salted
``hash()`` (a dropped key can hold what it names, e.g. ``/cart;jsessionid=…`` used as a key;
a hash collision can only drop a key). Whatever is redacted, replaced by ``[id]`` or
pseudonymised for what it *contains* is computed anew each time: users, session ids,
userinfo, ``;params``, id-like path segments, text with an email or a token in it.

Cost, measured on the 2-core development VM (where ``json.dumps`` of the full event below takes
~6.6 µs), with unique event and run ids: ``filter_event`` on a default-mode ``TriggerRun`` (nine
source fields, user, duration) ~6 µs, about 1× that ``json.dumps`` (was ~14 µs before the memos);
on an event with every field set — a unique URL, session, metadata, an allowlisted private key,
an error message holding an email — ~17 µs, about 2.5× (was ~29 µs). Most of the rest is the
two HMACs (~1 µs each) and text that holds something to replace (~3 µs for a message with an
email): a remembered text costs one set look-up, other text one character-class scan in C
(``_MAYBE``), and the regex pass runs only on text that may hold something to replace.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import os
import re
import secrets
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, unquote

from ._events import validate_name

if TYPE_CHECKING:
    from _hashlib import HASH

__all__ = [
    "ENV_INSTALL_SECRET",
    "INVALID_URL",
    "MAX_DEPTH",
    "REDACTED",
    "SENSITIVE_WORDS",
    "PrivacySettings",
    "anonymize_url",
    "filter_checked_event",
    "filter_event",
    "filter_record",
    "hash_key",
    "is_sensitive_key",
    "load_install_secret",
    "pseudonymize",
    "redact_value",
    "scrub",
]

log = logging.getLogger("brickrun.telemetry.privacy")

REDACTED: Final = "[redacted]"
INVALID_URL: Final = "[invalid-url]"
_ID: Final = "[id]"
MAX_DEPTH: Final = 32
"""Containers nested deeper than this are replaced by ``"[truncated]"``."""
ENV_INSTALL_SECRET: Final = "BRICKRUN_INSTALL_SECRET"

_CYCLE = "[cycle]"
_TRUNCATED = "[truncated]"
_BINARY = "[binary]"
_UNSUPPORTED = "[unsupported]"
_INVALID_NAME = "[invalid-name]"
_SECRET_BYTES = 32
_MIN_SECRET_BYTES = 16
_MAX_URL_CHARS = 32 * 1024
# The memos (see *Memory* in the module docs): entries each may hold before it is emptied, and
# the longest text remembered (longer text is rare and would make the memos large).
_MEMO_ENTRIES = 4096
_MEMO_CHARS = 256

# --- values -----------------------------------------------------------------------------------

_CREDENTIAL = (
    r"(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{8,}"
    r"|whsec_[0-9A-Za-z]{16,}"
    r"|gh[pousr]_[0-9A-Za-z]{20,}"
    r"|github_pat_[0-9A-Za-z_]{20,}"
    r"|glpat-[0-9A-Za-z_-]{20,}"
    r"|xox[abposr]-[0-9A-Za-z-]{10,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|npm_[0-9A-Za-z]{36}"
    r"|(?<![0-9A-Za-z\[\]])sk-[0-9A-Za-z_-]{20,}"
    r"|SG\.[0-9A-Za-z_-]{16,}\.[0-9A-Za-z_-]{16,}"
    r"|Bearer\s+[0-9A-Za-z._~+/-]{16,}=*"
)
_BRANCHES: Final = (
    ("url", r"[Hh][Tt][Tt][Pp][Ss]?://[^\s<>\"'`{}|\\^]+"),
    (
        "pem",
        r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)",
    ),
    ("jwt", r"(?<![0-9A-Za-z_\[\]-])eyJ[0-9A-Za-z_-]+\.[0-9A-Za-z_-]+\.[0-9A-Za-z_-]*"),
    ("credential", _CREDENTIAL),
    # The local part is found by _replacements, walking left from the "@" (see there).
    ("email", r"@[\w-]+(?:\.[\w-]+)+"),
    ("card", r"(?<![0-9\[\]])(?=(?:[0-9][ -]?){13})[0-9]+(?:[ -][0-9]+)*"),
)
# Necessary conditions, each far cheaper than the branch it guards: a branch whose condition
# fails cannot match anywhere in the text, so leaving it out of the pass changes nothing.
_CREDENTIAL_HINT = re.compile(
    r"_(?:live|test)_|whsec_|gh[pousr]_|github_pat_|glpat-|xox[abposr]-|AKIA|ASIA|AIza|npm_"
    r"|sk-|SG\.|Bearer"
)
# Every match of every branch contains one of these characters (":" of a URL, "-" of a PEM
# line, "J" of a JWT, "@" of an email, a card's digits, and "_", "-", ".", "A" or "B" in each
# credential prefix), so text without any of them needs no further look.
_MAYBE = re.compile(r"[:\-._@0-9JAB]")
_EMAIL_AT = re.compile(r"[\w.%+'-]@[\w-]")
_CARD_HINT = re.compile(r"[0-9](?:[ -]?[0-9]){12}")


def _email_possible(text: str) -> bool:
    at = text.find("@", 1)
    while at != -1:
        if _EMAIL_AT.match(text, at - 1):
            return True
        at = text.find("@", at + 1)
    return False


def _present(text: str) -> int:
    """A bit per branch of :data:`_BRANCHES` that might match ``text``: 0 for most text, after
    one character-class scan in C."""
    if _MAYBE.search(text) is None:
        return 0
    mask = 0
    if "://" in text:
        mask |= 1
    if "-----BEGIN" in text:
        mask |= 2
    if "eyJ" in text:
        mask |= 4
    if _CREDENTIAL_HINT.search(text) is not None:
        mask |= 8
    if "@" in text and _email_possible(text):
        mask |= 16
    if _CARD_HINT.search(text) is not None:
        mask |= 32
    return mask


@lru_cache(maxsize=64)
def _pattern(mask: int) -> re.Pattern[str]:
    """The branches in ``mask`` as one alternation, tried in order at each position. Every
    branch starts at a literal or behind a lookbehind, so scanning stays linear."""
    return re.compile(
        "|".join(
            f"(?P<{name}>{body})" for bit, (name, body) in enumerate(_BRANCHES) if mask >> bit & 1
        )
    )


_CARD_SEPARATOR = re.compile(r"([ -])")


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        n = ord(char) - 48
        if position % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def _is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn(digits)


def _card_int(number: int) -> bool:
    return 10**12 <= number < 10**19 and _is_card(str(number))


def _redact_cards(text: str) -> str:
    """``text`` (digit groups joined by single spaces/dashes) with every card window redacted.

    A window is one group of 13–19 digits, or several adjacent groups of 3–7 digits each;
    the longest valid window starting at each group wins.
    """
    tokens = _CARD_SEPARATOR.split(text)
    groups, separators = tokens[0::2], tokens[1::2]
    if len(groups) == 1:
        return REDACTED if _is_card(text) else text
    out: list[str] = []
    i, n = 0, len(groups)
    while i < n:
        end = 0
        if _is_card(groups[i]):
            end = i + 1
        elif 3 <= len(groups[i]) <= 7:
            digits = groups[i]
            for j in range(i + 1, n):
                if not 3 <= len(groups[j]) <= 7:
                    break
                digits += groups[j]
                if len(digits) > 19:
                    break
                if _is_card(digits):
                    end = j + 1
        if end:
            out.append(REDACTED)
            i = end
        else:
            out.append(groups[i])
            i += 1
        if i < n:
            out.append(separators[i - 1])
    return "".join(out)


_LOCAL_PUNCTUATION = frozenset("._%+'-")


def _replacements(text: str, mask: int) -> Iterator[tuple[int, int, str]]:
    """``(start, end, replacement)`` for each thing to replace in ``text``, left to right.

    One pass: a URL is consumed whole, so nothing inside its anonymised form is looked at again.
    Idempotence (``redact_value`` of its own output changes nothing) rests on two choices:
    lookbehinds also refuse ``[``/``]``, so nothing new starts right after a ``"[redacted]"``;
    and an email's local part is the run of ``[\\w.%+'-]`` left of its ``@`` that lies after
    the previous replacement (an ``@`` with no such run is not an email). Walking left from the
    ``@`` instead of a lookbehind-anchored regex keeps scanning linear *and* finds emails glued
    to a preceding secret. A card candidate that is not a card is no match and does not move
    that boundary, so a number glued to an email's local part cannot hide the email.
    """
    pattern = _pattern(mask)
    done = pos = 0
    while (match := pattern.search(text, pos)) is not None:
        start, end = match.span()
        kind = match.lastgroup
        if kind == "email":
            while start > done and (
                text[start - 1].isalnum() or text[start - 1] in _LOCAL_PUNCTUATION
            ):
                start -= 1
            while text[start] == "'":
                start += 1  # a quote may end a URL; starting here would glue onto it
            if start == match.start():
                pos = start + 1
                continue
            replacement = REDACTED
        elif kind == "url":
            replacement = anonymize_url(match.group())
        elif kind == "card":
            replacement = _redact_cards(match.group())
            if replacement == match.group():
                pos = end  # "done" stays put, so an email's local part may still reach in
                continue
        else:
            replacement = REDACTED
        yield start, end, replacement
        done = pos = end


def _exact_str(value: object) -> str | None:
    """``value`` as an exact ``str`` (subclasses copied, so overrides cannot run); ``None`` for
    anything else. Callers are typed ``str`` but the filter must survive whatever arrives."""
    if type(value) is str:
        return value
    return str.__str__(value) if isinstance(value, str) else None


_clean_texts: set[str] = set()
"""Texts :func:`redact_value` returns unchanged: labels, names and messages repeat, and these
leave verbatim anyway, so remembering them keeps nothing the output does not show."""


def _remember_clean(text: str) -> None:
    if len(text) <= _MEMO_CHARS:
        if len(_clean_texts) >= _MEMO_ENTRIES:
            _clean_texts.clear()
        _clean_texts.add(text)


def redact_value(value: str) -> str:
    """``value`` with emails, JWTs, card numbers and credentials replaced by ``"[redacted]"``
    (the whole string when it *is* one, occurrences in place otherwise) and embedded
    ``http(s)`` URLs anonymised. A non-string gives ``"[redacted]"``."""
    if type(value) is not str:
        text = _exact_str(value)
        if text is None:
            return REDACTED
        value = text
    if value in _clean_texts:
        return value
    result = _redact(value)
    if result == value:
        _remember_clean(value)
    return result


def _redact(value: str) -> str:
    """:func:`redact_value` of an exact ``str``, without the memo."""
    if len(value) == 36 and value[8] == "-" and _UUID.match(value):
        return value  # ids are the most common values; a UUID holds nothing
    try:
        mask = _present(value)
        if not mask:
            return value
        out: list[str] = []
        done = 0
        for start, end, replacement in _replacements(value, mask):
            out += (value[done:start], replacement)
            done = end
        out.append(value[done:])
        return "".join(out)
    except Exception:  # defensive: a regex or codec edge case must not let the text through
        return REDACTED


def _contains_secret(text: str) -> bool:
    mask = _present(text)
    return bool(mask) and next(_replacements(text, mask), None) is not None


# --- URLs -------------------------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+\Z")
_HEX = re.compile(r"[0-9A-Fa-f]{12,}\Z")
_UUID = re.compile(
    r"\{?[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}\}?\Z"
)
_HEX_PART = re.compile(r"(?=[A-Fa-f]*[0-9])[0-9A-Fa-f]{4,}\Z")
_PARTS = re.compile(r"[^0-9A-Za-z]+")
_TOKEN = re.compile(r"[0-9A-Za-z_.~+=-]{20,}\Z")
_HOSTNAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\Z"
)
# WHATWG treats a backslash like "/" in http(s) URLs while urlsplit does not; an authority with
# one is ambiguous, so it is refused rather than guessed.
_ABSOLUTE_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)")
_TAB_NEWLINE = {9: None, 10: None, 13: None}
_DEFAULT_PORT = {"http": 80, "https": 443}
_PCHAR_SAFE = "-._~!$&()*+,=:"  # RFC 3986 pchar without "@" and "'" (see the module docs)
_SAFE_SEGMENT = re.compile(r"[0-9A-Za-z\-._~!$&()*+,=:]*\Z")
_URL_STRIP = "".join(chr(c) for c in range(33))  # C0 controls and space, as WHATWG strips


def _is_id_segment(segment: str) -> bool:
    """True when a decoded path segment identifies something (the rules in the module docs)."""
    if segment == _ID or not segment:
        return False
    if len(segment) < 12 and segment.isalpha():
        return False  # a short word: none of the rules below can apply
    if "@" in segment or _DIGITS.match(segment) or _HEX.match(segment) or _UUID.match(segment):
        return True
    # The rules are independent, so the cheap structural ones go first: an id-like segment is
    # seldom remembered (see _anonymize_path), and most are found by one of these.
    # One pass over the parts (runs of ASCII letters and digits) for rules 4-6.
    parts = [p for p in _PARTS.split(segment) if p]
    ids = 0
    mixed = False
    for part in parts:
        if part.isalpha():
            continue  # no digit: neither random, nor mixed, nor a number or hex id
        if part.isdigit():
            ids += 1
            continue
        mixed = True
        if len(part) >= 10 and (
            not (part.islower() or part.isupper()) or sum(c.isdigit() for c in part) >= 3
        ):
            return True  # a random-looking part
        if len(part) >= 4 and _HEX_PART.match(part):
            ids += 1
    if mixed and _TOKEN.match(segment):
        return True
    if len(parts) >= 2 and 2 * ids >= len(parts):
        return True
    # Short alphanumeric segments cannot hold anything redact_value looks for.
    return (len(segment) >= 13 or not segment.isalnum()) and _contains_secret(segment)


def _anonymize_path(path: str) -> str:
    if not path:
        return "/"
    out = []
    kept = _kept_segments
    for raw in path.split("/"):
        piece = kept.get(raw)
        if piece is not None:
            out.append(piece)
            continue
        if raw.isdigit() and raw.isascii():
            out.append(_ID)  # a number (_is_id_segment's first rule), not worth remembering
            continue
        segment = raw
        if ";" in segment:
            segment = segment.split(";", 1)[0]
        if "%" in segment:
            segment = unquote(segment, errors="replace")
        if len(segment) < 12 and segment.isalpha() and segment.isascii():
            piece = segment  # a short word (most segments): kept as it is
        elif segment == _ID or _is_id_segment(segment):
            piece = _ID
        elif _SAFE_SEGMENT.match(segment):
            piece = segment
        else:
            piece = quote(segment, safe=_PCHAR_SAFE, errors="replace")
        out.append(piece)
        if (piece != _ID or raw == _ID) and ";" not in raw and len(raw) <= _MEMO_CHARS:
            # A kept segment leaves anyway (its ";params" do not: such segments are skipped).
            if len(kept) >= _MEMO_ENTRIES:
                kept.clear()
            kept[raw] = piece
    return "/".join(out)


_kept_segments: dict[str, str] = {}
"""Path segments that are kept, by their raw text: what they become (the same text, or it
re-encoded)."""
_hosts: dict[str, str] = {}
"""Normalised ``host[:port]`` by authority, for authorities without userinfo."""


def _normal_host(authority: str) -> str | None:
    """``host[:port]`` of an authority (userinfo dropped), normalised; ``None`` if invalid."""
    if "@" in authority:
        return _parse_host(authority)  # userinfo may be a password: never remembered
    host = _hosts.get(authority)
    if host is None:
        host = _parse_host(authority)
        if host is not None and len(authority) <= _MEMO_CHARS:
            if len(_hosts) >= _MEMO_ENTRIES:
                _hosts.clear()
            _hosts[authority] = host
    return host


def _parse_host(authority: str) -> str | None:
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        end = hostport.find("]")
        if end == -1:
            return None
        address = ipaddress.IPv6Address(hostport[1:end])
        if address.scope_id:
            return None
        host, rest = f"[{address.compressed}]", hostport[end + 1 :]
        if rest and rest[0] != ":":
            return None
        port = rest[1:]
    else:
        name, _, port = hostport.partition(":")
        if not name.isascii():
            name = name.encode("idna").decode("ascii")
        host = name.lower().rstrip(".")
        if not _HOSTNAME.match(host):
            return None
    if not port:
        return host
    if not _DIGITS.match(port) or int(port) > 65535:
        return None
    return f"{host}:{int(port)}"


def anonymize_url(url: Any) -> str:
    """The anonymised form of ``url`` (rules in the module docs); ``"[invalid-url]"`` for
    anything that is not an ``http(s)`` URL or a ``/``-relative path. Never raises."""
    if type(url) is str:
        if url in _kept_urls:
            return url
    elif not isinstance(url, str):
        return INVALID_URL
    else:
        url = str.__str__(url)
    try:
        text = url.strip(_URL_STRIP)
        if not text or len(text) > _MAX_URL_CHARS:
            return INVALID_URL
        if "\t" in text or "\n" in text or "\r" in text:
            text = text.translate(_TAB_NEWLINE)  # as browsers (and urlsplit) do
        # Nothing from the first "?" or "#" on can survive: no part of the grammar holds either.
        if "?" in text:
            text = text.partition("?")[0]
        if "#" in text:
            text = text.partition("#")[0]
        anonymised = _anonymize_base(text)
    except Exception:  # unparseable (IPv6 literal, IDNA label, ...): fail closed
        return INVALID_URL
    if anonymised == url and len(url) <= _MEMO_CHARS:
        if len(_kept_urls) >= _MEMO_ENTRIES:
            _kept_urls.clear()
        _kept_urls.add(url)
    return anonymised


_kept_urls: set[str] = set()
"""URLs that are their own anonymised form (``/dashboard``, every anonymised URL): they leave
verbatim anyway. Pages repeat, and filtering stored events again finds only these."""


def _anonymize_base(text: str) -> str:
    """:func:`anonymize_url` of stripped text without a query or fragment (may raise)."""
    if not text:
        return INVALID_URL
    if text[0] == "/" and text[:2] != "//":
        return "/" + _anonymize_path(text).lstrip("/")  # "/;/x" must not become "//x"
    parts = _ABSOLUTE_URL.match(text)
    if parts is None:
        return INVALID_URL
    scheme, authority, path = parts.groups()
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORT or "\\" in authority:
        return INVALID_URL
    hostport = _normal_host(authority)
    if hostport is None:
        return INVALID_URL
    default = f":{_DEFAULT_PORT[scheme]}"
    if hostport.endswith(default):
        hostport = hostport[: -len(default)]
    return f"{scheme}://{hostport}{_anonymize_path(path)}"


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
        if len(extra.dropped) >= _MEMO_ENTRIES:
            extra.dropped.clear()
        extra.dropped.add(hash(key))
    elif len(key) <= _MEMO_CHARS:
        if len(extra.kept) >= _MEMO_ENTRIES:
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
    """True when ``key`` names something that must not leave (rules in the module docs).

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
    value redacted (rules in the module docs). Idempotent; never raises."""
    try:
        return _scrub(value, _Extra.of(extra_keys) if extra_keys else _NO_EXTRA, 0, set())
    except Exception as error:  # e.g. a Mapping whose items() raises
        log.debug("scrub replaced a value it could not walk (%s)", type(error).__name__)
        return REDACTED


# --- pseudonyms and the install secret --------------------------------------------------------

_PSEUDONYM = re.compile(r"[uks]_[0-9a-f]{32}\Z")


def _keyed(value: str, secret: bytes, domain: bytes, prefix: str) -> str:
    if len(value) == 34 and value[0] == prefix[0] and _PSEUDONYM.match(value):
        return value  # already pseudonymous: keeps filter_event idempotent (strict mode)
    inner, outer = _hmac_pads(secret, domain)
    keyed = inner.copy()
    keyed.update(value.encode("utf-8", "surrogatepass"))
    final = outer.copy()
    final.update(keyed.digest())
    return prefix + final.hexdigest()[:32]


_IPAD: Final = bytes(b ^ 0x36 for b in range(256))
_OPAD: Final = bytes(b ^ 0x5C for b in range(256))
_SHA256_BLOCK: Final = 64


@lru_cache(maxsize=16)
def _hmac_pads(secret: bytes, domain: bytes) -> tuple[HASH, HASH]:
    """HMAC-SHA256 (RFC 2104) keyed with ``secret``, as its two SHA-256 states: the inner one
    already past the key pad and the domain prefix, the outer one past the key pad. Copying
    them per value gives ``hmac.new(secret, domain + b"\\x00" + value, "sha256")`` for half the
    cost of copying an ``hmac.HMAC`` (a test pins the equality)."""
    key = secret if len(secret) <= _SHA256_BLOCK else hashlib.sha256(secret).digest()
    key = key.ljust(_SHA256_BLOCK, b"\x00")
    inner = hashlib.sha256(key.translate(_IPAD))
    inner.update(domain + b"\x00")
    return inner, hashlib.sha256(key.translate(_OPAD))


def pseudonymize(user: str | None, secret: bytes) -> str | None:
    """``"u_"`` + 32 hex characters of HMAC-SHA256(secret, user); ``None`` stays ``None``.

    Stable for one secret, unrelated across secrets, and not reproducible by hashing the raw
    value without the secret. Emails are compared case-insensitively (``Alice@X.com`` and
    ``alice@x.com`` are one user). An existing pseudonym is returned unchanged.
    """
    if user is None:
        return None
    text = str(user).strip()
    if "@" in text:
        text = text.lower()
    return _keyed(text, secret, b"brickrun:user", "u_")


def hash_key(key: str, secret: bytes) -> str:
    """``"k_"`` + 32 hex characters of HMAC-SHA256(secret, key): how a record key leaves.

    Stable for one secret so a collector can deduplicate; an existing key hash is returned
    unchanged.
    """
    return _keyed(str(key), secret, b"brickrun:key", "k_")


def _session_pseudonym(session_id: str, secret: bytes) -> str:
    return _keyed(session_id, secret, b"brickrun:session", "s_")


def _default_secret_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("brickrun")) / "install-secret"


def _parse_secret(text: str, origin: str) -> bytes:
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError:
        secret = b""
    if len(secret) < _MIN_SECRET_BYTES:
        # The value itself is never part of a message.
        raise ValueError(
            f"{origin} is not a valid install secret: expected at least {_MIN_SECRET_BYTES} "
            f"bytes written as hex (64 hex characters for a generated one)"
        )
    return secret


def load_install_secret(path: str | os.PathLike[str] | None = None) -> bytes:
    """The install's HMAC key for pseudonyms and key hashes.

    ``BRICKRUN_INSTALL_SECRET`` (hex) overrides everything. Otherwise the secret is read from
    ``path`` (default ``platformdirs.user_data_dir("brickrun")/install-secret``), which is
    created once with 32 random bytes as hex, mode 0600, atomically (a concurrent first run
    reads the winner's secret). A malformed secret raises :class:`ValueError` rather than
    being replaced, which would silently change every pseudonym. The secret is never logged.
    """
    from_env = os.environ.get(ENV_INSTALL_SECRET, "")
    if from_env.strip():
        return _parse_secret(from_env, ENV_INSTALL_SECRET)
    target = Path(path) if path is not None else _default_secret_path()
    if not target.exists():
        _create_secret(target)
    return _parse_secret(target.read_text(encoding="ascii", errors="replace"), str(target))


def _create_secret(target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_bytes(_SECRET_BYTES).hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, target)  # atomic and never overwrites: the first writer wins
            log.info("created the install secret at %s", target)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)


# --- memos -----------------------------------------------------------------------------------


def _memos() -> list[set[str] | set[int] | dict[str, Any]]:
    """Every process-wide memo (see *Memory* in the module docs; each :class:`PrivacySettings`
    with extra sensitive keys has one more): what the memory tests inspect."""
    return [_clean_texts, _kept_urls, _kept_segments, _hosts, _key_verdicts, _dropped_keys]


def _forget() -> None:
    """Empty every process-wide memo (results stay the same, only slower for a while)."""
    for memo in _memos():
        memo.clear()


# --- settings and the filters -----------------------------------------------------------------


@dataclass(frozen=True)
class PrivacySettings:
    """How the filter treats one install's data.

    ``install_secret``: the HMAC key (:func:`load_install_secret`; at least 16 bytes; not in
    ``repr``). ``allow_private``: event name → ``private_metadata`` keys allowed to leave (their
    values are still scrubbed). ``extra_sensitive_keys``: more key names, matched like the
    built-in list. ``strict``: the recorder applies :func:`filter_event` before storing too.
    """

    install_secret: bytes = field(repr=False)
    allow_private: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    extra_sensitive_keys: frozenset[str] = frozenset()
    strict: bool = False
    _extra: _Extra = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        secret = self.install_secret
        if not isinstance(secret, bytes) or len(secret) < _MIN_SECRET_BYTES:
            found = f"{len(secret)} bytes" if isinstance(secret, bytes) else type(secret).__name__
            raise ValueError(
                f"install_secret must be at least {_MIN_SECRET_BYTES} bytes (found {found}); "
                "use load_install_secret()"
            )
        allowed: dict[str, frozenset[str]] = {}
        given: Mapping[str, object] = self.allow_private
        for name, keys in given.items():
            validate_name(name)
            if (
                isinstance(keys, str)
                or not isinstance(keys, Iterable)
                or not all(isinstance(k, str) for k in keys)
            ):
                raise ValueError(
                    f"allow_private[{name!r}] must be a collection of private_metadata key "
                    f"names (found {type(keys).__name__}), e.g. frozenset({{'query'}})"
                )
            allowed[name] = frozenset(keys)
        extra_keys: object = self.extra_sensitive_keys
        if isinstance(extra_keys, str) or not isinstance(extra_keys, Iterable):
            raise ValueError(
                "extra_sensitive_keys must be a collection of key names, e.g. frozenset({'tenant'})"
            )
        extra = frozenset(str(k) for k in extra_keys)
        object.__setattr__(self, "allow_private", MappingProxyType(allowed))
        object.__setattr__(self, "extra_sensitive_keys", extra)
        object.__setattr__(self, "_extra", _Extra.of(extra))


_ISO_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?\Z"
)


def _timestamp(value: Any) -> str | None:
    return value if isinstance(value, str) and _ISO_TIMESTAMP.match(value) else None


def _event_name(value: Any) -> str:
    try:
        return validate_name(value)
    except ValueError:
        return _INVALID_NAME


def _identity(value: Any) -> str | None:
    """A user or session id as text (``None`` when absent or not a string or integer)."""
    if isinstance(value, str):
        return str.__str__(value) or None
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(value)
    return None


def _number(value: Any) -> int | float | None:
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _metadata(value: Any, extra: _Extra) -> dict[str, int | float | bool]:
    out: dict[str, int | float | bool] = {}
    if value is None or not _is_mapping(value):
        return out
    verdicts = extra.kept
    for raw_key, item in value.items():
        key = raw_key if type(raw_key) is str else _json_key(raw_key)
        if key is None:
            continue
        verdict = verdicts.get(key)
        if verdict is None:
            verdict = _key_verdict(key, extra)
        if verdict == _DROP:
            continue
        kind = type(item)
        if kind is bool:
            out[key] = item
        elif kind is float:
            if math.isfinite(item):
                out[key] = item
        elif kind is int:
            if math.isfinite(item) and not _card_int(item):  # isfinite raises beyond floats
                out[key] = item
        elif isinstance(item, bool):
            out[key] = bool(item)
        else:
            number = _number(item)
            if number is not None and not (isinstance(number, int) and _card_int(number)):
                out[key] = number
    return out


def _private(value: Any, allowed: frozenset[str], extra: _Extra) -> dict[str, Any]:
    if not allowed or not _is_mapping(value):
        return {}
    return {
        key: _scrub(value[key], extra, 1, set())
        for key in sorted(allowed)
        if key in value and _key_verdict(key, extra) != _DROP
    }


def _error(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"message": redact_value(value)}
    if not _is_mapping(value):
        return None
    out: dict[str, Any] = {}
    name, message, business = value.get("name"), value.get("message"), value.get("business")
    if isinstance(name, str):
        out["name"] = redact_value(name)
    if isinstance(message, str):
        out["message"] = redact_value(message)
    if isinstance(business, bool):
        out["business"] = business
    return out or None


_METHOD_AND_PATH = re.compile(r"([A-Z]{3,7}) (/.*)", re.DOTALL)


def _context(value: Any) -> str | None:
    """An aggregation context (an anonymised page, ``METHOD /path`` or an action name), made
    safe again: paths anonymised, anything else redacted."""
    if not isinstance(value, str) or not value:
        return None
    text = str.__str__(value)
    if text.startswith("/"):
        return anonymize_url(text)
    method_and_path = _METHOD_AND_PATH.fullmatch(text)
    if method_and_path is not None:
        return f"{method_and_path[1]} {anonymize_url(method_and_path[2])}"
    return redact_value(text)


def _filter_event(data: Mapping[str, Any], settings: PrivacySettings) -> dict[str, Any]:
    # Fields in the documented order; one that comes out None, {} or "" is left out.
    secret, extra = settings.install_secret, settings._extra
    get = data.get
    out: dict[str, Any] = {}
    event_id = get("id")
    if isinstance(event_id, str) and _UUID.match(event_id):
        out["id"] = str.__str__(event_id)
    elif event_id is not None:
        out["id"] = hash_key(str(_json_key(event_id) or REDACTED), secret)
    name = None
    if "name" in data:
        name = out["name"] = _event_name(data["name"])
    timestamp = _timestamp(get("timestamp"))
    if timestamp is not None:
        out["timestamp"] = timestamp
    source = get("source")
    if source is not None and _is_mapping(source):
        scrubbed = _scrub(source, extra, 0, set())
        if scrubbed != {}:
            out["source"] = scrubbed
    user = _identity(get("user"))
    if user is not None:
        out["user"] = pseudonymize(user, secret)
    session = _identity(get("session_id"))
    if session is not None:
        out["session_id"] = _session_pseudonym(session, secret)
    url = get("url")
    if url is not None:
        out["url"] = anonymize_url(url)
    platform = get("platform")
    if isinstance(platform, str):
        platform = redact_value(platform)
        if platform:
            out["platform"] = platform
    duration = _number(get("duration_ms"))
    if duration is not None:
        out["duration_ms"] = duration
    metadata = _metadata(get("metadata"), extra)
    if metadata:
        out["metadata"] = metadata
    allowed = settings.allow_private.get(name) if name else None
    if allowed:
        private = _private(get("private_metadata"), allowed, extra)
        if private:
            out["private_metadata"] = private
    error = _error(get("error"))
    if error:
        out["error"] = error
    context = _context(get("context"))
    if context:
        out["context"] = context
    return out


def filter_checked_event(
    settings: PrivacySettings,
    *,
    event_id: str,
    name: str,
    timestamp: str,
    source: Mapping[str, str],
    user: str | None = None,
    session_id: str | None = None,
    platform: str | None = None,
    duration_ms: float | None = None,
    metadata: Mapping[str, float | bool] | None = None,
    error: Mapping[str, Any] | None = None,
    context: str | None = None,
) -> dict[str, Any]:
    """:func:`filter_event` of the event with these fields (and neither ``url`` nor private
    metadata), for fields already known to be well-formed: the checks they would pass are
    skipped, every rule that could change them is applied.

    Well-formed: ``event_id`` a UUID, ``name`` a valid event name, ``timestamp`` ISO-8601,
    ``source`` string values, ``user``/``session_id``/``platform``/``context`` non-empty
    strings, ``duration_ms`` and ``metadata`` values finite numbers or booleans, ``error``
    string ``name``/``message`` and a boolean ``business``. The ingest path's filter; a test
    holds it equal to :func:`filter_event` on such events. Raises nothing for such input.
    """
    secret, extra = settings.install_secret, settings._extra
    out: dict[str, Any] = {"id": event_id, "name": name, "timestamp": timestamp}
    kept: dict[str, Any] = {}
    for key, value in source.items():
        verdict = _key_verdict(key, extra)
        if verdict != _DROP:
            kept[key] = anonymize_url(value) if verdict == _URL else redact_value(value)
    if kept:
        out["source"] = kept
    if user is not None:
        out["user"] = pseudonymize(user, secret)
    if session_id is not None:
        out["session_id"] = _session_pseudonym(session_id, secret)
    if platform is not None:
        out["platform"] = redact_value(platform)
    if duration_ms is not None:
        out["duration_ms"] = duration_ms
    if metadata:
        numbers = _metadata(metadata, extra)
        if numbers:
            out["metadata"] = numbers
    if error is not None:
        redacted = _error(error)
        if redacted:
            out["error"] = redacted
    if context is not None:
        out["context"] = _context(context)
    return out


def filter_event(data: Mapping[str, Any], settings: PrivacySettings) -> dict[str, Any]:
    """What may leave of an event's stored data (see the module docs). Never raises: input it
    cannot read gives ``{}``."""
    given: object = data
    if not isinstance(given, Mapping):
        return {}
    try:
        return _filter_event(given, settings)
    except Exception as error:
        log.warning("privacy filter exported nothing for an event (%s)", type(error).__name__)
        return {}


def _is_event_shaped(data: Any) -> bool:
    """An event has a ``name`` and neither of the record brick's ``event`` and ``email``; the
    filtered form of an event keeps its ``name``, so the choice is the same when filtering
    again."""
    return (
        isinstance(data, Mapping) and "name" in data and "event" not in data and "email" not in data
    )


def _filter_data(data: Any, settings: PrivacySettings) -> Any:
    if _is_event_shaped(data):
        return _filter_event(data, settings)
    body = _scrub(data, settings._extra, 0, set())
    if isinstance(data, Mapping) and isinstance(body, dict) and "user" not in body:
        email = _identity(data.get("email"))
        if email is not None:
            body["user"] = pseudonymize(email, settings.install_secret)
    return body


def filter_record(record: Mapping[str, Any], settings: PrivacySettings) -> dict[str, Any]:
    """What may leave of a team-database record ``{id, data, ...}`` (see the module docs).
    Never raises: input it cannot read gives ``{}``."""
    given: object = record
    if not isinstance(given, Mapping):
        return {}
    try:
        record = given
        out: dict[str, Any] = {}
        key = record.get("id")
        if key is not None:
            out["id"] = hash_key(str(_json_key(key) or REDACTED), settings.install_secret)
        if "data" in record:
            out["data"] = _filter_data(record["data"], settings)
        for name in ("created_at", "updated_at"):
            stamp = _timestamp(record.get(name))
            if stamp is not None:
                out[name] = stamp
        return out
    except Exception as error:
        log.warning("privacy filter exported nothing for a record (%s)", type(error).__name__)
        return {}
