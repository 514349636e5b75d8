"""The emulator's Entra ID, driven by azure-identity (MSAL underneath) as callers of the API drive it."""

from __future__ import annotations

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError

from emulator.entra import client_credential
from emulator.tokens import ISSUER, TENANT_ID


def credential(emulator, client_id: str, secret: str):
    return client_credential(emulator.url("login"), client_id, secret)


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_a_client_gets_a_v2_token_for_the_api_with_its_roles_and_a_v1_token_for_arm_without(emulator):
    client = emulator.directory.register_client(["Backup.Read"])
    api = claims_of(
        credential(emulator, client.client_id, client.secret)
        .get_token(f"api://{emulator.directory.api_client_id}/.default")
        .token
    )
    assert api["aud"] == emulator.directory.api_client_id and api["ver"] == "2.0"
    assert api["iss"] == f"{emulator.url('login')}/{TENANT_ID}/v2.0" and api["roles"] == ["Backup.Read"]
    arm = claims_of(
        credential(emulator, client.client_id, client.secret).get_token("https://management.azure.com/.default").token
    )
    assert arm["iss"] == ISSUER and "roles" not in arm


def test_wrong_secrets_and_unknown_clients_get_entras_errors(emulator):
    client = emulator.directory.register_client()
    scope = f"api://{emulator.directory.api_client_id}/.default"
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential(emulator, client.client_id, "wrong").get_token(scope)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        credential(emulator, "00000000-0000-4000-8000-000000000000", "x").get_token(scope)


def test_the_metadata_names_the_keys_that_verify_its_tokens_also_after_a_key_roll(emulator):
    base = f"{emulator.url('login')}/{TENANT_ID}"
    bundle = emulator.ca_bundle
    for version, path in (
        ("2.0", "v2.0/.well-known/openid-configuration"),
        ("1.0", ".well-known/openid-configuration"),
    ):
        metadata = requests.get(f"{base}/{path}", verify=bundle, timeout=10).json()
        assert metadata["issuer"] == (f"{base}/v2.0" if version == "2.0" else ISSUER)
        keys = requests.get(metadata["jwks_uri"], verify=bundle, timeout=10).json()["keys"]
        client = emulator.directory.register_client()
        token = (
            credential(emulator, client.client_id, client.secret)
            .get_token(f"api://{emulator.directory.api_client_id}/.default")
            .token
        )
        key = next(k for k in keys if k["kid"] == jwt.get_unverified_header(token)["kid"])
        jwt.decode(token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=emulator.directory.api_client_id)
    old_kid = jwt.get_unverified_header(token)["kid"]
    rolled = requests.post(f"{emulator.env['EMULATOR_CONTROL_URL']}/entra/keys/roll", timeout=10).json()["kid"]
    kids = {k["kid"] for k in requests.get(metadata["jwks_uri"], verify=bundle, timeout=10).json()["keys"]}
    assert {old_kid, rolled} <= kids  # the old key stays published for the tokens already out


def test_an_unknown_tenant_or_app_role_is_refused(emulator):
    answer = requests.get(
        f"{emulator.url('login')}/not-a-tenant/v2.0/.well-known/openid-configuration",
        verify=emulator.ca_bundle,
        timeout=10,
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_tenant"
    refused = requests.post(
        f"{emulator.env['EMULATOR_CONTROL_URL']}/entra/clients", json={"roles": ["Global.Admin"]}, timeout=10
    )
    assert refused.status_code == 400
