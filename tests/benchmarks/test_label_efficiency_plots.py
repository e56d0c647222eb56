"""label_efficiency.py draws its plots where asked: a measuring run leaves the committed plots
(those of the stored rows) alone unless --plots names a folder; --report redraws them."""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.runner import benchmark_main
from tests.standin_data import STANDIN


def test_a_measuring_run_draws_no_committed_plot_and_a_report_does(
    standin: Path, tmp_path: Path, capsys
):
    main = benchmark_main("label_efficiency.py")
    committed = tmp_path / "plots"  # stands in for benchmarks/plots
    main.__globals__["PLOTS"] = committed
    rows = tmp_path / "rows.jsonl"
    run = ["--data", str(standin), "--datasets", STANDIN, "--arms", "random", "--seeds", "0"]
    assert main([*run, "--max-labels", "50", "--no-full", "--out", str(rows)]) == 0
    assert rows.stat().st_size > 0 and not committed.exists()

    asked = tmp_path / "asked"
    assert main([*run, "--max-labels", "50", "--no-full", "--plots", str(asked)]) == 0
    assert [p.name for p in asked.iterdir()] == [f"label_efficiency_{STANDIN}.png"]

    assert main(["--report", str(rows)]) == 0
    assert [p.name for p in committed.iterdir()] == [f"label_efficiency_{STANDIN}.png"]
    assert f"![{STANDIN}](plots/label_efficiency_{STANDIN}.png)" in capsys.readouterr().out
