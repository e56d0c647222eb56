"""Benchmarks are not timed tests, but their --quick modes run here so the scripts don't rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_quick(script: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_memory_benchmark_prints_a_ratio_per_size():
    out = run_quick("import_memory.py")
    rows = re.findall(r"^\s+([\d,]+)\s+[\d.]+\s+([\d.]+)\s+([\d.]+)\s", out, flags=re.M)
    assert [r[0] for r in rows] == ["2,000", "20,000"]
    assert rows[0][2] == "1.00"
    assert "imported 20,000" in out
