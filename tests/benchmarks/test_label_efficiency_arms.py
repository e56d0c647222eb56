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
    # no warm-up (HITL_WARM_UP=0, the default): margin from the first model
    assert picks("margin", 25) != picks("random", 25)
    assert picks("warm50", 49) == picks("random", 49) and picks("warm50", 50) == picks("margin", 50)
    assert picks("warm100", 100) == picks("margin", 100) != picks("random", 100)
    # ramp300: the random share is down to the audit share at 270 labels: margin's batch
    assert picks("ramp300", 270) == picks("margin", 270)
    assert picks("ramp300", 0) != picks("margin", 0)
    # warm50a: warm50's picks, its audits drawn from margin's stream from 50 labels on
    assert picks("warm50a", 49) == picks("random", 49) and picks("warm50a", 50) == picks(
        "margin", 50
    )

    def draw(arm: str, n_labels: int) -> float:
        return le["round_rng"](arm, 0, 3, True, n_labels).random()

    assert draw("warm50a", 49) == draw("random", 49) == draw("warm50", 49)
    assert draw("warm50a", 50) == draw("margin", 50) != draw("warm50", 50)


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
    assert picks("classwarm", 154, 77) == picks("margin", 154, 77) != picks("random", 154, 77)
    assert picks("classwarm", 25, 6) == picks("margin", 25, 6)


def test_albl_rewards_the_expert_whose_batch_raised_accuracy_on_the_held_out_audits(tmp_path):
    le = load_benchmark()
    folder = write_standin_dataset(tmp_path, n_train=300, n_test=60)
    pool_x, pool_y = le["load_jsonl"](folder / "standin" / "train.jsonl")
    weak = TextClassifier(random_state=0).fit(pool_x[:8], pool_y[:8])

    def after_a_batch(expert: str, shadow_before, labeled: list[int]) -> np.ndarray:
        albl = le["Albl"]()
        albl.audits = list(range(250, 300))  # held out of the shadow fit, scored on
        albl.shadow = shadow_before
        albl.chosen = le["ALBL_EXPERTS"].index(expert)
        albl.p_chosen = 0.5
        albl.learn(pool_x, pool_y, labeled + albl.audits, 0)
        assert albl.shadow is not shadow_before  # fitted on the labels minus the audits
        return albl.probabilities()

    # a batch that took the shadow model from 8 labels to 200: its expert gains weight
    assert after_a_batch("margin", weak, list(range(200)))[0] > 0.5
    assert after_a_batch("random", weak, list(range(200)))[1] > 0.5
    # a batch after which the audits are scored worse earns nothing (EXP3's rewards are in
    # [0, 1]; the weights of experts not drawn stay, their estimated reward being 0)
    strong = TextClassifier(random_state=0).fit(pool_x[:200], pool_y[:200])
    assert after_a_batch("margin", strong, list(range(8)))[0] == 0.5


def test_albl_keeps_the_uniform_audit_share_and_takes_the_rest_from_the_expert_it_drew(tmp_path):
    le = load_benchmark()
    folder = write_standin_dataset(tmp_path, n_train=300, n_test=60)
    pool = le["load_jsonl"](folder / "standin" / "train.jsonl")
    test = le["load_jsonl"](folder / "standin" / "test.jsonl")
    clf = TextClassifier(random_state=0).fit(pool[0][:60], pool[1][:60])
    unlabeled = np.arange(60, 300)
    margin_order = list(
        unlabeled[
            np.argsort(
                le["margin"](clf.predict_proba([pool[0][i] for i in unlabeled])), kind="stable"
            )
        ]
    )

    seen = set()
    for seed in range(12):
        albl = le["Albl"]()
        chosen = le["pick"](
            "albl",
            clf,
            pool[0],
            unlabeled,
            list(range(60)),
            None,
            np.random.default_rng(seed),
            albl=albl,
        )
        expert = albl.choices[-1]
        seen.add(expert)
        assert set(albl.audits) <= set(chosen) and len(chosen) == le["BATCH"]
        rest = [i for i in chosen if i not in albl.audits]
        closest = set(margin_order[: 3 * len(rest)])  # margin's closest calls (duplicates skipped)
        if expert == "margin":
            assert set(rest) <= closest
        else:
            assert len(set(rest) - closest) > len(rest) // 2
    assert seen == {"margin", "random"}

    rows = list(le["run_arm"]("s", "albl", 0, pool, test, 75))  # two batches of albl's own
    assert [r["n_labels"] for r in rows] == [25, 50, 75]
    assert {r["albl"] for r in rows[1:]} <= {"margin", "random"}


def first_model(tmp_path) -> tuple[dict, tuple[list[str], list[str]], TextClassifier, np.ndarray]:
    """The benchmark, a 300-item stand-in pool, a model fitted on its first 60 items, and the
    positions of the other 240."""
    le = load_benchmark()
    folder = write_standin_dataset(tmp_path, n_train=300, n_test=60)
    pool = le["load_jsonl"](folder / "standin" / "train.jsonl")
    clf = TextClassifier(random_state=0).fit(pool[0][:60], pool[1][:60])
    return le, pool, clf, np.arange(60, 300)


def test_spread1_spreads_the_first_models_batch_over_margins_closest_calls_and_is_margin_after(
    tmp_path,
):
    le, pool, clf, unlabeled = first_model(tmp_path)
    texts = [pool[0][i] for i in unlabeled]
    closest = 1.0 - le["margin"](clf.predict_proba(texts))
    top = set(unlabeled[np.argsort(-closest, kind="stable")[: le["SPREAD_CANDIDATES"]]])

    def picks(arm: str, model_round: int) -> tuple[list[int], dict[int, str]]:
        rng = np.random.default_rng([0, 1])
        reasons: dict[int, str] = {}
        chosen = le["pick"](arm, clf, pool[0], unlabeled, list(range(60)), None, rng,
                            model_round=model_round, reasons=reasons)  # fmt: skip
        return chosen, reasons

    spread, reasons = picks("spread1", 0)
    uncertain = [i for i in spread if reasons[i] == "uncertain"]
    default, default_reasons = picks("margin", 0)
    closest = [i for i in default if default_reasons[i] == "uncertain"]  # margin's own
    # the first model's batch: its uncertain picks all among margin's 100 closest calls, not
    # margin's closest ones; the rest are audits (select's uniform share)
    assert len(spread) == 25 and uncertain and set(uncertain) <= top
    assert set(uncertain) != set(closest)
    assert {reasons[i] for i in spread} <= {"uncertain", "audit"}
    assert picks("spread1", 1)[0] == picks("margin", 1)[0]  # margin from the second model on


def test_hybrid1_is_random_while_the_first_model_knows_under_half_the_classes_else_spread(
    tmp_path,
):
    le, pool, clf, unlabeled = first_model(tmp_path)

    def picks(arm: str, model_round: int, n_classes: int, known: int) -> list[int]:
        rng = np.random.default_rng([0, 1])
        return le["pick"](arm, clf, pool[0], unlabeled, list(range(60)), None, rng,
                          model_round=model_round, n_classes=n_classes, known=known)  # fmt: skip

    assert picks("hybrid1", 0, 77, 21) == picks("random", 0, 77, 21)  # 21 of 77 known
    assert picks("hybrid1", 0, 6, 5) == picks("spread1", 0, 6, 5) != picks("random", 0, 6, 5)
    assert picks("hybrid1", 1, 77, 40) == picks("margin", 1, 77, 40)  # margin after
    # and the loop draws a warming batch from random's stream, the others from its own
    assert le["_is_warming"]("hybrid1", 25, 77, 0, 21) and not le["_is_warming"](
        "hybrid1", 25, 77, 1, 21
    )


def test_power_and_softrank_draw_the_non_audit_picks_in_proportion_to_their_weights():
    le = load_benchmark()
    # four items: margins 0.0, 0.5, 0.9, 1.0, so 1 - margin = 1.0, 0.5, 0.1, 0.0
    proba = np.array([[0.5, 0.5], [0.75, 0.25], [0.95, 0.05], [1.0, 0.0]])
    rng = np.random.default_rng(0)
    firsts = {"power": np.zeros(4), "softrank": np.zeros(4)}
    for arm, counts in firsts.items():
        for _ in range(4_000):
            counts[np.argmax(le["stochastic_priorities"](proba, arm, rng))] += 1
    # power: the first pick is item i with probability (1 - margin_i) / 1.6
    assert np.allclose(firsts["power"] / 4_000, [1 / 1.6, 0.5 / 1.6, 0.1 / 1.6, 0.0], atol=0.03)
    # softrank: with probability 1/rank over 1 + 1/2 + 1/3 + 1/4 = 25/12
    expected = np.array([1, 1 / 2, 1 / 3, 1 / 4]) * 12 / 25
    assert np.allclose(firsts["softrank"] / 4_000, expected, atol=0.03)


def test_power_keeps_the_uniform_audit_share_and_differs_from_margins_top(tmp_path):
    le, pool, clf, unlabeled = first_model(tmp_path)

    def picks(arm: str) -> tuple[list[int], dict[int, str]]:
        rng = np.random.default_rng([0, 1])
        reasons: dict[int, str] = {}
        chosen = le["pick"](arm, clf, pool[0], unlabeled, list(range(60)), None, rng,
                            reasons=reasons)  # fmt: skip
        return chosen, reasons

    for arm in ("power", "softrank"):
        chosen, reasons = picks(arm)
        assert len(chosen) == 25 and {reasons[i] for i in chosen} <= {"uncertain", "audit"}
        assert set(chosen) != set(picks("margin")[0])
        assert chosen == picks(arm)[0]  # deterministic per RNG stream


def test_warmsoft_is_random_below_50_labels_and_softrank_from_there(tmp_path):
    le, pool, clf, unlabeled = first_model(tmp_path)

    def picks(arm: str, n_labels: int) -> list[int]:
        rng = np.random.default_rng([0, 1])
        return le["pick"](arm, clf, pool[0], unlabeled, list(range(n_labels)), None, rng)

    assert picks("warmsoft", 49) == picks("random", 49) != picks("softrank", 49)
    assert picks("warmsoft", 50) == picks("softrank", 50) != picks("random", 50)
    assert le["_is_warming"]("warmsoft", 49) and not le["_is_warming"]("warmsoft", 50)


def test_badge_draws_k_means_plus_plus_seeds_over_the_explicit_gradient_embeddings(tmp_path):
    """badge never builds g_i = (p_i - onehot(argmax p_i)) ⊗ x_i; its draws are the ones
    k-means++ seeding makes over those vectors built out, the longest one first."""
    from model.classifier import prepare_texts

    le, pool, clf, unlabeled = first_model(tmp_path)
    texts = [pool[0][i] for i in unlabeled]
    proba = clf.predict_proba(texts)
    k = 10
    got = le["badge_priorities"](clf, proba, texts, k, np.random.default_rng(7))
    chosen = list(np.argsort(-got, kind="stable")[:k])
    assert np.all(got[chosen] >= 2.0) and np.all(np.delete(got, chosen) <= 1.0)

    x = clf.pipeline_[:-1].transform(prepare_texts(texts)).toarray()
    a = proba.copy()
    a[np.arange(len(a)), a.argmax(axis=1)] -= 1.0
    g = np.einsum("ik,if->ikf", a, x).reshape(len(a), -1)  # the embeddings, built out
    rng = np.random.default_rng(7)
    expected = [int(np.argmax((g * g).sum(axis=1)))]
    while len(expected) < k:
        d2 = np.min([((g - g[c]) ** 2).sum(axis=1) for c in expected], axis=0)
        d2[expected] = 0.0
        expected.append(int(rng.choice(len(g), p=d2 / d2.sum())))
    assert chosen == expected

    # in the loop: the uncertain picks are badge's draws, the audit share stays uniform
    reasons: dict[int, str] = {}
    picked = le["pick"]("badge", clf, pool[0], unlabeled, list(range(60)), None,
                        np.random.default_rng([0, 1]), reasons=reasons)  # fmt: skip
    assert len(picked) == 25 and {reasons[i] for i in picked} <= {"uncertain", "audit"}
    assert picked != le["pick"]("margin", clf, pool[0], unlabeled, list(range(60)), None,
                                np.random.default_rng([0, 1]))  # fmt: skip


def blob(centre: np.ndarray, arms: int) -> np.ndarray:
    """A centre and ``arms`` points at distance 1 from it along ± the first arms / 2 axes:
    the centre is the blob's most typical point (mean distance 1 to its neighbours; an arm
    point's nearest are √2 away, and the centre)."""
    steps = np.concatenate([np.eye(len(centre))[: arms // 2], -np.eye(len(centre))[: arms // 2]])
    return np.vstack([centre, centre + steps])


def test_typiclust_takes_the_most_typical_item_of_the_largest_clusters_without_labels():
    le = load_benchmark()
    far = 100.0 * np.eye(14)[10:]  # four blob centres, far apart, off the arms' axes
    blobs = [blob(far[0], 20), blob(far[1], 14), blob(far[2], 8), blob(far[3], 4)]
    embedding = np.vstack(blobs)  # sizes 21, 15, 9, 5: positions 0, 21, 36, 45
    labeled = np.zeros(len(embedding), dtype=bool)
    labeled[[0, 1]] = True  # the largest blob's centre and one of its arms
    # |L| + B = 4 clusters, the four blobs; the one holding labels is drawn from last, the
    # 5-item one (at most TYPI_MIN_CLUSTER) never: the centres of the 15 and the 9
    assert le["typiclust"](embedding, labeled, 2, 0) == [21, 36]
    # with the 15-blob holding a label too, the 9 comes first, then of the two labeled the
    # larger; there the labeled centre is no candidate: its 20 arms tie (each has its 10
    # nearest at √2), the first is taken
    labeled[[1, 21]] = [False, True]
    assert le["typiclust"](embedding, labeled, 2, 0) == [36, 1]


def test_typi150_asks_typiclusts_picks_below_150_labels_with_the_audit_share_then_margin(
    tmp_path,
):
    le, pool, clf, unlabeled = first_model(tmp_path)
    embedding = le["typi_embedding"](pool[0], 0)
    assert embedding.shape[0] == 300 and np.allclose(np.linalg.norm(embedding, axis=1), 1.0)

    def picks(arm: str, n_labels: int) -> tuple[list[int], dict[int, str]]:
        reasons: dict[int, str] = {}
        chosen = le["pick"](arm, clf, pool[0], unlabeled, list(range(n_labels)), None,
                            np.random.default_rng([0, 1]), reasons=reasons,
                            embedding=embedding)  # fmt: skip
        return chosen, reasons

    chosen, reasons = picks("typi150", 60)
    uncertain = [i for i in chosen if reasons[i] == "uncertain"]
    # TypiClust's draw with the k-means seed the arm takes first from its round's stream
    labeled = np.zeros(300, dtype=bool)
    labeled[:60] = True
    seed = int(np.random.default_rng([0, 1]).integers(2**31 - 1))
    typical = le["typiclust"](embedding, labeled, le["BATCH"], seed)
    assert len(chosen) == 25 and {reasons[i] for i in chosen} <= {"uncertain", "audit"}
    assert 0 < len(uncertain) < 25 and set(uncertain) <= set(typical)
    assert uncertain == [i for i in typical if i in uncertain]  # TypiClust's order kept
    assert set(uncertain) != {i for i, r in picks("margin", 60)[1].items() if r == "uncertain"}
    assert picks("typi150", 150)[0] == picks("margin", 150)[0]  # margin from 150 labels


def test_probcover_takes_the_largest_radius_of_pure_balls_and_covers_greedily(tmp_path):
    from scipy.sparse import csr_matrix

    le = load_benchmark()
    # two columns of 10 points 0.1 apart, 5 apart: every item is 5 from the other cluster, so
    # delta is just under 5 and each ball is its whole column
    embedding = np.array([[x, 0.1 * i] for x in (0.0, 5.0) for i in range(10)])
    balls = le["probcover_balls"](embedding, 2, 0)
    assert (balls.toarray() == np.kron(np.eye(2), np.ones((10, 10)))).all()
    first, second = le["probcover"](balls, np.zeros(20, dtype=bool), 5, np.random.default_rng(0))
    assert {first // 10, second // 10} == {0, 1}  # one item of each column, then all covered
    # ties (here ten items whose balls cover 10) are drawn, not taken by position
    draws = {le["probcover"](balls, np.zeros(20, dtype=bool), 1, np.random.default_rng(s))[0]
             for s in range(20)}  # fmt: skip
    assert len(draws) > 5

    # the greedy: the ball holding the most uncovered items first, covered ones not counted
    members = [{0, 1, 2, 3}, {0, 1}, {0, 2}, {0, 3}, {4, 5}, {4, 5, 6}, {5, 6}]
    graph = csr_matrix(np.array([[j in m for j in range(7)] for m in members]))
    rng = np.random.default_rng(0)
    assert le["probcover"](graph, np.zeros(7, dtype=bool), 5, rng) == [0, 5]
    labeled = np.zeros(7, dtype=bool)
    labeled[1] = True  # covers 0 and 1: item 0's ball gains 2 now, item 5's 3
    assert le["probcover"](graph, labeled, 5, rng) == [5, 0]

    # in the loop: ProbCover's picks below 150 labels, the audit share uniform; margin after
    le, pool, clf, unlabeled = first_model(tmp_path)
    embedding = le["typi_embedding"](pool[0], 0)
    balls = le["probcover_balls"](embedding, len(set(pool[1])), 0)
    labeled = np.zeros(300, dtype=bool)
    labeled[:60] = True
    covering = le["probcover"](balls, labeled, le["BATCH"], np.random.default_rng([0, 1]))

    def picks(arm: str, n_labels: int) -> tuple[list[int], dict[int, str]]:
        reasons: dict[int, str] = {}
        chosen = le["pick"](arm, clf, pool[0], unlabeled, list(range(n_labels)), None,
                            np.random.default_rng([0, 1]), reasons=reasons,
                            embedding=embedding, balls=balls)  # fmt: skip
        return chosen, reasons

    chosen, reasons = picks("probcover150", 60)
    uncertain = [i for i in chosen if reasons[i] == "uncertain"]
    assert len(chosen) == 25 and {reasons[i] for i in chosen} <= {"uncertain", "audit"}
    assert len(covering) > 5 and covering[0] in uncertain
    assert uncertain[: len(covering)] == [i for i in covering if i in uncertain][: len(uncertain)]
    assert picks("probcover150", 150)[0] == picks("margin", 150)[0]


def affix_pool(rng: np.random.Generator, per_group: int = 20) -> tuple[list[str], list[str]]:
    """Texts of two words each, every word unseen elsewhere in the pool (a random stem), the
    group told only by the words' ending: the word TF-IDF rows share nothing, the classifier's
    character n-grams share the ending."""
    letters = np.array(list("bcdfghjklmnpqrstvwxz"))
    texts, groups = [], []
    for group, ending in (("a", "ization"), ("b", "ologist"), ("c", "ectomy")):
        for _ in range(per_group):
            texts.append(" ".join("".join(rng.choice(letters, 4)) + ending for _ in range(2)))
            groups.append(group)
    return texts, groups


def test_typic_arms_embed_the_pool_in_the_classifiers_word_and_char_features(tmp_path):
    le = load_benchmark()
    texts, groups = affix_pool(np.random.default_rng(0))

    def neighbour_agreement(arm: str) -> float:
        from sklearn.neighbors import NearestNeighbors

        embedding, balls = le["arm_embedding"](arm, texts, 3, 0)
        assert balls is None and np.allclose(np.linalg.norm(embedding, axis=1), 1.0)
        _, nearest = NearestNeighbors(n_neighbors=2).fit(embedding).kneighbors(embedding)
        return float(np.mean(np.asarray(groups)[nearest[:, 1]] == np.asarray(groups)))

    # the endings make each text's nearest neighbour one of its group for the new arms; the
    # word TF-IDF embedding (typi150's) does not see them
    assert neighbour_agreement("typic150") == neighbour_agreement("typic75") == 1.0
    assert neighbour_agreement("typi150") < 0.6

    # in the loop: TypiClust's picks over that embedding, in its order, below the arm's switch
    le, pool, clf, unlabeled = first_model(tmp_path)
    n_classes = len(set(pool[1]))
    embedding, _ = le["arm_embedding"]("typic150", pool[0], n_classes, 0)
    old, _ = le["arm_embedding"]("typi150", pool[0], n_classes, 0)

    def picks(arm: str, n_labels: int, rows: np.ndarray) -> tuple[list[int], dict[int, str]]:
        reasons: dict[int, str] = {}
        chosen = le["pick"](arm, clf, pool[0], unlabeled, list(range(n_labels)), None,
                            np.random.default_rng([0, 1]), reasons=reasons,
                            embedding=rows)  # fmt: skip
        return chosen, reasons

    labeled = np.zeros(300, dtype=bool)
    labeled[:60] = True
    seed = int(np.random.default_rng([0, 1]).integers(2**31 - 1))
    typical = le["typiclust"](embedding, labeled, le["BATCH"], seed)
    for arm in ("typic150", "typic75"):
        chosen, reasons = picks(arm, 60, embedding)
        uncertain = [i for i in chosen if reasons[i] == "uncertain"]
        assert len(chosen) == 25 and {reasons[i] for i in chosen} <= {"uncertain", "audit"}
        assert 0 < len(uncertain) < 25 and uncertain == [i for i in typical if i in uncertain]
    assert set(typical) != set(le["typiclust"](old, labeled, le["BATCH"], seed))
    assert picks("typic75", 75, embedding)[0] == picks("margin", 75, embedding)[0]
    assert picks("typic150", 75, embedding)[0] != picks("margin", 75, embedding)[0]
    assert picks("typic150", 150, embedding)[0] == picks("margin", 150, embedding)[0]


def test_typicl_takes_the_most_typical_item_no_shorter_than_its_clusters_median():
    le = load_benchmark()
    far = 100.0 * np.eye(14)[10:]
    embedding = np.vstack([blob(far[0], 20), blob(far[1], 14), blob(far[2], 8), blob(far[3], 4)])
    labeled = np.zeros(len(embedding), dtype=bool)
    labeled[[0, 1]] = True
    lengths = np.full(len(embedding), 5)
    lengths[[21, 36]] = 1  # the two blob centres TypiClust takes are one-word texts
    assert le["typiclust"](embedding, labeled, 2, 0) == [21, 36]
    # below their clusters' median length (5): each cluster gives its most typical long item
    # instead (the arms tie; the first is taken)
    assert le["typiclust"](embedding, labeled, 2, 0, lengths) == [22, 37]
    assert list(le["word_counts"](["a b  c", "", "one"])) == [3, 0, 1]

    # the arms: word_char embedding, and their loop passes the pool's word counts on
    assert {"typicl150", "typicl75"} <= set(le["TYPI_WORD_CHAR"]) & set(le["TYPI_LONG"])
    assert le["TYPI_UNTIL"]["typicl75"] == 75 and le["TYPI_UNTIL"]["typicl150"] == 150


def test_typicpc_asks_typical_picks_below_ten_labels_a_class_at_most_150_then_margin(tmp_path):
    le, pool, clf, unlabeled = first_model(tmp_path)
    assert [le["typi_until"]("typicpc", k) for k in (2, 6, 12, 77)] == [20, 60, 120, 150]
    assert le["typi_until"]("typic75", 2) == 75  # the other arms' switch is theirs alone
    embedding = le["typi_embedding"](pool[0], 0, word_char=True, n_classes=2)

    def picks(arm: str, n_labels: int, n_classes: int) -> list[int]:
        return le["pick"](arm, clf, pool[0], unlabeled, list(range(n_labels)), None,
                          np.random.default_rng([0, 1]), embedding=embedding,
                          n_classes=n_classes)  # fmt: skip

    # 6 classes: typical below 60 labels (typic75's picks there), margin from 60
    assert picks("typicpc", 55, 6) == picks("typic75", 55, 6) != picks("margin", 55, 6)
    assert picks("typicpc", 60, 6) == picks("margin", 60, 6)
    # 2 classes: margin from the first model on, where typic75 is still typical
    assert picks("typicpc", 25, 2) == picks("margin", 25, 2) != picks("typic75", 25, 2)


def test_the_default_arm_is_the_product_s_default_typicpc8_and_margin_draws_the_old_default_s(
    tmp_path,
):
    """``default`` follows the product (HITL_TYPICAL_UNTIL=auto by default): it picks and draws
    as ``typicpc8``, so its rows are typicpc8's; ``margin`` draws from the stream the default had
    before (index 0, the name ``default``'s), so its rows are those stored as ``default`` then."""
    from bot.config import Settings
    from model.typical import DEFAULT_TYPICAL_UNTIL, typical_budget

    assert Settings().typical_until == DEFAULT_TYPICAL_UNTIL == "auto"
    le, pool, clf, unlabeled = first_model(tmp_path)
    assert le["rule_of"]("default") == "typicpc8" and le["rule_of"]("margin") == "margin"
    for n_classes in (2, 4, 6, 12, 77):  # the arm's budget is the product's
        assert le["typi_until"]("typicpc8", n_classes) == typical_budget(n_classes)
    embedding = le["typi_embedding"](pool[0], 0, word_char=True, n_classes=6)

    def picks(arm: str, n_labels: int) -> list[int]:
        return le["pick"](arm, clf, pool[0], unlabeled, list(range(n_labels)), None,
                          np.random.default_rng([0, 1]), embedding=embedding,
                          n_classes=6)  # fmt: skip

    assert picks("default", 47) == picks("typicpc8", 47) != picks("margin", 47)
    assert picks("default", 48) == picks("margin", 48)  # 8 labels a class: margin from there

    def draw(arm: str) -> float:
        return le["round_rng"](arm, 0, 3, True, 60).random()

    index = le["ALL_ARMS"].index
    assert draw("default") == draw("typicpc8") == draw("typicpc") != draw("margin")
    assert draw("margin") == np.random.default_rng([0, 3, index("default")]).random()
    assert index("default") == 0 and index("margin") == len(le["ALL_ARMS"]) - 1
    got = le["arm_embedding"]("default", pool[0], 6, 0)[0]
    assert np.array_equal(got, le["arm_embedding"]("typicpc", pool[0], 6, 0)[0])


def test_typicpc8_is_typicpc_with_8_labels_a_class_and_its_draws(tmp_path):
    """The twelfth screen's arm changes the rule only: TypiClust while fewer than 8 labels a
    class (6 classes: below 48 labels), margin from there, with ``typicpc``'s draws and pool
    embedding, so where the two rules agree its rows are ``typicpc``'s."""
    le, pool, clf, unlabeled = first_model(tmp_path)
    embedding = le["typi_embedding"](pool[0], 0, word_char=True, n_classes=6)

    def picks(arm: str, n_labels: int) -> list[int]:
        return le["pick"](arm, clf, pool[0], unlabeled, list(range(n_labels)), None,
                          np.random.default_rng([0, 1]), embedding=embedding,
                          n_classes=6)  # fmt: skip

    assert le["typi_until"]("typicpc8", 6) == 48 and le["typi_until"]("typicpc8", 77) == 150
    assert picks("typicpc8", 47) == picks("typicpc", 47) != picks("margin", 47)
    assert picks("typicpc8", 48) == picks("margin", 48) != picks("typicpc", 48)

    def draw(arm: str) -> float:
        return le["round_rng"](arm, 0, 3, True, 60).random()

    assert draw("typicpc8") == draw("typicpc") != draw("margin")
    got = le["arm_embedding"]("typicpc8", pool[0], 6, 0)[0]
    assert np.array_equal(got, le["arm_embedding"]("typicpc", pool[0], 6, 0)[0])
