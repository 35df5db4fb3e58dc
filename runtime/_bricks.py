"""The brick API: what a brick declares, and the context its run function receives.

A Python brick is declared with the ``@brick(...)`` decorator (or by building ``Brick``
directly) and registered with a ``Registry``, which validates the declaration. Its run
function is ``async def run(input, ctx) -> output`` (or a plain ``def`` for a brick that never
waits): ``input`` is the rendered, defaulted, validated config; ``ctx`` is a ``BrickContext``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ._schema import (
    InputValidator,
    apply_defaults,
    integration_properties,
    pipeline_properties,
)
from .errors import InputValidationError, Location

if TYPE_CHECKING:
    from ._expressions import DeferExpression, PipelineExpression
    from ._run import RunState
    from ._state import ModVariables

__all__ = ["Brick", "BrickContext", "BrickKind", "RunFunction", "brick"]

BrickKind = Literal["reader", "transformer", "effect"]
BRICK_KINDS: tuple[str, ...] = ("reader", "transformer", "effect")
RunFunction = Callable[[Any, "BrickContext"], Awaitable[Any]] | Callable[[Any, "BrickContext"], Any]
"""``async def run(input, ctx)``, or a plain ``def run(input, ctx)`` for a brick that never
waits (called inline: no coroutine per step)."""


@dataclass(eq=False)
class Brick:
    """A brick declaration.

    ``kind`` decides how the output is used: an ``effect``'s return value is discarded.
    ``input_schema`` is JSON Schema (draft 2019-09; a bare properties map is shorthand);
    ``default``s in it are applied before validation. ``source`` says where the brick was
    declared (a definition file, or a Python module) for error messages.
    """

    id: str
    name: str
    run: RunFunction
    kind: str = "transformer"
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=dict)
    output_schema: Mapping[str, Any] | None = None
    default_output_key: str | None = None
    version: str | None = None
    source: Location | str | None = None
    _validator: InputValidator | None = field(default=None, init=False, repr=False)
    _output_validator: InputValidator | None = field(default=None, init=False, repr=False)
    _integrations: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _pipelines: frozenset[str] = field(default=frozenset(), init=False, repr=False)
    _has_defaults: bool = field(default=False, init=False, repr=False)
    # How a step calls it, decided once: inline for a plain ``def``; and whether its input
    # needs any work at all (no integrations, no defaults, an empty schema accepts anything).
    _is_async: bool = field(default=True, init=False, repr=False)
    _plain_input: bool = field(default=False, init=False, repr=False)
    _checked: bool = field(default=False, init=False, repr=False)
    # Built-in bricks are tested against their output schemas; checking every output again at
    # run time would cost a validation per step for nothing.
    _trusted_output: bool = field(default=False, init=False, repr=False)

    def _prepare(self) -> None:
        """Compile what every call needs (once per brick object, by the registry)."""
        from ._schema import normalize_schema

        if self._validator is not None:
            return
        self.input_schema = normalize_schema(self.input_schema)
        self._validator = InputValidator(self.input_schema)
        if self.output_schema:
            self.output_schema = normalize_schema(self.output_schema)
            if not self._trusted_output:
                self._output_validator = InputValidator(self.output_schema)
        self._integrations = integration_properties(self.input_schema)
        self._pipelines = pipeline_properties(self.input_schema)
        self._has_defaults = _has_defaults(self.input_schema)
        self._is_async = inspect.iscoroutinefunction(self.run)
        self._plain_input = (
            not self._integrations and not self._has_defaults and not self.input_schema
        )

    def prepare_input(self, args: Any, run: RunState) -> Any:
        """Integration inputs, then schema defaults, then validation (no type coercion)."""
        if self._validator is None:
            self._prepare()
        if self._integrations and type(args) is dict:
            for prop, integration_id in self._integrations.items():
                if prop not in args:
                    configured = run.runtime.integration(integration_id)
                    if configured is not None:
                        args = {**args, prop: configured}
        if self._has_defaults:
            args = apply_defaults(self.input_schema, args)
        assert self._validator is not None
        errors = self._validator.errors(args)
        if errors:
            raise InputValidationError(self.id, errors)
        return args

    def output_errors(self, output: Any) -> list[dict[str, str]]:
        if self._output_validator is None:
            return []
        return self._output_validator.errors(output)


def _has_defaults(schema: Mapping[str, Any]) -> bool:
    props = schema.get("properties") or {}
    return any(
        isinstance(p, Mapping) and ("default" in p or _has_defaults(p)) for p in props.values()
    )


def brick(
    *,
    id: str,
    name: str,
    kind: BrickKind = "transformer",
    description: str = "",
    input_schema: Mapping[str, Any] | None = None,
    output_schema: Mapping[str, Any] | None = None,
    default_output_key: str | None = None,
    version: str | None = None,
) -> Callable[[RunFunction], Brick]:
    """Declare a Python brick::

    @brick(id="@acme/greet", name="Greet", input_schema={"name": {"type": "string"}})
    async def greet(input, ctx):
        return {"greeting": f"Hello {input['name']}"}
    """

    def decorate(run: RunFunction) -> Brick:
        return Brick(
            id=id,
            name=name,
            run=run,
            kind=kind,
            description=description or (run.__doc__ or "").strip(),
            input_schema=dict(input_schema or {}),
            output_schema=output_schema,
            default_output_key=default_output_key,
            version=version,
            source=f"{run.__module__}.{run.__qualname__}",
        )

    return decorate


class BrickContext:
    """What a running brick can reach besides its input.

    ``run_id``, ``mod`` (``{"id", "version"}``), ``deployment_id``, ``mod_component_id``;
    ``mod_variables`` (the run's mod state); ``host`` (page visit, user); ``now()`` (the
    runtime's clock); ``logger``; ``run_pipeline`` / ``start_pipeline`` for ``!pipeline``
    inputs; ``render`` for ``!defer`` inputs; ``storage`` for team databases.
    """

    __slots__ = ("_run", "brick_id", "step_path")

    def __init__(self, run: RunState, brick_id: str, step_path: str) -> None:
        self._run = run
        self.brick_id = brick_id
        self.step_path = step_path

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def mod(self) -> dict[str, Any]:
        return {"id": self._run.mod_id, "version": self._run.mod_version}

    @property
    def deployment_id(self) -> str | None:
        return self._run.deployment_id

    @property
    def mod_component_id(self) -> str | None:
        return self._run.mod_component_id

    @property
    def mod_variables(self) -> ModVariables:
        return self._run.mod_state

    @property
    def host(self) -> Any:
        return self._run.runtime.host

    @property
    def runtime(self) -> Any:
        return self._run.runtime

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(
            logging.getLogger(f"brickrun.bricks.{self.brick_id}"), {"run_id": self.run_id}
        )

    def now(self) -> datetime:
        """The current instant from the runtime's clock (frozen in tests and ``--now``)."""
        now: datetime = self._run.runtime.clock.now()
        return now

    async def run_pipeline(
        self, body: PipelineExpression, extra_context: Mapping[str, Any] | None = None
    ) -> Any:
        """Run a ``!pipeline`` input in its closure plus ``extra_context``; returns the value of
        its last step (``None`` when that step was skipped or the body is empty)."""
        from ._pipeline import run_body

        return await run_body(body, self._run, extra_context)

    def start_pipeline(
        self, body: PipelineExpression, extra_context: Mapping[str, Any] | None = None
    ) -> None:
        """Start a ``!pipeline`` input in the background (the runtime's task group) and return
        at once. Failures never reach the caller; they are reported as mod errors."""
        from ._pipeline import run_body

        self._run.start_background(
            run_body, self.step_path, self.brick_id, body, self._run, extra_context
        )

    def render(self, value: DeferExpression, extra_context: Mapping[str, Any] | None = None) -> Any:
        """Render a ``!defer`` input in its closure plus ``extra_context``."""
        env = dict(value.env or {})
        if extra_context:
            env.update(extra_context)
        env["@mod"] = self._run.mod_state.snapshot()
        return value.renderer(env)

    def start_task(self, fn: Callable[[], Awaitable[Any]]) -> None:
        """Start ``fn()`` in the background (the runtime's task group) under this run's
        deadline and cancellation; an exception it raises is reported as a mod error."""
        self._run.start_background(fn, self.step_path, self.brick_id)

    def state(self, namespace: str = "blueprint") -> ModVariables:
        """State by PixieBrix namespace: ``blueprint`` (mod variables, ``@mod``), ``extension``
        (private to the mod component) or ``shared`` (page state)."""
        return self._run.state(namespace)

    async def storage(self) -> Any:
        """The runtime's team-database backend (a ``brickrun.storage.StorageBackend``),
        opened on first use."""
        return await self._run.runtime.storage()
