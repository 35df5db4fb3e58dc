"""Starter bricks at work: which host event starts which mod component, when (SPEC §6).

``StarterBricks`` keeps the activated mods of one runtime and turns host happenings into mod
component runs: page visits (``initialize`` and ``load``), navigations (``load``), DOM-like
events (``click``, ``keydown``, ...), custom events, mod-variable changes (``statechange``),
time passing (``interval``), and user-invoked starter bricks (``menuItem``, ``quickBar``,
``contextMenu``). Runs start in the runtime's task group, concurrently and isolated; debounced
components go through a lodash-style ``Debouncer`` on the runtime's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._mods import USER_INVOKED, ActivatedComponent, ActivatedMod, ComponentRun, run_component
from ._scheduler import Debouncer
from .errors import HostError

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["StarterBricks"]

DOM_EVENTS = (
    "click", "dblclick", "blur", "hover", "keydown", "keyup", "keypress", "change",
    "selectionchange",
)  # fmt: skip


class StarterBricks:
    """The activated mods of a runtime and the dispatch of host events to their components."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.mods: list[ActivatedMod] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def add(self, mod: ActivatedMod) -> list[ComponentRun]:
        """Install an activated mod; when a page is open its initialize/load triggers run."""
        self.mods.append(mod)
        mod.variables.on_change = lambda old, new: self._statechange(mod)
        for component in mod.components:
            debounce = component.starter.definition.get("debounce")
            if isinstance(debounce, dict):
                component.debouncer = Debouncer(
                    self.runtime.scheduler,
                    self._debounced(component),
                    float(debounce.get("waitMillis", 0)),
                    leading=bool(debounce.get("leading", False)),
                    trailing=bool(debounce.get("trailing", True)),
                )
        started: list[ComponentRun] = []
        if self.runtime.host.page is not None:
            self._start_intervals(mod)
            started += self._fire(("initialize", "load"), mods=[mod])
        return started

    def _debounced(self, component: ActivatedComponent) -> Callable[[Any], None]:
        def start(event_and_data: Any) -> None:
            event, data = event_and_data
            self._spawn(component, event, data)

        return start

    def remove(self, mod: ActivatedMod) -> None:
        self.mods.remove(mod)
        mod.variables.on_change = None
        for component in mod.components:
            if component.interval is not None:
                component.interval.cancel()
            if component.debouncer is not None:
                component.debouncer.cancel()

    # -- host happenings ---------------------------------------------------------------------
    def visited(self) -> list[ComponentRun]:
        """A new page visit: page state resets, intervals restart, initialize + load run."""
        for mod in self.mods:
            self._start_intervals(mod)
        return self._fire(("initialize", "load"))

    def navigated(self) -> list[ComponentRun]:
        """A navigation inside the visit re-runs load triggers (PixieBrix's SPA navigation)."""
        return self._fire(("load",))

    def dom_event(self, event: str, data: Any = None) -> list[ComponentRun]:
        if event not in DOM_EVENTS:
            raise HostError(f"unknown event {event!r}; expected one of: {', '.join(DOM_EVENTS)}")
        return self._fire((event,), data=data)

    def custom_event(self, name: str, detail: Any = None) -> list[ComponentRun]:
        return self._fire(
            ("custom",),
            data={} if detail is None else detail,
            where=lambda c: c.custom_event == name,
        )

    def invoke(self, starter_brick_id: str) -> list[ComponentRun]:
        """Run the components of a user-invoked starter brick (by its id or inner key)."""
        started: list[ComponentRun] = []
        for mod in self.mods:
            for component in mod.components:
                if component.type in USER_INVOKED and starter_brick_id in (
                    component.starter.id,
                    component.definition.starter_brick_id,
                ):
                    started.append(self._spawn(component, component.type, None))
        return started

    # -- internals ---------------------------------------------------------------------------
    def _statechange(self, mod: ActivatedMod) -> None:
        self._fire(("statechange",), mods=[mod], data={})

    def _start_intervals(self, mod: ActivatedMod) -> None:
        for component in mod.components:
            if component.trigger != "interval":
                continue
            if component.interval is not None:
                component.interval.cancel()
            millis = component.starter.definition.get("intervalMillis") or 0
            if millis > 0:
                self._schedule_interval(component, millis / 1000)

    def _schedule_interval(self, component: ActivatedComponent, seconds: float) -> None:
        def tick() -> None:
            self._start(component, "interval", None)
            self._schedule_interval(component, seconds)  # first run after one full interval

        component.interval = self.runtime.scheduler.call_later(seconds, tick)

    def _fire(
        self,
        triggers: tuple[str, ...],
        *,
        data: Any = None,
        mods: list[ActivatedMod] | None = None,
        where: Callable[[ActivatedComponent], bool] | None = None,
    ) -> list[ComponentRun]:
        started = []
        for mod in mods if mods is not None else list(self.mods):
            for trigger in triggers:
                for component in mod.components:
                    if component.trigger == trigger and (where is None or where(component)):
                        run = self._start(component, trigger, data)
                        if run is not None:
                            started.append(run)
        return started

    def _start(self, component: ActivatedComponent, event: str, data: Any) -> ComponentRun | None:
        if component.debouncer is not None:
            component.debouncer((event, data))
            return None
        return self._spawn(component, event, data)

    def _spawn(self, component: ActivatedComponent, event: str, data: Any) -> ComponentRun:
        """Start one run in the runtime's task group; returns its (running) record."""
        runtime = self.runtime
        page = runtime.host.page
        placeholder = ComponentRun(
            component=component.label,
            component_id=component.id,
            run_id="",
            visit=page.session_id if page else None,
            trigger=event,
        )

        async def go() -> None:
            result = await run_component(runtime, component, event, data)
            placeholder.__dict__.update(result.__dict__)

        runtime.submit(go)
        return placeholder
