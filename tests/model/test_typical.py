"""TypiClust (model/typical.py): one typical item per cluster no label covers, never an outlier."""

from __future__ import annotations

import numpy as np

from model.typical import typical_embedding, typical_order, typiclust

GROUPS = {
    "billing": "please refund the double charge on my credit card invoice",
    "crash": "the mobile app crashes on start after the latest update",
    "login": "cannot log in password reset email never arrives",
    "shipping": "parcel delivery is late tracking number shows nothing",
}
OUTLIERS = ["zebra quantum violin", "xylophone nebula marmalade"]


def grouped_texts() -> tuple[list[str], dict[int, str]]:
    """Ten near-identical texts per group (a word appended), then two outliers; each text's
    group by position."""
    texts, group_of = [], {}
    for name, text in GROUPS.items():
        for n in range(10):
            group_of[len(texts)] = name
            texts.append(f"{text} {'abcdefghij'[n]}")
    return texts + OUTLIERS, group_of


def test_typical_order_asks_one_item_of_each_group_no_label_covers_and_no_outlier():
    texts, group_of = grouped_texts()
    labeled = np.zeros(len(texts), dtype=bool)
    labeled[0] = True  # a billing text is labeled: its group is covered
    picks = typical_order(texts, labeled, 3, random_state=0)
    assert sorted(group_of.get(p, "outlier") for p in picks) == ["crash", "login", "shipping"]
    assert picks == typical_order(texts, labeled, 3, random_state=0)  # seeded: the same order


def test_typiclust_gives_the_biggest_uncovered_cluster_first_and_skips_a_covered_one():
    # three tight blobs in 2-D: 12 and 8 points, and 7 of which one is labeled; 3 clusters
    # (1 label + 2 picks): the 12-blob's pick, then the 8-blob's, never the covered blob's
    rng = np.random.default_rng(0)
    blobs = [rng.normal(centre, 0.01, size=(n, 2)) for centre, n in (([0, 0], 12), ([5, 5], 8))]
    covered = rng.normal([-5, 5], 0.01, size=(7, 2))
    embedding = np.vstack([*blobs, covered])
    labeled = np.zeros(27, dtype=bool)
    labeled[20] = True
    picks = typiclust(embedding, labeled, 2, 0)
    assert [p < 12 for p in picks] == [True, False] and all(p < 20 for p in picks)


def test_the_embedding_is_the_classifiers_features_reduced_with_unit_rows():
    texts, _ = grouped_texts()
    embedding = typical_embedding(texts, 0)
    assert embedding.shape == (len(texts), len(texts) - 1)  # fewer texts than TYPICAL_DIMS
    assert np.allclose(np.linalg.norm(embedding, axis=1), 1.0)
