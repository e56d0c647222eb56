"""Single-text /api/predict throughput over HTTP: this code against an earlier commit, side by side.

Both sides run the real `hitl serve` (a subprocess started from the side's own source tree, as
``bot_load.py`` starts it, against the same fake Slack) on a database seeded the same way: the
same ``--labeled`` labeled texts (the four datasets' mixture, ``<dataset>/<label>``: 89
classes) and ``--pending`` unlabeled ones, imported and retrained by that side's own ``hitl``
(model files differ between commits, so each side trains its own from the same labels).
``--clients`` clients then call ``/api/predict`` with a new text per call (an item stored and
scored per call): ``--warmup`` calls, then ``--predicts`` measured. The sides take turns,
``--rounds`` times in the order old, new, new, old, … so that a machine getting busier or
quieter weighs on both alike; the ratio is of calls per second, each side's calls over its
seconds.

The earlier code is exported with ``git archive COMMIT`` into a temporary folder, or read from
``--old-tree DIR`` (a ``git worktree`` at that commit, say). The default commit, 17f71d0, is
the last before the first change made for issue 18 (f784a40: coefficients stored
Fortran-ordered so one text is scored without copying them; then the scorer and the intake).

    python benchmarks/predict_throughput.py [--data DIR]   # 10,000 labels, 2 rounds of 2,000
    python benchmarks/predict_throughput.py --quick        # 20 labels, HEAD against itself
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _common import (
    DATASETS,
    ROOT,
    add_data_options,
    free_port,
    load_mixture,
    machine,
    markdown_table,
    resolve_data,
    write_seed_csv,
)
from bot_load import (
    CHANNELS,
    TOKEN,
    FakeThread,
    Load,
    clean_env,
    predict_load,
    serve_env,
    start_process,
    stop_process,
)

OLD_COMMIT = "17f71d0"


def export_tree(commit: str, into: Path) -> Path:
    """The source tree at ``commit``, exported with ``git archive`` (no worktree is made)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SystemExit(f"git archive {commit} failed: {archive.stderr.decode().strip()}")
    into.mkdir(parents=True)
    tar_path = into.with_suffix(".tar")
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    return into


def side_env(tree: Path, **extra: str) -> dict[str, str]:
    """The environment of a side's processes: its own tree first on the import path."""
    return {**clean_env(**extra), "PYTHONPATH": str(tree)}


def hitl_in(tree: Path, db: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--db", str(db), *args],
        capture_output=True,
        text=True,
        cwd=tree,
        check=False,
        env=side_env(tree),
    )
    if result.returncode != 0:
        raise SystemExit(f"[{tree}] hitl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def seed_side(tree: Path, db: Path, csv_path: Path) -> float:
    """Import the shared rows and retrain with this side's code; the retrain's seconds."""
    hitl_in(tree, db, "import", "-q", str(csv_path))
    t0 = time.perf_counter()
    hitl_in(tree, db, "retrain")
    return time.perf_counter() - t0


async def measure(ft: FakeThread, tree: Path, db: Path, texts: list[str], tag: str, args) -> Load:
    port = free_port()
    env = serve_env(ft.fake, db, CHANNELS["idle"], port, args.max_open)
    env.update(side_env(tree), HITL_API_TOKEN=TOKEN)
    process = await start_process([sys.executable, "-m", "bot", "serve"], env, cwd=tree)
    url = f"http://127.0.0.1:{port}/api/predict"
    try:
        await predict_load(url, texts, args.clients, n=args.warmup, stop=None, tag=f"{tag}w")
        result = await predict_load(url, texts, args.clients, n=args.predicts, stop=None, tag=tag)
    finally:
        code, rest = await stop_process(process)
    if code != 0 or "Traceback" in rest:
        last = rest.strip().splitlines()[-1:] or [""]
        result.note = f"server exit {code} ({last[0][-120:]})"
    return result


def errors(load: Load) -> int:
    return len(load.errors) + sum(n for status, n in load.statuses.items() if status != 200)


def report(runs: list[tuple[str, int, Load]], names: dict[str, str]) -> str:
    rows = []
    for side, round_no, load in runs:
        rows.append(
            [
                names[side],
                round_no,
                f"{len(load.latencies):,}",
                f"{len(load.latencies) / load.seconds:,.1f}",
                f"{load.p(50):.1f}",
                f"{load.p(99):.1f}",
                errors(load),
                load.note,
            ]
        )
    head = ["code", "round", "calls", "calls/s", "p50 ms", "p99 ms", "errors", "note"]
    table = markdown_table(head, rows, "lrrrrrrl")
    rate = {}
    for side in ("old", "new"):
        mine = [lo for s, _, lo in runs if s == side]
        rate[side] = sum(len(lo.latencies) for lo in mine) / sum(lo.seconds for lo in mine)
    return (
        f"{table}\n\nthroughput: new {rate['new']:,.1f} calls/s, old {rate['old']:,.1f} calls/s: "
        f"new / old = {rate['new'] / rate['old']:.2f}"
    )


async def main_async(args) -> int:
    print(machine())
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        old_tree = args.old_tree or export_tree(args.old_commit, tmp / "old")
        trees = {"old": old_tree, "new": ROOT}
        names = {
            "old": f"old ({args.old_commit if args.old_tree is None else old_tree})",
            "new": f"new ({git_head()})",
        }
        print(
            f"{args.labeled:,} labels, {args.pending:,} pending; {args.clients} clients, "
            f"{args.warmup} warm-up + {args.predicts:,} calls a turn, {args.rounds} rounds; "
            f"old: {names['old']}, new: {names['new']}",
            flush=True,
        )
        csv_path = tmp / "seed.csv"
        write_seed_csv(csv_path, args.labeled, args.pending, args.data, args.datasets)
        texts, _ = load_mixture(args.data, args.datasets)
        dbs = {side: tmp / f"{side}.db" for side in trees}
        for side, tree in trees.items():
            seconds = seed_side(tree, dbs[side], csv_path)
            print(f"{side}: retrained in {seconds:.0f} s", flush=True)
        order = [s for r in range(args.rounds) for s in (("old", "new"), ("new", "old"))[r % 2]]
        runs: list[tuple[str, int, Load]] = []
        with FakeThread() as ft:
            for turn, side in enumerate(order):
                load = await measure(ft, trees[side], dbs[side], texts, f"T{turn}", args)
                runs.append((side, turn // 2 + 1, load))
                print(
                    f"  {side}: {len(load.latencies) / load.seconds:,.1f} calls/s, "
                    f"p50 {load.p(50):.1f} ms",
                    flush=True,
                )
    print(report(runs, names))
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def git_head() -> str:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "working tree"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run for the test suite")
    parser.add_argument("--old-commit", default=OLD_COMMIT, help="the earlier code's commit")
    parser.add_argument(
        "--old-tree", type=Path, help="the earlier code's source tree (instead of git archive)"
    )
    parser.add_argument("--labeled", type=int, default=10_000, help="labels each model learns")
    parser.add_argument("--pending", type=int, default=1_000, help="unlabeled items at start")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--predicts", type=int, default=2_000, help="measured calls a turn")
    parser.add_argument("--warmup", type=int, default=100, help="calls before measuring")
    parser.add_argument("--rounds", type=int, default=2, help="turns of each side")
    parser.add_argument("--max-open", type=int, default=5, help="HITL_MAX_OPEN of the servers")
    add_data_options(parser, DATASETS, quick="trec")
    args = parser.parse_args(argv)
    if args.quick:
        args.old_commit = "HEAD"
        args.labeled, args.pending, args.clients = 20, 50, 5
        args.predicts, args.warmup, args.rounds, args.max_open = 40, 10, 1, 2
    args.data, args.datasets = resolve_data(args)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
