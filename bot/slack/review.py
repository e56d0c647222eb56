"""`/hitl review`: admins decide the items of the review queue in a modal, one at a time.

The modal shows the next item waiting in review (``Store.next_review``), or with `/hitl review
ITEM_ID` any item (so an admin can relabel or remove any label in Slack, an imported one too):
its text, why it is there, the votes, the model's guess and the current label; the admin picks
a label, removes the label (the item is set aside) or skips it for now. A decision goes through
``Store.set_label`` / ``remove_label`` (kept in the label history, closing the item's reviews,
redrawing its question), and the modal moves on to the next item. The admin check is made
again on every submission: a crafted submission from someone else changes nothing. Nor does a
submission on an item someone decided after the modal was drawn (two admins at once, the
votes): the modal shows it again as it is now, and a second submission changes it deliberately.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.async_app import AsyncAck
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    ExternalDataSelectElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    OptionGroup,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot import eventloop
from bot.errors import StoreError
from bot.labelset import model_guesses, resolve_label
from bot.runtime import Runtime, open_window
from bot.slack import blocks
from bot.slack.questions import ITEM_REMOVED, label_set
from bot.slack.redraw import Redrawer
from bot.store import REVIEW_REASONS
from bot.words import person

logger = logging.getLogger(__name__)

REVIEW_CALLBACK = "hitl.review"
DECISION_BLOCK = "hitl.review.decision"
DECISION_ACTION = "hitl.review.choose"
DECISION_SEARCH_ACTION = "hitl.review.search"  # the type-ahead of a very large label set
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
    seen: dict[str, Any] = field(default_factory=dict)  # ``drawn_on``: checked on submission
    note: str = ""  # why the modal shows this item again (decided meanwhile)


METADATA_LIMIT = 3000  # Slack's limit for a view's private_metadata


def metadata(state: dict[str, Any]) -> str:
    """The modal's state as its private_metadata, within Slack's 3,000 characters: past
    that, the oldest skipped items are forgotten (they may come back in this session) rather
    than the view refused and the modal closed without a word."""
    text = json.dumps(state)
    skipped = list(state.get("skipped") or [])
    while len(text) > METADATA_LIMIT and skipped:
        skipped = skipped[max(1, len(skipped) // 8) :]  # a few at a time, oldest first
        text = json.dumps({**state, "skipped": skipped})
    return text


def review_view(item: ReviewItem | None, decided: int, skipped: list[str], note: str = "") -> View:
    """The review modal on ``item``, or a closing note when nothing waits (``note``: why the
    modal moved on, on top of it; an item's own is ``item.note``)."""
    state = {"item": item.item_id if item else None, "decided": decided, "skipped": skipped}
    if item is not None and item.seen:
        state["seen"] = item.seen
    if item is None:
        return View(
            type="modal",
            callback_id=REVIEW_CALLBACK,
            title="Review",
            close="Done",
            private_metadata=metadata(state),
            blocks=[
                *([SectionBlock(text=MarkdownTextObject(text=blocks.fit(note)))] if note else []),
                SectionBlock(
                    text=MarkdownTextObject(
                        text=f"✅ Nothing to review. You decided {decided} in this session."
                    )
                ),
            ],
        )
    why = (
        "; ".join(
            blocks.escape(REVIEW_REASONS.get(reason, reason))
            + (f" ({why_detail(reason, detail)})" if detail else "")
            for reason, detail in item.reasons
        )
        or "opened by its id (`/hitl review ID`), not waiting in review"
    )
    votes = " · ".join(
        f"{blocks.name_mrkdwn(label)}: {', '.join(blocks.person(u) for u in users)}"
        for label, users in item.votes.items()
    )
    facts = [f"*Why:* {why}", f"*Votes:* {votes or 'none'}"]
    if item.guess is not None:
        facts.append(f"*Model:* {blocks.name_mrkdwn(item.guess[0])} ({item.guess[1]:.0%})")
    facts.append(f"*Label now:* {blocks.name_mrkdwn(item.label) if item.label else 'none'}")
    body: list[Block] = [
        ContextBlock(elements=[MarkdownTextObject(text=f"{item.waiting} waiting in review")]),
        *([SectionBlock(text=MarkdownTextObject(text=blocks.fit(item.note)))] if item.note else []),
        SectionBlock(text=MarkdownTextObject(text=blocks.cut(item.text, quote=True))),
        # each fact a block of its own: a gold question answered wrong by 40 people names each
        # answer on the *Why* line, past a block's 3,000 characters, and one cut of the four
        # would take the votes, the model's guess and the label now out of the window
        *(SectionBlock(text=MarkdownTextObject(text=blocks.fit(fact))) for fact in facts),
    ]

    def modal(decision: InputBlock) -> View:
        return View(
            type="modal",
            callback_id=REVIEW_CALLBACK,
            title="Review",
            submit="Decide",
            close="Done",
            private_metadata=metadata(state),
            blocks=[*body, decision],
        )

    listed = decision_select(item.labels)
    if listed is not None:
        view = modal(InputBlock(block_id=DECISION_BLOCK, label="Decision", element=listed))
        if len(json.dumps(view.to_dict()).encode()) <= blocks.VIEW_BUDGET:
            return view
    return modal(decision_search(len(item.labels)))


# Who a ``gold_miss`` detail names: a Slack user id, or the pseudonym `hitl people anonymise`
# wrote in its place (``<@former-1>``; ``bot.store.people``'s pseudonyms).
_WHO = r"[A-Za-z0-9][A-Za-z0-9._-]*"
# A ``gold_miss`` detail as ``Store._review_gold_miss`` writes it: voters' mentions, each at
# an entry's start, and labels escaped (``gold_miss_label``): nothing else Slack acts on.
_GOLD_MISS = re.compile(rf"(?:(?:^|(?<=, ))<@{_WHO}>|&(?:amp|lt|gt);|[^<>&])*")
_MENTION = re.compile(rf"(^|, )<@({_WHO})>")
# A person in a ``gold_miss`` detail an older version wrote (its labels not escaped): ``<@U…>
# label`` at its start or after ", " (a label shaped like a mention follows a mention and a
# space, so it stays text; one holding ", <@U…> " cannot be told from a voter).
_VOTER = re.compile(rf"(^|, )&lt;@({_WHO})&gt;(?= )")


def why_detail(reason: str, detail: str) -> str:
    """A review's stored detail as the *Why* line shows it: escaped, labels and all, so a
    label shaped like a mention (``<@U…>``) or a link stays text, as on the *Votes* line.
    Only a missed gold answer's detail names people (``<@U…> label, …; gold: G``, from
    ``Store._review_gold_miss``), its labels escaped when it was written: shown as it is,
    each voter a mention and nothing else live. One an older version wrote, its labels as
    they are, is escaped, each voter it starts an entry with kept a mention. A voter
    `hitl people anonymise` replaced is shown by their pseudonym (``former-1``), as the
    *Votes* line shows them, not as a mention Slack would draw broken."""
    if reason == "gold_miss" and _GOLD_MISS.fullmatch(detail):
        return _gold_kept(_MENTION.sub(lambda m: m[1] + person(m[2]), detail))
    text = blocks.escape(detail)
    if reason != "gold_miss":
        return text
    return _gold_kept(_VOTER.sub(lambda m: m[1] + person(m[2]), text))


GOLD_MISS_ROOM = 2400  # of the *Why* line's 3,000 characters (``blocks.TEXT_LIMIT``)


def _gold_kept(shown: str) -> str:
    """A missed gold answer's detail within ``GOLD_MISS_ROOM``: the answers it names cut
    ("…"), its gold label ("; gold: G", at its end) kept, so a cut of the *Why* line never
    takes out the one label the answers missed."""
    head, sep, gold = shown.rpartition("; gold: ")
    if len(shown) <= GOLD_MISS_ROOM or not sep:
        return shown
    return blocks.fit(head, GOLD_MISS_ROOM - len(sep + gold)) + sep + gold


def _label_digest(label: str | None) -> str:
    return hashlib.sha256(json.dumps(label).encode()).hexdigest()[:12]  # metadata stays small


def _last_decision_id(rt: Runtime, item_id: str) -> int | None:
    """The id of the item's last label change that is a decision: a rename or merge of the
    label set (``hitl labels rename|merge``) is not one, it carries the decision over."""
    return rt.store.last_decision_id(item_id)


def drawn_on(rt: Runtime, item_id: str) -> dict[str, Any]:
    """What a decision in the modal is made on: the item's label and its last decision (in the
    label history). Two admins may review the same item at once; a submission whose item no
    longer matches was decided meanwhile, and must not silently overwrite that decision."""
    label = rt.store.current_label(item_id)
    return {"label": _label_digest(label), "change": _last_decision_id(rt, item_id)}


def still_as_drawn(rt: Runtime, item_id: str, seen: dict[str, Any]) -> bool:
    """Whether nobody decided ``item_id`` since the modal drew it (``seen``, ``drawn_on``).
    A rename or merge of its label meanwhile is no decision: the label it had then counts as
    its successor now (``label_aliases``), as a click on an old button does."""
    now = drawn_on(rt, item_id)
    if seen.get("change") != now["change"]:
        return False
    if seen.get("label") == now["label"]:
        return True
    label = rt.store.current_label(item_id)
    if label is None:
        return False
    renamed = [old for old, new in rt.store.label_aliases().items() if new == label]
    return seen.get("label") in {_label_digest(old) for old in renamed}


def decided_meanwhile(rt: Runtime, item_id: str, seen: dict[str, Any] | None) -> str:
    """Who decided ``item_id`` since the modal showed it (``seen``), and how. ``None``: a
    modal an older hitl drew, which did not record what it showed (``on_review_submit``)."""
    label = rt.store.current_label(item_id)
    last = _last_decision_id(rt, item_id)
    by = None
    if last is not None and last != (seen or {}).get("change"):
        by = rt.store.label_change_by(last)
    when = "meanwhile" if seen is not None else "last"
    if by is not None:
        who = f"<@{by}>" if by[:1] in ("U", "W") and by.isalnum() else blocks.escape(by)
        what = f"*{blocks.name_mrkdwn(label)}*" if label else "removed the label"
        decided = f"{who} decided this item {when} ({what})"
    else:
        what = f"*{blocks.name_mrkdwn(label)}*" if label else "*none*"
        decided = f"The votes decided this item {when} ({what})"
    if seen is None:
        decided = (
            "This window was opened before hitl was upgraded, so it cannot tell whether the"
            f" item was decided after it showed it. {decided}"
        )
    return f":warning: {decided}. Your decision was not saved: pick again to change it, or skip."


def decision_select(labels: list[str]) -> StaticSelectElement | None:
    """Skip, Remove and every label in force. Up to 100 options they are one list; above,
    groups of 100 (Slack takes 100 groups of 100), so no label is out of reach (Slack filters
    a select's options as the admin types). None when they are more than Slack takes: the
    window has the type-ahead (``decision_search``), as it has when they pass the 250 kB
    Slack takes for a window (``review_view``)."""
    actions = _actions()
    options = [Option(text=blocks.fit(label, 75), value=LABEL_PREFIX + label) for label in labels]
    if len(actions) + len(options) <= blocks.MAX_STATIC_OPTIONS:
        return StaticSelectElement(
            action_id=DECISION_ACTION, placeholder="Pick a label", options=actions + options
        )
    size = blocks.MAX_STATIC_OPTIONS
    groups = [OptionGroup(label="Decision", options=actions)] + [
        OptionGroup(label=f"Labels {n + 1}–{n + len(chunk)}", options=chunk)
        for n in range(0, len(options), size)
        if (chunk := options[n : n + size])
    ]
    if len(groups) > blocks.MAX_OPTION_GROUPS:
        return None
    return StaticSelectElement(
        action_id=DECISION_ACTION, placeholder="Pick a label", option_groups=groups
    )


def _actions() -> list[Option]:
    return [
        Option(text="Skip for now", value=SKIP),
        Option(text="Remove the label (set the item aside)", value=REMOVE),
    ]


def decision_search(n_labels: int) -> InputBlock:
    """The decision as a type-ahead whose options the bot serves (``decision_options``): a
    label set whose every label in one select would make the window larger than Slack takes."""
    return InputBlock(
        block_id=DECISION_BLOCK,
        label="Decision",
        element=ExternalDataSelectElement(
            action_id=DECISION_SEARCH_ACTION,
            placeholder="Type part of a label",
            min_query_length=0,
        ),
        hint=(
            f"{n_labels:,} labels, too many to list here: type part of one to find it."
            " Skip and Remove are always offered first."
        ),
    )


def decision_options(labels: list[str], query: str) -> list[dict]:
    """The type-ahead decision's options for what the admin typed: Skip and Remove, then up to
    100 labels in force that hold it (``blocks.label_options``: case, accents, ``_`` and
    ``-`` folded), best first, as option groups."""
    found = blocks.label_options(labels, query, limit=len(labels))
    shown = found[: blocks.MAX_STATIC_OPTIONS]
    if not found:
        heading = "No label holds what you typed"
    elif len(found) > len(shown):
        heading = f"Labels: {len(shown)} of {len(found):,} found; type more"
    else:
        heading = "Labels" if not query.strip() else f"Labels found: {len(found)}"
    groups = [OptionGroup(label="Decision", options=_actions())]
    if shown:
        options = [
            Option(text=blocks.fit(o["value"], 75), value=LABEL_PREFIX + o["value"]) for o in shown
        ]
        groups.append(OptionGroup(label=heading, options=options))
    else:
        groups[0] = OptionGroup(label=heading, options=_actions())
    return [group.to_dict() for group in groups]


async def waiting_in_review(rt: Runtime) -> int:
    """How many items wait in review, for the modal's "N waiting in review": a count over every
    open review (6,377 at a million items: 51,600 SQLite steps, 16-36 ms), read again after
    each decision, so in a worker thread on a connection of its own (``Store.apart``), never
    on the event loop's; on the loop's only when that is refused (its file lost: it says so)."""

    def read() -> int:
        with rt.store.apart() as store:
            return store.pending_review_count()

    try:
        return await eventloop.to_thread(read)
    except StoreError:
        return rt.store.pending_review_count()


async def next_view(
    rt: Runtime,
    decided: int,
    skipped: list[str],
    item_id: str | None = None,
    note: str = "",
) -> View:
    """The next item waiting in review; with ``item_id``, that item (any item, an imported
    label's too), with its pending reasons if it has any, and ``note`` on top. What it reads
    on the loop's connection is found by key (the oldest open review, the item's rows); the
    count of those waiting is read apart (``waiting_in_review``)."""
    waiting = await waiting_in_review(rt)
    if item_id is None:
        found = rt.store.next_review(exclude=skipped)
        if found is None:
            return review_view(None, decided, skipped, note)
        item_id, reasons = found["item_id"], found["reasons"]
    else:
        reasons = [
            (r["reason"], r["detail"]) for r in rt.store.reviews_of(item_id) if not r["decided_at"]
        ]
    item = rt.store.get_item(item_id) or {"text": "", "predicted_label": None, "meta": {}}
    guess = None  # the model's guess under the set in force now, as the producer API says it
    if item.get("confidence") is not None:
        label, confidence, _ = model_guesses(rt.store, item, rt.settings.labels)
        if label is not None:
            guess = (label, float(confidence or 0.0))
    return review_view(
        ReviewItem(
            item_id=item_id,
            text=item["text"],
            reasons=reasons,
            votes=rt.store.tally(item_id).votes,
            label=rt.store.current_label(item_id),
            guess=guess,
            labels=label_set(rt.settings, rt.store),
            waiting=waiting,
            meta=item.get("meta") or {},
            seen=drawn_on(rt, item_id),
            note=note,
        ),
        decided,
        skipped,
    )


async def open_review(
    rt: Runtime, client: Any, trigger_id: str, item_id: str | None = None
) -> None:
    """The review modal on the next item in review, or on ``item_id`` (which must exist)."""
    await open_window(client, trigger_id, await next_view(rt, 0, [], item_id))


async def on_review_submit(rt: Runtime, ack: AsyncAck, body: dict, view: dict) -> None:
    """Store the decision, then show the next item in the same modal."""

    def plain(text: str, limit: int) -> str:
        """``text`` as written (an error under the menu is plain text: no escapes), cut to
        ``limit`` characters between whole characters as people see them, with "…" when cut."""
        if len(text) <= limit:
            return text
        return text[: blocks.grapheme_end(text, limit - 1)].rstrip() + "…"

    user_id = body["user"]["id"]
    if not rt.is_admin(user_id):
        logger.warning("refused a review decision from %s: not an admin", user_id)
        await ack(response_action="errors", errors={DECISION_BLOCK: "Only admins can review."})
        return
    state = json.loads(view.get("private_metadata") or "{}")
    item_id = state.get("item")
    skipped = [s for s in state.get("skipped") or [] if isinstance(s, str)]
    decided = int(state.get("decided") or 0)
    decision = view["state"]["values"].get(DECISION_BLOCK, {})
    selected = (  # the list's or the type-ahead's (``decision_search``), whichever was drawn
        (decision.get(DECISION_ACTION) or {}).get("selected_option")
        or (decision.get(DECISION_SEARCH_ACTION) or {}).get("selected_option")
        or {}
    )
    choice = selected.get("value") or ""
    if not isinstance(item_id, str) or not choice:
        await ack(response_action="errors", errors={DECISION_BLOCK: "Pick a decision."})
        return
    if choice != SKIP and rt.store.get_item(item_id) is None:  # deleted (`hitl delete`)
        gone = f":warning: {ITEM_REMOVED} Your decision on it was not saved."
        logger.info("review of item %s by %s: the item was deleted", item_id, user_id)
        await ack(response_action="update", view=await next_view(rt, decided, skipped, note=gone))
        return
    seen = state.get("seen")
    if not isinstance(seen, dict):  # drawn by a hitl before 3bcc42b: when it showed it is unknown
        seen = None
    if choice != SKIP and (
        not still_as_drawn(rt, item_id, seen)
        if seen is not None
        else _last_decision_id(rt, item_id) is not None
    ):
        # Decided by someone else since this modal was drawn (or maybe since, for a modal that
        # did not record what it showed): show it as it is now; a second submission of the
        # redrawn modal is a deliberate change.
        note = decided_meanwhile(rt, item_id, seen)
        view = await next_view(rt, decided, skipped, item_id, note)
        await ack(response_action="update", view=view)
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
            picked = choice.removeprefix(LABEL_PREFIX)
            # A label renamed or merged since the modal was drawn counts for its successor.
            label = resolve_label(rt.settings, rt.store, picked)
            if label is None:
                said = f'"{plain(picked, 80)}" is not in the label set any more; pick another.'
                await ack(response_action="errors", errors={DECISION_BLOCK: said})
                return
            rt.store.set_label(item_id, label, user_id=user_id, reason=why, action="review")
            decided += 1
        else:
            await ack(response_action="errors", errors={DECISION_BLOCK: "Pick a decision."})
            return
    except StoreError as exc:
        await ack(response_action="errors", errors={DECISION_BLOCK: plain(str(exc), 150)})
        return
    logger.info("review of item %s by %s: %s", item_id, user_id, choice.split(":")[0])
    await ack(response_action="update", view=await next_view(rt, decided, skipped))
    if choice != SKIP:
        rt.labels_changed()  # a decision resolves the item: a refresh may be due, as after a click
        rt.wake_dispatcher()  # an open question decided here frees its place: the next one goes
    await Redrawer.of(rt).soon()
