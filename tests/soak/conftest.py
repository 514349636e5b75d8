"""The soak runs alone (make test starts it beside the rest of the suite): its own Azurite."""

from __future__ import annotations

import pytest

from scripts.azurite import Azurite


@pytest.fixture(scope="session")
def azurite():
    with Azurite() as server:
        yield server
