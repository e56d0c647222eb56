"""Ctrl-C (once, or twice) while `hitl retrain`'s end waits for another process's write lock
(a long `hitl delete` or import), its model files written. It waited on: ``finish`` tried a
second time after the Ctrl-C (END_TRIES, a busy timeout each: ~20 s for nothing the user
wanted), a second Ctrl-C did nothing, and the command ended with only "Stopped by Ctrl-C",
though the model it could not record was not kept and v1 stayed the champion (review
"newdb", LOW 2). After a Ctrl-C the end now stops after the try under way, and the one line
says what was kept.

The real CLI in a child process, real SIGINTs (asyncio's handler: the first cancels the
retrain, the second raises KeyboardInterrupt). Deterministic: another connection takes the
write lock as the model files are written (as ``LockFromTheModelFiles``); the end's first try
of ``finish`` prints a line and waits until the Ctrl-C is seen (the retrain's wait for its end
thread after the cancel; for two, until asyncio's handler gets the second), the test sends
each SIGINT once it reads the line before it; the end's connection waits 50 ms for the lock
(not 10 s), so the try meets the held lock as SQLite's "database is locked"."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.store import Store
from tests.bot.test_cli_interrupts import ctrl_c_as_in_a_terminal, env, run, write_rows

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, asyncio.runners, sqlite3, sys, threading
    from bot.learning import retrain
    from bot.store import Store

    MODE, DB = sys.argv[1], sys.argv[2]  # "held", "let go" (after the first try), "twice"
    real_compute, real_finish, real_apart = retrain.compute, retrain.finish, Store.apart
    real_on_sigint = asyncio.runners.Runner._on_sigint
    holder, tries, seen = [], [], []
    go = threading.Event()

    def say(line):
        print("hitl-test: " + line, file=sys.stderr, flush=True)

    def compute(*args):  # another writer takes the lock as the model files are written
        done = real_compute(*args)
        conn = sqlite3.connect(DB, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        holder.append(conn)
        return done

    def apart(store):  # the end's connection waits 50 ms for the lock, not 10 s
        own = real_apart(store)
        own.set_busy_timeout(50)
        return own

    def finish(store, plan, computed, *rest):
        if computed.meta is None:  # the failed run's record (``_not_kept``)
            return real_finish(store, plan, computed, *rest)
        tries.append(1)
        say(f"try {len(tries)}")
        if len(tries) == 1:
            say("recording")
            go.wait()  # until the Ctrl-C is seen
        try:
            return real_finish(store, plan, computed, *rest)
        finally:
            if MODE == "let go" and holder:  # the other writer is done after the first try
                holder.pop().execute("ROLLBACK")

    class Asyncio:  # retrain's asyncio: its wait for the end's thread once cancelled
        def __getattr__(self, name):
            return getattr(asyncio, name)

        def wait(self, *args, **kwargs):
            task = asyncio.current_task()
            if task is not None and task.cancelling() and not seen:
                seen.append(1)
                say("stop seen")
                if MODE != "twice":
                    go.set()
            return asyncio.wait(*args, **kwargs)

    def on_sigint(self, signum, frame, main_task):
        if self._interrupt_count:  # the second Ctrl-C
            go.set()
        return real_on_sigint(self, signum, frame, main_task)

    retrain.compute, retrain.finish, Store.apart = compute, finish, apart
    retrain.asyncio = Asyncio()
    asyncio.runners.Runner._on_sigint = on_sigint
    sys.argv = ["hitl", "--db", DB, "retrain", "--force"]
    from bot.cli import main
    main()
    """
)


def retrain_stopped(db: Path, mode: str, markers: list[str]) -> tuple[int, list[str]]:
    """`hitl retrain --force` in a child (``CHILD``), one SIGINT at each of ``markers`` (a
    line of its stderr, in turn); its exit status and its stderr's lines."""
    with ctrl_c_as_in_a_terminal():
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, str(db)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env(),
            cwd=ROOT,
        )
    seen: list[str] = []
    try:
        left = list(markers)
        while left:
            line = process.stderr.readline().decode()
            if not line:
                break
            seen.append(line)
            if line.strip() == f"hitl-test: {left[0]}":
                left.pop(0)
                process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = [line.rstrip("\n") for line in "".join(seen).splitlines() + rest.decode().splitlines()]
    return process.returncode, [line for line in lines if line.strip()]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with labels and v1, the champion."""
    db = tmp_path / "hitl.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 60))).exit_code == 0
    assert run("--db", str(db), "retrain").exit_code == 0
    return db


def not_kept(line: str) -> None:
    """The one line: v2 not kept, v1 still the champion (``_not_kept``'s words)."""
    start = "Stopped by Ctrl-C after its model was written: v2 could not be recorded in the"
    assert line.startswith(start + " database ("), line
    assert "is locked" in line, line
    assert line.endswith(
        "so it is not kept: its files were deleted and v1 stays the champion;"
        " then `hitl retrain` again"
    ), line


def model_files(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.glob("*.models/v*"))


def recorded(db: Path) -> tuple[str, int | None]:
    """The second retrain's run status, and the database's champion."""
    with Store.open(db, create=False) as store:
        return store.runs("retrain")[0]["status"], store.champion_version()


@pytest.mark.parametrize("mode", ["held", "twice"])
def test_ctrl_c_while_the_end_waits_for_a_lock_tries_no_more_and_says_v2_is_not_kept(
    db: Path, mode: str
):
    """The other writer holds the lock on: one try after the Ctrl-C (or two), then the one
    line says v2 is not kept and v1 stays the champion. The run stays `running` (its end
    could not be recorded either: the next retrain takes its lock over)."""
    before = model_files(db)
    markers = ["recording"] if mode == "held" else ["recording", "stop seen"]
    code, err = retrain_stopped(db, mode, markers)
    assert code == 130, err
    assert not any("Traceback" in line for line in err), err
    assert [line for line in err if line.startswith("hitl-test: try")] == ["hitl-test: try 1"]
    not_kept(err[-1])
    assert model_files(db) == before
    assert recorded(db) == ("running", 1)
    assert run("--db", str(db), "retrain", "--force").exit_code == 0  # takes the lock over
    assert recorded(db) == ("promoted", 2)


def test_ctrl_c_while_the_end_waits_records_the_run_failed_once_the_lock_is_free(db: Path):
    """The other writer lets go after the end's first try: the Ctrl-C's end does not try
    ``finish`` again (it did, and recorded v2 after the user asked to stop), records the run
    as failed, and says so in its one line."""
    before = model_files(db)
    code, err = retrain_stopped(db, "let go", ["recording"])
    assert code == 130, err
    assert not any("Traceback" in line for line in err), err
    assert [line for line in err if line.startswith("hitl-test: try")] == ["hitl-test: try 1"]
    not_kept(err[-1])
    assert model_files(db) == before
    assert recorded(db) == ("failed", 1)
