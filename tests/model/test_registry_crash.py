"""The registry after a process is killed mid-write: a promotion cut between its two metadata
writes, and the temporary files a killed write leaves. The crash point is an ``OSError`` from
``os.replace`` (a full disk, say) on the write that would come next: the files on disk are
then what a kill at that moment leaves."""

import errno
import json
import os
from pathlib import Path

import pytest

from model.registry import STALE_TEMP_SECONDS, ModelRegistry


@pytest.fixture
def cut_after_one_metadata_write(monkeypatch: pytest.MonkeyPatch):
    """Call it to make the second ``vN.json`` put in place from then on fail, as on a full
    disk: the files are then what a kill between the two writes leaves."""

    def arm() -> None:
        real, written = os.replace, []

        def replace(src, dst) -> None:
            if Path(dst).name.endswith(".json"):
                written.append(Path(dst).name)
                if len(written) == 2:
                    raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            real(src, dst)

        monkeypatch.setattr(os, "replace", replace)

    yield arm
    monkeypatch.undo()


def statuses(registry: ModelRegistry) -> dict[int, str]:
    return {v.version: v.status for v in registry.versions()}


def test_a_promotion_cut_between_its_writes_leaves_a_champion(
    registry, fitted, cut_after_one_metadata_write
):
    """It retired the old champion first: killed then, the folder had no champion at all, and
    `hitl serve` ran with no model, saying nothing."""
    registry.promote(registry.save(fitted, n_train=24).version)
    registry.save(fitted, n_train=30)
    cut_after_one_metadata_write()
    with pytest.raises(OSError, match="No space left"):
        registry.promote(2, "promoted: better")
    assert registry.champion() is not None, statuses(registry)
    assert registry.champion().version == 2  # the new one: it was written first
    assert registry.load_champion().meta.version == 2
    assert [v.version for v in registry.serving_order()[0]] == [2, 1]  # v1 stands in
    assert statuses(registry) == {1: "retired", 2: "champion"}  # as read, and as listed
    assert json.loads((registry.root / "v1.json").read_text())["status"] == "champion"
    registry.save(fitted, n_train=31)  # the next write retires the one readers ignore
    assert statuses(registry) == {1: "retired", 2: "champion", 3: "candidate"}


def cut_rollback(registry: ModelRegistry, fitted, cut) -> None:  # noqa: ANN001
    """v1 then v2 promoted, then a rollback to v1 cut between its two metadata writes."""
    for _ in (1, 2):
        registry.promote(registry.save(fitted, n_train=24).version)
    cut()
    with pytest.raises(OSError, match="No space left"):
        registry.rollback(1)


def test_a_rollback_cut_between_its_writes_leaves_the_version_rolled_back_to(
    registry, fitted, cut_after_one_metadata_write
):
    cut_rollback(registry, fitted, cut_after_one_metadata_write)
    # the newer number, v2, was champion before: readers take the one made champion last
    assert registry.champion().version == 1
    assert registry.load_champion().meta.version == 1
    registry.save(fitted, n_train=31)
    assert statuses(registry) == {1: "champion", 2: "retired", 3: "candidate"}


def test_after_a_cut_rollback_the_champion_not_served_can_be_rolled_back_to(
    registry, fitted, cut_after_one_metadata_write
):
    # both marked champion, v1 served: "model v2 is already the champion" refused the way
    # back, hitl models listed two champions, and v2 was no fallback for a damaged v1
    cut_rollback(registry, fitted, cut_after_one_metadata_write)
    assert statuses(registry) == {1: "champion", 2: "retired"}
    assert registry.check_rollback().version == 2  # the newest version not served
    assert [v.version for v in registry.serving_order()[0]] == [1, 2]
    registry.rollback(2)
    assert registry.champion().version == 2
    assert json.loads((registry.root / "v1.json").read_text())["status"] == "retired"


def test_temporary_files_a_killed_write_left_are_deleted_by_the_next_retrains_writes(
    registry, fitted
):
    registry.promote(registry.save(fitted, n_train=24).version)
    root = registry.root
    killed = root / ".v2.skops.pyuspvxb.tmp"  # a retrain killed while it wrote v2's model
    killed.write_bytes(b"\0" * 1000)
    old_meta = root / ".v1.json.k3j9x0aa.tmp"  # killed while it retired v1, two hours ago
    old_meta.write_bytes(b"{")
    two_hours_ago = killed.stat().st_mtime - 2 * STALE_TEMP_SECONDS
    os.utime(old_meta, (two_hours_ago, two_hours_ago))
    writing = root / ".v9.skops.abcdefgh.tmp"  # another process's retrain, writing now
    writing.write_bytes(b"\0" * 10)
    rewriting = root / ".v1.json.zz99yy88.tmp"  # another process rewriting v1.json now
    rewriting.write_bytes(b"{")

    meta = registry.save(fitted, n_train=30)  # the next retrain: v2 again (v2 had no metadata)
    registry.promote(meta.version)
    registry.prune(keep=5)

    assert meta.version == 2
    names = sorted(p.name for p in root.iterdir())
    assert names == [
        ".v1.json.zz99yy88.tmp",
        ".v9.skops.abcdefgh.tmp",
        "v1.json",
        "v1.skops",
        "v2.json",
        "v2.skops",
    ]
