"""Shares, directories and files of the emulated storage accounts, on disk.

One JSON document per share (its properties, lease, metadata and the
properties of every entry) and the file bytes as real files. A document per
share, rather than one for the account, keeps a write O(entries in a share)
when an account holds thousands of backup shares.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..clock import Clock, iso
from ..store import read_json, write_json

SHARE_NAME = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
DEFAULT_QUOTA_GIB = 102400
MIN_LEASE_SECONDS, MAX_LEASE_SECONDS = 15, 60


class StorageError(Exception):
    """An Azure Storage error: HTTP status, error code and message, as in Azure's XML body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _etag() -> str:
    return f'"0x{uuid.uuid4().hex[:15].upper()}"'


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class Lease:
    """Share lease state, evaluated lazily against the real clock (leases are auth-time)."""

    state: str = "available"  # available | leased | breaking | broken | expired
    lease_id: str | None = None
    duration: int = -1  # -1 infinite, else seconds
    expires_at: float | None = None
    break_at: float | None = None

    @classmethod
    def load(cls, doc: dict | None) -> "Lease":
        return cls(**doc) if doc else cls()

    def current(self) -> "Lease":
        now = _now().timestamp()
        if self.state == "leased" and self.expires_at is not None and now >= self.expires_at:
            return Lease(state="expired")
        if self.state == "breaking" and self.break_at is not None and now >= self.break_at:
            return Lease(state="broken")
        return self

    @property
    def status(self) -> str:
        return "locked" if self.current().state in ("leased", "breaking") else "unlocked"

    @property
    def duration_name(self) -> str | None:
        if self.current().state != "leased":
            return None
        return "infinite" if self.duration == -1 else "fixed"


class FileStore:
    def __init__(self, root: Path, clock: Clock) -> None:
        self._root = root
        self._clock = clock
        self._lock = threading.RLock()
        self._listing_cache: dict[Path, tuple[int, dict]] = {}
        root.mkdir(parents=True, exist_ok=True)

    # --- layout ---
    def _share_doc_path(self, account: str, share: str) -> Path:
        return self._root / account / "shares" / f"{share}.json"

    def _data_dir(self, account: str, share: str) -> Path:
        return self._root / account / "data" / share

    def _load(self, account: str, share: str) -> dict:
        doc = read_json(self._share_doc_path(account, share), None)
        if doc is None:
            raise StorageError(404, "ShareNotFound", "The specified share does not exist.")
        return doc

    def _save(self, account: str, doc: dict) -> None:
        write_json(self._share_doc_path(account, doc["name"]), doc)

    @staticmethod
    def _touch(entry: dict) -> None:
        entry["etag"] = _etag()
        entry["last_modified"] = iso(_now())

    # --- shares ---
    def share_exists(self, account: str, share: str) -> bool:
        return self._share_doc_path(account, share).exists()

    def create_share(
        self, account: str, share: str, metadata: dict[str, str] | None = None, quota: int | None = None
    ) -> dict:
        if not SHARE_NAME.fullmatch(share):
            raise StorageError(400, "InvalidResourceName", "The specifed resource name contains invalid characters.")
        with self._lock:
            if self.share_exists(account, share):
                raise StorageError(409, "ShareAlreadyExists", "The specified share already exists.")
            doc = {
                "name": share,
                "created": iso(self._clock.now()),
                "quota": quota or DEFAULT_QUOTA_GIB,
                "metadata": dict(metadata or {}),
                "lease": None,
                "entries": {},
            }
            self._touch(doc)
            self._data_dir(account, share).mkdir(parents=True, exist_ok=True)
            self._save(account, doc)
            return doc

    def get_share(self, account: str, share: str) -> dict:
        with self._lock:
            return self._load(account, share)

    def list_shares(self, account: str, prefix: str = "") -> Iterator[dict]:
        folder = self._root / account / "shares"
        if not folder.exists():
            return
        names = sorted(p.stem for p in folder.glob("*.json") if p.stem.startswith(prefix))
        for name in names:
            doc = self._read_for_listing(folder / f"{name}.json")
            if doc is not None:
                yield doc

    def _read_for_listing(self, path: Path) -> dict | None:
        """A share document for a listing (read-only), parsed again only when its file changed: a
        listing of thousands of shares must not parse thousands of files each time."""
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        cached = self._listing_cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        doc = read_json(path, None)
        if doc is not None:
            self._listing_cache[path] = (stamp, doc)
        return doc

    def delete_share(self, account: str, share: str, lease_id: str | None) -> None:
        with self._lock:
            doc = self._load(account, share)
            lease = Lease.load(doc["lease"]).current()
            if lease.state in ("leased", "breaking"):
                if not lease_id:
                    raise StorageError(
                        412,
                        "LeaseIdMissing",
                        "There is currently a lease on the file share and no lease ID was specified in the request.",
                    )
                if lease_id != lease.lease_id:
                    raise StorageError(
                        412,
                        "LeaseIdMismatchWithContainerOperation",
                        "The lease ID specified did not match the lease ID for the file share.",
                    )
            self._share_doc_path(account, share).unlink()
            _rmtree(self._data_dir(account, share))

    def set_share_metadata(self, account: str, share: str, metadata: dict[str, str], lease_id: str | None) -> dict:
        with self._lock:
            doc = self._load(account, share)
            self._check_share_lease_if_given(doc, lease_id)
            doc["metadata"] = dict(metadata)
            self._touch(doc)
            self._save(account, doc)
            return doc

    def set_share_quota(self, account: str, share: str, quota: int | None, lease_id: str | None) -> dict:
        with self._lock:
            doc = self._load(account, share)
            self._check_share_lease_if_given(doc, lease_id)
            if quota:
                doc["quota"] = quota
            self._touch(doc)
            self._save(account, doc)
            return doc

    @staticmethod
    def _check_share_lease_if_given(doc: dict, lease_id: str | None) -> None:
        lease = Lease.load(doc["lease"]).current()
        if lease_id and (lease.state not in ("leased", "breaking") or lease.lease_id != lease_id):
            raise StorageError(
                412,
                "LeaseIdMismatchWithContainerOperation",
                "The lease ID specified did not match the lease ID for the file share.",
            )

    def lease_share(
        self,
        account: str,
        share: str,
        action: str,
        *,
        lease_id: str | None,
        proposed_id: str | None,
        duration: int | None,
        break_period: int | None,
    ) -> tuple[dict, Lease]:
        """Apply a lease action, with Azure's state machine and error codes."""
        with self._lock:
            doc = self._load(account, share)
            lease = Lease.load(doc["lease"]).current()
            held = lease.state in ("leased",)
            now = _now().timestamp()
            if action == "acquire":
                if duration is None or not (duration == -1 or MIN_LEASE_SECONDS <= duration <= MAX_LEASE_SECONDS):
                    raise StorageError(
                        400,
                        "InvalidHeaderValue",
                        "x-ms-lease-duration must be -1 (infinite) or between 15 and 60 seconds.",
                    )
                if held and lease.lease_id != proposed_id:
                    raise StorageError(409, "LeaseAlreadyPresent", "There is already a lease present.")
                if lease.state == "breaking":
                    raise StorageError(
                        409, "LeaseIsBreakingAndCannotBeAcquired", "There is already a breaking lease present."
                    )
                lease = Lease(
                    "leased", proposed_id or str(uuid.uuid4()), duration, None if duration == -1 else now + duration
                )
            elif action in ("release", "renew", "change"):
                if lease.state == "available" or lease.lease_id is None:
                    raise StorageError(
                        409, "LeaseNotPresentWithLeaseOperation", "There is currently no lease on the file share."
                    )
                if lease.lease_id != lease_id:
                    raise StorageError(
                        409,
                        "LeaseIdMismatchWithLeaseOperation",
                        "The lease ID specified did not match the lease ID for the file share.",
                    )
                if action == "release":
                    lease = Lease()
                elif action == "renew":
                    if lease.state == "breaking" or lease.state == "broken":
                        raise StorageError(409, "LeaseIsBrokenAndCannotBeRenewed", "The lease has been broken.")
                    lease = Lease(
                        "leased", lease.lease_id, lease.duration, None if lease.duration == -1 else now + lease.duration
                    )
                else:
                    if not proposed_id:
                        raise StorageError(400, "MissingRequiredHeader", "x-ms-proposed-lease-id is required.")
                    lease = Lease(lease.state, proposed_id, lease.duration, lease.expires_at, lease.break_at)
            elif action == "break":
                if lease.state in ("available", "expired"):
                    raise StorageError(
                        409, "LeaseNotPresentWithLeaseOperation", "There is currently no lease on the file share."
                    )
                if lease.state == "leased":
                    if break_period is None:
                        wait = 0 if lease.duration == -1 else max(0, (lease.expires_at or now) - now)
                    else:
                        wait = break_period
                    lease = (
                        Lease("broken")
                        if wait <= 0
                        else Lease("breaking", lease.lease_id, lease.duration, lease.expires_at, now + wait)
                    )
            else:
                raise StorageError(400, "InvalidHeaderValue", f"Unknown x-ms-lease-action {action!r}.")
            doc["lease"] = lease.__dict__
            self._save(account, doc)
            return doc, lease

    # --- directories and files ---
    def _entry_key(self, path: str) -> str:
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise StorageError(400, "InvalidResourceName", "The specifed resource name contains invalid characters.")
        return "/".join(parts)

    def _check_parent(self, doc: dict, key: str) -> None:
        parent = key.rpartition("/")[0]
        if parent and doc["entries"].get(parent, {}).get("type") != "directory":
            raise StorageError(404, "ParentNotFound", "The specified parent path does not exist.")

    def create_directory(self, account: str, share: str, path: str, metadata: dict[str, str]) -> dict:
        with self._lock:
            doc = self._load(account, share)
            key = self._entry_key(path)
            if key in doc["entries"]:
                raise StorageError(409, "ResourceAlreadyExists", "The specified resource already exists.")
            self._check_parent(doc, key)
            entry = {
                "type": "directory",
                "created": iso(_now()),
                "metadata": dict(metadata),
                "file_id": str(uuid.uuid4().int % 2**63),
            }
            self._touch(entry)
            doc["entries"][key] = entry
            (self._data_dir(account, share) / key).mkdir(parents=True, exist_ok=True)
            self._save(account, doc)
            return entry

    def delete_directory(self, account: str, share: str, path: str) -> None:
        with self._lock:
            doc = self._load(account, share)
            key = self._entry_key(path)
            if doc["entries"].get(key, {}).get("type") != "directory":
                raise StorageError(404, "ResourceNotFound", "The specified resource does not exist.")
            if any(k.startswith(key + "/") for k in doc["entries"]):
                raise StorageError(409, "DirectoryNotEmpty", "The specified directory is not empty.")
            del doc["entries"][key]
            (self._data_dir(account, share) / key).rmdir()
            self._save(account, doc)

    def get_entry(self, account: str, share: str, path: str, kind: str) -> dict:
        doc = self.get_share(account, share)
        key = self._entry_key(path)
        if key == "" and kind == "directory":
            return {
                "type": "directory",
                "created": doc["created"],
                "metadata": {},
                "etag": doc["etag"],
                "last_modified": doc["last_modified"],
                "file_id": "0",
            }
        entry = doc["entries"].get(key)
        if entry is None or entry["type"] != kind:
            if kind == "directory":
                raise StorageError(404, "ResourceNotFound", "The specified resource does not exist.")
            self._check_parent(doc, key)
            raise StorageError(404, "ResourceNotFound", "The specified resource does not exist.")
        return entry

    def list_directory(self, account: str, share: str, path: str, prefix: str = "") -> list[tuple[str, dict]]:
        doc = self.get_share(account, share)
        key = self._entry_key(path)
        if key and doc["entries"].get(key, {}).get("type") != "directory":
            raise StorageError(404, "ResourceNotFound", "The specified resource does not exist.")
        base = key + "/" if key else ""
        children = []
        for name, entry in doc["entries"].items():
            if name.startswith(base):
                rest = name[len(base) :]
                if rest and "/" not in rest and rest.startswith(prefix):
                    children.append((rest, entry))
        return sorted(children)

    def create_file(
        self, account: str, share: str, path: str, length: int, content_type: str | None, metadata: dict[str, str]
    ) -> dict:
        with self._lock:
            doc = self._load(account, share)
            key = self._entry_key(path)
            if doc["entries"].get(key, {}).get("type") == "directory":
                raise StorageError(409, "ResourceTypeMismatch", "The specified resource type does not match.")
            self._check_parent(doc, key)
            entry = {
                "type": "file",
                "created": iso(_now()),
                "metadata": dict(metadata),
                "length": length,
                "content_type": content_type or "application/octet-stream",
                "file_id": str(uuid.uuid4().int % 2**63),
            }
            self._touch(entry)
            doc["entries"][key] = entry
            target = self._data_dir(account, share) / key
            with open(target, "wb") as handle:
                handle.truncate(length)
            self._save(account, doc)
            return entry

    def put_range(self, account: str, share: str, path: str, start: int, end: int, data: bytes | None) -> dict:
        with self._lock:
            doc = self._load(account, share)
            key = self._entry_key(path)
            entry = doc["entries"].get(key)
            if entry is None or entry["type"] != "file":
                raise StorageError(404, "ResourceNotFound", "The specified resource does not exist.")
            if end >= entry["length"] or start > end:
                raise StorageError(
                    416, "InvalidRange", "The range specified is invalid for the current size of the resource."
                )
            payload = data if data is not None else b"\0" * (end - start + 1)
            if len(payload) != end - start + 1:
                raise StorageError(400, "InvalidHeaderValue", "The range length does not match the body length.")
            with open(self._data_dir(account, share) / key, "r+b") as handle:
                handle.seek(start)
                handle.write(payload)
            self._touch(entry)
            self._save(account, doc)
            return entry

    def read_file(self, account: str, share: str, path: str, start: int, end: int) -> bytes:
        key = self._entry_key(path)
        with open(self._data_dir(account, share) / key, "rb") as handle:
            handle.seek(start)
            return handle.read(end - start + 1)

    def delete_file(self, account: str, share: str, path: str) -> None:
        with self._lock:
            doc = self._load(account, share)
            key = self._entry_key(path)
            if doc["entries"].get(key, {}).get("type") != "file":
                raise StorageError(404, "ResourceNotFound", "The specified resource does not exist.")
            del doc["entries"][key]
            (self._data_dir(account, share) / key).unlink(missing_ok=True)
            self._save(account, doc)

    # --- used by the emulated Managed CCF service, which writes backups directly ---
    def write_file(self, account: str, share: str, path: str, data: bytes) -> None:
        parts = self._entry_key(path).split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if self.get_share(account, share)["entries"].get(folder) is None:
                self.create_directory(account, share, folder, {})
        self.create_file(account, share, path, len(data), "application/octet-stream", {})
        if data:
            self.put_range(account, share, path, 0, len(data) - 1, data)


def _rmtree(path: Path) -> None:
    if not path.exists():
        return
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()
