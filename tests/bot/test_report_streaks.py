"""A run of rejected retrains (a month's test: a bad labelling week, then 15 nights rejected):
each report names the streak and the champion's age, from the second on where to look, and
none advises on when to stop from the rejected candidate; `hitl accuracy` on the champion
shows no rejected candidate's forecast. The model line of a working model says what it was
refreshed with, in one count (App Home, `/hitl accuracy`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.learning.jobs import Trainer, run_retrain
from bot.sandbox import FakeSlack
from bot.store import Store
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_cli_loop import char_only_file, run
from tests.bot.test_learning import labeled_items
from tests.bot.test_refresh import UNLABELED, answer_next
from tests.ramdisk import RAM_DISK, ram_disk_usable

# each retrain's learning curve remembered by its arguments (tests/bot/conftest.py)
pytestmark = pytest.mark.usefixtures("remembered_curves")


def unlabeled_file(tmp_path: Path) -> Path:
    path = tmp_path / "waiting.jsonl"
    rows = [{"id": f"w{n}", "text": f"zzq{n}invoicexq plus crashvw{n}"} for n in range(20)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def bad_week(tmp_path: Path, monkeypatch) -> tuple[Path, str, list[str]]:
    """v1 promoted, then three retrains rejected in a row (v2–v4): the database, the day v1
    was made champion, and the three reports (`hitl retrain`)."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(unlabeled_file(tmp_path))).exit_code == 0
    assert run(db, "import", str(char_only_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").stdout.startswith("Retrain v1: promoted")
    with Store.open(db) as store:
        made = store.last_run("retrain", ["promoted"])["finished_at"][:10]
    monkeypatch.setenv("HITL_PIPELINE", "word_lr")  # cannot read letters: the gate rejects it
    reports = []
    for prefix in ("b", "c", "d"):
        assert run(db, "import", str(char_only_file(tmp_path, prefix))).exit_code == 0
        reports.append(run(db, "retrain").stdout)
    assert [r.splitlines()[0].split(" (")[0] for r in reports] == [
        "Retrain v2: rejected ❌",
        "Retrain v3: rejected ❌",
        "Retrain v4: rejected ❌",
    ]
    return db, made, reports


@pytest.fixture(scope="module")
def bad_week_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, list]]:
    """``bad_week`` made once for the tests here (four retrains), in a folder of its own set up
    as every test's is (no SLACK_ or HITL_ setting from outside, the folder the working one,
    on the RAM disk where there is one). A test that goes on from it takes a copy
    (``bad_week_in``); the reports are only read."""
    ram = ram_disk_usable()
    folder = Path(tempfile.mkdtemp(dir=RAM_DISK)) if ram else tmp_path_factory.mktemp("week")
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            for name in list(os.environ):
                if name.startswith(("SLACK_", "HITL_")):
                    monkeypatch.delenv(name)
            monkeypatch.chdir(folder)
            week = bad_week(folder, monkeypatch)
        yield week  # the settings and working folder as they were (HITL_PIPELINE too)
    finally:
        if ram:
            shutil.rmtree(folder, ignore_errors=True)


def bad_week_in(tmp_path: Path, monkeypatch, once: tuple[Path, str, list]) -> tuple:
    """``bad_week``'s folder (its database, models folder and files) copied into ``tmp_path``,
    HITL_PIPELINE set as ``bad_week`` leaves it: as if ``bad_week(tmp_path, monkeypatch)`` had
    run here."""
    db, made, reports = once
    shutil.copytree(db.parent, tmp_path, dirs_exist_ok=True)
    monkeypatch.setenv("HITL_PIPELINE", "word_lr")
    return tmp_path / db.name, made, reports


def test_a_run_of_rejections_names_its_streak_and_where_to_look(
    tmp_path: Path, monkeypatch, bad_week_once
):
    db, made, (first, second, third) = bad_week_in(tmp_path, monkeypatch, bad_week_once)
    assert f"Champion: v1 since {made} (" in first
    assert "the first retrain rejected since." in first
    assert "Rejected again and again" not in first
    assert f"2nd rejection in a row: v1 has been champion since {made} (" in second
    assert f"3rd rejection in a row: v1 has been champion since {made} (" in third
    for report in (second, third):
        assert "Rejected again and again: usually labels given since v1 was trained" in report
        # the tools that exist, in the terminal's form (``plain``)
        for tool in ("`hitl stats`", "`/hitl review`", "`hitl export --answers`"):
            assert tool in report

    # a promotion ends the streak: the next rejection is the first again
    monkeypatch.delenv("HITL_PIPELINE")
    assert run(db, "import", str(char_only_file(tmp_path, "e"))).exit_code == 0
    assert run(db, "retrain").stdout.startswith("Retrain v5: promoted")
    monkeypatch.setenv("HITL_PIPELINE", "word_lr")
    assert run(db, "import", str(char_only_file(tmp_path, "f"))).exit_code == 0
    after = run(db, "retrain").stdout
    assert after.startswith("Retrain v6: rejected")
    assert "Champion: v5 since " in after and "the first retrain rejected since." in after


def test_a_rejected_retrains_report_gives_no_when_to_stop_of_its_candidate(bad_week_once):
    _, _, reports = bad_week_once
    for report in reports:
        assert "predictions have settled" not in report and "still changing" not in report
        assert "no model 100 labels older" not in report
        assert "Next 500 labels" not in report and "Accuracy now" not in report
        # where the champion's is, instead
        assert (
            "When to stop: not judged on a rejected candidate; `hitl accuracy` gives v1's" in report
        )


def test_the_champions_accuracy_report_shows_no_rejected_candidates_forecast(
    tmp_path: Path, monkeypatch, bad_week_once
):
    db, _, _ = bad_week_in(tmp_path, monkeypatch, bad_week_once)
    accuracy = run(db, "accuracy").stdout
    assert accuracy.startswith("Model v1 ")
    # v3 and v4 measured learning curves (36, 48 labels); v1 on 12 did not: the champion's
    # report has no forecast rather than a rejected candidate's
    for rejected in ("v2", "v3", "v4"):
        assert f"learning curve of {rejected}" not in accuracy
        assert f"{rejected}'s confidence" not in accuracy
    assert "Next 500 labels: no forecast yet" in accuracy
    # once promoted, a candidate's check is the champion's
    monkeypatch.delenv("HITL_PIPELINE")
    assert run(db, "import", str(char_only_file(tmp_path, "e"))).exit_code == 0
    assert run(db, "retrain").stdout.startswith("Retrain v5: promoted")
    assert "learning curve of v5" in run(db, "accuracy").stdout


async def test_the_model_line_says_what_the_working_model_was_refreshed_with(
    fake_slack: FakeSlack, tmp_path: Path
):
    """r15 read 15 labels: v1's 12 and 3 audit answers given since, held out of its fit to
    gate it. Not "today's labels", and not a second count (12) beside r15."""
    seed(tmp_path / "hitl.db", labeled_items() + UNLABELED + [Item("x", "refund crash")])
    settings = make_settings(
        fake_slack,
        tmp_path,
        labels=("billing", "bug"),
        max_open=1,
        audit_rate=1.0,  # every question an audit: each answer is held out of the refresh
        threshold=1.0,
        refresh_every=3,
    )
    bot: Bot
    async for bot in start_bot(fake_slack, settings):
        await run_retrain(bot.rt, "cli")
        for _ in range(3):
            await answer_next(bot)
        await Trainer.of(bot.rt).settled()
        assert bot.rt.working is not None and bot.rt.working.version == -15
        line = (
            "r15 asks and answers (champion v1, trained on 12 labels, refreshed with the labels"
            " given since it was trained: 15 labels in all, 3 of them audit answers held out"
            " to check it against v1; the working model until the next retrain)"
        )
        accuracy = await (await bot.command("accuracy", "U0ANA")).text()
        assert f"*Asking and answering now:* {line}" in accuracy
        await bot.rt.background.drain(timeout=60)
        assert (await bot.event(signing.app_home_opened_event("U0ANA"))).status == 200
        await bot.fake.next_call("views.publish")
        home = json.dumps(bot.fake.home["U0ANA"], ensure_ascii=False)
        assert line in home and "today's labels" not in home
