"""label_efficiency.py --report --screens: every screened arm against random, paired by seed."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.runner import benchmark_main


def curve(arm: str, seed: int, accs: list[float]) -> list[dict]:
    return [
        {"dataset": "d", "arm": arm, "seed": seed, "n_labels": 50 + 25 * i, "accuracy": acc}
        for i, acc in enumerate(accs)
    ]


def test_screens_table_counts_rounds_below_random_and_pairs_the_auc_by_seed(tmp_path, capsys):
    rows = (
        curve("random", 0, [0.5, 0.6, 0.7])
        + curve("random", 1, [0.5, 0.6, 0.7])
        + curve("medoids", 0, [0.4, 0.7, 0.8])
        + curve("medoids", 1, [0.5, 0.6, 0.8])
    )
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = benchmark_main("label_efficiency.py")(
        ["--report", str(path), "--screens", "--max-labels", "100"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    # mean differences: −0.05 at 50, +0.05 at 75, +0.10 at 100; AUC over 50–100 per seed:
    # 0.65 − 0.60 and 0.625 − 0.60; sd over seeds: 0.0707, 0.0707, 0 against random's 0
    assert out.splitlines()[-1] == (
        "| d | medoids | 0, 1 | 1 of 3 (50; worst -5.0) | +10.0 | +0.0375 ± 0.0177 "
        "| 0.0471 / 0.0000 |"
    )


@pytest.mark.parametrize("screens", [["--screens"], []])
def test_a_bad_rows_file_is_named_in_one_line(tmp_path, capsys, screens):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"dataset": "d", "arm": "random"}\n')
    code = benchmark_main("label_efficiency.py")(["--report", str(bad), *screens])
    assert (code, capsys.readouterr().err) == (2, f"error: {bad} line 1: no field 'accuracy'\n")
    bad.write_text("not json\n")
    code = benchmark_main("label_efficiency.py")(["--report", str(bad), *screens])
    err = capsys.readouterr().err
    assert (code, err) == (2, f"error: {bad} line 1: bad JSON (Expecting value)\n")


def test_screens_pair_every_arm_with_the_base_named(tmp_path, capsys):
    rows = curve("st_breaking_ties", 0, [0.5, 0.7]) + curve("warm150", 0, [0.5, 0.6])
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = benchmark_main("label_efficiency.py")(
        ["--report", str(path), "--screens", "--base", "st_breaking_ties", "--max-labels", "75"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    # one seed: −0.10 at 75; AUC over 50–75 0.55 against 0.60
    assert out.splitlines()[-1] == (
        "| d | warm150 | 0 | 1 of 2 (75; worst -10.0) | -10.0 | -0.0500 ± 0.0000 "
        "| 0.0000 / 0.0000 |"
    )
