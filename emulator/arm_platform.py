"""The two ARM resources outside Microsoft.ConfidentialLedger that mccf-backup's preflight reads.

- ``Microsoft.Authorization/permissions`` (api-version 2022-04-01, "Permissions - List For Resource"
  and "List For Resource Group"): what the caller may do at a scope. Derived from the emulator's
  deny list, so a test that denies an action sees it both refused and reported: an identity with
  every action denied has no role at all (``value: []``), otherwise it holds ``*`` minus its denials,
  as an Owner with a deny assignment would.
- ``Microsoft.Storage/storageAccounts/{account}/fileServices/default`` (GET): the share soft delete
  policy of the emulated storage account, from ``ArmOptions.share_soft_delete``.

No swagger for either is in tests/specs, so their traffic is not replayed through oav; their shapes
follow the published REST reference (``value[].actions/notActions/dataActions/notDataActions``;
``properties.shareDeleteRetentionPolicy.enabled/days``).
"""

from __future__ import annotations

import re

from .arm import ArmError

_SUB_RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
PLATFORM_ROUTES = [
    (
        "permissions",
        re.compile(
            _SUB_RG + r"(?:/providers/Microsoft\.ConfidentialLedger/(?P<type>managedCCFs|ledgers)/(?P<name>[^/]+))?"
            r"/providers/Microsoft\.Authorization/permissions/?",
            re.I,
        ),
    ),
    (
        "file_services",
        re.compile(
            _SUB_RG + r"/providers/Microsoft\.Storage/storageAccounts/(?P<account>[^/]+)/fileServices/default/?", re.I
        ),
    ),
]
PLATFORM_API_VERSIONS = {
    "permissions": ("2015-07-01", "2018-01-01-preview", "2022-04-01"),
    "file_services": ("2022-09-01", "2023-01-01", "2023-05-01", "2024-01-01"),
}
STORAGE_RESOURCE_GROUP = "rg-mccf-backup"
STORAGE_ACCOUNT = "mccfbackupemu"  # the emulated backup storage account


def permissions(denied: set[str]) -> dict:
    """The caller's permissions at any scope, from its denied actions."""
    if "*" in denied:
        return {"value": []}
    return {
        "value": [
            {"actions": ["*"], "notActions": sorted(denied), "dataActions": [], "notDataActions": []},
        ]
    }


def file_services(groups: dict, account: str, policy: dict) -> dict:
    """The file service of the emulated account; any other account does not exist."""
    if groups["account"].lower() != account.lower():
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.Storage/storageAccounts/{groups['account']}' under resource group "
            f"'{groups['rg']}' was not found.",
        )
    resource_id = (
        f"/subscriptions/{groups['sub']}/resourceGroups/{groups['rg']}/providers/Microsoft.Storage/"
        f"storageAccounts/{account}/fileServices/default"
    )
    return {
        "id": resource_id,
        "name": "default",
        "type": "Microsoft.Storage/storageAccounts/fileServices",
        "properties": {
            "shareDeleteRetentionPolicy": dict(policy),
            "protocolSettings": {"smb": {}},
            "cors": {"corsRules": []},
        },
    }
