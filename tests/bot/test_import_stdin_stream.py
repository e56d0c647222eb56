"""`hitl import -` reads standard input as it arrives (README, `hitl import`: "The file is
streamed, so its size does not matter"): rows are committed batch by batch while the writer
still writes, a slow writer's last rows without waiting for a whole batch, and nothing is
copied to $TMPDIR (it was: all of stdin before the first row, 4.6 GB in 3 s from `yes`). What
a file's import promises holds for a pipe too: bad rows told with their line, duplicates, an
interrupt's line with the rows committed, and a re-run that imports the rest.

Each test runs `hitl` as a child process whose standard input is a real pipe that the test
keeps open, and waits (with a deadline, never a sleep) for the child's "committed rows through
line N of stdin" log line (-v)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import line_of

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0  # seconds: a bound on a wait for the child, never a delay


def count_items(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]


@contextlib.contextmanager
def importing(tmp_path: Path, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """`hitl -v import - OPTIONS` on a pipe the caller writes, with its own empty $TMPDIR."""
    spool = tmp_path / "tmpdir"
    spool.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(spool),
        "HITL_DB": str(tmp_path / "hitl.db"),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "bot", "-v", "import", "-", *options],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=DEADLINE)
        for pipe in (child.stdin, child.stdout, child.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def committed_through(child: subprocess.Popen[bytes], line: int, told: list[str]) -> None:
    """Read the child's stderr until it logs the commit of the rows through ``line`` (or a
    later one), keeping every line that is no log line in ``told``; fail at the deadline (the
    rows were not stored meanwhile)."""
    assert child.stderr is not None
    deadline = time.monotonic() + DEADLINE
    mark = "committed rows through line "
    while True:
        said = line_of(child.stderr, deadline)
        assert said, f"no commit through line {line} of stdin before EOF; it said: {told}"
        if mark in said and said.rstrip().endswith(" of stdin"):
            if int(said.split(mark)[1].split()[0]) >= line:
                return
        elif " INFO " not in said:
            told.append(said.rstrip("\n"))


def ended(child: subprocess.Popen[bytes]) -> tuple[str, str]:
    """The writer closes the pipe (EOF): what the child then printed, once it ended."""
    assert child.stdin is not None
    child.stdin.close()
    child.stdin = None
    out, err = child.communicate(timeout=DEADLINE)
    return out.decode(), err.decode()


def send(child: subprocess.Popen[bytes], data: bytes) -> None:
    assert child.stdin is not None
    child.stdin.write(data)
    child.stdin.flush()


def files_in(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_rows_are_stored_while_the_writer_still_writes_and_nothing_goes_to_tmpdir(
    tmp_path: Path,
):
    """2,500 lines, then 3 more, with the pipe kept open (`tail -f`, a slow curl): two whole
    batches, then the rest of the third once the writer pauses, are stored before EOF, and
    $TMPDIR stays empty. (Old code: nothing stored before EOF, all of stdin in $TMPDIR.)"""
    db = tmp_path / "hitl.db"
    with importing(tmp_path, "--format", "text") as child:
        told: list[str] = []
        send(child, b"".join(b"ticket number %d\n" % i for i in range(2500)))
        committed_through(child, 2000, told)
        assert count_items(db) >= 2000
        send(child, b"late one\nlate two\nlate three\n")  # then the writer pauses
        committed_through(child, 2503, told)
        assert count_items(db) == 2503
        assert files_in(tmp_path / "tmpdir") == []
        out, err = ended(child)
    assert child.returncode == 0, err
    assert out == (
        "stdin: read 2,503 rows, imported 2,503 (0 with labels), 0 duplicates, 0 rejected\n"
    )
    assert told == []
    assert count_items(db) == 2503


def test_a_bad_row_is_told_with_its_line_while_the_pipe_is_open(tmp_path: Path):
    """A bad JSONL row is told with its line as soon as the rows around it are committed,
    not at EOF; a duplicate row is counted. (Old code: nothing before EOF.)"""
    rows = [json.dumps({"id": f"r{i}", "text": f"text {i}", "label": "a"}) for i in range(30)]
    rows[4] = "{not json"
    rows[9] = rows[8]  # the same row twice
    with importing(tmp_path, "--format", "jsonl") as child:
        told: list[str] = []
        send(child, "".join(row + "\n" for row in rows).encode())
        committed_through(child, 30, told)
        assert child.stderr is not None  # told once the rows around it are committed
        assert line_of(child.stderr, time.monotonic() + DEADLINE) == (
            "stdin line 5: bad JSON (Expecting property name enclosed in double quotes at"
            " column 2), row skipped\n"
        )
        assert told == []
        assert count_items(tmp_path / "hitl.db") == 28
        out, err = ended(child)
    assert child.returncode == 0, err
    assert out == ("stdin: read 30 rows, imported 28 (28 with labels), 1 duplicate, 1 rejected\n")


def test_sigterm_during_a_stdin_import_says_what_was_committed_and_a_rerun_adds_the_rest(
    tmp_path: Path,
):
    """Stopped while the writer still writes: one line with the rows committed (exit 143), and
    the same input sent again imports the rest, the rows stored before skipped as duplicates.
    (Old code: no commit before EOF to wait for.)"""
    lines = [b"item %d of the feed\n" % i for i in range(1500)]
    db = tmp_path / "hitl.db"
    with importing(tmp_path, "--format", "text") as child:
        send(child, b"".join(lines[:1200]))
        told: list[str] = []
        committed_through(child, 1200, told)  # a batch, and the rest once the writer paused
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=DEADLINE)
    assert child.returncode == 128 + signal.SIGTERM
    assert err.decode().splitlines()[-1] == (
        "Stopped by SIGTERM: 1,200 rows imported before it (committed); run the same import"
        " again for the rest: rows already stored are skipped"
    )
    assert count_items(db) == 1200
    with importing(tmp_path, "--format", "text") as again:
        out, err = again.communicate(b"".join(lines), timeout=DEADLINE)
    assert again.returncode == 0, err
    assert out.decode() == (
        "stdin: read 1,500 rows, imported 300 (0 with labels), 1,200 duplicates, 0 rejected\n"
    )
    assert count_items(db) == 1500


@pytest.mark.parametrize("first", [b"h", b"hi\n"])
def test_a_first_line_of_a_few_bytes_is_imported_before_more_come(tmp_path: Path, first: bytes):
    """The readers' first look (gzip's magic bytes, UTF-16) waits for no more bytes than it
    needs: "hi" is stored while the writer waits, though it is under the 8 bytes a UTF-32 start
    takes. (Old code: nothing stored before EOF.)"""
    with importing(tmp_path, "--format", "text") as child:
        send(child, first)
        if first == b"h":
            send(child, b"i\n")
        committed_through(child, 1, [])
        assert count_items(tmp_path / "hitl.db") == 1
        out, _ = ended(child)
    assert out.startswith("stdin: read 1 row, imported 1 ")


def test_gzip_and_csv_rows_are_stored_while_the_pipe_is_open(tmp_path: Path):
    """`zcat`-free: gzip data piped in is read as it comes too (its magic bytes split over two
    writes), and so is a CSV (its header and first rows, then the rest). (Old code: nothing
    stored before EOF.)"""
    import gzip

    data = gzip.compress(b"one\ntwo\n")
    with importing(tmp_path, "--format", "text") as child:
        send(child, data[:1])
        send(child, data[1:])
        committed_through(child, 2, [])
        assert count_items(tmp_path / "hitl.db") == 2
        out, _ = ended(child)
    assert out.startswith("stdin: read 2 rows, imported 2 ")
    (tmp_path / "hitl.db").unlink()
    rows = "".join(f"c{i};text of row {i};x\n" for i in range(1200))
    with importing(tmp_path, "--format", "csv", "--label-column", "label") as child:
        send(child, ("id;text;label\n" + rows).encode())
        committed_through(child, 1201, [])
        assert count_items(tmp_path / "hitl.db") == 1200
        out, _ = ended(child)
    assert out.startswith("stdin: read 1,200 rows, imported 1,200 (1,200 with labels)")


def test_utf16_on_a_pipe_is_refused_from_its_first_bytes_before_eof(tmp_path: Path):
    """A UTF-16 start sent over two writes (3 bytes, then the rest) is refused in one line
    while the writer still has the pipe open: the first look waits for the bytes it needs and
    no more. (Old code: nothing read before EOF.)"""
    wide = "text\nbonjour\n".encode("utf-16-le")
    with importing(tmp_path, "--format", "text") as child:
        send(child, wide[:3])
        send(child, wide[3:])
        assert child.stderr is not None
        said = line_of(child.stderr, time.monotonic() + DEADLINE)
        assert said == (
            "Error: standard input is not UTF-8 but UTF-16LE (it has a NUL byte beside each"
            " character): convert it on its way in: … | iconv -f utf-16le -t utf-8 |"
            " hitl import - …\n"
        )
        assert child.wait(timeout=DEADLINE) == 1
