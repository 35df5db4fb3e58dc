"""Write batching: coalescing concurrent puts into one transaction, and deciding their outcomes.

:class:`WriteBatcher` groups the puts that are waiting into batches of up to
:data:`MAX_BATCH` puts (and :data:`MAX_BATCH_BYTES`) and hands each batch to the backend;
:func:`plan_batch` is what the backend calls inside its transaction to merge the batch's puts,
in order, on top of the stored rows.
Both are the same code for SQLite and PostgreSQL, which is why the backends behave alike.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

import anyio
import anyio.lowlevel

from ..errors import RecordTooLargeError, StorageError, ThrottledError
from ._records import (
    DatabaseLimits,
    Record,
    decode_json,
    describe_batch,
    encode_json,
    format_millis,
    json_size,
    merge,
)

__all__ = [
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "PendingPut",
    "RowWrite",
    "StoredRow",
    "TokenBuckets",
    "WriteBatcher",
    "keys_to_read",
    "outbox_keys",
    "plan_batch",
    "raise_copy",
    "raise_failure",
]

MAX_BATCH = 4096
"""At most this many puts share one transaction: enough that per-transaction costs (fsync,
locks, round trips, index pages rewritten at every commit) fade (``put_many`` with 3,200
records in flight wrote ~15% more records/s on SQLite than with batches of 1,000)..."""

MAX_BATCH_BYTES = 4 * 1024 * 1024
"""...and at most about this many bytes of values, so that one batch's rows stay small in
memory whatever the records' size."""


class PendingPut:
    """One write waiting for its batch (from ``put`` or one item of ``put_many``).

    ``text`` is the value's compact JSON and ``size`` its UTF-8 size; ``now`` is the write
    time in milliseconds since the epoch and ``now_text`` the same time formatted (by
    :func:`format_millis` unless given); ``outbox`` asks for an outbox row in the same
    transaction, written only if the put itself is (see :func:`outbox_keys`); ``wants_record``
    asks :func:`plan_batch` to keep what :meth:`record` needs (a put whose caller ignores its
    record skips reading the stored row).

    The batch's writer sets ``error`` (refused, or the transaction failed) or ``written``.
    """

    __slots__ = (
        "created_at",
        "data",
        "data_text",
        "database",
        "error",
        "key",
        "now",
        "now_text",
        "outbox",
        "size",
        "strategy",
        "text",
        "user",
        "wants_record",
        "written",
    )

    def __init__(
        self,
        database: str,
        key: str,
        text: str,
        size: int,
        strategy: str,
        user: str | None,
        now: int,
        outbox: bool = False,
        wants_record: bool = True,
        now_text: str | None = None,
    ) -> None:
        self.database = database
        self.key = key
        self.text = text
        self.size = size
        self.strategy = strategy
        self.user = user
        self.now = now
        self.now_text = format_millis(now) if now_text is None else now_text
        self.outbox = outbox
        self.wants_record = wants_record
        self.written = False
        self.error: StorageError | None = None
        # What the record holds after this put: its JSON text when known, else the merged
        # value; set by plan_batch only for puts that want their record.
        self.data_text: str | None = None
        self.data: Any = None
        self.created_at = ""

    def reset(self) -> None:
        """Forget the outcome of a transaction that rolled back (before it runs again)."""
        self.written, self.error, self.data_text, self.data = False, None, None, None

    def record(self) -> Record:
        """The record as this put left it (only after it was written with ``wants_record``).

        Decoded here, in the caller's task, rather than inside the batch's transaction, which
        every put of the batch waits for and other processes' writers queue behind.
        """
        return {
            "id": self.key,
            # A fresh decoding, or built by merge from such decodings: nobody else holds it,
            # except that puts to one key in one batch may share unchanged sub-values.
            "data": decode_json(self.data_text) if self.data_text is not None else self.data,
            "merge_strategy": self.strategy,
            "created_at": self.created_at,
            "updated_at": self.now_text,
        }


@dataclass(slots=True)
class StoredRow:
    """A record as a backend read it inside the batch's transaction.

    ``text`` is its data as JSON (decoded only if a put merges into it); ``size`` is an upper
    bound of the compact encoding's size (PostgreSQL prints JSONB with spaces).
    """

    text: str
    size: int
    merge_strategy: str
    created_at: str
    updated_at: str


class RowWrite(NamedTuple):
    """A row the backend must insert or update (``created_at`` is kept on update)."""

    database: str
    key: str
    data_json: str
    merge_strategy: str
    created_at: str
    updated_at: str


class TokenBuckets:
    """``writes_per_second_per_user``: one token bucket per (database, user).

    Buckets live in the backend instance, so a limit holds per process (per backend) and N
    processes writing as one user may reach N times the rate together. The clock is the puts'
    ``now``, so replays on a virtual clock throttle in virtual time; a clock going backwards
    refills nothing.
    """

    _PRUNE_AT = 10_000

    def __init__(self) -> None:
        # (database, user) -> (tokens, time of the last take, rate)
        self._buckets: dict[tuple[str, str], tuple[float, float, float]] = {}

    def take(self, database: str, user: str, rate: float, now: float) -> float | None:
        """Spend one token; ``None`` if there was one, else the seconds until there is."""
        burst = max(1.0, rate)
        tokens, last, _ = self._buckets.get((database, user), (burst, now, rate))
        tokens = min(burst, tokens + max(0.0, now - last) * rate)
        if tokens < 1.0:
            self._buckets[(database, user)] = (tokens, max(now, last), rate)
            return (1.0 - tokens) / rate
        if len(self._buckets) >= self._PRUNE_AT:
            self._prune(now)
        self._buckets[(database, user)] = (tokens - 1.0, max(now, last), rate)
        return None

    def _prune(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: forgetting it changes nothing.
        self._buckets = {
            bucket: (tokens, last, rate)
            for bucket, (tokens, last, rate) in self._buckets.items()
            if tokens + (now - last) * rate < max(1.0, rate)
        }

    def refund(self, spent: Iterable[tuple[str, str]]) -> None:
        """Give back tokens spent by a batch that did not commit."""
        for bucket in spent:
            if bucket in self._buckets:
                tokens, last, rate = self._buckets[bucket]
                self._buckets[bucket] = (tokens + 1.0, last, rate)


@dataclass(slots=True)
class _KeyState:
    """A key's record while a batch is planned; ``value`` is decoded from ``text`` lazily."""

    value: Any
    text: str | None  # the exact compact JSON of value when known (or the stored text)
    decoded: bool
    size: int  # an upper bound of the compact JSON's size; exact when text came from a put
    merge_strategy: str
    created_at: str
    updated_at: str
    dirty: bool = False

    def current(self) -> Any:
        if not self.decoded:
            assert self.text is not None
            self.value, self.decoded = decode_json(self.text), True
        return self.value


def keys_to_read(ops: list[PendingPut], *, records: bool = True) -> dict[str, list[str]]:
    """The keys whose stored rows :func:`plan_batch` needs, per database, each once.

    A key needs its row if a put to it merges (the stored data), or, with ``records``, if a
    put to it wants its record (the stored ``created_at``; a backend that learns it from the
    write itself passes ``records=False``). A key only replaced needs nothing else: the
    backend inserts it or, if it exists, updates it keeping ``created_at``.
    """
    wanted: dict[str, dict[str, None]] = {}
    for op in ops:
        if op.strategy != "replace" or (records and op.wants_record):
            keys = wanted.get(op.database)
            if keys is None:
                keys = wanted[op.database] = {}
            keys[op.key] = None
    return {database: list(keys) for database, keys in wanted.items()}


def plan_batch(
    ops: list[PendingPut],
    existing: Mapping[tuple[str, str], StoredRow],
    limits: Mapping[str, DatabaseLimits],
    buckets: TokenBuckets,
) -> tuple[list[RowWrite], list[tuple[str, str]]]:
    """Decide every op's outcome and return (rows to write, throttle tokens spent).

    Ops apply in order; a later op on the same key merges on top of the earlier ones. A refused
    op (throttled, too large) gets its error and changes nothing, so the ops after it see the
    record as if it had never been attempted. Ops that succeed are marked ``written`` and,
    if they want their record, keep its JSON text or merged value and ``created_at`` (see
    :meth:`PendingPut.record`; puts to one key in one batch may share unchanged sub-values:
    copying a large record for every put would make hot keys quadratic). ``existing`` must
    hold every stored row of :func:`keys_to_read` and ``limits`` every database the ops
    touch, both read under the transaction's lock. A key missing from ``existing`` is
    planned as new: its row's ``created_at`` is only used if it is inserted, and a backend
    that did not read it (``keys_to_read(records=False)``) must set the ``created_at`` of its
    puts that want their records to the stored one.
    """
    states: dict[tuple[str, str], _KeyState | None] = {}
    spent: list[tuple[str, str]] = []
    # The ingest case, first: a key replaced once in the batch, never stored before, by a put
    # that nobody throttles and that wants no record. Its row is the put's own, with no state
    # to keep: ~3x cheaper per op, and this loop holds the GIL the event loop wants.
    fresh: dict[tuple[str, str], RowWrite] = {}
    for op in ops:
        ident = (op.database, op.key)
        if (
            op.strategy == "replace"
            and not op.wants_record
            and ident not in fresh
            and ident not in states
            and ident not in existing
        ):
            limit = limits[op.database]
            if (limit.writes_per_second_per_user is None or op.user is None) and (
                op.size <= limit.max_record_bytes
            ):
                # tuple.__new__: a NamedTuple's own constructor is a Python function.
                fresh[ident] = tuple.__new__(
                    RowWrite, (op.database, op.key, op.text, "replace", op.now_text, op.now_text)
                )
                op.written = True
                continue
        if ident in fresh:
            # A later put to a key planned as fresh: give it its state and plan it the long way.
            planned = fresh.pop(ident)
            states[ident] = _KeyState(
                None,
                planned.data_json,
                False,
                json_size(planned.data_json),
                "replace",
                planned.created_at,
                planned.updated_at,
                True,
            )
        if ident in states:
            state = states[ident]
        else:
            row = existing.get(ident)
            state = states[ident] = (
                None
                if row is None
                else _KeyState(
                    None,
                    row.text,
                    False,
                    row.size,
                    row.merge_strategy,
                    row.created_at,
                    row.updated_at,
                )
            )
        limit = limits[op.database]
        rate = limit.writes_per_second_per_user
        if rate is not None and op.user is not None:
            wait = buckets.take(op.database, op.user, rate, op.now / 1000)
            if wait is not None:
                op.error = ThrottledError(
                    f"user {op.user!r} exceeded {rate:g} writes per second on database "
                    f"{op.database!r}; retry in {max(wait, 0.001):.3f} s",
                    database=op.database,
                )
                continue
            spent.append((op.database, op.user))

        value: Any = None
        text: str | None
        if state is None or op.strategy == "replace":
            text, size = op.text, op.size
        else:
            try:
                value = merge(state.current(), decode_json(op.text), op.strategy)
            except RecursionError:
                op.error = StorageError(
                    f"record {op.key!r} in database {op.database!r} is nested too deeply to "
                    f"merge; nothing was written",
                    database=op.database,
                )
                continue
            # The encoding of a merge is never longer than both inputs' encodings together,
            # so the exact size (a full re-encoding) is only needed near the limit.
            text, size = None, state.size + op.size
            if size > limit.max_record_bytes:
                text = encode_json(value)
                size = json_size(text)
        if size > limit.max_record_bytes:
            op.error = RecordTooLargeError(
                f"record {op.key!r} in database {op.database!r} would be {size} bytes "
                f"(JSON-encoded), over the database's limit of {limit.max_record_bytes} "
                f"bytes; nothing was written",
                database=op.database,
            )
            continue
        if state is None:
            state = states[ident] = _KeyState(
                None, text, False, size, op.strategy, op.now_text, op.now_text
            )
        else:
            state.value, state.text, state.decoded = value, text, value is not None
            state.size, state.merge_strategy, state.updated_at = size, op.strategy, op.now_text
        state.dirty = True
        op.written = True
        if op.wants_record:
            op.data_text, op.data, op.created_at = text, value, state.created_at

    writes = list(fresh.values())
    writes += [
        RowWrite(
            database,
            key,
            state.text if state.text is not None else encode_json(state.value),
            state.merge_strategy,
            state.created_at,
            state.updated_at,
        )
        for (database, key), state in states.items()
        if state is not None and state.dirty
    ]
    return writes, spent


def outbox_keys(ops: list[PendingPut]) -> list[tuple[str, str]]:
    """The (database, key) pairs that need an outbox row after :func:`plan_batch`: those of
    puts with ``outbox`` that were written, each once, sorted (so concurrent batches lock
    outbox rows in one order). A refused put queues nothing."""
    return sorted({(op.database, op.key) for op in ops if op.outbox and op.written})


class _Batch:
    """Puts written in one transaction; ``done`` is set once they all have their outcome."""

    __slots__ = ("captain", "done", "failure", "ops", "sealed", "size", "turn")

    def __init__(self) -> None:
        self.ops: list[PendingPut] = []
        self.size = 0  # the ops' values' bytes
        self.done = anyio.Event()
        # Set when the batch before is done, before its ``done``: the captain wakes ahead of
        # that batch's puts, so the writer thread is idle as briefly as possible.
        self.turn = anyio.Event()
        self.sealed = False  # writing started: no put may join or leave any more
        self.captain = True  # False once the put that was to write this batch was cancelled
        self.failure: StorageError | None = None  # why the transaction did not commit


class WriteBatcher:
    """Coalesces concurrent submissions into batches written one at a time, in arrival order.

    A submission is one ``put`` or one ``put_many`` call: a list of ops that always lands in
    one batch, contiguous and in its order, and is waited for as a whole. There is no
    background task. Submissions join the newest batch until it would exceed
    :data:`MAX_BATCH` ops or :data:`MAX_BATCH_BYTES`, or is being written (a submission larger
    than that gets a batch of its own). The first submission of a batch is its *captain*: it
    waits until the batch before has been written (its turn comes ahead of that batch's
    submissions, so the writer is idle as briefly as possible), or when nothing was being
    written yields once so that submissions started in the same event-loop turn can join,
    then writes the batch (shielded from cancellation, so that no batch is left half-done)
    and wakes every submission in it. So the callers themselves are the writer: nothing needs
    an owner task group, a backend can be opened and closed from any task, and no task is left
    running that nobody awaits. A submission cancelled before its batch is sealed is withdrawn
    whole; if it was the captain, the writer of the batch before writes this one too.
    Cancelled later, it is written all the same.
    """

    def __init__(self, write: Callable[[list[PendingPut]], Awaitable[None]]) -> None:
        self._write = write
        self._batches: deque[_Batch] = deque()  # not yet done, oldest first

    async def submit(self, ops: list[PendingPut]) -> StorageError | None:
        """Queue ``ops`` (not empty), wait until their batch has been written or has failed;
        return why the batch's transaction failed, or ``None`` if it committed.

        Each op's own outcome is on it: ``written``, or ``error`` (a refusal, or the failure).
        """
        batches = self._batches
        batch = batches[-1] if batches else None
        size = ops[0].size if len(ops) == 1 else sum(op.size for op in ops)
        if (
            batch is not None
            and not batch.sealed
            and len(batch.ops) + len(ops) <= MAX_BATCH
            and batch.size + size <= MAX_BATCH_BYTES
        ):
            batch.ops += ops
            batch.size += size
            try:
                await batch.done.wait()
            except BaseException:
                if not batch.sealed:
                    _withdraw(batch, ops)
                raise
            return batch.failure

        batch = _Batch()
        batch.ops += ops
        batch.size = size
        batches.append(batch)
        if len(batches) == 1:
            # Nothing is being written: yield once so that submissions started in this
            # event-loop turn join the batch, rather than each writing its own.
            batch.turn.set()
            await self._run(batch, settle=True)
            return batch.failure
        try:
            await batch.turn.wait()
        except BaseException:
            if batch.turn.is_set():
                await self._run(batch)  # our turn had come: the batch must be written
            else:
                _withdraw(batch, ops)
                batch.captain = False
            raise
        # The batch gathered submissions all the while the one before was written: write it
        # now, without yielding to the tasks woken by that one's end.
        await self._run(batch)
        return batch.failure

    async def _run(self, batch: _Batch, *, settle: bool = False) -> None:
        """Write ``batch``, then any following batches whose captain was cancelled; give the
        next captain its turn. ``settle``: yield once before sealing the batch."""
        with anyio.CancelScope(shield=True):
            while True:
                if settle:
                    await anyio.lowlevel.checkpoint()
                batch.sealed = True
                try:
                    if batch.ops:
                        batch.failure = await self._write_batch(batch.ops)
                finally:
                    self._batches.popleft()
                    following = self._batches[0] if self._batches else None
                    if following is not None:
                        following.turn.set()
                    batch.done.set()
                if following is None or following.captain:
                    return
                batch, settle = following, False

    async def _write_batch(self, batch: list[PendingPut]) -> StorageError | None:
        try:
            await self._write(batch)
        except StorageError as error:
            return _fail(batch, error)
        except Exception as error:  # a bug must not leave puts hanging
            failure = StorageError(f"writing {describe_batch(len(batch))} failed: {error!r}")
            failure.__cause__ = error
            return _fail(batch, failure)
        return None

    async def drain(self) -> None:
        """Wait until every queued put has been written."""
        while self._batches:
            await self._batches[-1].done.wait()


def _withdraw(batch: _Batch, ops: list[PendingPut]) -> None:
    batch.size -= sum(op.size for op in ops)
    if len(ops) == 1:
        batch.ops.remove(ops[0])
    else:
        leaving = {id(op) for op in ops}
        batch.ops[:] = [op for op in batch.ops if id(op) not in leaving]


def _fail(batch: list[PendingPut], error: StorageError) -> StorageError:
    for op in batch:
        op.reset()
        op.error = error
    return error


def raise_copy(error: StorageError) -> NoReturn:
    """Raise a copy of ``error``: one exception object raised in many tasks would collect all
    their tracebacks."""
    raise copy.copy(error) from error.__cause__


def raise_failure(op: PendingPut) -> NoReturn:
    """Raise why ``op`` was not written (a copy of its error)."""
    if op.error is not None:
        raise_copy(op.error)
    raise StorageError(f"put of {op.key!r} in database {op.database!r} was not written")
