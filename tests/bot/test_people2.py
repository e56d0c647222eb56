"""`hitl people anonymise` and the models folder: a retrain the person started is written into
its model's metadata (``vN.json``, ``extra.triggered_by`` "<@U…>"): the command gives it the
pseudonym too (under the retrain lock); while a retrain or rollback runs it names the files."""

from __future__ import annotations

import json
from pathlib import Path

from bot.store import Store
from model.registry import ModelVersion
from tests.bot.test_people import LEAVER, run, team


def metadata(folder: Path, version: int, triggered_by: str) -> None:
    meta = ModelVersion(
        version=version,
        status="retired",
        created_at="2026-01-01T00:00:00+00:00",
        label_set=["bug", "billing"],
        n_train=10,
        metrics={},
        sklearn_version="1.5.0",
        sha256="0" * 64,
        pipeline_name="tfidf_logreg",
        model_file=f"v{version}.skops",
        extra={"triggered_by": triggered_by},
    )
    (folder / f"v{version}.json").write_text(json.dumps(meta.to_dict()), encoding="utf-8")


def test_anonymise_names_the_model_metadata_that_still_holds_the_id(tmp_path: Path):
    db = team(tmp_path)
    folder = tmp_path / "hitl.db.models"
    folder.mkdir()
    metadata(folder, 1, f"<@{LEAVER}>")
    metadata(folder, 2, "<@U0ANA>")
    metadata(folder, 3, f"<@{LEAVER}>")
    metadata(folder, 4, f"<@{LEAVER}X>")  # another person's id that starts with theirs

    done = run(db, "people", "anonymise", LEAVER, "--by", "dpo")
    assert done.exit_code == 0, done.output
    said = [line for line in done.stdout.splitlines() if "Models folder" in line]
    assert said == [f"  Models folder ({folder}): v1.json, v3.json now name former-1"]
    by = {
        n: json.loads((folder / f"v{n}.json").read_text(encoding="utf-8"))["extra"]["triggered_by"]
        for n in range(1, 5)
    }
    assert by == {1: "former-1", 2: "<@U0ANA>", 3: "former-1", 4: f"<@{LEAVER}X>"}
    assert LEAVER not in (folder / "v1.json").read_text(encoding="utf-8")


def test_while_a_retrain_runs_the_models_metadata_is_named_not_written(tmp_path: Path):
    db = team(tmp_path)
    folder = tmp_path / "hitl.db.models"
    folder.mkdir()
    metadata(folder, 1, f"<@{LEAVER}>")
    with Store.open(db) as store:  # a retrain on another machine holds the lock
        holder = "retrain by cli on elsewhere:41:abcd1234"
        assert store.acquire_lock("retrain", holder, "2026-01-01", "9999-01-01") is None
    done = run(db, "people", "anonymise", LEAVER)
    assert done.exit_code == 0, done.output
    said = [line for line in done.stdout.splitlines() if "Models folder" in line]
    assert said == [
        f"  Models folder ({folder}): v1.json still names {LEAVER}: a retrain by cli is already"
        " running (elsewhere:41:abcd1234); replace it with former-1 there once it ends."
    ]
    assert LEAVER in (folder / "v1.json").read_text(encoding="utf-8")


def test_no_models_folder_says_nothing_of_it_and_makes_none(tmp_path: Path):
    db = team(tmp_path)
    done = run(db, "people", "anonymise", LEAVER)
    assert done.exit_code == 0, done.output
    assert "Models folder" not in done.stdout
    assert not (tmp_path / "hitl.db.models").exists()


def test_an_id_that_is_not_utf8_is_one_line(tmp_path: Path):
    """A terminal set to Latin-1 passes bytes that are not UTF-8: a traceback before."""
    db = team(tmp_path)
    done = run(db, "people", "anonymise", "U0\udce9")
    assert done.exit_code == 2
    assert "Invalid value for USER_ID: 'U0\\xe9' is not UTF-8 text" in done.stderr
    assert "Traceback" not in done.output
