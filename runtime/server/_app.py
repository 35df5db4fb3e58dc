"""The ASGI application: the ingest fast path, the query API, the dashboard and static files.

``POST /api/telemetry`` (and its CORS preflight) is served by a small ASGI handler in front of
Starlette: it is the hot path, and the request/response objects, routing and middleware cost
more than the work itself. Everything else is a Starlette app.

Every request is answered from the store alone (tokens, sessions and rate windows included),
so any number of processes can serve one store. Logs name requests by status and path only:
never a body, a token, a cookie or a query string.
"""

from __future__ import annotations

import gc
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from html import escape
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qsl

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from ..errors import RecordTooLargeError, StorageError
from ..storage import StorageBackend, open_storage
from ..telemetry import telemetry_disabled
from ..telemetry._privacy import PrivacySettings, load_install_secret
from ._config import ServerConfig
from ._ingest import IngestError, StoredEvent, parse_body, to_stored
from ._openapi import openapi_document
from ._query import MAX_DAYS, load_period, report, telemetry_response
from ._store import ServerStore, TokenInfo, Verdict, open_server_store

__all__ = ["SESSION_COOKIE", "TelemetryServer", "create_app"]

log = logging.getLogger("brickrun.server")

SESSION_COOKIE: Final = "brickrun_admin"
INGEST_PATH: Final = "/api/telemetry"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]{0,63}\Z")
_JSON: Final = (b"content-type", b"application/json")
_NO_STORE: Final = (b"cache-control", b"no-store")
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # "no-referrer" would make browsers send "Origin: null" on the sign-in form.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_VERDICT_STATUS: Final = {
    Verdict.UNKNOWN: (401, "invalid_token", "the token is not valid"),
    Verdict.REVOKED: (401, "revoked_token", "the token has been revoked"),
    Verdict.WRONG_KIND: (403, "forbidden", "this token may not send events (use an ingest token)"),
}


def _static(name: str) -> str:
    return resources.files("brickrun.server").joinpath("static", name).read_text("utf-8")


class _Headers:
    """The few request headers the ingest path reads, from the raw ASGI list."""

    __slots__ = ("authorization", "content_length", "dnt", "host", "origin")

    def __init__(self, scope: Scope) -> None:
        self.authorization = self.origin = self.host = self.content_length = b""
        self.dnt = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                self.authorization = value
            elif name == b"content-length":
                self.content_length = value
            elif name == b"origin":
                self.origin = value
            elif name == b"host":
                self.host = value
            elif name in (b"dnt", b"sec-gpc"):
                self.dnt = self.dnt or value.strip() == b"1"


class TelemetryServer:
    """The telemetry service as one ASGI application (see :func:`create_app`).

    Serving needs the store open: ASGI servers do that through the lifespan protocol; tests
    driving it through ``httpx.ASGITransport`` (which sends no lifespan events) use ``async
    with server:`` instead.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._origins = frozenset(o.encode("ascii") for o in config.cors_origins)
        self._storage: StorageBackend | None = None
        self._store: ServerStore | None = None
        self._privacy: PrivacySettings | None = None
        self._disabled = telemetry_disabled()
        self._starlette = self._build_starlette()

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> TelemetryServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Load the install secret and open the store (creating the server tables)."""
        secret = load_install_secret(self.config.secret_file)
        self._privacy = PrivacySettings(install_secret=secret, strict=True)
        storage = open_storage(self.config.database_url)
        store = open_server_store(self.config.database_url, default_rate=self.config.default_rate)
        await storage.open()
        try:
            await store.open()
        except BaseException:
            await storage.close()
            raise
        self._storage, self._store = storage, store
        log.info(
            "serving telemetry database %r of %s%s",
            self.config.database,
            storage.url,
            " (telemetry disabled: nothing is stored)" if self._disabled else "",
        )

    async def stop(self) -> None:
        """Close the store (pending writes are committed first). Idempotent."""
        storage, store = self._storage, self._store
        self._storage = self._store = None
        with anyio.CancelScope(shield=True):
            if store is not None:
                await store.close()
            if storage is not None:
                await storage.close()

    @property
    def storage(self) -> StorageBackend:
        if self._storage is None:
            raise RuntimeError("the telemetry server is not started")
        return self._storage

    @property
    def store(self) -> ServerStore:
        if self._store is None:
            raise RuntimeError("the telemetry server is not started")
        return self._store

    # --- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == INGEST_PATH:
            method = scope["method"]
            if method == "POST":
                await self._ingest(scope, receive, send)
                return
            if method == "OPTIONS":
                await self._preflight(scope, send)
                return
        await self._starlette(scope, receive, send)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    # --- ingest --------------------------------------------------------------------------------

    def _origin_ok(self, headers: _Headers, scheme: str) -> bool:
        origin = headers.origin
        if not origin or origin in self._origins:
            return True
        # Same-origin pages (the dashboard, a demo served here) send their own origin.
        return origin == scheme.encode("ascii") + b"://" + headers.host

    def _cors(self, headers: _Headers) -> list[tuple[bytes, bytes]]:
        if headers.origin and headers.origin in self._origins:
            return [(b"access-control-allow-origin", headers.origin), (b"vary", b"Origin")]
        return [(b"vary", b"Origin")] if self._origins else []

    async def _preflight(self, scope: Scope, send: Send) -> None:
        headers = _Headers(scope)
        if not headers.origin or headers.origin not in self._origins:
            await _send_json(send, 403, _error("origin_not_allowed", "origin not allowed"), [])
            return
        extra = self._cors(headers) + [
            (b"access-control-allow-methods", b"POST"),
            (b"access-control-allow-headers", b"authorization, content-type"),
            (b"access-control-max-age", b"600"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": extra})
        await send({"type": "http.response.body", "body": b""})

    def _token(self, scope: Scope, headers: _Headers) -> str | None:
        auth = headers.authorization
        if auth[:7].lower() == b"bearer ":
            return auth[7:].strip().decode("latin-1") or None
        query: bytes = scope.get("query_string", b"")
        if b"token=" in query:
            # sendBeacon cannot set headers; ingest tokens are publishable (they can only add
            # events, are rate-limited and revocable), and no query string is ever logged.
            for name, value in parse_qsl(query.decode("latin-1")):
                if name == "token" and value:
                    return str(value)
        return None

    async def _read_body(self, receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise IngestError(400, "disconnected", "the client went away", "body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _ingest(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _Headers(scope)
        cors = self._cors(headers)
        if not self._origin_ok(headers, scope.get("scheme", "http")):
            await _send_json(
                send,
                403,
                _error("origin_not_allowed", "this origin may not send events"),
                cors,
            )
            return
        token = self._token(scope, headers)
        if token is None:
            await _send_json(
                send,
                401,
                _error("missing_token", "send an ingest token: Authorization: Bearer <token>"),
                [*cors, (b"www-authenticate", b"Bearer")],
            )
            return
        try:
            limit = self.config.max_body_bytes
            if headers.content_length and _length(headers.content_length) > limit:
                raise _too_large(limit)
            body = await self._read_body(receive, limit)
            events, _ = parse_body(body, self.config.max_batch)
            hit = await self.store.admit(token, len(events))
            if hit.verdict is not Verdict.ADMITTED:
                await self._refuse(send, hit.verdict, hit.limit, cors)
                return
            assert hit.token is not None
            if self._disabled or headers.dnt:
                # Telemetry is off here (or the browser asked not to be tracked): the request
                # was valid, nothing is stored.
                await _send_json(
                    send, 200, {"success": True, "accepted": 0, "recorded": False}, cors
                )
                return
            stored = self._validate(events, hit.token)
            await self._store_events(stored)
        except IngestError as error:
            await _send_json(send, error.status, error.to_json(), cors)
            return
        except StorageError as error:
            log.error("ingest failed: %s", error.message)
            await _send_json(
                send,
                503,
                _error("storage_unavailable", "the telemetry store failed; retry the request"),
                [*cors, (b"retry-after", b"1")],
            )
            return
        await _send_payload(send, 200, b'{"success":true,"accepted":%d}' % len(stored), cors)

    def _validate(self, events: list[Any], token: TokenInfo) -> list[StoredEvent]:
        assert self._privacy is not None
        now = datetime.now(UTC)
        if len(events) == 1:
            return [to_stored(events[0], "", now=now, settings=self._privacy, ingest=token.id)]
        scratch: dict[tuple[str, str], str] = {}  # this request's, dropped with it
        return [
            to_stored(
                event, f"[{i}].", now=now, settings=self._privacy, ingest=token.id, scratch=scratch
            )
            for i, event in enumerate(events)
        ]

    async def _store_events(self, stored: list[StoredEvent]) -> None:
        """Write a request's events in one submission (one transaction, shared with other
        requests' writes). The key is the event id, so a repeated event replaces itself and
        is stored once.

        Raises :class:`IngestError` (413) for the first event over the telemetry database's
        record limit (the others are stored), :class:`StorageError` for a failed write.
        """
        database = self.config.database
        outcomes = await self.storage.put_many(
            [(database, event.id, event.data, "replace", event.timestamp) for event in stored]
        )
        batch = len(stored) > 1  # named as _validate names fields: "[3]" only in a batch
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, RecordTooLargeError):
                others = len(stored) - sum(o is not None for o in outcomes)
                raise IngestError(
                    413,
                    "event_too_large",
                    "the event is larger than the telemetry database's record limit"
                    + (f"; the other {others} event(s) were stored" if batch else ""),
                    f"[{index}]" if batch else "body",
                )
            if outcome is not None:
                raise outcome

    async def _refuse(
        self, send: Send, verdict: Verdict | None, limit: int, cors: list[tuple[bytes, bytes]]
    ) -> None:
        if verdict is Verdict.LIMITED:
            await _send_json(
                send,
                429,
                _error(
                    "rate_limited",
                    f"this token may send {limit} events per second; retry after 1 s "
                    "(a batch larger than that is never accepted: split it)",
                ),
                [*cors, (b"retry-after", b"1")],
            )
            return
        status, code, message = _VERDICT_STATUS[verdict or Verdict.UNKNOWN]
        extra = [(b"www-authenticate", b'Bearer error="invalid_token"')] if status == 401 else []
        await _send_json(send, status, _error(code, message), [*cors, *extra])

    # --- Starlette: query API, admin, static -----------------------------------------------------

    def _build_starlette(self) -> Starlette:
        static = resources.files("brickrun.server").joinpath("static")
        return Starlette(
            routes=[
                Route(INGEST_PATH, self._get_telemetry, methods=["GET"]),
                Route(INGEST_PATH + "/report", self._get_report, methods=["GET"]),
                Route("/openapi.json", self._openapi, methods=["GET"]),
                Route("/healthz", self._health, methods=["GET"]),
                Route("/admin", self._admin_root, methods=["GET"]),
                Route("/admin/login", self._login_page, methods=["GET"]),
                Route("/admin/login", self._login, methods=["POST"]),
                Route("/admin/logout", self._logout, methods=["POST"]),
                Route("/admin/telemetry", self._dashboard, methods=["GET"]),
                Mount("/static", StaticFiles(directory=str(static)), name="static"),
            ],
            lifespan=self._lifespan,
        )

    async def _admin(self, request: Request) -> TokenInfo | None:
        """The admin token of a request: a Bearer admin token, or a signed-in session."""
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            token = await self.store.find_token(auth[7:].strip())
            return token if token and token.active and token.kind == "admin" else None
        cookie = request.cookies.get(SESSION_COOKIE)
        return await self.store.session_token(cookie) if cookie else None

    async def _query_args(self, request: Request) -> tuple[int, str | None] | Response:
        raw_days = request.query_params.get("days", "7")
        try:
            days = int(raw_days)
        except ValueError:
            days = 0
        if not 1 <= days <= MAX_DAYS:
            return _json_error(
                400, "invalid_field", f"days: must be an integer 1-{MAX_DAYS}", "days"
            )
        kind = request.query_params.get("type") or None
        if kind is not None and not _NAME.match(kind):
            return _json_error(
                400, "invalid_field", "type: must be an event name such as page_view", "type"
            )
        return days, kind

    async def _get_telemetry(self, request: Request) -> Response:
        if await self._admin(request) is None:
            return _unauthorized()
        args = await self._query_args(request)
        if isinstance(args, Response):
            return args
        days, kind = args
        data = await load_period(self.storage, self.config.database, days, datetime.now(UTC))
        return _json(telemetry_response(data, kind))

    async def _get_report(self, request: Request) -> Response:
        if await self._admin(request) is None:
            return _unauthorized()
        args = await self._query_args(request)
        if isinstance(args, Response):
            return args
        data = await load_period(self.storage, self.config.database, args[0], datetime.now(UTC))
        return _json(report(data))

    async def _openapi(self, request: Request) -> Response:
        return _json(openapi_document(self.config))

    async def _health(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def _admin_root(self, request: Request) -> Response:
        return RedirectResponse("/admin/telemetry", status_code=303)

    def _same_origin(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"

    async def _login_page(self, request: Request, message: str = "", status: int = 200) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not message and cookie and await self.store.session_token(cookie) is not None:
            return RedirectResponse("/admin/telemetry", status_code=303)
        notice = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
        html = _static("admin/login.html").replace("<!--notice-->", notice)
        return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)

    async def _login(self, request: Request) -> Response:
        if not self._same_origin(request):
            return _json_error(403, "forbidden", "cross-origin sign-in refused", None)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > 4096:  # a token is ~50 characters: never buffer a large body
                return _json_error(413, "body_too_large", "the form is too large", "body")
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        token = await self.store.find_token(form.get("token", "").strip())
        if token is None or not token.active or token.kind != "admin":
            # One message for every failure: which tokens exist is nobody's business.
            return await self._login_page(request, "That is not an active admin token.", 401)
        session = await self.store.create_session(token)
        log.info("admin sign-in with token %s", token.id)
        response = RedirectResponse("/admin/telemetry", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=12 * 3600,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def _logout(self, request: Request) -> Response:
        if not self._same_origin(request):
            return _json_error(403, "forbidden", "cross-origin sign-out refused", None)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            await self.store.end_session(cookie)
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def _dashboard(self, request: Request) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie or await self.store.session_token(cookie) is None:
            return RedirectResponse("/admin/login", status_code=303)
        return HTMLResponse(_static("admin/dashboard.html"), headers=_PAGE_HEADERS)


def _error(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return {"error": body}


def _length(header: bytes) -> int:
    """A Content-Length value; an unreadable one counts as too large (the server parses it
    first, so this is a second line of defence)."""
    return int(header) if header.isdigit() else 1 << 62


def _too_large(limit: int) -> IngestError:
    return IngestError(
        413, "body_too_large", f"the body is larger than the limit of {limit} bytes", "body"
    )


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    await _send_payload(send, status, json.dumps(body, separators=(",", ":")).encode(), headers)


async def _send_payload(
    send: Send, status: int, payload: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Send ``payload`` (JSON text) as the response; the accepted-events reply is formatted
    by its caller, without ``json.dumps``: it is sent once per request."""
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [_JSON, _NO_STORE, (b"content-length", b"%d" % len(payload)), *headers],
    }
    await send(start)
    await send({"type": "http.response.body", "body": payload})


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _json_error(status: int, code: str, message: str, field: str | None) -> Response:
    return _json(_error(code, message, field), status)


def _unauthorized() -> Response:
    response = _json_error(
        401, "unauthorized", "send an admin token (Authorization: Bearer) or sign in", None
    )
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def create_app(config: ServerConfig | None = None) -> TelemetryServer:
    """The telemetry service for ``config`` (default: :meth:`ServerConfig.from_env`).

    Endpoints (also described at ``/openapi.json``): ``POST /api/telemetry`` (ingest token),
    ``GET /api/telemetry`` and ``GET /api/telemetry/report`` (admin token or session),
    ``/admin/login``, ``/admin/logout``, ``/admin/telemetry`` (the dashboard),
    ``/static/brickrun.js`` (the browser client), ``/openapi.json`` and ``/healthz``.
    """
    return TelemetryServer(config if config is not None else ServerConfig.from_env())


SERVE_GC_THRESHOLD: Final = (20_000, 50, 100)
"""The garbage collector's thresholds in a ``brickrun serve`` process (CPython's default is
``(700, 10, 10)``). A busy server holds thousands of events in flight, and with the default a
young collection ran every few hundred of them and older ones walked them all again and again:
batch ingest went from ~47,000 to ~53,000 events/s with these. Embedding ``create_app`` in a
host's process leaves the host's settings alone."""


def app_from_env() -> TelemetryServer:
    """The factory uvicorn calls in each worker process (configuration from the environment);
    it also sets :data:`SERVE_GC_THRESHOLD`, the process being a server's."""
    app = create_app(ServerConfig.from_env())
    gc.set_threshold(*SERVE_GC_THRESHOLD)
    return app
