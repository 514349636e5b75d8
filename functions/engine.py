"""The engine, imported on first use rather than when the Functions host indexes the app.

Indexing imports function_app and every blueprint before the first invocation (the cold start);
the engine pulls in the Azure SDKs (Storage, Tables, Queues, Key Vault, identity, ARM core), which
no trigger needs until it runs. bench/coldstart measures the difference. Once imported, one engine
serves every invocation of the process.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from mccf_backup.restore_checks import RestoreRequest
    from mccf_backup.service import BackupService
    from mccf_backup.settings import Settings


_services: dict[tuple[str, int], "BackupService"] = {}
_lock = threading.Lock()
MAX_CACHED_SERVICES = 4  # one per distinct configuration; a host has one, tests several


def service_from_environment() -> "BackupService":
    """The engine for this process's settings, built once and reused by every invocation: its
    connection pools to ARM, Storage and the job table outlive one invocation, which matters when the
    operations queue runs thousands of short steps. Settings are read every time, so a changed app
    setting (or a new credential) gets a new engine."""
    from mccf_backup.identity import get_credential
    from mccf_backup.service import BackupService
    from mccf_backup.settings import Settings

    settings = Settings.from_env()
    credential = get_credential(settings.client_id)
    key = (repr(settings), id(credential))
    with _lock:
        service = _services.get(key)
        if service is None:
            if len(_services) >= MAX_CACHED_SERVICES:
                _services.clear()
            service = _services[key] = BackupService(settings, credential)
        return service


def authorize(headers: Mapping[str, str], action: str, settings: "Settings") -> str:
    from mccf_backup.authz import authorize as check

    return check(headers, action, settings)


def restore_request(**fields) -> "RestoreRequest":
    from mccf_backup.restore_checks import RestoreRequest

    return RestoreRequest(**fields)
