"""Documentation that is generated or promised stays true."""

from __future__ import annotations

from pathlib import Path

from brickrun.cli._reference import reference_markdown

ROOT = Path(__file__).parent.parent


def test_cli_reference_is_current() -> None:
    """docs/cli.md is `python -m brickrun.cli._reference` output; regenerate it when this fails."""
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == reference_markdown()


def test_guides_exist_and_are_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for guide in ["authoring.md", "mods.md", "embedding.md", "privacy.md", "operations.md",
                  "cli.md"]:  # fmt: skip
        assert (ROOT / "docs" / guide).is_file(), guide
        assert f"docs/{guide}" in readme, f"README does not link docs/{guide}"
