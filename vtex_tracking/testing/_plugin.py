"""The pytest plugin (registered through the ``pytest11`` entry point): a ``fake_oms`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._server import FakeOMS


@pytest.fixture
def fake_oms() -> Iterator[FakeOMS]:
    """A ``FakeOMS`` running in a background thread for one test; works in sync and async
    tests alike. Point clients at ``fake_oms.url`` with ``fake_oms.app_key``/``app_token``."""
    with FakeOMS() as oms:
        yield oms
