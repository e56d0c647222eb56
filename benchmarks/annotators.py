"""A simulated team of mixed quality: majority against Dawid–Skene, and what each costs the model.

For each dataset, error model and seed: 1,000 items drawn from train.jsonl (truth = the
dataset's label); three annotators, right 95 %, 85 % and 60 % of the time, each answer every
item (HITL_VOTES=3). A wrong answer is another label drawn uniformly ("uniform"), or the label
nearest to the true one by TF-IDF class centroid ("confusable": everyone mistakes the same pair).
A random 5 % of the items are gold (their truth is known).

The votes are resolved by ``model.aggregation``: ``majority`` (a three-way split stays
undecided), ``dawid_skene``, and ``dawid_skene`` seeded with the gold answers. Reported: the
accuracy of the resolved labels on the items that are not gold (undecided counts as wrong), each
annotator's estimated accuracy against their realised one, and the accuracy on test.jsonl of
the product's default classifier (``model.TextClassifier``) trained on each method's resolved
labels (undecided items left out) and on the truth.

    python benchmarks/annotators.py [--data DIR]           # trec and ag_news_7600, 5 seeds
    python benchmarks/annotators.py --datasets banking77 --seeds 2
    python benchmarks/annotators.py --quick                # 100 items, 2 seeds, for the tests
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    ROOT,
    add_data_options,
    load_jsonl,
    machine,
    markdown_table,
    mean_sd,
    resolve_data,
)

from model.aggregation import Aggregation, dawid_skene, majority  # noqa: E402
from model.agreement import Tally, gold_accuracy, overall_agreement  # noqa: E402

ACCURACIES = (0.95, 0.85, 0.60)
METHODS = ("truth", "majority", "dawid_skene", "dawid_skene_gold", "product")
"""``product``: what ``HITL_AGGREGATION=dawid_skene`` trains on. Items resolve live by majority
(a split stays open, so it is not trained on), and the decided ones take the gold-seeded
Dawid–Skene label."""
VARIANTS = ("uniform", "confusable")
RESULTS = ROOT / "benchmarks" / "results" / "annotators.jsonl"


def confusable(texts: list[str], labels: list[str], classes: list[str]) -> dict[str, str]:
    """Each label → the other label whose TF-IDF centroid is nearest (cosine)."""
    # scikit-learn is imported where it is used: a refused option ends the run without it
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    X = TfidfVectorizer(sublinear_tf=True, min_df=2).fit_transform(texts)
    y = np.asarray(labels)
    centroids = np.vstack(
        [
            np.asarray(X[y == c].mean(axis=0)) if (y == c).any() else np.zeros((1, X.shape[1]))
            for c in classes
        ]  # fmt: skip
    )
    similarity = normalize(centroids) @ normalize(centroids).T
    np.fill_diagonal(similarity, -np.inf)
    return {c: classes[int(similarity[k].argmax())] for k, c in enumerate(classes)}


def simulate_votes(
    truth: np.ndarray, n_classes: int, variant: str, neighbour: np.ndarray, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[float]]:
    """Each annotator's answers (label codes) and realised accuracy."""
    answers, realised = [], []
    for p in ACCURACIES:
        right = rng.random(len(truth)) < p
        if variant == "uniform":
            wrong = (truth + rng.integers(1, n_classes, len(truth))) % n_classes
        else:
            wrong = neighbour[truth]
        given = np.where(right, truth, wrong)
        answers.append(given)
        realised.append(float((given == truth).mean()))
    return answers, realised


def run_one(
    name: str,
    variant: str,
    seed: int,
    pool: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    args: argparse.Namespace,
) -> list[dict]:
    from sklearn.metrics import accuracy_score, f1_score

    from model import TextClassifier

    rng = np.random.default_rng(seed)
    texts_all, labels_all = pool
    classes = sorted(set(labels_all))
    pick = rng.choice(len(texts_all), min(args.items, len(texts_all)), replace=False)
    texts = [texts_all[i] for i in pick]
    truth_labels = [labels_all[i] for i in pick]
    code = {c: k for k, c in enumerate(classes)}
    truth = np.array([code[c] for c in truth_labels])
    near = confusable(texts, truth_labels, classes)
    neighbour = np.array([code[near[c]] for c in classes])
    answers, realised = simulate_votes(truth, len(classes), variant, neighbour, rng)

    items = [f"i{i}" for i in range(len(texts))]
    annotators = [f"{round(p * 100)}%" for p in ACCURACIES]
    votes = [
        (items[i], annotators[a], classes[given[i]])
        for a, given in enumerate(answers)
        for i in range(len(items))
    ]
    tally = Tally.from_votes(votes, labels=classes)
    n_gold = round(args.gold_share * len(items))
    gold_idx = set(rng.choice(len(items), n_gold, replace=False).tolist())
    gold = {items[i]: truth_labels[i] for i in sorted(gold_idx)}
    scored = [i for i in range(len(items)) if i not in gold_idx]

    results: dict[str, Aggregation | None] = {
        "truth": None,
        "majority": majority(tally),
        "dawid_skene": dawid_skene(tally),
        "dawid_skene_gold": dawid_skene(tally, gold=gold),
    }
    results["product"] = results["dawid_skene_gold"]
    decided = {item for item, label in results["majority"].label_of().items() if label}
    overall = overall_agreement(tally)
    on_gold = {g.annotator: g for g in gold_accuracy(tally, gold)}
    test_texts, test_labels = test
    rows = []
    for method, agg in results.items():
        if agg is None:
            resolved = dict(zip(items, truth_labels, strict=True))
            estimated = dict.fromkeys(annotators)
        elif method == "product":  # majority's decided items, with Dawid–Skene's labels
            resolved = {k: v if k in decided else None for k, v in agg.label_of().items()}
            estimated = agg.accuracy
        else:
            resolved = agg.label_of()
            estimated = agg.accuracy
        right = [resolved[items[i]] == truth_labels[i] for i in scored]
        train = [(texts[i], resolved[items[i]]) for i in range(len(items)) if resolved[items[i]]]
        started = time.perf_counter()
        clf = TextClassifier(random_state=seed).fit([t for t, _ in train], [y for _, y in train])
        fit_s = time.perf_counter() - started
        predicted = clf.predict(test_texts)
        rows.append(
            {
                "dataset": name,
                "variant": variant,
                "seed": seed,
                "method": method,
                "n_items": len(items),
                "n_gold": n_gold,
                "resolved_accuracy": float(np.mean(right)),
                "n_undecided": sum(resolved[items[i]] is None for i in range(len(items))),
                "n_train": len(train),
                "model_accuracy": float(accuracy_score(test_labels, predicted)),
                "model_macro_f1": float(
                    f1_score(test_labels, predicted, average="macro", zero_division=0)
                ),
                "annotators": {
                    a: {
                        "set": p,
                        "realised": realised[k],
                        "estimated": estimated[a],
                        "gold": on_gold[a].accuracy,
                        "gold_n": on_gold[a].n,
                    }
                    for k, (a, p) in enumerate(zip(annotators, ACCURACIES, strict=True))
                },
                "alpha": overall.alpha,
                "fleiss": overall.fleiss,
                "n_iter": agg.n_iter if agg is not None else 0,
                "fit_s": round(fit_s, 2),
            }
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "annotators"}),
              file=sys.stderr, flush=True)  # fmt: skip
    return rows


def fmt(values: list[float], digits: int = 3) -> str:
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def report(rows: list[dict]) -> str:
    out = []
    for name, variant in dict.fromkeys((r["dataset"], r["variant"]) for r in rows):
        sel = [r for r in rows if (r["dataset"], r["variant"]) == (name, variant)]
        seeds = sorted({r["seed"] for r in sel})
        first = sel[0]
        out.append(
            f"### {name}, {variant} errors: {first['n_items']:,} items, "
            f"{first['n_gold']} gold, {len(seeds)} seeds (mean ± sd)\n"
        )
        alphas = [r["alpha"] for r in sel if r["method"] == "truth"]
        out.append(f"Krippendorff's alpha of the votes: {fmt(alphas)}\n")
        truth_acc = {r["seed"]: r["model_accuracy"] for r in sel if r["method"] == "truth"}
        table = []
        for method in METHODS:
            m = [r for r in sel if r["method"] == method]
            table.append(
                [
                    method,
                    fmt([r["resolved_accuracy"] for r in m]),
                    fmt([r["n_undecided"] for r in m], 1),
                    fmt([r["model_accuracy"] for r in m]),
                    "–"
                    if method == "truth"
                    else fmt([r["model_accuracy"] - truth_acc[r["seed"]] for r in m]),
                ]
            )
        out.append(
            markdown_table(
                [
                    "labels from",
                    "resolved accuracy (not gold)",
                    "undecided",
                    "model accuracy",
                    "model vs truth",
                ],
                table,
            )  # fmt: skip
        )
        out.append("")
        annotators = list(first["annotators"])
        table = []
        for a in annotators:
            cells = [
                a,
                fmt([r["annotators"][a]["realised"] for r in sel if r["method"] == "truth"]),
            ]
            for method in METHODS[1:4]:  # (product's estimates are dawid_skene_gold's)
                errors = [
                    r["annotators"][a]["estimated"] - r["annotators"][a]["realised"]
                    for r in sel
                    if r["method"] == method
                ]
                cells.append(fmt(errors))
            gold = [r["annotators"][a]["gold"] - r["annotators"][a]["realised"]
                    for r in sel if r["method"] == "truth"]  # fmt: skip
            cells.append(fmt(gold))
            table.append(cells)
        out.append(
            markdown_table(
                [
                    "annotator",
                    "realised accuracy",
                    "majority − realised",
                    "dawid_skene − realised",
                    "dawid_skene_gold − realised",
                    f"gold only (n={first['n_gold']}) − realised",
                ],
                table,
            )  # fmt: skip
        )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 items, 2 seeds, 100 test rows")
    add_data_options(parser, ("trec", "ag_news_7600"), quick="trec")
    parser.add_argument("--items", type=int, default=1000, help="items per run (default 1000)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--gold-share", type=float, default=0.05, help="default 0.05")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--out",
        type=Path,
        help=f"raw rows as JSON lines (default: {RESULTS.relative_to(ROOT)}; none with --quick)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.gold_share < 1:
        raise SystemExit(f"error: --gold-share {args.gold_share} is not in [0, 1); try 0.05")
    if args.quick:
        args.items, args.seeds = min(args.items, 100), min(args.seeds, 2)
    warnings.simplefilter("ignore")  # a benchmark, not a test: keep the output readable
    started = time.perf_counter()
    data, datasets = resolve_data(args)
    rows = []
    for name in datasets:
        pool = load_jsonl(data / name / "train.jsonl")
        test = load_jsonl(data / name / "test.jsonl")
        if args.quick:
            keep = np.random.default_rng(0).choice(len(test[0]), min(100, len(test[0])), False)
            test = ([test[0][i] for i in keep], [test[1][i] for i in keep])
        for variant in args.variants:
            for seed in range(args.seeds):
                rows += run_one(name, variant, seed, pool, test, args)
    print(report(rows))
    print(f"{machine()}; total {time.perf_counter() - started:.0f} s")
    out = args.out or (None if args.quick else RESULTS)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
