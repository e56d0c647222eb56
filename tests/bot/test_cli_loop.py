"""The learning loop from the terminal: hitl retrain, models, rollback, accuracy, stats."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.config import Settings
from bot.learning import retrain
from bot.store import Store
from tests.bot.harness import Item
from tests.bot.test_learning import BILLING, BUG, char_only_items


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


def labeled_file(tmp_path: Path, prefix: str) -> Path:
    path = tmp_path / f"{prefix}.jsonl"
    rows = [{"id": f"{prefix}b{n}", "text": t, "label": "billing"} for n, t in enumerate(BILLING)]
    rows += [{"id": f"{prefix}g{n}", "text": t, "label": "bug"} for n, t in enumerate(BUG)]
    rows += [{"id": f"{prefix}u", "text": "invoice crash"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_retrain_models_rollback_accuracy_and_stats(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "models").stdout == "No models yet: `hitl retrain` trains the first one.\n"
    assert run(db, "accuracy").stdout.startswith("No model yet.")

    first = run(db, "retrain")
    assert first.exit_code == 0
    lines = first.stdout.splitlines()
    assert lines[0].startswith("Retrain v1: promoted ✅ (cli, ")
    assert lines[1] == "Labels: 12 (12 new)"
    assert lines[-1].startswith("Queue: re-scored 1 item; waiting for people ")
    assert "Training on 12 labels" in first.stderr  # the progress bar's label
    # then a bar of its own for scoring the waiting items (minutes at a million, in silence)
    assert "Scoring 1 waiting item with the new model" in first.stderr
    again = run(db, "retrain")
    assert again.stdout.strip() == (
        "Retrain (cli): nothing new: no labels since the last run (12 labels); training skipped."
        " `hitl retrain --force` trains and promotes one anyway."
    )

    assert run(db, "import", str(labeled_file(tmp_path, "b"))).exit_code == 0
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v2: promoted")
    table = run(db, "models").stdout.splitlines()
    assert table[0].split() == [
        "version",
        "status",
        "created",
        "labels",
        "accuracy",
        "macro-F1",
        "reason",
    ]
    assert [row.split()[:2] for row in table[1:]] == [["v1", "retired"], ["v2", "champion"]]

    assert run(db, "rollback", "1").stdout == "v1 is the champion again.\n"
    bad = run(db, "rollback", "v9")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("Error: cannot roll back: model v9 does not exist")
    assert run(db, "rollback", "latest").stderr == (
        "Error: 'latest' is not a version number; e.g. hitl rollback 3\n"
    )

    chart = tmp_path / "chart.png"
    accuracy = run(db, "accuracy", "--chart", str(chart))
    assert accuracy.stdout.startswith("Model v1 — ")
    assert "Cross-validated (" in accuracy.stdout and "Trend:" in accuracy.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    stats = run(db, "stats").stdout.splitlines()
    assert stats[0] == "Answers today: 0"
    assert stats[2].startswith("Items: 2 waiting · 0 posted · 24 resolved")


def test_old_model_files_are_deleted_but_listed_and_cannot_be_rolled_back_to(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("HITL_KEEP_MODELS", "1")  # the champion's file and one more
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    # three versions on the same 12 labels (--force trains one with nothing new): more labels
    # would only make each fit slower, and at 30 a retrain also measures a learning curve
    for n in range(1, 4):
        assert run(db, "retrain", "--force").stdout.startswith(f"Retrain v{n}: promoted")
    files = sorted(p.name for p in (tmp_path / "hitl.db.models").glob("*.skops"))
    assert files == ["v2.skops", "v3.skops"]
    table = run(db, "models").stdout.splitlines()[1:]
    assert [row.split()[:2] for row in table] == [
        ["v1", "retired"],
        ["v2", "retired"],
        ["v3", "champion"],
    ]
    assert table[0].endswith("(file deleted)") and "(file deleted)" not in table[1] + table[2]
    gone = run(db, "rollback", "1")
    assert gone.exit_code == 1
    assert "model v1's file was deleted on " in gone.stderr and len(gone.stderr.splitlines()) == 1
    assert run(db, "rollback", "2").stdout == "v2 is the champion again.\n"


def char_only_file(tmp_path: Path, prefix: str) -> Path:
    path = tmp_path / f"{prefix}.jsonl"
    rows = [{"id": it.id, "text": it.text, "label": it.label} for it in char_only_items(prefix, 6)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_rolling_back_to_a_rejected_model_needs_force_and_the_history_keeps_both_reasons(
    tmp_path: Path, monkeypatch
):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(char_only_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").stdout.startswith("Retrain v1: promoted")
    assert run(db, "import", str(char_only_file(tmp_path, "b"))).exit_code == 0
    monkeypatch.setenv("HITL_PIPELINE", "word_lr")  # cannot read letters: the gate rejects it
    assert run(db, "retrain").stdout.startswith("Retrain v2: rejected")
    with Store.open(db) as store:
        [rejected] = [m for m in store.models() if m["version"] == 2]
    scores = (
        f"accuracy {rejected['metrics']['accuracy']:.1%}, "
        f"macro-F1 {rejected['metrics']['macro_f1']:.3f}"
    )

    refused = run(db, "rollback", "2")
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"Error: cannot roll back: model v2 was rejected ({scores}: {rejected['reason']}); "
        "add --force to make it the champion anyway\n"
    )
    forced = run(db, "rollback", "2", "--force")
    assert forced.exit_code == 0
    assert forced.stdout == "v2 is the champion again.\n"
    assert forced.stderr == (
        f"Warning: v2 was rejected ({scores}: {rejected['reason']}); it is the champion "
        "now because of --force.\n"
    )
    rows = run(db, "models").stdout.splitlines()[1:]
    assert rows[1].split()[:2] == ["v2", "champion"]
    assert rows[1].endswith(
        f"{rejected['reason']} → rolled back to v2 by cli, forced although rejected ({scores})"
    )
    with Store.open(db) as store:
        assert store.champion_version() == 2
        assert [r["status"] for r in store.runs("rollback")] == ["ok"]


def test_a_cli_rollback_is_refused_while_a_retrain_holds_the_lock(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    assert run(db, "retrain", "--force").exit_code == 0
    with Store.open(db) as store:
        registry = retrain.registry_for(Settings(db=db))
        plan = retrain.begin(
            store, Settings(db=db), registry, triggered_by="<@U0ADMIN>", force=True
        )
        assert isinstance(plan, retrain.Plan)  # a retrain is running (the server's, say)
        busy = run(db, "rollback", "1")
        assert busy.exit_code == 1
        assert busy.stderr.startswith(
            "Error: cannot roll back: a retrain by @U0ADMIN is already running ("
        ) and busy.stderr.endswith("); try again when it is done\n")
        assert store.champion_version() == 2 and registry.champion().version == 2
        store.release_lock(retrain.LOCK, plan.owner)
    assert run(db, "rollback", "1").stdout == "v1 is the champion again.\n"


@pytest.mark.parametrize(
    "command", ["stats", "accuracy", "models", "export", "retrain", "rollback 1"]
)
def test_commands_with_nothing_to_work_on_do_not_create_a_database(
    tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch
):
    # a retrain or a rollback run in the wrong folder used to leave an empty hitl.db and
    # hitl.db.models/ there (and the retrain exited 0, "too few labels"). An empty folder of
    # its own (not click's isolated_filesystem, deprecated in click 8.5)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.delenv("HITL_DB", raising=False)
    result = CliRunner().invoke(cli, command.split(), prog_name="hitl")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: no database at hitl.db (nothing imported here yet): run `hitl import FILE` "
        "first, or point --db or HITL_DB at an existing one\n"
    )
    assert list(here.iterdir()) == []  # no hitl.db, no hitl.db.models/


def test_a_retrain_given_up_mid_fit_returns_at_once_and_stores_nothing(tmp_path: Path):
    # Ctrl-C in `hitl retrain` cancels the retrain while the fit runs in its thread. The
    # caller (and so the process) must not wait for the fit to end, and the fit, which
    # cannot be stopped, must not store a model after the run was recorded failed: else
    # the registry has a champion the database does not know of.
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    settings = Settings(db=db)
    registry = retrain.registry_for(settings)
    fitting, go_on = threading.Event(), threading.Event()

    def progress(done: int, total: int) -> None:  # in the fit's thread, once per fold
        fitting.set()
        go_on.wait()

    async def give_up() -> None:
        with Store.open(db) as store:
            task = asyncio.create_task(
                retrain.retrain(
                    store, settings, registry, champion=None, triggered_by="cli",
                    progress=progress,
                )
            )  # fmt: skip
            await asyncio.to_thread(fitting.wait)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    returned = threading.Event()
    caller = threading.Thread(target=lambda: (asyncio.run(give_up()), returned.set()))
    caller.start()
    try:
        caller.join(timeout=60)  # it returns at once (it used to wait for the fit to end)
        returned_while_fitting = returned.is_set()
    finally:
        go_on.set()  # now let the fit end
    caller.join()
    assert returned_while_fitting
    for thread in threading.enumerate():
        if thread.name == "hitl-retrain-fit":
            thread.join()
    with Store.open(db) as store:
        [run_] = store.runs("retrain")
        assert run_["status"] == "failed" and "CancelledError" in run_["detail"]["reason"]
        assert store.db["locks"].count == 0 and store.champion_version() is None
    assert registry.versions() == []  # the registry agrees: no model was stored


def test_a_retrain_recorded_under_other_training_rules_is_not_nothing_new(tmp_path: Path):
    # After an upgrade that changed what trains (gold stopped training), the nightly retrain
    # said "nothing new" and kept the champion trained under the old rules.
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    assert "nothing new" in run(db, "retrain").stdout
    with Store.open(db) as store, store.db.conn:  # the last run as an older version left it
        last = store.db.execute("SELECT id, detail FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        detail = json.loads(last[1])
        del detail["watermark"]["training_rules"]
        store.db.execute("UPDATE runs SET detail = ? WHERE id = ?", [json.dumps(detail), last[0]])
    again = run(db, "retrain").stdout
    assert again.startswith("Retrain v2: promoted"), again  # trained again, not skipped
    assert "nothing new" in run(db, "retrain").stdout


def test_a_retrain_refused_while_another_runs_says_so_once(tmp_path: Path):
    # It printed the refusal on stdout and then "Error: another retrain is running; try again
    # later" on stderr: the same news twice.
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    with Store.open(db) as store:
        settings = Settings(db=db)
        plan = retrain.begin(store, settings, retrain.registry_for(settings), triggered_by="x")
        busy = run(db, "retrain")
        store.release_lock(retrain.LOCK, plan.owner)
    assert busy.exit_code == 1 and busy.stdout == ""
    assert busy.stderr.startswith("Error: Not started: a retrain by x is already running (")
    assert busy.stderr.count("\n") == 1, busy.stderr


def test_a_refused_retrain_does_not_load_the_champion_first(tmp_path: Path, monkeypatch):
    # The refusal came after the champion's load: on a machine busy with the running
    # retrain, 26 s to say "already running".
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0  # v1, the champion
    loads: list[object] = []
    load = retrain.load_champion
    monkeypatch.setattr(retrain, "load_champion", lambda *a, **k: loads.append(a) or load(*a, **k))
    with Store.open(db) as store:
        settings = Settings(db=db)
        plan = retrain.begin(
            store, settings, retrain.registry_for(settings), triggered_by="x", force=True
        )
        busy = run(db, "retrain")
        store.release_lock(retrain.LOCK, plan.owner)
        store.finish_run(plan.run_id, "failed", {"status": "failed", "reason": "test"})
    assert busy.exit_code == 1, busy.stdout
    assert busy.stderr.startswith("Error: Not started: a retrain by x is already running (")
    assert loads == []
    assert run(db, "retrain").exit_code == 0 and loads  # free again: it loads


def test_stats_counts_are_written_as_everywhere_else(tmp_path: Path):
    """`hitl stats` wrote "1234 pending" where import, retrain and /hitl queue write 1,234."""
    db = tmp_path / "hitl.db"
    path = tmp_path / "many.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"m{n}", "text": f"ticket {n}"}) + "\n" for n in range(1234))
    )
    assert run(db, "import", "-q", str(path)).exit_code == 0
    stats = run(db, "stats").stdout.splitlines()
    assert stats[2].startswith("Items: 1,234 waiting · 0 posted · 0 resolved"), stats


def test_a_model_scored_with_the_folds_of_before_is_marked_where_figures_stand_side_by_side(
    tmp_path: Path,
):
    """Folds hold a text's repeats together since 2a68f93; a model saved before was scored with
    folds that split them, which read higher on repeated texts (an upgrade test: v1 94.7 %
    beside v2 65.3 %, "0 new" labels, nothing said). `hitl models` and the trend mark it."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    meta_path = tmp_path / "hitl.db.models" / "v1.json"
    meta = json.loads(meta_path.read_text())
    del meta["metrics"]["folds"]  # as the code before saved it
    meta_path.write_text(json.dumps(meta))
    assert run(db, "retrain", "--force").exit_code == 0
    table = run(db, "models").stdout.splitlines()
    v1, v2 = (next(line for line in table if line.startswith(v)) for v in ("v1 ", "v2 "))
    assert re.search(r"\d\.\d{3}†  ", v1) and "†" not in v2
    assert table[-1].startswith("† scored with the folds of before")
    trend = run(db, "accuracy").stdout
    assert re.search(r"^v1 .*\d\.\d{3}†$", trend, flags=re.M), trend
    assert "\n† scored with the folds of before" in trend


def test_the_cv_note_is_for_labels_people_gave_not_for_imported_ones_alone(tmp_path: Path):
    """The note that cross-validated figures read low (measured on the questions asked because
    the model was unsure) showed on a database whose every label was imported, where nothing
    was asked and the figures it points to say they are not available (an outside re-test)."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    assert "Cross-validated figures are measured" not in run(db, "accuracy").stdout
    with Store.open(db) as store:
        store.add_items([Item("q1", "is my invoice ready")], "api")
        store.record_answer("q1", "U0ANA", "billing", source="button", dedupe_key="k1")
    assert "Cross-validated figures are measured" in run(db, "accuracy").stdout


def test_the_retrain_reports_cv_note_is_for_labels_asked_because_the_model_was_unsure(
    tmp_path: Path,
):
    """The retrain report said imported labels read low for being the hardest questions;
    it says so once some label answers a question the model was unsure of."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    first = run(db, "retrain")
    assert first.exit_code == 0 and "Macro-F1:" in first.stdout
    assert "Cross-validated figures are measured" not in first.stdout
    with Store.open(db) as store:
        store.add_items([Item("q1", "is my invoice ready")], "api")
        store.record_post("q1", "C0HITL", "1700000000.000100", "uncertain", 1, "billing", 0.55)
        store.record_answer("q1", "U0ANA", "billing", source="button", dedupe_key="k1")
    second = run(db, "retrain")
    assert second.exit_code == 0 and "Macro-F1:" in second.stdout
    assert "Cross-validated figures are measured" in second.stdout


def test_accuracy_help_says_what_the_chart_and_the_report_hold(tmp_path: Path):
    """The example said "a PNG of it by version and label", which reads as a chart per label
    (class); the chart is of the last 10 versions' CV accuracy and macro-F1 by version and by
    number of labels (``chart_figure``'s two x axes), and the report ends with when to stop."""
    said = " ".join(run(tmp_path / "hitl.db", "accuracy", "--help").stdout.split())
    assert "by version and label" not in said
    assert (
        "Also save a PNG chart: cross-validated accuracy and macro-F1 of the last 10 versions, by"
        " version and by number of labels, and (once audit posts are answered) the live audit"
        " accuracy with its 95% interval."
    ) in said
    assert "when to stop labeling and what the next 500 labels should bring" in said
