import hashlib
import json
import logging
import re
import zipfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from model.classifier import PIPELINES, TextClassifier
from model.errors import IntegrityError, InvalidInputError, RegistryError
from model.registry import TRUSTED_TYPES, ModelRegistry

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def tamper(registry: ModelRegistry, version: int) -> None:
    path = registry.root / f"v{version}.skops"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_our_pipelines_need_no_trusted_types(name, toy):
    texts, labels = toy
    pipeline = TextClassifier(name).fit(texts, labels).pipeline_
    assert sio.get_untrusted_types(data=sio.dumps(pipeline)) == list(TRUSTED_TYPES) == []


def test_save_writes_model_and_metadata(registry, fitted):
    meta = registry.save(fitted, n_train=24, metrics={"macro_f1": 0.9}, now=NOW)
    assert meta.version == 1
    assert meta.status == "candidate"
    assert meta.created_at == "2026-11-24T12:00:00+00:00"
    assert meta.label_set == ["ant", "bee", "cat", "dog"]
    assert meta.n_train == 24
    assert meta.metrics == {"macro_f1": 0.9}
    data = (registry.root / "v1.skops").read_bytes()
    assert meta.sha256 == hashlib.sha256(data).hexdigest()
    on_disk = json.loads((registry.root / "v1.json").read_text())
    assert on_disk["sha256"] == meta.sha256
    assert on_disk["sklearn_version"] == meta.sklearn_version
    assert sorted(p.name for p in registry.root.iterdir()) == ["v1.json", "v1.skops"]


def test_round_trip_gives_the_same_probabilities(registry, fitted, toy):
    texts, _ = toy
    registry.save(fitted, n_train=24)
    loaded = registry.load(1)
    assert loaded.classes == fitted.classes
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted.predict_proba(texts))


def test_versions_are_consecutive_integers(registry, fitted):
    assert [registry.save(fitted, n_train=1).version for _ in range(3)] == [1, 2, 3]
    assert [v.version for v in registry.versions()] == [1, 2, 3]


def test_a_model_file_left_without_metadata_is_not_a_version_and_not_reused(registry, fitted):
    registry.save(fitted, n_train=1)
    (registry.root / "v2.skops").write_bytes(b"half written")
    assert [v.version for v in registry.versions()] == [1]
    assert registry.save(fitted, n_train=1).version == 3


def test_unfitted_classifier_cannot_be_saved(registry):
    with pytest.raises(InvalidInputError, match="not been fitted"):
        registry.save(TextClassifier(), n_train=0)


def test_promote_keeps_at_most_one_champion(registry, fitted):
    for _ in range(3):
        registry.save(fitted, n_train=1)
    registry.promote(1)
    registry.promote(3, "better")
    statuses = {v.version: v.status for v in registry.versions()}
    assert statuses == {1: "retired", 2: "candidate", 3: "champion"}
    assert registry.champion().version == 3
    assert registry.champion().reason == "better"


def test_reject_records_the_reason(registry, fitted):
    registry.save(fitted, n_train=1)
    meta = registry.reject(1, "macro-F1 fell")
    assert (meta.status, meta.reason) == ("rejected", "macro-F1 fell")
    assert registry.get(1).status == "rejected"


def test_the_champion_cannot_be_rejected(registry, fitted):
    registry.save(fitted, n_train=1)
    registry.promote(1)
    with pytest.raises(RegistryError, match="is the champion; roll back instead"):
        registry.reject(1, "no")


def test_tampered_file_is_refused(registry, fitted):
    registry.save(fitted, n_train=1)
    tamper(registry, 1)
    with pytest.raises(IntegrityError, match="model v1 file v1.skops has sha256 "):
        registry.load(1)


def test_tampered_champion_falls_back_to_the_previous_good_version(registry, fitted, caplog):
    registry.save(fitted, n_train=1)
    registry.save(fitted, n_train=2)
    registry.promote(1)
    registry.promote(2)
    tamper(registry, 2)
    with caplog.at_level(logging.WARNING, logger="model.registry"):
        loaded = registry.load_champion()
    assert loaded.meta.version == 1
    assert [v for v, _ in loaded.refused] == [2]
    assert "the file was changed or damaged" in loaded.refused[0][1]
    assert "model v2 refused: model v2 file v2.skops has sha256" in caplog.text
    assert "using model v1 instead of champion v2" in caplog.text
    assert registry.champion().version == 2  # on disk nothing changed


def test_damaged_champion_metadata_falls_back_to_the_newest_earlier_version(
    registry, fitted, caplog
):
    for n in (1, 2, 3):
        registry.save(fitted, n_train=n)
        registry.promote(n)
    (registry.root / "v3.json").write_text('{"broken')
    with caplog.at_level(logging.WARNING, logger="model.registry"):
        loaded = registry.load_champion()
        registry.versions()  # already said: not warned again
    assert loaded is not None and loaded.meta.version == 2
    assert [v for v, _ in loaded.refused] == [3]
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("no champion: model v3 metadata is unreadable: ")
    assert warning.endswith(
        "; using v2, the newest earlier version. Restore v3.json from a backup, or make v2 "
        "the champion (`hitl rollback 2`)"
    )
    assert registry.scan()[1].keys() == {3}
    (registry.root / "v1.json").write_text("{broken")  # only a champion's damage falls back
    registry.promote(2)
    assert registry.load_champion().meta.version == 2


def test_the_serving_order_is_what_load_champion_tries_read_from_metadata_alone(registry, fitted):
    for n in (1, 2, 3):
        registry.save(fitted, n_train=n)
        registry.promote(n)
    order, unreadable = registry.serving_order()
    assert [(v.version, v.status) for v in order] == [
        (3, "champion"),
        (2, "retired"),
        (1, "retired"),
    ]
    assert unreadable == {}
    (registry.root / "v3.json").write_text('{"broken')
    (registry.root / "v2.skops").unlink()  # the order reads no model file
    order, unreadable = registry.serving_order()
    assert [v.version for v in order] == [2, 1]  # the retired versions older than the damage
    assert unreadable.keys() == {3}


def test_the_damaged_metadata_of_the_only_version_leaves_no_champion(registry, fitted):
    registry.save(fitted, n_train=1)
    registry.promote(1)
    (registry.root / "v1.json").write_text("{broken")
    assert registry.load_champion() is None
    assert registry.scan() == ([], {1: registry.scan()[1][1]})


def test_a_new_version_is_numbered_at_least_as_the_caller_asks(registry, fitted):
    assert registry.save(fitted, n_train=1, at_least=5).version == 5  # v1..v4 known elsewhere
    assert registry.save(fitted, n_train=1, at_least=2).version == 6  # never below the files


def test_file_that_matches_its_hash_but_does_not_load_is_refused(registry, fitted):
    registry.save(fitted, n_train=1)
    junk = b"not a skops file"
    (registry.root / "v1.skops").write_bytes(junk)
    meta = json.loads((registry.root / "v1.json").read_text())
    meta["sha256"] = hashlib.sha256(junk).hexdigest()
    (registry.root / "v1.json").write_text(json.dumps(meta))
    with pytest.raises(RegistryError, match="model v1 could not be loaded safely: "):
        registry.load(1)


def test_untrusted_types_are_refused(registry, fitted):
    registry.save(fitted, n_train=1)
    sneaky = Pipeline([("f", FunctionTransformer(np.sum)), ("clf", fitted.pipeline_[-1])])
    data = sio.dumps(sneaky)
    assert sio.get_untrusted_types(data=data)  # numpy.sum is not trusted by default
    (registry.root / "v1.skops").write_bytes(data)
    meta = json.loads((registry.root / "v1.json").read_text())
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    (registry.root / "v1.json").write_text(json.dumps(meta))
    with pytest.raises(RegistryError, match="UntrustedTypesFoundException"):
        registry.load(1)


def test_promoting_a_tampered_version_is_refused_and_changes_nothing(registry, fitted):
    registry.save(fitted, n_train=1)
    registry.save(fitted, n_train=1)
    registry.promote(1)
    tamper(registry, 2)
    with pytest.raises(IntegrityError):
        registry.promote(2)
    assert registry.champion().version == 1
    assert registry.get(2).status == "candidate"


def test_no_champion_loads_nothing(registry, fitted):
    registry.save(fitted, n_train=1)
    assert registry.load_champion() is None


def test_every_version_broken_loads_nothing(registry, fitted):
    registry.save(fitted, n_train=1)
    registry.promote(1)
    tamper(registry, 1)
    assert registry.load_champion() is None


def test_rollback_defaults_to_the_newest_retired_version(registry, fitted):
    for _ in range(3):
        registry.save(fitted, n_train=1)
    for v in (1, 2, 3):
        registry.promote(v)
    meta = registry.rollback()
    assert (meta.version, meta.status, meta.reason) == (2, "champion", "rolled back to v2")
    assert registry.get(3).status == "retired"


def test_rollback_to_a_named_version(registry, fitted):
    registry.save(fitted, n_train=1)
    registry.save(fitted, n_train=1)
    registry.save(fitted, n_train=1)  # a candidate: its retrain stopped before the decision
    registry.promote(1)
    registry.promote(2)
    assert registry.rollback(1).status == "champion"
    assert [v.status for v in registry.versions()] == ["champion", "retired", "candidate"]
    with pytest.raises(RegistryError, match="v3 was never promoted .* add --force"):
        registry.rollback(3)
    assert registry.rollback(3, force=True).reason == (
        "rolled back to v3, forced although candidate (no scores recorded)"
    )


def test_a_version_the_database_records_whose_files_are_gone_is_not_said_not_to_exist(
    registry, fitted
):
    """`hitl models` lists a recorded version whose files are gone as "files missing"; a
    rollback to it said it "does not exist (see `hitl models`)", sending the user to a list that
    contradicts it. A version never recorded still does not exist."""
    registry.save(fitted, n_train=1)
    registry.promote(1)
    registry.save(fitted, n_train=1)
    registry.promote(2)
    for path in registry.root.glob("v1.*"):
        path.unlink()
    with pytest.raises(RegistryError) as lost:
        registry.check_rollback(1, recorded={1, 2})
    assert str(lost.value) == (
        "the database records model v1, but its files (v1.json, v1.skops) are missing from the"
        f" models folder {registry.root.name}: restore them from a backup of that folder, or"
        " roll back to a version that has its files"
    )
    assert str(registry.root.parent) not in str(lost.value)
    with pytest.raises(RegistryError, match=r"^model v7 does not exist \(see `hitl models`\)$"):
        registry.check_rollback(7, recorded={1, 2})


def test_rollback_errors_say_what_is_wrong(registry, fitted):
    with pytest.raises(RegistryError, match="no earlier model to roll back to"):
        registry.rollback()
    with pytest.raises(RegistryError, match=r"^model v7 does not exist \(see `hitl models`\)$"):
        registry.rollback(7)
    registry.save(fitted, n_train=1)
    registry.promote(1)
    with pytest.raises(RegistryError, match="model v1 is already the champion"):
        registry.rollback(1)


def test_unreadable_metadata_is_skipped_when_listing(registry, fitted, caplog):
    registry.save(fitted, n_train=1)
    (registry.root / "v2.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="model.registry"):
        assert [v.version for v in registry.versions()] == [1]
    assert "skipping model metadata v2.json" in caplog.text


def test_unreadable_metadata_a_caller_tells_is_not_logged_again(registry, fitted, caplog):
    registry.save(fitted, n_train=1)
    (registry.root / "v2.json").write_text("{not json")
    assert list(registry.scan()[1]) == [2]  # nothing logged, and the caller may not say it
    with caplog.at_level(logging.WARNING, logger="model.registry"):
        told = type(registry)(registry.root)
        assert list(told.scan(told=True)[1]) == [2]
        assert [v.version for v in told.versions()] == [1]
        assert caplog.text == ""
        registry.versions()
    assert "skipping model metadata v2.json" in caplog.text


def test_a_saved_model_is_a_few_files_not_one_per_ngram(registry, fitted, toy):
    """skops writes each numpy scalar as a file of its own (and lists the archive before each
    one): a vocabulary of numpy ints made saving a 5,000-label model take 145 s."""
    char = dict(fitted.pipeline_.named_steps["features"].transformer_list)["char"]
    assert len(char.vocabulary_) > 100  # enough n-grams for one file each to show
    assert all(type(j) is int for j in char.vocabulary_.values())
    assert not hasattr(char, "stop_words_")  # only for introspection; it grows with the data
    meta = registry.save(fitted, n_train=len(toy[0]), now=NOW)
    with zipfile.ZipFile(registry.root / meta.model_file) as archive:
        assert len(archive.namelist()) < 50
    loaded = registry.load(meta.version)
    assert loaded.predict(toy[0]) == fitted.predict(toy[0])


def test_prune_keeps_the_champion_the_newest_and_earlier_champions_and_all_the_history(
    registry, fitted
):
    for _ in range(5):
        registry.save(fitted, n_train=8, now=NOW)
    registry.promote(2)
    registry.promote(3)  # v2 retired
    registry.reject(4, "worse")
    # kept: the champion v3, the newest v5, and v2 (a champion before: rollback's target)
    # before the rejected v4
    assert registry.prune(keep=2, now=NOW) == [4, 1]
    assert sorted(p.name for p in registry.root.glob("*.skops")) == [
        "v2.skops", "v3.skops", "v5.skops"]  # fmt: skip
    assert [v.version for v in registry.versions()] == [1, 2, 3, 4, 5]
    assert registry.get(4).pruned_at == NOW.isoformat(timespec="seconds")
    with pytest.raises(RegistryError, match="v4's file was deleted on 2026-11-24"):
        registry.load(4)
    assert registry.rollback().version == 2
    assert registry.prune(keep=2) == []  # nothing more to do
    with pytest.raises(InvalidInputError):
        registry.prune(keep=-1)


def test_a_week_of_rejected_retrains_leaves_the_earlier_champions_to_roll_back_to(registry, fitted):
    """A month's test: after a bad week of labels every retrain was rejected, pruning kept
    the newest files, all rejected ones, and deleted the earlier champions: nothing was left
    to roll back to without --force."""
    for version in range(1, 4):  # three good retrains
        registry.save(fitted, n_train=8, now=NOW)
        registry.promote(version)
    for version in range(4, 7):  # three rejected ones
        registry.save(fitted, n_train=8, now=NOW)
        registry.reject(version, "worse")
        registry.prune(keep=2, now=NOW)
    kept = sorted(int(p.stem[1:]) for p in registry.root.glob("*.skops"))
    assert kept == [2, 3, 6]  # the champion, the newest (rejected) and the last champion
    assert registry.rollback().version == 2


def test_prune_removes_a_file_a_crash_left_behind(registry, fitted):
    for _ in range(2):
        registry.save(fitted, n_train=8, now=NOW)
    registry.promote(2)
    meta = registry.get(1)
    registry._write_meta(replace(meta, pruned_at="2026-11-24T12:00:00+00:00"))  # then a crash
    assert (registry.root / "v1.skops").exists()
    assert registry.prune(keep=5) == []
    assert not (registry.root / "v1.skops").exists()


def test_a_deleted_file_is_said_to_be_deleted_for_its_own_reason(registry, fitted):
    """A file deleted because its model was trained on text deleted as it trained (a
    retrain's ``discard``), or to free a full disk (``drop_file``), was said to be deleted "to
    save space", and a rollback to it told the admin so."""
    for _ in range(4):
        registry.save(fitted, n_train=8, now=NOW)
    registry.promote(4)
    registry.discard(1, "T-1 was deleted as it trained, so its model v1 is not kept")
    registry.drop_file(2)
    registry.prune(keep=0, now=NOW)  # v3's goes to save space
    said = {}
    for version in (1, 2, 3):
        with pytest.raises(RegistryError) as refused:
            registry.check_rollback(version, force=True)
        said[version] = str(refused.value).split(" on ", 1)[1][11:]  # after the date
        with pytest.raises(RegistryError, match=re.escape(said[version])):
            registry.load(version)
    assert said == {
        1: "because it was trained on text deleted while it trained (hitl delete)",
        2: "to free room on a full disk, as its retrain failed",
        3: "to save space (only the champion and the newest versions keep theirs)",
    }
    assert [registry.file_problem(v) for v in (1, 2, 3)] == [
        "deleted: trained on text deleted as it trained",
        "deleted to free room on a full disk",
        "deleted to save space",
    ]


def test_a_tampered_champion_falls_back_past_versions_without_files(registry, fitted, caplog):
    for _ in range(3):
        registry.save(fitted, n_train=8, now=NOW)
    for version in (1, 2, 3):
        registry.promote(version)  # v1, v2 retired
    registry.prune(keep=1, now=NOW)  # v1's file goes
    tamper(registry, 3)
    loaded = registry.load_champion()
    assert loaded is not None and loaded.meta.version == 2
    assert [v for v, _ in loaded.refused] == [3]  # v1 was not even tried


# -- confinement, errors without paths, rollback to a rejected version ------------------------


@pytest.mark.parametrize("named", ["../victim.skops", "{victim}", "sub/v1.skops", "v3.skops"])
def test_metadata_naming_another_file_is_refused_and_prune_never_deletes_it(
    registry, fitted, tmp_path, named
):
    """A crafted vN.json may name a file outside `<db>.models/` (or another version's file):
    load refuses it and prune deletes nothing but vN.skops itself."""
    victim = tmp_path / "victim.skops"
    victim.write_bytes((registry.root / registry.save(fitted, n_train=1).model_file).read_bytes())
    for _ in range(2):
        registry.save(fitted, n_train=1)
    registry.promote(3)
    crafted = json.loads((registry.root / "v1.json").read_text())
    crafted["model_file"] = named.format(victim=victim)
    crafted["sha256"] = hashlib.sha256(victim.read_bytes()).hexdigest()
    (registry.root / "v1.json").write_text(json.dumps(crafted))

    with pytest.raises(RegistryError, match="refused") as refused:
        registry.load(1)
    assert str(tmp_path) not in str(refused.value)
    registry.prune(keep=0)
    assert victim.exists()
    assert (registry.root / "v3.skops").exists()  # the champion's file
    assert registry.load(3).predict(["ant"]) == fitted.predict(["ant"])


def test_rollback_errors_name_no_filesystem_path(registry, fitted):
    registry.save(fitted, n_train=1)
    registry.save(fitted, n_train=1)
    registry.promote(1)
    registry.promote(2)
    with pytest.raises(RegistryError) as missing:
        registry.rollback(7)
    (registry.root / "v1.skops").unlink()
    with pytest.raises(RegistryError) as unreadable:
        registry.rollback(1)
    for exc in (missing.value, unreadable.value):
        assert str(registry.root) not in str(exc) and "/" not in str(exc), str(exc)
        assert "\n" not in str(exc)
    assert str(missing.value) == "model v7 does not exist (see `hitl models`)"
    assert str(unreadable.value) == "model v1's file is missing or unreadable"
    assert registry.champion().version == 2


def test_a_rejected_version_needs_force_and_its_history_keeps_every_reason(registry, fitted):
    scores = {"accuracy": 0.269, "macro_f1": 0.18}
    registry.save(fitted, n_train=8, metrics={"accuracy": 0.9, "macro_f1": 0.88})
    registry.save(fitted, n_train=9, metrics=scores)
    registry.promote(1, "promoted: first model")
    registry.reject(2, "rejected: worse than the champion")
    with pytest.raises(RegistryError) as refused:
        registry.rollback(2)
    assert str(refused.value) == (
        "model v2 was rejected (accuracy 26.9%, macro-F1 0.180: rejected: worse than the "
        "champion); add --force to make it the champion anyway"
    )
    assert registry.champion().version == 1

    meta = registry.rollback(2, force=True, by="cli")
    assert (meta.version, meta.status) == (2, "champion")
    assert meta.reasons() == [
        "rejected: worse than the champion",
        "rolled back to v2 by cli, forced although rejected (accuracy 26.9%, macro-F1 0.180)",
    ]
    assert registry.get(2).reasons() == meta.reasons()  # on disk
    registry.rollback(1)
    assert registry.get(1).reasons() == ["promoted: first model", "rolled back to v1"]


def write_format_1(registry: ModelRegistry, clf: TextClassifier) -> None:
    """A version as the registry wrote it before model files had a format of their own: the
    bare fitted pipeline, ``sio.dumps(classifier.pipeline_)``, and its metadata."""
    data = sio.dumps(clf.pipeline_)
    meta = registry.save(clf, n_train=8, now=NOW)
    (registry.root / meta.model_file).write_bytes(data)
    on_disk = json.loads((registry.root / "v1.json").read_text())
    on_disk["sha256"] = hashlib.sha256(data).hexdigest()
    (registry.root / "v1.json").write_text(json.dumps(on_disk))


@pytest.mark.parametrize("name", ["word_char_sgd", "word_char_lr_balanced"])
def test_a_model_file_in_the_earlier_format_loads_with_the_same_probabilities(registry, toy, name):
    texts, labels = toy
    clf = TextClassifier(name).fit(texts, labels, label_set=["ant", "bee", "cat", "dog"])
    write_format_1(registry, clf)
    loaded = registry.load(1)
    assert loaded.classes == clf.classes
    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))
    assert loaded.pipeline_[-1].coef_.flags.f_contiguous
    tamper(registry, 1)
    with pytest.raises(IntegrityError):
        registry.load(1)


@pytest.mark.parametrize("name", ["word_char_sgd", "word_char_lr_balanced"])
def test_a_loaded_model_scores_one_text_without_copying_its_coefficients(registry, toy, name):
    texts, labels = toy
    clf = TextClassifier(name).fit(texts, labels)
    registry.save(clf, n_train=len(texts))
    loaded = registry.load(1)
    assert loaded.pipeline_[-1].coef_.flags.f_contiguous
    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))


def test_the_package_gives_every_name_it_lists_and_only_those():
    """`model`'s names are imported on first use (model/__init__.py): each one it lists comes
    from the module it names, and a name it does not list is an AttributeError."""
    import importlib

    import model

    assert sorted(model.__all__) == sorted(model._WHERE)
    for name in model.__all__:
        assert getattr(model, name) is getattr(importlib.import_module(model._WHERE[name]), name)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        model.nothing_here  # noqa: B018


def test_a_model_saved_with_another_scikit_learn_is_said_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """After `pip install --upgrade scikit-learn`, loading the champion printed scikit-learn's
    own InconsistentVersionWarning for every estimator (15 lines for one model, "might lead to
    invalid results"), beside the registry's one line, and under PYTHONWARNINGS=error the
    model was refused (outside install test). One line now, with what to do."""
    import warnings

    import sklearn

    registry = ModelRegistry(tmp_path / "models")
    meta = registry.save(
        TextClassifier().fit(["a b", "c d", "a x", "c y"], ["p", "q", "p", "q"]), n_train=4
    )
    path = tmp_path / "models" / meta.model_file
    with zipfile.ZipFile(path) as old:  # the archive as an older scikit-learn wrote it
        members = {name: old.read(name) for name in old.namelist()}
    schema = members["schema.json"].decode()
    written = json.dumps(json.dumps(sklearn.__version__))[1:-1]  # a JSON string in a JSON one
    assert schema.count(written) >= 3  # each estimator records the version it was saved with
    members["schema.json"] = schema.replace(written, written.replace(sklearn.__version__, "1.0.0"))
    with zipfile.ZipFile(path, "w") as new:
        for name, data in members.items():
            new.writestr(name, data)
    record = tmp_path / "models" / f"v{meta.version}.json"
    stored = json.loads(record.read_text())
    stored.update(sklearn_version="1.0.0", sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    record.write_text(json.dumps(stored))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as PYTHONWARNINGS=error: any warning would refuse it
        with caplog.at_level(logging.WARNING, logger="model"):
            loaded = ModelRegistry(tmp_path / "models").load(meta.version)
    assert loaded.predict(["a b"]) == ["p"]
    said = [r.getMessage() for r in caplog.records if "scikit-learn" in r.getMessage()]
    assert said == [
        f"model v1 was saved with scikit-learn 1.0.0, running {sklearn.__version__}; the next"
        " retrain (`hitl retrain --force` now) saves one with this version"
    ]
