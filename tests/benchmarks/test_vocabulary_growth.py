"""vocabulary_growth.py: the n-gram cap as labels grow, capped and uncapped."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks.runner import benchmark_module, run_quick


def test_vocabulary_growth_benchmark_keeps_the_capped_side_at_the_cap_as_the_uncapped_grows(
    standin: Path,
):
    out = run_quick("vocabulary_growth.py", standin)
    assert "6 classes; SGDClassifier at every size; cap 1,500 n-grams a vectorizer" in out
    rows = re.findall(
        r"^\| ([\d,]+) \| (capped|uncapped) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|", out, re.M
    )
    vocab = {
        (n, side): (int(w.replace(",", "")), int(c.replace(",", ""))) for n, side, w, _, c in rows
    }
    assert sorted(vocab) == [
        ("2,100", "capped"),
        ("2,100", "uncapped"),
        ("2,400", "capped"),
        ("2,400", "uncapped"),
    ]
    assert vocab[("2,100", "capped")] == vocab[("2,400", "capped")] == (1_500, 1_500)
    assert 1_500 < vocab[("2,100", "uncapped")][0] < vocab[("2,400", "uncapped")][0]
    tickets = re.search(r"^\| 2,400 \| uncapped \| [\d,]+ \| 4,800 \|", out, re.M)
    assert tickets, out  # a word and a bigram for each training text's own ticket number
    assert len(re.findall(r"^\| [\d,]+ \| capped / uncapped \|", out, re.M)) == 2
    assert out.strip().endswith("verdict: ok")


def test_a_capped_vocabulary_over_the_cap_or_an_uncapped_one_that_stops_growing_is_a_violation():
    violations = benchmark_module("vocabulary_growth.py")["violations"]
    row = {"max_features": 100, "word_ngrams": 100, "char_ngrams": 100}
    rows = [
        {**row, "n_labels": 10, "side": "capped"},
        {**row, "n_labels": 10, "side": "uncapped", "word_ngrams": 150},
        {**row, "n_labels": 20, "side": "capped", "char_ngrams": 101},
        {**row, "n_labels": 20, "side": "uncapped", "word_ngrams": 150},
    ]
    assert violations(rows, quick=False) == [
        "20 labels, capped: char_ngrams 101 over the cap",
        "uncapped word n-grams do not grow: 10 → 150, 20 → 150",
    ]
    assert violations(rows[:2], quick=True) == []
    assert violations([rows[0], {**rows[1], "word_ngrams": 90}], quick=True) == [
        "the cap never bit: 90 word n-grams ≤ 100"
    ]
