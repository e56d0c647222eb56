"""The server's child processes when something other than memory ends them: a file in the
working folder named like a module the fork server imports (an operator's own click.py), a
fork server that cannot start at all, and a fit child that exits with a Python error (the
code changed on disk under a running server)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.learning import retrain
from bot.learning.jobs import Trainer, run_retrain
from bot.sandbox import FakeSlack
from tests.bot.child_tasks import exits_with_an_error
from tests.bot.harness import Bot
from tests.bot.test_cli_loop import labeled_file, run
from tests.bot.test_refresh import bot  # noqa: F401 - the fixture
from tests.bot.test_serve_process import CHECKOUT, free_port, serve_env
from tests.fake_slack import CHANNEL

# -- the fork server: started without the working folder on its path ---------------------------

# Run as `hitl` runs: a script whose folder (not the working folder) starts the path. With
# DOOMED set, the fork server also imports a module that ends it, as a broken install would:
# first, so that it ends before it imports scikit-learn and scipy for nothing (~1.7 s of CPU).
LAUNCHER = """\
import os
import sys

from bot.learning import children

if os.environ.get("DOOMED"):
    children.CHILD_PRELOAD = ("doomed_preload", *children.CHILD_PRELOAD)

if __name__ == "__main__":
    from bot.cli import main

    sys.argv[0] = "hitl"
    main()
"""


def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The launcher's folder, a working folder with an operator's click.py in it, and a
    folder with a module that ends whatever imports it."""
    bin_, work, lib = tmp_path / "bin", tmp_path / "work", tmp_path / "lib"
    for folder in (bin_, work, lib):
        folder.mkdir()
    (bin_ / "hitl_launcher.py").write_text(LAUNCHER)
    (work / "click.py").write_text('print("my own click.py helper"); raise SystemExit(3)\n')
    (lib / "doomed_preload.py").write_text("raise SystemExit(3)\n")
    return bin_, work, lib


def with_champion(tmp_path: Path) -> Path:
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0  # a champion: `hitl serve` starts children at once
    return db


# A child started as the server starts them (the fork server first, then a child from it).
CHILD_LAUNCHER = """\
import sys

from bot.learning.children import child_context, start_fork_server

if __name__ == "__main__":
    start_fork_server()
    child = child_context().Process(target=print, args=("the child ran",))
    child.start()
    child.join()
    sys.exit(child.exitcode)
"""


def test_children_start_in_a_folder_with_a_click_py(tmp_path: Path):
    """The fork server was started as `python -c …`, the working folder first on its path: it
    imported the operator's click.py (through sqlite_utils), which ended it, and `hitl serve`
    died at start with a bare "Aborted!"."""
    bin_, work, _ = folders(tmp_path)
    (bin_ / "child_launcher.py").write_text(CHILD_LAUNCHER)
    # the suite's own path entries made absolute: a relative one (PYTHONPATH=.) would name the
    # child's working folder, the one with the operator's click.py
    inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    paths = [str(CHECKOUT), *(os.path.abspath(path) for path in inherited if path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run(
        [sys.executable, str(bin_ / "child_launcher.py")],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the child ran" in done.stdout
    assert "my own click.py helper" not in done.stdout + done.stderr


async def test_a_fork_server_that_cannot_start_is_said_in_one_line(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Ended by what it imports (here a module on PYTHONPATH that exits), the fork server
    leaves every child unstartable: `hitl serve` says so in one line, not "Aborted!"."""
    db = await asyncio.to_thread(with_champion, tmp_path)
    bin_, work, lib = folders(tmp_path)
    (work / "click.py").unlink()
    env = serve_env(fake_slack, db, free_port())
    paths = [str(lib), str(CHECKOUT), env.get("PYTHONPATH")]
    env |= {"DOOMED": "1", "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(bin_ / "hitl_launcher.py"), "serve"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Aborted!" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "Unclosed" not in done.stderr, done.stderr  # its Slack session closed, as at a stop
    [line] = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert line.startswith(
        "Error: the server's child processes (scoring, fits) could not start: the fork server"
        " that starts them ended as it started ("
    ), line
    assert line.endswith(
        "anything it printed is above). Check that Python can import slack-hitl's modules here"
        " (a file named like one of them, such as click.py, in a folder on PYTHONPATH?)"
    ), line


# -- a fit child that exits with an error ------------------------------------------------------


async def test_a_fit_child_that_exits_with_an_error_is_not_said_to_lack_memory(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    await run_retrain(bot.rt, "cli")
    trainer = Trainer.of(bot.rt)
    trainer.worker = retrain.FitWorker()
    monkeypatch.setattr(retrain, "compute", exits_with_an_error)  # what the child runs
    caplog.set_level(logging.INFO)
    try:
        outcome = await asyncio.wait_for(run_retrain(bot.rt, "<@U0ADMIN>", force=True), 60)
    finally:
        trainer.worker.close()

    why = (
        "the fit's process died 2 times before it finished (exit code 1): the fit raised an"
        " error (see the log above for its traceback; e.g. the code changed under a running"
        " server: restart it)"
    )
    assert (outcome.status, outcome.reason) == ("failed", f"retrain failed: {why}")
    assert "memory" not in bot.fake.messages(CHANNEL)[-1]["text"]
    assert why in bot.fake.messages(CHANNEL)[-1]["text"]
    [logged] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrain ")]
    assert logged.startswith(f"retrain failed: {why} (n="), logged  # not "retrain vNone failed"


def test_only_a_kill_by_sigkill_suggests_memory():
    assert retrain.died_reason(2, -9) == (
        "the fit's process died 2 times before it finished (exit code -9): it was killed by"
        " SIGKILL, as the kernel's out-of-memory killer does: it likely ran out of memory while"
        " fitting; lower the load, e.g. HITL_PIPELINE=word_lr, or give the server more memory"
    )
    assert retrain.died_reason(2, -11) == (
        "the fit's process died 2 times before it finished (exit code -11): it was killed by"
        " SIGSEGV"
    )
    assert "raised an error" in retrain.died_reason(2, 1)
