"""``brickrun init``: the scaffold validates, tests and runs untouched; files are never lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brickrun.cli import main
from brickrun.cli._definitions import CUSTOM_TAGS
from brickrun.cli._scaffold import slug

FILES = [
    ".gitignore",
    ".vscode/brickrun.schema.json",
    ".vscode/extensions.json",
    ".vscode/settings.json",
    "README.md",
    "bricks/record-event.yaml",
    "mods/session.jsonl",
    "mods/telemetry.yaml",
    "tests/telemetry.test.yaml",
]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A fresh scaffold in ``<tmp>/shop`` (scope ``shop``), which is the current folder."""
    code, out, err = run(capsys, "init", str(tmp_path / "shop"))
    assert code == 0, err
    assert "brickrun validate bricks mods && brickrun test" in out
    monkeypatch.chdir(tmp_path / "shop")
    return tmp_path / "shop"


def test_scaffold_files(project: Path) -> None:
    found = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert found == FILES
    mod = (project / "mods" / "telemetry.yaml").read_text()
    assert 'id: "@shop/telemetry"' in mod and "default: shop-telemetry" in mod
    assert "__SCOPE__" not in mod and "__TITLE__" not in mod
    assert "name: Shop telemetry" in mod
    settings = json.loads((project / ".vscode" / "settings.json").read_text())
    assert settings["yaml.customTags"] == CUSTOM_TAGS
    [(schema, globs)] = settings["yaml.schemas"].items()
    assert schema == ".vscode/brickrun.schema.json"
    assert "mods/**/*.yaml" in globs and "**/*.test.yaml" in globs
    known = json.loads((project / schema).read_text())["x-brickrun-bricks"]
    assert "@shop/record-event" in known and "@pixies/telemetry/record" in known


def test_scaffold_validates_tests_and_runs_untouched(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "validate", "bricks", "mods")
    assert (code, out) == (0, ""), err
    code, out, _ = run(capsys, "test")
    assert code == 0, out
    assert out.splitlines()[0] == "tests/telemetry.test.yaml ...."
    assert out.splitlines()[-1].startswith("4 passed in ")
    code, out, err = run(
        capsys, "run", "mods/telemetry.yaml", "--definitions", "bricks",
        "--events", "mods/session.jsonl", "--db", f"sqlite:///{project / 'telemetry.sqlite'}",
        "--now", "2026-01-01T00:00:00Z", "--strict", "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert [r["status"] for r in summary["runs"]] == ["success"] * 4
    assert [e["name"] for e in summary["reported"]] == ["TriggerRun"] * 3
    assert summary["errors"] == []


def test_a_broken_expectation_in_the_scaffold_fails_with_a_diff(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = project / "tests" / "telemetry.test.yaml"
    text = tests.read_text()
    assert text.count('variables: {lastClick: "#buy"}') == 1
    tests.write_text(text.replace('variables: {lastClick: "#buy"}', 'variables: {lastClick: "#x"}'))
    code, out, _ = run(capsys, "test")
    assert code == 1
    assert "FAILED tests/telemetry.test.yaml:30: a session records page views and clicks" in out
    assert '-    "lastClick": "#x"' in out and '+    "lastClick": "#buy"' in out
    assert out.splitlines()[-1].startswith("1 failed, 3 passed in ")


def test_init_never_overwrites_without_force(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = project / "README.md"
    readme.write_text("mine")
    code, _, err = run(capsys, "init", ".")
    assert code == 1
    assert "these files exist already: README.md" in err and "nothing was written" in err
    assert readme.read_text() == "mine"
    code, _, _ = run(capsys, "init", ".", "--force", "--scope", "acme")
    assert code == 0
    assert 'id: "@acme/telemetry"' in (project / "mods" / "telemetry.yaml").read_text()


def test_init_merges_existing_editor_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vscode = tmp_path / ".vscode"
    vscode.mkdir()
    (vscode / "settings.json").write_text(
        json.dumps({"editor.tabSize": 2, "yaml.customTags": ["!Ref scalar"]})
    )
    code, _, err = run(capsys, "init", str(tmp_path), "--scope", "acme")
    assert code == 0, err
    settings = json.loads((vscode / "settings.json").read_text())
    assert settings["editor.tabSize"] == 2
    assert settings["yaml.customTags"] == ["!Ref scalar", *CUSTOM_TAGS]


def test_init_leaves_settings_it_cannot_parse_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vscode = tmp_path / ".vscode"
    vscode.mkdir()
    (vscode / "settings.json").write_text('{\n  // mine\n  "editor.tabSize": 2\n}\n')
    code, _, err = run(capsys, "init", str(tmp_path), "--scope", "acme")
    assert code == 1
    assert "settings.json is not plain JSON" in err and "add these settings" in err
    assert (vscode / "settings.json").read_text().startswith("{\n  // mine")


def test_bad_scope_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "init", str(tmp_path), "--scope", "Acme Corp")
    assert code == 2 and "is not a brick-id scope" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("name", "scope"),
    [("shop", "shop"), ("My Shop", "my-shop"), ("acme_telemetry", "acme-telemetry"),
     ("--", "my-mods"), ("Ünïcode", "n-code")],
)  # fmt: skip
def test_slug(name: str, scope: str) -> None:
    assert slug(name) == scope
