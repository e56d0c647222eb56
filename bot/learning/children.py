"""Where the server's child processes (scoring, fits) start from: a fork server.

The fork server is a process the server starts once, which imports what the children run
(numpy, scikit-learn, the model code, the fit) and then forks one per child. A child is ready
in milliseconds and shares those modules' memory, where a spawned interpreter imports them
anew (about 2 s of CPU, and for the fit child that is every fit: it is a new process each
time). The fork server has no threads, so forking it is safe, as forking the server (event
loop, worker threads) would not be. Where there is no fork server or no pidfd to watch the
server by (see ``scoring_worker.exit_with_parent``), children are spawned.

This module imports neither numpy nor scikit-learn, so that a command can start the fork
server (:func:`start_fork_server`) before it imports them itself: the two imports then run
side by side on two cores, and a server listens about 2 s sooner. ``hitl serve`` does that
only where a champion waits (:func:`has_champion`): it starts a scoring child at once. A server
with no model yet needs no child until its first fit, which starts the fork server then, so a
first start (and a refused one) does not spend ~3 s of CPU on imports nothing may use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import signal
import threading
import traceback
from collections.abc import Iterator
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What a child runs: the scoring and fit code, and what they import on first use (the bot's
# modules import scikit-learn and scipy only there, so that a server with no model, and the
# commands that only read, do not). scipy.special first: skops.io, as it is imported, looks
# up the module of each of scipy.special's few hundred functions by walking sys.modules in
# the order they were imported (``skops.io._utils.whichmodule``), and with scipy.special
# imported before the bot's own modules (aiohttp, Slack's SDK: 900 modules) each walk ends
# early; the fork server's start took 0.17 s (10 %) less CPU (median of 12).
CHILD_PRELOAD = (
    "scipy.special",
    "bot.learning.scoring_worker",
    "bot.learning.retrain",
    "model.classifier",
    "model.training",
    "scipy.optimize",
    "skops.io",
)
"""The modules the fork server imports before it forks the first child."""


def child_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context the server's children start from (see CHILD_PRELOAD)."""
    _start_resource_tracker()  # before the executor's queues start it
    if "forkserver" in multiprocessing.get_all_start_methods() and _pidfd_works():
        context = _SAFE_PATH_FORK_SERVER
        context.set_forkserver_preload(list(CHILD_PRELOAD))  # read when the server starts
        return context
    return _SPAWN


# Signals a child process never takes: the terminal sends Ctrl-C (SIGINT), and SIGHUP when it
# closes, to its whole process group, children included. Their parent ends them (the server
# stops on either): a child that took a Ctrl-C during its seconds of imports printed a
# traceback from inside them, and a resource tracker that took a SIGHUP was started anew,
# which printed a traceback per semaphore it was then told of.
_PARENTS_SIGNALS = frozenset({signal.SIGINT, signal.SIGHUP})


@contextlib.contextmanager
def _parents_signals_blocked() -> Iterator[None]:
    """``_PARENTS_SIGNALS`` blocked in this thread while it starts a process, which inherits
    the mask (the fork server's children too), as multiprocessing's resource tracker is
    started (which is started first: its own start unblocks SIGINT when done)."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _PARENTS_SIGNALS)
    try:
        multiprocessing.resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, _PARENTS_SIGNALS)
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)  # a Ctrl-C meanwhile comes now


def _start_resource_tracker() -> None:
    """multiprocessing's resource tracker, started with ``_PARENTS_SIGNALS`` blocked (nothing
    when it runs): else the first queue of a ProcessPoolExecutor starts it without."""
    with contextlib.suppress(OSError), _parents_signals_blocked():  # else said where used
        pass


_environ_lock = threading.Lock()


def _ensure_fork_server() -> None:
    """``multiprocessing.forkserver.ensure_running`` (nothing when it runs), with
    PYTHONSAFEPATH=1 in the environment it starts with. It is started as ``python -c …``, which
    puts the working folder first on its path: a file there named like a module it imports
    (an operator's own ``click.py``) would be imported instead, and end it, and every child
    with it. The server itself does not look there (its path starts at the ``hitl`` script's
    folder), nor do the children (they take the server's path). Python 3.11 and later."""
    with _environ_lock:
        before = os.environ.get("PYTHONSAFEPATH")
        os.environ["PYTHONSAFEPATH"] = "1"
        try:
            with _parents_signals_blocked():
                multiprocessing.forkserver.ensure_running()
        finally:
            if before is None:
                del os.environ["PYTHONSAFEPATH"]
            else:
                os.environ["PYTHONSAFEPATH"] = before


class _SafePathProcess(multiprocessing.context.ForkServerProcess):
    """A fork server child, which starts the fork server, when it is not running, without
    the working folder on its path (``_ensure_fork_server``)."""

    @staticmethod
    def _Popen(process_obj):  # noqa: ANN001, ANN205, N802 - multiprocessing's name
        _ensure_fork_server()  # else the child's start would start it, with the folder
        return multiprocessing.context.ForkServerProcess._Popen(process_obj)  # noqa: SLF001


class _SafePathForkServerContext(multiprocessing.context.ForkServerContext):
    Process = _SafePathProcess


_SAFE_PATH_FORK_SERVER = _SafePathForkServerContext()


class _SigintFreeSpawnProcess(multiprocessing.context.SpawnProcess):
    """A spawned child (no fork server here), started with SIGINT and SIGHUP blocked."""

    @staticmethod
    def _Popen(process_obj):  # noqa: ANN001, ANN205, N802 - multiprocessing's name
        with _parents_signals_blocked():
            return multiprocessing.context.SpawnProcess._Popen(process_obj)  # noqa: SLF001


class _SigintFreeSpawnContext(multiprocessing.context.SpawnContext):
    Process = _SigintFreeSpawnProcess


_SPAWN = _SigintFreeSpawnContext()


def awaitable(future: concurrent.futures.Future[T]) -> asyncio.Future[T]:
    """A child's call (``executor.submit``) to await in the running loop, whose cancellation
    does not reach the call. Python 3.11's process pool fails every call still waiting when
    its pool breaks (a child killed, ``scoring_worker.terminate`` at the server's stop) with
    ``set_exception``, which raises InvalidStateError in the pool's thread for a call
    cancelled meanwhile: a traceback as the server stopped (``asyncio.wrap_future``, as
    ``run_in_executor`` uses, cancels the call with its caller). A call its caller gave up
    runs on in the child or is failed with the pool; its outcome goes nowhere."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def settle(done: concurrent.futures.Future[T]) -> None:
        if waiter.done():
            return
        if done.cancelled():
            waiter.cancel()
        elif (error := done.exception()) is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(done.result())

    def copy(done: concurrent.futures.Future[T]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, done)

    future.add_done_callback(copy)
    return waiter


def start_fork_server() -> None:
    """Start the fork server now, if children start from one; it imports CHILD_PRELOAD while
    the caller goes on. The first child would start it anyway, but only once the caller's
    own imports were done: one after the other instead of side by side. Where it cannot start
    now (no room for its socket, a process limit), nothing is lost: the first child tries
    again, where the server reports a failure as it always has."""
    if child_context().get_start_method() == "forkserver":
        try:
            _ensure_fork_server()
        except OSError as exc:
            logger.debug("the fork server did not start early (%s); the first child starts it", exc)


def fork_server_failure(exc: BaseException) -> str | None:
    """One line for ``exc`` when it is a child that could not start because the fork server
    ended (it printed why above: an import of CHILD_PRELOAD failed, say), else None. A dead
    fork server shows as an EOFError (or a refused connection) raised in
    ``multiprocessing.forkserver``, which would else end a command with a bare "Aborted!"."""
    if not isinstance(exc, EOFError | ConnectionError):
        return None
    frames = traceback.extract_tb(exc.__traceback__)
    if not any(f.filename.endswith(os.path.join("multiprocessing", "forkserver.py"))
               for f in frames):  # fmt: skip
        return None
    return (
        "the server's child processes (scoring, fits) could not start: the fork server that"
        f" starts them ended as it started ({type(exc).__name__}; anything it printed is"
        " above). Check that Python can import slack-hitl's modules here (a file named like"
        " one of them, such as click.py, in a folder on PYTHONPATH?)"
    )


def has_champion(models_dir: str | os.PathLike[str]) -> bool:
    """Whether ``models_dir`` holds a champion, read from the versions' metadata alone (no
    scikit-learn). An unreadable folder counts as none: the server reports it itself."""
    from model.registry import ModelRegistry

    try:
        # scanned, not listed: a damaged metadata file is the server's to say, once
        versions, _ = ModelRegistry(models_dir).scan()
        return any(v.status == "champion" for v in versions)
    except OSError:
        return False


def _pidfd_works() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
        return False
    return True
