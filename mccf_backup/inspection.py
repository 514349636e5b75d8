"""Show what a backup holds, the step Microsoft's article leaves to the reader ("explore the backup files").

The files and their sizes, the committed chunks and their seqno ranges, and, read with the ``ccf``
package's own ledger reader in a worker process (mccf_backup/inspect_worker.py), the ledger range,
the last signature, the writes per public table, the private transactions (counted, never
decrypted) and the governance history. Chunks stream through the worker one at a time, as for
verification, so memory does not grow with the ledger.
"""

from __future__ import annotations

import subprocess

from azure.core.exceptions import AzureError

from . import inputs
from .errors import AzureRequestFailed, LedgerTooLargeToReadInline
from .redaction import redact
from .run import Run
from .verification import COMMITTED, LEDGER_DIR, SNAPSHOT_DIR, Progress, VerificationReport, check_names, list_directory
from .verification import stream_chunks

READER = "mccf_backup.inspect_worker"
INLINE_MAX_BYTES = 64 * 2**20  # what an HTTP request reads through: about a second at the reader's pace


def describe_backup(run: Run, reference: str, share: str) -> dict:
    """What a backup holds without reading its ledger: its catalog entry (with the range verification
    recorded), its files and sizes, its chunks and their seqno ranges. Cheap: two listings."""
    target = run.targets.resolve(reference)
    inputs.share_name(share)
    backup = run.catalog().get(target, share)  # a backup of this target, or a clear error now
    client = run.storage().service_client().get_share_client(share)
    listed = list_directory(client, LEDGER_DIR)
    names = VerificationReport(share)
    committed = check_names(names, listed)
    return {
        "target": target.resource_id,
        "share": share,
        "catalog": backup.to_dict(),
        "files": [
            {"path": f"{LEDGER_DIR}/{name}" + ("/" if is_dir else ""), "bytes": size} for name, size, is_dir in listed
        ]
        + [{"path": f"{SNAPSHOT_DIR}/{name}", "bytes": size} for name, size, _ in list_directory(client, SNAPSHOT_DIR)],
        "chunks": [
            {"name": name, "firstSeqno": int(first), "lastSeqno": int(last), "bytes": size}
            for name, size in committed
            for first, last in [COMMITTED.fullmatch(name).groups()]
        ],
        "problems": names.reasons,  # chunk names that are missing, overlapping or out of order
    }


def inspect_backup(
    run: Run, reference: str, share: str, progress: Progress | None = None, max_bytes: int | None = None
) -> dict:
    """``describe_backup``, and the ledger itself read through: minutes for a large ledger, so the CLI's;
    an HTTP request reads it only up to ``max_bytes`` (a few seconds of work), and refuses beyond."""
    found = describe_backup(run, reference, share)
    size = sum(chunk["bytes"] for chunk in found["chunks"])
    if max_bytes is not None and size > max_bytes:
        raise LedgerTooLargeToReadInline(
            f"The ledger of '{share}' is {size} bytes, more than the {max_bytes} a request reads; run "
            f"'mccf-backup inspect {share} --target {found['target']}' instead.",
            field="ledger",
        )
    client = run.storage().service_client().get_share_client(share)
    committed = [(chunk["name"], chunk["bytes"]) for chunk in found["chunks"]]
    try:
        ledger, read, errors = stream_chunks(client, committed, READER, progress)
    except (ValueError, subprocess.TimeoutExpired) as exc:  # the reader died or stopped answering mid-ledger
        return {**found, "bytesRead": None, "ledger": {"error": f"the ledger reader stopped: {redact(str(exc))[:300]}"}}
    except (AzureError, OSError) as exc:
        raise AzureRequestFailed(f"Could not read the ledger of '{share}': {redact(str(exc))[:300]}") from exc
    if ledger is None:
        ledger = {"error": f"the ledger reader failed: {redact(errors)[-300:]}"}
    return {**found, "bytesRead": read, "ledger": ledger}
