"""Where the server's children start from (bot/learning/children.py)."""

from __future__ import annotations

import errno
import multiprocessing.forkserver

import pytest

from bot.learning.children import child_context, start_fork_server


def test_a_fork_server_that_cannot_start_early_is_left_to_the_first_child(
    monkeypatch: pytest.MonkeyPatch,
):
    """`hitl serve` starts the fork server before anything else, outside its one-line error
    handling: a failure there (no file descriptor left, say) must not end the command with a
    traceback. The first child tries again, where a failure is reported as before."""
    tries: list[int] = []

    def refuse() -> None:
        tries.append(1)
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", refuse)
    start_fork_server()  # raises nothing
    uses_fork_server = child_context().get_start_method() == "forkserver"
    assert tries == ([1] if uses_fork_server else [])
