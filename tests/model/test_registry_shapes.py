"""A ``vN.json`` that is valid JSON but not a version's metadata (a list, null, a number, a
string, or fields of the wrong type: edited by hand, rewritten by a tool) is refused as
invalid JSON is: the previous good version is used, with one warning (README "hitl retrain").
It crashed every reader: ``data.items()`` on a list, ``None.get`` on null metrics."""

from __future__ import annotations

import json
import logging

import pytest

from model.registry import ModelRegistry, ModelVersion

SHAPES = {
    "a list": ([1, 2, 3], "it holds a list, not an object of fields"),
    "null": (None, "it holds null, not an object of fields"),
    "a number": (42, "it holds a number (42), not an object of fields"),
    "a string": ("v2", "it holds a string ('v2'), not an object of fields"),
    "metrics null": ({"metrics": None}, 'its "metrics" is null, not an object of scores'),
    "sha256 null": ({"sha256": None}, 'its "sha256" is null, not a string'),
    "n_train null": ({"n_train": None}, 'its "n_train" is null, not a count'),
    "created_at a number": (
        {"created_at": 5},
        'its "created_at" is a number (5), not a time (ISO 8601)',
    ),
    "label_set null": ({"label_set": None}, 'its "label_set" is null, not a list of labels'),
    "history null": ({"history": None}, 'its "history" is null, not a list of objects'),
    "status unknown": ({"status": "weird"}, "its \"status\" is a string ('weird'), not a status"),
    "per_class entry null": (
        {"metrics": {"accuracy": 0.9, "per_class": {"ant": None}}},
        'its "metrics" is an object, not an object of scores',
    ),
}


def two_versions(registry: ModelRegistry, fitted) -> None:
    for n in (1, 2):
        registry.save(fitted, n_train=10 * n, metrics={"accuracy": 0.9, "macro_f1": 0.8})
        registry.promote(n)


@pytest.mark.parametrize(("shape", "why"), SHAPES.values(), ids=SHAPES.keys())
def test_a_champions_metadata_of_the_wrong_shape_falls_back_to_the_previous_version(
    registry: ModelRegistry, fitted, caplog: pytest.LogCaptureFixture, shape: object, why: str
):
    two_versions(registry, fitted)
    path = registry.root / "v2.json"
    if isinstance(shape, dict):
        shape = {**json.loads(path.read_text()), **shape}
    path.write_text(json.dumps(shape))
    with caplog.at_level(logging.WARNING, logger="model.registry"):
        loaded = registry.load_champion()
        registry.versions()  # already said: not again
    assert loaded is not None and loaded.meta.version == 1
    assert [v for v, _ in loaded.refused] == [2]
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"no champion: model v2 metadata is unreadable: {why}"), warning
    versions, unreadable = registry.scan()
    assert [v.version for v in versions] == [1] and unreadable.keys() == {2}


def test_metadata_nested_past_pythons_limit_is_refused_too(registry: ModelRegistry, fitted):
    two_versions(registry, fitted)
    (registry.root / "v2.json").write_text("[" * 100_000 + "]" * 100_000)
    assert registry.load_champion().meta.version == 1
    assert registry.scan()[1] == {2: "model v2 metadata is unreadable: it is nested too deep"}


def test_metadata_as_the_registry_writes_it_and_as_it_wrote_it_before_is_read(
    registry: ModelRegistry, fitted
):
    two_versions(registry, fitted)
    data = json.loads((registry.root / "v2.json").read_text())
    assert ModelVersion.from_dict(data) == registry.get(2)
    older = {k: v for k, v in data.items() if k not in ("history", "champion_since", "promotion")}
    older["metrics"] = {"accuracy": 0.9, "macro_f1": None, "per_class": {"dog": {"support": 0}}}
    assert ModelVersion.from_dict(older).promotion == 0  # a class never held out: no F1
    assert ModelVersion.from_dict({**data, "promotion": "two"}).promotion == "two"  # read as 0
