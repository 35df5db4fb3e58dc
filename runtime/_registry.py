"""The brick registry: validates what registers and explains every rejection.

Sources: the built-ins (``brickrun.bricks``), the shipped ``definitions/`` folder, folders a
host or the CLI names, inner definitions of a mod (a child registry), Python bricks registered
in code, and the ``brickrun.bricks`` entry-point group. Registration is checked up front
(pluggy-style): a bad id, kind, schema or run function is refused with a message that says what
was found and what was expected.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
from collections.abc import Iterable, Iterator
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from ._bricks import BRICK_KINDS, Brick
from ._definitions import CompileResult, compile_path
from ._model import ComponentDefinition, Definition
from ._schema import check_input_schema, normalize_schema
from .errors import DefinitionErrors, Location, PathPart, RegistrationError, UnknownBrickError

__all__ = ["ENTRY_POINT_GROUP", "Registry", "builtin_registry", "shipped_definitions_path"]

ENTRY_POINT_GROUP = "brickrun.bricks"
_ID = re.compile(r"^@[a-z0-9-~][a-z0-9-._~]*/([a-z0-9-~][a-z0-9-._~]*/)?[a-z0-9-~][a-z0-9-._~]*$")


def shipped_definitions_path() -> str:
    """The folder of YAML bricks shipped inside the package (``brickrun/definitions``)."""
    return str(resources.files("brickrun.definitions"))


@functools.cache
def _shipped() -> CompileResult:
    """The shipped YAML bricks, compiled once per process (compiled definitions are immutable)."""
    result = CompileResult()
    root = Path(shipped_definitions_path())
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "schemas"):
        result.extend(compile_path(folder))
    if result.errors:  # a broken shipped definition is a packaging bug; say exactly where
        raise DefinitionErrors(result.errors)
    return result


@functools.cache
def builtin_registry() -> Registry:
    """The registry of built-in Python bricks and shipped YAML bricks, built once per process.

    Shared as the read-only parent of every runtime's own registry (register into a child);
    building it costs ~10 ms, too much per ``Runtime``.
    """
    from brickrun.bricks import builtin_bricks  # the one place the engine imports bricks/

    registry = Registry()
    for brick in builtin_bricks():
        brick._trusted_output = True
        registry.register(brick)
    for definition in _shipped().definitions:
        registry.register_definition(definition)
    return registry


def validate_declaration(brick: Brick, *, local: bool = False) -> list[str]:
    """Everything wrong with a brick declaration, as sentences (empty when it is fine).

    ``local`` accepts a mod's inner-definition key as the id.
    """
    problems = []
    if not isinstance(brick.id, str) or not (_ID.match(brick.id) or (local and brick.id)):
        problems.append(
            f"id {brick.id!r} is not a brick id; expected @scope/name or "
            "@scope/collection/name in lower case"
        )
    if not isinstance(brick.name, str) or not brick.name.strip():
        problems.append(f"name must be a non-empty string, found {brick.name!r}")
    if brick.kind not in BRICK_KINDS:
        problems.append(f"kind {brick.kind!r} is not one of: {', '.join(BRICK_KINDS)}")
    if not callable(brick.run):  # type: ignore[redundant-expr,unused-ignore]
        problems.append(  # type: ignore[unreachable,unused-ignore]
            f"run must be a function (async def run(input, ctx), or def for a brick that never "
            f"waits), found {brick.run!r}"
        )
    else:
        try:
            inspect.signature(brick.run).bind(None, None)
        except TypeError:
            problems.append("run must accept two arguments: (input, ctx)")
    for label, schema in (
        ("input_schema", brick.input_schema),
        ("output_schema", brick.output_schema),
    ):
        if schema is None:
            continue
        if not isinstance(schema, dict):
            problems.append(f"{label} must be a JSON Schema object, found {type(schema).__name__}")
            continue
        for path, message in check_input_schema(normalize_schema(schema)):
            where = "/".join(str(p) for p in path)
            problems.append(f"{label}{'/' + where if where else ''}: {message}")
    return problems


class Registry:
    """Bricks by id. A child registry (``parent=``) sees its parent's bricks and may shadow them."""

    _epoch = 0  # registrations so far, in all registries (see ``version``)

    def __init__(self, parent: Registry | None = None) -> None:
        self._bricks: dict[str, Brick] = {}
        self.parent = parent
        self.definitions: dict[str, Definition] = {}

    # -- adding ------------------------------------------------------------------------------
    def register(self, brick: Brick, *, replace: bool = False, local: bool = False) -> Brick:
        """Add a brick after validating its declaration; returns it (so it can decorate).

        ``local`` allows an inner-definition key (not an ``@scope/name`` id).
        """
        problems = [] if brick._checked else validate_declaration(brick, local=local)
        if brick.id in self._bricks and not replace:
            existing = self._bricks[brick.id]
            problems.append(
                f"id {brick.id!r} is already registered "
                f"(by {existing.source or 'an earlier brick'})"
            )
        if problems:
            origin = f" from {brick.source}" if brick.source else ""
            raise RegistrationError(
                f"cannot register brick {brick.id!r}{origin}: " + "; ".join(problems)
            )
        brick._checked = True
        brick._prepare()
        self._bricks[brick.id] = brick
        Registry._epoch += 1
        return brick

    def register_definition(self, definition: Definition, *, replace: bool = True) -> None:
        """Register a compiled definition: components become bricks; others are kept by id."""
        self.definitions[definition.id] = definition
        if isinstance(definition, ComponentDefinition):
            from ._component import component_brick

            local = not definition.id.startswith("@")
            self.register(component_brick(definition), replace=replace, local=local)

    def load_path(self, path: str | os.PathLike[str]) -> CompileResult:
        """Compile and register every definition at ``path``; raises ``DefinitionErrors``
        listing every problem when any file is broken (nothing from a broken file registers)."""
        result = compile_path(path)
        if result.errors:
            raise DefinitionErrors(result.errors)
        for definition in result.definitions:
            self.register_definition(definition)
        return result

    def load_entry_points(self) -> list[str]:
        """Register bricks advertised in the ``brickrun.bricks`` entry-point group.

        An entry point may name a ``Brick``, an iterable of bricks, or a function returning
        either. Returns the names of the entry points loaded.
        """
        loaded = []
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                target: Any = entry_point.load()
            except Exception as exc:
                raise RegistrationError(
                    f"entry point {entry_point.name!r} ({entry_point.value}) "
                    f"failed to import: {exc}"
                ) from exc
            if callable(target) and not isinstance(target, Brick):
                target = target()
            bricks = [target] if isinstance(target, Brick) else list(target)
            for item in bricks:
                if not isinstance(item, Brick):
                    raise RegistrationError(
                        f"entry point {entry_point.name!r} ({entry_point.value}) gave "
                        f"{type(item).__name__}; expected brickrun.Brick objects"
                    )
                self.register(item)
            loaded.append(entry_point.name)
        return loaded

    # -- finding -----------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Changes whenever what ``find`` returns may have changed (here or in a parent), so
        callers may cache lookups by (registry, version). It counts registrations in every
        registry: they happen at start-up, so a shared counter costs a few cache misses and
        saves walking the parent chain on every step."""
        return Registry._epoch

    def find(self, brick_id: str) -> Brick | None:
        brick = self._bricks.get(brick_id)
        if brick is None and self.parent is not None:
            return self.parent.find(brick_id)
        return brick

    def get(
        self,
        brick_id: str,
        *,
        location: Location | None = None,
        path: tuple[PathPart, ...] | str = (),
    ) -> Brick:
        """The brick with that id, or ``UnknownBrickError`` naming the closest known ids."""
        brick = self.find(brick_id)
        if brick is None:
            raise UnknownBrickError(
                brick_id,
                suggestions=self.suggest(brick_id),
                location=location,
                path=path,
            )
        return brick

    def suggest(self, brick_id: str) -> list[str]:
        """Up to three registered ids close to ``brick_id`` (for "did you mean" hints)."""
        return difflib.get_close_matches(brick_id, self.ids(), n=3, cutoff=0.8)

    def __contains__(self, brick_id: object) -> bool:
        return isinstance(brick_id, str) and self.find(brick_id) is not None

    def ids(self) -> list[str]:
        own = set(self._bricks)
        if self.parent is not None:
            own.update(self.parent.ids())
        return sorted(own)

    def __iter__(self) -> Iterator[Brick]:
        for brick_id in self.ids():
            brick = self.find(brick_id)
            assert brick is not None
            yield brick

    def register_all(self, bricks: Iterable[Brick]) -> None:
        for item in bricks:
            self.register(item)

    def find_definition(self, definition_id: str) -> Definition | None:
        found = self.definitions.get(definition_id)
        if found is None and self.parent is not None:
            return self.parent.find_definition(definition_id)
        return found
