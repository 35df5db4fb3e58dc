"""Clocks: the system clock, and a virtual one that tests and ``--now`` control."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock", "parse_instant"]


class Clock(Protocol):
    """Where bricks get "now" from (``ctx.now()``); always timezone-aware UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that stands still until ``advance`` moves it (replays, tests, ``--now``)."""

    def __init__(self, start: datetime) -> None:
        self._now = start if start.tzinfo else start.replace(tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back; got {seconds} s")
        self._now += timedelta(seconds=seconds)
        return self._now


def parse_instant(text: str) -> datetime:
    """Parse an ISO-8601 instant (``Z`` allowed); naive times are taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
