import numpy as np
import pytest

from model.classifier import build_pipeline
from model.stopping import (
    Extrapolation,
    agreement,
    curve_points,
    extrapolate,
    first_firing,
    inverse_power_law,
    stop_sample,
    stop_signal,
)


def test_kappa_between_successive_models_by_hand():
    # observed agreement 3/4; chance (0.5·0.25 + 0.5·0.75) = 0.5; kappa (0.75−0.5)/0.5 = 0.5
    assert agreement(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.5)


def test_identical_predictions_agree_fully_even_with_one_label():
    assert agreement(["a", "a", "a"], ["a", "a", "a"]) == 1.0


def test_a_changed_stop_set_is_an_error_naming_both_sizes():
    with pytest.raises(ValueError, match=r"3 vs 2 items"):
        agreement(["a", "b", "a"], ["a", "b"])


def test_signal_fires_after_three_kappas_at_or_above_the_threshold():
    assert stop_signal([0.9, 0.995, 0.99, 1.0]).fired
    still = stop_signal([0.995, 0.93, 0.999])
    assert not still.fired and still.lowest == pytest.approx(0.93)
    assert still.sentence() == (
        "still changing: kappa 0.93 over the last 3 models (stops at ≥ 0.99)"
    )


def test_a_redrawn_stop_set_restarts_the_run():
    signal = stop_signal([0.995, 0.999, None, 0.999, 1.0])
    assert signal.kappas == (0.999, 1.0) and not signal.fired
    assert "over the last 2 models (3 needed" in signal.sentence()


def test_first_firing_is_the_update_that_completes_the_window():
    assert first_firing([0.5, 0.99, 0.99, 0.99, 0.2]) == 3
    assert first_firing([0.5, 0.99, 0.98, 0.99]) is None


def test_fired_sentence_says_more_labels_are_unlikely_to_help():
    assert (
        stop_signal([1.0, 1.0, 1.0])
        .sentence()
        .startswith("predictions have stopped changing: more labels are unlikely to help much")
    )


def test_stop_sample_is_deterministic_and_bounded():
    assert stop_sample(5, size=10) == [0, 1, 2, 3, 4]
    first = stop_sample(10_000, size=2_000, random_state=3)
    assert first == stop_sample(10_000, size=2_000, random_state=3)
    assert len(set(first)) == 2_000 and first == sorted(first) and first[-1] < 10_000


def test_extrapolation_recovers_an_exact_inverse_power_law():
    sizes = [25, 50, 100, 200, 400]
    scores = inverse_power_law(np.array(sizes, dtype=float), 0.9, 0.5, 0.5)
    found = extrapolate(sizes, scores, n_labels=400)
    # gain 0.5·(400^−0.5 − 900^−0.5) = 0.5·(0.05 − 0.0333…) = 0.008333…
    assert found.gain == pytest.approx(0.008333, abs=1e-4)
    assert found.a == pytest.approx(0.9, abs=1e-3) and found.c == pytest.approx(0.5, abs=1e-2)
    assert found.low == pytest.approx(found.gain, abs=1e-3)
    assert found.high == pytest.approx(found.gain, abs=1e-3)
    assert found.sentence() == "about +0.8 points from the next 500 labels (range +0.8 to +0.8)"
    assert Extrapolation.from_dict(found.as_dict()) == found


def test_extrapolation_range_widens_with_noise_and_holds_the_gain():
    rng = np.random.default_rng(0)
    sizes = [20, 40, 60, 80, 100] * 2
    scores = inverse_power_law(np.array(sizes, dtype=float), 0.85, 1.2, 0.6)
    noisy = scores + rng.normal(0, 0.02, len(sizes))
    found = extrapolate(sizes, noisy, n_labels=125)
    assert found.low < found.gain < found.high
    assert found.high - found.low > 0.01


def test_extrapolation_needs_four_points_on_three_sizes():
    assert extrapolate([10, 20, 40], [0.5, 0.6, 0.7], n_labels=50) is None
    assert extrapolate([10, 10, 20, 20], [0.5, 0.5, 0.6, 0.6], n_labels=50) is None


def test_curve_points_measure_accuracy_on_subsets_of_the_labels():
    words = {"billing": "refund invoice charge", "bug": "crash error freeze"}
    texts, labels = [], []
    for n in range(40):
        for label, vocab in words.items():
            texts.append(f"{vocab.split()[n % 3]} number {n}")
            labels.append(label)
    sizes, scores = curve_points(
        texts, labels, lambda: build_pipeline("word_lr"), sizes=(0.5, 1.0), n_splits=2
    )
    # 80 labels, 20 % held out: training parts of 64, so sizes 32 and 64, two splits each
    assert sorted(sizes) == [32, 32, 64, 64]
    assert all(0.9 <= s <= 1.0 for s in scores)


def test_curve_points_need_thirty_labels():
    assert curve_points(["a b"] * 10, ["x", "y"] * 5, lambda: build_pipeline("word_lr")) == (
        [],
        [],
    )
