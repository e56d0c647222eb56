"""Small privacy fixes: Bolt's response bodies wait for -vvv, a new export is its owner's only,
a hitl.toml whose secrets others can read is warned about, and a set-aside question's
notification text no longer asks."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot import logs
from bot.cli import cli
from bot.sandbox import FakeSlack
from tests.bot.harness import Item, make_settings, seed, start_bot
from tests.bot.test_cli_loop import labeled_file
from tests.bot.test_review import decision
from tests.bot.test_slack_bot import buttons
from tests.fake_slack import CHANNEL


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, prog_name="hitl")


# -- D7: Bolt's DEBUG lines (response bodies, item text) only at -vvv -------------------------


@contextmanager
def configured_log(verbosity: int) -> Iterator[io.StringIO]:
    """The log `hitl -v…` (``verbosity`` v's) writes, as ``logs.configure`` sets it up: the
    root handler it makes, writing here; every level it sets is put back afterwards."""
    root = logging.getLogger()
    names = [*logs.LIBRARIES, "bot", "bot.bolt"]
    levels = {name: logging.getLogger(name).level for name in names}
    handlers, root_level = root.handlers[:], root.level
    root.handlers.clear()  # pytest's capture handlers would make basicConfig do nothing
    out = io.StringIO()
    try:
        logs.configure(verbosity)
        for handler in root.handlers:
            handler.setStream(out)
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def skip_in_review_to_the_next_item(fake: FakeSlack, tmp_path: Path) -> None:
    """Two split votes wait in review; an admin opens `/hitl review` and skips the first: the
    modal's next item, its text included, is the body Bolt answers the submission with."""
    seed(
        tmp_path / "hitl.db",
        [Item("a", "refund for Jane Doe card 4111"), Item("b", "Zelda Quux +44 7700 900999")],
    )
    settings = make_settings(fake, tmp_path, max_open=2, votes=3)
    async for bot in start_bot(fake, settings):
        await bot.dispatcher.fill()
        for message in bot.posted():
            for user, label in zip(("U0ANA", "U0RAJ", "U0MEI"), buttons(message)[:3], strict=True):
                assert (await bot.action(bot.button_payload(message, user, label))).status == 200
        await bot.settled()
        assert (await bot.command("review", "U0ADMIN")).status == 200
        view = (await bot.fake.next_call("views.open")).reply["view"]
        answer = await (await bot.action(decision(view, "skip"))).text()
        assert "Zelda Quux" in answer or "refund for Jane" in answer  # the next item


@pytest.mark.parametrize("verbosity", [1, 2])
async def test_below_vvv_bolt_logs_no_response_body(
    fake_slack: FakeSlack, tmp_path: Path, verbosity: int
):
    with configured_log(verbosity) as log:
        await skip_in_review_to_the_next_item(fake_slack, tmp_path)
        # -vv still turns on slack-hitl's own DEBUG lines
        own = logging.getLogger("bot.slack.dispatch").isEnabledFor(logging.DEBUG)
        assert own == (verbosity == 2)
    text = log.getvalue()
    assert not [line for line in text.splitlines() if "Responding with" in line]
    assert "DEBUG bot.bolt" not in text
    assert "Zelda Quux" not in text and "Jane Doe" not in text


async def test_vvv_logs_bolts_response_bodies(fake_slack: FakeSlack, tmp_path: Path):
    with configured_log(3) as log:
        await skip_in_review_to_the_next_item(fake_slack, tmp_path)
    bodies = [line for line in log.getvalue().splitlines() if "Responding with" in line]
    assert any("DEBUG bot.bolt" in line for line in bodies), bodies
    assert any("Zelda Quux" in line or "refund for Jane" in line for line in bodies)


def test_bolts_info_and_warning_lines_show_as_before():
    for verbosity, shown in ((0, logging.WARNING), (1, logging.INFO), (2, logging.INFO)):
        with configured_log(verbosity) as log:
            logs.configure(verbosity)
            bolt = logging.getLogger("bot.bolt")
            bolt.debug("debug line")
            bolt.info("info line")
            bolt.warning("warning line")
        text = log.getvalue()
        assert "debug line" not in text
        assert ("info line" in text) == (shown <= logging.INFO), (verbosity, text)
        assert "warning line" in text


# -- D8: a new export file is 0600 ---------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "hitl.db"
    assert run("--db", str(path), "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    return path


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_new_export_file_is_readable_by_its_owner_only(db: Path, tmp_path: Path):
    new = tmp_path / "new.jsonl"
    with umask(0o022):
        result = run("--db", str(db), "export", "-o", str(new))
        answers = tmp_path / "answers.csv"
        run("--db", str(db), "export", "--answers", "--format", "csv", "-o", str(answers))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    assert stat.S_IMODE(answers.stat().st_mode) == 0o600


def test_a_stricter_umask_still_applies_to_a_new_export(db: Path, tmp_path: Path):
    new = tmp_path / "new.jsonl"
    with umask(0o277):
        run("--db", str(db), "export", "-o", str(new))
    assert stat.S_IMODE(new.stat().st_mode) == 0o400


def test_an_existing_export_file_keeps_its_mode(db: Path, tmp_path: Path):
    old = tmp_path / "shared.jsonl"
    old.write_text("old\n")
    old.chmod(0o644)
    with umask(0o022):
        run("--db", str(db), "export", "-o", str(old))
    assert old.read_text() != "old\n"
    assert stat.S_IMODE(old.stat().st_mode) == 0o644


# -- D9: secrets in a hitl.toml others can read ------------------------------------------------

SECRETS = (
    "[hitl]\n"
    'slack_bot_token = "xoxb-111-222-secretvalue"\n'
    'slack_signing_secret = "abcdefsecretsigning"\n'
)


def toml(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "hitl.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_config_file_with_secrets_readable_by_others_is_warned_about_once(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
):
    path = toml(tmp_path, SECRETS, mode)
    monkeypatch.setenv("HITL_CONFIG", str(path))
    warning = (
        f"Warning: {path} holds secrets and is readable by other users (mode {mode:04o}):"
        f" `chmod 600 {path}`\n"
    )
    for args in (["config"], ["--db", str(db), "stats"], ["--db", str(db), "export"]):
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert result.stderr.count(warning) == 1, (args, result.stderr)
        assert "secretvalue" not in result.output


def test_an_api_token_alone_counts_as_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = toml(tmp_path, '[hitl]\napi_token = "apitoken-0123456789abcdef-0123"\n', 0o644)
    monkeypatch.setenv("HITL_CONFIG", str(path))
    assert "holds secrets and is readable by other users" in run("config").stderr


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        (SECRETS, 0o600),  # the owner's only
        (SECRETS, 0o400),
        ('[hitl]\nchannel = "C0123"\n', 0o644),  # nothing secret in it
    ],
)
def test_no_warning_for_a_private_file_or_one_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, mode: int
):
    monkeypatch.setenv("HITL_CONFIG", str(toml(tmp_path, text, mode)))
    result = run("config")
    assert result.exit_code == 0, result.output
    assert "readable by other users" not in result.stderr


# -- D10: a set-aside question's notification text ----------------------------------------------


async def test_a_question_set_aside_by_two_skips_says_so_in_its_text(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("i0", "refund please")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        assert message["text"] == "Which label fits? refund please"
        for user in ("U0ANA", "U0RAJ"):
            assert (await bot.action(bot.button_payload(message, user, None))).status == 200
        assert bot.store.get_item("i0")["status"] == "skipped"
        await bot.settled()
        aside = bot.fake.message(CHANNEL, message["ts"])
        assert "Set aside after skips" in json.dumps(aside["blocks"])
        assert aside["text"] == "Set aside: refund please"


async def test_a_question_an_admin_removes_in_review_says_so_in_its_text(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("i0", "refund please")])
    settings = make_settings(fake_slack, tmp_path, max_open=1, votes=3)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        for user, label in zip(("U0ANA", "U0RAJ", "U0MEI"), buttons(message)[:3], strict=True):
            assert (await bot.action(bot.button_payload(message, user, label))).status == 200
        await bot.settled()  # a split: it waits in review
        assert bot.fake.message(CHANNEL, message["ts"])["text"].startswith("Which label fits?")
        assert (await bot.command("review", "U0ADMIN")).status == 200
        view = (await bot.fake.next_call("views.open")).reply["view"]
        assert (await bot.action(decision(view, "remove"))).status == 200
        await bot.settled()
        assert bot.store.get_item("i0")["status"] == "skipped"
        aside = bot.fake.message(CHANNEL, message["ts"])
        assert "Set aside by" in json.dumps(aside["blocks"])
        assert aside["text"] == "Set aside: refund please"
