"""The wording of counts in reports, App Home and `/hitl` answers (a month's test, findings 2-7):
a report's "new" labels say since which model, a model's cross-validation says how many of its
labels it scored, `--force` is said whenever it was used, one audit answer is singular, and
App Home writes thousands as every other count does. Through the real CLI, and the real server
on the fake Slack for App Home."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.slack.commands import model_line
from tests import signing
from tests.bot.harness import SECRET, Item, make_settings, seed, start_bot
from tests.bot.test_learning import BILLING, BUG


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


def labeled(tmp_path: Path, prefix: str, rows: list[tuple[str, str]]) -> Path:
    path = tmp_path / f"{prefix}.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"{prefix}{n}", "text": text, "label": label}) + "\n"
            for n, (text, label) in enumerate(rows)
        )
    )
    return path


def billing_and_bug(prefix: str) -> list[tuple[str, str]]:
    """Both classes, each text made new by ``prefix`` (a repeat of a text is one label)."""
    rows = [(f"{t} {prefix}", "billing") for t in BILLING]
    return rows + [(f"{t} {prefix}", "bug") for t in BUG]


def report(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_new_labels_say_since_which_model_they_are_counted(tmp_path: Path):
    # "N new" counts the labels since the champion was trained, not since the last run: after
    # a rejected night the next report counts the same labels again, so it says since when
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled(tmp_path, "a", billing_and_bug("one")))).exit_code == 0
    first = report(run(db, "retrain"))
    assert first[1] == f"Labels: {2 * len(BILLING)} ({2 * len(BILLING)} new)"  # the first model
    assert run(db, "import", str(labeled(tmp_path, "b", billing_and_bug("two")))).exit_code == 0
    second = report(run(db, "retrain"))
    assert second[0].startswith("Retrain v2: ")
    assert second[1] == f"Labels: {4 * len(BILLING)} ({2 * len(BILLING)} new since v1 was trained)"


def test_cross_validation_says_how_many_of_a_models_labels_it_scored(tmp_path: Path):
    # one label of a class too small to hold out: v1 trained on 13 labels, its folds scored
    # 12; the next report must not say "on its 12 labels" while v1's said "n=13"
    db = tmp_path / "hitl.db"
    rows = billing_and_bug("one") + [("password reset link expired", "account")]
    n = len(rows)
    assert run(db, "import", str(labeled(tmp_path, "a", rows))).exit_code == 0
    first = report(run(db, "retrain"))
    assert any(f"n={n})" in line for line in first), first
    assert run(db, "import", str(labeled(tmp_path, "b", billing_and_bug("two")))).exit_code == 0
    second = "\n".join(report(run(db, "retrain")))
    v1 = re.search(r"v1 at its own training:.*", second)
    assert v1 is not None, second
    assert f"CV on {n - 1} of its {n} labels; 1 not evaluated, too few examples to hold out" in (
        v1.group(0)
    ), v1.group(0)
    assert f"on its {n - 1} labels" not in second


def test_a_forced_retrain_with_nothing_new_says_it_was_forced(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled(tmp_path, "a", billing_and_bug("one")))).exit_code == 0
    report(run(db, "retrain"))
    forced = report(run(db, "retrain", "--force"))
    assert forced[0].startswith("Retrain v2: promoted ✅ (cli, "), forced
    [why] = [line for line in forced if line.startswith("Why: ")]
    assert why.startswith("Why: forced by cli with no new label; the gate passes it too: "), why
    assert forced[1] == f"Labels: {2 * len(BILLING)} (0 new since v1 was trained)"
    assert "forced by cli" in run(db, "models").stdout  # the version's reason says so too


def test_a_forced_first_model_does_not_say_a_gate_passed_it(tmp_path: Path):
    """A first model is promoted with no gate: forced, its Why line says so, not that the gate
    passes it too."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled(tmp_path, "a", billing_and_bug("one")))).exit_code == 0
    forced = report(run(db, "retrain", "--force"))
    [why] = [line for line in forced if line.startswith("Why: ")]
    assert why.startswith("Why: forced by cli; first model"), why
    assert "gate" not in why, why


def test_one_audit_answer_held_out_is_singular():
    def line(held: int) -> str:
        rt = SimpleNamespace(
            champion=SimpleNamespace(version=5, n_train=131),
            working=SimpleNamespace(version=-155, n_read=155, n_train=155 - held),
        )
        return model_line(rt)

    assert "155 labels in all, 1 of them an audit answer held out to check it against v5" in (
        line(1)
    ), line(1)
    assert "155 labels in all, 3 of them audit answers held out to check it against v5" in (
        line(3)
    ), line(3)


async def test_app_home_writes_thousands_as_queue_does(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"ticket {n} about refunds") for n in range(1200)])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        body, headers = signing.signed_event(signing.app_home_opened_event("U0ANA"), SECRET)
        response = await bot.post(body, headers)
        assert response.status == 200, await response.text()
        await bot.settled()
        home = json.dumps(fake_slack.home["U0ANA"]["blocks"], ensure_ascii=False)
        queue = await (await bot.command("queue")).text()
        waiting = re.search(r"\*Waiting:\* ([\d,]+) items", queue)
        assert waiting is not None and "," in waiting.group(1), queue
        shown = re.search(r"\*Queue:\* ([\d,]+) waiting", home)
        assert shown is not None and shown.group(1) == waiting.group(1), home
