"""Helpers shared by the benchmarks (not a product module)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import platform
import random
import signal
import socket
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets"  # where the team keeps them beside a clone
DATASETS = ("ag_news_7600", "banking77", "sms_spam", "trec")
PLOTS = ROOT / "benchmarks" / "plots"

if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(ROOT))


def add_data_options(
    parser: argparse.ArgumentParser, default: Sequence[str] = DATASETS, quick: str | None = None
) -> None:
    """``--data DIR`` and ``--datasets NAME …``, the same in every benchmark; ``quick`` is the one
    dataset a ``--quick`` run reads (None: the same as a full run)."""
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="folder of datasets, one <name>/train.jsonl + test.jsonl each (default: "
        "$HITL_DATASETS, else ../shared/datasets beside the repository)",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        metavar="NAME",
        help=f"datasets in that folder (default: {', '.join(default)}"
        + (f"; with --quick: {quick})" if quick else ")"),
    )
    parser.set_defaults(default_datasets=tuple(default), quick_dataset=quick)


def data_dir(given: Path | None) -> Path:
    """The datasets folder: ``--data``, else ``$HITL_DATASETS``, else ../shared/datasets.

    A folder that is not there ends the run with one line naming all three ways to give it."""
    if given is not None:
        folder, where = given, "--data"
    elif os.environ.get("HITL_DATASETS"):
        folder, where = Path(os.environ["HITL_DATASETS"]), "HITL_DATASETS"
    else:
        folder, where = DEFAULT_DATA, "the default ../shared/datasets"
    if not folder.is_dir():
        raise SystemExit(
            f"error: no datasets folder at {folder} ({where}); give --data DIR, set "
            "HITL_DATASETS, or put the datasets in ../shared/datasets beside the repository"
        )
    return folder


def resolve_data(args: argparse.Namespace) -> tuple[Path, tuple[str, ...]]:
    """``(folder, dataset names)`` from the options ``add_data_options`` added; a named dataset
    without a train.jsonl, or with no test.jsonl beside it, or a file with a row that is not
    a JSON object with a "text" and a "label", ends the run with one line (file, line, what)
    before anything is measured."""
    folder = data_dir(args.data)
    if args.datasets:
        names = tuple(args.datasets)
    elif getattr(args, "quick", False) and args.quick_dataset:
        names = (args.quick_dataset,)
    else:
        names = args.default_datasets
    missing = [n for n in names if not (folder / n / "train.jsonl").is_file()]
    if missing:
        raise SystemExit(
            f"error: {folder} has no {', '.join(missing)} (no <name>/train.jsonl); "
            "pick others with --datasets NAME …"
        )
    for name in names:
        test = folder / name / "test.jsonl"
        if not test.is_file():
            raise SystemExit(
                f"error: {test} is missing: each dataset is <name>/train.jsonl + test.jsonl; "
                "add it, or pick others with --datasets NAME …"
            )
        for path in (folder / name / "train.jsonl", test):
            for _row in _rows(path):  # checked before the run, not an hour into it; as a
                pass  # stream: no row is kept (a 1M-row file would hold ~500 MB)
    return folder, names


def _rows(path: Path) -> Iterator[dict]:
    """The rows of a dataset file, each checked as it is read (none is kept here);
    ``SystemExit`` with one line naming the file and line of the first row that is not a
    JSON object with a "text" (a string) and a "label"."""
    try:
        with path.open(encoding="utf-8") as handle:
            for n, line in enumerate(handle, 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"error: {path} line {n}: bad JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise SystemExit(f"error: {path} line {n}: not a JSON object")
                for field in ("text", "label"):
                    if row.get(field) is None:
                        raise SystemExit(f"error: {path} line {n}: no field {field!r}")
                if not isinstance(row["text"], str):
                    raise SystemExit(f"error: {path} line {n}: field 'text' is not a string")
                yield row
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"error: {path}: cannot read it ({exc})") from None


def load_jsonl(path: Path) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` of a dataset file, read in place; a missing file or a bad row ends
    the run with one line (``_rows``)."""
    texts: list[str] = []
    labels: list[str] = []
    for row in _rows(path):
        texts.append(row["text"])
        labels.append(str(row["label"]))
    return texts, labels


def machine() -> str:
    """One line: cores, platform and the versions that matter for these numbers. The versions
    come from the installed packages' metadata: importing scikit-learn to ask it costs a
    second of CPU in the benchmarks whose own process never uses it."""
    import os
    from importlib.metadata import version

    return (
        f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}, "
        f"scikit-learn {version('scikit-learn')}, numpy {version('numpy')}"
    )


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (``ru_maxrss``), in MiB (Linux: KiB units)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fork_server(preload: Sequence[str]):
    """A multiprocessing context whose children are forked from a fork server that imported
    ``preload`` once, as `hitl serve` starts its fit and scoring children
    (bot/learning/children.py). Each child is a process of its own (its CPU time and peak RSS
    its own; the peak counts the preloaded modules, as a child that imported them would), but
    starts in milliseconds instead of importing scikit-learn anew (about 2 s of CPU). The
    fork server starts with this process's environment at the first child."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    return context


def run_in_child(context, what: str, fn, *args):
    """``fn(*args)`` in a new child of ``context``, and its result. A child that fails ends
    the benchmark with one line."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        try:
            return pool.submit(fn, *args).result()
        except Exception as exc:  # noqa: BLE001 (any failure of the child's work)
            raise SystemExit(f"error: the {what} child failed: {exc!r}") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def stop_server(process: asyncio.subprocess.Process, within: float = 60) -> tuple[int, bool]:
    """SIGTERM ``hitl serve`` and wait ``within`` s for its exit. A stop that hangs is a
    defect: the server is then sent SIGABRT, on which it prints every thread's stack on stderr
    (faulthandler), and killed if even that does not end it. Its exit code, and whether it
    had to be aborted."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), within), False
    except TimeoutError:
        process.send_signal(signal.SIGABRT)
    try:
        return await asyncio.wait_for(process.wait(), 10), True
    except TimeoutError:
        process.kill()
        return await process.wait(), True


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    if not values:
        return math.nan, math.nan
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation, as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def growth_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """``k`` of the least-squares fit ``seconds ∝ size^k`` on a log-log scale."""
    xs = [math.log(s) for s in sizes]
    ys = [math.log(max(t, 1e-9)) for t in seconds]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    num = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    den = sum((x - mx) ** 2 for x in xs)
    return num / den if den else math.nan


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` has one character per column, ``l`` or ``r`` (default r,
    first column l)."""
    align = align or "l" + "r" * (len(head) - 1)
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    lines = ["| " + " | ".join(head) + " |", rule]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def load_mixture(data: Path, datasets: Sequence[str]) -> tuple[list[str], list[str]]:
    """Every train text of ``datasets``, labeled "<dataset>/<label>" (one many-class pool)."""
    texts, labels = [], []
    for name in datasets:
        t, lb = load_jsonl(data / name / "train.jsonl")
        texts += t
        labels += [f"{name}/{x}" for x in lb]
    return texts, labels


def write_seed_csv(
    path: Path, n_labeled: int, n_pending: int, data: Path, datasets: Sequence[str]
) -> None:
    """Resampled dataset texts: ``n_labeled`` rows labeled "<dataset>/<label>", then pending."""
    texts, labels = load_mixture(data, datasets)
    rng = random.Random(0)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        for i in range(n_labeled + n_pending):
            j = rng.randrange(len(texts))
            writer.writerow([f"s{i}", texts[j], labels[j] if i < n_labeled else ""])


class BacklogRow:
    """One unlabeled item, as ``Store.add_items`` takes it."""

    def __init__(self, id: str, text: str) -> None:  # noqa: A002 - the store's field name
        self.id, self.text, self.label, self.meta = id, text, None, {}


def grow_backlog(
    db: Path,
    start: int,
    stop: int,
    words: Sequence[str],
    labels: Sequence[str],
    batch: int = 10_000,
) -> float:
    """Add unlabeled items ``g<start>..g<stop-1>`` with synthetic texts (12 random ``words``),
    scored as the champion v1 would leave them under the margin strategy (the steady state
    of a server that keeps up), through ``Store.add_items`` and ``Store.set_predictions``;
    returns the seconds it took."""
    from bot.store import Store

    rng = random.Random(start)
    t0 = time.perf_counter()
    with Store.open(db) as store:
        for first in range(start, stop, batch):
            ids = range(first, min(first + batch, stop))
            store.add_items(
                [BacklogRow(f"g{i}", " ".join(rng.choices(words, k=12)) + f" #{i}") for i in ids],
                "import",
            )
            predictions = []
            for i in ids:
                top = rng.sample(list(labels), min(5, len(labels)))
                p = sorted((rng.random() for _ in top), reverse=True)
                total = sum(p) + rng.random()
                ranked = [[label, q / total] for label, q in zip(top, p, strict=True)]
                margin = ranked[0][1] - (ranked[1][1] if len(ranked) > 1 else 0.0)
                predictions.append((f"g{i}", 1, top[0], ranked[0][1], ranked, 1 - margin))
            store.set_predictions(predictions, 0.8, "margin")
    return time.perf_counter() - t0
