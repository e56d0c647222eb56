"""Vocabulary growth: what the n-gram cap (``model.classifier.MAX_FEATURES``) does as labels grow.

Texts are resampled with replacement (seed 0) from the train files of the datasets folder
(``--data``, ``$HITL_DATASETS`` or ../shared/datasets; read in place), labeled
"<dataset>/<label>" (89 classes with the four public datasets, as ``model_footprint.py``), and
each gets a ticket number of its own appended, "… (ticket #100123)", as the soak's texts and real
tickets carry one: every label brings a word and a word bigram no other text has. The samples
are nested (the first 10,000 texts of the 50,000 are the 10,000). For each size, two sides:

* ``capped``: the product as it is: ``TextClassifier().fit`` (the default pipeline; SGD above
  2,000 labels), each vectorizer kept to its ``MAX_FEATURES`` (300,000) most frequent n-grams;
* ``uncapped``: the same with ``model.classifier.MAX_FEATURES = None`` set in the child before
  the fit: both vectorizers keep every n-gram (before 8bee5a1 the word one did; the character
  one was capped at 300,000 already).

Steps, one child process each (forked from a fork server that has imported scikit-learn and
skops, as the product's children are), so that each peak RSS is that step's own: ``fit`` =
``TextClassifier().fit`` (wall and CPU seconds, the child's peak RSS, ``ru_maxrss``), then
``ModelRegistry.save`` (the model file as the product writes it, ``model.modelfile.dumps``);
``load`` = ``ModelRegistry.load`` of that file in a fresh child and ``predict_proba`` of one
text ("load +MiB": the child's peak RSS above its RSS before loading, with skops already
imported, so it is the model's), then accuracy and macro-F1 on held-out texts: 1,000 of each
test file, each with a ticket number no training text has.

Every run checks that no capped vocabulary is over the cap and that the uncapped word
vocabulary grows with each size, and exits 1 if not; ``--quick`` also checks that the cap bit.

    python benchmarks/vocabulary_growth.py [--data DIR]    # 10,000, 50,000, 150,000 labels
    python benchmarks/vocabulary_growth.py --sizes 10000 300000 --json rows.json
    python benchmarks/vocabulary_growth.py --quick         # 2,100 and 2,400 labels, cap 1,500

Each size fits SGD. The default sizes took 15 minutes on a shared 2-core machine, most of it the
two fits at 150,000 labels (a fit's CPU time grows about linearly with the labels: 13, 80 and
284 s at 10,000, 50,000 and 150,000); 300,000 labels would add some 20 minutes more.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
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
)

SIDES = ("capped", "uncapped")
SIZES = (10_000, 50_000, 150_000)
QUICK_SIZES = (2_100, 2_400)  # SGD at both (above AUTO_LR_MAX_SAMPLES, 2,000)
QUICK_CAP = 1_500
FIRST_TICKET = 100_000
N_TEST = 1_000  # texts of each test file


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ticketed(text: str, number: int) -> str:
    return f"{text} (ticket #{number})"


def training_set(data: Path, datasets: list[str], n: int) -> tuple[list[str], list[str]]:
    """``n`` texts resampled with replacement (seed 0), text ``i`` with ticket 100000 + i."""
    texts, labels = load_mixture(data, datasets)
    rng = random.Random(0)
    picked = [rng.randrange(len(texts)) for _ in range(n)]
    ticketed = [_ticketed(texts[j], FIRST_TICKET + i) for i, j in enumerate(picked)]
    return ticketed, [labels[j] for j in picked]


def held_out_set(data: Path, datasets: list[str], n_train: int) -> tuple[list[str], list[str]]:
    """The first 1,000 texts of each test file, numbered on from the training tickets."""
    texts, labels = [], []
    for name in datasets:
        t, lb = load_jsonl(data / name / "test.jsonl")
        texts += t[:N_TEST]
        labels += [f"{name}/{x}" for x in lb[:N_TEST]]
    first = FIRST_TICKET + n_train
    return [_ticketed(t, first + i) for i, t in enumerate(texts)], labels


def _set_cap(spec: dict) -> None:
    import model.classifier

    if spec["side"] == "uncapped":
        model.classifier.MAX_FEATURES = None
    elif spec.get("cap") is not None:
        model.classifier.MAX_FEATURES = spec["cap"]


def child_fit(spec: dict) -> dict:
    import model.classifier
    from model.classifier import TextClassifier
    from model.registry import ModelRegistry

    _set_cap(spec)
    texts, labels = training_set(Path(spec["data"]), spec["datasets"], spec["n"])
    rss0 = peak_rss_mib()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    clf = TextClassifier().fit(texts, labels)
    fit_s, fit_cpu_s = time.perf_counter() - t0, _cpu_s() - cpu0
    peak = peak_rss_mib()
    t0 = time.perf_counter()
    meta = ModelRegistry(spec["dir"]).save(clf, n_train=len(labels))
    save_s = time.perf_counter() - t0
    union = clf.pipeline_.named_steps["features"]
    word, char = (union.transformer_list[k][1] for k in (0, 1))
    tickets = {str(FIRST_TICKET + i) for i in range(spec["n"])}
    final = clf.pipeline_.steps[-1][1]
    return {
        "max_features": model.classifier.MAX_FEATURES,
        "estimator": type(final).__name__,
        "n_classes": len(clf.classes),
        "word_ngrams": len(word.vocabulary_),
        "char_ngrams": len(char.vocabulary_),
        "ticket_word_ngrams": sum(
            1 for term in word.vocabulary_ if any(w in tickets for w in term.split())
        ),
        "file_mib": (Path(spec["dir"]) / meta.model_file).stat().st_size / 2**20,
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "fit_rss_before_mib": rss0,
        "fit_peak_mib": peak,
        "save_s": save_s,
    }


def child_load(spec: dict) -> dict:
    import skops.io  # noqa: F401 - imported before the baseline: "load +MiB" is the model's
    from sklearn.metrics import accuracy_score, f1_score

    from model.registry import ModelRegistry

    _set_cap(spec)
    test_x, test_y = held_out_set(Path(spec["data"]), spec["datasets"], spec["n"])
    rss0 = peak_rss_mib()
    t0 = time.perf_counter()
    clf = ModelRegistry(spec["dir"]).load(1)
    clf.predict_proba(test_x[:1])
    load_s = time.perf_counter() - t0
    peak = peak_rss_mib()
    pred = clf.predict(test_x)
    return {
        "load_s": load_s,
        "load_rss_before_mib": rss0,
        "load_peak_mib": peak,
        "load_extra_mib": peak - rss0,
        "n_test": len(test_y),
        "accuracy": accuracy_score(test_y, pred),
        "macro_f1": f1_score(test_y, pred, average="macro"),
    }


STEPS = {"fit": child_fit, "load": child_load}
PRELOAD = ["__main__", "model.classifier", "model.registry", "skops.io", "sklearn.metrics"]
"""What the fork server imports once for every step's child: a fresh child per step still (its
peak RSS its own, counted from the fork server's ~150 MiB as a freshly started interpreter's
would be from its imports), without 1.5-2 s of CPU a child to import them again. The product's
fit and scoring children are forked from a fork server that preloads the same way."""


def _step(kind: str, spec: dict) -> dict:
    warnings.simplefilter("ignore")
    return STEPS[kind](spec)


def step_pool(workers: int) -> ProcessPoolExecutor:
    """Each step in a child of its own (``max_tasks_per_child=1``), forked from a fork server."""
    return ProcessPoolExecutor(workers, mp_context=fork_server(PRELOAD), max_tasks_per_child=1)


def _run_child(pool: ProcessPoolExecutor, kind: str, spec: dict) -> dict:
    try:
        return pool.submit(_step, kind, spec).result()
    except Exception as exc:  # one line, as a user reads it; the child printed its traceback
        raise SystemExit(
            f"error: the {kind} step ({spec['n']:,} labels, {spec['side']}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def measure(
    pool: ProcessPoolExecutor, data: Path, datasets: list[str], n: int, side: str, cap: int | None
) -> dict:
    with tempfile.TemporaryDirectory(prefix="vocabulary-") as tmp:
        spec = {"data": str(data), "datasets": datasets, "n": n, "side": side, "dir": tmp}
        spec["cap"] = cap
        row = {"n_labels": n, "side": side, **_run_child(pool, "fit", spec)}
        row |= _run_child(pool, "load", spec)
    print(
        f"{n:,} labels, {side}: {row['word_ngrams']:,} word + {row['char_ngrams']:,} char "
        f"n-grams; fit {row['fit_s']:.1f} s, {row['fit_peak_mib']:.0f} MiB; "
        f"file {row['file_mib']:.1f} MiB; load +{row['load_extra_mib']:.0f} MiB",
        file=sys.stderr,
        flush=True,
    )
    return row


COLUMNS = (
    ("word n-grams", "word_ngrams", "{:,}", "{:.2f}"),
    ("of them tickets", "ticket_word_ngrams", "{:,}", "{:.2f}"),
    ("char n-grams", "char_ngrams", "{:,}", "{:.2f}"),
    ("file MiB", "file_mib", "{:.1f}", "{:.2f}"),
    ("fit s", "fit_s", "{:.1f}", "{:.2f}"),
    ("fit CPU s", "fit_cpu_s", "{:.1f}", "{:.2f}"),
    ("fit peak RSS MiB", "fit_peak_mib", "{:.0f}", "{:.2f}"),
    ("load +MiB", "load_extra_mib", "{:.0f}", "{:.2f}"),
    ("test accuracy", "accuracy", "{:.3f}", "{:.3f}"),
    ("test macro-F1", "macro_f1", "{:.3f}", "{:.3f}"),
)


def _ratio(a: float, b: float, fmt: str) -> str:
    return fmt.format(a / b) if b else "–"


def report(rows: list[dict]) -> str:
    by = {(r["n_labels"], r["side"]): r for r in rows}
    table = []
    for n in sorted({r["n_labels"] for r in rows}):
        capped, uncapped = by[(n, "capped")], by[(n, "uncapped")]
        for side, row in (("capped", capped), ("uncapped", uncapped)):
            table.append([f"{n:,}", side] + [fmt.format(row[k]) for _, k, fmt, _ in COLUMNS])
        ratios = [_ratio(capped[k], uncapped[k], rfmt) for _, k, _, rfmt in COLUMNS]
        table.append([f"{n:,}", "capped / uncapped", *ratios])
    estimators = {r["estimator"] for r in rows}
    fitted = (
        f"{estimators.pop()} at every size"
        if len(estimators) == 1
        else ", ".join(f"{r['n_labels']:,}: {r['estimator']}" for r in rows[::2])
    )
    cap = next(r["max_features"] for r in rows if r["side"] == "capped")
    head = f"{rows[0]['n_classes']} classes; {fitted}; cap {cap:,} n-grams a vectorizer"
    return (
        head
        + "\n\n"
        + markdown_table(
            ["labels", "side", *(c[0] for c in COLUMNS)], table, "ll" + "r" * len(COLUMNS)
        )
    )


def violations(rows: list[dict], quick: bool) -> list[str]:
    """What the run shows that it should not: a capped vocabulary over the cap, an uncapped word
    vocabulary that does not grow with the labels, and (``quick``) a cap that never bit."""
    found = []
    for r in rows:
        if r["side"] != "capped":
            continue
        for key in ("word_ngrams", "char_ngrams"):
            if r[key] > r["max_features"]:
                found.append(f"{r['n_labels']:,} labels, capped: {key} {r[key]:,} over the cap")
    uncapped = sorted((r["n_labels"], r["word_ngrams"]) for r in rows if r["side"] == "uncapped")
    for (n0, v0), (n1, v1) in zip(uncapped, uncapped[1:], strict=False):
        if v1 <= v0:
            found.append(f"uncapped word n-grams do not grow: {n0:,} → {v0:,}, {n1:,} → {v1:,}")
    if quick and uncapped:
        cap = next(r["max_features"] for r in rows if r["side"] == "capped")
        if uncapped[-1][1] <= cap:
            found.append(f"the cap never bit: {uncapped[-1][1]:,} word n-grams ≤ {cap:,}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_SIZES[0]:,} and {QUICK_SIZES[1]:,} labels with --cap {QUICK_CAP:,}, two "
        "steps at a time (the test suite's run)",
    )
    parser.add_argument(
        "--sizes", nargs="+", type=int, help=f"label counts (default {' '.join(map(str, SIZES))})"
    )
    parser.add_argument(
        "--cap",
        type=int,
        metavar="N",
        help="MAX_FEATURES for the capped side (default: the product's; with --quick "
        f"{QUICK_CAP:,}, so that the cap bites on the small sizes)",
    )
    parser.add_argument("--json", type=Path, help="write the raw rows here")
    add_data_options(parser, DATASETS)
    args = parser.parse_args(argv)
    data, datasets = resolve_data(args)
    sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    cap = args.cap if args.cap is not None else (QUICK_CAP if args.quick else None)
    print(machine())
    jobs = [(n, side) for n in sizes for side in SIDES]
    # --quick (the test suite's run) measures two at a time: it checks the benchmark's workings,
    # not its figures. A real run measures one at a time, alone on the machine.
    workers = 2 if args.quick else 1
    with step_pool(workers) as steps, ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(lambda job: measure(steps, data, list(datasets), *job, cap), jobs))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(report(rows))
    found = violations(rows, args.quick)
    for line in found:
        print(f"violated: {line}")
    print("verdict: " + ("ok" if not found else f"{len(found)} violated"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
