"""Where benchmarks find their data, and what they say when it is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.runner import DATA_SCRIPTS, ROOT, benchmark_main, run, run_quick
from tests.standin_data import STANDIN


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
    # annotators.py imports scikit-learn only once it measures: the process ends in a moment
    result = run("annotators.py", "--quick", "--data", str(standin), "--datasets", "trec")
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


def test_the_machine_line_names_the_installed_versions_without_importing_scikit_learn():
    """Every benchmark prints this line first; a load generator's own process never needs
    scikit-learn, and importing it only to read its version cost a second of CPU."""
    import numpy
    import sklearn

    code = (
        "import sys; from _common import machine; print(machine()); print('sklearn' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        check=True,
    )
    line, imported = result.stdout.splitlines()
    assert f"scikit-learn {sklearn.__version__}, numpy {numpy.__version__}" in line
    assert imported == "False"
