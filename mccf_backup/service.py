"""Orchestration shared by the Functions app and the CLI: backup, restore, catalog, jobs, status.

A BackupService lives for one run (a timer invocation, an HTTP request, a CLI command): it reads
the storage secret from Key Vault at most once, and shares the process-wide credential, so a
scheduled run over any number of targets makes one Key Vault read and one token request per
audience.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from azure.core.credentials import TokenCredential
import requests
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.fileshare import ExponentialRetry

from . import catalog as cat
from . import clock
from . import events
from . import fanout_queue
from .arm import POLLING_LOST, ManagedCcfClient, OperationStatus, StartedOperation
from .catalog import Backup, Catalog
from .errors import AzureRequestFailed, BackupFailed, BackupTooOld, InstanceExists, MccfBackupError, NoRestorableBackup
from .errors import ReplaceNeedsNewestBackup, ReplaceNotAllowed, ReplaceNotConfirmed, VerificationFailed
from .errors import OperationAbandoned, OperationInProgress, OperationOutcomeUnknown
from .errors import RestoreFailed, RestoreRegionRequired, TargetNotFound
from .identity import get_credential
from .jobs import Job, JobStore, new_job_id
from .redaction import redact
from .retention import Candidate, RetentionPlan, plan_retention
from .settings import Settings
from .storage_config import BACKUP, RESTORE, StorageConfig, load_storage_config
from .targets import Target, TargetSet
from .verification import Previous, VerificationReport, verify_share

log = logging.getLogger("mccf_backup")
# Share timestamps come from the Managed CCF service's clock; allow for skew when matching a new share.
SHARE_CLOCK_SKEW = dt.timedelta(minutes=2)
Progress = Callable[[str], None]


@dataclass
class TargetResult:
    target: str
    job: Job | None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.job is not None and self.job.status == "succeeded"


@dataclass
class RunSummary:
    results: list[TargetResult] = field(default_factory=list)

    @property
    def failed(self) -> list[TargetResult]:
        return [r for r in self.results if not r.ok]

    def text(self) -> str:
        lines = [f"Scheduled backup: {len(self.results) - len(self.failed)} of {len(self.results)} targets succeeded."]
        for result in self.results:
            if result.ok:
                lines.append(f"  ok     {result.target} -> {result.job.share}")
            else:
                lines.append(f"  FAILED {result.target}: {result.error_code}: {result.error_message}")
        return "\n".join(lines)


@dataclass
class TargetPrune:
    target: str
    plan: RetentionPlan
    jobs: list[Job] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "capped": self.plan.capped,
            "decisions": [
                {"share": d.share, "action": d.action, "reasons": list(d.reasons)} for d in self.plan.decisions
            ],
            "deleted": [j.to_dict() for j in self.jobs],
        }


@dataclass
class RestoreCheck:
    target: Target
    checks: list[dict] = field(default_factory=list)
    errors: list[MccfBackupError] = field(default_factory=list)
    backup: Backup | None = None
    region: str | None = None
    replacing: bool = False  # a replace-restore that will delete the live instance first

    def add(self, name: str, ok: bool, detail: str, error: MccfBackupError | None = None) -> None:
        if not ok and error is not None:
            self.errors.append(error)
            detail = detail or error.message
        self.checks.append(
            {"check": name, "ok": ok, "detail": detail, "code": error.code if error and not ok else None}
        )

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_first(self) -> None:
        if self.errors:
            raise self.errors[0]

    def to_dict(self) -> dict:
        return {
            "dryRun": True,
            "ok": self.ok,
            "target": str(self.target),
            "share": self.backup.share if self.backup else None,
            "restoreRegion": self.region,
            "replacesLiveInstance": self.replacing,
            "backup": self.backup.to_dict() if self.backup else None,
            "checks": self.checks,
        }


@dataclass(frozen=True)
class RestorePlan:
    target: Target
    backup: Backup
    region: str
    replacing: bool = False


@dataclass
class RunSnapshot:
    """What a scheduled run reads once for all its targets instead of once per target: the running
    backup jobs, and the backup shares no job has claimed, as they were when the run started (the
    input of reconciliation)."""

    running_jobs: dict[str, list[Job]]  # lower-cased target -> jobs
    unclaimed: dict[str, list]  # app name -> listed shares (with metadata) that no job has tagged

    @classmethod
    def take(cls, jobs: JobStore, catalog: Catalog) -> "RunSnapshot":
        running: dict[str, list[Job]] = {}
        for job in jobs.running(None, "backup"):
            running.setdefault(job.target.lower(), []).append(job)
        unclaimed: dict[str, list] = {}
        for item in catalog.list_all():
            parsed = cat.parse_backup_name(item.name)
            if parsed is not None and not (item.metadata or {}).get(cat.META_JOB):
                unclaimed.setdefault(parsed[0], []).append(item)
        return cls(running, unclaimed)

    def running(self, target: Target) -> list[Job]:
        return self.running_jobs.get(target.resource_id.lower(), [])

    def backups(self, target: Target, catalog: Catalog) -> list[Backup]:
        """The target's unclaimed backups (those reconciliation may adopt)."""
        return catalog.backups_in(target, self.unclaimed.get(target.name.lower(), []))


class BackupService:
    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential | None = None,
        *,
        interactive: bool = False,
        arm: ManagedCcfClient | None = None,
        jobs: JobStore | None = None,
    ) -> None:
        self.settings = settings
        self.targets = TargetSet(settings.targets)
        self._credential = credential or get_credential(settings.client_id, interactive=interactive)
        # One connection pool per run, sized for the fan-out: every worker keeps its TLS connections
        # to ARM and Storage instead of a new handshake per request.
        self._http = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(10, 2 * settings.concurrency))
        self._http.mount("https://", adapter)
        self._http.mount("http://", adapter)
        self.arm = arm or ManagedCcfClient(
            settings.arm_endpoint,
            self._credential,
            settings.api_version,
            read_timeout=settings.arm_timeout_seconds,
            session=self._http,
            retry_backoff_factor=0.8,
        )
        self.jobs = jobs or JobStore(settings.jobs, self._credential)
        self._storage: StorageConfig | None = None
        self._catalog: Catalog | None = None
        self._run_snapshot: RunSnapshot | None = None
        self._storage_lock = threading.Lock()
        # (subscription, resource group, type) -> {resource id: location}, listed once per run
        self._locations: dict[tuple[str, str, str], dict[str, str]] = {}

    @classmethod
    def from_environment(cls, *, interactive: bool = False) -> "BackupService":
        return cls(Settings.from_env(), interactive=interactive)

    # --- shared resources, loaded once per run ---
    def storage(self) -> StorageConfig:
        with self._storage_lock:
            if self._storage is None:
                self._storage = load_storage_config(
                    self.settings.key_vault_url, self.settings.storage_secret_name, self._credential
                )
            return self._storage

    def catalog(self) -> Catalog:
        """One catalog (one Storage client and its connections) per run, shared by every worker."""
        storage = self.storage()
        with self._storage_lock:
            if self._catalog is None:
                # Catalog calls are small metadata requests: retry a 503 after about 2, 6 and 10 s rather
                # than the SDK's 15 s first wait, so a storage blip does not stall every target of a run.
                self._catalog = Catalog(
                    storage.service_client(
                        retry_policy=ExponentialRetry(initial_backoff=2, increment_base=2),
                        transport=RequestsTransport(session=self._http, session_owner=False),
                    )
                )
            return self._catalog

    @property
    def operation_lifetime(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.settings.operation_timeout_minutes)

    # --- backup ---
    def start_backup(self, reference: str, trigger: str, caller: str | None = None, job_id: str | None = None):
        """Start the ARM backup and record the job; returns (job, started operation, initial response)."""
        target = self.targets.resolve(reference)
        job = Job(job_id or new_job_id(), "backup", target.resource_id, trigger, caller=caller)

        def start():
            job.restore_region = self._location(target)
            sas_url = self.storage().sas_url(BACKUP, self.operation_lifetime)
            job.arm_status = "Starting"
            self.jobs.save(job)  # a trace before ARM is asked: if this run dies now, reconcile() finds it
            try:
                return self.arm.start_backup(target, sas_url, self.settings.restore_region, job.id)
            except OperationOutcomeUnknown as err:
                return self._after_ambiguous_backup(job, target, sas_url, err)

        started, initial = self._launch(job, start)
        log.info("backup %s started for %s (trigger %s)", job.id, target.resource_id, trigger)
        return job, started, initial

    def _location(self, target: Target) -> str:
        """The instance's region, from this run's list of its resource group if there is one, else one GET."""
        key = (target.subscription.lower(), target.resource_group.lower(), target.resource_type)
        listed = self._locations.get(key)
        if listed is not None:
            location = listed.get(target.resource_id.lower())
        else:
            instance = self.arm.get(target)
            location = instance.get("location") if instance is not None else None
        if location is None:
            raise TargetNotFound(
                f"The {target.resource_type} '{target.name}' does not exist in resource group "
                f"'{target.resource_group}'. Check MCCF_TARGETS.",
                target=str(target),
            )
        return location

    def _prefetch_locations(self) -> None:
        """One list per resource group for a scheduled run (a failed list falls back to a GET per target)."""
        groups = sorted({(t.subscription, t.resource_group, t.resource_type) for t in self.targets})

        def list_group(group: tuple[str, str, str]) -> None:
            subscription, resource_group, resource_type = group
            try:
                listed = self.arm.locations(subscription, resource_group, resource_type)
            except MccfBackupError as err:
                log.warning(
                    "could not list %s in %s (%s); reading targets one by one", resource_type, resource_group, err.code
                )
                return
            self._locations[(subscription.lower(), resource_group.lower(), resource_type)] = listed

        workers = max(1, min(self.settings.concurrency, len(groups)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mccf-backup-list") as pool:
            list(pool.map(list_group, groups))

    def _after_ambiguous_backup(
        self, job: Job, target: Target, sas_url: str, err: MccfBackupError
    ) -> tuple[StartedOperation, PipelineResponse | None]:
        """ARM may or may not have started the backup: look before asking again, so none is made twice.

        A share already there means it ran (and finished). Otherwise ask once more: ARM answers 409
        while a backup of the instance runs, which is then the one the lost answer was about, and
        the job follows it by its share; a fresh 202 means the first request never started one.
        """
        log.warning("backup %s of %s: %s Checking before asking again.", job.id, target.resource_id, err.message)
        # Look once, then ask again at once: a backup ARM started a moment ago is still running (ARM
        # answers 409) unless it finished within that moment. Waiting longer would only widen the
        # window in which a started backup could end unseen and a second one start.
        if self.catalog().find_new(target, job.started - SHARE_CLOCK_SKEW, job.id) is not None:
            return StartedOperation(None, None, job.retry_after, completed=True), None
        try:
            return self.arm.start_backup(target, sas_url, self.settings.restore_region, job.id)
        except OperationInProgress as busy:
            log.info("backup %s: ARM is running a backup of %s; following it by its share", job.id, target.name)
            job.retry_after = getattr(busy, "retry_after", None) or job.retry_after
            return StartedOperation(None, None, job.retry_after, completed=False), None

    def backup(self, reference: str, trigger: str, progress: Progress | None = None, caller: str | None = None) -> Job:
        """Back up one target and wait for the end (timer and CLI)."""
        job, started, initial = self.start_backup(reference, trigger, caller)
        return self._follow(job, started, initial, progress)

    def _follow(
        self, job: Job, started: StartedOperation, initial: PipelineResponse | None, progress: Progress | None = None
    ) -> Job:
        target = self.targets.resolve(job.target)
        timeout = self.operation_lifetime.total_seconds()
        if initial is not None and not started.completed:
            job = self._finish(job, self.arm.wait(started, initial, target, timeout, progress))
            if job.done:
                return job
        elif started.completed:
            return self._finish(job, OperationStatus("Succeeded"))
        # An operation known only by the share it will write (see _after_ambiguous_backup): watched for
        # LOST_OPERATION_GRACE_SECONDS at most, never the whole operation lifetime, so one lost operation
        # cannot hold a scheduled run for an hour. A share that appears later is adopted by the next run.
        grace = min(timeout, self.settings.lost_operation_grace_seconds)
        deadline = time.monotonic() + grace
        while True:
            job = self.refresh(job.id)
            if job.done:
                return job
            if time.monotonic() >= deadline:
                job.fail(
                    OperationAbandoned.code,
                    f"ARM lost track of this backup and no backup share appeared within {grace:.0f} seconds "
                    "(LOST_OPERATION_GRACE_SECONDS). If one appears later, the next run adopts it.",
                )
                self.jobs.save(job)
                self._outcome_event(job)
                return job
            time.sleep(max(0.05, job.retry_after))

    def _backup_or_follow(self, target: Target, trigger: str, progress: Progress | None = None) -> Job:
        """Reconcile the target, then follow a backup an earlier run left running (never start a second
        while ARM runs one), or start a new one."""
        running = [job for job in self.reconcile(target) if job.arm_status != "Starting"]
        if running:
            return self._follow(running[-1], StartedOperation(None, None, 10, False), None, progress)
        return self.backup(target.resource_id, trigger, progress)

    # --- scale-out through a queue (BACKUP_FANOUT=queue) ---
    def enqueue_scheduled(self) -> dict[str, str | None]:
        """One queue message per target; returns target -> None (enqueued) or why not (also a failed job)."""
        run = new_job_id()
        client = fanout_queue.queue_client(self.settings.jobs, self.settings.queue_name, self._credential)
        outcome = fanout_queue.enqueue(client, [fanout_queue.TargetMessage(t.resource_id, run) for t in self.targets])
        for target, reason in outcome.items():
            if reason is not None:
                job = Job(new_job_id(), "backup", target, "timer")
                job.fail(AzureRequestFailed.code, reason)
                self._save_quietly(job)
                self._outcome_event(job)
        return outcome

    def backup_from_queue(self, body: str, dequeue_count: int, max_dequeue_count: int) -> Job:
        """Back up the target of one queue message. Raises (so the host retries, then moves the message
        to the poison queue) when it fails; the last attempt's job says the message goes to poison."""
        last = dequeue_count >= max_dequeue_count
        poison = (
            f"attempt {dequeue_count} of {max_dequeue_count}; the message goes to '{self.settings.queue_name}-poison'"
        )
        try:
            message = fanout_queue.TargetMessage.parse(body)
            target = self.targets.resolve(message.target)
            job = self._backup_or_follow(target, message.trigger)
        except MccfBackupError as err:
            if last:
                job = getattr(err, "job", None) or Job(new_job_id(), "backup", err.target or body[:200], "queue")
                job.fail(err.code, f"{err.message} ({poison})")
                self._save_quietly(job)
            raise
        if job.status == "failed" and last:
            job.error_message = f"{job.error_message} ({poison})"
            self.jobs.save(job)
        return job

    def reconcile(self, target: Target) -> list[Job]:
        """Finish what earlier runs left behind for a target, so nothing stays running or untagged.

        Running backup jobs are looked at once (an ended operation is finished; a job whose run died
        before ARM answered is matched to its share, or failed once it cannot still be running), and
        a backup share that no job claims is adopted: tagged, with a job recording where it came from.
        Returns the jobs still running.
        """
        snapshot = self._run_snapshot  # a scheduled run lists jobs and shares once for all its targets
        running = snapshot.running(target) if snapshot else self.jobs.running(target.resource_id, "backup")
        still_running = []
        for job in running:
            job = self.refresh(job.id)
            if not job.done:
                still_running.append(job)
        if still_running:
            return still_running  # their shares may be the untagged ones; adopt only when nothing runs
        catalog = self.catalog()
        # A job finished above has tagged its share since the snapshot: list afresh then.
        backups = snapshot.backups(target, catalog) if snapshot and not running else catalog.backups(target)
        for backup in backups:
            if backup.metadata.get(cat.META_JOB):
                continue
            job = Job(new_job_id(backup.created), "backup", target.resource_id, "reconcile", started=backup.created)
            job.share = backup.share
            job.succeed()
            catalog.tag(
                backup.share,
                {
                    cat.META_TARGET: target.resource_id,
                    cat.META_JOB: job.id,
                    cat.META_TRIGGER: "reconcile",
                    cat.META_STARTED: backup.created.isoformat(),
                    cat.META_ENDED: job.ended.isoformat(),
                    cat.META_OUTCOME: "succeeded",
                },
                current=backup.metadata,
            )
            self._protect_quietly(catalog, job, backup.share)
            self.jobs.save(job)
            log.warning(
                "adopted backup share %s of %s, which no job had claimed (a run ended before tagging it); "
                "verification will check its ledger files",
                backup.share,
                target.name,
            )
        return []

    def run_scheduled(self, trigger: str = "timer", progress: Progress | None = None) -> RunSummary:
        """Back up every target, several at once; one target's failure never stops the others."""
        summary = RunSummary()
        try:
            self.storage()  # one Key Vault read for the whole run, before the fan-out
        except MccfBackupError as err:
            for target in self.targets:
                job = Job(new_job_id(), "backup", target.resource_id, trigger)
                job.fail(err.code, err.message)
                self._save_quietly(job)
                summary.results.append(TargetResult(target.resource_id, job, err.code, err.message))
            return summary

        self._prefetch_locations()
        try:
            self._run_snapshot = RunSnapshot.take(self.jobs, self.catalog())
        except MccfBackupError as err:  # reconcile then reads per target
            log.warning("could not list jobs and shares for the run (%s); reading them per target", err.code)

        def one(target: Target) -> TargetResult:
            try:
                job = self._backup_or_follow(target, trigger, progress)
            except MccfBackupError as err:
                return TargetResult(target.resource_id, None, err.code, err.message)
            except Exception as exc:  # noqa: BLE001 - one target's bug must not stop the others
                log.exception("backup of %s failed unexpectedly", target.resource_id)
                return TargetResult(target.resource_id, None, "internal_error", redact(str(exc)))
            return TargetResult(target.resource_id, job, job.error_code, job.error_message)

        workers = max(1, min(self.settings.concurrency, len(self.targets)))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mccf-backup") as pool:
                summary.results.extend(pool.map(one, list(self.targets)))
        finally:
            self._run_snapshot = None  # it described this run's start only
        return summary

    # --- restore ---
    def check_restore(
        self,
        reference: str,
        share: str | None = None,
        region: str | None = None,
        replace: bool = False,
        confirm: str | None = None,
    ) -> RestoreCheck:
        """Every precondition of a restore, each with its verdict: the dry run, and the gate of a real one."""
        target = self.targets.resolve(reference)  # an unknown target is refused outright
        catalog = self.catalog()
        now = clock.utcnow()
        check = RestoreCheck(target)
        backup: Backup | None = None
        good = [b for b in catalog.backups(target) if b.good]  # listed once for every check below
        try:
            if share:
                backup = catalog.get(target, share)
                check.add("backup_exists", True, f"share '{share}' is a backup of {target.name}")
            else:
                restorable = [b for b in good if b.restorable(now)]
                if not restorable:
                    raise NoRestorableBackup(
                        f"'{target.name}' has no restorable backup (none, or all older than 90 days"
                        f"{'; newest: ' + good[0].share if good else ''}).",
                        target=str(target),
                    )
                backup = restorable[0]
                check.add("backup_exists", True, f"newest restorable backup: {backup.share}")
        except MccfBackupError as err:
            check.add("backup_exists", False, err.message, err)
        if backup is not None:
            check.backup = backup
            if backup.restorable(now):
                check.add(
                    "backup_age",
                    True,
                    f"{backup.age(now).days} days old; {backup.days_left(now)} days left "
                    "before the 90-day restore limit",
                )
            else:
                newest = next((b.share for b in good if b.restorable(now)), None)
                check.add(
                    "backup_age",
                    False,
                    "",
                    BackupTooOld(
                        f"Backup '{backup.share}' is {backup.age(now).days} days old; Managed CCF restores only backups "
                        f"younger than 90 days. "
                        f"{'Newest restorable backup: ' + newest if newest else 'No backup is restorable.'}",
                        target=str(target),
                        field="share",
                    ),
                )
            verified = backup.metadata.get(cat.META_VERIFIED)
            check.add(
                "backup_verified",
                verified != "false",
                {"true": "the backup's ledger files were verified", "false": "verification FAILED"}.get(
                    verified or "", "not verified (verification has not run on it)"
                ),
                None
                if verified != "false"
                else VerificationFailed(
                    f"Backup '{backup.share}' failed verification; choose another.", target=str(target), field="share"
                ),
            )
        instance = self.arm.get(target)
        if replace:
            self._check_replace(check, good, instance, confirm)
        elif instance is None:
            check.add("instance_absent", True, f"'{target.name}' does not exist, as a restore requires")
        else:
            state = (instance.get("properties") or {}).get("provisioningState", "unknown")
            check.add(
                "instance_absent",
                False,
                "",
                InstanceExists(
                    f"'{target.name}' still exists (provisioningState {state}). A restore recreates the instance under "
                    f"the same name, so it must be deleted first (az resource delete --ids {target.resource_id}), "
                    "then retry the restore.",
                    target=str(target),
                ),
            )
        chosen = region or self.settings.restore_region or (backup.metadata.get(cat.META_LOCATION) if backup else None)
        if chosen:
            check.region = chosen
            check.add("restore_region", True, f"restore into {chosen}")
        else:
            check.add(
                "restore_region",
                False,
                "",
                RestoreRegionRequired(
                    f"No restore region for '{target.name}': pass restoreRegion, or set RESTORE_REGION.",
                    target=str(target),
                    field="restoreRegion",
                ),
            )
        return check

    def _check_replace(
        self, check: RestoreCheck, good: list[Backup], instance: dict | None, confirm: str | None
    ) -> None:
        """Replacing a live instance: allowed by a setting, confirmed by name, newest good backup only."""
        target = check.target
        check.add(
            "replace_allowed",
            self.settings.allow_replace_restore,
            "ALLOW_REPLACE_RESTORE is true",
            ReplaceNotAllowed(
                "Replacing a live instance is switched off. Set ALLOW_REPLACE_RESTORE=true to allow it, or "
                "delete the instance yourself first.",
                target=str(target),
            ),
        )
        check.add(
            "replace_confirmed",
            confirm == target.name,
            f"confirmed by name '{target.name}'",
            ReplaceNotConfirmed(
                f"To replace '{target.name}', repeat its exact name in 'confirm'.", target=str(target), field="confirm"
            ),
        )
        newest = good[0] if good else None
        if check.backup is not None:
            is_newest = newest is not None and newest.share == check.backup.share
            check.add(
                "newest_backup",
                is_newest,
                f"{check.backup.share} is the newest good backup",
                ReplaceNeedsNewestBackup(
                    f"A replace must restore the newest good backup ({newest.share if newest else 'none'}), "
                    f"not {check.backup.share}.",
                    target=str(target),
                    field="share",
                ),
            )
        check.replacing = instance is not None
        check.add(
            "instance_absent",
            True,
            f"'{target.name}' exists and will be deleted first"
            if instance
            else f"'{target.name}' does not exist; nothing to delete",
        )

    def plan_restore(
        self,
        reference: str,
        share: str | None = None,
        region: str | None = None,
        replace: bool = False,
        confirm: str | None = None,
    ) -> RestorePlan:
        """Every precondition, checked before any ARM write; raises the first that fails."""
        check = self.check_restore(reference, share, region, replace, confirm)
        check.raise_first()
        return RestorePlan(check.target, check.backup, check.region, check.replacing)

    def start_restore(
        self,
        reference: str,
        share: str | None,
        region: str | None,
        trigger: str,
        caller: str | None = None,
        replace: bool = False,
        confirm: str | None = None,
        job_id: str | None = None,
    ):
        plan = self.plan_restore(reference, share, region, replace, confirm)
        job = Job(
            job_id or new_job_id(),
            "restore",
            plan.target.resource_id,
            trigger,
            caller=caller,
            share=plan.backup.share,
            restore_region=plan.region,
        )
        if plan.replacing:
            delete = Job(
                new_job_id(),
                "delete_instance",
                plan.target.resource_id,
                trigger,
                caller=caller,
                share=plan.backup.share,
                related_job=job.id,
                reason=f"replace-restore: delete the live instance, then restore {plan.backup.share}",
            )
            job.phase, job.related_job = "deleting", delete.id
            started, initial = self._launch(delete, lambda: self.arm.start_delete(plan.target))
            self.jobs.save(job)
            log.info("replace-restore %s: deleting %s first (job %s)", job.id, plan.target.resource_id, delete.id)
            return job, started, initial
        started, initial = self._launch(job, lambda: self._start_arm_restore(job))
        log.info("restore %s started for %s from %s", job.id, plan.target.resource_id, plan.backup.share)
        return job, started, initial

    def _start_arm_restore(self, job: Job):
        target = self.targets.resolve(job.target)
        sas_url = self.storage().sas_url(RESTORE, self.operation_lifetime)
        return self.arm.start_restore(target, sas_url, job.share, job.restore_region)

    def _after_delete(self, job: Job, delete: Job, status: OperationStatus):
        """The live instance's delete ended: record it, then start the restore (once, whoever polls)."""
        if not delete.done:
            self._finish(delete, status)
        if delete.status != "succeeded":
            job.fail(
                RestoreFailed.code, f"Deleting the live instance before the restore failed: {delete.error_message}"
            )
            self.jobs.save(job)
            self._outcome_event(job)
            return None
        job.phase = "restoring"
        if not self.jobs.claim(job):
            return None  # another poll is starting the restore
        return self._launch(job, lambda: self._start_arm_restore(job))

    def restore(
        self,
        reference: str,
        share: str | None,
        region: str | None,
        trigger: str,
        progress: Progress | None = None,
        caller: str | None = None,
        replace: bool = False,
        confirm: str | None = None,
    ) -> Job:
        job, started, initial = self.start_restore(reference, share, region, trigger, caller, replace, confirm)
        target = self.targets.resolve(job.target)
        timeout = self.operation_lifetime.total_seconds()
        if job.phase == "deleting":
            delete = self.jobs.get(job.related_job)
            status = self.arm.wait(started, initial, target, timeout, progress)
            job = self.jobs.get(job.id)
            launched = self._after_delete(job, delete, status)
            if launched is None:
                return self.jobs.get(job.id)
            started, initial = launched
        status = self.arm.wait(started, initial, target, timeout, progress)
        return self._finish(job, status)

    # --- single flight ---
    def running_job(self, target: Target, kinds: tuple[str, ...]) -> Job | None:
        """A job of these kinds still running for the target, after looking at each once (which may end it)."""
        for job in self.jobs.list(target=target.resource_id, limit=20):
            if job.kind in kinds and not job.done and not self.refresh(job.id).done:
                return self.jobs.get(job.id)
        return None

    # --- following an operation started over HTTP ---
    def refresh(self, job_id: str) -> Job:
        """Look at a job once; on the poll that sees the ARM operation end, finish it (idempotent)."""
        job = self.jobs.get(job_id)
        if job.done or job.kind == "verify":  # verify jobs are run by the verify timer, never by a poll
            return job
        target = self.targets.resolve(job.target)
        if job.phase == "deleting":
            delete = self.jobs.get(job.related_job)
            status = delete_status = self.arm.status(
                StartedOperation(delete.status_url, delete.location_url, delete.retry_after, False), target
            )
            if not delete_status.done:
                job.arm_status, job.retry_after = "Deleting", delete_status.retry_after
                return job
            self._after_delete(job, delete, status)
            return self.jobs.get(job_id)
        if job.kind == "backup" and not (job.status_url or job.location_url):
            return self._refresh_by_share(job, target)
        if not (job.status_url or job.location_url):
            return job  # a replace-restore whose restore another poll is starting right now
        started = StartedOperation(job.status_url, job.location_url, job.retry_after, False)
        status = self.arm.status(started, target)
        if not status.done:
            job.arm_status, job.retry_after = status.status, status.retry_after
            return job
        return self._finish(job, status)

    def _follow_by_share(self, job: Job) -> Job:
        """ARM no longer knows the operation (its status URL answers 404): the share it writes will tell."""
        log.warning("backup %s: ARM no longer knows its operation; following it by its share", job.id)
        job.status_url = job.location_url = None
        job.arm_status = "Unknown"
        self.jobs.save(job)
        return job

    def _refresh_by_share(self, job: Job, target: Target) -> Job:
        """A backup without an operation URL: ARM answered 200 at once, lost its answer, or the run that
        started it died before recording it. Its share tells: there, it ran; absent long past the
        operation lifetime, it never will."""
        if job.arm_status == "Succeeded":
            return self._finish(job, OperationStatus("Succeeded"))
        if self.catalog().find_new(target, job.started - SHARE_CLOCK_SKEW, job.id) is not None:
            return self._finish(job, OperationStatus("Succeeded"))
        if clock.utcnow() - job.started > self.operation_lifetime + SHARE_CLOCK_SKEW:
            job.fail(
                OperationAbandoned.code,
                f"The run that started this backup stopped before ARM confirmed it (last seen: {job.arm_status}), "
                f"and no backup share appeared within {self.settings.operation_timeout_minutes} minutes.",
            )
            self.jobs.save(job)
            self._outcome_event(job)
        return job

    def _launch(self, job: Job, start: Callable[[], tuple[StartedOperation, PipelineResponse]]):
        """Run ``start`` (the ARM call and what it needs) and record the job, whatever the outcome."""
        if job.kind in ("backup", "restore"):
            events.emit(f"{job.kind}.attempt", target=job.target, trigger=job.trigger, job=job.id)
        try:
            started, initial = start()
        except MccfBackupError as err:
            job.fail(err.code, err.message)
            self.jobs.save(job)
            self._outcome_event(job)
            err.job = job  # the recorded failure, for a caller that adds to it (a queue message's last attempt)
            raise
        job.status_url, job.location_url = started.status_url, started.location_url
        job.retry_after = started.retry_after
        job.arm_status = "Succeeded" if started.completed else "InProgress"
        self.jobs.save(job)
        return started, initial

    def _finish(self, job: Job, status: OperationStatus) -> Job:
        target = self.targets.resolve(job.target)
        if job.kind == "backup" and status.error_code in ("OperationNotFound", POLLING_LOST):
            if self.catalog().find_new(target, job.started - SHARE_CLOCK_SKEW, job.id) is None:
                return self._follow_by_share(job)
            status = OperationStatus("Succeeded")  # ARM forgot the operation, but its share is there
        job.arm_status = status.status
        if status.status != "Succeeded":
            error = BackupFailed if job.kind == "backup" else RestoreFailed
            job.fail(
                error.code,
                f"The ARM {job.kind} operation ended {status.status}: "
                f"{status.error_code or 'no code'}: {status.error_message or 'no message'}",
            )
        elif job.kind == "backup":
            self._finish_backup(job, target)
        elif job.kind == "restore":
            self._finish_restore(job, target)
        else:
            job.succeed()
        self.jobs.save(job)
        log.info("%s %s of %s ended %s", job.kind, job.id, job.target, job.status)
        self._outcome_event(job)
        return job

    def _outcome_event(self, job: Job) -> None:
        if job.kind not in ("backup", "restore"):
            return
        if job.status == "succeeded":
            events.emit(
                f"{job.kind}.success",
                target=job.target,
                trigger=job.trigger,
                job=job.id,
                share=job.share,
                durationSeconds=job.duration_seconds,
                lastSuccess=job.ended,
            )
        else:
            events.emit(
                f"{job.kind}.failure",
                logging.WARNING,
                target=job.target,
                trigger=job.trigger,
                job=job.id,
                durationSeconds=job.duration_seconds,
                code=job.error_code,
            )

    def _finish_backup(self, job: Job, target: Target) -> None:
        catalog = self.catalog()
        backup = catalog.find_new(target, job.started - SHARE_CLOCK_SKEW, job.id)
        if backup is None:
            job.fail(
                BackupFailed.code,
                f"ARM reported the backup done, but no new share '{target.share_prefix}"
                "<timestamp>' appeared in the storage account.",
            )
            return
        job.share = backup.share
        job.succeed()
        metadata = {
            cat.META_TARGET: target.resource_id,
            cat.META_JOB: job.id,
            cat.META_TRIGGER: job.trigger,
            cat.META_STARTED: job.started.isoformat(),
            cat.META_ENDED: job.ended.isoformat(),
            cat.META_OUTCOME: "succeeded",
        }
        if job.restore_region:
            metadata[cat.META_LOCATION] = job.restore_region
        catalog.tag(backup.share, metadata, current=backup.metadata)  # as just listed: no second read
        self._protect_quietly(catalog, job, backup.share)

    @staticmethod
    def _protect_quietly(catalog: Catalog, job: Job, share: str) -> None:
        try:
            catalog.protect(share)
        except MccfBackupError as err:  # the backup is good; say it is unprotected rather than fail it
            log.warning("backup %s: could not lease share %s against deletion: %s", job.id, share, err.message)

    def _finish_restore(self, job: Job, target: Target) -> None:
        instance = self.arm.get(target)
        state = ((instance or {}).get("properties") or {}).get("provisioningState")
        if state == "Succeeded":
            job.succeed()
        else:
            job.fail(
                RestoreFailed.code,
                f"ARM reported the restore done, but '{target.name}' is "
                f"{'missing' if instance is None else 'in provisioningState ' + str(state)}.",
            )

    def _save_quietly(self, job: Job) -> None:
        try:
            self.jobs.save(job)
        except MccfBackupError:
            log.warning("could not record failed job %s for %s", job.id, job.target)

    # --- queries ---
    def list_backups(self, reference: str) -> tuple[Target, list[Backup]]:
        target = self.targets.resolve(reference)
        return target, self.catalog().backups(target)

    def list_jobs(self, reference: str | None = None, limit: int = 50) -> list[Job]:
        target = self.targets.resolve(reference).resource_id if reference else None
        return self.jobs.list(target=target, limit=limit)

    # --- retention ---
    def prune(
        self, reference: str | None = None, apply: bool = False, override: bool = False, trigger: str = "cli"
    ) -> list[TargetPrune]:
        """Plan retention per target (a dry run unless ``apply``); deletions are recorded with their reason."""
        targets = [self.targets.resolve(reference)] if reference else list(self.targets)
        catalog = self.catalog()
        now = clock.utcnow()
        results = []
        for target in targets:
            running = self.jobs.running(target.resource_id, "backup")
            oldest_running = min((j.started for j in running), default=None)
            candidates = [
                Candidate(
                    share=backup.share,
                    created=backup.created,
                    succeeded=backup.good,
                    verified=backup.metadata.get(cat.META_VERIFIED) == "true",
                    running=(
                        not backup.outcome
                        and oldest_running is not None
                        and backup.created >= oldest_running - SHARE_CLOCK_SKEW
                    ),
                    belongs=backup.tagged_for(target),
                    hold=(
                        "failed verification: kept as evidence"
                        if backup.metadata.get(cat.META_VERIFIED) == "false"
                        else None
                    ),
                )
                for backup in catalog.backups(target)
            ]
            plan = plan_retention(candidates, self.settings.retention_for(target), now, override)
            result = TargetPrune(target.resource_id, plan)
            if plan.capped:
                events.emit(
                    events.PRUNE_CAPPED,
                    logging.WARNING,
                    target=target.resource_id,
                    wouldDelete=sum("deletion cap" in d.reasons[-1] for d in plan.decisions),
                )
            if apply:
                for decision in plan.deletions:
                    result.jobs.append(
                        self._delete_share(catalog, target, decision.share, "; ".join(decision.reasons), trigger)
                    )
            results.append(result)
        return results

    def _delete_share(self, catalog: Catalog, target: Target, share: str, reason: str, trigger: str) -> Job:
        job = Job(new_job_id(), "delete", target.resource_id, trigger, share=share, reason=reason)
        try:
            catalog.delete(share)
            job.succeed()
            events.emit(events.PRUNE_DELETED, target=target.resource_id, share=share, reason=reason, job=job.id)
        except MccfBackupError as err:
            job.fail(err.code, err.message)
        self.jobs.save(job)
        return job

    # --- verification ---
    def request_verify(self, reference: str, share: str, trigger: str, caller: str | None = None) -> Job:
        """Queue a verification for the verify timer (HTTP: the work never runs inside a request)."""
        target = self.targets.resolve(reference)
        self.catalog().get(target, share)  # exists and belongs to the target, or a clear error now
        job = Job(new_job_id(), "verify", target.resource_id, trigger, caller=caller, share=share, phase="queued")
        return self.jobs.save(job)

    def verify(
        self,
        reference: str,
        share: str | None = None,
        trigger: str = "cli",
        progress: Callable[[int, int], None] | None = None,
        job: Job | None = None,
    ) -> tuple[Job, VerificationReport]:
        """Verify one backup (default: the newest good one), tag the verdict on the share, record the job."""
        target = self.targets.resolve(reference)
        catalog = self.catalog()
        backups = [b for b in catalog.backups(target) if b.good]
        if share:
            backup = catalog.get(target, share)
        elif backups:
            backup = backups[0]
        else:
            raise NoRestorableBackup(f"'{target.name}' has no backup to verify.", target=str(target))
        job = job or Job(new_job_id(), "verify", target.resource_id, trigger, share=backup.share)
        job.phase = None
        earlier = next(
            (b for b in backups if b.created < backup.created and b.metadata.get(cat.META_VERIFIED) == "true"), None
        )
        previous = None
        if earlier is not None:
            seqno = earlier.metadata.get(cat.META_LAST_SEQNO)
            previous = Previous(
                earlier.share,
                int(seqno) if seqno and seqno.isdigit() else None,
                earlier.metadata.get(cat.META_SERVICE_IDENTITY),
            )
        try:
            report = verify_share(self.storage().service_client().get_share_client(backup.share), previous, progress)
        except MccfBackupError as err:
            job.fail(err.code, err.message)
            self.jobs.save(job)
            raise
        metadata = {
            cat.META_VERIFIED: "true" if report.valid else "false",
            cat.META_VERIFIED_AT: clock.utcnow().isoformat(),
            cat.META_VERIFY_REASON: cat.metadata_text("; ".join(report.reasons)) or "valid",
        }
        if report.last_seqno is not None:
            metadata[cat.META_LAST_SEQNO] = str(report.last_seqno)
        if report.service_identity:
            metadata[cat.META_SERVICE_IDENTITY] = report.service_identity
        catalog.tag(backup.share, metadata)
        if report.valid:
            job.succeed()
            job.reason = (
                f"{len(report.chunks)} chunks, seqno {report.first_seqno}-{report.last_seqno}, "
                f"{report.signatures} signatures, verified to {report.last_verified_txid}"
            )
            events.emit(
                events.VERIFY_SUCCESS,
                target=target.resource_id,
                share=backup.share,
                job=job.id,
                lastSeqno=report.last_seqno,
                signatures=report.signatures,
                bytes=report.bytes,
            )
        else:
            job.fail(VerificationFailed.code, "; ".join(report.reasons))
            events.emit(
                events.VERIFY_FAILURE,
                logging.ERROR,
                target=target.resource_id,
                share=backup.share,
                job=job.id,
                reason=job.error_message,
            )
        self.jobs.save(job)
        return job, report

    def run_verifications(self, trigger: str = "timer") -> list[Job]:
        """The verify timer: queued requests first, then good backups never verified, newest first."""
        done: list[Job] = []
        queued = [j for j in self.jobs.list(kind="verify", limit=200) if j.phase == "queued" and not j.done]
        for job in queued[: self.settings.verify_max_per_run]:
            done.append(self._verify_quietly(job.target, job.share, trigger, job))
        budget = self.settings.verify_max_per_run - len(done)
        catalog = self.catalog()
        for target in self.targets:
            for backup in catalog.backups(target):
                if budget <= 0:
                    return done
                if backup.tagged_for(target) and backup.good and cat.META_VERIFIED not in backup.metadata:
                    done.append(self._verify_quietly(target.resource_id, backup.share, trigger, None))
                    budget -= 1
        return done

    def _verify_quietly(self, target: str, share: str, trigger: str, job: Job | None) -> Job:
        try:
            return self.verify(target, share, trigger, job=job)[0]
        except MccfBackupError as err:
            failed = job or Job(new_job_id(), "verify", target, trigger, share=share)
            if not failed.done:
                failed.fail(err.code, err.message)
                self._save_quietly(failed)
            return failed

    # --- health ---
    def health(self) -> list[dict]:
        """Emit the health events (RPO breach, restore window closing) and return what was found."""
        findings = []
        now = clock.utcnow()
        catalog = self.catalog()
        rpo = dt.timedelta(hours=self.settings.rpo_hours)
        for target in self.targets:
            good = [b for b in catalog.backups(target) if b.good]
            newest = good[0] if good else None
            if newest is None or newest.age(now) > rpo:
                age = round(newest.age(now).total_seconds() / 3600, 1) if newest else None
                findings.append(
                    {"target": target.resource_id, "event": events.HEALTH_RPO_BREACH, "newestBackupAgeHours": age}
                )
                events.emit(
                    events.HEALTH_RPO_BREACH,
                    logging.ERROR,
                    target=target.resource_id,
                    newestBackup=newest.share if newest else None,
                    newestBackupAgeHours=age,
                    rpoHours=self.settings.rpo_hours,
                )
            if newest is not None and newest.restorable(now) and newest.days_left(now) < 7:
                findings.append(
                    {
                        "target": target.resource_id,
                        "event": events.HEALTH_RESTORE_WINDOW_CLOSING,
                        "share": newest.share,
                        "daysLeft": newest.days_left(now),
                    }
                )
                events.emit(
                    events.HEALTH_RESTORE_WINDOW_CLOSING,
                    logging.WARNING,
                    target=target.resource_id,
                    share=newest.share,
                    daysLeft=newest.days_left(now),
                )
        return findings

    def status(self) -> list[dict]:
        """Health per target: newest good and oldest restorable backup, count and size, RPO, last failure."""
        now = clock.utcnow()
        catalog = self.catalog()
        rpo = dt.timedelta(hours=self.settings.rpo_hours)
        report = []
        for target in self.targets:
            backups = [b for b in catalog.backups(target) if b.good]
            restorable = [b for b in backups if b.restorable(now)]
            jobs = self.jobs.list(target=target.resource_id, limit=20)
            failure = next((j for j in jobs if j.status == "failed"), None)
            newest = backups[0] if backups else None
            report.append(
                {
                    "target": target.resource_id,
                    "app": target.name,
                    "newestBackup": newest.to_dict(now) if newest else None,
                    "newestBackupAgeHours": round(newest.age(now).total_seconds() / 3600, 2) if newest else None,
                    "oldestRestorableBackup": restorable[-1].to_dict(now) if restorable else None,
                    "newestVerifiedBackup": next(
                        (b.to_dict(now) for b in backups if b.metadata.get(cat.META_VERIFIED) == "true"), None
                    ),
                    "backupCount": len(backups),
                    "totalSizeBytes": sum(catalog.usage_bytes(b.share) for b in backups),
                    "rpoHours": self.settings.rpo_hours,
                    "withinRpo": bool(newest and newest.age(now) <= rpo),
                    "lastFailure": failure.to_dict() if failure else None,
                    "lastJob": jobs[0].to_dict() if jobs else None,
                }
            )
        return report
