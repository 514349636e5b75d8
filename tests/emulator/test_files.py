"""Azure Files through azure-storage-file-share, with Shared Key, account SAS and share SAS."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError
from azure.storage.fileshare import (
    AccountSasPermissions,
    ResourceTypes,
    ShareClient,
    ShareDirectoryClient,
    ShareFileClient,
    FileSasPermissions,
    ShareSasPermissions,
    ShareServiceClient,
    generate_account_sas,
    generate_file_sas,
    generate_share_sas,
)


def service(emulator) -> ShareServiceClient:
    return ShareServiceClient.from_connection_string(emulator.connection_string())


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def account_key(emulator) -> str:
    return emulator.account_keys[emulator.env["STORAGE_ACCOUNT_NAME"]]


def account_sas(
    emulator,
    permission: str,
    resource_types: ResourceTypes | None = None,
    expiry: dt.datetime | None = None,
    start: dt.datetime | None = None,
) -> str:
    return generate_account_sas(
        emulator.env["STORAGE_ACCOUNT_NAME"],
        account_key(emulator),
        resource_types or ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions.from_string(permission),
        expiry or dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10),
        start=start,
    )


def test_share_lifecycle_metadata_and_properties(emulator):
    name = unique()
    share = service(emulator).create_share(name, metadata={"mccfbackup": "1", "target": "contoso"})
    props = share.get_share_properties()
    assert props.metadata == {"mccfbackup": "1", "target": "contoso"}
    assert props.quota > 0 and props.etag and props.last_modified
    share.set_share_metadata({"verified": "true"})
    assert share.get_share_properties().metadata == {"verified": "true"}
    with pytest.raises(ResourceExistsError):
        service(emulator).create_share(name)
    share.delete_share()
    assert name not in {s.name for s in service(emulator).list_shares(name_starts_with=name)}


def test_metadata_names_with_underscores_are_signed_and_kept(emulator):
    share = service(emulator).create_share(unique())
    share.set_share_metadata({"mccfbackup_target": "/subscriptions/x", "Job_Id": "1"})
    assert share.get_share_properties().metadata == {"mccfbackup_target": "/subscriptions/x", "Job_Id": "1"}


def test_list_shares_by_prefix_with_metadata_and_paging(emulator):
    prefix = unique("page")
    names = [f"{prefix}-{i:02d}" for i in range(7)]
    for name in names:
        service(emulator).create_share(name, metadata={"n": name[-2:]})
    pages = service(emulator).list_shares(name_starts_with=prefix, include_metadata=True, results_per_page=3).by_page()
    seen = [[(s.name, s.metadata["n"]) for s in page] for page in pages]
    assert [len(p) for p in seen] == [3, 3, 1]
    assert [n for page in seen for n, _ in page] == names
    assert all(meta == name[-2:] for page in seen for name, meta in page)


def test_directories_and_files_roundtrip_with_ranges(emulator):
    share = service(emulator).create_share(unique())
    share.create_directory("ledger")
    payload = os.urandom(5 * 1024 * 1024 + 17)  # more than one 4 MiB range
    file_client = share.get_file_client("ledger/ledger_1-4.committed")
    file_client.upload_file(payload)
    assert file_client.download_file().readall() == payload
    assert file_client.download_file(offset=100, length=50).readall() == payload[100:150]
    assert file_client.get_file_properties().size == len(payload)
    share.get_directory_client("ledger").get_file_client("empty").upload_file(b"")
    assert share.get_file_client("ledger/empty").download_file().readall() == b""
    listing = {(item.name, item.is_directory) for item in share.list_directories_and_files("ledger")}
    assert listing == {("ledger_1-4.committed", False), ("empty", False)}
    with pytest.raises(HttpResponseError) as info:
        share.get_directory_client("ledger").delete_directory()
    assert info.value.error_code == "DirectoryNotEmpty"
    file_client.delete_file()
    share.get_file_client("ledger/empty").delete_file()
    share.get_directory_client("ledger").delete_directory()
    assert list(share.list_directories_and_files()) == []


def test_directory_listing_pages(emulator):
    share = service(emulator).create_share(unique())
    for i in range(5):
        share.get_file_client(f"f{i}").upload_file(b"x")
    pages = list(share.list_directories_and_files(results_per_page=2).by_page())
    assert [len(list(p)) for p in pages] == [2, 2, 1]


def test_file_in_missing_directory_is_parent_not_found(emulator):
    share = service(emulator).create_share(unique())
    with pytest.raises(HttpResponseError) as info:
        share.get_file_client("nope/file").upload_file(b"x")
    assert info.value.error_code == "ParentNotFound"


def test_infinite_lease_blocks_delete_until_broken(emulator):
    share = service(emulator).create_share(unique())
    lease = share.acquire_lease(lease_duration=-1)
    props = share.get_share_properties()
    assert (props.lease.status, props.lease.state, props.lease.duration) == ("locked", "leased", "infinite")
    with pytest.raises(HttpResponseError) as info:
        share.delete_share()
    assert info.value.status_code == 412 and info.value.error_code == "LeaseIdMissing"
    with pytest.raises(HttpResponseError) as info:
        share.acquire_lease(lease_duration=-1)
    assert info.value.error_code == "LeaseAlreadyPresent"
    lease.break_lease()
    assert share.get_share_properties().lease.state == "broken"
    share.delete_share()


def test_lease_release_and_delete_with_lease_id(emulator):
    share = service(emulator).create_share(unique())
    lease = share.acquire_lease(lease_duration=-1)
    share.delete_share(lease=lease)
    other = service(emulator).create_share(unique())
    lease = other.acquire_lease(lease_duration=15)
    lease.release()
    assert other.get_share_properties().lease.state == "available"


def test_account_sas_allows_what_it_grants(emulator):
    sas = account_sas(emulator, "rwdlc")
    client = ShareServiceClient(emulator.file_endpoint, credential=sas)
    name = unique()
    share = client.create_share(name)
    share.get_file_client("a").upload_file(b"hello")
    assert share.get_file_client("a").download_file().readall() == b"hello"
    assert name in {s.name for s in client.list_shares(name_starts_with=name)}


def test_wrong_signature_is_authentication_failed(emulator):
    sas = account_sas(emulator, "rl")
    tampered = sas.replace("sp=rl", "sp=rwl")
    with pytest.raises(ClientAuthenticationError) as info:
        list(ShareServiceClient(emulator.file_endpoint, credential=tampered).list_shares())
    assert info.value.error_code == "AuthenticationFailed"


def test_sas_signed_with_another_key_is_refused(emulator):
    other_key = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktb3RoZXIta2V5LW90aGVyLWtleQ=="
    sas = generate_account_sas(
        emulator.env["STORAGE_ACCOUNT_NAME"],
        other_key,
        ResourceTypes(service=True),
        AccountSasPermissions(list=True),
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5),
    )
    with pytest.raises(ClientAuthenticationError) as info:
        list(ShareServiceClient(emulator.file_endpoint, credential=sas).list_shares())
    assert info.value.error_code == "AuthenticationFailed"


def test_expired_and_not_yet_valid_sas_are_refused(emulator):
    now = dt.datetime.now(dt.timezone.utc)
    for sas in (
        account_sas(emulator, "rl", expiry=now - dt.timedelta(minutes=1)),
        account_sas(emulator, "rl", start=now + dt.timedelta(hours=1), expiry=now + dt.timedelta(hours=2)),
    ):
        with pytest.raises(ClientAuthenticationError) as info:
            list(ShareServiceClient(emulator.file_endpoint, credential=sas).list_shares())
        assert info.value.error_code == "AuthenticationFailed"
        assert "time frame" in info.value.message


def test_missing_permission_is_permission_mismatch(emulator):
    share_name = unique()
    service(emulator).create_share(share_name)
    read_only = account_sas(emulator, "rl")
    with pytest.raises(HttpResponseError) as info:
        ShareFileClient(emulator.file_endpoint, share_name, "x", credential=read_only).upload_file(b"x")
    assert info.value.status_code == 403 and info.value.error_code == "AuthorizationPermissionMismatch"


def test_missing_resource_type_is_resource_type_mismatch(emulator):
    objects_only = account_sas(emulator, "rwdlc", ResourceTypes(object=True))
    with pytest.raises(HttpResponseError) as info:
        ShareServiceClient(emulator.file_endpoint, credential=objects_only).create_share(unique())
    assert info.value.error_code == "AuthorizationResourceTypeMismatch"


def test_blob_only_account_sas_is_service_mismatch(emulator):
    sas = account_sas(emulator, "rl").replace("ss=f", "ss=b")
    # Re-sign honestly for the blob service so only the service check can fail.
    from azure.storage.fileshare._shared.shared_access_signature import SharedAccessSignature

    signer = SharedAccessSignature(emulator.env["STORAGE_ACCOUNT_NAME"], account_key(emulator))
    blob_sas = signer.generate_account(
        "b",
        ResourceTypes(service=True),
        AccountSasPermissions(list=True),
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5),
    )
    assert "ss=b" in blob_sas and "ss=b" in sas
    with pytest.raises(HttpResponseError) as info:
        list(ShareServiceClient(emulator.file_endpoint, credential=blob_sas).list_shares())
    assert info.value.error_code == "AuthorizationServiceMismatch"


def test_share_sas_is_bound_to_its_share(emulator):
    mine, other = unique(), unique()
    service(emulator).create_share(mine)
    service(emulator).create_share(other)
    sas = generate_share_sas(
        emulator.env["STORAGE_ACCOUNT_NAME"],
        mine,
        account_key(emulator),
        ShareSasPermissions(read=True, write=True, create=True, list=True),
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5),
    )
    ShareFileClient(emulator.file_endpoint, mine, "f", credential=sas).upload_file(b"ok")
    assert [i.name for i in ShareClient(emulator.file_endpoint, mine, credential=sas).list_directories_and_files()] == [
        "f"
    ]
    with pytest.raises(ClientAuthenticationError) as info:
        ShareFileClient(emulator.file_endpoint, other, "f", credential=sas).upload_file(b"no")
    assert info.value.error_code == "AuthenticationFailed"
    with pytest.raises(HttpResponseError) as info:
        ShareClient(emulator.file_endpoint, mine, credential=sas).delete_share()
    assert info.value.status_code == 403


def test_bad_shared_key_is_refused(emulator):
    bad = ShareServiceClient(
        emulator.file_endpoint,
        credential={
            "account_name": emulator.env["STORAGE_ACCOUNT_NAME"],
            "account_key": "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=",
        },
    )
    with pytest.raises(ClientAuthenticationError) as info:
        list(bad.list_shares())
    assert info.value.error_code == "AuthenticationFailed"


def test_anonymous_request_is_refused(emulator):
    response = requests.get(f"{emulator.file_endpoint}?comp=list", headers={"x-ms-version": "2025-11-05"}, timeout=5)
    assert response.status_code == 401
    assert "<Code>NoAuthenticationInformation</Code>" in response.text
    assert response.headers["x-ms-error-code"] == "NoAuthenticationInformation"


def test_directory_client_metadata_roundtrip(emulator):
    share = service(emulator).create_share(unique())
    directory: ShareDirectoryClient = share.create_directory("snapshots", metadata={"kind": "snap"})
    assert directory.get_directory_properties().metadata == {"kind": "snap"}


def test_file_sas_reaches_only_its_file(emulator):
    share = service(emulator).create_share(unique())
    share.get_file_client("mine").upload_file(b"mine")
    share.get_file_client("other").upload_file(b"other")
    sas = generate_file_sas(
        emulator.env["STORAGE_ACCOUNT_NAME"],
        share.share_name,
        ["mine"],
        account_key(emulator),
        permission=FileSasPermissions(read=True),
        expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5),
    )
    assert ShareFileClient(
        emulator.file_endpoint, share.share_name, "mine", credential=sas
    ).download_file().readall() == (b"mine")
    with pytest.raises(ClientAuthenticationError):
        ShareFileClient(emulator.file_endpoint, share.share_name, "other", credential=sas).download_file()
    with pytest.raises(HttpResponseError) as info:
        list(ShareClient(emulator.file_endpoint, share.share_name, credential=sas).list_directories_and_files())
    assert info.value.status_code == 403


def test_share_stats_report_the_bytes_stored(emulator):
    share = service(emulator).create_share(unique())
    share.create_directory("ledger")
    share.get_file_client("ledger/a").upload_file(b"x" * 1000)
    share.get_file_client("b").upload_file(b"y" * 24)
    assert share.get_share_stats() == 1024


def test_share_quota_is_a_settable_property(emulator):
    share = service(emulator).create_share(unique(), quota=10)
    assert share.get_share_properties().quota == 10
    share.set_share_quota(20)
    assert share.get_share_properties().quota == 20


def test_sas_with_ip_range_excluding_the_caller_is_refused(emulator):
    sas = generate_account_sas(
        emulator.env["STORAGE_ACCOUNT_NAME"],
        account_key(emulator),
        ResourceTypes(service=True),
        AccountSasPermissions(list=True),
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5),
        ip="10.1.2.3",
    )
    with pytest.raises(HttpResponseError) as info:
        list(ShareServiceClient(emulator.file_endpoint, credential=sas).list_shares())
    assert info.value.error_code == "AuthorizationSourceIPMismatch"
