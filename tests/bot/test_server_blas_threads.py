"""`hitl serve`'s process multiplies matrices on one BLAS thread while it runs: a read in a
worker thread (`/hitl stats`' agreement, ``model.agreement.pairwise_kappa``) holds the GIL
through a numpy product, and OpenBLAS's threads on busy cores held the event loop for
seconds at a million items (benchmarks/commands_scale.py)."""

from __future__ import annotations

from pathlib import Path

from threadpoolctl import threadpool_info, threadpool_limits

from bot.sandbox import FakeSlack
from tests.bot.harness import make_settings, start_bot


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


async def test_the_server_runs_blas_on_one_thread_and_gives_the_setting_back_at_its_stop(
    fake_slack: FakeSlack, tmp_path: Path
):
    with threadpool_limits(limits=2, user_api="blas"):  # as on a machine of 2 cores or more
        assert blas_threads() == {2}
        async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
            assert bot.rt.store is not None
            assert blas_threads() == {1}  # the old code: 2
        assert blas_threads() == {2}
