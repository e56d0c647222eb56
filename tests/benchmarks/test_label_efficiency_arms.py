"""label_efficiency.py's third-screen arms: warm<K> is random below K labels, margin after."""

from __future__ import annotations

import numpy as np

from model.classifier import TextClassifier
from tests.benchmarks.runner import benchmark_module
from tests.standin_data import write_standin_dataset


def load_benchmark() -> dict:
    return benchmark_module("label_efficiency.py")


def test_warm_arm_is_random_below_its_label_count_and_margin_from_it(tmp_path):
    le = load_benchmark()
    folder = write_standin_dataset(tmp_path, n_train=300, n_test=60)
    pool = le["load_jsonl"](folder / "standin" / "train.jsonl")
    test = le["load_jsonl"](folder / "standin" / "test.jsonl")

    # rows: warm100 below 100 labels are random's rows (same picks from random's RNG stream)
    rows = {
        arm: [(r["n_labels"], r["accuracy"]) for r in le["run_arm"]("s", arm, 0, pool, test, 100)]
        for arm in ("random", "warm100")
    }
    assert rows["warm100"] == rows["random"] and rows["random"][-1][0] == 100

    clf = TextClassifier(random_state=0).fit(pool[0][:60], pool[1][:60])
    unlabeled = np.arange(60, 300)

    def picks(arm: str, n_labels: int) -> list[int]:
        labeled = list(range(n_labels))
        rng = np.random.default_rng([0, 1])
        return le["pick"](arm, clf, pool[0], unlabeled, labeled, None, rng)

    assert picks("warm100", 99) == picks("random", 99)
    # the product has no warm-up by default (HITL_WARM_UP=0): margin from the first model
    assert picks("default", 25) != picks("random", 25)
    assert picks("warm50", 49) == picks("random", 49) and picks("warm50", 50) == picks(
        "default", 50
    )
    assert picks("warm100", 100) == picks("default", 100) != picks("random", 100)
    # ramp300: the random share is down to the audit share at 270 labels: the default's batch
    assert picks("ramp300", 270) == picks("default", 270)
    assert picks("ramp300", 0) != picks("default", 0)


def test_classwarm_is_random_below_two_labels_per_class_and_margin_from_there(tmp_path):
    le = load_benchmark()
    folder = write_standin_dataset(tmp_path, n_train=300, n_test=60)
    pool = le["load_jsonl"](folder / "standin" / "train.jsonl")
    clf = TextClassifier(random_state=0).fit(pool[0][:60], pool[1][:60])
    unlabeled = np.arange(60, 300)

    def picks(arm: str, n_labels: int, n_classes: int) -> list[int]:
        rng = np.random.default_rng([0, 1])
        return le["pick"](
            arm, clf, pool[0], unlabeled, list(range(n_labels)), None, rng, n_classes=n_classes
        )

    assert picks("classwarm", 153, 77) == picks("random", 153, 77)
    assert picks("classwarm", 154, 77) == picks("default", 154, 77) != picks("random", 154, 77)
    assert picks("classwarm", 25, 6) == picks("default", 25, 6)
