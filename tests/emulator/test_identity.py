"""Managed identity endpoint driven by azure-identity's real credentials."""

from __future__ import annotations

import time

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

ARM_SCOPE = "https://management.azure.com/.default"


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_system_assigned_token_carries_audience_client_and_expiry(emulator):
    token = ManagedIdentityCredential().get_token(ARM_SCOPE)
    decoded = claims(token.token)
    assert decoded["aud"] == "https://management.azure.com"
    assert decoded["appid"] == emulator.system_identity.client_id
    assert token.expires_on > time.time() + 3600
    assert decoded["exp"] == token.expires_on


def test_user_assigned_identity_is_selected_by_client_id(emulator):
    credential = ManagedIdentityCredential(client_id=emulator.user_identity.client_id)
    decoded = claims(credential.get_token("https://vault.azure.net/.default").token)
    assert decoded["appid"] == emulator.user_identity.client_id
    assert decoded["aud"] == "https://vault.azure.net"


def test_unknown_client_id_is_refused(emulator):
    credential = ManagedIdentityCredential(client_id="00000000-0000-0000-0000-0000000000ff")
    with pytest.raises(ClientAuthenticationError):
        credential.get_token(ARM_SCOPE)


def test_default_credential_uses_the_app_service_protocol(emulator):
    credential = DefaultAzureCredential(
        exclude_cli_credential=True,
        exclude_powershell_credential=True,
        exclude_developer_cli_credential=True,
        exclude_visual_studio_code_credential=True,
        exclude_shared_token_cache_credential=True,
    )
    decoded = claims(credential.get_token("https://storage.azure.com/.default").token)
    assert decoded["aud"] == "https://storage.azure.com"


def test_identity_header_is_required(emulator):
    url = emulator.env["IDENTITY_ENDPOINT"]
    params = {"api-version": "2019-08-01", "resource": "https://management.azure.com"}
    assert requests.get(url, params=params, timeout=5).status_code == 401
    wrong = requests.get(url, params=params, headers={"X-IDENTITY-HEADER": "nope"}, timeout=5)
    assert wrong.status_code == 401
    right = requests.get(url, params=params, headers={"X-IDENTITY-HEADER": emulator.identity_header}, timeout=5)
    assert right.status_code == 200
    assert right.json()["token_type"] == "Bearer"


def test_identity_outage_surfaces_as_authentication_error(emulator):
    emulator.faults.down("identity")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential(client_id=emulator.user_identity.client_id).get_token("https://x.example/.default")
