"""`/hitl review`: admins decide the items of the review queue in a modal, one at a time.

The modal shows the next item waiting in review (``Store.next_review``), or with `/hitl review
ITEM_ID` any item (so an admin can relabel or remove any label in Slack, an imported one too):
its text, why it is there, the votes, the model's guess and the current label; the admin picks
a label, removes the label (the item is set aside) or skips it for now. A decision goes through
``Store.set_label`` / ``remove_label`` (kept in the label history, closing the item's reviews,
redrawing its question), and the modal moves on to the next item. The admin check is made
again on every submission: a crafted submission from someone else changes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.async_app import AsyncAck
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.errors import StoreError
from bot.runtime import Runtime
from bot.slack import blocks
from bot.slack.questions import label_set
from bot.slack.redraw import Redrawer
from bot.store import REVIEW_REASONS

logger = logging.getLogger(__name__)

REVIEW_CALLBACK = "hitl.review"
DECISION_BLOCK = "hitl.review.decision"
DECISION_ACTION = "hitl.review.choose"
SKIP, REMOVE, LABEL_PREFIX = "skip", "remove", "label:"


@dataclass(frozen=True)
class ReviewItem:
    """What the review modal shows of one item."""

    item_id: str
    text: str
    reasons: list[tuple[str, str]]  # (reason, detail)
    votes: dict[str, list[str]]
    label: str | None
    guess: tuple[str, float] | None
    labels: list[str]
    waiting: int
    meta: dict[str, Any] = field(default_factory=dict)


def review_view(item: ReviewItem | None, decided: int, skipped: list[str]) -> View:
    """The review modal on ``item``, or a closing note when nothing waits."""
    state = {"item": item.item_id if item else None, "decided": decided, "skipped": skipped}
    if item is None:
        return View(
            type="modal",
            callback_id=REVIEW_CALLBACK,
            title="Review",
            close="Done",
            private_metadata=json.dumps(state),
            blocks=[
                SectionBlock(
                    text=MarkdownTextObject(
                        text=f"✅ Nothing to review. You decided {decided} in this session."
                    )
                )
            ],
        )
    why = (
        "; ".join(
            f"{REVIEW_REASONS.get(reason, reason)}"
            + (f" ({blocks.escape_but_people(detail)})" if detail else "")
            for reason, detail in item.reasons
        )
        or "opened by its id (`/hitl review ID`), not waiting in review"
    )
    votes = " · ".join(
        f"{blocks.escape(label)}: {', '.join(f'<@{u}>' for u in users)}"
        for label, users in item.votes.items()
    )
    facts = [f"*Why:* {why}", f"*Votes:* {votes or 'none'}"]
    if item.guess is not None:
        facts.append(f"*Model:* {blocks.escape(item.guess[0])} ({item.guess[1]:.0%})")
    facts.append(f"*Label now:* {blocks.escape(item.label) if item.label else 'none'}")
    options = [
        Option(text="Skip for now", value=SKIP),
        Option(text="Remove the label (set the item aside)", value=REMOVE),
        *[
            Option(text=blocks.fit(label, 75), value=LABEL_PREFIX + label)
            for label in item.labels[: blocks.MAX_STATIC_OPTIONS - 2]
        ],
    ]
    body: list[Block] = [
        ContextBlock(elements=[MarkdownTextObject(text=f"{item.waiting} waiting in review")]),
        SectionBlock(text=MarkdownTextObject(text=blocks.cut(item.text, quote=True))),
        SectionBlock(text=MarkdownTextObject(text=blocks.fit("\n".join(facts)))),
        InputBlock(
            block_id=DECISION_BLOCK,
            label="Decision",
            element=StaticSelectElement(
                action_id=DECISION_ACTION, placeholder="Pick a label", options=options
            ),
        ),
    ]
    return View(
        type="modal",
        callback_id=REVIEW_CALLBACK,
        title="Review",
        submit="Decide",
        close="Done",
        private_metadata=json.dumps(state),
        blocks=body,
    )


def next_view(rt: Runtime, decided: int, skipped: list[str], item_id: str | None = None) -> View:
    """The next item waiting in review; with ``item_id``, that item (any item, an imported
    label's too), with its pending reasons if it has any."""
    if item_id is None:
        found = rt.store.next_review(exclude=skipped)
        if found is None:
            return review_view(None, decided, skipped)
        item_id, reasons = found["item_id"], found["reasons"]
    else:
        reasons = [
            (r["reason"], r["detail"]) for r in rt.store.reviews_of(item_id) if not r["decided_at"]
        ]
    item = rt.store.get_item(item_id) or {"text": "", "predicted_label": None, "meta": {}}
    guess = None
    if item.get("predicted_label") is not None:
        guess = (item["predicted_label"], float(item.get("confidence") or 0.0))
    return review_view(
        ReviewItem(
            item_id=item_id,
            text=item["text"],
            reasons=reasons,
            votes=rt.store.tally(item_id).votes,
            label=rt.store.current_label(item_id),
            guess=guess,
            labels=label_set(rt.settings, rt.store),
            waiting=rt.store.pending_review_count(),
            meta=item.get("meta") or {},
        ),
        decided,
        skipped,
    )


async def open_review(
    rt: Runtime, client: Any, trigger_id: str, item_id: str | None = None
) -> None:
    """The review modal on the next item in review, or on ``item_id`` (which must exist)."""
    await client.views_open(trigger_id=trigger_id, view=next_view(rt, 0, [], item_id))


async def on_review_submit(rt: Runtime, ack: AsyncAck, body: dict, view: dict) -> None:
    """Store the decision, then show the next item in the same modal."""
    user_id = body["user"]["id"]
    if not rt.is_admin(user_id):
        logger.warning("refused a review decision from %s: not an admin", user_id)
        await ack(response_action="errors", errors={DECISION_BLOCK: "Only admins can review."})
        return
    state = json.loads(view.get("private_metadata") or "{}")
    item_id = state.get("item")
    skipped = [s for s in state.get("skipped") or [] if isinstance(s, str)]
    decided = int(state.get("decided") or 0)
    selected = (
        view["state"]["values"]
        .get(DECISION_BLOCK, {})
        .get(DECISION_ACTION, {})
        .get("selected_option")
        or {}
    )
    choice = selected.get("value") or ""
    if not isinstance(item_id, str) or not choice:
        await ack(response_action="errors", errors={DECISION_BLOCK: "Pick a decision."})
        return
    pending = [r["reason"] for r in rt.store.reviews_of(item_id) if r["decided_at"] is None]
    why = "review: " + ", ".join(pending) if pending else "review"
    try:
        if choice == SKIP:
            skipped.append(item_id)
        elif choice == REMOVE:
            rt.store.remove_label(item_id, user_id=user_id, reason=why, action="review")
            decided += 1
        elif choice.startswith(LABEL_PREFIX):
            label = choice.removeprefix(LABEL_PREFIX)
            if label not in label_set(rt.settings, rt.store):
                await ack(
                    response_action="errors",
                    errors={DECISION_BLOCK: f"{label[:40]!r} is not in the label set any more."},
                )
                return
            rt.store.set_label(item_id, label, user_id=user_id, reason=why, action="review")
            decided += 1
        else:
            await ack(response_action="errors", errors={DECISION_BLOCK: "Pick a decision."})
            return
    except StoreError as exc:
        await ack(response_action="errors", errors={DECISION_BLOCK: str(exc)[:150]})
        return
    logger.info("review of item %s by %s: %s", item_id, user_id, choice.split(":")[0])
    await ack(response_action="update", view=next_view(rt, decided, skipped))
    await Redrawer.of(rt).soon()
