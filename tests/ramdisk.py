"""The RAM disk the tests keep their files on when the machine has one with room: Linux's
tmpfs at ``/dev/shm``. The store commits at ``synchronous = FULL``, so on a disk every commit
waits for an fsync; on tmpfs the same commits, SQL and files cost nothing. No test is about
durability against a power cut (a killed process's writes survive on tmpfs as on disk: the
page cache holds them either way)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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
