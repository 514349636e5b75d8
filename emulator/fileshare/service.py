"""The File service REST surface (path-style: https://127.0.0.1:PORT/<account>/<share>/<path>).

Operations are dispatched on method + ``restype`` + ``comp`` exactly as the
REST reference names them; each declares the SAS resource level and the
permissions that allow it, which the authorizer enforces.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import xml.etree.ElementTree as ET
from typing import Callable, Iterable, TypeVar
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from ..clock import rfc1123
from .auth import Operation, StorageAuthorizer, Target, op
from .store import MAX_LEASE_SECONDS, FileStore, Lease, StorageError

SERVICE_VERSION = "2025-11-05"
MAX_RANGE_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_RESULTS = 5000
T = TypeVar("T")

LIST_SHARES = op("ListShares", "s", "l")
CREATE_SHARE = op("CreateShare", "c", "cw")
DELETE_SHARE = op("DeleteShare", "c", "d")
GET_SHARE = op("GetShareProperties", "c", "r", "r")
SET_SHARE = op("SetShareMetadataOrProperties", "c", "w")
LEASE_SHARE = op("LeaseShare", "c", "w")
SHARE_STATS = op("GetShareStats", "c", "r", "r")
LIST_DIR = op("ListDirectoriesAndFiles", "c", "l", "l")
CREATE_DIR = op("CreateDirectory", "o", "cw", "cw")
GET_DIR = op("GetDirectoryProperties", "o", "r", "r")
DELETE_DIR = op("DeleteDirectory", "o", "d", "d")
CREATE_FILE = op("CreateFile", "o", "cw", "cw")
PUT_RANGE = op("PutRange", "o", "w", "w")
GET_FILE = op("GetFile", "o", "r", "r")
DELETE_FILE = op("DeleteFile", "o", "d", "d")


def iso_from(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def error_response(status: int, code: str, message: str) -> Response:
    root = ET.Element("Error")
    ET.SubElement(root, "Code").text = code
    ET.SubElement(
        root, "Message"
    ).text = f"{message}\nRequestId:{uuid.uuid4()}\nTime:{rfc1123(dt.datetime.now(dt.timezone.utc))}"
    body = b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root)
    response = Response(body if status != 304 else b"", status=status, content_type="application/xml")
    response.headers["x-ms-error-code"] = code
    return response


def _metadata(request: Request) -> dict[str, str]:
    headers = request.environ.get("emulator.raw_headers") or list(request.headers.items())
    return {k[len("x-ms-meta-") :]: v for k, v in headers if k.lower().startswith("x-ms-meta-")}


def _meta_headers(response: Response, metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        response.headers[f"x-ms-meta-{key}"] = value


def _xml(root: ET.Element) -> Response:
    return Response(
        b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root), status=200, content_type="application/xml"
    )


def _parse_range(value: str | None) -> tuple[int, int | None] | None:
    if not value:
        return None
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", value.strip())
    if not match:
        raise StorageError(
            400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format."
        )
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


def _page(items: Iterable[tuple[str, T]], marker: str, max_results: int) -> tuple[list[tuple[str, T]], str]:
    """One page of name-sorted items from ``marker`` on; the next marker is the first name left out."""
    page: list[tuple[str, T]] = []
    for name, item in items:
        if marker and name < marker:
            continue
        if len(page) == max_results:
            return page, name
        page.append((name, item))
    return page, ""


class FileService:
    def __init__(self, store: FileStore, authorizer: StorageAuthorizer, base_url: Callable[[], str]) -> None:
        self._store = store
        self._auth = authorizer
        self._base_url = base_url

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        request = Request(environ)
        try:
            response = self.handle(request)
        except StorageError as err:
            response = error_response(err.status, err.code, err.message)
        response.headers["x-ms-request-id"] = str(uuid.uuid4())
        response.headers["x-ms-version"] = SERVICE_VERSION
        response.headers["Date"] = rfc1123(dt.datetime.now(dt.timezone.utc))
        if request.headers.get("x-ms-client-request-id"):
            response.headers["x-ms-client-request-id"] = request.headers["x-ms-client-request-id"]
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        raw_path = request.environ.get("RAW_URI", request.path).split("?", 1)[0]
        parts = [unquote(p) for p in raw_path.split("/") if p]
        if not parts:
            raise StorageError(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        account, share, path = parts[0], (parts[1] if len(parts) > 1 else None), "/".join(parts[2:])
        if not request.headers.get("x-ms-version"):
            raise StorageError(
                400,
                "MissingRequiredHeader",
                "An HTTP header that's mandatory for this request is not specified: x-ms-version.",
            )
        restype, comp, method = request.args.get("restype"), request.args.get("comp"), request.method
        target = Target(account, share, path)

        def authorize(operation: Operation) -> None:
            self._auth.authorize(request, target, operation)

        if share is None:
            if method == "GET" and comp == "list":
                authorize(LIST_SHARES)
                return self._list_shares(request, account)
            raise StorageError(400, "InvalidQueryParameterValue", "Unsupported service-level operation.")
        if restype == "share" and not path:
            return self._share_operation(request, method, comp, account, share, authorize)
        if restype == "directory":
            return self._directory_operation(request, method, comp, account, share, path, authorize)
        if path:
            return self._file_operation(request, method, comp, account, share, path, authorize)
        raise StorageError(400, "InvalidQueryParameterValue", "Unsupported share operation.")

    # --- shares ---
    def _start_listing(self, request: Request, account: str, **attributes: str) -> tuple[ET.Element, str, int]:
        """The EnumerationResults envelope both listings share; returns (root, marker, maxresults)."""
        marker = request.args.get("marker", "")
        try:
            max_results = int(request.args.get("maxresults", DEFAULT_MAX_RESULTS))
        except ValueError:
            max_results = 0
        if not 1 <= max_results <= DEFAULT_MAX_RESULTS:
            raise StorageError(400, "OutOfRangeQueryParameterValue", "maxresults must be between 1 and 5000.")
        root = ET.Element("EnumerationResults", ServiceEndpoint=self._base_url() + f"/{account}/", **attributes)
        if request.args.get("prefix"):
            ET.SubElement(root, "Prefix").text = request.args["prefix"]
        if marker:
            ET.SubElement(root, "Marker").text = marker
        if "maxresults" in request.args:
            ET.SubElement(root, "MaxResults").text = str(max_results)
        return root, marker, max_results

    def _list_shares(self, request: Request, account: str) -> Response:
        include = set(request.args.get("include", "").split(","))
        root, marker, max_results = self._start_listing(request, account)
        shares = ET.SubElement(root, "Shares")
        docs = ((doc["name"], doc) for doc in self._store.list_shares(account, request.args.get("prefix", "")))
        page, next_marker = _page(docs, marker, max_results)
        for _, doc in page:
            item = ET.SubElement(shares, "Share")
            ET.SubElement(item, "Name").text = doc["name"]
            props = ET.SubElement(item, "Properties")
            self._share_xml_properties(props, doc)
            if "metadata" in include:
                meta = ET.SubElement(item, "Metadata")
                for key, value in doc["metadata"].items():
                    ET.SubElement(meta, key).text = value
        ET.SubElement(root, "NextMarker").text = next_marker
        return _xml(root)

    @staticmethod
    def _share_xml_properties(props: ET.Element, doc: dict) -> None:
        lease = Lease.load(doc["lease"]).current()
        ET.SubElement(props, "Last-Modified").text = rfc1123(iso_from(doc["last_modified"]))
        ET.SubElement(props, "Etag").text = doc["etag"]
        ET.SubElement(props, "Quota").text = str(doc["quota"])
        ET.SubElement(props, "LeaseStatus").text = lease.status
        ET.SubElement(props, "LeaseState").text = lease.state
        if lease.duration_name:
            ET.SubElement(props, "LeaseDuration").text = lease.duration_name

    def _share_headers(self, response: Response, doc: dict) -> Response:
        response.headers["ETag"] = doc["etag"]
        response.headers["Last-Modified"] = rfc1123(iso_from(doc["last_modified"]))
        return response

    def _share_operation(
        self,
        request: Request,
        method: str,
        comp: str | None,
        account: str,
        share: str,
        authorize: Callable[[Operation], None],
    ) -> Response:
        lease_id = request.headers.get("x-ms-lease-id")
        if method == "PUT" and comp is None:
            authorize(CREATE_SHARE)
            quota = request.headers.get("x-ms-share-quota")
            doc = self._store.create_share(account, share, _metadata(request), int(quota) if quota else None)
            return self._share_headers(Response(status=201), doc)
        if method in ("GET", "HEAD") and comp is None:
            authorize(GET_SHARE)
            doc = self._store.get_share(account, share)
            response = self._share_headers(Response(status=200), doc)
            _meta_headers(response, doc["metadata"])
            lease = Lease.load(doc["lease"]).current()
            response.headers["x-ms-share-quota"] = str(doc["quota"])
            response.headers["x-ms-lease-status"] = lease.status
            response.headers["x-ms-lease-state"] = lease.state
            if lease.duration_name:
                response.headers["x-ms-lease-duration"] = lease.duration_name
            response.headers["x-ms-share-creation-time"] = rfc1123(iso_from(doc["created"]))
            return response
        if method == "DELETE" and comp is None:
            authorize(DELETE_SHARE)
            self._store.delete_share(account, share, lease_id)
            return Response(status=202)
        if method == "PUT" and comp == "metadata":
            authorize(SET_SHARE)
            doc = self._store.set_share_metadata(account, share, _metadata(request), lease_id)
            return self._share_headers(Response(status=200), doc)
        if method == "PUT" and comp == "properties":
            authorize(SET_SHARE)
            quota = request.headers.get("x-ms-share-quota")
            doc = self._store.set_share_quota(account, share, int(quota) if quota else None, lease_id)
            return self._share_headers(Response(status=200), doc)
        if method == "PUT" and comp == "lease":
            authorize(LEASE_SHARE)
            return self._lease(request, account, share)
        if method == "GET" and comp == "stats":
            authorize(SHARE_STATS)
            doc = self._store.get_share(account, share)
            root = ET.Element("ShareStats")
            usage = sum(e.get("length", 0) for e in doc["entries"].values() if e["type"] == "file")
            ET.SubElement(root, "ShareUsageBytes").text = str(usage)
            return self._share_headers(_xml(root), doc)
        raise StorageError(400, "InvalidQueryParameterValue", f"Unsupported share operation {method} comp={comp}.")

    def _lease(self, request: Request, account: str, share: str) -> Response:
        action = (request.headers.get("x-ms-lease-action") or "").lower()
        duration = request.headers.get("x-ms-lease-duration")
        break_period = request.headers.get("x-ms-lease-break-period")
        try:
            doc, lease = self._store.lease_share(
                account,
                share,
                action,
                lease_id=request.headers.get("x-ms-lease-id"),
                proposed_id=request.headers.get("x-ms-proposed-lease-id"),
                duration=int(duration) if duration is not None else None,
                break_period=int(break_period) if break_period is not None else None,
            )
        except ValueError as exc:
            raise StorageError(400, "InvalidHeaderValue", "A lease header is not an integer.") from exc
        status = {"acquire": 201, "break": 202}.get(action, 200)
        response = self._share_headers(Response(status=status), doc)
        if action != "release" and action != "break":
            response.headers["x-ms-lease-id"] = lease.lease_id or ""
        if action == "break":
            remaining = 0
            if lease.state == "breaking" and lease.break_at:
                remaining = max(
                    0, min(MAX_LEASE_SECONDS, round(lease.break_at - dt.datetime.now(dt.timezone.utc).timestamp()))
                )
            response.headers["x-ms-lease-time"] = str(remaining)
        return response

    # --- directories ---
    def _entry_headers(self, response: Response, entry: dict) -> Response:
        response.headers["ETag"] = entry["etag"]
        response.headers["Last-Modified"] = rfc1123(iso_from(entry["last_modified"]))
        created = entry["created"].replace("Z", "0Z")  # 7 fractional digits, as Azure Files sends them
        response.headers["x-ms-file-creation-time"] = created
        response.headers["x-ms-file-last-write-time"] = created
        response.headers["x-ms-file-change-time"] = created
        response.headers["x-ms-file-attributes"] = "Directory" if entry["type"] == "directory" else "Archive"
        response.headers["x-ms-file-permission-key"] = "13873153403719226940*422928105932735866"
        response.headers["x-ms-file-id"] = entry.get("file_id", "0")
        response.headers["x-ms-file-parent-id"] = "0"
        response.headers["x-ms-request-server-encrypted"] = "true"
        return response

    def _directory_operation(
        self,
        request: Request,
        method: str,
        comp: str | None,
        account: str,
        share: str,
        path: str,
        authorize: Callable[[Operation], None],
    ) -> Response:
        if method == "GET" and comp == "list":
            authorize(LIST_DIR)
            return self._list_directory(request, account, share, path)
        if method == "PUT" and comp is None:
            authorize(CREATE_DIR)
            entry = self._store.create_directory(account, share, path, _metadata(request))
            return self._entry_headers(Response(status=201), entry)
        if method in ("GET", "HEAD") and comp is None:
            authorize(GET_DIR)
            entry = self._store.get_entry(account, share, path, "directory")
            response = self._entry_headers(Response(status=200), entry)
            _meta_headers(response, entry.get("metadata", {}))
            return response
        if method == "DELETE" and comp is None:
            authorize(DELETE_DIR)
            self._store.delete_directory(account, share, path)
            return Response(status=202)
        raise StorageError(400, "InvalidQueryParameterValue", f"Unsupported directory operation {method} comp={comp}.")

    def _list_directory(self, request: Request, account: str, share: str, path: str) -> Response:
        entries = self._store.list_directory(account, share, path, request.args.get("prefix", ""))
        root, marker, max_results = self._start_listing(request, account, ShareName=share, DirectoryPath=path)
        container = ET.SubElement(root, "Entries")
        page, next_marker = _page(entries, marker, max_results)
        for name, entry in page:
            node = ET.SubElement(container, "File" if entry["type"] == "file" else "Directory")
            ET.SubElement(node, "Name").text = name
            ET.SubElement(node, "FileId").text = entry.get("file_id", "0")
            props = ET.SubElement(node, "Properties")
            if entry["type"] == "file":
                ET.SubElement(props, "Content-Length").text = str(entry["length"])
        ET.SubElement(root, "NextMarker").text = next_marker
        return _xml(root)

    # --- files ---
    def _file_operation(
        self,
        request: Request,
        method: str,
        comp: str | None,
        account: str,
        share: str,
        path: str,
        authorize: Callable[[Operation], None],
    ) -> Response:
        if method == "PUT" and comp is None:
            authorize(CREATE_FILE)
            if (request.headers.get("x-ms-type") or "").lower() != "file":
                raise StorageError(400, "MissingRequiredHeader", "x-ms-type: file is required.")
            try:
                length = int(request.headers.get("x-ms-content-length", ""))
            except ValueError as exc:
                raise StorageError(400, "MissingRequiredHeader", "x-ms-content-length is required.") from exc
            entry = self._store.create_file(
                account, share, path, length, request.headers.get("x-ms-content-type"), _metadata(request)
            )
            return self._entry_headers(Response(status=201), entry)
        if method == "PUT" and comp == "range":
            authorize(PUT_RANGE)
            parsed = _parse_range(request.headers.get("x-ms-range") or request.headers.get("Range"))
            if parsed is None or parsed[1] is None:
                raise StorageError(400, "MissingRequiredHeader", "x-ms-range is required.")
            start, end = parsed
            if end - start + 1 > MAX_RANGE_BYTES:
                raise StorageError(413, "RequestBodyTooLarge", "A range may be at most 4 MiB.")
            write = (request.headers.get("x-ms-write") or "update").lower()
            data = request.get_data() if write == "update" else None
            entry = self._store.put_range(account, share, path, start, end, data)
            return self._entry_headers(Response(status=201), entry)
        if method in ("GET", "HEAD") and comp is None:
            authorize(GET_FILE)
            entry = self._store.get_entry(account, share, path, "file")
            return self._get_file(request, method, account, share, path, entry)
        if method == "DELETE" and comp is None:
            authorize(DELETE_FILE)
            self._store.delete_file(account, share, path)
            return Response(status=202)
        raise StorageError(400, "InvalidQueryParameterValue", f"Unsupported file operation {method} comp={comp}.")

    def _get_file(self, request: Request, method: str, account: str, share: str, path: str, entry: dict) -> Response:
        length = entry["length"]
        parsed = _parse_range(request.headers.get("x-ms-range") or request.headers.get("Range"))
        status, start, end = 200, 0, length - 1
        if parsed is not None and method == "GET":
            start = parsed[0]
            end = min(parsed[1] if parsed[1] is not None else length - 1, length - 1)
            if start >= length:
                raise StorageError(
                    416, "InvalidRange", "The range specified is invalid for the current size of the resource."
                )
            status = 206
        body = b"" if method == "HEAD" or length == 0 else self._store.read_file(account, share, path, start, end)
        response = Response(body, status=status, content_type=entry.get("content_type"))
        self._entry_headers(response, entry)
        _meta_headers(response, entry.get("metadata", {}))
        response.headers["x-ms-type"] = "File"
        response.headers["Accept-Ranges"] = "bytes"
        response.headers["x-ms-server-encrypted"] = "true"
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{length}"
        if method == "HEAD":
            response.headers["Content-Length"] = str(length)
        return response
