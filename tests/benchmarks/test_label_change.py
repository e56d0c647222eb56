"""label_change.py: a change of the label set and the pass after it, timed."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.benchmarks.runner import run_quick_here
from tests.ramdisk import RAM_DISK, ram_disk_usable


@pytest.fixture(scope="module")
def backlogs() -> Iterator[Path]:
    """``--backlog DIR`` for both runs: the 20,000 unlabeled items scored by v1 (two thirds
    of a quick run's CPU) are built by the first, and copied by the second (its decided items
    are seeded in its own copy, as the option's documented use does). On the RAM disk, as the
    runs' own databases are (tests/benchmarks/runner.py)."""
    folder = Path(
        tempfile.mkdtemp(prefix="label-backlogs-", dir=RAM_DISK if ram_disk_usable() else None)
    )
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_label_change(backlogs: Path, *args: str) -> str:
    """The quick run in this process (its tests read its report only)."""
    return run_quick_here("label_change.py", None, "--backlog", str(backlogs), *args)


def test_label_change_benchmark_times_the_change_and_the_pass_in_bounded_steps(backlogs: Path):
    out = run_label_change(backlogs)
    rows = re.findall(
        r"^\| 20,000 \| (retire|add) \| ([\d.]+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+)"
        r" \| ([\d.]+) \| ([\d.]+) \|$",
        out,
        re.M,
    )
    assert [action for action, *_ in rows] == ["retire", "add"], out
    (_, _, steps, changed, *_), (_, _, steps_back, changed_back, *_) = rows
    assert int(steps) == int(steps_back) >= 40  # 500 items a step, the posted ones last
    assert int(changed) == int(changed_back) > 0  # the retired label's items, then back
    for _, _, _, _, total, median, p99, longest in rows:  # the change's seconds: any number
        assert 0 < float(median) <= float(p99) <= float(longest)
        # the pass's seconds are its steps' sum (printed to 0.01 s, its longest step to 0.01 ms)
        assert float(total) > 0 and 1000 * float(total) + 5 >= float(longest)


def test_label_change_benchmark_with_decided_items_counts_what_each_change_wrote(
    backlogs: Path,
):
    out = run_label_change(backlogs, "--decided", "0.3", "--callbacks", "0.5")
    seeded = re.search(
        r"^20,000 items: ([\d,]+) decided \(([\d,]+) label3, [\d,]+ label4, ([\d,]+) label5\), "
        r"([\d,]+) of them with a callback",
        out,
        re.M,
    )
    assert seeded, out
    decided, label3, label5, called = (int(g.replace(",", "")) for g in seeded.groups())
    assert 5_000 < decided < 7_000 and 0.4 * decided < called < 0.6 * decided
    rows = re.findall(
        r"^\| 20,000 \| (retire|add|merge|rename) \| ([\d.]+) \| (\d+) \| (\d+) \| (\d+) \| (\d+)"
        r" \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$",
        out,
        re.M,
    )
    assert [action for action, *_ in rows] == ["retire", "add", "merge", "rename"], out
    wrote = {action: [int(n) for n in row[:4]] for action, _, *row in rows}
    retire, add, merge, rename = (wrote[a] for a in ("retire", "add", "merge", "rename"))
    # retire: a review per decided item of label3, a taken-back delivery per one with a callback
    assert retire[:3] == [label3, 0, 0] and 0 < retire[3] < label3
    assert add == [0, label3, 0, retire[3]]  # add back: those reviews decided, the label told
    assert merge == [0, 0, label3, retire[3]]  # merge: label3's items relabeled, told
    assert rename[:3] == [0, 0, label5] and 0 < rename[3] < label5
    for _, change, _, _, _, _, steps, _, _, median, p99, longest in rows:
        assert float(change) >= 0 and int(steps) >= 20  # 14,000 unlabeled items, 500 a step
        assert 0 < float(median) <= float(p99) <= float(longest)
