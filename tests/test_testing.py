"""Golden tests (``brickrun test``): the examples' cases, matching, diffs, mocks, the format."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from brickrun._matching import compare, match, match_unordered
from brickrun._testfile import find_test_files, golden_test_schema, load_test_file
from brickrun.cli import main

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
GREET = EXAMPLES / "bricks" / "greet.yaml"
UUID = "9b2f3c1e-8a4d-4f6b-9c2d-1e3f5a7b9c0d"
MOD = EXAMPLES / "mods" / "telemetry-mod.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


# -- the examples --------------------------------------------------------------------------------


def test_every_example_passes_its_golden_tests(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "test", str(EXAMPLES), "--json")
    report = json.loads(out)
    failing = [c for c in report["cases"] if c["status"] != "passed"]
    assert code == 0, json.dumps(failing, indent=2)
    assert report["failed"] == report["errors"] == 0
    assert report["passed"] == len(report["cases"]) >= 15


def test_every_example_definition_has_test_cases() -> None:
    """Each definition file in examples/ is the subject of a case or loaded by a test file."""
    covered: set[Path] = set()
    for file in find_test_files([EXAMPLES]):
        loaded = load_test_file(file)
        assert not loaded.errors, loaded.errors
        for case in loaded.cases:
            if not case.subject.startswith("@"):
                covered.add(Path(case.subject).resolve())
            for path in case.definitions:
                found = path.rglob("*.yaml") if path.is_dir() else [path]
                covered.update(p.resolve() for p in found)
    definitions = {
        p.resolve()
        for p in EXAMPLES.rglob("*.yaml")
        if not p.name.endswith(".test.yaml") and p.name != "integrations.yaml"
    }
    assert definitions and definitions <= covered, sorted(map(str, definitions - covered))


# -- matching ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual", "partial", "ok"),
    [
        ({"a": 1}, {"a": 1}, False, True),
        ({"a": 1}, {"a": 1, "b": 2}, False, False),
        ({"a": 1}, {"a": 1, "b": 2}, True, True),
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}, True, True),
        ({"a": 1}, {}, True, False),
        ({"a": None}, {}, True, False),  # null must be there
        ([1, 2], [1, 2, 3], True, False),  # lists match item by item, same length
        (1, 1.0, False, True),
        (True, 1, False, False),
        (0, False, False, False),
        ("1", 1, False, False),
        ("<any>", None, False, True),
        ("<any>", {"x": [1]}, False, True),
        ("<string>", "x", False, True),
        ("<string>", 1, False, False),
        ("<number>", 1.5, False, True),
        ("<number>", True, False, False),
        ("<uuid>", UUID, False, True),
        ("<uuid>", "not-a-uuid", False, False),
        ("<timestamp>", "2026-01-01T00:00:00.000Z", False, True),
        ("<timestamp>", "2026-01-01", False, False),
        ("a@b.c-<timestamp>-<uuid>", f"a@b.c-2026-01-01T00:00:00.000Z-{UUID}", False, True),
        ("Request failed<any>", "Request failed with status 503", False, True),
        ("Request failed<any>", "request failed", False, False),
        ("a.b<any>", "axb", False, False),  # the literal parts are literal, not regexes
        ("x<number>y", "x-1.5e3y", False, True),
    ],
)
def test_match(expected: Any, actual: Any, partial: bool, ok: bool) -> None:
    assert match(expected, actual, partial=partial)[0] is ok


def test_match_shows_placeholders_that_matched_and_only_the_keys_compared() -> None:
    ok, shown = match({"id": "<uuid>", "n": 1}, {"id": UUID, "n": 2, "x": 3}, partial=True)
    assert not ok
    assert shown == {"id": "<uuid>", "n": 2}


def test_unordered_matching_finds_an_assignment_a_greedy_one_would_miss() -> None:
    expected = [{"a": "<any>"}, {"a": 1, "b": 2}]
    actual = [{"a": 1, "b": 2}, {"a": 3}]
    assert match_unordered(expected, actual)[0]
    assert not match_unordered(expected, actual[:1])[0]
    assert not match_unordered(expected[:1], actual)[0]  # an unexpected record fails too


def test_compare_diff_is_sorted_json_of_the_compared_sections() -> None:
    diff = compare({"output": {"b": 1, "a": 2}}, {"output": {"a": 2, "b": 3}, "error": None})
    assert diff is not None
    lines = diff.splitlines()
    assert lines[:2] == ["--- expected", "+++ actual"]
    assert '-    "b": 1' in lines and '+    "b": 3' in lines
    assert '     "a": 2,' in lines  # unchanged context
    assert "error" not in diff  # "no error" held, so it is not shown
    assert compare({"output": 1}, {"output": 1, "error": None, "errors": []}) is None


def test_an_unexpected_error_or_background_failure_fails_a_case() -> None:
    boom = {"name": "BusinessError", "message": "boom"}
    diff = compare({}, {"error": boom})
    assert diff is not None and '+    "message": "boom",' in diff
    assert compare({}, {"error": None, "errors": [boom]}) is not None


# -- running: failures, diffs, reports -----------------------------------------------------------

GREET_TESTS = f"""
apiVersion: v3
kind: test
defaults:
  brick: {GREET}
  now: "2026-11-23T15:00:00Z"
tests:
  - name: passes
    input: {{name: Ada}}
    expect:
      output: {{greeting: "Hello, Ada.", at: "<timestamp>", count: "1"}}
  - name: breaks on purpose
    input: {{name: Ada}}
    expect:
      output: {{greeting: "Hello, Bob.", at: "<timestamp>", count: "1"}}
      variables: {{greetings: "1"}}
"""


def test_a_broken_expectation_fails_with_a_diff_and_the_case_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "greet.test.yaml", GREET_TESTS)
    code, out, _ = run(capsys, "test", str(path))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{path} .F"
    assert f"FAILED {path}:11: breaks on purpose" in lines
    assert '-    "greeting": "Hello, Bob."' in lines
    assert '+    "greeting": "Hello, Ada."' in lines
    assert '     "at": "<timestamp>",' in lines  # a matched placeholder is not a difference
    assert lines[-1].startswith("1 failed, 1 passed in ") and lines[-1].endswith("s")


def test_json_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "greet.test.yaml", GREET_TESTS)
    code, out, _ = run(capsys, "test", str(path), "--json")
    assert code == 1
    report = json.loads(out)
    assert (report["passed"], report["failed"], report["errors"]) == (1, 1, 0)
    first, second = report["cases"]
    assert first == {
        "name": "passes", "file": str(path), "line": 7, "status": "passed",
        "duration": first["duration"],
    }  # fmt: skip
    assert second["status"] == "failed" and second["line"] == 11
    assert second["diff"].startswith("--- expected\n+++ actual\n")


def test_keyword_and_exitfirst_select_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "greet.test.yaml", GREET_TESTS)
    code, out, _ = run(capsys, "test", str(path), "-k", "PASSES")
    assert code == 0 and out.splitlines()[-1].startswith("1 passed in ")
    write(tmp_path, "later.test.yaml", GREET_TESTS)
    code, out, _ = run(capsys, "test", str(tmp_path), "-x", "--json")
    assert code == 1 and [c["status"] for c in json.loads(out)["cases"]] == ["passed", "failed"]


def test_no_path_finds_test_files_below_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "a/one.test.yaml", GREET_TESTS.replace("Bob", "Ada"))
    write(tmp_path, ".hidden/skipped.test.yaml", "not: [valid")
    write(tmp_path, "node_modules/skipped.test.yaml", "not: [valid")
    write(tmp_path, "venv/pyvenv.cfg", "home = /usr/bin\n")
    write(tmp_path, "venv/lib/skipped.test.yaml", "not: [valid")
    write(tmp_path, "b/not-a-test.yaml", "not: [valid")
    monkeypatch.chdir(tmp_path)
    assert find_test_files(["."]) == [Path("a/one.test.yaml")]
    code, out, _ = run(capsys, "test")
    assert code == 0, out
    assert out.splitlines()[0] == os.path.join("a", "one.test.yaml") + " .."


def test_nothing_to_run_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "test", str(tmp_path))
    assert code == 1 and "no test files (*.test.yaml) found" in err
    code, _, err = run(capsys, "test", str(tmp_path / "missing"))
    assert code == 1 and "no such file or folder" in err


# -- the file format -----------------------------------------------------------------------------


def test_format_errors_are_located_and_reported_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "bad.test.yaml",
        """
        apiVersion: v3
        kind: test
        tests:
          - name: typo
            brick: "@pixiebrix/identity"
            expcet: {output: {}}
          - brick: "@pixiebrix/identity"
            now: yesterday
          - name: both
            brick: "@pixiebrix/identity"
            mod: x.yaml
        """,
    )
    code, out, _ = run(capsys, "test", str(path))
    assert code == 1
    assert f"ERROR {path}:6: bad.test.yaml" in out
    assert (
        f"{path}:6:5: tests[0].expcet: unknown key 'expcet' in a test case (did you mean "
        "'expect'?); expected one of: name, brick, mod, input, options, variables, now, host, "
        "mocks, http, events, integrations, env, deployment, timeout, expect"
    ) in out
    assert f"{path}:7:5: tests[1]: missing required key 'name' in a test case" in out
    assert f'{path}:8:10: tests[1].now: found the string "yesterday"; expected an ISO-8601' in out
    assert f"{path}:11:5: tests[2].mod: a test case has both 'brick' and 'mod'" in out
    assert out.splitlines()[-1].startswith("1 error in ")


def test_semantic_errors_name_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "sem.test.yaml",
        f"""
        apiVersion: v3
        kind: test
        defaults:
          mod: {MOD}
        tests:
          - name: events on a brick
            brick: "@pixiebrix/identity"
            events: [{{type: visit, url: x}}]
            expect: {{reported: []}}
          - name: bad event
            input: 1
            events: [{{type: vist, url: x}}]
          - name: half a mock
            mocks: [{{brick: x}}, {{brick: x, in: y, error: {{name: X}}}}]
          - name: missing file
            mod: nothing.yaml
        """,
    )
    loaded = load_test_file(path)
    assert not loaded.cases
    assert [f"{e.location.line}:{e.location.column} {e.message}" for e in loaded.errors] == [  # type: ignore[union-attr]
        "8:5 'events' applies to mod cases only",
        "9:14 'reported' applies to mod cases only",
        "11:5 'input' applies to brick cases only",
        "12:14 unknown event type 'vist'; expected one of visit, navigate, user, event, "
        "custom, invoke, wait",
        "14:13 a mock needs 'output' (what it returns) or 'error'",
        "14:36 'in' applies to step mocks only",
        "14:50 missing required key 'message' in an error",
        f"16:10 no such file: {tmp_path / 'nothing.yaml'} (ids start with @)",
    ]


def test_the_editor_schema_of_test_files_agrees_with_the_loader() -> None:
    import jsonschema

    from brickrun._yaml import load_file

    validator = jsonschema.Draft7Validator(golden_test_schema())
    for file in find_test_files([EXAMPLES]):
        [document] = [d for d in load_file(file) if d.data.get("kind") == "test"]
        assert list(validator.iter_errors(document.data)) == [], file
    bad = {"apiVersion": "v3", "kind": "test", "tests": [{"name": "x", "expcet": {}}]}
    assert list(validator.iter_errors(bad))
    both = {"apiVersion": "v3", "kind": "test", "tests": [{"name": "x", "brick": "a", "mod": "b"}]}
    assert list(validator.iter_errors(both))


# -- mocks, isolation, the network ---------------------------------------------------------------


def run_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> dict[str, Any]:
    """Run a test file given as text; its ``--json`` report plus the exit ``code``."""
    path = write(tmp_path, "cases.test.yaml", text)
    code, out, _ = run(capsys, "test", str(path), "--json")
    report: dict[str, Any] = json.loads(out)
    report["code"] = code
    return report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["cases"]}


def test_mocks_of_inner_mod_bricks_and_mod_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = write(
        tmp_path,
        "mod.yaml",
        """
        apiVersion: v3
        kind: recipe
        metadata: {id: "@t/mod", name: Mod}
        definitions:
          start: {kind: extensionPoint, definition: {type: trigger, trigger: load}}
          shout:
            kind: component
            inputSchema: {text: {type: string}}
            pipeline:
              - id: "@pixiebrix/identity"
                config: {text: !nunjucks "{{ @input.text | upper }}"}
        extensionPoints:
          - id: start
            label: Start
            config:
              action:
                - id: shout
                  outputKey: said
                  config: {text: hi}
                - id: "@pixiebrix/state/assign"
                  config: {variableName: said, value: !var "@said.text"}
        """,
    )
    report = run_cases(
        tmp_path,
        capsys,
        f"""
        apiVersion: v3
        kind: test
        defaults:
          mod: {mod}
          host: {{url: "https://example.com/"}}
        tests:
          - name: real
            expect: {{variables: {{said: HI}}}}
          - name: inner brick by key
            mocks: [{{brick: shout, output: {{text: mocked}}}}]
            expect:
              variables: {{said: mocked}}
              calls:
                - {{brick: shout, step: "extensionPoints[0].config.action[0]", input: {{text: hi}}}}
          - name: inner step
            mocks: [{{step: "definitions.shout.pipeline[0]", output: {{text: step}}}}]
            expect: {{variables: {{said: step}}}}
          - name: action step
            mocks: [{{step: "extensionPoints[0].config.action[1]", error: {{message: nope}}}}]
            expect:
              variables: {{}}
              errors: [{{component: Start, name: BusinessError, message: nope}}]
              reported: [{{name: TriggerError, component: Start}}]
          - name: unknown step path lists the steps
            mocks: [{{step: "pipeline[0]", output: 1}}]
        """,
    )
    assert statuses(report) == {
        "real": "passed",
        "inner brick by key": "passed",
        "inner step": "passed",
        "action step": "passed",
        "unknown step path lists the steps": "error",
    }
    message = report["cases"][-1]["message"]
    assert "@t/mod has no step pipeline[0]; its steps are: " in message
    assert "extensionPoints[0].config.action[0] (shout)" in message
    assert "definitions.shout.pipeline[0] (@pixiebrix/identity)" in message


def test_stand_ins_still_validate_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_cases(
        tmp_path,
        capsys,
        """
        apiVersion: v3
        kind: test
        tests:
          - name: bad config of a mocked brick
            brick: "@pixiebrix/data/get"
            input: {databaseId: db}
            mocks: [{brick: "@pixiebrix/data/get", output: {}}]
            expect:
              error: {name: InputValidationError, message: "<any>'key' is a required property<any>"}
              calls: []
        """,
    )
    assert report["code"] == 0, report


def test_cases_are_hermetic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The developer's environment cannot change a result; a case's own env can. Records of
    one case are not seen by the next. Nothing reaches the network."""
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("BRICKRUN_TELEMETRY_DISABLED", "1")
    report = run_cases(
        tmp_path,
        capsys,
        """
        apiVersion: v3
        kind: test
        defaults:
          brick: "@pixies/telemetry/record"
          host: {url: "https://example.com/", email: ada@example.com}
          input: {databaseId: db, eventName: e, data: {}}
        tests:
          - name: records despite the shell's DO_NOT_TRACK
            expect: {records: {db: [{data: {event: e}}]}}
          - name: a fresh store per case
            expect: {records: {db: [{data: {event: e}}]}}
          - name: the case's env applies
            env: {DO_NOT_TRACK: "1"}
            expect:
              output: {recorded: false, reason: "<string>"}
              records: {db: []}
          - name: no network
            brick: "@pixiebrix/http"
            input: {url: "https://example.com/api"}
            expect:
              error: {name: BusinessError}
        """,
    )
    assert os.environ["DO_NOT_TRACK"] == "1"  # restored
    assert statuses(report) == {
        "records despite the shell's DO_NOT_TRACK": "passed",
        "a fresh store per case": "passed",
        "the case's env applies": "passed",
        "no network": "failed",
    }
    message = report["cases"][-1]["message"]
    assert "requests no http mock matches: GET https://example.com/api" in message


def test_timeout_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = run_cases(
        tmp_path,
        capsys,
        """
        apiVersion: v3
        kind: test
        tests:
          - name: slow
            brick: "@t/slow"
            timeout: 0.2
        ---
        apiVersion: v3
        kind: component
        metadata: {id: "@t/slow", name: Slow}
        inputSchema: {}
        pipeline:
          - id: "@pixiebrix/retry"
            config:
              intervalMillis: 60000
              body: !pipeline
                - id: "@pixiebrix/error"
                  config: {message: again}
        """,
    )
    [case] = report["cases"]
    assert case["status"] == "error"
    assert case["message"] == "the case did not finish within 0.2 s (timeout)"
    assert case["duration"] < 5
