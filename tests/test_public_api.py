"""The public surface: ``brickrun.__all__`` is exactly the public names, and they import."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys

import brickrun


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(brickrun) if not name.startswith("_")} | {"__version__"}
    assert set(brickrun.__all__) == public
    assert sorted(brickrun.__all__) == sorted(set(brickrun.__all__)), "no duplicates"


def test_every_public_name_resolves() -> None:
    for name in brickrun.__all__:
        assert getattr(brickrun, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        brickrun.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:  # pragma: no cover - the assertion is the test
        raise AssertionError("expected AttributeError")


def test_package_mapping_ships_definitions_and_schemas() -> None:
    """``definitions/`` is installed as ``brickrun.definitions`` (editable and wheel alike)."""
    root = importlib.resources.files("brickrun.definitions")
    assert root.joinpath("schemas", "pipeline.json").is_file()
    assert root.joinpath("schemas", "services", "@pixiebrix", "api.json").is_file()


def test_importing_brickrun_cli_does_not_load_the_engine() -> None:
    """``brickrun --help`` stays fast because the CLI imports the engine lazily."""
    code = (
        "import sys, brickrun.cli; "
        "mods = ('jinja2', 'jsonschema', 'ruamel.yaml', 'anyio'); "
        "heavy = [m for m in mods if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
