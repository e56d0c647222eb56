"""Build a labeled text data set nobody tuned the product on: Debian package descriptions by
archive section.

The four data sets in ``../shared/datasets`` are the ones the selection, the classifier and the
stopping rule were tuned on. This writes two more, in their format (``<dir>/<name>/train.jsonl``
and ``test.jsonl``, one ``{"text": …, "label": …}`` a line, and a README), from the package
records of any Debian machine (``apt-cache dumpavail``, or a ``Packages`` file with
``--packages``), so that the benchmarks can be run on data no choice was made on:

- ``debian_topics``: 12 topic sections (admin, database, editors, games, graphics, mail, math,
  net, science, sound, text, video), at most 1,000 packages a section;
- ``debian_topics4``: 4 of them (games, net, science, sound), every package.

Text: the Description (its synopsis line, and the long description's first paragraph when the
records carry it), the package's own name taken out (``python3-foo``'s text would give its
section away otherwise). Label: the Section, a ``contrib/`` or ``non-free/`` prefix taken off.
Sections a name gives away (libs, python, perl, …) are not used. Texts are de-duplicated; a
text found under two sections is dropped. Split: stratified 80/20, seed 0. The result depends
on the package lists the machine holds: the README written beside the files records their
digest (``apt-get update`` changes them).

    python benchmarks/debian_topics.py --out DIR        # then: --data DIR --datasets debian_topics
    python benchmarks/debian_topics.py --out DIR --packages Packages.txt
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

SETS = {
    "debian_topics": (
        {"admin", "database", "editors", "games", "graphics", "mail", "math", "net", "science"}
        | {"sound", "text", "video"},
        1_000,
    ),
    "debian_topics4": ({"games", "net", "science", "sound"}, None),
}
SEED = 0


def records(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """The records of a Packages file (RFC 822 style: ``Field: value``, continuation lines
    start with a space, records end at a blank line)."""
    record: dict[str, str] = {}
    last = None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if record:
                yield record
            record, last = {}, None
        elif line[0] in " \t":
            if last is not None:
                record[last] += "\n" + line
        else:
            field, _, value = line.partition(":")
            record[field], last = value.strip(), field
    if record:
        yield record


def text_of(record: dict[str, str]) -> str:
    """The synopsis and the long description's first paragraph, the package name taken out."""
    synopsis, *rest = record.get("Description", "").split("\n")
    paragraph = []
    for line in rest:
        if line.strip() == ".":
            break
        paragraph.append(line.strip())
    text = " ".join([synopsis, *paragraph])
    name = re.escape(record.get("Package", ""))
    if name:
        text = re.sub(rf"(?i)(?<![\w.+-]){name}(?![\w+-])", "", text)
    return re.sub(r"\s+", " ", text).strip(" -:,")


def build(
    found: Iterable[dict[str, str]], sections: set[str], cap: int | None
) -> tuple[list[tuple[str, str]], int]:
    """(text, label) rows of ``sections``, de-duplicated, at most ``cap`` a label; and how
    many texts were dropped for being found under two sections."""
    labels_of: dict[str, set[str]] = collections.defaultdict(set)
    for record in found:
        section = record.get("Section", "").split("/")[-1]
        if section in sections and (text := text_of(record)):
            labels_of[text].add(section)
    rows = [(text, next(iter(labels))) for text, labels in labels_of.items() if len(labels) == 1]
    conflicts = len(labels_of) - len(rows)
    if cap is not None:
        rng = np.random.default_rng(SEED)
        by_label: dict[str, list[int]] = collections.defaultdict(list)
        for i, (_, label) in enumerate(rows):
            by_label[label].append(i)
        keep: set[int] = set()
        for members in by_label.values():
            chosen = members if len(members) <= cap else rng.choice(members, cap, replace=False)
            keep.update(int(i) for i in chosen)
        rows = [row for i, row in enumerate(rows) if i in keep]
    return rows, conflicts


def write(out: Path, name: str, rows: list[tuple[str, str]], conflicts: int, source: str) -> str:
    labels = [label for _, label in rows]
    train, test = train_test_split(
        np.arange(len(rows)), test_size=0.2, random_state=SEED, stratify=labels
    )
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    for part, index in (("train", sorted(train)), ("test", sorted(test))):
        with (folder / f"{part}.jsonl").open("w", encoding="utf-8", newline="\n") as f:
            for i in index:
                text, label = rows[i]
                f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
    in_train = collections.Counter(labels[i] for i in train)
    in_test = collections.Counter(labels[i] for i in test)
    table = "\n".join(f"| `{k}` | {in_train[k]} | {in_test[k]} |" for k in sorted(in_train))
    (folder / "README.md").write_text(
        f"# {name}: Debian package descriptions by archive section\n\n"
        f"Written by `benchmarks/debian_topics.py` from {source}. Texts found under two "
        f"sections dropped: {conflicts}. train {len(train)}, test {len(test)}, "
        f"{len(in_train)} labels.\n\n| label | train | test |\n|---|---:|---:|\n{table}\n"
    )
    return f"{name}: {len(train):,} train, {len(test):,} test, {len(in_train)} labels"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the sets into")
    parser.add_argument(
        "--packages", type=Path, help="a Packages file (default: `apt-cache dumpavail`)"
    )
    args = parser.parse_args(argv)
    if args.packages is not None:
        raw = args.packages.read_bytes()
    else:
        try:
            raw = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"error: cannot run apt-cache dumpavail ({exc}); give --packages FILE",
                  file=sys.stderr)  # fmt: skip
            return 1
    source = (
        f"{args.packages or 'apt-cache dumpavail'} "
        f"(sha256 of the records read: {hashlib.sha256(raw).hexdigest()[:16]})"
    )
    found = list(records(raw.decode("utf-8", errors="replace").splitlines()))
    for name, (sections, cap) in SETS.items():
        rows, conflicts = build(found, sections, cap)
        if len({label for _, label in rows}) < 2:
            print(f"error: fewer than two of {name}'s sections in {source}", file=sys.stderr)
            return 1
        print(write(args.out, name, rows, conflicts, source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
