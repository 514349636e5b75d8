"""Settings are validated once, together, each problem naming its setting; targets parse strictly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mccf_backup.errors import SettingsInvalid, TargetNotAllowed
from mccf_backup.settings import Settings
from mccf_backup.targets import TargetSet, parse_target, parse_targets

SUB = "8a2c5f7e-3b1d-4c6a-9e0f-1d2b3c4d5e6f"
ID_A = f"/subscriptions/{SUB}/resourceGroups/rg-a/providers/Microsoft.ConfidentialLedger/managedCCFs/ledger-a"
ID_B = f"/subscriptions/{SUB}/resourceGroups/rg-b/providers/Microsoft.ConfidentialLedger/ledgers/ledger-b"
GOOD = {
    "MCCF_TARGETS": f"{ID_A},\n{ID_B}",
    "KEY_VAULT_URL": "https://vault-x.vault.azure.net/",
    "STORAGE_SECRET_NAME": "backup-storage",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}


def test_good_settings_and_defaults():
    settings = Settings.from_env(GOOD)
    assert [t.name for t in settings.targets] == ["ledger-a", "ledger-b"]
    assert settings.targets[1].resource_type == "ledgers"
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.api_version == "2023-06-28-preview"
    assert settings.concurrency == 8 and settings.operation_timeout_minutes == 60
    assert settings.key_vault_url == "https://vault-x.vault.azure.net"


def test_every_problem_is_reported_at_once_naming_its_setting():
    with pytest.raises(SettingsInvalid) as info:
        Settings.from_env(
            {
                "KEY_VAULT_URL": "http://vault",
                "BACKUP_CONCURRENCY": "lots",
                "MCCF_API_VERSION": "v1",
                "BACKUP_SCHEDULE": "daily",
            }
        )
    message = info.value.message
    for setting in (
        "MCCF_TARGETS",
        "KEY_VAULT_URL",
        "STORAGE_SECRET_NAME",
        "AzureWebJobsStorage",
        "BACKUP_CONCURRENCY",
        "MCCF_API_VERSION",
        "BACKUP_SCHEDULE",
    ):
        assert setting in message, setting
    assert info.value.code == "settings_invalid"


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("ledger-a", "not an ARM resource ID"),
        (f"/subscriptions/{SUB}/resourceGroups/rg", "managedCCFs"),
        (f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct", "managedCCFs"),
        (ID_A.replace(SUB, "not-a-guid"), "GUID"),
        (ID_A.replace("ledger-a", "a_b"), "app name"),
    ],
)
def test_bad_target_ids_say_what_is_wrong(value, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse_target(value)
    with pytest.raises(SettingsInvalid, match="MCCF_TARGETS"):
        Settings.from_env({**GOOD, "MCCF_TARGETS": value})


def test_identity_based_job_store_and_limits():
    env = {k: v for k, v in GOOD.items() if k != "AzureWebJobsStorage"}
    settings = Settings.from_env({**env, "AzureWebJobsStorage__accountName": "funcstore"})
    assert settings.jobs.table_endpoint == "https://funcstore.table.core.windows.net"
    with pytest.raises(SettingsInvalid, match="BACKUP_CONCURRENCY must be between 1 and 64"):
        Settings.from_env({**GOOD, "BACKUP_CONCURRENCY": "0"})


def test_allowlist_resolves_names_and_ids_case_insensitively_and_refuses_others():
    targets = TargetSet(parse_targets(f"{ID_A},{ID_A.upper().replace('SUBSCRIPTIONS', 'subscriptions')}"))
    assert len(targets) == 1  # duplicates differing only in case are one target
    assert targets.resolve("LEDGER-A").resource_id == ID_A
    assert targets.resolve(ID_A.lower()).name == "ledger-a"
    with pytest.raises(TargetNotAllowed, match="MCCF_TARGETS"):
        targets.resolve("ledger-z")
    with pytest.raises(TargetNotAllowed):
        targets.resolve(ID_A.replace("rg-a", "rg-other"))


def test_engine_never_imports_azure_functions():
    code = (
        "import sys, mccf_backup.service, mccf_backup.cli, mccf_backup.catalog, mccf_backup.jobs;"
        "assert 'azure.functions' not in sys.modules, 'engine imported azure.functions'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
