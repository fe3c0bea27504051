"""The root of the test tree: fixtures that tests in several folders use. Its being here also puts ``tests/`` on
``sys.path`` (pytest's default import mode), so support modules shared across folders live in ``tests/`` itself
(``bike_share``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """A respx router answering the test's HTTP requests (cassettes are mounted on it); unused routes are fine."""
    with respx.mock(assert_all_called=False) as router:
        yield router
