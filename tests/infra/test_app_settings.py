"""Every app setting the code reads is set by infra/main.bicep, and none of them holds a secret."""

from __future__ import annotations

import json
import re

from tests.unit.test_docs_match_code import settings_read_by_code

from .bicep import INFRA, main, resource_config

# Set by the platform, or alternatives of a setting infra sets another way.
NOT_FROM_INFRA = {
    "WEBSITE_HOSTNAME",  # App Service sets it to the app's default host name
    "AzureWebJobsStorage",  # infra uses the identity-based form, AzureWebJobsStorage__accountName
    "AzureWebJobsStorage__tableServiceUri",  # an alternative to __accountName
    "AzureWebJobsStorage__queueServiceUri",  # an alternative to __accountName
}


def infra_app_settings() -> dict:
    config = resource_config(main(), "appSettings")
    assert (
        config["name"] == "appsettings" and main()["resources"]["appSettings"]["type"] == "Microsoft.Web/sites/config"
    )
    return config["properties"]


def test_infra_sets_every_setting_the_code_reads():
    missing = settings_read_by_code() - NOT_FROM_INFRA - set(infra_app_settings())
    assert not missing, f"infra/main.bicep does not set: {sorted(missing)}"
    assert "AzureWebJobsStorage__accountName" in infra_app_settings()
    assert "AzureWebJobsStorage" not in infra_app_settings(), "the Functions storage must be identity-based"


def test_infra_puts_no_secret_in_app_settings():
    text = json.dumps(infra_app_settings())
    assert "listKeys" not in text and "AccountKey" not in text and "SharedAccessSignature" not in text


def test_parameters_file_names_only_parameters_the_template_has():
    template_parameters = main()["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(template_parameters), set(given) - set(template_parameters)
    # pycep gives every parameter a "default" key, None when the template has no default value
    required = {name for name, p in template_parameters.items() if p.get("default") is None}
    assert "environmentName" in required  # the template's one parameter without a default: the check sees it
    assert required <= set(given), f"azd would prompt for {required - set(given)}"
    # no key, secret or password passes through the parameters file (a Key Vault's name is no key)
    assert not [name for name in given if re.search(r"(?i)key$|secret|password|sas$|token$", name)]


def test_the_deployers_vault_role_follows_who_deploys():
    """CI deploys as a service principal (or with OIDC): a hard-coded principalType 'User' is refused."""
    template = main()
    officer = template["resources"]["secretsOfficer"]["config"]["config"]["properties"]
    assert officer["principalType"] == "principalType"
    allowed = next(d for d in template["parameters"]["principalType"]["decorators"] if d["type"] == "allowed")
    assert set(allowed["argument"]) == {"User", "ServicePrincipal"}
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert given["principalType"]["value"] == "${AZURE_PRINCIPAL_TYPE=User}"


def test_the_location_is_one_where_flex_consumption_runs():
    location = main()["parameters"]["location"]
    allowed = next(d for d in location["decorators"] if d["type"] == "allowed")["argument"]
    assert {"eastus", "westeurope", "swedencentral"} <= set(allowed) and "westindia" not in allowed
    assert not [region for region in allowed if region.endswith("euap")]  # canary regions: not for users
    metadata = next(d for d in location["decorators"] if d["type"] == "metadata")["argument"]
    assert "location" in json.dumps(metadata)  # azd asks for a region from this list


def test_a_second_azd_up_after_azd_down_can_name_a_new_vault_or_find_the_recovered_one():
    """After `azd down` the purge-protected vault keeps its name for 90 days: KEY_VAULT_NAME names
    another, or `az keyvault recover` brings it back and the template updates it as any existing vault
    (no createMode: a 'recover' left set would fail every later provision)."""
    template, given = main(), json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    vault = template["resources"]["vault"]["config"]
    assert "keyVaultName" in json.dumps(vault["name"]) and "createMode" not in vault["properties"]
    assert given["keyVaultName"]["value"] == "${KEY_VAULT_NAME=}"
    assert given["lockBackupStorage"]["value"] == "${LOCK_BACKUP_STORAGE=true}"
