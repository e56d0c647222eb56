"""SQLite's I/O errors that are a failed allocation or memory map (under a memory limit a
retrain's read ended "disk I/O error", SQLITE_IOERR_NOMEM) are told as out of memory: told as
the disk's failure, they sent an operator to a healthy disk (outside test on Python 3.12, a
retrain under a 16 MB limit)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.store import database_problem


def failed(name: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("disk I/O error")
    exc.sqlite_errorname = name  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    "name",
    ["SQLITE_IOERR_NOMEM", "SQLITE_IOERR_SHMMAP", "SQLITE_IOERR_MMAP"],  # SHMSIZE: the disk
)
def test_an_io_error_that_is_a_failed_allocation_says_memory_not_disk(tmp_path: Path, name: str):
    said = str(database_problem(tmp_path / "hitl.db", failed(name)))
    # the line the CLI gives every other failed allocation (test_model_faults expects it)
    assert said == (
        f"ran out of memory (SQLite on {tmp_path / 'hitl.db'}: disk I/O error, {name}); give"
        " hitl more memory (its limit: `ulimit -v`, or the container's); what was stored is kept"
    )


@pytest.mark.parametrize("name", ["SQLITE_IOERR_READ", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR"])
def test_a_disk_error_still_says_the_disk(tmp_path: Path, name: str):
    said = str(database_problem(tmp_path / "hitl.db", failed(name)))
    assert said.endswith("(disk I/O error); check the disk")
