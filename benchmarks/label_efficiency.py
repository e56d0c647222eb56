"""Label efficiency: the product's selection against random and small-text, in a simulated loop.

For each dataset in the datasets folder (``--data``, ``$HITL_DATASETS`` or ../shared/datasets;
train = pool, test = evaluation, read in place) and each seed, every arm starts with no labels, as
the product does: cold-start picks (``model.selection.select`` with no model) until 2 labels have
2 examples each, the same picks for every arm. Then each round fits the product's default
classifier (``model.classifier.TextClassifier``) on the labels so far, scores the test file, and
asks the oracle for 25 more labels chosen by the arm:

* ``default``: what ``hitl serve`` does with its default settings (bot/learning/scoring.py
  ``choose``): while the labels number fewer than 8 a class of the label set (at most 150;
  HITL_TYPICAL_UNTIL=auto) the non-audit picks are TypiClust's (``model.typical``), then
  ``select`` with the default strategy (margin); always the default 10 % audit share and
  near-duplicate filtering of the batch (``threshold=None``: the bot's HITL_THRESHOLD would
  only shorten a batch). It is the screened arm ``typicpc8``, with its draws (``rule_of``);
* ``margin``: the product with HITL_TYPICAL_UNTIL=0, margin from the first model (the default
  before; its draws are those the rows stored as ``default`` before then had); run when named;
* ``random``: 25 uniformly random unlabeled items;
* ``least_confidence``, ``entropy``: ``select`` with the project's other strategies (same audit
  share and duplicate filter);
* ``st_breaking_ties``, ``st_least_confidence``: small-text's BreakingTies / LeastConfidence
  query strategies, given the same classifier through a small-text ``Classifier`` adapter.

Full supervision (the same classifier on the whole pool) is fitted in the same run.

    python benchmarks/label_efficiency.py --out /tmp/le.jsonl            # full (hours)
    python benchmarks/label_efficiency.py --datasets trec --seeds 0 1 --out /tmp/le.jsonl
    python benchmarks/label_efficiency.py --report /tmp/le*.jsonl         # tables + plots
    python benchmarks/label_efficiency.py --quick   # smoke run: 50 labels, no plot, < 15 s
    python benchmarks/label_efficiency.py --paired new.jsonl.gz   # default arm vs stored rows
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from _common import (
    PLOTS,
    ROOT,
    add_data_options,
    load_jsonl,
    machine,
    markdown_table,
    mean_sd,
    resolve_data,
)
from sklearn.metrics import accuracy_score, f1_score

import model.classifier
from model.classifier import TextClassifier
from model.selection import (
    DEFAULT_AUDIT_RATE,
    DEFAULT_STRATEGY,
    DEFAULT_WARM_UP,
    _tfidf_rows,
    density_weighted_margin,
    margin,
    pool_density,
    ramp_share,
    representatives,
    select,
    warm_share,
)
from model.typical import (
    DEFAULT_TYPICAL_UNTIL,
    TYPICAL_AUTO,
    TYPICAL_DIMS,
    TYPICAL_KNN,
    TYPICAL_MIN_CLUSTER,
    TYPICAL_MOST,
    TYPICAL_PER_CLASS,
    typical_embedding,
    typiclust,
)

DATASETS = ("ag_news_7600", "banking77", "sms_spam", "trec")
ARMS = (
    "default",
    "random",
    "least_confidence",
    "entropy",
    "st_breaking_ties",
    "st_least_confidence",
)
# screened alternatives (RESULTS "Alternatives screened"), run only when named with --arms:
# density-weighted margin (Settles & Craven 2008, beta 1), medoids of 25 k-means clusters as the
# first model's batch (margin after), density-weighted margin below 150 labels (margin after).
# Each keeps select()'s uniform audit share and duplicate filter.
# Third screen (issue 19): lean on random while the model is young. ``warm<K>``: random picks
# below K labels, drawn exactly as the random arm draws them (its RNG stream, its call), so its
# rows below K are random's by construction; margin with the audit share from K labels on.
# ``ramp<N>``: every batch is select() with a random (audit) share of max(10 %, 1 - labels / N).
# ``classwarm``: random picks (random's, as warm<K>) while the labels number fewer than
# CLASSWARM_PER_CLASS per class of the label set, margin after: 154 labels on banking77, and
# on the others (4-6 classes) the cold start's 25 labels are already past it.
# ``albl``: active learning by learning (Hsu & Lin 2015) for batches, driven by the audit
# answers (see ``Albl``): each batch's non-audit picks come from margin or from random, chosen
# by an EXP3 bandit rewarded by how much the batch raised the audit-estimated accuracy.
# ``spread1``: the first model's batch only, its uncertain picks spread out: k-means++ seeding
# (scikit-learn's ``kmeans_plusplus``) over the TF-IDF rows of margin's SPREAD_CANDIDATES
# closest calls; the audit share stays uniform; margin from the second model on.
# ``hybrid1``: the first model's batch is random (random's picks, as warm<K>) while that model
# knows fewer than half of the label set's classes, else spread as spread1; margin after.
# Sixth screen (issue 19): stochastic batches (Kirsch et al. 2023, "Stochastic Batch
# Acquisition"): the non-audit picks are drawn without replacement instead of taken from the
# top, by the Gumbel-top-k trick. ``power``: with probability proportional to 1 - margin;
# ``softrank``: proportional to 1 / (margin's rank). Every round, the audit share uniform.
# Seventh screen (issue 19): ``warmsoft``: random's picks below 50 labels (as warm50), softrank
# from there: the first model's batch ties random by construction, and later batches are drawn
# over the model's doubts instead of packed into its closest calls.
# ``warm50a``: warm50 drawing its audit picks from the default arm's RNG stream instead of its
# own: what the default arm was with HITL_WARM_UP=50 (at 1261f2b). warm50 and warm50a differ
# only in which 2-3 uniform audit picks each batch gets, which measures that draw's effect.
# Eighth screen (issue 19): ``badge`` (Ash et al. 2020, "Deep Batch Active Learning by Diverse,
# Uncertain Gradient Lower Bounds"): every round the non-audit picks are k-means++ seeds over
# the whole unlabeled pool's gradient embeddings, (p - onehot(argmax p)) ⊗ x, x the fitted
# model's own word + char TF-IDF row: uncertain (long gradients) and diverse (spread
# directions) at once; the audit share stays uniform.
# Ninth screen (issue 19): ``typi150``, TypiClust (Hacohen, Dekel & Weinshall 2022, "Active
# Learning on a Budget"), the low-budget answer: typical items while fewer than 150 labels,
# margin after. See ``typiclust``; the audit share stays uniform. ``probcover150``: ProbCover
# (Yehuda et al. 2022, "Active Learning Through a Covering Lens") in its place, in the same
# embedding: see ``probcover``.
# Tenth screen (issue 19): ``typic150``, ``typic75``: TypiClust as ``typi150`` (margin from 150,
# 75 labels) in an embedding of the classifier's own features, the product's word 1-2-gram +
# char_wb 2-5-gram TF-IDF (``model.classifier.build_pipeline``'s), not word TF-IDF alone: see
# ``typi_embedding``. ``typicl150``, ``typicl75``: as ``typic150`` / ``typic75``, but each
# cluster's pick is its most typical item among those at least as long (in words) as the
# cluster's median: on trec the typical picks are short questions (see ``typiclust``).
# Eleventh screen (issue 19): ``typicpc``: ``typic75``'s TypiClust while fewer than 10
# labels a class of the label set (at most 150 labels: ``typi_until``; the product's
# HITL_TYPICAL_UNTIL=auto with 10 a class), margin from there. TypiClust is a low-budget
# method, and a budget is low against the classes: on sms_spam (2 classes, 20 labels) it
# never runs, which is where ``typic75`` trails BreakingTies.
# Twelfth screen (issue 19): ``typicpc8``: ``typicpc`` with 8 labels a class instead of 10
# (the product's HITL_TYPICAL_UNTIL=auto, ``model.typical.typical_budget``), drawing
# ``typicpc``'s stream (``STREAM``): on the four data sets only trec's rule changes (6
# classes: TypiClust for the 25-label model's batch only, margin from 48 labels), so its rows
# elsewhere are ``typicpc``'s.
SCREENS = (
    "density", "medoids", "density150", "warm150", "ramp300", "warm100", "warm200", "warm50",
    "classwarm", "albl", "spread1", "hybrid1", "power", "softrank", "warmsoft", "warm50a",
    "badge", "typi150", "probcover150", "typic150", "typic75",
    "typicl150", "typicl75", "typicpc", "typicpc8",
)  # fmt: skip
CLASSWARM_PER_CLASS = 2
WARM = {"warm50": 50, "warm100": 100, "warm150": 150, "warm200": 200, "warmsoft": 50, "warm50a": 50}
RAMP = {"ramp300": 300}
# ``margin``: the product's rule with HITL_TYPICAL_UNTIL=0, margin from the first model (the
# default before TypiClust's: ``rule_of``)
ALL_ARMS = ARMS + SCREENS + ("margin",)  # an arm's RNG stream is its index here (``STREAM``)
MEDOID_CLUSTERS = 25
TYPI_UNTIL = {"typi150": 150, "probcover150": 150, "typic150": 150, "typic75": 75}
TYPI_UNTIL |= {"typicl150": 150, "typicl75": 75, "typicpc": 150, "typicpc8": 150}
# labels a class (``typi_until``); ``typicpc8``'s is the product's HITL_TYPICAL_UNTIL=auto
TYPI_BY_CLASSES = {"typicpc": 10, "typicpc8": TYPICAL_PER_CLASS}
# (below this many labels; margin from it). The arms whose embedding is the classifier's features:
TYPI_WORD_CHAR = ("typic150", "typic75", "typicl150", "typicl75", "typicpc", "typicpc8")
TYPI_LONG = ("typicl150", "typicl75")  # picks no shorter than their cluster's median text
PROBCOVER_PURITY = 0.95  # ProbCover's alpha: the share of delta-balls within one k-means cluster
# TypiClust's dimensions, neighbours and smallest cluster: the product's (model/typical.py)
TYPI_DIMS, TYPI_KNN, TYPI_MIN_CLUSTER = TYPICAL_DIMS, TYPICAL_KNN, TYPICAL_MIN_CLUSTER
SPREAD_CANDIDATES = 100
HYBRID_UNTIL = 150
# Whose RNG stream an arm draws from, when not its own: ``margin`` and ``warm50a`` draw what
# ``default`` drew while the product's default was margin (so ``margin``'s rows are those
# stored as ``default`` before HITL_TYPICAL_UNTIL=auto was the default, and ``warm50a``'s what
# HITL_WARM_UP=50 was then). ``default`` draws as the rule it is (``rule_of``).
STREAM = {"margin": "default", "warm50a": "default", "typicpc8": "typicpc"}


def rule_of(arm: str) -> str:
    """The rule an arm picks by: ``default`` is how ``hitl serve`` picks with its default
    settings, so ``typicpc8`` (TypiClust while fewer than 8 labels a class, at most 150, then
    margin: HITL_TYPICAL_UNTIL=auto, ``model.typical.DEFAULT_TYPICAL_UNTIL``), its rows
    ``typicpc8``'s (whose draws are ``typicpc``'s: ``STREAM``); with a default of 0 it would
    be ``margin``. Any other arm is its own."""
    if arm != "default":
        return arm
    return "typicpc8" if DEFAULT_TYPICAL_UNTIL == TYPICAL_AUTO else "margin"


ALBL_EXPERTS = ("margin", "random")
ALBL_GAMMA = 0.15  # EXP3's exploration: sqrt(K ln K / ((e - 1) T)) for K = 2, T = 40 rounds
ALBL_SCALE = 5.0  # reward = 0.5 + 5 × (accuracy gain on the audits), clipped to [0, 1]
BATCH = 25
RIVALS = ("random", "st_breaking_ties")  # what the default is compared with, round by round
MAX_LABELS = {"banking77": 2025}
CHECKPOINTS = (125, 525, 1025)

try:  # optional: the `bench` / `test` extras install it
    import small_text
    from small_text import BreakingTies, LeastConfidence, TextDataset
    from small_text.classifiers import Classifier as _StClassifier
except ImportError:  # pragma: no cover - depends on the environment
    small_text = None
    _StClassifier = object


class SmallTextAdapter(_StClassifier):
    """Our fitted TextClassifier seen through small-text's ``Classifier`` interface."""

    def __init__(self, clf: TextClassifier):
        self.clf = clf

    def fit(self, train_set, weights=None):  # noqa: ARG002 - fitted by the loop
        return self

    def predict(self, data_set, return_proba=False):
        proba = self.predict_proba(data_set)
        pred = proba.argmax(axis=1)
        return (pred, proba) if return_proba else pred

    def predict_proba(self, data_set):
        return self.clf.predict_proba(list(data_set.x))


class Albl:
    """Active learning by learning (Hsu & Lin 2015), for batches and the product's audits.

    The experts are margin and random. Each batch, EXP3 (Auer et al. 2002; Hsu & Lin use its
    contextual cousin EXP4.P over single picks) draws one expert with probability
    ``(1 - γ) w_k / Σw + γ / K``; the batch's non-audit picks are that expert's and the audit
    share (``select``'s uniform 10 %) is kept either way. The reward is Hsu & Lin's idea, an
    unbiased estimate of accuracy, taken from the audit answers as the product has them: a
    *shadow* model is fitted on every label except the audit picks (a refresh holds them out
    the same way), and the batch's reward is how much the shadow model after it gained over
    the one before, both scored on every audit answer so far (paired on the same items),
    mapped to [0, 1] as ``0.5 + ALBL_SCALE × gain``. IW-ACC over the labeled points, as
    libact computes it, would be the training accuracy of a model that fits them."""

    def __init__(self) -> None:
        self.weights = np.ones(len(ALBL_EXPERTS))
        self.chosen: int | None = None
        self.p_chosen = 1.0
        self.audits: list[int] = []
        self.shadow: TextClassifier | None = None
        self.choices: list[str] = []

    def probabilities(self) -> np.ndarray:
        k = len(self.weights)
        return (1 - ALBL_GAMMA) * self.weights / self.weights.sum() + ALBL_GAMMA / k

    def choose(self, rng: np.random.Generator) -> str:
        p = self.probabilities()
        self.chosen = int(rng.choice(len(p), p=p))
        self.p_chosen = float(p[self.chosen])
        self.choices.append(ALBL_EXPERTS[self.chosen])
        return ALBL_EXPERTS[self.chosen]

    def learn(self, pool_x: list[str], pool_y: list[str], labeled: list[int], seed: int):
        """Fit the shadow model on the non-audit labels and reward the last batch's expert."""
        audit = set(self.audits)
        train = [i for i in labeled if i not in audit]
        ys = [pool_y[i] for i in train]
        if not _fit_ready(ys):
            return
        shadow = TextClassifier(random_state=seed).fit([pool_x[i] for i in train], ys)
        if self.shadow is not None and self.chosen is not None and self.audits:
            xs = [pool_x[i] for i in self.audits]
            truth = np.asarray([pool_y[i] for i in self.audits])
            gain = np.mean(shadow.predict(xs) == truth) - np.mean(self.shadow.predict(xs) == truth)
            reward = float(np.clip(0.5 + ALBL_SCALE * gain, 0.0, 1.0))
            k = len(self.weights)
            self.weights[self.chosen] *= np.exp(ALBL_GAMMA * reward / (self.p_chosen * k))
            self.weights /= self.weights.max()  # keep them finite; p is scale-free
        self.shadow = shadow


def _fit_ready(labels: Sequence[str]) -> bool:
    """The product's first model needs 2 labels with 2 examples each."""
    counts: dict[str, int] = defaultdict(int)
    for label in labels:
        counts[label] += 1
    return sum(1 for n in counts.values() if n >= 2) >= 2


def pick(
    arm: str,
    clf: TextClassifier | None,
    pool_x: list[str],
    unlabeled: np.ndarray,
    labeled: list[int],
    st_dataset: object,
    rng: np.random.Generator,
    *,
    density: np.ndarray | None = None,
    medoids: np.ndarray | None = None,
    model_round: int = 0,
    n_classes: int = 0,
    albl: Albl | None = None,
    reasons: dict[int, str] | None = None,
    known: int = 0,
    embedding: np.ndarray | None = None,
    balls=None,
    lengths: np.ndarray | None = None,
) -> list[int]:
    """Up to BATCH pool indices (not yet labeled) chosen by ``arm``. ``density`` (per pool
    item), ``medoids`` (pool positions) and ``embedding`` (a row per pool item, see
    ``typi_embedding``) serve the screened arms; ``model_round`` counts the
    rounds with a model (0 = the first model's). ``reasons`` (given) gets each pick's reason
    from ``select`` (``cold_start``, ``audit``, ``uncertain``; ``random`` for random picks)."""
    arm = rule_of(arm)
    n = min(BATCH, len(unlabeled))
    texts = [pool_x[i] for i in unlabeled]
    if clf is None:  # cold start: the product's random picks, identical for every arm
        picks = select(n, None, texts=texts, random_state=rng)
        if reasons is not None:
            reasons.update((int(unlabeled[p.index]), p.reason) for p in picks)
        return [int(unlabeled[p.index]) for p in picks]
    if arm == "random" or _is_warming(arm, len(labeled), n_classes, model_round, known):
        chosen = [int(i) for i in rng.choice(unlabeled, n, replace=False)]
        if reasons is not None:
            reasons.update((i, "random") for i in chosen)
        return chosen
    if arm.startswith("st_"):
        strategy = BreakingTies() if arm == "st_breaking_ties" else LeastConfidence()
        y = np.zeros(len(labeled), dtype=int)  # unused by confidence-based strategies
        chosen = strategy.query(
            SmallTextAdapter(clf), st_dataset, unlabeled, np.asarray(labeled), y, n=n
        )
        return [int(i) for i in chosen]
    proba = clf.predict_proba(texts)
    priorities = None
    if arm == "density" or (arm == "density150" and len(labeled) < HYBRID_UNTIL):
        priorities = density_weighted_margin(proba, density[unlabeled])
    elif arm == "medoids" and model_round == 0:
        priorities = 1.0 - margin(proba)
        priorities[np.isin(unlabeled, medoids)] += 2.0  # medoids first, closest calls first
    elif arm in ("spread1", "hybrid1") and model_round == 0:
        priorities = spread_priorities(proba, texts, rng)
    elif arm in ("power", "softrank", "warmsoft"):
        priorities = stochastic_priorities(proba, arm, rng)
    elif arm == "badge":
        priorities = badge_priorities(clf, proba, texts, n, rng)
    elif arm in TYPI_UNTIL and len(labeled) < typi_until(arm, n_classes):
        priorities = typi_priorities(
            proba, embedding, unlabeled, n, rng, cover=balls, lengths=lengths
        )
    elif arm == "albl" and albl.choose(rng) == "random":
        priorities = rng.random(len(unlabeled))  # uniform non-audit picks, the same audit draw
    strategy = DEFAULT_STRATEGY if arm in ("default", "margin") or arm in SCREENS else arm
    audit_rate = DEFAULT_AUDIT_RATE
    if arm in RAMP:
        audit_rate = ramp_share(len(labeled), RAMP[arm])
    picks = select(
        n,
        proba,
        priorities=priorities,
        texts=texts,
        strategy=strategy,
        audit_rate=audit_rate,
        random_state=rng,
    )
    if albl is not None:
        albl.audits += [int(unlabeled[p.index]) for p in picks if p.reason == "audit"]
    if reasons is not None:
        reasons.update((int(unlabeled[p.index]), p.reason) for p in picks)
    return [int(unlabeled[p.index]) for p in picks]


def stochastic_priorities(proba: np.ndarray, arm: str, rng: np.random.Generator) -> np.ndarray:
    """Priorities whose top k are a draw of k items without replacement (Gumbel-top-k), with
    probability proportional to 1 - margin (``power``) or to 1 / margin's rank (``softrank``)."""
    uncertainty = 1.0 - margin(proba)
    if arm == "power":
        log_weight = np.log(np.maximum(uncertainty, 1e-12))
    else:
        ranks = np.empty(len(uncertainty))
        ranks[np.argsort(-uncertainty, kind="stable")] = np.arange(1, len(uncertainty) + 1)
        log_weight = -np.log(ranks)
    return log_weight + rng.gumbel(size=len(uncertainty))


def badge_priorities(
    clf: TextClassifier, proba: np.ndarray, texts: list[str], k: int, rng: np.random.Generator
) -> np.ndarray:
    """Margin's priorities with BADGE's ``k`` picks put first, in the order drawn: k-means++
    seeding over the gradient embeddings g_i = a_i ⊗ x_i, a_i = p_i - onehot(argmax p_i), x_i
    the fitted pipeline's feature row. Never built: <g_i, g_j> = (a_i·a_j)(x_i·x_j), so each
    seed costs one sparse product with the pool. The first seed is the longest gradient."""
    from model.classifier import prepare_texts

    x = clf.pipeline_[:-1].transform(prepare_texts(texts)).tocsr()
    a = proba.copy()
    a[np.arange(len(a)), a.argmax(axis=1)] -= 1.0
    x_sq = np.asarray(x.multiply(x).sum(axis=1)).ravel()
    norms = (a * a).sum(axis=1) * x_sq  # |g_i|^2
    priorities = 1.0 - margin(proba)
    chosen = [int(np.argmax(norms))]
    closest = np.full(len(a), np.inf)
    for _ in range(min(k, len(a)) - 1):
        c = chosen[-1]
        dot = (a @ a[c]) * np.asarray(x @ x[c].T.toarray()).ravel()
        closest = np.minimum(closest, np.maximum(norms + norms[c] - 2.0 * dot, 0.0))
        closest[chosen] = 0.0
        total = closest.sum()
        if total <= 0:
            break
        chosen.append(int(rng.choice(len(a), p=closest / total)))
    priorities[chosen] = 2.0 + np.linspace(1.0, 0.0, len(chosen))  # drawn order first
    return priorities


def typi_until(arm: str, n_classes: int) -> int:
    """The labels below which a low-budget arm asks its typical picks: TYPI_UNTIL's, or for
    TYPI_BY_CLASSES' arms so many a class of ``n_classes``, at most 150: for ``typicpc8`` the
    product's HITL_TYPICAL_UNTIL=auto (``model.typical.typical_budget``: 8 a class), for
    ``typicpc`` 10."""
    if arm in TYPI_BY_CLASSES:
        return min(TYPI_BY_CLASSES[arm] * n_classes, TYPICAL_MOST)
    return TYPI_UNTIL[arm]


def typi_embedding(
    texts: list[str], random_state: int, *, word_char: bool = False, n_classes: int | None = None
) -> np.ndarray:
    """TypiClust's feature space here (``model.typical.typical_embedding``, the product's):
    the pool's word TF-IDF rows (``_tfidf_rows``, as the medoids and spread arms use), or with
    ``word_char`` the product classifier's own features, reduced to TYPI_DIMS by TruncatedSVD,
    rows L2-normalised."""
    return typical_embedding(texts, random_state, word_char=word_char, n_classes=n_classes)


def probcover_balls(embedding: np.ndarray, n_classes: int, random_state: int):
    """ProbCover's graph (Yehuda, Dekel, Hacohen & Weinshall 2022): item i's row marks the
    items within delta of it (itself included). delta is the largest radius at which a
    PROBCOVER_PURITY share of the balls hold one k-means cluster only (k = the classes): a
    ball is pure while delta is below its centre's distance to the nearest item of another
    cluster."""
    from scipy.sparse import identity
    from sklearn.cluster import KMeans
    from sklearn.metrics import pairwise_distances_chunked
    from sklearn.neighbors import NearestNeighbors

    clusters = KMeans(n_classes, n_init=1, random_state=random_state).fit_predict(embedding)
    other = np.empty(len(embedding))
    start = 0
    for block in pairwise_distances_chunked(embedding):
        rows = np.arange(start, start + len(block))
        block[clusters[rows][:, None] == clusters[None, :]] = np.inf
        other[rows] = block.min(axis=1)
        start += len(block)
    delta = float(np.quantile(other, 1.0 - PROBCOVER_PURITY))
    delta = np.nextafter(delta, 0.0)  # strictly inside: that share of balls is pure
    graph = NearestNeighbors(radius=delta).fit(embedding).radius_neighbors_graph()
    return (graph + identity(len(embedding), format="csr")).astype(bool).tocsr()


def probcover(balls, labeled: np.ndarray, budget: int, rng: np.random.Generator) -> list[int]:
    """ProbCover's greedy max coverage: the items within delta of a labeled one are covered;
    each pick is the unlabeled item whose ball holds the most uncovered items, and covers
    them. Ties (whole counts: many) are drawn uniformly, not taken by position: a train file
    can be sorted by label (banking77's is). Stops early once nothing is left to cover."""
    covered = np.asarray(balls[np.flatnonzero(labeled)].sum(axis=0)).ravel() > 0
    taken = labeled.copy()
    picks: list[int] = []
    for _ in range(budget):
        gains = np.asarray(balls @ (~covered).astype(np.int64)).ravel()
        gains[taken] = -1
        top = gains.max()
        if top <= 0:
            break
        best = int(rng.choice(np.flatnonzero(gains == top)))
        picks.append(best)
        taken[best] = True
        covered[balls[best].indices] = True
    return picks


def typi_priorities(
    proba: np.ndarray,
    embedding: np.ndarray,
    unlabeled: np.ndarray,
    k: int,
    rng: np.random.Generator,
    cover=None,
    lengths: np.ndarray | None = None,
) -> np.ndarray:
    """Margin's priorities over ``unlabeled`` with TypiClust's ``k`` picks (ProbCover's, given
    its ``cover`` graph) put first, in their order (``select`` fills its non-audit slots from
    the top)."""
    labeled = np.ones(len(embedding), dtype=bool)
    labeled[unlabeled] = False
    if cover is not None:
        chosen = probcover(cover, labeled, k, rng)
    else:
        chosen = typiclust(embedding, labeled, k, int(rng.integers(2**31 - 1)), lengths)
    priorities = 1.0 - margin(proba)
    positions = np.searchsorted(unlabeled, chosen)  # unlabeled is sorted (flatnonzero)
    priorities[positions] = 2.0 + np.linspace(1.0, 0.0, len(chosen))
    return priorities


def spread_priorities(proba: np.ndarray, texts: list[str], rng: np.random.Generator) -> np.ndarray:
    """Margin's priorities, with BATCH of its SPREAD_CANDIDATES closest calls, chosen by
    k-means++ seeding on their TF-IDF rows (spread over the candidates), put first."""
    from sklearn.cluster import kmeans_plusplus

    priorities = 1.0 - margin(proba)
    candidates = np.argsort(-priorities, kind="stable")[:SPREAD_CANDIDATES]
    k = min(BATCH, len(candidates))
    rows = _tfidf_rows([texts[i] for i in candidates])
    _, chosen = kmeans_plusplus(rows, k, random_state=int(rng.integers(2**31 - 1)))
    priorities[candidates[chosen]] += 2.0  # the spread picks first, closest calls first
    return priorities


def _is_warming(
    arm: str, n_labels: int, n_classes: int = 0, model_round: int = 0, known: int = 0
) -> bool:
    """True while a ``warm<K>`` arm picks at random (fewer than K labels), ``default`` (fewer
    than DEFAULT_WARM_UP, the product's warm-up; 0: never), ``classwarm`` (fewer than
    CLASSWARM_PER_CLASS labels per class of the ``n_classes``), or ``hybrid1`` (the first
    model's batch, ``model_round`` 0, while the labels have met fewer than half the classes:
    ``known``)."""
    if arm in ("default", "margin"):  # the warm-up (bot.learning.scoring.choose, HITL_WARM_UP)
        return n_labels < DEFAULT_WARM_UP
    if arm == "classwarm":
        return n_labels < CLASSWARM_PER_CLASS * n_classes
    if arm == "hybrid1":  # the first model's batch, while it knows under half the classes
        return model_round == 0 and known < n_classes / 2
    return arm in WARM and warm_share(n_labels, WARM[arm]) == 1.0


def round_rng(
    arm: str,
    seed: int,
    rnd: int,
    has_model: bool,
    n_labels: int,
    n_classes: int = 0,
    model_round: int = 0,
    known: int = 0,
) -> np.random.Generator:
    """The RNG of round ``rnd``. Cold-start rounds share one stream across arms, so their
    picks are identical; an arm warming up (``_is_warming``) draws from random's stream, so
    its picks are random's; otherwise each arm has its own (its index in ALL_ARMS)."""
    if not has_model:
        return np.random.default_rng([seed, rnd])
    arm = rule_of(arm)
    stream = "random" if _is_warming(arm, n_labels, n_classes, model_round, known) else arm
    stream = STREAM.get(stream, stream)
    return np.random.default_rng([seed, rnd, ALL_ARMS.index(stream)])


def arm_embedding(arm: str, pool_x: list[str], n_classes: int, seed: int):
    """A low-budget arm's embedding of the pool (``typi_embedding``: the classifier's word +
    char features for TYPI_WORD_CHAR's arms, word TF-IDF for the others) and, for
    ``probcover150``, its ball graph; ``(None, None)`` for any other arm. Seeded by the arm's
    own stream, so an arm's pool embedding is the same in every run of a seed."""
    arm = rule_of(arm)
    if arm not in TYPI_UNTIL:
        return None, None
    rng = np.random.default_rng([seed, ALL_ARMS.index(STREAM.get(arm, arm))])
    embedding = typi_embedding(
        pool_x, int(rng.integers(2**31 - 1)), word_char=arm in TYPI_WORD_CHAR, n_classes=n_classes
    )
    balls = None
    if arm == "probcover150":
        balls = probcover_balls(embedding, n_classes, int(rng.integers(2**31 - 1)))
    return embedding, balls


def word_counts(texts: list[str]) -> np.ndarray:
    """Words per text (whitespace-separated, after ``prepare_texts``'s cut)."""
    from model.classifier import prepare_texts

    return np.array([len(t.split()) for t in prepare_texts(texts)])


def run_arm(
    name: str,
    arm: str,
    seed: int,
    pool: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    max_labels: int,
) -> Iterable[dict]:
    """One simulated labeling loop; yields a row per round (after fitting on the labels)."""
    pool_x, pool_y = pool
    test_x, test_y = test
    st_dataset = None
    if arm.startswith("st_"):
        st_dataset = TextDataset(pool_x, np.full(len(pool_x), -1, dtype=int))
    density = pool_density(pool_x) if arm in ("density", "density150") else None
    medoids = None
    if arm == "medoids":
        rng = np.random.default_rng([seed, ALL_ARMS.index(arm)])
        medoids = representatives(pool_x, MEDOID_CLUSTERS, random_state=rng)
    embedding, balls = arm_embedding(arm, pool_x, len(set(pool_y)), seed)
    lengths = word_counts(pool_x) if arm in TYPI_LONG else None
    n_classes = len(set(pool_y))  # the label set the team configured
    albl = Albl() if arm == "albl" else None
    labeled: list[int] = []
    is_labeled = np.zeros(len(pool_x), dtype=bool)
    clf: TextClassifier | None = None
    fit_s = 0.0
    rnd = model_rounds = 0
    while True:
        if clf is not None or len(labeled) >= max_labels:
            pred = clf.predict(test_x) if clf is not None else None
            if pred is not None:
                row = {
                    "dataset": name,
                    "arm": arm,
                    "seed": seed,
                    "n_labels": len(labeled),
                    "accuracy": accuracy_score(test_y, pred),
                    "macro_f1": f1_score(test_y, pred, average="macro", zero_division=0),
                    "fit_s": fit_s,
                }
                if albl is not None:  # the expert of the batch just learned from (none yet)
                    choice = albl.choices[-1] if albl.choices else None
                    row |= {"albl": choice, "albl_p": float(albl.probabilities()[0])}
                yield row
        if len(labeled) >= max_labels or is_labeled.all():
            return
        known = len({pool_y[i] for i in labeled})  # classes the labels so far have met
        rng = round_rng(
            arm, seed, rnd, clf is not None, len(labeled), n_classes, model_rounds, known
        )
        unlabeled = np.flatnonzero(~is_labeled)
        chosen = pick(
            arm,
            clf,
            pool_x,
            unlabeled,
            labeled,
            st_dataset,
            rng,
            density=density,
            medoids=medoids,
            model_round=model_rounds,
            n_classes=n_classes,
            albl=albl,
            known=known,
            embedding=embedding,
            balls=balls,
            lengths=lengths,
        )
        model_rounds += clf is not None
        labeled += chosen
        is_labeled[chosen] = True
        rnd += 1
        ys = [pool_y[i] for i in labeled]
        if _fit_ready(ys):
            t0 = time.perf_counter()
            clf = TextClassifier(random_state=seed).fit([pool_x[i] for i in labeled], ys)
            fit_s = time.perf_counter() - t0
            if albl is not None:
                albl.learn(pool_x, pool_y, labeled, seed)


def full_supervision(name: str, pool, test) -> dict:
    t0 = time.perf_counter()
    clf = TextClassifier(random_state=0).fit(*pool)
    pred = clf.predict(test[0])
    return {
        "dataset": name,
        "arm": "full",
        "seed": 0,
        "n_labels": len(pool[0]),
        "accuracy": accuracy_score(test[1], pred),
        "macro_f1": f1_score(test[1], pred, average="macro", zero_division=0),
        "fit_s": time.perf_counter() - t0,
    }


EXPERIMENT = {
    "LR_SOLVER": str,
    "CHAR_MIN_DF": int,
    "CHAR_MIN_DF_FROM": int,
    "COEF_DTYPE": lambda v: None if v.lower() == "none" else np.dtype(v).type,
    "LEAN_FROM_CLASSES": int,
}


def set_classifier(settings: Sequence[str]) -> dict[str, str]:
    """Set ``model.classifier``'s module constants from ``NAME=VALUE`` strings (an experiment's
    variant of the classifier); returns them for the rows. ``ValueError`` names a bad one, and
    then nothing is set."""
    variant, values = {}, {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or name not in EXPERIMENT:
            raise ValueError(f"{item!r}: expected NAME=VALUE, NAME one of {', '.join(EXPERIMENT)}")
        try:
            values[name] = EXPERIMENT[name](value)
        except (TypeError, ValueError):
            raise ValueError(f"{item!r}: bad value for {name}") from None
        variant[name] = value
    for name, value in values.items():
        setattr(model.classifier, name, value)
    return variant


def simulate(args: argparse.Namespace, out) -> None:
    arms = list(args.arms)
    if small_text is None:
        skipped = [a for a in arms if a.startswith("st_")]
        arms = [a for a in arms if not a.startswith("st_")]
        print(f"small-text is not installed: skipped {', '.join(skipped)}", flush=True)
    for name in args.datasets:
        pool = load_jsonl(args.data / name / "train.jsonl")
        test = load_jsonl(args.data / name / "test.jsonl")
        if args.quick:
            keep = np.random.default_rng(0).choice(len(pool[0]), 400, replace=False)
            pool = ([pool[0][i] for i in keep], [pool[1][i] for i in keep])
            test = (test[0][:200], test[1][:200])
        max_labels = args.max_labels or MAX_LABELS.get(name, 1025)
        if not args.no_full:
            row = full_supervision(name, pool, test)
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"{name} full supervision: accuracy {row['accuracy']:.3f}", flush=True)
        for seed in args.seeds:
            for arm in arms:
                t0 = time.perf_counter()
                last = None
                for row in run_arm(name, arm, seed, pool, test, max_labels):
                    if getattr(args, "variant", None):
                        row["classifier"] = args.variant
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    last = row
                print(
                    f"{name} seed {seed} {arm}: {last['n_labels']} labels, "
                    f"accuracy {last['accuracy']:.3f}, {time.perf_counter() - t0:.0f} s",
                    flush=True,
                )


# --- report --------------------------------------------------------------------------------


def _curves(rows: list[dict]) -> dict[tuple[str, str], dict[int, dict[int, dict]]]:
    """(dataset, arm) → seed → n_labels → row."""
    curves: dict = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["arm"] != "full":
            curves[(r["dataset"], r["arm"])][r["seed"]][r["n_labels"]] = r
    return curves


def _common_seeds(curves, name: str, arms: list[str]) -> list[int]:
    sets = [set(curves[(name, a)]) for a in arms if (name, a) in curves]
    return sorted(set.intersection(*sets)) if sets else []


def _auc(curve: dict[int, dict], metric: str, lo: int, hi: int) -> float:
    """Mean of the metric over [lo, hi] labels (trapezoid area / width)."""
    ns = [n for n in sorted(curve) if lo <= n <= hi]
    ys = [curve[n][metric] for n in ns]
    if len(ns) < 2:
        return float("nan")
    return float(np.trapezoid(ys, ns) / (ns[-1] - ns[0]))


def _arms_in(rows: list[dict]) -> list[str]:
    """Every arm the rows have (not ``full``): today's in ALL_ARMS order, then any other (an
    arm of an earlier screen, or renamed since, such as the trec 20-seed rows' ``margin``) in
    the order the rows first show it, under the name it was stored with."""
    seen = list(dict.fromkeys(r["arm"] for r in rows if r["arm"] != "full"))
    return [a for a in ALL_ARMS if a in seen] + [a for a in seen if a not in ALL_ARMS]


def report(rows: list[dict], plots: Path | None) -> str:
    curves = _curves(rows)
    full = {r["dataset"]: r for r in rows if r["arm"] == "full"}
    names = sorted({r["dataset"] for r in rows})
    arms_seen = _arms_in(rows)
    parts = []
    for name in names:
        arms = [a for a in arms_seen if (name, a) in curves]
        all_seeds = _common_seeds(curves, name, arms)
        if not all_seeds:
            continue
        reach = {s: min(max(curves[(name, a)][s]) for a in arms) for s in all_seeds}
        top = max(reach.values())
        seeds = [s for s in all_seeds if reach[s] == top]  # the seeds run to the end
        reached = [max(curves[(name, a)][s]) for a in arms for s in curves[(name, a)]]
        early_top = min(275, *reached)  # every seed of every arm reaches this
        n_any = len({s for a in arms for s in curves[(name, a)]})
        extra_seeds = n_any > len(seeds) and early_top >= 125
        lo = max(min(curves[(name, a)][s]) for a in arms for s in seeds)
        checkpoints = [c for c in (*CHECKPOINTS, 2025) if c <= top]
        fs = full.get(name)
        seed_list = ", ".join(map(str, sorted({s for a in arms for s in curves[(name, a)]})))
        head = f"### {name}: seeds {seed_list}, up to {top} labels; (n) = seeds to the end"
        if fs:
            head += (
                f"; full supervision ({fs['n_labels']:,} labels): accuracy {fs['accuracy']:.3f},"
                f" macro-F1 {fs['macro_f1']:.3f}"
            )
        table_rows = []
        for arm in arms:
            # every seed this arm ran to the end (arms may have more seeds than others)
            seeds = [s for s in sorted(curves[(name, arm)]) if max(curves[(name, arm)][s]) >= top]
            cells = [f"{arm} ({len(seeds)})"]
            for c in checkpoints:
                acc = mean_sd([curves[(name, arm)][s][c]["accuracy"] for s in seeds])
                f1 = mean_sd([curves[(name, arm)][s][c]["macro_f1"] for s in seeds])
                cells.append(f"{acc[0]:.3f}±{acc[1]:.3f} / {f1[0]:.3f}±{f1[1]:.3f}")
            auc = mean_sd([_auc(curves[(name, arm)][s], "accuracy", lo, top) for s in seeds])
            cells.append(f"{auc[0]:.4f}±{auc[1]:.4f}")
            for metric in ("accuracy", "macro_f1"):
                need = "–"
                if fs:
                    target = 0.95 * fs[metric]
                    mean_curve = {
                        n: np.mean([curves[(name, arm)][s][n][metric] for s in seeds])
                        for n in sorted(curves[(name, arm)][seeds[0]])
                        if all(n in curves[(name, arm)][s] for s in seeds)
                    }
                    hit = [n for n, v in mean_curve.items() if v >= target]
                    need = str(min(hit)) if hit else f">{top}"
                cells.append(need)
            # early columns: every seed this arm has (some arms ran more seeds, to 275 labels)
            mine = sorted(curves[(name, arm)])
            early = [n for n in sorted(curves[(name, arm)][mine[0]]) if n <= early_top]
            early = [n for n in early if all(n in curves[(name, arm)][s] for s in mine)]
            sds = [mean_sd([curves[(name, arm)][s][n]["accuracy"] for s in mine])[1] for n in early]
            if extra_seeds:
                acc = mean_sd([curves[(name, arm)][s][125]["accuracy"] for s in mine])
                cells.append(f"{acc[0]:.3f}±{acc[1]:.3f} ({len(mine)})")
            cells.append(f"{np.mean(sds):.4f} ({len(mine)})" if len(mine) > 1 and sds else "–")
            table_rows.append(cells)
        cols = [f"acc / F1 @ {c}" for c in checkpoints]
        cols += [f"AUC acc ({lo}–{top})", "labels to 95% acc", "labels to 95% F1"]
        if extra_seeds:
            cols.append("acc @ 125, all seeds (n)")
        cols.append(f"mean sd acc ≤ {early_top}, all seeds (n)")
        parts += [head, "", markdown_table(["arm", *cols], table_rows), ""]
        parts += [_versus(curves, name, "default", rival) for rival in RIVALS]
        parts.append("")
        if plots is not None:
            path = _plot(name, arms, top, curves, fs, plots)
            parts += [f"![{name}](plots/{path.name})", ""]
    return "\n".join(parts)


def _versus(curves, name: str, arm: str, other: str) -> str:
    """``arm`` against ``other`` round by round on the seeds both ran (mean over them), and
    the paired difference of their AUCs: what the "never below" and AUC targets are judged on."""
    if (name, arm) not in curves or (name, other) not in curves:
        return ""
    a, b = curves[(name, arm)], curves[(name, other)]
    seeds = sorted(set(a) & set(b))
    top = max(max(a[s]) for s in seeds) if seeds else 0
    finished = [s for s in seeds if max(a[s]) == max(b[s]) == top]
    seeds = finished or seeds  # seeds both arms ran to the end, else every seed they share
    ns = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds)))
    if not seeds or len(ns) < 2:
        return ""
    diff = {n: np.mean([a[s][n]["accuracy"] - b[s][n]["accuracy"] for s in seeds]) for n in ns}
    below = [n for n in ns if diff[n] < 0]
    worst = min(ns, key=lambda n: diff[n])
    aucs = [
        _auc(a[s], "accuracy", ns[0], ns[-1]) - _auc(b[s], "accuracy", ns[0], ns[-1]) for s in seeds
    ]
    d_auc, sd_auc = mean_sd(aucs)
    text = (
        f"- {arm} vs {other}, seeds {', '.join(map(str, seeds))}, {len(ns)} rounds "
        f"({ns[0]}–{ns[-1]} labels): mean accuracy below at {len(below)} rounds"
    )
    if below:
        shown = ", ".join(str(n) for n in below[:8]) + (", …" if len(below) > 8 else "")
        text += f" ({shown}; worst {100 * diff[worst]:+.1f} points at {worst})"
    return text + f"; AUC difference {d_auc:+.4f} ± {sd_auc:.4f} (paired, over seeds)"


def screens(rows: list[dict], lo: int = 50, hi: int = 300, base: str = "random") -> str:
    """Every arm against ``base``, paired by seed over the rounds from ``lo`` to ``hi`` labels:
    rounds where the mean over seeds is below, points above at ``hi``, the paired AUC
    difference (mean ± sd over seeds) and the mean sd over seeds up to 275 labels (base's
    beside it). What "Alternatives screened" in RESULTS is made of."""
    curves = _curves(rows)
    table = []
    for name in sorted({r["dataset"] for r in rows}):
        b = curves.get((name, base))
        if not b:
            continue
        for arm in [a for a in _arms_in(rows) if (name, a) in curves and a != base]:
            a = curves[(name, arm)]
            seeds = sorted(set(a) & set(b))
            ns = [
                n for n in range(lo, hi + 1, BATCH) if all(n in a[s] and n in b[s] for s in seeds)
            ]
            if not seeds or len(ns) < 2:
                continue
            diff = {
                n: np.mean([a[s][n]["accuracy"] - b[s][n]["accuracy"] for s in seeds]) for n in ns
            }
            below = [n for n in ns if diff[n] < 0]
            aucs = [
                _auc(a[s], "accuracy", ns[0], ns[-1]) - _auc(b[s], "accuracy", ns[0], ns[-1])
                for s in seeds
            ]
            d, sd = mean_sd(aucs)
            early = [n for n in ns if n <= min(275, hi)]
            sd_arm = np.mean([mean_sd([a[s][n]["accuracy"] for s in seeds])[1] for n in early])
            sd_base = np.mean([mean_sd([b[s][n]["accuracy"] for s in seeds])[1] for n in early])
            worst = min(ns, key=lambda n: diff[n])
            table.append(
                (
                    name,
                    arm,
                    ", ".join(map(str, seeds)),
                    f"{len(below)} of {len(ns)}"
                    + (
                        f" ({', '.join(map(str, below))}; worst {100 * diff[worst]:+.1f})"
                        if below
                        else ""
                    ),
                    f"{100 * diff[ns[-1]]:+.1f}",
                    f"{d:+.4f} ± {sd:.4f}",
                    f"{sd_arm:.4f} / {sd_base:.4f}",
                )
            )
    head = ["dataset", "arm", "seeds", f"rounds below {base} ({lo}–{hi})", f"points @ {hi}"]
    head += [f"AUC − {base} (paired)", f"mean sd ≤ {min(275, hi)}: arm / {base}"]
    return markdown_table(head, table) if table else f"no rows beside {base}'s"


def _variant(row: dict) -> str:
    """The row's dataset, followed by the classifier settings of an experiment's run
    (``--classifier``) if it had any: ``ag_news_7600 (COEF_DTYPE=none)``."""
    settings = row.get("classifier") or {}
    if not settings:
        return row["dataset"]
    return f"{row['dataset']} ({', '.join(f'{k}={v}' for k, v in sorted(settings.items()))})"


def paired(base_rows: list[dict], new_rows: list[dict], arm: str = "default") -> str:
    """``arm``'s AUC of accuracy in ``new_rows`` (a changed classifier) against ``base_rows``
    (the stored rows), paired by seed: per dataset (and classifier variant, for rows of
    ``--classifier`` runs), the seeds both have, each seed's AUC over
    the rounds both reached, and the paired difference (new − base), mean ± sd and per seed."""
    base, new = _curves(base_rows), _curves([{**r, "dataset": _variant(r)} for r in new_rows])
    table = []
    for name in sorted({_variant(r) for r in new_rows}):
        a, b = new.get((name, arm), {}), base.get((name.split(" ")[0], arm), {})
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        ns = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds)))
        if len(ns) < 2:
            continue
        old_auc = [_auc(b[s], "accuracy", ns[0], ns[-1]) for s in seeds]
        new_auc = [_auc(a[s], "accuracy", ns[0], ns[-1]) for s in seeds]
        diff = [n - o for n, o in zip(new_auc, old_auc, strict=True)]
        d, sd = mean_sd(diff)
        (ob, osd), (nb, nsd) = mean_sd(old_auc), mean_sd(new_auc)
        table.append(
            (
                name,
                ", ".join(map(str, seeds)),
                f"{ns[0]}–{ns[-1]} ({len(ns)})",
                f"{ob:.4f} ± {osd:.4f}",
                f"{nb:.4f} ± {nsd:.4f}",
                f"{d:+.4f} ± {sd:.4f}",
                ", ".join(f"{x:+.4f}" for x in diff),
            )
        )
    head = ["dataset", "seeds", "labels (rounds)", "AUC before", "AUC now", "now − before"]
    return markdown_table([*head, "per seed"], table) if table else f"no {arm} rows to pair"


def _plot(name, arms, top, curves, fs, plots: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("accuracy", "macro_f1"), strict=True):
        for arm in arms:
            seeds = [s for s in sorted(curves[(name, arm)]) if max(curves[(name, arm)][s]) >= top]
            ns = sorted(set.intersection(*(set(curves[(name, arm)][s]) for s in seeds)))
            ys = np.array([[curves[(name, arm)][s][n][metric] for n in ns] for s in seeds])
            style = {"linewidth": 2.2} if arm == "default" else {"linewidth": 1.1}
            ax.plot(ns, ys.mean(axis=0), label=f"{arm} ({len(seeds)})", **style)
            if len(seeds) > 1:
                ax.fill_between(ns, ys.min(axis=0), ys.max(axis=0), alpha=0.12)
        if fs:
            ax.axhline(fs[metric], color="k", linestyle=":", label="full supervision")
            ax.axhline(0.95 * fs[metric], color="grey", linestyle="--", label="95 % of full")
        ax.set_xlabel("labels")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{name}: mean over (n) seeds, band = min–max over seeds")
    fig.tight_layout()
    plots.mkdir(parents=True, exist_ok=True)
    path = plots / f"label_efficiency_{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _open_rows(path: Path):
    """A results file, plain or gzipped (benchmarks/results/ keeps them gzipped)."""
    return gzip.open(path, "rt") if path.suffix == ".gz" else path.open()


def _read_rows(path: Path) -> list[dict]:
    """The rows of a results file; ``ValueError`` naming the file (and line) if it is bad."""
    rows = []
    try:
        with _open_rows(path) as f:
            for n, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path} line {n}: bad JSON ({exc.msg})") from None
                missing = {"dataset", "arm", "seed", "n_labels", "accuracy"} - set(row)
                if missing:
                    raise ValueError(f"{path} line {n}: no field {sorted(missing)[0]!r}")
                rows.append(row)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from None
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="trec, 400-item pool, 50 labels, 1 seed; no plot unless --plots names a folder",
    )
    add_data_options(parser, DATASETS, quick="trec")
    parser.add_argument(
        "--arms",
        nargs="*",
        default=list(ARMS),
        choices=ALL_ARMS,
        metavar="ARM",
        help=f"the arms to run (default: {' '.join(ARMS)}); the screened ones run only when "
        f"named: {' '.join(SCREENS)}",
    )
    parser.add_argument(
        "--seeds",
        nargs="*",
        type=int,
        default=[0, 1, 2, 3, 4],
        metavar="N",
        help="the seeds to run, each a loop of its own per arm and dataset (default 0 1 2 3 4;"
        " --quick: 0)",
    )
    parser.add_argument(
        "--max-labels",
        type=int,
        help="stop here (default 1,025; 2,025 banking77); with --paired, compare up to here",
    )
    parser.add_argument("--no-full", action="store_true", help="skip the full-supervision fit")
    parser.add_argument(
        "--classifier",
        nargs="+",
        metavar="NAME=VALUE",
        default=[],
        help="an experiment, not a product setting: set model.classifier's LR_SOLVER, "
        "CHAR_MIN_DF, CHAR_MIN_DF_FROM, LEAN_FROM_CLASSES or COEF_DTYPE (float16, float32 or "
        "none) for this run; each row records it",
    )
    parser.add_argument("--out", type=Path, help="append the raw rows (JSONL) here")
    parser.add_argument("--report", nargs="*", type=Path, help="only report these JSONL files")
    parser.add_argument(
        "--screens",
        action="store_true",
        help="with --report: every arm against random, paired by seed, 50 to --max-labels "
        "(default 300) labels",
    )
    parser.add_argument(
        "--base",
        default="random",
        metavar="ARM",
        help="with --screens: the arm every other is paired with (default random); one of "
        "--arms' choices, or any other arm the rows have (e.g. margin in the trec 20-seed rows)",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        help="folder for the PNG plots (default: benchmarks/plots with --report; a"
        " measuring run draws none unless given, so the committed plots stay those of the"
        " stored rows)",
    )
    parser.add_argument(
        "--paired",
        nargs="+",
        type=Path,
        metavar="NEW",
        help="only compare the default arm in these JSONL files with --baseline's, paired by seed",
    )
    parser.add_argument(
        "--baseline",
        nargs="+",
        type=Path,
        default=sorted((ROOT / "benchmarks" / "results" / "label_efficiency").glob("*.jsonl.gz")),
        help="the rows --paired compares with (default: the stored rows, "
        "benchmarks/results/label_efficiency/*.jsonl.gz)",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # a benchmark, not a test: keep the output readable
    print(machine())
    if args.paired:
        try:
            new = [row for path in args.paired for row in _read_rows(path)]
            base = [row for path in args.baseline for row in _read_rows(path)]
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.max_labels:  # compare the rounds up to it only
            new = [row for row in new if row["n_labels"] <= args.max_labels]
            base = [row for row in base if row["n_labels"] <= args.max_labels]
        print(paired(base, new))
        return 0
    if args.report:
        try:
            rows = [row for path in args.report for row in _read_rows(path)]
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.screens:
            arms = _arms_in(rows)
            if args.base not in ALL_ARMS and args.base not in arms:
                print(
                    f"error: --base {args.base}: no such arm (the rows have "
                    f"{', '.join(arms) or 'none'})",
                    file=sys.stderr,
                )
                return 2
            print(screens(rows, hi=args.max_labels or 300, base=args.base))
        else:
            print(report(rows, args.plots or PLOTS))
        return 0
    try:
        args.variant = set_classifier(args.classifier)
    except ValueError as exc:
        print(f"error: --classifier {exc}", file=sys.stderr)
        return 2
    args.data, args.datasets = resolve_data(args)
    if args.quick:  # the cold start's round and one of each arm's own picks
        args.seeds, args.max_labels = [0], 50
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out_path = args.out or Path(tmp) / "rows.jsonl"
        with out_path.open("a") as out:
            simulate(args, out)
        rows = [json.loads(line) for line in out_path.open()]
        # a quick run draws no plot unless --plots asks (tests/benchmarks/
        # test_label_efficiency_plots.py draws them): matplotlib was a fifth of its time
        plots = args.plots or (None if args.quick else Path(tmp))
        print(report(rows, plots))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
