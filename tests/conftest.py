"""Shared test configuration.

Markers (see pyproject.toml): `integration` (root, namespaces, real kernel), `ui` (headless Chromium),
`slow` (image builds and QEMU boots). All of them run in CI; select with -m.
Artefacts a person should look at (screenshots, serial logs) go under test-artifacts/.
"""

from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> pathlib.Path:
    """A per-test folder under test-artifacts/ for files worth keeping after the run."""
    path = ARTIFACTS / request.node.name.replace("/", "_")
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests under tests/integration, tests/ui and tests/image need root; mark them by folder so a
    # file cannot forget its marker.
    for item in items:
        parts = pathlib.Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "ui" in parts:
            item.add_marker(pytest.mark.ui)
        if "image" in parts:
            item.add_marker(pytest.mark.slow)
        if os.geteuid() != 0 and ("integration" in parts or "image" in parts):
            item.add_marker(pytest.mark.skip(reason="needs root"))
