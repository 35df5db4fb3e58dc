"""A scriptable local OTLP/HTTP collector for the export tests: a real HTTP server on 127.0.0.1.

``Collector()`` listens on a free port in a background thread (``ThreadingHTTPServer``,
HTTP/1.1 keep-alive). Each ``POST /v1/logs`` is answered by the next scripted
:class:`Behaviour` in ``script`` (a queue; when it is empty, ``default``), unless ``rule``
returns one for that request first. Behaviours:

- :class:`Reply` — a status, headers and a JSON body;
- :class:`Delay` — wait, then reply;
- :class:`Hang` — read the request and never answer (until the collector stops);
- :class:`Drop` — read the request, keep it as received and accepted ("the collector stored
  it"), then close the connection without a reply: a lost acknowledgement.

``down()`` stops listening (connections are refused) and ``up()`` listens again on the same
port. Everything received is kept: ``requests`` (every parsed body), ``received_ids`` (the
``event.id`` of every log record received, duplicates included) and ``accepted_ids`` (those of
requests answered 2xx or dropped after being stored). Every body of at most
``validate_records`` records is also parsed strictly into an ``ExportLogsServiceRequest`` with
``opentelemetry-proto`` (about 0.3 ms per record, so big batches are skipped); failures go to
``invalid``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    seconds: float
    then: Reply = field(default_factory=Reply)


@dataclass(frozen=True)
class Hang:
    pass


@dataclass(frozen=True)
class Drop:
    pass


Behaviour = Reply | Delay | Hang | Drop


@dataclass
class Received:
    """One request as the collector read it."""

    at: float
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    ids: list[str]
    behaviour: Behaviour


def record_ids(body: dict[str, Any]) -> list[str]:
    """The ``event.id`` attribute of every log record in an OTLP JSON request body."""
    ids = []
    for resource in body.get("resourceLogs", []):
        for scope in resource.get("scopeLogs", []):
            for record in scope.get("logRecords", []):
                for attribute in record.get("attributes", []):
                    if attribute["key"] == "event.id":
                        ids.append(attribute["value"]["stringValue"])
    return ids


def log_records(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every log record of an OTLP JSON request body."""
    return [
        record
        for resource in body.get("resourceLogs", [])
        for scope in resource.get("scopeLogs", [])
        for record in scope.get("logRecords", [])
    ]


class Collector:
    """See the module docstring. Use as a context manager (or call ``close``)."""

    def __init__(self, *, validate_records: int = 100) -> None:
        self.validate_records = validate_records
        self.script: deque[Behaviour] = deque()
        self.default: Behaviour = Reply()
        self.rule: Callable[[Received], Behaviour | None] | None = None
        self.requests: list[Received] = []
        self.received_ids: list[str] = []
        self.accepted_ids: list[str] = []
        self.invalid: list[str] = []
        self.request_arrived = threading.Event()
        self._lock = threading.Lock()
        self._released = threading.Event()  # set on close: hung handlers return
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = _free_port()
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle ---------------------------------------------------------------------------

    def up(self) -> None:
        """Listen (again) on ``port``."""
        if self._server is not None:
            return
        collector = self

        class Handler(_Handler):
            owner = collector

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening: new connections are refused; open ones are closed."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        self._released.set()
        self.down()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what happened -----------------------------------------------------------------------

    @property
    def distinct_accepted(self) -> set[str]:
        with self._lock:
            return set(self.accepted_ids)

    def wait_for_request(self, timeout: float = 10.0) -> bool:
        return self.request_arrived.wait(timeout)

    # --- serving -----------------------------------------------------------------------------

    def _choose(self, received: Received) -> Behaviour:
        with self._lock:
            if self.rule is not None:
                chosen = self.rule(received)
                if chosen is not None:
                    return chosen
            return self.script.popleft() if self.script else self.default

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        raw = handler.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        ids = record_ids(body)
        if len(ids) <= self.validate_records:
            try:
                json_format.Parse(raw.decode("utf-8"), ExportLogsServiceRequest())
            except Exception as error:
                with self._lock:
                    self.invalid.append(f"{type(error).__name__}: {error}")
        received = Received(time.monotonic(), dict(handler.headers), body, raw, ids, Reply())
        behaviour = self._choose(received)
        received.behaviour = behaviour
        with self._lock:
            self.requests.append(received)
            self.received_ids.extend(ids)
        self.request_arrived.set()
        if isinstance(behaviour, Hang):
            self._released.wait()
            handler.close_connection = True
            return
        if isinstance(behaviour, Drop):
            with self._lock:
                self.accepted_ids.extend(ids)
            handler.close_connection = True
            with suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(behaviour, Delay):
            self._released.wait(behaviour.seconds)
            behaviour = behaviour.then
        if 200 <= behaviour.status < 300:
            with self._lock:
                self.accepted_ids.extend(ids)
        payload = json.dumps(behaviour.body).encode()
        handler.send_response(behaviour.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in behaviour.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)


class _Handler(BaseHTTPRequestHandler):
    owner: Collector
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.owner._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
