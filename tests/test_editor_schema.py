"""The editor schema, checked the way the YAML language server sees files.

With ``yaml.customTags`` set as ``brickrun init`` sets them, the language server reads a tagged
scalar as a string, a tagged sequence as a list and a tagged mapping as an object (the tag is
dropped), and validates every document of a file with draft-07 semantics. ``ls_view`` loads
YAML that way (YAML 1.2; timestamps stay text) and ``jsonschema.Draft7Validator`` checks it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from brickrun.cli import main
from brickrun.cli._definitions import CUSTOM_TAGS, editor_schema
from brickrun.cli._editor import known_bricks

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


class _LanguageServerView(SafeConstructor):
    """Custom tags dropped, keeping the node kind; timestamps as text (as the server reads)."""


def _untagged(loader: SafeConstructor, suffix: str, node: Node) -> Any:
    if isinstance(node, ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, MappingNode)
    return loader.construct_mapping(node, deep=True)


_LanguageServerView.add_multi_constructor("!", _untagged)
_LanguageServerView.add_constructor(
    "tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str
)


def ls_view(text: str) -> list[Any]:
    """Every document of a YAML text as the YAML language server validates it."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _LanguageServerView
    return [doc for doc in yaml.load_all(text) if doc is not None]


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    if not error.context:
        return [error]
    return [leaf for sub in error.context for leaf in _leaves(sub)]


def _specific(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors an editor shows for ``error``: for ``anyOf``, those of the alternative that
    matched best (fewest failures at the value itself, then fewest failures), as the language
    server picks it; the ``anyOf`` error itself when no alternative stands out."""
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return [error]
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    depth = len(error.absolute_path)

    def score(errors: list[jsonschema.ValidationError]) -> tuple[int, int]:
        leaves = [leaf for e in errors for leaf in _leaves(e)]
        return sum(len(leaf.absolute_path) == depth for leaf in leaves), len(leaves)

    ranked = sorted(branches.values(), key=score)
    if len(ranked) > 1 and score(ranked[0]) == score(ranked[1]) and depth:
        return [error]
    return [leaf for sub in ranked[0] for leaf in _specific(sub)]


def problems(schema: dict[str, Any], text: str) -> list[tuple[int, str, str]]:
    """``(document index, instance path, message)`` for each problem an editor shows."""
    validator = jsonschema.Draft7Validator(schema)
    found = []
    for index, document in enumerate(ls_view(text)):
        for error in validator.iter_errors(document):
            for shown in _specific(error):
                found.append((index, "/".join(map(str, shown.absolute_path)), shown.message))
    return found


def example_files() -> Iterator[Path]:
    """Every example definition file and test file (not the integrations config)."""
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        if path.name != "integrations.yaml":
            yield path


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return editor_schema()


def test_schema_is_draft07_and_self_contained(schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(schema)
    text = json.dumps(schema)
    assert '"$ref": "https://' not in text and '"$ref": "http://' not in text
    assert schema["x-yaml-custom-tags"] == CUSTOM_TAGS


@pytest.mark.parametrize("path", list(example_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_is_valid_as_the_language_server_sees_it(
    schema: dict[str, Any], path: Path
) -> None:
    assert problems(schema, path.read_text(encoding="utf-8")) == []


def test_the_scaffold_is_valid_as_the_language_server_sees_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path / "shop")]) == 0
    capsys.readouterr()
    project = tmp_path / "shop"
    settings = json.loads((project / ".vscode" / "settings.json").read_text())
    assert settings["yaml.customTags"] == CUSTOM_TAGS  # the tags ls_view drops
    [(schema_file, _)] = settings["yaml.schemas"].items()
    schema = json.loads((project / schema_file).read_text())
    files = sorted(project.glob("*/*.yaml"))
    assert len(files) == 3
    for path in files:
        assert problems(schema, path.read_text()) == [], path
    # The project's own brick is known: its config is checked.
    mod = (project / "mods" / "telemetry.yaml").read_text()
    broken = mod.replace("eventName: page-view", "eventName: Page View")
    [(_, where, _)] = problems(schema, broken)
    assert where == "extensionPoints/0/config/action/0/config/eventName"


HEADER = 'apiVersion: v3\nkind: component\nmetadata: {id: "@t/x", name: X}\ninputSchema: {}\n'


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            HEADER.replace("kind: component", "kind: componnet") + "pipeline: []\n",
            "kind",
            "'componnet' is not one of ['component', 'extensionPoint', 'recipe', 'service']",
        ),
        (
            HEADER + 'pipeline:\n  - id: "@pixiebrix/identity"\n    outptKey: x\n',
            "pipeline/0",
            "Additional properties are not allowed ('outptKey' was unexpected)",
        ),
        (
            HEADER + "pipeline:\n  - id: \"@pixiebrix/run\"\n    config:\n      body: !pipeline\n"
            '        - id: "@pixiebrix/identity"\n          confg: {}\n',
            "pipeline/0/config/body/0",
            "Additional properties are not allowed ('confg' was unexpected)",
        ),
        (
            'apiVersion: v3\nkind: recipe\nmetadata: {id: "@t/m", name: M}\n'
            "definitions:\n  t: {kind: extensionPoint, definition: {type: trigger}}\n"
            'extensionPoints:\n  - id: t\n    config:\n      action:\n'
            '        - id: "@pixiebrix/identity"\n          labl: x\n',
            "extensionPoints/0/config/action/0",
            "Additional properties are not allowed ('labl' was unexpected)",
        ),
        (
            HEADER + 'pipeline:\n  - id: "@pixiebrix/identiy"\n',
            "pipeline/0/id",
            "'@pixiebrix/identiy' is not ",
        ),
        (
            HEADER + 'pipeline:\n  - id: "@pixiebrix/data/put"\n'
            "    config: {databaseId: db, key: k, value: {}, mergeStrategy: replac}\n",
            "pipeline/0/config/mergeStrategy",
            "'replac' is not one of ['replace', 'shallow', 'deep', 'deep_append']",
        ),
        (
            HEADER + 'pipeline:\n  - id: "@pixiebrix/data/get"\n    config: {databaseId: db}\n',
            "pipeline/0/config",
            "'key' is a required property",
        ),
    ],
    ids=[
        "misspelled kind", "unknown step key", "unknown key in a !pipeline body",
        "unknown key in a mod action", "misspelled built-in brick id", "bad enum in a config",
        "missing required config",
    ],
)  # fmt: skip
def test_mistakes_are_reported_where_they_are(
    schema: dict[str, Any], text: str, where: str, message: str
) -> None:
    found = problems(schema, text)
    assert len(found) == 1, found
    assert found[0][1] == where
    assert found[0][2].startswith(message), found[0][2]


@pytest.mark.parametrize(
    "config",
    [
        # expressions stand for values of any type; the runtime fills integration inputs
        '{databaseId: !var "@options.db", eventName: !nunjucks "{{ @input.x }}", data: !var "@i"}',
        "{databaseId: db, eventName: e, data: {any: thing}, extra: allowed}",
        '!var "@input"',
        '{__type__: var, __value__: "@input"}',
    ],
)
def test_expressions_and_filled_inputs_are_accepted(schema: dict[str, Any], config: str) -> None:
    text = HEADER + f'pipeline:\n  - id: "@pixies/telemetry/record"\n    config: {config}\n'
    assert problems(schema, text) == []


def test_user_bricks_and_inner_keys_are_accepted_without_being_known(
    schema: dict[str, Any],
) -> None:
    text = HEADER + 'pipeline:\n  - id: "@acme/anything"\n    config: {x: 1}\n  - id: innerKey\n'
    assert problems(schema, text) == []


def test_ids_complete_from_the_known_bricks(schema: dict[str, Any]) -> None:
    step = schema["definitions"]["step"]
    [known, _] = step["properties"]["id"]["anyOf"]
    ids = {brick.id for brick in known_bricks()}
    assert set(known["enum"]) == ids
    assert {"@pixiebrix/identity", "@pixies/telemetry/record", "@pixiebrix/http"} <= ids
    checked = {clause["if"]["properties"]["id"]["const"] for clause in step["allOf"]}
    assert "@pixiebrix/data/put" in checked and "@pixies/telemetry/record" in checked


def test_schema_vscode_writes_the_editor_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bricks = tmp_path / "bricks"
    bricks.mkdir()
    (bricks / "mine.yaml").write_text(
        HEADER.replace("@t/x", "@t/mine") + 'pipeline:\n  - id: "@pixiebrix/identity"\n'
    )
    code = main(["schema", "--vscode", str(tmp_path), "--definitions", str(bricks),
                 "--glob", "defs/**/*.yaml"])  # fmt: skip
    assert code == 0
    assert "wrote" in capsys.readouterr().err
    settings = json.loads((tmp_path / ".vscode" / "settings.json").read_text())
    assert settings == {
        "yaml.schemas": {".vscode/brickrun.schema.json": ["defs/**/*.yaml"]},
        "yaml.customTags": CUSTOM_TAGS,
    }
    written = json.loads((tmp_path / ".vscode" / "brickrun.schema.json").read_text())
    assert "@t/mine" in written["x-brickrun-bricks"]
    assert main(["schema", "--vscode", str(tmp_path), "--tags"]) == 2
