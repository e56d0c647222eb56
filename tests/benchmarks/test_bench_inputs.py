"""What the benchmarks make of their inputs: stored rows of arms renamed or retired since
(label_efficiency.py --report / --screens), the committed growth plot (throughput.py --plots),
a dataset folder that is not what --help says (one line, no traceback), --only's parts, and the
--help text of the options RESULTS.md's commands use."""

from __future__ import annotations

import argparse
import json
import tracemalloc
from pathlib import Path

import pytest

from tests.benchmarks.runner import benchmark_main, benchmark_module, run
from tests.standin_data import STANDIN, write_standin_dataset

# --- label_efficiency.py: every arm the rows have ---------------------------------------------


def curve(arm: str, seed: int, accs: list[float]) -> list[dict]:
    return [
        {
            "dataset": "d",
            "arm": arm,
            "seed": seed,
            "n_labels": 50 + 25 * i,
            "accuracy": acc,
            "macro_f1": acc,
        }
        for i, acc in enumerate(accs)
    ]


def stored_rows(tmp_path: Path) -> Path:
    """random, then ``zeta`` (an arm no longer known), ``warm50`` (known), ``omega`` (not
    known either), seeds 0 and 1."""
    rows = []
    for arm, accs in (
        ("random", ([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])),
        ("zeta", ([0.6, 0.6, 0.7], [0.6, 0.6, 0.7])),
        ("warm50", ([0.4, 0.7, 0.8], [0.5, 0.6, 0.8])),
        ("omega", ([0.45, 0.6, 0.75], [0.45, 0.6, 0.75])),
    ):
        rows += curve(arm, 0, accs[0]) + curve(arm, 1, accs[1])
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_screens_report_arms_not_in_today_s_list_after_the_known_ones(tmp_path, capsys):
    path = stored_rows(tmp_path)
    main = benchmark_main("label_efficiency.py")
    code = main(["--report", str(path), "--screens", "--max-labels", "100"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[-3:] == [
        "| d | warm50 | 0, 1 | 1 of 3 (50; worst -5.0) | +10.0 | +0.0375 ± 0.0177 "
        "| 0.0471 / 0.0000 |",
        "| d | zeta | 0, 1 | 0 of 3 | +0.0 | +0.0250 ± 0.0000 | 0.0000 / 0.0000 |",
        "| d | omega | 0, 1 | 1 of 3 (50; worst -5.0) | +5.0 | +0.0000 ± 0.0000 "
        "| 0.0000 / 0.0000 |",
    ]


def test_screens_pair_with_a_base_the_rows_have_and_name_an_unknown_one(tmp_path, capsys):
    path = stored_rows(tmp_path)
    main = benchmark_main("label_efficiency.py")
    code = main(["--report", str(path), "--screens", "--max-labels", "100", "--base", "omega"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [line.split(" | ")[1] for line in out.splitlines()[-3:]] == ["random", "warm50", "zeta"]
    # random − omega: +5 points at 50, 0 at 75, −5 at 100; AUCs 0.600 both
    assert out.splitlines()[-3] == (
        "| d | random | 0, 1 | 1 of 3 (100; worst -5.0) | -5.0 | +0.0000 ± 0.0000 "
        "| 0.0000 / 0.0000 |"
    )

    code = main(["--report", str(path), "--screens", "--base", "omeg"])
    assert (code, capsys.readouterr().err) == (
        2,
        "error: --base omeg: no such arm (the rows have random, warm50, zeta, omega)\n",
    )


def test_report_tables_every_arm_the_rows_have(tmp_path, capsys):
    path = stored_rows(tmp_path)
    plots = tmp_path / "plots"
    code = benchmark_main("label_efficiency.py")(["--report", str(path), "--plots", str(plots)])
    out, err = capsys.readouterr()
    assert code == 0, err
    arms = [line.split(" ")[1] for line in out.splitlines() if line.startswith("| ")][1:]
    assert arms == ["random", "warm50", "zeta", "omega"], out
    assert [p.name for p in plots.iterdir()] == ["label_efficiency_d.png"]


# --- throughput.py: the committed plot is redrawn only when asked, never with an empty panel ---

RETRAIN = [
    {"labels": 15, "seconds": 2.0, "peak_rss_mib": 100.0, "report": "Retrain v1"},
    {"labels": 25, "seconds": 3.0, "peak_rss_mib": 110.0, "report": "Retrain v1"},
]


def png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")  # the IHDR chunk's width


@pytest.fixture
def throughput(tmp_path: Path):
    """throughput.py's ``main``, its committed plots folder standing in ``tmp_path/plots``."""
    main = benchmark_main("throughput.py")
    main.__globals__["PLOTS"] = tmp_path / "plots"
    return main


def test_from_json_draws_the_plot_only_in_the_folder_named_and_no_empty_panel(
    throughput, tmp_path, capsys
):
    raw = tmp_path / "retrain.json"
    raw.write_text(json.dumps({"retrain": RETRAIN}))
    assert throughput(["--from-json", str(raw)]) == 0
    assert "plot: none drawn (--plots DIR draws it)" in capsys.readouterr().out
    assert not (tmp_path / "plots").exists()

    asked = tmp_path / "asked"
    assert throughput(["--from-json", str(raw), "--plots", str(asked)]) == 0
    # one panel (the retrain's) of 5.5 inches at 90 dpi: two would be 990 pixels wide
    assert png_width(asked / "throughput_growth.png") == 495

    # the committed plot's figures (retrain and growth): both panels, as RESULTS draws it
    both = Path(__file__).parents[2] / "benchmarks" / "results" / "throughput_growth.json"
    assert throughput(["--from-json", str(both), "--plots", str(tmp_path / "both")]) == 0
    assert png_width(tmp_path / "both" / "throughput_growth.png") == 990


def test_a_run_of_one_part_leaves_the_committed_plot_alone(throughput, tmp_path, monkeypatch):
    data = write_standin_dataset(tmp_path / "datasets")
    monkeypatch.setitem(throughput.__globals__, "bench_retrain", lambda *args: RETRAIN)
    run = ["--only", "retrain", "--data", str(data), "--datasets", STANDIN]
    assert throughput(run) == 0
    assert not (tmp_path / "plots").exists()


def test_only_takes_the_parts_it_knows(capsys):
    main = benchmark_main("throughput.py")
    with pytest.raises(SystemExit) as stopped:
        main(["--only", "scorin"])
    assert stopped.value.code == 2
    assert "invalid choice: 'scorin'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "import scoring retrain growth sparse window" in " ".join(
        capsys.readouterr().out.split()
    )


# --- a dataset folder that is not <name>/train.jsonl + test.jsonl: one line ---------------------


@pytest.mark.parametrize("script", ["label_efficiency.py", "model_comparison.py"])
def test_a_dataset_without_test_file_or_label_is_one_line(script, tmp_path):
    main = benchmark_main(script)
    data = write_standin_dataset(tmp_path / "datasets")
    test = data / STANDIN / "test.jsonl"
    kept = test.read_text()
    test.unlink()
    with pytest.raises(SystemExit) as stopped:
        main(["--quick", "--data", str(data), "--datasets", STANDIN])
    assert stopped.value.code == (
        f"error: {test} is missing: each dataset is <name>/train.jsonl + test.jsonl; add it, "
        "or pick others with --datasets NAME …"
    )
    test.write_text(kept + '{"text": "no label here"}\n')
    with pytest.raises(SystemExit) as stopped:
        main(["--quick", "--data", str(data), "--datasets", STANDIN])
    assert stopped.value.code == f"error: {test} line 301: no field 'label'"


def test_a_bad_dataset_row_ends_the_process_with_one_line(tmp_path):
    data = write_standin_dataset(tmp_path / "datasets")
    train = data / STANDIN / "train.jsonl"
    train.write_text('{"text": "a", "label": "x"}\nnot json\n')
    result = run("annotators.py", "--quick", "--data", str(data), "--datasets", STANDIN)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {train} line 2: bad JSON (Expecting value)"
    ]


def test_the_dataset_check_keeps_no_rows(tmp_path):
    """``resolve_data`` checks every row before the run, as a stream: it kept them all (a
    1M-row file: +500 MB), then the run read the file again. 20,000 rows kept are ~8 MB of
    dicts; read as a stream, the check's peak is a line and the file's buffer."""
    common = benchmark_module("_common.py")
    data = tmp_path / "datasets"
    (data / "big").mkdir(parents=True)
    row = json.dumps({"text": "my card was charged twice for order 1234567", "label": "billing"})
    (data / "big" / "train.jsonl").write_text((row + "\n") * 20_000)
    (data / "big" / "test.jsonl").write_text(row + "\n")
    args = argparse.Namespace(data=data, datasets=["big"])
    tracemalloc.start()
    try:
        assert common["resolve_data"](args) == (data, ("big",))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"the check held {peak / 1e6:.1f} MB"
    texts, labels = common["load_jsonl"](data / "big" / "train.jsonl")
    assert (len(texts), set(labels)) == (20_000, {"billing"})


# --- --help explains the options RESULTS.md's commands use ---------------------------------------

USED = {
    "label_efficiency.py": ["--arms", "--seeds"],
    "stopping.py": ["--seeds", "--curve-at", "--stop-size"],
    "throughput.py": ["--only", "--plots"],
    "bot_load.py": ["--clicks", "--labeled", "--pending"],
    "calibration.py": ["--sizes"],
    "walk_writes.py": ["--sizes"],
    "predict_growth.py": ["--sizes"],
    "refresh.py": ["--answers", "--seed", "--quick"],
    "simulated_loop.py": ["--answers", "--quick"],
    "accuracy_now_rules.py": ["--seeds"],
}


class Parsed(Exception):
    pass


@pytest.mark.parametrize("script", sorted(USED))
def test_the_options_results_uses_have_help(script, monkeypatch):
    parsers = []

    def capture(self, *args, **kwargs):
        parsers.append(self)
        raise Parsed

    main = benchmark_module(script)["main"]
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(Parsed):
        main([])
    helps = {o: a.help for a in parsers[0]._actions for o in a.option_strings}
    assert [o for o in USED[script] if not helps[o]] == []
