"""How far annotators agree, and how often each one is right on gold: numbers you can cite.

Everything starts from a :class:`Tally`, each annotator's (latest) label per item, built from
``(item_id, annotator, label)`` votes or from an items × annotators table with gaps. From it:

- :func:`pairwise_kappa`: Cohen's kappa (scikit-learn) of every pair of annotators who share
  at least ``min_shared`` items;
- :func:`overall_agreement`: Krippendorff's alpha for nominal data over every item with two or
  more votes (it allows any number of votes per item), and Fleiss' kappa over the items that
  have the most common number of votes (Fleiss needs the same number of raters per item);
- :func:`label_agreement`: per label, the proportion of specific agreement and the alpha of the
  data recoded as "this label or another";
- :func:`annotator_agreement`: each annotator against the majority of the others (leave one out);
- :func:`gold_accuracy`: each annotator's accuracy on items with a known answer, with a Wilson
  interval and n;
- :func:`first_two_votes`: each item's first two answerers' (latest) votes, for answers
  collected until enough agree (an item closes early when its first answers agree):
  agreement measured on every vote is then conditional on that stopping rule, on the first
  two it is not (``agreement``'s ``first_two``).

A value that cannot be defined (one annotator, no shared items, a single label throughout so
that chance agreement is total) is ``None`` with a ``reason``, never a made-up 0 or 1.

Krippendorff's alpha is written out here from its textbook formula (numpy, a few lines) rather
than taken from the ``krippendorff`` package, so that ``model/`` keeps to numpy, scipy and
scikit-learn; the tests check it against Krippendorff's own worked example.

Its length (~450 lines) is five measures over one ``Tally`` type, each with its result
dataclass and the reasons an undefined value carries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from model.errors import InvalidInputError
from model.evaluation import fleiss_kappa_from_table, wilson_interval

MISSING = -1
"""The code of "no vote" in :attr:`Tally.codes`."""

DEFAULT_MIN_SHARED = 10
"""Cohen's kappa is given for pairs of annotators with at least this many items in common."""


@dataclass(frozen=True)
class Tally:
    """Who gave which label to which item: ``codes[i, a]`` is the index in ``labels`` of
    annotator ``annotators[a]``'s label for item ``items[i]``, or :data:`MISSING`."""

    items: list[str]
    annotators: list[str]
    labels: list[str]
    codes: np.ndarray

    @classmethod
    def from_votes(
        cls, votes: Iterable[tuple[str, str, str | None]], labels: Sequence[str] = ()
    ) -> Tally:
        """From ``(item_id, annotator, label)`` triples in the order they were given.

        An annotator's later vote on the same item replaces the earlier one (the product
        counts a person's latest answer); a ``None`` label (a skip) is no vote. ``labels``
        may add labels nobody chose; the label list is sorted.
        """
        kept = {key: label for key, label in _latest(votes).items() if label is not None}
        items = sorted({i for i, _ in kept})
        annotators = sorted({a for _, a in kept})
        all_labels = sorted(set(kept.values()) | {str(x) for x in labels})
        row = {x: j for j, x in enumerate(items)}
        col = {x: j for j, x in enumerate(annotators)}
        code = {x: j for j, x in enumerate(all_labels)}
        codes = np.full((len(items), len(annotators)), MISSING, dtype=np.int64)
        for (item, annotator), label in kept.items():
            codes[row[item], col[annotator]] = code[label]
        return cls(items, annotators, all_labels, codes)

    @classmethod
    def from_matrix(
        cls,
        rows: Sequence[Sequence[str | None]],
        *,
        items: Sequence[str] | None = None,
        annotators: Sequence[str] | None = None,
        labels: Sequence[str] = (),
    ) -> Tally:
        """From an items × annotators table; ``None`` is no vote. Items default to "0", "1", …
        and annotators to "a0", "a1", …"""
        width = {len(r) for r in rows}
        if len(width) > 1:
            raise InvalidInputError(f"every row needs one cell per annotator, got {sorted(width)}")
        n_cols = width.pop() if width else len(annotators or ())
        items = [str(x) for x in items] if items is not None else [str(i) for i in range(len(rows))]
        annotators = (
            [str(x) for x in annotators]
            if annotators is not None
            else [f"a{j}" for j in range(n_cols)]
        )
        if len(items) != len(rows) or len(annotators) != n_cols:
            raise InvalidInputError(
                f"{len(rows)} rows × {n_cols} columns but {len(items)} item ids and "
                f"{len(annotators)} annotators"
            )
        if len(set(items)) != len(items) or len(set(annotators)) != len(annotators):
            raise InvalidInputError("item ids and annotators must each be unique")
        all_labels = sorted(
            {str(c) for r in rows for c in r if c is not None} | set(map(str, labels))
        )
        code = {x: j for j, x in enumerate(all_labels)}
        codes = np.full((len(items), len(annotators)), MISSING, dtype=np.int64)
        for i, r in enumerate(rows):
            for a, cell in enumerate(r):
                if cell is not None:
                    codes[i, a] = code[str(cell)]
        return cls(items, annotators, all_labels, codes)

    @property
    def n_votes(self) -> int:
        return int((self.codes != MISSING).sum())

    def votes(self) -> list[tuple[str, str, str]]:
        """The tally as ``(item_id, annotator, label)`` triples, item by item."""
        i, a = np.nonzero(self.codes != MISSING)
        return [
            (self.items[r], self.annotators[c], self.labels[self.codes[r, c]])
            for r, c in zip(i.tolist(), a.tolist(), strict=True)
        ]

    def counts(self) -> np.ndarray:
        """``(items, labels)`` table: how many votes each item got for each label."""
        table = np.zeros((len(self.items), len(self.labels)), dtype=np.int64)
        i, a = np.nonzero(self.codes != MISSING)
        np.add.at(table, (i, self.codes[i, a]), 1)
        return table


def _latest(votes: Iterable[tuple[str, str, str | None]]) -> dict[tuple[str, str], str | None]:
    """Each ``(item, annotator)``'s latest label (``None``: a skip), checked, in the order of
    those latest votes."""
    latest: dict[tuple[str, str], str | None] = {}
    for n, vote in enumerate(votes, 1):
        if len(vote) != 3:
            raise InvalidInputError(
                f"vote {n} has {len(vote)} fields; give (item_id, annotator, label)"
            )
        item, annotator, label = (None if v is None else str(v) for v in vote)
        if not item or not annotator:
            raise InvalidInputError(f"vote {n} has an empty item id or annotator")
        latest.pop((item, annotator), None)  # its place is that of the vote that counts
        latest[(item, annotator)] = label
    return latest


def first_two_votes(
    votes: Iterable[tuple[str, str, str | None]],
    first: Mapping[tuple[str, str], Any] | None = None,
) -> list[tuple[str, str, str]]:
    """Each item's first two answerers' votes, ``(item_id, annotator, label)``, in the order
    they first answered: an annotator's latest vote counts (as :meth:`Tally.from_votes`; a
    skip is no vote), placed where they first gave a label to the item, so a changed answer
    keeps its place.

    ``first``: when each ``(item_id, annotator)`` first gave the item a label (any sortable
    key, e.g. the id of that answer), for votes that hold only each annotator's latest answer
    (a pair it lacks comes after those it has); without it, the place of their first
    labelled vote in ``votes``.

    Where answers are collected until enough agree (``HITL_VOTES=3`` closes an item as soon as
    two answers agree), which items get a third answer depends on whether the first two agreed:
    agreement measured on every answer is then conditional on the stopping rule (the items
    that closed on two answers agree by construction; third answers exist only where the first
    two disagreed). Every item with two or more answers has its first two whatever they say,
    so agreement measured on them is not selected by the rule. A person who changes their
    answer after a third was asked stays among the first two (by their latest answer), and
    the third stays out."""
    votes = list(votes)
    given: dict[tuple[str, str], int] = {}  # the place of each pair's first labelled vote
    for n, vote in enumerate(votes):
        if len(vote) == 3 and vote[2] is not None:
            given.setdefault((str(vote[0]), str(vote[1])), n)
    kept = [
        (key, label, n)
        for n, (key, label) in enumerate(_latest(votes).items())
        if label is not None
    ]

    def place(entry: tuple[tuple[str, str], str, int]) -> tuple[int, Any, int]:
        key, _, n = entry
        if first is not None and key in first:
            return (0, first[key], n)
        return (1 if first is not None else 0, given.get(key, n), n)

    seen: dict[str, int] = {}
    out = []
    for (item, annotator), label, _ in sorted(kept, key=place):
        if seen.get(item, 0) >= 2:
            continue
        seen[item] = seen.get(item, 0) + 1
        out.append((item, annotator, label))
    return out


@dataclass(frozen=True)
class PairKappa:
    """Cohen's kappa of annotators ``a`` and ``b`` on the ``n_shared`` items both labeled."""

    a: str
    b: str
    n_shared: int
    observed: float
    kappa: float | None
    reason: str = ""


@dataclass(frozen=True)
class OverallAgreement:
    """Chance-corrected agreement of the whole team.

    ``alpha``: Krippendorff's alpha (nominal) over the ``n_alpha_items`` items with two or
    more votes. ``fleiss``: Fleiss' kappa over the ``n_fleiss_items`` items that have exactly
    ``n_raters`` votes (the most common number). ``observed``: the share of agreeing pairs of
    votes within an item, over the alpha items."""

    n_items: int
    n_annotators: int
    n_votes: int
    alpha: float | None
    n_alpha_items: int
    fleiss: float | None
    n_fleiss_items: int
    n_raters: int
    observed: float | None
    reason: str = ""


@dataclass(frozen=True)
class LabelAgreement:
    """Agreement on one label over items with two or more votes.

    ``specific``: of the votes for this label, the share of their pairings with the other votes
    on the same item that agree (the proportion of specific agreement, for any number of
    raters). ``alpha``: Krippendorff's alpha of the votes recoded as this label or another.
    ``n_votes``: votes for this label on those items."""

    label: str
    n_votes: int
    specific: float | None
    alpha: float | None
    reason: str = ""


@dataclass(frozen=True)
class AnnotatorAgreement:
    """One annotator against the majority of the others, item by item (leave one out).

    Items where the others are tied or absent are not compared (``n_tied``, left out of ``n``).
    ``kappa`` is Cohen's kappa between this annotator and that majority."""

    annotator: str
    n_votes: int
    n: int
    n_agree: int
    n_tied: int
    rate: float | None
    interval: tuple[float, float]
    kappa: float | None
    reason: str = ""


@dataclass(frozen=True)
class GoldAccuracy:
    """``n_correct`` of an annotator's ``n`` answers to gold items were the gold label."""

    annotator: str
    n: int
    n_correct: int
    accuracy: float | None
    interval: tuple[float, float]


def _kappa(x: np.ndarray, y: np.ndarray) -> tuple[float | None, str]:
    """Cohen's kappa of two code arrays, or None and why.

    Computed as scikit-learn's ``cohen_kappa_score(x, y, labels=used)`` computes it (its
    confusion matrix over the labels either used, then the same floating-point steps, so the
    same value; the tests compare them), without its checks of the arguments, which cost ~1 ms
    a call: `/hitl stats` asks for every pair of a team (435 pairs of 30 people) and every
    person."""
    if len(x) == 0:
        return None, "no items in common"
    used = np.union1d(x, y)
    if len(used) == 1:
        return None, "a single label throughout: chance agreement is total, kappa is undefined"
    k = len(used)
    cells = np.searchsorted(used, x) * k + np.searchsorted(used, y)
    confusion = np.bincount(cells, minlength=k * k).reshape(k, k).astype(np.float64)
    sum0 = np.sum(confusion, axis=0)
    sum1 = np.sum(confusion, axis=1)
    expected = np.outer(sum0, sum1) / np.sum(sum0)
    w_mat = np.ones((k, k), dtype=np.float64)
    np.fill_diagonal(w_mat, 0)
    return float(1 - np.sum(w_mat * confusion) / np.sum(w_mat * expected)), ""


def pairwise_kappa(tally: Tally, *, min_shared: int = DEFAULT_MIN_SHARED) -> list[PairKappa]:
    """Cohen's kappa of every pair of annotators with at least ``min_shared`` items in common,
    in the order of the annotators' names. Pairs with fewer are left out."""
    if min_shared < 1:
        raise InvalidInputError(f"min_shared must be at least 1, got {min_shared}")
    codes = tally.codes
    present = codes != MISSING
    # an item one person labeled is shared by no pair: only items with two or more votes count
    multi = present.sum(axis=1) >= 2
    codes, present = codes[multi], present[multi]
    # counts in float64 (BLAS, exact below 2**53): numpy multiplies int64 matrices in a plain
    # loop, seconds at 200,000 items
    as_float = present.astype(np.float64)
    shared = np.rint(as_float.T @ as_float).astype(np.int64)
    out = []
    for a, b in combinations(range(len(tally.annotators)), 2):
        if shared[a, b] < min_shared:
            continue
        both = present[:, a] & present[:, b]
        x, y = codes[both, a], codes[both, b]
        kappa, reason = _kappa(x, y)
        out.append(
            PairKappa(
                tally.annotators[a],
                tally.annotators[b],
                int(both.sum()),
                float((x == y).mean()),
                kappa,
                reason,
            )
        )
    return out


def krippendorff_alpha(counts: np.ndarray) -> float | None:
    """Krippendorff's alpha for nominal data from an ``(items, labels)`` table of vote counts.

    Items with fewer than two votes are not pairable and drop out. With ``n_uc`` the votes for
    label c on item u, ``m_u`` the votes on u, ``n_c = Σ_u n_uc`` and ``n = Σ_c n_c`` over
    pairable items (Krippendorff, *Computing Krippendorff's Alpha-Reliability*, 2011, §C):

        alpha = ((n − 1) · Σ_u Σ_c n_uc(n_uc − 1)/(m_u − 1) − Σ_c n_c(n_c − 1))
                / (n(n − 1) − Σ_c n_c(n_c − 1))

    ``None`` when there are no pairable items or every vote is the same label (the expected
    disagreement is 0).
    """
    t = np.asarray(counts, dtype=np.float64)
    m = t.sum(axis=1)
    t = t[m >= 2]
    m = m[m >= 2]
    if len(t) == 0:
        return None
    n_c = t.sum(axis=0)
    n = n_c.sum()
    chance = float((n_c * (n_c - 1)).sum())
    denominator = n * (n - 1) - chance
    if denominator <= 0:
        return None
    observed = float(((t * (t - 1)).sum(axis=1) / (m - 1)).sum())
    return float(((n - 1) * observed - chance) / denominator)


def overall_agreement(tally: Tally) -> OverallAgreement:
    """Krippendorff's alpha over all items with two or more votes, and Fleiss' kappa over the
    items that have the most common number (≥ 2) of votes; see :class:`OverallAgreement`."""
    counts = tally.counts()
    m = counts.sum(axis=1)
    pairable = m >= 2
    base = {
        "n_items": len(tally.items),
        "n_annotators": len(tally.annotators),
        "n_votes": tally.n_votes,
    }
    if not pairable.any():
        return OverallAgreement(
            **base,
            alpha=None,
            n_alpha_items=0,
            fleiss=None,
            n_fleiss_items=0,
            n_raters=0,
            observed=None,
            reason="no item has two or more votes",
        )
    t = counts[pairable]
    observed = float(((t * (t - 1)).sum(axis=1)).sum() / (m[pairable] * (m[pairable] - 1)).sum())
    alpha = krippendorff_alpha(t)
    # the most common number of votes among pairable items; the larger one on a tie
    k = max(Counter(m[pairable].tolist()).items(), key=lambda kv: (kv[1], kv[0]))[0]
    fixed = t[t.sum(axis=1) == k]
    reasons = []
    if alpha is None:
        reasons.append("every vote is the same label: chance agreement is total")
    fleiss = None
    if (fixed.sum(axis=0) > 0).sum() < 2:
        reasons.append(f"the items with {k} votes all got one label: Fleiss' kappa is undefined")
    else:
        fleiss = fleiss_kappa_from_table(fixed)
    reason = "; ".join(dict.fromkeys(reasons))
    return OverallAgreement(
        **base,
        alpha=alpha,
        n_alpha_items=int(pairable.sum()),
        fleiss=fleiss,
        n_fleiss_items=len(fixed),
        n_raters=int(k),
        observed=observed,
        reason=reason,
    )


def label_agreement(tally: Tally) -> list[LabelAgreement]:
    """Per label, over items with two or more votes: the proportion of specific agreement
    ``Σ_u n_uc(n_uc − 1) / Σ_u n_uc(m_u − 1)`` and the alpha of "this label or another"."""
    counts = tally.counts()
    m = counts.sum(axis=1)
    t = counts[m >= 2]
    m = m[m >= 2]
    out = []
    for c, label in enumerate(tally.labels):
        n_uc = t[:, c]
        n_votes = int(n_uc.sum())
        if n_votes == 0:
            out.append(LabelAgreement(label, 0, None, None, "no votes on items with two or more"))
            continue
        specific = float((n_uc * (n_uc - 1)).sum() / (n_uc * (m - 1)).sum())
        binary = np.column_stack([n_uc, m - n_uc])
        alpha = krippendorff_alpha(binary)
        reason = "" if alpha is not None else "every vote is this label: alpha is undefined"
        out.append(LabelAgreement(label, n_votes, specific, alpha, reason))
    return out


def _plurality(row_counts: np.ndarray) -> int | None:
    """The index of the label with the most votes, or None on a tie or no votes."""
    if row_counts.sum() == 0:
        return None
    top = row_counts.max()
    winners = np.flatnonzero(row_counts == top)
    return int(winners[0]) if len(winners) == 1 else None


def annotator_agreement(tally: Tally) -> list[AnnotatorAgreement]:
    """Each annotator against the plurality label of the other annotators on each item they
    labeled (items where the others are tied or absent are not compared)."""
    counts = tally.counts()
    out = []
    for a, annotator in enumerate(tally.annotators):
        # item by item, as ``_plurality`` of the others' counts, for all their items at once
        mine_rows = np.flatnonzero(tally.codes[:, a] != MISSING)
        own = tally.codes[mine_rows, a]
        rest = counts[mine_rows].copy()
        rest[np.arange(len(mine_rows)), own] -= 1
        rest = rest[rest.sum(axis=1) > 0]  # nobody else answered: not compared
        own = own[counts[mine_rows].sum(axis=1) > 1]
        top = rest.max(axis=1, initial=0)
        tied = (rest == top[:, None]).sum(axis=1) > 1
        n_tied = int(tied.sum())
        x = own[~tied].astype(np.int64)
        y = np.argmax(rest[~tied], axis=1).astype(np.int64)
        n, n_agree = len(x), int((x == y).sum())
        kappa, reason = _kappa(x, y)
        if n == 0:
            reason = "no item shared with others who are not tied"
        out.append(
            AnnotatorAgreement(
                annotator,
                n_votes=len(mine_rows),
                n=n,
                n_agree=n_agree,
                n_tied=n_tied,
                rate=n_agree / n if n else None,
                interval=wilson_interval(n_agree, n),
                kappa=kappa,
                reason=reason,
            )
        )
    return out


def gold_accuracy(tally: Tally, gold: Mapping[str, str]) -> list[GoldAccuracy]:
    """Each annotator's accuracy on the items of ``gold`` (item id → the right label) they
    answered, with a 95% Wilson interval; annotators with no gold answer get n = 0."""
    row = {item: i for i, item in enumerate(tally.items)}
    out = []
    for a, annotator in enumerate(tally.annotators):
        n = n_correct = 0
        for item, label in gold.items():
            i = row.get(str(item))
            if i is None or tally.codes[i, a] == MISSING:
                continue
            n += 1
            n_correct += tally.labels[tally.codes[i, a]] == str(label)
        out.append(
            GoldAccuracy(
                annotator, n, n_correct, n_correct / n if n else None, wilson_interval(n_correct, n)
            )
        )
    return out


@dataclass(frozen=True)
class AgreementReport:
    """Everything :func:`agreement` measures on one tally.

    ``n_beyond_two``: with ``first_two``, the items with more than two votes whose later votes
    the overall, pairwise and per-label figures leave out (0: they read every vote)."""

    overall: OverallAgreement
    pairs: list[PairKappa]
    per_label: list[LabelAgreement]
    per_annotator: list[AnnotatorAgreement]
    min_shared: int
    n_beyond_two: int = 0


def agreement(
    tally: Tally, *, min_shared: int = DEFAULT_MIN_SHARED, first_two: Tally | None = None
) -> AgreementReport:
    """Overall, pairwise, per-label and per-annotator agreement of ``tally``.

    ``first_two``: the tally of each item's first two votes (``Tally.from_votes`` of
    :func:`first_two_votes`), for answers collected until enough agree: the overall, pairwise
    (over the items where both people are among the first two) and per-label figures are then
    measured on it, which the stopping rule does not select. Each annotator against the
    majority of the others reads every vote of ``tally``."""
    measured = tally if first_two is None else first_two
    beyond = 0
    if first_two is not None:
        beyond = int((tally.counts().sum(axis=1) > 2).sum())
    return AgreementReport(
        overall=overall_agreement(measured),
        pairs=pairwise_kappa(measured, min_shared=min_shared),
        per_label=label_agreement(measured),
        per_annotator=annotator_agreement(tally),
        min_shared=min_shared,
        n_beyond_two=beyond,
    )
