"""The kit's pytest plugin (entry point group ``pytest11``): the ``conformance`` marker and a clock fixture.

Installed with leadrelay, pytest loads it in every run; the conformance classes themselves are imported
from :mod:`connectors.testing` by the plugin author's test module. (Do not also list it in
``pytest_plugins``: pytest refuses a plugin registered twice under two names.)
"""

from __future__ import annotations

import pytest

from ._clock import KitClock
from ._suites import _Common


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "conformance: a check of the leadrelay connector conformance kit (connectors.testing)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of a conformance class, so ``-m conformance`` (or ``-m "not conformance"``) selects them."""
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is not None and issubclass(cls, _Common):
            item.add_marker(pytest.mark.conformance)


@pytest.fixture
def kit_clock() -> KitClock:
    """The kit's injectable clock, for a plugin's own tests of its fake and connector."""
    return KitClock()
