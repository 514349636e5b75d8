"""Shared fixtures: one seeded emulator per test session, recording ARM traffic for oav."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator import Emulator

from .emulator.helpers import emulator_env

RECORD_DIR_NAME = "arm-traffic"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory):
    """A running, seeded emulator whose settings are in os.environ, as a Functions host would set them.

    Retry-After is 1: azure-core reads "Retry-After: 0" as absent and falls back to 10-second polls."""
    state = tmp_path_factory.mktemp("emulator")
    record_dir = tmp_path_factory.getbasetemp() / RECORD_DIR_NAME
    with Emulator(state, seed=True, operation_seconds=0.3, retry_after_seconds=1, record_dir=record_dir) as emu:
        with emulator_env(emu):
            yield emu


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest):
    """Faults, clock moves and RBAC denials never leak from one test into the next."""
    yield
    if "emulator" in request.fixturenames:
        emu: Emulator = request.getfixturevalue("emulator")
        emu.faults.clear()
        emu.clock.reset()
        emu.arm.options.deny.clear()


@pytest.fixture(scope="session")
def record_dir(emulator: Emulator) -> Path:
    return emulator.arm_app.record_dir
