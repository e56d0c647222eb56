"""label_efficiency.py --paired: a changed classifier's default arm against the stored rows."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.benchmarks.runner import benchmark_main


def rows(curves: dict[int, list[float]], arm: str = "default") -> list[dict]:
    return [
        {"dataset": "d", "arm": arm, "seed": seed, "n_labels": 25 * (i + 1), "accuracy": acc}
        for seed, accs in curves.items()
        for i, acc in enumerate(accs)
    ]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = benchmark_main("label_efficiency.py")(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, data: list[dict]) -> Path:
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in data)
    return path


def test_paired_report_gives_each_seeds_auc_difference_over_the_rounds_both_reached(
    tmp_path, capsys
):
    base = write(
        tmp_path / "base.jsonl.gz",
        rows({0: [0.5, 0.6, 0.7], 1: [0.4, 0.4, 0.4], 2: [0.9, 0.9, 0.9]})
        + rows({0: [0.0, 0.0, 0.0]}, arm="random"),  # another arm: not compared
    )
    new = write(tmp_path / "new.jsonl.gz", rows({0: [0.6, 0.7, 0.8], 1: [0.4, 0.5, 0.4, 0.9]}))
    code, out, err = run(capsys, "--paired", str(new), "--baseline", str(base))
    assert code == 0, err
    # seed 0: AUC 0.6 → 0.7; seed 1: 0.4 → 0.45 (its 4th round has no baseline); seed 2 unpaired
    assert out.splitlines()[1:] == [
        "| dataset | seeds | labels (rounds) | AUC before | AUC now | now − before | per seed |",
        "|---|---:|---:|---:|---:|---:|---:|",
        "| d | 0, 1 | 25–75 (3) | 0.5000 ± 0.1414 | 0.5750 ± 0.1768 | +0.0750 ± 0.0354 "
        "| +0.1000, +0.0500 |",
    ]


def test_a_bad_rows_file_is_named_in_one_line(tmp_path, capsys):
    good = write(tmp_path / "good.jsonl.gz", rows({0: [0.5, 0.6]}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows({0: [0.5]})[0]) + "\n" + '{"dataset": "d", "arm": 1}\n')
    assert run(capsys, "--paired", str(bad), "--baseline", str(good))[::2] == (
        2,
        f"error: {bad} line 2: no field 'accuracy'\n",
    )
    code, _, err = run(capsys, "--paired", str(good), "--baseline", str(tmp_path / "no"))
    assert code == 2
    assert err.startswith(f"error: {tmp_path / 'no'}: cannot read it (")
    assert len(err.splitlines()) == 1


def test_a_bad_classifier_setting_is_named_in_one_line_and_nothing_runs(capsys):
    import model.classifier

    before = model.classifier.CHAR_MIN_DF_FROM
    code, out, err = run(capsys, "--classifier", "CHAR_MIN_DF_FROM=500", "COEF_DTYPE=float17")
    assert (code, err) == (
        2,
        "error: --classifier 'COEF_DTYPE=float17': bad value for COEF_DTYPE\n",
    )
    code, out, err = run(capsys, "--classifier", "MAX_CHARS=5")
    assert code == 2
    assert err.startswith("error: --classifier 'MAX_CHARS=5': expected NAME=VALUE, NAME one of ")
    assert len(err.splitlines()) == 1
    assert model.classifier.CHAR_MIN_DF_FROM == before


def test_paired_report_keeps_each_classifier_variant_apart(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl.gz", rows({0: [0.5, 0.6, 0.7]}))
    variant = [{**r, "classifier": {"COEF_DTYPE": "none"}} for r in rows({0: [0.5, 0.5, 0.5]})]
    new = write(tmp_path / "new.jsonl.gz", rows({0: [0.6, 0.7, 0.8]}) + variant)
    code, out, err = run(capsys, "--paired", str(new), "--baseline", str(base))
    assert code == 0, err
    assert [line.split(" | ")[0::5] for line in out.splitlines()[3:]] == [
        ["| d", "+0.1000 ± 0.0000"],
        ["| d (COEF_DTYPE=none)", "-0.1000 ± 0.0000"],
    ]


def test_paired_report_stops_at_max_labels(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl.gz", rows({0: [0.5, 0.6, 0.7]}))
    new = write(tmp_path / "new.jsonl.gz", rows({0: [0.6, 0.7, 0.0]}))
    code, out, err = run(
        capsys, "--paired", str(new), "--baseline", str(base), "--max-labels", "50"
    )
    assert code == 0, err
    assert out.splitlines()[3].split(" | ")[2::3] == ["25–50 (2)", "+0.1000 ± 0.0000"]
