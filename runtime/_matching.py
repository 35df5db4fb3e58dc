"""Comparing actual values with golden expectations: placeholders, partial matching, diffs.

Expected values are JSON-like data from a test file. Strings may hold placeholders for values
that are random or not worth pinning (``<any>``, ``<string>``, ``<number>``, ``<uuid>``,
``<timestamp>``): a whole-string placeholder tests the value's type or shape, and placeholders
inside a longer string match that part of the text. ``match`` returns, next to its verdict, the
actual value *as a diff should show it* (expected text where it matched, reduced to the keys
compared), so a diff shows only the real differences.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["PLACEHOLDERS", "SECTIONS", "compare", "is_number", "match", "match_unordered"]


_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_TIMESTAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})"
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text_matching(pattern: str) -> Callable[[Any], bool]:
    compiled = re.compile(pattern)
    return lambda value: isinstance(value, str) and compiled.fullmatch(value) is not None


# placeholder -> (test of a whole value, regular expression inside a longer string)
PLACEHOLDERS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "<any>": (lambda value: True, r".*?"),
    "<string>": (lambda value: isinstance(value, str), r".*?"),
    "<number>": (is_number, _NUMBER),
    "<uuid>": (_text_matching(_UUID), _UUID),
    "<timestamp>": (_text_matching(_TIMESTAMP), _TIMESTAMP),
}
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))


def _pattern(expected: str) -> re.Pattern[str]:
    """The regular expression of a string with placeholders in it (the rest is literal)."""
    parts: list[str] = []
    last = 0
    for found in _PLACEHOLDER.finditer(expected):
        parts.append(re.escape(expected[last : found.start()]))
        parts.append(f"(?:{PLACEHOLDERS[found.group()][1]})")
        last = found.end()
    parts.append(re.escape(expected[last:]))
    return re.compile("".join(parts), re.DOTALL)


def _same(expected: Any, actual: Any) -> bool:
    """Scalar equality as JSON sees it: ``1 == 1.0``, but ``true`` is not ``1``."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if is_number(expected) and is_number(actual):
        return bool(expected == actual) or (math.isnan(expected) and math.isnan(actual))
    return type(expected) is type(actual) and bool(expected == actual)


def match(expected: Any, actual: Any, *, partial: bool) -> tuple[bool, Any]:
    """Compare ``actual`` to ``expected``; returns ``(matches, shown)``.

    ``shown`` is what a diff should print for ``actual``: ``expected`` itself wherever it
    matched (placeholders included), the actual value elsewhere, and, with ``partial``, no keys
    that ``expected`` does not mention. ``partial`` lets objects (at any depth) have keys the
    expectation leaves out; arrays always match item by item and must have the same length.
    """
    if isinstance(expected, str) and _PLACEHOLDER.search(expected):
        if expected in PLACEHOLDERS:
            ok = PLACEHOLDERS[expected][0](actual)
        else:
            ok = isinstance(actual, str) and _pattern(expected).fullmatch(actual) is not None
        return ok, expected if ok else actual
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False, actual
        ok = True
        shown: dict[str, Any] = {}
        for key, value in expected.items():
            if key not in actual:
                ok = False
                continue
            item_ok, shown[key] = match(value, actual[key], partial=partial)
            ok = ok and item_ok
        if not partial:
            for key in actual.keys() - expected.keys():
                ok = False
                shown[key] = actual[key]
        return ok, shown
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return False, actual
        ok = len(expected) == len(actual)
        items: list[Any] = []
        for index, value in enumerate(actual):
            if index < len(expected):
                item_ok, item = match(expected[index], value, partial=partial)
                ok = ok and item_ok
                items.append(item)
            else:
                items.append(_project(value, expected[-1] if expected else None, partial))
        return ok, items
    ok = _same(expected, actual)
    return ok, expected if ok else actual


def _project(actual: Any, like: Any, partial: bool) -> Any:
    """An unexpected item as a diff shows it: reduced to the keys of a sibling expectation."""
    if partial and isinstance(actual, dict) and isinstance(like, dict) and like:
        return {key: actual[key] for key in like if key in actual} or actual
    return actual


def match_unordered(expected: list[Any], actual: list[Any]) -> tuple[bool, list[Any]]:
    """Partial matching of two lists in any order (records): a maximum bipartite matching, so
    a loose expectation never takes the only record a stricter one could match."""
    fits = [
        [j for j, item in enumerate(actual) if match(want, item, partial=True)[0]]
        for want in expected
    ]
    owner: dict[int, int] = {}  # actual index -> expected index

    def assign(i: int, seen: set[int]) -> bool:
        for j in fits[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or assign(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(expected)):
        assign(i, set())
    chosen = {i: j for j, i in owner.items()}
    spare = [j for j in range(len(actual)) if j not in owner]
    shown: list[Any] = []
    for i, want in enumerate(expected):
        if i in chosen:
            shown.append(match(want, actual[chosen[i]], partial=True)[1])
        elif spare:  # show the nearest candidate against the expectation it failed
            shown.append(match(want, actual[spare.pop(0)], partial=True)[1])
    like = expected[-1] if expected else None
    shown.extend(_project(actual[j], like, True) for j in spare)
    ok = len(owner) == len(expected) == len(actual)
    return ok, shown


SECTIONS: tuple[str, ...] = (
    "output", "error", "errors", "variables", "records", "reported", "runs", "calls", "requests",
)  # fmt: skip


def _dump(value: Any) -> list[str]:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return text.splitlines()


def compare(expect: Mapping[str, Any], actual: Mapping[str, Any]) -> str | None:
    """``None`` when every expectation holds, else a unified diff (expected → actual).

    Unstated ``error`` means "no error" and unstated ``errors`` means "no failed runs or
    background steps"; they appear in the diff only when they did not hold.
    """
    expected_doc: dict[str, Any] = {}
    actual_doc: dict[str, Any] = {}
    ok = True
    for section in SECTIONS:
        implicit = section not in expect
        if implicit and section not in ("error", "errors"):
            continue
        want = expect.get(section, None if section == "error" else [])
        if section not in actual:
            if implicit and (want is None or want == []):
                continue
            ok = False  # e.g. an output from a run that failed: nothing to show
            expected_doc[section] = want
            continue
        got = actual[section]
        if section in ("output", "variables"):
            good, shown = match(want, got, partial=False)
        elif section == "records":
            good, shown = True, {}
            for database, records in want.items():
                one, shown[database] = match_unordered(records, got.get(database, []))
                good = good and one
        elif section == "error" and want is None:
            good, shown = got is None, got
        else:
            good, shown = match(want, got, partial=True)
        if good and implicit:
            continue
        ok = ok and good
        expected_doc[section] = want
        actual_doc[section] = shown
    if ok:
        return None
    return "\n".join(
        difflib.unified_diff(
            _dump(expected_doc), _dump(actual_doc), "expected", "actual", lineterm="", n=4
        )
    )
