"""The random share by label count: warm (all random below K labels) and ramp (falling)."""

import pytest

from model.errors import InvalidInputError
from model.selection import ramp_share, warm_share


def test_warm_share_is_all_random_below_its_label_count_then_the_audit_share():
    assert [warm_share(n, 150) for n in (0, 50, 149, 150, 151, 1000)] == [
        1.0, 1.0, 1.0, 0.1, 0.1, 0.1
    ]  # fmt: skip
    assert warm_share(20, 10, audit_rate=0.25) == 0.25


def test_ramp_share_falls_with_the_labels_down_to_the_audit_share():
    # 1 - n/300: 1.0, 0.5 at 150, 0.1 at 270, then held at the audit share
    assert [ramp_share(n, 300) for n in (0, 150, 270, 290)] == pytest.approx([1.0, 0.5, 0.1, 0.1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 150), "n_labels must be ≥ 0, got -1"),
        ((10, 0), "the label count to switch at must be ≥ 1, got 0"),
        ((10, 150, 1.5), "audit_rate must be between 0 and 1, got 1.5"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(args, message):
    for share in (warm_share, ramp_share):
        with pytest.raises(InvalidInputError, match=message):
            share(*args)
