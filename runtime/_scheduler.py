"""Timers on the runtime's clock: ``call_later``, and lodash-style ``Debouncer``.

With a ``VirtualClock`` nothing fires until ``advance`` moves time (replays and tests are exact
and instant); with the system clock, timers are tasks in the runtime's task group that sleep.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio

from ._clock import VirtualClock

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["Debouncer", "Scheduler", "Timer"]


@dataclass(order=True)
class Timer:
    """A scheduled callback; ``cancel()`` stops it if it has not fired."""

    due: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)
    scope: anyio.CancelScope | None = field(default=None, compare=False)

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class Scheduler:
    """Schedules callbacks ``delay`` seconds from the runtime clock's now."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._heap: list[Timer] = []
        self._seq = itertools.count()

    @property
    def virtual(self) -> bool:
        return isinstance(self.runtime.clock, VirtualClock)

    def _now(self) -> float:
        return self.runtime.clock.now().timestamp()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self._now() + max(delay, 0.0), next(self._seq), callback)
        if self.virtual:
            heapq.heappush(self._heap, timer)
        else:
            self.runtime.task_group.start_soon(self._sleep_then_fire, timer, delay)
        return timer

    async def _sleep_then_fire(self, timer: Timer, delay: float) -> None:
        with anyio.CancelScope() as scope:
            timer.scope = scope
            if timer.cancelled:
                return
            await anyio.sleep(max(delay, 0.0))
            if not timer.cancelled:
                timer.callback()

    async def advance(self, seconds: float) -> None:
        """Move a virtual clock forward, firing due timers in order (each at its own time) and
        letting the work they start settle before time moves on."""
        clock = self.runtime.clock
        assert isinstance(clock, VirtualClock), "advance() needs a VirtualClock"
        target = clock.now().timestamp() + seconds
        while self._heap and self._heap[0].due <= target:
            timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            step = timer.due - clock.now().timestamp()
            if step > 0:
                clock.advance(step)
            timer.callback()
            await self.runtime.settle()
        remaining = target - clock.now().timestamp()
        if remaining > 0:
            clock.advance(remaining)


class Debouncer:
    """lodash ``debounce(fn, waitMillis, {leading, trailing})`` on the runtime's scheduler.

    Calls within ``wait`` of each other collapse: with ``leading`` the first call runs at once;
    with ``trailing`` (the default) the last call runs ``wait`` after the calls stop — and, when
    ``leading`` is also on, only if there was more than one call.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        fn: Callable[[Any], None],
        wait_millis: float,
        *,
        leading: bool = False,
        trailing: bool = True,
    ) -> None:
        self.scheduler = scheduler
        self.fn = fn
        self.wait = timedelta(milliseconds=wait_millis).total_seconds()
        self.leading = leading
        self.trailing = trailing
        self._timer: Timer | None = None
        self._pending: tuple[Any] | None = None

    def __call__(self, arg: Any) -> None:
        if self._timer is None:
            if self.leading:
                self.fn(arg)
                self._pending = None
            else:
                self._pending = (arg,)
        else:
            self._timer.cancel()
            self._pending = (arg,)
        self._timer = self.scheduler.call_later(self.wait, self._fire)

    def _fire(self) -> None:
        self._timer = None
        pending, self._pending = self._pending, None
        if self.trailing and pending is not None:
            self.fn(pending[0])

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._pending = None
