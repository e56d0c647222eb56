"""The bytes of a model file: a fitted pipeline in skops' safe format, made small.

A fitted pipeline saved as it is spends most of its bytes where they carry little: skops writes
a vectorizer's ``vocabulary_`` (a dict of n-grams) as JSON, ~800 bytes a term, and SGD's
coefficients are mostly zeros stored dense. :func:`dumps` writes instead a skops archive of ::

    {"format": FORMAT,
     "pipeline": the pipeline, its vectorizers without vocabulary_, coefficients sparse
                 where that is smaller,
     "vocabularies": [{"text": uint8 UTF-8 of the terms joined, "ends": int64 end of each term
                       in that text, in characters}, one per vectorizer, in pipeline order]}

compressed (deflate). :func:`loads` restores the same pipeline, predictions unchanged, and
still reads a bare pipeline (the format written before this one). Both go through skops with
no extra trusted types: no pickle, and a file naming any other type is refused.
"""

from __future__ import annotations

import copy
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import skops.io as sio
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline

from model.errors import ModelError

FORMAT = "slack-hitl model 2"
"""The format :func:`dumps` writes; a file holding a bare pipeline is the earlier format 1."""

_KEYS = {"format", "pipeline", "vocabularies", "coef"}


class ModelFileError(ModelError):
    """A model file that skops loaded but that is not a model in a format we know."""


def dumps(pipeline: Pipeline) -> bytes:
    """The model file's bytes for a fitted ``pipeline`` (which is not changed)."""
    compact = _copy_steps(pipeline)
    vocabularies = []
    for vectorizer in _vectorizers(compact):
        terms = _terms(vectorizer.vocabulary_)
        ends = np.cumsum([len(t) for t in terms], dtype=np.int64)
        text = np.frombuffer("".join(terms).encode("utf-8"), dtype=np.uint8)
        vocabularies.append({"text": text, "ends": ends})
        del vectorizer.vocabulary_
    coef = _sparse_coefficients(compact)
    payload = {"format": FORMAT, "pipeline": compact, "vocabularies": vocabularies, "coef": coef}
    return sio.dumps(payload, compression=zipfile.ZIP_DEFLATED)


def loads(data: bytes, trusted: list[str] | None = None) -> Pipeline:
    """The fitted pipeline in ``data`` (format 2 or a bare pipeline); skops' errors propagate,
    :class:`ModelFileError` for anything else that is not a model."""
    obj = sio.loads(data, trusted=trusted or [])
    if isinstance(obj, Pipeline):  # format 1: the pipeline as fitted
        return obj
    if not isinstance(obj, dict) or set(obj) != _KEYS or obj["format"] != FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ModelFileError(f"not a model file in a format this version reads ({got!r})")
    pipeline = obj["pipeline"]
    vectorizers = list(_vectorizers(pipeline)) if isinstance(pipeline, Pipeline) else []
    vocabularies = obj["vocabularies"]
    if not vectorizers or len(vectorizers) != len(vocabularies):
        raise ModelFileError("the model file's vocabularies do not match its pipeline")
    for vectorizer, vocabulary in zip(vectorizers, vocabularies, strict=True):
        vectorizer.vocabulary_ = _vocabulary(vocabulary["text"], vocabulary["ends"])
    if obj["coef"] is not None:
        clf = pipeline.steps[-1][1]
        if getattr(clf, "coef_", "absent") is not None:
            raise ModelFileError("the model file's coefficients are stored twice")
        coef = obj["coef"]
        shape = tuple(int(n) for n in coef["shape"])
        rows = sparse.csr_matrix((coef["data"], coef["indices"], coef["indptr"]), shape=shape)
        clf.coef_ = rows.toarray().T  # Fortran-ordered, as TextClassifier scores fastest
    return pipeline


def _terms(vocabulary: dict[str, int]) -> list[str]:
    """The terms in column order (``terms[j]`` is column ``j``)."""
    terms = [""] * len(vocabulary)
    for term, j in vocabulary.items():
        terms[j] = term
    return terms


def _vocabulary(text: np.ndarray, ends: np.ndarray) -> dict[str, int]:
    joined = np.asarray(text, dtype=np.uint8).tobytes().decode("utf-8")
    ends = np.asarray(ends, dtype=np.int64)
    if ends.size and (ends[-1] != len(joined) or ends[0] < 0 or np.any(np.diff(ends) < 0)):
        raise ModelFileError("the model file's vocabulary is damaged")
    stops = ends.tolist()
    terms = [joined[a:b] for a, b in zip([0, *stops[:-1]], stops, strict=True)]
    return dict(zip(terms, range(len(terms)), strict=True))


def _copy_steps(estimator: Any) -> Any:
    """A copy of ``estimator`` whose steps are shallow copies: attributes can be swapped on it
    without touching the original (arrays are shared, not copied)."""
    clone = copy.copy(estimator)
    if isinstance(estimator, Pipeline):
        clone.steps = [(name, _copy_steps(step)) for name, step in estimator.steps]
    elif isinstance(estimator, FeatureUnion):
        clone.transformer_list = [
            (name, _copy_steps(part)) for name, part in estimator.transformer_list
        ]
    return clone


def _vectorizers(estimator: Any) -> Iterator[TfidfVectorizer]:
    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps:
            yield from _vectorizers(step)
    elif isinstance(estimator, FeatureUnion):
        for _, part in estimator.transformer_list:
            yield from _vectorizers(part)
    elif isinstance(estimator, TfidfVectorizer):
        yield estimator


def _sparse_coefficients(pipeline: Pipeline) -> dict[str, Any] | None:
    """Take the final step's ``coef_`` out of ``pipeline`` as CSR arrays when that is smaller
    than dense (SGD's are mostly zeros; L2-regularised logistic regression's are not), leaving
    ``coef_ = None``; ``None`` when it stays. Plain arrays, not a scipy matrix: skops trusts no
    sparse matrix class by default, and a model file needs no trusted types."""
    clf = pipeline.steps[-1][1]
    coef = getattr(clf, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.ndim != 2:
        return None
    nnz = int(np.count_nonzero(coef))
    if nnz * (coef.itemsize + 4) >= coef.size * coef.itemsize:
        return None
    rows = sparse.csr_matrix(coef.T)  # one row per feature: dense again, it is coef_ in F order
    clf.coef_ = None
    return {
        "data": rows.data,
        "indices": rows.indices,
        "indptr": rows.indptr,
        "shape": [int(n) for n in rows.shape],
    }
