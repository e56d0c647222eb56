"""Compare the candidate text pipelines at small and full label counts.

Reads <datasets folder>/<name>/{train,test}.jsonl (``--data``, ``$HITL_DATASETS`` or
../shared/datasets; train = labeling pool, test = evaluation); never copies them. For each
dataset, label count and seed it draws a stratified-ish subset of the pool (one example per class
when the count allows, the rest uniformly at random), fits every pipeline in
``model.classifier.PIPELINES`` and reports accuracy, macro-F1 and fit time on the test file.

    python benchmarks/model_comparison.py            # full run (a few minutes)
    python benchmarks/model_comparison.py --quick    # < 60 s smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import DATASETS, add_data_options, resolve_data  # noqa: E402

from model.classifier import PIPELINES, TextClassifier  # noqa: E402


def load(path: Path) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts.append(row["text"])
            labels.append(row["label"])
    return texts, labels


def subset(labels: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """One random example per class (if ``n`` allows), then the rest uniformly at random."""
    if n >= len(labels):
        return np.arange(len(labels))
    y = np.asarray(labels)
    classes = np.unique(y)
    first = []
    if n >= len(classes):
        first = [rng.choice(np.flatnonzero(y == c)) for c in classes]
    rest = np.setdiff1d(np.arange(len(y)), first)
    more = rng.choice(rest, n - len(first), replace=False)
    return np.concatenate([np.asarray(first, dtype=int), more])


def run(quick: bool, data: Path, datasets: list[str], pipelines: list[str]) -> list[dict]:
    sizes = [100] if quick else [50, 100, 500, 1000, 0]  # 0 = full pool
    n_seeds = 1 if quick else 3
    rows = []
    for name in datasets:
        pool_x, pool_y = load(data / name / "train.jsonl")
        test_x, test_y = load(data / name / "test.jsonl")
        if quick:
            keep = np.random.default_rng(0).choice(len(test_x), 300, replace=False)
            test_x, test_y = [test_x[i] for i in keep], [test_y[i] for i in keep]
        for size in sizes:
            n = size or len(pool_x)
            for seed in range(1 if size == 0 else n_seeds):
                idx = subset(pool_y, n, np.random.default_rng(seed))
                xs, ys = [pool_x[i] for i in idx], [pool_y[i] for i in idx]
                for pipe in pipelines:
                    t0 = time.perf_counter()
                    clf = TextClassifier(pipe, random_state=seed).fit(xs, ys)
                    fit_s = time.perf_counter() - t0
                    pred = clf.predict(test_x)
                    rows.append(
                        {
                            "dataset": name,
                            "n_labels": n,
                            "full": size == 0,
                            "seed": seed,
                            "pipeline": pipe,
                            "accuracy": accuracy_score(test_y, pred),
                            "macro_f1": f1_score(test_y, pred, average="macro", zero_division=0),
                            "fit_s": fit_s,
                        }
                    )
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], pipelines: list[str]) -> str:
    """Markdown: one line per (dataset, label count), accuracy / macro-F1 per pipeline."""
    keys = sorted({(r["dataset"], r["full"], r["n_labels"]) for r in rows})
    head = "| dataset | labels | " + " | ".join(pipelines) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(pipelines)]
    for ds, full, n in keys:
        cells = []
        for p in pipelines:
            sel = [
                r
                for r in rows
                if (r["dataset"], r["full"], r["n_labels"], r["pipeline"]) == (ds, full, n, p)
            ]
            acc = statistics.mean(r["accuracy"] for r in sel)
            f1 = statistics.mean(r["macro_f1"] for r in sel)
            cells.append(f"{acc:.3f} / {f1:.3f}")
        label = f"{n} (full)" if full else str(n)
        lines.append(f"| {ds} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[dict], pipelines: list[str]) -> str:
    """Markdown: mean macro-F1 over datasets per label count, and mean fit time."""
    sizes: list[int | str] = sorted({r["n_labels"] for r in rows if not r["full"]})
    sizes += ["full"] if any(r["full"] for r in rows) else []
    lines = ["| pipeline | " + " | ".join(f"F1 @ {s}" for s in sizes) + " | mean fit s (full) |"]
    lines.append("|---|" + "---:|" * (len(sizes) + 1))
    for p in pipelines:
        cells = []
        for s in sizes:
            sel = [
                r
                for r in rows
                if r["pipeline"] == p
                and (r["full"] if s == "full" else (not r["full"] and r["n_labels"] == s))
            ]
            cells.append(f"{statistics.mean(r['macro_f1'] for r in sel):.3f}")
        full = [r["fit_s"] for r in rows if r["pipeline"] == p and r["full"]]
        fit = f"{statistics.mean(full):.1f}" if full else "–"
        lines.append(f"| {p} | " + " | ".join(cells) + f" | {fit} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 labels, 1 seed, 300 test rows")
    add_data_options(parser, DATASETS)
    parser.add_argument("--pipelines", nargs="*", default=list(PIPELINES))
    parser.add_argument("--json", type=Path, help="also write the raw rows here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # a benchmark, not a test: keep the output readable
    t0 = time.perf_counter()
    data, datasets = resolve_data(args)
    rows = run(args.quick, data, list(datasets), args.pipelines)
    print("accuracy / macro-F1 on test.jsonl (mean over seeds)\n")
    print(table(rows, args.pipelines))
    print("\nmean macro-F1 over datasets\n")
    print(summary(rows, args.pipelines))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
