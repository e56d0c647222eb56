"""When to stop, in the product: every model update (a refresh of the working model, a retrain's
candidate) predicts the stop set and measures its learning curve, in the fit worker; the check
is stored (``bot.store.stopping``) and shown in `/hitl accuracy`, the retrain report and the
App Home (the signal and the extrapolation: ``model.stopping``).

``read_stop_plan`` runs where the labels are read (a worker thread with a connection of its
own), ``compute_stop`` in the fit worker (no database), ``record`` and ``stop_status`` on the
caller's store (a bounded write and a read of the last few checks).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.store import Store
from bot.words import count
from model.stopping import (
    ASKED_MAX,
    CURVE_MAX_LABELS,
    HELD_OUT,
    MIN_ASKED,
    MIN_COMMON,
    MIN_CURVE_LABELS,
    MIN_UNIFORM,
    NEXT_LABELS,
    SETTLE_SPAN,
    STOP_SET_SIZE,
    AccuracyNow,
    Extrapolation,
    NoAccuracyNow,
    StopSignal,
    accuracy_now,
    common_comparison,
    curve_points,
    extrapolate,
    redraw_sample,
    stop_sample,
)

if TYPE_CHECKING:
    from model import TextClassifier

logger = logging.getLogger(__name__)


@dataclass
class StopPlan:
    """The stop set's draw and texts, and the earlier checks' label counts and predictions on
    its items, oldest first, looked up by item across draws (None for an item a model did not
    predict: a draw keeps the items of the one before still without a label; empty: nothing to
    compare with)."""

    draw: int
    texts: list[str]
    earlier: list[tuple[int, list[str]]]
    curve: bool = True  # measure the learning curve (a refresh: only when it is due)
    # the labels the update is on: a refresh's, its audit answers held out included (as a
    # retrain counts them); None: as many as it fits on
    n_labels: int | None = None
    # per stop-set item, whether it is still without a label (None: all of them)
    unlabeled: list[bool] | None = None
    ids: list[str] | None = None  # the stop set's item ids, in the order of ``texts``
    # a refresh's calibration of accuracy now: the labels its champion's retrain held out in
    # cross-validation, each one's confidence and whether the guess was right (None: a retrain,
    # which has its own, or a champion whose check stored none)
    held_out: tuple[list[float], list[bool]] | None = None


@dataclass
class StopCheck:
    """One update's check: its predictions on the stop set; the share of them that differ
    from the newest earlier check ``SETTLE_SPAN`` or more labels older, and the labels between
    the two (both None when there is none); its extrapolation (``Extrapolation.as_dict``, or
    None); its accuracy now (``AccuracyNow.as_dict``, or ``NoAccuracyNow.as_dict``: why not);
    whether it measured the learning curve (``curve``: its extrapolation None then is a
    forecast refused, shown as none, not one left to an older check)."""

    draw: int
    predictions: list[str]
    changed: float | None
    span: int | None
    extrapolation: dict[str, Any] | None
    seconds: float = 0.0
    accuracy: dict[str, Any] | None = None
    curve: bool = False
    ids: list[str] | None = None  # the items of ``predictions`` (they are kept by item)


UNLABELED = ("new", "queued", "posted", "auto")  # statuses of the items a stop set is drawn from

# Once the items without a label that arrived after the stop set was drawn are this share of
# those waiting, the set no longer stands for them (a new kind of ticket: an outside test saw
# "settled, 0.1 %" where the model changed 65 % of the new kind) and it is drawn again.
ARRIVED_SHARE = 0.25


def arrived(store: Store, n_unlabeled: int) -> int:
    """The items without a label that arrived since the stop set's draw, when they are
    ARRIVED_SHARE or more of the ``n_unlabeled`` waiting (else 0)."""
    if n_unlabeled <= 0:
        return 0
    found = store.arrived_since_draw()
    return found if found >= max(1, math.ceil(ARRIVED_SHARE * n_unlabeled)) else 0


CURVE_GROWTH = 1.25  # a refresh measures the learning curve again once the labels grew by this


def curve_due(store: Store, n_labels: int) -> bool:
    """Whether a refresh on ``n_labels`` labels measures the learning curve: when none was
    measured yet, or the labels grew by CURVE_GROWTH since the last one. The curve is ten fits
    (80 of a refresh's 102 CPU seconds at 2,050 labels and 89 classes), and its forecast
    moves little between refreshes 25 labels apart; a retrain always measures it. A rejected
    candidate's curve does not count: it is never shown (``stop_status``)."""
    last = store.last_curve(served=True)  # a rejected candidate's curve is not shown
    return last is None or n_labels >= CURVE_GROWTH * last["n_train"]


def read_stop_plan(
    store: Store, size: int = STOP_SET_SIZE, *, refresh_labels: int | None = None
) -> StopPlan:
    """The stop set, drawn from the items without a label (the models' own training labels
    would agree trivially) when there is none yet, when it is smaller than ``size`` and those
    items have since doubled, when fewer than half of its items are still without a label
    and the pool has twice as many, or when a quarter of the items waiting arrived after it
    was drawn (a draw reads every such id: call it off the event loop). A draw again keeps
    the items of the one before still without a label, topped up from the others and the
    arrivals, each at the sample's rate (``model.stopping.redraw_sample``), so the models
    before it are still compared on the items kept. With no item left without a label there
    is no stop set, and no check. For a refresh on ``refresh_labels`` labels, the learning
    curve only when ``curve_due``. The plan is one view of the database (``Store.snapshot``):
    a label committed by another connection between two of its reads would have set the flags
    of the items still without a label against another set of labels. A draw writes, so it is
    made between two read transactions, and the plan read again in the second."""

    def plan(draw: int, items: list[tuple[str, str]], unlabeled: list[bool]) -> StopPlan:
        """The rest of the plan, read in the same snapshot as ``items`` and ``unlabeled``."""
        item_ids = [item_id for item_id, _ in items]
        earlier = [
            (n, p)
            for n, p in store.stop_predictions(draw, item_ids)
            if any(x is not None for x in p)
        ]
        aliases = store.label_aliases()
        if aliases:  # a rename or merge since: the older predictions name labels as they are now
            earlier = [
                (n, [None if label is None else label_now(aliases, label) for label in p])
                for n, p in earlier
            ]
        curve = refresh_labels is None or curve_due(store, refresh_labels)
        return StopPlan(
            draw,
            [text for _, text in items],
            earlier,
            curve,
            refresh_labels,
            unlabeled,
            item_ids,
            None if refresh_labels is None else store.held_out_pairs(store.champion_version()),
        )

    with store.snapshot():
        draw, items = store.stop_set()
        counts = store.count_items()
        n_unlabeled = sum(counts[status] for status in UNLABELED)
        unlabeled = store.stop_set_unlabeled() if items else []
        still = sum(unlabeled)
        n_arrived = arrived(store, n_unlabeled)
        ids: list[str] = []
        if (
            draw == 0
            or (len(items) < size and n_unlabeled >= 2 * len(items))
            # most of the set got labels (they no longer count): drawn again while the pool has
            # twice what it still holds
            or (still < len(items) / 2 and n_unlabeled >= 2 * still and n_unlabeled > still)
            # a quarter of the items waiting came after the draw: the set does not stand for them
            or n_arrived
        ):
            arrivals = store.arrived_since_draw() if draw else 0
            last = store.last_item_rowid()  # before the ids: an item added between is an arrival
            ids = store.unlabeled_ids()  # in the order stored: the arrivals last
        if not ids:  # nothing drawn: the plan is this view's
            return plan(draw, items, unlabeled)
    if draw == 0:
        chosen = stop_sample(len(ids), size)
    else:
        old = {item_id for (item_id, _), u in zip(items, unlabeled, strict=False) if u}
        kept = [i for i, item_id in enumerate(ids) if item_id in old]
        chosen = redraw_sample(len(ids), kept, arrivals, size, random_state=draw)
    store.draw_stop_set([ids[i] for i in chosen], last)  # a write: outside the snapshot
    with store.snapshot():  # the set as drawn, and the rest as they are now, in one view
        draw, items = store.stop_set()
        return plan(draw, items, store.stop_set_unlabeled())


def label_now(aliases: dict[str, str], label: str) -> str:
    """The label ``label`` counts for now, through the renames and merges since (a chain
    of them too; a rename back ends where it started)."""
    seen = {label}
    while label in aliases and aliases[label] not in seen:
        label = aliases[label]
        seen.add(label)
    return label


def read_stop_plan_at(db: Path) -> StopPlan:
    """``read_stop_plan`` on a connection of this thread's own (for ``asyncio.to_thread``)."""
    with Store.open(db) as store:
        return read_stop_plan(store)


def compute_stop(
    plan: StopPlan,
    classifier: TextClassifier,
    texts: list[str],
    labels: list[str],
    pipeline: str | None,
    uniform: list[bool] | None = None,
    held_out: tuple[Sequence[float], Sequence[bool]] | None = None,
) -> StopCheck:
    """Predict the stop set with ``classifier`` (fitted on ``texts``/``labels``), compare with
    the newest earlier update ``SETTLE_SPAN`` or more labels older, estimate its accuracy now
    from its confidence on the stop set's unlabeled items (``model.stopping.accuracy_now``),
    calibrated on the labels a cross-validation held out: a retrain's own (``held_out``, the
    candidate's: stored with the check), a refresh's champion's (``plan.held_out``), not the
    questions people answered (asked by older models, often much weaker: ``HELD_OUT``), and
    extrapolate the learning curve measured on those labels (tested on the ``uniform``
    ones, see ``_curve``). Touches no database: runs in the fit worker. With no stop set (no
    item without a label) only the curve is measured."""
    started = time.perf_counter()
    predictions: list[str] = []
    found_now: AccuracyNow | NoAccuracyNow = NoAccuracyNow(
        "every item has a label, so there is no unlabeled item to estimate it on"
    )
    own = _thinned(held_out) if held_out is not None else None
    pairs = own if own is not None else plan.held_out
    if plan.texts:
        proba = classifier.predict_proba(plan.texts)  # what ``predict`` takes the argmax of
        predictions = [classifier.classes[j] for j in proba.argmax(axis=1)]
        confidence = proba.max(axis=1)
        if plan.unlabeled is not None and len(plan.unlabeled) == len(confidence):
            confidence = confidence[[bool(u) for u in plan.unlabeled]]
        if pairs is None:
            found_now = NoAccuracyNow(
                "it is calibrated on the labels a retrain's cross-validation held out, and the"
                " champion's retrain stored none; the next retrain estimates it"
            )
        else:
            found_now = accuracy_now(confidence, *pairs, source=HELD_OUT)
    changed = span = None
    n_labels = len(labels) if plan.n_labels is None else plan.n_labels
    if predictions:
        # on the items still without a label: the ones labelled since the draw are training
        # labels now, which both models agree on trivially (a month's test: 0.2 % changed on
        # the whole set, 2.5 % on its items still unlabelled, and "settled" said too early);
        # and on the items both models predicted (a draw again keeps those still unlabelled)
        still = plan.unlabeled
        if still is None or len(still) != len(predictions):
            still = [True] * len(predictions)
        found = common_comparison(plan.earlier, predictions, still, n_labels)
        if found is not None:
            older, changed, _ = found
            span = n_labels - plan.earlier[older][0]
    found = _curve(texts, labels, pipeline, uniform) if plan.curve else None  # None: last stands
    stored = _stored(found_now)
    if own is not None:  # a refresh of this model calibrates on them
        stored["held_out"] = {"confidence": own[0], "right": own[1]}
    return StopCheck(
        plan.draw,
        predictions,
        changed,
        span,
        found.as_dict() if found else None,
        time.perf_counter() - started,
        stored,
        plan.curve,
        plan.ids if plan.ids is not None and len(plan.ids) == len(predictions) else None,
    )


def _thinned(
    pairs: tuple[Sequence[float], Sequence[bool]], most: int = ASKED_MAX
) -> tuple[list[float], list[int]]:
    """Held-out labels' (confidences, right as 0/1), at most ``most`` of them, evenly spaced
    (each check stores them, and the bootstrap refits the map on them 200 times)."""
    confidence, right = list(pairs[0]), list(pairs[1])
    if len(confidence) > most:
        keep = sorted({int(round(i)) for i in np.linspace(0, len(confidence) - 1, most)})
        confidence, right = [confidence[i] for i in keep], [right[i] for i in keep]
    return [round(float(c), 5) for c in confidence], [int(bool(r)) for r in right]


def _curve(
    texts: list[str], labels: list[str], pipeline: str | None, uniform: list[bool] | None = None
) -> Extrapolation | None:
    """The learning curve measured on these labels, extrapolated (None when it fails). It is
    tested on the labels marked ``uniform`` (not asked because the model was unsure: cold
    start, audits, warm-up, imported), a sample of the pool like the items to come, when
    there are at least ``2 × MIN_UNIFORM`` of them; else on shuffled splits of all."""
    if uniform is not None and sum(uniform) < 2 * MIN_UNIFORM:
        uniform = None
    from model.classifier import DEFAULT_PIPELINE, build_pipeline  # in the fit worker

    try:
        name = pipeline or DEFAULT_PIPELINE
        points = curve_points(
            texts,
            labels,
            lambda: build_pipeline(name, n_samples=len(labels), n_classes=len(set(labels))),
            uniform=uniform,
        )
        return extrapolate(points.sizes, points.scores, len(labels), n_test=points.n_test)
    except Exception:  # noqa: BLE001 - no forecast is better than no model
        logger.exception("the learning-curve extrapolation failed")
        return None


def record(
    store: Store,
    check: StopCheck,
    *,
    kind: str,
    version: int | None,
    n_train: int,
    base_version: int | None = None,
    dropped: bool | None = None,
):
    """Store ``check`` for the model ``version`` (a refresh's is negative), keeping the
    predictions a later update may compare with. A refresh's: refreshed from the champion
    ``base_version`` (None: none), and ``dropped`` when the champion changed while it fitted
    (it is then no check of the model served: ``Store._served``)."""
    store.record_stop_check(
        kind=kind,
        model_version=version,
        n_train=n_train,
        draw=check.draw,
        predictions=check.predictions,
        changed=check.changed,
        span=check.span,
        extrapolation=check.extrapolation,
        keep_since=n_train - SETTLE_SPAN,
        accuracy=check.accuracy,
        curve=check.curve,
        base_version=base_version,
        dropped=dropped,
        item_ids=check.ids,
    )


@dataclass(frozen=True)
class StopStatus:
    """What the checks say now: the signal over the last updates, and the newest measured
    extrapolation with the model it is of (a refresh measures one only now and then)."""

    signal: StopSignal
    extrapolation: Extrapolation | None
    model: str  # "v3" or "r315": the model of the newest check with a learning curve
    n_train: int
    n_stop: int = 0  # items in the newest check's stop set (0: none without a label)
    n_left: int | None = None  # items without a label now (None: not known)
    # the newest check's accuracy now, or why there is none (None: checks from before it)
    accuracy: AccuracyNow | NoAccuracyNow | None = None
    accuracy_model: str = ""  # the model it is of ("v3", "r315")
    # items without a label that arrived since the stop set was drawn, when they are a quarter
    # of those waiting or more (``arrived``): the checks do not speak for them (0: they do)
    arrived: int = 0
    # the model served now, when no check of it is stored and these lines are of the newest
    # model that served before it ("": they are of the model served)
    served: str = ""
    # the questions a model asked that people answered now, up to MIN_ASKED (None: not
    # counted): an accuracy now refused for too few says today's count, not its fit's
    asked_now: int | None = None

    def lines(self) -> list[str]:
        """mrkdwn lines, each a plain sentence: the signal, the forecast and, once a retrain's
        cross-validation held out enough labels, the accuracy now; first, when they are of another
        model than the one served, which one."""
        return [*self._other_line(), *self._stop_lines(), *self._accuracy_lines()]

    def _other_line(self) -> list[str]:
        if not self.served:
            return []
        of = self.accuracy_model or self.model
        also = f" and {self.model}" if self.model not in ("", of) else ""
        return [
            f"*Checks of another model:* the lines below are of {of}{also}, not of"
            f" {self.served}, the model served now: no check of {self.served} is stored (the"
            " next model update measures one)"
        ]

    def _arrived(self) -> str:
        """Why the checks do not speak for the items waiting now (a new kind may have come)."""
        which = (
            f"{self.arrived:,} of the {self.n_left:,} items without a label"
            if self.n_left
            else f"{count(self.arrived, 'item')} without a label"
        )
        return (
            f"{which} arrived after the fixed sample the models are measured on was drawn, so"
            " it no longer stands for them; the next model update draws it again"
        )

    def _accuracy_lines(self) -> list[str]:
        found = self.accuracy
        if found is None:
            return []
        if self.arrived:
            return [f"*Accuracy now:* not known now: {self._arrived()}"]
        if isinstance(found, NoAccuracyNow):
            reason = found.counted_now(self.asked_now, self.accuracy_model or "the model").reason
            return [f"*Accuracy now:* not estimated: {reason}"]
        # a retrain's (v4) own cross-validation; a refresh's (r415), its champion's
        whose = "its" if self.accuracy_model.startswith("v") else "its champion's"
        on = (
            f"the {count(found.n_asked, 'label')} held out in {whose} cross-validation"
            if found.source == HELD_OUT
            else f"the {count(found.n_asked, 'question')} people answered"
        )
        return [
            f"*Accuracy now:* {found.text()} on the {count(found.n_pool, 'item')} of a fixed"
            f" sample still without a label: {self.accuracy_model}'s confidence, calibrated on"
            f" {on}"
        ]

    def _no_forecast(self) -> str:
        """Why there is no forecast: too few labels for a learning curve, or (on enough of them,
        9,999 imported labels of 77 classes) a curve that gives none to trust: no fit, a step,
        or a gain sure to a tenth of a point (``model.stopping.extrapolate``)."""
        if self.n_train < MIN_CURVE_LABELS:
            return (
                f"the learning curve needs at least {MIN_CURVE_LABELS} labels and a curve that fits"
            )
        on = (
            f"{CURVE_MAX_LABELS:,} of its {self.n_train:,} labels"
            if self.n_train > CURVE_MAX_LABELS
            else f"its {self.n_train:,} labels"
        )
        return f"the learning curve of {self.model} on {on} gives none to trust"

    def _stop_lines(self) -> list[str]:
        stop = f"*When to stop:* {self.signal.sentence(self.extrapolation)}"
        if self.n_stop == 0:
            stop = (
                "*When to stop:* every item has a label, so there is no unlabeled item to"
                " compare the models on"
            )
        elif self.arrived:
            stop = f"*When to stop:* not known now: {self._arrived()}"
        if self.extrapolation is None:
            return [stop, f"*Next {NEXT_LABELS} labels:* no forecast yet ({self._no_forecast()})"]
        next_labels = self.extrapolation.next_labels
        forecast = f"*Next {next_labels} labels:* {self.extrapolation.gain_text()}"
        if self.n_left is not None and self.n_left < next_labels:
            # the forecast is of labels the team cannot give yet: say so where it is read
            left = (
                f"only {count(self.n_left, 'item')} {'is' if self.n_left == 1 else 'are'} left"
                " to label; import more for the rest"
                if self.n_left
                else "no item is left to label; import more first"
            )
            forecast = f"*Next {next_labels} labels* ({left}): {self.extrapolation.gain_text()}"
        # how many labels each point was tested on: with few, the curve is rough (a dozen
        # labels move its accuracy by several points), and people can see that. The curve's
        # own level is not shown: held-out labels of this loop read it 10-20 points low (the
        # questions asked were chosen knowing them); accuracy now has a line of its own.
        n_test = self.extrapolation.n_test
        tested = f", tested on {n_test:,} of them" if n_test else ""
        if self.n_train > CURVE_MAX_LABELS:
            return [
                stop,
                f"{forecast}; learning curve of {self.model} on {CURVE_MAX_LABELS:,} of its"
                f" {self.n_train:,} labels{tested}",
            ]
        return [
            stop,
            f"{forecast}; learning curve of {self.model} on its {self.n_train:,} labels{tested}",
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.signal.changed,
            "span": self.signal.span,
            "extrapolation": self.extrapolation.as_dict() if self.extrapolation else None,
            "model": self.model,
            "n_train": self.n_train,
            "n_stop": self.n_stop,
            "n_left": self.n_left,
            "accuracy": _stored(self.accuracy) if self.accuracy else None,
            "accuracy_model": self.accuracy_model,
            "arrived": self.arrived,
            "served": self.served,
            "why": self.signal.why,
            "asked_now": self.asked_now,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StopStatus:
        found = data.get("extrapolation")
        now = data.get("accuracy")
        return cls(
            StopSignal(data.get("changed"), data.get("span"), why=data.get("why") or ""),
            _forecast(found),
            data.get("model", "?"),
            int(data.get("n_train") or 0),
            int(data.get("n_stop") or 0),
            data.get("n_left"),
            _accuracy(now),
            data.get("accuracy_model", "?"),
            int(data.get("arrived") or 0),
            data.get("served") or "",
            data.get("asked_now"),
        )


@dataclass(frozen=True)
class Streak:
    """The retrains rejected since champion ``champion`` was made, at ``since`` (UTC ISO; ""
    when unknown), ``days`` ago."""

    rejected: int
    champion: int | None
    since: str
    days: float


def streak(store: Store) -> Streak:
    """The retrains rejected in a row since the champion was made (``Store.rejected_in_a_row``)."""
    rejected, since = store.rejected_in_a_row()
    days = 0.0
    if since:
        with contextlib.suppress(ValueError):
            took = datetime.fromisoformat(store.now()) - datetime.fromisoformat(since)
            days = max(took.total_seconds() / 86400, 0.0)
    return Streak(rejected, store.champion_version(), since or "", days)


def stop_status(store: Store) -> StopStatus | None:
    """The status from the newest checks of the model served now: the champion and the
    working models refreshed from it since it was made champion (``Store.stop_checks
    (served=True)``), not a candidate the gate rejected (its forecast and settling are of a
    model nobody uses) nor, after a rollback, the newer model rolled back from. With no check
    of the model served (one trained before checks were kept), the newest checks of the
    models that served before it, saying so (``StopStatus.served``). Once the items that
    arrived since the stop set's draw are a quarter of those waiting (``arrived``), it says
    that it does not know, instead of what the old sample says. None before the first such
    check."""
    checks = store.stop_checks(limit=1, served=True)
    other = not checks  # no check of the model served: those of the models before it
    if other:
        checks = store.stop_checks(limit=1, served="ever")
    if not checks:
        return None
    newest = checks[-1]
    # refreshes measure the curve only now and then; the newest measured, its forecast
    # refused or not (a refused one is "no forecast" for its model, not an older one's)
    curve = store.last_curve(served="ever" if other else True) or newest
    champion = store.champion_version() if other else None
    forecast = _forecast(curve["extrapolation"])
    if forecast is not None:  # no gain past the room its model's accuracy leaves
        forecast = forecast.with_accuracy(store.model_accuracy(_accuracy_version(store, curve)))
    now = newest.get("accuracy")
    n_left = sum(store.count_items()[status] for status in UNLABELED)
    why = "" if newest["changed"] is not None else _no_comparison(store, newest)
    return StopStatus(
        StopSignal(newest["changed"], newest["span"], why=why),
        forecast,
        _model_name(curve),
        curve["n_train"],
        newest["n_stop"],
        n_left,
        _accuracy(now),
        _model_name(newest),
        arrived(store, n_left) if newest["n_stop"] else 0,
        f"v{champion}" if champion is not None else "",
        store.asked_count(MIN_ASKED),
    )


def _accuracy_version(store: Store, check: dict[str, Any]) -> int | None:
    """The version whose cross-validated accuracy stands beside ``check``'s forecast: a
    retrain's own model; a refresh's, the champion it was refreshed from (the one `/hitl
    accuracy` shows; a refresh has no cross-validation of its own), or the champion now
    when not recorded."""
    if check.get("kind") == "retrain":
        return check.get("model_version")
    base = check.get("base_version")
    return base if base is not None else store.champion_version()


WHY_CHECKS = 50  # the newest checks read to say why a check has no comparison (bounded)


def _no_comparison(store: Store, newest: dict[str, Any]) -> str:
    """Why the ``newest`` check compared with no model, when a model that served ``SETTLE_SPAN``
    or more labels before it had a check among the newest ``WHY_CHECKS`` ("": none had, the
    sentence's "yet" is true): its stop set was drawn again after them and too few of its
    items still without a label were predicted by them, or (the same draw) too few of them
    are still without a label. A bounded read (no predictions)."""
    checks = store.stop_checks(limit=WHY_CHECKS, served="ever")
    older = [c for c in checks if c["n_train"] <= newest["n_train"] - SETTLE_SPAN]
    if not older:
        return ""
    if all(c["draw"] == newest["draw"] for c in older):
        return (
            f"too few of the fixed sample's items are still without a label to compare"
            f" {_model_name(newest)} with {_model_name(older[-1])}, {SETTLE_SPAN} or more"
            " labels older"
        )
    first = next((c for c in checks if c["draw"] == newest["draw"]), newest)
    when = newest.get("drawn_at") or ""
    with contextlib.suppress(ValueError):
        at = datetime.fromisoformat(when)
        when = f"{at:%b} {at.day}"
    on = f" on {when}" if when else ""
    return (
        f"the fixed sample the models are compared on was drawn again{on} as the items waiting"
        f" changed, and the models {SETTLE_SPAN} or more labels older predicted too few of its"
        f" items still without a label ({MIN_COMMON} needed, or half of them in a smaller"
        f" sample): a comparison comes once a model {SETTLE_SPAN} labels newer than"
        f" {_model_name(first)} ({first['n_train'] + SETTLE_SPAN:,} labels or more) predicts it"
    )


def _forecast(data: dict[str, Any] | None) -> Extrapolation | None:
    """A stored forecast, or None when there is none or it is of the kind ``extrapolate``
    refuses now (``Extrapolation.refused``: one stored before it did, "+0.0 points (range
    +0.0 to +0.0)" of a step fit, is no forecast)."""
    if not data:
        return None
    found = Extrapolation.from_dict(data)
    return None if found.refused() else found


def _model_name(check: dict[str, Any]) -> str:
    """``v3`` for a retrain's model, ``r315`` for a refresh's (its version is negative)."""
    version = check["model_version"]
    return f"r{-version}" if check["kind"] == "refresh" and version else f"v{version}"


def _stored(found: AccuracyNow | NoAccuracyNow) -> dict[str, Any]:
    """Accuracy now as stored: ``as_dict``, and why not with its counts (``counts``), so the
    count of answered questions can be said again as it is later (``_accuracy_lines``)."""
    if isinstance(found, NoAccuracyNow):
        return {**found.as_dict(), **found.counts()}
    return found.as_dict()


def _accuracy(data: dict[str, Any] | None) -> AccuracyNow | NoAccuracyNow | None:
    """A stored accuracy now: the estimate, or why there is none (None: not stored)."""
    if not data:
        return None
    if "reason" in data:
        found = NoAccuracyNow.from_dict(data)
        if found.n_asked is None:  # stored before the count was: read from its sentence
            said = _TOO_FEW.match(found.reason)
            if said:
                found = NoAccuracyNow.too_few(
                    _int(said["n"]), _int(said["need"]), _int(said["before"] or "0")
                )
        return found
    return AccuracyNow.from_dict(data)


# the sentence ``NoAccuracyNow.too_few`` wrote before it kept its counts
_TOO_FEW = re.compile(
    r"it needs (?P<need>\d+) questions? a model asked answered, has (?P<n>[\d,]+) so far"
    r"(?: \(the (?P<before>[\d,]+) answered before the first model cannot calibrate it\))?$"
)


def _int(text: str) -> int:
    return int(text.replace(",", ""))
