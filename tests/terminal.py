"""A command run on a pseudo-terminal: what a person at a terminal sees (progress bars, the
questions `hitl` asks only there), read back by the test."""

from __future__ import annotations

import os
import pty
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path


def on_a_terminal(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdin: bool = False,
    stdout: bool = False,
    reply: str | None = None,
    timeout: float = 120,
) -> tuple[str, str, int]:
    """Run ``argv`` with its stderr on a pseudo-terminal, and its stdin and stdout too when
    ``stdin``/``stdout`` (else stdin is empty and stdout a pipe). ``reply``: a line typed
    ahead, waiting in the terminal until the command reads it. Returns (stdout when a pipe,
    else "", what the terminal showed with its line ends as "\\n", exit code). The terminal
    is read while the command runs, so it never stops on a full terminal buffer."""
    master, slave = pty.openpty()
    if reply is not None:
        os.write(master, reply.encode() + b"\n")
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=slave if stdin else subprocess.DEVNULL,
            stdout=slave if stdout else subprocess.PIPE,
            stderr=slave,
            env=dict(env),
            cwd=cwd,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)  # the child has its own copy: EIO on the master once it is gone
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(master, chunks), daemon=True)
    reader.start()
    try:
        piped, _ = process.communicate(timeout=timeout)
    except BaseException:  # as subprocess.run: the child killed, then the error raised
        process.kill()
        process.wait()
        raise
    finally:
        reader.join(timeout=10)
        if not reader.is_alive():
            os.close(master)
    shown = b"".join(chunks)
    return (
        "" if stdout else piped.decode(),
        shown.decode(errors="replace").replace("\r\n", "\n"),
        process.returncode,
    )


def _read_all(master: int, chunks: list[bytes]) -> None:
    """Everything the terminal shows, until every copy of its other end is closed (EIO)."""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            return
        if not chunk:
            return
        chunks.append(chunk)
