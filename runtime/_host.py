"""The host model (SPEC §5): what a browser would supply — page visits, navigation, the user.

``Host`` is the seam a host application fills in; ``InProcessHost`` is the default
implementation, driven by the embedding API and the CLI. A *page visit* starts a new
``sessionId`` (and resets per-visit state through ``on_visit`` listeners); a *navigation* inside
a visit gets a new ``navigationId`` and keeps the session.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from ._clock import Clock, SystemClock

__all__ = ["Host", "InProcessHost", "PageVisit", "User", "iso_millis"]


def iso_millis(instant: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z`` (JavaScript's ``toISOString``)."""
    if instant.utcoffset():
        instant = instant.astimezone(UTC)
    # An f-string is ~2x faster than strftime, and timestamps are minted on hot paths.
    return (
        f"{instant.year:04d}-{instant.month:02d}-{instant.day:02d}T{instant.hour:02d}:"
        f"{instant.minute:02d}:{instant.second:02d}.{instant.microsecond // 1000:03d}Z"
    )


@dataclass(frozen=True)
class PageVisit:
    """The current page: a visit (session) and the latest navigation inside it."""

    url: str
    title: str
    session_id: str
    session_timestamp: str
    navigation_id: str
    navigation_timestamp: str
    is_frame: bool = False


@dataclass(frozen=True)
class User:
    """The signed-in user; ``groups``/``organizations`` are ``{"id", "name"}`` objects."""

    email: str
    user_id: str | None = None
    groups: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    organizations: tuple[dict[str, Any], ...] = field(default_factory=tuple)


class Host(Protocol):
    """What bricks may ask of the host. ``page`` and ``user`` are ``None`` when absent."""

    @property
    def page(self) -> PageVisit | None: ...

    @property
    def user(self) -> User | None: ...

    @property
    def hostname(self) -> str: ...


def _named(items: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    """Accept ``"name"`` strings or ``{"id", "name"}`` objects for groups and organizations."""
    out = []
    for item in items:
        if isinstance(item, str):
            out.append({"id": item, "name": item})
        else:
            out.append({"id": item.get("id"), "name": item.get("name", item.get("id"))})
    return tuple(out)


class InProcessHost:
    """The default host: state held in this object, changed by ``visit``/``navigate``/
    ``sign_in``. ``on_visit`` listeners run after every new page visit (a new session)."""

    def __init__(self, clock: Clock | None = None, *, hostname: str | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._hostname = hostname or socket.gethostname()
        self._page: PageVisit | None = None
        self._user: User | None = None
        self.on_visit: list[Callable[[PageVisit], None]] = []
        self.on_navigate: list[Callable[[PageVisit], None]] = []

    @property
    def page(self) -> PageVisit | None:
        return self._page

    @property
    def user(self) -> User | None:
        return self._user

    @property
    def hostname(self) -> str:
        return self._hostname

    def visit(self, url: str, title: str = "") -> PageVisit:
        """Start a new page visit: a new session and a new navigation."""
        now = iso_millis(self.clock.now())
        self._page = PageVisit(
            url=url,
            title=title,
            session_id=str(uuid.uuid4()),
            session_timestamp=now,
            navigation_id=str(uuid.uuid4()),
            navigation_timestamp=now,
        )
        for listener in tuple(self.on_visit):
            listener(self._page)
        return self._page

    def navigate(self, url: str, title: str | None = None) -> PageVisit:
        """Navigate inside the current visit (a new navigation id, the same session);
        starts a visit when there is none."""
        if self._page is None:
            return self.visit(url, title or "")
        self._page = replace(
            self._page,
            url=url,
            title=self._page.title if title is None else title,
            navigation_id=str(uuid.uuid4()),
            navigation_timestamp=iso_millis(self.clock.now()),
        )
        for listener in tuple(self.on_navigate):
            listener(self._page)
        return self._page

    def sign_in(
        self,
        email: str,
        *,
        user_id: str | None = None,
        groups: Sequence[Any] = (),
        organizations: Sequence[Any] = (),
    ) -> User:
        """Set the signed-in user (replacing any previous one)."""
        self._user = User(
            email=email,
            user_id=user_id,
            groups=_named(groups),
            organizations=_named(organizations),
        )
        return self._user

    def sign_out(self) -> None:
        self._user = None
