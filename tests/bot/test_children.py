"""Where the server's children start from (bot/learning/children.py)."""

from __future__ import annotations

import asyncio
import errno
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from bot.learning.children import child_context, has_champion, start_fork_server


def test_a_fork_server_that_cannot_start_early_is_left_to_the_first_child(
    monkeypatch: pytest.MonkeyPatch,
):
    """`hitl serve` starts the fork server before anything else, outside its one-line error
    handling: a failure there (no file descriptor left, say) must not end the command with a
    traceback. The first child tries again, where a failure is reported as before."""
    tries: list[int] = []

    def refuse() -> None:
        tries.append(1)
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", refuse)
    start_fork_server()  # raises nothing
    uses_fork_server = child_context().get_start_method() == "forkserver"
    assert tries == ([1] if uses_fork_server else [])


def test_a_champion_looked_for_says_nothing_of_damaged_metadata(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """`hitl serve` asks before it starts; the start says a damaged ``vN.json`` once itself
    (``models_problem``): asking logged it too."""
    models = tmp_path / "hitl.db.models"
    models.mkdir()
    (models / "v1.json").write_text("{broken")
    assert not has_champion(models)
    assert caplog.records == []


def test_a_champion_is_found_from_its_metadata_without_importing_scikit_learn(tmp_path: Path):
    """`hitl serve` starts the fork server early only where a champion waits to score
    (`has_champion`). The question is asked before the server's imports, so answering it must
    not import scikit-learn itself; a folder it cannot read counts as no champion."""
    from model import TextClassifier
    from model.registry import ModelRegistry

    models = tmp_path / "hitl.db.models"
    registry = ModelRegistry(models)
    clf = TextClassifier().fit(["red car", "blue sky", "red sun", "blue sea"], list("xyxy"))
    assert not has_champion(models)
    registry.save(clf, n_train=4)
    assert not has_champion(models)  # a candidate is not a champion
    registry.promote(1)
    assert has_champion(models)
    (tmp_path / "a file").write_text("")
    assert not has_champion(tmp_path / "a file" / "below it")  # "a file" is a file
    code = (
        "import sys; from bot.learning.children import has_champion;"
        f"print(has_champion({str(models)!r}),"
        " [m for m in ('numpy', 'sklearn') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split(maxsplit=1) == ["True", "[]\n"]


def hitl_imports(
    tmp_path: Path, command: str, module: str, before: str = ""
) -> subprocess.CompletedProcess:
    """`hitl --db tmp_path/hitl.db command` in a process of its own, with no Slack or HITL
    settings (``before`` run first); it prints, at its exit, which of scipy.special and
    ``module`` it imported, in import order."""
    code = (
        f"import atexit, sys\n{before}"
        "atexit.register(lambda: print([m for m in sys.modules if m in ('scipy.special',"
        f" {module!r})]))\n"
        "from bot.cli import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "HITL_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-c", code, "--db", str(tmp_path / "hitl.db"), command],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def test_a_server_with_a_champion_imports_scipy_special_before_its_own_modules(tmp_path: Path):
    """Loading the champion imports skops.io, which looks for each of scipy.special's few
    hundred functions in every module imported before scipy.special, one after the other
    (``skops.io._utils.whichmodule``): after the server's ~650 modules that was 0.25 s of CPU
    of every start. `hitl serve` imports it first where a champion waits. (The start here is
    refused for its missing settings, after the server's imports; the fork server imports
    nothing, as in test_cli_interrupts.py.)"""
    from model import TextClassifier
    from model.registry import ModelRegistry

    registry = ModelRegistry(tmp_path / "hitl.db.models")
    clf = TextClassifier().fit(["red car", "blue sky", "red sun", "blue sea"], list("xyxy"))
    registry.save(clf, n_train=4)
    registry.promote(1)
    done = hitl_imports(
        tmp_path,
        "serve",
        "bot.server",
        "from bot.learning import children\nchildren.CHILD_PRELOAD = ()\n",
    )
    assert done.returncode == 1, done.stderr
    assert "SLACK_BOT_TOKEN" in done.stderr  # refused, after the imports
    assert done.stdout.strip() == "['scipy.special', 'bot.server']"  # in import order


def test_hitl_retrain_imports_scipy_special_before_the_retrain_s_modules(tmp_path: Path):
    """The same look-up, in `hitl retrain`: its new model's save imports skops.io after the
    retrain's modules (numpy's, scipy's, scikit-learn's), and each of scipy.special's
    functions was looked for in all of them (~0.3 s of the command's ~3.3 s of CPU on 20
    labels). The command imports it first. (Nothing to train here: it stops after the
    imports.)"""
    from tests.bot.harness import Item, seed

    seed(tmp_path / "hitl.db", [Item("i0", "an unlabeled text")])
    done = hitl_imports(tmp_path, "retrain", "bot.learning.retrain")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['scipy.special', 'bot.learning.retrain']"


def _block(_path: str) -> None:
    """In the child: wait for good (the test ends the pool)."""
    import threading

    threading.Event().wait()


def _pid() -> int:
    return os.getpid()


async def test_a_call_given_up_is_not_failed_twice_when_the_pool_is_ended(tmp_path: Path):
    """Python 3.11's process pool fails every waiting call of a pool that breaks (a child
    killed) with set_exception; a call its caller had cancelled (``asyncio.wrap_future``
    cancels it with its caller) made that raise InvalidStateError in the pool's thread, a
    traceback in the server's log (seen once in a full run's load benchmark, at its stop).
    ``awaitable`` leaves the call alone when its caller gives up."""
    import threading
    from concurrent.futures import ProcessPoolExecutor

    from bot.learning.children import awaitable, child_context
    from bot.learning.scoring_worker import terminate

    errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    executor = ProcessPoolExecutor(max_workers=1, mp_context=child_context())
    try:
        child = await awaitable(executor.submit(_pid))  # the child is up
        # the child takes the first; the pool's queue holds two; the others wait in the pool
        calls = [awaitable(executor.submit(_block, str(tmp_path / "never"))) for _ in range(4)]
        for call in calls[1:]:
            call.cancel()  # their callers gave up (a producer hung up, the server stops)
        manager = executor._executor_manager_thread  # noqa: SLF001 - to wait for its end
        os.kill(child, signal.SIGKILL)  # the child dies (the OOM killer): the pool breaks
        await asyncio.to_thread(manager.join, 30)
        assert not manager.is_alive()
        with pytest.raises((BrokenProcessPool, asyncio.CancelledError)):
            await calls[0]
    finally:
        threading.excepthook = previous
        terminate(executor)
    assert errors == []
