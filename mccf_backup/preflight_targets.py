"""Preflight, per target: the instance is there and settled, the identity may do everything a backup
and a restore call on it, and its newest backup is recent, verified and still restorable.

Permissions are read, not tried: ``Microsoft.Authorization/permissions`` at the target's scope is the
union of the identity's role assignments there, which is compared with the actions the code calls
(``rbac``, the same list the infra's custom role grants). A name that differs from what ARM uses
shows here as missing, with the command that lists the provider's real names.
"""

from __future__ import annotations

import datetime as dt

from . import catalog as cat
from . import rbac
from .preflight_report import FAILED, OK, WARNING, Check, guarded
from .run import Run, ThreadSetup, for_each
from .targets import Target

SETTLING = ("Creating", "Updating", "Accepted", "Provisioning", "Deleting")
WINDOW_WARNING = dt.timedelta(days=14)


def _role_fix(run: Run, target: Target, subject: str, missing: list[str]) -> str:
    scope = f"/subscriptions/{target.subscription}/resourceGroups/{target.resource_group}"
    who = "your identity (the CLI runs as you)" if run.interactive else "the app's identity"
    kind = "User" if run.interactive else "ServicePrincipal"
    return (
        f"Assign {who} the mccf-backup operator role (infra/modules/mccf-role.bicep grants {', '.join(missing)}) "
        f"on {scope}: az role assignment create --assignee-object-id {subject or '<object id>'} "
        f"--assignee-principal-type {kind} --role 'mccf-backup operator (<suffix>, {target.subscription})' --scope {scope} (for the app, "
        "`azd provision` with this target in MCCF_TARGETS does it). A new assignment can take 5-10 minutes to apply. "
        "If the role has these actions, compare the names with `az provider operation show --namespace "
        "Microsoft.ConfidentialLedger`."
    )


def target_checks(run: Run, target: Target, subject: str) -> list[Check]:
    """GET the instance, then read the identity's effective permissions on it."""
    where = target.resource_id

    def instance() -> list[Check]:
        found = run.arm.get(target)
        if found is None:
            return [
                Check(
                    "target",
                    FAILED,
                    f"{target.resource_type} '{target.name}' does not exist in resource group "
                    f"'{target.resource_group}'",
                    "Fix MCCF_TARGETS, or restore the instance first (mccf-backup restore --target ...).",
                    where,
                )
            ]
        state = str((found.get("properties") or {}).get("provisioningState") or "")
        if state == "Succeeded":
            return [
                Check(
                    "target",
                    OK,
                    f"{target.name}: provisioningState Succeeded, in {found.get('location')}",
                    target=where,
                )
            ]
        status = WARNING if state in SETTLING else FAILED
        return [
            Check(
                "target",
                status,
                f"{target.name}: provisioningState {state or 'missing'}; a backup needs Succeeded",
                "Wait for the instance's current operation to end, or look at its Activity log in the portal.",
                where,
            )
        ]

    def permissions() -> list[Check]:
        granted = run.arm.permissions(target)
        needed = rbac.required_actions(target.resource_type, run.settings.allow_replace_restore)
        missing = [action for action in needed if not rbac.allows(granted, action)]
        if missing:
            return [
                Check(
                    "permissions",
                    FAILED,
                    f"{target.name}: the identity lacks {', '.join(missing)}",
                    _role_fix(run, target, subject, missing),
                    where,
                    {"missing": missing},
                )
            ]
        extra = " (delete included: ALLOW_REPLACE_RESTORE is on)" if run.settings.allow_replace_restore else ""
        return [Check("permissions", OK, f"{target.name}: read, backup and restore allowed{extra}", target=where)]

    return guarded("target", "Check MCCF_TARGETS and the identity's role.", instance, where) + guarded(
        "permissions",
        _role_fix(
            run, target, subject, list(rbac.required_actions(target.resource_type, run.settings.allow_replace_restore))
        ),
        permissions,
        where,
    )


def recovery_point_checks(
    run: Run, now: dt.datetime, next_backup: dt.datetime | None, setup: ThreadSetup | None = None
) -> list[Check]:
    """Per target: the newest good backup is younger than the RPO, verified, and inside the 90-day window."""
    rpo = dt.timedelta(hours=run.settings.rpo_hours)
    when = f" (next scheduled backup {next_backup:%Y-%m-%d %H:%M} UTC)" if next_backup else ""

    def one(target: Target) -> list[Check]:
        where = target.resource_id

        def newest() -> list[Check]:
            good = [b for b in run.catalog().backups(target) if b.good]
            if not good:
                return [
                    Check(
                        "recovery_point",
                        WARNING,
                        f"{target.name}: no backup yet{when}",
                        f"Take one now: mccf-backup preflight --canary {target.name} (or mccf-backup backup "
                        f"--target {target.name} --wait).",
                        where,
                    )
                ]
            backup = good[0]
            age_hours = backup.age(now).total_seconds() / 3600
            found = f"{target.name}: newest backup {backup.share}, {age_hours:.1f} h old"
            if not backup.restorable(now):
                return [
                    Check(
                        "recovery_point",
                        FAILED,
                        f"{found}: past the 90-day restore window",
                        f"mccf-backup backup --target {target.name} --wait",
                        where,
                    )
                ]
            if backup.age(now) > rpo:
                return [
                    Check(
                        "recovery_point",
                        FAILED,
                        f"{found}, older than the {run.settings.rpo_hours} h RPO",
                        f"mccf-backup backup --target {target.name} --wait, then see why the schedule stopped "
                        "(mccf-backup jobs).",
                        where,
                    )
                ]
            if backup.metadata.get(cat.META_VERIFIED) != "true":
                return [
                    Check(
                        "recovery_point",
                        WARNING,
                        f"{found}, not verified yet",
                        f"mccf-backup verify {backup.share} --target {target.name} (the verify timer does it too).",
                        where,
                    )
                ]
            left = dt.timedelta(days=backup.days_left(now))
            status = WARNING if left < WINDOW_WARNING else OK
            return [Check("recovery_point", status, f"{found}, verified, restorable {left.days} more days", "", where)]

        return guarded("recovery_point", "Check the backup storage account.", newest, where)

    found = for_each(one, list(run.targets), run.settings.concurrency, setup, "preflight-points")
    return [check for checks in found for check in checks]
