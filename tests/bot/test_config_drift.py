"""Settings that drifted from the label set stored by `hitl labels` (an outside drift test):
a route or guideline for a label retired since (HIGH 2) is warned of and ignored, not a
refused start; HITL_LABELS that the stored set overrides (MEDIUM 6) is said at start and by
`hitl labels show`."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.config import Guideline
from bot.errors import ConfigError
from bot.labelset import configured_labels_line, retired_note
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import LABELS, Item, make_settings, seed, start_bot

ITEMS = [Item("a", "refund please", "billing"), Item("b", "app crashes"), Item("c", "login")]
GUIDE = {"billing": Guideline(description="Money")}


def retire_billing(db: Path) -> None:
    seed(db, ITEMS)
    with Store.open(db) as store:
        store.change_label_set("retire", "billing", current=list(LABELS), user_id="U0ADMIN")


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_a_route_and_guidelines_for_a_retired_label_are_warned_of_and_the_bot_starts(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """`/hitl labels retire billing` with hitl.toml routing billing: the next start exited 1
    with the typo message ("names 'billing', which is not a label in force")."""
    retire_billing(tmp_path / "hitl.db")
    fake_slack.add_channel("C0BILLING", "billing")  # checked at start as before: unused now
    settings = make_settings(
        fake_slack, tmp_path, routes={"billing": "C0BILLING"}, guidelines=GUIDE
    )
    caplog.set_level(logging.WARNING)
    async for bot in start_bot(fake_slack, settings):
        assert "billing" not in bot.store.stored_labels()
    [said] = [line for line in warnings(caplog) if "names 'billing'" in line]
    assert said.startswith(
        "hitl.toml names 'billing' in [hitl.routes] and [labels.billing], but billing was"
        " retired by U0ADMIN on "
    )
    assert said.endswith(
        ": unused while it is retired (no question is predicted billing). Remove it from"
        " [hitl.routes] and [labels.billing], or `hitl labels add billing` to use it again"
    )


async def test_a_name_neither_in_force_nor_retired_is_still_refused(
    fake_slack: FakeSlack, tmp_path: Path
):
    retire_billing(tmp_path / "hitl.db")
    settings = make_settings(fake_slack, tmp_path, routes={"billing": "C0B", "bugz": "C0BUGS"})
    with pytest.raises(ConfigError) as refused:
        async for _bot in start_bot(fake_slack, settings):
            pass
    assert refused.value.problems == [
        "[hitl.routes] names 'bugz', which is not a label in force (bug, account, how_to,"
        " feature_request, praise)"
    ]


def test_a_start_refused_for_another_reason_does_not_name_the_retired_route(tmp_path: Path):
    """`hitl serve`'s one run of every problem (``start_problems``) had the retired route as a
    second one."""
    retire_billing(tmp_path / "hitl.db")
    config = tmp_path / "hitl.toml"
    config.write_text('[hitl.routes]\nbilling = "C0BILLING"\n[labels.billing]\ndescription = "$"\n')
    env = {
        "HITL_DB": str(tmp_path / "hitl.db"),
        "HITL_CONFIG": str(config),
        "SLACK_SIGNING_SECRET": "s",
        "HITL_CHANNEL": "C1",
        "HITL_PORT": "1",
    }
    result = CliRunner().invoke(cli, ["serve"], env=env, prog_name="hitl")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: SLACK_BOT_TOKEN is not set; copy the Bot User OAuth Token (xoxb-…)"
    ]


def test_the_retire_reply_names_the_route_and_guidelines_with_the_fix(tmp_path: Path):
    settings = make_settings(FakeSlack(), tmp_path, routes={"a&b": "C0AB"}, guidelines=GUIDE)
    cli_note = retired_note("billing", 2, slack=False, settings=settings)
    assert cli_note.endswith(
        " `hitl labels add billing` brings them back. hitl.toml still names billing in"
        " [labels.billing]: unused while retired; `hitl serve` warns of it at each start until"
        " you remove it there, or `hitl labels add billing` brings the label back."
    )
    slack_note = retired_note("a&amp;b", 0, slack=True, settings=settings)  # escaped by Slack's
    assert slack_note == (
        "No item was labeled `a&amp;b`, so training and export keep every item. `hitl.toml`"
        " still names `a&amp;b` in `[hitl.routes]`: unused while retired; the bot warns of it"
        " at each start until it is removed there (by whoever runs the bot), or `/hitl labels"
        " add a&amp;b` brings the label back."
    )
    assert retired_note("bug", 0, slack=False, settings=settings) == (
        "No item was labeled bug, so training and export keep every item."
    )


def rename_bug(db: Path) -> None:
    seed(db, ITEMS)
    with Store.open(db) as store:
        store.change_label_set("rename", "bug", "defect", current=list(LABELS), user_id="U0A")
        store.change_label_set("retire", "praise", current=list(LABELS), user_id="U0A")


async def test_hitl_labels_the_stored_set_overrides_is_said_at_start(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """HITL_LABELS gained refund after `/hitl labels rename bug defect`: the start said
    nothing, and refund was never offered."""
    rename_bug(tmp_path / "hitl.db")
    settings = make_settings(fake_slack, tmp_path, labels=(*LABELS, "refund"))
    caplog.set_level(logging.WARNING)
    async for _bot in start_bot(fake_slack, settings):
        pass
    [said] = [line for line in warnings(caplog) if "HITL_LABELS" in line]
    assert said == (
        "HITL_LABELS is not in force: the label set was changed with hitl labels, and the"
        " stored set (billing, defect, account, how_to, feature_request) wins; refund is not"
        " in it, so no question offers it (`hitl labels add refund`); bug is now defect;"
        " praise was retired. Make HITL_LABELS the stored set, or unset it, to stop this"
        " warning"
    )


def test_hitl_labels_show_says_it_too_and_an_agreeing_or_unset_one_is_not_told(tmp_path: Path):
    db = tmp_path / "hitl.db"
    rename_bug(db)
    run = CliRunner().invoke
    env = {"HITL_DB": str(db), "HITL_LABELS": "billing,bug,account,refund"}
    shown = run(cli, ["labels", "show"], env=env, prog_name="hitl")
    assert shown.exit_code == 0, shown.output
    assert "Warning: HITL_LABELS is not in force: " in shown.stdout
    assert "`hitl labels add refund`" in shown.stdout
    assert "the stored set also has how_to, feature_request" in shown.stdout
    settings = make_settings(FakeSlack(), tmp_path)
    with Store.open(db) as store:
        stored = store.stored_labels()
        assert configured_labels_line(settings.with_changes(labels=()), store) is None
        same = settings.with_changes(labels=tuple(reversed(stored)))
        assert configured_labels_line(same, store) is None


def test_a_route_under_an_old_name_is_named_when_its_label_is_retired(tmp_path: Path):
    """hitl.toml routes `billing`, renamed to `money` since: the route follows the rename
    (``follow_renames``), so retiring `money` leaves it unused, but the retire's reply and
    `hitl labels show` (as `hitl serve`'s start) looked only for a key `money` and said
    nothing."""
    seed(tmp_path / "hitl.db", ITEMS)
    config = tmp_path / "hitl.toml"
    config.write_text('[hitl.routes]\nbilling = "C0BILLING"\n')
    env = {
        "HITL_DB": str(tmp_path / "hitl.db"),
        "HITL_CONFIG": str(config),
        "HITL_LABELS": ",".join(LABELS),
        "USER": "ana",
    }

    def hitl(*args: str) -> str:
        result = CliRunner().invoke(cli, args, env=env, prog_name="hitl")
        assert result.exit_code == 0, result.output
        return result.stdout

    hitl("labels", "rename", "billing", "money")
    retired = hitl("labels", "retire", "money")
    assert retired.splitlines()[-1].endswith(
        f" brings it back. {config} still names money in [hitl.routes] (as billing): unused"
        " while retired; `hitl serve` warns of it at each start until you remove it there, or"
        " `hitl labels add money` brings the label back."
    )
    [warning] = [line for line in hitl("labels", "show").splitlines() if "names" in line]
    assert warning.startswith(
        f"Warning: {config} names 'billing' (now money) in [hitl.routes], but money was retired"
        " by cli:ana on "
    )
    assert warning.endswith(
        "Remove it from [hitl.routes], or `hitl labels add money` to use it again"
    )
