"""A restore request, and every precondition of it checked before any ARM write (the dry run's report).

Managed CCF restores only into a deleted instance of the same name, only from a backup younger than
90 days, into a region it must be told. Each of these is checked here with a verdict the operator
can read, so a restore is refused with what to do instead of failing in ARM minutes later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import catalog as cat
from . import clock, inputs
from .catalog import Backup
from .coverage import Before, Choice, choose_before
from .errors import BackupTooOld, InstanceExists, MccfBackupError, NoRestorableBackup, ReplaceNeedsNewestBackup
from .errors import InvalidRequest, ReplaceNotAllowed, ReplaceNotConfirmed, RestoreRegionRequired
from .errors import VerificationFailed
from .run import Run
from .targets import Target


@dataclass(frozen=True)
class RestoreRequest:
    """What a caller asked for, materialized once and passed around whole."""

    target: str  # app name or resource ID, resolved against MCCF_TARGETS
    share: str | None = None  # default: the newest restorable good backup
    region: str | None = None  # default: RESTORE_REGION, else where the backup was made
    replace: bool = False  # delete the live instance first (ALLOW_REPLACE_RESTORE)
    confirm: str | None = None  # the instance's name, repeated, to confirm a replace
    trigger: str = "cli"
    caller: str | None = None
    before: Before | None = None  # the newest verified backup ending before a transaction or a time
    label: str | None = None  # the backup pinned (golden copy) under this label

    def __post_init__(self) -> None:
        """Every field a caller sent, checked by the one set of rules before anything uses it."""
        inputs.target_reference(self.target)
        if sum(choice is not None for choice in (self.share, self.before, self.label)) > 1:
            raise InvalidRequest("Name the backup one way: a share, a label, or a point to restore before.")
        if self.share is not None:
            inputs.share_name(self.share)
        if self.label is not None:
            inputs.pin_label(self.label)
        if self.region is not None:
            inputs.region(self.region)
        if self.confirm is not None:
            inputs.confirmation(self.confirm)

    def fingerprint(self, resource_id: str) -> dict:
        """What makes two requests the same request (for Idempotency-Key)."""
        return {
            "target": resource_id.lower(),
            "share": self.share,
            "region": self.region,
            "replace": self.replace,
            "confirm": self.confirm,
            # only when set, so a key recorded before these fields existed still matches its body
            **({"before": str(self.before)} if self.before else {}),
            **({"label": self.label} if self.label else {}),
        }


@dataclass
class RestoreCheck:
    target: Target
    checks: list[dict] = field(default_factory=list)
    errors: list[MccfBackupError] = field(default_factory=list)
    backup: Backup | None = None
    region: str | None = None
    replacing: bool = False  # a replace-restore that will delete the live instance first
    choice: Choice | None = None  # how a restore-before picked its backup

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
            **({"before": self.choice.to_dict()} if self.choice else {}),
        }


def check_restore(run: Run, request: RestoreRequest) -> RestoreCheck:
    """Every precondition of a restore, each with its verdict: the dry run, and the gate of a real one."""
    target = run.targets.resolve(request.target)  # an unknown target is refused outright
    catalog = run.catalog()
    now = clock.utcnow()
    check = RestoreCheck(target)
    backup: Backup | None = None
    listed = catalog.backups(target)  # listed once for every check below
    good = [b for b in listed if b.good]
    try:
        if request.share:
            backup = catalog.get(target, request.share)
            check.add("backup_exists", True, f"share '{request.share}' is a backup of {target.name}")
        elif request.label:
            backup = _pinned(listed, target, request.label)
            check.add("backup_exists", True, f"'{request.label}' is pinned on {backup.share}")
        elif request.before:
            check.choice = choose_before(listed, request.before, now)
            backup = check.choice.backup
            if backup is None:
                raise NoRestorableBackup(
                    f"No restorable, verified backup of '{target.name}' ends before {request.before} "
                    f"({len(check.choice.passed_over)} looked at; a dry run says why each was passed over).",
                    target=str(target),
                    field="before",
                )
            given_up = check.choice.given_up
            check.add(
                "backup_before",
                True,
                f"newest verified backup ending before {request.before}: {backup.share}"  # type: ignore[union-attr]
                + (f"; at least {given_up} later transactions (seqnos) are given up" if given_up else ""),
            )
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
        _check_backup(check, backup, good, now)
    instance = run.arm.get(target)
    if request.replace:
        _check_replace(run, check, good, instance, request.confirm)
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
    chosen = (
        request.region or run.settings.restore_region or (backup.metadata.get(cat.META_LOCATION) if backup else None)
    )
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


def _pinned(backups: list[Backup], target: Target, label: str) -> Backup:
    for backup in backups:
        if (backup.pin or {}).get("label") == label:
            return backup
    raise NoRestorableBackup(f"No backup of '{target.name}' is pinned as '{label}'.", target=str(target), field="label")


def _check_backup(check: RestoreCheck, backup: Backup, good: list[Backup], now) -> None:
    target = check.target
    if backup.restorable(now):
        check.add(
            "backup_age",
            True,
            f"{backup.age(now).days} days old; {backup.days_left(now)} days left before the 90-day restore limit",
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


def _check_replace(
    run: Run, check: RestoreCheck, good: list[Backup], instance: dict | None, confirm: str | None
) -> None:
    """Replacing a live instance: allowed by a setting, confirmed by name, newest good backup only."""
    target = check.target
    check.add(
        "replace_allowed",
        run.settings.allow_replace_restore,
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
