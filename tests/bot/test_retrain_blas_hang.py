"""`hitl retrain` under an address-space limit (``ulimit -v``): OpenBLAS's buffer allocator
(``blas_memory_alloc``, in scipy's ``libscipy_openblas``) retries a mapping it cannot get for
ever, in C, holding the GIL. Under ``ulimit -v 400000`` a 2,000-label retrain spun a core in
its fit's L-BFGS-B (``dpotrf``), and SIGTERM and Ctrl-C did nothing: their Python handler
waits for the GIL (outside test, t-shell finding 1). README: `hitl retrain` exits 1 with one
line when the fit ran out of memory.

Through the real CLI (``bot.cli.main``) in a child process, with the real OpenBLAS: the limit
is set, in the fit's thread, to the room the process uses plus a little, and with one malloc
arena (``MALLOC_ARENA_MAX=1``) a 32 MB buffer can be found nowhere, so OpenBLAS's first call
that needs one in that thread spins, every time. The fit now takes its BLAS buffers as it
starts (``model.classifier.take_blas_buffer``), so a fit with no room for them fails in one
line ("ran out of memory"); on the old code it spun.

Every wait is bounded; a child still running at the end has its stacks printed and is killed."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.store import Store
from tests.bot.test_cli_interrupts import env, run, write_rows
from tests.processes import line_of

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="ulimit -v, /proc")

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # seconds, at most, for any line of the child, or its end
ROOM = 24 << 20  # bytes of address space the fit's thread is left: less than one BLAS buffer

TIGHTEN = """
import resource

def tighten():  # the room this process uses, and ROOM more
    with open("/proc/self/status") as status:
        size = next(int(x.split()[1]) for x in status if x.startswith("VmSize:")) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + ROOM, resource.RLIM_INFINITY))
"""

# The real fit, with the limit set in its thread as it starts.
FIT = (
    """
import sys
from bot.learning import retrain
ROOM = int(sys.argv[2])
"""
    + TIGHTEN
    + """
real = retrain.compute

def compute(*args):
    tighten()
    return real(*args)

retrain.compute = compute
sys.argv = ["hitl", "--db", sys.argv[1], "retrain", "--force"]
from bot.cli import main
main()
"""
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    db = tmp_path / "hitl.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 60))).exit_code == 0
    assert run("--db", str(db), "retrain").exit_code == 0
    return db


@contextlib.contextmanager
def child(code: str, db: Path) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """``code`` (the real CLI) in a child with one malloc arena, as `hitl` from a terminal's
    shell would be (SIGTERM and SIGHUP as `main` finds them: not ignored)."""
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(db), str(ROOM)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env(), "MALLOC_ARENA_MAX": "1"},
        cwd=ROOT,
    )
    seen: list[str] = []
    try:
        yield process, seen
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGUSR1)  # its stacks (the stuck one: it spins)
            deadline = time.monotonic() + 3
            while line := line_of(process.stderr, deadline):
                seen.append(line)
            print("".join(seen))
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def ended(process: subprocess.Popen, seen: list[str]) -> list[str]:
    """Its end, waited for up to WAIT (a spinning child fails the test here); its lines."""
    try:
        out, err = process.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {WAIT:.0f} s later (spinning?): {''.join(seen)}")
    seen.append(err.decode("utf-8", "replace"))
    return [x for x in (out.decode() + "".join(seen)).splitlines() if x.strip()]


def test_a_fit_with_no_room_for_blas_buffers_fails_in_one_line_not_a_spin(db: Path):
    with child(FIT, db) as (process, seen):
        lines = ended(process, seen)
    assert process.returncode == 1, lines
    assert not any("Traceback" in x or "OpenBLAS" in x for x in lines), lines
    said = [x for x in lines if x != "Training on 60 labels"]  # the result's line, on stdout
    assert len(said) == 1, lines
    assert (
        "did not produce a model: not trained: ran out of memory while fitting (MemoryError)"
        in (said[0])
    ), lines
    with Store.open(db, create=False) as store:
        assert store.runs("retrain")[0]["status"] == "failed"
        assert store.champion_version() == 1
