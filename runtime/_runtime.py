"""The runtime: a registry, a clock, a task group for background work, and the run entry points.

``async with Runtime(...) as runtime`` starts the task group that owns background work
(``async: true`` steps, ``@pixiebrix/run`` with ``async``); leaving the block drains it.
Nothing here is global: two runtimes in one process share no state.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ._bricks import Brick
from ._clock import Clock, SystemClock
from ._host import Host, InProcessHost
from ._integrations import Integrations
from ._model import ModDefinition, Pipeline, Step
from ._mods import ActivatedMod, ComponentRun, activate
from ._pipeline import run_pipeline
from ._registry import Registry, builtin_registry
from ._run import RunState
from ._scheduler import Scheduler
from ._starters import StarterBricks
from ._state import ModVariables
from ._trace import TraceRecord, redact
from .errors import (
    BrickrunError,
    DefinitionError,
    HostError,
    RunCancelledError,
    RunError,
    RunTimeoutError,
)
from .storage import StorageBackend, open_storage
from .telemetry import DEFAULT_TELEMETRY_DATABASE, TelemetryEvent, TelemetryRecorder

if TYPE_CHECKING:
    import httpx

    from .telemetry._privacy import PrivacySettings

__all__ = ["RunResult", "Runtime"]

log = logging.getLogger("brickrun.runtime")


@dataclass
class RunResult:
    """The outcome of a run: its output, its id, and (``trace``) its trace records."""

    output: Any
    run: RunState = field(repr=False)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def trace(self) -> list[TraceRecord]:
        """The run's trace records, oldest first (a run keeps its latest 10,000 in memory;
        ``trace_dropped`` counts any earlier ones)."""
        return self.run.records()

    @property
    def trace_dropped(self) -> int:
        return self.run.trace_dropped


def _input_step(brick_id: str) -> Step:
    """A synthetic step that passes the run's input to the brick, so errors carry a frame."""
    return Step(brick_id=brick_id, render=lambda ctx: ctx["@input"], path=(), location=None)


class Runtime:
    """A brick runtime. Use as ``async with Runtime(...) as runtime:``.

    ``definitions``: folders or files of YAML/JSON definitions to register (after the shipped
    ones). ``clock``: where ``now`` comes from (a ``VirtualClock`` to freeze time). ``host``:
    page visits and the signed-in user (default: an ``InProcessHost`` on the same clock).
    ``database_url``: where team databases live (``sqlite:///path``, ``postgresql://...``;
    default ``$BRICKRUN_DB_URL`` or a SQLite file in the user's data directory), opened on
    first use. ``telemetry_database``: where the runtime's own events go. ``export``: queue them
    for export (``brickrun export``) in the same transaction as they are stored (default: when
    ``$BRICKRUN_EXPORT_URL`` is set). ``privacy``: ``PrivacySettings`` (``strict`` filters events
    before storing).
    ``integrations``: integration configurations (an ``Integrations`` or ``{id: values}``;
    ``@pixiebrix/api`` needs none); ``integrations_file``: a YAML/JSON file of them (default
    ``$BRICKRUN_INTEGRATIONS_FILE``); environment variables ``BRICKRUN_INTEGRATION__<ID>__<FIELD>``
    also configure them. ``http_transport``: the transport of the runtime's HTTP client.
    """

    def __init__(
        self,
        *,
        definitions: Iterable[str | os.PathLike[str]] = (),
        clock: Clock | None = None,
        integrations: Integrations | Mapping[str, Mapping[str, Any]] | None = None,
        integrations_file: str | os.PathLike[str] | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        host: Host | None = None,
        database_url: str | None = None,
        telemetry_database: str = DEFAULT_TELEMETRY_DATABASE,
        export: bool | None = None,
        privacy: PrivacySettings | None = None,
        entry_points: bool = True,
    ) -> None:
        self.registry = Registry(parent=builtin_registry())
        if entry_points:
            self.registry.load_entry_points()
        for path in definitions:
            self.registry.load_path(path)
        self.clock: Clock = clock or SystemClock()
        self.host: Host = host if host is not None else InProcessHost(self.clock)
        self.database_url = database_url
        self._storage: StorageBackend | None = None
        self._storage_lock: anyio.Lock | None = None
        self.trace_subscribers: list[Callable[[TraceRecord], None]] = []
        self.background_errors: deque[RunError] = deque(maxlen=1000)
        self.background_error_handlers: list[Callable[[RunState, RunError], None]] = []
        if isinstance(integrations, Integrations):
            self.integrations = integrations
            if integrations.services is None:
                integrations.services = self.registry
            if integrations_file is not None:
                integrations.load_file(integrations_file)
        else:
            self.integrations = Integrations(
                integrations, file=integrations_file, services=self.registry
            )
        self.http_transport = http_transport
        self._http_client: httpx.AsyncClient | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._pending = 0
        self._idle: anyio.Event | None = None
        self._runs: dict[str, tuple[RunState, anyio.CancelScope]] = {}
        self._jobs: deque[Callable[[], Awaitable[Any]]] = deque()
        self._workers = 0
        self.max_workers = 256
        self.page_state = ModVariables()
        if export is None:  # nothing leaves the team database until an export is configured
            export = bool(os.environ.get("BRICKRUN_EXPORT_URL"))
        self.telemetry = TelemetryRecorder(
            self, database=telemetry_database, outbox=export, privacy=privacy
        )
        self.scheduler = Scheduler(self)
        self.starters = StarterBricks(self)
        self.run_listeners: list[Callable[[ComponentRun], None]] = []
        self.report_listeners: list[Callable[[ComponentRun, TelemetryEvent], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Runtime:
        if self._task_group is not None:
            raise BrickrunError("this Runtime is already started")
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group = self._task_group
        assert task_group is not None
        try:
            if exc is None:
                await self.drain()
            else:
                # Leaving on an error: stop background work and let the caller see *its* error,
                # not an exception group (background failures never reach the task group).
                task_group.cancel_scope.cancel()
        finally:
            self._task_group = None
            await task_group.__aexit__(None, None, None)
            if self._storage is not None:
                storage, self._storage = self._storage, None
                await storage.close()
            if self._http_client is not None:
                client, self._http_client = self._http_client, None
                await client.aclose()

    async def storage(self) -> StorageBackend:
        """The team-database backend, opened on first use (one per runtime)."""
        if self._storage is None:
            if self._storage_lock is None:
                self._storage_lock = anyio.Lock()
            async with self._storage_lock:
                if self._storage is None:
                    backend = open_storage(self.database_url)
                    await backend.open()
                    self._storage = backend
        return self._storage

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        if self._task_group is None:
            raise BrickrunError(
                "the Runtime is not started; use `async with Runtime(...) as runtime:`"
            )
        return self._task_group

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until no background work is left. Returns False if ``timeout`` ran out."""
        with anyio.move_on_after(timeout if timeout is not None else math.inf):
            while self._pending:
                self._idle = anyio.Event()
                await self._idle.wait()
            return True
        return False

    @property
    def pending(self) -> int:
        """How many background steps are still running."""
        return self._pending

    def _background_started(self) -> None:
        self._pending += 1

    def _background_finished(self) -> None:
        self._pending -= 1
        if self._pending == 0 and self._idle is not None:
            self._idle.set()

    def submit(self, job: Callable[[], Awaitable[Any]]) -> None:
        """Run ``job()`` in the background, on the runtime's pool of worker tasks.

        Starting an anyio task costs ~50 µs here, more than a whole telemetry record; so a
        bounded set of workers (``max_workers``) takes jobs from a queue instead. ``drain``
        waits for queued and running jobs alike. A job must handle its own errors.
        """
        self._background_started()
        self._jobs.append(job)
        if self._workers < self.max_workers and self._workers < len(self._jobs):
            self._workers += 1
            self.task_group.start_soon(self._work)

    async def _work(self) -> None:
        try:
            while self._jobs:
                job = self._jobs.popleft()
                try:
                    await job()
                except Exception:  # jobs report their own failures; never lose a worker
                    log.exception("background job failed")
                finally:
                    self._background_finished()
        finally:
            self._workers -= 1

    def report_background_error(self, run: RunState, error: RunError) -> None:
        """A background step failed: log it (no payloads), keep it, tell the handlers."""
        log.warning(
            "background step failed in run %s at %s (%s): %s: %s",
            run.run_id,
            error.step_path,
            error.brick_id,
            error.name,
            error.message,
        )
        self.background_errors.append(error)
        handlers = list(self.background_error_handlers)
        if run.on_background_error is not None:
            handlers.append(run.on_background_error)
        for handler in handlers:
            try:
                handler(run, error)
            except Exception:  # reporting must never fail the runtime
                log.exception("background error handler failed")

    # -- configuration -----------------------------------------------------------------------
    def integration(self, integration_id: str) -> dict[str, Any] | None:
        """What a pipeline sees for that integration (``None`` when not configured); raises
        ``DefinitionError`` when its configuration is invalid."""
        return self.integrations.context_value(integration_id)

    @property
    def http_client(self) -> httpx.AsyncClient:
        """One HTTP client per runtime (connection reuse), created on first use, closed on
        exit; ``http_transport`` (e.g. ``httpx.MockTransport``) is the test seam."""
        if self._http_client is None:
            import httpx  # lazy: ~0.1 s of import time

            self._http_client = httpx.AsyncClient(transport=self.http_transport)
        return self._http_client

    def subscribe(self, callback: Callable[[TraceRecord], None]) -> Callable[[], None]:
        """Call ``callback`` with every trace record of every run; returns an unsubscribe."""
        self.trace_subscribers.append(callback)
        return lambda: self.trace_subscribers.remove(callback)

    def register(self, brick: Brick) -> Brick:
        """Register a Python brick with this runtime only."""
        return self.registry.register(brick)

    def load_definitions(self, path: str | os.PathLike[str]) -> list[str]:
        """Register the definitions at ``path``; returns their ids."""
        return [d.id for d in self.registry.load_path(path).definitions]

    # -- running -----------------------------------------------------------------------------
    def new_run(self, **kwargs: Any) -> RunState:
        """A fresh run (new run id) bound to this runtime."""
        return RunState(self, **kwargs)

    async def run_brick(
        self,
        ref: str | Brick,
        input: Any = None,
        *,
        options: Mapping[str, Any] | None = None,
        mod_variables: ModVariables | Mapping[str, Any] | None = None,
        timeout: float | None = None,
        run: RunState | None = None,
    ) -> RunResult:
        """Run one brick with ``input`` as its config and return its output and trace.

        ``ref`` is a registered id or a ``Brick``. Errors raise (``RunError`` subclasses carry
        the failing step's path, brick id, run id and definition location). ``timeout`` is a
        deadline in seconds for the run and the background work it starts.
        """
        brick = ref if isinstance(ref, Brick) else self.registry.get(ref)
        if self.registry.find(brick.id) is not brick:
            self.registry.register(brick)
        if run is None:
            state = (
                mod_variables
                if isinstance(mod_variables, ModVariables)
                else ModVariables(dict(mod_variables or {}))
            )
            run = RunState(self, mod_state=state)
        context = {"@input": {} if input is None else input, "@options": dict(options or {})}
        output = await self.run_pipeline(Pipeline((_input_step(brick.id),)), context, run, timeout)
        return RunResult(output, run)

    async def call_brick(self, brick_id: str, input: Any, run: RunState) -> Any:
        """Run one brick inside an existing run (readers of a starter brick, for example)."""
        context = {"@input": input, "@options": {}}
        return await run_pipeline(Pipeline((_input_step(brick_id),)), context, run)

    async def run_pipeline(
        self,
        pipeline: Pipeline,
        context: dict[str, Any],
        run: RunState,
        timeout: float | None = None,
    ) -> Any:
        """Run a compiled pipeline as one run, with cancellation and an optional deadline."""
        self.task_group  # noqa: B018 - fail early and clearly when the runtime is not started
        if timeout is not None:
            run.deadline = anyio.current_time() + timeout
        with anyio.CancelScope(deadline=run.deadline) as scope:
            self._runs[run.run_id] = (run, scope)
            try:
                return await run_pipeline(pipeline, context, run)
            finally:
                del self._runs[run.run_id]
        if timeout is not None and anyio.current_time() >= run.deadline:
            run.cancel()
            raise RunTimeoutError(
                f"run {run.run_id} passed its deadline of {timeout} s", run_id=run.run_id
            )
        raise RunCancelledError(f"run {run.run_id} was cancelled", run_id=run.run_id)

    def cancel(self, run_id: str) -> bool:
        """Cancel a run in progress and its background work; False if no such run is active."""
        entry = self._runs.get(run_id)
        if entry is None:
            return False
        run, scope = entry
        scope.cancel()
        run.cancel()
        return True

    # -- mods and the host -------------------------------------------------------------------
    async def activate(
        self,
        mod: str | os.PathLike[str] | ModDefinition,
        options: Mapping[str, Any] | None = None,
        *,
        deployment_id: str | None = None,
    ) -> ActivatedMod:
        """Activate a mod (a definition, a registered mod id, or a file) with option values.

        Everything is checked up front; ``DefinitionErrors`` lists every problem. When a page
        is open, the mod's ``initialize`` and ``load`` triggers start at once.
        """
        definition = self._mod_definition(mod)
        activated = activate(self, definition, options, deployment_id)
        self.starters.add(activated)
        return activated

    def _mod_definition(self, mod: str | os.PathLike[str] | ModDefinition) -> ModDefinition:
        if isinstance(mod, ModDefinition):
            return mod
        text = os.fspath(mod)
        found = self.registry.find_definition(text) if text.startswith("@") else None
        if found is None and not text.startswith("@"):
            for definition in self.registry.load_path(text).definitions:
                if isinstance(definition, ModDefinition):
                    found = definition
                    break
        if not isinstance(found, ModDefinition):
            raise DefinitionError(f"no mod (kind: recipe) {text!r} found")
        return found

    def deactivate(self, mod: ActivatedMod) -> None:
        """Stop a mod's triggers (runs in progress finish)."""
        self.starters.remove(mod)

    @property
    def mods(self) -> list[ActivatedMod]:
        return list(self.starters.mods)

    def visit(self, url: str, title: str = "") -> list[ComponentRun]:
        """Start a page visit (new session); page state resets; initialize/load triggers run.
        Returns the runs started (they finish in the background; ``await drain()``)."""
        self._in_process_host().visit(url, title)
        self.page_state = ModVariables()
        return self.starters.visited()

    def navigate(self, url: str, title: str | None = None) -> list[ComponentRun]:
        """Navigate inside the visit (new navigation id, same session); load triggers run."""
        self._in_process_host().navigate(url, title)
        return self.starters.navigated()

    def sign_in(self, email: str, **user: Any) -> None:
        """Set the signed-in user (``user_id``, ``groups``, ``organizations``)."""
        self._in_process_host().sign_in(email, **user)

    def dispatch(self, event: str, data: Any = None) -> list[ComponentRun]:
        """A DOM-like event (``click``, ``keydown``, ``change``, ...) reached the page."""
        return self.starters.dom_event(event, data)

    def dispatch_custom(self, event_name: str, detail: Any = None) -> list[ComponentRun]:
        """A custom event with a ``detail`` object; runs ``custom`` triggers of that name."""
        return self.starters.custom_event(event_name, detail)

    def invoke(self, starter_brick_id: str) -> list[ComponentRun]:
        """Run a user-invoked starter brick (``menuItem``, ``quickBar``, ``contextMenu``)."""
        return self.starters.invoke(starter_brick_id)

    async def advance(self, milliseconds: float) -> None:
        """Let time pass on a virtual clock: intervals and debounces due in between fire."""
        await self.scheduler.advance(milliseconds / 1000)

    async def settle(self) -> None:
        """Wait until the runs and background work started so far are done."""
        await self.drain()

    def _in_process_host(self) -> InProcessHost:
        if not isinstance(self.host, InProcessHost):
            raise HostError(
                "this runtime's host is supplied by the application; change page visits and "
                "users through it"
            )
        return self.host

    @staticmethod
    def redact(value: Any) -> Any:
        """Mask secrets in a value before it is printed or exported."""
        return redact(value)
