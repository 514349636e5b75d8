"""Write a CCF ledger (1.x write-set format) signed with a test node key, of any size.

No real ledger larger than half a megabyte could be obtained, and the verification benchmark needs
hundreds of MiB; this writes one in the format ``ccf.ledger`` reads (chunk header and offset table,
transaction header, GCM header carrying seqno and view, public domain with the nodes, service and
signatures tables, an opaque private domain) and signs Merkle roots as a CCF node does (ECDSA over
the prehashed root). The real validator accepts it; tests prove that before the benchmark uses it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import struct
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from ccf.merkletree import MerkleTree
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID

NODE_ID = "a" * 64
VIEW = 2
NODES = "public:ccf.gov.nodes.info"
SERVICE = "public:ccf.gov.service.info"
SIGNATURES = "public:ccf.internal.signatures"
APP_TABLE = "public:records"
SINGLETON = bytes(8)


def _self_signed(key: ec.EllipticCurvePrivateKey, name: str) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _entry(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


def _public_domain(seqno: int, tables: dict[str, dict[bytes, bytes]]) -> bytes:
    out = bytearray([0])  # EntryType.WRITE_SET
    out += struct.pack("<q", seqno) + struct.pack("<q", 0)  # version, max conflict version
    for name, writes in tables.items():
        out += _entry(name.encode()) + bytes(8) + struct.pack("<Q", 0) + struct.pack("<Q", len(writes))
        for key, value in writes.items():
            out += _entry(key) + _entry(value)
        out += struct.pack("<Q", 0)  # removals
    return bytes(out)


def _transaction(seqno: int, tables: dict[str, dict[bytes, bytes]], private: bytes) -> bytes:
    public = _public_domain(seqno, tables)
    gcm = bytes(16) + struct.pack("<Q", seqno) + struct.pack("<I", VIEW)
    body = gcm + struct.pack("<Q", len(public)) + public + private
    return bytes([1, 0]) + len(body).to_bytes(6, "little") + body


@dataclass
class WrittenLedger:
    directory: Path
    chunks: list[Path]
    transactions: int
    signatures: int
    bytes: int


def write_ledger(
    directory: Path,
    total_bytes: int,
    tx_payload: int = 64 * 1024,
    signature_every: int = 50,
    chunk_bytes: int = 5 * 1024 * 1024,
    seed: bytes = b"mccf-backup",
) -> WrittenLedger:
    """Write committed chunks until ``total_bytes``; chunks end on a signature, as CCF's do."""
    directory.mkdir(parents=True, exist_ok=True)
    node_key = ec.generate_private_key(ec.SECP384R1())
    service_key = ec.generate_private_key(ec.SECP384R1())
    node_cert, service_cert = _self_signed(node_key, "node"), _self_signed(service_key, "service")
    merkle = MerkleTree()
    merkle.add_leaf(bytes(32), do_hash=False)
    chunks: list[Path] = []
    pending: list[bytes] = []
    first, seqno, signatures, written = 1, 0, 0, 0
    payload_seed = sha256(seed).digest()

    def flush() -> None:
        nonlocal first, written
        header_and_body = bytearray(8)
        positions = []
        for tx in pending:
            positions.append(len(header_and_body))
            header_and_body += tx
        header_and_body[:8] = struct.pack("<Q", len(header_and_body))
        header_and_body += b"".join(struct.pack("<I", p) for p in positions)
        path = directory / f"ledger_{first}-{seqno}.committed"
        path.write_bytes(bytes(header_and_body))
        chunks.append(path)
        written += len(header_and_body)
        first = seqno + 1
        pending.clear()

    def add(tables: dict[str, dict[bytes, bytes]], private: bytes = b"") -> None:
        nonlocal seqno
        seqno += 1
        tx = _transaction(seqno, tables, private)
        merkle.add_leaf(sha256(tx).digest(), do_hash=False)
        pending.append(tx)

    add(
        {
            NODES: {NODE_ID.encode(): json.dumps({"cert": node_cert, "status": "Trusted"}).encode()},
            SERVICE: {SINGLETON: json.dumps({"cert": service_cert, "status": "Open"}).encode()},
        }
    )
    while True:
        for _ in range(signature_every - 1):
            # Opaque bytes stand in for the encrypted private domain; cheap to make, distinct per tx.
            block = sha256(payload_seed + seqno.to_bytes(8, "little")).digest()
            add({APP_TABLE: {str(seqno).encode(): b"x"}}, block * (tx_payload // 32))
        root = merkle.get_merkle_root()
        signature = node_key.sign(root, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        add(
            {
                SIGNATURES: {
                    SINGLETON: json.dumps(
                        {
                            "seqno": seqno + 1,
                            "view": VIEW,
                            "node": NODE_ID,
                            "root": root.hex(),
                            "sig": base64.b64encode(signature).decode(),
                        }
                    ).encode()
                }
            }
        )
        signatures += 1
        if sum(len(tx) for tx in pending) >= chunk_bytes:
            flush()
        if written + sum(len(tx) for tx in pending) >= total_bytes:
            if pending:
                flush()
            break
    return WrittenLedger(directory, chunks, seqno, signatures, written)


if __name__ == "__main__":
    import sys

    target = int(float(sys.argv[2]) * 2**20) if len(sys.argv) > 2 else 8 * 2**20
    result = write_ledger(Path(sys.argv[1] if len(sys.argv) > 1 else "generated-ledger"), target)
    print(
        f"{len(result.chunks)} chunks, {result.transactions} transactions, {result.signatures} signatures, "
        f"{result.bytes / 2**20:.1f} MiB in {result.directory}",
        file=sys.stderr,
    )
