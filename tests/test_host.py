"""The host model and the context bricks that read it (SPEC §4, §5)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from brickrun import BusinessError, InProcessHost, Runtime, VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 11, 23, 15, 0, 0, 123000, tzinfo=UTC)


@pytest.fixture
async def frozen() -> Runtime:
    clock = VirtualClock(START)
    async with Runtime(clock=clock, entry_points=False) as runtime:
        yield runtime  # type: ignore[misc]


def is_uuid4(text: str) -> bool:
    return uuid.UUID(text).version == 4


async def test_document_context(frozen: Runtime) -> None:
    frozen.host.visit("https://example.com/cases/42?tab=1", "Case 42")  # type: ignore[attr-defined]
    out = (await frozen.run_brick("@pixiebrix/document-context", {})).output
    assert out == {
        "url": "https://example.com/cases/42?tab=1",
        "title": "Case 42",
        "timestamp": "2026-11-23T15:00:00.123Z",
        "isFrame": False,
    }


async def test_session_ids_per_visit_and_navigation(frozen: Runtime) -> None:
    host: InProcessHost = frozen.host  # type: ignore[assignment]
    host.sign_in("ada@example.com", user_id="u-1")
    host.visit("https://example.com/a")
    first = (await frozen.run_brick("@pixiebrix/session", {})).output
    assert set(first) == {
        "sessionId", "navigationId", "sessionTimestamp", "navigationTimestamp", "user", "email",
        "hostname",
    }  # fmt: skip
    assert is_uuid4(first["sessionId"]) and is_uuid4(first["navigationId"])
    assert (first["user"], first["email"]) == ("u-1", "ada@example.com")
    assert first["sessionTimestamp"] == first["navigationTimestamp"] == "2026-11-23T15:00:00.123Z"

    frozen.clock.advance(2)  # type: ignore[attr-defined]
    host.navigate("https://example.com/b")
    second = (await frozen.run_brick("@pixiebrix/session", {})).output
    assert second["sessionId"] == first["sessionId"], "a navigation keeps the session"
    assert second["navigationId"] != first["navigationId"]
    assert second["navigationTimestamp"] == "2026-11-23T15:00:02.123Z"

    host.visit("https://example.com/c")
    third = (await frozen.run_brick("@pixiebrix/session", {})).output
    assert third["sessionId"] != first["sessionId"], "a new visit is a new session"


async def test_session_without_user_has_null_identity(frozen: Runtime) -> None:
    frozen.host.visit("https://example.com/")  # type: ignore[attr-defined]
    out = (await frozen.run_brick("@pixiebrix/session", {})).output
    assert (out["user"], out["email"], out["hostname"]) == (None, None, None)


@pytest.mark.parametrize("brick_id", ["@pixiebrix/document-context", "@pixiebrix/session"])
async def test_missing_page_visit_is_a_clear_error(frozen: Runtime, brick_id: str) -> None:
    with pytest.raises(BusinessError, match=rf"{brick_id} needs a page visit"):
        await frozen.run_brick(brick_id, {})


async def test_profile(frozen: Runtime) -> None:
    frozen.host.sign_in(  # type: ignore[attr-defined]
        "ada@example.com",
        user_id="u-1",
        groups=["admins"],
        organizations=[{"id": "o-1", "name": "Acme"}],
    )
    out = (await frozen.run_brick("@pixiebrix/profile", {})).output
    assert out == {
        "user": "u-1",
        "email": "ada@example.com",
        "organizations": [{"id": "o-1", "name": "Acme"}],
        "groups": [{"id": "admins", "name": "admins"}],
    }


async def test_profile_without_user(frozen: Runtime) -> None:
    with pytest.raises(BusinessError) as info:
        await frozen.run_brick("@pixiebrix/profile", {})
    assert info.value.message == "User is not authenticated"


def test_visit_listeners_run_on_visits_not_navigations() -> None:
    host = InProcessHost(VirtualClock(START))
    visits: list[str] = []
    host.on_visit.append(lambda page: visits.append(page.url))
    host.visit("https://a.test/1")
    host.navigate("https://a.test/2")
    host.visit("https://b.test/")
    assert visits == ["https://a.test/1", "https://b.test/"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", host.page.session_timestamp)  # type: ignore[union-attr]
