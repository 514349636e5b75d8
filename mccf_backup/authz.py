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

from .entra_tokens import caller_from
from .errors import RestoreDisabled, RoleMissing
from .settings import Settings


def authorize(headers: Mapping[str, str], action: str, settings: Settings) -> str:
    """Check the caller may do ``action`` (read | backup | restore | unpin); return who the caller is."""
    if action == "restore" and not settings.restore_enabled:
        raise RestoreDisabled("Restore is switched off for this deployment (RESTORE_ENABLED=false).")
    if settings.token_policy is None:
        return "function-key"
    caller = caller_from(headers, settings.token_policy)
    role = settings.roles["restore" if action == "unpin" else action]  # unpinning exposes a backup to deletion
    if role not in caller.roles:
        whom = f"service principal or user {caller.object_id}" if caller.object_id else "caller"
        raise RoleMissing(
            f"The caller lacks the app role '{role}' needed to {action}: assign it to the {whom} "
            "on the API's app registration (docs/security.md).",
            field="role",
        )
    return caller.name


@dataclass(frozen=True)
class FollowRight:
    caller: str
    every_operation: bool  # False: only the operations this caller started

    def may_see(self, started_by: str | None) -> bool:
        return self.every_operation or started_by == self.caller


def may_follow(headers: Mapping[str, str], settings: Settings) -> FollowRight:
    """Following an operation (polling the Location of a 202). Readers see every operation; a caller who
    may start operations sees those it started, so a workflow that started a backup follows it with
    its operator role alone. Anyone else is refused before the id is even looked at."""
    if settings.token_policy is None:
        return FollowRight("function-key", every_operation=True)
    caller = caller_from(headers, settings.token_policy)
    if settings.roles["read"] in caller.roles:
        return FollowRight(caller.name, every_operation=True)
    if caller.roles & {settings.roles["backup"], settings.roles["restore"]}:
        return FollowRight(caller.name, every_operation=False)
    whom = f"service principal or user {caller.object_id}" if caller.object_id else "caller"
    raise RoleMissing(
        f"The caller lacks the app role '{settings.roles['read']}' needed to read operations (or an operator "
        f"role, to follow its own): assign it to the {whom} on the API's app registration (docs/security.md).",
        field="role",
    )
