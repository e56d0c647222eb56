"""refresh.py: the --quick run, and its rows appended to an earlier file."""

from __future__ import annotations

import argparse
import csv
import functools
import re
import runpy
import sys
from pathlib import Path

import pytest

from tests.benchmarks.runner import ROOT, benchmark_main, run_quick_here
from tests.standin_data import STANDIN

EARLIER = "dataset,arm,refresh_every,seed,labels,answers,seconds,model,refreshes,accuracy"


def test_refresh_benchmark_compares_nightly_the_product_and_the_fast_loop(
    standin: Path, tmp_path: Path
):
    out_file = tmp_path / "rows.csv"  # written before rows said their commit and fits
    out_file.write_text(f"{EARLIER}\ntrec,nightly,0,0,25,25,3.1,,0,\n", encoding="utf-8")
    out = run_quick_here("refresh.py", standin, "--out", str(out_file))
    for arm, refreshes in (("nightly", "0 refreshes"), ("product", ""), ("every5", "")):
        [line] = [ln for ln in out.splitlines() if ln.startswith(f"{STANDIN} {arm}: ")]
        assert "20 labels in" in line and refreshes in line
    product = re.search(r"product: .*, (\d+) refreshes", out)
    fast = re.search(r"every5: .*, (\d+) refreshes", out)
    assert product and fast and 0 < int(product[1]) < int(fast[1])
    assert f"rows: 6 rows appended to {out_file} (columns commit and fits added, empty on" in out
    with out_file.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    values = "trec,nightly,0,0,25,25,3.1,,0,".split(",")
    assert rows[0] == dict(zip(EARLIER.split(","), values, strict=True)) | {
        "commit": "",
        "fits": "",
    }
    assert [(r["arm"], r["labels"]) for r in rows[1:]] == [
        (arm, str(n)) for arm in ("nightly", "product", "every5") for n in (10, 20)
    ]
    assert {r["fits"] for r in rows[1:]} == {"thread"}
    assert all(re.fullmatch(r"[0-9a-f]{7,}(\+dirty)?", r["commit"]) for r in rows[1:])


def test_rows_file_with_another_header_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out_file = tmp_path / "other.csv"
    out_file.write_text("dataset,arm,accuracy\n", encoding="utf-8")
    main = benchmark_main("refresh.py")
    with pytest.raises(SystemExit) as stopped:
        main(["--datasets", "nowhere", "--out", str(out_file)])
    assert stopped.value.code == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(
            f": error: {out_file} line 1: the header (dataset, arm, accuracy) is not"
            " refresh.py's (dataset, arm, refresh_every, seed, labels, answers, seconds, model,"
            " refreshes, accuracy, commit, fits); pass another --out"
        )
    )
    assert out_file.read_text(encoding="utf-8") == "dataset,arm,accuracy\n"


def test_rows_are_appended_to_a_file_with_the_same_header(tmp_path: Path):
    refresh = load_refresh()
    out_file = tmp_path / "rows.csv"
    first = dict.fromkeys(refresh["FIELDS"], "1")
    second = dict.fromkeys(refresh["FIELDS"], "2")
    assert refresh["write_rows"](out_file, [first]) == f"1 rows written to {out_file}"
    assert refresh["write_rows"](out_file, [second]) == f"1 rows appended to {out_file}"
    with out_file.open(newline="", encoding="utf-8") as handle:
        assert list(csv.DictReader(handle)) == [first, second]


def test_every_row_names_the_commit_read_at_the_start_of_the_run(standin: Path, tmp_path: Path):
    """A commit or rebase in the worktree while the arms run does not relabel the later arms:
    the commit is read once, before the first arm (here HEAD "moves" at every read). The
    arms are the quick run's, each only 10 answers long: one row each is enough here."""
    main = benchmark_main("refresh.py")
    heads = iter(["aaaaaaa", "bbbbbbb", "ccccccc", "ddddddd"])
    main.__globals__["commit"] = lambda: next(heads)  # stands in for `git rev-parse`
    out_file = tmp_path / "rows.csv"
    main([
        "--data", str(standin), "--datasets", STANDIN, "--out", str(out_file),
        "--answers", "10", "--every", "10", "--night", "20", "--product", "10", "--fast", "5",
        "--compare", "--pool", "150", "--test", "100", "--pipeline", "word_lr", "--in-thread",
    ])  # fmt: skip
    with out_file.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["arm"] for r in rows] == ["nightly", "product", "every5"]
    assert {r["commit"] for r in rows} == {"aaaaaaa"}


@functools.cache
def load_refresh() -> dict:
    """refresh.py's globals, loaded once per worker (it imports the bot and the demo)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return runpy.run_path(str(ROOT / "benchmarks" / "refresh.py"), run_name="benchmark")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_a_step_is_run_once_and_a_product_with_the_loops_step_is_read_as_the_loop():
    refresh = load_refresh()
    args = argparse.Namespace(product=25, fast=25, compare=[50, 25])
    assert refresh["arms"](args) == [("nightly", 0), ("product", 25), ("every50", 50)]
    other = argparse.Namespace(product=50, fast=25, compare=[50])
    assert refresh["arms"](other) == [("nightly", 0), ("product", 50), ("every25", 25)]

    def rows(*accuracies: float) -> list[dict]:
        return [{"labels": n, "accuracy": a, "seconds": 1.0, "refreshes": 0}
                for n, a in zip((275, 1025), accuracies, strict=True)]  # fmt: skip

    by_arm = {
        "nightly": rows(0.60, 0.845),
        "product": rows(0.70, 0.85),
        "every50": rows(0.68, 0.86),
    }
    lines = refresh["report"]("trec", by_arm, args)
    assert (
        "trec: the product refreshes every 25 labels, as the loop does (one run, named product)"
        in lines
    )
    assert (
        "trec at 275 labels: every50 68.0% vs every25 70.0%"
        " (2.0 points behind: MORE THAN 1 POINT behind)" in lines
    )
    assert (
        "trec at 1025 labels: nightly 84.5% vs every25 85.0% (0.5 points behind: within 1 point)"
        in lines
    )
    # an arm ahead of the loop is said to be ahead, not "-1.0 points behind"
    assert "trec at 1025 labels: every50 86.0% vs every25 85.0% (1.0 points ahead)" in lines
    assert not [line for line in lines if line.startswith("trec at") and ": product " in line]


def test_a_typical_until_run_names_it_in_every_arm_and_refuses_a_value_the_setting_would(
    standin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """--typical-until 0: every arm asks as HITL_TYPICAL_UNTIL=0 does (margin from the first
    model, where the default, auto, asks TypiClust's picks of the stand-in's young models), its
    rows named so; a value HITL_TYPICAL_UNTIL refuses is refused before anything runs."""
    main = benchmark_main("refresh.py")
    out_file = tmp_path / "rows.csv"
    main([
        "--data", str(standin), "--datasets", STANDIN, "--out", str(out_file),
        "--answers", "10", "--every", "10", "--night", "20", "--product", "10", "--fast", "5",
        "--compare", "--pool", "150", "--test", "100", "--pipeline", "word_lr", "--in-thread",
        "--typical-until", "0",
    ])  # fmt: skip
    with out_file.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["arm"] for r in rows] == [
        "nightly-typical=0", "product-typical=0", "every5-typical=0",
    ]  # fmt: skip
    assert all(r["accuracy"] for r in rows[1:])  # the nightly arm has no model by 10 labels
    with pytest.raises(SystemExit) as stopped:
        main(["--datasets", STANDIN, "--typical-until", "sometimes"])
    assert stopped.value.code == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(
            "argument --typical-until: 'sometimes' is not a whole number; use one from 0 to 1000,"
            " or auto"
        )
    )
