"""How much memory SQLite holds in this process (its page cache included), for ``/metrics``.

Python's ``sqlite3`` module does not expose ``sqlite3_status64``, so this asks the SQLite
library the module is linked against through ctypes. It lives in the store, the one package
that knows SQLite; the metrics only ask it for a number.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

SQLITE_STATUS_MEMORY_USED = 0


@functools.cache
def _sqlite_library() -> ctypes.CDLL | None:
    """The SQLite library Python's sqlite3 module uses (a shared library on Linux and macOS)."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
        library.sqlite3_status64  # noqa: B018 - present since SQLite 3.10
    except (OSError, AttributeError):
        return None
    return library


def sqlite_memory_bytes() -> int | None:
    """Bytes SQLite has allocated in this process now; None where the library cannot be asked."""
    library = _sqlite_library()
    if library is None:
        return None
    current, highest = ctypes.c_int64(), ctypes.c_int64()
    status = library.sqlite3_status64(
        SQLITE_STATUS_MEMORY_USED, ctypes.byref(current), ctypes.byref(highest), 0
    )
    return current.value if status == 0 else None
