"""Shared fixtures: one seeded emulator per test session, recording ARM traffic for oav."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from emulator import Emulator

from .emulator.helpers import emulator_env

RECORD_DIR_NAME = "arm-traffic"


def traffic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's emulators record ARM traffic: ARM_TRAFFIC_DIR when set (make test runs the
    suite on several workers, then checks every worker's traffic with oav in a run of its own)."""
    shared = os.environ.get("ARM_TRAFFIC_DIR")
    return Path(shared) if shared else tmp_path_factory.getbasetemp() / RECORD_DIR_NAME


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory, worker_id: str):
    """A running, seeded emulator whose settings are in os.environ, as a Functions host would set them.
    One per test process (each xdist worker has its own).

    Retry-After is 1: azure-core reads "Retry-After: 0" as absent and falls back to 10-second polls."""
    state = tmp_path_factory.mktemp("emulator")
    record_dir = traffic_root(tmp_path_factory) / f"{worker_id}-{os.getpid()}"
    with Emulator(state, seed=True, operation_seconds=0.3, retry_after_seconds=1, record_dir=record_dir) as emu:
        with emulator_env(emu):
            yield emu


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest):
    """Faults, clock moves, RBAC denials and ARM's knobs never leak from one test into the next (one
    test's 30-second operations once slowed every later test on its worker to 30 s per ARM call)."""
    emu: Emulator | None = request.getfixturevalue("emulator") if "emulator" in request.fixturenames else None
    options = dataclasses.replace(emu.arm.options, deny={}) if emu else None
    yield
    if emu:
        emu.faults.clear()
        emu.clock.reset()
        emu.directory.reset_assignments()
        emu.arm.options = options


@pytest.fixture(scope="session")
def record_dir(emulator: Emulator) -> Path:
    return emulator.arm_app.record_dir


@pytest.fixture(scope="session")
def recorded_traffic(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every recorded ARM exchange: this session's, and those of any other run into ARM_TRAFFIC_DIR."""

    def paths() -> list[Path]:
        return sorted(traffic_root(tmp_path_factory).glob("*/*.json"))

    return paths  # called when needed: the traffic grows while the session runs
