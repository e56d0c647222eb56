"""A retrain after HITL_PIPELINE changed: a gated candidate of the new pipeline, not "nothing new".

The README's out-of-memory advice is HITL_PIPELINE=word_lr; `hitl retrain` then said "nothing
new" (the watermark counted labels alone) and only `--force`, which skips the gate, trained it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import model.training
from bot.cli import cli
from bot.config import Settings
from bot.learning import retrain
from bot.store import Store
from tests.bot.test_learning import BILLING, BUG


def run(db: Path, *args: str, pipeline: str | None = None):
    env = {"HITL_PIPELINE": pipeline}  # None: not set
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl", env=env)


def first_model(tmp_path: Path) -> Path:
    db = tmp_path / "hitl.db"
    path = tmp_path / "a.jsonl"
    rows = [{"id": f"b{n}", "text": t, "label": "billing"} for n, t in enumerate(BILLING)]
    rows += [{"id": f"g{n}", "text": t, "label": "bug"} for n, t in enumerate(BUG)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert run(db, "import", str(path)).exit_code == 0
    first = run(db, "retrain")
    assert first.stdout.startswith("Retrain v1: promoted"), first.stdout
    return db


def last_run(db: Path) -> dict:
    with Store.open(db) as store:
        return store.last_run("retrain") or {}


def test_a_changed_pipeline_trains_a_gated_candidate_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = first_model(tmp_path)
    gated: list[tuple[str, str]] = []  # the champion the gate refits: its own configuration
    evaluate = model.training._evaluate_champion

    def spy(candidate, champion, *args, **kwargs):
        features = champion.pipeline_.steps[0][1]
        gated.append((champion.pipeline_name, type(features).__name__))
        return evaluate(candidate, champion, *args, **kwargs)

    monkeypatch.setattr(model.training, "_evaluate_champion", spy)
    changed = run(db, "retrain", pipeline="word_lr")
    assert changed.exit_code == 0, changed.output
    out = changed.stdout
    assert "nothing new" not in out, out
    assert out.startswith(("Retrain v2: promoted", "Retrain v2: rejected")), out
    assert "Forced" not in out and "on the same" in out, out  # the gate compared the two
    assert "Trained because: the pipeline changed: word_char_auto → word_lr" in out, out
    assert gated == [("word_char_auto", "FeatureUnion")]  # word_lr's features are words alone
    with Store.open(db) as store:
        [v2] = [m for m in retrain.registry_for(Settings(db=db)).versions() if m.version == 2]
        assert v2.pipeline_name == "word_lr"
        assert store.last_run("retrain")["detail"]["watermark"]["pipeline"] == "word_lr"
    # Tried on these labels: the next retrain (the nightly's) does not train it again.
    again = run(db, "retrain", pipeline="word_lr").stdout
    assert "nothing new: no labels since the last run (12 labels)" in again, again
    assert len(gated) == 1


def test_the_same_pipeline_or_one_that_fits_the_same_model_is_nothing_new(tmp_path: Path):
    db = first_model(tmp_path)  # word_char_auto on 12 labels: word_char_lr_balanced
    named = run(db, "retrain", pipeline="word_char_auto").stdout
    assert named.startswith(
        "Retrain (cli): nothing new: no labels since the last run (12 labels); training skipped."
    ), named
    same = run(db, "retrain", pipeline="word_char_lr_balanced").stdout
    assert "nothing new" in same and "fits the same model as v1's word_char_auto" in same, same
    assert last_run(db)["detail"]["watermark"]["pipeline"] == "word_char_lr_balanced"
    assert "nothing new" in run(db, "retrain").stdout  # back to the default: v1's own


def test_a_run_recorded_before_runs_recorded_the_pipeline(tmp_path: Path):
    db = first_model(tmp_path)
    with Store.open(db) as store, store.db.conn:  # the last run as an older version left it
        row = store.db.execute("SELECT id, detail FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        detail = json.loads(row[1])
        detail["watermark"].pop("pipeline", None)  # (none before this fix)
        store.db.execute("UPDATE runs SET detail = ? WHERE id = ?", [json.dumps(detail), row[0]])
    assert "nothing new" in run(db, "retrain").stdout  # the champion's pipeline: nothing new
    with Store.open(db) as store:  # the nightly's (and /hitl retrain's) plan: it trains
        settings = Settings(db=db, pipeline="word_lr")
        registry = retrain.registry_for(settings)
        plan = retrain.begin(store, settings, registry, triggered_by="schedule")
        assert isinstance(plan, retrain.Plan), plan
        assert plan.pipeline == "word_lr" and not plan.force and plan.n_new == 0
        store.release_lock(retrain.LOCK, plan.owner)
