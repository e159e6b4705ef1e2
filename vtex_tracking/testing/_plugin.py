"""The pytest plugin (registered through the ``pytest11`` entry point): a ``fake_oms`` fixture,
and the no-wait switch as a ``vtex_testing`` fixture and a ``vtex_testing`` marker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._testing_mode import no_waits
from ._server import FakeOMS


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so ``--strict-markers`` suites accept it."""
    config.addinivalue_line(
        "markers",
        "vtex_testing: run the test with vtex-tracking's waits skipped (backoff, Retry-After,"
        " the accounts' pace), as the vtex_testing fixture does",
    )


@pytest.fixture
def fake_oms() -> Iterator[FakeOMS]:
    """A ``FakeOMS`` running in a background thread for one test; works in sync and async
    tests alike. Point clients at ``fake_oms.url`` with ``fake_oms.app_key``/``app_token``."""
    with FakeOMS() as oms:
        yield oms


@pytest.fixture
def vtex_testing() -> Iterator[None]:
    """Skip every wait of the SDK for one test (``set_testing(True)``), then restore it."""
    with no_waits():
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``@pytest.mark.vtex_testing`` asks for the ``vtex_testing`` fixture (it has no
    dependencies of its own, so adding its name is all a test needs)."""
    for item in items:
        fixturenames = getattr(item, "fixturenames", None)
        if (
            item.get_closest_marker("vtex_testing") is not None
            and fixturenames is not None
            and "vtex_testing" not in fixturenames
        ):
            fixturenames.insert(0, "vtex_testing")
