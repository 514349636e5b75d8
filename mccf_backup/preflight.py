"""Preflight: every check a first backup and a first restore depend on, run where the app runs.

Run in Azure (``GET /api/preflight``, the azd postdeploy hook) it speaks with the app's own managed
identity, so what it finds is what the 02:00 backup will meet, all at once instead of one failure a
night. Each check answers ok, warning or failed, says what it found, and for anything not ok the
exact fix (a command or a portal path). A check that cannot run is failed with its reason; it never
stops the others. Nothing here changes a target: the only write is a probe share (created and
deleted with a backup's own SAS) and a probe entity and message in the app's own table and queues.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError
from azure.storage.fileshare import ShareServiceClient

from . import clock, work_queue
from .arm import arm_scope
from .entra_tokens import signing_keys
from .errors import MccfBackupError
from .preflight_report import FAILED, OK, WARNING, Check, Report, guarded
from .preflight_targets import recovery_point_checks, target_checks
from .redaction import redact
from .run import Run, ThreadSetup, for_each
from .schedules import Schedule
from .settings import SCHEDULE_SETTINGS
from .storage_config import BACKUP, CATALOG, PRUNE, RESTORE, StorageConfig, load_storage_config

VAULT_SCOPE = "https://vault.azure.net/.default"  # the public cloud's; vault_scope() follows the vault's cloud
PROBE_PREFIX = "mccfbackup-preflight-"  # + hex + "-probe": never <app>-<14 digits>, so never a backup
SAS_WARNING = dt.timedelta(days=14)


def vault_scope(key_vault_url: str) -> str:
    """The token scope Key Vault's own challenge would name: https://vault.<the vault's cloud suffix>."""
    host = urlsplit(key_vault_url).hostname or ""
    return f"https://vault.{host.split('.vault.', 1)[1]}/.default" if ".vault." in host else VAULT_SCOPE


def _token_subject(token: str) -> str:
    """The object id a token names (for the role-assignment command); never the token itself."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("oid") or claims.get("appid") or "")
    except (IndexError, ValueError):
        return ""


def identity_checks(run: Run, who: str) -> tuple[list[Check], str]:
    """A token for ARM and one for Key Vault, as the app will get them; returns the object id too."""
    fix = (
        "Give the Function App a managed identity (the infra assigns a user-assigned one) and set AZURE_CLIENT_ID "
        "to its client id; from a workstation, sign in with `az login`."
    )
    subject = ""

    def tokens() -> list[Check]:
        nonlocal subject
        subject = _token_subject(run.credential.get_token(arm_scope(run.settings.arm_endpoint)).token)
        run.credential.get_token(vault_scope(run.settings.key_vault_url))
        return [
            Check(
                "identity",
                OK,
                f"tokens for ARM and Key Vault as {who}" + (f" (object id {subject})" if subject else ""),
            )
        ]

    return guarded("identity", fix, tokens), subject


def key_vault_check(run: Run, next_backup: dt.datetime | None) -> tuple[list[Check], StorageConfig | None]:
    """The storage secret: there, enabled, and a connection string or a SAS that can do every operation
    until after the next scheduled backup has finished."""
    settings = run.settings
    name = settings.storage_secret_name
    fix = (  # the connection string travels through a pipe, never on a command line (ps shows those)
        "az storage account show-connection-string -n <backup account> -g <group> -o tsv | "
        f"az keyvault secret set --vault-name <vault> --name {name} --file /dev/stdin"
    )
    found: list[StorageConfig] = []

    def secret() -> list[Check]:
        config = load_storage_config(settings.key_vault_url, name, run.credential)  # fresh: judged as it is now
        run.use_storage(config)
        found.append(config)
        if config.account_key is not None:
            return [
                Check(
                    "key_vault",
                    OK,
                    f"secret '{name}': a connection string for account '{config.account_name}' "
                    "(a fresh SAS is minted for every operation)",
                )
            ]
        lifetime = dt.timedelta(minutes=settings.operation_timeout_minutes)
        if next_backup is not None:
            lifetime += max(dt.timedelta(), next_backup - clock.utcnow())
        for access in (BACKUP, RESTORE, CATALOG):
            config.check_sas(access, lifetime)  # raises SasUnusable, saying what is missing
        try:
            config.check_sas(PRUNE, lifetime)
        except MccfBackupError as exc:
            return [
                Check(
                    "key_vault",
                    WARNING,
                    f"secret '{name}': backups and restores work, but retention cannot "
                    f"delete a share: {redact(exc.message)}",
                    f"Store a SAS with sp including d, or better: {fix}",
                )
            ]
        expiry = config.sas_expiry()
        if expiry is not None and expiry - (clock.utcnow() + lifetime) < SAS_WARNING:
            return [
                Check(
                    "key_vault",
                    WARNING,
                    f"secret '{name}': an account SAS that expires at "
                    f"{expiry:%Y-%m-%d %H:%M} UTC, less than {SAS_WARNING.days} days after the next scheduled "
                    "backup",
                    f"Store a new SAS soon, or better the connection string: {fix}",
                )
            ]
        return [
            Check(
                "key_vault",
                OK,
                f"secret '{name}': an account SAS that grants every operation until after the "
                f"next scheduled backup (expires {expiry:%Y-%m-%d} UTC)",
            )
        ]

    checks = guarded("key_vault", fix, secret)
    return checks, (found[0] if found and checks[0].status != FAILED else None)


def storage_checks(run: Run, config: StorageConfig) -> list[Check]:
    """A share created with a SAS minted as for a backup, then deleted: the account answers this app
    over https and accepts the kind of SAS Managed CCF will be handed."""
    probe = f"{PROBE_PREFIX}{uuid.uuid4().hex[:8]}-probe"
    fix = (
        "Check the storage account's firewall (Networking): this app must reach it (allow the Function App's "
        "outbound addresses or its virtual network), and so must Managed CCF (allow 'trusted Microsoft "
        "services'); and that the secret names this account's File service."
    )

    def probe_share() -> list[Check]:
        service = ShareServiceClient(config.sas_url(BACKUP, dt.timedelta(minutes=10)))
        service.create_share(probe)
        failure: BaseException | None = None
        try:
            service.get_share_client(probe).get_file_client("probe.txt").upload_file(b"mccf-backup preflight")
        except (AzureError, OSError) as exc:
            failure = exc
        try:
            run.catalog().delete(probe)
            left = ""
        except (MccfBackupError, AzureError) as exc:
            left = f"; probe share '{probe}' was left behind ({redact(str(exc).splitlines()[0])})"
        if failure is not None:
            return [
                Check(
                    "storage",
                    FAILED,
                    f"a backup's SAS created probe share '{probe}' but could not write a file "
                    f"in it: {redact(str(failure).splitlines()[0])}{left}",
                    fix,
                )
            ]
        if left:
            return [
                Check(
                    "storage",
                    WARNING,
                    f"a backup's SAS created probe share '{probe}' and a file in it{left}",
                    f"Delete share '{probe}' by hand (it is no backup); the secret must allow deleting shares "
                    "for retention too.",
                )
            ]
        return [
            Check(
                "storage",
                OK,
                f"{config.file_endpoint}: a backup's SAS created probe share '{probe}' and a "
                "file in it; the probe was deleted",
            )
        ]

    return guarded("storage", fix, probe_share)


def soft_delete_check(run: Run, config: StorageConfig, prune_window: dt.timedelta | None) -> list[Check]:
    account_id = run.settings.backup_storage_account_id
    portal = "Portal: storage account > Data protection > 'Enable soft delete for file shares'"
    if not account_id:
        return [
            Check(
                "soft_delete",
                WARNING,
                "BACKUP_STORAGE_ACCOUNT_ID is not set: share soft delete not checked",
                "Set BACKUP_STORAGE_ACCOUNT_ID to the backup storage account's resource ID (the infra does).",
            )
        ]
    account, group = account_id.rstrip("/").rsplit("/", 1)[-1], account_id.split("/")[4]
    if account.lower() != config.account_name.lower():
        return [
            Check(
                "soft_delete",
                WARNING,
                f"BACKUP_STORAGE_ACCOUNT_ID names account '{account}', but the secret "
                f"holds account '{config.account_name}': soft delete not checked",
                "Point BACKUP_STORAGE_ACCOUNT_ID at the account the secret names.",
            )
        ]
    command = (
        f"az storage account file-service-properties update --account-name {account} --resource-group {group} "
        "--enable-delete-retention true --delete-retention-days"
    )

    def read() -> list[Check]:
        service = run.arm.file_service(account_id)
        if service is None:
            return [
                Check(
                    "soft_delete",
                    WARNING,
                    "ARM would not show the account's file service settings",
                    "Give the app's identity Reader on the backup storage account (the infra does).",
                )
            ]
        policy = (service.get("properties") or {}).get("shareDeleteRetentionPolicy") or {}
        days = int(policy.get("days") or 0)
        if not policy.get("enabled"):
            return [
                Check(
                    "soft_delete",
                    FAILED,
                    "share soft delete is off: a deleted backup share is gone at once",
                    f"{command} 30 ({portal})",
                )
            ]
        if prune_window is not None and dt.timedelta(days=days) <= prune_window:
            needed = prune_window.days + 1
            return [
                Check(
                    "soft_delete",
                    WARNING,
                    f"share soft delete keeps a deleted share {days} days, not longer "
                    f"than the pruning window ({prune_window.days} days between prune runs)",
                    f"{command} {max(7, needed)} ({portal})",
                )
            ]
        return [Check("soft_delete", OK, f"share soft delete is on: a deleted share stays recoverable {days} days")]

    return guarded("soft_delete", f"Check the account's data protection settings ({portal}).", read)


def job_store_checks(run: Run) -> list[Check]:
    """The job table and the queue(s) take a write, as every start and every step needs."""
    settings = run.settings
    fix = (
        "Give the app's identity Storage Table Data Contributor and Storage Queue Data Contributor on the "
        "Functions storage account (the infra does), or fix AzureWebJobsStorage."
    )

    def table() -> list[Check]:
        entity = {"PartitionKey": "preflight", "RowKey": uuid.uuid4().hex}
        run.table.call("write a probe entity", run.table.client.upsert_entity, entity)
        run.table.call("delete the probe entity", run.table.client.delete_entity, "preflight", entity["RowKey"])
        return [Check("job_store", OK, f"table '{settings.jobs.table_name}' takes a write")]

    def queues() -> list[Check]:
        # One probe proves the write for every queue of the account (the role is account-wide). Only the
        # operations queue: its consumer drops a step for an unknown job; a targets message would back up.
        name = settings.operations_queue_name
        work_queue.probe(work_queue.queue_client(settings.jobs, name, run.credential))
        return [Check("queues", OK, f"queue '{name}' takes a message (sent and deleted at once)")]

    return guarded("job_store", fix, table) + guarded("queues", fix, queues)


def api_auth_check(run: Run) -> list[Check]:
    """Who may call the HTTP API; with Entra ID on, the tenant's signing keys must be within reach,
    or every call would answer 503."""
    policy = run.settings.token_policy
    if policy is None:
        return [Check("api_auth", OK, "the HTTP API takes a function key alone (AUTH_CLIENT_ID is not set)")]

    def keys() -> list[Check]:
        signing_keys(policy).issuers()
        found = f"callers need an Entra ID token for api://{policy.client_id} with the route's app role"
        return [Check("api_auth", OK, found + "; the tenant's signing keys were fetched")]

    fix = "Check AUTH_TENANT_ID and AUTH_AUTHORITY_HOST, and that the app reaches that host (outbound https)."
    return guarded("api_auth", fix, keys)


def schedule_checks(run: Run, now: dt.datetime) -> tuple[list[Check], dict[str, list[dt.datetime]]]:
    """Each timer's schedule, with its next three firings in UTC (the host reads NCRONTAB in UTC)."""
    checks, firings = [], {}
    for name in SCHEDULE_SETTINGS:
        expression = run.settings.schedules.get(name)
        if not expression:
            checks.append(
                Check(
                    "schedule",
                    FAILED,
                    f"{name} is not set: its timer function cannot start",
                    f"Set {name} (for example '0 0 2 * * *', 02:00 UTC daily).",
                    details={"setting": name},
                )
            )
            continue
        firings[name] = Schedule.parse(expression).next_firings(now)
        if not firings[name]:
            checks.append(
                Check(
                    "schedule",
                    FAILED,
                    f"{name} '{expression}' never fires (no such day in four years)",
                    f"Set {name} to a schedule that fires, such as '0 0 2 * * *'.",
                    details={"setting": name},
                )
            )
            continue
        shown = ", ".join(f"{f:%Y-%m-%d %H:%M:%S}" for f in firings[name])
        checks.append(
            Check(
                "schedule",
                OK,
                f"{name} '{expression}': next {shown} UTC",
                details={"setting": name, "next": [f.isoformat() for f in firings[name]]},
            )
        )
    return checks, firings


def identity_name(run: Run) -> str:
    if run.interactive:
        return (
            "you, the signed-in identity (DefaultAzureCredential), not the app's: GET /api/preflight checks the app's"
        )
    client_id = run.settings.client_id
    return f"the user-assigned managed identity {client_id}" if client_id else "the system-assigned managed identity"


def run_preflight(run: Run, setup: ThreadSetup | None = None) -> Report:
    """Every check, in the order a reader fixes them: identity, schedules, secret, storage, job store,
    then each target and its newest backup. ``setup`` runs first on each worker thread (logging)."""
    now = clock.utcnow()
    checks, subject = identity_checks(run, identity_name(run))
    scheduled, firings = schedule_checks(run, now)
    checks += scheduled
    next_backup = (firings.get("BACKUP_SCHEDULE") or [None])[0]
    prunes = firings.get("PRUNE_SCHEDULE") or []
    prune_window = prunes[1] - prunes[0] if len(prunes) > 1 else None
    found, config = key_vault_check(run, next_backup)
    checks += found
    if config is not None:
        checks += storage_checks(run, config) + soft_delete_check(run, config, prune_window)
    else:
        checks.append(
            Check("storage", FAILED, "not checked: no usable storage secret", "Fix the key_vault check first.")
        )
    checks += job_store_checks(run) + api_auth_check(run)
    targets = list(run.targets)
    per_target = for_each(
        lambda t: target_checks(run, t, subject), targets, run.settings.concurrency, setup, "preflight"
    )
    checks += [check for found in per_target for check in found]
    if config is not None:
        checks += recovery_point_checks(run, now, next_backup, setup)
    return Report(tuple(checks))
