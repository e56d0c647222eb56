"""Turns what the database knows about an item into the ``Question`` the blocks draw."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import weakref
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.labelset import current_labels, in_force, not_in_force
from bot.learning.typical import typical_until
from bot.slack.blocks import Question, has_inline_other
from bot.slack.guidelines import meta_line
from bot.store import Store

if TYPE_CHECKING:
    from bot.runtime import Champion, Runtime

logger = logging.getLogger(__name__)

TOO_LONG = "msg_blocks_too_long"  # Slack's undocumented cap on a message's blocks as a whole
ITEM_REMOVED = "I can't find that item any more; it may have been removed."
"""What a person is told of an item no longer there (``hitl delete``) whose question, Undo or
review window was still on screen: a click, an Undo, a review decision on it."""


def label_set(settings: Settings, store: Store) -> list[str]:
    """The label set in force (``bot.labelset``)."""
    return current_labels(settings, store)


def gold_draw(item_id: str) -> float:
    """A number in [0, 1) fixed by the item's id alone: which reason its gold question shows
    (``shown_reason``), the same on every redraw, Undo, restart and re-ask."""
    digest = hashlib.sha256(f"hitl:gold-reason:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def young_model(
    store: Store,
    settings: Settings,
    version: int | None,
    model: Champion | None = None,
    post_id: int | None = None,
) -> bool:
    """Whether the model ``version`` was trained on fewer than HITL_WARM_UP labels, when the
    questions it asked were warm-up picks: the count ``scoring.choose`` reads, the model's
    ``n_train`` (its training rows, not the labels it read: a refresh holds out the audit
    answers it is gated on, and its version -N counts those too, or more once N was taken).
    ``model``: the model object that asks (the dispatcher's), whose count is read when it is
    ``version``'s, and noted for the store's later drawings of its questions (a working model
    lives in memory only). A registry version's count is the models table's. A working model
    not noted here (a server started since it asked: its count was never stored) is judged by
    what it did beside ``post_id`` (the question being drawn): the reason of the ordinary
    question it posted nearest to it (``warm_up`` or not: ``scoring.choose``'s own decision,
    stored with each post; ``_young_beside``), and only when it posted none there by the
    labels it read, -N, the one count it left."""
    return _trained_below(store, settings.warm_up, "warm_up", version, model, post_id)


def typical_model(
    store: Store,
    settings: Settings,
    version: int | None,
    model: Champion | None = None,
    post_id: int | None = None,
) -> bool:
    """Whether the model ``version`` asked TypiClust's picks (``bot.learning.typical``): past
    its warm-up (``young_model``) and trained on fewer than HITL_TYPICAL_UNTIL labels, its
    count read as ``young_model`` reads it (a working model no longer noted: by the ordinary
    question it posted nearest to ``post_id``, ``typical`` or not)."""
    return not young_model(store, settings, version, model, post_id) and _trained_below(
        store, typical_until(settings, store), "typical", version, model, post_id
    )


def _trained_below(
    store: Store,
    until: int,
    reason: str,
    version: int | None,
    model: Champion | None,
    post_id: int | None,
) -> bool:
    """Whether the model ``version`` was trained on fewer than ``until`` labels (0: never), as
    ``young_model`` reads its count; ``reason``: what its ordinary questions were asked as
    below it (``_young_beside``)."""
    if version is None or until <= 0:
        return False
    if model is not None and model.version == version:
        if version < 0:
            _working_n_train.setdefault(store, {})[version] = model.n_train
        return model.n_train < until
    if version < 0:
        n_train = _working_n_train.get(store, {}).get(version)
        if n_train is None and post_id is not None:
            beside = _young_beside(store, version, post_id, reason)
            if beside is not None:
                return beside
        return (-version if n_train is None else n_train) < until
    n_train = store.model_n_train(version)
    return n_train is not None and n_train < until


# The working models' training counts (version -N -> n_train), per store, as the models that
# asked told them (``young_model``): a refresh version names one fit of one database (m038).
_working_n_train: weakref.WeakKeyDictionary[Store, dict[int, int]] = weakref.WeakKeyDictionary()

BESIDE = 200  # posts read at most on each side of a gold question's for its model's warm-up


def _young_beside(store: Store, version: int, post_id: int, reason: str = "warm_up") -> bool | None:
    """Whether the working model ``version`` asked its ordinary questions as warm-up picks,
    from the one it posted nearest to the post ``post_id`` (within BESIDE posts on either
    side: a read of the posts' key, bounded however many there are): ``posts.reason`` is
    ``warm_up`` for every pick of a young model and never for another's. None when it posted
    none there (every question near it a gold one, say). ``reason``: ``typical`` asks the
    same of TypiClust's picks (``typical_model``)."""
    nearest = store.pick_reason_nearest(version, post_id, BESIDE)
    return None if nearest is None else nearest == reason


def gold_passed_over(
    settings: Settings, item_id: str, confidence: float | None, *, marked: bool = False
) -> bool:
    """Whether a gold item is passed over for this post (it stays waiting: a later model may
    be unsure of it), its guess being ``confidence`` by a model past its warm-up: at or above
    HITL_THRESHOLD, which no uncertainty pick shows, and outside the audit share
    (``gold_draw``), so its question could read neither line truthfully. Never one ``marked``
    gold while it waited in the queue (not imported as gold): marking it does not take it out
    of labelling, and nothing else would ever ask or decide it (status gold is not scored), so
    it is asked, reading "random check" (``shown_reason``) as an audit of a sure guess does."""
    return (
        not marked
        and confidence is not None
        and confidence >= settings.threshold
        and gold_draw(item_id) >= settings.audit_rate
    )


def shown_reason(
    store: Store,
    settings: Settings,
    item_id: str,
    reason: str,
    model_version: int | None,
    model: Champion | None = None,
    *,
    confidence: float | None = None,
    post_id: int | None = None,
) -> str:
    """The reason a question shows. A gold question shows the line the questions asked beside
    it show, in their shares, so nothing tells it from them: before any model the first-labels
    line; while the model is young (HITL_WARM_UP: ``young_model``, ``model`` the one that
    asks) the warm-up pick's; then the audit's line for the share HITL_AUDIT_RATE of gold items
    (``gold_draw``, fixed per item) and the uncertainty pick's for the others. Those others are
    asked only when the model is unsure of them (``gold_passed_over``), so no "model is unsure"
    line shows a guess at or above HITL_THRESHOLD, except an item marked gold while it waited,
    which is asked all the same: ``confidence``, its shown guess's (None for an item imported
    as gold), at or above HITL_THRESHOLD reads "random check", as an audit of a sure guess
    does. ``post_id``: the question's post, for a working model's warm-up after a restart
    (``young_model``). ``posts.reason`` stays ``gold`` (scoring reads it)."""
    if reason != "gold":
        return reason
    if model_version is None:
        return "cold_start"
    if young_model(store, settings, model_version, model, post_id):
        return "warm_up"
    if confidence is not None and confidence >= settings.threshold:
        return "audit"  # a marked item the model is sure of (``gold_passed_over``)
    if gold_draw(item_id) < settings.audit_rate:
        return "audit"
    # a model below HITL_TYPICAL_UNTIL asks TypiClust's picks beside its audits
    return (
        "typical" if typical_model(store, settings, model_version, model, post_id) else "uncertain"
    )


def build_question(
    store: Store,
    settings: Settings,
    item_id: str,
    labels: list[str] | None = None,
    *,
    guessed: tuple[int | str | None, list[Any]] | None = None,
) -> Question | None:
    """The question of ``item_id`` as the database has it. ``guessed``: the (model version,
    ranked guesses) of an item not posted, in place of its stored ones: a gold question the
    labeling window serves, guessed as it is drawn as the dispatcher guesses one it posts
    (``bot.slack.windowgold``), so it shows what the waiting items beside it show."""
    item = store.get_item(item_id)
    if item is None:
        return None
    if guessed is not None and store.post_for_item(item_id) is None:
        item = {**item, "model_version": guessed[0], "ranked": guessed[1]}
    labels = labels if labels is not None else label_set(settings, store)
    post = store.post_for_item(item_id)
    resolution = store.resolution(item_id)
    # A decided item shows the votes that decided it; later answers are kept as history.
    tally = store.tally(item_id, through=resolution["decided_by"] if resolution else None)
    late = False  # an open question asked before the first model, scored since
    guesses: list[tuple[str, float]] = [(str(lb), float(p)) for lb, p in item["ranked"] or []]
    if post is not None and post["predicted_label"] is not None:
        # Show what the model guessed when the question was asked, even after a retrain.
        shown = (post["predicted_label"], float(post["confidence"] or 0.0))
        guesses = [shown, *[g for g in guesses if g[0] != shown[0]]]
    elif post is not None and post["model_version"] is None:
        # Asked before the first model: an open question shows the model's guess once one
        # has scored its item (the scorer redraws it), not "No model yet" until answered; a
        # decided or set-aside one keeps the guess it showed last (its item is not scored
        # once it leaves the queue: ``set_predictions``), not "The model had no guess yet."
        late = item["model_version"] is not None
        if not late:
            guesses = []
    # under the label set in force: a retired label, or one the set never had (imported
    # before HITL_LABELS named a narrower set: ``not_in_force``), is no guess, as it has no button
    guesses = in_force(guesses, store.label_aliases(), not_in_force(settings, store))
    status = {"resolved": "resolved", "skipped": "skipped"}.get(item["status"], "open")
    label = resolution["label"] if resolution else None
    decision = admin_decision(store, item_id, label, item["status"])
    # a waiting item the labeling window serves, not posted: the closest call of the model that
    # scored it; before any model has, one of the first labels (not "the model is unsure")
    unposted = "uncertain" if item["model_version"] is not None else "cold_start"
    return Question(
        item_id=item_id,
        text=item["text"],
        labels=labels,
        guesses=guesses,
        model_version=item["model_version"] if late or post is None else post["model_version"],
        reason=(
            shown_reason(
                store,
                settings,
                item_id,
                post["reason"],
                post["model_version"],
                confidence=(
                    post["confidence"]
                    if post["predicted_label"] is not None and item["source"] != "gold"
                    else None
                ),
                post_id=post["id"],
            )
            if post
            else unposted
        ),
        status=status,
        votes=tally.votes,
        skips=tally.skips,
        votes_needed=settings.votes,
        resolved_label=label,
        show_votes=settings.show_votes,
        meta_line=meta_line(item["meta"], settings.show_meta) if settings.show_meta else "",
        has_guidelines=bool(settings.guidelines),
        set_by=decision.get("user_id"),
        confirmed=decision.get("confirmed", False),
        removed_label=decision.get("removed_label"),
        removal_reason=decision.get("reason", ""),
    )


def admin_decision(store: Store, item_id: str, label: str | None, status: str) -> dict[str, Any]:
    """The admin's decision the item's state is (``hitl labels set``/``remove``, a ``/hitl
    review`` decision), as its message tells it: ``user_id``, ``confirmed`` (the label it had
    kept), ``removed_label`` and ``reason`` (a removal's); empty when the people's answers
    decided it. The last change that is not a rename or merge of the label set (those carry a
    decision over), its label under the label set in force, is that decision when the item is
    where it left it: decided with its label, or set aside without one."""
    if status not in ("resolved", "skipped"):  # open: nobody decided it yet
        return {}
    last = store.last_decision(item_id)
    if last is None:
        return {}
    aliases = store.label_aliases()
    new = aliases.get(last["new_label"], last["new_label"])
    if new is None:
        if label is not None or status != "skipped":
            return {}
        return {
            "user_id": last["user_id"],
            "removed_label": aliases.get(last["old_label"], last["old_label"]),
            "reason": last["reason"] or "",
        }
    if new != label:
        return {}
    old = aliases.get(last["old_label"], last["old_label"])
    return {"user_id": last["user_id"], "confirmed": old == new}


def as_asked(rt: Runtime, question: Question) -> Question:
    """``question`` in the form its label set's questions take: with the type-ahead "Other…"
    once Slack refused one of them as too long (``smaller_after``)."""
    if tuple(question.labels) in rt.typeahead_label_sets:
        return dataclasses.replace(question, other_typeahead=True)
    return question


def smaller_after(rt: Runtime, question: Question, error: str | None) -> Question | None:
    """The question to send again after Slack answered ``error`` for it: with ``TOO_LONG``
    (Slack caps the size of a message's blocks as a whole, and says neither how nor where) and
    "Other…" listing the labels inline, the same question with the type-ahead "Other…", which
    its label set's questions and redraws use from then on (in this process). None: nothing
    smaller to send."""
    if error != TOO_LONG or not has_inline_other(question):
        return None
    labels = tuple(question.labels)
    if labels not in rt.typeahead_label_sets:
        rt.typeahead_label_sets.add(labels)
        logger.warning(
            "Slack refused a question as too long (%s) with its %d labels listed in"
            ' "Other…": the questions of this label set use the type-ahead "Other…" from now on',
            TOO_LONG,
            len(labels),
        )
    return dataclasses.replace(question, other_typeahead=True)
