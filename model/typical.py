"""TypiClust: typical items of the clusters no label covers yet, the low-budget pick.

Hacohen, Dekel & Weinshall 2022, "Active Learning on a Budget": while a model has few labels
its uncertainty says little, and asking the most typical item of each cluster of the pool that
no label covers yet teaches it more. ``typical_embedding`` puts a pool of texts in the feature
space the classifier itself uses, reduced to TYPICAL_DIMS; ``typiclust`` clusters it and names
the picks, in the order to ask them. Both are pure given their inputs and ``random_state``:
k-means and the SVD take seconds on 10,000 texts, so the bot runs them off its event loop.
benchmarks/label_efficiency.py (its ``typi*`` arms) runs the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TYPICAL_DIMS = 100  # the pool's feature rows reduced to this many (TruncatedSVD) for k-means
TYPICAL_KNN = 20  # typicality: 1 / mean distance to this many nearest neighbours in the cluster
TYPICAL_MIN_CLUSTER = 5  # clusters of at most this many items are never drawn from
TYPICAL_PER_CLASS = 8  # ``typical_budget``: labels a class of the label set,
TYPICAL_MOST = 150  # at most this many in all
TYPICAL_AUTO = "auto"  # the rule that follows the label set (``typical_budget``)
# The product's rule by default (HITL_TYPICAL_UNTIL; bot.config.Settings.typical_until):
# benchmarks/RESULTS.md, "A twelfth screen" and "Targets for the default arm"
DEFAULT_TYPICAL_UNTIL = TYPICAL_AUTO


def typical_budget(n_classes: int) -> int:
    """The labels below which a model asks TypiClust's picks when the rule follows the label
    set (HITL_TYPICAL_UNTIL=auto; the benchmark arm ``typicpc8``): TYPICAL_PER_CLASS a class,
    at most TYPICAL_MOST. TypiClust is a low-budget method, and a budget is low against the
    classes: with two classes 16 labels, fewer than a first model has, so never; with six 48
    (the 25-label model's batch only: at 10 a class, 60, a second typical batch put trec's
    models under random's at 75-150 labels); with 77, 150."""
    return min(TYPICAL_PER_CLASS * n_classes, TYPICAL_MOST)


def typical_embedding(
    texts: Sequence[str],
    random_state: int,
    *,
    word_char: bool = True,
    n_classes: int | None = None,
) -> np.ndarray:
    """One row per text: the product classifier's own features (word 1-2-grams + char_wb
    2-5-grams, each TF-IDF, as ``build_pipeline`` builds them for a fit of the pool's size
    and ``n_classes`` classes), or without ``word_char`` word TF-IDF alone
    (``model.selection._tfidf_rows``), reduced to TYPICAL_DIMS by TruncatedSVD, rows
    L2-normalised."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    if word_char:
        from model.classifier import build_pipeline, prepare_texts

        features = build_pipeline(n_samples=len(texts), n_classes=n_classes)[:-1]
        rows = features.fit_transform(prepare_texts(list(texts))).astype(np.float64)
    else:
        from model.selection import _tfidf_rows

        rows = _tfidf_rows(texts)
    dims = min(TYPICAL_DIMS, rows.shape[1] - 1, rows.shape[0] - 1)
    if dims < 1:
        return normalize(rows.toarray())
    return normalize(TruncatedSVD(dims, random_state=random_state).fit_transform(rows))


def typiclust(
    embedding: np.ndarray,
    labeled: np.ndarray,
    budget: int,
    random_state: int,
    lengths: np.ndarray | None = None,
) -> list[int]:
    """TypiClust's ``budget`` picks (Hacohen, Dekel & Weinshall 2022, as their code does it):
    k-means of the whole pool (``labeled``: a boolean mask over it) into |L| + budget clusters;
    clusters of more than TYPICAL_MIN_CLUSTER items, fewest labeled first, then largest, each
    in turn gives its most typical unlabeled item: typicality = 1 / mean Euclidean distance to
    its min(TYPICAL_KNN, m // 2) nearest neighbours among the cluster's m unlabeled items.
    Pool positions, in that order (shorter than ``budget`` only if the clusters run dry). With
    ``lengths`` (a word count per pool item) a cluster gives its most typical item among those
    at least its unlabeled members' median length (typicality still over all of them)."""
    from sklearn.cluster import KMeans
    from sklearn.neighbors import NearestNeighbors

    k = min(int(labeled.sum()) + budget, len(embedding))
    clusters = KMeans(k, n_init=1, random_state=random_state).fit_predict(embedding)
    sizes = np.bincount(clusters, minlength=k)
    held = np.bincount(clusters[labeled], minlength=k)
    ids = np.flatnonzero(sizes > TYPICAL_MIN_CLUSTER)
    order = ids[np.lexsort((ids, -sizes[ids], held[ids]))]
    free = ~labeled
    picks: list[int] = []
    for step in range(budget if len(order) else 0):
        members = np.flatnonzero((clusters == order[step % len(order)]) & free)
        if len(members) == 0:
            continue
        best = 0
        if len(members) > 1:
            nn = NearestNeighbors(n_neighbors=max(1, min(TYPICAL_KNN, len(members) // 2)))
            distances, _ = nn.fit(embedding[members]).kneighbors()  # itself excluded
            typicality = 1.0 / (distances.mean(axis=1) + 1e-5)
            if lengths is not None:
                short = lengths[members] < np.median(lengths[members])
                typicality[short] = -np.inf
            best = int(np.argmax(typicality))
        picks.append(int(members[best]))
        free[members[best]] = False
    return picks


def typical_order(
    texts: Sequence[str],
    labeled: Sequence[bool],
    budget: int,
    random_state: int,
    *,
    n_classes: int | None = None,
) -> list[int]:
    """TypiClust's ``budget`` picks among ``texts`` (positions, in the order to ask them),
    the items ``labeled`` marks (answered or asked already) covering their clusters: the
    classifier's word + char features (``typical_embedding``), then ``typiclust``. Both draw
    their seeds from ``random_state``."""
    if budget <= 0 or not len(texts):
        return []
    mask = np.asarray(labeled, dtype=bool)
    rng = np.random.default_rng(random_state)
    embedding = typical_embedding(texts, int(rng.integers(2**31 - 1)), n_classes=n_classes)
    return typiclust(embedding, mask, budget, int(rng.integers(2**31 - 1)))
