"""``@pixiebrix/http`` against a real local server (and ``httpx.MockTransport`` for redirects):
requests, parsing, errors with status and URL, timeouts, and integration auth whose secret
never shows up in traces, logs or error messages."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from brickrun import BusinessError, PropError, RunError, Runtime, TraceRecord
from brickrun._definitions import compile_text
from brickrun._integrations import Integrations
from brickrun._trace import format_trace
from brickrun.bricks.http import CLIENT_ATTRIBUTE, http_request

from .test_integrations import ACME_SERVICE, CANARY, service

pytestmark = pytest.mark.anyio


# -- a local server --------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    received: list[Received] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


class Handler(BaseHTTPRequestHandler):
    """Routes: /echo (method, query, body, X-Test header), /text, /json-as-text, /empty,
    /status/<code>, /slow, /auth/... (200 only with the canary as bearer token and ``key``)."""

    server: Any
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = parse_qs(parts.query)
        record: Server = self.server.record
        record.received.append(
            Received(self.command, parts.path, query, dict(self.headers.items()), body)
        )
        path = parts.path
        if path == "/echo":
            echo = {
                "method": self.command,
                "query": {k: v[0] for k, v in query.items()},
                "test": self.headers.get("X-Test"),
                "contentType": self.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
            }
            self.reply(200, json.dumps(echo).encode())
        elif path == "/text":
            self.reply(200, b"hello, world", "text/plain; charset=utf-8")
        elif path == "/json-as-text":
            self.reply(200, b'{"a": [1, 2]}', "text/plain")
        elif path == "/empty":
            self.reply(200, b"", "text/plain")
        elif path.startswith("/status/"):
            self.reply(int(path.rsplit("/", 1)[1]), b'{"detail": "server says no"}')
        elif path == "/slow":
            record.stop.wait(3)
            with contextlib.suppress(OSError):  # the client gave up long ago
                self.reply(200, b"{}")
        elif path.startswith("/auth/"):
            authorized = (
                self.headers.get("Authorization") == f"Bearer {CANARY}"
                and query.get("key") == [CANARY]
                and path == "/auth/items"
            )
            # Never echo credentials back: what the server says must be safe to trace.
            answer = {"authorized": authorized, "limit": query.get("limit", [None])[0]}
            self.reply(200 if authorized else 401, json.dumps(answer).encode())
        else:
            self.reply(404, b"{}")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A threaded HTTP server on 127.0.0.1 (port chosen by the OS) for this module."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    record = Server(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.record = record  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        record.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _fresh(server: Server) -> None:
    server.received.clear()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def http_runtime(
    integrations: Integrations | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Runtime]:
    """A started runtime that knows ``@pixiebrix/http``, sends through ``transport`` (default:
    the network, i.e. the local server) and uses ``integrations``."""
    async with Runtime(entry_points=False) as runtime:
        if runtime.registry.find(http_request.id) is not http_request:
            runtime.register(http_request)
        runtime.http_transport = transport  # type: ignore[attr-defined]
        if integrations is not None:
            runtime.integrations = integrations  # type: ignore[attr-defined]
            runtime.integration = integrations.context_value  # type: ignore[method-assign]
        try:
            yield runtime
        finally:
            client = getattr(runtime, CLIENT_ATTRIBUTE, None)
            if client is not None:
                await client.aclose()


async def call(runtime: Runtime, config: dict[str, Any], **kwargs: Any) -> Any:
    return (await runtime.run_brick("@pixiebrix/http", config, **kwargs)).output


async def failure(runtime: Runtime, config: dict[str, Any]) -> RunError:
    with pytest.raises(RunError) as info:
        await call(runtime, config)
    return info.value


# -- requests and responses ------------------------------------------------------------------


async def test_get_with_params_and_headers(server: Server) -> None:
    async with http_runtime() as runtime:
        out = await call(
            runtime,
            {
                "url": f"{server.url}/echo?fixed=1",
                "method": "get",
                "params": {"q": "a b", "n": 2.0, "on": True, "x": 1.5},
                "headers": {"X-Test": "yes"},
            },
        )
    assert out == {
        "method": "GET",
        "query": {"fixed": "1", "q": "a b", "n": "2", "on": "true", "x": "1.5"},
        "test": "yes",
        "contentType": None,
        "body": None,
    }


async def test_method_defaults_to_get_and_is_case_insensitive(server: Server) -> None:
    async with http_runtime() as runtime:
        assert (await call(runtime, {"url": f"{server.url}/echo"}))["method"] == "GET"
        assert (await call(runtime, {"url": f"{server.url}/echo", "method": "PUT"}))[
            "method"
        ] == "PUT"
        result = await runtime.run_brick("@pixiebrix/http", {"url": f"{server.url}/echo"})
    (enter,) = [r for r in result.trace if r.event == "enter"]
    assert enter.data["method"] == "get" and enter.data["timeoutMillis"] == 30000


async def test_post_sends_data_as_json(server: Server) -> None:
    data = {"name": "Ada", "tags": ["x"], "n": None}
    async with http_runtime() as runtime:
        out = await call(runtime, {"url": f"{server.url}/echo", "method": "post", "data": data})
    assert out["method"] == "POST" and out["body"] == data
    assert out["contentType"] == "application/json"


async def test_get_sends_no_body(server: Server) -> None:
    async with http_runtime() as runtime:
        out = await call(runtime, {"url": f"{server.url}/echo", "data": {"a": 1}})
    assert out["body"] is None and server.received[-1].body == b""


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/text", "hello, world"), ("/json-as-text", {"a": [1, 2]}), ("/empty", "")],
)
async def test_body_is_json_when_it_parses_else_text(
    server: Server, path: str, expected: Any
) -> None:
    async with http_runtime() as runtime:
        assert await call(runtime, {"url": server.url + path}) == expected


async def test_connections_are_reused_through_one_client_per_runtime(server: Server) -> None:
    async with http_runtime() as runtime:
        await call(runtime, {"url": f"{server.url}/echo"})
        client = getattr(runtime, "http_client", None) or getattr(runtime, CLIENT_ATTRIBUTE)
        await call(runtime, {"url": f"{server.url}/echo"})
        assert (getattr(runtime, "http_client", None) or getattr(runtime, CLIENT_ATTRIBUTE)) is (
            client
        )


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [(404, "Not Found"), (500, "Internal Server Error"), (599, "unknown status")],
)
async def test_non_2xx_is_a_business_error_with_status_method_and_url(
    server: Server, code: int, reason: str
) -> None:
    async with http_runtime() as runtime:
        error = await failure(
            runtime,
            {"url": f"{server.url}/status/{code}?token=abc#frag", "method": "delete"},
        )
    assert isinstance(error, BusinessError)
    assert error.message == (
        f"Request failed with status code {code} ({reason}): DELETE {server.url}/status/{code}"
    )
    assert error.brick_id == "@pixiebrix/http"
    assert "server says no" not in str(error)  # response bodies stay out of messages


async def test_timeout_gives_a_clear_error_in_about_the_configured_time(server: Server) -> None:
    async with http_runtime() as runtime:
        started = time.perf_counter()
        error = await failure(runtime, {"url": f"{server.url}/slow", "timeoutMillis": 300})
        took = time.perf_counter() - started
    assert isinstance(error, BusinessError)
    assert error.message == f"Request timed out after 0.3 s: GET {server.url}/slow"
    assert 0.25 < took < 2


async def test_connection_refused() -> None:
    port = closed_port()
    async with http_runtime() as runtime:
        error = await failure(runtime, {"url": f"http://user:pw@127.0.0.1:{port}/x?q=secret"})
    assert isinstance(error, BusinessError)
    assert error.message == (
        f"Request failed: could not connect to http://127.0.0.1:{port}/x (connection refused)"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://files.example/a.txt", "url: unsupported URL scheme 'ftp'; expected http or https"),
        ("file:///etc/passwd", "url: unsupported URL scheme 'file'; expected http or https"),
        ("javascript:alert(1)", "url: unsupported URL scheme 'javascript'; expected http or https"),
        (
            "items?key=abc",
            "url: expected an absolute http or https URL (or a URL relative to an "
            "integration's baseURL), found the relative URL 'items'",
        ),
    ],
)
async def test_unusable_urls_are_prop_errors(url: str, message: str) -> None:
    async with http_runtime() as runtime:
        error = await failure(runtime, {"url": url})
    assert isinstance(error, PropError) and error.message == message


async def test_bad_header_is_named_but_its_value_is_not_shown() -> None:
    async with http_runtime() as runtime:
        error = await failure(
            runtime, {"url": "http://127.0.0.1:1/", "headers": {"X-Token": f"{CANARY}\r\nX: y"}}
        )
    assert isinstance(error, PropError)
    assert error.message == (
        "headers: the value of header 'X-Token' must be ASCII text without line breaks"
    )


async def test_invalid_input_is_an_input_validation_error() -> None:
    async with http_runtime() as runtime:
        error = await failure(runtime, {"url": "http://x.example", "method": "fetch"})
    assert error.name == "InputValidationError" and "method" in error.message


# -- redirects (MockTransport) ---------------------------------------------------------------


def redirecting(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/start":
        return httpx.Response(302, headers={"Location": "/end"})
    if request.url.path == "/away":
        return httpx.Response(302, headers={"Location": "https://elsewhere.example/end"})
    if request.url.path == "/loop":
        return httpx.Response(302, headers={"Location": "/loop"})
    return httpx.Response(200, json={"at": str(request.url.copy_with(query=None))})


async def test_redirects_are_followed() -> None:
    async with http_runtime(transport=httpx.MockTransport(redirecting)) as runtime:
        assert await call(runtime, {"url": "https://api.example/start"}) == {
            "at": "https://api.example/end"
        }
        assert await call(runtime, {"url": "https://api.example/away"}) == {
            "at": "https://elsewhere.example/end"
        }
        error = await failure(runtime, {"url": "https://api.example/loop"})
    assert error.message == "Request failed: more than 10 redirects: GET https://api.example/loop"


# -- integrations: auth reaches the server, the secret reaches nothing else ------------------


def acme(base_url: str, *, auth_base: str = "{{ baseURL }}") -> Integrations:
    """``@acme/api`` configured with the canary key; ``auth_base`` is its baseURL template."""
    found = Integrations({"@acme/api": {"apiKey": CANARY, "baseURL": base_url}}, environ={})
    text = ACME_SERVICE.replace('baseURL: "{{ baseURL }}"', f'baseURL: "{auth_base}"')
    assert text != ACME_SERVICE or auth_base == "{{ baseURL }}"
    found.add_service(service(text))
    return found


PIPELINE = """\
apiVersion: v3
kind: component
metadata: {id: "@test/acme-items", name: Acme items}
inputSchema: {}
pipeline:
  - id: "@pixiebrix/http"
    outputKey: response
    config:
      service: !var "@acme"
      url: !var "@input.url"
      params: {limit: 2}
  - id: "@pixiebrix/identity"
    config: {seen: !var "@response"}
"""


async def run_with_acme(
    runtime: Runtime, found: Integrations, url: str
) -> tuple[Any, list[TraceRecord], list[TraceRecord], BaseException | None]:
    """Run PIPELINE with ``@acme`` bound; returns output, trace, subscribed records, error."""
    result = compile_text(PIPELINE, "acme-items.yaml")
    assert not result.errors
    pipeline = result.definitions[0].pipeline  # type: ignore[attr-defined]
    seen: list[TraceRecord] = []
    unsubscribe = runtime.subscribe(seen.append)
    run = runtime.new_run()
    context = {"@input": {"url": url}, "@options": {}, "@acme": found.context_value("@acme/api")}
    output: Any = None
    error: BaseException | None = None
    try:
        output = await runtime.run_pipeline(pipeline, context, run)
    except RunError as exc:
        error = exc
    finally:
        unsubscribe()
    return output, run.records(), seen, error


def assert_no_canary(
    records: list[TraceRecord], caplog: pytest.LogCaptureFixture, *texts: str
) -> None:
    dumped = json.dumps([r.to_dict() for r in records])
    assert CANARY not in dumped and CANARY not in format_trace(records)
    assert CANARY not in json.dumps([r.data for r in records], default=str)
    for record in caplog.records:
        assert CANARY not in record.getMessage(), record.getMessage()
    assert CANARY not in caplog.text
    for text in texts:
        assert CANARY not in text, text


async def test_integration_auth_reaches_the_server_and_nothing_else(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    found = acme(f"{server.url}/auth")
    async with http_runtime(found) as runtime:
        output, trace, seen, error = await run_with_acme(runtime, found, "items")
    assert error is None
    assert output == {"seen": {"authorized": True, "limit": "2"}}
    (received,) = server.received
    assert received.path == "/auth/items"
    assert received.headers["Authorization"] == f"Bearer {CANARY}"
    assert received.query == {"limit": ["2"], "key": [CANARY]}
    assert [r.event for r in trace] == ["enter", "exit", "enter", "exit"]
    assert trace[0].to_dict()["data"]["service"]["__service"] == "***"
    assert_no_canary(trace + seen, caplog)
    # httpx's own request line was logged, without the query string.
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines == [f'HTTP Request: GET {server.url}/auth/items "HTTP/1.1 200 OK"']


async def test_401_with_an_integration_leaks_nothing(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    found = acme(f"{server.url}/auth")
    async with http_runtime(found) as runtime:
        _, trace, seen, error = await run_with_acme(runtime, found, "forbidden")
    assert isinstance(error, BusinessError)
    assert error.message == (
        f"Request failed with status code 401 (Unauthorized): GET {server.url}/auth/forbidden"
    )
    assert server.received[0].headers["Authorization"] == f"Bearer {CANARY}"
    assert_no_canary(trace + seen, caplog, str(error), repr(error), json.dumps(error.to_dict()))


async def test_connection_failure_with_an_integration_leaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = closed_port()
    # A secret in the base URL's path (webhook style) is masked too.
    found = acme(f"http://127.0.0.1:{port}", auth_base="{{ baseURL }}/hooks/{{ apiKey }}")
    async with http_runtime(found) as runtime:
        _, trace, seen, error = await run_with_acme(runtime, found, "items")
    assert isinstance(error, BusinessError)
    assert error.message == (
        f"Request failed: could not connect to http://127.0.0.1:{port}/hooks/***/items "
        "(connection refused)"
    )
    assert_no_canary(trace + seen, caplog, str(error), json.dumps(error.to_dict()))


async def test_integration_refuses_a_url_outside_its_base(server: Server) -> None:
    found = acme(f"{server.url}/auth")
    async with http_runtime(found) as runtime:
        _, _, _, error = await run_with_acme(runtime, found, f"{server.url}/echo")
    assert isinstance(error, PropError)
    assert f"url {server.url}/echo is outside the base URL of integration @acme/api" in str(error)
    assert server.received == []


async def test_integration_redirect_to_another_origin_is_refused() -> None:
    found = acme("https://api.example")
    async with http_runtime(found, httpx.MockTransport(redirecting)) as runtime:
        _, _, _, error = await run_with_acme(runtime, found, "away")
        same_origin, _, _, _ = await run_with_acme(runtime, found, "start")
    assert isinstance(error, BusinessError)
    assert error.message == (
        "Request failed: redirected to another origin, where the integration's credentials "
        "are not sent: GET https://api.example/away"
    )
    assert same_origin == {"seen": {"at": "https://api.example/end"}}


async def test_service_without_credentials_is_refused() -> None:
    found = acme("https://api.example")
    async with http_runtime(found) as runtime:
        error = await failure(
            runtime, {"url": "https://api.example/x", "service": {"__service": {"id": "@acme/api"}}}
        )
    assert isinstance(error, PropError)
    assert "integration @acme/api value is not a configured integration" in error.message


async def test_log_filter_leaves_other_httpx_requests_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    async with http_runtime(transport=httpx.MockTransport(redirecting)) as runtime:
        await call(runtime, {"url": "https://api.example/end?mine=1"})
    transport = httpx.MockTransport(redirecting)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("https://host.example/end?theirs=1")
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines[0].startswith("HTTP Request: GET https://api.example/end ")
    assert lines[1].startswith("HTTP Request: GET https://host.example/end?theirs=1 ")
