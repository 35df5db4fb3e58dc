"""Mods: activation, starter bricks (triggers), component runs and telemetry modes (SPEC §6).

Activation checks everything up front (option values, starter bricks, brick ids, integrations)
and reports every problem at once. Each mod component run gets a fresh run id; its ``@input`` is
``{event: <event data or null>, ...reader output}``. Telemetry modes are tracked per mod
component and page visit (a new visit resets, a navigation does not), events and errors
independently; reported runs and errors become ``TriggerRun`` / ``TriggerError`` events.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._definitions import link
from ._model import ModComponentDefinition, ModDefinition, StarterBrickDefinition
from ._registry import Registry
from ._run import RunState
from ._scheduler import Debouncer, Timer
from ._schema import InputValidator, apply_defaults
from ._state import ModVariables
from .errors import (
    BrickrunError,
    BusinessError,
    DefinitionError,
    DefinitionErrors,
    RunError,
    format_path,
)
from .telemetry import TelemetryEvent

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = [
    "REPORT_MODES",
    "TRIGGERS",
    "USER_INVOKED",
    "ActivatedComponent",
    "ActivatedMod",
    "ComponentRun",
    "activate",
]

log = logging.getLogger("brickrun.mods")

TRIGGERS = (
    "load", "interval", "initialize", "click", "dblclick", "blur", "hover", "keydown", "keyup",
    "keypress", "change", "selectionchange", "statechange", "custom",
)  # fmt: skip
USER_INVOKED = ("menuItem", "quickBar", "contextMenu")
REPORT_MODES = ("all", "once", "error-once", "never")
DEFAULT_REPORT_MODE = "once"  # SPEC §13: for every trigger


@dataclass
class ComponentRun:
    """The outcome of one mod component run (what ``brickrun run`` summarises)."""

    component: str
    component_id: str
    run_id: str
    visit: str | None
    trigger: str
    status: str = "running"
    error: dict[str, Any] | None = None
    output: Any = None
    reported: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "component": self.component,
            "runId": self.run_id,
            "visit": self.visit,
            "status": self.status,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass(eq=False)
class ActivatedComponent:
    """A mod component bound to its starter brick, ready to run."""

    id: str
    definition: ModComponentDefinition
    starter: StarterBrickDefinition
    mod: ActivatedMod
    state: ModVariables = field(default_factory=ModVariables)
    debouncer: Debouncer | None = None
    interval: Timer | None = None
    # Telemetry-mode memory for the current page visit.
    visit: str | None = None
    event_reported: bool = False
    error_reported: bool = False

    @property
    def label(self) -> str:
        return self.definition.label

    @property
    def type(self) -> str:
        return str(self.starter.definition.get("type"))

    @property
    def trigger(self) -> str | None:
        if self.type != "trigger":
            return None
        return str(self.starter.definition.get("trigger", "load"))

    @property
    def starter_brick_id(self) -> str:
        """The starter brick's registry id; an inner definition's key is qualified with the mod
        id (``@acme/mod/pageLoad``) so two mods' ``pageLoad`` never count as one."""
        own = self.starter.id
        return own if own.startswith("@") else f"{self.mod.id}/{own}"

    @property
    def report_mode(self) -> str:
        return str(self.starter.definition.get("reportMode", DEFAULT_REPORT_MODE))

    @property
    def custom_event(self) -> str | None:
        custom = self.starter.definition.get("customEvent") or {}
        return custom.get("eventName") if isinstance(custom, dict) else None

    def should_report(self, visit: str | None, *, error: bool) -> bool:
        """Decide per SPEC §6 and remember the decision for this page visit."""
        if visit != self.visit:
            self.visit, self.event_reported, self.error_reported = visit, False, False
        mode = self.report_mode
        if mode == "all":
            return True
        if mode == "never":
            return False
        if error:
            first = not self.error_reported
            self.error_reported = True
            return first
        if mode == "error-once":
            return False
        first = not self.event_reported
        self.event_reported = True
        return first


@dataclass(eq=False)
class ActivatedMod:
    """A mod activated with option values (and maybe a deployment id)."""

    definition: ModDefinition
    options: dict[str, Any]
    deployment_id: str | None
    registry: Registry
    variables: ModVariables
    components: list[ActivatedComponent] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def version(self) -> str | None:
        return self.definition.version


def _option_errors(
    mod: ModDefinition, options: Mapping[str, Any]
) -> tuple[dict[str, Any], list[DefinitionError]]:
    schema = mod.options_schema or {}
    values = apply_defaults(schema, dict(options))
    problems = []
    for problem in InputValidator(schema).errors(values):
        name = problem["path"].split(".", 1)[0].split("[", 1)[0]
        missing = None if name else _REQUIRED.match(problem["message"])
        if missing:
            name = missing.group(1)
            message = f"missing required option {name!r}"
        else:
            message = f"option {name!r}: {problem['message']}" if name else problem["message"]
        schema_path: tuple[str | int, ...] = ("options", "schema")
        if name:
            schema_path += ("properties", name)
        location = mod.source.locate(schema_path) if mod.source is not None else mod.location
        problems.append(
            DefinitionError(
                message, location=location, path=("options", name) if name else ("options",)
            )
        )
    return values, problems


_REQUIRED = re.compile(r"^'([^']+)' is a required property$")


def _resolve_starter(
    entry: ModComponentDefinition, mod: ModDefinition, registry: Registry
) -> StarterBrickDefinition | DefinitionError:
    inner = mod.inner_definitions.get(entry.starter_brick_id)
    found = inner if inner is not None else registry.find_definition(entry.starter_brick_id)
    if isinstance(found, StarterBrickDefinition):
        return found
    path = ("extensionPoints", entry.index, "id")
    if found is None:
        import difflib

        known = [
            d.id for d in registry_definitions(registry) if isinstance(d, StarterBrickDefinition)
        ] + [k for k, d in mod.inner_definitions.items() if isinstance(d, StarterBrickDefinition)]
        close = difflib.get_close_matches(entry.starter_brick_id, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return DefinitionError(
            f"unknown starter brick {entry.starter_brick_id!r}{hint}",
            location=entry.location,
            path=path,
        )
    return DefinitionError(
        f"{entry.starter_brick_id!r} is a {found.kind}, not a starter brick (kind: extensionPoint)",
        location=entry.location,
        path=path,
    )


def registry_definitions(registry: Registry) -> list[Any]:
    """Every definition a registry can see, its own first, then its parents'."""
    out: list[Any] = []
    current: Registry | None = registry
    while current is not None:
        out.extend(current.definitions.values())
        current = current.parent
    return out


def activate(
    runtime: Runtime,
    mod: ModDefinition,
    options: Mapping[str, Any] | None = None,
    deployment_id: str | None = None,
) -> ActivatedMod:
    """Check and activate ``mod``; raises ``DefinitionErrors`` listing every problem."""
    problems: list[DefinitionError] = []
    values, option_problems = _option_errors(mod, options or {})
    problems.extend(option_problems)
    registry = Registry(parent=runtime.registry)
    for inner in mod.inner_definitions.values():
        registry.register_definition(inner)
    problems.extend(p for p in link(mod, registry) if p.severity == "error")
    activated = ActivatedMod(
        definition=mod,
        options=values,
        deployment_id=deployment_id,
        registry=registry,
        variables=ModVariables(),
    )
    for entry in mod.components:
        starter = _resolve_starter(entry, mod, registry)
        if isinstance(starter, DefinitionError):
            problems.append(starter)
            continue
        for key, integration_id in entry.services.items():
            if not isinstance(integration_id, str) or runtime.integration(integration_id) is None:
                problems.append(
                    DefinitionError(
                        f"integration {integration_id!r} (bound as @{key}) is not configured",
                        location=entry.location,
                        path=("extensionPoints", entry.index, "services", key),
                    )
                )
        activated.components.append(
            ActivatedComponent(
                id=str(uuid.uuid4()), definition=entry, starter=starter, mod=activated
            )
        )
    if problems:
        raise DefinitionErrors(problems)
    return activated


def event_input(component: ActivatedComponent, event: str, data: Any) -> Any:
    """``@input.event`` for a trigger: custom events carry their detail (an object)."""
    if event == "custom":
        if not isinstance(data, dict):
            raise BusinessError("Custom event detail is not an object")
        return data
    if event in ("load", "interval", "initialize") or component.trigger in (None,):
        return None
    return data if data is not None else {}


async def run_component(
    runtime: Runtime,
    component: ActivatedComponent,
    event: str,
    data: Any = None,
    *,
    on_finished: Callable[[ComponentRun], None] | None = None,
) -> ComponentRun:
    """Run a mod component's action once, then apply its telemetry mode."""
    mod = component.mod
    page = runtime.host.page
    visit = page.session_id if page is not None else None

    def background_failed(run: RunState, error: RunError) -> None:
        _report(runtime, component, result, run, error=error)

    run = RunState(
        runtime,
        mod_state=mod.variables,
        component_state=component.state,
        page_state=runtime.page_state,
        mod_id=mod.id,
        mod_version=mod.version,
        deployment_id=mod.deployment_id,
        mod_component_id=component.id,
        on_background_error=background_failed,
    )
    run.registry = mod.registry
    result = ComponentRun(
        component=component.label,
        component_id=component.id,
        run_id=run.run_id,
        visit=visit,
        trigger=event,
    )
    started = runtime.clock.now()
    try:
        context: dict[str, Any] = {}
        for key, integration_id in component.definition.services.items():
            context["@" + key] = runtime.integration(integration_id)
        reader_output = await _read(runtime, component, run)
        context["@input"] = {"event": event_input(component, event, data), **reader_output}
        context["@options"] = dict(mod.options)
        result.output = await runtime.run_pipeline(component.definition.action, context, run)
        result.status = "success"
    except BrickrunError as error:
        result.status = "error"
        result.error = {"name": error.name, "message": error.message}
        path = getattr(error, "step_path", None) or format_path(())
        log.warning(
            "mod component %r (%s) failed in run %s at %s: %s: %s",
            component.label, mod.id, run.run_id, path or "(start)", error.name, error.message,
        )  # fmt: skip
        _report(runtime, component, result, run, error=error, started=started)
    else:
        _report(runtime, component, result, run, started=started)
    if on_finished is not None:
        on_finished(result)
    for listener in tuple(runtime.run_listeners):
        listener(result)
    return result


async def _read(runtime: Runtime, component: ActivatedComponent, run: RunState) -> dict[str, Any]:
    """The starter brick's reader output: an id, a list (merged left to right) or a mapping."""
    reader = component.starter.definition.get("reader")
    if not reader:
        return {}
    if isinstance(reader, str):
        reader = [reader]
    if isinstance(reader, list):
        merged: dict[str, Any] = {}
        for reader_id in reader:
            output = await runtime.call_brick(reader_id, {}, run)
            merged.update(output if isinstance(output, dict) else {})
        return merged
    if isinstance(reader, dict):
        return {key: await runtime.call_brick(rid, {}, run) for key, rid in reader.items()}
    return {}


def _report(
    runtime: Runtime,
    component: ActivatedComponent,
    result: ComponentRun,
    run: RunState,
    *,
    error: BrickrunError | None = None,
    started: Any = None,
) -> None:
    """Apply the telemetry mode; record ``TriggerRun``/``TriggerError`` when it says so."""
    if not component.should_report(result.visit, error=error is not None):
        return
    mod = component.mod
    user = runtime.host.user
    source = {
        "modId": mod.id,
        "modVersion": mod.version,
        "modComponentId": component.id,
        "modComponentLabel": component.label,
        "starterBrickId": component.starter_brick_id,
        "starterBrickName": component.starter.name,
        "trigger": component.trigger or component.type,
        "deploymentId": mod.deployment_id,
        "runId": run.run_id,
    }
    now = runtime.clock.now()
    event = TelemetryEvent(
        name="TriggerError" if error is not None else "TriggerRun",
        timestamp=now,
        source=source,
        user=user.email if user else None,
        duration_ms=(now - started).total_seconds() * 1000 if started is not None else None,
        error=None
        if error is None
        else {
            "name": error.name,
            "message": error.message,
            "business": isinstance(error, BusinessError),
        },
    )
    runtime.telemetry.record(event)
    result.reported.append(event.name)
    for listener in tuple(runtime.report_listeners):
        listener(result, event)
