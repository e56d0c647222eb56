"""Benchmarks are not timed tests, but their --quick modes run here so the scripts don't rot.

They read a small generated stand-in (tests/standin_data.py) through ``--data``, never the
public datasets, so they run the same on a fresh clone with nothing beside it.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from tests.standin_data import STANDIN, write_standin_dataset

ROOT = Path(__file__).resolve().parent.parent
DATA_SCRIPTS = (
    "annotators.py",
    "bot_load.py",
    "label_efficiency.py",
    "model_comparison.py",
    "model_footprint.py",
    "predict_growth.py",
    "refresh.py",
    "scoring_throughput.py",
    "simulated_loop.py",
    "throughput.py",
)


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_standin_dataset(tmp_path_factory.mktemp("datasets"))


def run(script: str, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
        env=env,
    )


def run_quick(script: str, data: Path | None = None) -> str:
    extra = ["--data", str(data), "--datasets", STANDIN] if data is not None else []
    result = run(script, "--quick", *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def benchmark_main(script: str):
    """The ``main`` of a benchmark script, loaded as ``python benchmarks/<script>`` loads it."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return runpy.run_path(str(ROOT / "benchmarks" / script), run_name="benchmark")["main"]
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.mark.parametrize("script", DATA_SCRIPTS)
def test_a_missing_datasets_folder_is_one_line_naming_the_three_ways_to_give_it(
    script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    main = benchmark_main(script)
    monkeypatch.setenv("HITL_DATASETS", str(tmp_path / "nowhere"))
    for args, where in ((["--data", str(tmp_path / "absent")], "absent"), ([], "nowhere")):
        with pytest.raises(SystemExit) as stopped:
            main(["--quick", *args])
        message = str(stopped.value.code)
        assert len(message.splitlines()) == 1 and where in message, message
        assert all(way in message for way in ("--data", "HITL_DATASETS", "../shared/datasets"))


def test_a_missing_datasets_folder_ends_the_process_with_that_line_and_no_traceback(
    tmp_path: Path,
):
    env = {**os.environ, "HITL_DATASETS": str(tmp_path / "nowhere")}
    result = run("bot_load.py", "--quick", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no datasets folder at {tmp_path / 'nowhere'} (HITL_DATASETS); give --data DIR, "
        "set HITL_DATASETS, or put the datasets in ../shared/datasets beside the repository"
    ]


def test_datasets_come_from_hitl_datasets_when_no_data_option_is_given(standin: Path):
    env = {**os.environ, "HITL_DATASETS": str(standin)}
    result = run(
        "model_comparison.py", "--quick", "--datasets", STANDIN, "--pipelines", "word_lr", env=env
    )
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^\| {STANDIN} \|", result.stdout, flags=re.M), result.stdout


def test_a_dataset_not_in_the_folder_is_named(standin: Path):
    result = run("label_efficiency.py", "--quick", "--data", str(standin), "--datasets", "trec")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: {standin} has no trec (no <name>/train.jsonl); pick others with --datasets NAME …"
    ]


def test_no_absolute_machine_path_is_written_in_the_repository():
    files = subprocess.run(
        ["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    pattern = re.compile(r"(?<![\w.])/(?:work|home|root|Users)/")
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix in {".png", ".gz"} or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{name}:{n}: {line.strip()}")
    assert found == []


def test_import_memory_benchmark_prints_a_ratio_per_size():
    out = run_quick("import_memory.py")
    rows = re.findall(r"^\s+([\d,]+)\s+[\d.]+\s+([\d.]+)\s+([\d.]+)\s", out, flags=re.M)
    assert [r[0] for r in rows] == ["2,000", "20,000"]
    assert rows[0][2] == "1.00"
    assert "imported 20,000" in out


def test_label_efficiency_benchmark_runs_every_arm_through_the_product_code(standin: Path):
    out = run_quick("label_efficiency.py", standin)
    assert f"{STANDIN} full supervision: accuracy" in out
    arms = re.findall(r"^\| (\w+) \(1\) \| [\d.]+±", out, flags=re.M)
    assert arms[:4] == ["default", "random", "least_confidence", "entropy"]
    assert {"st_breaking_ties", "st_least_confidence"} <= set(arms) or "small-text is not" in out


def test_bot_load_benchmark_stores_every_acknowledged_click_once(standin: Path):
    out = run_quick("bot_load.py", standin)
    phases = {}
    for row in re.findall(
        r"^\| ([^|]+?) \| ([\d,]+) \| (\d+) \| (\d+) \|.*\| ([\d,–]+) \| [^|]*\|$", out, flags=re.M
    ):
        phases[row[0]] = row[1:]
    assert set(phases) == {
        "bare Bolt (before)",
        "hitl serve",
        "bare Bolt (after)",
        "hitl serve + retrain",
    }
    for name in ("hitl serve", "hitl serve + retrain"):
        clicks, acked, errors, stored = phases[name]
        assert (clicks, acked, errors, stored) == ("60", "60", "0", "60")
    assert '"status": "running"' in out  # the retrain was under way while the clicks came


def test_predict_growth_benchmark_serves_every_size_and_stores_every_click_once(standin: Path):
    out = run_quick("predict_growth.py", standin)
    rows = re.findall(r"^\| ([\d,]+) \| ([\d.]+) \|.*\| (\d+) \| (\S+) \|$", out, flags=re.M)
    assert [(size, errors, stored) for size, _, errors, stored in rows] == [
        ("1,000", "0", "yes"),
        ("4,000", "0", "yes"),
    ]
    assert "bare Bolt floor (after the first size / the last): p50 " in out


def test_throughput_benchmark_reports_growth_and_query_plans(standin: Path):
    out = run_quick("throughput.py", standin)
    assert re.search(r"^\| 2,000 \| .* \| [\d.]+ \| \d+ \|$", out, flags=re.M)
    assert "score_items: 1,000 pending items" in out
    assert "Retrain (`hitl retrain`, time ∝ labels^" in out
    for query in ("Store.pool", "Store.open_post_counts", "Store.next_for_user"):
        assert f"- `{query}` (" in out
    assert "EXPLAIN QUERY PLAN" in out


def test_soak_benchmark_loses_no_answer_under_faults():
    out = run_quick("soak.py")
    assert "| acked clicks lost / stored twice | 0 / 0 |" in out
    assert "| PRAGMA integrity_check | ok |" in out
    assert "| tracebacks in the server log | 0 |" in out
    assert out.strip().endswith("verdict: ok")


def test_simulated_loop_benchmark_accuracy_rises_with_answers(standin: Path):
    out = run_quick("simulated_loop.py", standin)
    assert f"{STANDIN} accuracy on test.jsonl by labels: 20:" in out
    assert "the curve rises" in out


def test_refresh_benchmark_compares_nightly_the_product_and_the_fast_loop(standin: Path):
    out = run_quick("refresh.py", standin)
    for arm, refreshes in (("nightly", "0 refreshes"), ("product", ""), ("every5", "")):
        [line] = [ln for ln in out.splitlines() if ln.startswith(f"{STANDIN} {arm}: ")]
        assert "30 labels in" in line and refreshes in line
    product = re.search(r"product: .*, (\d+) refreshes", out)
    fast = re.search(r"every5: .*, (\d+) refreshes", out)
    assert product and fast and 0 < int(product[1]) < int(fast[1])


def test_annotators_benchmark_compares_majority_and_dawid_skene_on_a_simulated_team(
    standin: Path, tmp_path: Path
):
    out_file = tmp_path / "rows.jsonl"
    result = run("annotators.py", "--quick", "--data", str(standin), "--datasets", STANDIN,
                 "--out", str(out_file))  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for variant in ("uniform", "confusable"):
        assert f"### {STANDIN}, {variant} errors: 200 items, 10 gold, 2 seeds" in out
    methods = re.findall(r"^\| (\w+) \| [\d.]+ ± [\d.]+ \|", out, flags=re.M)
    assert methods == ["truth", "majority", "dawid_skene", "dawid_skene_gold"] * 2
    annotators = re.findall(r"^\| (\d+%) \| [\d.]+ ± ", out, flags=re.M)
    assert annotators == ["95%", "85%", "60%"] * 2
    rows = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 * 2 * 4  # variants × seeds × methods
    assert {r["method"] for r in rows} == {"truth", "majority", "dawid_skene", "dawid_skene_gold"}
    truth = [r for r in rows if r["method"] == "truth"]
    assert all(r["resolved_accuracy"] == 1.0 and r["n_undecided"] == 0 for r in truth)


def test_annotators_benchmark_refuses_a_gold_share_out_of_range(standin: Path):
    result = run("annotators.py", "--quick", "--data", str(standin), "--datasets", STANDIN,
                 "--gold-share", "1.5")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --gold-share 1.5 is not in [0, 1); try 0.05"
    ]


def test_model_footprint_benchmark_compares_before_and_now_side_by_side(standin: Path):
    out = run_quick("model_footprint.py", standin)
    for n, estimator in (("150", "LogisticRegression"), ("2,050", "SGDClassifier")):
        assert re.search(rf"^{n} labels, 6 classes, {estimator} \(", out, flags=re.M), out
    rows = re.findall(r"^\| ([a-z][^|]+?) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert [r[0] for r in rows[:8]] == [
        "retrain s (CV + fit + save)",
        "retrain peak RSS MiB",
        "model file MiB",
        "load s",
        "load peak RSS +MiB",
        "predict one text ms (median)",
        "test accuracy",
        "test macro-F1",
    ]
    assert len(rows) == 16
    assert out.count("same probabilities after load as when fitted: True") == 2
    assert "coefficients Fortran-ordered: True (before: False)" in out  # the SGD model
