"""Clients of the emulator, built exactly as the product will build them in Azure."""

from __future__ import annotations

import uuid

from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from emulator import Emulator
from devhost.envvars import scoped_environ


def secret_client(emulator: Emulator, credential=None) -> SecretClient:
    # Key Vault's SDK checks that the challenge resource (vault.azure.net) is a suffix of the vault's
    # host; 127.0.0.1 cannot be. verify_challenge_resource=False is the SDK's documented switch for
    # that, used here for the loopback vault only.
    return SecretClient(
        emulator.env["KEY_VAULT_URL"], credential or ManagedIdentityCredential(), verify_challenge_resource=False
    )


def bearer(scope: str, client_id: str | None = None) -> dict[str, str]:
    token = ManagedIdentityCredential(client_id=client_id).get_token(scope).token
    return {"Authorization": f"Bearer {token}"}


def arm_pipeline(emulator: Emulator, credential=None):
    """azure-mgmt-core's ARM pipeline (retries honouring Retry-After, ARM challenge auth, logging redaction)."""
    from azure.core.pipeline import policies
    from azure.mgmt.core import ARMPipelineClient
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

    credential = credential or ManagedIdentityCredential()
    return ARMPipelineClient(
        base_url=emulator.env["ARM_ENDPOINT"],
        policies=[
            policies.RequestIdPolicy(),
            policies.HeadersPolicy(),
            policies.UserAgentPolicy(sdk_moniker="mccf-backup-tests"),
            policies.RetryPolicy(retry_backoff_factor=0.1),
            ARMChallengeAuthenticationPolicy(credential, "https://management.azure.com/.default"),
            ARMHttpLoggingPolicy(),
        ],
    )


def mgmt_client(emulator: Emulator, credential=None, **kwargs):
    """Microsoft's generated Managed CCF client, as an independent check of the ARM surface."""
    from azure.mgmt.confidentialledger import ConfidentialLedger

    return ConfidentialLedger(
        credential or ManagedIdentityCredential(),
        emulator.env["AZURE_SUBSCRIPTION_ID"],
        base_url=emulator.env["ARM_ENDPOINT"],
        polling_interval=0,
        **kwargs,
    )


def file_service_sas_url(emulator: Emulator, permission: str = "rwdlc", minutes: int = 30, resource_types=None) -> str:
    import datetime as dt

    from azure.storage.fileshare import AccountSasPermissions, ResourceTypes, generate_account_sas

    sas = generate_account_sas(
        emulator.env["STORAGE_ACCOUNT_NAME"],
        emulator.account_keys[emulator.env["STORAGE_ACCOUNT_NAME"]],
        resource_types or ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions.from_string(permission),
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes),
    )
    return f"{emulator.file_endpoint}?{sas}"


def emulator_env(emulator: Emulator):
    """Point the SDKs (identity endpoint, CA bundle) at this emulator for the block, then restore."""
    return scoped_environ(emulator.env)


def new_instance(emulator, app: str | None = None, rg: str = "rg-tests") -> tuple[str, str]:
    app = app or f"app-{uuid.uuid4().hex[:8]}"
    from azure.mgmt.confidentialledger.models import ManagedCCF, ManagedCCFProperties

    client = mgmt_client(emulator)
    client.managed_ccf.begin_create(
        rg, app, ManagedCCF(location="eastus", properties=ManagedCCFProperties(node_count=3))
    ).result()
    return rg, app
