"""How good the people's answers are: agreement you can cite (with ``HITL_VOTES`` > 1).

The numbers come from ``model.agreement`` (Cohen's kappa per pair from scikit-learn,
Krippendorff's alpha and Fleiss' kappa overall, per-label specific agreement, each person
against the majority of the others), computed on each person's counted vote per item
(``Store.iter_votes``, oldest first). An item closes as soon as enough answers agree (with
``HITL_VOTES=3``, two), so which items get a third answer depends on whether the first two
agreed: the overall, pairwise and per-label figures are measured on each item's first two
answers (``first_two_votes``: the first two people to give it a label, by their latest
answer), which every item with two or more has whatever they say, and say so when some item
has more. Reading every vote grows with the data, so the server
measures on a connection of its own, in the walks' scoring child (its numpy work holds the
GIL) or before the first model in a worker thread (``reports.stats_off_loop``); the CLI calls
``measure``.

It also says which labels training reads (``training_rows``, what a retrain and a refresh
train on): the decided labels under the label set in force (a renamed label, gold labels
included, as its successor; a retired label's items left out, and so are those of a label
the set in force never had: ``bot.labelset.not_in_force``), and with
``HITL_AGGREGATION=dawid_skene`` the items with two or more votes re-aggregated by Dawid–Skene
(``model.aggregation``), seeded with the gold answers: items still resolve live by majority,
so questions close as before, and the weighted labels replace majority's only in training.
Dawid–Skene only chooses among the labels an item's votes gave (``weighted_labels``): a label
nobody gave an item is never its training label, so an item everyone agreed on keeps it. An
item an admin decided (``hitl labels set``, to the label it had too, ``/hitl review``) keeps
that label, through renames and merges of the label set.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from bot.config import Settings
from bot.labelset import not_in_force
from bot.store import Store
from bot.words import count, name, person
from model.aggregation import Aggregation, dawid_skene
from model.agreement import (
    DEFAULT_MIN_SHARED,
    AgreementReport,
    GoldAccuracy,
    Tally,
    agreement,
    first_two_votes,
    gold_accuracy,
)
from model.selection import _key

logger = logging.getLogger(__name__)

MAX_PAIRS = 10  # pairs shown, most shared items first
SETTLE_ROUNDS = 500
"""EM rounds at most for the Dawid–Skene figures stats show (``estimate(settle=True)``, EM's
own ``DEFAULT_MAX_ITER``), as long as they fit :data:`SETTLE_WORK`: the outside tester's
30-person team's 456 answers settle in 113 (0.02 s; training's call stops after 37, up to 11
points away)."""
SETTLE_MIN_ROUNDS = 100
"""EM rounds at least for those figures, however large the team: about as many as training's
call takes on the largest teams measured (72–127 rounds), so about its time."""
SETTLE_WORK = 1_000_000_000
"""What those rounds may cost at most, in units of a round's work: a round costs about
people × labels² (the confusion matrices) + 2 × answers × labels (the posteriors; measured:
9 ns and 18 ns each on a loaded 2-core machine), so about 9 s, what training's call takes on
the largest teams measured: 300 people × 154 labels × 10,000 answers (10.2 million a round)
and 24,000 items × 2 answers × 154 labels (15.3 million) get the 100 rounds of
:data:`SETTLE_MIN_ROUNDS`, a 30-person team over 6 labels all 500."""
MAX_PEOPLE = 20
"""People shown per section in Slack (``/hitl stats``: a section's text is cut at 3,000
characters), worst first, then how many more and that `hitl stats` lists everyone; the CLI
(``people=None``) lists everyone."""


@dataclass(frozen=True)
class Estimates:
    """Dawid–Skene over the items with two or more votes (and the gold items answered)."""

    aggregation: Aggregation
    n_items: int  # items with two or more votes
    n_gold: int  # gold items among those ``n_items`` (not those answered once, also read)
    n_votes: dict[str, int]  # votes per person it read
    voted: dict[str, frozenset[str]]  # item → the labels its counted votes gave (in force)


@dataclass(frozen=True)
class Quality:
    """What ``/hitl stats`` and ``hitl stats`` show about the answers' quality."""

    agreement: AgreementReport | None  # None with HITL_VOTES = 1 (one answer per item)
    gold: list[GoldAccuracy]  # each person who answered a gold item; empty without gold
    n_gold: int = 0  # gold items
    estimates: Estimates | None = None  # with HITL_AGGREGATION=dawid_skene and votes to read


def measure(store: Store, settings: Settings, *, estimates: bool = True) -> Quality:
    """Measure on ``store`` in this thread (reads every vote). Every answer counts under the
    label set in force, agreement as gold accuracy: "bug" clicked before `hitl labels rename
    bug defect` and "defect" after agree (the store resolved the item on them), and two labels
    merged into one are one. A gold item whose gold label is not in force (a retired one)
    is not scored (``Store.gold_in_force``). ``estimates=False`` (a non-admin's `/hitl stats`,
    which does not show them) leaves out the Dawid–Skene estimates, the costly part: up to
    :data:`SETTLE_WORK`, seconds on a large team."""
    configured = settings.labels  # HITL_LABELS
    gold = store.gold_in_force(store.gold_labels(), configured)
    if settings.votes <= 1 and not gold:
        return Quality(agreement=None, gold=[], n_gold=0)
    votes = list(store.iter_votes())
    weighted = settings.aggregation == "dawid_skene" and settings.votes > 1
    aliases = store.label_aliases()  # answers given before a rename count under the new name
    in_votes = [(i, u, aliases.get(lb, lb)) for i, u, lb in votes]  # oldest first
    in_force = Tally.from_votes(in_votes)
    return Quality(
        # on each item's first two answers: an item closes as soon as enough answers agree, so
        # whether it has a third depends on whether its first two agreed; its first two do not
        agreement=agreement(
            in_force,
            min_shared=DEFAULT_MIN_SHARED,
            # each person placed where they first gave the item a label: a changed answer
            # keeps its place before a third asked because the first two disagreed
            first_two=Tally.from_votes(first_two_votes(in_votes, store.first_labelled())),
        )
        if settings.votes > 1
        else None,
        gold=[g for g in gold_accuracy(in_force, gold) if g.n] if gold else [],
        n_gold=len(gold),
        estimates=(
            estimate(store, votes, gold, configured, settle=True)
            if weighted and estimates
            else None
        ),
    )


def settle_rounds(n_people: int, n_labels: int, n_votes: int) -> int:
    """EM's rounds for the figures stats show over ``n_votes`` answers by ``n_people`` over
    ``n_labels`` labels: as many as :data:`SETTLE_WORK` pays for, a round costing
    people × labels² + 2 × answers × labels, between :data:`SETTLE_MIN_ROUNDS` and
    :data:`SETTLE_ROUNDS` (never more than that)."""
    work = max(n_people * n_labels * n_labels + 2 * n_votes * n_labels, 1)
    return min(SETTLE_ROUNDS, max(SETTLE_MIN_ROUNDS, SETTLE_WORK // work))


def estimate(
    store: Store,
    votes: list[tuple[str, str, str]] | None = None,
    gold: dict[str, str] | None = None,
    configured: Sequence[str] = (),
    *,
    settle: bool = False,
) -> Estimates | None:
    """Gold-seeded Dawid–Skene over the items with two or more counted votes and the gold
    items people answered (votes and gold labels under the label set in force, without the
    gold of a label not in force: ``Store.gold_in_force``, ``configured``: HITL_LABELS);
    None when no item has two votes. Reads every vote: a worker thread's or the CLI's job.

    ``settle`` (the figures stats show, ``measure``): EM runs on to the fixed point plain EM
    reaches from the same start (training's rounds, then accelerated: ``dawid_skene``'s
    ``accelerate``), for at most ``settle_rounds`` rounds (``Aggregation.converged`` says
    whether it got there). Training (``training_rows``) keeps the likelihood rule,
    ``DEFAULT_GAIN_TOL``: its labels barely move on, but the accuracies it stops at can be
    points from the fixed point."""
    aliases = store.label_aliases()
    votes = store.iter_votes() if votes is None else votes
    gold = store.gold_in_force(store.gold_labels() if gold is None else gold, configured)
    by_item: dict[str, dict[str, str]] = {}
    for item, user, label in votes:
        by_item.setdefault(item, {})[user] = aliases.get(label, label)
    multi = {item for item, given in by_item.items() if len(given) >= 2}
    if not multi:
        return None
    kept = [
        (item, user, label)
        for item, given in by_item.items()
        if item in multi or item in gold
        for user, label in given.items()
    ]
    tally = Tally.from_votes(kept)
    n_votes: dict[str, int] = {}
    for _, user, _ in kept:
        n_votes[user] = n_votes.get(user, 0) + 1
    return Estimates(
        aggregation=(
            dawid_skene(
                tally,
                gold=gold,
                gain_tol=0,
                accelerate=True,
                max_iter=settle_rounds(len(tally.annotators), len(tally.labels), len(kept)),
            )
            if settle
            else dawid_skene(tally, gold=gold)
        ),
        n_items=len(multi),
        n_gold=len(multi & gold.keys()),  # the header says "N items …, K of them gold"
        n_votes=n_votes,
        voted={
            item: frozenset(given.values())
            for item, given in by_item.items()
            if item in multi or item in gold
        },
    )


def weighted_labels(found: Estimates, retired: Container[str] = frozenset()) -> dict[str, str]:
    """Item → its training label under Dawid–Skene, for the items with two or more votes: of
    the labels the item's votes gave (not retired), the one with the highest posterior. A label
    nobody gave the item is never chosen, however the model weighs the people (a unanimous item
    keeps its label); a tie between the labels given leaves the item out (it keeps its label)."""
    agg = found.aggregation
    column = {label: k for k, label in enumerate(agg.labels)}
    out: dict[str, str] = {}
    for i, (item, resolution) in enumerate(zip(agg.items, agg.resolved, strict=True)):
        given = sorted(label for label in found.voted.get(item, ()) if label not in retired)
        if resolution.n_votes < 2 or not given:
            continue
        posterior = agg.posteriors[i, [column[label] for label in given]]
        best = np.flatnonzero(np.isclose(posterior, posterior.max(), rtol=0, atol=1e-12))
        if len(best) == 1:
            out[item] = given[best[0]]
    return out


def gold_repeats(
    rows: list[tuple[str, str, str, str]], gold_texts: Iterable[str]
) -> tuple[list[tuple[str, str, str, str]], int]:
    """``rows`` without those whose text is a gold item's up to case, spacing and punctuation
    (``model.selection._key``, the near-duplicate key the questions use), and how many were
    left out. ``Store.training_data`` leaves the gold items out by id; the same text stored
    under another id (a ticket imported with its id, the reviewer's sheet without; another
    case) would teach the model the gold answer, and its guess on the gold question (shown,
    and the first button) would give it away. Computes the key of every row's text when
    there is gold (a worker thread's or the CLI's job)."""
    keys = {_key(text) for text in gold_texts}
    if not keys:
        return rows, 0
    kept = [row for row in rows if _key(row[1]) not in keys]
    return kept, len(rows) - len(kept)


def training_rows(store: Store, settings: Settings) -> list[tuple[str, str, str, str]]:
    """(item id, text, label, resolved_at) to train on, oldest first: ``Store.training_data``
    under the label set in force, without the labelled items that repeat a gold text
    (``gold_repeats``), with ``HITL_AGGREGATION=dawid_skene`` re-aggregated (see the module's
    docstring). Reads every label and vote: call it off the event loop."""
    aliases = store.label_aliases()
    # a retired label's items, and those of a label the set in force never had (imported
    # before HITL_LABELS named a narrower set): no model may learn a label it cannot answer
    retired = not_in_force(settings, store)
    rows, repeats = gold_repeats(store.training_data(), store.gold_texts())
    if repeats:
        logger.info(
            "training: %d labelled item%s repeat%s a gold text: left out of training",
            repeats, "s" if repeats != 1 else "", "" if repeats != 1 else "s",
        )  # fmt: skip
    rows = [(item, text, aliases.get(label, label), when) for item, text, label, when in rows]
    rows = [row for row in rows if row[2] not in retired]
    if settings.aggregation != "dawid_skene":
        return rows
    found = estimate(store, configured=settings.labels)
    if found is None:
        return rows
    weighted = weighted_labels(found, retired)
    keep = store.gold_labels().keys() | store.decided_by_people()
    changed = 0
    out = []
    for item, text, label, when in rows:
        new = weighted.get(item, label) if item not in keep else label
        changed += new != label
        out.append((item, text, new, when))
    if changed:
        logger.info("training labels: %d of %d changed by Dawid-Skene", changed, len(out))
    return out


def own_gold(store: Store, user_id: str, configured: Sequence[str] = ()) -> GoldAccuracy | None:
    """``user_id``'s accuracy on gold, from their own answers only (for their App Home); as
    ``measure``, not on a gold item whose gold label is not in force (``configured``:
    HITL_LABELS)."""
    votes, gold = store.gold_votes_of(user_id, configured)  # gold: under the set in force
    if not votes:
        return None
    aliases = store.label_aliases()  # as ``measure``: under the label set in force
    votes = [(item, user, aliases.get(label, label)) for item, user, label in votes]
    return gold_accuracy(Tally.from_votes(votes), gold)[0]


def gold_line(g: GoldAccuracy) -> str:
    low, high = g.interval
    return f"{_share(g.accuracy)} ({g.n_correct:,} of {g.n:,}, 95% CI {_share(low)}–{_share(high)})"


def gold_section(gold: list[GoldAccuracy], limit: int | None = MAX_PEOPLE) -> str:
    """Each person's accuracy on gold, least accurate first, on a tie the one with more answers
    first, then by id (for admins); the first ``limit`` of them (None: everyone)."""
    if not gold:
        return "*Accuracy on gold:* nobody has answered a gold question yet"
    ranked = sorted(gold, key=lambda g: (g.accuracy or 0.0, -g.n, g.annotator))
    shown = [f"{person(g.annotator)} {gold_line(g)}" for g in ranked]
    return "*Accuracy on gold:*\n" + _worst_first(shown, limit)


def estimates_section(found: Estimates | None, limit: int | None = MAX_PEOPLE) -> str:
    """Each person's accuracy as Dawid–Skene estimates it, least accurate first, on a tie the
    one with more answers first, then by id (admins); the first ``limit`` (None: everyone).
    The figures are EM's converged estimate (``estimate``); were EM stopped before, the header
    says so."""
    if found is None:
        return "*Estimated accuracy* (Dawid–Skene): no item has two answers yet"
    ranked = sorted(
        (a for a in found.aggregation.accuracy.items() if a[1] is not None),
        key=lambda a: (a[1], -found.n_votes.get(a[0], 0), a[0]),
    )
    shown = [f"{person(who)} {_share(acc)} ({count(found.n_votes.get(who, 0), 'answer')})"
             for who, acc in ranked]  # fmt: skip
    seeded = f", {found.n_gold} of them gold" if found.n_gold else ""
    agg = found.aggregation
    unsettled = (
        ""
        if agg.converged
        else f"; EM stopped after {count(agg.n_iter, 'round')} before it settled,"
        " these figures may still move"
    )
    return (
        f"*Estimated accuracy* (Dawid–Skene over {count(found.n_items, 'item')} with two or more "
        f"answers{seeded}; training uses its labels{unsettled}):\n" + _worst_first(shown, limit)
    )


def _number(value: float | None, reason: str = "") -> str:
    return f"{value:.2f}" if value is not None else "n/a" + (f" ({reason})" if reason else "")


def _share(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "n/a"


def agreement_sections(report: AgreementReport, limit: int | None = MAX_PEOPLE) -> list[str]:
    """The agreement, as mrkdwn sections: overall, by pair, by label (over ``limit`` labels,
    the first ``limit`` least agreed), by person (least agreement with the majority of the
    others first; the first ``limit``, None: everyone)."""
    overall = report.overall
    if overall.alpha is None and overall.observed is None:
        return ["*Agreement between people:* no item has two answers yet"]
    # Where some items have more than two answers, the figures are on each item's first two
    # (``model.agreement.first_two_votes``): the stopping rule chose which items got more.
    first_two = report.n_beyond_two > 0
    on = " on each item's first two answers" if first_two else ""
    items = count(overall.n_alpha_items, "item")
    people = count(overall.n_annotators, "person", "people")
    head = (
        f"*Agreement between people* ({items} with two or more answers, "
        f"{people}){on}: Krippendorff's α {_number(overall.alpha)} · "
        f"Fleiss' κ {_number(overall.fleiss)}"
        + (
            f" ({count(overall.n_fleiss_items, 'item')} with {count(overall.n_raters, 'answer')})"
            if overall.fleiss is not None and not first_two
            else ""
        )
        + f" · raw agreement {_share(overall.observed)}"
    )
    if overall.reason:
        head += f"\n_{overall.reason}_"
    sections = [head]
    pairs = sorted(
        (p for p in report.pairs if p.n_shared >= report.min_shared),
        key=lambda p: (-p.n_shared, p.a, p.b),
    )
    if pairs:
        shown = [
            f"{person(p.a)} & {person(p.b)}: κ {_number(p.kappa)} ({count(p.n_shared, 'item')}, "
            f"{_share(p.observed)} the same)"
            for p in pairs
        ]
        sections.append(f"*Cohen's κ by pair{on}:*\n" + _capped(shown, MAX_PAIRS, " pairs"))
    else:
        shared = (
            f"are both among the first two answers of {count(report.min_shared, 'item')}"
            if first_two
            else f"share {count(report.min_shared, 'item')}"
        )
        sections.append(f"*Cohen's κ by pair:* no two people {shared} yet")
    labels = [lb for lb in report.per_label if lb.specific is not None]
    if limit is not None and len(labels) > limit:
        # Slack: a set of 77 labels passed the block's 3,000 characters, cut inside a label
        # with no word of the rest; the least agreed first, as the lists of people, then how
        # many more
        labels = sorted(labels, key=lambda lb: lb.specific or 0.0)
        shown = " · ".join(f"{name(lb.label)} {_share(lb.specific)}" for lb in labels[:limit])
        sections.append(
            f"*By label* (specific agreement{on}, least agreed first): {shown} …and"
            f" {len(labels) - limit:,} more labels (`hitl stats` lists them all)"
        )
    elif labels:
        sections.append(
            f"*By label* (specific agreement{on}): "
            + " · ".join(f"{name(lb.label)} {_share(lb.specific)}" for lb in labels)
        )
    # least agreement first (a cap hides the people who agree most, not the careless
    # clickers), on a tie the one with more answers first, then by id
    people = sorted(
        (p for p in report.per_annotator if p.n),
        key=lambda p: (p.n_agree / p.n, -p.n, p.annotator),
    )
    if people:
        shown = [
            f"{person(p.annotator)} {_share(p.rate)} ({p.n_agree:,} of {p.n:,}, 95% CI "
            f"{_share(p.interval[0])}–{_share(p.interval[1])})"
            for p in people
        ]
        sections.append("*With the majority of the others:*\n" + _worst_first(shown, limit))
    return sections


def _worst_first(lines: list[str], limit: int | None) -> str:
    """A per-person list, worst first: all of it (``limit`` None: the CLI), else the first
    ``limit`` lines (Slack), then how many more and where to see everyone."""
    if limit is None or len(lines) <= limit:
        return "\n".join(lines)
    return "\n".join(lines[:limit]) + (
        f"\n…and {len(lines) - limit:,} more (`hitl stats` lists everyone)"
    )


def _capped(lines: list[str], limit: int, what: str = "") -> str:
    """The first ``limit`` lines, then how many more there are ("…and 3 more pairs")."""
    more = f"\n…and {len(lines) - limit:,} more{what}" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


def quality_sections(quality: Quality, *, gold: bool, limit: int | None = MAX_PEOPLE) -> list[str]:
    """The sections of a report; ``gold`` (admins, the CLI) adds each person's accuracy on
    gold when there are gold items. Each per-person list is worst first, the first ``limit``
    people of it (Slack: :data:`MAX_PEOPLE`); ``limit=None`` (`hitl stats`) lists everyone."""
    sections = agreement_sections(quality.agreement, limit) if quality.agreement is not None else []
    if gold and quality.n_gold:
        sections.append(gold_section(quality.gold, limit))
    if gold and quality.agreement is not None and quality.estimates is not None:
        sections.append(estimates_section(quality.estimates, limit))
    return sections
