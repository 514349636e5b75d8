"""Soak: 200 scheduled rounds over 20 targets with 5% random faults; nothing lost, nothing made twice.

Each round fires the timer function (it starts every target's backup and returns) while the queue
functions run beside it, as on the host: the operations queue follows every backup to its end. The
next round fires once this round's jobs have ended (or, for a job that cannot end yet, been joined).
Every PRUNE_EVERY rounds retention prunes each target to its newest KEEP_LAST backups, as the prune
timer would, while backups may still be running.

Its own emulator, in its own process (as Azure is elsewhere), without ARM's subscription throttle
(which would make 4,000 backups take minutes of waiting; bench/fanout measures it), answering with
retry-after-ms so each look comes after the queue's shortest delay (1 s). Every fault of
tests/app/test_faults.py that needs no clock change can strike, plus an instance that dies after
starting a backup, before queueing its next step (its messages go to a queue nobody reads: the
sweeper must take the job up).

Time is compressed on the client side: every sleep (a Retry-After, a Storage retry's backoff) lasts
at most SLEEP_CAP, the sweeper runs every round and presumes a message lost after SWEEP_GRACE instead
of two minutes, and a backup ARM lost track of is watched by its share for LOST_GRACE_SECONDS.
Emulated backups take OPERATION_SECONDS: longer than the engine needs to ask ARM again after a lost
answer (it looks for the share, then asks again in the same step: a list and a POST, a few tenths of
a second even with a Storage retry capped at SLEEP_CAP), so ARM answers 409 as it would for a real
backup, which takes minutes (docs/operations.md, "What remains"); and short enough that the queue's
first look, a second after the start (queue delays are whole seconds), usually finds it done, which
keeps the soak inside CI's budget. Faults that lose an operation's status or answer still make jobs
take several steps; following a running operation over many steps is tested in tests/app
(test_operations.py, test_faults.py).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import time
from collections import Counter

import pytest
from azure.functions.timer import TimerRequest

from devhost.emulator_process import EmulatorProcess
from emulator import Emulator
from mccf_backup import operations
from mccf_backup.identity import reset_credentials
from mccf_backup.service import BackupService
from devhost.envvars import scoped_environ
from devhost.invocation import invoke
from devhost.queuepump import QueuePump

from tests.app.invariants import assert_nothing_lost, backup_operations

ROUNDS = int(os.environ.get("SOAK_ROUNDS", "200"))  # fewer only to profile it by hand
TARGETS = 20
FAULT_RATE = float(os.environ.get("SOAK_FAULT_RATE", "0.05"))
SEED = 20261127
OPERATION_SECONDS = 1.0
POLL_MS = 150
SLEEP_CAP = 0.3
LOST_GRACE_SECONDS = 10  # past it, a backup ARM lost track of can only be lost for good
SWEEP_GRACE = dt.timedelta(seconds=4)
KEEP_LAST = 10
PRUNE_EVERY = 10  # rounds; the account then holds a bounded number of shares, as a pruned one does
SETTLE_POLL_SECONDS = 0.25
ROUND_LIMIT_SECONDS = 30  # a round's jobs that have not ended by then are joined by the next round
DRAIN_LIMIT_SECONDS = 120


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
    elif kind == "status-500":
        fault(emu, "arm", status=500, method="GET", path=r"/operationStatuses/", code="InternalServerError")
    elif kind == "storage-503-tag":
        fault(emu, "file", status=503, method="PUT", path=rf"^/mccfbackupemu/{app}-\d{{14}}$")
    elif kind == "storage-503-list":
        fault(emu, "file", status=503, method="GET", path=r"^/mccfbackupemu/?$")
    elif kind != "run-dies":  # run-dies is the caller's: see dying_start
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
    "status-500",
    "storage-503-tag",
    "storage-503-list",
    "run-dies",
]


def dying_start(target: str, outcomes: Counter) -> None:
    """An instance starts this target's backup, then dies before its next step is queued: its
    messages go to a queue no function reads, so only the sweeper can move the job on."""
    with scoped_environ({"OPERATIONS_QUEUE_NAME": "soak-nobody-reads-this"}):
        try:
            BackupService.from_environment().start_backup(target, "timer")
        except Exception:  # noqa: BLE001 - a start that itself failed is recorded
            outcomes["died-start-failed"] += 1


def settle(service: BackupService, sweep, limit: float) -> int:
    """Wait (sweeping as the timer would) until no job runs, or ``limit`` seconds; returns how many still do."""
    deadline = time.monotonic() + limit
    swept = time.monotonic()
    while True:
        running = service.jobs.running()
        if not running or time.monotonic() > deadline:
            return len(running)
        if time.monotonic() - swept >= 1:
            sweep(TimerRequest())
            swept = time.monotonic()
        # Azurite answers a filtered query by scanning the whole table, which grows by thousands of jobs
        # over the soak: looking less often keeps the table service free for the jobs themselves.
        time.sleep(SETTLE_POLL_SECONDS)


def test_soak_200_rounds_over_20_targets_with_5_percent_faults(soak_emulator, azurite, capsys, monkeypatch):
    emu, targets = soak_emulator
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda seconds: real_sleep(min(seconds, SLEEP_CAP)))
    monkeypatch.setattr(operations, "SWEEP_GRACE", SWEEP_GRACE)
    rng = random.Random(SEED)
    env = {
        **emu.env,
        "MCCF_TARGETS": ",".join(targets),
        "BACKUP_SCHEDULE": "0 0 2 * * *",
        "AzureWebJobsStorage": azurite.connection_string,
        "JOBS_TABLE_NAME": "soakjobs",
        "BACKUP_QUEUE_NAME": "soak-targets",
        "OPERATIONS_QUEUE_NAME": "soak-operations",
        "BACKUP_CONCURRENCY": str(TARGETS),
        "LOST_OPERATION_GRACE_SECONDS": str(LOST_GRACE_SECONDS),
        # retention prunes while backups run: keep each target's newest KEEP_LAST, whatever their age
        "RETENTION_KEEP_LAST": str(KEEP_LAST),
        "RETENTION_DAILY": "0",
        "RETENTION_WEEKLY": "0",
        "RETENTION_MONTHLY": "0",
        "RETENTION_MIN_AGE_HOURS": "0",
        "RETENTION_MAX_DELETE_FRACTION": "1",
    }
    injected: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    spent: Counter[str] = Counter()  # seconds per phase of the rounds: where a slow soak spends them
    waits: list[tuple[float, list[str]]] = []  # each round's wait for its jobs, and the faults it had
    started = time.monotonic()
    with scoped_environ(env):
        reset_credentials()
        from function_app import app
        from devhost.devserver import functions_of

        functions = {f.get_function_name(): f for f in functions_of(app)}

        def timer(request):
            return invoke(functions["scheduled_backup"], timer=request)

        def sweep(request):
            return invoke(functions["sweep_operations"], timer=request)

        service = BackupService.from_environment()
        try:
            with QueuePump(app, visibility_timeout=5, concurrency=TARGETS + 12, idle_seconds=0.05) as pump:
                for number in range(ROUNDS):
                    round_faults = []
                    for target in targets:
                        if rng.random() < FAULT_RATE:
                            kind = rng.choice(KINDS)
                            injected[kind] += 1
                            round_faults.append(kind)
                            if kind == "run-dies":
                                dying_start(target, outcomes)
                            else:
                                inject(emu, kind, target)
                    phase = time.monotonic()
                    try:
                        timer(TimerRequest())
                    except Exception as exc:  # noqa: BLE001 - a refused start fails the invocation, as in Azure
                        outcomes["timer-failed"] += 1
                        assert type(exc).__name__ == "ScheduledBackupFailed", exc
                    spent["timer"] += time.monotonic() - phase
                    phase = time.monotonic()
                    outcomes["still-running-after-round"] += settle(service, sweep, ROUND_LIMIT_SECONDS)
                    spent["settle"] += time.monotonic() - phase
                    waits.append((round(time.monotonic() - phase, 1), sorted(set(round_faults))))
                    emu.control("DELETE", "/faults")
                    if number % PRUNE_EVERY == PRUNE_EVERY - 1:
                        phase = time.monotonic()
                        pruned = BackupService.from_environment().prune(apply=True, trigger="timer")
                        outcomes["pruned"] += sum(job.status == "succeeded" for p in pruned for job in p.jobs)
                        spent["prune"] += time.monotonic() - phase
                assert settle(service, sweep, DRAIN_LIMIT_SECONDS) == 0, "jobs still running after the drain"
                steps = pump.stats.durations.get("advance_operation", [])
            jobs = assert_nothing_lost(service, emu, targets)
        finally:
            reset_credentials()
    seconds = time.monotonic() - started
    backups = [j for js in jobs.values() for j in js]
    outcomes.update(f"job:{j.state}:{j.error_code or ''}".rstrip(":") for j in backups)
    shares = sum(1 for j in backups if j.status == "succeeded")  # made, whether pruned since or not
    adopted = sum(1 for j in backups if j.trigger == "reconcile")
    operations_run = sum(len(backup_operations(emu, t)) for t in targets)
    with capsys.disabled():
        print(
            f"\nsoak: {ROUNDS} rounds x {TARGETS} targets in {seconds:.0f} s; faults injected "
            f"{sum(injected.values())} {dict(sorted(injected.items()))}; outcomes {dict(sorted(outcomes.items()))}; "
            f"ARM ran {operations_run} backups; {shares} backup shares, each tagged and claimed by one succeeded job "
            f"({adopted} adopted); {len(steps)} queue steps, the longest {max(steps, default=0):.2f} s; no job running; "
            f"seconds in timer {spent['timer']:.0f}, waiting for jobs {spent['settle']:.0f}, pruning {spent['prune']:.0f}; "
            f"slowest rounds {sorted(waits, reverse=True)[:5]}"
        )
    assert sum(injected.values()) > 0.8 * FAULT_RATE * ROUNDS * TARGETS  # the faults really happened
    assert shares > 0.9 * ROUNDS * TARGETS  # faults cost some rounds, never most
