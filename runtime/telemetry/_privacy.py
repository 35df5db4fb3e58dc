"""The privacy filter: what may leave a team database (SPEC §8 *Privacy*).

Everything that leaves a telemetry database — exports, aggregates, the HTTP query API — passes
:func:`filter_event` (an event's stored data) or :func:`filter_record` (a team-database record);
with ``PrivacySettings.strict`` the caller applies the same filter before storing. Both are
idempotent, so filtering a strictly stored event again on export changes nothing. Nothing here
raises on odd input, and nothing here logs a payload (only exception type names).

This module holds the settings and the event and record filters and re-exports the parts, each
in a module of its own: :mod:`._redact` (text and URLs), :mod:`._scrub` (keys and any value),
:mod:`._pseudonyms` (keyed hashes and the install secret).

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

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._events import validate_name
from ._pseudonyms import (
    ENV_INSTALL_SECRET,
    MIN_SECRET_BYTES,
    _session_pseudonym,
    _user_pseudonym,
    hash_key,
    load_install_secret,
    pseudonymize,
)
from ._redact import (
    _UUID,
    INVALID_URL,
    REDACTED,
    _card_int,
    _clean_texts,
    _hosts,
    _kept_segments,
    _kept_urls,
    anonymize_url,
    redact_value,
)
from ._scrub import (
    _DROP,
    _KEEP,
    _URL,
    MAX_DEPTH,
    SENSITIVE_WORDS,
    _dropped_keys,
    _Extra,
    _int_text,
    _json_key,
    _key_verdict,
    _key_verdicts,
    _scrub,
    is_sensitive_key,
    scrub,
)

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

_INVALID_NAME = "[invalid-name]"


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
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            found = f"{len(secret)} bytes" if isinstance(secret, bytes) else type(secret).__name__
            raise ValueError(
                f"install_secret must be at least {MIN_SECRET_BYTES} bytes (found {found}); "
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


def _scratched(
    scratch: dict[tuple[str, str], str] | None,
    kind: str,
    raw: str,
    secret: bytes,
    pseudonym: Callable[[str, bytes], str],
) -> str:
    """``pseudonym(raw, secret)``, computed once per request when the caller keeps a scratch
    dict (dropped with the request, so raw values never outlive it)."""
    if scratch is None:
        return pseudonym(raw, secret)
    found = scratch.get((kind, raw))
    if found is None:
        found = scratch[kind, raw] = pseudonym(raw, secret)
    return found


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
    scratch: dict[tuple[str, str], str] | None = None,
) -> dict[str, Any]:
    """:func:`filter_event` of the event with these fields (and neither ``url`` nor private
    metadata), for fields already known to be well-formed: the checks they would pass are
    skipped, every rule that could change them is applied.

    Well-formed: ``event_id`` a UUID, ``name`` a valid event name, ``timestamp`` ISO-8601,
    ``source`` string values, ``user``/``session_id``/``platform``/``context`` non-empty
    strings, ``duration_ms`` and ``metadata`` values finite numbers or booleans, ``error``
    string ``name``/``message`` and a boolean ``business``. The ingest path's filter; a test
    holds it equal to :func:`filter_event` on such events. Raises nothing for such input.

    ``scratch``: a dict the caller makes for one request and drops with it, in which the
    pseudonyms of the users and sessions seen are kept under their raw values, so that a batch
    from one session pays one HMAC. It holds raw ids exactly as long as the request body that
    holds them anyway, which is why it is not a memo of this module (see *Memory*).
    """
    secret, extra = settings.install_secret, settings._extra
    out: dict[str, Any] = {"id": event_id, "name": name, "timestamp": timestamp}
    kept: dict[str, Any] = {}
    verdicts, clean = extra.kept, _clean_texts  # the memos, read inline: this runs per event
    for key, value in source.items():
        verdict = verdicts.get(key)
        if verdict is None:
            verdict = _key_verdict(key, extra)
        if verdict == _KEEP:
            kept[key] = value if value in clean else redact_value(value)
        elif verdict == _URL:
            kept[key] = anonymize_url(value)
    if kept:
        out["source"] = kept
    if user is not None:
        out["user"] = _scratched(scratch, "u", user, secret, _user_pseudonym)
    if session_id is not None:
        out["session_id"] = _scratched(scratch, "s", session_id, secret, _session_pseudonym)
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
