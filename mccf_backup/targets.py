"""The Managed CCF instances this deployment protects, and the allowlist every call goes through.

Targets are ARM resource IDs parsed strictly with azure-mgmt-core's resource-id tools. Nothing a
caller sends reaches an ARM URL unless it resolves to one of the configured targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from azure.mgmt.core.tools import is_valid_resource_id, parse_resource_id

from .errors import TargetNotAllowed
from .inputs import APP_NAME, GUID, target_reference

NAMESPACE = "Microsoft.ConfidentialLedger"
RESOURCE_TYPES = {"managedccfs": "managedCCFs", "ledgers": "ledgers"}


@dataclass(frozen=True)
class Target:
    subscription: str
    resource_group: str
    resource_type: str  # "managedCCFs" or "ledgers"
    name: str

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/"
            f"{NAMESPACE}/{self.resource_type}/{self.name}"
        )

    @property
    def share_prefix(self) -> str:
        """Backup shares are named ``<app>-<timestamp>``; share names are lower case."""
        return f"{self.name.lower()}-"

    def __str__(self) -> str:
        return self.resource_id


def parse_target(value: str) -> Target:
    """Parse one ARM resource ID of a Managed CCF (or ledger); ValueError says what is wrong."""
    text = value.strip()
    if not is_valid_resource_id(text):
        raise ValueError(f"'{text}' is not an ARM resource ID (/subscriptions/<id>/resourceGroups/<rg>/providers/...)")
    parts = parse_resource_id(text)
    namespace, resource_type = parts.get("namespace", ""), parts.get("type", "")
    if namespace.lower() != NAMESPACE.lower() or resource_type.lower() not in RESOURCE_TYPES:
        raise ValueError(f"'{text}' is not a {NAMESPACE}/managedCCFs (or /ledgers) resource ID")
    if parts.get("children") or parts.get("child_name_1"):
        raise ValueError(f"'{text}' names a child resource; give the Managed CCF's own resource ID")
    if not GUID.fullmatch(parts["subscription"]):
        raise ValueError(f"'{text}' has a subscription that is not a GUID")
    if not APP_NAME.fullmatch(parts["name"]):
        raise ValueError(f"'{text}' has an invalid app name (3-32 letters, digits or hyphens)")
    return Target(parts["subscription"], parts["resource_group"], RESOURCE_TYPES[resource_type.lower()], parts["name"])


def parse_targets(value: str) -> tuple[Target, ...]:
    """Targets separated by commas or newlines; duplicates (case-insensitive) are kept once."""
    seen: dict[str, Target] = {}
    for item in re.split(r"[,\n]", value):
        if item.strip():
            target = parse_target(item)
            seen.setdefault(target.resource_id.lower(), target)
    return tuple(seen.values())


class TargetSet:
    """The allowlist: resolve a caller's app name or resource ID to a configured target."""

    def __init__(self, targets: tuple[Target, ...]) -> None:
        self.targets = targets

    def __iter__(self):
        return iter(self.targets)

    def __len__(self) -> int:
        return len(self.targets)

    def find(self, resource_id: str) -> Target | None:
        """The configured target with this resource ID (any case), or None."""
        wanted = (resource_id or "").lower()
        return next((t for t in self.targets if t.resource_id.lower() == wanted), None)

    def resolve(self, reference: str) -> Target:
        """The target a caller named; the name is checked first, so the refusals below may quote it."""
        text = target_reference(reference)
        if text.startswith("/"):
            matches = [t for t in self.targets if t.resource_id.lower() == text.lower()]
        else:
            matches = [t for t in self.targets if t.name.lower() == text.lower()]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise TargetNotAllowed(
                f"App name '{text}' matches {len(matches)} configured targets; name it by resource ID.", target=text
            )
        raise TargetNotAllowed(
            f"'{text}' is not one of the targets this app protects; check MCCF_TARGETS "
            f"(it has {len(self.targets)} resource IDs).",
            target=text,
        )
