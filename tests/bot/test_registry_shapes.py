"""A model's ``vN.json`` that is valid JSON but holds a field of ``extra`` of the wrong type (a
hand edit, a tool that rewrote it) is refused as damaged metadata is, naming the field, like a
top-level field of the wrong type (tests/model/test_registry_shapes.py). Only the top-level
fields were checked: `hitl retrain` then ended in a traceback (``extra.label_set_mark`` a list:
``'list' object has no attribute 'get'``) or blamed the database (``extra.gold_read_at`` a
list: "database error (Error binding parameter 1 …)"), and `hitl models` showed the version as
fine (review "rv", F2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from model.registry import ModelVersion
from tests.bot.harness import seed
from tests.bot.test_learning import labeled_items

MARK = 'an object with a count "change" and a time "at", or null'
SHAPES = {
    "label_set_mark a list": ("label_set_mark", [0], f"a list, not {MARK}"),
    "gold_read_at a list": ("gold_read_at", [1], "a list, not a time (a string) or null"),
    "label_set_mark.change a string": (
        "label_set_mark",
        {"change": "3", "at": ""},
        f"an object, not {MARK}",
    ),
    "label_seq a string": ("label_seq", "12", "a string ('12'), not a count or null"),
    "label_watermark a number": (
        "label_watermark",
        5,
        "a number (5), not a time (a string) or null",
    ),
}


def hitl(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


@pytest.mark.parametrize(("field", "value", "why"), SHAPES.values(), ids=SHAPES.keys())
def test_hitl_retrain_refuses_a_champions_extra_field_of_the_wrong_type_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, field: str, value: object, why: str
):
    db = tmp_path / "hitl.db"
    seed(db, labeled_items())
    first = hitl(db, "retrain")
    assert first.exit_code == 0, first.output
    path = Path(f"{db}.models") / "v1.json"
    data = json.loads(path.read_text())
    data["extra"][field] = value
    path.write_text(json.dumps(data))
    problem = f'model v1 metadata is unreadable: its "extra.{field}" is {why}'

    models = hitl(db, "models")
    assert models.exit_code == 0, models.output
    assert f"(metadata v1.json unreadable: {problem})" in models.output

    again = hitl(db, "retrain", "--force")
    assert again.exception is None or isinstance(again.exception, SystemExit), again.output
    assert again.exit_code == 0, again.output
    assert "database error" not in again.output
    assert "Retrain v2: promoted" in again.output  # v1 is refused: a model is trained anew
    assert f"skipping model metadata v1.json: {problem}" in caplog.text


def test_extra_as_retrains_write_it_and_as_older_versions_did_is_read():
    """Every field may be missing or null (a model from before it was recorded); fields
    ``extra`` does not know are not checked."""
    base = {
        "version": 1,
        "status": "champion",
        "created_at": "2026-01-01T00:00:00+00:00",
        "label_set": ["a", "b"],
        "n_train": 10,
        "metrics": {},
        "sklearn_version": "1.5",
        "sha256": "0" * 64,
        "pipeline_name": "tfidf_logreg",
        "model_file": "v1.skops",
    }
    written = {
        "label_watermark": "2026-01-01T00:00:00.000+00:00",
        "label_seq": 12,
        "champion_macro_f1": 0.5,
        "gold_check": None,
        "gold_read_at": "2026-01-01T00:00:00.000+00:00",
        "label_set_mark": {"change": 0, "at": ""},
        "fit_seconds": 1.25,
        "triggered_by": "<@U1>",
    }
    assert ModelVersion.from_dict({**base, "extra": written}).extra == written
    nulls = dict.fromkeys(written)
    assert ModelVersion.from_dict({**base, "extra": nulls}).extra == nulls
    older = {"label_watermark": None, "something_else": [1, 2]}
    assert ModelVersion.from_dict({**base, "extra": older}).extra == older
    with pytest.raises(ValueError, match=r'its "extra\.fit_seconds" is a string'):
        ModelVersion.from_dict({**base, "extra": {"fit_seconds": "slow"}})
