"""Admission (``ServerStore.admit``): grouping, failures and cancelled requests.

The token and rate rules themselves are tested through HTTP in ``test_ingest.py``; here a
store whose transaction is a gate the test opens shows how concurrent requests are grouped.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from brickrun.errors import StorageError
from brickrun.server._store import Hit, ServerStore, TokenInfo, Verdict, decide, hash_secret

pytestmark = pytest.mark.anyio

TOKEN = "bri_test-token"


class GatedStore(ServerStore):
    """A server store in memory whose admission transaction waits for ``gate`` to be set
    (a fresh gate per transaction) and records the size of every group it decides."""

    def __init__(self) -> None:
        super().__init__("memory://gated")
        self.tokens = {hash_secret(TOKEN): TokenInfo("tok_1", "ingest", "t", None, "", None)}
        self.groups: list[int] = []
        self.gate = anyio.Event()
        self.fail = False

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def _insert_token(self, info: TokenInfo, token_hash: str) -> None:
        raise NotImplementedError

    async def list_tokens(self) -> list[TokenInfo]:
        return list(self.tokens.values())

    async def _revoke(self, token_id: str, now: str) -> bool:
        raise NotImplementedError

    async def find_token(self, secret: str) -> TokenInfo | None:
        return self.tokens.get(hash_secret(secret))

    async def _insert_session(self, *args: Any) -> None:
        raise NotImplementedError

    async def _session_token(self, session_hash: str, now: int) -> TokenInfo | None:
        return None

    async def end_session(self, secret: str) -> None:
        pass

    async def _admit_group(self, group: list[Hit], window: int, prune_before: int | None) -> None:
        self.groups.append(len(group))
        await self.gate.wait()
        self.gate = anyio.Event()
        if self.fail:
            raise StorageError("the server store is down")
        decide(group, self.tokens, {}, 10**9)


async def _admit_all(store: GatedStore, count: int, results: list[Any]) -> None:
    async def one() -> None:
        try:
            results.append((await store.admit(TOKEN, 1)).verdict)
        except StorageError as error:
            results.append(error)

    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(one)


async def _settle() -> None:
    for _ in range(20):
        await anyio.lowlevel.checkpoint()


async def test_requests_arriving_during_a_transaction_share_the_next_one() -> None:
    store = GatedStore()
    results: list[Any] = []
    with anyio.fail_after(5):  # a request left waiting would hang the test
        async with anyio.create_task_group() as group:
            group.start_soon(_admit_all, store, 3, results)
            await _settle()
            group.start_soon(_admit_all, store, 50, results)  # arrive while the first 3 wait
            await _settle()
            store.gate.set()
            await _settle()
            store.gate.set()
    assert store.groups == [3, 50]
    assert results == [Verdict.ADMITTED] * 53


async def test_a_failed_transaction_fails_its_group_and_the_next_group_goes_on() -> None:
    store = GatedStore()
    results: list[Any] = []
    with anyio.fail_after(5):  # a request left waiting would hang the test
        async with anyio.create_task_group() as group:
            group.start_soon(_admit_all, store, 4, results)
            await _settle()
            group.start_soon(_admit_all, store, 2, results)
            await _settle()
            store.fail = True
            store.gate.set()
            await _settle()
            store.fail = False
            store.gate.set()
    assert store.groups == [4, 2]
    assert [type(r) for r in results[:4]] == [StorageError] * 4
    assert results[4:] == [Verdict.ADMITTED] * 2


@pytest.mark.parametrize(
    ("order", "groups"),
    [("C..", [2, 2, 1]), (".C.", [2, 2, 1]), ("CCC", [2, 1])],
    ids=["first-of-group", "middle-of-group", "whole-group"],
)
async def test_cancelled_requests_never_hold_up_the_others(order: str, groups: list[int]) -> None:
    """Clients that go away while their requests wait for a transaction (``C``: the first
    of a group, which was to write it; one in the middle; or the whole group) leave it; the
    others (``.``) and later requests are decided as usual."""
    store = GatedStore()
    first: list[Any] = []
    others: list[Any] = []
    later: list[Any] = []
    with anyio.fail_after(5):  # a request left waiting would hang the test
        async with anyio.create_task_group() as group:
            group.start_soon(_admit_all, store, 2, first)  # the group being written
            await _settle()
            leaving: list[anyio.CancelScope] = []

            async def goes_away() -> None:
                with anyio.CancelScope() as scope:
                    leaving.append(scope)
                    await store.admit(TOKEN, 1)

            for who in order:  # the next group, in this order
                if who == "C":
                    group.start_soon(goes_away)
                else:
                    group.start_soon(_admit_all, store, 1, others)
                await _settle()
            for scope in leaving:
                scope.cancel()
            await _settle()
            store.gate.set()  # the first group is written...
            await _settle()
            group.start_soon(_admit_all, store, 1, later)  # ...a request comes in meanwhile...
            await _settle()
            if order != "CCC":
                store.gate.set()  # ...the second group is written
                await _settle()
            store.gate.set()  # and the later request's
    assert store.groups == groups
    assert first == [Verdict.ADMITTED] * 2
    assert others == [Verdict.ADMITTED] * order.count(".")
    assert later == [Verdict.ADMITTED]
