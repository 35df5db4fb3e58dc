"""``!var`` paths: grammar, PixieBrix evaluation rules, error messages, copies."""

from __future__ import annotations

import copy
import pickle
from collections import OrderedDict, defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brickrun._paths import CompiledPath, copy_value, parse_path
from brickrun.errors import BrickrunError, DefinitionError, InvalidPathError

CONTEXT: dict[str, Any] = {
    "@input": {
        "a": {"b": {"c": "deep"}},
        "name": "Ada",
        "count": 3,
        "flag": True,
        "nothing": None,
        "items": [{"title": "one"}, {"title": "two"}, None],
        "empty": [],
        "first name": "Grace",
        "foo.bar": {"baz": 1},
        "first-name": "hyphen",
        "0": "zero key",
        "length": "own length key",
        "nested": [[1, 2], [3]],
    },
    "@options": {},
    "@mod": {"x": 1},
    "@my-key": {"v": "hyphenated root"},
    "@bugs": [],
    "@nil": None,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # dict keys, nesting, whitespace
        ("@input.name", "Ada"),
        ("  @input.name\n", "Ada"),
        ("@input.a.b.c", "deep"),
        ("@input.count", 3),
        ("@input.flag", True),
        ("@mod", {"x": 1}),
        ("@my-key.v", "hyphenated root"),
        ("@input.first-name", "hyphen"),
        # bracket keys, quoted keys with dots and spaces, escapes
        ('@input["first name"]', "Grace"),
        ("@input['first name']", "Grace"),
        ('@input["foo.bar"].baz', 1),
        ("@input['foo.bar']['baz']", 1),
        # lists: numeric segments, brackets, length, names on lists
        ("@input.items.0.title", "one"),
        ("@input.items[1].title", "two"),
        ('@input.items["1"].title', "two"),
        ("@input.nested.0.1", 2),
        ("@input.nested[1][0]", 3),
        ("@input.items.length", 3),
        ("@input.empty.length", 0),
        ("@input.items.title", None),  # a name on a list is missing, not an error
        ("@input.items.9", None),  # out of range
        ("@input.items[9]", None),
        ("@input.items.2", None),  # null item
        # integer segments on dicts read the string key; an own "length" key wins on dicts
        ("@input.0", "zero key"),
        ("@input[0]", "zero key"),
        ("@input.length", "own length key"),
        # own keys only: no attributes, no methods, no dunders
        ("@input.__class__", None),
        ("@input.keys", None),
        ("@input.items.append", None),
        ("@input.__dict__", None),
        ("@input.get", None),
        ("@mod.items", None),
        ("@mod.values", None),
        ("@input.items.__len__", None),
        # missing leaf and missing root are null
        ("@input.missing", None),
        ("@nope", None),
        ("@nil", None),
        ("@input.nothing", None),
        # optional chaining
        ("@input.missing?.x", None),
        ("@input.missing?.x.y.z", None),
        ("@input.nothing?.x", None),
        ("@nope?.x", None),
        ("@nil?.x.y", None),
        ("@input.a?.b.c", "deep"),
        ("@input.a.b?", {"c": "deep"}),
        ("@input.items.2?.title", None),
        ("@input.items[2]?.title", None),
        ('@input["missing"]?.x', None),
        ("@bugs.0?.title", None),
    ],
)
def test_evaluate(path: str, expected: Any) -> None:
    assert parse_path(path).evaluate(CONTEXT) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        # PixieBrix's two messages, verbatim
        ("@input.missing.x", "@input.missing.x undefined (missing missing)"),
        ("@nope.x", "@nope.x undefined (missing @nope)"),
        ("@nil.x", "@nil.x undefined (missing @nil)"),
        ("@input.nothing.x", "@input.nothing.x undefined (missing nothing)"),
        ("@bugs[0].title", "@bugs[0].title undefined (missing 0)"),
        ("@bugs.0.title", "@bugs.0.title undefined (missing 0)"),
        ("@input.items.2.title", "@input.items.2.title undefined (missing 2)"),
        ('@input["no such"].x', '@input["no such"].x undefined (missing no such)'),
        ("@input.a?.zz.y", "@input.a?.zz.y undefined (missing zz)"),  # ? marks only `a`
        ("@input.name.length", "Invalid path @input.name.length"),
        ("@input.name.0", "Invalid path @input.name.0"),
        ("@input.count.x", "Invalid path @input.count.x"),
        ("@input.flag.x", "Invalid path @input.flag.x"),
        ("@input.name?.x", "Invalid path @input.name?.x"),
        ("  @input.a.b.c.d  ", "Invalid path @input.a.b.c.d"),  # the trimmed text
    ],
)
def test_evaluate_errors(path: str, message: str) -> None:
    with pytest.raises(InvalidPathError) as info:
        parse_path(path).evaluate(CONTEXT)
    assert info.value.message == message
    assert info.value.path == path.strip()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "invalid variable path '': the path is empty; expected '@' followed by a name"),
        ("   ", "invalid variable path '': the path is empty; expected '@' followed by a name"),
        (
            "input.x",
            "invalid variable path 'input.x': found 'i' at character 0; "
            "expected '@' followed by a name (e.g. '@input')",
        ),
        (
            "@",
            "invalid variable path '@': found the end of the path at character 1; expected a "
            "name after '@' (a letter, '_' or '$', then letters, digits, '_', '$' or '-')",
        ),
        (
            "@1x",
            "invalid variable path '@1x': found '1' at character 1; expected a name after '@' "
            "(a letter, '_' or '$', then letters, digits, '_', '$' or '-')",
        ),
        (
            "@input..x",
            "invalid variable path '@input..x': empty segment at character 7; "
            "expected a name after '.'",
        ),
        (
            "@input.",
            "invalid variable path '@input.': empty segment at character 7; "
            "expected a name after '.'",
        ),
        (
            "@input. x",
            "invalid variable path '@input. x': found ' ' at character 7; "
            "expected a name after '.'",
        ),
        (
            "@input[0",
            "invalid variable path '@input[0': unclosed '[' at character 6; "
            "expected an index or a quoted key, then ']'",
        ),
        (
            "@input[",
            "invalid variable path '@input[': unclosed '[' at character 6; "
            "expected an index or a quoted key, then ']'",
        ),
        (
            '@input["x',
            "invalid variable path '@input[\"x': unterminated string at character 7; "
            "expected a closing '\"' and then ']'",
        ),
        (
            "@input[abc]",
            "invalid variable path '@input[abc]': found 'abc' at character 7; expected an "
            'integer index (e.g. [0]) or a quoted key (e.g. ["first name"])',
        ),
        (
            "@input[]",
            "invalid variable path '@input[]': empty brackets at character 7; expected an "
            'integer index (e.g. [0]) or a quoted key (e.g. ["first name"])',
        ),
        (
            "@input[-1]",
            "invalid variable path '@input[-1]': found '-1' at character 7; expected an "
            'integer index (e.g. [0]) or a quoted key (e.g. ["first name"])',
        ),
        (
            "@input[0]x",
            "invalid variable path '@input[0]x': found 'x' at character 9; "
            "expected '.', '[', '?' or the end of the path after ']'",
        ),
        (
            '@input["a"x]',
            "invalid variable path '@input[\"a\"x]': found 'x' at character 10; "
            "expected ']' after the quoted key",
        ),
        (
            "@input.a?x",
            "invalid variable path '@input.a?x': found 'x' at character 9; "
            "expected '.', '[' or the end of the path after '?'",
        ),
        (
            "@input??",
            "invalid variable path '@input??': found '?' at character 7; "
            "expected '.', '[' or the end of the path after '?'",
        ),
        (
            "@in put",
            "invalid variable path '@in put': found ' ' at character 3; "
            "expected '.', '[', '?' or the end of the path after a name",
        ),
        (
            "@input.a]",
            "invalid variable path '@input.a]': found ']' at character 8; "
            "expected '.', '[', '?' or the end of the path after a name",
        ),
    ],
)
def test_syntax_errors(path: str, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_path(path)
    assert info.value.message == message
    assert info.value.location is None  # the caller adds file, line and path
    assert info.value.path == ""


@pytest.mark.parametrize(
    ("path", "root", "segments"),
    [
        ("@input", "@input", ()),
        ("@input.a?.b", "@input", ("a", "b")),
        ('@input.items[0]["first name"]', "@input", ("items", "0", "first name")),
        ("@input['it\\'s']", "@input", ("it's",)),
        ('@input["a\\\\b"]', "@input", ("a\\b",)),
        ("@$x.y", "@$x", ("y",)),
        ("@_x-y.z", "@_x-y", ("z",)),
        ("@input.$ref.@odd", "@input", ("$ref", "@odd")),
    ],
)
def test_parse_structure(path: str, root: str, segments: tuple[str, ...]) -> None:
    compiled = parse_path(path)
    assert (compiled.root, compiled.segments, compiled.text) == (root, segments, path)


def test_parse_is_cached_and_picklable() -> None:
    compiled = parse_path("@input.a.b")
    assert parse_path("@input.a.b") is compiled
    assert isinstance(compiled, CompiledPath)
    assert pickle.loads(pickle.dumps(compiled)) is compiled
    assert repr(compiled) == "CompiledPath('@input.a.b')"


def test_results_are_copies() -> None:
    context = {"@input": {"a": {"list": [1, {"x": 2}]}}}
    result = parse_path("@input.a").evaluate(context)
    assert result == {"list": [1, {"x": 2}]}
    result["list"][1]["x"] = 99
    result["list"].append(3)
    assert context == {"@input": {"a": {"list": [1, {"x": 2}]}}}
    whole = parse_path("@input").evaluate(context)
    assert whole is not context["@input"]
    assert whole["a"] is not context["@input"]["a"]


def test_reads_any_mapping_without_inventing_keys() -> None:
    missing_calls: list[str] = []

    class Recording(defaultdict[str, Any]):
        def __missing__(self, key: str) -> Any:
            missing_calls.append(key)
            return "invented"

    context = {"@input": Recording(None, {"a": 1}), "@od": OrderedDict(b=2)}
    assert parse_path("@input.a").evaluate(context) == 1
    assert parse_path("@input.zz").evaluate(context) is None
    assert parse_path("@od.b").evaluate(context) == 2
    assert missing_calls == []


class _Immutable:
    __brickrun_immutable__ = True


class _CopiesAsItself(dict[str, Any]):
    def __copy__(self) -> _CopiesAsItself:
        return self


@pytest.mark.parametrize(
    "value",
    ["s", 1, 1.5, True, None, _Immutable(), _CopiesAsItself(a=[1])],
    ids=lambda v: type(v).__name__,
)
def test_copy_value_returns_immutables_as_is(value: Any) -> None:
    assert copy_value(value) is value


def test_copy_value_copies_containers_and_keeps_subclasses() -> None:
    class Tagged(list[Any]):
        pass

    data = {"a": [1, {"b": [2]}], "t": (1, [2]), "o": OrderedDict(x=[1]), "l": Tagged([[1]])}
    copied = copy_value(data)
    assert copied == data
    assert copied["a"][1]["b"] is not data["a"][1]["b"]
    assert copied["t"][1] is not data["t"][1]
    assert type(copied["o"]) is OrderedDict and copied["o"]["x"] is not data["o"]["x"]
    assert type(copied["l"]) is Tagged and copied["l"][0] is not data["l"][0]
    stamp = copy.deepcopy({"when": object()})  # anything else goes through deepcopy
    assert copy_value(stamp)["when"] is not stamp["when"]


# -- properties ------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["a", "b", "0", "1", "length", "x y"]), children, max_size=4
        )
    ),
    max_leaves=10,
)
_segment_text = st.sampled_from(
    [".a", ".b", ".0", ".1", ".length", "[0]", "[1]", '["x y"]', "['a']", "?", ".__class__"]
)
_paths = st.builds(
    lambda root, segments: root + "".join(segments),
    st.sampled_from(["@input", "@mod", "@nope"]),
    st.lists(_segment_text, max_size=6),
)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("@input.[]?'\"\\ 0a-$_x")), max_size=20) | st.text())
def test_parse_never_raises_anything_but_brickrun_errors(text: str) -> None:
    try:
        compiled = parse_path(text)
    except BrickrunError as exc:
        assert isinstance(exc, DefinitionError)
    else:
        assert compiled.text == text.strip()


@settings(max_examples=100, deadline=None)
@given(_paths, _json, st.none() | st.text(max_size=3) | st.lists(st.integers(), max_size=3))
def test_evaluate_never_raises_anything_but_brickrun_errors(path: str, a: Any, b: Any) -> None:
    try:
        compiled = parse_path(path)
    except DefinitionError:
        return  # e.g. "??" from the segment alphabet
    context = {"@input": a, "@mod": b}
    try:
        result = compiled.evaluate(context)
    except BrickrunError as exc:
        assert isinstance(exc, InvalidPathError)
    else:
        if isinstance(result, dict | list):
            assert copy_value(result) == result
