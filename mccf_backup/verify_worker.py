"""Ledger validation worker: ``python -m mccf_backup.verify_worker``, one process per verification.

Runs Microsoft's ``ccf.ledger`` validator (Merkle roots, node and COSE signatures, service status
transitions) over committed chunks as the parent hands them over, one JSON line per chunk on stdin
(``{"chunk": path}``, then ``{"end": true}``). It answers a line per chunk and a final report on
stdout. A fresh process per verification because the validator keeps node tables at class level,
and because any exception in it (ValueError, AssertionError, KeyError, struct.error, its own
exception types...) only means "invalid", never a crash of the caller.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import IO


def _send(out: IO[str], message: dict) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def run(inp: IO[str], out: IO[str]) -> int:
    import ccf.ledger as ccf_ledger

    validator = ccf_ledger.LedgerValidator()
    report: dict = {"ok": True, "reason": None, "transactions": 0, "first_seqno": None, "last_seqno": None}
    for line in inp:
        message = json.loads(line)
        if message.get("end"):
            break
        path = message["chunk"]
        if not report["ok"]:
            _send(out, {"chunk_done": os.path.basename(path), "skipped": True})
            continue
        transactions = 0
        try:
            chunk = ccf_ledger.LedgerChunk(path)
            for transaction in chunk:
                validator.add_transaction(transaction)
                transactions += 1
            seqnos = chunk.get_seqnos()
            if report["first_seqno"] is None:
                report["first_seqno"] = seqnos[0]
            report["last_seqno"] = seqnos[1]
        except Exception as exc:  # noqa: BLE001 - every validator failure means the ledger is invalid
            report["ok"] = False
            detail = " ".join(str(exc).replace(os.path.dirname(path) + os.sep, "").split())[:500] or "no detail"
            report["reason"] = f"{os.path.basename(path)}: {type(exc).__name__}: {detail}"
        report["transactions"] += transactions
        _send(out, {"chunk_done": os.path.basename(path), "transactions": transactions})
    txid = validator.last_verified_txid()
    report.update(
        peak_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        signatures=getattr(validator, "signature_count", 0),
        last_verified_txid=f"{txid.view}.{txid.seqno}",
        last_verified_seqno=txid.seqno,
        service_cert=validator.service_cert,
    )
    _send(out, {"report": report})
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.stdin, sys.stdout))
