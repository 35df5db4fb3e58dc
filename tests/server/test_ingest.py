"""``POST /api/telemetry``: auth, limits, validation, privacy and idempotency, on both backends."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from brickrun.server import TelemetryServer, create_app, open_server_store

from .conftest import ORIGIN, Tokens, bearer, make_config, stored_events

pytestmark = pytest.mark.anyio

EVENT_KEYS = {
    "id",
    "name",
    "timestamp",
    "source",
    "user",
    "session_id",
    "url",
    "platform",
    "duration_ms",
    "metadata",
    "private_metadata",
    "error",
    "context",
}


async def test_one_event_and_a_batch_are_stored_as_telemetry_events(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    one = {
        "type": "page_view",
        "page": "/profile/abc-123-def-456?tab=settings&userId=789",
        "sessionId": "abc-123-def-456",
        "platform": "web",
    }
    r = await client.post("/api/telemetry", json=one, headers=bearer(tokens.ingest))
    assert (r.status_code, r.json()) == (200, {"success": True, "accepted": 1})
    batch = [
        {
            "type": "action",
            "action": "button_click",
            "page": "/dashboard",
            "metadata": {"count": 2, "primary": True},
        },
        {"type": "api_call", "endpoint": "/api/user/42", "duration": 123.5, "status": 200},
        {"type": "error", "error": {"name": "api_error", "message": "HTTP 500"}},
        {"type": "session_end", "duration": 423000},
    ]
    r = await client.post("/api/telemetry", json=batch, headers=bearer(tokens.ingest))
    assert (r.status_code, r.json()) == (200, {"success": True, "accepted": 4})

    events = {e["name"]: e for e in await stored_events(served)}
    assert set(events) == {"page_view", "action", "api_call", "error", "session_end"}
    for event in events.values():
        assert set(event) <= EVENT_KEYS
        uuid.UUID(event["id"])
        assert event["source"] == {"ingest": tokens.ingest_id}
    page = events["page_view"]
    assert page["url"] == page["context"] == "/profile/[id]"
    assert page["session_id"].startswith("s_") and "abc-123" not in page["session_id"]
    assert events["action"]["context"] == "button_click"
    assert events["action"]["metadata"] == {"count": 2, "primary": True}
    assert events["api_call"]["context"] == "/api/user/[id]"
    assert (events["api_call"]["duration_ms"], events["api_call"]["metadata"]) == (
        123.5,
        {"status": 200},
    )
    assert events["error"]["error"] == {
        "name": "api_error",
        "message": "HTTP 500",
        "business": False,
    }
    assert events["error"]["context"] == "api_error"


AUTH_FAILURES: list[tuple[Any, str, int, str]] = [
    ({}, "", 401, "missing_token"),
    ({"Authorization": "Bearer bri_not-a-real-token"}, "", 401, "invalid_token"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "", 401, "missing_token"),
    (None, "", 401, "revoked_token"),  # the revoked token
    ("admin", "", 403, "forbidden"),  # an admin token may not ingest
    ({}, "?token=bri_wrong", 401, "invalid_token"),
]


async def test_auth_failures_store_nothing(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    for headers, query, status, code in AUTH_FAILURES:
        if headers is None:
            headers = bearer(tokens.revoked)
        elif headers == "admin":
            headers = bearer(tokens.admin)
        r = await client.post(
            "/api/telemetry" + query, json={"type": "page_view", "page": "/x"}, headers=headers
        )
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (headers, query)
        if status == 401:
            assert r.headers["www-authenticate"].startswith("Bearer")
    assert await served.storage.count(served.config.database) == 0


async def test_token_in_the_query_string_for_beacons(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    r = await client.post(
        f"/api/telemetry?token={tokens.ingest}",
        content=json.dumps([{"type": "page_view", "page": "/"}]),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert r.status_code == 200
    assert await served.storage.count(served.config.database) == 1


async def test_revocation_takes_effect_on_the_next_request(
    client: httpx.AsyncClient, served: TelemetryServer, storage_url: str, tokens: Tokens
) -> None:
    event = {"type": "page_view", "page": "/"}
    assert (
        await client.post("/api/telemetry", json=event, headers=bearer(tokens.ingest))
    ).is_success
    async with open_server_store(storage_url) as other_process:
        assert await other_process.revoke_token(tokens.ingest_id)
    r = await client.post("/api/telemetry", json=event, headers=bearer(tokens.ingest))
    assert r.status_code == 401
    assert await served.storage.count(served.config.database) == 1


async def test_oversize_body_is_413(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    big = json.dumps({"type": "page_view", "page": "/" + "a" * 70_000}).encode()
    r = await client.post("/api/telemetry", content=big, headers=bearer(tokens.ingest))
    assert r.status_code == 413
    assert r.json()["error"]["field"] == "body"

    async def chunks() -> Any:  # no Content-Length: the limit applies while reading
        for _ in range(100):
            yield b" " * 1024

    r = await client.post("/api/telemetry", content=chunks(), headers=bearer(tokens.ingest))
    assert r.status_code == 413
    batch = [{"type": "page_view"}] * 51
    r = await client.post("/api/telemetry", json=batch, headers=bearer(tokens.ingest))
    assert r.status_code == 413
    assert "at most 50" in r.json()["error"]["message"]
    assert await served.storage.count(served.config.database) == 0


INVALID: list[tuple[bytes, str, str]] = [
    (b'{"type": "page_view",', "body", "not valid JSON"),
    (b"\xff\xfe", "body", "not"),
    (b'"page_view"', "body", "found string"),
    (b"[]", "body", "no events"),
    (b'{"page": "/"}', "type", "required"),
    (b'{"type": null}', "type", "required"),
    (b'{"type": 7}', "type", "must be a string, found number"),
    (b'{"type": "page view"}', "type", "letters, digits"),
    (b'{"type": "page_view", "duration": "fast"}', "duration", "must be a number"),
    (b'{"type": "page_view", "duration": -1}', "duration", "from 0"),
    (b'{"type": "page_view", "duration": true}', "duration", "found boolean"),
    (b'{"type": "page_view", "id": "42"}', "id", "UUID"),
    (b'{"type": "page_view", "id": 42}', "id", "found number"),
    (b'{"type": "page_view", "timestamp": "yesterday"}', "timestamp", "ISO-8601"),
    (b'{"type": "page_view", "timestamp": "2026-11-23T10:00:00"}', "timestamp", "time zone"),
    (b'{"type": "page_view", "timestamp": "2001-01-01T00:00:00Z"}', "timestamp", "30 days"),
    (b'{"type": "page_view", "page": ["/"]}', "page", "found array"),
    (
        b'{"type": "page_view", "metadata": {"button": "submit"}}',
        "metadata.button",
        "must be a number",
    ),
    (b'{"type": "page_view", "metadata": []}', "metadata", "must be an object"),
    (b'{"type": "page_view", "status": 700}', "status", "HTTP status"),
    (b'{"type": "page_view", "error": "boom"}', "error", "must be an object"),
    (b'{"type": "page_view", "error": {"name": "x", "stack": "..."}}', "error", "only"),
    (b'{"type": "page_view", "email": "a@b.co"}', "email", "unknown field 'email'"),
    (b'{"type": "action"}', "action", "required for 'action'"),
    (b'{"type": "api_call", "duration": 5}', "endpoint", "required for 'api_call'"),
    (
        b'[{"type": "page_view"}, {"type": "page_view", "sessionId": 5}]',
        "[1].sessionId",
        "must be a string",
    ),
    (b'[{"type": "page_view"}, 3]', "[1]", "must be an object"),
]


async def test_invalid_requests_are_400_naming_the_field(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    for body, field, words in INVALID:
        r = await client.post("/api/telemetry", content=body, headers=bearer(tokens.ingest))
        assert r.status_code == 400, (body, r.text)
        error = r.json()["error"]
        assert error["field"] == field, body
        assert words in error["message"], body
    assert await served.storage.count(served.config.database) == 0


async def test_duplicate_event_ids_are_stored_once(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    event = {"id": str(uuid.uuid4()), "type": "action", "action": "save"}
    for _ in range(3):
        r = await client.post("/api/telemetry", json=event, headers=bearer(tokens.ingest))
        assert r.status_code == 200
    r = await client.post("/api/telemetry", json=[event, event], headers=bearer(tokens.ingest))
    assert r.status_code == 200
    events = await stored_events(served)
    assert [e["id"] for e in events] == [event["id"]]


async def test_a_canary_email_in_any_field_is_never_stored_raw(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens, storage_url: str
) -> None:
    canary = "Canary.Person+tag@example.org"
    fields: list[dict[str, Any]] = [
        {"type": "page_view", "page": f"/users/{canary}?email={canary}#{canary}"},
        {"type": "page_view", "page": f"https://{canary}:pw@example.com/a"},
        {"type": "api_call", "endpoint": f"/api/users/{canary}", "duration": 3},
        {"type": "page_view", "sessionId": canary},
        {"type": "page_view", "user": canary},
        {"type": "error", "error": {"name": "api_error", "message": f"no user {canary} found"}},
        {"type": "page_view", "platform": canary},
        {"type": "action", "action": canary},
        {"type": "page_view", "deployment": canary},
        {"type": "page_view", "metadata": {canary: 1}},
        {"type": canary},
    ]
    accepted = 0
    for event in fields:
        r = await client.post("/api/telemetry", json=event, headers=bearer(tokens.ingest))
        assert r.status_code in (200, 400), r.text
        assert canary not in r.text and canary.lower() not in r.text.lower()
        accepted += r.status_code == 200
    assert accepted >= 6
    everything = json.dumps(
        [
            await served.storage.list_records(info.name)
            for info in await served.storage.list_databases()
        ]
    ).lower()
    assert await served.storage.count(served.config.database) == accepted
    for variant in (canary.lower(), "canary.person", "canary%2eperson", "person%2btag"):
        assert variant not in everything


async def test_rate_limit_is_429_with_retry_after(
    client: httpx.AsyncClient, served: TelemetryServer, storage_url: str
) -> None:
    async with open_server_store(storage_url) as store:
        _, token = await store.create_token("ingest", "slow", rate_per_second=5)
    statuses = []
    for _ in range(3):
        r = await client.post(
            "/api/telemetry", json=[{"type": "page_view"}] * 2, headers=bearer(token)
        )
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "rate_limited"
            assert "5 events per second" in r.json()["error"]["message"]
    # 2 + 2 fit in one second's 5 events, the third batch does not - unless the requests
    # straddled a second boundary, in which case all three fit.
    assert statuses in ([200, 200, 429], [200, 200, 200])
    if statuses[-1] == 429:
        assert await served.storage.count(served.config.database) == 4
        await anyio.sleep(1.05)
        r = await client.post("/api/telemetry", json={"type": "page_view"}, headers=bearer(token))
        assert r.status_code == 200


async def test_rate_limit_holds_across_concurrent_requests(
    client: httpx.AsyncClient, served: TelemetryServer, storage_url: str
) -> None:
    async with open_server_store(storage_url) as store:
        _, token = await store.create_token("ingest", "burst", rate_per_second=20)
    statuses: list[int] = []
    started = datetime.now(UTC)

    async def send() -> None:
        r = await client.post("/api/telemetry", json={"type": "page_view"}, headers=bearer(token))
        statuses.append(r.status_code)

    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(send)
    seconds = int((datetime.now(UTC) - started).total_seconds()) + 2
    admitted = statuses.count(200)
    assert statuses.count(429) == 100 - admitted
    assert 20 <= admitted <= 20 * seconds
    assert await served.storage.count(served.config.database) == admitted


async def test_many_concurrent_requests_are_all_stored(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(200)]

    async def send(event_id: str) -> None:
        r = await client.post(
            "/api/telemetry",
            json={"id": event_id, "type": "page_view", "page": "/a"},
            headers=bearer(tokens.ingest),
        )
        assert r.status_code == 200

    async with anyio.create_task_group() as group:
        for event_id in ids:
            group.start_soon(send, event_id)
    assert sorted(e["id"] for e in await stored_events(served)) == sorted(ids)


async def test_cors_for_configured_origins_only(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    r = await client.options(
        "/api/telemetry",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    r = await client.options("/api/telemetry", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers

    event = {"type": "page_view", "page": "/"}
    r = await client.post(
        "/api/telemetry", json=event, headers={**bearer(tokens.ingest), "Origin": ORIGIN}
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    r = await client.post(
        "/api/telemetry",
        json=event,
        headers={**bearer(tokens.ingest), "Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers
    # The server's own pages are same-origin.
    r = await client.post(
        "/api/telemetry",
        json=event,
        headers={**bearer(tokens.ingest), "Origin": "http://testserver"},
    )
    assert r.status_code == 200
    assert await served.storage.count(served.config.database) == 2


@pytest.mark.parametrize("header", ["DNT", "Sec-GPC"])
async def test_do_not_track_stores_nothing(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens, header: str
) -> None:
    r = await client.post(
        "/api/telemetry",
        json={"type": "page_view"},
        headers={**bearer(tokens.ingest), header: "1"},
    )
    assert r.json() == {"success": True, "accepted": 0, "recorded": False}
    assert await served.storage.count(served.config.database) == 0


async def test_server_side_telemetry_switch_stores_nothing(
    storage_url: str, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRICKRUN_TELEMETRY_DISABLED", "1")
    async with create_app(make_config(storage_url)) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post(
                "/api/telemetry", json={"type": "page_view"}, headers=bearer(tokens.ingest)
            )
        assert r.json()["recorded"] is False
        assert await app.storage.count(app.config.database) == 0


async def test_timestamps_are_kept_and_old_days_land_on_their_day(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    when = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    r = await client.post(
        "/api/telemetry",
        json={"type": "page_view", "timestamp": when.isoformat().replace("+00:00", "Z")},
        headers=bearer(tokens.ingest),
    )
    assert r.status_code == 200
    (event,) = await stored_events(served)
    assert event["timestamp"] == when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    (record,) = await served.storage.list_records(served.config.database)
    assert record["created_at"] == event["timestamp"]


def test_stored_events_have_the_telemetry_event_shape() -> None:
    """The ingest path builds ``TelemetryEvent.to_data()``'s dict itself (the values are
    checked already); this keeps the two shapes from drifting apart."""
    from brickrun.server._ingest import to_stored
    from brickrun.telemetry import TelemetryEvent
    from brickrun.telemetry._privacy import PrivacySettings

    now = datetime.now(UTC)
    settings = PrivacySettings(install_secret=b"k" * 32, strict=True)
    full = {
        "type": "api_call",
        "endpoint": "/api/x",
        "duration": 1,
        "status": 200,
        "sessionId": "s",
        "user": "u",
        "platform": "web",
        "deployment": "d",
        "metadata": {"n": 1},
        "error": {"name": "api_error", "message": "m"},
        "page": "/p",
        "id": str(uuid.uuid4()),
        "timestamp": now.isoformat(),
    }
    stored = to_stored(full, "", now=now, settings=settings, ingest="tok_x")
    reference = TelemetryEvent(name="x", timestamp=now).to_data()
    assert set(stored.data) <= set(reference)
    assert set(reference) - set(stored.data) == {"private_metadata"}  # always empty: dropped


async def test_deeply_nested_json_is_400(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    r = await client.post(
        "/api/telemetry", content=b"[" * 30_000 + b"]" * 30_000, headers=bearer(tokens.ingest)
    )
    assert (r.status_code, r.json()["error"]["field"]) == (400, "body")


def _the_slow_way(
    event: dict[str, Any], now: datetime, settings: Any, ingest: str
) -> dict[str, Any]:
    """What ``to_stored`` must store, built as the module docs say: the event in
    ``TelemetryEvent.to_data()``'s shape through ``filter_event``, then the anonymised url."""
    from brickrun.telemetry import TelemetryEvent
    from brickrun.telemetry._privacy import anonymize_url, filter_event

    name, page, endpoint, action = (event.get(k) for k in ("type", "page", "endpoint", "action"))
    error: dict[str, Any] | None = None
    if "error" in event:
        error = {"name": event["error"].get("name") or "error", "business": False}
        if "message" in event["error"]:
            error["message"] = event["error"]["message"]
    elif name == "error":
        error = {"name": "error", "business": False}
    if name == "page_view" and page is not None:
        context = anonymize_url(page)
    elif name == "api_call" and endpoint is not None:
        context = anonymize_url(endpoint)
    elif name == "error" and error is not None:
        context = error["name"]
    elif action is not None:
        context = action
    else:
        context = anonymize_url(page) if page is not None else None
    source = {"ingest": ingest, "deploymentId": event.get("deployment")}
    metadata = dict(event.get("metadata", {}))
    if "status" in event:
        metadata["status"] = event["status"]
    raw = TelemetryEvent(
        id=event["id"],
        name=name,
        timestamp=now,
        source=source,
        user=event.get("user"),
        session_id=event.get("sessionId"),
        duration_ms=event.get("duration"),
        metadata=metadata,
        error=error,
        context=context,
    ).to_data()
    raw["platform"] = event.get("platform")
    data = filter_event(raw, settings)
    url = page if page is not None else endpoint
    if url is not None:
        data["url"] = anonymize_url(url)
    return data


CANARY = "Canary.Person+tag@example.org"
wire_texts = st.one_of(
    st.text(min_size=1, max_size=30),
    st.sampled_from(
        [CANARY, "/docs/42?x=1", "/a ?x", f"https://u:p@h.example/u/{CANARY}?t=1", "/dashboard"]
        + ["https://EX.example:443/p/abc-123-def-456#f", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"]
        + ["javascript:alert(1)", "4111 1111 1111 1111", "x", "/docs/[id]"]
    ),
)
wire_names = st.sampled_from(
    [
        "page_view",
        "action",
        "api_call",
        "error",
        "session_end",
        "a4111111111111111",
        "AKIAIOSFODNN7EXAMPLE",
    ]
)
wire_events = st.fixed_dictionaries(
    {"type": wire_names, "id": st.uuids().map(str)},
    optional={
        "page": wire_texts,
        "action": wire_names,
        "endpoint": wire_texts,
        "status": st.integers(100, 599),
        "duration": st.one_of(st.integers(0, 10**9), st.floats(0, 1e9)),
        "sessionId": wire_texts,
        "user": wire_texts,
        "platform": st.sampled_from(["web", "mobile", "a4111111111111111", "AKIAIOSFODNN7EXAMPLE"]),
        "deployment": wire_names,
        "metadata": st.dictionaries(
            st.sampled_from(["count", "primary", "email", "apiKey", "status", "tokens_used"]),
            st.one_of(st.booleans(), st.integers(-(10**15), 10**15), st.just(4222222222222)),
            max_size=4,
        ),
        "error": st.fixed_dictionaries({}, optional={"name": wire_names, "message": wire_texts}),
    },
).filter(
    lambda e: (
        (e["type"] != "action" or "action" in e) and (e["type"] != "api_call" or "endpoint" in e)
    )
)


@given(wire_events)
@example({"type": "page_view", "id": str(uuid.UUID(int=1)), "page": "/a ?x"})  # "/a%20"
@example({"type": "custom", "id": str(uuid.UUID(int=2)), "endpoint": "/api/x/42"})  # no context
@settings(max_examples=200, deadline=None)
def test_stored_data_is_the_privacy_filter_of_the_event(event: dict[str, Any]) -> None:
    """The ingest path checks fields once and skips the filter's own checks; what it stores
    must be exactly what the general filter makes of the same event, key order included."""
    from brickrun.server._ingest import to_stored
    from brickrun.telemetry._privacy import PrivacySettings

    now = datetime.now(UTC)
    settings_ = PrivacySettings(install_secret=b"k" * 32, strict=True)
    stored = to_stored(event, "", now=now, settings=settings_, ingest="tok_0123456789ab")
    expected = _the_slow_way(event, now, settings_, "tok_0123456789ab")
    assert list(stored.data.items()) == list(expected.items())
    assert CANARY.lower() not in json.dumps(stored.data).lower()
    # In a batch, pseudonyms and URLs come from the request's scratch the second time.
    scratch: dict[tuple[str, str], str] = {}
    for _ in range(2):
        again = to_stored(
            event, "", now=now, settings=settings_, ingest="tok_0123456789ab", scratch=scratch
        )
        assert list(again.data.items()) == list(expected.items())


async def test_an_event_over_the_record_limit_is_413_and_the_others_are_stored(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    from brickrun.storage import DatabaseLimits

    await served.storage.set_limits(served.config.database, DatabaseLimits(max_record_bytes=600))
    small = {"type": "page_view", "page": "/a"}
    big = {"type": "error", "error": {"name": "api_error", "message": "x" * 1000}}
    r = await client.post("/api/telemetry", json=[small, big], headers=bearer(tokens.ingest))
    assert r.status_code == 413
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("event_too_large", "[1]")
    assert "other 1 event(s) were stored" in error["message"]
    assert [e["name"] for e in await stored_events(served)] == ["page_view"]
    r = await client.post("/api/telemetry", json=big, headers=bearer(tokens.ingest))
    assert (r.status_code, r.json()["error"]["field"]) == (413, "body")
