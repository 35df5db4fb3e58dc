"""The golden-test file format (``*.test.yaml``): checks, the editor schema, loading cases.

A test file holds one ``kind: test`` document (``apiVersion``, ``description``, ``definitions``,
``defaults``, ``tests``) and optionally more documents: helper definitions (fixtures) its cases
may use. The format is declared once, as a tree of specs that both *check* loaded data (every
problem located at ``file:line:col``, unknown keys with "did you mean") and *describe* it as JSON
Schema for editors, so the two never disagree. ``docs/testing.md`` documents it for authors.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ._clock import parse_instant
from ._definitions import DEFINITION_SUFFIXES, compile_documents
from ._matching import is_number
from ._replay import ReplayEvent, load_events, parse_events
from ._yaml import Document, SourceMap, load_file
from .errors import DefinitionError, DefinitionErrors, Location

__all__ = [
    "DEFAULT_NOW",
    "DEFAULT_TIMEOUT",
    "MISSING",
    "TEST_SUFFIXES",
    "Case",
    "CaseFile",
    "HttpMock",
    "Mock",
    "definition_files",
    "find_test_files",
    "golden_test_schema",
    "is_test_file",
    "load_test_file",
]

TEST_SUFFIXES = tuple(f".test{suffix}" for suffix in DEFINITION_SUFFIXES)
DEFAULT_NOW = "2026-01-01T00:00:00Z"
DEFAULT_TIMEOUT = 10.0  # seconds of real time per case; the virtual clock never waits
# Folders never searched for test files (besides hidden ones and virtualenvs).
_SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages"})

PathTuple = tuple[str | int, ...]


class _Missing:
    """The sentinel for "not given" (``None`` is a value a test may expect)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


_Problems = list[tuple[PathTuple, str, bool]]  # (path, message, at the key rather than value)


def _found(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        return f"the number {json.dumps(value)}"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return f"the string {text if len(text) <= 40 else text[:36] + '...' + chr(34)}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


class _Spec:
    """One node of the test-file format: checks loaded data and describes itself as JSON
    Schema (for editors), so the checks and the editor schema never disagree."""

    def check(self, value: Any, path: PathTuple, out: _Problems) -> None:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class _Leaf(_Spec):
    test: Callable[[Any], bool]
    expected: str
    json: dict[str, Any]

    def check(self, value: Any, path: PathTuple, out: _Problems) -> None:
        if not self.test(value):
            out.append((path, f"found {_found(value)}; expected {self.expected}", False))

    def schema(self) -> dict[str, Any]:
        return {**self.json, "description": self.expected}


@dataclass(frozen=True)
class _Map(_Spec):
    """A mapping with known keys (``required``; at most one key of each ``exclusive`` group)."""

    what: str
    fields: dict[str, _Spec]
    required: tuple[str, ...] = ()
    exclusive: tuple[tuple[str, ...], ...] = ()
    description: str = ""

    def check(self, value: Any, path: PathTuple, out: _Problems) -> None:
        if not isinstance(value, dict):
            out.append((path, f"found {_found(value)}; expected {self.what} (a mapping)", False))
            return
        for key in value:
            if key not in self.fields:
                close = difflib.get_close_matches(key, list(self.fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                out.append(
                    (
                        path + (key,),
                        f"unknown key {key!r} in {self.what}{hint}; expected one of: "
                        + ", ".join(self.fields),
                        True,
                    )
                )
        for key in self.required:
            if key not in value:
                out.append((path, f"missing required key {key!r} in {self.what}", False))
        for group in self.exclusive:
            present = [key for key in group if key in value]
            if len(present) > 1:
                out.append(
                    (
                        path + (present[1],),
                        f"{self.what} has both {present[0]!r} and {present[1]!r}; expected "
                        f"only one of {', '.join(repr(k) for k in group)}",
                        True,
                    )
                )
        for key, spec in self.fields.items():
            if key in value:
                spec.check(value[key], path + (key,), out)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "description": self.description or self.what,
            "properties": {key: spec.schema() for key, spec in self.fields.items()},
            "additionalProperties": False,
        }
        if self.required:
            out["required"] = list(self.required)
        clauses = [
            {"not": {"required": [a, b]}}
            for group in self.exclusive
            for i, a in enumerate(group)
            for b in group[i + 1 :]
        ]
        if clauses:
            out["allOf"] = clauses
        return out


@dataclass(frozen=True)
class _List(_Spec):
    item: _Spec
    what: str
    min_items: int = 0

    def check(self, value: Any, path: PathTuple, out: _Problems) -> None:
        if not isinstance(value, list):
            out.append((path, f"found {_found(value)}; expected {self.what}", False))
            return
        if len(value) < self.min_items:
            out.append((path, f"found an empty list; expected {self.what}", False))
        for index, item in enumerate(value):
            self.item.check(item, path + (index,), out)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "array",
            "description": self.what,
            "items": self.item.schema(),
        }
        if self.min_items:
            out["minItems"] = self.min_items
        return out


@dataclass(frozen=True)
class _Dict(_Spec):
    """A mapping of any keys to values of one kind (``records``, ``env``, ``integrations``)."""

    value: _Spec
    what: str

    def check(self, value: Any, path: PathTuple, out: _Problems) -> None:
        if not isinstance(value, dict):
            out.append((path, f"found {_found(value)}; expected {self.what}", False))
            return
        for key, item in value.items():
            self.value.check(item, path + (key,), out)

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "description": self.what,
            "additionalProperties": self.value.schema(),
        }


@dataclass(frozen=True)
class _Either(_Spec):
    """A string (a file) or a list: chosen by the value's type."""

    text: _Spec
    items: _Spec

    def check(self, value: Any, path: PathTuple, out: _Problems) -> None:
        (self.text if isinstance(value, str) else self.items).check(value, path, out)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [self.text.schema(), self.items.schema()]}


def _is_instant(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_instant(value)
    except ValueError:
        return False
    return True


def _leaf(test: Callable[[Any], bool], expected: str, **schema: Any) -> _Leaf:
    return _Leaf(test, expected, schema)


_ANY = _leaf(lambda value: True, "any value")
_OBJECT = _leaf(lambda v: isinstance(v, dict), "a mapping", type="object")
_STRING = _leaf(lambda v: isinstance(v, str), "a string", type="string")
_TEXT = _leaf(lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string", type="string")
_INSTANT = _leaf(
    _is_instant,
    "an ISO-8601 instant such as 2026-01-01T00:00:00Z (quote it: it is text)",
    type="string",
)
_SECONDS = _leaf(
    lambda v: is_number(v) and v > 0 and math.isfinite(v),
    "a positive number of seconds",
    type="number",
    exclusiveMinimum=0,
)
_STATUS = _leaf(
    lambda v: isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599,
    "an HTTP status code (100-599)",
    type="integer",
    minimum=100,
    maximum=599,
)
_NAMED = _leaf(
    lambda v: isinstance(v, list) and all(isinstance(x, str | dict) for x in v),
    "a list of names or {id, name} mappings",
    type="array",
)


def _optional_text(expected: str) -> _Leaf:
    return _leaf(
        lambda v: v is None or isinstance(v, str), f"{expected}, or null", type=["string", "null"]
    )


_ERROR = _Map(
    "an error",
    {
        "name": _leaf(
            lambda v: isinstance(v, str),
            "the error's name, e.g. BusinessError (placeholders allowed)",
            type="string",
        ),
        "message": _leaf(
            lambda v: isinstance(v, str),
            "the error's message (placeholders allowed, e.g. 'Request failed<any>')",
            type="string",
        ),
    },
    description="an error: {name, message}; only the keys given are compared",
)
_HOST = _Map(
    "the host",
    {
        "url": _optional_text("the page URL (starts a page visit)"),
        "title": _optional_text("the page title"),
        "email": _optional_text("the signed-in user's email (signs the user in)"),
        "user": _optional_text("the signed-in user's id"),
        "groups": _NAMED,
        "organizations": _NAMED,
        "hostname": _optional_text("the host name (default localhost)"),
    },
    description="the page visit and signed-in user the case runs with (null unsets a default)",
)
_MOCK = _Map(
    "a mock",
    {
        "brick": _leaf(
            lambda v: isinstance(v, str) and bool(v), "the id of the brick to replace everywhere"
        ),
        "step": _leaf(
            lambda v: isinstance(v, str) and bool(v),
            "the path of one step to replace, as traces print it, e.g. pipeline[2] or "
            "extensionPoints[0].config.action[1]",
        ),
        "in": _leaf(
            lambda v: isinstance(v, str) and bool(v),
            "the id of the definition holding the step (default: the case's brick or mod)",
        ),
        "output": _ANY,
        "error": _ERROR,
    },
    exclusive=(("brick", "step"), ("output", "error")),
    description="a stand-in for a brick (by id) or for one step (by path): its output, or "
    "the error it raises",
)
_HTTP = _Map(
    "an HTTP mock",
    {
        "method": _leaf(lambda v: isinstance(v, str), "an HTTP method (default: any)"),
        "url": _leaf(
            lambda v: isinstance(v, str) and bool(v),
            "the request URL (placeholders allowed; without '?', any query string matches)",
        ),
        "status": _STATUS,
        "json": _ANY,
        "text": _leaf(lambda v: isinstance(v, str), "the response body as text", type="string"),
        "headers": _Dict(_STRING, "response headers"),
    },
    required=("url",),
    exclusive=(("json", "text"),),
    description="a canned HTTP response; cases never reach the network",
)
_EVENTS = _Either(
    _leaf(
        lambda v: isinstance(v, str) and bool(v),
        "an events file (JSON Lines, relative to the test file)",
        type="string",
    ),
    _List(_OBJECT, "a list of events, each like one line of an events file"),
)
_PARTIAL_ITEMS = _List(_OBJECT, "a list of mappings (each compared on the keys given)")
_EXPECT = _Map(
    "the expectations",
    {
        "output": _ANY,
        "error": _ERROR,
        "errors": _PARTIAL_ITEMS,
        "variables": _OBJECT,
        "records": _Dict(_PARTIAL_ITEMS, "records per database id, in any order"),
        "reported": _PARTIAL_ITEMS,
        "runs": _PARTIAL_ITEMS,
        "calls": _PARTIAL_ITEMS,
        "requests": _PARTIAL_ITEMS,
    },
    description="what the case must produce",
)
_SETTINGS: dict[str, _Spec] = {
    "brick": _leaf(
        lambda v: isinstance(v, str) and bool(v),
        "the brick to run: an id, or a definition file relative to the test file",
    ),
    "mod": _leaf(
        lambda v: isinstance(v, str) and bool(v),
        "the mod to activate: an id, or a definition file relative to the test file",
    ),
    "input": _ANY,
    "options": _OBJECT,
    "variables": _OBJECT,
    "now": _INSTANT,
    "host": _HOST,
    "mocks": _List(_MOCK, "a list of mocks"),
    "http": _List(_HTTP, "a list of HTTP mocks"),
    "events": _EVENTS,
    "integrations": _Dict(_OBJECT, "integration configurations by integration id"),
    "env": _Dict(_STRING, "environment variables for the case"),
    "deployment": _TEXT,
    "timeout": _SECONDS,
}
_CASE = _Map(
    "a test case",
    {"name": _TEXT, **_SETTINGS, "expect": _EXPECT},
    required=("name",),
    exclusive=(("brick", "mod"),),
    description="one test case: a brick run or a mod replay, and its expectations",
)
_DEFAULTS = _Map(
    "the defaults",
    dict(_SETTINGS),
    exclusive=(("brick", "mod"),),
    description="settings every case starts from",
)
_FILE = _Map(
    "a test file",
    {
        "apiVersion": _leaf(lambda v: v == "v3", "v3", const="v3"),
        "kind": _leaf(lambda v: v == "test", "test", const="test"),
        "description": _STRING,
        "definitions": _List(
            _TEXT, "definition files or folders the cases use (relative to the test file)"
        ),
        "defaults": _DEFAULTS,
        "tests": _List(_CASE, "a non-empty list of test cases", min_items=1),
    },
    required=("apiVersion", "kind", "tests"),
    description="a brickrun test file (brickrun test)",
)


def golden_test_schema() -> dict[str, Any]:
    """A draft-07 JSON Schema of test files, for editors (the YAML language server)."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://brickrun.dev/schemas/test.json",
        "title": "brickrun test file",
        **_FILE.schema(),
    }


# -- loaded cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mock:
    """A stand-in: for every use of ``brick``, or for the one step at ``step`` (in ``in_``, the
    case's subject by default). It returns ``output`` or raises ``error``."""

    location: Location
    brick: str | None = None
    step: str | None = None
    in_: str | None = None
    output: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class HttpMock:
    """A canned response to requests whose method and URL match."""

    url: str
    method: str | None = None
    status: int = 200
    json: Any = MISSING
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Case:
    """One test case, with the file's defaults applied and paths resolved."""

    name: str
    file: str
    location: Location
    kind: str  # "brick" or "mod"
    subject: str  # a brick/mod id, or an absolute definition file path
    expect: dict[str, Any]
    input: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] | None = None
    now: datetime = field(default_factory=lambda: parse_instant(DEFAULT_NOW))
    host: dict[str, Any] = field(default_factory=dict)
    mocks: list[Mock] = field(default_factory=list)
    http: list[HttpMock] = field(default_factory=list)
    events: list[ReplayEvent] = field(default_factory=list)
    integrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    deployment: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    definitions: list[Path] = field(default_factory=list)
    fixtures: list[Document] = field(default_factory=list)

    @property
    def line(self) -> int | None:
        return self.location.line


@dataclass
class CaseFile:
    """A loaded test file: its cases, or the errors that keep any of them from running."""

    file: str
    cases: list[Case] = field(default_factory=list)
    errors: list[DefinitionError] = field(default_factory=list)


def is_test_file(path: str | os.PathLike[str]) -> bool:
    """True for ``*.test.yaml``, ``*.test.yml`` and ``*.test.json`` files."""
    return os.fspath(path).endswith(TEST_SUFFIXES)


def _resolve(base: Path, text: str) -> Path:
    return (base / text).resolve() if not os.path.isabs(text) else Path(text)


class _Loader:
    """Turns the checked ``kind: test`` document into cases; semantic problems are collected
    (located) like the structural ones."""

    def __init__(self, file: str, source: SourceMap) -> None:
        self.file = file
        self.base = Path(file).resolve().parent
        self.source = source
        self.errors: list[DefinitionError] = []

    def error(self, path: PathTuple, message: str, *, at_key: bool = False) -> None:
        locate = self.source.locate_key if at_key else self.source.locate
        error = DefinitionError(message, location=locate(path), path=path)
        if all(str(e) != str(error) for e in self.errors):  # defaults are seen by every case
            self.errors.append(error)

    def mocks(self, items: list[dict[str, Any]], path: PathTuple) -> list[Mock]:
        out = []
        for index, item in enumerate(items):
            where = path + (index,)
            if "brick" not in item and "step" not in item:
                self.error(where, "a mock needs 'brick' (an id) or 'step' (a step path)")
                continue
            if "in" in item and "step" not in item:
                self.error(where + ("in",), "'in' applies to step mocks only", at_key=True)
            if "output" not in item and "error" not in item:
                self.error(where, "a mock needs 'output' (what it returns) or 'error'")
                continue
            error = item.get("error")
            if error is not None and "message" not in error:
                self.error(where + ("error",), "missing required key 'message' in an error")
            out.append(
                Mock(
                    location=self.source.locate(where),
                    brick=item.get("brick"),
                    step=item.get("step"),
                    in_=item.get("in"),
                    output=item.get("output"),
                    error=error,
                )
            )
        return out

    def events(self, value: Any, path: PathTuple) -> list[ReplayEvent]:
        if isinstance(value, str):
            try:
                return load_events(_resolve(self.base, value))
            except DefinitionErrors as exc:
                self.errors.extend(exc.errors)
                return []
        events: list[ReplayEvent] = []
        for index, item in enumerate(value):
            where = path + (index,)
            try:
                text = json.dumps(item, ensure_ascii=False)
                events.extend(parse_events(text, self.file))
            except DefinitionErrors as exc:
                for problem in exc.errors:
                    self.error(where, problem.message)
            except ValueError as exc:  # not JSON-representable (NaN is, but is rejected later)
                self.error(where, f"found data that is not JSON ({exc})")
        # Inline events carry the test file's location of their list item.
        return [
            dataclasses.replace(event, location=self.source.locate(path + (i,)))
            for i, event in enumerate(events)
        ]

    def case(
        self,
        data: dict[str, Any],
        path: PathTuple,
        defaults: dict[str, Any],
        definitions: list[Path],
        fixtures: list[Document],
    ) -> Case | None:
        before = len(self.errors)
        merged = {**defaults, **data}
        for key in ("options", "host", "env", "integrations"):  # mappings merge key by key
            if key in defaults and key in data:
                merged[key] = {**defaults[key], **data[key]}
        if "integrations" in defaults and "integrations" in data:  # ... and fields by field
            for integration_id, values in data["integrations"].items():
                base = defaults["integrations"].get(integration_id)
                if isinstance(base, dict):
                    merged["integrations"][integration_id] = {**base, **values}
        if "brick" in data or "mod" in data:  # the case's own subject wins over the default's
            merged.pop("mod" if "brick" in data else "brick", None)
        if "brick" not in merged and "mod" not in merged:
            self.error(path, "a test case needs 'brick' or 'mod' (here or under 'defaults')")
            return None
        kind = "brick" if "brick" in merged else "mod"
        subject = merged[kind]
        if not subject.startswith("@"):
            subject = os.fspath(_resolve(self.base, subject))
            if not os.path.isfile(subject):
                where = path if kind in data else ("defaults",)
                self.error(where + (kind,), f"no such file: {subject} (ids start with @)")
        expect = dict(data.get("expect") or {})
        wrong = (
            [("events", False), ("deployment", False), ("reported", True), ("runs", True)]
            if kind == "brick"
            else [("input", False), ("output", True)]
        )
        for key, in_expect in wrong:
            if key in (expect if in_expect else data):
                where = path + (("expect", key) if in_expect else (key,))
                other = "mod" if kind == "brick" else "brick"
                self.error(where, f"{key!r} applies to {other} cases only", at_key=True)
        mocks = self.mocks(data.get("mocks", []), path + ("mocks",))
        mocks += self.mocks(defaults.get("mocks", []), ("defaults", "mocks"))
        http = [
            HttpMock(
                url=item["url"],
                method=item.get("method"),
                status=item.get("status", 200),
                json=item.get("json", MISSING),
                text=item.get("text"),
                headers=dict(item.get("headers") or {}),
            )
            for item in [*data.get("http", []), *defaults.get("http", [])]
        ]
        events: list[ReplayEvent] = []
        if "events" in merged and kind == "mod":
            events_path = path if "events" in data else ("defaults",)
            events = self.events(merged["events"], events_path + ("events",))
        if len(self.errors) > before:
            return None
        return Case(
            name=data["name"],
            file=self.file,
            location=self.source.locate(path),
            kind=kind,
            subject=subject,
            expect=expect,
            input=merged.get("input"),
            options=dict(merged.get("options") or {}),
            variables=merged.get("variables"),
            now=parse_instant(merged.get("now", DEFAULT_NOW)),
            host=dict(merged.get("host") or {}),
            mocks=mocks,
            http=http,
            events=events,
            integrations=dict(merged.get("integrations") or {}),
            env=dict(merged.get("env") or {}),
            deployment=merged.get("deployment"),
            timeout=float(merged.get("timeout", DEFAULT_TIMEOUT)),
            definitions=definitions,
            fixtures=fixtures,
        )


def load_test_file(path: str | os.PathLike[str]) -> CaseFile:
    """Load and check a test file; never raises for a bad file.

    Every problem becomes a ``DefinitionError`` at ``file:line:col`` in ``CaseFile.errors``
    (and then no case of the file runs): YAML errors, a missing or second ``kind: test``
    document, unknown or mistyped keys (with "did you mean"), bad events, and fixtures (the
    file's other documents) that do not compile.
    """
    file = os.fspath(path)
    result = CaseFile(file)
    try:
        documents = load_file(file)
    except DefinitionError as exc:
        result.errors.append(exc)
        return result
    tests = [d for d in documents if isinstance(d.data, dict) and d.data.get("kind") == "test"]
    if len(tests) != 1:
        where = tests[1].source.locate(()) if tests else Location(file, 1, 1)
        found = f"{len(tests)} documents with kind: test" if tests else "no kind: test document"
        message = f"found {found}; expected one (the test cases), plus optional definitions"
        result.errors.append(DefinitionError(message, location=where))
        return result
    document = tests[0]
    problems: _Problems = []
    _FILE.check(document.data, (), problems)
    for problem_path, message, at_key in problems:
        locate = document.source.locate_key if at_key else document.source.locate
        result.errors.append(
            DefinitionError(message, location=locate(problem_path), path=problem_path)
        )
    fixtures = [d for d in documents if d is not document]
    compiled = compile_documents(fixtures)  # checked once here; compiled afresh per case
    result.errors.extend(compiled.errors)
    if result.errors:
        return result
    data: dict[str, Any] = document.data
    loader = _Loader(file, document.source)
    definitions = [_resolve(loader.base, text) for text in data.get("definitions", [])]
    for index, folder in enumerate(definitions):
        if not folder.exists():
            loader.error(("definitions", index), f"no such file or folder: {folder}")
    defaults = data.get("defaults") or {}
    for index, item in enumerate(data["tests"]):
        case = loader.case(item, ("tests", index), defaults, definitions, fixtures)
        if case is not None:
            result.cases.append(case)
    result.errors.extend(sorted(loader.errors, key=_position))
    if result.errors:
        result.cases = []
    return result


def _position(error: DefinitionError) -> tuple[int, int]:
    where = error.location
    return (where.line or 0, where.column or 0) if where is not None else (0, 0)


def definition_files(path: str | os.PathLike[str]) -> list[Path]:
    """The definition files at ``path`` (a file, or every YAML/JSON file below a folder),
    leaving out test files."""
    root = Path(path)
    if not root.is_dir():
        return [root]
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix in DEFINITION_SUFFIXES and p.is_file() and not is_test_file(p)
    )


def find_test_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Test files named by ``paths``: files as given, and every ``*.test.yaml`` (``.yml``,
    ``.json``) below folders, skipping hidden folders, virtualenvs and ``node_modules``."""
    found: list[Path] = []
    for path in paths:
        root = Path(path)
        if not root.is_dir():
            found.append(root)
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(
                d
                for d in dirs
                if not d.startswith(".")
                and d not in _SKIP_DIRS
                and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))
            )
            found.extend(Path(folder, name) for name in sorted(files) if is_test_file(name))
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path, None)
    return list(unique)
