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

With ``--share-seed`` (set by ``--quick``), when both trees hold the same product code
(``bot/`` and ``model/``, file for file), one side is seeded and retrained and the other
starts from a copy of its database and models folder (one retrain, not two of the same code;
else each side trains its own, at once). With ``--servers-at-once`` (set by ``--quick``) every
side's server is started before the first turn, all at once, serves each of that side's
turns, and all are stopped after the last (each turn then runs beside the other side's idle
server).

    python benchmarks/predict_throughput.py [--data DIR]   # 10,000 labels, 2 rounds of 2,000
    python benchmarks/predict_throughput.py --quick        # 20 labels, HEAD against itself
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sqlite3
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


PRODUCT = ("bot", "model")  # the product's packages: what a side's server and `hitl` run


def product_files(tree: Path) -> dict[str, bytes]:
    """Every file of the product's packages in ``tree`` (compiled files left out), by path."""
    return {
        str(path.relative_to(tree)): path.read_bytes()
        for package in PRODUCT
        for path in sorted((tree / package).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def copy_seed(db: Path, to: Path) -> None:
    """A copy of a seeded side's database (SQLite's backup: whatever its log still holds) and
    its models folder, for a side that runs the same product code."""
    with (
        contextlib.closing(sqlite3.connect(db)) as src,
        contextlib.closing(sqlite3.connect(to)) as dst,
    ):
        src.backup(dst)
    shutil.copytree(db.with_name(db.name + ".models"), to.with_name(to.name + ".models"))


async def seed_sides(trees: dict[str, Path], dbs: dict[str, Path], csv_path: Path, args) -> None:
    """Seed every side's database: one after another, each with its own code; with
    ``--share-seed``, once for sides whose product code is the same (the others at once)."""
    if not args.share_seed:
        for side, tree in trees.items():
            seconds = seed_side(tree, dbs[side], csv_path)
            print(f"{side}: retrained in {seconds:.0f} s", flush=True)
        return
    same = product_files(trees["old"]) == product_files(trees["new"])
    sides = ["new"] if same else list(trees)
    seconds = await asyncio.gather(
        *(asyncio.to_thread(seed_side, trees[side], dbs[side], csv_path) for side in sides)
    )
    for side, s in zip(sides, seconds, strict=True):
        print(f"{side}: retrained in {s:.0f} s", flush=True)
    if same:
        copy_seed(dbs["new"], dbs["old"])
        print("old: the same product code as new: its database and model copied from new's")


async def start_side(ft: FakeThread, tree: Path, db: Path, args):
    """A side's `hitl serve`, once it listens: the process and its /api/predict URL."""
    port = free_port()
    env = serve_env(ft.fake, db, CHANNELS["idle"], port, args.max_open)
    env.update(side_env(tree), HITL_API_TOKEN=TOKEN)
    process = await start_process([sys.executable, "-m", "bot", "serve"], env, cwd=tree)
    return process, f"http://127.0.0.1:{port}/api/predict"


async def load_side(url: str, texts: list[str], tag: str, args) -> Load:
    """One turn: the warm-up calls, then the measured ones."""
    await predict_load(url, texts, args.clients, n=args.warmup, stop=None, tag=f"{tag}w")
    return await predict_load(url, texts, args.clients, n=args.predicts, stop=None, tag=tag)


async def stop_side(process: asyncio.subprocess.Process, results: list[Load]) -> None:
    """Stop a side's server; a failed exit is noted on the turns it served."""
    code, rest = await stop_process(process)
    if code != 0 or "Traceback" in rest:
        last = rest.strip().splitlines()[-1:] or [""]
        for result in results:
            result.note = f"server exit {code} ({last[0][-120:]})"


async def measure(ft: FakeThread, tree: Path, db: Path, texts: list[str], tag: str, args) -> Load:
    """One turn on a server of its own, started for it and stopped after it."""
    process, url = await start_side(ft, tree, db, args)
    try:
        result = await load_side(url, texts, tag, args)
    except BaseException:
        await stop_side(process, [])
        raise
    await stop_side(process, [result])
    return result


async def turns(ft: FakeThread, trees: dict, dbs: dict, texts: list[str], args) -> list:
    """Every turn, in the order old, new, new, old, …: (side, round, Load) each. Each turn has
    a server of its own; with ``--servers-at-once`` each side has one, for all its turns,
    started all at once before the first and stopped all at once after the last."""
    order = [s for r in range(args.rounds) for s in (("old", "new"), ("new", "old"))[r % 2]]
    runs: list[tuple[str, int, Load]] = []
    servers: dict[str, tuple] = {}
    try:
        if args.servers_at_once:
            started = await asyncio.gather(
                *(start_side(ft, trees[side], dbs[side], args) for side in trees),
                return_exceptions=True,
            )
            servers = {s: r for s, r in zip(trees, started, strict=True) if isinstance(r, tuple)}
            for failed in (r for r in started if isinstance(r, BaseException)):
                raise failed
        for turn, side in enumerate(order):
            if side in servers:
                load = await load_side(servers[side][1], texts, f"T{turn}", args)
            else:
                load = await measure(ft, trees[side], dbs[side], texts, f"T{turn}", args)
            runs.append((side, turn // 2 + 1, load))
            print(
                f"  {side}: {len(load.latencies) / load.seconds:,.1f} calls/s, "
                f"p50 {load.p(50):.1f} ms",
                flush=True,
            )
    finally:
        await asyncio.gather(
            *(
                stop_side(process, [lo for s, _, lo in runs if s == side])
                for side, (process, _) in servers.items()
            )
        )
    return runs


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
        await seed_sides(trees, dbs, csv_path, args)
        with FakeThread() as ft:
            runs = await turns(ft, trees, dbs, texts, args)
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
    parser.add_argument(
        "--share-seed",
        action="store_true",
        help="seed and retrain once when both trees hold the same product code, the other "
        "side a copy (set by --quick)",
    )
    parser.add_argument(
        "--servers-at-once",
        action="store_true",
        help="start every side's server at once before the first turn, one per side for all "
        "its turns, and stop them after the last (set by --quick)",
    )
    add_data_options(parser, DATASETS, quick="trec")
    args = parser.parse_args(argv)
    if args.quick:
        args.old_commit = "HEAD"
        args.labeled, args.pending, args.clients = 20, 50, 5
        args.predicts, args.warmup, args.rounds, args.max_open = 40, 10, 1, 2
        args.share_seed = args.servers_at_once = True  # one retrain, the two starts at once
    args.data, args.datasets = resolve_data(args)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
