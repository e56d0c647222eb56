"""debian_topics.py: a data set nobody tuned on, built from Debian's package records."""

from __future__ import annotations

import json
from pathlib import Path

from tests.benchmarks.runner import run


def packages_file(path: Path) -> Path:
    records = []
    for section in ("games", "net", "science", "sound", "libs"):
        for n in range(10):
            records.append(
                f"Package: {section}-tool{n}\nSection: {section}\n"
                f"Description: {section}-tool{n} does {section} thing number {n}\n"
                " the first paragraph of the long description\n .\n a second paragraph\n"
            )
    records.append("Package: twice-a\nSection: games\nDescription: the same words\n")
    records.append("Package: twice-b\nSection: contrib/net\nDescription: the same words\n")
    path.write_text("\n".join(records))
    return path


def test_it_writes_train_and_test_in_the_datasets_format_without_the_giveaways(tmp_path: Path):
    result = run(
        "debian_topics.py", "--out", str(tmp_path), "--packages", str(packages_file(tmp_path / "P"))
    )
    assert result.returncode == 0, result.stderr
    four = tmp_path / "debian_topics4"
    rows = [
        json.loads(line)
        for part in ("train", "test")
        for line in (four / f"{part}.jsonl").read_text().splitlines()
    ]
    assert sorted({r["label"] for r in rows}) == ["games", "net", "science", "sound"]
    assert len(rows) == 40  # libs left out; the text under two sections dropped
    assert "debian_topics4: 32 train, 8 test, 4 labels" in result.stdout
    games = next(r["text"] for r in rows if "games thing number 3" in r["text"])
    # the package's name taken out; the long description's first paragraph kept, not the second
    assert games == "does games thing number 3 the first paragraph of the long description"
    assert "dropped: 1" in (four / "README.md").read_text()
