import hashlib
import json
import zipfile
from io import BytesIO

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline

from model import modelfile
from model.classifier import PIPELINES, TextClassifier
from model.errors import RegistryError
from model.registry import TRUSTED_TYPES, ModelRegistry
from tests.model.conftest import make_texts

WEIRD = ["naïve café", "line\nbreak and\ttab", "emoji 🎉🎉 party", "中文 文本 分类", "a\x00b nul"]


@pytest.fixture
def texts_labels() -> tuple[list[str], list[str]]:
    """Twelve classes (SGD's coefficients come out mostly zeros), with terms that are not plain
    ASCII words (a newline, a tab and a NUL inside char n-grams)."""
    texts, labels = make_texts(np.random.default_rng(1), [f"c{j}" for j in range(12)], 10)
    return texts + WEIRD, labels + ["c0", "c1", "c2", "c3", "c0"]


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
    before = [part.vocabulary_ for part in modelfile._vectorizers(clf.pipeline_)]
    assert [part.vocabulary_ for part in modelfile._vectorizers(loaded.pipeline_)] == before


def test_saving_leaves_the_fitted_pipeline_as_it_was(texts_labels):
    texts, labels = texts_labels
    clf = TextClassifier("word_char_sgd").fit(texts, labels)
    coef = clf.pipeline_[-1].coef_
    modelfile.dumps(clf.pipeline_)
    assert clf.pipeline_[-1].coef_ is coef
    assert all(len(part.vocabulary_) > 10 for part in modelfile._vectorizers(clf.pipeline_))


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


def test_logistic_regression_coefficients_stay_dense_where_that_is_smaller(texts_labels):
    texts, labels = texts_labels
    clf = TextClassifier("word_char_lr").fit(texts, labels)
    obj = sio.loads(modelfile.dumps(clf.pipeline_), trusted=[])
    assert obj["coef"] is None
    np.testing.assert_array_equal(obj["pipeline"][-1].coef_, clf.pipeline_[-1].coef_)


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
    ],
)
def test_a_file_that_is_not_a_model_in_our_format_is_refused(change, message, texts_labels):
    texts, labels = texts_labels
    obj = payload(TextClassifier("word_char_sgd").fit(texts, labels))
    change(obj)
    with pytest.raises(modelfile.ModelFileError, match=message):
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
