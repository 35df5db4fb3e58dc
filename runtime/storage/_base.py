"""The storage seam: the :class:`StorageBackend` interface that both backends implement.

The public methods here check their arguments and then call the backend's ``_``-prefixed
hooks, so argument errors are identical on SQLite and PostgreSQL. What a write stores (merging,
size limits, throttling, batching) is decided by :mod:`._batch`, also shared; a backend only
moves rows. The record types are defined in :mod:`._records` and re-exported here; the outbox
(records waiting to be exported) is described in :mod:`._outbox`.
"""

from __future__ import annotations

import enum
import math
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self, cast, overload

import anyio

from ..errors import RecordNotFoundError, StorageError
from ._batch import PendingPut, WriteBatcher, raise_copy, raise_failure
from ._groups import EventGroup
from ._outbox import (
    DeadLetter,
    OutboxItem,
    OutboxState,
    OutboxStatus,
    check_items,
    short_error,
)
from ._records import (
    MERGE_STRATEGIES,
    DatabaseInfo,
    DatabaseLimits,
    Record,
    check_database_id,
    check_key,
    check_strategy,
    encode_value,
    format_millis,
    merge,
    to_millis,
)

__all__ = [
    "MERGE_STRATEGIES",
    "DatabaseInfo",
    "DatabaseLimits",
    "DeadLetter",
    "EventGroup",
    "OutboxItem",
    "OutboxState",
    "OutboxStatus",
    "PutItem",
    "Record",
    "StorageBackend",
    "merge",
]

DEFAULT_LEASE_SECONDS = 60.0
"""How long a claim holds its outbox rows unless the claimer says otherwise."""


class PutItem(NamedTuple):
    """One write of :meth:`StorageBackend.put_many`; a plain tuple of the same fields (the
    last two optional) is accepted too."""

    database: str
    key: str
    value: Any
    merge_strategy: str = "replace"
    now: datetime | None = None
    """The write time; ``None``: the ``now`` of the ``put_many`` call."""


class _State(enum.Enum):
    NEW = "not open yet (call open() or use 'async with')"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class StorageBackend(ABC):
    """A connection to a store of team databases (records keyed by database id and key).

    Use it as ``async with open_storage(url) as storage: ...`` or call ``open``/``close``. An
    instance belongs to one event loop and shares nothing with other instances, so two runtimes
    in one process never interfere.

    ``put`` calls made concurrently are coalesced into one transaction per batch and each returns
    once its batch committed; a put that returned is durable. Per-put refusals
    (:class:`RecordTooLargeError`, :class:`ThrottledError`) fail only that put; a failed commit
    fails every put of the batch, and nothing of that batch is stored. ``put_many`` submits
    many puts at once, never split across transactions (see there).
    """

    url: str
    """The store's URL for display: any password is replaced by ``***``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._state = _State.NEW
        self._opening = anyio.Lock()
        self._batcher = WriteBatcher(self._write_batch)
        # Database ids already checked: puts name the same few databases over and over.
        self._checked_ids: set[str] = set()

    # lifecycle

    async def open(self) -> None:
        """Connect and bring the schema up to date. Safe when several processes open at once."""
        async with self._opening:
            if self._state is _State.OPEN:
                return
            if self._state is not _State.NEW:
                raise StorageError(f"storage {self.url} was closed; open a new backend")
            await self._open()  # cleans up after itself if it fails; open() may be retried
            self._state = _State.OPEN

    async def close(self) -> None:
        """Wait for pending puts to commit, then disconnect. Idempotent."""
        if self._state in (_State.CLOSING, _State.CLOSED):
            return
        was_open = self._state is _State.OPEN
        self._state = _State.CLOSING
        try:
            if was_open:
                await self._batcher.drain()
        finally:
            self._state = _State.CLOSED
            await self._close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            raise StorageError(f"storage {self.url} is {self._state.value}")

    def _check_database(self, database: object) -> None:
        check_database_id(database)
        if len(self._checked_ids) < 10_000:
            self._checked_ids.add(cast(str, database))

    # records

    async def put(
        self,
        database: str,
        key: str,
        value: Any,
        merge_strategy: str = "replace",
        *,
        user: str | None = None,
        now: datetime | None = None,
        outbox: bool = False,
    ) -> Record:
        """Merge ``value`` (a JSON object) into the record ``key`` of ``database``; return it.

        The database is created with default limits on its first write. ``user`` is who
        writes, for ``writes_per_second_per_user`` (``None`` is never throttled); ``now`` is the
        write time (default: the current time; naive means UTC), which sets ``updated_at``,
        ``created_at`` on the first write, and drives the throttle's clock. ``outbox=True``
        also queues the record for export (:mod:`._outbox`) in the same transaction: the put
        returns once both committed, and a refused or failed put queues nothing.

        The returned record's data is a fresh decoding, except that puts to one key coalesced
        into one batch may share unchanged sub-values: treat returned records as read-only.
        A caller with many records to write should use :meth:`put_many` (one wait for all,
        no records decoded unless asked for).

        Raises :class:`StorageError` for bad arguments or a failed commit,
        :class:`RecordTooLargeError` and :class:`ThrottledError` for refused writes.
        """
        if type(database) is not str or database not in self._checked_ids:
            self._check_database(database)
        check_key(database, key)
        if merge_strategy not in MERGE_STRATEGIES:
            check_strategy(merge_strategy)
        text, size = encode_value(database, key, value)
        if user is not None and not isinstance(user, str):
            raise StorageError(f"user must be a string or None, got {user!r}", database=database)
        millis = to_millis(now)
        if self._state is not _State.OPEN:
            self._check_open()
        op = PendingPut(database, key, text, size, merge_strategy, user, millis, outbox is True)
        await self._batcher.submit([op])
        if not op.written:
            raise_failure(op)
        return op.record()

    @overload
    async def put_many(
        self,
        items: Iterable[PutItem | tuple[Any, ...]],
        *,
        user: str | None = None,
        now: datetime | None = None,
        outbox: bool = False,
        records: Literal[False] = False,
    ) -> list[StorageError | None]: ...

    @overload
    async def put_many(
        self,
        items: Iterable[PutItem | tuple[Any, ...]],
        *,
        user: str | None = None,
        now: datetime | None = None,
        outbox: bool = False,
        records: Literal[True],
    ) -> list[Record | StorageError]: ...

    async def put_many(
        self,
        items: Iterable[PutItem | tuple[Any, ...]],
        *,
        user: str | None = None,
        now: datetime | None = None,
        outbox: bool = False,
        records: bool = False,
    ) -> list[StorageError | None] | list[Record | StorageError]:
        """Write many records as one submission: exactly as if each item were ``put`` in
        order, with one wait for all of them.

        Each item is a :class:`PutItem` or a plain tuple ``(database, key, value[,
        merge_strategy[, now]])``; an item's ``now`` (``None``: the call's) overrides the
        call's ``now``, which defaults to the current time, read once per call. ``user`` and
        ``outbox`` apply to every item, as in :meth:`put`. Items may name several databases
        and repeat keys: a later item merges on top of the earlier ones.

        All items go into one transaction, together and in order (possibly with other puts
        before or after them, never between them), so that concurrent writers see all of
        them or none, and the call returns once it committed. An item that would be refused
        on its own is refused alone: bad arguments (a database id, key, merge strategy,
        value or ``now`` that :meth:`put` would reject), :class:`RecordTooLargeError`,
        :class:`ThrottledError`; the items after it see the record as if it had never been
        attempted.

        Returns one entry per item, in order: ``None`` for a written item and its
        :class:`StorageError` for a refused one; with ``records=True``, the written item's
        :class:`Record` (as :meth:`put` returns it) instead of ``None``. Records are only
        read and decoded when asked for, which makes the default cheaper.

        Raises :class:`StorageError`, and writes nothing, when the call itself is wrong (an
        item that is not a tuple of 3 to 5 fields, a bad ``user``, ``now`` or ``items``) or
        the transaction did not commit. Cancelled before its batch started writing, nothing
        of it is written; cancelled later, all of it is (like :meth:`put`).
        """
        if user is not None and not isinstance(user, str):
            raise StorageError(f"user must be a string or None, got {user!r}")
        millis = to_millis(now)
        queue, wants_record = outbox is True, records is True
        try:
            entries = list(items)
        except TypeError:
            raise StorageError(
                f"items must be an iterable of (database, key, value[, merge_strategy[, now]])"
                f" tuples, got {type(items).__name__}"
            ) from None
        self._check_open()
        outcomes: list[Any] = [None] * len(entries)
        ops: list[PendingPut] = []
        positions: list[int] = []
        # Items of one call mostly share their time (one object, or the call's): it is
        # converted and formatted once per distinct object, not per item.
        last_when: object = None
        when, when_text = millis, format_millis(millis)
        for index, item in enumerate(entries):
            if not isinstance(item, tuple) or not 3 <= len(item) <= 5:
                raise StorageError(
                    f"item {index} of put_many must be a (database, key, value[, "
                    f"merge_strategy[, now]]) tuple, got {_describe(item)}; nothing was written"
                )
            database, key, value, *rest = item
            try:
                if type(database) is not str or database not in self._checked_ids:
                    self._check_database(database)
                check_key(database, key)
                strategy = rest[0] if rest else "replace"
                if strategy not in MERGE_STRATEGIES:
                    check_strategy(strategy)
                text, size = encode_value(database, key, value)
                moment = rest[1] if len(rest) == 2 else None
                if moment is not last_when:
                    when = millis if moment is None else to_millis(moment)
                    when_text, last_when = format_millis(when), moment
            except StorageError as error:
                outcomes[index] = error
                continue
            ops.append(
                PendingPut(
                    database, key, text, size, strategy, user, when, queue, wants_record, when_text
                )
            )
            positions.append(index)
        if ops:
            failure = await self._batcher.submit(ops)
            if failure is not None:
                raise_copy(failure)
            for index, op in zip(positions, ops, strict=True):
                if not op.written:
                    outcomes[index] = op.error
                elif wants_record:
                    outcomes[index] = op.record()
        return outcomes

    async def get(self, database: str, key: str) -> Record | None:
        """The record ``key`` of ``database``, or ``None`` if there is none."""
        check_database_id(database)
        check_key(database, key)
        self._check_open()
        return await self._get(database, key)

    async def get_or_raise(self, database: str, key: str) -> Record:
        """Like :meth:`get`, but a missing record raises :class:`RecordNotFoundError`."""
        record = await self.get(database, key)
        if record is None:
            raise RecordNotFoundError(
                f"no record with key {key!r} in database {database!r}", database=database
            )
        return record

    async def delete(self, database: str, key: str) -> bool:
        """Delete one record and its outbox row, if any (it will not be exported); ``True``
        if the record existed."""
        check_database_id(database)
        check_key(database, key)
        self._check_open()
        return await self._delete(database, key)

    async def list_records(
        self,
        database: str,
        *,
        limit: int | None = None,
        offset: int = 0,
        since: datetime | None = None,
    ) -> list[Record]:
        """Records ordered by ``created_at`` then key; ``since`` keeps ``created_at >= since``."""
        check_database_id(database)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise StorageError(f"limit must be a non-negative integer or None, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise StorageError(f"offset must be a non-negative integer, got {offset!r}")
        since_text = format_millis(to_millis(since)) if since is not None else None
        self._check_open()
        return await self._list_records(database, limit, offset, since_text)

    async def group_events(
        self, database: str, *, since: datetime | None = None
    ) -> list[EventGroup]:
        """The telemetry records of ``database`` (created at or after ``since``, as in
        :meth:`list_records`) grouped inside the store, as one snapshot: see
        :class:`EventGroup` for which records are grouped and by what.

        What daily aggregates read: no record is decoded whole, so it costs a fraction of
        :meth:`list_records` (see ``bench/aggregate.py``). Groups come in no particular
        order, and records with equal fields may be split over several groups (a value
        spelled differently in JSON, say): merge them by their fields. Groups may share
        decoded values: treat them as read-only. A database that does not exist has none.
        """
        check_database_id(database)
        since_text = format_millis(to_millis(since)) if since is not None else None
        self._check_open()
        return await self._group_events(database, since_text)

    async def count(self, database: str) -> int:
        """How many records ``database`` holds (0 for a database that does not exist)."""
        check_database_id(database)
        self._check_open()
        return await self._count(database)

    # databases

    async def list_databases(self) -> list[DatabaseInfo]:
        """Every database (written to, or given limits), ordered by name."""
        self._check_open()
        return await self._list_databases()

    async def set_limits(self, database: str, limits: DatabaseLimits) -> None:
        """Store ``limits`` for ``database`` (creating it); they apply to the next batch."""
        check_database_id(database)
        if not isinstance(limits, DatabaseLimits):
            raise StorageError(f"limits must be a DatabaseLimits, got {limits!r}")
        self._check_open()
        await self._set_limits(database, limits)

    async def get_limits(self, database: str) -> DatabaseLimits:
        """The limits of ``database`` (the defaults for a database that does not exist)."""
        check_database_id(database)
        self._check_open()
        return await self._get_limits(database) or DatabaseLimits()

    async def cleanup(self, database: str, *, now: datetime | None = None) -> int:
        """Delete records last updated more than ``retention_days`` before ``now``; how many.

        A record with an outbox row (pending, leased or dead: not exported yet) is kept,
        however old: retention never deletes unexported data.
        """
        check_database_id(database)
        millis = to_millis(now)
        self._check_open()
        return await self._cleanup(database, millis)

    # outbox (see ._outbox for the state machine)

    async def outbox_claim(
        self,
        limit: int,
        *,
        database: str | None = None,
        now: datetime | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> list[OutboxItem]:
        """Lease up to ``limit`` due outbox rows (of ``database``, or of any) until ``now +
        lease_seconds``; return them, with their records, in the order they became due.

        Due: pending with ``next_attempt_at <= now``, including rows whose lease ended. Each
        claimed row's ``attempts`` grows by one. Concurrent claims, also from other processes
        and hosts, never return the same row while its lease lasts (SQLite: one write
        transaction; PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so claimers do not wait on each
        other).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise StorageError(f"limit must be a positive integer, got {limit!r}")
        if database is not None:
            check_database_id(database)
        if (
            isinstance(lease_seconds, bool)
            or not isinstance(lease_seconds, int | float)
            or not math.isfinite(lease_seconds)
            or lease_seconds <= 0
        ):
            raise StorageError(f"lease_seconds must be a positive number, got {lease_seconds!r}")
        millis = to_millis(now)
        self._check_open()
        lease = secrets.token_hex(8)
        until = millis + max(1, round(lease_seconds * 1000))
        return await self._outbox_claim(limit, database, millis, until, lease)

    async def outbox_ack(self, items: Iterable[OutboxItem], *, now: datetime | None = None) -> int:
        """Mark ``items`` exported: delete their rows; return how many were deleted.

        Rows no longer held under the item's lease are left alone (another claimer owns them
        now). A row whose record was put again after the claim stays queued, due at once, so
        that the newer version is sent too. ``now`` is recorded as the last export time.
        """
        checked = check_items(items, "outbox_ack")
        millis = to_millis(now)
        self._check_open()
        return await self._outbox_ack(checked, millis) if checked else 0

    async def outbox_retry(
        self,
        items: Iterable[OutboxItem],
        *,
        next_attempt_at: datetime,
        error: str,
        count_attempt: bool = True,
    ) -> int:
        """Release ``items`` to be claimed again at ``next_attempt_at``, remembering ``error``
        (one line, at most 500 characters: never a payload). With ``count_attempt=False`` the
        claim's attempt is given back. Returns how many rows were still held and released."""
        checked = check_items(items, "outbox_retry")
        millis = to_millis(next_attempt_at)
        self._check_open()
        if not checked:
            return 0
        return await self._outbox_retry(checked, millis, short_error(error), count_attempt)

    async def outbox_dead(
        self, items: Iterable[OutboxItem], reason: str, *, now: datetime | None = None
    ) -> int:
        """Move ``items`` to the dead-letter state with ``reason`` (one line, at most 500
        characters: never a payload); return how many rows were still held and moved. Dead
        rows are never claimed, and their records never cleaned up, until requeued."""
        checked = check_items(items, "outbox_dead")
        millis = to_millis(now)
        self._check_open()
        return await self._outbox_dead(checked, short_error(reason), millis) if checked else 0

    async def outbox_requeue(
        self, database: str | None = None, *, now: datetime | None = None
    ) -> int:
        """Make the dead rows (of ``database``, or all) pending again with no attempts, due at
        ``now``; return how many."""
        if database is not None:
            check_database_id(database)
        millis = to_millis(now)
        self._check_open()
        return await self._outbox_requeue(database, millis)

    async def outbox_status(
        self,
        database: str | None = None,
        *,
        now: datetime | None = None,
        dead_letter_limit: int = 100,
    ) -> OutboxStatus:
        """Counts by state, the oldest unexported row's age, the last export and the dead
        letters with their reasons, for ``database`` or for all (see :class:`OutboxStatus`)."""
        if database is not None:
            check_database_id(database)
        if (
            isinstance(dead_letter_limit, bool)
            or not isinstance(dead_letter_limit, int)
            or dead_letter_limit < 0
        ):
            raise StorageError(
                f"dead_letter_limit must be a non-negative integer, got {dead_letter_limit!r}"
            )
        millis = to_millis(now)
        self._check_open()
        return await self._outbox_status(database, millis, dead_letter_limit)

    # hooks for the backends

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None:
        """Release every connection; called once, also after a failed ``open``."""

    @abstractmethod
    async def _write_batch(self, ops: list[PendingPut]) -> None:
        """Apply ``ops`` (:class:`._batch.PendingPut`) in one transaction.

        Inside the transaction, read the stored rows of :func:`._batch.keys_to_read` and the
        databases' limits, decide every op's outcome and the rows to write with
        :func:`._batch.plan_batch`, write them (an upsert keeps ``created_at``), and queue
        :func:`._batch.outbox_keys`. Raise :class:`StorageError` if the transaction did not
        commit.
        """

    @abstractmethod
    async def _get(self, database: str, key: str) -> Record | None: ...

    @abstractmethod
    async def _delete(self, database: str, key: str) -> bool: ...

    @abstractmethod
    async def _list_records(
        self, database: str, limit: int | None, offset: int, since: str | None
    ) -> list[Record]: ...

    @abstractmethod
    async def _group_events(self, database: str, since: str | None) -> list[EventGroup]:
        """:meth:`group_events` in one statement (``since`` formatted as ``created_at`` is);
        rows become groups through :class:`._groups.GroupDecoder`."""

    @abstractmethod
    async def _count(self, database: str) -> int: ...

    @abstractmethod
    async def _list_databases(self) -> list[DatabaseInfo]: ...

    @abstractmethod
    async def _set_limits(self, database: str, limits: DatabaseLimits) -> None: ...

    @abstractmethod
    async def _get_limits(self, database: str) -> DatabaseLimits | None: ...

    @abstractmethod
    async def _cleanup(self, database: str, now: int) -> int:
        """Apply ``retention_days``, keeping records with an outbox row; ``now`` is in
        milliseconds since the epoch."""

    @abstractmethod
    async def _outbox_claim(
        self, limit: int, database: str | None, now: int, until: int, lease: str
    ) -> list[OutboxItem]:
        """Lease due rows under ``lease`` until ``until`` (ms) in one transaction."""

    @abstractmethod
    async def _outbox_ack(self, items: list[OutboxItem], now: int) -> int: ...

    @abstractmethod
    async def _outbox_retry(
        self, items: list[OutboxItem], next_attempt_at: int, error: str, count_attempt: bool
    ) -> int: ...

    @abstractmethod
    async def _outbox_dead(self, items: list[OutboxItem], reason: str, now: int) -> int: ...

    @abstractmethod
    async def _outbox_requeue(self, database: str | None, now: int) -> int: ...

    @abstractmethod
    async def _outbox_status(self, database: str | None, now: int, limit: int) -> OutboxStatus: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} ({self._state.name.lower()})>"


def _describe(item: object) -> str:
    if isinstance(item, tuple):
        return f"a tuple of {len(item)}"
    return type(item).__name__
