"""Model footprint: retrain time and memory, file size, load time and memory, one-text latency.

Texts are resampled from the train files of the datasets folder (``--data``, ``$HITL_DATASETS``
or ../shared/datasets; read in place), labeled "<dataset>/<label>" (89 classes with the four
public datasets). For each size, two sides, each in child processes of its own:

* ``before``: the models and files as the product made them before: every character n-gram a
  feature (``model.classifier.CHAR_MIN_DF = 1``), logistic regression fitted by scikit-learn's
  default L-BFGS (``LR_SOLVER = "lbfgs"``), its coefficients as fitted (``COEF_DTYPE = None``),
  the model file a bare skops dump of the pipeline (``skops.io.dumps(pipeline)``, format 1) and
  the classifier taken as loaded, its coefficients in the order scikit-learn fits them (C for
  SGD, Fortran for L-BFGS);
* ``now``: the product as it is (``train_candidate``, ``ModelRegistry.save`` / ``load``).

Steps (one child each, so each peak RSS is that step's own; forked, as `hitl serve` forks its
fit child, from a fork server that imported the model code once): ``retrain`` = ``train_candidate``
(k-fold CV + final fit) and writing the model file, the model part of ``hitl retrain``; ``load``
= reading the file back into a ``TextClassifier``, then ``predict_proba`` on one text at a time
(median of 200 test texts; 20 with ``--quick``). Peak RSS is the child's ``ru_maxrss``; "load
+MiB" is the peak above the RSS the child had before loading. Accuracy / macro-F1 are on 1,000
texts of each test file.

    python benchmarks/model_footprint.py [--data DIR]           # 1,000 and 10,000 labels
    python benchmarks/model_footprint.py --sizes 1000 10000 50000 --json rows.json
    python benchmarks/model_footprint.py --quick     # stand-in, 60 and 2,001 labels, two at a time
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import (
    DATASETS,
    add_data_options,
    fork_server,
    load_jsonl,
    load_mixture,
    machine,
    markdown_table,
    peak_rss_mib,
    resolve_data,
    run_in_child,
)

SIDES = ("before", "now")
N_LATENCY = 200


def _sample(data: Path, datasets: list[str], n: int) -> tuple[list[str], list[str]]:
    import random

    texts, labels = load_mixture(data, datasets)
    rng = random.Random(0)
    idx = [rng.randrange(len(texts)) for _ in range(n)]
    return [texts[i] for i in idx], [labels[i] for i in idx]


def _test_set(data: Path, datasets: list[str]) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for name in datasets:
        t, lb = load_jsonl(data / name / "test.jsonl")
        texts += t[:1000]
        labels += [f"{name}/{x}" for x in lb[:1000]]
    return texts, labels


def child_retrain(spec: dict) -> dict:
    warnings.simplefilter("ignore")
    import numpy as np
    import skops.io as sio
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import accuracy_score, f1_score

    import model.classifier
    from model.registry import ModelRegistry
    from model.training import train_candidate

    if spec["side"] == "before":  # every character n-gram, coefficients as fitted by L-BFGS
        model.classifier.LR_SOLVER = "lbfgs"
        model.classifier.CHAR_MIN_DF = 1
        model.classifier.COEF_DTYPE = None
    texts, labels = _sample(Path(spec["data"]), spec["datasets"], spec["n"])
    t0 = time.perf_counter()
    cand = train_candidate(texts, labels)
    if not cand.is_trained:
        raise SystemExit(f"error: train_candidate failed: {cand.reason}")
    clf = cand.classifier
    final = clf.pipeline_[-1]
    if spec["side"] == "before":  # format 1: the bare pipeline, coefficients as fitted
        if isinstance(final, SGDClassifier):  # C-ordered from SGD; L-BFGS gives Fortran order
            final.coef_ = np.ascontiguousarray(final.coef_)
        path = Path(spec["dir"]) / "before.skops"
        path.write_bytes(sio.dumps(clf.pipeline_))
    else:
        meta = ModelRegistry(spec["dir"]).save(clf, n_train=len(labels))
        path = Path(spec["dir"]) / meta.model_file
    seconds = time.perf_counter() - t0
    peak = peak_rss_mib()
    test_x, test_y = _test_set(Path(spec["data"]), spec["datasets"])
    pred = clf.predict(test_x)
    np.save(Path(spec["dir"]) / "proba.npy", clf.predict_proba(test_x[:500]))
    return {
        "retrain_s": seconds,
        "retrain_peak_mib": peak,
        "file_mib": path.stat().st_size / 2**20,
        "estimator": type(final).__name__,
        "n_features": int(final.coef_.shape[1]),
        "n_classes": len(clf.classes),
        "accuracy": accuracy_score(test_y, pred),
        "macro_f1": f1_score(test_y, pred, average="macro"),
    }


def child_load(spec: dict) -> dict:
    warnings.simplefilter("ignore")
    import numpy as np
    import skops.io as sio

    from model.classifier import DEFAULT_PIPELINE, TextClassifier
    from model.registry import ModelRegistry

    test_x, _ = _test_set(Path(spec["data"]), spec["datasets"])
    rss0 = peak_rss_mib()
    t0 = time.perf_counter()
    if spec["side"] == "before":  # as the registry loaded format 1: no change of layout
        pipeline = sio.loads((Path(spec["dir"]) / "before.skops").read_bytes(), trusted=[])
        classes = sorted(str(c) for c in pipeline.classes_)
        clf = TextClassifier(DEFAULT_PIPELINE, 0, classes, pipeline)
    else:
        clf = ModelRegistry(spec["dir"]).load(1)
    load_s = time.perf_counter() - t0
    load_peak = peak_rss_mib()
    same = bool(np.array_equal(clf.predict_proba(test_x[:500]), np.load(spec["proba"])))
    times = []
    for text in test_x[: spec.get("n_latency", N_LATENCY)]:
        t0 = time.perf_counter()
        clf.predict_proba([text])
        times.append(time.perf_counter() - t0)
    return {
        "load_s": load_s,
        "load_extra_mib": load_peak - rss0,
        "predict_one_ms": statistics.median(times) * 1000,
        "same_proba_after_load": same,
        "coef_fortran": bool(clf.pipeline_[-1].coef_.flags.f_contiguous),
    }


# What a child imports before it forks one per step (see _common.fork_server)
PRELOAD = ("__main__", "model.training", "model.registry", "skops.io", "sklearn.metrics")
CHILDREN = fork_server(PRELOAD)


def _run_child(kind: str, spec: dict) -> dict:
    return run_in_child(CHILDREN, kind, child_retrain if kind == "retrain" else child_load, spec)


def measure(data: Path, datasets: list[str], n: int, side: str, n_latency: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        spec = {"data": str(data), "datasets": datasets, "n": n, "side": side, "dir": tmp}
        spec["n_latency"] = n_latency
        row = {"n_labels": n, "side": side, **_run_child("retrain", spec)}
        spec["proba"] = str(Path(tmp) / "proba.npy")
        row |= _run_child("load", spec)
    print(
        f"{n:,} labels, {side}: retrain {row['retrain_s']:.1f} s, "
        f"{row['retrain_peak_mib']:.0f} MiB; file {row['file_mib']:.1f} MiB; "
        f"load {row['load_s']:.2f} s",
        file=sys.stderr,
        flush=True,
    )
    return row


METRICS = (
    ("retrain s (CV + fit + save)", "retrain_s", "{:.1f}"),
    ("retrain peak RSS MiB", "retrain_peak_mib", "{:.0f}"),
    ("model file MiB", "file_mib", "{:.1f}"),
    ("load s", "load_s", "{:.2f}"),
    ("load peak RSS +MiB", "load_extra_mib", "{:.0f}"),
    ("predict one text ms (median)", "predict_one_ms", "{:.2f}"),
    ("test accuracy", "accuracy", "{:.3f}"),
    ("test macro-F1", "macro_f1", "{:.3f}"),
)


def report(rows: list[dict]) -> str:
    by = {(r["n_labels"], r["side"]): r for r in rows}
    out = []
    for n in sorted({r["n_labels"] for r in rows}):
        before, now = by[(n, "before")], by[(n, "now")]
        table = []
        for name, key, fmt in METRICS:
            ratio = now[key] / before[key] if before[key] else float("nan")
            table.append((name, fmt.format(before[key]), fmt.format(now[key]), f"{ratio:.2f}"))
        head = f"{n:,} labels, {now['n_classes']} classes, {now['estimator']}"
        head += f" ({now['n_features']:,} features)"
        out.append(f"{head}\n\n" + markdown_table(["", "before", "now", "now / before"], table))
        out.append(
            f"now: same probabilities after load as when fitted: {now['same_proba_after_load']}; "
            f"coefficients Fortran-ordered: {now['coef_fortran']} (before: "
            f"{before['coef_fortran']})"
        )
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="60 and 2,001 labels (SGD in every CV fold)"
    )
    parser.add_argument("--sizes", nargs="+", type=int, help="label counts (default 1000 10000)")
    parser.add_argument("--json", type=Path, help="write the raw rows here")
    add_data_options(parser, DATASETS)
    args = parser.parse_args(argv)
    data, datasets = resolve_data(args)
    # --quick: logistic regression, and SGD just above AUTO_LR_MAX_SAMPLES (2,000; the CV
    # folds fit the configuration of all the labels, TextClassifier.fit's sized_for)
    sizes = args.sizes or ([60, 2001] if args.quick else [1000, 10000])
    print(machine())
    n_latency = 20 if args.quick else N_LATENCY
    jobs = [(n, side) for n in sizes for side in SIDES]
    # --quick (the test suite's run) measures two at a time: it checks the benchmark's workings,
    # not its times. A real run measures one at a time, alone on the machine.
    with ThreadPoolExecutor(2 if args.quick else 1) as pool:
        rows = list(pool.map(lambda job: measure(data, list(datasets), *job, n_latency), jobs))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
