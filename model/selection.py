"""Which unlabeled items to ask people about next.

Scores first, then the pick. An uncertainty *strategy* is a pure function of the full
probability matrix (one row per item, one column per label) that returns a *priority* per
row: larger means "ask about it sooner". The strategies live in one registry,
:data:`STRATEGIES`; :func:`priority` applies one by name, and the bot stores that number with
each scored item and orders its queue by it. A new strategy is one function registered here
(``@register_strategy("name")``): the bot's setting ``HITL_STRATEGY`` accepts every
registered name, and the queue follows it.

:func:`select` turns priorities into a batch of :class:`Pick` objects, each tagged with why it
was picked:

* ``uncertain`` — among the most uncertain items under the chosen strategy;
* ``audit`` — drawn uniformly at random from all unlabeled items, so that accuracy
  measured on audit answers is unbiased;
* ``cold_start`` — drawn at random because no model exists yet.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from model.errors import InvalidInputError
from model.quiet import quiet

Strategy = str  # a name in STRATEGIES
Reason = Literal["uncertain", "audit", "cold_start"]
PriorityFunction = Callable[[np.ndarray], np.ndarray]

STRATEGIES: dict[str, PriorityFunction] = {}
DEFAULT_STRATEGY: Strategy = "margin"
DEFAULT_AUDIT_RATE = 0.1
DEFAULT_DUPLICATE_THRESHOLD = 0.9
# Labels a model is trained on before its uncertainty picks the questions (below it every pick
# is a uniform random one, see ``warm_share``); 0: none. A warm-up of 50 ties random where the
# first model's margin picks trail it (50 labels) but cost AUC on three of the four benchmark
# datasets (benchmarks/RESULTS.md, "Label efficiency", "The warm-up"): off by default.
DEFAULT_WARM_UP = 0


def register_strategy(name: str) -> Callable[[PriorityFunction], PriorityFunction]:
    """Register ``function(proba) -> priority per row`` (larger = ask sooner) as ``name``.

    ``proba`` is the full probability matrix, shape ``(n_items, n_labels)``, rows summing to
    1; the function returns ``n_items`` finite numbers. Used as a decorator."""

    def add(function: PriorityFunction) -> PriorityFunction:
        if name in STRATEGIES:
            raise InvalidInputError(f"a strategy named {name!r} is registered already")
        STRATEGIES[name] = function
        return function

    return add


def unregister_strategy(name: str) -> None:
    """Remove a registered strategy (for code that registers one for a while, e.g. tests)."""
    STRATEGIES.pop(name, None)


def strategy_names() -> tuple[str, ...]:
    """The registered strategies' names, sorted."""
    return tuple(sorted(STRATEGIES))


def check_strategy(strategy: str) -> PriorityFunction:
    """The function registered as ``strategy``; ``InvalidInputError`` naming the choices."""
    try:
        return STRATEGIES[strategy]
    except (KeyError, TypeError):
        raise InvalidInputError(
            f"unknown strategy {strategy!r}; choose one of: {', '.join(strategy_names())}"
        ) from None


def _as_proba(proba: np.ndarray) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise InvalidInputError(f"probabilities must be a 2-D array, got shape {p.shape}")
    return p


def _top_two(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if p.shape[1] == 0:
        zeros = np.zeros(p.shape[0])
        return zeros, zeros
    if p.shape[1] == 1:
        return p[:, 0], np.zeros(p.shape[0])
    part = -np.partition(-p, 1, axis=1)
    return part[:, 0], part[:, 1]


def least_confidence(proba: np.ndarray) -> np.ndarray:
    """``1 - max(p)`` per row: larger means less confident."""
    first, _ = _top_two(_as_proba(proba))
    return 1.0 - first


def margin(proba: np.ndarray) -> np.ndarray:
    """``p(best) - p(second best)`` per row: *smaller* means more uncertain.

    Needs only the two largest probabilities, so a top-k array (k ≥ 2) works too.
    """
    first, second = _top_two(_as_proba(proba))
    return first - second


def entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats per row: larger means more uncertain."""
    p = _as_proba(proba)
    logs = np.log(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logs).sum(axis=1)


@register_strategy("margin")
def _margin_priority(proba: np.ndarray) -> np.ndarray:
    """``1 - margin``: the closer the two best guesses, the sooner."""
    return 1.0 - margin(proba)


register_strategy("least_confidence")(least_confidence)
register_strategy("entropy")(entropy)


def priority(proba: np.ndarray, strategy: Strategy = DEFAULT_STRATEGY) -> np.ndarray:
    """Priority per row under ``strategy``: larger = more uncertain = ask sooner.

    ``margin`` is reported as ``1 - margin``. Raises ``InvalidInputError`` for an unknown
    strategy or a function that does not give one finite number per row."""
    function = check_strategy(strategy)
    p = _as_proba(proba)
    scores = np.asarray(function(p), dtype=np.float64)
    if scores.shape != (p.shape[0],) or not np.isfinite(scores).all():
        raise InvalidInputError(
            f"strategy {strategy!r} must return one finite number per row "
            f"(got shape {scores.shape} for {p.shape[0]} rows)"
        )
    return scores


uncertainty = priority  # the earlier name


@dataclass(frozen=True)
class Pick:
    """One item to ask about: its position in the pool, why, and its uncertainty (if any)."""

    index: int
    reason: Reason
    uncertainty: float | None = None


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """Case-folded, NFKC-normalised text with punctuation and runs of spaces collapsed."""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    return _NON_WORD.sub(" ", text).strip()


def _key(text: str) -> str:
    """:func:`normalize_text`, or for a text of emoji, punctuation or symbols only (which that
    empties) the text case-folded with its spaces collapsed: "👍" and "👎" differ."""
    norm = normalize_text(text)
    if norm:
        return norm
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def text_key(text: str) -> str:
    """The key under which two texts count as the same text (case, spacing, punctuation and
    Unicode forms aside): the one that keeps near-duplicates out of one batch of questions, and
    a text and its variants in one fold of cross-validation (``model.evaluation.make_folds``)."""
    return _key(text)


def _shingles(text: str, size: int = 3) -> frozenset[str]:
    norm = _key(text)[:2000]
    if len(norm) <= size:
        return frozenset([norm])
    return frozenset(norm[i : i + size] for i in range(len(norm) - size + 1))


def is_near_duplicate(a: str, b: str, threshold: float = DEFAULT_DUPLICATE_THRESHOLD) -> bool:
    """True when the normalised texts are equal or their character-trigram Jaccard ≥ threshold.

    Texts that normalise to nothing (emoji, punctuation) are compared as written."""
    return _jaccard(_shingles(a), _shingles(b)) >= threshold


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if a == b:
        return 1.0
    union = len(a | b)
    return len(a & b) / union if union else 1.0


class _Batch:
    """Picks being gathered, refusing near-duplicates of texts already in the batch."""

    def __init__(self, texts: Sequence[str] | None, threshold: float) -> None:
        self.texts = texts
        self.threshold = threshold
        self.picks: list[Pick] = []
        self.taken: set[int] = set()
        self._seen_keys: set[str] = set()
        self._seen_shingles: list[frozenset[str]] = []

    def try_add(self, pick: Pick) -> bool:
        if pick.index in self.taken:
            return False
        if self.texts is not None:
            key = _key(self.texts[pick.index])
            if key in self._seen_keys:
                return False
            sh = _shingles(self.texts[pick.index])
            if any(_jaccard(sh, other) >= self.threshold for other in self._seen_shingles):
                return False
            self._seen_keys.add(key)
            self._seen_shingles.append(sh)
        self.picks.append(pick)
        self.taken.add(pick.index)
        return True


def select(
    batch_size: int,
    proba: np.ndarray | None,
    *,
    priorities: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    n_items: int | None = None,
    texts: Sequence[str] | None = None,
    strategy: Strategy = DEFAULT_STRATEGY,
    audit_rate: float = DEFAULT_AUDIT_RATE,
    threshold: float | None = None,
    duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
    random_state: int | np.random.Generator | None = None,
) -> list[Pick]:
    """Pick up to ``batch_size`` items of an unlabeled pool to ask about.

    The pool is given by ``proba`` (one row per item: full probabilities or the top-k
    columns; ``None`` while no model exists), or by ``priorities`` computed earlier (one per
    item, from :func:`priority`; with ``confidence``, each item's top probability, for
    ``threshold``), or, in cold start, by ``n_items`` or ``texts``. ``Pick.index`` is the row
    position in that pool. ``priorities`` given with ``proba`` replace the ones ``strategy``
    would compute from it.

    * Cold start (neither ``proba`` nor ``priorities``): every pick is random, reason
      ``cold_start``.
    * Otherwise the number of audit slots is drawn as ``Binomial(batch_size, audit_rate)``
      (so the share holds in expectation even for ``batch_size=1``); audit items are
      drawn uniformly from the whole pool. The other slots go to the most uncertain
      items (``strategy``; only rows whose top probability is below ``threshold``, if
      given). Uncertain picks come first, most uncertain first, then the audit picks: the
      share holds for the whole batch only. A caller that asks about a prefix of it (the bot
      posts one question a second and chooses again) draws each position's kind itself, as
      ``bot.learning.scoring.choose`` does.
    * With ``texts``, no two picks are near-duplicates (normalised text equal, or
      character-trigram Jaccard ≥ ``duplicate_threshold``); a skipped item's slot goes to
      the next candidate of the same kind.

    The batch can be shorter than ``batch_size`` when the pool runs out.
    """
    if batch_size < 0:
        raise InvalidInputError(f"batch_size must be ≥ 0, got {batch_size}")
    if not 0.0 <= audit_rate <= 1.0:
        raise InvalidInputError(f"audit_rate must be between 0 and 1, got {audit_rate}")
    rng = np.random.default_rng(random_state)
    p = None if proba is None else _as_proba(proba)
    given = None if priorities is None else np.asarray(priorities, dtype=np.float64).ravel()
    if given is not None and not np.isfinite(given).all():
        bad = int(np.flatnonzero(~np.isfinite(given))[0])
        raise InvalidInputError(
            f"priorities must be finite numbers; item {bad} has {given[bad]} (see priority())"
        )
    top = None if confidence is None else np.asarray(confidence, dtype=np.float64).ravel()
    if p is not None:
        top = _top_two(p)[0]
    n = _pool_size(p, n_items, texts, given, top)
    batch = _Batch(texts, duplicate_threshold)
    if batch_size == 0 or n == 0:
        return []

    if p is None and given is None:
        _fill_random(batch, rng.permutation(n), batch_size, "cold_start")
        return batch.picks

    n_audit = int(rng.binomial(batch_size, audit_rate))
    audit = _Batch(texts, duplicate_threshold)
    _fill_random(audit, rng.permutation(n), n_audit, "audit")

    scores = given if given is not None else priority(p, strategy)
    eligible = np.arange(n)
    if threshold is not None and top is not None:
        eligible = eligible[top < threshold]
    # most uncertain first; ties broken by position for determinism
    order = eligible[np.lexsort((eligible, -scores[eligible]))]
    for pick in audit.picks:  # audit picks occupy their slots and block their duplicates
        batch.try_add(pick)
    n_uncertain = batch_size - len(audit.picks)
    uncertain: list[Pick] = []
    for i in order:
        if len(uncertain) >= n_uncertain:
            break
        pick = Pick(int(i), "uncertain", float(scores[i]))
        if batch.try_add(pick):
            uncertain.append(pick)
    return uncertain + audit.picks


def _fill_random(batch: _Batch, order: np.ndarray, limit: int, reason: Reason) -> None:
    for i in order:
        if len(batch.picks) >= limit:
            return
        batch.try_add(Pick(int(i), reason))


def _pool_size(
    p: np.ndarray | None,
    n_items: int | None,
    texts: Sequence[str] | None,
    priorities: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
) -> int:
    sizes = {
        name: size
        for name, size in (
            ("proba", None if p is None else p.shape[0]),
            ("priorities", None if priorities is None else len(priorities)),
            ("confidence", None if confidence is None else len(confidence)),
            ("n_items", n_items),
            ("texts", None if texts is None else len(texts)),
        )
        if size is not None
    }
    if not sizes:
        raise InvalidInputError("give proba, n_items or texts so the pool size is known")
    if len(set(sizes.values())) > 1:
        raise InvalidInputError(f"pool sizes disagree: {sizes}")
    return next(iter(sizes.values()))


# --- random share by label count (benchmarks/label_efficiency.py) ---------------------------
#
# A young model's uncertainty is least reliable exactly when a bad pick costs most. These rules
# lean on random picks while the model is young and move to the uncertain ones as it matures,
# as a share of random picks per batch given the number of labels so far. Random picks are drawn
# uniformly from the whole pool, so the random sample stays uniform whatever the share. With
# HITL_WARM_UP set, the product's choice follows ``warm_share(n, HITL_WARM_UP)``
# (``bot.learning.scoring.choose``; its warm-up picks are not audits: a refresh trains on
# them); ``ramp_share`` and longer warm-ups were screened.

DEFAULT_WARM_UNTIL = 150
DEFAULT_RAMP_UNTIL = 300


def warm_share(
    n_labels: int, warm_until: int = DEFAULT_WARM_UNTIL, audit_rate: float = DEFAULT_AUDIT_RATE
) -> float:
    """Share of random picks for a model trained on ``n_labels`` labels: all of them
    (``1.0``) below ``warm_until`` labels, the audit share from there on."""
    _check_share_args(n_labels, warm_until, audit_rate)
    return 1.0 if n_labels < warm_until else audit_rate


def ramp_share(
    n_labels: int, ramp_until: int = DEFAULT_RAMP_UNTIL, audit_rate: float = DEFAULT_AUDIT_RATE
) -> float:
    """Share of random picks falling linearly with the label count:
    ``max(audit_rate, 1 - n_labels / ramp_until)``."""
    _check_share_args(n_labels, ramp_until, audit_rate)
    return max(audit_rate, 1.0 - n_labels / ramp_until)


def _check_share_args(n_labels: int, until: int, audit_rate: float) -> None:
    if n_labels < 0:
        raise InvalidInputError(f"n_labels must be ≥ 0, got {n_labels}")
    if until < 1:
        raise InvalidInputError(f"the label count to switch at must be ≥ 1, got {until}")
    if not 0.0 <= audit_rate <= 1.0:
        raise InvalidInputError(f"audit_rate must be between 0 and 1, got {audit_rate}")


# --- pool-aware priorities (screened in benchmarks/label_efficiency.py; not the default) -----
#
# Margin looks at one item at a time. These two also look at the pool the item sits in, from
# the texts' TF-IDF rows: how typical an item is (density-weighted margin, Settles & Craven
# 2008) and which items stand for the pool's clusters (a representative first batch). Both are
# pure given their inputs (and ``random_state``); the product would compute them off the
# event loop, as it scores.


def _tfidf_rows(texts: Sequence[str]):
    """L2-normalised word TF-IDF rows of ``texts`` (sparse), sublinear term frequency."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if len(texts) == 0:
        raise InvalidInputError("the pool has no texts")
    try:
        return TfidfVectorizer(sublinear_tf=True).fit_transform([str(t) for t in texts])
    except ValueError:  # no word in any text (all punctuation, say): every row is empty
        from scipy.sparse import csr_matrix

        return csr_matrix((len(texts), 1))


def pool_density(texts: Sequence[str]) -> np.ndarray:
    """Each text's mean cosine similarity to every text of the pool (itself included), on
    TF-IDF rows: larger means more typical of the pool. ``O(n × terms)``: the mean of the
    dot products is the dot product with the mean row."""
    rows = _tfidf_rows(texts)
    centre = np.asarray(rows.mean(axis=0)).ravel()
    return np.asarray(rows @ centre, dtype=np.float64).ravel()


def density_weighted_margin(
    proba: np.ndarray, density: np.ndarray, beta: float = 1.0
) -> np.ndarray:
    """Settles & Craven's information density with margin: ``(1 - margin) × density^beta``
    per row, larger = ask sooner. A close call among typical items comes before an equally
    close call on an outlier."""
    p = _as_proba(proba)
    d = np.asarray(density, dtype=np.float64).ravel()
    if d.shape != (p.shape[0],):
        raise InvalidInputError(f"density has {d.shape[0]} values for {p.shape[0]} rows")
    return (1.0 - margin(p)) * np.clip(d, 0.0, None) ** beta


def representatives(
    texts: Sequence[str],
    n_clusters: int = 25,
    *,
    random_state: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Positions of the pool's medoids: MiniBatchKMeans with ``n_clusters`` on the TF-IDF
    rows, and for each cluster the text nearest its centre (largest cosine similarity), in
    order of cluster size, largest first. Fewer when the pool has fewer distinct rows."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    rows = _tfidf_rows(texts)
    k = min(n_clusters, rows.shape[0])
    if k == 0:
        return np.zeros(0, dtype=int)
    seed = int(np.random.default_rng(random_state).integers(2**31 - 1))
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=1024)
    with quiet((ConvergenceWarning, "")):  # fewer distinct texts than clusters: fewer medoids
        assign = km.fit_predict(rows)
    sims = np.asarray(rows @ km.cluster_centers_.T)
    sizes = np.bincount(assign, minlength=k)
    medoids: list[int] = []
    for c in np.argsort(-sizes, kind="stable"):
        members = np.flatnonzero(assign == c)
        if len(members):
            medoids.append(int(members[np.argmax(sims[members, c])]))
    return np.asarray(list(dict.fromkeys(medoids)), dtype=int)
