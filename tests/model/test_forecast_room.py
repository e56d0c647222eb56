"""The "Next 500 labels" forecast never promises more than the room the model has left
(an outside test of clean two-label data: "accuracy: 100.0%" and then "about +0.9 points
(range +0.4 to +2.5)"; 99.9 % and "+4.0 (range +3.6 to +4.3)"). The learning curve trains on
at most half of the labels and is read past its largest size; the gain and its range are
capped at 100 % minus the model's cross-validated accuracy, saying so, and a capped forecast
no longer holds back the advice to stop."""

from __future__ import annotations

from model.stopping import Extrapolation, NoAccuracyNow, StopSignal, still_gaining

# the 300-label case: the curve's level 0.736 at 1,500 labels, a gain of +4.0 (+3.6 to +4.3)
CURVE = Extrapolation(1_500, 500, 0.99999999, 1.0, 0.3, 0.736, 0.040, 0.036, 0.043, 10, 150)


def test_a_gain_past_the_room_left_is_capped_and_says_so():
    capped = CURVE.with_accuracy(0.999)
    assert abs(capped.room - 0.001) < 1e-12 and abs(capped.expected - 0.001) < 1e-12
    assert capped.gain == 0.040  # the curve's own reading is kept (its refusal judges it)
    assert capped.gain_text() == (
        "at most +0.1 points: the model is at 99.9% (cross-validated), 0.1 points below 100%;"
        " the learning curve read +4.0 (range +3.6 to +4.3), more than that room"
    )
    full = CURVE.with_accuracy(1.0)
    assert full.expected == 0.0
    assert full.gain_text() == (
        "at most +0.0 points: the model is at 100.0% (cross-validated), no room left to gain;"
        " the learning curve read +4.0 (range +3.6 to +4.3), more than that room"
    )


def test_only_the_top_of_the_range_past_the_room_is_capped():
    forecast = CURVE.with_accuracy(0.958)  # 4.2 points left: the gain fits, its top does not
    assert forecast.expected == 0.040
    assert forecast.gain_text() == (
        "about +4.0 points (range +3.6 to +4.2: the model is at 95.8% (cross-validated),"
        " so no more than +4.2)"
    )
    # a curve at a hundredth of a point over a model at 100 %: its range is what is capped
    flat = Extrapolation(80, 500, 0.99, 1.0, 0.5, 0.99, 0.0001, 0.0, 0.006, 10, 40)
    assert flat.with_accuracy(1.0).gain_text() == (
        "about +0.0 points (range +0.0 to +0.0: the model is at 100.0% (cross-validated),"
        " so no more than +0.0)"
    )


def test_with_room_enough_or_no_accuracy_known_the_forecast_is_as_before():
    before = "about +4.0 points (range +3.6 to +4.3)"
    assert CURVE.gain_text() == before and CURVE.expected == CURVE.gain
    assert CURVE.with_accuracy(0.9).gain_text() == before
    assert CURVE.with_accuracy(None).gain_text() == before


def test_a_forecast_capped_under_a_point_lets_settled_predictions_advise_stopping():
    settled = StopSignal(changed=0.0, span=120)
    assert still_gaining(CURVE) and not settled.advises_stop(CURVE)
    capped = CURVE.with_accuracy(0.999)
    assert not still_gaining(capped) and settled.advises_stop(capped)
    assert settled.sentence(capped).endswith("so more labels are unlikely to help much")
    # with more than a point of room left, a forecast of more still holds the advice back,
    # and names the gain it can still bring, not the curve's
    some = CURVE.with_accuracy(0.985)
    assert still_gaining(some) and not settled.advises_stop(some)
    assert "still expects +1.5 points from the next 500 labels" in settled.sentence(some)


def test_the_cap_is_kept_with_the_stored_forecast_and_does_not_make_it_refused():
    capped = CURVE.with_accuracy(1.0)
    again = Extrapolation.from_dict(capped.as_dict())
    assert again == capped and again.expected == 0.0
    # the capped range has no width, but the curve's own has: not a forecast to refuse
    assert not again.refused()


def test_a_count_of_answered_questions_is_said_again_as_it_is_now():
    at_fit = NoAccuracyNow.too_few(0)
    assert at_fit.reason == "it needs 30 questions a model asked answered, has 0 so far"
    assert at_fit.counted_now(20, "v1").reason == (
        "it needs 30 questions a model asked answered, has 20 so far"
    )
    before = NoAccuracyNow.too_few(4, unasked=7).counted_now(12, "v1")
    assert before.reason == (
        "it needs 30 questions a model asked answered, has 12 so far (the 7 answered before"
        " the first model cannot calibrate it)"
    )
    assert at_fit.counted_now(30, "r315").reason == (
        "it needs 30 questions a model asked answered: r315 was fitted when 0 were, and at"
        " least 30 are now, so the next model update can estimate it"
    )
    other = NoAccuracyNow("every item of the fixed sample has a label")
    assert other.counted_now(12, "v1") is other and at_fit.counted_now(None) is at_fit
    assert at_fit.as_dict() == {"reason": at_fit.reason}  # as before (benchmark rows)
    kept = {**at_fit.as_dict(), **at_fit.counts()}
    assert NoAccuracyNow.from_dict(kept).counted_now(5).reason.endswith("has 5 so far")
