"""Fixtures for tests/bot/: the fake Slack workspace from tests/fake_slack.py, and a folder on a
RAM disk for the tests whose time goes into the database's commits.

The fake is re-exported rather than listed in `pytest_plugins`: pytest 9 refuses
`pytest_plugins` in any conftest below the rootdir ("non-top-level conftest"), and the top-level
tests/conftest.py is not this module's to edit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_slack import fake_slack

__all__ = ["fake_slack", "ram_tmp_path"]

RAM_DISK = Path("/dev/shm")  # Linux's RAM-backed tmpfs (also in CI runners and containers)
RAM_DISK_SPARE = 256 * 2**20  # bytes it must have free (a container's is 64 MB by default)


def ram_disk_usable() -> bool:
    try:
        return (
            RAM_DISK.is_dir()
            and os.access(RAM_DISK, os.W_OK | os.X_OK)
            and shutil.disk_usage(RAM_DISK).free >= RAM_DISK_SPARE
        )
    except OSError:
        return False


@pytest.fixture
def ram_tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh folder on a RAM disk (``/dev/shm``) when the machine has one with room, else
    one from ``tmp_path_factory``. The store commits at ``synchronous = FULL``: on a disk every
    commit waits for an fsync (1-2 ms here, more on a CI runner's network disk), and a test that
    posts and answers hundreds of questions spends most of its time there. On a RAM disk the
    same commits, the same SQL and the same files cost nothing; no test that uses this folder
    is about durability (a test module opts in by overriding ``tmp_path`` with it)."""
    if not ram_disk_usable():
        yield tmp_path_factory.mktemp("ram")
        return
    folder = Path(tempfile.mkdtemp(prefix="hitl-test-", dir=RAM_DISK))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
