"""``GET /api/telemetry`` and the report, admin sign-in, the dashboard page and OpenAPI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from brickrun.server import SESSION_COOKIE, TelemetryServer, open_server_store
from brickrun.telemetry._aggregates import aggregate_database, aggregates_database

from .conftest import Tokens, bearer

pytestmark = pytest.mark.anyio


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def seed(client: httpx.AsyncClient, token: str) -> None:
    """Today: 3 views of /dashboard, 1 of /profile/[id], 4 actions, 2 errors, API calls to
    /api/user (10..100 ms) and /api/feed (5 ms), 2 sessions of 1 and 3 minutes. Two days ago:
    one view of /dashboard in deployment web-prod."""
    now = datetime.now(UTC).replace(microsecond=0)
    events: list[dict[str, Any]] = []
    events += [{"type": "page_view", "page": "/dashboard", "deployment": "web-prod"}] * 3
    events += [{"type": "page_view", "page": "/profile/1234"}]
    events += [{"type": "action", "action": "save", "deployment": "web-prod"}] * 4
    events += [
        {"type": "error", "error": {"name": "api_error"}, "deployment": "web-prod"},
        {"type": "error", "error": {"name": "client_error", "message": "TypeError: x"}},
    ]
    events += [
        {"type": "api_call", "endpoint": "/api/user", "duration": ms, "status": 200}
        for ms in range(10, 101, 10)
    ]
    events += [{"type": "api_call", "endpoint": "/api/feed", "duration": 5, "status": 503}]
    events += [{"type": "session_start"}] * 2
    events += [
        {"type": "session_end", "duration": 60_000},
        {"type": "session_end", "duration": 180_000},
    ]
    events += [
        {
            "type": "page_view",
            "page": "/dashboard",
            "deployment": "web-prod",
            "timestamp": iso(now - timedelta(days=2)),
        }
    ]
    r = await client.post("/api/telemetry", json=events, headers=bearer(token))
    assert r.status_code == 200, r.text


async def test_summary_aggregates_and_period_in_the_seed_shape(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    await seed(client, tokens.ingest)
    r = await client.get("/api/telemetry?days=7", headers=bearer(tokens.admin))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"summary", "aggregates", "period"}
    assert body["summary"] == {
        "pageViews": 5,
        "actions": 4,
        "errors": 2,
        "apiCalls": 11,
        "sessions": 2,
        "avgApiLatency": round((550 + 5) / 11, 1),
        "errorRate": 50.0,  # errors per 100 actions, as the seed defines it
        "avgSessionLength": 120_000,
    }
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    period = body["period"]
    assert period["days"] == 7
    assert period["endDate"] == f"{today}T23:59:59.999Z"
    start = (datetime.now(UTC) - timedelta(days=6)).strftime("%Y-%m-%d")
    assert period["startDate"] == f"{start}T00:00:00.000Z"
    items = {(a["date"], a["type"], a["context"]): a for a in body["aggregates"]}
    user = items[(today, "api_call", "/api/user")]
    assert user == {
        "date": today,
        "type": "api_call",
        "context": "/api/user",
        "count": 10,
        "errors": 0,
        "errorRate": 0.0,
        "avgDuration": 55.0,
        "p50Duration": 50.0,
        "p95Duration": 100.0,
        "p99Duration": 100.0,
    }
    views = items[(today, "page_view", "/dashboard")]
    assert (views["count"], views["avgDuration"], views["p50Duration"]) == (3, None, None)
    assert items[(today, "error", "api_error")]["errorRate"] == 100.0
    assert sum(a["count"] for a in body["aggregates"] if a["date"] != today) == 1


async def test_type_filter_and_days(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await seed(client, tokens.ingest)
    r = await client.get("/api/telemetry?days=1&type=page_view", headers=bearer(tokens.admin))
    body = r.json()
    assert {a["type"] for a in body["aggregates"]} == {"page_view"}
    assert sum(a["count"] for a in body["aggregates"]) == 4  # today only
    assert body["summary"]["actions"] == 4  # the summary is not filtered
    assert body["period"]["days"] == 1


async def test_bad_query_parameters_are_400_naming_them(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    for query, field in [
        ("days=0", "days"),
        ("days=abc", "days"),
        ("days=400", "days"),
        ("type=a%20b", "type"),
    ]:
        r = await client.get(f"/api/telemetry?{query}", headers=bearer(tokens.admin))
        assert r.status_code == 400, query
        assert r.json()["error"]["field"] == field, query


async def test_query_api_needs_an_admin(client: httpx.AsyncClient, tokens: Tokens) -> None:
    for path in ("/api/telemetry", "/api/telemetry/report"):
        for headers in (
            {},
            bearer(tokens.ingest),
            bearer(tokens.revoked),
            bearer("bra_nope"),
            {"Cookie": "brickrun_admin=forged"},
        ):
            r = await client.get(path, headers=headers)
            assert r.status_code == 401, (path, headers)
            assert "summary" not in r.text and "topPages" not in r.text


async def test_report_breakdowns(client: httpx.AsyncClient, tokens: Tokens) -> None:
    await seed(client, tokens.ingest)
    r = await client.get("/api/telemetry/report?days=7", headers=bearer(tokens.admin))
    body = r.json()
    assert body["topPages"] == [
        {"page": "/dashboard", "views": 4},
        {"page": "/profile/[id]", "views": 1},
    ]
    user, feed = body["endpoints"]
    assert (user["endpoint"], user["calls"], user["errors"]) == ("/api/user", 10, 0)
    assert (user["p50Ms"], user["p95Ms"], user["p99Ms"], user["avgMs"]) == (50, 100, 100, 55)
    assert (feed["endpoint"], feed["calls"], feed["errors"]) == ("/api/feed", 1, 1)
    assert body["errors"] == [
        {"name": "api_error", "count": 1},
        {"name": "client_error", "count": 1},
    ]
    assert len(body["daily"]) == 7
    assert body["daily"][-1]["pageViews"] == 4 and body["daily"][-3]["pageViews"] == 1
    assert body["deployments"] == [{"deployment": "web-prod", "events": 8, "errors": 1}]


async def test_stored_aggregates_fill_days_whose_events_are_gone(
    client: httpx.AsyncClient, served: TelemetryServer, tokens: Tokens
) -> None:
    await seed(client, tokens.ingest)
    await aggregate_database(served.storage, served.config.database)
    # Retention deleted the old day's raw event; its stored aggregate still counts.
    for record in await served.storage.list_records(served.config.database):
        if record["data"]["timestamp"][:10] != datetime.now(UTC).strftime("%Y-%m-%d"):
            await served.storage.delete(served.config.database, record["id"])
    assert await served.storage.count(aggregates_database(served.config.database)) > 0
    r = await client.get("/api/telemetry?days=7", headers=bearer(tokens.admin))
    assert r.json()["summary"]["pageViews"] == 5


async def test_admin_sign_in_dashboard_and_sign_out(
    client: httpx.AsyncClient, storage_url: str, tokens: Tokens
) -> None:
    r = await client.get("/admin/telemetry")
    assert (r.status_code, r.headers["location"]) == (303, "/admin/login")
    r = await client.get("/admin/login")
    assert r.status_code == 200 and 'name="token"' in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]

    for wrong in ("", "bra_nope", tokens.ingest, tokens.revoked):
        r = await client.post("/admin/login", data={"token": wrong})
        assert r.status_code == 401
        assert "not an active admin token" in r.text
        assert SESSION_COOKIE not in r.cookies

    r = await client.post(
        "/admin/login", data={"token": tokens.admin}, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403

    r = await client.post("/admin/login", data={"token": tokens.admin})
    assert (r.status_code, r.headers["location"]) == (303, "/admin/telemetry")
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    r = await client.get("/admin/telemetry")
    assert r.status_code == 200
    assert '<script src="/static/admin/dashboard.js"' in r.text
    assert "http" not in r.text.split("<body")[1].replace("http-equiv", "")  # no CDN
    assert (await client.get("/api/telemetry")).status_code == 200  # the session suffices

    r = await client.post("/admin/logout")
    assert (r.status_code, r.headers["location"]) == (303, "/admin/login")
    assert (await client.get("/api/telemetry")).status_code == 401

    # Revoking the admin token ends its sessions too.
    await client.post("/admin/login", data={"token": tokens.admin})
    assert (await client.get("/api/telemetry")).status_code == 200
    async with open_server_store(storage_url) as store:
        (admin,) = [t for t in await store.list_tokens() if t.kind == "admin"]
        assert await store.revoke_token(admin.id)
    assert (await client.get("/api/telemetry")).status_code == 401
    assert (await client.get("/admin/telemetry")).status_code == 303


async def test_static_client_dashboard_assets_and_openapi(client: httpx.AsyncClient) -> None:
    js = await client.get("/static/brickrun.js")
    assert js.status_code == 200 and "sendBeacon" in js.text and "doNotTrack" in js.text
    assert "javascript" in js.headers["content-type"]
    for asset in ("admin/dashboard.js", "admin/dashboard.css"):
        body = (await client.get(f"/static/{asset}")).text
        assert "http://" not in body.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in body
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]["/api/telemetry"]) == {"get", "post"}
    assert spec["components"]["schemas"]["Event"]["properties"]["duration"]["minimum"] == 0
    for path, operations in spec["paths"].items():
        if "get" in operations:
            r = await client.get(path)
            assert r.status_code in (200, 303, 401), path
