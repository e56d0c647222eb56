"""The labeling modal: one item at a time, moving to the next on each answer."""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot import blocks
from bot.questions import build_question
from bot.runtime import Runtime


async def open_labeling_modal(
    rt: Runtime, client: AsyncWebClient, trigger_id: str, user_id: str
) -> None:
    item_id = rt.store.next_for_user(user_id)
    question = build_question(rt.store, rt.settings, item_id) if item_id else None
    view = blocks.modal_view(question, rt.store.waiting_count(), answered=0)
    await client.views_open(trigger_id=trigger_id, view=view)


async def next_in_modal(rt: Runtime, client: AsyncWebClient, body: dict, counted: bool) -> None:
    view: dict[str, Any] = body.get("view") or {}
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except json.JSONDecodeError:
        meta = {}
    answered = int(meta.get("answered") or 0) + (1 if counted else 0)
    user_id = body["user"]["id"]
    item_id = rt.store.next_for_user(user_id)
    question = build_question(rt.store, rt.settings, item_id) if item_id else None
    await client.views_update(
        view_id=view.get("id"),
        hash=view.get("hash"),
        view=blocks.modal_view(question, rt.store.waiting_count(), answered),
    )
