"""``mccf-backup preflight [--canary TARGET]``: the preflight report, readable, and the canary.

The canary is the first end-to-end proof on a real deployment: one backup of one named target,
followed to its end, then its ledger files verified, with the time each took. Safe in production:
a backup changes nothing on the instance. Settings that do not even load are reported as the one
failed check they are, with what to fix, instead of stopping the report.
"""

from __future__ import annotations

import time
from typing import Callable, TextIO

from .errors import MccfBackupError, SettingsInvalid
from .jobs import Job
from .preflight_report import FAILED, OK, Check, Report
from .redaction import redact
from .service import BackupService

MARKS = {"ok": "  ok  ", "warning": " WARN ", "failed": " FAIL "}


def canary(service: BackupService, reference: str, progress: Callable[[Job], None]) -> Check:
    """One backup of ``reference``, then verify it; the timings are the deployment's real ones."""
    target = service.targets.resolve(reference)
    started = time.monotonic()
    job = service.backup(target.resource_id, "cli", progress, caller="preflight-canary")
    backed_up = time.monotonic()
    if job.status != "succeeded":
        return Check(
            "canary",
            FAILED,
            f"{target.name}: the backup {job.status}: {job.error_code}: {job.error_message}",
            f"Fix what the checks above say; the job is {job.id} (mccf-backup jobs).",
            target.resource_id,
        )
    _, report = service.verify(target.resource_id, job.share, "cli")
    verified = time.monotonic()
    timings = {
        "share": job.share,
        "backupSeconds": round(backed_up - started, 1),
        "verifySeconds": round(verified - backed_up, 1),
    }
    if not report.valid:
        return Check(
            "canary",
            FAILED,
            f"{target.name}: backup {job.share} failed verification: {'; '.join(report.reasons)}",
            "Keep the share for investigation (mccf-backup pin ...).",
            target.resource_id,
            timings,
        )
    return Check(
        "canary",
        OK,
        f"{target.name}: backup {job.share} in {timings['backupSeconds']} s, verified in "
        f"{timings['verifySeconds']} s ({report.transactions} transactions up to {report.last_verified_txid})",
        target=target.resource_id,
        details=timings,
    )


def report_for(canary_target: str | None, progress: Callable[[Job], None]) -> Report:
    try:
        service = BackupService.from_environment(interactive=True)
    except SettingsInvalid as exc:
        fix = "Set the settings named above (the Function App's environment variables, or local.settings.json)."
        return Report((Check("settings", FAILED, exc.message, fix),))
    if not canary_target:
        return service.preflight()
    try:
        proof = canary(service, canary_target, progress)  # first, so the report sees its backup
    except MccfBackupError as exc:  # a refused start: the checks below say why
        proof = Check("canary", FAILED, f"{canary_target}: {redact(exc.message)}", "Fix what the checks above say.")
    return Report(service.preflight().checks + (proof,))


def render(report: Report, out: TextIO) -> None:
    for check in report.checks:
        where = f" [{check.target.rsplit('/', 1)[-1]}]" if check.target and check.target not in check.found else ""
        print(f"[{MARKS[check.status]}] {check.name}{where}: {check.found}", file=out)
        if check.fix and check.status != OK:
            print(f"         fix: {check.fix}", file=out)
    counts = report.to_dict()["counts"]
    print(
        f"\n{report.status.upper()}: {counts['ok']} ok, {counts['warning']} warning"
        f"{'' if counts['warning'] == 1 else 's'}, {counts['failed']} failed",
        file=out,
    )
