"""Verify a backup offline: prove the ledger files in a backup share are complete and intact.

A Managed CCF cannot be restored to test a backup (restore needs the original deleted), so the only
safe evidence that a backup is good is to check its files. This streams the committed chunks from
the share into a validator process one at a time (the next chunk downloads while the validator
works on the current one; at most two chunks are on disk), and adds the checks the validator does
not make: chunk names contiguous from seqno 1 without overlaps, a last seqno not lower than the
previous verified backup's (a missing tail passes the validator), and the same service identity.
The final signature transaction of a ledger is only covered by a later signature, so it is reported
as the unverified remainder rather than called verified.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.storage.fileshare import ShareClient

from .catalog import storage_error
from .errors import AzureRequestFailed, ShareNotFound
from .redaction import redact

LEDGER_DIR = "ledger"
SNAPSHOT_DIR = "snapshots"
COMMITTED = re.compile(r"ledger_(\d+)-(\d+)\.committed")
UNCOMMITTED = re.compile(r"ledger_(\d+)(-(\d+))?(\.recovery)?")
Progress = Callable[[int, int], None]  # bytes done, bytes total
VALIDATOR = "mccf_backup.verify_worker"
DOWNLOAD_CONCURRENCY = 4  # parallel range downloads of one chunk, overlapped with validating the previous


@dataclass
class VerificationReport:
    share: str
    verdict: str = "invalid"  # valid | invalid
    reasons: list[str] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)
    first_seqno: int | None = None
    last_seqno: int | None = None
    transactions: int = 0
    signatures: int = 0
    last_verified_txid: str | None = None
    # The final signature transaction (and anything after it) is covered by no later signature.
    unverified_from_seqno: int | None = None
    service_identity: str | None = None  # SHA-256 of the service certificate found in the ledger
    service_certificate: str | None = None
    snapshots: list[str] = field(default_factory=list)
    uncommitted: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    bytes: int = 0
    validator_peak_rss_kib: int | None = None

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Previous:
    """What an earlier verified backup of the same target established."""

    share: str
    last_seqno: int | None
    service_identity: str | None


def service_identity(certificate_pem: str | None) -> str | None:
    if not certificate_pem:
        return None
    return hashlib.sha256(certificate_pem.strip().encode()).hexdigest()


def list_directory(share: ShareClient, directory: str) -> list[tuple[str, int, bool]]:
    try:
        return [
            (item.name, item.size or 0, item.is_directory)
            for item in share.get_directory_client(directory).list_directories_and_files()
        ]
    except ResourceNotFoundError:
        return []
    except HttpResponseError as exc:
        raise storage_error(exc, f"list {directory}/ in share '{share.share_name}'") from exc


def check_names(report: VerificationReport, files: list[tuple[str, int, bool]]) -> list[tuple[str, int]]:
    """Sort the ledger directory into committed chunks and the rest; check the chunks' seqno ranges."""
    committed = []
    for name, size, is_directory in files:
        if is_directory:
            report.unexpected.append(name + "/")
        elif name.endswith(".ignored"):
            report.ignored.append(name)
        elif COMMITTED.fullmatch(name):
            committed.append((name, size))
        elif UNCOMMITTED.fullmatch(name):
            report.uncommitted.append(name)
        else:
            report.unexpected.append(name)
    committed.sort(key=lambda item: int(COMMITTED.fullmatch(item[0]).group(1)))
    if not committed:
        report.reasons.append("no committed ledger chunk (ledger/ledger_<first>-<last>.committed) in the backup")
        return committed
    expected = 1
    for name, _ in committed:
        first, last = (int(x) for x in COMMITTED.fullmatch(name).groups())
        if last < first:
            report.reasons.append(f"{name}: its seqno range is reversed")
        if first > expected:
            what = "missing first chunk" if expected == 1 else "missing chunk"
            report.reasons.append(f"{what}: seqnos {expected}-{first - 1} are absent (before {name})")
        elif first < expected:
            report.reasons.append(f"{name} overlaps the previous chunk (seqno {first} < {expected})")
        expected = max(expected, last + 1)
    return committed


def verify_share(
    share: ShareClient, previous: Previous | None = None, progress: Progress | None = None, workdir: str | None = None
) -> VerificationReport:
    report = VerificationReport(share.share_name)
    try:
        share.get_share_properties()
    except ResourceNotFoundError as exc:
        raise ShareNotFound(f"Backup share '{share.share_name}' does not exist.") from exc
    except HttpResponseError as exc:
        raise AzureRequestFailed(f"Could not read share '{share.share_name}': {exc.error_code}") from exc
    committed = check_names(report, list_directory(share, LEDGER_DIR))
    report.snapshots = sorted(name for name, _, is_dir in list_directory(share, SNAPSHOT_DIR) if not is_dir)
    report.chunks = [name for name, _ in committed]
    if report.reasons:
        return _conclude(report, previous)
    try:
        result, report.bytes, worker_errors = stream_chunks(share, committed, VALIDATOR, progress, workdir)
    except (AzureError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        report.reasons.append(f"verification could not complete: {type(exc).__name__}: {redact(str(exc))[:300]}")
        return _conclude(report, previous)
    if result is None:
        report.reasons.append(f"the validator process failed: {redact(worker_errors)[-500:]}")
        return _conclude(report, previous)
    if not result["ok"]:
        report.reasons.append(f"the ledger does not validate: {result['reason']}")
    report.transactions = result["transactions"]
    report.first_seqno, report.last_seqno = result["first_seqno"], result["last_seqno"]
    report.signatures = result["signatures"]
    report.last_verified_txid = result["last_verified_txid"]
    if report.last_seqno is not None and result["last_verified_seqno"]:
        report.unverified_from_seqno = result["last_verified_seqno"]
    report.service_certificate = result["service_cert"]
    report.validator_peak_rss_kib = result.get("peak_rss_kib")
    report.service_identity = service_identity(result["service_cert"])
    return _conclude(report, previous)


def stream_chunks(
    share: ShareClient,
    committed: list[tuple[str, int]],
    module: str,
    progress: Progress | None = None,
    workdir: str | None = None,
) -> tuple[dict | None, int, str]:
    """Download the committed chunks one at a time into a worker process (``python -m module``) that reads
    each as it arrives; returns its final report (None if it died), the bytes read and its stderr.

    The next chunk downloads while the worker reads the current one; at most two are on disk.
    Raises what a download or the pipe raises (AzureError, OSError, ValueError, TimeoutExpired).
    """
    total = sum(size for _, size in committed)
    done = 0
    # stderr goes to a file, not a pipe: a chatty worker must not block on a full pipe nobody reads
    errors_file = tempfile.TemporaryFile(mode="w+")
    worker = subprocess.Popen(
        [sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors_file, text=True
    )
    try:
        with tempfile.TemporaryDirectory(prefix="mccf-ledger-", dir=workdir) as scratch:
            waiting: Path | None = None  # the chunk the worker has, deleted once it answers
            for name, _ in committed:
                local = Path(scratch) / name

                def hook(current: int, _total: int | None, base: int = done) -> None:
                    if progress:
                        progress(base + current, total)

                with open(local, "wb") as handle:
                    downloader = share.get_file_client(f"{LEDGER_DIR}/{name}").download_file(
                        max_concurrency=DOWNLOAD_CONCURRENCY, progress_hook=hook
                    )
                    done += downloader.readinto(handle)
                if waiting is not None:
                    _ack(worker, waiting)
                worker.stdin.write(json.dumps({"chunk": str(local)}) + "\n")
                worker.stdin.flush()
                waiting = local
            if waiting is not None:
                _ack(worker, waiting)
            worker.stdin.write(json.dumps({"end": True}) + "\n")
            worker.stdin.close()
            result = _read(worker).get("report")
            worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        errors_file.seek(0)
        worker_errors = errors_file.read()
        errors_file.close()
    return result, done, worker_errors


def _read(worker: subprocess.Popen) -> dict:
    line = worker.stdout.readline()
    if not line:
        return {}
    return json.loads(line)


def _ack(worker: subprocess.Popen, local: Path) -> None:
    if "chunk_done" not in _read(worker):
        raise ValueError("the validator process stopped answering")
    local.unlink(missing_ok=True)


def _conclude(report: VerificationReport, previous: Previous | None) -> VerificationReport:
    if previous is not None and not report.reasons:
        if previous.last_seqno is not None and (report.last_seqno or 0) < previous.last_seqno:
            report.reasons.append(
                f"missing tail: the ledger ends at seqno {report.last_seqno}, before the previous verified backup "
                f"{previous.share} (seqno {previous.last_seqno})"
            )
        if previous.service_identity and report.service_identity != previous.service_identity:
            report.reasons.append(
                f"service identity changed: the ledger's service certificate differs from the one in {previous.share}"
            )
    if not report.reasons and report.signatures == 0:
        report.reasons.append("no signature transaction was verified")
    report.verdict = "invalid" if report.reasons else "valid"
    return report
