"""Turning several people's votes into one label per item: majority, or weighted by reliability.

:func:`majority` takes the label with the most votes (a tie stays undecided).
:func:`dawid_skene` weighs each annotator by how reliable the votes show them to be: the
Dawid–Skene model (Dawid & Skene, *Maximum likelihood estimation of observer error-rates using
the EM algorithm*, Applied Statistics 28(1), 1979) gives every annotator a confusion matrix
(how often they answer l when the truth is k) and the labels prior probabilities, and finds
both with EM, starting from the vote shares. Items with a known (gold) answer can be fixed to
it, which anchors the confusion matrices. The result is deterministic: no random start.

Both return an :class:`Aggregation`: per item the resolved label and its posterior
probability, and per annotator their estimated accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from model.agreement import MISSING, Tally
from model.errors import InvalidInputError

DEFAULT_MAX_ITER = 500
DEFAULT_TOL = 1e-6
"""EM stops when no posterior moves by more than this in a round, or (:data:`DEFAULT_GAIN_TOL`)
when the likelihood stops rising."""
DEFAULT_GAIN_TOL = 1e-6
"""EM also stops when what it maximises (the votes' log-likelihood plus the log-density of the
smoothing's prior), per item with votes, rises by less than this in a round (the convergence
test of scikit-learn's mixture models, whose default is 1e-3). With many
labels and two votes an item the posteriors of a few items can drift for hundreds of rounds
after the likelihood has stopped rising: 24,000 items over 154 labels ran all 500 rounds
(30 s) and stop after 97 now (8 s), about as many labels right against the truth
(benchmarks/aggregation_speed.py). A run it stops is not ``converged``: the labels barely
move on, but each annotator's estimated accuracy can still be points away from the fixed
point (11 on an outside tester's 30-person team), so the figures ``/hitl stats`` shows run
EM on to its fixed point, with ``accelerate`` (``bot.learning.quality.estimate``)."""
DEFAULT_SMOOTHING = 0.01
"""Pseudo-count added to every cell of the confusion matrices and to the priors, so that a
label an annotator never used has a small probability instead of zero."""


@dataclass(frozen=True)
class Resolution:
    """The label an item resolves to (``None``: a tie, or no votes) and its probability."""

    item: str
    label: str | None
    posterior: float
    n_votes: int


@dataclass(frozen=True)
class Aggregation:
    """Resolved labels and estimated annotator accuracies from one method.

    ``posteriors[i, k]``: the probability that item ``items[i]`` is ``labels[k]``.
    ``accuracy[a]``: the expected share of annotator ``a``'s votes that are right (for
    majority: the share that agree with the resolved label). ``confusion[a][k, l]`` (Dawid–
    Skene only): the probability that ``a`` answers ``labels[l]`` when the truth is
    ``labels[k]``."""

    method: str
    items: list[str]
    labels: list[str]
    posteriors: np.ndarray
    resolved: list[Resolution]
    accuracy: dict[str, float | None]
    confusion: dict[str, np.ndarray] = field(default_factory=dict)
    priors: np.ndarray | None = None
    n_iter: int = 0
    converged: bool = True

    def label_of(self) -> dict[str, str | None]:
        """Item id → resolved label (``None`` for undecided items)."""
        return {r.item: r.label for r in self.resolved}


def _resolve(tally: Tally, posteriors: np.ndarray) -> list[Resolution]:
    n_votes = (tally.codes != MISSING).sum(axis=1)
    out = []
    for i, item in enumerate(tally.items):
        row = posteriors[i]
        top = row.max() if len(row) else 0.0
        winners = np.flatnonzero(np.isclose(row, top, rtol=0, atol=1e-12))
        label = tally.labels[winners[0]] if n_votes[i] and len(winners) == 1 else None
        out.append(Resolution(item, label, float(top), int(n_votes[i])))
    return out


def _vote_shares(tally: Tally) -> np.ndarray:
    counts = tally.counts().astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _expected_accuracy(tally: Tally, posteriors: np.ndarray) -> dict[str, float | None]:
    """Per annotator: the mean posterior probability of the labels they gave."""
    out: dict[str, float | None] = {}
    for a, annotator in enumerate(tally.annotators):
        rows = np.flatnonzero(tally.codes[:, a] != MISSING)
        out[annotator] = float(posteriors[rows, tally.codes[rows, a]].mean()) if len(rows) else None
    return out


def majority(tally: Tally) -> Aggregation:
    """The label with the most votes per item; a tie stays undecided (label ``None``).

    The posterior is the label's share of the item's votes; an annotator's accuracy is the
    share of their votes that agree with the decided label (undecided items left out)."""
    shares = _vote_shares(tally)
    resolved = _resolve(tally, shares)
    decided = np.array([r.label is not None for r in resolved], dtype=bool)
    winner = shares.argmax(axis=1) if len(tally.labels) else np.zeros(len(tally.items), int)
    accuracy: dict[str, float | None] = {}
    for a, annotator in enumerate(tally.annotators):
        rows = np.flatnonzero((tally.codes[:, a] != MISSING) & decided)
        accuracy[annotator] = (
            float((tally.codes[rows, a] == winner[rows]).mean()) if len(rows) else None
        )
    return Aggregation(
        "majority", list(tally.items), list(tally.labels), shares, resolved, accuracy
    )


def dawid_skene(
    tally: Tally,
    *,
    gold: Mapping[str, str] | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    gain_tol: float = DEFAULT_GAIN_TOL,
    smoothing: float = DEFAULT_SMOOTHING,
    accelerate: bool = False,
) -> Aggregation:
    """Labels weighted by each annotator's estimated confusion matrix (Dawid–Skene EM).

    Starts from the vote shares (majority), then alternates: confusion matrices and label
    priors from the current posteriors (M step, with ``smoothing`` pseudo-counts), posteriors
    from them (E step), until no posterior moves by more than ``tol``, or the objective per
    item (:data:`DEFAULT_GAIN_TOL`) rises by less than ``gain_tol`` (0: never stops on it), or after
    ``max_iter`` rounds. Items in ``gold`` (item id → label) keep that label with probability
    1 throughout; gold items not in the tally are ignored, and a gold label nobody chose joins
    the labels.

    An item can resolve to a label none of its votes gave (EM weighs people by their confusion
    matrices: two people agreeing on ``z`` can read as ``y``), more so with few items;
    ``bot.learning.quality.weighted_labels`` never trains on such a label.

    ``converged`` is true only when EM reached its fixed point (no posterior moved by more
    than ``tol``); stopped by ``gain_tol`` (training's default: the likelihood is flat, the
    posteriors and accuracies may still move by several points) or ``max_iter``, it is false.
    ``accelerate`` (what ``/hitl stats`` shows; use it with ``gain_tol=0``): plain EM rounds
    until the likelihood rule (:data:`DEFAULT_GAIN_TOL`, training's) would stop them, then
    SQUAREM steps between plain EM rounds, to the fixed point plain EM reaches from the same
    start in about half its rounds (every E step counts as one: 113 for an outside tester's
    30-person team's 456 votes, 265 plain). That is no theorem (EM has several fixed points
    here, and an extrapolated step could in principle cross to another one), but on 275
    synthetic teams of 3–40 people over 3–20 labels no accuracy ended more than 0.0001 from
    plain EM's, where SQUAREM from the first round ended more than 1 point away on 19. The
    same stopping tests, on the plain rounds.
    """
    if max_iter < 1:
        raise InvalidInputError(f"max_iter must be at least 1, got {max_iter}")
    if gain_tol < 0:
        raise InvalidInputError(f"gain_tol must be 0 or above, got {gain_tol}")
    if smoothing <= 0:
        raise InvalidInputError(f"smoothing must be above 0, got {smoothing}")
    if not tally.items:
        empty = np.zeros((0, len(tally.labels)))
        return Aggregation("dawid_skene", [], list(tally.labels), empty, [], {})
    gold = {str(k): str(v) for k, v in (gold or {}).items()}
    in_tally = set(tally.items)
    extra = {v for k, v in gold.items() if k in in_tally} - set(tally.labels)
    if extra:  # a gold label nobody chose: widen the label set, keep the votes
        labels = sorted({*tally.labels, *extra})
        new_code = np.array([labels.index(x) for x in tally.labels] + [MISSING])  # -1 → -1
        tally = Tally(tally.items, tally.annotators, labels, new_code[tally.codes])
    n_items, n_labels = len(tally.items), len(tally.labels)
    row = {item: i for i, item in enumerate(tally.items)}
    fixed = np.array(sorted(row[k] for k in gold if k in row), dtype=np.int64)
    fixed_post = np.zeros((len(fixed), n_labels))
    for j, i in enumerate(fixed):
        fixed_post[j, tally.labels.index(gold[tally.items[i]])] = 1.0

    # Each vote falls in a group, (annotator, label given): at most annotators × labels of
    # them. ``by_group`` counts each item's votes per group (sparse), so both steps are one
    # sparse product each, in C and without BLAS threads. The loop over annotators with a
    # dense (labels × votes) @ (votes × labels) product and ``np.add.at`` they replace took
    # 82 s for an outside tester's 47,600 votes over 154 labels (benchmarks/aggregation_speed.py).
    from scipy.sparse import csr_matrix  # here: a server with no model has not loaded scipy

    item_of, annotator_of = np.nonzero(tally.codes != MISSING)
    label_of = tally.codes[item_of, annotator_of]
    has_votes = np.bincount(item_of, minlength=n_items) > 0
    n_annotators = len(tally.annotators)
    by_group = csr_matrix(
        (np.ones(len(item_of)), (item_of, annotator_of * n_labels + label_of)),
        shape=(n_items, n_annotators * n_labels),
    )
    by_group_t = by_group.T.tocsr()

    posteriors = _vote_shares(tally)
    posteriors[fixed] = fixed_post
    confusion = np.zeros((n_annotators, n_labels, n_labels))
    priors = np.full(n_labels, 1.0 / max(n_labels, 1))
    converged, n_iter = False, 0
    free = has_votes.copy()
    free[fixed] = False  # items whose truth EM estimates (gold items: theirs is known)
    fixed_label = fixed_post.argmax(axis=1)
    n_voted = max(int(has_votes.sum()), 1)

    def m_step(posteriors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Priors and confusion matrices from the posteriors; counts[a, k, l] sums the
        posterior of truth k over a's votes for l."""
        weight = posteriors[has_votes]
        priors = (weight.sum(axis=0) + smoothing) / (weight.sum() + smoothing * n_labels)
        given = by_group_t @ posteriors  # (annotator, label given) × truth
        counts = given.reshape(n_annotators, n_labels, n_labels).transpose(0, 2, 1) + smoothing
        return priors, counts / counts.sum(axis=2, keepdims=True)

    def e_step(log_priors: np.ndarray, log_confusion: np.ndarray) -> tuple[np.ndarray, float]:
        """Posteriors from the priors and confusion matrices (as logs), and the objective."""
        # row (a, l) of ``log_given`` is log P(a answers l | truth k) over k
        log_given = log_confusion.transpose(0, 2, 1).reshape(-1, n_labels)
        log_post = log_priors + by_group @ log_given
        fixed_joint = log_post[fixed, fixed_label]
        top = log_post.max(axis=1, keepdims=True)
        log_post -= top
        updated = np.exp(log_post)
        total = updated.sum(axis=1, keepdims=True)
        updated /= total
        # what EM raises every round: the log-likelihood of the votes (a gold item's at its
        # known label) plus the log-density of the smoothing's Dirichlet prior, per item
        objective = (
            float((top[:, 0] + np.log(total[:, 0]))[free].sum() + fixed_joint.sum())
            + smoothing * float(log_confusion.sum() + log_priors.sum())
        ) / n_voted
        updated[~has_votes] = 0.0
        updated[fixed] = fixed_post
        return updated, objective

    def moved(updated: np.ndarray, posteriors: np.ndarray) -> float:
        return float(np.abs(updated - posteriors).max()) if n_items else 0.0

    objective = -np.inf
    if not accelerate:
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported)
            priors, confusion = m_step(posteriors)
            updated, after = e_step(np.log(priors), np.log(confusion))
            before, objective = objective, after
            change = moved(updated, posteriors)
            posteriors = updated
            if change <= tol:
                converged = True  # a fixed point: no posterior moves any more
                break
            if gain_tol and objective - before < gain_tol:
                break  # stopped on the likelihood, posteriors still moving: not converged
    else:
        # Plain EM rounds first, until the likelihood rule training stops on
        # (DEFAULT_GAIN_TOL) would stop them: EM has then settled into the basin plain EM ends
        # in, and SQUAREM from there stays in it. SQUAREM from the start can jump basins (EM
        # here has several local optima): 19 of 275 synthetic teams ended more than 1 point
        # from plain EM's fixed point, one by 99 points; from the warm start none by more
        # than 0.0001.
        # SQUAREM (Varadhan & Roland, Scandinavian Journal of Statistics 35(2), 2008): two EM
        # rounds from the parameters θ0 give θ1, θ2; the step r = θ1 − θ0 and its change
        # v = θ2 − 2θ1 + θ0 extrapolate θ0 − 2αr + α²v, α = −|r|/|v| (on the logs of the
        # priors and confusion matrices, normalised again), kept only when its objective is
        # no lower than the plain third round's (else α halves towards −1, plain EM). Every
        # E step counts as a round; the stopping tests are plain EM's, on its plain rounds.
        def lognorm(x: np.ndarray, axis: int) -> np.ndarray:
            top = x.max(axis=axis, keepdims=True)
            return x - (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True)))

        warm = False  # out of the plain rounds of the warm start
        while n_iter < max_iter and not warm:
            priors, confusion = m_step(posteriors)
            updated, after = e_step(np.log(priors), np.log(confusion))
            n_iter += 1
            before, objective = objective, after
            change = moved(updated, posteriors)
            posteriors = updated
            if change <= tol:
                converged = True
                break
            if gain_tol and objective - before < gain_tol:
                break  # stopped on the likelihood, as asked: not converged
            warm = objective - before < DEFAULT_GAIN_TOL
        while warm and n_iter < max_iter and not converged:
            thetas = []
            stop = False
            for _ in range(3):  # three plain rounds: θ0, θ1, θ2 and their posteriors
                priors, confusion = m_step(posteriors)
                thetas.append((np.log(priors), np.log(confusion)))
                updated, after = e_step(*thetas[-1])
                n_iter += 1
                before, objective = objective, after
                change = moved(updated, posteriors)
                posteriors = updated
                if change <= tol:
                    converged = stop = True
                elif (gain_tol and objective - before < gain_tol) or n_iter >= max_iter:
                    stop = True
                if stop:
                    break
            if stop:
                break
            (p0, c0), (p1, c1), (p2, c2) = thetas
            r = (p1 - p0, c1 - c0)
            v = (p2 - 2 * p1 + p0, c2 - 2 * c1 + c0)
            size_r = np.sqrt(sum(float((x * x).sum()) for x in r))
            size_v = np.sqrt(sum(float((x * x).sum()) for x in v))
            alpha = min(-size_r / size_v, -1.0) if size_v > 0 else -1.0
            while alpha < -1.0 and n_iter < max_iter:
                log_priors = lognorm(p0 - 2 * alpha * r[0] + alpha * alpha * v[0], 0)
                log_confusion = lognorm(c0 - 2 * alpha * r[1] + alpha * alpha * v[1], 2)
                jumped, after = e_step(log_priors, log_confusion)
                n_iter += 1
                if after >= objective:  # as good as plain EM's round, or better: from there
                    posteriors, objective = jumped, after
                    priors, confusion = np.exp(log_priors), np.exp(log_confusion)
                    break
                alpha = (alpha - 1) / 2  # halfway to plain EM's −1
                if alpha > -1.1:
                    break  # near enough plain EM: its third round stands
    return Aggregation(
        "dawid_skene" if not len(fixed) else "dawid_skene_gold",
        list(tally.items),
        list(tally.labels),
        posteriors,
        _resolve(tally, posteriors),
        _expected_accuracy(tally, posteriors),
        {annotator: confusion[a].copy() for a, annotator in enumerate(tally.annotators)},
        priors,
        n_iter,
        converged,
    )
