"""Storing what ``/api/predict`` receives, many requests to one commit.

``Intake`` stores the items of the requests that arrive together in one transaction: the first
request's item is written at once, and those that come while it is written go together in the
next one. The commit does not wait for the disk (fsync, several milliseconds on the event
loop's thread, where click acks wait too): the item survives the process failing, and is lost
only if the machine fails before the next synced commit (any answer's); the producer then
sends it again and gets the same id. Answers stay synced: an acknowledged click is on disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from bot import eventloop
from bot.store import Store


class Intake:
    """Owns the items waiting to be stored for ``/api/predict``, and the task storing them."""

    def __init__(self, store: Callable[[], Store], source: str) -> None:
        self.store = store
        self.source = source
        self.waiting: list[tuple[Sequence[Any], asyncio.Future[set[str]]]] = []
        self.writer: asyncio.Task[None] | None = None

    async def add(self, items: Sequence[Any]) -> set[str]:
        """Store ``items`` (each with ``id``, ``text``, ``meta``, ``callback_url``) with those of
        concurrent calls; return the ids of ``items`` that were new. Raises
        ``StoredWithAnotherText`` when some of them have an id stored with another text."""
        done: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        self.waiting.append((items, done))
        if self.writer is None or self.writer.done():
            self.writer = eventloop.background(self._write(), name="hitl-api-intake")
        return await done

    async def _write(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            store = self.store()
            try:
                with store.unsynced():  # no fsync on the loop: lost only with the machine
                    added = store.add_api_items(
                        [it for items, _ in batch for it in items], self.source
                    )
            except Exception as exc:  # noqa: BLE001 - each request answers it in its own way
                for _, done in batch:
                    if not done.done():  # a request cancelled meanwhile wants no answer
                        done.set_exception(exc)
            else:
                created = set(added)
                conflicts = set(added.conflicts)  # places in the batch's items, all requests'
                start = 0
                # A request cancelled meanwhile (its future with it) wants no answer: setting
                # one raised InvalidStateError, which ended this task and left the rest of the
                # batch, stored, unanswered for ever.
                for items, done in batch:
                    places = range(start, start + len(items))
                    start += len(items)
                    if done.done():
                        continue
                    mine = [n - places.start for n in places if n in conflicts]
                    ours = {it.id for n, it in enumerate(items) if n not in mine} & created
                    if mine:
                        done.set_exception(StoredWithAnotherText(ours, mine))
                    else:
                        done.set_result(ours)
            await asyncio.sleep(0)  # the requests woken here run before the next commit


class StoredWithAnotherText(Exception):
    """Raised by ``Intake.add`` when an id of its items is stored with another text (stored
    before, or by a request written just before in the same commit: ``Store.add_api_items``):
    those items were neither stored nor given their callback_url. ``conflicts``: their places
    in the items; ``created``: the ids of the others that were new."""

    def __init__(self, created: set[str], conflicts: list[int]) -> None:
        super().__init__(f"{len(conflicts)} item(s) with an id stored with another text")
        self.created = created
        self.conflicts = conflicts


INTAKE = web.AppKey("intake", Intake)  # the app's Intake, set by bot.api.routes.add_routes
