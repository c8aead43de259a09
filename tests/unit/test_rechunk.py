"""``rechunk``: the engines' fixed-size pieces, whatever sizes the archive stream arrives in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from party_agent.storage.base import rechunk


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.binary(max_size=300), max_size=40), size=st.integers(min_value=1, max_value=64))
def test_rechunk_gives_the_same_bytes_in_pieces_of_exactly_size(pieces: list[bytes], size: int) -> None:
    out = list(rechunk(iter(pieces), size))
    assert b"".join(out) == b"".join(pieces)
    assert all(len(piece) == size for piece in out[:-1])
    assert not out or 0 < len(out[-1]) <= size


def test_a_piece_of_exactly_size_on_a_boundary_passes_through_uncopied() -> None:
    aligned = bytes(range(8))
    out = list(rechunk(iter([aligned, b"ab", b"cdefgh"]), 8))
    assert out[0] is aligned
    assert out[1:] == [b"abcdefgh"]
