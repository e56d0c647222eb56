"""What the suite's hypothesis state machines share: their settings (derandomized in CI, a
random hunt when asked) and how each is run."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine


def machine_settings(
    examples: int, steps: int, *, hunt_env: str | None = None, hunt_steps: int = 30
) -> settings:
    """``examples`` derandomized runs of ``steps`` steps (what CI runs); with ``hunt_env``
    set to N in the environment, N random runs of ``hunt_steps`` steps instead (to look for
    defects, not in CI)."""
    hunt = int(os.environ.get(hunt_env, "0")) if hunt_env else 0
    return settings(
        max_examples=hunt or examples,
        stateful_step_count=hunt_steps if hunt else steps,
        deadline=None,
        derandomize=not hunt,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def run_machine(machine: type[RuleBasedStateMachine], at: settings) -> None:
    """Run ``machine`` with ``at``; print what its rules met (``seen``, when it counts them)."""
    machine.TestCase.settings = at
    seen = getattr(machine, "seen", None)
    if seen is not None:
        seen.clear()
    machine.TestCase().runTest()
    if seen is not None:
        print(dict(seen))


def end_machine(
    loop: asyncio.AbstractEventLoop, tmp: Path, stop: Coroutine[Any, Any, None]
) -> None:
    """A machine's teardown: ``stop`` (its server's, its fake Slack's) run on its loop, then
    the loop closed and its folder removed, whatever ``stop`` raised."""
    try:
        loop.run_until_complete(stop)
    finally:
        loop.close()
        shutil.rmtree(tmp, ignore_errors=True)
