"""Who may call what: Entra ID app roles on top of function keys.

Function keys stay the baseline (the host checks them before the app runs). With AUTH_CLIENT_ID set,
every route but the anonymous API document also needs an Entra ID access token for the API's app
registration carrying the app role the route needs; the app checks the token itself
(``entra_tokens``). App Service Authentication's ``X-MS-CLIENT-PRINCIPAL`` header is never read: the
app cannot tell whether the platform put it there or a caller did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .entra_tokens import Caller, caller_from
from .errors import RestoreDisabled, RoleMissing
from .settings import Settings


ACTION_WORDS = {"read": "read", "backup": "back up, verify or pin", "restore": "restore", "unpin": "unpin"}


def authorize(headers: Mapping[str, str], action: str, settings: Settings) -> str:
    """Check the caller may do ``action`` (read | backup | restore | unpin); return who the caller is."""
    caller = caller_from(headers, settings.token_policy) if settings.token_policy else None  # who, first
    if action == "restore" and not settings.restore_enabled:
        raise RestoreDisabled("Restore is switched off for this deployment (RESTORE_ENABLED=false).")
    if caller is None:
        return "function-key"
    role = settings.roles["restore" if action == "unpin" else action]  # unpinning exposes a backup to deletion
    if role not in caller.roles:
        raise _role_missing(caller, f"the app role '{role}' needed to {ACTION_WORDS[action]}")
    return caller.name


# The kinds of operation each operator role starts over HTTP, and so may follow.
FOLLOWS = {"backup": frozenset({"backup", "verify"}), "restore": frozenset({"restore", "delete_instance"})}


@dataclass(frozen=True)
class FollowRight:
    kinds: frozenset[str] | None  # None: every operation

    def may_see(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


def may_follow(headers: Mapping[str, str], settings: Settings) -> FollowRight:
    """Following an operation (polling the Location of a 202). Readers see every operation; an operator
    role follows the kinds of operation it starts, whoever started the one at hand: a backup request
    made while the nightly backup runs joins that backup, and the workflow that asked must be able to
    follow it with Backup.Operator alone. Anyone else is refused before the id is even looked at."""
    if settings.token_policy is None:
        return FollowRight(None)
    caller = caller_from(headers, settings.token_policy)
    if settings.roles["read"] in caller.roles:
        return FollowRight(None)
    kinds = frozenset().union(*(FOLLOWS[role] for role in FOLLOWS if settings.roles[role] in caller.roles))
    if kinds:
        return FollowRight(kinds)
    raise _role_missing(
        caller,
        f"the app role '{settings.roles['read']}' needed to read operations (or an operator role, to follow what it starts)",
    )


def _role_missing(caller: Caller, lacks: str) -> RoleMissing:
    """The 403, naming whom to give the role (the object ID is a GUID the token held, checked as one)."""
    whom = f"service principal or user {caller.object_id}" if caller.object_id else "caller"
    return RoleMissing(
        f"The caller lacks {lacks}: assign it to the {whom} on the API's app registration (docs/security.md).",
        field="role",
    )
