"""YAML 1.2 loading: definition text to plain JSON-like data plus a source map of positions.

The only module that imports ruamel. Events come from ruamel's C parser (libyaml; the pure-Python
parser only when ``ruamel.yaml.clib`` is missing) and are built into data here, so resolution,
tags, positions and limits are brickrun's own:

* **YAML 1.2 core schema.** ``true``/``True``/``TRUE`` and the ``false`` forms are booleans;
  ``yes``/``no``/``on``/``off``/``y``/``n`` are strings; ``~``, ``null`` and empty are null;
  ``012`` is 12, ``0o17`` 15, ``0x1F`` 31; ``.inf``/``-.inf``/``.nan`` are floats. ``1_000``
  and timestamps such as ``2024-01-01`` stay strings (js-yaml reads ``1_000`` as 1000 and
  timestamps as dates; definitions are JSON data, so brickrun keeps plain YAML 1.2).
* **Expression tags.** ``!var``, ``!nunjucks``, ``!mustache``, ``!handlebars`` (scalars; the value
  is always the scalar's text), ``!pipeline`` (sequences) and ``!defer`` (mappings) load as
  ``{"__type__": T, "__value__": V}``. The core tags ``!!str !!int !!float !!bool !!null !!seq
  !!map`` are accepted; any other tag, a tag on the wrong node kind or an empty tagged scalar
  is a ``DefinitionError``.
* **Mappings.** Duplicate keys are errors naming both lines; other scalar keys become strings as
  JavaScript would write them (``1`` -> ``"1"``, ``true`` -> ``"true"``, null -> ``"null"``);
  mapping or sequence keys are errors. Merge keys ``<<`` work (explicit keys win); aliases
  load as independent copies; recursive aliases are errors.
* **Paths** are lists of keys and indexes from the document root: JSON pointers into the loaded
  data. A path through an expression names ``__value__`` explicitly, e.g.
  ``("pipeline", 0, "config", "body", "__value__", 1)``; the expression's own path, its
  ``__type__`` and its ``__value__`` map to the tag's position. Paths in error messages leave
  the expressions' ``__value__`` out (``pipeline[0].config.body[1]``), as the compiler does.
* **Limits.** At most 200 nested collections; aliases may expand to at most 100 000 values.
  Nothing but ``DefinitionError`` escapes, whatever the text (control characters, lone
  surrogates, deep nesting, alias bombs). JSON that libyaml rejects (tabs, surrogate-pair
  escapes) is still loaded, with positions whenever possible.

Speed, measured here: 0.5-0.7 ms to load a 61-line brick with four expressions (libyaml's events
alone: 0.25-0.35 ms; ruamel's round-trip loader: 4.9 ms).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from ruamel.yaml.reader import ReaderError

from .errors import DefinitionError, Location

try:
    from _ruamel_yaml import CParser as _CParser  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the C extension is a declared dependency
    _CParser = None

__all__ = ["Document", "PathPart", "SourceMap", "load_file", "load_text"]

PathPart = str | int

MAX_DEPTH = 200
MAX_ALIAS_VALUES = 100_000

# tag -> (__type__, node kind, what the tag expects)
_EXPRESSION_TAGS: dict[str, tuple[str, str, str]] = {
    "!var": ("var", "scalar", "a scalar (a variable path such as @input.name)"),
    "!nunjucks": ("nunjucks", "scalar", "a scalar (a Nunjucks template)"),
    "!mustache": ("mustache", "scalar", "a scalar (a Mustache template)"),
    "!handlebars": ("handlebars", "scalar", "a scalar (a Handlebars template)"),
    "!pipeline": ("pipeline", "sequence", "a sequence (a list of steps)"),
    "!defer": ("defer", "mapping", "a mapping (rendered later by the brick)"),
}
_CORE = "tag:yaml.org,2002:"
_CORE_KINDS = {"str": "scalar", "int": "scalar", "float": "scalar", "bool": "scalar"}
_CORE_KINDS |= {"null": "scalar", "seq": "sequence", "map": "mapping"}
_CORE_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float)}
_CORE_TYPES |= {"bool": (bool,), "null": (type(None),)}
_CORE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "null": "null"}
_KNOWN = ", ".join(_EXPRESSION_TAGS)

_WORDS: dict[str, Any] = {"~": None, "null": None, "Null": None, "NULL": None}
_WORDS |= dict.fromkeys(("true", "True", "TRUE"), True)
_WORDS |= dict.fromkeys(("false", "False", "FALSE"), False)
_WORDS |= {f"{s}.{w}": float(f"{s}inf") for s in "+-" for w in ("inf", "Inf", "INF")}
_WORDS |= {f".{w}": math.inf for w in ("inf", "Inf", "INF")}
_WORDS |= {f".{w}": math.nan for w in ("nan", "NaN", "NAN")}
_NUMBER_START = frozenset("0123456789+-.")
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SURROGATE_PAIR = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)
# libyaml's wording for common mistakes, reworded to say what was expected
_HINTS = {
    "found incompatible YAML document": "found a %YAML version other than 1.x; expected 1.2",
    "mapping values are not allowed in this context": (
        "found ':' where no mapping value can start; expected a quoted string if the text "
        "contains ': '"
    ),
    "did not find expected key": "did not find the expected key (check the indentation)",
}
_CHAR_HINTS = {
    "\t": "; expected spaces (YAML indents with spaces, not tabs)",
    "@": "; expected a quoted string (text starting with @ must be quoted)",
    "`": "; expected a quoted string (text starting with ` must be quoted)",
}
_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")  # what libyaml counts as a line break


class _Node:
    """Positions (1-based) of one value and of the key holding it, and its children's nodes."""

    __slots__ = ("children", "column", "key_column", "key_line", "line", "tagged")

    def __init__(
        self,
        line: int,
        column: int,
        key: tuple[int, int] | None,
        children: dict[str, _Node] | list[_Node] | None = None,
        tagged: bool = False,
    ) -> None:
        self.line, self.column = line, column
        self.key_line: int | None = key[0] if key is not None else None
        self.key_column: int | None = key[1] if key is not None else None
        self.children = children
        self.tagged = tagged


class SourceMap:
    """Where each value of one document is written: ``path -> Location`` (1-based)."""

    __slots__ = ("_root", "file")

    def __init__(self, file: str | None, root: _Node) -> None:
        self.file = file
        self._root = root

    def _walk(self, path: Sequence[PathPart]) -> tuple[_Node, bool]:
        node = self._root
        for part in path:
            children = node.children
            child: _Node | None = None
            if isinstance(children, dict) and isinstance(part, str):
                child = children.get(part)
            elif isinstance(children, list) and type(part) is int and 0 <= part < len(children):
                child = children[part]
            if child is None:
                return node, False
            node = child
        return node, True

    def locate(self, path: Sequence[PathPart]) -> Location:
        """The position of the value at ``path``, or of its nearest ancestor that exists."""
        node, _ = self._walk(path)
        return Location(self.file, node.line, node.column)

    def locate_key(self, path: Sequence[PathPart]) -> Location:
        """The position of the mapping key holding ``path[-1]``; else ``locate(path)``."""
        node, exact = self._walk(path)
        if exact and node.key_line is not None:
            return Location(self.file, node.key_line, node.key_column)
        return Location(self.file, node.line, node.column)


@dataclass
class Document:
    """One non-empty YAML document: its data, source map and 0-based index in the file."""

    data: Any
    source: SourceMap
    index: int


class _Frame:
    """A sequence or mapping being built; ``tag`` is the expression type wrapping it, if any."""

    __slots__ = (
        "anchor",
        "count",
        "is_map",
        "key",
        "key_mark",
        "merge",
        "merged",
        "node",
        "node_children",
        "tag",
        "value",
    )

    def __init__(
        self, is_map: bool, node: _Node, tag: str | None, anchor: str | None, count: int
    ) -> None:
        self.is_map, self.node, self.tag, self.anchor, self.count = is_map, node, tag, anchor, count
        self.value: Any = {} if is_map else []
        self.node_children: Any = {} if is_map else []
        self.key: str | None = None  # the key whose value is being read
        self.key_mark: tuple[int, int] | None = None
        self.merge = False  # the value being read belongs to a ``<<`` key
        self.merged: set[str] | None = None  # keys copied by ``<<``, which explicit keys override


def _tag_text(tag: str) -> str:
    if tag.startswith(_CORE):
        return "!!" + tag[len(_CORE) :]
    return tag if tag.startswith("!") else f"!<{tag}>"


def _resolve_plain(text: str) -> Any:
    """Resolve an untagged plain scalar with the YAML 1.2 core schema."""
    if not text:
        return None
    if text in _WORDS:
        return _WORDS[text]
    if text[0] not in _NUMBER_START:
        return text
    if _INT.fullmatch(text):
        base = {"0o": 8, "0x": 16}.get(text[:2], 10)
        return int(text[2:] if base != 10 else text, base)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _key_text(value: Any) -> str:
    """A scalar key as JavaScript's ``String()`` writes it, so keys match PixieBrix's."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return re.sub(r"e([-+])0*(\d)", r"e\1\2", repr(value))
    return str(value)


def _kind(event: Any) -> str:
    if isinstance(event, MappingStartEvent):
        return "mapping"
    return "sequence" if isinstance(event, SequenceStartEvent) else "scalar"


def _copy(value: Any, depth: int) -> Any:
    """Deep-copy JSON-like data; raises ValueError when it nests deeper than ``depth``."""
    if type(value) is dict:
        if depth <= 0:
            raise ValueError
        return {k: _copy(v, depth - 1) for k, v in value.items()}
    if type(value) is list:
        if depth <= 0:
            raise ValueError
        return [_copy(v, depth - 1) for v in value]
    return value


class _Builder:
    """Builds documents from parser events with an explicit stack (no recursion)."""

    def __init__(self, file: str | None) -> None:
        self.file = file
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, _Node, int]] = {}
        self.count = 0
        self.alias_values = 0
        self.root: tuple[Any, _Node] | None = None

    def path(self) -> list[PathPart]:
        """The path of the value being read now, as errors show it (without ``__value__``)."""
        parts: list[PathPart] = []
        for frame in self.stack:
            if not frame.is_map:
                parts.append(len(frame.value))
            elif frame.key is not None:
                parts.append(frame.key)
        return parts

    def error(self, message: str, mark: Any, path: list[PathPart] | None = None) -> DefinitionError:
        where = Location(self.file, mark.line + 1, mark.column + 1)
        return DefinitionError(message, location=where, path=self.path() if path is None else path)

    def check_tag(self, event: Any) -> tuple[str | None, str | None]:
        """Validate a node's tag; returns (expression type, core tag name), at most one set."""
        tag: str | None = event.tag
        if tag is None or tag == "!":
            return None, None
        kind, core = _kind(event), None
        if tag in _EXPRESSION_TAGS:
            expression, wanted, expects = _EXPRESSION_TAGS[tag]
            if kind == "scalar" and not event.value and not event.style:
                suffix = "" if wanted == "scalar" else f"; expected {expects}"
                raise self.error(
                    f"tag {tag} needs a value, found nothing{suffix}", event.start_mark
                )
        else:
            core = tag[len(_CORE) :] if tag.startswith(_CORE) else ""
            if core not in _CORE_KINDS:
                hint = " (of the !! tags: !!str, !!int, !!float, !!bool, !!null, !!seq, !!map)"
                message = f"unknown tag {_tag_text(tag)}; expected one of {_KNOWN}"
                raise self.error(message + (hint if core else ""), event.start_mark)
            expression, wanted = None, _CORE_KINDS[core]
            expects = f"a {wanted}"
        if wanted != kind:
            message = f"tag {_tag_text(tag)} expects {expects}, found a {kind}"
            raise self.error(message, event.start_mark)
        return expression, core

    def scalar(self, event: Any) -> Any:
        text: str = event.value
        tag: str | None = event.tag
        if tag is None and not event.implicit[0]:
            return text  # quoted or block scalar
        expression, core = self.check_tag(event) if tag is not None else (None, None)
        if expression is not None:
            return {"__type__": expression, "__value__": text}
        if core == "str" or (tag is not None and core is None):
            return text
        try:
            value = _resolve_plain(text)
        except ValueError:  # Python refuses to convert integers of more than 4300 digits
            message = f"found an integer of {len(text)} characters; expected at most 4300 digits"
            raise self.error(message, event.start_mark) from None
        if core is not None and type(value) not in _CORE_TYPES[core]:
            message = f"tag !!{core} expects {_CORE_NAMES[core]}, found {text!r}"
            raise self.error(message, event.start_mark)
        return float(value) if core == "float" else value

    def key(self, top: _Frame, event: Any) -> None:
        """Read the next key of ``top``: a scalar or an alias to one; ``<<`` starts a merge."""
        mark = event.start_mark
        if type(event) is ScalarEvent:
            if event.value == "<<" and event.tag is None and event.implicit[0]:
                top.merge = True
                return
            value = self.scalar(event)
            if type(value) is dict:
                message = f"mapping key must be a scalar, found a {event.tag} expression"
                raise self.error(message, mark)
            if event.anchor is not None:
                self.anchors[event.anchor] = (value, _Node(mark.line + 1, mark.column + 1, None), 1)
        elif type(event) is AliasEvent:
            value = self.alias(event)[0]
            if isinstance(value, dict | list):
                message = f"mapping key must be a scalar, found alias *{event.anchor} to "
                raise self.error(message + _describe(value), mark)
        else:
            raise self.error(f"mapping key must be a scalar, found a {_kind(event)}", mark)
        key = _key_text(value)
        if key in top.value:
            if top.merged is None or key not in top.merged:
                first = top.node_children[key].key_line
                message = f"duplicate key {key!r} (first defined at line {first})"
                raise self.error(message, mark, [*self.path(), key])
            top.merged.discard(key)
        top.key, top.key_mark = key, (mark.line + 1, mark.column + 1)

    def alias(self, event: Any) -> tuple[Any, _Node, int]:
        """A copy of the anchored value, its node and how many values it holds."""
        name: str = event.anchor
        mark = event.start_mark
        if any(frame.anchor == name for frame in self.stack):
            message = (
                f"alias *{name} refers to a node that contains it; expected non-recursive data"
            )
            raise self.error(message, mark)
        if name not in self.anchors:
            raise self.error(f"found undefined alias *{name}; expected an anchor &{name}", mark)
        value, source, count = self.anchors[name]
        self.alias_values += count
        if self.alias_values > MAX_ALIAS_VALUES:
            message = f"aliases expand to more than {MAX_ALIAS_VALUES} values; expected fewer"
            raise self.error(message, mark)
        try:
            value = _copy(value, MAX_DEPTH - len(self.stack))
        except ValueError:
            message = f"alias *{name} nests deeper than {MAX_DEPTH} levels; expected fewer"
            raise self.error(message, mark) from None
        node = _Node(mark.line + 1, mark.column + 1, None, source.children, source.tagged)
        return value, node, count

    def put(self, value: Any, node: _Node) -> None:
        """Store a finished value in the collection being built, or as the document root."""
        self.count += 1
        if not self.stack:
            self.root = (value, node)
            return
        top = self.stack[-1]
        if not top.is_map:
            top.value.append(value)
            top.node_children.append(node)
        elif top.merge:
            top.merge = False
            self.merge(top, value, node)
        else:
            top.value[top.key] = value
            top.node_children[top.key] = node
            top.key = top.key_mark = None

    def merge(self, top: _Frame, value: Any, node: _Node) -> None:
        """Apply ``<<: value`` to ``top``: copy the keys it does not have yet."""
        sources = [(value, node)]
        if type(value) is list and isinstance(node.children, list):
            sources = list(zip(value, node.children, strict=True))
        for source, source_node in sources:
            if type(source) is not dict or source_node.tagged:
                found = "an expression" if source_node.tagged else _describe(source)
                if source is not value:
                    found = f"a sequence containing {found}"
                message = f"merge key << expects a mapping or a list of mappings, found {found}"
                where = Location(self.file, source_node.line, source_node.column)
                raise DefinitionError(message, location=where, path=[*self.path(), "<<"])
            merged = top.merged = top.merged or set()
            for key, item in source.items():
                if key not in top.value:
                    top.value[key] = item
                    top.node_children[key] = source_node.children[key]  # type: ignore[index]
                    merged.add(key)

    def end(self, frame: _Frame) -> None:
        value = frame.value
        if frame.tag is not None:
            value = {"__type__": frame.tag, "__value__": value}
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (value, frame.node, self.count - frame.count + 1)
        self.put(value, frame.node)

    def documents(self, next_event: Callable[[], Any]) -> list[Document]:
        """Consume every event; returns the non-empty documents."""
        documents: list[Document] = []
        index = -1
        stack = self.stack
        while (event := next_event()) is not None:
            cls = type(event)
            top = stack[-1] if stack else None
            if top is not None and top.is_map and top.key is None and not top.merge:
                if cls is MappingEndEvent:
                    self.end(stack.pop())
                else:
                    self.key(top, event)
                continue
            mark = event.start_mark
            key_mark = top.key_mark if top is not None else None
            if cls is ScalarEvent:
                if top is None and not event.value and event.tag is None and event.implicit[0]:
                    continue  # an empty document
                value = self.scalar(event)
                node = _Node(mark.line + 1, mark.column + 1, key_mark)
                if type(value) is dict:
                    node.tagged = True
                    node.children = {"__value__": _Node(mark.line + 1, mark.column + 1, None)}
                if event.anchor is not None:
                    self.anchors[event.anchor] = (value, node, 1)
                self.put(value, node)
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                if len(stack) >= MAX_DEPTH:
                    message = f"found more than {MAX_DEPTH} nested collections; expected fewer"
                    raise self.error(message, mark)
                tag = self.check_tag(event)[0]
                node = _Node(mark.line + 1, mark.column + 1, key_mark)
                frame = _Frame(cls is MappingStartEvent, node, tag, event.anchor, self.count)
                if tag is None:
                    node.children = frame.node_children
                else:
                    inner = _Node(mark.line + 1, mark.column + 1, None, frame.node_children)
                    node.children, node.tagged = {"__value__": inner}, True
                stack.append(frame)
            elif cls is SequenceEndEvent:
                self.end(stack.pop())
            elif cls is AliasEvent:
                value, node, count = self.alias(event)
                if key_mark is not None:
                    node.key_line, node.key_column = key_mark
                self.count += count - 1
                self.put(value, node)
            elif cls is DocumentStartEvent:
                index += 1
                self.anchors.clear()
            elif cls is DocumentEndEvent:
                if self.root is not None:
                    data, root = self.root
                    documents.append(Document(data, SourceMap(self.file, root), index))
                self.root = None
        return documents


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    return "a sequence" if isinstance(value, list) else "a scalar"


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, column) of a character index, counting line breaks as libyaml does."""
    lines = _BREAK.split(text[:index])
    return len(lines), len(lines[-1]) + 1


def _syntax_error(
    exc: Exception, text: str, file: str | None, path: list[PathPart]
) -> DefinitionError:
    """Turn a ruamel reader, scanner or parser error into a located ``DefinitionError``."""
    if isinstance(exc, ReaderError):
        position = exc.position
        if _CParser is not None:  # libyaml reports a byte offset into the UTF-8 text
            position = len(text.encode("utf-8")[:position].decode("utf-8", "replace"))
        line, column = _position(text, position)
        reason = exc.reason or "not allowed"
        message = f"found character U+{exc.character:04X} ({reason}); expected printable text"
        return DefinitionError(message, location=Location(file, line, column), path=path)
    if isinstance(exc, MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = str(exc.problem or "found invalid YAML")
        problem = _HINTS.get(problem, problem)
        line, column = mark.line + 1, mark.column + 1
        lines = _BREAK.split(text)
        if problem == "found character that cannot start any token" and line <= len(lines):
            char = lines[line - 1][column - 1 : column] or "\n"
            problem = f"found character {char!r} that cannot start any token"
            problem += _CHAR_HINTS.get(char, "")
        if exc.context and exc.context != "while scanning for the next token":
            problem += f" {exc.context}"
            context = exc.context_mark
            if context is not None and (context.line, context.column) != (mark.line, mark.column):
                problem += f" started at line {context.line + 1}, column {context.column + 1}"
        return DefinitionError(problem, location=Location(file, line, column), path=path)
    message = f"could not read YAML ({type(exc).__name__}: {exc})"
    return DefinitionError(message, location=Location(file), path=path)


def _event_source(text: str) -> Callable[[], Any]:
    """A function returning the next parser event, or None after the last."""
    if _CParser is not None:
        get_event: Callable[[], Any] = _CParser(text).get_event
        return get_event
    from ruamel.yaml import YAML  # the pure-Python parser, ~15x slower: only without libyaml

    return functools.partial(next, iter(YAML(typ="safe", pure=True).parse(text)), None)


def _load(text: str, file: str | None) -> list[Document]:
    builder = _Builder(file)
    try:
        return builder.documents(_event_source(text))
    except (MarkedYAMLError, ReaderError) as exc:
        error = _syntax_error(exc, text, file, builder.path())
    except UnicodeEncodeError as exc:  # a lone surrogate cannot be handed to libyaml
        line, column = _position(text, exc.start)
        message = f"found lone surrogate U+{ord(text[exc.start]):04X}; expected valid Unicode text"
        raise DefinitionError(message, location=Location(file, line, column)) from None
    documents = _load_json(text, file) if text.lstrip()[:1] in ("{", "[") else None
    if documents is None:
        raise error
    return documents


def _load_json(text: str, file: str | None) -> list[Document] | None:
    """Load JSON that libyaml rejected (JSON is YAML 1.2; libyaml reads YAML 1.1).

    Tabs and UTF-16 surrogate-pair escapes are the usual culprits; with them rewritten (keeping
    columns for tabs) libyaml gives positions. Otherwise the data comes without positions.
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    cleaned = _SURROGATE_PAIR.sub(_astral_escape, text.replace("\t", " "))
    try:
        documents = _Builder(file).documents(_event_source(cleaned))
    except (MarkedYAMLError, ReaderError, UnicodeEncodeError):
        documents = []
    if len(documents) == 1 and documents[0].data == data:
        return documents
    root = _Node(*_position(text, len(text) - len(text.lstrip())), None)
    return [Document(data, SourceMap(file, root), 0)]


def _astral_escape(match: re.Match[str]) -> str:
    high, low = int(match[1], 16), int(match[2], 16)
    return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"


def load_text(text: str, file: str | None = None) -> list[Document]:
    """Load every non-empty document of a YAML (or JSON) text.

    ``file`` only names the text in locations. Raises ``DefinitionError`` (and nothing else,
    whatever the text) with the location and path of the first problem.
    """
    text = text.removeprefix("\ufeff")
    try:
        return _load(text, file)
    except DefinitionError:
        raise
    except Exception as exc:  # keep the promise: a parser bug must not escape as something else
        message = f"could not read YAML ({type(exc).__name__}: {exc})"
        raise DefinitionError(message, location=Location(file)) from exc


def load_file(path: str | os.PathLike[str]) -> list[Document]:
    """Load a ``.yaml``/``.yml``/``.json`` definition file, read as UTF-8, like ``load_text``.

    Locations name the file as given; an unreadable file is a ``DefinitionError`` naming it.
    """
    file = os.fspath(path)
    try:
        with open(file, "rb") as stream:
            raw = stream.read()
    except OSError as exc:
        message = f"could not read the file ({exc.strerror or exc})"
        raise DefinitionError(message, location=Location(file)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8", "replace")
        line, column = _position(before, len(before))
        message = f"found byte 0x{raw[exc.start]:02x}, which is not UTF-8; expected UTF-8 text"
        raise DefinitionError(message, location=Location(file, line, column)) from None
    return load_text(text, file)
