"""Every problem with the settings known without Slack comes out in one run (docs audit #3).

README: "Every bad value is reported at once, one line each", and `hitl serve` "refuses to
start, with one line per missing piece". It took three runs: a bad number, then (once fixed)
the channel IDs, then the label set; and `hitl config` took a HITL_CHANNEL of `#general` that
`hitl serve` refuses. Each line is worded as before; only when they come changed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.config import load_settings
from bot.errors import ConfigError
from tests.bot.harness import Item, seed

THRESHOLD = 'HITL_THRESHOLD="abc" is not a number; use a value between 0 and 1'
NOT_AN_ID = (
    '{name}="{channel}" is not a channel ID; copy the ID from the channel\'s details (at the'
    " bottom), e.g. C0123ABCD"
)
NO_LABEL_SET = (
    "no label set: set HITL_LABELS (e.g. HITL_LABELS=billing,bug,account) or import items with"
    " labels (hitl import FILE --label-column label)"
)
MISSING = [
    "SLACK_BOT_TOKEN is not set; copy the Bot User OAuth Token (xoxb-…)",
    "SLACK_SIGNING_SECRET is not set; copy it from Basic Information → App Credentials "
    "(or set SLACK_APP_TOKEN for Socket Mode)",
    "HITL_CHANNEL is not set; give the ID of the channel for questions",
]


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env or {}, prog_name="hitl")


def errors(result) -> list[str]:
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("Error: "), result.stderr
    return [lines[0].removeprefix("Error: "), *lines[1:]]


def tokens(tmp_path: Path, **more: str) -> dict[str, str]:
    return {
        "HITL_DB": str(tmp_path / "hitl.db"),
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "HITL_PORT": "1",
        **more,
    }


def test_serve_says_a_bad_number_the_channel_names_and_no_label_set_in_one_run(tmp_path: Path):
    """The audit's repro: three runs to see three problems."""
    env = tokens(tmp_path, HITL_THRESHOLD="abc", HITL_CHANNEL="#general", HITL_REPORT_CHANNEL="#r")
    result = run("serve", env=env)
    assert result.exit_code == 1
    assert errors(result) == [
        THRESHOLD,
        NOT_AN_ID.format(name="HITL_CHANNEL", channel="#general"),
        NOT_AN_ID.format(name="HITL_REPORT_CHANNEL", channel="#r"),
        NO_LABEL_SET,
    ]
    assert not (tmp_path / "hitl.db").exists()  # a refused start makes no database


def test_serve_says_a_bad_value_with_the_missing_pieces(tmp_path: Path):
    result = run("serve", env={"HITL_DB": str(tmp_path / "hitl.db"), "HITL_VOTES": "abc"})
    assert result.exit_code == 1
    [votes, *rest] = errors(result)
    assert votes.startswith('HITL_VOTES="abc" is not a whole number')
    assert rest == [*MISSING, NO_LABEL_SET]


def test_serve_reads_the_label_set_of_the_database_there_for_a_refused_start(tmp_path: Path):
    """A database with no labelled item, and a channel name: both, in one run."""
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    result = run("serve", env=tokens(tmp_path, HITL_CHANNEL="general"))
    assert result.exit_code == 1
    assert errors(result) == [
        NOT_AN_ID.format(name="HITL_CHANNEL", channel="general"),
        NO_LABEL_SET,
    ]


def test_serve_says_a_route_for_no_label_with_a_bad_value(tmp_path: Path):
    (tmp_path / "hitl.toml").write_text(
        '[hitl]\nlabels = ["billing", "bug"]\n[hitl.routes]\nBilling = "C0BILLING"\n'
    )
    result = run("serve", env=tokens(tmp_path, HITL_CHANNEL="C1", HITL_THRESHOLD="abc"))
    assert result.exit_code == 1
    assert errors(result) == [
        THRESHOLD,
        "[hitl.routes] names 'Billing', which is not a label in force (billing, bug); did you"
        " mean 'billing'?",
    ]


def test_a_refused_value_is_not_also_said_to_be_missing(tmp_path: Path):
    """`channel = 5` is refused as not text; it is not "not set", and bad labels are no
    missing label set."""
    (tmp_path / "hitl.toml").write_text("[hitl]\nchannel = 5\n")
    result = run("serve", env=tokens(tmp_path, HITL_LABELS="billing,Billing"))
    assert result.exit_code == 1
    [channel, labels] = errors(result)
    assert channel == 'hitl.toml channel="5" must be text'
    assert labels.startswith('HITL_LABELS="billing,Billing" ')


def test_serve_still_says_one_missing_piece_alone(tmp_path: Path):
    result = run("serve", env=tokens(tmp_path, HITL_LABELS="billing,bug"))
    assert result.exit_code == 1
    assert errors(result) == [MISSING[2]]


def test_config_refuses_a_channel_name_as_serve_does_after_showing_the_values():
    result = run("config", env={"HITL_CHANNEL": "#general"})
    assert result.exit_code == 1
    assert errors(result) == [NOT_AN_ID.format(name="HITL_CHANNEL", channel="#general")]
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["HITL_CHANNEL", "#general", "(env)"] in rows


def test_config_shows_the_values_then_every_bad_one(tmp_path: Path):
    (tmp_path / "hitl.toml").write_text('[hitl]\nvotes = 3\n[hitl.routes]\nbilling = "#billing"\n')
    result = run("config", env={"HITL_THRESHOLD": "abc", "HITL_REPORT_CHANNEL": "reports"})
    assert result.exit_code == 1
    assert errors(result) == [
        THRESHOLD,
        NOT_AN_ID.format(name="HITL_REPORT_CHANNEL", channel="reports"),
        NOT_AN_ID.format(name="routes.billing", channel="#billing"),
    ]
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["HITL_THRESHOLD", "abc", "(env)"] in rows  # as given, not the default it fell to
    assert ["HITL_VOTES", "3", "(hitl.toml)"] in rows
    assert ["routes.billing", "#billing", "(hitl.toml)"] in rows


def test_config_says_a_file_it_cannot_read_and_a_bad_environment_value(tmp_path: Path):
    (tmp_path / "hitl.toml").write_text("[hitl\n")
    result = run("config", env={"HITL_THRESHOLD": "abc"})
    assert result.exit_code == 1
    [file, threshold] = errors(result)
    assert file.startswith("hitl.toml: not valid TOML (")
    assert threshold == THRESHOLD


def test_load_settings_refuses_channel_names_for_every_command():
    with pytest.raises(ConfigError) as raised:
        load_settings({"HITL_CHANNEL": "https://x.slack.com/archives/C01", "HITL_VOTES": "0"})
    assert raised.value.problems[1:] == [
        NOT_AN_ID.format(name="HITL_CHANNEL", channel="https://x.slack.com/archives/C01")
    ]
    assert load_settings({"HITL_CHANNEL": "C0123", "HITL_REPORT_CHANNEL": "G0456"}).channel == (
        "C0123"
    )
