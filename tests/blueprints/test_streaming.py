"""A follower that takes over a stream sends its client only what it had not sent yet."""

from __future__ import annotations

import pytest

from appfactory.web.errors import ApiError
from blueprints.ai.streaming import Follower


def _follower(sent: list[str]) -> Follower:
    follower = Follower.__new__(Follower)  # its one method under test needs no app
    follower.sent = list(sent)
    return follower


def test_a_stream_begun_again_is_sent_from_where_the_client_is():
    follower = _follower(["echo:", " the", " sa"])  # cut inside a piece of the new stream
    assert list(follower._beyond_sent(["echo:", " the", " same", " text"])) == ["me", " text"]
    assert "".join(follower.sent) == "echo: the same text"


def test_nothing_was_sent_yet_every_piece_passes():
    follower = _follower([])
    assert list(follower._beyond_sent(["a", "b"])) == ["a", "b"]


@pytest.mark.parametrize("pieces", [["echo:", " another"], ["echo: the", " tea"], ["x"]])
def test_a_model_that_answers_differently_is_a_502(pieces):
    follower = _follower(["echo:", " the", " s"])
    with pytest.raises(ApiError) as refused:
        list(follower._beyond_sent(pieces))
    assert refused.value.code == "stream_interrupted"


def test_pieces_cut_elsewhere_are_the_same_text():
    follower = _follower(["echo:", " the", " s"])
    assert list(follower._beyond_sent(["echo: the", " sam", "e"])) == ["am", "e"]
