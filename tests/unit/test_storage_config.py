"""The storage secret: connection string or SAS URL; a minted SAS is least privilege and short-lived."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.storage.fileshare import AccountSasPermissions, ResourceTypes, generate_account_sas

from mccf_backup.errors import SasUnusable, StorageSecretInvalid
from mccf_backup.redaction import redact
from mccf_backup.storage_config import BACKUP, CATALOG, RESTORE, StorageConfig

KEY = "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXk="
CONNECTION = f"DefaultEndpointsProtocol=https;AccountName=backups;AccountKey={KEY};EndpointSuffix=core.windows.net"
HOUR = dt.timedelta(hours=1)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def stored_sas(permission: str, resource_types: ResourceTypes, expiry: dt.datetime) -> str:
    token = generate_account_sas("backups", KEY, resource_types, AccountSasPermissions.from_string(permission), expiry)
    return f"https://backups.file.core.windows.net/?{token}"


def test_connection_string_gives_least_privilege_short_lived_https_sas():
    config = StorageConfig.from_secret(CONNECTION, "s")
    assert config.file_endpoint == "https://backups.file.core.windows.net"
    backup = query(config.sas_url(BACKUP, HOUR))
    assert (set(backup["sp"]), backup["srt"], backup["ss"], backup["spr"]) == ({"c", "w"}, "co", "f", "https")
    restore = query(config.sas_url(RESTORE, HOUR))
    assert (set(restore["sp"]), restore["srt"]) == ({"r", "l"}, "co")
    expiry = dt.datetime.strptime(backup["se"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    remaining = expiry - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(minutes=64) < remaining <= dt.timedelta(minutes=65)  # operation timeout + 5 min skew


def test_repr_never_shows_the_key():
    config = StorageConfig.from_secret(CONNECTION, "s")
    assert KEY not in repr(config) and KEY not in str(config)


@pytest.mark.parametrize("secret", ["", "garbage", "AccountName=x", CONNECTION.replace("https", "http")])
def test_unusable_secrets_are_refused_clearly(secret):
    with pytest.raises(StorageSecretInvalid) as info:
        StorageConfig.from_secret(secret, "my-secret")
    assert "my-secret" in info.value.message


def test_stored_sas_url_is_checked_before_use():
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    good = StorageConfig.from_secret(
        stored_sas("rwlc", ResourceTypes(service=True, container=True, object=True), later), "s"
    )
    assert good.account_name == "backups" and good.account_key is None
    assert "sig=" in good.sas_url(BACKUP, HOUR)
    read_only = StorageConfig.from_secret(stored_sas("rl", ResourceTypes(container=True, object=True), later), "s")
    with pytest.raises(SasUnusable) as info:
        read_only.sas_url(BACKUP, HOUR)
    assert "'cw' are missing from sp" in info.value.message
    with pytest.raises(SasUnusable, match="resource types 's'"):
        read_only.service_client()
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
    expiring = StorageConfig.from_secret(stored_sas("rwlc", ResourceTypes(container=True, object=True), soon), "s")
    with pytest.raises(SasUnusable, match="expires") as info:
        expiring.sas_url(BACKUP, HOUR)
    assert "sig=" not in info.value.message and expiring.sas_token.split("sig=")[1][:10] not in info.value.message
    CATALOG  # noqa: B018 - the catalog needs list+read+write on service and shares


def test_redact_scrubs_sas_keys_and_tokens():
    text = (
        "GET https://a/?sv=1&sig=abc%2Fdef&se=2 AccountKey=secret+key==; Authorization: Bearer eyJhbGciOiJSUzI1NiJ9."
        "eyJhdWQiOiJodHRwczovL3gifQ.c2ln"
    )
    cleaned = redact(text)
    assert "abc%2Fdef" not in cleaned and "secret+key" not in cleaned and "eyJhbGci" not in cleaned
