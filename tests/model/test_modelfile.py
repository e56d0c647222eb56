import hashlib
import json
import subprocess
import sys
import zipfile
from io import BytesIO

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline

from model import modelfile
from model.classifier import PIPELINES, TextClassifier, vectorizers
from model.errors import RegistryError
from model.registry import TRUSTED_TYPES, ModelRegistry
from tests.model.conftest import make_texts

WEIRD = ["naïve café", "line\nbreak and\ttab", "emoji 🎉🎉 party", "中文 文本 分类", "a\x00b nul"]


def twelve_classes() -> tuple[list[str], list[str]]:
    """Twelve classes (SGD's coefficients come out mostly zeros), with terms that are not plain
    ASCII words (a newline, a tab and a NUL inside char n-grams)."""
    texts, labels = make_texts(np.random.default_rng(1), [f"c{j}" for j in range(12)], 10)
    return texts + WEIRD, labels + ["c0", "c1", "c2", "c3", "c0"]


@pytest.fixture
def texts_labels() -> tuple[list[str], list[str]]:
    return twelve_classes()


@pytest.fixture(scope="module")
def model_files() -> dict[str, bytes]:
    """The model file of each pipeline the damaged-file tests below start from, written once:
    bytes, which each test loads into a payload of its own to damage."""
    texts, labels = twelve_classes()
    return {
        name: modelfile.dumps(TextClassifier(name).fit(texts, labels).pipeline_)
        for name in ("word_char_sgd", "word_char_lr")
    }


def schema(data: bytes) -> str:
    with zipfile.ZipFile(BytesIO(data)) as archive:
        return archive.read("schema.json").decode("utf-8")


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_a_model_file_gives_back_the_same_pipeline_and_needs_no_trusted_types(name, texts_labels):
    texts, labels = texts_labels
    clf = TextClassifier(name).fit(texts, labels)
    data = modelfile.dumps(clf.pipeline_)
    assert sio.get_untrusted_types(data=data) == list(TRUSTED_TYPES) == []
    loaded = TextClassifier.from_pipeline(modelfile.loads(data), clf.classes, name)
    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))
    before = [part.vocabulary_ for part in vectorizers(clf.pipeline_)]
    assert [part.vocabulary_ for part in vectorizers(loaded.pipeline_)] == before


@pytest.mark.parametrize("name", ["word_char_sgd", "word_char_lr"])  # sparse, dense coef_
def test_saving_leaves_the_fitted_pipeline_as_it_was(name, texts_labels):
    """``dumps`` works on a copy of the steps whose arrays are shared with the caller's
    pipeline: the values, not only the objects, must come out of it unchanged."""
    texts, labels = texts_labels
    clf = TextClassifier(name).fit(texts, labels)
    final = clf.pipeline_[-1]
    coef, intercept = final.coef_, final.intercept_
    coef_before, intercept_before = coef.copy(), intercept.copy()
    vocabularies = [dict(part.vocabulary_) for part in vectorizers(clf.pipeline_)]
    assert all(len(vocabulary) > 10 for vocabulary in vocabularies)
    proba = clf.predict_proba(texts)
    modelfile.dumps(clf.pipeline_)
    assert clf.pipeline_[-1].coef_ is coef
    np.testing.assert_array_equal(clf.pipeline_[-1].coef_, coef_before)
    np.testing.assert_array_equal(clf.pipeline_[-1].intercept_, intercept_before)
    assert [part.vocabulary_ for part in vectorizers(clf.pipeline_)] == vocabularies
    np.testing.assert_array_equal(clf.predict_proba(texts), proba)


def test_vocabularies_are_arrays_and_sparse_coefficients_are_stored_sparse(texts_labels):
    """skops writes a vocabulary dict as JSON, ~800 bytes a term; SGD's coefficients are
    mostly zeros. The file holds the terms as one array and the nonzero weights only."""
    texts, labels = texts_labels
    clf = TextClassifier("word_char_sgd").fit(texts, labels)
    char = dict(clf.pipeline_.named_steps["features"].transformer_list)["char"]
    term = max(char.vocabulary_, key=len)
    data = modelfile.dumps(clf.pipeline_)
    assert json.dumps(term)[1:-1] not in schema(data)
    old = sio.dumps(clf.pipeline_)  # the format written before: the pipeline as fitted
    assert json.dumps(term)[1:-1] in schema(old)
    assert len(data) < len(old) / 3
    obj = sio.loads(data, trusted=[])
    coef = clf.pipeline_[-1].coef_
    assert obj["pipeline"][-1].coef_ is None
    assert obj["coef"]["data"].size == np.count_nonzero(coef) < coef.size


def test_logistic_regression_coefficients_are_stored_dense_as_float16(texts_labels):
    """L2-regularised coefficients are dense; fitted, they are rounded to float16 values
    (``round_coefficients``), so the file holds them in 2 bytes each and loads them exactly."""
    texts, labels = texts_labels
    clf = TextClassifier("word_char_lr").fit(texts, labels)
    coef = clf.pipeline_[-1].coef_
    assert coef.dtype == np.float32 and np.count_nonzero(coef) == coef.size
    data = modelfile.dumps(clf.pipeline_)
    obj = sio.loads(data, trusted=[])
    assert obj["format"] == "slack-hitl model 3"
    assert obj["pipeline"][-1].coef_ is None
    assert obj["coef"]["half"].dtype == np.float16 and obj["coef"]["half"].shape == coef.T.shape
    loaded = modelfile.loads(data)[-1].coef_
    assert loaded.dtype == np.float32 and loaded.flags.f_contiguous
    np.testing.assert_array_equal(loaded, coef)


def test_coefficients_float16_cannot_hold_exactly_are_stored_as_they_are(texts_labels):
    texts, labels = texts_labels
    clf = TextClassifier("word_char_lr").fit(texts, labels)
    clf.pipeline_[-1].coef_ = clf.pipeline_[-1].coef_ + np.float32(1e-4)  # off the float16 grid
    obj = sio.loads(modelfile.dumps(clf.pipeline_), trusted=[])
    assert obj["coef"] is None
    np.testing.assert_array_equal(obj["pipeline"][-1].coef_, clf.pipeline_[-1].coef_)


def test_a_format_2_file_still_loads(texts_labels):
    """Format 2 (no float16 coefficients) is what models saved before this one are in."""
    texts, labels = texts_labels
    for name in ("word_char_lr", "word_char_sgd"):
        clf = TextClassifier(name).fit(texts, labels)
        obj = payload(clf)
        if obj["coef"] is not None and "half" in obj["coef"]:
            obj["pipeline"][-1].coef_ = np.asfortranarray(obj.pop("coef")["half"].T, np.float32)
            obj["coef"] = None
        obj["format"] = "slack-hitl model 2"
        loaded = TextClassifier.from_pipeline(modelfile.loads(sio.dumps(obj)), clf.classes, name)
        np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))


def test_a_bare_pipeline_file_written_before_this_format_still_loads(texts_labels):
    texts, labels = texts_labels
    clf = TextClassifier("word_char_sgd").fit(texts, labels)
    pipeline = modelfile.loads(sio.dumps(clf.pipeline_))
    assert isinstance(pipeline, Pipeline)
    loaded = TextClassifier.from_pipeline(pipeline, clf.classes, "word_char_sgd")
    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))
    assert loaded.pipeline_[-1].coef_.flags.f_contiguous


def payload(clf: TextClassifier) -> dict:
    return sio.loads(modelfile.dumps(clf.pipeline_), trusted=[])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(format="slack-hitl model 9"), "format this version reads"),
        (lambda p: p.pop("coef"), "format this version reads"),
        (lambda p: p["vocabularies"].pop(), "vocabularies do not match its pipeline"),
        (
            lambda p: p["vocabularies"][0].update(ends=p["vocabularies"][0]["ends"][::-1]),
            "vocabulary is damaged",
        ),  # fmt: skip
        (lambda p: setattr(p["pipeline"][-1], "coef_", np.zeros(3)), "stored twice"),
        (lambda p: p["coef"].update(shape=[10**6, 12]), "coefficients are damaged"),
        (lambda p: p["coef"].update(indices=p["coef"]["indices"] + 12), "damaged"),
        (lambda p: p["coef"].update(indptr=p["coef"]["indptr"][:-1]), "damaged"),
        (lambda p: p["coef"].update(data=p["coef"]["data"][:-1]), "damaged"),
        (lambda p: p["coef"].pop("indptr"), "damaged"),
    ],
    ids=[
        "format",
        "no-coef",
        "vocabulary-missing",
        "vocabulary-damaged",
        "coef-twice",
        "sparse-oversized",
        "sparse-index-out-of-bounds",
        "sparse-indptr-short",
        "sparse-data-short",
        "sparse-indptr-missing",
    ],
)
def test_a_file_that_is_not_a_model_in_our_format_is_refused(change, message, model_files):
    obj = sio.loads(model_files["word_char_sgd"], trusted=[])
    modelfile.loads(sio.dumps(obj))  # undamaged, it loads
    change(obj)
    with pytest.raises(modelfile.ModelFileError, match=message):
        modelfile.loads(sio.dumps(obj))


@pytest.mark.parametrize(
    "change",
    [
        lambda h: np.zeros((h.shape[0] * 1000, h.shape[1]), np.float16),  # oversized
        lambda h: h[:-1],  # a feature short
        lambda h: h[:, :-1],  # a class short
        lambda h: h.astype(np.float64),  # not float16
        lambda h: h.ravel(),
    ],
    ids=["oversized", "feature-short", "class-short", "float64", "flat"],
)
def test_float16_coefficients_that_do_not_fit_the_pipeline_are_refused(change, model_files):
    obj = sio.loads(model_files["word_char_lr"], trusted=[])
    modelfile.loads(sio.dumps(obj))  # undamaged, it loads
    obj["coef"]["half"] = change(obj["coef"]["half"])
    with pytest.raises(modelfile.ModelFileError) as refused:
        modelfile.loads(sio.dumps(obj))
    n_features = obj["pipeline"][-1].n_features_in_
    assert str(refused.value) == (
        f"the model file's coefficients are damaged (they do not fit {n_features:,} features × "
        "12 classes)"
    )


def test_float16_coefficients_with_an_unknown_dtype_are_refused(model_files):
    obj = sio.loads(model_files["word_char_lr"], trusted=[])
    obj["coef"]["dtype"] = "object"
    with pytest.raises(modelfile.ModelFileError, match="unknown dtype 'object'"):
        modelfile.loads(sio.dumps(obj))


def test_a_registry_refuses_such_a_file_in_one_line(tmp_path, texts_labels):
    texts, labels = texts_labels
    clf = TextClassifier("word_char_sgd").fit(texts, labels)
    registry = ModelRegistry(tmp_path / "models")
    registry.save(clf, n_train=len(texts))
    obj = payload(clf)
    obj["vocabularies"].pop()
    data = sio.dumps(obj)
    (registry.root / "v1.skops").write_bytes(data)
    meta = json.loads((registry.root / "v1.json").read_text())
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    (registry.root / "v1.json").write_text(json.dumps(meta))
    with pytest.raises(RegistryError) as refused:
        registry.load(1)
    assert str(refused.value) == (
        "model v1 could not be loaded safely: ModelFileError: "
        "the model file's vocabularies do not match its pipeline"
    )


def test_skops_is_imported_only_when_a_model_file_is_written_or_read():
    # importing skops.io imports every scikit-learn estimator (0.6 s of CPU a process)
    code = (
        "import sys, model.modelfile; from model.classifier import TextClassifier;"
        "clf = TextClassifier().fit(['red car', 'blue sky', 'red sun', 'blue sea'], list('xyxy'));"
        "before = 'skops.io' in sys.modules; model.modelfile.dumps(clf.pipeline_);"
        "print(before, 'skops.io' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]
