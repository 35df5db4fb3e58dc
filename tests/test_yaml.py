"""Tests for ``brickrun._yaml``: YAML 1.2 scalars, expression tags, errors, source maps, fuzzing."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brickrun import _yaml
from brickrun._yaml import Document, load_file, load_text
from brickrun.errors import BrickrunError, DefinitionError, Location

BROKEN = Path(__file__).parent / "data" / "broken"

# The seed brick, verbatim (note the space after ``!pipeline``).
SEED = """\
apiVersion: v3
kind: component
metadata:
  id: "@pixies/telemetry/record"
  version: 1.0.0
  name: Record Product Telemetry to DB
inputSchema:
  type: object
  properties:
    databaseId:
      $ref: "https://app.pixiebrix.com/schemas/database#"
pipeline:
  - id: '@pixiebrix/run'
    async: true
    config:
      body: !pipeline\x20
        - id: '@pixiebrix/timestamp'
          config: {}
          outputKey: instant
        - id: '@pixiebrix/data/put'
          config:
            key: !nunjucks '{{ @session.email }}-{{ @instant.timestamp }}'
            databaseId: !var "@input.databaseId"
"""

BODY = ("pipeline", 0, "config", "body")


def one(text: str) -> Any:
    """The data of the only document in ``text``."""
    documents = load_text(text, "t.yaml")
    assert len(documents) == 1
    return documents[0].data


def error(text: str, file: str = "t.yaml") -> str:
    """``str()`` of the error that loading ``text`` raises."""
    with pytest.raises(DefinitionError) as info:
        load_text(text, file)
    return str(info.value)


# -- YAML 1.2 core scalars ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *[(word, word) for word in ("yes", "no", "on", "off", "y", "n", "Yes", "ON")],
        *[(word, True) for word in ("true", "True", "TRUE")],
        *[(word, False) for word in ("false", "False", "FALSE")],
        *[(word, None) for word in ("~", "null", "Null", "NULL", "")],
        ("012", 12),
        ("0o17", 15),
        ("0x1F", 31),
        ("-7", -7),
        ("+12", 12),
        ("1_000", "1_000"),  # YAML 1.2 core (js-yaml would say 1000)
        ("0x", "0x"),
        ("-0x1F", "-0x1F"),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("-.5", -0.5),
        (".inf", math.inf),
        ("-.Inf", -math.inf),
        ("+.INF", math.inf),
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
        ("1.0.0", "1.0.0"),
        ("'true'", "true"),
        ('"12"', "12"),
        ("! 12", "12"),
        ("!!str 12", "12"),
        ("!!int '0x1F'", 31),
        ("!!float 1", 1.0),
        ("!!bool 'TRUE'", True),
        ("!!null ''", None),
        ("|\n  literal\n", "literal\n"),
    ],
)
def test_yaml_12_scalars(text: str, expected: Any) -> None:
    value = one(f"v: {text}")["v"]
    assert value == expected
    assert type(value) is type(expected)


def test_nan() -> None:
    assert math.isnan(one("v: .nan")["v"])


# -- expression tags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!var '@input.x'", {"__type__": "var", "__value__": "@input.x"}),
        ("!var '@input.x'", {"__type__": "var", "__value__": "@input.x"}),
        ("!nunjucks 42", {"__type__": "nunjucks", "__value__": "42"}),
        ("!nunjucks true", {"__type__": "nunjucks", "__value__": "true"}),
        ("!mustache '{{x}}'", {"__type__": "mustache", "__value__": "{{x}}"}),
        ("!handlebars hi {{name}}", {"__type__": "handlebars", "__value__": "hi {{name}}"}),
        ("!var ''", {"__type__": "var", "__value__": ""}),
        ("!pipeline []", {"__type__": "pipeline", "__value__": []}),
        ("!pipeline [{id: a}]", {"__type__": "pipeline", "__value__": [{"id": "a"}]}),
        ("!defer {}", {"__type__": "defer", "__value__": {}}),
        (
            "!defer {a: !var '@x', b: [!nunjucks '{{y}}']}",
            {
                "__type__": "defer",
                "__value__": {
                    "a": {"__type__": "var", "__value__": "@x"},
                    "b": [{"__type__": "nunjucks", "__value__": "{{y}}"}],
                },
            },
        ),
        (
            "!pipeline\n  - id: a\n    config: !defer\n      q: !var '@x'",
            {
                "__type__": "pipeline",
                "__value__": [
                    {
                        "id": "a",
                        "config": {
                            "__type__": "defer",
                            "__value__": {"q": {"__type__": "var", "__value__": "@x"}},
                        },
                    }
                ],
            },
        ),
        ("!<!var> x", {"__type__": "var", "__value__": "x"}),
    ],
)
def test_expression_tags(text: str, expected: Any) -> None:
    assert one(f"v: {text}")["v"] == expected


def test_seed_brick_loads_as_json_data() -> None:
    [document] = load_text(SEED, "seed.yaml")
    body = document.data["pipeline"][0]["config"]["body"]
    assert body["__type__"] == "pipeline"
    assert body["__value__"][1]["config"] == {
        "key": {
            "__type__": "nunjucks",
            "__value__": "{{ @session.email }}-{{ @instant.timestamp }}",
        },
        "databaseId": {"__type__": "var", "__value__": "@input.databaseId"},
    }
    assert document.data["metadata"]["version"] == "1.0.0"
    assert document.data["pipeline"][0]["async"] is True
    assert json.loads(json.dumps(document.data)) == document.data
    assert document.index == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!pipeline foo", "tag !pipeline expects a sequence (a list of steps), found a scalar"),
        ("!pipeline {a: 1}", "tag !pipeline expects a sequence (a list of steps), found a mapping"),
        ("!defer x", "tag !defer expects a mapping (rendered later by the brick), found a scalar"),
        (
            "!defer [x]",
            "tag !defer expects a mapping (rendered later by the brick), found a sequence",
        ),
        (
            "!var [a]",
            "tag !var expects a scalar (a variable path such as @input.name), found a sequence",
        ),
        (
            "!nunjucks {a: 1}",
            "tag !nunjucks expects a scalar (a Nunjucks template), found a mapping",
        ),
        ("!mustache [a]", "tag !mustache expects a scalar (a Mustache template), found a sequence"),
        (
            "!handlebars {a: 1}",
            "tag !handlebars expects a scalar (a Handlebars template), found a mapping",
        ),
        ("!var", "tag !var needs a value, found nothing"),
        ("!nunjucks", "tag !nunjucks needs a value, found nothing"),
        ("!mustache", "tag !mustache needs a value, found nothing"),
        ("!handlebars", "tag !handlebars needs a value, found nothing"),
        (
            "!pipeline",
            "tag !pipeline needs a value, found nothing; expected a sequence (a list of steps)",
        ),
        ("!!map [1]", "tag !!map expects a mapping, found a sequence"),
        ("!!int abc", "tag !!int expects an integer, found 'abc'"),
        ("!!bool yes", "tag !!bool expects true or false, found 'yes'"),
    ],
)
def test_tag_on_wrong_node(text: str, message: str) -> None:
    assert error(f"x: 1\nv: {text}\n") == f"t.yaml:2:4: v: {message}"


KNOWN = "expected one of !var, !nunjucks, !mustache, !handlebars, !pipeline, !defer"
CORE = " (of the !! tags: !!str, !!int, !!float, !!bool, !!null, !!seq, !!map)"


@pytest.mark.parametrize(
    ("tag", "shown"),
    [
        ("!jq", "!jq"),
        ("!Var", "!Var"),
        ("!<tag:example.com,2024:x>", "!<tag:example.com,2024:x>"),
        ("!!python/object:os.system", "!!python/object:os.system" + "; " + KNOWN + CORE),
        ("!!binary", "!!binary; " + KNOWN + CORE),
        ("!!timestamp", "!!timestamp; " + KNOWN + CORE),
    ],
)
def test_unknown_tag(tag: str, shown: str) -> None:
    expected = shown if ";" in shown else f"{shown}; {KNOWN}"
    assert error(f"v: {tag} x") == f"t.yaml:1:4: v: unknown tag {expected}"


def test_error_paths_inside_expressions_omit_value() -> None:
    text = "p: !pipeline\n  - id: a\n    config: !defer\n      q: !jq x\n"
    assert error(text) == f"t.yaml:4:10: p[0].config.q: unknown tag !jq; {KNOWN}"


# -- mappings: duplicate keys, key conversion, merges, aliases ---------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "apiVersion: v3\nmetadata:\n  id: a\n  name: b\n  id: c\n",
            "f.yaml:5:3: metadata.id: duplicate key 'id' (first defined at line 3)",
        ),
        ("a: 1\nb: 2\na: 3\n", "f.yaml:3:1: a: duplicate key 'a' (first defined at line 1)"),
        ("{a: 1,\n a: 2}", "f.yaml:2:2: a: duplicate key 'a' (first defined at line 1)"),
        ("1: x\n'1': y\n", "f.yaml:2:1: [\"1\"]: duplicate key '1' (first defined at line 1)"),
        (
            "- x: 1\n  y:\n    z: 1\n    z: 2\n",
            "f.yaml:4:5: [0].y.z: duplicate key 'z' (first defined at line 3)",
        ),
        (
            "m:\n  <<: {a: 1}\n  b: 2\n  b: 3\n",
            "f.yaml:4:3: m.b: duplicate key 'b' (first defined at line 3)",
        ),
    ],
)
def test_duplicate_keys(text: str, expected: str) -> None:
    assert error(text, "f.yaml") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1: a", {"1": "a"}),
        ("true: a", {"true": "a"}),
        ("~: a", {"null": "a"}),
        ("? \n: a", {"null": "a"}),
        ("1.5: a", {"1.5": "a"}),
        ("2.0: a", {"2": "a"}),
        ("0x1F: a", {"31": "a"}),
        ("yes: a", {"yes": "a"}),
        ("'<<': a", {"<<": "a"}),
    ],
)
def test_scalar_keys_become_strings(text: str, expected: Any) -> None:
    assert one(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[a]: 1", "t.yaml:1:1: mapping key must be a scalar, found a sequence"),
        ("? {a: 1}\n: 2", "t.yaml:1:3: mapping key must be a scalar, found a mapping"),
        ("!var x: 1", "t.yaml:1:1: mapping key must be a scalar, found a !var expression"),
        (
            "a: &a [1]\nm: {*a : 1}",
            "t.yaml:2:5: m: mapping key must be a scalar, found alias *a to a sequence",
        ),
    ],
)
def test_complex_keys(text: str, expected: str) -> None:
    assert error(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("b: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n", {"x": 1, "y": 3}),
        ("m:\n  y: 1\n  <<: {x: 2, y: 2}\n", {"y": 1, "x": 2}),
        ("m:\n  <<: [{a: 1}, {a: 2, b: 2}]\n  c: 3\n", {"a": 1, "b": 2, "c": 3}),
        ("m:\n  <<: {a: 1}\n  <<: {a: 2, b: 2}\n", {"a": 1, "b": 2}),
    ],
)
def test_merge_keys(text: str, expected: Any) -> None:
    assert one(text)["m"] == expected


MERGE = "merge key << expects a mapping or a list of mappings, found"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("m:\n  <<: [a, b]\n", f't.yaml:2:8: m["<<"]: {MERGE} a sequence containing a scalar'),
        (
            "m:\n  <<: [{a: 1}, [1]]\n",
            f't.yaml:2:16: m["<<"]: {MERGE} a sequence containing a sequence',
        ),
        ("m:\n  <<: !defer {a: 1}\n", f't.yaml:2:7: m["<<"]: {MERGE} an expression'),
        ("<<: 1", f't.yaml:1:5: ["<<"]: {MERGE} a scalar'),
    ],
)
def test_merge_errors(text: str, expected: str) -> None:
    assert error(text) == expected


def test_aliases_are_independent_copies() -> None:
    data = one("a: &a {x: [1, !var '@y']}\nb: *a\nc: *a\n")
    assert data["a"] == data["b"] == data["c"] == {"x": [1, {"__type__": "var", "__value__": "@y"}]}
    data["b"]["x"].append(2)
    data["c"]["x"][1]["__value__"] = "@z"
    assert data["a"] == {"x": [1, {"__type__": "var", "__value__": "@y"}]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: &a [*a]",
            "t.yaml:1:8: a[0]: alias *a refers to a node that contains it; "
            "expected non-recursive data",
        ),
        (
            "a: &a {x: {y: *a}}",
            "t.yaml:1:15: a.x.y: alias *a refers to a node that contains it; "
            "expected non-recursive data",
        ),
        ("a: *nope", "t.yaml:1:4: a: found undefined alias *nope; expected an anchor &nope"),
        (
            "a: &a [1,1,1,1,1,1,1,1,1,1]\n"
            + "".join(
                f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n"
                for p, n in zip("abcde", "bcdef", strict=True)
            ),
            "t.yaml:5:36: e[7]: aliases expand to more than 100000 values; expected fewer",
        ),
    ],
)
def test_alias_errors(text: str, expected: str) -> None:
    assert error(text) == expected


def test_nesting_is_bounded() -> None:
    assert one("v: " + "[" * 199 + "]" * 199)["v"] is not None
    message = error("[" * 300 + "]" * 300)
    assert message.startswith("t.yaml:1:201: [0][0]")
    assert message.endswith(": found more than 200 nested collections; expected fewer")
    deep = "a: &a " + "[" * 150 + "]" * 150 + "\nb: " + "[" * 100 + "*a" + "]" * 100
    assert "alias *a nests deeper than 200 levels; expected fewer" in error(deep)


# -- documents and files -----------------------------------------------------------------------


def test_multi_document_files_skip_empty_documents() -> None:
    text = "---\n---\na: 1\n---\n# only a comment\n---\nb: 2\n...\n---\n~\n"
    documents = load_text(text, "multi.yaml")
    assert [(d.index, d.data) for d in documents] == [(1, {"a": 1}), (3, {"b": 2}), (4, None)]
    assert documents[1].source.locate(("b",)) == Location("multi.yaml", 7, 4)
    assert load_text("") == []
    assert load_text("# nothing\n\n") == []


def test_anchors_do_not_cross_documents() -> None:
    assert error("a: &a 1\n---\nb: *a\n") == (
        "t.yaml:3:4: b: found undefined alias *a; expected an anchor &a"
    )


def test_json_file_positions(tmp_path: Path) -> None:
    path = tmp_path / "brick.json"
    path.write_text('{\n  "kind": "component",\n  "pipeline": [\n    {"id": "@a/b"}\n  ]\n}\n')
    [document] = load_file(path)
    assert document.data == {"kind": "component", "pipeline": [{"id": "@a/b"}]}
    assert document.source.locate(("pipeline", 0, "id")) == Location(str(path), 4, 12)
    assert document.source.locate_key(("pipeline", 0, "id")) == Location(str(path), 4, 6)


def test_json_with_tabs_and_surrogate_escapes_keeps_positions() -> None:
    text = '{\n\t"a":\t1,\n\t"b": {\n\t\t"c": "\\ud83d\\ude00"\n\t}\n}\n'
    [document] = load_text(text, "t.json")
    assert document.data == {"a": 1, "b": {"c": "\U0001f600"}}
    assert document.source.locate(("b", "c")) == Location("t.json", 4, 8)
    assert document.source.locate_key(("a",)) == Location("t.json", 2, 2)


def test_json_that_yaml_cannot_read_loads_without_positions() -> None:
    [document] = load_text('  ["\\ud800"]', "t.json")
    assert document.data == ["\ud800"]
    assert document.source.locate((0,)) == Location("t.json", 1, 3)


def test_json_duplicate_keys_are_errors() -> None:
    assert error('{"a": 1,\n\t"a": 2}', "t.json") == (
        "t.json:2:2: a: duplicate key 'a' (first defined at line 1)"
    )


def test_load_file_reads_utf8_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "b.yml"
    path.write_bytes(b"\xef\xbb\xbfname: caf\xc3\xa9\n")
    [document] = load_file(path)
    assert document.data == {"name": "café"}
    assert document.source.locate(("name",)) == Location(str(path), 1, 7)


def test_load_file_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(DefinitionError) as info:
        load_file(path)
    assert str(info.value) == (
        f"{path}:2:7: found byte 0xe9, which is not UTF-8; expected UTF-8 text"
    )


def test_load_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(DefinitionError) as info:
        load_file(path)
    assert str(info.value) == f"{path}: could not read the file (No such file or directory)"
    assert info.value.location == Location(str(path))


@pytest.mark.parametrize("name", ["yaml_duplicate_key", "yaml_unknown_tag", "yaml_tag_wrong_node"])
def test_broken_fixtures(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    with pytest.raises(DefinitionError) as info:
        load_file(f"{name}.yaml")
    assert f"{info.value}\n" == (BROKEN / f"{name}.expected").read_text()


# -- source map --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        ((), (1, 1), (1, 1)),
        (("metadata",), (4, 3), (3, 1)),
        (("metadata", "id"), (4, 7), (4, 3)),
        (("inputSchema", "properties", "databaseId", "$ref"), (11, 13), (11, 7)),
        (("pipeline",), (13, 3), (12, 1)),
        (("pipeline", 0), (13, 5), (13, 5)),
        (("pipeline", 0, "async"), (14, 12), (14, 5)),
        (BODY, (16, 13), (16, 7)),
        ((*BODY, "__type__"), (16, 13), (16, 13)),
        ((*BODY, "__value__"), (16, 13), (16, 13)),
        ((*BODY, "__value__", 0), (17, 11), (17, 11)),
        ((*BODY, "__value__", 0, "config"), (18, 19), (18, 11)),
        ((*BODY, "__value__", 1), (20, 11), (20, 11)),
        ((*BODY, "__value__", 1, "config", "key"), (22, 18), (22, 13)),
        ((*BODY, "__value__", 1, "config", "key", "__value__"), (22, 18), (22, 18)),
        ((*BODY, "__value__", 1, "config", "databaseId"), (23, 25), (23, 13)),
        # paths that do not exist resolve to their nearest existing ancestor
        ((*BODY, "__value__", 1, "config", "missing"), (22, 13), (22, 13)),
        ((*BODY, 0), (16, 13), (16, 13)),
        (("pipeline", 7, "id"), (13, 3), (13, 3)),
        (("pipeline", "0"), (13, 3), (13, 3)),
    ],
)
def test_source_map_of_the_seed(
    path: tuple[str | int, ...], value: tuple[int, int], key: tuple[int, int]
) -> None:
    [document] = load_text(SEED, "seed.yaml")
    assert document.source.locate(path) == Location("seed.yaml", *value)
    assert document.source.locate_key(path) == Location("seed.yaml", *key)


def test_source_map_through_aliases_and_merges() -> None:
    text = "base: &b\n  x: 1\n  y: [a]\nm:\n  <<: *b\n  z: 2\nc: *b\n"
    [document] = load_text(text, "t.yaml")
    source = document.source
    assert source.locate(("m", "x")) == Location("t.yaml", 2, 6)  # where the value is written
    assert source.locate(("m", "z")) == Location("t.yaml", 6, 6)
    assert source.locate(("c",)) == Location("t.yaml", 7, 4)  # the alias itself
    assert source.locate_key(("c",)) == Location("t.yaml", 7, 1)
    assert source.locate(("c", "y", 0)) == Location("t.yaml", 3, 7)


# -- syntax errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: [1, 2\nb: 3",
            "t.yaml:2:2: a[2]: did not find expected ',' or ']' while parsing a flow sequence "
            "started at line 1, column 4",
        ),
        (
            "a:\n  b: 1\n c: 2",
            "t.yaml:3:2: did not find the expected key (check the indentation) while parsing "
            "a block mapping started at line 1, column 1",
        ),
        (
            "a:\n\tb: 1",
            "t.yaml:2:1: a: found character '\\t' that cannot start any token; expected spaces "
            "(YAML indents with spaces, not tabs)",
        ),
        (
            "key: !var @input.x",
            "t.yaml:1:11: key: found character '@' that cannot start any token; expected a "
            "quoted string (text starting with @ must be quoted)",
        ),
        (
            "a: 'open\n",
            "t.yaml:2:1: a: found unexpected end of stream while scanning a quoted scalar "
            "started at line 1, column 4",
        ),
        (
            "a: b: c",
            "t.yaml:1:5: found ':' where no mapping value can start; expected a quoted "
            "string if the text contains ': '",
        ),
        ("%YAML 3.0\n---\na: 1", "t.yaml:1:1: found a %YAML version other than 1.x; expected 1.2"),
        (
            "a: b\x00c",
            "t.yaml:1:5: found character U+0000 (control characters are not allowed); "
            "expected printable text",
        ),
        (
            "é: \x07",
            "t.yaml:1:4: found character U+0007 (control characters are not allowed); "
            "expected printable text",
        ),
        ("a: x\ud800", "t.yaml:1:5: found lone surrogate U+D800; expected valid Unicode text"),
        (
            "a: " + "9" * 5000,
            "t.yaml:1:4: a: found an integer of 5000 characters; expected at most 4300 digits",
        ),
    ],
)
def test_syntax_errors(text: str, expected: str) -> None:
    assert error(text) == expected


def test_pure_python_parser_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = load_text(SEED, "seed.yaml")[0]
    monkeypatch.setattr(_yaml, "_CParser", None)
    document = load_text(SEED, "seed.yaml")[0]
    assert document.data == expected.data
    for path in [(*BODY, "__value__", 1, "config", "key"), ("metadata", "id"), BODY]:
        assert document.source.locate(path) == expected.source.locate(path)
        assert document.source.locate_key(path) == expected.source.locate_key(path)
    assert error("a: !pipeline x") == "t.yaml:1:4: a: tag !pipeline expects a sequence " + (
        "(a list of steps), found a scalar"
    )
    assert error("a: b\x00c").startswith("t.yaml:1:5: found character U+0000")


# -- robustness --------------------------------------------------------------------------------

TOKENS = [
    *["- ", ": ", "? ", ", ", "{", "}", "[", "]", "'", '"', "\t", "\n", "  ", " ", "#", "|", ">"],
    *["!var ", "!pipeline", "!defer ", "!nunjucks", "!!int ", "!!python/x ", "! ", "!jq "],
    *["&a ", "*a", "&b ", "*b", "<<: ", "---\n", "...\n", "%YAML 1.2\n", "%TAG ! x\n"],
    *["a", "1", "~", "@", "\\u", "\\", "0x1F", "1e999", "\x00", "\x85", "\ufeff", "\ud800"],
]
yamlish = st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=60).map("".join)
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=200)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(yamlish, any_text, st.text()))
def test_arbitrary_text_raises_only_definition_errors(text: str) -> None:
    try:
        documents = load_text(text, "fuzz.yaml")
    except DefinitionError as exc:
        assert exc.location is not None and exc.location.file == "fuzz.yaml"
        assert "could not read YAML" not in exc.message
    else:
        assert all(isinstance(d, Document) for d in documents)
        for document in documents:
            document.source.locate(("a", 0, "__value__"))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_raise_only_brickrun_errors(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    path.write_bytes(data)
    with contextlib.suppress(BrickrunError):  # anything else fails the test
        load_file(path)
