"""``brickrun tokens`` and ``brickrun serve`` as processes, incl. two servers on one PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import httpx
import pytest

from brickrun.cli import main
from brickrun.storage import open_storage

from .conftest import ServeProcess, create_token

pytestmark = pytest.mark.anyio


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tokens_create_list_revoke(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/t.sqlite"
    code, out, err = run(capsys, "tokens", "create", "web app", "--db", db)
    assert code == 0
    secret = out.strip()
    assert secret.startswith("bri_") and len(secret) > 40
    assert "shown only now" in err
    code, out, _ = run(capsys, "tokens", "create", "ops", "--kind", "admin", "--db", db, "--json")
    admin = json.loads(out)
    assert admin["kind"] == "admin" and admin["token"].startswith("bra_")

    code, out, _ = run(capsys, "tokens", "list", "--db", db, "--json")
    listed = json.loads(out)
    assert [t["name"] for t in listed] == ["web app", "ops"]
    assert secret not in out and admin["token"] not in out
    assert all(t["revokedAt"] is None for t in listed)
    # Only the hash is at rest.
    files = list(tmp_path.iterdir())
    assert "t.server.sqlite" in {f.name for f in files}
    assert all(secret.encode() not in f.read_bytes() for f in files)

    code, out, err = run(capsys, "tokens", "revoke", listed[0]["id"], "--db", db)
    assert code == 0 and "revoked" in err
    code, out, err = run(capsys, "tokens", "revoke", listed[0]["id"], "--db", db)
    assert code == 1 and "no active token" in err
    code, out, _ = run(capsys, "tokens", "list", "--db", db)
    assert "revoked" in out.splitlines()[0] and "active" in out.splitlines()[1]

    code, out, err = run(
        capsys, "tokens", "create", "x", "--kind", "admin", "--rate", "5", "--db", db
    )
    assert code == 1 and "only ingest tokens have a rate" in err


def test_help_stays_light() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, brickrun.cli as c; c.build_parser(); "
            "print(any(m.split('.')[0] in ('starlette', 'uvicorn') for m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_serve_rejects_bad_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    with mock.patch.dict(os.environ):  # serve writes its flags to the environment
        code, _, err = run(capsys, "serve", "--cors-origin", "example.com", "--db", "sqlite:///x")
    assert code == 2 and "scheme://host" in err


@pytest.mark.postgres
@pytest.mark.slow
def test_two_serve_processes_on_one_postgres_without_loss_and_with_one_rate_limit(
    postgres_url: str, serve_processes: list[ServeProcess]
) -> None:
    token = create_token(postgres_url, "ingest", "--rate", "1000000")["token"]
    servers = [ServeProcess(postgres_url), ServeProcess(postgres_url)]
    serve_processes.extend(servers)
    for server in servers:
        server.wait_ready()

    ids = [str(uuid.uuid4()) for _ in range(2000)]
    singles, batched = ids[:600], ids[600:]
    requests: list[tuple[str, object]] = []
    for i, event_id in enumerate(singles):
        requests.append((servers[i % 2].base, {"id": event_id, "type": "page_view", "page": "/"}))
    for i in range(0, len(batched), 100):
        body = [{"id": e, "type": "action", "action": "a"} for e in batched[i : i + 100]]
        requests.append((servers[(i // 100) % 2].base, body))
    # Every event is also sent a second time, to the other server: stored once all the same.
    requests += [
        (servers[1].base if base == servers[0].base else servers[0].base, body)
        for base, body in requests[::7]
    ]

    def send(chunk: list[tuple[str, object]]) -> list[int]:
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
            return [c.post(base + "/api/telemetry", json=body).status_code for base, body in chunk]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(send, [requests[i::16] for i in range(16)]))
    statuses = [s for chunk in results for s in chunk]
    assert statuses == [200] * len(requests)

    import anyio

    async def stored() -> list[str]:
        async with open_storage(postgres_url) as storage:
            return [r["id"] for r in await storage.list_records("brickrun-telemetry")]

    assert sorted(anyio.run(stored)) == sorted(ids)

    # Both processes spend one rate window per token: 30 events per second together.
    slow = create_token(postgres_url, "ingest", "--rate", "30")["token"]

    def hammer(base: str) -> list[int]:
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {slow}"}) as c:
            return [
                c.post(base + "/api/telemetry", json={"type": "page_view"}).status_code
                for _ in range(40)
            ]

    start = time.time()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(hammer, [s.base for s in servers] * 2))
    seconds = int(time.time()) - int(start) + 1
    admitted = sum(chunk.count(200) for chunk in results)
    assert sum(chunk.count(429) for chunk in results) == 160 - admitted
    assert 30 <= admitted <= 30 * seconds


def test_the_serve_factory_tunes_the_garbage_collector_and_embedding_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``brickrun serve``'s worker factory raises the collector's thresholds for the server
    process (SERVE_GC_THRESHOLD); ``create_app``, for embedding in a host, leaves the host's."""
    import gc

    from brickrun.server import create_app
    from brickrun.server._app import SERVE_GC_THRESHOLD, app_from_env
    from brickrun.server._config import ServerConfig

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # nothing in the real one
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        create_app(ServerConfig(database_url=f"sqlite:///{tmp_path}/embedded.sqlite"))
        assert gc.get_threshold() == (700, 10, 10)
        monkeypatch.setenv("BRICKRUN_DB_URL", f"sqlite:///{tmp_path}/served.sqlite")
        app_from_env()
        assert gc.get_threshold() == SERVE_GC_THRESHOLD
    finally:
        gc.set_threshold(*before)
