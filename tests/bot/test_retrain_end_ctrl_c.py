"""Ctrl-C while `hitl retrain`'s end waits for another process's write lock (a long `hitl
delete` or import), its model files written. It waited on: ``finish`` tried a second time
after the Ctrl-C (END_TRIES, a 10 s busy timeout each: ~20 s for nothing the user wanted),
and the command ended with only "Stopped by Ctrl-C", though the model it could not record was
not kept and v1 stayed the champion (review "newdb", LOW 2). After a Ctrl-C the end now stops
after the try under way, and the one line says what was kept.

The real CLI (``bot.cli.main``) in a child process, a real SIGINT, the product's busy
timeout, and the write lock held by this test's own connection (``BEGIN IMMEDIATE``). One
function of the child is wrapped, ``retrain.finish`` (the model's record), to give the test
its moments; every wait, in the child (``CHILD_WAIT``) and here (``WAIT``), is bounded, then
fails loudly (a child still running at the end prints its threads' stacks, and is killed):

- the first try of the model's record prints "try 1" and waits for the test's "go" on stdin;
  the test takes the write lock, says "go" and sends the SIGINT (to the process, or to the
  end's thread: which thread takes a Ctrl-C is the kernel's choice): the try meets the held
  lock and is refused after its busy timeout: the product's own, set shorter on the end's
  connection (``Store.set_busy_timeout``, ``BUSY_MS``) than its 10 s, which every test here
  waited out for nothing (the order of the steps does not hang on it: the refused try waits
  for the Ctrl-C to be seen, below);
- the refused try waits until the Ctrl-C is seen (the stop's ``no_more_tries``, which the fix
  hands its caller; the old code has none and goes on at once), prints "try 1 refused" and
  waits for a second "go": the test lets go of the lock first, or keeps it.

Each try of the model's record prints a line, so the tries are counted, not timed.
`hitl serve`'s stop still lets the end finish: tests/bot/test_retrain_end_stop.py."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from bot.store import Store
from tests.bot.test_cli_interrupts import ctrl_c_as_in_a_terminal, env, run, write_rows
from tests.processes import copy_database
from tests.processes import line_of as next_line

ROOT = Path(__file__).resolve().parents[2]
WAIT = 50.0  # seconds, at most, for any line of the child, or its end
CHILD_WAIT = 30.0  # seconds, at most, the child waits for the test's word, or the Ctrl-C
BUSY_MS = 1000  # the end's busy timeout in the child (the product's: 10 s)

CHILD = textwrap.dedent(
    """
    import faulthandler, os, select, signal, sys, threading
    from bot.learning import retrain

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # where it waits, if it hangs

    DB, WAIT, BUSY_MS = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    real_finish, tries = retrain.finish, []

    def say(line):
        print("hitl-test: " + line, file=sys.stderr, flush=True)

    def fail(why):  # loudly: the test reads it, and the exit status is not 130
        say("FAILED: " + why)
        os._exit(97)

    def word_of_the_test():
        if not select.select([sys.stdin], [], [], WAIT)[0]:
            fail(f"no word from the test in {WAIT} s")
        if sys.stdin.readline().strip() != "go":
            fail("the test did not say go")

    def finish(store, plan, computed, *rest):
        if computed.meta is None:  # the failed run's record (``_not_kept``): as it is
            return real_finish(store, plan, computed, *rest)
        if not tries:
            say(f"thread {threading.get_native_id()}")  # the end's, for a Ctrl-C sent to it
        tries.append(1)
        say(f"try {len(tries)}")
        if len(tries) > 1:
            return real_finish(store, plan, computed, *rest)
        stop = sys._getframe(1).f_locals.get("no_more_tries")  # none in the old code
        store.set_busy_timeout(BUSY_MS)  # the held lock's wait, shorter than the product's 10 s
        word_of_the_test()  # the test holds the write lock now, and sends the Ctrl-C
        try:
            return real_finish(store, plan, computed, *rest)
        except Exception:
            if stop is not None and not stop.wait(WAIT):
                fail(f"the Ctrl-C was not seen in {WAIT} s")
            say("try 1 refused")
            word_of_the_test()  # the test let go of the lock, or holds it still
            raise

    retrain.finish = finish
    sys.argv = ["hitl", "--db", DB, "retrain", "--force"]
    from bot.cli import main
    main()
    """
)


def line_of(child: subprocess.Popen, deadline: float) -> str:
    """The child's next line on stderr, or "" at ``deadline`` (``tests.processes.line_of``)."""
    return next_line(child.stderr, deadline)


def read_to(child: subprocess.Popen, marker: str, seen: list[str]) -> None:
    """Read the child's stderr into ``seen`` up to the line ``hitl-test: <marker>``; fails
    (with all it printed) when it ends, or prints nothing more for ``WAIT`` seconds, first."""
    while True:
        line = line_of(child, time.monotonic() + WAIT)
        seen.append(line)
        if line.rstrip("\n") == f"hitl-test: {marker}":
            return
        if not line.endswith("\n"):
            pytest.fail(f"no line {marker!r} from the child:\n{''.join(seen)}")


def say_go(child: subprocess.Popen) -> None:
    child.stdin.write(b"go\n")
    child.stdin.flush()


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[sqlite3.Connection]:
    """Another writer's connection (a long `hitl delete`, say); its write lock, if it still
    holds it, is let go at the end."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=WAIT)
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def ctrl_c_to_thread(pid: int, tid: int) -> None:
    """SIGINT to one thread of process ``pid``, as the kernel may hand a Ctrl-C to any thread
    (``tgkill``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tid, signal.SIGINT) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


@contextlib.contextmanager
def cli_child(code: str, db: Path, *, stdin: int = subprocess.PIPE) -> Iterator[Child]:
    """``code`` (the real CLI, one function wrapped) in a child, as a command typed in a
    terminal takes a Ctrl-C; its stderr's lines go into ``seen`` as the test reads them. A
    child still running at the end hangs: its threads' stacks are printed, then it is killed."""
    with ctrl_c_as_in_a_terminal():
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(db), str(CHILD_WAIT), str(BUSY_MS)],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env(),
            cwd=ROOT,
        )
    child = Child(process, [])
    try:
        yield child
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 5
            while line := line_of(process, deadline):
                child.seen.append(line)
            print("".join(child.seen))
            process.kill()
            process.wait()
        for pipe in (process.stdin, process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class Child(NamedTuple):
    process: subprocess.Popen
    seen: list[str]

    def lines(self) -> list[str]:
        """What it printed on stderr, line by line, blank ones left out."""
        return [line for line in "".join(self.seen).splitlines() if line.strip()]


def retrain_stopped(db: Path, *, let_go: bool, to_thread: bool = False) -> tuple[int, list[str]]:
    """`hitl retrain --force` in a child (``CHILD``), one SIGINT while its model's record waits
    for the write lock this test holds (sent to the process, or to the end's thread: the
    thread the Ctrl-C lands on is the kernel's choice); the lock let go after that try
    (``let_go``), or held until the child ends. Its exit status and its stderr's lines."""
    with cli_child(CHILD, db) as running, write_lock(db) as other:
        child, seen = running
        read_to(child, "try 1", seen)
        other.execute("BEGIN IMMEDIATE")
        say_go(child)
        if to_thread:
            tid = next(x for x in seen if x.startswith("hitl-test: thread ")).split()[-1]
            ctrl_c_to_thread(child.pid, int(tid))
        else:
            child.send_signal(signal.SIGINT)
        read_to(child, "try 1 refused", seen)
        if let_go:
            other.execute("ROLLBACK")
        say_go(child)
        _, rest = child.communicate(timeout=WAIT)
        seen.append(rest.decode("utf-8", "replace"))
    return child.returncode, running.lines()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with labels and v1, the champion: made once a module (a retrain each test
    made anew), copied for each test (``db``), whose retrains change it. 24 labels: under
    ``model.stopping.MIN_CURVE_LABELS``, so no retrain here (the child's either) fits a learning
    curve, which the Ctrl-C at the end does not hang on."""
    folder = tmp_path_factory.mktemp("v1")
    db = folder / "hitl.db"
    assert run("--db", str(db), "import", str(write_rows(folder / "r.jsonl", 24))).exit_code == 0
    assert run("--db", str(db), "retrain").exit_code == 0
    return db


@pytest.fixture
def db(made: Path, tmp_path: Path) -> Path:
    """A database with labels and v1, the champion (a copy of ``made``, its models too)."""
    return copy_database(made, tmp_path)


def tries(err: list[str]) -> list[str]:
    """The tries of the model's record the child made, as it counted them."""
    return [line for line in err if line.startswith("hitl-test: try ") and "refused" not in line]


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


@pytest.mark.skipif(sys.platform != "linux", reason="tgkill")
@pytest.mark.parametrize("to_thread", [False, True], ids=["to the process", "to the end's thread"])
def test_ctrl_c_while_the_end_waits_for_a_held_lock_tries_no_more_and_says_v2_is_not_kept(
    db: Path, to_thread: bool
):
    """The other writer holds the lock on: no try after the one the Ctrl-C came in (the old
    code made a second, another 10 s), and the one line says v2 is not kept and v1 stays the
    champion (the old code: a bare "Stopped by Ctrl-C"). The run stays `running` (its end
    could not be recorded either: the next retrain takes its lock over). A Ctrl-C the kernel
    hands to the end's thread is seen too: `asyncio.run`'s handler runs only once the event
    loop wakes, which the end's wait now does every ``WAKE_TICK`` (it slept until the thread
    ended: the Ctrl-C came too late to spare the second try)."""
    before = model_files(db)
    code, err = retrain_stopped(db, let_go=False, to_thread=to_thread)
    assert code == 130, err
    assert not any("Traceback" in line or "FAILED" in line for line in err), err
    assert tries(err) == ["hitl-test: try 1"], err
    not_kept(err[-1])
    assert model_files(db) == before
    assert recorded(db) == ("running", 1)
    assert run("--db", str(db), "retrain", "--force").exit_code == 0  # takes the lock over
    assert recorded(db) == ("promoted", 2)


def test_ctrl_c_while_the_end_waits_records_the_run_failed_once_the_lock_is_free(db: Path):
    """The other writer lets go after the end's first try: the Ctrl-C's end does not try the
    model's record again (the old code did, and recorded v2 after the user asked to stop),
    records the run as failed, and says in its one line that v2 is not kept."""
    before = model_files(db)
    code, err = retrain_stopped(db, let_go=True)
    assert code == 130, err
    assert not any("Traceback" in line or "FAILED" in line for line in err), err
    assert tries(err) == ["hitl-test: try 1"], err
    not_kept(err[-1])
    assert model_files(db) == before
    assert recorded(db) == ("failed", 1)
