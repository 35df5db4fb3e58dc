"""``validate``: every check that can fail before running, over files and folders."""

from __future__ import annotations

import os
from collections.abc import Iterable

from ._definitions import CompileResult, compile_path, link
from ._integrations import check_service
from ._model import ModDefinition, ServiceDefinition
from ._registry import Registry, builtin_registry
from .errors import DefinitionError

__all__ = ["validate_paths"]


def _sort_key(error: DefinitionError) -> tuple[str, int, int]:
    loc = error.location
    return (
        loc.file or "" if loc else "",
        (loc.line or 0) if loc else 0,
        (loc.column or 0) if loc else 0,
    )


def validate_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    definitions: Iterable[str | os.PathLike[str]] = (),
) -> list[DefinitionError]:
    """Check definition files (or folders of them); returns errors and warnings
    (``severity``) in file order. ``definitions`` are extra folders whose bricks the checked
    files may use (they are loaded, not reported on)."""
    registry = Registry(parent=builtin_registry())
    for folder in definitions:
        registry.load_path(folder)
    result = CompileResult()
    for path in paths:
        if not os.path.exists(path):
            result.errors.append(
                DefinitionError(f"no such file or folder: {os.fspath(path)}", path=())
            )
            continue
        result.extend(compile_path(path))
    for definition in result.definitions:
        registry.register_definition(definition)
    problems = list(result.errors) + list(result.warnings)
    for definition in result.definitions:
        if isinstance(definition, ServiceDefinition):
            problems.extend(check_service(definition))
        scope = registry
        if isinstance(definition, ModDefinition):
            # Steps of a mod may use its inner components by key.
            scope = Registry(parent=registry)
            for inner in definition.inner_definitions.values():
                scope.register_definition(inner)
        problems.extend(link(definition, scope))
    return sorted(problems, key=_sort_key)
