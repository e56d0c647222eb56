"""Peak memory and speed of `hitl import` as the file grows: the import must stream.

Generates CSV files of growing size, imports each into a fresh database in a child process,
and reads the child's peak RSS from the kernel (os.wait4). The smallest file is the baseline:
constant memory means the ratio stays near 1 while the file grows tenfold and more.

    python benchmarks/import_memory.py            # 10k, 100k and 1M rows
    python benchmarks/import_memory.py --quick    # 2k and 20k rows, for the test suite
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "invoice refund charged twice card declined password reset login crash error upload "
    "export report account cancel upgrade plan billing address phone email sync android "
    "safari slow timeout notification calendar shortcut api bulk workspace teammate"
).split()


def write_csv(path: Path, n_rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label", "channel"])
        for i in range(n_rows):
            text = " ".join(rng.choices(WORDS, k=rng.randint(6, 30)))
            label = rng.choice(["billing", "bug", "account", ""]) if i % 10 == 0 else ""
            writer.writerow([f"r{i}", text, label, rng.choice(["email", "chat", "web"])])


def run_import(csv_path: Path, db_path: Path) -> tuple[float, float, str]:
    """Import in a child process; return (peak RSS in MiB, seconds, last line printed)."""
    command = [sys.executable, "-m", "bot", "--db", str(db_path), "import", "-q", str(csv_path)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    out = child.stdout.read().decode()
    err = child.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"import failed: {err.strip()}")
    return usage.ru_maxrss / 1024, seconds, out.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for the test suite")
    args = parser.parse_args()
    sizes = [2_000, 20_000] if args.quick else [10_000, 100_000, 1_000_000]

    print(
        f"{'rows':>10} {'file MiB':>9} {'peak RSS MiB':>13} {'RSS ratio':>10} "
        f"{'seconds':>8} {'rows/s':>9}"
    )
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        for n_rows in sizes:
            csv_path = Path(tmp) / f"items_{n_rows}.csv"
            write_csv(csv_path, n_rows)
            rss, seconds, summary = run_import(csv_path, Path(tmp) / f"hitl_{n_rows}.db")
            baseline = baseline or rss
            size = csv_path.stat().st_size / 2**20
            print(
                f"{n_rows:>10,} {size:>9.1f} {rss:>13.1f} {rss / baseline:>10.2f} "
                f"{seconds:>8.1f} {n_rows / seconds:>9,.0f}"
            )
            print(f"{'':>10} {summary}")
            csv_path.unlink()


if __name__ == "__main__":
    main()
