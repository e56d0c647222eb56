"""Refresh during the day with a large backlog: how soon the answers reach the model that asks.

After HITL_REFRESH_EVERY new labels the server refits the working model, and the queue is then
re-scored with it by a walk over every waiting item (a niced scoring child), which at a million
items takes minutes. This runs the real `hitl serve` (``bot_load.py``'s fake Slack, seeding and
process handling) on a champion trained by ``hitl retrain`` on ``--labeled`` dataset labels,
with N items waiting (``_common.grow_backlog``: synthetic texts scored as the champion leaves
them), HITL_VOTES=1 (a click decides its question), HITL_MAX_OPEN = HITL_REFRESH_EVERY =
``--every``. Each round decides the open questions (signed clicks on a label the champion
does not predict, as ``bot_load.py``'s mix does, so the audit gate cannot keep the
champion) and times from the last click's ack to the server asking with the refresh those
labels bring (its ``hitl_model_version{role="asks"}``): the team answers on as soon as it is
asked from the new model, faster than a walk over the backlog. Cells: per size, each round's
wait; the ratio of a round's wait at each size to the smallest size's in the same run; the
items the walks scored.

    python benchmarks/refresh_backlog.py                          # 10,000 and 1,000,000 waiting
    python benchmarks/refresh_backlog.py --sizes 10000 100000 --rounds 4
    BENCH_SERVER_CHECKOUT=../other python benchmarks/refresh_backlog.py  # another checkout's server
    python benchmarks/refresh_backlog.py --quick                  # stand-in, 20 labels, 500 waiting
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    DATASETS,
    add_data_options,
    free_port,
    grow_backlog,
    load_mixture,
    machine,
    markdown_table,
    resolve_data,
)
from bot_load import (
    CHANNELS,
    SERVER_ROOT,
    FakeThread,
    _not_the_champions_guess,
    metric,
    run_load,
    serve_env,
    start_process,
    step,
    stop_process,
    train_seed_champion,
)

from tests import signing

CHANNEL = CHANNELS["mix"]


def open_questions(ft: FakeThread, clicked: set[str]) -> list[dict]:
    """The questions in the channel with label buttons that no round has clicked yet."""
    out = []
    for message in ft.messages(CHANNEL):
        if message["ts"] in clicked or not message.get("blocks"):
            continue
        actions = [b for b in message["blocks"] if b["type"] == "actions"]
        if actions and any(
            e["action_id"].startswith("hitl.q.label.") for e in actions[0]["elements"]
        ):
            out.append({**message, "channel": CHANNEL})
    return out


def decide(message: dict, round_no: int, db: Path, audits_only: bool = False) -> dict:
    """A signed-click payload deciding ``message`` on a label the champion does not predict
    (with ``audits_only``, set by ``--quick``, only if it is an audit question, the only answers
    the refresh's gate holds out: ``bot_load._not_the_champions_guess``)."""
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    first = next(e for e in actions["elements"] if e["action_id"].startswith("hitl.q.label."))
    payload = signing.block_actions_payload(
        f"U0R{round_no:03d}",
        first["action_id"],
        first["value"],
        channel=CHANNEL,
        message_ts=message["ts"],
        block_id=actions["block_id"],
        message=message,
    )
    return _not_the_champions_guess([payload], db, audits_only=audits_only)[0]


async def until(condition, limit_s: float) -> float | None:  # noqa: ANN001
    """Seconds until ``condition()`` (async) holds, or None past ``limit_s``."""
    t0 = time.perf_counter()
    while not await condition():
        if time.perf_counter() - t0 > limit_s:
            return None
        await asyncio.sleep(0.1)  # a benchmark watching another process, not a test
    return time.perf_counter() - t0


async def run_size(ft: FakeThread, args: argparse.Namespace, n_items: int, tmp: Path) -> dict:
    db = tmp / f"backlog{n_items}.db"
    labels, retrain_s = train_seed_champion(db, args.labeled, args.data, args.datasets)
    texts, _ = load_mixture(args.data, args.datasets)
    words = sorted({w for t in texts[:20_000] for w in t.split()})
    step(f"growing the backlog to {n_items:,}")
    seed_s = grow_backlog(db, 0, n_items, words, labels)
    port = free_port()
    env = serve_env(ft.fake, db, CHANNEL, port, args.every)
    env.update(HITL_VOTES="1", HITL_REFRESH_EVERY=str(args.every))
    process = await start_process([sys.executable, "-m", "bot", "-v", "serve"], env)
    base = f"http://127.0.0.1:{port}"
    waits: list[float | None] = []
    clicked: set[str] = set()
    try:
        for round_no in range(1, args.rounds + 1):
            questions: list[dict] = []

            async def posted(clicked: set[str] = clicked) -> bool:
                nonlocal questions
                questions = open_questions(ft, clicked)
                return len(questions) >= args.every

            if await until(posted, args.wait) is None:
                raise SystemExit(f"round {round_no}: only {len(questions)} questions posted")
            asks = await metric(base, 'hitl_model_version{role="asks"}')
            batch = questions[: args.every]
            clicked.update(m["ts"] for m in batch)
            load = await run_load(
                f"round {round_no}", f"{base}/slack/events",
                [decide(m, round_no, db, args.quick) for m in batch], args.every,
            )  # fmt: skip
            if load.ok != len(batch):
                raise SystemExit(f"round {round_no}: {load.statuses} {load.errors[:3]}")

            async def adopted(before: float = asks) -> bool:
                now = await metric(base, 'hitl_model_version{role="asks"}')
                return now < 0 and now != before

            step(f"round {round_no}: waiting for the refresh to ask")
            waits.append(await until(adopted, args.wait))
            if waits[-1] is None:
                break
        scored = await metric(base, "hitl_items_scored_total")
    finally:
        await stop_process(process)
    return {
        "items": n_items,
        "waits": waits,
        "scored": scored,
        "seed_s": seed_s,
        "retrain_s": retrain_s,
        "classes": len(labels),
    }


def report(results: list[dict], args: argparse.Namespace) -> str:
    base = results[0]
    rows = []
    for result in results:
        for k, wait in enumerate(result["waits"], 1):
            floor = base["waits"][k - 1] if k <= len(base["waits"]) else None
            ratio = f"{wait / floor:.2f}" if wait is not None and floor else "–"
            shown = f"{wait:.1f}" if wait is not None else f"> {args.wait:.0f}"
            rows.append([f"{result['items']:,}", k, shown, ratio])
    lines = [
        markdown_table(
            ["waiting items", "round", "last ack → asks from the refresh (s)", "× smallest size"],
            rows,
            "rrrr",
        ),
        "",
    ]
    for result in results:
        later = [w for w in result["waits"][1:] if w is not None]
        lines.append(
            f"- {result['items']:,} waiting: rounds 2–{args.rounds} median "
            + (f"{statistics.median(later):.1f} s" if later else "–")
            + f"; the walks scored {result['scored']:,.0f} items; backlog grown in "
            f"{result['seed_s']:.0f} s, champion ({result['classes']} classes) in "
            f"{result['retrain_s']:.0f} s"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    print(machine())
    print(
        f"server: {SERVER_ROOT}; {args.labeled:,} labels, HITL_REFRESH_EVERY = HITL_MAX_OPEN = "
        f"{args.every}, {args.rounds} rounds per size"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp, FakeThread() as ft:
        for n_items in args.sizes:
            results.append(await run_size(ft, args, n_items, Path(tmp)))
    print(report(results, args))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run for the test suite")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=3, help="refreshes per size")
    parser.add_argument("--every", type=int, default=25, help="HITL_REFRESH_EVERY and MAX_OPEN")
    parser.add_argument("--labeled", type=int, default=1_000, help="labels the champion learns")
    parser.add_argument(
        "--wait", type=float, default=900, help="seconds a round may wait for its refresh"
    )
    add_data_options(parser, DATASETS, quick="trec")
    args = parser.parse_args(argv)
    if args.quick:
        # 20 labels (26 after the rounds): under 30, no retrain or refresh computes a learning
        # curve (model/stopping.py), which is no part of how soon a refresh asks
        args.sizes, args.rounds, args.every, args.labeled = [500], 2, 3, 20
        # a refresh of 26 labels asks within seconds: a run whose refresh never asks ends in
        # two minutes, not fifteen (its test runs it in the test's own process, no timeout)
        args.wait = min(args.wait, 120)
    args.data, args.datasets = resolve_data(args)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
