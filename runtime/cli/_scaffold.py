"""``brickrun init``: scaffold a mod project from the templates in ``brickrun/scaffold``.

The templates are package data. ``__SCOPE__`` (the id scope) and ``__TITLE__`` (a display name)
are replaced in every file; ``gitignore`` is written as ``.gitignore`` (dot files are awkward as
package data) and a ``.template`` suffix is dropped (it keeps ``brickrun test``, run in a
checkout of brickrun, from collecting the template test file). ``.vscode/`` is generated, not
copied: its schema knows the bricks installed now plus the project's own.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ..errors import BrickrunError
from . import EXIT_ERROR, EXIT_OK, EXIT_USAGE

__all__ = ["cmd_init", "scaffold", "slug"]

_SCOPE = re.compile(r"^[a-z0-9-~][a-z0-9-._~]*$")  # the scope part of a brick id
_RENAMES = {"gitignore": ".gitignore"}


def slug(text: str) -> str:
    """A brick-id scope made from a folder name: lower case, runs of other characters as ``-``
    (``"My Shop"`` → ``"my-shop"``); ``"my-mods"`` when nothing usable is left."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned or "my-mods"


def _templates() -> list[tuple[str, Traversable]]:
    """(relative path, template) for every scaffold file, sorted."""
    root = resources.files("brickrun").joinpath("scaffold")
    found: list[tuple[str, Traversable]] = []

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, f"{name}/")
            elif not entry.name.endswith((".pyc", ".py")):
                found.append((name, entry))

    walk(root, "")
    return sorted(found, key=lambda item: item[0])


def scaffold(folder: str | Path, scope: str, *, force: bool = False) -> list[Path]:
    """Write the project files into ``folder`` (created if needed); returns them.

    Raises ``FileExistsError`` listing the files that exist already, writing nothing, unless
    ``force``. The ``.vscode`` settings are written separately (``write_vscode``).
    """
    root = Path(folder)
    title = " ".join(part.capitalize() for part in scope.split("-")) or scope
    planned = [
        (root / _RENAMES.get(name, name).removesuffix(".template"), template)
        for name, template in _templates()
    ]
    existing = [path for path, _ in planned if path.exists()]
    if existing and not force:
        raise FileExistsError(", ".join(str(p) for p in existing))
    written = []
    for path, template in planned:
        text = template.read_text(encoding="utf-8")
        text = text.replace("__SCOPE__", scope).replace("__TITLE__", title)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def cmd_init(args: argparse.Namespace) -> int:
    """Scaffold a project in ``args.dir``; exit 1 when files would be overwritten (without
    ``--force``) or the editor settings cannot be merged, 2 on a bad ``--scope``."""
    from ._definitions import editor_schema
    from ._editor import SettingsError, check_vscode, known_bricks, write_vscode

    folder = Path(args.dir)
    scope = args.scope or slug(folder.resolve().name)
    if not _SCOPE.match(scope):
        print(
            f"brickrun init: error: --scope {scope!r} is not a brick-id scope; expected lower "
            "case letters, digits and - . _ ~ (e.g. acme)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        check_vscode(folder)  # before writing anything: all or nothing
        written = scaffold(folder, scope, force=args.force)
    except SettingsError as exc:
        print(f"brickrun init: {exc} (nothing was written)", file=sys.stderr)
        return EXIT_ERROR
    except FileExistsError as exc:
        print(
            f"brickrun init: these files exist already: {exc} (nothing was written; --force "
            "overwrites them)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        schema = editor_schema(known_bricks([folder / "bricks"]))
        written += write_vscode(folder, schema)
    except (BrickrunError, SettingsError) as exc:
        print(f"brickrun init: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for path in written:
        print(f"created {path}")
    shown = str(folder)
    go = f"cd {shown} && " if shown != "." else ""
    print(
        f"\nNext: {go}brickrun validate bricks mods && brickrun test\n"
        "      brickrun run mods/telemetry.yaml --definitions bricks --events mods/session.jsonl"
    )
    return EXIT_OK
