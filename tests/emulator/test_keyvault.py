"""Key Vault secrets through azure-keyvault-secrets' SecretClient and its challenge flow."""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError

from .helpers import bearer, secret_client


def test_seeded_secret_is_a_storage_connection_string(emulator):
    secret = secret_client(emulator).get_secret(emulator.env["STORAGE_SECRET_NAME"])
    assert secret.value == emulator.connection_string()
    assert "AccountKey=" in secret.value
    assert secret.properties.content_type == "storage-connection-string"


def test_set_then_get_latest_and_by_version_and_list_versions(emulator):
    client = secret_client(emulator)
    first = client.set_secret("rotating", "one")
    second = client.set_secret("rotating", "two", content_type="text/plain")
    assert client.get_secret("rotating").value == "two"
    assert client.get_secret("rotating", first.properties.version).value == "one"
    versions = {p.version for p in client.list_properties_of_secret_versions("rotating")}
    assert versions == {first.properties.version, second.properties.version}


def test_missing_secret_is_secret_not_found(emulator):
    with pytest.raises(ResourceNotFoundError) as info:
        secret_client(emulator).get_secret("does-not-exist")
    assert info.value.error.code == "SecretNotFound"


def test_unauthenticated_request_gets_the_bearer_challenge(emulator):
    response = requests.get(f"{emulator.env['KEY_VAULT_URL']}secrets/x?api-version=7.5", timeout=5)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer authorization=")
    assert 'resource="https://vault.azure.net"' in challenge


def test_token_for_another_audience_is_refused(emulator):
    headers = bearer("https://management.azure.com/.default")
    name = emulator.env["STORAGE_SECRET_NAME"]
    response = requests.get(
        f"{emulator.env['KEY_VAULT_URL']}secrets/{name}?api-version=7.5", headers=headers, timeout=5
    )
    assert response.status_code == 401
    assert "value" not in response.text
    good = requests.get(
        f"{emulator.env['KEY_VAULT_URL']}secrets/{name}?api-version=7.5",
        headers=bearer("https://vault.azure.net/.default"),
        timeout=5,
    )
    assert good.status_code == 200 and good.json()["value"] == emulator.connection_string()


def test_key_vault_outage_is_an_error_not_a_value(emulator):
    emulator.faults.down("keyvault")
    client = secret_client(emulator)
    with pytest.raises(Exception) as info:
        client.get_secret(emulator.env["STORAGE_SECRET_NAME"], retry_total=0)
    assert "503" in str(info.value) or "ServiceUnavailable" in str(info.value)
