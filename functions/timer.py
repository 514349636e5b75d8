"""The timers: the scheduled backup, the sweeper, pruning, health and verification."""

from __future__ import annotations


import azure.functions as func

from mccf_backup import logs

from .engine import service_from_environment
from .invocation import thread_setup

bp = func.Blueprint()
log = logs.logger("mccf_backup.timer")


class ScheduledBackupFailed(Exception):
    """Raised after every target was tried, so Azure Monitor records the invocation as failed."""


@bp.timer_trigger(schedule="%BACKUP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def scheduled_backup(timer: func.TimerRequest, context: func.Context) -> None:
    """Start every target's backup and return; the operations queue follows them."""
    if timer.past_due:
        log.warning("The scheduled backup is running late (past due); running it now.")
    service = service_from_environment()
    if service.settings.fanout == "queue":  # scale-out: one message per target, started by backup_target
        outcome = service.enqueue_scheduled()
        failed = {target: reason for target, reason in outcome.items() if reason}
        log.info("Scheduled backup: enqueued %d of %d targets.", len(outcome) - len(failed), len(outcome))
        if failed:
            raise ScheduledBackupFailed(
                f"{len(failed)} of {len(outcome)} targets could not be enqueued: "
                + "; ".join(f"{t.rsplit('/', 1)[-1]}: {r}" for t, r in failed.items())
            )
        return
    summary = service.run_scheduled("timer", thread_setup(context))
    log.info(summary.text())
    if summary.failed:
        failed = ", ".join(result.target.rsplit("/", 1)[-1] for result in summary.failed)
        raise ScheduledBackupFailed(f"{len(summary.failed)} of {len(summary.results)} targets failed: {failed}")


@bp.timer_trigger(schedule="%SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def sweep_operations(timer: func.TimerRequest, context: func.Context) -> None:
    """Move on every job whose next step's message was lost, and end every job past its deadline."""
    result = service_from_environment().sweep(thread_setup(context))
    log.info("Sweep: %d running jobs, %d overdue moved on, %d ended.", result.looked_at, result.advanced, result.ended)


@bp.timer_trigger(schedule="%PRUNE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def scheduled_prune(timer: func.TimerRequest) -> None:
    results = service_from_environment().prune(apply=True, trigger="timer")
    deleted = [job for result in results for job in result.jobs]
    failed = [job for job in deleted if job.status == "failed"]
    capped = [result.target for result in results if result.plan.capped]
    log.info(
        "Pruning: %d shares deleted, %d failed, %d targets capped.",
        len(deleted) - len(failed),
        len(failed),
        len(capped),
    )
    if failed:
        raise ScheduledBackupFailed(f"{len(failed)} share deletions failed: {', '.join(j.share for j in failed)}")


@bp.timer_trigger(schedule="%HEALTH_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def scheduled_health(timer: func.TimerRequest) -> None:
    findings = service_from_environment().health()
    log.info("Health check: %d findings.", len(findings))


@bp.timer_trigger(schedule="%VERIFY_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def scheduled_verify(timer: func.TimerRequest) -> None:
    """Verify new backups (and queued requests) after they finish: heavy work stays out of HTTP requests."""
    jobs = service_from_environment().run_verifications("timer")
    invalid = [job for job in jobs if job.status == "failed"]
    log.info("Verification: %d backups verified, %d did not verify.", len(jobs) - len(invalid), len(invalid))
