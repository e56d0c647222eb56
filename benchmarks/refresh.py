"""Refresh during the day: does the model the product asks and answers with keep up with a loop
that refits after every 25 labels?

A data set from ../shared/datasets is imported without labels (train.jsonl is the pool). The
sandbox workspace and the real bot run in this process; simulated teammates answer the posted
questions with the true labels (a signed click to ``/slack/events`` each, as `hitl demo
--simulate` does). Every ``--night`` labels the real, gated retrain runs (a "night"). Three arms:

- ``nightly``: ``HITL_REFRESH_EVERY=0``, the model changes only at night;
- ``product``: the default ``HITL_REFRESH_EVERY``;
- ``every25``: ``HITL_REFRESH_EVERY=25`` (the loop ``label_efficiency.py`` measures).

The refreshes happen as in ``hitl serve``: a click wakes the trainer, which refits in the fit
worker (a child process) and re-scores the queue. After every ``--every`` labels the model
that scores the queue (the working model, else the champion) is scored on test.jsonl (held
out, never imported), with the wall-clock time since the start. With ``--pace 0`` (default) the
teammates wait for a refresh under way before the next answer (people slower than a refit:
the same for every run of a seed); with ``--pace S`` they answer every S seconds whatever the
trainer does (a refresh then lands some answers later).

    python benchmarks/refresh.py                               # four datasets, 1,025 labels
    python benchmarks/refresh.py --datasets trec --answers 300
    python benchmarks/refresh.py --quick                       # generated stand-in, for the tests
    python benchmarks/refresh.py --datasets banking77 --answers 300 --compare --typical-until auto

``--typical-until`` sets HITL_TYPICAL_UNTIL for every arm (TypiClust's picks for a young model;
its rows' arms are named so, ``product-typical=auto``); with ``--pace 0`` the teammates wait
for TypiClust's order as they wait for a refresh.

The rows (``--out``, default benchmarks/results/refresh.csv; ``--quick`` writes none unless
``--out`` is given) are appended to the file, each with the commit measured (read once, at the
start, so a commit or rebase of the worktree during the run does not relabel the later arms)
and where the fits ran (``fits``: ``thread`` or ``child``). A file written before those two
columns existed gets them, empty on its earlier rows; a file with another header is refused
before anything runs.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import add_data_options, machine, resolve_data  # noqa: E402
from simulated_loop import load  # noqa: E402

from bot.config import Settings  # noqa: E402
from bot.demo.run import DemoOptions, running_demo  # noqa: E402
from bot.learning.jobs import Trainer  # noqa: E402
from bot.learning.retrain import FitWorker  # noqa: E402
from bot.learning.typical import typical_candidates  # noqa: E402
from model import DEFAULT_PIPELINE  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "refresh.csv"
MARKS = (275, 1025)  # where the target is read
FIELDS = [
    "dataset",
    "arm",
    "refresh_every",
    "seed",
    "labels",
    "answers",
    "seconds",
    "model",
    "refreshes",
    "accuracy",
    "commit",
    "fits",
]
EARLIER = FIELDS[:-2]  # the header before the commit and the fits were recorded


class BadOut(Exception):
    """The --out file cannot take these rows."""


def commit() -> str:
    """The commit measured (short hash), with ``+dirty`` when code differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=30
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git(
        "status", "--porcelain", "--untracked-files=no", "--", "bot", "model", "benchmarks/*.py"
    )
    return f"{head}+dirty" if changed else head


def read_header(path: Path) -> list[str] | None:
    """The header of an existing rows file (None: no file, or an empty one); BadOut when it
    is not one refresh.py writes or wrote."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise BadOut(f"{path}: cannot read it ({exc}); pass another --out") from None
    if header not in (FIELDS, EARLIER):
        raise BadOut(
            f"{path} line 1: the header ({', '.join(header)}) is not refresh.py's"
            f" ({', '.join(FIELDS)}); pass another --out"
        )
    return header


def write_rows(path: Path, rows: list[dict]) -> str:
    """Append ``rows`` to ``path`` (made with a header if new); a file with the earlier
    header is rewritten with the new columns, empty on its rows. Returns what was done."""
    header = read_header(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if header == FIELDS:
        with path.open("a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=FIELDS).writerows(rows)
        return f"{len(rows)} rows appended to {path}"
    earlier: list[dict] = []
    if header == EARLIER:
        with path.open(newline="", encoding="utf-8") as handle:
            earlier = list(csv.DictReader(handle))
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, restval="")
        writer.writeheader()
        writer.writerows(earlier)
        writer.writerows(rows)
    partial.replace(path)
    if earlier:
        return (
            f"{len(rows)} rows appended to {path} (columns commit and fits added,"
            f" empty on its {len(earlier)} earlier rows)"
        )
    return f"{len(rows)} rows written to {path}"


def arms(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(arm, HITL_REFRESH_EVERY) to run: nightly-only, the product, the loop, then any
    ``--compare`` step. A step already run under another name is not run again (with
    ``--pace 0`` a seed gives the same curve): a product whose step is the loop's is the loop."""
    wanted = [("nightly", 0), ("product", args.product), (f"every{args.fast}", args.fast)]
    wanted += [(f"every{step}", step) for step in args.compare]
    steps: set[int] = set()
    out = []
    for arm, every in wanted:
        if every not in steps:
            steps.add(every)
            out.append((arm, every))
    return out


async def run_arm(name: str, arm: str, every: int, args: argparse.Namespace) -> list[dict]:
    data = load(args.data, name, args.pool, args.test, args.seed)
    texts = [item.text for item in data.holdout]
    truth = [item.label for item in data.holdout]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        options = DemoOptions(
            db=Path(tmp) / "hitl.db",
            port=0,
            seed=args.seed,
            simulate=3,
            error_rate=args.error_rate,
            answers=args.answers,
            retrain_every=args.night,
            max_open=5,
            pipeline=args.pipeline,
        )
        quiet = lambda line: None  # noqa: E731 - the demo's chatter is not the benchmark's
        async with running_demo(options, data, quiet, background=False) as demo:
            rt = demo.rt
            rt.settings = rt.settings.with_changes(
                refresh_every=every, typical_until=args.typical_until
            )
            trainer = Trainer.of(rt)
            if not args.in_thread:  # as in `hitl serve`
                trainer.worker = FitWorker()
            simulator = demo.simulator(drive=True)
            simulator.pace = args.pace
            started = time.perf_counter()
            try:
                target = 0
                while target < args.answers:
                    target = min(target + args.every, args.answers)
                    while simulator.n_answers < target:
                        before = simulator.n_answers
                        await simulator.run(before + 1)
                        if simulator.n_answers == before:
                            counts = rt.store.count_items()
                            print(
                                f"{name} {arm}: no question left after {before} answers"
                                f" (items: {', '.join(f'{k} {v}' for k, v in counts.items())})",
                                flush=True,
                            )
                            break
                        if not args.pace:
                            await trainer.settled(timeout=3600)
                            await typical_ready(rt)
                    if simulator.n_answers < target:
                        break  # the pool ran out
                    seconds = time.perf_counter() - started
                    model = rt.model
                    accuracy = None
                    if model is not None:
                        guesses = await asyncio.to_thread(model.classifier.predict, texts)
                        accuracy = sum(g == t for g, t in zip(guesses, truth, strict=True))
                        accuracy /= len(truth)
                    rows.append(
                        {
                            "dataset": name,
                            "arm": arm,
                            "refresh_every": every,
                            "seed": args.seed,
                            "labels": rt.store.count_labels(),
                            "answers": simulator.n_answers,
                            "seconds": round(seconds, 1),
                            "model": None if model is None else model.version,
                            "refreshes": trainer.refreshes,
                            "accuracy": None if accuracy is None else round(accuracy, 4),
                            "commit": args.commit,
                            "fits": "thread" if args.in_thread else "child",
                        }
                    )
            finally:
                if trainer.worker is not None:
                    trainer.worker.close()
    return rows


async def typical_ready(rt) -> None:  # noqa: ANN001 - the demo's Runtime
    """With ``--pace 0`` the teammates wait for TypiClust's order too (HITL_TYPICAL_UNTIL:
    people slower than it, as they are slower than a refit): the order of the model that asks
    now is started, if that model asks one, and computed before the next answer."""
    typical_candidates(rt)  # starts it (once per model version); None while it is computed
    order = rt.typical
    if order is not None and order.task is not None and not order.task.done():
        await order.task


def at(rows: list[dict], labels: int) -> dict | None:
    """The first row at or past ``labels``."""
    return next((r for r in rows if r["labels"] >= labels), None)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def report(name: str, by_arm: dict[str, list[dict]], args: argparse.Namespace) -> list[str]:
    lines = []
    loop = next(arm for arm, every in arms(args) if every == args.fast)  # the run with its step
    renamed, loop = loop != f"every{args.fast}", arm_name(loop, args)
    if renamed:
        lines.append(
            f"{name}: the {loop} refreshes every {args.fast} labels, as the loop does"
            f" (one run, named {loop})"
        )
    for arm, rows in by_arm.items():
        last = rows[-1] if rows else None
        curve = ", ".join(
            f"{r['labels']}: {percent(r['accuracy'])}" for r in rows[:: max(1, len(rows) // 8)]
        )
        lines.append(
            f"{name} {arm}: {curve}"
            + (
                f"; {last['labels']} labels in {last['seconds']:.0f} s,"
                f" {last['refreshes']} refreshes"
                if last
                else ""
            )
        )
    for mark in MARKS:
        reached = at(by_arm[loop], mark)
        if reached is None or reached["accuracy"] is None:
            continue
        for arm in [a for a in by_arm if a != loop]:
            row = at(by_arm[arm], mark)
            if row is None or row["accuracy"] is None:
                lines.append(f"{name} at {mark}: {arm} has no model")
                continue
            gap = (reached["accuracy"] - row["accuracy"]) * 100  # points behind the loop
            if gap > 1.0:
                verdict = f"{gap:.1f} points behind: MORE THAN 1 POINT behind"
            elif gap > 0:
                verdict = f"{gap:.1f} points behind: within 1 point"
            else:
                verdict = f"{-gap:.1f} points ahead"
            lines.append(
                f"{name} at {mark} labels: {arm} {percent(row['accuracy'])} vs every{args.fast}"
                f" {percent(reached['accuracy'])} ({verdict})"
            )
    return lines


def arm_name(arm: str, args: argparse.Namespace) -> str:
    """The arm's name in the rows: with a --typical-until other than the default, saying it."""
    if getattr(args, "typical_until", Settings().typical_until) == Settings().typical_until:
        return arm
    return f"{arm}-typical={args.typical_until}"


def typical_setting(value: str) -> int | str:
    """--typical-until as HITL_TYPICAL_UNTIL reads it (a whole number, or auto)."""
    from bot.config import SPECS

    (spec,) = [s for s in SPECS if s.env == "HITL_TYPICAL_UNTIL"]
    try:
        return spec.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} {exc}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_options(parser, quick=None)
    parser.add_argument(
        "--answers",
        type=int,
        default=1025,
        help="answers (labels) the simulated teammates give per arm and dataset (default "
        "1,025; --quick: 20)",
    )
    parser.add_argument("--night", type=int, default=200, help="labels per night (retrain)")
    parser.add_argument(
        "--product",
        type=int,
        default=Settings().refresh_every,
        help="HITL_REFRESH_EVERY of the product arm (default: the setting's)",
    )
    parser.add_argument("--fast", type=int, default=25, help="the loop to keep up with")
    parser.add_argument(
        "--compare",
        type=int,
        nargs="*",
        metavar="N",
        help="more HITL_REFRESH_EVERY steps to run beside them (default: 50; --quick: none)",
    )
    parser.add_argument("--every", type=int, default=25, help="score the model every N labels")
    parser.add_argument(
        "--pace", type=float, default=0.0, help="seconds between answers (0: wait for refreshes)"
    )
    parser.add_argument("--pool", type=int, default=3000, help="train items imported")
    parser.add_argument("--test", type=int, default=1000, help="test items scored")
    parser.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        help="share of the teammates' answers wrong on purpose (default 0)",
    )
    parser.add_argument(
        "--pipeline",
        default=DEFAULT_PIPELINE,
        help=f"HITL_PIPELINE (default: the product's, {DEFAULT_PIPELINE}; --quick: word_lr)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the pool and test samples and of the simulated workspace (default 0)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"raw rows (CSV), appended (default: {RESULTS.relative_to(ROOT)}; --quick: none)",
    )
    parser.add_argument(
        "--typical-until",
        type=typical_setting,
        default=Settings().typical_until,
        help="HITL_TYPICAL_UNTIL of every arm: a number of labels, or auto (default: the"
        " setting's); with a value other than the default each arm's name says it"
        " (product-typical=auto)",
    )
    parser.add_argument(
        "--in-thread",
        action="store_true",
        help="fit in a worker thread, not a child process (faster here; --quick does)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small run for the test suite: 20 answers, a night every 20, product refresh "
        "every 10, loop every 5, scored every 10 labels, no --compare, 150-item pool, 100 "
        "test items, word_lr, fits in a thread (these replace the options given); no rows "
        "written unless --out",
    )
    args = parser.parse_args(argv)
    if args.out is None and not args.quick:
        args.out = RESULTS
    if args.out is not None:
        try:
            read_header(args.out)  # before the hour it runs, not after
        except BadOut as exc:
            parser.error(str(exc))
    args.data, args.datasets = resolve_data(args)
    if args.compare is None:
        args.compare = [] if args.quick else [50]
    args.commit = commit()  # the code imported now: a commit made during the run is not it
    if args.quick:
        args.answers, args.night, args.product, args.fast, args.every = 20, 20, 10, 5, 10
        args.pool, args.test, args.pipeline, args.in_thread = 150, 100, "word_lr", True
    print(
        f"refresh: {', '.join(args.datasets)}; {args.answers} answers, a night every"
        f" {args.night} labels, product refresh every {args.product}, loop every {args.fast},"
        f" pace {args.pace or 'wait for refreshes'}, pipeline {args.pipeline}, seed {args.seed}"
    )
    print(f"machine: {machine()}; {datetime.now(UTC):%Y-%m-%d}")
    every_row: list[dict] = []
    for name in args.datasets:
        by_arm = {}
        for arm, every in arms(args):
            arm = arm_name(arm, args)
            by_arm[arm] = asyncio.run(run_arm(name, arm, every, args))
            every_row += by_arm[arm]
        for line in report(name, by_arm, args):
            print(line, flush=True)
    if args.out is not None:
        try:
            print(f"rows: {write_rows(args.out, every_row)}")
        except (BadOut, OSError) as exc:
            sys.exit(f"rows not written: {exc}")


if __name__ == "__main__":
    main()
