"""The producer API answers a retired label's item that was never scored with the serving
model's label in force, not as if there were no model.

Items imported with their labels (as the Quick start does) are decided before any model scores
them. After `hitl labels retire billing`, ``POST /api/predict`` for a billing item answered
``{"label": null, "model_version": null, "ranked": [], "status": "needs_review"}`` and
``GET /api/items/<id>`` had ``"prediction": null`` while model v1 served: what the README says
only while there is no model yet. Such an item is scored on request now (this item only, off
the loop, as a new text is), and its status stays: still decided, waiting in review. Through
the real server (signed API requests) and the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

from bot.runtime import Champion
from bot.sandbox import FakeSlack
from tests.bot.test_api import AUTH, champion, classifier, post_json, start_api  # noqa: F401
from tests.bot.test_retired_counts import hitl
from tests.bot.test_retired_counts import imported as import_rows

LABELS = ("billing", "bug", "account", "how_to")
ITEMS = [
    {"id": "b1", "text": "I was charged twice", "label": "billing"},
    {"id": "b2", "text": "Refund the annual plan", "label": "billing"},
    {"id": "g1", "text": "The app crashes on start", "label": "bug"},
    {"id": "a1", "text": "Please delete my account", "label": "account"},
]


def imported(tmp_path: Path) -> Path:
    return import_rows(tmp_path, ITEMS)


async def test_predict_and_get_of_a_retired_labels_unscored_item_answer_the_model_label(
    fake_slack: FakeSlack,
    tmp_path: Path,
    champion: Champion,  # noqa: F811
):
    db = imported(tmp_path)
    async for bot in start_api(fake_slack, tmp_path, labels=LABELS, champion=champion):
        retired = hitl(db, "labels", "retire", "billing")
        assert retired.exit_code == 0, retired.output
        assert bot.store.get_item("b1")["confidence"] is None  # never scored

        response = await post_json(bot, "/api/predict", {"text": "I was charged twice", "id": "b1"})
        assert response.status == 200
        b1 = await response.json()
        assert b1["status"] == "needs_review"
        assert b1["model_version"] == 1
        assert b1["label"] is not None and b1["label"] != "billing"
        assert b1["label"] == b1["model_label"] == b1["ranked"][0]["label"]
        assert "billing" not in [guess["label"] for guess in b1["ranked"]]

        # GET of the other one, never asked about: its prediction too
        response = await bot.http.get("/api/items/b2", headers=AUTH)
        assert response.status == 200
        b2 = await response.json()
        assert (b2["status"], b2["human"], b2["queue_status"]) == ("needs_review", None, "resolved")
        assert b2["prediction"] is not None
        assert b2["prediction"]["model_version"] == 1
        assert b2["prediction"]["label"] not in (None, "billing")

        # only the items asked about were scored, and they stay decided, waiting in review
        assert bot.store.get_item("g1")["confidence"] is None
        assert [bot.store.get_item(i)["status"] for i in ("b1", "b2")] == ["resolved"] * 2
        assert bot.store.pending_review_count() == 2

        # the label added back: decided billing again, as before
        assert hitl(db, "labels", "add", "billing").exit_code == 0
        response = await bot.http.get("/api/items/b1", headers=AUTH)
        body = await response.json()
        assert (body["status"], body["human"]["label"]) == ("resolved", "billing")
        response = await post_json(bot, "/api/predict", {"text": "I was charged twice", "id": "b1"})
        assert (await response.json())["label"] == "billing"


async def test_the_review_window_shows_the_guess_the_api_answers_after_the_label_is_back(
    fake_slack: FakeSlack,
    tmp_path: Path,
    champion: Champion,  # noqa: F811
):
    """Scored while billing was retired, b1's stored guess is the best label in force then
    (not billing); once billing is added back, the producer API answers billing (from the
    model's ranked guesses under the set in force now), and /hitl review showed the stale
    stored guess beside it (an outside test). Both read the guesses the same way now."""
    db = imported(tmp_path)
    async for bot in start_api(fake_slack, tmp_path, labels=LABELS, champion=champion):
        assert hitl(db, "labels", "retire", "billing").exit_code == 0
        before = bot.store.get_item("b1")["updated_at"]
        assert (await bot.http.get("/api/items/b1", headers=AUTH)).status == 200  # scores it
        stored = bot.store.get_item("b1")
        assert stored["predicted_label"] not in (None, "billing")
        assert stored["updated_at"] == before  # a read changes nothing the producer sees
        assert hitl(db, "labels", "add", "billing").exit_code == 0

        body = await (await bot.http.get("/api/items/b1", headers=AUTH)).json()
        label, confidence = body["prediction"]["label"], body["prediction"]["confidence"]
        assert label == "billing"
        assert (await bot.command("review b1", "U0ADMIN", trigger_id="t1")).status == 200
        view = json.dumps((await bot.fake.next_call("views.open")).reply["view"]["blocks"])
        assert f"*Model:* `billing` ({confidence:.0%})" in view
        assert f"*Model:* `{stored['predicted_label']}` (" not in view
