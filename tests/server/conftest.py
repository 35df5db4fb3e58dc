"""Fixtures for the telemetry server: a started app on each backend, its tokens, a client.

``served`` is the app over ``storage_url`` (SQLite and PostgreSQL), started without uvicorn
and driven with ``httpx.ASGITransport``; ``tokens`` are an ingest, an admin and a revoked
ingest token made in the same store, as ``brickrun tokens create`` makes them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from brickrun.server import ServerConfig, TelemetryServer, create_app, open_server_store

SECRET_HEX = "5e" * 32
ORIGIN = "https://app.example.com"


@pytest.fixture(autouse=True)
def _server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed install secret, and telemetry enabled whatever the machine says."""
    monkeypatch.setenv("BRICKRUN_INSTALL_SECRET", SECRET_HEX)
    for variable in ("DO_NOT_TRACK", "BRICKRUN_TELEMETRY_DISABLED"):
        monkeypatch.delenv(variable, raising=False)


@dataclass
class Tokens:
    ingest: str
    admin: str
    revoked: str
    ingest_id: str


@pytest.fixture
async def tokens(storage_url: str) -> Tokens:
    async with open_server_store(storage_url) as store:
        info, ingest = await store.create_token("ingest", "web")
        _, admin = await store.create_token("admin", "ops")
        gone, revoked = await store.create_token("ingest", "old")
        assert await store.revoke_token(gone.id)
    return Tokens(ingest, admin, revoked, info.id)


def make_config(storage_url: str, **overrides: Any) -> ServerConfig:
    values: dict[str, Any] = {
        "database_url": storage_url,
        "cors_origins": (ORIGIN,),
        "max_body_bytes": 64 * 1024,
        "max_batch": 50,
    }
    values.update(overrides)
    return ServerConfig(**values)


@pytest.fixture
async def served(storage_url: str, tokens: Tokens) -> AsyncIterator[TelemetryServer]:
    async with create_app(make_config(storage_url)) as app:
        yield app


@pytest.fixture
async def client(served: TelemetryServer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=served)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def stored_events(app: TelemetryServer) -> list[dict[str, Any]]:
    return [r["data"] for r in await app.storage.list_records(app.config.database)]


# --- real `brickrun serve` processes -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env() -> dict[str, str]:
    env = {**os.environ, "BRICKRUN_INSTALL_SECRET": SECRET_HEX}
    env.pop("DO_NOT_TRACK", None)
    env.pop("BRICKRUN_TELEMETRY_DISABLED", None)
    return env


def create_token(url: str, kind: str, *extra: str) -> dict[str, Any]:
    """``brickrun tokens create`` as a process; its JSON (with the secret)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "brickrun",
            "tokens",
            "create",
            kind,
            "--kind",
            kind,
            "--db",
            url,
            "--json",
            *extra,
        ],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class ServeProcess:
    """A ``brickrun serve`` subprocess on 127.0.0.1; ``stop()`` ends it (bounded)."""

    def __init__(self, url: str, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # A file, not a pipe: a pipe nobody reads could fill up and block the server.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "brickrun",
                "serve",
                "--port",
                str(self.port),
                "--db",
                url,
                *extra,
            ],
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"brickrun serve exited {self.proc.returncode}: {self.output()}"
                )
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("brickrun serve did not answer /healthz in time")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        output = self.output()
        self.log.close()
        return output


@pytest.fixture
def serve_processes() -> Iterator[list[ServeProcess]]:
    """Started processes are appended by the test; all are stopped afterwards."""
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium (installed by .ci/run); skips locally and fails in CI without it."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        message = "Debian's chromium is not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: the browser test must run in CI)")
        pytest.skip(message)
    return path
