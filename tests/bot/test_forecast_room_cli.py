"""`hitl retrain` and `hitl accuracy` on a team's first, clean seed file (two labels, 40
examples each) showed "accuracy: 100.0%" and then "Next 500 labels …: about +0.9 points
(range +0.4 to +2.5)" (an outside test, finding 2): a gain the model has no room for. The
forecast beside a model's cross-validated accuracy is capped at the room it leaves, saying
so."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from bot.store import Store
from model.stopping import Extrapolation
from tests.bot.test_stopping import run_cli

WORDS = "alpha beta gamma delta error login refund invoice crash slow password card payment"


def text(word: str, i: int) -> str:
    pick = random.Random(f"{word}-{i}")
    return word + " " + " ".join(pick.choice(WORDS.split()) for _ in range(8)) + f" #{i}"


def clean_seed(path: Path) -> None:
    pick = random.Random(5)
    rows = [{"id": f"a{i}", "text": text("apple", i), "label": "A"} for i in range(40)]
    rows += [{"id": f"b{i}", "text": text("banana", i), "label": "B"} for i in range(40)]
    rows += [{"id": f"u{i}", "text": text(pick.choice(["apple", "banana"]), 1000 + i)}
             for i in range(300)]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def shown(output: str, accuracy: str) -> tuple[float, float, float | None, str]:
    """The accuracy (after ``accuracy``), the forecast's gain and the top of its range (None:
    none shown) as printed, and the forecast's line."""
    [acc] = re.findall(accuracy + r" ([\d.]+)%", output)
    [line] = [line for line in output.splitlines() if line.startswith("Next 500 labels")]
    gain = re.search(r": (?:about|at most) ([+-]\d+\.\d) points", line)
    assert gain, line
    top = re.search(r"\(range [+-]\d+\.\d to ([+-]\d+\.\d)", line)
    return float(acc), float(gain[1]), float(top[1]) if top and "read" not in line else None, line


def test_the_forecast_beside_a_model_at_100_percent_promises_no_gain(tmp_path: Path):
    db = tmp_path / "hitl.db"
    clean_seed(tmp_path / "seed.jsonl")
    assert run_cli(db, "import", "-q", str(tmp_path / "seed.jsonl")).exit_code == 0
    trained = run_cli(db, "retrain")
    assert trained.exit_code == 0, trained.output
    with Store.open(db) as store:
        [check] = store.stop_checks()
        [(cv,)] = store.db.execute(
            "SELECT json_extract(metrics, '$.accuracy') FROM models WHERE version = 1"
        )
    curve = Extrapolation.from_dict(check["extrapolation"])
    assert cv is not None and curve.gain > 1 - cv  # the curve reads more than the room left
    report = run_cli(db, "accuracy")
    for output, accuracy in ((trained.output, r"accuracy:"), (report.output, r"accuracy")):
        acc, gain, top, line = shown(output, accuracy)
        assert acc + gain <= 100.05, line
        assert top is None or acc + top <= 100.05, line
        assert f"the model is at {acc:.1f}% (cross-validated)" in line, line
        assert f"the learning curve read {curve.gain * 100:+.1f}" in line, line
