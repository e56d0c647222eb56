"""What tests hand the server's child processes (a fit's child, a scoring child) in place of
the real fit or inside a model: a child unpickles each by reference, importing the module that
defines it. Here they are in a module of their own that imports only what a child has already
imported (``CHILD_PRELOAD``): defined in a test module, each child imported that module and the
harness behind it (~0.4 s of CPU per child)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import model.registry as registry_module
from bot.learning import retrain

# -- a fit's child -------------------------------------------------------------------------------


def _no_memory() -> None:
    raise MemoryError


class OutOfMemoryOnArrival:
    """The fit's function, whose unpickling in the child raises MemoryError: where a child
    short of memory fails reading a large task (``call_queue.get``), before the fit runs."""

    def __call__(self, *_args: object) -> None:
        raise AssertionError("never runs: the child cannot even read it")

    def __reduce__(self) -> tuple:
        return (_no_memory, ())


def raises_memory_error(*_args: object) -> None:
    """In the child: the task itself runs out of memory (outside the fit's own handling)."""
    raise MemoryError


def exits_with_an_error(*_args: object) -> None:
    """In the fit's child: end as a Python error ends a process (exit code 1), as an import
    of code changed on disk under the server does, before any result."""
    os._exit(1)


REAL_COMPUTE = retrain.compute  # bound at import: in the child too, where nothing is patched
FULL = os.strerror(errno.ENOSPC)


class FullDisk:
    """``retrain.compute`` with the registry's first write of a ``suffix`` file (the new
    version's ``.skops`` or ``.json``) failing as on a full disk. Picklable: the server's fit
    runs it in its child."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def __call__(self, *args: object) -> retrain.Computed:
        real = registry_module._atomic_write

        def write(path: Path, data: bytes) -> None:
            if path.suffix == self.suffix and not path.exists():
                raise OSError(errno.ENOSPC, FULL)
            real(path, data)

        registry_module._atomic_write = write
        try:
            return REAL_COMPUTE(*args)  # type: ignore[arg-type]
        finally:
            registry_module._atomic_write = real


def broken(*_args: object) -> retrain.Computed:
    """A fit that fails for no known reason: a bug."""
    raise RuntimeError("a bug in the fit")


# -- a scoring child -----------------------------------------------------------------------------


class Ballast:
    """Stands for a large model's arrays: pickling it (for the scoring child, in the server's
    queue feeder thread) raises MemoryError while ``failures`` is above 0, one less each time;
    then it pickles as nothing. ``attempts`` counts the picklings tried."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts = 0

    def __reduce__(self) -> tuple:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise MemoryError
        return (Ballast, ())
