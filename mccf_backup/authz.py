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
from .inputs import caller_name
from .settings import Settings

ROLE_CLAIM_TYPES = {"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
NAME_CLAIM_TYPES = ("name", "preferred_username", "upn", "appid", "azp", "oid")


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]


def principal_from(headers: Mapping[str, str]) -> Principal | None:
    """The principal App Service put in the request, or None; anything else is refused as unauthenticated.

    The header is Base64 JSON ``{"claims": [{"typ": ..., "val": ...}], "role_typ": ...}``. Any other
    shape (claims that are not a list of objects with string values, a body that is not an object)
    did not come from App Service, so it proves no one.
    """
    encoded = next((v for k, v in headers.items() if k.lower() == "x-ms-client-principal"), None)
    if not encoded:
        return None
    try:
        document = json.loads(base64.b64decode(encoded, validate=False))
    except (ValueError, binascii.Error) as exc:
        raise _not_a_principal() from exc
    except RecursionError:  # refused below, outside this block: no exception keeps the parser's frames
        document = None
    claims = document.get("claims") if isinstance(document, dict) else None
    role_type = document.get("role_typ") if isinstance(document, dict) else None
    if not isinstance(claims, list) or not all(_is_claim(claim) for claim in claims):
        raise _not_a_principal()
    role_types = ROLE_CLAIM_TYPES | ({role_type} if isinstance(role_type, str) else set())
    roles = frozenset(c["val"] for c in claims if c["typ"] in role_types)
    by_type = {c["typ"]: c["val"] for c in claims}
    header_name = next((v for k, v in headers.items() if k.lower() == "x-ms-client-principal-name"), None)
    name = header_name or next((by_type[t] for t in NAME_CLAIM_TYPES if by_type.get(t)), "unknown principal")
    return Principal(caller_name(name), roles)


def _is_claim(claim: object) -> bool:
    return isinstance(claim, dict) and isinstance(claim.get("typ"), str) and isinstance(claim.get("val"), str)


def _not_a_principal() -> Unauthenticated:
    return Unauthenticated("The X-MS-CLIENT-PRINCIPAL header is not a valid App Service principal.")


def authorize(headers: Mapping[str, str], action: str, settings: Settings) -> str:
    """Check the caller may do ``action`` (read | backup | restore | unpin); return who the caller is."""
    if action == "restore" and not settings.restore_enabled:
        raise RestoreDisabled("Restore is switched off for this deployment (RESTORE_ENABLED=false).")
    if not settings.easy_auth_enabled:
        return "function-key"
    principal = principal_from(headers)
    if principal is None:
        raise Unauthenticated("App Service Authentication is on, but the request carries no signed-in principal.")
    role = settings.roles["restore" if action == "unpin" else action]  # unpinning exposes a backup to deletion
    if role not in principal.roles:
        raise RoleMissing(
            f"The caller '{principal.name}' lacks the app role '{role}' needed to {action}.", field="role"
        )
    return principal.name
