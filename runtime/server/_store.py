"""The server's own tables: ingest/admin tokens, admin sessions and rate-limit windows.

They live in the store the team databases are in (the same ``--db`` URL): in the PostgreSQL
database and schema the URL names (:mod:`._store_postgres`), or for SQLite in a file beside
the store's file (:func:`server_file`, :mod:`._store_sqlite`), as three tables of their own,
created on first use. Nothing here is kept in process memory, so any number of ``brickrun
serve`` processes on one store agree on which tokens are valid, which sessions are signed in
and how much of each token's rate has been spent.

Tokens are shown once, when created, and stored only as their SHA-256 (they are 32 random
bytes, so a slow password hash would add nothing). A token has a public id (``tok_…``) for
``brickrun tokens list|revoke``, a kind (``ingest``: may only add events; ``admin``: may read
the query API and sign in to the dashboard), a name, and for ingest tokens an optional rate.

Rate limiting is a fixed window per token per second: a row ``(token_id, window, count)``
counts the events admitted in that second. :meth:`ServerStore.admit` decides a whole group of
concurrent requests in one transaction (requests arriving while one runs wait for the next),
which both authenticates them against the tokens table and spends their rate, so revocation
takes effect on the very next request and two processes never admit more than the limit
together. Only admitted events are counted; windows older than a minute are deleted.
"""

from __future__ import annotations

import enum
import hashlib
import os
import secrets
import time
from abc import ABC, abstractmethod
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import anyio
import anyio.lowlevel

from ..errors import StorageError
from ..storage import open_storage, redact_url

__all__ = [
    "SCHEMA",
    "SESSIONS",
    "TOKENS",
    "TOKEN_COLUMNS",
    "TOKEN_KINDS",
    "WINDOWS",
    "Hit",
    "ServerStore",
    "TokenInfo",
    "Verdict",
    "decide",
    "hash_secret",
    "open_server_store",
    "server_file",
    "token_from_row",
]


TOKEN_KINDS: Final = ("ingest", "admin")
_TOKEN_PREFIX: Final = {"ingest": "bri_", "admin": "bra_"}
SESSION_SECONDS: Final = 12 * 3600
"""How long an admin session lasts after signing in."""
_WINDOW_KEEP_S: Final = 60
_MAX_GROUP: Final = 1000

TOKENS = "brickrun_server_tokens"
WINDOWS = "brickrun_server_windows"
SESSIONS = "brickrun_server_sessions"

SCHEMA: Final = (
    f"CREATE TABLE IF NOT EXISTS {TOKENS} ("
    " id TEXT PRIMARY KEY,"
    " hash TEXT NOT NULL UNIQUE,"
    " kind TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " rate_per_second INTEGER,"
    " created_at TEXT NOT NULL,"
    " revoked_at TEXT)",
    f"CREATE TABLE IF NOT EXISTS {WINDOWS} ("
    " token_id TEXT NOT NULL,"
    " window_start BIGINT NOT NULL,"
    " count BIGINT NOT NULL,"
    " PRIMARY KEY (token_id, window_start))",
    f"CREATE TABLE IF NOT EXISTS {SESSIONS} ("
    " hash TEXT PRIMARY KEY,"
    " token_id TEXT NOT NULL,"
    " expires_at BIGINT NOT NULL)",
)


def hash_secret(secret: str) -> str:
    """The stored form of a token or session secret: SHA-256 as hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _iso(now: float) -> str:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: never its secret. ``rate_per_second`` ``None``: the server default."""

    id: str
    kind: str
    name: str
    rate_per_second: int | None
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "ratePerSecond": self.rate_per_second,
            "createdAt": self.created_at,
            "revokedAt": self.revoked_at,
        }


class Verdict(enum.Enum):
    """What :meth:`ServerStore.admit` decided for one request."""

    ADMITTED = "admitted"
    UNKNOWN = "unknown"  # no such token: 401
    REVOKED = "revoked"  # 401
    WRONG_KIND = "wrong_kind"  # an admin token used to ingest: 403
    LIMITED = "limited"  # over the token's rate in this window: 429


class Hit:
    """One request waiting for admission: a token hash and the events it wants to add.

    After :meth:`ServerStore.admit`: ``verdict``, ``token`` (when the token exists), ``limit``
    (events per second that applied) and ``retry_after`` (seconds, for ``LIMITED``).
    """

    __slots__ = ("limit", "retry_after", "token", "token_hash", "units", "verdict")

    def __init__(self, token_hash: str, units: int) -> None:
        self.token_hash = token_hash
        self.units = units
        self.verdict: Verdict | None = None
        self.token: TokenInfo | None = None
        self.limit = 0
        self.retry_after = 0


class _Round:
    """Hits decided together in one transaction, in arrival order.

    The first hit waits for the round's turn and decides it; the others wait on one shared
    event: creating an event per request cost more than all the rest of admission's
    bookkeeping.
    """

    __slots__ = ("decided", "finished", "hits", "sealed", "turn")

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.turn = anyio.Event()  # set when the rounds before it are over
        self.decided = anyio.Event()  # set when it is decided (or its first hit left)
        self.finished = False  # every hit of it has its verdict
        self.sealed = False  # being decided: no hit may join or leave any more


def decide(
    hits: Sequence[Hit],
    tokens: dict[str, TokenInfo],
    counts: dict[str, int],
    default_rate: int,
) -> dict[str, int]:
    """Set every hit's verdict, in order; return the events to add per token id.

    ``counts`` holds the events already admitted in this window per token id (missing: 0).
    """
    added: dict[str, int] = defaultdict(int)
    for hit in hits:
        token = tokens.get(hit.token_hash)
        hit.token = token
        if token is None:
            hit.verdict = Verdict.UNKNOWN
            continue
        if not token.active:
            hit.verdict = Verdict.REVOKED
            continue
        if token.kind != "ingest":
            hit.verdict = Verdict.WRONG_KIND
            continue
        limit = token.rate_per_second or default_rate
        hit.limit = limit
        spent = counts.get(token.id, 0) + added[token.id]
        if spent + hit.units > limit:
            hit.verdict, hit.retry_after = Verdict.LIMITED, 1  # the next window starts within 1 s
            continue
        added[token.id] += hit.units
        hit.verdict = Verdict.ADMITTED
    return {token_id: n for token_id, n in added.items() if n}


def token_from_row(row: Sequence[Any]) -> TokenInfo:
    return TokenInfo(row[0], row[1], row[2], row[3], row[4], row[5])


TOKEN_COLUMNS = "id, kind, name, rate_per_second, created_at, revoked_at"


class ServerStore(ABC):
    """The server tables in one store; ``async with`` it (or ``open``/``close``).

    ``default_rate`` is the events per second an ingest token without a rate of its own may
    add. Every method may raise :class:`StorageError` (naming the store, never a password).
    """

    url: str
    """The store's URL for display (any password as ``***``)."""

    def __init__(self, url: str, *, default_rate: int = 1000) -> None:
        self.url = url
        self.default_rate = default_rate
        self._rounds: deque[_Round] = deque()  # not yet decided, oldest first
        self._last_prune = 0.0

    async def __aenter__(self) -> ServerStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    async def open(self) -> None:
        """Connect and create the tables if missing (safe when several processes do it)."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect. Idempotent."""

    # --- tokens --------------------------------------------------------------------------------

    async def create_token(
        self, kind: str, name: str, *, rate_per_second: int | None = None
    ) -> tuple[TokenInfo, str]:
        """Create a token; return it and its secret (shown once: only its hash is stored)."""
        if kind not in TOKEN_KINDS:
            raise ValueError(f"token kind must be one of {', '.join(TOKEN_KINDS)}, got {kind!r}")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise ValueError("token name must be 1-100 characters")
        if rate_per_second is not None and (
            isinstance(rate_per_second, bool)
            or not isinstance(rate_per_second, int)
            or rate_per_second < 1
        ):
            raise ValueError(f"rate must be a positive integer, got {rate_per_second!r}")
        if kind != "ingest" and rate_per_second is not None:
            raise ValueError("only ingest tokens have a rate")
        secret = _TOKEN_PREFIX[kind] + secrets.token_urlsafe(32)
        info = TokenInfo(
            f"tok_{secrets.token_hex(6)}", kind, name, rate_per_second, _iso(time.time()), None
        )
        await self._insert_token(info, hash_secret(secret))
        return info, secret

    @abstractmethod
    async def _insert_token(self, info: TokenInfo, token_hash: str) -> None: ...

    @abstractmethod
    async def list_tokens(self) -> list[TokenInfo]:
        """Every token, revoked ones included, oldest first."""

    async def revoke_token(self, token_id: str) -> bool:
        """Revoke a token (and end its admin sessions); ``False`` if there is no such active
        token. Takes effect on the next request of every server process."""
        return await self._revoke(token_id, _iso(time.time()))

    @abstractmethod
    async def _revoke(self, token_id: str, now: str) -> bool: ...

    @abstractmethod
    async def find_token(self, secret: str) -> TokenInfo | None:
        """The token whose secret this is (revoked ones too), or ``None``."""

    # --- sessions ------------------------------------------------------------------------------

    async def create_session(self, token: TokenInfo) -> str:
        """Start an admin session for an active admin token; return the cookie value."""
        if token.kind != "admin" or not token.active:
            raise ValueError("only an active admin token can sign in")
        secret = secrets.token_urlsafe(32)
        now = time.time()
        await self._insert_session(
            hash_secret(secret), token.id, int((now + SESSION_SECONDS) * 1000), int(now * 1000)
        )
        return secret

    @abstractmethod
    async def _insert_session(
        self, session_hash: str, token_id: str, expires_at: int, now: int
    ) -> None: ...

    async def session_token(self, secret: str) -> TokenInfo | None:
        """The admin token of a live session (not expired, token not revoked), or ``None``."""
        return await self._session_token(hash_secret(secret), int(time.time() * 1000))

    @abstractmethod
    async def _session_token(self, session_hash: str, now: int) -> TokenInfo | None: ...

    @abstractmethod
    async def end_session(self, secret: str) -> None:
        """Sign out: delete the session (nothing happens if there is none)."""

    # --- admission -----------------------------------------------------------------------------

    async def admit(self, token: str, units: int) -> Hit:
        """Authenticate an ingest request and spend ``units`` events of its token's rate.

        Requests that arrive while a decision is being written wait and are decided together
        in the next transaction (one transaction per group of up to 1,000); the first request
        of a group writes it when its turn comes. Returns the hit with its :class:`Verdict`.
        Raises :class:`StorageError` if the store failed, in which case nothing of the group
        was admitted. A request cancelled while waiting leaves its group (unless the group is
        being written) and never holds up the others.
        """
        hit = Hit(hash_secret(token), units)
        rounds = self._rounds
        round_ = rounds[-1] if rounds else None
        if round_ is None or round_.sealed or len(round_.hits) >= _MAX_GROUP:
            round_ = _Round()
            rounds.append(round_)
            if len(rounds) == 1:
                round_.turn.set()  # nothing is being decided: its turn has come
        round_.hits.append(hit)
        try:
            while round_.hits[0] is not hit:
                decided = round_.decided
                await decided.wait()
                if round_.finished:
                    return _result(hit)
                # Woken because the first hit left: this one may be the first now.
            if not round_.turn.is_set():
                await round_.turn.wait()
        except BaseException:
            self._leave(round_, hit)
            raise
        # Shielded: a group half-decided would leave the other requests of it waiting.
        with anyio.CancelScope(shield=True):
            await anyio.lowlevel.checkpoint()  # let requests started in this turn join
            round_.sealed = True
            try:
                await self._decide_group(round_.hits)
            except BaseException:
                for other in round_.hits:
                    other.verdict = None
            round_.finished = True
            round_.decided.set()
            self._next(round_)
        return _result(hit)

    def _leave(self, round_: _Round, hit: Hit) -> None:
        """Withdraw a cancelled hit from a round not yet being decided. If it was the first,
        the others are woken so that the new first one waits for the turn; a round left empty
        is dropped, passing its turn on if it had come."""
        if round_.sealed:
            return  # its verdict is being decided all the same
        first = round_.hits[0] is hit
        round_.hits.remove(hit)
        if not round_.hits:
            self._next(round_)
        elif first:
            woken, round_.decided = round_.decided, anyio.Event()
            woken.set()

    def _next(self, over: _Round) -> None:
        """``over`` (decided, or left empty) is done with: the next round's turn if it had
        its turn, else it just leaves the queue."""
        rounds = self._rounds
        if over.turn.is_set():
            rounds.popleft()  # only the oldest round has its turn
            if rounds:
                rounds[0].turn.set()
        else:
            rounds.remove(over)

    async def _decide_group(self, group: list[Hit]) -> None:
        now = time.time()
        window = int(now)
        prune = now - self._last_prune > 1.0
        if prune:
            self._last_prune = now
        await self._admit_group(group, window, window - _WINDOW_KEEP_S if prune else None)

    @abstractmethod
    async def _admit_group(self, group: list[Hit], window: int, prune_before: int | None) -> None:
        """In one transaction: read the group's tokens and this window's counts, call
        :func:`_decide`, add the admitted events, and delete windows before ``prune_before``."""


def _result(hit: Hit) -> Hit:
    if hit.verdict is None:
        raise StorageError("the token check failed: the server store did not answer")
    return hit


# --- opening -----------------------------------------------------------------------------------


def server_file(path: str) -> str:
    """Where the server tables of the SQLite store ``path`` live: a file beside it
    (``telemetry.sqlite`` → ``telemetry.server.sqlite``).

    Not the store's own file: SQLite has one writer per file, and the rate windows are
    written as often as events are, so in one file the two writers would take turns through
    SQLite's busy handler, whose sleeps (1, 2, 5, ... 100 ms) cut throughput tenfold.
    """
    root, suffix = os.path.splitext(path)
    return f"{root}.server{suffix}" if suffix else f"{path}.server"


def open_server_store(
    url: str | None, *, default_rate: int = 1000, durable: bool = False
) -> ServerStore:
    """The server store for the team-store URL ``url`` (``None``: ``$BRICKRUN_DB_URL``, else
    the default SQLite file, exactly as :func:`brickrun.storage.open_storage` resolves it).

    ``durable`` makes every commit survive a power cut (the CLI's token changes); without it
    (the server) rate windows and sessions are committed without waiting for the disk.
    Raises :class:`StorageError` for a URL the storage layer would refuse.
    """
    if url is None:
        url = os.environ.get("BRICKRUN_DB_URL") or None
    if url is None:
        url = open_storage(None).url  # the default SQLite file's URL (not opened here)
    else:
        open_storage(url)  # the storage layer's checks and messages for a malformed URL
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        rest = url[len("sqlite:///") :].partition("?")[0]
        path = unquote(rest)
        from ._store_sqlite import SQLiteServerStore

        return SQLiteServerStore(
            None if path == ":memory:" else server_file(path),
            url=url,
            default_rate=default_rate,
            durable=durable,
        )
    shown = redact_url(url)
    parts = urlsplit(url)
    kept, schema = [], None
    for item in parts.query.split("&") if parts.query else []:
        name, _, value = item.partition("=")
        if unquote(name) == "schema":
            schema = unquote(value)
        else:
            kept.append(item)
    dsn = url
    if parts.query:
        dsn = url.replace(f"?{parts.query}", f"?{'&'.join(kept)}" if kept else "", 1)
    from ._store_postgres import PostgresServerStore

    return PostgresServerStore(dsn, schema, url=shown, default_rate=default_rate, durable=durable)
