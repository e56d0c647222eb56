"""The bytes of a model file: a fitted pipeline in skops' safe format, made small.

A fitted pipeline saved as it is spends most of its bytes where they carry little: skops writes
a vectorizer's ``vocabulary_`` (a dict of n-grams) as JSON, ~800 bytes a term, SGD's
coefficients are mostly zeros stored dense, and logistic regression's are float32 where float16
holds them exactly (``model.classifier.round_coefficients``). :func:`dumps` writes instead a
skops archive of ::

    {"format": FORMAT,
     "pipeline": the pipeline, its vectorizers without vocabulary_, and without coef_ when
                 "coef" holds it,
     "vocabularies": [{"text": uint8 UTF-8 of the terms joined, "ends": int64 end of each term
                       in that text, in characters}, one per vectorizer, in pipeline order],
     "coef": None (coef_ stays in the pipeline)
             | {"data", "indices", "indptr", "shape"}: coef_.T as CSR arrays, where sparse is
               smaller (SGD's)
             | {"half": coef_.T as float16, "dtype": coef_'s dtype}, where float16 holds every
               value exactly (logistic regression's, rounded when fitted)}

compressed (deflate). :func:`loads` restores the same pipeline, predictions unchanged, checks
that the coefficients' shape matches the pipeline (a damaged or tampered array is refused, not
read out of bounds), and still reads format 2 (no "half" form) and a bare pipeline (format 1).
Both go through skops with no extra trusted types: no pickle, and a file naming any other type
is refused.
"""

from __future__ import annotations

import copy
import zipfile
from types import ModuleType
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.pipeline import FeatureUnion, Pipeline

from model.classifier import vectorizers as pipeline_vectorizers
from model.errors import ModelError

FORMAT = "slack-hitl model 3"
"""The format :func:`dumps` writes; format 2 had no "half" coefficients, format 1 is a file
holding a bare pipeline."""
_READS = (FORMAT, "slack-hitl model 2")

_KEYS = {"format", "pipeline", "vocabularies", "coef"}


def _skops() -> ModuleType:
    """skops.io, imported when a model file is first written or read: importing it lists every
    scikit-learn estimator (it imports them all, 0.6 s of CPU), which a process that fits or
    scores without touching a model file (a benchmark's, the test suite's) need not pay. The
    server's fork server preloads it for the fit children (``CHILD_PRELOAD``). scipy.special
    is imported first: skops.io finds the module of each of its functions by walking
    sys.modules in import order, which ends sooner once scipy.special is early in it."""
    import scipy.special  # noqa: F401 - before skops.io, see above
    import skops.io

    return skops.io


class ModelFileError(ModelError):
    """A model file that skops loaded but that is not a model in a format we know."""


def dumps(pipeline: Pipeline) -> bytes:
    """The model file's bytes for a fitted ``pipeline`` (which is not changed)."""
    compact = _copy_steps(pipeline)
    vocabularies = []
    for vectorizer in pipeline_vectorizers(compact):
        terms = _terms(vectorizer.vocabulary_)
        ends = np.cumsum([len(t) for t in terms], dtype=np.int64)
        text = np.frombuffer("".join(terms).encode("utf-8", "surrogatepass"), dtype=np.uint8)
        vocabularies.append({"text": text, "ends": ends})
        del vectorizer.vocabulary_
    coef = _sparse_coefficients(compact) or _half_coefficients(compact)
    payload = {"format": FORMAT, "pipeline": compact, "vocabularies": vocabularies, "coef": coef}
    return _skops().dumps(payload, compression=zipfile.ZIP_DEFLATED)


def loads(data: bytes, trusted: list[str] | None = None) -> Pipeline:
    """The fitted pipeline in ``data`` (format 2 or a bare pipeline); skops' errors propagate,
    :class:`ModelFileError` for anything else that is not a model."""
    obj = _skops().loads(data, trusted=trusted or [])
    if isinstance(obj, Pipeline):  # format 1: the pipeline as fitted
        return obj
    if not isinstance(obj, dict) or set(obj) != _KEYS or obj["format"] not in _READS:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ModelFileError(f"not a model file in a format this version reads ({got!r})")
    pipeline = obj["pipeline"]
    vectorizers = list(pipeline_vectorizers(pipeline)) if isinstance(pipeline, Pipeline) else []
    vocabularies = obj["vocabularies"]
    if not vectorizers or len(vectorizers) != len(vocabularies):
        raise ModelFileError("the model file's vocabularies do not match its pipeline")
    for vectorizer, vocabulary in zip(vectorizers, vocabularies, strict=True):
        vectorizer.vocabulary_ = _vocabulary(vocabulary["text"], vocabulary["ends"])
    if obj["coef"] is not None:
        clf = pipeline.steps[-1][1]
        if getattr(clf, "coef_", "absent") is not None:
            raise ModelFileError("the model file's coefficients are stored twice")
        clf.coef_ = _coefficients(obj["coef"], _coef_shape(clf)).T  # Fortran-ordered
    return pipeline


def _coef_shape(clf: Any) -> tuple[int, int]:
    """``coef_.T``'s shape for the fitted linear model ``clf``: (features, classes or 1)."""
    intercept = getattr(clf, "intercept_", None)
    n_features = getattr(clf, "n_features_in_", None)
    if not isinstance(intercept, np.ndarray) or not isinstance(n_features, int | np.integer):
        raise ModelFileError("the model file's coefficients belong to no linear model")
    return int(n_features), int(intercept.size)


def _coefficients(coef: Any, shape: tuple[int, int]) -> np.ndarray:
    """``coef_.T`` (C-ordered) from the file's arrays, refused unless they have ``shape``."""
    damaged = ModelFileError(
        f"the model file's coefficients are damaged (they do not fit {shape[0]:,} features × "
        f"{shape[1]:,} classes)"
    )
    if not isinstance(coef, dict):
        raise damaged
    if set(coef) == {"half", "dtype"}:
        half, dtype = coef["half"], coef["dtype"]
        if not isinstance(half, np.ndarray) or half.dtype != np.float16 or half.shape != shape:
            raise damaged
        if dtype not in ("float32", "float64"):
            raise ModelFileError(f"the model file's coefficients have an unknown dtype {dtype!r}")
        return half.astype(dtype)
    if set(coef) != {"data", "indices", "indptr", "shape"}:
        raise damaged
    data, indices, indptr = (np.asarray(coef[k]) for k in ("data", "indices", "indptr"))
    if (
        [int(n) for n in coef["shape"]] != list(shape)
        or indptr.shape != (shape[0] + 1,)
        or data.shape != indices.shape
        or not np.issubdtype(indices.dtype, np.integer)
        or not np.issubdtype(indptr.dtype, np.integer)
        or (indptr.size and (indptr[0] != 0 or indptr[-1] != data.size))
        or np.any(np.diff(indptr) < 0)
        or (indices.size and (indices.min() < 0 or indices.max() >= shape[1]))
    ):
        raise damaged
    return sparse.csr_matrix((data, indices, indptr), shape=shape).toarray()


def _terms(vocabulary: dict[str, int]) -> list[str]:
    """The terms in column order (``terms[j]`` is column ``j``)."""
    terms = [""] * len(vocabulary)
    for term, j in vocabulary.items():
        terms[j] = term
    return terms


def _vocabulary(text: np.ndarray, ends: np.ndarray) -> dict[str, int]:
    joined = np.asarray(text, dtype=np.uint8).tobytes().decode("utf-8", "surrogatepass")
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


def _half_coefficients(pipeline: Pipeline) -> dict[str, Any] | None:
    """Take the final step's dense ``coef_`` out of ``pipeline`` as float16 when that holds
    every value exactly (``model.classifier.round_coefficients`` made it so), leaving
    ``coef_ = None``; ``None`` otherwise. Stored as ``coef_.T`` (one row per feature, the
    Fortran order it is scored in): a feature's weights side by side deflate better."""
    clf = pipeline.steps[-1][1]
    coef = getattr(clf, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.ndim != 2 or coef.dtype.name not in _WIDE:
        return None
    half = np.ascontiguousarray(coef.T, dtype=np.float16)
    if not np.array_equal(half.astype(coef.dtype), coef.T):
        return None
    clf.coef_ = None
    return {"half": half, "dtype": coef.dtype.name}


_WIDE = ("float32", "float64")
