"""The whole loop, simulated on a real data set: does the champion get better as people answer?

A data set from ../shared/datasets is imported without labels (train.jsonl is the pool). The
sandbox workspace and the real bot run in this process; simulated teammates answer the posted
questions with the true labels (a signed click to ``/slack/events`` each, like a person), the
real retrain job runs every ``--retrain-every`` answers, and after each retrain the champion is
scored on test.jsonl (held out, never imported). The curve of that accuracy must rise.

    python benchmarks/simulated_loop.py                        # trec and sms_spam, 400 answers
    python benchmarks/simulated_loop.py --datasets banking77 --answers 1000
    python benchmarks/simulated_loop.py --quick                # trec, 40 answers, for the tests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import add_data_options, resolve_data  # noqa: E402

from bot.demo.data import DemoData, DemoItem  # noqa: E402
from bot.demo.run import DemoOptions, running_demo  # noqa: E402
from bot.demo.simulate import score_champion  # noqa: E402
from model import DEFAULT_PIPELINE  # noqa: E402


def load(data: Path, name: str, n_pool: int, n_test: int, seed: int) -> DemoData:
    rng = random.Random(seed)

    def read(split: str) -> list[dict]:
        path = data / name / f"{split}.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    train, test = read("train"), read("test")
    rng.shuffle(train)
    rng.shuffle(test)
    pool = [DemoItem(f"{name}-{i}", r["text"], r["label"]) for i, r in enumerate(train[:n_pool])]
    holdout = [DemoItem(f"test-{i}", r["text"], r["label"]) for i, r in enumerate(test[:n_test])]
    labels = tuple(sorted({r["label"] for r in train}))
    return DemoData(pool, holdout, labels, {item.id: item.label for item in pool})


async def simulate(name: str, args: argparse.Namespace) -> list[tuple[int, float | None]]:
    data = load(args.data, name, args.pool, args.test, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        options = DemoOptions(
            db=Path(tmp) / "hitl.db",
            port=0,
            seed=args.seed,
            simulate=3,
            error_rate=args.error_rate,
            answers=args.answers,
            retrain_every=args.retrain_every,
            max_open=5,
            pipeline=args.pipeline,
        )
        quiet = lambda line: None  # noqa: E731 - the demo's chatter is not the benchmark's
        async with running_demo(options, data, quiet, background=False) as demo:
            started = time.perf_counter()
            await demo.simulator(drive=True).run(args.answers)
            await demo.rt.background.drain()
            final = await score_champion(demo.rt, data.holdout)
            seconds = time.perf_counter() - started
            curve = [(s.n_labels, s.accuracy) for s in demo.retrainer.scores]
            if not curve or curve[-1][0] != final.n_labels:
                curve.append((final.n_labels, final.accuracy))
    shown = ", ".join(f"{n}: {'–' if a is None else f'{a:.1%}'}" for n, a in curve)
    print(
        f"{name}: {len(data.labels)} labels, pool {len(data.pool):,}, test {len(data.holdout):,},"
        f" {args.answers} answers in {seconds:.0f} s"
    )
    print(f"{name} accuracy on test.jsonl by labels: {shown}")
    scored = [a for _, a in curve if a is not None]
    verdict = "rises" if len(scored) >= 2 and scored[-1] > scored[0] else "DOES NOT RISE"
    print(f"{name}: first {scored[0]:.1%} → last {scored[-1]:.1%}: the curve {verdict}")
    return curve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_options(parser, ("trec", "sms_spam"), quick="trec")
    parser.add_argument(
        "--answers",
        type=int,
        default=400,
        help="answers (labels) the simulated teammates give per dataset (default 400; --quick: 40)",
    )
    parser.add_argument(
        "--retrain-every",
        type=int,
        default=50,
        help="answers between two retrains (default 50; --quick: 20)",
    )
    parser.add_argument("--pool", type=int, default=3000, help="train items imported")
    parser.add_argument("--test", type=int, default=500, help="test items scored")
    parser.add_argument(
        "--error-rate",
        type=float,
        default=0.05,
        help="share of the teammates' answers wrong on purpose (default 0.05)",
    )
    parser.add_argument(
        "--pipeline", default=DEFAULT_PIPELINE, help="HITL_PIPELINE (default: the product's)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the pool and test samples and of the simulated workspace (default 0)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small run for the test suite: 40 answers, a retrain every 20, 600-item pool, "
        "200 test items, pipeline word_lr (these replace the options given)",
    )
    args = parser.parse_args(argv)
    args.data, args.datasets = resolve_data(args)
    if args.quick:
        args.answers, args.retrain_every = 40, 20  # two retrains: the curve's two ends
        args.pool, args.test, args.pipeline = 600, 200, "word_lr"  # fast refits
    print(
        f"simulated loop: pipeline {args.pipeline}, error rate {args.error_rate:.0%}, "
        f"retrain every {args.retrain_every} answers, seed {args.seed}"
    )
    for name in args.datasets:
        asyncio.run(simulate(name, args))


if __name__ == "__main__":
    main()
