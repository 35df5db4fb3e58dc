"""Golden definition errors: every broken file under tests/data/broken/ gives exactly the
``file:line:col: path: message`` line in its ``.expected`` sibling."""

from __future__ import annotations

from pathlib import Path

import pytest

from brickrun import validate_paths

BROKEN = Path(__file__).parent / "data" / "broken"
CASES = sorted(p for p in BROKEN.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def test_there_are_enough_golden_cases() -> None:
    assert len(CASES) >= 15
    assert all(p.with_suffix(".expected").exists() for p in CASES)


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_golden_error(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").strip()
    errors = [p for p in validate_paths([path.name]) if p.severity == "error"]
    assert errors, f"{path.name} should be rejected"
    assert str(errors[0]) == expected
