"""The soak runs on its own (`make soak`, after `make test` in CI): its own Azurite."""

from __future__ import annotations

import pytest

from devhost.azurite import Azurite


@pytest.fixture(scope="session")
def azurite():
    with Azurite() as server:
        yield server
