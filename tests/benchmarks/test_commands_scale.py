"""commands_scale.py: the slash commands through the real server at two sizes, and what each
reads on the event loop's own connection."""

from __future__ import annotations

import re

from tests.benchmarks.runner import run_quick_here

OFF_THE_LOOP = (
    "/hitl stats (member)",
    "/hitl stats (admin)",
    "/hitl queue",
    "/hitl accuracy",
    "/hitl labels (admin)",
    "App Home publish",
    "/hitl labels rename l5 l5r",
    "/hitl labels merge l5r l6",
)


def test_commands_scale_benchmark_times_every_command_and_reads_the_reports_off_the_loop():
    out = run_quick_here("commands_scale.py")
    rows = {
        name: cells.split(" | ")
        for name, cells in re.findall(r"^\| ([^|]+?) \| (.+) \|$", out, re.M)
        if name != "command"
    }
    assert {"/hitl help", "/hitl review (admin)", *OFF_THE_LOOP} <= rows.keys(), out
    for name in OFF_THE_LOOP:
        # seconds at both sizes, the ratio, the loop's longest hold; no read on its connection
        small, large, _ratio, _held, steps = rows[name]
        assert float(small) > 0 and float(large) > 0, out
        assert steps == "0 / 0", (name, out)
