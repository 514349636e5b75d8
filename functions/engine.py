"""The engine, imported on first use rather than when the Functions host indexes the app.

Indexing imports function_app and every blueprint before the first invocation (the cold start);
the engine pulls in the Azure SDKs (Storage, Tables, Queues, Key Vault, identity, ARM core), which
no trigger needs until it runs. bench/coldstart measures the difference. Once imported, one engine
serves every invocation of the process.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from mccf_backup.authz import FollowRight
    from mccf_backup.restore_checks import RestoreRequest
    from mccf_backup.service import BackupService
    from mccf_backup.settings import Settings


_services: dict[tuple[frozenset, int], "BackupService"] = {}
_lock = threading.Lock()
MAX_CACHED_SERVICES = 4  # one per distinct configuration; a host has one, tests several


def service_from_environment() -> "BackupService":
    """The engine for this process's settings, built once and reused by every invocation: its
    connection pools to ARM, Storage and the job table outlive one invocation, which matters when the
    operations queue runs thousands of short steps. The environment (where app settings arrive) is
    compared every time, so a changed app setting (or a new credential) gets a new engine."""
    from mccf_backup.identity import get_credential
    from mccf_backup.service import BackupService
    from mccf_backup.settings import Settings

    environment = frozenset(os.environ.items())  # app settings arrive as environment variables
    client_id = os.environ.get("AZURE_CLIENT_ID") or None
    key = (environment, id(get_credential(client_id)))
    with _lock:
        service = _services.get(key)
    if service is not None:
        return service
    settings = Settings.from_env()
    service = BackupService(settings, get_credential(settings.client_id))
    with _lock:
        if len(_services) >= MAX_CACHED_SERVICES:
            _services.clear()
        return _services.setdefault(key, service)


def authorize(headers: Mapping[str, str], action: str, settings: "Settings") -> str:
    from mccf_backup.authz import authorize as check

    return check(headers, action, settings)


def may_follow(headers: Mapping[str, str], settings: "Settings") -> "FollowRight":
    from mccf_backup.authz import may_follow as check

    return check(headers, settings)


def restore_request(**fields) -> "RestoreRequest":
    from mccf_backup.coverage import Before
    from mccf_backup.restore_checks import RestoreRequest

    if fields.get("before") is not None:
        fields["before"] = Before.from_request(fields["before"])
    return RestoreRequest(**fields)
