"""End to end in Debian's Chromium, driven by Playwright (never a downloaded browser).

A real ``brickrun serve`` process and a demo site on another origin (so CORS and beacons are
exercised as on a customer's site) run on 127.0.0.1. The demo includes ``/static/brickrun.js``;
the browser visits it, clicks, calls an API, throws an error and navigates; the events arrive
through the API; then the browser signs in to the dashboard, which must show the expected
counts and a chart, and the dashboard is saved as ``docs/dashboard.png`` (linked from the
README). A second visit with Do-Not-Track on must send nothing. Every wait is bounded.
"""

from __future__ import annotations

import functools
import http.server
import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import ServeProcess, create_token

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "dashboard.png"
CANARY = "canary.visitor@example.com"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 10_000

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<script src="{api}/static/brickrun.js" data-token="{token}" data-deployment="demo-web"></script>
</head><body>
<h1>{title}</h1>
{body}
</body></html>
"""
INDEX_BODY = """
<button id="signup" data-track="signup_click">Sign up</button>
<button id="load" data-track="load_data">Load data</button>
<button id="break">Break something</button>
<button id="spa">Open item</button>
<a id="about" href="/about.html?ref={canary}">About</a>
<p id="loaded"></p>
<script>
  document.getElementById("load").addEventListener("click", function () {{
    fetch("/api/items.json").then(function (r) {{ return r.json(); }}).then(function (d) {{
      document.getElementById("loaded").textContent = "loaded " + d.items.length;
    }});
  }});
  document.getElementById("break").addEventListener("click", function () {{
    setTimeout(function () {{ throw new TypeError("demo failure for {canary}"); }}, 0);
  }});
  document.getElementById("spa").addEventListener("click", function () {{
    history.pushState(null, "", "/app/items/12345");
  }});
</script>
"""
ABOUT_BODY = '<button id="contact" data-track="contact_click">Contact</button>'


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def demo_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static site on its own port (another origin than the API); pages written later."""
    root = tmp_path / "site"
    (root / "api").mkdir(parents=True)
    (root / "api" / "items.json").write_text(json.dumps({"items": [1, 2, 3]}))
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def history(token: str, base: str) -> dict[str, int]:
    """A week of earlier traffic (fixed seed) sent through the API, so that the dashboard has
    something to chart; returns its summary counts."""
    rng = random.Random(6)
    now = datetime.now(UTC)
    events: list[dict[str, Any]] = []
    pages = ["/dashboard", "/profile/[id]", "/flow/[id]", "/friends", "/settings"]
    endpoints = {"/api/user": 98, "/api/feed": 145, "/api/messages": 203}
    for day in range(6, 0, -1):
        at = (now - timedelta(days=day)).replace(hour=12).isoformat()
        n = 40 + rng.randrange(30)
        for i in range(n):
            events.append(
                {
                    "type": "page_view",
                    "page": rng.choice(pages),
                    "timestamp": at,
                    "deployment": rng.choice(["web-prod", "web-beta"]),
                }
            )
            if i % 2 == 0:
                events.append(
                    {
                        "type": "action",
                        "action": rng.choice(["save", "share", "like"]),
                        "timestamp": at,
                        "deployment": "web-prod",
                    }
                )
            endpoint = rng.choice(list(endpoints))
            events.append(
                {
                    "type": "api_call",
                    "endpoint": endpoint,
                    "timestamp": at,
                    "duration": round(rng.expovariate(1 / endpoints[endpoint]), 1),
                    "status": 200,
                }
            )
        for kind in ["api_error"] * rng.randrange(1, 4) + ["client_error"] * rng.randrange(2):
            events.append(
                {
                    "type": "error",
                    "error": {"name": kind},
                    "timestamp": at,
                    "deployment": "web-beta",
                }
            )
        for _ in range(5 + rng.randrange(5)):
            events.append({"type": "session_start", "timestamp": at})
            events.append(
                {"type": "session_end", "timestamp": at, "duration": rng.randrange(60_000, 900_000)}
            )
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        for i in range(0, len(events), 500):
            r = client.post("/api/telemetry", json=events[i : i + 500], timeout=30)
            assert r.status_code == 200, r.text
    count = {"page_view": 0, "action": 0, "api_call": 0, "error": 0, "session_start": 0}
    for event in events:
        if event["type"] in count:
            count[event["type"]] += 1
    return count


def test_browser_client_and_dashboard_end_to_end(
    chromium_path: str,
    tmp_path: Path,
    demo_site: tuple[str, Path],
    serve_processes: list[ServeProcess],
) -> None:
    from playwright.sync_api import sync_playwright

    demo, root = demo_site
    db = f"sqlite:///{tmp_path}/telemetry.sqlite"
    # A rate well above the seeded history (about 1,000 events in 500-event requests).
    ingest = create_token(db, "ingest", "--rate", "100000")["token"]
    admin = create_token(db, "admin")["token"]
    api = ServeProcess(db, "--cors-origin", demo)
    serve_processes.append(api)
    api.wait_ready()
    for name, title, body in (
        ("index.html", "Demo shop", INDEX_BODY.format(canary=CANARY)),
        ("about.html", "About us", ABOUT_BODY),
    ):
        (root / name).write_text(PAGE.format(title=title, api=api.base, token=ingest, body=body))
    before = history(ingest, api.base)

    def summary() -> dict[str, Any]:
        r = httpx.get(
            api.base + "/api/telemetry?days=7", headers={"Authorization": f"Bearer {admin}"}
        )
        assert r.status_code == 200
        body: dict[str, Any] = r.json()["summary"]
        return body

    expected = {
        "pageViews": before["page_view"] + 3,  # index, the pushState item, about
        "actions": before["action"] + 4,  # sign up twice, load data, contact
        "apiCalls": before["api_call"] + 1,  # /api/items.json
        "errors": before["error"] + 1,  # the thrown TypeError
        "sessions": before["session_start"] + 1,
    }

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_FLAGS, timeout=30_000
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{demo}/index.html?email={CANARY}#token=secret-fragment")
            page.wait_for_function("window.brickrun && window.brickrun.enabled === true")
            page.click("#signup")
            page.click("#signup")
            page.click("#load")
            page.wait_for_function("document.getElementById('loaded').textContent !== ''")
            page.click("#break")
            page.click("#spa")
            page.wait_for_url("**/app/items/12345")
            page.click("#about")  # the first page's events leave with sendBeacon on pagehide
            page.wait_for_url("**/about.html*")
            page.wait_for_function("window.brickrun && window.brickrun.enabled === true")
            page.click("#contact")
            page.goto("about:blank")  # pagehide again: the last batch and session_end

            deadline = time.monotonic() + 15
            got = summary()
            while time.monotonic() < deadline and any(got[k] < v for k, v in expected.items()):
                time.sleep(0.2)
                got = summary()
            assert {k: got[k] for k in expected} == expected
            assert got["avgSessionLength"] is not None

            stored = httpx.get(
                api.base + "/api/telemetry/report?days=1",
                headers={"Authorization": f"Bearer {admin}"},
            ).json()
            pages = {row["page"] for row in stored["topPages"]}
            assert {"/index.html", "/app/items/[id]", "/about.html"} <= pages
            assert {"name": "client_error", "count": 1} in stored["errors"]
            assert any(row["deployment"] == "demo-web" for row in stored["deployments"])
            raw = (tmp_path / "telemetry.sqlite").read_bytes() + (
                tmp_path / "telemetry.sqlite-wal"
            ).read_bytes()
            for secret in (CANARY.encode(), b"secret-fragment", b"email=", b"12345"):
                assert secret not in raw

            # The dashboard, signed in, in the same browser.
            dash = context.new_page()
            dash.set_default_timeout(WAIT_MS)
            dash.goto(api.base + "/admin/telemetry")
            dash.wait_for_url("**/admin/login")
            dash.fill("#token", admin)
            dash.click("#sign-in")
            dash.wait_for_url("**/admin/telemetry")
            dash.wait_for_selector("body[data-ready='true']")
            shown = {key: dash.text_content(f"#summary-{key}") for key in expected}
            assert shown == {k: f"{v:,}" for k, v in expected.items()}
            bars = dash.locator("#daily-svg rect[data-series='pageViews']")
            assert bars.count() == 7
            today = datetime.now(UTC).strftime("%Y-%m-%d")
            assert (
                dash.get_attribute(
                    f"#daily-svg rect[data-series='pageViews'][data-date='{today}']", "data-value"
                )
                == "3"
            )
            assert "/api/user" in (dash.text_content("#endpoints") or "")
            assert "client_error" in (dash.text_content("#error-distribution") or "")
            assert "demo-web" in (dash.text_content("#deployments") or "")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            dash.screenshot(path=str(SCREENSHOT), full_page=True)

            # Changing the period reloads the data for it.
            dash.select_option("#days", "1")
            dash.wait_for_selector("body[data-ready='true']")
            assert dash.text_content("#summary-pageViews") == "3"
            context.close()

            # Do-Not-Track: the client sends nothing at all.
            quiet = browser.new_context()
            quiet.add_init_script(
                "Object.defineProperty(Navigator.prototype, 'doNotTrack', "
                "{get: function () { return '1'; }});"
            )
            sent: list[str] = []
            quiet.on(
                "request",
                lambda request: sent.append(request.url) if api.base in request.url else None,
            )
            page = quiet.new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{demo}/index.html")
            page.wait_for_function("window.brickrun && window.brickrun.enabled === false")
            page.click("#signup")
            page.click("#about")
            page.wait_for_url("**/about.html*")
            page.goto("about:blank")
            quiet.close()
            assert [url for url in sent if "/api/telemetry" in url] == []
            assert summary()["actions"] == expected["actions"]
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
