"""The engine, imported on first use rather than when the Functions host indexes the app.

Indexing imports function_app and every blueprint before the first invocation (the cold start);
the engine pulls in the Azure SDKs (Storage, Tables, Queues, Key Vault, identity, ARM core), which
no trigger needs until it runs. bench/coldstart measures the difference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from mccf_backup.service import BackupService
    from mccf_backup.settings import Settings


def service_from_environment() -> "BackupService":
    from mccf_backup.service import BackupService

    return BackupService.from_environment()


def authorize(headers: Mapping[str, str], action: str, settings: "Settings") -> str:
    from mccf_backup.authz import authorize as check

    return check(headers, action, settings)


def new_job_id() -> str:
    from mccf_backup.jobs import new_job_id as job_id

    return job_id()
