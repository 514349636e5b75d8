"""Every corruption of a backup's ledger files is detected, with a clear reason; clean ledgers pass."""

from __future__ import annotations

import uuid
from pathlib import Path

import ccf.ledger as ccf_ledger
import pytest
from azure.storage.fileshare import ShareServiceClient

from emulator.ledger import FIXTURES
from mccf_backup.verification import Previous, verify_share

EXPIRED = FIXTURES / "expired_service"
CHUNKS = {
    name: (EXPIRED / name).read_bytes()
    for name in ("ledger_1-4.committed", "ledger_5-15.committed", "ledger_16-26.committed")
}


def share_with(emulator, files: dict[str, bytes], snapshots: dict[str, bytes] | None = None):
    service = ShareServiceClient.from_connection_string(emulator.connection_string())
    share = service.create_share(f"verify-{uuid.uuid4().hex[:12]}")
    share.create_directory("ledger")
    share.create_directory("snapshots")
    for name, data in files.items():
        share.get_file_client(f"ledger/{name}").upload_file(data)
    for name, data in (snapshots or {}).items():
        share.get_file_client(f"snapshots/{name}").upload_file(data)
    return share


def flipped(data: bytes, offset: int, mask: int = 0x5A) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


def middle_of_first_transaction(path: Path) -> int:
    chunk = ccf_ledger.LedgerChunk(str(path))
    return (chunk._positions[0] + chunk._positions[1]) // 2


def offset_table(data: bytes) -> int:
    return int.from_bytes(data[:8], "little")


@pytest.mark.parametrize("fixture", ["expired_service", "sgx_service", "cts_canary_sample"])
def test_clean_ledgers_pass(emulator, fixture):
    files = {p.name: p.read_bytes() for p in (FIXTURES / fixture).glob("*.committed")}
    report = verify_share(share_with(emulator, files))
    assert report.valid, report.reasons
    assert report.first_seqno == 1 and report.signatures > 0 and report.service_identity
    assert report.unverified_from_seqno == int(report.last_verified_txid.split(".")[1])


def test_expected_figures_of_a_real_ledger(emulator):
    report = verify_share(share_with(emulator, CHUNKS))
    assert (report.transactions, report.signatures, report.last_verified_txid) == (26, 7, "2.26")
    assert report.chunks == list(CHUNKS) and report.bytes == sum(len(d) for d in CHUNKS.values())


def test_uncommitted_and_ignored_files_are_reported_not_dropped(emulator):
    files = dict(CHUNKS)
    files["ledger_27"] = b"in progress"
    files["ledger_1-4.committed.ignored"] = CHUNKS["ledger_1-4.committed"]
    report = verify_share(share_with(emulator, files, snapshots={"snapshot_26_27.committed": b"s"}))
    assert report.valid, report.reasons
    assert report.uncommitted == ["ledger_27"] and report.ignored == ["ledger_1-4.committed.ignored"]
    assert report.snapshots == ["snapshot_26_27.committed"]


def corrupt_cases():
    middle = middle_of_first_transaction(EXPIRED / "ledger_5-15.committed")
    body = CHUNKS["ledger_5-15.committed"]
    table = offset_table(body)
    eol = (FIXTURES / "eol_service" / "ledger_3-11.committed").read_bytes()
    without = lambda name: {k: v for k, v in CHUNKS.items() if k != name}  # noqa: E731
    return {
        "missing middle chunk": (without("ledger_5-15.committed"), None, "missing chunk: seqnos 5-15"),
        "missing first chunk": (without("ledger_1-4.committed"), None, "missing first chunk"),
        "missing last chunk": (without("ledger_16-26.committed"), Previous("earlier", 26, None), "missing tail"),
        # One bit in a transaction's value: still parses, so only the Merkle root can catch it.
        "byte flipped in a body": (
            {**CHUNKS, "ledger_5-15.committed": flipped(body, middle, 0x01)},
            None,
            "InvalidRootException",
        ),
        "byte flipped in the header": (
            {**CHUNKS, "ledger_5-15.committed": flipped(body, 2)},
            None,
            "does not validate",
        ),
        "byte flipped in the offset table": (
            {**CHUNKS, "ledger_5-15.committed": flipped(body, table + 5)},
            None,
            "does not validate",
        ),
        "truncated chunk": ({**CHUNKS, "ledger_5-15.committed": body[: len(body) - 100]}, None, "does not validate"),
        "renamed chunk (gap)": (
            {
                "ledger_1-4.committed": CHUNKS["ledger_1-4.committed"],
                "ledger_5-15.committed": body,
                "ledger_17-27.committed": CHUNKS["ledger_16-26.committed"],
            },
            None,
            "missing chunk: seqnos 16-16",
        ),
        "renamed chunk (count mismatch)": (
            {
                "ledger_1-4.committed": CHUNKS["ledger_1-4.committed"],
                "ledger_5-16.committed": body,
                "ledger_17-26.committed": CHUNKS["ledger_16-26.committed"],
            },
            None,
            "Expected to contain 12 transactions",
        ),
        "chunk of another service": (
            {"ledger_1-4.committed": CHUNKS["ledger_1-4.committed"], "ledger_5-13.committed": eol},
            None,
            "does not validate",
        ),
        "service identity changed": (CHUNKS, Previous("earlier", 20, "0" * 64), "service identity changed"),
    }


@pytest.mark.parametrize("case", list(corrupt_cases()))
def test_each_corruption_is_detected_with_a_clear_reason(emulator, case):
    files, previous, reason = corrupt_cases()[case]
    report = verify_share(share_with(emulator, files), previous)
    assert report.verdict == "invalid", f"{case} passed verification"
    assert any(reason in r for r in report.reasons), report.reasons


def test_a_storage_failure_mid_verification_is_an_invalid_verdict_and_leaves_no_worker(emulator):
    share = share_with(emulator, CHUNKS)
    emulator.faults.fail_next("file", 403, count=None, method="GET", path="ledger_16-26", code="AuthorizationFailure")
    report = verify_share(share)
    assert report.verdict == "invalid"
    assert "verification could not complete" in report.reasons[0]
