from __future__ import annotations

import pytest

from tests.integration.netns import Namespaces


@pytest.fixture
def namespaces():
    """Factory for throw-away network namespaces, deleted (with their processes) after the test."""
    ns = Namespaces("x0t")
    yield ns
    ns.cleanup()
