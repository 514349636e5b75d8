"""Who may call what: App Service Authentication (Easy Auth) app roles on top of function keys.

Function keys stay the baseline. When App Service Authentication is on (App Service then sets
WEBSITE_AUTH_ENABLED and strips any X-MS-CLIENT-PRINCIPAL a caller sends), the principal it
injects must carry the app role a route needs. When it is off, the header is ignored: anyone with
a function key could forge it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Mapping

from .errors import RestoreDisabled, RoleMissing, Unauthenticated
from .settings import Settings

ROLE_CLAIM_TYPES = {"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
NAME_CLAIM_TYPES = ("name", "preferred_username", "upn", "appid", "azp", "oid")


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]


def principal_from(headers: Mapping[str, str]) -> Principal | None:
    encoded = next((v for k, v in headers.items() if k.lower() == "x-ms-client-principal"), None)
    if not encoded:
        return None
    try:
        document = json.loads(base64.b64decode(encoded, validate=False))
        claims = document.get("claims") or []
        role_type = document.get("role_typ")
    except (ValueError, binascii.Error, AttributeError) as exc:
        raise Unauthenticated("The X-MS-CLIENT-PRINCIPAL header is not a valid App Service principal.") from exc
    roles = frozenset(str(c.get("val")) for c in claims if c.get("typ") in ROLE_CLAIM_TYPES | {role_type})
    by_type = {c.get("typ"): str(c.get("val")) for c in claims}
    header_name = next((v for k, v in headers.items() if k.lower() == "x-ms-client-principal-name"), None)
    name = header_name or next((by_type[t] for t in NAME_CLAIM_TYPES if by_type.get(t)), "unknown principal")
    return Principal(name[:256], roles)


def authorize(headers: Mapping[str, str], action: str, settings: Settings) -> str:
    """Check the caller may do ``action`` (read | backup | restore); return who the caller is."""
    if action == "restore" and not settings.restore_enabled:
        raise RestoreDisabled("Restore is switched off for this deployment (RESTORE_ENABLED=false).")
    if not settings.easy_auth_enabled:
        return "function-key"
    principal = principal_from(headers)
    if principal is None:
        raise Unauthenticated("App Service Authentication is on, but the request carries no signed-in principal.")
    role = settings.roles[action]
    if role not in principal.roles:
        raise RoleMissing(
            f"The caller '{principal.name}' lacks the app role '{role}' needed to {action}.", field="role"
        )
    return principal.name
