"""The compiled definition model: steps, pipelines and the four definition kinds.

Produced by ``_definitions`` (the compiler) from loaded documents; consumed by the pipeline
reducer, the registry and the mod machinery. Everything here is plain data plus compiled
renderers; nothing here runs a brick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import Location, format_path

if TYPE_CHECKING:
    from ._render import Renderer

__all__ = [
    "ComponentDefinition",
    "Definition",
    "ModComponentDefinition",
    "ModDefinition",
    "Pipeline",
    "ServiceDefinition",
    "StarterBrickDefinition",
    "Step",
]

PathTuple = tuple[str | int, ...]


@dataclass(eq=False, slots=True)
class Step:
    """One compiled pipeline step.

    ``render`` renders the config; ``condition`` renders the ``if`` value (``None`` when the
    step has no ``if``). ``path`` is the step's full path inside its definition
    (``pipeline[0].config.body[1]``).
    """

    brick_id: str
    render: Renderer
    path: PathTuple
    location: Location | None
    output_key: str | None = None
    condition: Renderer | None = None
    is_async: bool = False
    label: str | None = None
    path_text: str = ""
    # The pipeline's cache of (registry, registry version, brick) for this step.
    resolved: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path_text = format_path(self.path)


@dataclass(eq=False, slots=True)
class Pipeline:
    """A compiled list of steps and where it sits in its definition."""

    steps: tuple[Step, ...]
    path: PathTuple = ()
    location: Location | None = None


@dataclass(eq=False)
class Definition:
    """What every definition kind has: identity, metadata and where it came from."""

    kind: str
    id: str
    name: str
    version: str | None
    description: str
    location: Location | None
    data: dict[str, Any] = field(repr=False)
    # The document's source map, for locating problems found after compiling (activation).
    source: Any = field(default=None, repr=False, compare=False, kw_only=True)


@dataclass(eq=False)
class ComponentDefinition(Definition):
    """``kind: component``: a brick defined by a pipeline."""

    input_schema: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    ui_schema: dict[str, Any] | None = None
    default_output_key: str | None = None
    pipeline: Pipeline = field(default_factory=lambda: Pipeline(()))


@dataclass(eq=False)
class StarterBrickDefinition(Definition):
    """``kind: extensionPoint``: a starter brick (trigger, menu item, ...)."""

    definition: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class ModComponentDefinition:
    """One entry of a mod's ``extensionPoints``: a starter brick plus the action to run."""

    index: int
    starter_brick_id: str
    label: str
    action: Pipeline
    services: dict[str, Any]
    config: dict[str, Any]
    location: Location | None


@dataclass(eq=False)
class ModDefinition(Definition):
    """``kind: recipe``: a mod."""

    options_schema: dict[str, Any] = field(default_factory=dict)
    variables_schema: dict[str, Any] = field(default_factory=dict)
    inner_definitions: dict[str, Definition] = field(default_factory=dict)
    components: list[ModComponentDefinition] = field(default_factory=list)


@dataclass(eq=False)
class ServiceDefinition(Definition):
    """``kind: service``: an integration kind (config schema with secrets)."""

    input_schema: dict[str, Any] = field(default_factory=dict)
