"""Text made safe: :func:`redact_value` (secrets in any text) and :func:`anonymize_url`.

The two live together because each needs the other: text may embed URLs, and a URL path
segment is an id when it holds anything :func:`redact_value` replaces. The rules, and what
the memos here may remember, are in :mod:`._privacy`'s docs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, Final
from urllib.parse import quote, unquote

__all__ = ["INVALID_URL", "REDACTED", "anonymize_url", "redact_value"]

REDACTED: Final = "[redacted]"
INVALID_URL: Final = "[invalid-url]"
_ID: Final = "[id]"
_MAX_URL_CHARS = 32 * 1024
# The memos (see *Memory* in the privacy docs): entries each may hold before it is emptied, and
# the longest text remembered (longer text is rare and would make the memos large).
MEMO_ENTRIES: Final = 4096
MEMO_CHARS: Final = 256

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
    if len(text) <= MEMO_CHARS:
        if len(_clean_texts) >= MEMO_ENTRIES:
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
_PCHAR_SAFE = "-._~!$&()*+,=:"  # RFC 3986 pchar without "@" and "'" (see the privacy docs)
_SAFE_SEGMENT = re.compile(r"[0-9A-Za-z\-._~!$&()*+,=:]*\Z")
_URL_STRIP = "".join(chr(c) for c in range(33))  # C0 controls and space, as WHATWG strips


def _is_id_segment(segment: str) -> bool:
    """True when a decoded path segment identifies something (the rules in the privacy docs)."""
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
        if (piece != _ID or raw == _ID) and ";" not in raw and len(raw) <= MEMO_CHARS:
            # A kept segment leaves anyway (its ";params" do not: such segments are skipped).
            if len(kept) >= MEMO_ENTRIES:
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
        if host is not None and len(authority) <= MEMO_CHARS:
            if len(_hosts) >= MEMO_ENTRIES:
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
    """The anonymised form of ``url`` (rules in the privacy docs); ``"[invalid-url]"`` for
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
    if anonymised == url and len(url) <= MEMO_CHARS:
        if len(_kept_urls) >= MEMO_ENTRIES:
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
