"""Scoring in a long-lived child process, for `hitl serve`.

In a worker thread the model holds the GIL while it tokenizes (TF-IDF's character n-grams are
pure Python), and every click's ack on the event loop waits for it between steps. A child
process has its own interpreter: the loop only sends texts and awaits the predictions.

The child keeps the models it was sent (the last ``KEEP`` of them), so a model crosses the pipe
once per version: the champion and a refreshed working model alike (the working model lives
in memory only, with no file to load it from). A child that dies (killed, out of memory) is
replaced at once: the call that found it dead is sent again to the new one, once, after one
warning line in the log; a call that fails again raises :class:`ScoringProcessError`.

A server short of memory (an address-space limit, a container's) may fail to pickle a large
model for the child (in the queue's feeder thread), to start the pool's thread or process, or
the child may fail to score: :class:`ScoringOutOfMemory`, which the scorer says once per
episode (``Scorer.out_of_memory``). A model that did not arrive is sent again at the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import faulthandler
import logging
import os
import resource
import select
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bot.errors import HitlError
from bot.learning.children import awaitable, child_context
from model import selection

T = TypeVar("T")

logger = logging.getLogger(__name__)

MANAGER_CHECK = 1.0  # seconds: how often a call looks whether its pool's thread still runs
KEEP = 2  # models the child keeps: the one scoring and the one that just replaced it
WALK_NICENESS = 10  # the child that re-scores the queue yields the CPU to clicks and producers

ModelKey = tuple[int, int]  # (model version, the parent's id of the classifier object)

_models: OrderedDict[ModelKey, Any] = OrderedDict()  # in the child: the models it was sent


class ScoringProcessError(HitlError):
    """The scoring process failed twice in a row for one call."""


class ScoringOutOfMemory(HitlError):
    """Scoring could not run for lack of memory: ``step`` is where (``send``: pickling the
    model for the child, in this process; ``start``: starting the pool's thread or process;
    ``score``: in the child), ``what`` the failure itself (``MemoryError``, ``can't start new
    thread``). ``problem`` is the line the scorer said (``Scorer``), once it was said."""

    def __init__(self, step: str, what: str, version: int | None = None) -> None:
        super().__init__(f"scoring ran out of memory ({step}: {what})")
        self.step = step
        self.what = what
        self.version = version
        self.problem: str | None = None

    def __str__(self) -> str:
        return self.problem or super().__str__()


def ran_out(exc: BaseException) -> str | None:
    """``exc`` in words when it is the process running out of memory (or of the threads and
    processes memory pays for): a MemoryError, a thread that could not start, a fork refused
    with ENOMEM or EAGAIN; else None."""
    if isinstance(exc, MemoryError):
        return f"MemoryError{f': {exc}' if str(exc) else ''}"
    if isinstance(exc, BrokenProcessPool):
        return None  # a child that died: replaced (``_replace``)
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return "can't start new thread"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOMEM, errno.EAGAIN):
        return f"{type(exc).__name__}: {os.strerror(exc.errno)}"
    return None


def memory_limit() -> str:
    """This process's memory limit in words, for the line that says scoring ran out of it: the
    address-space limit (``ulimit -v``, ``prlimit --as``) and the container's (cgroup)."""
    found = []
    with contextlib.suppress(ValueError, OSError):
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            found.append(f"{_mb(soft)} of address space, from `ulimit -v`")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            raw = Path(path).read_text().strip()
            if raw != "max" and int(raw) < 1 << 60:  # cgroup v1 says "no limit" with ~2**63
                found.append(f"{_mb(int(raw))}, from the container ({Path(path).name})")
                break
    return "; ".join(found) or "none set by `ulimit -v` or a container: the machine's memory"


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


TOP_K = 5

Prediction = tuple[str, float, list[tuple[str, float]], float]  # label, confidence, top-k, priority


def predict_texts(
    classifier: Any, texts: Sequence[str], strategy: str, top_k: int = TOP_K
) -> list[Prediction]:
    """The model's label, confidence, top-``k`` labels and priority for each text, from one
    ``predict_proba`` call (the full probability matrix). Pure; run it in a worker thread."""
    proba = np.asarray(classifier.predict_proba(list(texts)), dtype=np.float64)
    if len(texts) == 0:
        return []
    priorities = selection.priority(proba, strategy)
    classes = list(classifier.classes)
    k = min(top_k, proba.shape[1])
    top = np.argsort(-proba, axis=1, kind="stable")[:, :k]  # ties: the lower column first
    out: list[Prediction] = []
    for i, row in enumerate(top):
        ranked = [(classes[j], float(proba[i, j])) for j in row]
        out.append((ranked[0][0], ranked[0][1], ranked, float(priorities[i])))
    return out


def exit_with_parent(parent: int, poll: float = 1.0) -> None:
    """In a child process of the server: exit once the server (pid ``parent``) is gone.

    A server that shuts down closes its pools, but one killed (``kill -9``, the kernel's OOM
    killer) cannot; its children would wait forever for work, each with a model in memory,
    holding the server's stderr open, and a restarted server would add more. A pool's child
    never sees the end of its queue (it holds a copy of the writing end), so it watches the
    server instead: through a pidfd, which turns readable when the server exits (a child of
    the fork server is not the server's own), else (a spawned child) by its parent's pid
    changing. A server already gone when this runs ends the child at once.
    """
    try:
        pidfd: int | None = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):
        pidfd = None

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while os.getppid() == parent:
                time.sleep(poll)
        os._exit(0)

    threading.Thread(target=watch, name="hitl-exit-with-parent", daemon=True).start()


def resume(pids: Iterable[int | None]) -> None:
    """SIGCONT each child about to be terminated. A stopped child (SIGSTOP, a debugger, a
    frozen cgroup) keeps a SIGTERM pending and never exits, and the pool's join waits for it
    for ever: the server's stop would hang. Running children ignore SIGCONT."""
    for pid in pids:
        if pid is not None:
            with contextlib.suppress(OSError):  # already gone
                os.kill(pid, signal.SIGCONT)


def terminate(executor: ProcessPoolExecutor) -> None:
    """Stop ``executor``'s children now (their work is abandoned) without waiting for them.
    There is no public way to stop a worker in 3.11 (3.14 has ``terminate_workers``): the
    executor's own table of its processes."""
    processes = list(getattr(executor, "_processes", {}).values())
    results = getattr(executor, "_result_queue", None)  # gone after shutdown: read it first
    resume(process.pid for process in processes)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    executor.shutdown(wait=False, cancel_futures=True)
    # A child ended while it sent a result leaves half a message in the results pipe: the
    # executor's thread, reading it, waits for the rest for ever, and the interpreter's exit
    # joins that thread (a server that would not stop). The pipe's other writing ends are
    # the children's: with this process's closed, the read ends at theirs.
    writer = getattr(results, "_writer", None)
    if writer is not None:
        with contextlib.suppress(OSError):
            writer.close()


def _start_feeder(executor: ProcessPoolExecutor) -> None:
    """Start the thread that feeds ``executor``'s calls to its child here, now, if not yet.
    The pool starts it at its first call in its own manager thread, where a failure to start
    it (``can't start new thread``: a server short of memory) ends that thread with a
    traceback and leaves every call waiting for ever; here it raises to the caller. (Private
    attributes: there is no public way in 3.11.)"""
    queue = getattr(executor, "_call_queue", None)
    lock = getattr(queue, "_notempty", None)
    if queue is None or lock is None or not hasattr(queue, "_start_thread"):
        return
    with lock:  # as ``Queue.put`` starts it
        if queue._thread is None:  # noqa: SLF001
            queue._start_thread()  # noqa: SLF001


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _child_start(server: int, niceness: int = 0) -> None:
    """In the child: its priority, exiting with the server (the imports are the fork
    server's, see children.CHILD_PRELOAD), and its stack on stderr should it crash in C."""
    with contextlib.suppress(RuntimeError, OSError, ValueError):
        faulthandler.enable()
    if niceness:
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: no os.nice
            os.nice(niceness)
    exit_with_parent(server)


def _keep(key: ModelKey, classifier: Any) -> int:
    """In the child: hold ``classifier`` under ``key`` (the oldest beyond KEEP goes)."""
    _models[key] = classifier
    _models.move_to_end(key)
    while len(_models) > KEEP:
        _models.popitem(last=False)
    return os.getpid()


def _predict(key: ModelKey, texts: list[str], strategy: str) -> list[Any]:
    """In the child: ``predict_texts`` with the model kept under ``key``."""
    if key not in _models:
        raise LookupError(f"model v{key[0]} was not sent to the scoring process")
    return predict_texts(_models[key], texts, strategy)


def _work(version: int | None) -> str:
    """What a call to the child is for, in the log: ``model v3``, or ``a report``."""
    return "a report" if version is None else f"model v{version}"


class ScoringWorker:
    """Owns the scoring child of one running bot: the process, which models it holds, and
    how often it was replaced. ``predict`` is safe to call from many tasks at once: the
    child takes the calls in order, and a model is sent before the first call that needs it.
    """

    def __init__(self, niceness: int = 0) -> None:
        self.niceness = niceness  # added to the child's nice value: >0 yields the CPU
        self._executor: ProcessPoolExecutor | None = None
        self._sent: OrderedDict[ModelKey, Any] = OrderedDict()  # keeps the ids from reuse
        self.pid: int | None = None
        self.calls = 0  # predict calls the child answered
        self.restarts = 0  # children replaced after one died
        self.closed = False

    def _start(self) -> ProcessPoolExecutor:
        if self.closed:
            raise ScoringProcessError("the scoring process is stopped (the server is stopping)")
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=child_context(),
                initializer=_child_start,
                initargs=(os.getpid(), self.niceness),
            )
            self._sent.clear()
        return self._executor

    @property
    def running(self) -> bool:
        """Whether the child was started (``warm``, a call) and not stopped since: a call then
        starts nothing in the caller's thread (a first start waits for the fork server's
        imports, seconds: never on the event loop once the server listens)."""
        return self._executor is not None

    def warm(self) -> None:
        """Start the child now (the fork server imports for a second or more at its start),
        so the first predict does not wait for it."""
        self._start().submit(os.getpid)  # (a feeder thread that cannot start: see _gathered)

    async def predict(
        self, version: int, classifier: Any, texts: Sequence[str], strategy: str
    ) -> list[Any]:
        """``predict_texts(classifier, texts, strategy)`` in the child; ``version`` names the
        model in the log and, with the classifier object's identity, keys it in the child."""
        key: ModelKey = (version, id(classifier))
        for attempt in (1, 2):
            try:
                executor = self._start()
                _start_feeder(executor)
                *kept, result = await self._gathered(
                    executor, self._steps(executor, key, classifier, texts, strategy), version
                )
            except BrokenProcessPool as exc:  # found dead when the call was submitted
                kept, result = [], exc
            except (MemoryError, RuntimeError, OSError) as exc:
                if (what := ran_out(exc)) is None:
                    raise
                # The pool's thread or process did not start (or its call could not be
                # queued): a pool half started never runs its calls; the next call starts anew.
                self._stop()
                raise ScoringOutOfMemory("start", what, version) from exc
            failed = [r for r in (*kept, result) if isinstance(r, BaseException)]
            if any(isinstance(r, BrokenProcessPool) for r in failed):
                self._replace(executor, version, attempt)
                continue
            if failed:
                self._sent.pop(key, None)  # a model that did not arrive is sent again next time
                steps = ("send",) * len(kept) + ("score",)
                for step, r in zip(steps, (*kept, result), strict=True):
                    if isinstance(r, BaseException) and (what := ran_out(r)) is not None:
                        raise ScoringOutOfMemory(step, what, version) from r
                raise failed[0]
            if kept:
                self.pid = kept[0]
            self.calls += 1
            return result
        raise ScoringProcessError(f"the scoring process died twice scoring with model v{version}")

    async def call(
        self, version: int | None, function: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """``function(*args, **kwargs)`` in the child (a module-level function: it is sent by
        name), after the calls already waiting there: work for the model ``version`` (named in
        the log; None: a report, no model's) whose C code holds the GIL for long stretches, so
        that a worker thread would hold the event loop too (TypiClust's order,
        ``bot.learning.typical``: scipy's sparse products, ~0.2 s each, 3 s once; `/hitl
        stats`' agreement and Dawid–Skene, ``reports.stats_off_loop``). A child that died is
        replaced, once."""
        for attempt in (1, 2):
            executor = self._start()
            _start_feeder(executor)
            try:
                [result] = await self._gathered(
                    executor, [awaitable(executor.submit(function, *args, **kwargs))], version
                )
            except BrokenProcessPool as exc:  # found dead when the call was submitted
                result = exc
            if isinstance(result, BrokenProcessPool):
                self._replace(executor, version, attempt)
                continue
            if isinstance(result, BaseException):
                raise result
            return result
        raise ScoringProcessError(f"the scoring process died twice working for {_work(version)}")

    async def _gathered(
        self, executor: ProcessPoolExecutor, steps: list[asyncio.Future[Any]], version: int | None
    ) -> list[Any]:
        """The steps' results (or exceptions), in order. Meanwhile the pool's manager thread
        is looked at every MANAGER_CHECK seconds: it starts the queue's feeder thread at the
        first call, and when that start fails (``can't start new thread``: a server short of
        memory) the manager thread ends with it and the calls wait for ever, nothing said."""
        gathered = asyncio.gather(*steps, return_exceptions=True)
        try:
            ended = False
            while True:
                done, _ = await asyncio.wait({gathered}, timeout=MANAGER_CHECK)
                if done:
                    return gathered.result()
                thread = getattr(executor, "_executor_manager_thread", None)
                if executor is not self._executor or thread is None or thread.is_alive():
                    ended = False
                    continue
                if ended:  # two looks in a row: not a pool that just broke and says so now
                    break
                ended = True
        except asyncio.CancelledError:  # the caller was cancelled (a server stopping)
            gathered.cancel()
            # Its CancelledError too: nobody waits for it ("exception was never retrieved").
            gathered.add_done_callback(_retrieved)
            raise
        gathered.cancel()
        gathered.add_done_callback(_retrieved)  # its CancelledError: nobody waits for it
        self._stop()
        raise ScoringOutOfMemory(
            "start", "can't start new thread, in the scoring pool's own thread", version
        )

    def _steps(
        self,
        executor: ProcessPoolExecutor,
        key: ModelKey,
        classifier: Any,
        texts: Sequence[str],
        strategy: str,
    ) -> list[asyncio.Future[Any]]:
        """The calls to submit: the model first if the child does not hold it yet (the child
        takes calls in order), then the prediction."""
        steps = []
        if key not in self._sent:
            self._sent[key] = classifier
            while len(self._sent) > KEEP:
                self._sent.popitem(last=False)
            steps.append(awaitable(executor.submit(_keep, key, classifier)))
        steps.append(awaitable(executor.submit(_predict, key, list(texts), strategy)))
        return steps

    def _replace(self, executor: ProcessPoolExecutor, version: int | None, attempt: int) -> None:
        """The child died: say so in one line and start afresh at the next call (once per
        child: the calls that were waiting on it all find it dead)."""
        if executor is not self._executor:
            return  # another call replaced it already
        logger.warning(
            "the scoring process (pid %s) died while %s; %s",
            self.pid,
            "working on a report" if version is None else f"scoring with model v{version}",
            "starting a new one" if attempt == 1 else "giving up on this call",
        )
        self.restarts += 1
        self._stop()

    def close(self) -> None:
        """Stop the child for good (shutdown): calls in flight and later fail."""
        self.closed = True
        self._stop()

    def _stop(self) -> None:
        executor, self._executor = self._executor, None
        self._sent.clear()
        if executor is None:
            return
        terminate(executor)
        self.pid = None
