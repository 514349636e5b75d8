"""The engine's front door for the Functions app and the CLI: one object per run, one verb per method.

It only wires the modules together and applies Idempotency-Keys; what each verb does lives in its own
module. Every start returns once ARM accepted the request; ``poll`` and ``follow`` look at a job and
move it on when its next step is due.
"""

from __future__ import annotations

import time
from typing import Callable

from azure.core.credentials import TokenCredential

from . import clock
from .arm import ManagedCcfClient
from .backup import Backups
from .catalog import Backup
from .inspection import INLINE_MAX_BYTES, describe_backup, inspect_backup
from .jobs import Job, JobTable
from .coverage import TxId, containing
from .operations import Operations, SweepResult
from .pins import Pins
from .preflight import Report, run_preflight
from .restore import Restores
from .restore_checks import RestoreCheck, RestoreRequest, check_restore
from .run import Run, ThreadSetup
from .scheduled import RunSummary, Scheduler
from .settings import Settings
from .targets import Target
from .upkeep import Upkeep

Progress = Callable[[Job], None]
FOLLOW_POLL_CAP_SECONDS = 10.0


class BackupService:
    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential | None = None,
        *,
        interactive: bool = False,
        arm: ManagedCcfClient | None = None,
        table: JobTable | None = None,
    ) -> None:
        self.run = Run(settings, credential, interactive=interactive, arm=arm, table=table)
        self.operations = Operations(self.run)
        self.backups = Backups(self.run, self.operations)
        self.restores = Restores(self.run, self.operations)
        self.upkeep = Upkeep(self.run, self.operations)
        self.pins = Pins(self.run, self.operations)  # golden copies: service.pins.pin / unpin
        self.scheduler = Scheduler(self.run, self.operations, self.backups)
        self.operations.register("backup", self.backups)
        self.operations.register("restore", self.restores)
        self.settings, self.targets, self.jobs, self.arm = settings, self.run.targets, self.run.jobs, self.run.arm

    @classmethod
    def from_environment(cls, *, interactive: bool = False) -> "BackupService":
        return cls(Settings.from_env(), interactive=interactive)

    # --- starting operations ---
    def start_backup(
        self, reference: str, trigger: str, caller: str | None = None, *, idempotency_key: str | None = None
    ) -> Job:
        """Start a backup (or return the one running for the target); with a key, at most once per key."""
        target = self.targets.resolve(reference)
        start = lambda job_id: self.backups.start(target, trigger, caller, job_id)[0]  # noqa: E731
        return self.run.keys.start_once("backups", idempotency_key, {"target": target.resource_id.lower()}, start)

    def start_restore(self, request: RestoreRequest, *, idempotency_key: str | None = None) -> Job:
        """Start a restore after every check; refused while any operation runs on the target."""
        target = self.targets.resolve(request.target)
        start = lambda job_id: self.restores.start(request, job_id)  # noqa: E731
        return self.run.keys.start_once("restores", idempotency_key, request.fingerprint(target.resource_id), start)

    def check_restore(self, request: RestoreRequest) -> RestoreCheck:
        return check_restore(self.run, request)

    def run_scheduled(self, trigger: str = "timer", setup: ThreadSetup | None = None) -> RunSummary:
        return self.scheduler.run_scheduled(trigger, setup)

    def enqueue_scheduled(self) -> dict[str, str | None]:
        return self.scheduler.enqueue_scheduled()

    def start_from_queue(self, body: str, dequeue_count: int, max_dequeue_count: int) -> Job:
        return self.scheduler.start_from_queue(body, dequeue_count, max_dequeue_count)

    # --- following operations ---
    def advance_from_queue(self, body: str) -> Job | None:
        return self.operations.advance_from_queue(body)

    def poll(self, job_id: str, visible: Callable[[Job], bool] | None = None) -> Job:
        return self.operations.poll(job_id, visible)

    def follow(self, job: Job, progress: Progress | None = None, sleep: Callable[[float], None] = time.sleep) -> Job:
        """Poll a job until it ends (CLI --wait): the process that waits is the operator's, not an invocation."""
        while True:
            job = self.operations.poll(job.id)
            if job.done:
                return job
            if progress:
                progress(job)
            due = (job.next_check - clock.utcnow()).total_seconds() if job.next_check else 1.0
            sleep(min(FOLLOW_POLL_CAP_SECONDS, max(0.2, due)))

    def backup(self, reference: str, trigger: str, progress: Progress | None = None, caller: str | None = None) -> Job:
        """Start a backup and follow it to its end (CLI --wait, tests): the waiting is the caller's."""
        return self.follow(self.start_backup(reference, trigger, caller), progress)

    def sweep(self, setup: ThreadSetup | None = None) -> SweepResult:
        return self.operations.sweep(setup)

    def preflight(self, setup: ThreadSetup | None = None) -> Report:
        return run_preflight(self.run, setup)

    def list_backups(self, reference: str, contains_txid: str | None = None) -> tuple[Target, list[Backup]]:
        """The target's backups, newest first; with ``contains_txid``, only the verified ones holding it."""
        target = self.targets.resolve(reference)
        txid = TxId.parse(contains_txid) if contains_txid is not None else None
        backups = self.run.catalog().backups(target)
        return target, containing(backups, txid) if txid else backups

    def list_jobs(self, reference: str | None = None, limit: int = 50) -> list[Job]:
        target = self.targets.resolve(reference).resource_id if reference else None
        return self.jobs.list(target=target, limit=limit)

    def prune(self, reference: str | None = None, apply: bool = False, override: bool = False, trigger: str = "cli"):
        return self.upkeep.prune(reference, apply, override, trigger)

    def request_verify(self, reference: str, share: str, trigger: str, caller: str | None = None) -> Job:
        return self.upkeep.request_verify(reference, share, trigger, caller)

    def verify(self, reference: str, share: str | None = None, trigger: str = "cli", progress=None, job=None):
        return self.upkeep.verify(reference, share, trigger, progress, job)

    def run_verifications(self, trigger: str = "timer") -> list[Job]:
        return self.upkeep.run_verifications(trigger)

    def health(self) -> list[dict]:
        return self.upkeep.health() + self.pins.survey(self.settings.pin_warning_days)

    def status(self) -> list[dict]:
        return self.upkeep.status()

    def inspect(self, reference: str, share: str, read_ledger: bool = True, progress=None, inline=False) -> dict:
        """What a backup holds; ``read_ledger`` reads it through (``inline``: only as much as a request may)."""
        if not read_ledger:
            return describe_backup(self.run, reference, share)
        return inspect_backup(self.run, reference, share, progress, INLINE_MAX_BYTES if inline else None)
