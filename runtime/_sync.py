"""A small synchronous facade for hosts that are not async (SPEC §10).

``SyncRuntime`` runs a ``Runtime`` on an event loop in a background thread (an anyio blocking
portal) and exposes blocking versions of the host-facing methods::

    with SyncRuntime(definitions=["bricks/"]) as runtime:
        runtime.activate("mods/telemetry.yaml")
        runtime.visit("https://example.com/")
        runtime.dispatch("click", {"target": "#buy"})
        print(runtime.run_brick("@acme/greet", {"name": "Ada"}).output)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._model import ModDefinition
from ._mods import ActivatedMod, ComponentRun
from ._runtime import RunResult, Runtime
from .errors import BrickrunError

__all__ = ["SyncRuntime"]

T = TypeVar("T")


class SyncRuntime:
    """Blocking access to a ``Runtime`` (same constructor arguments). Use as a context manager,
    or call ``start()`` and ``close()``; ``close`` drains background work first."""

    def __init__(self, **runtime_args: Any) -> None:
        self._args = runtime_args
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self.runtime: Runtime | None = None

    def start(self) -> SyncRuntime:
        if self._stack is not None:
            raise BrickrunError("this SyncRuntime is already started")
        stack = contextlib.ExitStack()
        try:
            portal = stack.enter_context(start_blocking_portal())
            self.runtime = stack.enter_context(
                portal.wrap_async_context_manager(Runtime(**self._args))
            )
        except BaseException:
            stack.close()
            raise
        self._stack, self._portal = stack, portal
        return self

    def close(self) -> None:
        """Drain background work, close the runtime and stop the loop thread (idempotent)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
        self._portal = None

    def __enter__(self) -> SyncRuntime:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._portal is None:
            raise BrickrunError("the SyncRuntime is not started; use `with SyncRuntime(...)`")
        return self._portal.call(fn, *args)

    @property
    def _rt(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime

    def run_brick(self, ref: str, input: Any = None, **kwargs: Any) -> RunResult:
        async def go() -> RunResult:
            return await self._rt.run_brick(ref, input, **kwargs)

        result: RunResult = self._call(go)
        return result

    def activate(
        self,
        mod: str | os.PathLike[str] | ModDefinition,
        options: Mapping[str, Any] | None = None,
        *,
        deployment_id: str | None = None,
    ) -> ActivatedMod:
        async def go() -> ActivatedMod:
            return await self._rt.activate(mod, options, deployment_id=deployment_id)

        activated: ActivatedMod = self._call(go)
        return activated

    def visit(self, url: str, title: str = "") -> list[ComponentRun]:
        runs: list[ComponentRun] = self._call(self._rt.visit, url, title)
        return runs

    def navigate(self, url: str, title: str | None = None) -> list[ComponentRun]:
        runs: list[ComponentRun] = self._call(self._rt.navigate, url, title)
        return runs

    def sign_in(self, email: str, **user: Any) -> None:
        self._call(lambda: self._rt.sign_in(email, **user))

    def dispatch(self, event: str, data: Any = None) -> list[ComponentRun]:
        runs: list[ComponentRun] = self._call(self._rt.dispatch, event, data)
        return runs

    def dispatch_custom(self, event_name: str, detail: Any = None) -> list[ComponentRun]:
        runs: list[ComponentRun] = self._call(self._rt.dispatch_custom, event_name, detail)
        return runs

    def invoke(self, starter_brick_id: str) -> list[ComponentRun]:
        runs: list[ComponentRun] = self._call(self._rt.invoke, starter_brick_id)
        return runs

    def drain(self, timeout: float | None = None) -> bool:
        done: bool = self._call(self._rt.drain, timeout)
        return done
