"""``@pixiebrix/http`` (HTTP Request): one request with httpx, integration auth, safe errors.

Contract (SPEC §4, PixieBrix ``remoteMethod``), with brickrun's choices:

* ``method`` defaults to ``get`` (PixieBrix's schema says ``post`` but never applies it) and
  is accepted in lower or upper case. ``data`` is sent as a JSON body (a string is sent as a
  JSON string); like a browser, brickrun does not send a body with ``GET``.
* ``service`` is an integration value (``!var "@acme"``, or an integration-typed input). Its
  ``authentication`` (base URL, headers, query parameters rendered from the real
  configuration) is applied by ``runtime.integrations.apply_auth``; a relative ``url`` is
  joined to the base URL, and the final URL must lie below it.
* ``timeoutMillis`` (a brickrun extension, default 30 000) bounds the whole request: connect,
  send, redirects and reading the body.
* Redirects are followed (at most 10); with an integration only within the same origin, since
  httpx forwards custom auth headers across origins.
* Only ``http`` and ``https`` URLs (anything else is a ``PropError`` naming the scheme).
* The output is the response body: parsed JSON when it parses (whatever the content type, as
  axios does), else the text (``""`` for an empty body).

Errors are ``BusinessError``s naming the status, method and URL, e.g. ``Request failed with
status code 404 (Not Found): GET https://api.example.com/items``. URLs in messages and logs
have no user info, query string or fragment, and an integration's secret values are masked.
Request headers and response bodies never appear in errors or logs: error messages are logged
and reported as telemetry, and SPEC §8 keeps payloads out of both. httpx's own request log line
(INFO, logger ``httpx``) shows the full URL, so while a request of this brick is in flight a
filter on httpx's and httpcore's loggers rewrites their lines the same way.

The HTTP client is the runtime's ``http_client`` (one per runtime, so connections are reused;
give the runtime an ``httpx.MockTransport`` to test). A runtime without one gets a client
cached on it (attribute ``_brickrun_http_client``, built with the runtime's ``http_transport``
if it has one), which its owner closes.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import anyio

from brickrun import BrickContext, BusinessError, PropError, brick

if TYPE_CHECKING:
    import httpx  # imported on the first request: it costs ~0.1 s at startup otherwise

__all__ = ["BRICKS", "DEFAULT_TIMEOUT_MILLIS", "MAX_REDIRECTS"]

DEFAULT_TIMEOUT_MILLIS: Final = 30_000
MAX_REDIRECTS: Final = 10
METHODS: Final = ("get", "post", "put", "patch", "delete")
CLIENT_ATTRIBUTE: Final = "_brickrun_http_client"

_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_HEADER_VALUE: Final = re.compile(r"[\r\n\x00]")

Scrub = Callable[[str], str]


def _no_scrub(text: str) -> str:
    return text


def _display(url: str | httpx.URL) -> str:
    """A URL fit for messages and logs: no user info, query or fragment."""
    import httpx

    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))
    except Exception:  # an unparseable URL is never echoed raw
        return "<invalid URL>"


# --------------------------------------------------------------------------------------------
# httpx's request log line

# The scrubber of the request in flight in this task (None: not one of ours).
_IN_FLIGHT: contextvars.ContextVar[Scrub | None] = contextvars.ContextVar(
    "brickrun_http_in_flight", default=None
)


class _RequestLogFilter(logging.Filter):
    """Rewrites httpx's and httpcore's log lines for this brick's requests: URLs without user
    info, query or fragment, integration secrets masked. Other requests are left alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = _IN_FLIGHT.get()
        if scrub is None:
            return True
        import httpx  # already loaded: httpx is logging

        args = record.args
        if isinstance(args, tuple):
            args = tuple(_display(a) if isinstance(a, httpx.URL) else a for a in args)
        try:
            message = str(record.msg) % args if args else str(record.msg)
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        return True


# A logger's filters see only the records logged on it, so each of httpx's and httpcore's
# loggers gets one (httpcore's debug lines quote hosts and response headers).
_LOGGERS: Final = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)


def _install_log_filter() -> None:
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RequestLogFilter) for f in logger.filters):
            logger.addFilter(_RequestLogFilter())


# --------------------------------------------------------------------------------------------
# the brick


def _client(runtime: Any) -> httpx.AsyncClient:
    import httpx

    client = getattr(runtime, "http_client", None)
    if isinstance(client, httpx.AsyncClient):
        return client
    client = getattr(runtime, CLIENT_ATTRIBUTE, None)
    if not isinstance(client, httpx.AsyncClient):
        client = httpx.AsyncClient(transport=getattr(runtime, "http_transport", None))
        setattr(runtime, CLIENT_ATTRIBUTE, client)
    return client


def _target(text: str, scrub: Scrub, with_base: bool) -> httpx.URL:
    import httpx

    try:
        url = httpx.URL(text)
    except Exception:
        raise PropError("url: not a valid URL", prop="url") from None
    if not url.scheme:
        hint = "" if with_base else " (or a URL relative to an integration's baseURL)"
        raise PropError(
            f"url: expected an absolute http or https URL{hint}, found the relative URL "
            f"{scrub(_display(url))!r}",
            prop="url",
        )
    if url.scheme not in ("http", "https"):
        raise PropError(
            f"url: unsupported URL scheme {url.scheme!r}; expected http or https", prop="url"
        )
    if not url.host:
        raise PropError(f"url: {scrub(_display(url))!r} has no host", prop="url")
    return url


def _checked_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """Header problems are reported by name; a value is never shown (it may be a secret)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise PropError(f"headers: {name!r} is not a valid header name", prop="headers")
        text = str(value)
        if _BAD_HEADER_VALUE.search(text) or not text.isascii():
            raise PropError(
                f"headers: the value of header {name!r} must be ASCII text without line breaks",
                prop="headers",
            )
        out[name] = text
    return out


def _param_text(value: Any) -> str:
    """A query parameter as JavaScript would print it (``true``, ``2`` for ``2.0``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _seconds(timeout: float) -> str:
    return f"{timeout:g} s"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host.lower(), url.port


async def _send(
    client: httpx.AsyncClient, request: httpx.Request, *, same_origin: bool, describe: str
) -> httpx.Response:
    """Send, following redirects; with ``same_origin`` a redirect elsewhere is an error."""

    origin = _origin(request.url)
    for _ in range(MAX_REDIRECTS + 1):
        response = await client.send(request, follow_redirects=False)
        following = response.next_request
        if following is None:
            return response
        await response.aclose()
        if same_origin and _origin(following.url) != origin:
            raise BusinessError(
                f"Request failed: redirected to another origin, where the integration's "
                f"credentials are not sent: {describe}"
            )
        request = following
    raise BusinessError(f"Request failed: more than {MAX_REDIRECTS} redirects: {describe}")


def _os_error(exc: BaseException) -> OSError | None:
    """The operating-system error under an httpx error (its cause chain), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and (
            isinstance(current, socket.gaierror) or current.errno is not None
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def _network_message(exc: httpx.HTTPError, method: str, url: str) -> str:
    """Say what went wrong from the error's class and OS error number only: the text of an
    httpx error can quote a header value."""
    import httpx

    if isinstance(exc, httpx.ConnectError):
        os_error = _os_error(exc)
        if isinstance(os_error, socket.gaierror):
            reason = "host not found"
        elif os_error is not None and os_error.errno is not None:
            reason = os.strerror(os_error.errno).lower()
        else:
            reason = "connection failed"
        return f"Request failed: could not connect to {url} ({reason})"
    if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.CloseError):
        reason = "the connection was lost"
    elif isinstance(exc, httpx.RemoteProtocolError):
        reason = "the server closed the connection or sent an invalid response"
    elif isinstance(exc, httpx.LocalProtocolError):
        reason = "the request could not be sent"
    elif isinstance(exc, httpx.ProxyError):
        reason = "the proxy refused the request"
    elif isinstance(exc, httpx.DecodingError):
        reason = "the response body could not be decoded"
    else:
        reason = type(exc).__name__
    return f"Request failed: {reason}: {method} {url}"


def _reason(response: httpx.Response) -> str:
    try:
        return HTTPStatus(response.status_code).phrase
    except ValueError:
        return "unknown status"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _body(response: httpx.Response) -> Any:
    text = response.text
    if not text.strip():
        return text
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


INPUT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "url": {
            "type": "string",
            "description": "The http(s) URL; relative to the integration's base URL when "
            "`service` has one.",
        },
        "method": {
            "type": "string",
            "enum": [*METHODS, *(m.upper() for m in METHODS)],
            "default": "get",
            "description": "The HTTP method.",
        },
        "params": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
            "description": "Query parameters.",
        },
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Request headers.",
        },
        "data": {"description": "A JSON body (not sent with GET)."},
        "service": {
            "type": "object",
            "description": 'An integration (e.g. !var "@acme") whose authentication is '
            "applied to the request.",
        },
        "timeoutMillis": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": DEFAULT_TIMEOUT_MILLIS,
            "description": "brickrun extension: the deadline of the whole request, in "
            "milliseconds.",
        },
    },
    "required": ["url"],
}


@brick(
    id="@pixiebrix/http",
    name="HTTP Request",
    description="Send an HTTP request and return the response body (JSON when it parses).",
    input_schema=INPUT_SCHEMA,
    default_output_key="response",
)
async def http_request(args: Any, ctx: BrickContext) -> Any:
    import httpx

    method = str(args.get("method", "get")).upper()
    timeout = float(args.get("timeoutMillis", DEFAULT_TIMEOUT_MILLIS)) / 1000
    service = args.get("service")
    request: dict[str, Any] = {
        "url": args["url"],
        "headers": dict(args.get("headers") or {}),
        "params": dict(args.get("params") or {}),
    }
    scrub: Scrub = _no_scrub
    if service is not None:
        integrations = getattr(ctx.runtime, "integrations", None)
        if integrations is None:
            raise PropError("service: this runtime has no integrations", prop="service")
        request = integrations.apply_auth(service, request)
        scrub = functools.partial(integrations.redact_secrets, service)

    url = _target(str(request["url"]), scrub, with_base=service is not None)
    headers = _checked_headers(request.get("headers") or {})
    params = {str(k): _param_text(v) for k, v in (request.get("params") or {}).items()}
    if params:  # added to the URL's own query, as axios does (httpx would replace it)
        url = url.copy_merge_params(params)
    client = _client(ctx.runtime)
    body = {"json": args["data"]} if "data" in args and method != "GET" else {}
    try:
        outgoing = client.build_request(method, url, headers=headers, timeout=timeout, **body)
    except (TypeError, ValueError):
        raise PropError("data: cannot be sent as JSON", prop="data") from None
    describe = f"{method} {scrub(_display(outgoing.url))}"
    _install_log_filter()
    ctx.logger.debug("HTTP request: %s", describe)
    started = time.perf_counter()
    in_flight = _IN_FLIGHT.set(scrub)
    try:
        with anyio.fail_after(timeout):
            response = await _send(
                client, outgoing, same_origin=service is not None, describe=describe
            )
    except (TimeoutError, httpx.TimeoutException):
        raise BusinessError(f"Request timed out after {_seconds(timeout)}: {describe}") from None
    except httpx.HTTPError as exc:
        message = _network_message(exc, method, scrub(_display(outgoing.url)))
        raise BusinessError(message) from None
    finally:
        _IN_FLIGHT.reset(in_flight)
    final = f"{method} {scrub(_display(response.request.url))}"
    ctx.logger.debug(
        "HTTP response: %s: %d in %.0f ms",
        final,
        response.status_code,
        (time.perf_counter() - started) * 1000,
    )
    if not response.is_success:
        raise BusinessError(
            f"Request failed with status code {response.status_code} ({_reason(response)}): {final}"
        )
    return _body(response)


BRICKS = [http_request]
