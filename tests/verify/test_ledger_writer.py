"""The benchmark's ledger writer makes ledgers the real validator accepts, and whose tampering it catches."""

from __future__ import annotations

import uuid

from azure.storage.fileshare import ShareServiceClient

from bench.ledger_writer import write_ledger
from mccf_backup.verification import verify_share


def upload(emulator, files):
    service = ShareServiceClient.from_connection_string(emulator.connection_string())
    share = service.create_share(f"generated-{uuid.uuid4().hex[:10]}")
    share.create_directory("ledger")
    for path, data in files.items():
        share.get_file_client(f"ledger/{path}").upload_file(data)
    return share


def test_a_generated_ledger_verifies_and_a_flipped_bit_does_not(emulator, tmp_path):
    written = write_ledger(
        tmp_path / "ledger", 3 * 2**20, tx_payload=16 * 1024, signature_every=20, chunk_bytes=1 * 2**20
    )
    files = {p.name: p.read_bytes() for p in written.chunks}
    assert len(files) >= 2
    report = verify_share(upload(emulator, files))
    assert report.valid, report.reasons
    assert (report.transactions, report.signatures) == (written.transactions, written.signatures)
    assert report.last_seqno == written.transactions and report.validator_peak_rss_kib > 0
    second = written.chunks[1].name
    data = bytearray(files[second])
    data[len(data) // 2] ^= 0x01
    tampered = verify_share(upload(emulator, {**files, second: bytes(data)}))
    assert not tampered.valid and "InvalidRootException" in tampered.reasons[0]
