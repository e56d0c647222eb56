"""Train a candidate model and decide whether it replaces the champion."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone

from model.classifier import (
    DEFAULT_PIPELINE,
    Progress,
    TextClassifier,
    fit_pipeline,
    prepare_texts,
    skip_checks,
)
from model.errors import InsufficientDataError, InvalidInputError, ModelError
from model.evaluation import Evaluation, Fold, cross_validate, make_folds
from model.selection import text_key

DEFAULT_TOLERANCE = 0.01
"""A candidate may be this much worse on macro-F1 than the champion and still be promoted."""

MIN_GOLD = 20
"""Gold questions needed before the gate checks the candidate on them. The exact test below
keeps false rejections at its level with any number; the minimum is about what it can show:
under 20 questions a rejection needs nearly every disagreement against the candidate (5 of 5
at 5 %), each question moves the figures 5 points or more, and the report would quote them."""

GOLD_LEVEL = 0.05
"""One-sided level of the gold check (McNemar's exact test on the questions the two models
answer differently): a candidate as good as the champion is kept out at most 5 % of the time."""


@dataclass
class Candidate:
    """A trained (or failed) candidate: the model, its cross-validation and its data.

    ``classifier`` is ``None`` exactly when training failed; ``reason`` then says why.
    ``texts``, ``labels`` and ``folds`` are kept so :func:`decide` can score the
    champion on the very same folds.
    """

    texts: list[str]
    labels: list[str]
    pipeline_name: str
    random_state: int
    classifier: TextClassifier | None = None
    evaluation: Evaluation | None = None
    folds: list[Fold] = field(default_factory=list)
    reason: str = ""
    fit_seconds: float = 0.0
    # Each held-out label's confidence (its fold's model's top probability) and whether that
    # model's guess was right, in the order held out: the map from this configuration's
    # confidence to accuracy, on these labels, that "accuracy now" reads the stop set with
    # (``model.stopping.accuracy_now``; a model nearly this one, where the questions people
    # answered were asked by older, often much weaker models)
    oof_confidence: list[float] = field(default_factory=list)
    oof_right: list[bool] = field(default_factory=list)

    @property
    def is_trained(self) -> bool:
        return self.classifier is not None

    @property
    def n_train(self) -> int:
        return len(self.labels)

    @property
    def label_set(self) -> list[str]:
        return list(self.classifier.classes) if self.classifier else sorted(set(self.labels))


@dataclass(frozen=True)
class Decision:
    """``promote`` or not, why, and the two scores compared (macro-F1 on the same folds)."""

    promote: bool
    reason: str
    candidate_macro_f1: float | None = None
    champion_macro_f1: float | None = None
    n_splits: int = 0
    gold: GoldCheck | None = None


@dataclass(frozen=True)
class GoldMiss:
    """A gold question the candidate answered otherwise than its gold label: its position in
    the texts asked, the gold label, the candidate's answer and whether the champion got it
    right (a question that counts against the candidate in the test)."""

    index: int
    label: str
    answer: str
    champion_right: bool


@dataclass(frozen=True)
class GoldCheck:
    """Both models on held-out questions whose right labels are known (the gold questions):
    how many each got right, and the one-sided p-value of "the candidate is worse" (McNemar's
    exact test: of the questions only one of them got right, the champion's share).
    ``misses``: the questions the candidate got wrong, those the champion got right first."""

    n: int
    candidate_correct: int
    champion_correct: int
    p_worse: float
    misses: tuple[GoldMiss, ...] = ()

    @property
    def worse(self) -> bool:
        return self.p_worse < GOLD_LEVEL

    def text(self, champion: str = "the champion") -> str:
        """``56 % vs 70 % for the champion`` with the test's p-value."""
        return (
            f"{_pct(self.candidate_correct, self.n)} vs {_pct(self.champion_correct, self.n)}"
            f" for {champion} (one-sided McNemar p = {self.p_worse:.2g})"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "candidate_correct": self.candidate_correct,
            "champion_correct": self.champion_correct,
            "p_worse": self.p_worse,
        }


def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:.0f} %"


def gold_check(
    candidate: TextClassifier,
    champion: TextClassifier,
    texts: Sequence[str],
    labels: Sequence[str],
    champion_names: Mapping[str, str] | None = None,
) -> GoldCheck | None:
    """Score both models on ``texts``/``labels`` (data neither trained on, whose labels the
    new batch did not define), paired; None under ``MIN_GOLD`` questions. ``champion_names``
    maps a label the champion was trained under to its name in ``labels`` (the label set was
    changed since: a rename, a merge), so its answers are read as the names of now."""
    if len(texts) != len(labels):
        raise InvalidInputError(f"{len(texts)} gold texts but {len(labels)} labels")
    if len(labels) < MIN_GOLD:
        return None
    from scipy.stats import binomtest

    truth = [str(v) for v in labels]
    answers = [str(p) for p in candidate.predict(list(texts))]
    new = [p == t for p, t in zip(answers, truth, strict=True)]
    names = champion_names or {}
    guesses = [names.get(str(p), str(p)) for p in champion.predict(list(texts))]
    old = [p == t for p, t in zip(guesses, truth, strict=True)]
    only_old = sum(o and not c for c, o in zip(new, old, strict=True))
    only_new = sum(c and not o for c, o in zip(new, old, strict=True))
    discordant = only_old + only_new
    p = binomtest(only_old, discordant, 0.5, alternative="greater").pvalue if discordant else 1.0
    misses = sorted(
        (GoldMiss(i, truth[i], answers[i], old[i]) for i in range(len(truth)) if not new[i]),
        key=lambda m: (not m.champion_right, m.index),
    )
    return GoldCheck(len(truth), sum(new), sum(old), float(p), tuple(misses))


def train_candidate(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    pipeline_name: str = DEFAULT_PIPELINE,
    label_set: Sequence[str] | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
) -> Candidate:
    """Cross-validate, then fit on all ``texts``/``labels``; never raises for bad data.

    Needs at least 2 classes with at least 2 different texts each (k-fold, k at most 5, see
    ``model.evaluation.n_splits_for``). A text and its near-duplicates (equal
    ``model.selection.text_key``) are held out together, never on both sides of a fold, so
    repeated texts do not lift the figures. Too few labels, a single class, or a fit that
    raises give a :class:`Candidate` with ``classifier=None`` and a ``reason``; no partly
    fitted model is ever returned. ``progress(done, total)`` is called after each fold and
    the final fit. Only mismatched lengths raise (:class:`InvalidInputError`): a caller bug.
    """
    if len(texts) != len(labels):
        raise InvalidInputError(f"{len(texts)} texts but {len(labels)} labels")
    xs = [str(t) for t in texts]
    ys = [str(v) for v in labels]
    cand = Candidate(xs, ys, pipeline_name, random_state)
    started = time.perf_counter()
    try:
        if xs and not any(t.strip() for t in xs):  # all one (blank) text: say that, not "one text"
            raise InsufficientDataError("every training text is blank: nothing to learn from")
        keys = [text_key(t) for t in xs]
        cand.folds = make_folds(ys, random_state=random_state, groups=keys)
        total = len(cand.folds) + 1

        def fit_predict(train: list[int], test: list[int]) -> list[str]:
            # the configuration of the model fitted on all the labels below, not the one a
            # fold's size would pick (2,001-2,500 labels: SGD promoted, logistic regression
            # evaluated), so the evaluation and the gate are of the model that is promoted
            clf = TextClassifier(pipeline_name, random_state).fit(
                [xs[i] for i in train], [ys[i] for i in train], sized_for=len(ys)
            )
            proba = clf.predict_proba([xs[i] for i in test])  # what ``predict`` takes the argmax of
            guesses = [clf.classes[j] for j in proba.argmax(axis=1)]
            cand.oof_confidence += proba.max(axis=1).tolist()
            cand.oof_right += [g == ys[i] for g, i in zip(guesses, test, strict=True)]
            return guesses

        def fold_done(done: int, _: int) -> None:
            if progress is not None:
                progress(done, total)

        evaluation = cross_validate(fit_predict, ys, cand.folds, progress=fold_done)
        classifier = TextClassifier(pipeline_name, random_state).fit(xs, ys, label_set=label_set)
    except ModelError as exc:
        cand.reason = f"not trained: {exc}"
        cand.fit_seconds = time.perf_counter() - started
        return cand
    except MemoryError:
        cand.reason = "not trained: ran out of memory while fitting (MemoryError)"
        cand.fit_seconds = time.perf_counter() - started
        return cand
    except Exception as exc:  # a fit that raises must not crash the retrain loop
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        cand.reason = f"not trained: fitting failed with {detail}"
        cand.fit_seconds = time.perf_counter() - started
        return cand
    cand.classifier = classifier
    cand.evaluation = evaluation
    cand.fit_seconds = time.perf_counter() - started
    if progress is not None:
        progress(total, total)
    return cand


def decide(
    candidate: Candidate,
    champion: TextClassifier | None,
    *,
    champion_mask: Sequence[bool] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: Progress | None = None,
    gold: tuple[Sequence[str], Sequence[str]] | None = None,
    champion_names: Mapping[str, str] | None = None,
) -> Decision:
    """Promote or reject ``candidate`` against ``champion``, on the same folds.

    How the champion is scored: its fitted model has usually seen most of the
    candidate's labels, so scoring it directly on the candidate's held-out folds would
    flatter it. Instead, for each of the candidate's folds, the champion's pipeline
    configuration (``sklearn.base.clone`` of its fitted pipeline, i.e. same steps and
    hyper-parameters) is refitted on that fold's training rows and predicts the same
    held-out rows the candidate was scored on. With ``champion_mask`` (one bool per
    candidate row: was it in the champion's training data?) the refit uses only those
    training rows, so the comparison is "the champion as it was" against "the
    candidate with the new labels", with no leakage. If a fold leaves the champion
    fewer than 2 classes, it predicts its only (or the candidate's majority) label.

    Rules: a failed candidate is rejected with its reason; the first model (no
    champion) is promoted (training already requires 2 classes with 2 examples each);
    otherwise the candidate is promoted unless its pooled out-of-fold macro-F1 is lower
    than the champion's by more than ``tolerance``.

    The folds hold out the candidate's own labels, new ones included: a batch with a
    consistent error (two labels' guidelines read the wrong way round) teaches the candidate
    that error and scores it right. ``gold`` (texts, labels: questions whose answers are known
    and that neither model trained on) is data the batch did not define: with ``MIN_GOLD`` or
    more, both fitted models answer them, and a candidate worse than the champion on them
    beyond chance (:func:`gold_check`) is rejected, whatever the folds say. ``champion_names``:
    the champion's labels renamed since it was trained (see :func:`gold_check`).
    """
    if not candidate.is_trained or candidate.evaluation is None:
        return Decision(False, f"rejected: {candidate.reason or 'candidate was not trained'}")
    cand_f1 = candidate.evaluation.macro_f1
    k = len(candidate.folds)
    if champion is None:
        return Decision(
            True,
            f"promoted: first model, macro-F1 {cand_f1:.3f} ({k}-fold CV, n={candidate.n_train})",
            cand_f1,
            None,
            k,
        )
    if champion_mask is not None and len(champion_mask) != candidate.n_train:
        raise InvalidInputError(
            f"champion_mask has {len(champion_mask)} entries for {candidate.n_train} labels"
        )
    checked = None
    if gold is not None and candidate.classifier is not None:
        checked = gold_check(candidate.classifier, champion, gold[0], gold[1], champion_names)
    on_gold = f"on the {checked.n:,} gold questions" if checked else ""
    try:
        champ_eval = _evaluate_champion(candidate, champion, champion_mask, progress)
    except Exception as exc:  # the champion's config may no longer fit these data
        if checked is not None and checked.worse:
            return Decision(
                False, f"rejected: worse {on_gold}: {checked.text()}", cand_f1, None, k, checked
            )
        also = f"; {on_gold}: {checked.text()}" if checked else ""
        return Decision(
            True,
            f"promoted: champion could not be re-evaluated on the same folds "
            f"({type(exc).__name__}: {exc}); candidate macro-F1 {cand_f1:.3f}{also}",
            cand_f1,
            None,
            k,
            checked,
        )
    champ_f1 = champ_eval.macro_f1
    detail = f"macro-F1 {champ_f1:.3f}→{cand_f1:.3f} on the same {k} folds (n={candidate.n_train})"
    if checked is not None and checked.worse:
        return Decision(
            False,
            f"rejected: worse {on_gold}: {checked.text()}, although {detail}",
            cand_f1,
            champ_f1,
            k,
            checked,
        )
    also = f"; {on_gold}: {checked.text()}" if checked else ""
    if cand_f1 < champ_f1 - tolerance:
        return Decision(
            False,
            f"rejected: {detail}; worse than the champion by more than {tolerance:.3f}{also}",
            cand_f1,
            champ_f1,
            k,
            checked,
        )
    return Decision(True, f"promoted: {detail}{also}", cand_f1, champ_f1, k, checked)


def _evaluate_champion(
    candidate: Candidate,
    champion: TextClassifier,
    champion_mask: Sequence[bool] | None,
    progress: Progress | None,
) -> Evaluation:
    template = champion.pipeline_
    if template is None:
        raise InvalidInputError("the champion has not been fitted")
    xs, ys = candidate.texts, candidate.labels
    mask = None if champion_mask is None else np.asarray(champion_mask, dtype=bool)
    fallback = Counter(ys).most_common(1)[0][0]

    def fit_predict(train: list[int], test: list[int]) -> list[str]:
        rows = [i for i in train if mask is None or mask[i]]
        seen = Counter(ys[i] for i in rows)
        if len(seen) < 2:
            only = seen.most_common(1)[0][0] if seen else fallback
            return [only] * len(test)
        pipe = fit_pipeline(clone(template), [xs[i] for i in rows], [ys[i] for i in rows])
        with skip_checks():
            guesses = pipe.predict(prepare_texts([xs[i] for i in test]))
        return [str(v) for v in guesses]

    return cross_validate(fit_predict, ys, candidate.folds, progress=progress)
