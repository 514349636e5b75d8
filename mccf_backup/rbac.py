"""The ARM actions mccf-backup calls, and whether a set of ARM permissions allows them.

One list for the code, the infra's custom role (tests/infra compares them) and the preflight, which
compares it with what ARM reports as the identity's effective permissions at each target
(``Microsoft.Authorization/permissions``): a missing action shows before the 02:00 backup needs it.
"""

from __future__ import annotations

import re
from functools import lru_cache

NAMESPACE = "Microsoft.ConfidentialLedger"
RESOURCE_TYPES = ("managedCCFs", "ledgers")


def read_backup_restore(resource_type: str) -> tuple[str, ...]:
    """What every backup and restore of this resource type calls."""
    return tuple(f"{NAMESPACE}/{resource_type}/{action}" for action in ("read", "backup/action", "restore/action"))


def delete_for_replace(resource_type: str) -> tuple[str, ...]:
    """What a replace-restore (ALLOW_REPLACE_RESTORE) calls in addition."""
    return (f"{NAMESPACE}/{resource_type}/delete",)


def required_actions(resource_type: str, replace_allowed: bool) -> tuple[str, ...]:
    return read_backup_restore(resource_type) + (delete_for_replace(resource_type) if replace_allowed else ())


@lru_cache(maxsize=256)
def _pattern(action_pattern: str) -> re.Pattern[str]:
    """ARM's action wildcards: ``*`` matches any run of characters; names compare case-insensitively."""
    return re.compile(".*".join(re.escape(part) for part in action_pattern.split("*")), re.I)


def allows(permissions: list[dict], action: str) -> bool:
    """True when one permission entry grants ``action`` and does not take it back in ``notActions``
    (ARM's effective permissions: the union of each role's actions minus its own notActions)."""
    for entry in permissions:
        granted = any(_pattern(str(p)).fullmatch(action) for p in entry.get("actions") or [])
        revoked = any(_pattern(str(p)).fullmatch(action) for p in entry.get("notActions") or [])
        if granted and not revoked:
            return True
    return False
