"""A `hitl serve` refused at start (Slack refuses the token or a channel) left an empty database,
its lock file, and even missing folders at a path that may be a typo (`hitl --db typo.db
serve`): the next start then served that empty database without saying it made a new one, and
`hitl stats` reported zeros instead of "no database". A refused start now leaves nothing it
made, and never what another process made or wrote meanwhile; a missing folder is refused in
one line, as `hitl import` refuses it. HITL_DB a symlink to a file not there yet is said to be
a new database, as a plain path is (an outside test of the new-database build)."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from bot import server
from bot.cli import cli
from bot.errors import ConfigError, HitlError, StoreError
from bot.sandbox import FakeSlack
from bot.server import init_app
from bot.store import Store
from bot.store.lock import lock_path
from tests.bot.harness import LABELS, make_settings, start_bot
from tests.bot.test_new_database_race import ENV, WAIT, hitl_import, line_of
from tests.bot.test_serve_process import free_port

REFUSED = {
    "bad bot token": {"slack_bot_token": "xoxb-0000-wrong"},
    "unknown channel": {"channel": "C0NOSUCH"},
    # refused later, by Socket Mode's connection, once the models folder was made
    "bad app token": {"slack_app_token": "xapp-1-wrong", "slack_signing_secret": None},
}
NEW = "created a new, empty database"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def stats(db: Path) -> str:
    result = CliRunner().invoke(
        cli, ["--db", str(db), "stats"], env={"HITL_LABELS": ",".join(LABELS)}, prog_name="hitl"
    )
    return result.output


@pytest.mark.parametrize("case", REFUSED)
async def test_a_refused_start_leaves_no_database_nor_lock_file(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
):
    folder = tmp_path / "data"
    folder.mkdir()
    settings = make_settings(fake_slack, tmp_path, db=folder / "typo.db", port=free_port())
    with caplog.at_level(logging.WARNING, logger="bot.server"):
        with pytest.raises(ConfigError):
            await asyncio.wait_for(server.serve(settings.with_changes(**REFUSED[case])), 30)
    # the refusal is the start's one word: it does not say it made what it removed
    assert not [r for r in caplog.records if NEW in r.getMessage()]
    caplog.clear()
    assert names(folder) == []  # no database, -wal, -shm, lock file, nor a build's name
    assert "no database at" in stats(settings.db)
    assert names(folder) == []
    # fixed, started again on the same path: it says it made a new, empty database
    with caplog.at_level(logging.WARNING, logger="bot.server"):
        async for _bot in start_bot(fake_slack, settings):
            pass
    assert [r for r in caplog.records if NEW in r.getMessage()]


async def test_a_start_refused_for_its_port_leaves_nothing_and_never_asks_slack(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The port was bound only after start-up (Slack asked, the database made and warned of
    as new): a start refused for a port in use kept a new, empty database and its lock file."""
    folder = tmp_path / "data"
    folder.mkdir()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        settings = make_settings(fake_slack, tmp_path, db=folder / "hitl.db", port=port)
        with caplog.at_level(logging.WARNING, logger="bot.server"):
            with pytest.raises(HitlError, match=f"^port {port} on 127.0.0.1 is in use"):
                await asyncio.wait_for(server.serve(settings), 30)
    assert names(folder) == []
    assert not [r for r in caplog.records if NEW in r.getMessage()]
    assert fake_slack.calls == []


def test_serve_makes_no_missing_folder_and_says_so_in_one_line(tmp_path: Path):
    """Through the real CLI: refused before the lock file, nothing made, no traceback."""
    db = tmp_path / "typo-folder" / "hitl.db"
    env = {
        **ENV,
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": "secret",
        "HITL_CHANNEL": "C0HITL",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",  # never asked: refused before
        "HITL_HOST": "127.0.0.1",
        "HITL_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--db", str(db), "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,  # refused at once; the old code served on, retrying Slack
    )
    assert done.returncode != 0
    assert (
        f"{db}: folder {db.parent} does not exist; create it or set HITL_DB"
        in done.stderr.strip().splitlines()[-1]
    )
    assert "Traceback" not in done.stderr
    assert names(tmp_path) == []


BESIDE = {  # commands that write to the new database and end, beside the start
    "a label added to it": [["labels", "add", "refund"]],
    "an item deleted from it": [
        ["import", "items.csv"],
        ["delete", "T-1", "T-2", "--reason", "personal data", "--yes"],
    ],
}


def hitl_command(db: Path, tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess:
    """A `hitl` command in a process of its own, on ``db``, in ``tmp_path``."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "--db", str(db), *args],
        env=ENV,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("beside", list(BESIDE))
async def test_a_refused_start_keeps_a_database_other_commands_wrote_to(
    fake_slack: FakeSlack, tmp_path: Path, beside: str
):
    """A label set change, a deletion's record (which keeps a later import from bringing the
    deleted text back): written by another command beside the start, with no item left, they
    are never removed with the database the refused start made (an outside test: both were
    lost, as only items were looked for)."""
    settings = make_settings(fake_slack, tmp_path, port=free_port(), **REFUSED["bad bot token"])
    (tmp_path / "items.csv").write_text("id,text\nT-1,call me at 555 0100\nT-2,the app crashes\n")
    ran: list[subprocess.CompletedProcess] = []

    def configure(_rt) -> None:  # after the database is made, before Slack is asked
        ran.extend(hitl_command(settings.db, tmp_path, args) for args in BESIDE[beside])

    app = init_app(settings, run_background=False, configure=configure, retry_base=0.01)
    with pytest.raises(ConfigError):
        async with TestServer(app, host="127.0.0.1"):
            pass
    assert [r.returncode for r in ran] == [0] * len(BESIDE[beside]), [r.stderr for r in ran]
    assert settings.db.exists()
    with Store.open(settings.db, create=False) as store:
        if beside == "a label added to it":
            assert "refund" in store.labels_not_in_force().kept
        else:  # the deletion's record: the same rows imported again are skipped
            assert store.count_items()["new"] == 0
    if beside == "an item deleted from it":
        again = hitl_command(settings.db, tmp_path, ["import", "items.csv"])
        assert again.returncode == 0, again.stderr
        with Store.open(settings.db, create=False) as store:
            assert store.get_item("T-1") is None and store.get_item("T-2") is None


@pytest.mark.parametrize("beside", ["an import into it", "a process that has it open"])
async def test_a_refused_start_keeps_a_database_another_process_uses(
    fake_slack: FakeSlack, tmp_path: Path, beside: str
):
    """What another process wrote into the new database, or has open (a `hitl import` beside
    the start, about to write), is never removed with it."""
    settings = make_settings(fake_slack, tmp_path, port=free_port(), **REFUSED["bad bot token"])
    children: list[subprocess.Popen] = []
    ran: list[subprocess.CompletedProcess] = []

    def configure(_rt) -> None:  # after the database is made, before Slack is asked
        if beside == "an import into it":
            ran.append(hitl_import(settings.db, tmp_path))
            return
        code = (
            "import sys\n"
            "from bot.store import Store\n"
            f"store = Store.open({str(settings.db)!r}, create=False)\n"
            "print('open', flush=True)\n"
            "sys.stdin.readline()\n"
            "store.close()\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        children.append(child)
        assert line_of(child) == "open\n"

    try:
        app = init_app(settings, run_background=False, configure=configure, retry_base=0.01)
        with pytest.raises(ConfigError):
            async with TestServer(app, host="127.0.0.1"):
                pass
        assert settings.db.exists()
        if beside == "an import into it":
            assert ran[0].returncode == 0, ran[0].stderr
            with Store.open(settings.db, create=False) as store:
                assert store.count_items()["new"] == 2
    finally:
        for child in children:
            try:
                child.communicate(b"go on\n", timeout=WAIT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(WAIT)
    assert [child.returncode for child in children] in ([], [0])
    assert "no database at" not in stats(settings.db)


async def test_a_symlink_to_a_database_not_there_yet_is_said_to_be_made(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """HITL_DB a symlink whose target is not there yet (a volume not mounted, a typo in the
    link): the start says it made a new, empty database, as for a plain path (it said nothing:
    the link was there). A refused start removes the target it made and keeps the link; a
    target whose folder is missing is refused in one line, and the folder is not made."""
    (tmp_path / "volume").mkdir()
    target = tmp_path / "volume" / "hitl.db"
    link = tmp_path / "hitl.db"
    link.symlink_to(target)
    settings = make_settings(fake_slack, tmp_path, db=link, port=free_port())
    with pytest.raises(ConfigError):
        await asyncio.wait_for(server.serve(settings.with_changes(**REFUSED["bad bot token"])), 30)
    assert names(tmp_path / "volume") == [] and link.is_symlink()
    assert not lock_path(target).exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bot.server"):
        async for bot in start_bot(fake_slack, settings):
            assert bot.store.count_items()["new"] == 0
    [said] = [r.getMessage() for r in caplog.records if NEW in r.getMessage()]
    assert said.startswith(f"{NEW} at {link} (nothing was there)")
    assert target.is_file()

    gone = tmp_path / "hitl2.db"
    gone.symlink_to(tmp_path / "unmounted" / "hitl.db")
    with pytest.raises(StoreError) as raised:
        await asyncio.wait_for(server.serve(settings.with_changes(db=gone)), 30)
    assert str(raised.value) == (
        f"{gone}: folder {tmp_path / 'unmounted'} does not exist; create it or set HITL_DB"
    )
    assert not (tmp_path / "unmounted").exists()
    assert gone.is_symlink()
