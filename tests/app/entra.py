"""Tokens for the app's API, got as real callers get them: azure-identity against the emulator's Entra ID."""

from __future__ import annotations

from azure.identity import ClientSecretCredential, ManagedIdentityCredential

from emulator import Emulator
from emulator.tokens import TENANT_ID


def client_token(emulator: Emulator, *roles: str) -> str:
    """A v2.0 token for an app registration holding ``roles``, as an operator's tool gets it."""
    client = emulator.directory.register_client(list(roles))
    credential = ClientSecretCredential(
        TENANT_ID,
        client.client_id,
        client.secret,
        authority=emulator.url("login"),
        disable_instance_discovery=True,
    )
    return credential.get_token(f"api://{emulator.directory.api_client_id}/.default").token


def identity_token(emulator: Emulator, *roles: str) -> str:
    """A v1.0 token from a managed identity holding ``roles``, as a Logic App's identity sends it."""
    emulator.directory.assign(emulator.user_identity.object_id, list(roles))
    credential = ManagedIdentityCredential(client_id=emulator.user_identity.client_id)
    return credential.get_token(f"api://{emulator.directory.api_client_id}/.default").token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
