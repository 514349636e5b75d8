"""Backup inspection worker: ``python -m mccf_backup.inspect_worker``, one process per inspection.

Reads committed chunks with the ``ccf`` package's own ledger reader as the parent hands them over
(the protocol of verify_worker: one JSON line per chunk on stdin, an answer per chunk, a final
report), so memory stays bounded by one chunk whatever the ledger's size. It reports what Microsoft's
article leaves the reader to explore: the ledger range, the last signature, the write count per
public table, how many transactions carry private (encrypted) writes, which are counted and never
decrypted, and the governance history in order: proposals and their state, member, user and node
changes, service status changes.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from typing import IO

SIGNATURES = "public:ccf.internal.signatures"
GOVERNANCE = {  # public table -> what a write to it means
    "public:ccf.gov.proposals_info": "proposal",
    "public:ccf.gov.members.certs": "member",
    "public:ccf.gov.users.certs": "user",
    "public:ccf.gov.nodes.info": "node",
    "public:ccf.gov.service.info": "service",
}
MAX_FIELD_LENGTH = 128  # ids, states and proposers as recorded; a ledger string longer than this is cut
MAX_GOVERNANCE_EVENTS = 1000  # the newest are kept past this; the report says how many were left out


def _key(key: bytes) -> str:
    text = key.decode("utf-8", "replace")
    return text if text.isprintable() and "\ufffd" not in text else key.hex()


def _short(value: object) -> str | None:
    return None if value is None else str(value)[:MAX_FIELD_LENGTH]


def governance_event(txid: str, table: str, key: bytes, value: bytes | None) -> dict:
    """One governance change, as an operator reads it; whatever the value holds, never an exception."""
    kind = GOVERNANCE[table]
    event = {"txid": txid, "kind": kind, "id": _short(_key(key)) if kind != "service" else None}
    if value is None:
        return {**event, "change": "removed"}
    if kind in ("member", "user"):
        return {**event, "change": "certificate set"}
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        return {**event, "change": "updated"}
    state = document.get("state") or document.get("status")
    if kind == "proposal":
        return {**event, "change": _short(state) or "updated", "proposer": _short(document.get("proposer_id"))}
    return {**event, "change": _short(state) or "updated"}


class Inspection:
    def __init__(self) -> None:
        self.tables: Counter[str] = Counter()
        self.transactions = self.private_transactions = self.private_bytes = self.signatures = 0
        self.first_seqno: int | None = None
        self.last_seqno: int | None = None
        self.last_txid: str | None = None
        self.last_signature_txid: str | None = None
        self.governance: list[dict] = []
        self.governance_left_out = 0

    def add(self, transaction) -> None:
        public = transaction.get_public_domain()
        txid, seqno = transaction.get_txid(), public.get_seqno()
        self.transactions += 1
        self.first_seqno = seqno if self.first_seqno is None else self.first_seqno
        self.last_seqno, self.last_txid = seqno, txid
        private = transaction.get_private_domain_size()
        if private:
            self.private_transactions += 1
            self.private_bytes += private
        for table, writes in public.get_tables().items():
            self.tables[table] += len(writes)
            if table == SIGNATURES:
                self.signatures += 1
                self.last_signature_txid = txid
            elif table in GOVERNANCE:
                for key, value in writes.items():
                    self.governance.append(governance_event(txid, table, key, value))
        if len(self.governance) > MAX_GOVERNANCE_EVENTS:
            self.governance_left_out += len(self.governance) - MAX_GOVERNANCE_EVENTS
            del self.governance[: len(self.governance) - MAX_GOVERNANCE_EVENTS]

    def report(self) -> dict:
        return {
            "firstSeqno": self.first_seqno,
            "lastSeqno": self.last_seqno,
            "lastTxid": self.last_txid,
            "lastSignatureTxid": self.last_signature_txid,
            "transactions": self.transactions,
            "signatures": self.signatures,
            "privateTransactions": self.private_transactions,
            "privateBytes": self.private_bytes,
            "publicWrites": dict(sorted(self.tables.items())),
            "governance": self.governance,
            "governanceLeftOut": self.governance_left_out,
        }


def run(inp: IO[str], out: IO[str]) -> int:
    import ccf.ledger as ccf_ledger

    inspection, error = Inspection(), None
    for line in inp:
        message = json.loads(line)
        if message.get("end"):
            break
        path = message["chunk"]
        if error is None:
            try:
                for transaction in ccf_ledger.LedgerChunk(path):
                    inspection.add(transaction)
            except Exception as exc:  # noqa: BLE001 - a chunk the reader cannot read is reported, not a crash
                error = f"{os.path.basename(path)}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        out.write(json.dumps({"chunk_done": os.path.basename(path)}) + "\n")
        out.flush()
    out.write(json.dumps({"report": {**inspection.report(), "error": error}}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.stdin, sys.stdout))
