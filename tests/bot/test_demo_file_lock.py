"""A running `hitl demo` holds the flock of the database file it serves (bot/store/lock.py:
``hold_file``), as `hitl serve` does, so a server or a command through another name of that
file (a hard link) is refused. The demo took its lock before it deleted and recreated its
database: the flock sat on the deleted file (or, at a first start, on none), and a server on
a hard link of the live database started beside the demo."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.demo import DemoOptions, load_data, running_demo
from bot.demo.run import prepare_database
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.test_hard_links import cli, ended_or_listening
from tests.bot.test_serve_process import CHECKOUT, free_port, serve_env

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the file's lock is Linux's")

DEMO_LABELS = "billing,bug,account,how_to,feature_request,praise"  # the generated data's


@pytest.mark.parametrize("start", ["first", "again"])
async def test_a_server_or_command_on_a_hard_link_of_a_running_demos_database_is_refused(
    fake_slack: FakeSlack, tmp_path: Path, start: str
):
    """``first``: no database yet; ``again``: the demo replaces the one an earlier demo made."""
    (tmp_path / "demo").mkdir()
    (tmp_path / "snapshot").mkdir()
    db = tmp_path / "demo" / "demo.db"
    link = tmp_path / "snapshot" / "demo.db"
    if start == "again":
        prepare_database(db)  # as an earlier demo left it: its marker beside
        Store.open(db).close()
    # The demo in this process (the code `hitl demo` runs: its lock, then its new database);
    # the server and the command it refuses are processes of their own. A demo's interpreter
    # and fork server of its own cost ~5 s of CPU.
    options = DemoOptions(db=db, port=0)
    async with running_demo(options, load_data(options), echo=lambda _line: None) as demo:
        os.link(db, link)  # `cp -al` of the demo's folder, while it runs

        env = {**serve_env(fake_slack, link, free_port()), "HITL_LABELS": DEMO_LABELS}
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bot", "serve"),
            env={**env, "PYTHONPATH": str(CHECKOUT)},
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            said = await asyncio.wait_for(ended_or_listening(server), 60)
            assert "listening on" not in said, said
            assert await asyncio.wait_for(server.wait(), 60) == 1
        finally:
            if server.returncode is None:
                server.kill()
                await server.wait()
        [line] = said.strip().splitlines()
        assert line.startswith(
            f"Error: {link} is in use by another hitl server or demo under another name, {db}"
            f" (a hard link to the same file; pid {os.getpid()} on "
        ), line

        csv = tmp_path / "more.csv"
        csv.write_text("id,text\nm1,my card was charged twice\n")
        refused = await asyncio.to_thread(cli, link, "import", str(csv))
        assert refused.returncode == 1, refused
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith(
            f"Error: {link} is the database a hitl server or demo writes under another name,"
            f" {db} (a hard link to the same file; pid {os.getpid()} on "
        ), line
        assert demo.rt.store.db["items"].count > 0  # the demo goes on
