"""A Ctrl-C the kernel hands to `hitl retrain`'s fit thread, not its main thread. README: Ctrl-C
stops `hitl retrain` at once, also mid-fit. `asyncio.run`'s Ctrl-C handler runs only once the
event loop wakes, and the loop slept until the fit's thread ended: a SIGINT delivered to that
thread (the kernel's choice, for any thread that does not block it) was seen only when the fit
was done (6 of 7 runs of this test on the old code; minutes into a large fit). The CLI's loop
now wakes on every signal (``bot.cli.woken_by_signals``).

The real CLI (``bot.cli.main``) in a child process and a real SIGINT, sent to the fit's thread
(``tgkill``). One function of the child is wrapped, ``retrain.compute`` (the fit), which prints
its thread's id and then waits ``CHILD_WAIT`` seconds (an event nobody sets: a long fit):
stopped at once, the command ends with 130 while the fit still waits; asleep, it would end only
when that wait gives up (the child then exits 97 and says so). Every wait here is bounded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot.store import Store
from tests.bot.test_cli_interrupts import run, write_rows
from tests.bot.test_retrain_end_ctrl_c import cli_child, ctrl_c_to_thread, model_files
from tests.processes import line_of

ROOT = Path(__file__).resolve().parents[2]
WAIT = 50.0  # seconds, at most, for any line of the child, or its end
CHILD_WAIT = 30.0  # seconds the stand-in fit takes

CHILD = textwrap.dedent(
    """
    import faulthandler, os, signal, sys, threading
    from bot.learning import retrain

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # where it waits, if it hangs
    DB, WAIT = sys.argv[1], float(sys.argv[2])

    def say(line):
        print("hitl-test: " + line, file=sys.stderr, flush=True)

    def compute(*args):  # the fit: its thread, then a long one the Ctrl-C must not sit out
        say(f"fitting in thread {threading.get_native_id()}")
        threading.Event().wait(WAIT)  # set by nobody: a fit that takes WAIT seconds
        say(f"FAILED: the Ctrl-C was not seen in {WAIT} s")
        os._exit(97)

    retrain.compute = compute
    sys.argv = ["hitl", "--db", DB, "retrain", "--force"]
    from bot.cli import main
    main()
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="tgkill")
def test_a_ctrl_c_handed_to_the_fit_thread_stops_the_retrain_at_once(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 60))).exit_code == 0
    assert run("--db", str(db), "retrain").exit_code == 0
    before = model_files(db)
    with cli_child(CHILD, db, stdin=subprocess.DEVNULL) as running:
        child, seen = running
        deadline = time.monotonic() + WAIT
        while not any(x.startswith("hitl-test: fitting in thread ") for x in seen):
            line = line_of(child.stderr, deadline)
            assert line.endswith("\n"), "".join([*seen, line])  # ended, or nothing for WAIT s
            seen.append(line)
        ctrl_c_to_thread(child.pid, int(seen[-1].split()[-1]))
        _, rest = child.communicate(timeout=WAIT)
        seen.append(rest.decode("utf-8", "replace"))
    err = running.lines()
    assert child.returncode == 130, err
    assert not any("Traceback" in line or "FAILED" in line for line in err), err
    assert err[-1].startswith("Stopped by Ctrl-C"), err
    assert model_files(db) == before  # no model stored
    with Store.open(db, create=False) as store:
        assert store.runs("retrain")[0]["status"] == "failed"
        assert store.champion_version() == 1
