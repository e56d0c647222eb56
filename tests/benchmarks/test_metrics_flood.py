"""metrics_flood.py: the event loop's lag under a flood of GET /metrics, the old way and now."""

from __future__ import annotations

import re

from tests.benchmarks.runner import run_quick_here

NUMBER = r"([\d,]+(?:\.\d+)?)"


def test_metrics_flood_benchmark_floods_both_arms_on_the_database_it_built():
    out = run_quick_here("metrics_flood.py")
    assert re.search(r"^database: 20,000 items, 20,000 answers, 20,000 posts, ", out, re.M), out
    row = r"^\| (quiet|on-loop|scrape) \| ([\d.]*) \| " + r" \| ".join([NUMBER] * 7) + r" \|$"
    rows = {arm: cells for arm, *cells in re.findall(row, out, re.M)}
    assert list(rows) == ["quiet", "on-loop", "scrape"], out
    for arm, (one, p50, p99, longest, samples, served, failed, _load) in rows.items():
        # _load: the machine's 1-minute load average, whatever the code does (its format is checked)
        lags = [float(x) for x in (p50, p99, longest)]
        assert 0 <= lags[0] <= lags[1] <= lags[2], (arm, out)
        assert int(samples.replace(",", "")) > 0, (arm, out)
        assert failed == "0", (arm, out)
        if arm == "quiet":
            assert (one, served) == ("", "0"), out
        else:
            assert float(one) > 0 and int(served.replace(",", "")) > 0, (arm, out)
    assert re.search(
        r"^on-loop / scrape: loop lag p99 [\d.]+x, max [\d.]+x; one scrape [\d.]+x$", out, re.M
    ), out
