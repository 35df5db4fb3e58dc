"""Per-run state: ids, mod state, trace, deadline, and the run's background work.

A run is one top-level execution (a brick called by a host, or a starter-brick run). Its
background steps run in the *runtime's* task group, each under a cancel scope the run keeps,
so cancelling the run or reaching its deadline cancels them too.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from ._ids import new_uuid
from ._state import ModVariables
from ._trace import TraceRecord
from .errors import BrickError, BrickrunError, RunError

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["TRACE_LIMIT", "RunState"]

TRACE_LIMIT = 10_000
"""Trace records a run keeps in memory (the latest ones)."""

log = logging.getLogger("brickrun.run")


class RunState:
    """Everything a pipeline needs while it runs, shared by its sub-pipelines."""

    __slots__ = (
        "_cancelled",
        "_scopes",
        "component_state",
        "deadline",
        "deployment_id",
        "depth",
        "mod_component_id",
        "mod_id",
        "mod_state",
        "mod_version",
        "on_background_error",
        "page_state",
        "pending",
        "registry",
        "run_id",
        "runtime",
        "subscribers",
        "trace",
        "trace_dropped",
    )

    def __init__(
        self,
        runtime: Runtime,
        *,
        mod_state: ModVariables | None = None,
        component_state: ModVariables | None = None,
        page_state: ModVariables | None = None,
        mod_id: str | None = None,
        mod_version: str | None = None,
        deployment_id: str | None = None,
        mod_component_id: str | None = None,
        deadline: float = math.inf,
        on_background_error: Callable[[RunState, RunError], None] | None = None,
    ) -> None:
        self.run_id = new_uuid()
        self.runtime = runtime
        self.registry = runtime.registry  # a mod's runs use the mod's registry (inner bricks)
        self.mod_state = mod_state if mod_state is not None else ModVariables()
        self.component_state = component_state if component_state is not None else ModVariables()
        self.page_state = page_state if page_state is not None else ModVariables()
        self.mod_id = mod_id
        self.mod_version = mod_version
        self.deployment_id = deployment_id
        self.mod_component_id = mod_component_id
        self.deadline = deadline
        self.on_background_error = on_background_error
        # Trace events as tuples (cheap on the hot path); ``records()`` builds TraceRecords.
        # Bounded: a long-lived run (a loop over many items, a run that starts thousands of
        # background bodies) keeps its latest TRACE_LIMIT records, not all of them in memory.
        self.trace: deque[tuple[str, str, str, Any, float | None, int]] = deque(maxlen=TRACE_LIMIT)
        self.trace_dropped = 0
        self.subscribers = runtime.trace_subscribers  # the runtime's list, shared (not a copy)
        self.depth = 0
        self.pending = 0
        self._scopes: set[anyio.CancelScope] = set()
        self._cancelled = False

    def state(self, namespace: str) -> ModVariables:
        """PixieBrix state namespaces: ``blueprint`` (the mod's), ``extension``, ``shared``."""
        if namespace == "blueprint":
            return self.mod_state
        if namespace == "extension":
            return self.component_state
        if namespace == "shared":
            return self.page_state
        raise ValueError(
            f"unknown state namespace {namespace!r}; expected blueprint, extension or shared"
        )

    def record(
        self,
        event: str,
        step_path: str,
        brick_id: str,
        data: Any = None,
        duration_ms: float | None = None,
    ) -> None:
        """Add a trace event (see ``TraceRecord``) and hand it to the runtime's subscribers."""
        entry = (event, step_path, brick_id, data, duration_ms, self.depth)
        trace = self.trace
        if len(trace) == TRACE_LIMIT:
            self.trace_dropped += 1  # the oldest record goes; subscribers saw it already
        trace.append(entry)
        subscribers = self.subscribers
        if subscribers:
            record = self._to_record(entry)
            for callback in tuple(subscribers):
                try:
                    callback(record)
                except Exception:  # a broken subscriber must not break the run
                    log.exception("trace subscriber failed")

    def _to_record(self, entry: tuple[str, str, str, Any, float | None, int]) -> TraceRecord:
        event, step_path, brick_id, data, duration_ms, depth = entry
        return TraceRecord(self.run_id, step_path, brick_id, event, data, duration_ms, depth)

    def records(self) -> list[TraceRecord]:
        """The run's trace so far, oldest first: its latest ``TRACE_LIMIT`` records
        (``trace_dropped`` counts the earlier ones; trace subscribers receive every record)."""
        return [self._to_record(entry) for entry in self.trace]

    def start_background(
        self,
        fn: Callable[..., Awaitable[Any]],
        step_path: str,
        brick_id: str,
        *args: Any,
    ) -> None:
        """Run ``fn(*args)`` in the runtime's task group under this run's deadline and
        cancellation."""
        self.pending += 1
        self.runtime.submit(_Job(self, fn, args, step_path, brick_id))

    async def _background(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        step_path: str,
        brick_id: str,
    ) -> None:
        with anyio.CancelScope(deadline=self.deadline) as scope:
            if self._cancelled:
                scope.cancel()
            self._scopes.add(scope)
            started = time.perf_counter()
            try:
                await fn(*args)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                error = exc if isinstance(exc, RunError) else _wrap(exc)
                self.record(
                    "error",
                    step_path,
                    brick_id,
                    {"name": error.name, "message": error.message, "background": True},
                    (time.perf_counter() - started) * 1000,
                )
                self.runtime.report_background_error(self, error)
            finally:
                self._scopes.discard(scope)
                self.pending -= 1
        if scope.cancelled_caught:
            self.record(
                "error",
                step_path,
                brick_id,
                {"name": "RunCancelledError", "message": "background step cancelled"},
            )

    def cancel(self) -> None:
        """Cancel the run's background work (the foreground is cancelled by its own scope)."""
        self._cancelled = True
        for scope in tuple(self._scopes):
            scope.cancel()


class _Job:
    """A background step waiting for a worker, as one small object: a burst of records leaves
    thousands of these queued, and every garbage collection walks all of them."""

    __slots__ = ("args", "brick_id", "fn", "run", "step_path")

    def __init__(
        self,
        run: RunState,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        step_path: str,
        brick_id: str,
    ) -> None:
        self.run = run
        self.fn = fn
        self.args = args
        self.step_path = step_path
        self.brick_id = brick_id

    def __call__(self) -> Awaitable[None]:
        return self.run._background(self.fn, self.args, self.step_path, self.brick_id)


def _wrap(exc: BaseException) -> RunError:
    if isinstance(exc, RunError):
        return exc
    error = BrickError(exc)
    if isinstance(exc, BrickrunError):
        error.cause_name = exc.name
    error.__cause__ = exc
    return error
