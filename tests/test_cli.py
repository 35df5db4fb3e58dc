"""The ``brickrun`` command line, driven in-process (``main(argv)``) and once as a process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from brickrun.cli import main

ROOT = Path(__file__).parent.parent
GREET = ROOT / "examples" / "bricks" / "greet.yaml"
BROKEN = ROOT / "tests" / "data" / "broken"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- validate -----------------------------------------------------------------------------------


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", str(GREET))
    assert (code, out) == (0, "")
    assert "no problems" in err


def test_validate_reports_every_error_and_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BROKEN)
    code, out, _ = run(capsys, "validate", "unknown_brick_id.yaml", "template_syntax.yaml")
    assert code == 1
    assert out.splitlines() == [
        (BROKEN / "template_syntax.expected").read_text().strip(),
        (BROKEN / "unknown_brick_id.expected").read_text().strip(),
    ]


def test_validate_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    code, out, _ = run(capsys, "validate", "--format", "json", "bad_var_path.yaml")
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False
    [problem] = report["problems"]
    assert problem == {
        "name": "DefinitionError",
        "message": "invalid variable path '@input..name': empty segment at character 7; "
        "expected a name after '.'",
        "path": "pipeline[0].config.items[0]",
        "file": "bad_var_path.yaml",
        "line": 11,
        "column": 11,
        "severity": "error",
    }


def test_validate_warns_about_plain_strings_that_look_like_templates(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(
        "apiVersion: v3\nkind: component\nmetadata: {id: '@t/plain', name: Plain}\n"
        "inputSchema: {}\npipeline:\n  - id: '@pixiebrix/identity'\n"
        "    config: {greeting: 'Hello {{ @input.name }}'}\n"
    )
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 0, "warnings alone do not fail validation"
    assert out.strip() == (
        f"{path}:7:24: pipeline[0].config.greeting: warning: plain string "
        "'Hello {{ @input.name }}' looks like a template but is a literal; "
        "tag it !nunjucks (or !mustache) to render it"
    )


def test_validate_warns_about_output_key_on_effect(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "effect.yaml"
    path.write_text(
        "apiVersion: v3\nkind: component\nmetadata: {id: '@t/effect', name: Effect}\n"
        "inputSchema: {}\npipeline:\n  - id: '@pixiebrix/state/assign'\n"
        "    config: {variableName: a, value: 1}\n    outputKey: nothing\n"
    )
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 0
    assert "warning: @pixiebrix/state/assign is an effect brick" in out


def test_validate_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "does/not/exist.yaml")
    assert code == 1
    assert "no such file or folder: does/not/exist.yaml" in out


# -- brick --------------------------------------------------------------------------------------


def test_brick_json_prints_exactly_the_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "brick", str(GREET), "--input", '{"name": "Ada", "excited": true}',
        "--now", "2026-11-23T15:00:00Z", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) == {
        "greeting": "Hello, Ada!!!",
        "at": "2026-11-23T15:00:00.000Z",
        "count": "1",
    }
    assert out.count("\n") == 1


def test_brick_by_id_with_definitions_folder(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "brick", "@examples/greet", "--definitions", str(GREET.parent),
        "--input", '{"name": "Bo"}', "--mod-vars", '{"greetings": 41}', "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["count"] == "42"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["@examples/greet", "--input", '{"name": 7}'],
            {
                "name": "InputValidationError",
                "message": "Invalid inputs for brick @examples/greet: "
                "name: 7 is not of type 'string'",
                "path": "",
                "brickId": "@examples/greet",
                "location": None,
            },
        ),
        (
            ["@pixiebrix/identiti"],
            {
                "name": "UnknownBrickError",
                "message": "unknown brick id '@pixiebrix/identiti'; "
                "did you mean '@pixiebrix/identity'?",
                "path": "",
                "brickId": "@pixiebrix/identiti",
                "location": None,
            },
        ),
        (
            ["@pixiebrix/error", "--input", '{"message": "stop"}'],
            {
                "name": "BusinessError",
                "message": "stop",
                "path": "",
                "brickId": "@pixiebrix/error",
                "location": None,
            },
        ),
    ],
    ids=["InputValidationError", "UnknownBrickError", "BusinessError"],
)
def test_brick_json_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: dict[str, object]
) -> None:
    code, out, _ = run(capsys, "brick", *argv, "--definitions", str(GREET.parent), "--json")
    assert code == 1
    assert json.loads(out) == {"error": expected}


def test_brick_error_inside_a_definition_carries_its_location(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "fails.yaml"
    path.write_text(
        "apiVersion: v3\nkind: component\nmetadata: {id: '@t/fails', name: Fails}\n"
        "inputSchema: {}\npipeline:\n  - id: '@pixiebrix/identity'\n"
        "    config: {x: !var '@input.a.b'}\n"
    )
    code, out, _ = run(capsys, "brick", str(path), "--json")
    assert code == 1
    assert json.loads(out)["error"] == {
        "name": "InvalidPathError",
        "message": "@input.a.b undefined (missing a)",
        "path": "pipeline[0]",
        "brickId": "@pixiebrix/identity",
        "location": {"file": str(path), "line": 6, "column": 5},
    }


def test_brick_broken_definition_file_is_a_definition_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "brick", str(BROKEN / "template_syntax.yaml"), "--json")
    assert code == 1
    error = json.loads(out)["error"]
    assert error["name"] == "DefinitionError"
    assert error["location"]["line"] == 10


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "{nope"], "--input: not valid JSON"),
        (["--options", "[1]"], "--options and --mod-vars must be JSON objects"),
        (["--now", "yesterday"], "--now: not an ISO-8601 instant"),
        (["--input", "@/no/such/file.json"], "--input: cannot read /no/such/file.json"),
    ],
)
def test_brick_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, "brick", "@pixiebrix/identity", *argv)
    assert code == 2
    assert message in err


def test_brick_trace_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "brick", str(GREET), "--input", '{"name": "Ada"}', "--trace")
    assert code == 0
    assert json.loads(out)["greeting"] == "Hello, Ada."
    assert "pipeline[2].config.else[0] @pixiebrix/identity" in err


def test_brick_input_from_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "in.json"
    data.write_text('{"name": "File"}')
    code, out, _ = run(capsys, "brick", str(GREET), "--input", f"@{data}", "--json")
    assert code == 0 and json.loads(out)["greeting"] == "Hello, File."


# -- bricks, describe, schema, usage --------------------------------------------------------------


def test_bricks_lists_builtins_and_definitions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "bricks", "--definitions", str(GREET.parent), "--json")
    assert code == 0
    rows = {row["id"]: row for row in json.loads(out)}
    assert rows["@pixiebrix/timestamp"] == {
        "id": "@pixiebrix/timestamp",
        "kind": "reader",
        "name": "Generate a Timestamp",
    }
    assert rows["@examples/greet"]["kind"] == "transformer"


def test_describe_shows_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "describe", "@pixiebrix/run", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["inputSchema"]["required"] == ["body"]
    assert info["defaultOutputKey"] == "runOutput"


def test_describe_unknown_id(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "describe", "@pixiebrix/tmestamp")
    assert code == 1
    assert "did you mean '@pixiebrix/timestamp'" in err


def test_schema_is_draft07_and_validates_definitions(capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    from brickrun._yaml import load_file

    code, out, _ = run(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    jsonschema.Draft7Validator.check_schema(schema)
    refs = _walk_refs(schema)
    assert refs and all(ref.startswith("#/definitions/") for ref in refs), "self-contained"
    validator = jsonschema.Draft7Validator(schema)
    [doc] = load_file(GREET)
    assert list(validator.iter_errors(doc.data)) == []
    broken = dict(doc.data, kind="componnent")
    assert list(validator.iter_errors(broken)), "a misspelled kind is reported"
    code, out, _ = run(capsys, "schema", "--tags")
    assert json.loads(out)[0] == "!var scalar"


def _walk_refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _walk_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _walk_refs(v)]
    return []


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 2 and "COMMAND" in err


def test_unknown_flag_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate", "--nope", "x"])
    assert info.value.code == 2


def test_console_script_runs_as_a_process() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "brickrun", "brick", "@pixiebrix/identity", "--input",
         '{"a": 1}', "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (out.returncode, out.stdout) == (0, '{"a": 1}\n')
