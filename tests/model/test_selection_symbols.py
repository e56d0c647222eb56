"""Texts of emoji or punctuation only normalise to nothing; they are compared as written."""

from __future__ import annotations

from model.selection import is_near_duplicate, select


def test_different_emoji_or_punctuation_only_texts_are_not_near_duplicates():
    assert not is_near_duplicate("👍", "👎")
    assert not is_near_duplicate("?!", "...")
    assert is_near_duplicate("👍", " 👍 ")  # the same, spaced differently
    assert is_near_duplicate("Hello!", "hello")  # word texts still normalise as before


def test_a_batch_of_different_emoji_keeps_them_all():
    picks = select(3, None, texts=["👍", "👎", "🔥"], random_state=0)
    assert sorted(p.index for p in picks) == [0, 1, 2]
    assert len(select(3, None, texts=["👍", "👍", "🔥"], random_state=0)) == 2  # equal: one
