"""The outbox: which records still have to leave the store, as values shared by both backends.

``put(..., outbox=True)`` stores a record and an outbox row for it in one transaction (a
batch commits both or neither). An exporter then works the rows through a small state machine,
identical on SQLite and PostgreSQL::

    put(outbox=True) ──> pending ──claim──> leased ──ack──> (row deleted: exported)
                          ^   ^               │  │
                          │   └───retry───────┘  └──dead──> dead ──requeue──> pending
                          └── lease expired (the claimer crashed or hung)

A row is keyed by (database, key): putting a record again while its row waits re-queues the
row (a dead row becomes pending with no attempts), and a row whose record changed after it was
claimed is not deleted by that claim's ack, so the newest version is always sent. ``delete``
removes the record's row too: a deleted record never leaves. ``cleanup`` keeps every record
that has a row (pending, leased or dead): an unexported record is never deleted by retention.

A claim *leases* its rows until ``now + lease_seconds``; claimed rows are not due again before
then. ``ack``/``retry``/``dead`` apply only to rows still held under the same lease, so an
exporter that lost its lease (it stalled past the lease, and another exporter claimed the rows)
cannot mark them: the other exporter's outcome wins. A claimer that dies between claim and ack
leaves its rows leased; they are due again when the lease ends. Nothing is lost and no row is
ever half-marked, because each transition is one statement in one transaction.

Every claim counts an attempt (so a row that crashes its exporter runs out of attempts rather
than crash-looping); ``retry(..., count_attempt=False)`` gives that attempt back, for failures
that were not the row's fault. Times are whole milliseconds since the epoch in the tables.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..errors import StorageError
from ._records import Record

__all__ = [
    "MAX_ERROR_CHARS",
    "DeadLetter",
    "OutboxItem",
    "OutboxState",
    "OutboxStatus",
    "build_status",
    "check_items",
    "from_millis",
    "short_error",
]

MAX_ERROR_CHARS = 500
"""Reasons and errors are cut to this many characters: they are for people, not payloads."""


class OutboxState(enum.Enum):
    """An outbox row's state as :meth:`StorageBackend.outbox_status` counts it."""

    PENDING = "pending"
    """Waiting to be sent: due now, or scheduled for a later attempt."""
    LEASED = "leased"
    """Claimed by an exporter whose lease has not ended (in flight)."""
    DEAD = "dead"
    """Given up on, with a reason; kept (and its record kept) until requeued."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One claimed outbox row and the record it points at.

    ``attempts`` counts this claim. ``record`` is the record as stored when claimed, or
    ``None`` if it no longer exists. ``lease`` and ``version`` identify the claim; pass the item
    back unchanged to ``outbox_ack``/``outbox_retry``/``outbox_dead``.
    """

    id: int
    database: str
    key: str
    attempts: int
    record: Record | None
    lease: str = field(repr=False)
    version: int = field(repr=False)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead outbox row: which record, after how many attempts, why, and since when."""

    database: str
    key: str
    attempts: int
    reason: str
    dead_since: datetime


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """What :meth:`StorageBackend.outbox_status` reports for one database or for all.

    ``counts`` has every :class:`OutboxState` value as a key. ``oldest_pending`` is when the
    oldest row not yet exported (pending or leased) was queued, and ``oldest_pending_age`` its
    age in seconds at the time of the report. ``last_export`` is the time of the latest
    acknowledgement and ``exported`` how many rows were acknowledged in all (both kept per
    database, since acknowledged rows are deleted). ``dead_letters`` lists at most
    ``dead_letter_limit`` dead rows, oldest first.
    """

    counts: dict[str, int]
    oldest_pending: datetime | None
    oldest_pending_age: float | None
    last_export: datetime | None
    exported: int
    dead_letters: list[DeadLetter]

    @property
    def unexported(self) -> int:
        """Rows not exported yet: pending, leased and dead."""
        return sum(self.counts.values())


def check_items(items: Iterable[OutboxItem], action: str) -> list[OutboxItem]:
    """``items`` as a list, after checking each is an :class:`OutboxItem`."""
    checked = list(items)
    for item in checked:
        if not isinstance(item, OutboxItem):
            raise StorageError(
                f"{action} takes the OutboxItem objects outbox_claim returned, got {item!r}"
            )
    return checked


def short_error(text: object) -> str:
    """``text`` as a one-line string of at most :data:`MAX_ERROR_CHARS` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_millis(millis: int) -> datetime:
    """An aware UTC datetime for milliseconds since the epoch."""
    return _EPOCH + timedelta(milliseconds=millis)


def build_status(
    counts: Sequence[tuple[str, int]],
    oldest: int | None,
    exports: tuple[int | None, int],
    dead: Sequence[tuple[str, str, int, str | None, int]],
    now: int,
) -> OutboxStatus:
    """An :class:`OutboxStatus` from what a backend read in one snapshot.

    ``counts``: (state, count) pairs, the leased ones already told apart as ``"leased"``;
    ``oldest``: the earliest ``queued_at`` of the rows not dead; ``exports``: (last export,
    rows exported); ``dead``: (database, key, attempts, last_error, dead since) rows.
    """
    by_state = {state.value: 0 for state in OutboxState}
    for state, count in counts:
        by_state[state] = by_state.get(state, 0) + int(count)
    last, exported = exports
    return OutboxStatus(
        counts=by_state,
        oldest_pending=from_millis(oldest) if oldest is not None else None,
        oldest_pending_age=max(0.0, (now - oldest) / 1000) if oldest is not None else None,
        last_export=from_millis(last) if last is not None else None,
        exported=int(exported),
        dead_letters=[
            DeadLetter(database, key, int(attempts), reason or "", from_millis(int(since)))
            for database, key, attempts, reason, since in dead
        ],
    )
