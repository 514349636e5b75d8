"""Every app setting the code reads is set by infra/main.bicep (issue 7 in progress: syntax and policy
checks of the Bicep come next)."""

from __future__ import annotations

import re
from pathlib import Path

from .test_docs_match_code import settings_read_by_code

REPO = Path(__file__).resolve().parents[2]
# Set by the platform, or alternatives of a setting infra sets another way.
NOT_FROM_INFRA = {
    "WEBSITE_AUTH_ENABLED",  # App Service sets it when App Service Authentication is on
    "AzureWebJobsStorage",  # infra uses the identity-based form, AzureWebJobsStorage__accountName
    "AzureWebJobsStorage__tableServiceUri",  # an alternative to __accountName
}


def infra_app_settings() -> set[str]:
    text = (REPO / "infra" / "main.bicep").read_text()
    block = text[text.index("name: 'appsettings'") :]
    block = block[block.index("properties: {") + len("properties: {") : block.index("\n    }\n")]
    return set(re.findall(r"^\s+([A-Za-z_][A-Za-z0-9_]*):", block, re.M))


def test_infra_sets_every_setting_the_code_reads():
    missing = settings_read_by_code() - NOT_FROM_INFRA - infra_app_settings()
    assert not missing, f"infra/main.bicep does not set: {sorted(missing)}"
    assert "AzureWebJobsStorage__accountName" in infra_app_settings()


def test_infra_puts_no_secret_in_app_settings():
    settings_block = (REPO / "infra" / "main.bicep").read_text().split("name: 'appsettings'")[1]
    assert "listKeys" not in settings_block and "AccountKey" not in settings_block
