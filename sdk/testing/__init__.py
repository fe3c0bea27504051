"""Testing helpers for adapter authors: cassettes replayed with respx."""

from .cassette import Cassette, CassetteMismatch

__all__ = ["Cassette", "CassetteMismatch"]
