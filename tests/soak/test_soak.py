"""Soak: 200 scheduled rounds over 20 targets with 5% random faults; nothing lost, nothing made twice.

Its own emulator, in its own process (as Azure is elsewhere, so 20 workers' lag stays far below an
operation's duration), without ARM's subscription throttle (which would make 4,000 backups take
minutes of waiting; bench/fanout measures it), answering with retry-after-ms so each round's polling
takes milliseconds instead of seconds. Every fault of tests/app/test_faults.py that
needs no clock change can strike, plus runs that die after starting a backup.

Client-side waits are compressed: every sleep (a Retry-After, a Storage retry's backoff, a poll
interval) lasts at most SLEEP_CAP; only idle time goes. Emulated backups take OPERATION_SECONDS, far
longer than the engine needs, even on a loaded CI machine, to ask ARM again after a lost answer, so
ARM answers 409 as it would for a real backup, which takes minutes (with half-second backups, CI
load let a few end unseen first: the race README's "What remains" describes).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections import Counter

import pytest

from bench.emulator_process import EmulatorProcess
from emulator import Emulator
from mccf_backup.identity import reset_credentials
from mccf_backup.service import BackupService
from scripts.envvars import scoped_environ

from tests.app.invariants import assert_nothing_lost, backup_operations

ROUNDS = int(os.environ.get("SOAK_ROUNDS", "200"))  # fewer only to profile it by hand
TARGETS = 20
FAULT_RATE = float(os.environ.get("SOAK_FAULT_RATE", "0.05"))
SEED = 20261127
OPERATION_SECONDS = 2.0
POLL_MS = 150
SLEEP_CAP = 0.5
LOST_GRACE_SECONDS = 20  # 10 emulated backups' time: past it, a lost one can only be lost for good


@pytest.fixture(scope="module")
def soak_emulator(tmp_path_factory):
    """The soak's emulator process; its instances are written into its state before it starts."""
    state = tmp_path_factory.mktemp("soak")
    with Emulator(state, seed=True) as emu:
        targets = [emu.add_instance(f"rg-soak-{i % 4}", f"soak{i:02d}") for i in range(TARGETS)]
    extra = ("--retry-after-ms", str(POLL_MS), "--no-throttle")
    with EmulatorProcess(state, OPERATION_SECONDS, *extra) as process:
        yield process, targets


def fault(emu: EmulatorProcess, service: str, *, action: str = "status", **rule) -> None:
    emu.control("POST", "/faults", {"service": service, "action": action, "count": 1, **rule})


def inject(emu: EmulatorProcess, kind: str, target: str) -> None:
    app = target.rsplit("/", 1)[-1]
    post = re.escape(target) + "/backup$"
    if kind == "arm-429":
        fault(emu, "arm", status=429, method="POST", path=post, retryAfter=1)
    elif kind == "arm-503-before":
        fault(emu, "arm", status=503, method="POST", path=post)
    elif kind == "arm-500-after":
        fault(emu, "arm", status=500, method="POST", path=post, after=True)
    elif kind == "arm-reset-after":
        fault(emu, "arm", action="drop", method="POST", path=post, after=True)
    elif kind == "arm-reset-before":
        fault(emu, "arm", action="drop", method="POST", path=post)
    elif kind == "operation-failed":
        emu.control("POST", "/faults/operations", {"kind": "backup", "code": "InternalError"})
    elif kind == "operation-canceled":
        emu.control("POST", "/faults/operations", {"kind": "backup", "code": "Canceled", "status": "Canceled"})
    elif kind == "operation-forgotten":
        fault(emu, "arm", status=404, method="GET", path=r"/operationStatuses/", code="NotFound")
    elif kind == "storage-503-tag":
        fault(emu, "file", status=503, method="PUT", path=rf"^/mccfbackupemu/{app}-\d{{14}}$")
    elif kind == "storage-503-list":
        fault(emu, "file", status=503, method="GET", path=r"^/mccfbackupemu/?$")
    elif kind != "run-dies":  # run-dies is the caller's: a backup started and never followed
        raise AssertionError(kind)


KINDS = [
    "arm-429",
    "arm-503-before",
    "arm-500-after",
    "arm-reset-after",
    "arm-reset-before",
    "operation-failed",
    "operation-canceled",
    "operation-forgotten",
    "storage-503-tag",
    "storage-503-list",
    "run-dies",
]


def test_soak_200_rounds_over_20_targets_with_5_percent_faults(soak_emulator, azurite, capsys, monkeypatch):
    emu, targets = soak_emulator
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda seconds: real_sleep(min(seconds, SLEEP_CAP)))
    rng = random.Random(SEED)
    env = {
        **emu.env,
        "MCCF_TARGETS": ",".join(targets),
        "BACKUP_SCHEDULE": "0 0 2 * * *",
        "AzureWebJobsStorage": azurite.connection_string,
        "JOBS_TABLE_NAME": "soakjobs",
        "BACKUP_CONCURRENCY": str(TARGETS),
        # A backup ARM lost track of is watched by its share this long, not the operation's lifetime
        "LOST_OPERATION_GRACE_SECONDS": str(LOST_GRACE_SECONDS),
    }
    injected: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    with scoped_environ(env):
        reset_credentials()
        try:
            for _ in range(ROUNDS):
                for target in targets:
                    if rng.random() < FAULT_RATE:
                        kind = rng.choice(KINDS)
                        injected[kind] += 1
                        if kind == "run-dies":
                            try:  # an instance starts this target's backup, then dies
                                BackupService.from_environment().start_backup(target, "timer")
                            except Exception:  # noqa: BLE001 - a start that itself failed is recorded
                                outcomes["died-start-failed"] += 1
                        else:
                            inject(emu, kind, target)
                summary = BackupService.from_environment().run_scheduled("timer")
                for result in summary.results:
                    outcomes["succeeded" if result.ok else f"failed:{result.error_code}"] += 1
                emu.control("DELETE", "/faults")
            service = BackupService.from_environment()
            jobs = assert_nothing_lost(service, emu, targets)
        finally:
            reset_credentials()
    seconds = time.monotonic() - started
    shares = sum(len([j for j in js if j.status == "succeeded"]) for js in jobs.values())
    adopted = sum(1 for js in jobs.values() for j in js if j.trigger == "reconcile")
    operations = sum(len(backup_operations(emu, t)) for t in targets)
    with capsys.disabled():
        print(
            f"\nsoak: {ROUNDS} rounds x {TARGETS} targets in {seconds:.0f} s; faults injected "
            f"{sum(injected.values())} {dict(sorted(injected.items()))}; target outcomes {dict(sorted(outcomes.items()))}; "
            f"ARM ran {operations} backups; {shares} backup shares, each tagged and claimed by one succeeded job "
            f"({adopted} adopted by reconciliation); no job running"
        )
    assert sum(injected.values()) > 0.8 * FAULT_RATE * ROUNDS * TARGETS  # the faults really happened
    assert outcomes["succeeded"] > 0.9 * ROUNDS * TARGETS  # faults cost some rounds, never most
