"""App settings, read from the environment once and validated together.

One contract for the Functions app, the CLI and the emulator (docs/operations.md lists every setting). All
problems are reported at once, each naming its setting, so a misconfigured deployment is fixed in
one pass rather than one restart per mistake.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping
from urllib.parse import urlsplit

from .entra_tokens import TokenPolicy
from .errors import MccfBackupError, SettingsInvalid
from .retention import RetentionPolicy
from .schedules import Schedule, ScheduleInvalid
from .inputs import GUID, REGION
from .targets import Target, TargetSet, parse_targets

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
DEFAULT_API_VERSION = "2023-06-28-preview"  # the version Microsoft's backup/restore procedure uses
DEFAULT_CONCURRENCY = 8
DEFAULT_OPERATION_TIMEOUT_MINUTES = 60
DEFAULT_ARM_TIMEOUT_SECONDS = 60
DEFAULT_LOST_OPERATION_GRACE_SECONDS = 900
DEFAULT_QUEUE_NAME = "mccfbackup-targets"
DEFAULT_OPERATIONS_QUEUE_NAME = "mccfbackup-operations"
FANOUT_MODES = ("inline", "queue")
DEFAULT_JOBS_TABLE = "mccfbackupjobs"
DEFAULT_RPO_HOURS = 26
DEFAULT_PIN_WARNING_DAYS = 14
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"  # the public cloud's Entra ID
DEFAULT_ROLES = {
    "read": "Backup.Read",
    "backup": "Backup.Operator",
    "restore": "Restore.Operator",
}  # a daily schedule plus two hours of slack
# RETENTION_OVERRIDES keys (JSON) -> RetentionPolicy fields
_POLICY_FIELDS = {
    "keepLast": "keep_last",
    "daily": "daily",
    "weekly": "weekly",
    "monthly": "monthly",
    "maxAgeDays": "max_age_days",
    "minAgeHours": "min_age_hours",
    "maxDeleteFraction": "max_delete_fraction",
}
_SECRET_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_STORAGE_ACCOUNT_ID = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w.()]{1,90}/providers/Microsoft\.Storage/storageAccounts/[a-z0-9]{3,24}",
    re.I,
)
SCHEDULE_SETTINGS = ("BACKUP_SCHEDULE", "PRUNE_SCHEDULE", "HEALTH_SCHEDULE", "VERIFY_SCHEDULE", "SWEEP_SCHEDULE")
_QUEUE_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class JobStoreLocation:
    """Where the job history lives: the Functions storage account (AzureWebJobsStorage)."""

    connection_string: str | None = None
    table_endpoint: str | None = None  # identity-based connection (AzureWebJobsStorage__tableServiceUri)
    table_name: str = DEFAULT_JOBS_TABLE
    queue_endpoint: str | None = None  # identity-based connection (AzureWebJobsStorage__queueServiceUri)


@dataclass(frozen=True)
class Settings:
    targets: tuple[Target, ...]
    key_vault_url: str
    storage_secret_name: str
    jobs: JobStoreLocation
    arm_endpoint: str = DEFAULT_ARM_ENDPOINT
    api_version: str = DEFAULT_API_VERSION
    restore_region: str | None = None
    client_id: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    operation_timeout_minutes: int = DEFAULT_OPERATION_TIMEOUT_MINUTES
    arm_timeout_seconds: int = DEFAULT_ARM_TIMEOUT_SECONDS
    lost_operation_grace_seconds: int = DEFAULT_LOST_OPERATION_GRACE_SECONDS
    fanout: str = "inline"  # inline: the timer backs up every target; queue: one queue message per target
    queue_name: str = DEFAULT_QUEUE_NAME
    operations_queue_name: str = DEFAULT_OPERATIONS_QUEUE_NAME
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    retention_overrides: dict[str, RetentionPolicy] = field(default_factory=dict)  # resource ID (lower) -> policy
    rpo_hours: int = DEFAULT_RPO_HOURS
    allow_replace_restore: bool = False
    verify_max_per_run: int = 10
    restore_enabled: bool = True
    token_policy: TokenPolicy | None = None  # Entra ID tokens with app roles guard the API (AUTH_CLIENT_ID)
    roles: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLES))
    public_origin: str | None = None  # where callers reach the API: PUBLIC_BASE_URL, else WEBSITE_HOSTNAME
    pin_warning_days: int = DEFAULT_PIN_WARNING_DAYS  # warn this long before a golden copy stops being restorable
    schedules: dict[str, str] = field(default_factory=dict)  # the timer settings that are set, by name
    backup_storage_account_id: str | None = None  # for the preflight's look at share soft delete

    def retention_for(self, target: Target) -> RetentionPolicy:
        return self.retention_overrides.get(target.resource_id.lower(), self.retention)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        problems: list[str] = []

        def get(name: str) -> str:
            return (env.get(name) or "").strip()

        def required(name: str, what: str) -> str:
            value = get(name)
            if not value:
                problems.append(f"{name} is not set: {what}")
            return value

        def https_url(name: str, value: str) -> str:
            if value:
                parts = urlsplit(value)
                if parts.scheme != "https" or not parts.hostname:
                    problems.append(f"{name} must be an https URL, not '{value}'")
            return value.rstrip("/")

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = get(name)
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                problems.append(f"{name} must be a whole number between {low} and {high}, not '{raw}'")
                return default
            if not low <= value <= high:
                problems.append(f"{name} must be between {low} and {high}, not {value}")
            return value

        targets: tuple[Target, ...] = ()
        raw_targets = required("MCCF_TARGETS", "the ARM resource IDs of the Managed CCF instances to protect")
        if raw_targets:
            try:
                targets = parse_targets(raw_targets)
            except ValueError as exc:
                problems.append(f"MCCF_TARGETS: {exc}")
            else:
                if not targets:
                    problems.append("MCCF_TARGETS holds no resource IDs")
        key_vault_url = https_url(
            "KEY_VAULT_URL", required("KEY_VAULT_URL", "the Key Vault holding the storage secret")
        )
        secret_name = required("STORAGE_SECRET_NAME", "the Key Vault secret with the backup storage connection string")
        if secret_name and not _SECRET_NAME.fullmatch(secret_name):
            problems.append(f"STORAGE_SECRET_NAME '{secret_name}' is not a Key Vault secret name (letters, digits, -)")
        arm_endpoint = https_url("ARM_ENDPOINT", get("ARM_ENDPOINT") or DEFAULT_ARM_ENDPOINT)
        api_version = get("MCCF_API_VERSION") or DEFAULT_API_VERSION
        if not _API_VERSION.fullmatch(api_version):
            problems.append(f"MCCF_API_VERSION must look like 2023-06-28-preview, not '{api_version}'")
        region = get("RESTORE_REGION") or None
        if region and not REGION.fullmatch(region):
            problems.append(f"RESTORE_REGION '{region}' is not an Azure region name")
        schedules = {name: get(name) for name in SCHEDULE_SETTINGS if get(name)}  # the Functions host reads these
        for name, schedule in schedules.items():
            try:
                Schedule.parse(schedule)
            except ScheduleInvalid as exc:
                problems.append(f"{name} must be a six-field NCRONTAB expression (e.g. '0 0 2 * * *'): {exc}")
        storage_account_id = get("BACKUP_STORAGE_ACCOUNT_ID") or None
        if storage_account_id and not _STORAGE_ACCOUNT_ID.fullmatch(storage_account_id):
            problems.append(
                "BACKUP_STORAGE_ACCOUNT_ID must be the ARM resource ID of the backup storage account "
                "(/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Storage/storageAccounts/<name>)"
            )
        table_name = get("JOBS_TABLE_NAME") or DEFAULT_JOBS_TABLE
        if not _TABLE_NAME.fullmatch(table_name):
            problems.append(f"JOBS_TABLE_NAME '{table_name}' is not a table name (3-63 letters or digits)")
        jobs = JobStoreLocation(
            connection_string=get("AzureWebJobsStorage") or None,
            table_endpoint=get("AzureWebJobsStorage__tableServiceUri")
            or (
                f"https://{get('AzureWebJobsStorage__accountName')}.table.core.windows.net"
                if get("AzureWebJobsStorage__accountName")
                else None
            ),
            table_name=table_name,
            queue_endpoint=get("AzureWebJobsStorage__queueServiceUri")
            or (
                f"https://{get('AzureWebJobsStorage__accountName')}.queue.core.windows.net"
                if get("AzureWebJobsStorage__accountName")
                else None
            ),
        )
        if not jobs.connection_string and not jobs.table_endpoint:
            problems.append(
                "AzureWebJobsStorage is not set: the job history lives in the Functions storage account "
                "(a connection string, or AzureWebJobsStorage__accountName for an identity-based connection)"
            )
        concurrency = integer("BACKUP_CONCURRENCY", DEFAULT_CONCURRENCY, 1, 64)
        timeout = integer("BACKUP_OPERATION_TIMEOUT_MINUTES", DEFAULT_OPERATION_TIMEOUT_MINUTES, 5, 240)
        rpo_hours = integer("RPO_HOURS", DEFAULT_RPO_HOURS, 1, 24 * 90)
        arm_timeout = integer("ARM_TIMEOUT_SECONDS", DEFAULT_ARM_TIMEOUT_SECONDS, 1, 300)
        lost_grace = integer("LOST_OPERATION_GRACE_SECONDS", DEFAULT_LOST_OPERATION_GRACE_SECONDS, 10, 14400)
        fanout = get("BACKUP_FANOUT").lower() or "inline"
        if fanout not in FANOUT_MODES:
            problems.append(f"BACKUP_FANOUT must be one of {', '.join(FANOUT_MODES)}, not '{fanout[:20]}'")
        queue_name = get("BACKUP_QUEUE_NAME") or DEFAULT_QUEUE_NAME
        operations_queue = get("OPERATIONS_QUEUE_NAME") or DEFAULT_OPERATIONS_QUEUE_NAME
        for setting, value in (("BACKUP_QUEUE_NAME", queue_name), ("OPERATIONS_QUEUE_NAME", operations_queue)):
            if not _QUEUE_NAME.fullmatch(value):
                problems.append(
                    f"{setting} '{value[:70]}' is not a queue name (3-63 lower-case letters, digits, single hyphens)"
                )
        if queue_name == operations_queue:
            problems.append("BACKUP_QUEUE_NAME and OPERATIONS_QUEUE_NAME must name two different queues")
        verify_max = integer("VERIFY_MAX_PER_RUN", 10, 0, 1000)
        pin_warning_days = integer("PIN_WARNING_DAYS", DEFAULT_PIN_WARNING_DAYS, 1, 89)
        restore_enabled = get("RESTORE_ENABLED").lower()
        if restore_enabled not in ("", "true", "false"):
            problems.append(f"RESTORE_ENABLED must be true or false, not '{restore_enabled}'")
        roles = {
            "read": get("ROLE_READ") or DEFAULT_ROLES["read"],
            "backup": get("ROLE_BACKUP") or DEFAULT_ROLES["backup"],
            "restore": get("ROLE_RESTORE") or DEFAULT_ROLES["restore"],
        }
        allow_replace = get("ALLOW_REPLACE_RESTORE").lower()
        if allow_replace not in ("", "true", "false"):
            problems.append(f"ALLOW_REPLACE_RESTORE must be true or false, not '{allow_replace}'")
        defaults = RetentionPolicy()
        fraction_raw = get("RETENTION_MAX_DELETE_FRACTION")
        fraction = defaults.max_delete_fraction
        if fraction_raw:
            try:
                fraction = float(fraction_raw)
            except ValueError:
                fraction = -1.0
            if not 0 <= fraction <= 1:
                problems.append(f"RETENTION_MAX_DELETE_FRACTION must be between 0 and 1, not '{fraction_raw}'")
                fraction = defaults.max_delete_fraction
        retention = RetentionPolicy(
            keep_last=integer("RETENTION_KEEP_LAST", defaults.keep_last, 0, 1000),
            daily=integer("RETENTION_DAILY", defaults.daily, 0, 1000),
            weekly=integer("RETENTION_WEEKLY", defaults.weekly, 0, 520),
            monthly=integer("RETENTION_MONTHLY", defaults.monthly, 0, 240),
            max_age_days=integer("RETENTION_MAX_AGE_DAYS", defaults.max_age_days, 0, 36500),
            min_age_hours=integer("RETENTION_MIN_AGE_HOURS", defaults.min_age_hours, 0, 24 * 365),
            max_delete_fraction=fraction,
        )
        overrides = _retention_overrides(get("RETENTION_OVERRIDES"), targets, retention, problems)
        public_origin = _public_origin(get("PUBLIC_BASE_URL"), get("WEBSITE_HOSTNAME"), problems)
        token_policy = _token_policy(get, problems)  # a broken one must stop the app, never switch auth off
        if problems:
            raise SettingsInvalid("Invalid app settings:\n- " + "\n- ".join(problems))
        return cls(
            targets=targets,
            key_vault_url=key_vault_url,
            storage_secret_name=secret_name,
            jobs=jobs,
            arm_endpoint=arm_endpoint,
            api_version=api_version,
            restore_region=region,
            client_id=get("AZURE_CLIENT_ID") or None,
            concurrency=concurrency,
            operation_timeout_minutes=timeout,
            arm_timeout_seconds=arm_timeout,
            lost_operation_grace_seconds=lost_grace,
            fanout=fanout,
            queue_name=queue_name,
            operations_queue_name=operations_queue,
            retention=retention,
            retention_overrides=overrides,
            rpo_hours=rpo_hours,
            allow_replace_restore=allow_replace == "true",
            verify_max_per_run=verify_max,
            restore_enabled=restore_enabled != "false",
            token_policy=token_policy,
            roles=roles,
            public_origin=public_origin,
            pin_warning_days=pin_warning_days,
            schedules=schedules,
            backup_storage_account_id=storage_account_id,
        )


LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _token_policy(get: Callable[[str], str], problems: list[str]) -> TokenPolicy | None:
    """AUTH_CLIENT_ID switches the Entra ID check on; then the tenant must be named too (the infra sets
    both). AUTH_AUTHORITY_HOST is the cloud's sign-in host, the public cloud's unless set."""
    client_id, tenant_id = get("AUTH_CLIENT_ID"), get("AUTH_TENANT_ID")
    authority = get("AUTH_AUTHORITY_HOST") or DEFAULT_AUTHORITY_HOST
    if not client_id:
        return None
    found = len(problems)
    if not GUID.fullmatch(client_id):
        problems.append("AUTH_CLIENT_ID must be the API app registration's client ID (a GUID)")
    if not GUID.fullmatch(tenant_id):
        problems.append("AUTH_TENANT_ID must be the tenant's ID (a GUID) when AUTH_CLIENT_ID is set")
    host = authority.lower().removeprefix("https://").removesuffix("/")  # an origin, like WEBSITE_HOSTNAME's
    port = host.rpartition(":")[2] if ":" in host else "443"
    if not authority.lower().startswith("https://") or not _HOST_AND_PORT.fullmatch(host) or not 0 < int(port) < 65536:
        problems.append("AUTH_AUTHORITY_HOST must be an https origin, such as https://login.microsoftonline.com")
    if len(problems) > found:
        return None
    return TokenPolicy(client_id.lower(), tenant_id.lower(), authority.rstrip("/").lower())


_HOST_AND_PORT = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?")


def public_origin_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """Only the origin, for what must answer even when other settings are wrong (the anonymous API
    document, which must never echo a settings problem): None when it cannot be told."""
    env = os.environ if env is None else env
    return _public_origin((env.get("PUBLIC_BASE_URL") or "").strip(), (env.get("WEBSITE_HOSTNAME") or "").strip(), [])


def _public_origin(public_base_url: str, website_hostname: str, problems: list[str]) -> str | None:
    """The origin of the URLs the API hands out (Location, statusUrl), from settings, never from a request.

    PUBLIC_BASE_URL names a front door or API Management in front of the app. Otherwise App Service's
    own host name (WEBSITE_HOSTNAME, set by the platform; Core Tools sets localhost:7071) over https,
    http only on loopback. Without either, URLs are paths, which clients resolve against what they called.
    """
    if public_base_url:
        parts = urlsplit(public_base_url)
        secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)
        if not parts.hostname or not secure or parts.query or parts.fragment or parts.username or parts.password:
            problems.append(
                "PUBLIC_BASE_URL must be the https URL callers reach the app at (scheme, host, optional path; "
                "no query), such as https://api.example.com/mccf-backup"
            )
            return None
        return public_base_url.rstrip("/")
    host = website_hostname.lower()
    if not _HOST_AND_PORT.fullmatch(host):
        return None  # the platform sets it; an odd value must not stop the app
    return f"{'http' if host.rsplit(':', 1)[0] in LOOPBACK else 'https'}://{host}"


def _retention_overrides(
    raw: str, targets: tuple[Target, ...], base: RetentionPolicy, problems: list[str]
) -> dict[str, RetentionPolicy]:
    """RETENTION_OVERRIDES: {"<app name or resource ID>": {"keepLast": 3, "monthly": 12, ...}, ...}."""
    if not raw:
        return {}
    try:
        document = json.loads(raw)
        if not isinstance(document, dict):
            raise ValueError("not an object")
    except ValueError:
        problems.append("RETENTION_OVERRIDES must be a JSON object of target -> policy fields")
        return {}
    allowlist = TargetSet(targets)
    overrides = {}
    for reference, fields in document.items():
        try:
            target = allowlist.resolve(reference)
            unknown = set(fields) - set(_POLICY_FIELDS)
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}; allowed: {sorted(_POLICY_FIELDS)}")
            overrides[target.resource_id.lower()] = replace(
                base, **{_POLICY_FIELDS[name]: value for name, value in fields.items()}
            )
        except (ValueError, TypeError, AttributeError) as exc:
            problems.append(f"RETENTION_OVERRIDES['{reference}']: {exc}")
        except MccfBackupError as exc:
            problems.append(f"RETENTION_OVERRIDES['{reference}']: {exc.message}")
    return overrides
