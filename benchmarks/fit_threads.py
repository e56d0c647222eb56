"""Fit threads: the product's fits with one BLAS thread against BLAS's own default, side by side.

``model.classifier.fit_pipeline`` limits a fit to ``FIT_BLAS_THREADS`` (1) BLAS threads. This
runs the same fits both ways, each way in a fresh child interpreter with no BLAS thread
variables set (as ``hitl serve`` starts): ``default`` sets ``FIT_BLAS_THREADS = None`` (no
limit: OpenBLAS takes a thread per core), ``one`` keeps the product's 1. Each child fits
``TextClassifier()`` ``--fits`` times on N texts drawn from a dataset's train file (seeded: the
same texts both ways) and reports the median wall and CPU seconds of a fit, and the
probabilities it gives 200 of them. Two settings: ``alone`` (one child at a time) and ``pair``
(two children of the same way at once, as a refresh's fit shares two cores with the server's
event loop and scoring child). The ways alternate (default, one, default, one …) so a drift of
the machine reaches both.

    python benchmarks/fit_threads.py [--data DIR] [--datasets NAME …] [--sizes N …] [--fits 5]
    python benchmarks/fit_threads.py --quick     # trec, 60 texts, 1 fit, alone and pair (~7 s)

``--quick`` (the test suite's run) checks the benchmark's workings, not its times: its children
are forked from one fork server that imported the model code once, with no BLAS thread
variables set (as ``hitl serve`` forks its fit child, bot/learning/children.py), instead of
each importing scikit-learn anew (about 2.5 s of CPU a child, six children); its 60 texts are
all probed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import (
    add_data_options,
    fork_server,
    load_jsonl,
    machine,
    markdown_table,
    resolve_data,
)

WAYS = ("default", "one")
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
PROBE = 200  # texts whose probabilities the two ways must agree on


def child(way: str, train: Path, n: int, fits: int) -> dict:
    """Run in the child: ``fits`` fits of ``n`` texts; medians and the probe."""
    import model.classifier
    from model.classifier import TextClassifier

    if way == "default":
        model.classifier.FIT_BLAS_THREADS = None
    texts, labels = load_jsonl(train)
    keep = np.random.default_rng(0).permutation(len(texts))[:n]  # train files can be sorted
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    walls, cpus = [], []
    for _ in range(fits):
        w0, c0 = time.perf_counter(), time.process_time()
        clf = TextClassifier(random_state=0).fit(texts, labels)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    probe = clf.predict_proba(texts[:PROBE])
    return {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "texts": len(texts),
        "classes": len(set(labels)),
        "proba": probe.tolist(),
    }


def run_children(way: str, train: Path, n: int, fits: int, at_once: int, forked=None) -> list[dict]:
    if forked is not None:  # --quick: children forked from the fork server (see the docstring)
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(at_once, mp_context=forked, max_tasks_per_child=1) as pool:
            futures = [pool.submit(child, way, train, n, fits) for _ in range(at_once)]
            return [f.result() for f in futures]
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES}
    command = [sys.executable, __file__, "--child", way, str(train), str(n), str(fits)]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(at_once)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"error: the {way} child failed (exit {proc.returncode})")
        results.append(json.loads(out))
    return results


def measure(
    train: Path, n: int, fits: int, at_once: int, rounds: int, forked=None
) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {way: [] for way in WAYS}
    for _ in range(rounds):
        for way in WAYS:
            runs[way] += run_children(way, train, n, fits, at_once, forked)
    return runs


def max_difference(a: list[list[float]], b: list[list[float]]) -> float:
    return max(
        (
            abs(x - y)
            for row_a, row_b in zip(a, b, strict=True)
            for x, y in zip(row_a, row_b, strict=True)
        ),
        default=0.0,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        way, train, n, fits = argv[1], Path(argv[2]), int(argv[3]), int(argv[4])
        print(json.dumps(child(way, train, n, fits)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_options(parser, quick="trec")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[200, 1000, 2000],
        help="texts per fit (drawn from train.jsonl); default 200 1000 2000",
    )
    parser.add_argument("--fits", type=int, default=5, help="fits per child (default 5)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="alternations of the two ways per size and setting (default 2)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="60 texts, 1 fit, 1 round; children forked from one fork server",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.fits, args.rounds = [60], 1, 1
    folder, names = resolve_data(args)
    forked = None
    if args.quick:  # (after the data is found: a run that ends there changes no environment)
        for name in BLAS_VARIABLES:  # the fork server starts with this environment
            os.environ.pop(name, None)
        forked = fork_server(("__main__", "model.classifier"))
    print(machine(), flush=True)
    t0 = time.perf_counter()
    rows = []
    for name in names:
        train = folder / name / "train.jsonl"
        for n in args.sizes:
            for setting, at_once in (("alone", 1), ("pair", 2)):
                runs = measure(train, n, args.fits, at_once, args.rounds, forked)
                wall = {w: statistics.median(r["wall"] for r in runs[w]) for w in WAYS}
                cpu = {w: statistics.median(r["cpu"] for r in runs[w]) for w in WAYS}
                diff = max(
                    max_difference(a["proba"], b["proba"])
                    for a in runs["default"]
                    for b in runs["one"]
                )
                rows.append([
                    name, f"{runs['one'][0]['texts']:,}",
                    runs["one"][0]["classes"], setting,
                    f"{wall['default']:.3f}", f"{wall['one']:.3f}",
                    f"{cpu['default']:.3f}", f"{cpu['one']:.3f}",
                    f"{wall['default'] / wall['one']:.2f}", f"{cpu['default'] / cpu['one']:.2f}",
                    f"{diff:.1e}",
                ])  # fmt: skip
                print(f"{name} {n} {setting}: wall {wall['default']:.3f} / {wall['one']:.3f} s "
                      f"a fit (default / one)", flush=True)  # fmt: skip
    print()
    print(markdown_table(
        ["dataset", "texts", "classes", "setting", "default wall s", "one wall s",
         "default CPU s", "one CPU s", "wall default / one", "CPU default / one",
         "max Δp"],
        rows,
    ))  # fmt: skip
    print(f"\nmedians of a fit; {args.fits} fits a child, {args.rounds} round(s) of each way; "
          f"total {time.perf_counter() - t0:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
