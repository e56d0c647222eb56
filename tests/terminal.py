"""A command run on a pseudo-terminal: what a person at a terminal sees (progress bars, the
questions `hitl` asks only there), read back by the test."""

from __future__ import annotations

import os
import pty
import subprocess
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
    else "", what the terminal showed with its line ends as "\\n", exit code)."""
    master, slave = pty.openpty()
    if reply is not None:
        os.write(master, reply.encode() + b"\n")
    try:
        process = subprocess.run(
            list(argv),
            stdin=slave if stdin else subprocess.DEVNULL,
            stdout=slave if stdout else subprocess.PIPE,
            stderr=slave,
            env=dict(env),
            cwd=cwd,
            timeout=timeout,
        )
    finally:
        os.close(slave)
    shown = b""
    while True:  # the child is gone and the parent's end closed: the rest, then EIO
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    piped = "" if stdout else process.stdout.decode()
    return piped, shown.decode(errors="replace").replace("\r\n", "\n"), process.returncode
