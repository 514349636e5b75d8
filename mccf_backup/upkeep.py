"""Upkeep of the backups once they exist: retention, verification, health and status.

None of this talks to ARM's write side: it lists and tags shares, deletes what the retention
policy says, proves ledger files intact, and reports targets outside their RPO. Each action is
recorded as a job (kind ``delete`` or ``verify``) so the history says what was done and why.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Callable

from . import catalog as cat
from . import clock, events, inputs, logs
from .backup import SHARE_CLOCK_SKEW
from .catalog import Backup, Catalog
from .coverage import verdict_metadata
from .errors import MccfBackupError, NoRestorableBackup, ShareNotFound, VerificationFailed
from .jobs import Job, StaleJob, new_job_id
from .lifecycle import ACCEPTED, FAILED, SUCCEEDED
from .operations import Operations
from .retention import Candidate, RetentionPlan, plan_retention
from .run import Run
from .targets import Target
from .verification import Previous, VerificationReport, verify_share

log = logs.logger("mccf_backup")
QUEUED_VERIFY_DEADLINE = dt.timedelta(days=1)  # a queued verification the verify timer never took ends then


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


class Upkeep:
    def __init__(self, run: Run, operations: Operations) -> None:
        self.run = run
        self.ops = operations

    # --- retention ---
    def prune(
        self, reference: str | None = None, apply: bool = False, override: bool = False, trigger: str = "cli"
    ) -> list[TargetPrune]:
        """Plan retention per target (a dry run unless ``apply``); deletions are recorded with their reason."""
        targets = [self.run.targets.resolve(reference)] if reference else list(self.run.targets)
        catalog = self.run.catalog()
        now = clock.utcnow()
        results = []
        for target in targets:
            running = self.run.jobs.running(target.resource_id, "backup")
            oldest_running = min((j.started for j in running), default=None)
            restoring = {j.share for j in self.run.jobs.running(target.resource_id, "restore") if j.share}
            candidates = [
                self._candidate(backup, target, oldest_running, backup.share in restoring)
                for backup in catalog.backups(target)
            ]
            plan = plan_retention(candidates, self.run.settings.retention_for(target), now, override)
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
                    job = self._delete_share(catalog, target, decision.share, "; ".join(decision.reasons), trigger)
                    if job is not None:
                        result.jobs.append(job)
            results.append(result)
        return results

    @staticmethod
    def _candidate(
        backup: Backup, target: Target, oldest_running: dt.datetime | None, restoring: bool = False
    ) -> Candidate:
        return Candidate(
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
                "a running restore reads it"
                if restoring
                else "failed verification: kept as evidence"
                if backup.metadata.get(cat.META_VERIFIED) == "false"
                else None
            ),
            pin=(backup.pin or {}).get("label"),
        )

    def _delete_share(self, catalog: Catalog, target: Target, share: str, reason: str, trigger: str) -> Job | None:
        job = Job(new_job_id(), "delete", target.resource_id, trigger, state=SUCCEEDED, share=share, reason=reason)
        try:
            try:
                now = catalog.get(target, share)  # the plan's listing may be seconds old: pinned since?
            except ShareNotFound:
                now = None  # already gone: deleting is idempotent
            if now is not None and (now.pin is not None or now.metadata.get(cat.META_VERIFIED) == "false"):
                log.info("prune: %s was pinned or failed verification since it was listed; kept", share)
                return None  # nothing deleted, nothing recorded
            catalog.delete(share)
            events.emit(events.PRUNE_DELETED, target=target.resource_id, share=share, reason=reason, job=job.id)
        except MccfBackupError as err:
            job.state, job.error_code, job.error_message = FAILED, err.code, err.message
        return self.ops.record(job)

    # --- verification ---
    def request_verify(self, reference: str, share: str, trigger: str, caller: str | None = None) -> Job:
        """Queue a verification for the verify timer (HTTP: the work never runs inside a request)."""
        target = self.run.targets.resolve(reference)
        inputs.share_name(share)  # before the catalog reads the storage secret
        self.run.catalog().get(target, share)  # exists and belongs to the target, or a clear error now
        job = Job(new_job_id(), "verify", target.resource_id, trigger, caller=caller, share=share, phase="queued")
        return self.ops.record(job, deadline=clock.utcnow() + QUEUED_VERIFY_DEADLINE)

    def verify(
        self,
        reference: str,
        share: str | None = None,
        trigger: str = "cli",
        progress: Callable[[int, int], None] | None = None,
        job: Job | None = None,
    ) -> tuple[Job, VerificationReport]:
        """Verify one backup (default: the newest good one), tag the verdict on the share, record the job."""
        target = self.run.targets.resolve(reference)
        if share:
            inputs.share_name(share)
        catalog = self.run.catalog()
        backups = [b for b in catalog.backups(target) if b.good]
        if share:
            backup = catalog.get(target, share)
        elif backups:
            backup = backups[0]
        else:
            raise NoRestorableBackup(f"'{target.name}' has no backup to verify.", target=str(target))
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
            client = self.run.storage().service_client().get_share_client(backup.share)
            report = verify_share(client, previous, progress)
        except MccfBackupError as err:
            err.job = self._end_verify(job, target, backup.share, trigger, FAILED, err.code, err.message)
            raise
        catalog.tag(backup.share, self._verdict_metadata(report))
        if report.valid:
            reason = (
                f"{len(report.chunks)} chunks, seqno {report.first_seqno}-{report.last_seqno}, "
                f"{report.signatures} signatures, verified to {report.last_verified_txid}"
            )
            job = self._end_verify(job, target, backup.share, trigger, SUCCEEDED, None, None, reason)
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
            message = "; ".join(report.reasons)
            job = self._end_verify(job, target, backup.share, trigger, FAILED, VerificationFailed.code, message)
            events.emit(
                events.VERIFY_FAILURE,
                logging.ERROR,
                target=target.resource_id,
                share=backup.share,
                job=job.id,
                reason=job.error_message,
            )
        return job, report

    @staticmethod
    def _verdict_metadata(report: VerificationReport) -> dict[str, str]:
        metadata = {
            cat.META_VERIFIED: "true" if report.valid else "false",
            cat.META_VERIFIED_AT: clock.utcnow().isoformat(),
            cat.META_VERIFY_REASON: cat.metadata_text("; ".join(report.reasons)) or "valid",
        }
        return {**metadata, **verdict_metadata(report)}  # what the ledger covers, for restore-before and find

    def _end_verify(
        self,
        queued: Job | None,
        target: Target,
        share: str,
        trigger: str,
        state: str,
        code: str | None,
        message: str | None,
        reason: str | None = None,
    ) -> Job:
        """End a queued verification job, or record a new one already ended."""
        changes = {"error_code": code, "error_message": message, "reason": reason, "phase": None}
        if queued is not None and not queued.done:
            try:
                return self.ops.transition(queued, state, **changes)
            except StaleJob:  # the sweeper ended it meanwhile (past its deadline): the verdict gets a job of its own
                pass
        job = Job(new_job_id(), "verify", target.resource_id, trigger, state=state, share=share)
        for name, value in changes.items():
            setattr(job, name, value)
        return self.ops.record(job)

    def run_verifications(self, trigger: str = "timer") -> list[Job]:
        """The verify timer: queued requests first, then good backups never verified, newest first."""
        done: list[Job] = []
        limit = self.run.settings.verify_max_per_run
        queued = [j for j in self.run.jobs.running(kind="verify") if j.state == ACCEPTED]
        for job in queued[:limit]:
            done.append(self._verify_quietly(job.target, job.share, trigger, job))
        budget = limit - len(done)
        catalog = self.run.catalog()
        for target in self.run.targets:
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
            recorded = getattr(err, "job", None)
            if recorded is not None:
                return recorded
            failed = Job(new_job_id(), "verify", target, trigger, state=FAILED, share=share)
            failed.error_code, failed.error_message = err.code, err.message
            try:
                return self._end_verify(
                    job, self.run.targets.resolve(target), share, trigger, FAILED, err.code, err.message
                )
            except MccfBackupError:
                log.warning("could not record the failed verification of %s", share)
                return failed

    # --- health ---
    def health(self) -> list[dict]:
        """Emit the health events (RPO breach, restore window closing) and return what was found."""
        findings = []
        now = clock.utcnow()
        catalog = self.run.catalog()
        rpo = dt.timedelta(hours=self.run.settings.rpo_hours)
        for target in self.run.targets:
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
                    rpoHours=self.run.settings.rpo_hours,
                )
            if newest is not None and newest.restorable(now) and newest.days_left(now) < 7:
                finding = {"share": newest.share, "daysLeft": newest.days_left(now)}
                findings.append(
                    {"target": target.resource_id, "event": events.HEALTH_RESTORE_WINDOW_CLOSING, **finding}
                )
                events.emit(events.HEALTH_RESTORE_WINDOW_CLOSING, logging.WARNING, target=target.resource_id, **finding)
        return findings

    def status(self) -> list[dict]:
        """Health per target: newest good and oldest restorable backup, count and size, RPO, last failure."""
        now = clock.utcnow()
        catalog = self.run.catalog()
        rpo = dt.timedelta(hours=self.run.settings.rpo_hours)
        report = []
        for target in self.run.targets:
            backups = [b for b in catalog.backups(target) if b.good]
            restorable = [b for b in backups if b.restorable(now)]
            jobs = self.run.jobs.list(target=target.resource_id, limit=20)
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
                    "rpoHours": self.run.settings.rpo_hours,
                    "withinRpo": bool(newest and newest.age(now) <= rpo),
                    "lastFailure": failure.to_dict() if failure else None,
                    "lastJob": jobs[0].to_dict() if jobs else None,
                }
            )
        return report
