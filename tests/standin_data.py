"""Small generated stand-ins for the public datasets the benchmarks read (../shared/datasets).

The benchmarks' ``--quick`` modes run in the test suite on a fresh clone, where those datasets
are not present: they read a folder written here instead, in the same layout
(``<name>/train.jsonl`` and ``test.jsonl``, one ``{"text", "label"}`` per line). The texts are
made of words from their class's own vocabulary mixed with words every class shares, and some
training labels are wrong, so that a model learns from them gradually, as from real data, and
never perfectly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

STANDIN = "standin"
CLASSES = ("billing", "bug", "account", "feature", "shipping", "other")
SHARED = (
    "the a of and to is in it my i you please can not with on for this that was have be at "
    "when why how what do does again today yesterday still thanks hello help need want get"
).split()


def _vocabulary(rng: random.Random, label: str, n: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "zu", "de", "gi"]
    words = {label}
    while len(words) < n:
        words.add(label[:3] + "".join(rng.choice(syllables) for _ in range(2)))
    return sorted(words)


def _text(rng: random.Random, own: list[str], others: list[list[str]]) -> str:
    words = rng.sample(own, rng.randint(2, 4))
    words += rng.choices(SHARED, k=rng.randint(4, 9))
    if rng.random() < 0.3:  # a word of another class: not every text is easy
        words.append(rng.choice(rng.choice(others)))
    rng.shuffle(words)
    return " ".join(words)


def write_standin_dataset(
    folder: Path, name: str = STANDIN, n_train: int = 1500, n_test: int = 300, seed: int = 0
) -> Path:
    """Write ``folder/name/{train,test}.jsonl``; return ``folder``."""
    rng = random.Random(seed)
    vocab = {label: _vocabulary(rng, label, 40) for label in CLASSES}
    (folder / name).mkdir(parents=True, exist_ok=True)
    for split, n, noise in (("train", n_train, 0.05), ("test", n_test, 0.0)):
        with (folder / name / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for i in range(n):
                label = CLASSES[i % len(CLASSES)]
                others = [v for k, v in vocab.items() if k != label]
                text = _text(rng, vocab[label], others)
                shown = rng.choice(CLASSES) if rng.random() < noise else label
                handle.write(json.dumps({"text": text, "label": shown}) + "\n")
    return folder
