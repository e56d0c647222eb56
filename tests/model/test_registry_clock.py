"""Of two champions a promotion killed between its two writes left, readers take the one
promoted last by the folder's promotion counter, not by ``champion_since`` (the wall clock): a
clock that ran a day ahead when the old champion was promoted, then was set right, made the old
one win, and the next save retired the model just promoted. Metadata written before the counter
existed is ordered as it was (``champion_since``, then version number).

The clock is the registry module's ``datetime`` moved a day ahead; the kill is an ``OSError``
from ``os.replace`` on the second metadata write (as in ``test_registry_crash.py``)."""

import errno
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import model.registry
from model.registry import ModelRegistry

DAY = timedelta(days=1)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    """Call it with an offset to move the registry's wall clock (``timedelta()``: set right)."""

    def set_offset(offset: timedelta) -> None:
        class Shifted(datetime):
            @classmethod
            def now(cls, tz=None):  # noqa: ANN001, ANN206
                return datetime.now(tz) + offset

        monkeypatch.setattr(model.registry, "datetime", Shifted)

    return set_offset


@pytest.fixture
def cut_second_metadata_write(monkeypatch: pytest.MonkeyPatch):
    """Call it to make the second ``vN.json`` put in place from then on fail: the files are then
    what a kill between a promotion's two writes leaves."""

    def arm() -> None:
        real, written = os.replace, []

        def replace(src, dst) -> None:  # noqa: ANN001
            if Path(dst).name.endswith(".json"):
                written.append(Path(dst).name)
                if len(written) == 2:
                    raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            real(src, dst)

        monkeypatch.setattr(os, "replace", replace)

    return arm


def on_disk(registry: ModelRegistry) -> dict[int, dict]:
    return {
        int(p.stem[1:]): json.loads(p.read_text()) for p in sorted(registry.root.glob("v*.json"))
    }


def listed(registry: ModelRegistry) -> dict[int, str]:
    return {v.version: v.status for v in registry.versions()}


def test_a_promotion_cut_after_the_clock_was_set_back_leaves_the_new_model_champion(
    registry, fitted, clock, cut_second_metadata_write, monkeypatch
):
    """The tester's folder: v1 promoted while the clock ran a day ahead, the clock set right,
    v2 promoted and killed before it retired v1."""
    clock(DAY)
    registry.promote(registry.save(fitted, n_train=24).version, "promoted: first")
    clock(timedelta())
    registry.save(fitted, n_train=30)
    cut_second_metadata_write()
    with pytest.raises(OSError, match="No space left"):
        registry.promote(2, "promoted: better")
    monkeypatch.undo()  # the real os.replace and clock again, for what follows
    files = on_disk(registry)
    assert files[1]["status"] == files[2]["status"] == "champion"  # the state the kill left
    assert files[1]["champion_since"] > files[2]["champion_since"]  # the clock ran ahead for v1

    assert registry.champion().version == 2
    assert registry.load_champion().meta.version == 2
    assert listed(registry) == {1: "retired", 2: "champion"}
    assert [v.version for v in registry.serving_order()[0]] == [2, 1]
    assert registry.check_rollback().version == 1  # v1 is what a rollback goes back to
    registry.save(fitted, n_train=31)  # the next save retires the one readers ignore: v1
    assert {v: m["status"] for v, m in on_disk(registry).items()} == {
        1: "retired",
        2: "champion",
        3: "candidate",
    }


def test_a_rollback_cut_after_the_clock_was_set_back_leaves_the_version_rolled_back_to(
    registry, fitted, clock, cut_second_metadata_write, monkeypatch
):
    """A rollback is a promotion too: v2 promoted with the clock a day ahead, the clock set
    right, a rollback to v1 killed before it retired v2."""
    registry.promote(registry.save(fitted, n_train=24).version)
    clock(DAY)
    registry.promote(registry.save(fitted, n_train=30).version)
    clock(timedelta())
    cut_second_metadata_write()
    with pytest.raises(OSError, match="No space left"):
        registry.rollback(1)
    monkeypatch.undo()
    files = on_disk(registry)
    assert files[1]["status"] == files[2]["status"] == "champion"
    assert files[2]["champion_since"] > files[1]["champion_since"]

    assert registry.champion().version == 1
    assert listed(registry) == {1: "champion", 2: "retired"}
    registry.save(fitted, n_train=31)
    assert listed(registry) == {1: "champion", 2: "retired", 3: "candidate"}


def test_every_promotion_and_rollback_counts_one_above_any_in_the_folder(registry, fitted):
    for n in (24, 25, 26):
        registry.promote(registry.save(fitted, n_train=n).version)
    registry.rollback(1)
    registry.save(fitted, n_train=27)
    registry.reject(4, "worse")
    files = on_disk(registry)
    # a retired version keeps its count (the next promotion goes above it); v4 never had one
    assert {v: m.get("promotion") for v, m in files.items()} == {1: 4, 2: 2, 3: 3, 4: 0}
    assert registry.champion().version == 1
    assert registry.get(1).champion_since  # still written, for display


def strip_counter(registry: ModelRegistry, version: int, **fields: object) -> None:
    """Rewrite ``vN.json`` as metadata written before the counter existed (and ``fields``)."""
    path = registry.root / f"v{version}.json"
    data = {k: v for k, v in json.loads(path.read_text()).items() if k != "promotion"}
    path.write_text(json.dumps({**data, **fields}, indent=2))


@pytest.mark.parametrize(
    ("since", "served"),
    [
        ({1: "2024-05-02T00:00:00.000000+00:00", 2: "2024-05-01T00:00:00.000000+00:00"}, 1),
        ({1: "2024-05-01T00:00:00.000000+00:00", 2: "2024-05-02T00:00:00.000000+00:00"}, 2),
        ({1: "", 2: ""}, 2),  # neither says when: the higher version, as before
        ({1: "2024-05-01T00:00:00.000000+00:00", 2: ""}, 1),
    ],
)
def test_two_champions_without_the_counter_are_ordered_as_before(registry, fitted, since, served):
    """An old folder behaves exactly as it did: the later ``champion_since``, then the higher
    version number."""
    for n in (24, 30):
        registry.save(fitted, n_train=n)
    for version in (1, 2):
        strip_counter(registry, version, status="champion", champion_since=since[version])
    assert registry.champion().version == served
    assert listed(registry) == {served: "champion", 3 - served: "retired"}
    registry.save(fitted, n_train=31)
    assert {v: m["status"] for v, m in on_disk(registry).items() if v < 3} == {
        served: "champion",
        3 - served: "retired",
    }


def test_a_promotion_with_the_counter_is_newer_than_any_champion_without(
    registry, fitted, clock, cut_second_metadata_write, monkeypatch
):
    """A folder upgraded with an old champion whose clock ran ahead: the first promotion since
    (counter 1), killed before it retired the old one, still wins."""
    registry.save(fitted, n_train=24)
    later = (datetime.now(UTC) + DAY).isoformat(timespec="microseconds")
    strip_counter(registry, 1, status="champion", champion_since=later)
    registry.save(fitted, n_train=30)
    cut_second_metadata_write()
    with pytest.raises(OSError, match="No space left"):
        registry.promote(2)
    monkeypatch.undo()
    assert on_disk(registry)[1]["status"] == "champion"
    assert on_disk(registry)[2]["promotion"] == 1
    assert registry.champion().version == 2
    assert listed(registry) == {1: "retired", 2: "champion"}


def test_metadata_with_the_counter_reads_where_the_key_is_unknown(registry, fitted):
    """Readers ignore keys they do not know (a version of the bot from before the counter reads
    this folder): the counter is one more key, not a new format."""
    registry.promote(registry.save(fitted, n_train=24).version)
    data = json.loads((registry.root / "v1.json").read_text())
    assert data["promotion"] == 1
    older = {k: v for k, v in data.items() if k != "promotion"}
    assert model.registry.ModelVersion.from_dict({**data, "a_later_key": 7}) == (
        model.registry.ModelVersion.from_dict(data)
    )
    assert model.registry.ModelVersion.from_dict(older).promotion == 0
