"""bot_load.py: the bot under load, and the realistic mix."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks.runner import run_quick


def test_bot_load_benchmark_stores_every_acknowledged_click_once(standin: Path):
    out = run_quick("bot_load.py", standin)
    row = r"^\| ([^|]+?) \| ([\d,]+) \| (\d+) \| (\d+) \|.*\| ([\d,–]+) \| ([^|]*)\|$"
    phases = {found[0]: found[1:] for found in re.findall(row, out, flags=re.M)}
    assert set(phases) == {
        "bare Bolt (before)",
        "bare Bolt (after)",
        "hitl serve + retrain",
        "hitl serve, realistic mix, re-scoring after a refresh",
        "/api/predict during the mix (5 clients)",
        "bare Bolt (after the mix)",
    }
    clicks, acked, errors, stored, _ = phases["hitl serve + retrain"]
    assert (clicks, acked, errors, stored) == ("60", "60", "0", "60")
    # the fit child is held while the clicks come: the retrain is under way, whatever the load
    assert '"status": "running"' in out and '"fit_held_during_clicks": true' in out
    # HITL_VOTES=1: the first click on each of the 2 questions decides it and queues its
    # webhook; the 2 labels bring a refresh (HITL_REFRESH_EVERY=2), and the 58 later clicks,
    # timed while it re-scores the waiting items, are kept as history and told so
    clicks, acked, errors, stored, note = phases[
        "hitl serve, realistic mix, re-scoring after a refresh"
    ]
    assert (clicks, acked, errors, stored) == ("58", "58", "0", "60")
    assert re.search(r'"refresh": "r27 asks"', out), out[-600:]
    assert re.search(r'"rescore_walk": "998 items waiting; the walk had re-scored', out)
    # the server and its children (two scoring children, the fit child), each with its memory
    assert len(re.findall(r"child \(nice \d+\) \d+ MiB", out)) >= 2, out[-800:]
    stuck = out if "did not stop within" in out else ""  # its threads' stacks, printed
    assert note.startswith("60 distinct (item, user); 2 items decided by a click (2 webhooks"), (
        note + stuck
    )
    assert "58 later clicks told already decided" in note
    _, predict_acked, predict_errors, _, _ = phases["/api/predict during the mix (5 clients)"]
    assert predict_errors == "0" and int(predict_acked) > 0  # they called during the clicks
